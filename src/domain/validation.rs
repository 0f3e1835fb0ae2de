//! Untrusted JSON bodies to commands, naming the field at fault.
//!
//! Every problem is collected, not just the first, so a form can show each error next to its
//! field. Errors come in the order the fields are documented on each function, then one per
//! unknown field (alphabetically). A field set to `null` counts as absent: required, it "is
//! required"; optional, it takes its default.
//!
//! Strings are trimmed before they are checked and stored. Lengths are counted in characters
//! (Unicode scalar values), not bytes, so a name in any script gets the same room. Control
//! characters (newlines and tabs included) are refused everywhere: none of these fields is
//! multi-line, and they only ever serve to break logs and dashboards.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::RangeInclusive;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::value::RawValue;

use super::event::{DeliveryStatus, OrderDetails, PaymentStatus, TopicRole, parse_time};
use super::gateway;
use super::json::{self, Kind};
use super::lifecycle::OrderStatus;
use super::money::Money;

/// One problem with one field of a request body.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// The field's name; `""` for the body as a whole.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// `field: message`, or only the message for the body as a whole.
impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// Every problem found in a request body (never empty).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, thiserror::Error)]
#[error("{}", join(.0))]
pub struct Invalid(pub Vec<FieldError>);

impl Invalid {
    /// A single problem, for callers that find one before validation (a body that is not
    /// JSON, say).
    pub fn one(field: impl Into<String>, message: impl Into<String>) -> Invalid {
        Invalid(vec![FieldError::new(field, message)])
    }
}

fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The fields of a new order, in the order their errors are reported.
pub const ORDER_FIELDS: [&str; 7] = [
    "customer_name",
    "customer_email",
    "product",
    "quantity",
    "amount",
    "currency",
    "address",
];

/// The currencies an order may be in. Every one is handled with two decimals, JPY included
/// (which has none in reality): the shop's [`Money`] is a count of hundredths throughout, and
/// a demo shop gains nothing from per-currency exponents.
pub const CURRENCIES: [&str; 11] = [
    "EUR", "USD", "GBP", "CHF", "JPY", "CAD", "AUD", "SEK", "NOK", "DKK", "PLN",
];

/// The largest order total accepted: 1 000 000.00, far above any real basket, low enough that
/// a typo of a few extra digits is caught.
pub const MAX_ORDER_AMOUNT: Money = Money::from_minor(100_000_000);

/// The most items of one product in an order.
pub const MAX_QUANTITY: u32 = 1000;

/// The currency of an order that names none, as in the seed.
pub const DEFAULT_CURRENCY: &str = "EUR";

pub const NAME_MAX: usize = 100;
/// RFC 5321's limit on a whole address.
pub const EMAIL_MAX: usize = 254;
/// RFC 5321's limit on the part before the `@`.
const EMAIL_LOCAL_MAX: usize = 64;
/// DNS's limit on one label of a domain.
const DOMAIN_LABEL_MAX: usize = 63;
pub const PRODUCT_MAX: usize = 200;
pub const ADDRESS_MAX: usize = 300;
/// Order ids are UUIDs when shopstream makes them; foreign producers get some room.
pub const ORDER_ID_MAX: usize = 100;
pub const CARRIER_MAX: usize = 60;
pub const REASON_MAX: usize = 200;
/// For fields checked against a list afterwards: the list's message says more than a length.
const NO_MAX: usize = usize::MAX;

/// Longest token a sign-in reads (the longest a token may be).
pub const SIGN_IN_TOKEN_MAX: usize = 512;

/// Most problems listed in one answer (the last of them counts the rest).
pub const MAX_REPORTED: usize = 20;
/// Longest field name repeated back in an answer.
const ECHOED_NAME_MAX: usize = 64;

/// A client's field name as an answer repeats it: at most [`ECHOED_NAME_MAX`] characters.
fn echoed(name: &str) -> String {
    match name.char_indices().nth(ECHOED_NAME_MAX) {
        Some((end, _)) => format!("{}…", &name[..end]),
        None => name.to_string(),
    }
}

/// An error was recorded for this field; its value is unusable.
struct Reported;

/// The body's fields and the errors found so far.
struct Fields<'a> {
    object: BTreeMap<json::MemberName<'a>, &'a RawValue>,
    errors: Vec<FieldError>,
    unknown: Vec<FieldError>,
}

impl<'a> Fields<'a> {
    /// Refuses a body that is not an object; notes its unknown fields (reported last).
    fn new(body: &'a RawValue, allowed: &[&str]) -> Result<Fields<'a>, Invalid> {
        let Some(object) = json::object(body) else {
            return Err(Invalid::one("", "the body must be a JSON object"));
        };
        // Sorted by name.
        let mut unknown: Vec<FieldError> = object
            .keys()
            .filter(|k| !allowed.contains(&k.as_str()))
            .map(|k| {
                let message = if allowed.is_empty() {
                    "unknown field: this body takes no fields".to_owned()
                } else {
                    format!("unknown field: the fields are {}", allowed.join(", "))
                };
                FieldError::new(echoed(k.as_str()), message)
            })
            .collect();
        unknown.sort_by(|a, b| a.field.cmp(&b.field));
        Ok(Fields {
            object,
            errors: Vec::new(),
            unknown,
        })
    }

    fn fail(&mut self, field: &str, message: impl Into<String>) -> Reported {
        self.errors.push(FieldError::new(field, message));
        Reported
    }

    /// The field's value; `null` is the same as absent.
    fn get(&self, field: &str) -> Option<&'a RawValue> {
        self.object
            .get(field)
            .copied()
            .filter(|v| Kind::of(v) != Kind::Null)
    }

    fn required<T>(
        &mut self,
        field: &str,
        value: Result<Option<T>, Reported>,
    ) -> Result<T, Reported> {
        match value {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err(self.fail(field, "is required")),
            Err(r) => Err(r),
        }
    }

    /// A trimmed, non-empty string of at most `max` characters, without control characters.
    fn text(&mut self, field: &str, max: usize) -> Result<Option<String>, Reported> {
        let Some(value) = self.get(field) else {
            return Ok(None);
        };
        let Some(s) = json::string(value) else {
            return Err(self.fail(field, "must be a string"));
        };
        let s = s.trim();
        if s.is_empty() {
            return Err(self.fail(field, "must not be empty"));
        }
        if s.chars().nth(max).is_some() {
            return Err(self.fail(field, format!("is longer than {max} characters")));
        }
        if s.chars().any(char::is_control) {
            return Err(self.fail(field, "must not contain control characters"));
        }
        if let Some(c) = s.chars().find(|c| is_deceptive(*c)) {
            return Err(self.fail(
                field,
                format!(
                    "must not contain invisible or bidirectional control characters (U+{:04X})",
                    u32::from(c)
                ),
            ));
        }
        Ok(Some(s.to_owned()))
    }

    fn required_text(&mut self, field: &str, max: usize) -> Result<String, Reported> {
        let value = self.text(field, max);
        self.required(field, value)
    }

    /// A positive amount, at most `max` when given.
    fn money(&mut self, field: &str, max: Option<Money>) -> Result<Option<Money>, Reported> {
        let Some(value) = self.get(field) else {
            return Ok(None);
        };
        let amount = Money::from_json(value).map_err(|e| self.fail(field, e.to_string()))?;
        if !amount.is_positive() {
            return Err(self.fail(field, "must be greater than 0"));
        }
        if let Some(max) = max
            && amount > max
        {
            return Err(self.fail(field, format!("must not be greater than {max}")));
        }
        Ok(Some(amount))
    }

    /// A JSON integer in `1..=MAX_QUANTITY`. Read from the number's exact text, so `3.0` and
    /// `3e0` are not whole numbers here, just as they are not plain decimals for [`Money`].
    fn quantity(&mut self, field: &str) -> Result<Option<u32>, Reported> {
        let Some(value) = self.get(field) else {
            return Ok(None);
        };
        let Some(text) = json::number(value) else {
            return Err(self.fail(field, "must be a whole number"));
        };
        let digits = text.strip_prefix('-').unwrap_or(text);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(self.fail(field, "must be a whole number"));
        }
        match text.parse::<i64>() {
            Ok(q) if (1..=i64::from(MAX_QUANTITY)).contains(&q) => Ok(u32::try_from(q).ok()),
            // Out of range, or too many digits for an i64.
            _ => Err(self.fail(field, format!("must be between 1 and {MAX_QUANTITY}"))),
        }
    }

    /// `true` or `false`.
    fn boolean(&mut self, field: &str) -> Result<Option<bool>, Reported> {
        match self.get(field).map(Kind::of) {
            None => Ok(None),
            Some(Kind::Bool(b)) => Ok(Some(b)),
            Some(_) => Err(self.fail(field, "must be true or false")),
        }
    }

    /// A number within `range`.
    fn number(&mut self, field: &str, range: RangeInclusive<f64>) -> Result<Option<f64>, Reported> {
        let Some(value) = self.get(field) else {
            return Ok(None);
        };
        match json::number(value)
            .and_then(|n| n.parse::<f64>().ok())
            .filter(|x| range.contains(x))
        {
            Some(x) => Ok(Some(x)),
            None => Err(self.fail(
                field,
                format!("must be a number from {} to {}", range.start(), range.end()),
            )),
        }
    }

    /// The value if no error was found, else every error, unknown fields last.
    fn finish<T>(mut self, value: Result<T, Reported>) -> Result<T, Invalid> {
        self.errors.append(&mut self.unknown);
        // A body of thousands of unknown fields must not get an answer many times its size.
        if self.errors.len() > MAX_REPORTED {
            let omitted = self.errors.len() - (MAX_REPORTED - 1);
            self.errors.truncate(MAX_REPORTED - 1);
            self.errors.push(FieldError::new(
                "",
                format!("and {omitted} more problems, not listed"),
            ));
        }
        match value {
            Ok(v) if self.errors.is_empty() => Ok(v),
            _ => {
                debug_assert!(!self.errors.is_empty(), "a Reported without an error");
                Err(Invalid(self.errors))
            }
        }
    }
}

/// Characters that change how text around them is shown without showing themselves: the
/// bidirectional controls (a name with U+202E reads backwards on the dashboard and in every
/// tool that shows it) and the invisible spaces and joiners that make two different names look
/// the same. The zero-width joiner and non-joiner (U+200C, U+200D) stay allowed: scripts such
/// as Persian and Devanagari, and emoji sequences, need them.
fn is_deceptive(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
    )
}

/// The normalised form of `email` (domain lower-cased; the local part is kept as is, since it
/// may be case-sensitive in principle), or `None` if it is not a practical email address.
///
/// Deliberately simpler than RFC 5322 (no quoted local parts, comments or IP literals): it
/// refuses the typos a shop sees (`a@b`, `a b@c.de`, `a@@x.io`) and accepts what real
/// customers have (`a+tag@sub.example.co.uk`).
fn normalise_email(email: &str) -> Option<String> {
    let (local, domain) = email.split_once('@')?;
    if domain.contains('@')
        || local.is_empty()
        || local.chars().nth(EMAIL_LOCAL_MAX).is_some()
        || local.chars().any(char::is_whitespace)
    {
        return None;
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |label: &&str| {
        !label.is_empty()
            && label.len() <= DOMAIN_LABEL_MAX
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    let tld = labels.last()?;
    if labels.len() < 2
        || !labels.iter().all(label_ok)
        || tld.len() < 2
        || !tld.bytes().all(|b| b.is_ascii_alphabetic())
    {
        return None;
    }
    Some(format!("{local}@{}", domain.to_ascii_lowercase()))
}

/// A new order: `customer_name`, `customer_email`, `product`, `quantity` (default 1),
/// `amount` (the order total), `currency` (default EUR), `address`.
///
/// # Errors
/// [`Invalid`] with every problem found, in that field order.
pub fn new_order(body: &RawValue) -> Result<OrderDetails, Invalid> {
    let mut f = Fields::new(body, &ORDER_FIELDS)?;

    let customer_name = f.required_text("customer_name", NAME_MAX);
    let customer_email = f.required_text("customer_email", EMAIL_MAX).and_then(|e| {
        normalise_email(&e).ok_or_else(|| f.fail("customer_email", "is not a valid email address"))
    });
    let product = f.required_text("product", PRODUCT_MAX);
    let quantity = f.quantity("quantity").map(|q| q.unwrap_or(1));
    let amount = f.money("amount", Some(MAX_ORDER_AMOUNT));
    let amount = f.required("amount", amount);
    let currency = f.text("currency", NO_MAX).and_then(|c| match c {
        None => Ok(DEFAULT_CURRENCY.to_owned()),
        Some(c) => {
            let upper = c.to_ascii_uppercase();
            if CURRENCIES.contains(&upper.as_str()) {
                Ok(upper)
            } else {
                Err(f.fail(
                    "currency",
                    format!("must be one of {}", CURRENCIES.join(", ")),
                ))
            }
        }
    });
    let address = f.required_text("address", ADDRESS_MAX);

    let order = match (
        customer_name,
        customer_email,
        product,
        quantity,
        amount,
        currency,
        address,
    ) {
        (
            Ok(customer_name),
            Ok(customer_email),
            Ok(product),
            Ok(quantity),
            Ok(amount),
            Ok(currency),
            Ok(address),
        ) => Ok(OrderDetails {
            customer_name,
            customer_email,
            product,
            quantity,
            amount,
            currency,
            address,
        }),
        _ => Err(Reported),
    };
    f.finish(order)
}

/// Checks `order_id` when the route carries it in the body rather than the path.
fn order_id(f: &mut Fields<'_>, allow_order_id: bool) -> Result<Option<String>, Reported> {
    if allow_order_id {
        f.required_text("order_id", ORDER_ID_MAX).map(Some)
    } else {
        Ok(None)
    }
}

fn allowed(allow_order_id: bool, fields: &'static [&'static str]) -> Vec<&'static str> {
    allow_order_id
        .then_some("order_id")
        .into_iter()
        .chain(fields.iter().copied())
        .collect()
}

/// A payment to take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRequest {
    /// Only from the seed's `POST /api/payments`, which names the order in the body.
    pub order_id: Option<String>,
    /// One of [`gateway::METHODS`].
    pub method: String,
    /// What the client means to pay; the gateway fails a payment that is not the total.
    pub amount: Option<Money>,
}

/// A payment: `order_id` (required when `allow_order_id`, otherwise unknown), `method` (one of
/// [`gateway::METHODS`], matched loosely: `credit_card` is `Credit Card`), `amount` (optional).
///
/// # Errors
/// [`Invalid`] with every problem found, in that field order.
pub fn payment_request(body: &RawValue, allow_order_id: bool) -> Result<PaymentRequest, Invalid> {
    let mut f = Fields::new(body, &allowed(allow_order_id, &["method", "amount"]))?;
    let order_id = order_id(&mut f, allow_order_id);
    let method = f.required_text("method", NO_MAX).and_then(|m| {
        gateway::canonical_method(&m)
            .map(str::to_owned)
            .ok_or_else(|| {
                f.fail(
                    "method",
                    format!("must be one of {}", gateway::METHODS.join(", ")),
                )
            })
    });
    let amount = f.money("amount", None);

    let request = match (order_id, method, amount) {
        (Ok(order_id), Ok(method), Ok(amount)) => Ok(PaymentRequest {
            order_id,
            method,
            amount,
        }),
        _ => Err(Reported),
    };
    f.finish(request)
}

/// A delivery to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRequest {
    /// Only from the seed's route, which names the order in the body.
    pub order_id: Option<String>,
    pub carrier: Option<String>,
}

/// A delivery: `order_id` (required when `allow_order_id`, otherwise unknown), `carrier`
/// (optional, any name up to 60 characters: shops use carriers we have never heard of).
///
/// Every field may be absent when `allow_order_id` is false, so a request without a body is
/// valid: callers pass an empty object (`{}`) for it.
///
/// # Errors
/// [`Invalid`] with every problem found, in that field order.
pub fn delivery_request(body: &RawValue, allow_order_id: bool) -> Result<DeliveryRequest, Invalid> {
    let mut f = Fields::new(body, &allowed(allow_order_id, &["carrier"]))?;
    let order_id = order_id(&mut f, allow_order_id);
    let carrier = f.text("carrier", CARRIER_MAX);

    let request = match (order_id, carrier) {
        (Ok(order_id), Ok(carrier)) => Ok(DeliveryRequest { order_id, carrier }),
        _ => Err(Reported),
    };
    f.finish(request)
}

/// A delivery's new status: `{"status": ...}`, in the seed's spelling or a relaxed form
/// (`in_transit`), see [`DeliveryStatus::parse`].
///
/// # Errors
/// [`Invalid`] with every problem found.
pub fn delivery_update(body: &RawValue) -> Result<DeliveryStatus, Invalid> {
    let mut f = Fields::new(body, &["status"])?;
    let status = f.required_text("status", NO_MAX).and_then(|s| {
        DeliveryStatus::parse(&s).ok_or_else(|| {
            let names: Vec<&str> = DeliveryStatus::ALL.iter().map(|d| d.as_str()).collect();
            f.fail("status", format!("must be one of {}", names.join(", ")))
        })
    });
    f.finish(status)
}

/// A cancellation's optional `reason` (up to 200 characters). A blank reason is no reason: a
/// form with an empty text box sends `""`.
///
/// # Errors
/// [`Invalid`] with every problem found.
pub fn cancel_request(body: &RawValue) -> Result<Option<String>, Invalid> {
    let mut f = Fields::new(body, &["reason"])?;
    let blank = f
        .get("reason")
        .and_then(json::string)
        .is_some_and(|s| s.trim().is_empty());
    let reason = if blank {
        Ok(None)
    } else {
        f.text("reason", REASON_MAX)
    };
    f.finish(reason)
}

/// The body of the dashboard's sign-in: `{"token": "..."}`. Error messages name the field,
/// never its value.
///
/// # Errors
/// [`Invalid`] with every problem found.
pub fn sign_in(body: &RawValue) -> Result<String, Invalid> {
    let mut f = Fields::new(body, &["token"])?;
    let token = f.required_text("token", SIGN_IN_TOKEN_MAX);
    f.finish(token)
}

/// A route that takes no body: an object with members is refused (`why` says what to do
/// instead); anything else, an empty body included, is ignored.
///
/// # Errors
/// [`Invalid`] naming the body.
pub fn no_body(body: &RawValue, why: &str) -> Result<(), Invalid> {
    match json::object(body) {
        Some(members) if !members.is_empty() => Err(Invalid::one("", why)),
        _ => Ok(()),
    }
}

/// Changes to the traffic simulator (`POST /api/simulator`); each is optional.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimulatorSettings {
    pub running: Option<bool>,
    /// Order lifecycles per second, within the `rate` range given.
    pub rate: Option<f64>,
    pub payment_failure_rate: Option<f64>,
}

/// `running` (true or false), `rate` (within `rate`), `payment_failure_rate` (0 to 1).
pub fn simulator_settings(
    body: &RawValue,
    rate: RangeInclusive<f64>,
) -> Result<SimulatorSettings, Invalid> {
    let mut f = Fields::new(body, &["running", "rate", "payment_failure_rate"])?;
    let running = f.boolean("running");
    let rate = f.number("rate", rate);
    let failure = f.number("payment_failure_rate", 0.0..=1.0);
    let settings = match (running, rate, failure) {
        (Ok(running), Ok(rate), Ok(payment_failure_rate)) => Ok(SimulatorSettings {
            running,
            rate,
            payment_failure_rate,
        }),
        _ => Err(Reported),
    };
    f.finish(settings)
}

/// A query parameter that cannot be used; the message names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidQuery(pub String);

/// Where the event browser starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrowseStart {
    Offset(i64),
    /// The first record at or after this time.
    Time(DateTime<Utc>),
}

/// The event browser's parameters (`GET /api/events`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowseQuery {
    pub topic: TopicRole,
    pub partition: i32,
    pub limit: usize,
    pub start: BrowseStart,
}

/// Most records the event browser shows at once.
pub const BROWSE_MAX_LIMIT: usize = 200;
pub const BROWSE_DEFAULT_LIMIT: usize = 50;

/// `topic` (required), `partition` (default 0; checked against the topic with
/// [`BrowseQuery::check_partition`] once its partitions are known), `limit` (1 to 200, default
/// 50), and `offset` (a whole number, default 0) or `time` (an RFC 3339 time Kafka can hold:
/// from 1970 on, as its timestamps are milliseconds since then).
pub fn browse_query(params: &HashMap<String, String>) -> Result<BrowseQuery, InvalidQuery> {
    let bad = |message: String| Err(InvalidQuery(message));
    let topic = match params.get("topic").map(String::as_str) {
        Some(t) => match TopicRole::parse(t) {
            Some(topic) => topic,
            None => {
                return bad(format!(
                    "topic must be orders, payments or deliveries, not {t:?}"
                ));
            }
        },
        None => return bad("topic is required: orders, payments or deliveries".into()),
    };
    let partition = match params.get("partition") {
        None => 0,
        Some(p) => match p.parse::<i32>() {
            Ok(p) if p >= 0 => p,
            _ => return bad(format!("partition {p:?} is not a partition number")),
        },
    };
    let limit = match params.get("limit") {
        None => BROWSE_DEFAULT_LIMIT,
        Some(l) => match l.parse::<usize>() {
            Ok(l) if (1..=BROWSE_MAX_LIMIT).contains(&l) => l,
            _ => return bad(format!("limit must be 1 to {BROWSE_MAX_LIMIT}, not {l:?}")),
        },
    };
    let start = match (params.get("offset"), params.get("time")) {
        (Some(_), Some(_)) => return bad("give offset or time, not both".into()),
        (Some(o), None) => match o.parse::<i64>() {
            Ok(o) if o >= 0 => BrowseStart::Offset(o),
            _ => return bad(format!("offset {o:?} is not a non-negative whole number")),
        },
        (None, Some(t)) => {
            let Some(time) = parse_time(t) else {
                return bad(format!("time {t:?} is not an RFC 3339 date-time"));
            };
            let earliest = Utc.timestamp_opt(0, 0).single().expect("the epoch");
            if time < earliest {
                return bad(format!(
                    "time {t:?} is before 1970-01-01T00:00:00Z, the earliest time Kafka holds"
                ));
            }
            BrowseStart::Time(time)
        }
        (None, None) => BrowseStart::Offset(0),
    };
    Ok(BrowseQuery {
        topic,
        partition,
        limit,
        start,
    })
}

impl BrowseQuery {
    /// The partition exists when the topic has `partitions` of them.
    pub fn check_partition(&self, partitions: i32) -> Result<(), InvalidQuery> {
        if self.partition < partitions {
            return Ok(());
        }
        Err(InvalidQuery(format!(
            "partition must be 0 to {} for {}",
            partitions - 1,
            self.topic
        )))
    }
}

/// Default page size of a listing.
pub const LIST_DEFAULT_LIMIT: usize = 50;
/// Largest page a client may ask for.
pub const LIST_MAX_LIMIT: usize = 500;

/// What a listing lists: which statuses its `status` filter takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    Orders,
    Payments,
    Deliveries,
}

impl Listing {
    /// The status `s` names (in any spelling the lifecycle accepts), in its own spelling.
    fn status(self, s: &str) -> Option<&'static str> {
        match self {
            Listing::Orders => OrderStatus::parse(s).map(OrderStatus::as_str),
            Listing::Payments => PaymentStatus::parse(s).map(PaymentStatus::as_str),
            Listing::Deliveries => DeliveryStatus::parse(s).map(DeliveryStatus::as_str),
        }
    }

    fn statuses(self) -> String {
        let names: Vec<&str> = match self {
            Listing::Orders => OrderStatus::ALL.iter().map(|s| s.as_str()).collect(),
            Listing::Payments => PaymentStatus::ALL.iter().map(|s| s.as_str()).collect(),
            Listing::Deliveries => DeliveryStatus::ALL.iter().map(|s| s.as_str()).collect(),
        };
        names.join(", ")
    }
}

/// A listing's parameters; `C` is the read model's page cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListParams<C> {
    /// The status to show, in its own spelling (`FAILED` for `failed`).
    pub status: Option<&'static str>,
    /// Words to find.
    pub text: Option<String>,
    pub limit: usize,
    /// Where the page starts.
    pub before: Option<C>,
}

/// `status` (one of the listed kind's, blank for all), `q` (trimmed, blank for none), `limit`
/// (1 to 500, default 50) and `cursor` (one that `decode_cursor` reads: the server gave it).
pub fn list_params<C>(
    params: &HashMap<String, String>,
    listing: Listing,
    decode_cursor: impl Fn(&str) -> Option<C>,
) -> Result<ListParams<C>, InvalidQuery> {
    let limit = match params.get("limit") {
        None => LIST_DEFAULT_LIMIT,
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if (1..=LIST_MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(InvalidQuery(format!(
                    "limit must be a whole number from 1 to {LIST_MAX_LIMIT}, not {raw:?}"
                )));
            }
        },
    };
    let status = match params
        .get("status")
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
    {
        None => None,
        Some(s) => Some(listing.status(s).ok_or_else(|| {
            InvalidQuery(format!("status {s:?} is not one of {}", listing.statuses()))
        })?),
    };
    let before =
        match params.get("cursor").filter(|c| !c.is_empty()) {
            None => None,
            Some(raw) => Some(decode_cursor(raw).ok_or_else(|| {
                InvalidQuery(format!("cursor {raw:?} is not one this server gave"))
            })?),
        };
    let text = params
        .get("q")
        .map(|q| q.trim().to_string())
        .filter(|q| !q.is_empty());
    Ok(ListParams {
        status,
        text,
        limit,
        before,
    })
}

/// `?wait=true` (also `1` or empty) or `false` (also `0`, or absent): whether a write waits
/// until the read model shows it.
pub fn wait_param(value: Option<&str>) -> Result<bool, InvalidQuery> {
    match value {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") | Some("") => Ok(true),
        Some(other) => Err(InvalidQuery(format!(
            "wait must be true or false, not {other:?}"
        ))),
    }
}

/// Longest `Idempotency-Key` accepted.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

/// An `Idempotency-Key` header that cannot be used; the message says why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidIdempotencyKey(pub String);

/// The `Idempotency-Key` header's value: 1 to 255 visible ASCII characters (no space).
pub fn idempotency_key(value: &[u8]) -> Result<&str, InvalidIdempotencyKey> {
    // What a header value may hold as text: visible ASCII, spaces and tabs.
    let text = value
        .iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
        .then(|| std::str::from_utf8(value).ok())
        .flatten()
        .ok_or_else(|| {
            InvalidIdempotencyKey("Idempotency-Key must be visible ASCII".to_string())
        })?;
    if text.is_empty()
        || text.len() > MAX_IDEMPOTENCY_KEY
        || !text.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(InvalidIdempotencyKey(format!(
            "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"
        )));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, Value, json};

    /// A body as the server reads it: a `Value` built by `json!`, or the raw text of `parse`.
    trait Body {
        fn raw(&self) -> Box<RawValue>;
    }

    impl Body for Value {
        fn raw(&self) -> Box<RawValue> {
            serde_json::value::to_raw_value(self).unwrap()
        }
    }

    impl Body for Box<RawValue> {
        fn raw(&self) -> Box<RawValue> {
            self.clone()
        }
    }

    fn new_order(body: &impl Body) -> Result<OrderDetails, Invalid> {
        super::new_order(&body.raw())
    }

    fn payment_request(body: &impl Body, allow: bool) -> Result<PaymentRequest, Invalid> {
        super::payment_request(&body.raw(), allow)
    }

    fn delivery_request(body: &impl Body, allow: bool) -> Result<DeliveryRequest, Invalid> {
        super::delivery_request(&body.raw(), allow)
    }

    fn delivery_update(body: &impl Body) -> Result<DeliveryStatus, Invalid> {
        super::delivery_update(&body.raw())
    }

    fn cancel_request(body: &impl Body) -> Result<Option<String>, Invalid> {
        super::cancel_request(&body.raw())
    }

    fn simulator_settings(
        body: &impl Body,
        rate: RangeInclusive<f64>,
    ) -> Result<SimulatorSettings, Invalid> {
        super::simulator_settings(&body.raw(), rate)
    }

    fn good_order() -> Value {
        json!({
            "customer_name": "Jean Dupont",
            "customer_email": "jean.dupont@example.com",
            "product": "Laptop",
            "quantity": 2,
            "amount": "1999.98",
            "currency": "EUR",
            "address": "12 Rue de la Paix, 75002 Paris",
        })
    }

    /// `good_order()` with `field` set to `value` (`None`: removed).
    fn order_with(field: &str, value: Option<Value>) -> Value {
        let mut body = good_order();
        let object = body.as_object_mut().unwrap();
        match value {
            Some(v) => object.insert(field.into(), v),
            None => object.remove(field),
        };
        body
    }

    /// `good_order()` with `field` set to the JSON `text`, kept as written.
    fn order_with_raw(field: &str, text: &str) -> Box<RawValue> {
        let mut members: BTreeMap<String, Box<RawValue>> = good_order()
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.raw()))
            .collect();
        members.insert(field.into(), parse(text));
        serde_json::value::to_raw_value(&members).unwrap()
    }

    /// Read from text, so numbers keep their exact digits as a client's would.
    fn parse(text: &str) -> Box<RawValue> {
        serde_json::from_str(text).unwrap()
    }

    /// The errors as `(field, message)` pairs.
    fn errors(result: Result<impl fmt::Debug, Invalid>) -> Vec<(String, String)> {
        result
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| (e.field, e.message))
            .collect()
    }

    /// The one error of `result`, which must be about `field`; returns its message.
    fn only_error(result: Result<impl fmt::Debug, Invalid>, field: &str) -> String {
        let errors = errors(result);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].0, field, "{errors:?}");
        errors[0].1.clone()
    }

    #[test]
    fn a_good_order_is_accepted() {
        let order = new_order(&good_order()).unwrap();
        assert_eq!(
            order,
            OrderDetails {
                customer_name: "Jean Dupont".into(),
                customer_email: "jean.dupont@example.com".into(),
                product: "Laptop".into(),
                quantity: 2,
                amount: Money::from_minor(199_998),
                currency: "EUR".into(),
                address: "12 Rue de la Paix, 75002 Paris".into(),
            }
        );
    }

    #[test]
    fn defaults_and_trimming() {
        let body = json!({
            "customer_name": "  Jean Dupont ",
            "customer_email": " Jean.Dupont@Example.COM ",
            "product": "Laptop\u{a0}",
            "amount": 999.99,
            "address": "\t12 Rue de la Paix, 75002 Paris\n",
        });
        let order = new_order(&body).unwrap();
        assert_eq!(order.customer_name, "Jean Dupont");
        assert_eq!(order.customer_email, "Jean.Dupont@example.com");
        assert_eq!(order.product, "Laptop");
        assert_eq!(order.quantity, 1);
        assert_eq!(order.currency, "EUR");
        assert_eq!(order.address, "12 Rue de la Paix, 75002 Paris");
        // null is absent.
        let order = new_order(&order_with("currency", Some(Value::Null))).unwrap();
        assert_eq!(order.currency, "EUR");
    }

    #[test]
    fn the_body_must_be_an_object() {
        for body in [json!([]), json!("x"), json!(1), Value::Null] {
            let invalid = new_order(&body).unwrap_err();
            assert_eq!(
                invalid.0,
                vec![FieldError::new("", "the body must be a JSON object")]
            );
            assert_eq!(invalid.to_string(), "the body must be a JSON object");
            assert!(payment_request(&body, true).is_err());
            assert!(delivery_request(&body, false).is_err());
            assert!(delivery_update(&body).is_err());
            assert!(cancel_request(&body).is_err());
        }
    }

    #[test]
    fn each_required_field_is_required() {
        for field in [
            "customer_name",
            "customer_email",
            "product",
            "amount",
            "address",
        ] {
            let message = only_error(new_order(&order_with(field, None)), field);
            assert_eq!(message, "is required");
            let message = only_error(new_order(&order_with(field, Some(Value::Null))), field);
            assert_eq!(message, "is required");
        }
    }

    #[test]
    fn each_field_has_its_type() {
        for field in [
            "customer_name",
            "customer_email",
            "product",
            "address",
            "currency",
        ] {
            for value in [json!(1), json!(true), json!(["x"]), json!({"x": 1})] {
                let message = only_error(new_order(&order_with(field, Some(value))), field);
                assert_eq!(message, "must be a string");
            }
        }
        let message = only_error(
            new_order(&order_with("amount", Some(json!(true)))),
            "amount",
        );
        assert!(
            message.contains("must be a decimal string or a number"),
            "{message}"
        );
        let message = only_error(
            new_order(&order_with("quantity", Some(json!("3")))),
            "quantity",
        );
        assert_eq!(message, "must be a whole number");
    }

    #[test]
    fn unknown_fields_are_refused_by_name() {
        let invalid = new_order(&order_with("coupon", Some(json!("SAVE10")))).unwrap_err();
        assert_eq!(invalid.0.len(), 1);
        assert_eq!(invalid.0[0].field, "coupon");
        assert!(invalid.0[0].message.starts_with("unknown field"));
        assert!(
            invalid.0[0].message.contains(
                "customer_name, customer_email, product, quantity, amount, currency, address"
            ),
            "{invalid}"
        );
    }

    #[test]
    fn bad_emails() {
        for email in [
            "a@b",
            "a b@c.de",
            "@x.io",
            "a@-x.io",
            "a@x-.io",
            "a@@x.io",
            "a@x@y.io",
            "a",
            "a@",
            "a@x..io",
            "a@.x.io",
            "a@x.io.",
            "a@x.i",
            "a@x.123",
            "a@ex ample.com",
            "a@exa_mple.com",
            &format!("{}@x.io", "a".repeat(65)),
            &format!("a@{}.io", "b".repeat(64)),
        ] {
            let message = only_error(
                new_order(&order_with("customer_email", Some(json!(email)))),
                "customer_email",
            );
            assert_eq!(message, "is not a valid email address", "{email}");
        }
        let long = format!("{}@{}.io", "a".repeat(60), "b".repeat(200));
        let message = only_error(
            new_order(&order_with("customer_email", Some(json!(long)))),
            "customer_email",
        );
        assert_eq!(message, "is longer than 254 characters");
    }

    #[test]
    fn good_emails() {
        for (email, normalised) in [
            ("jean.dupont@example.com", "jean.dupont@example.com"),
            ("a+tag@sub.example.co.uk", "a+tag@sub.example.co.uk"),
            ("Jean@EXAMPLE.Fr", "Jean@example.fr"),
            ("x@my-shop.example", "x@my-shop.example"),
            (
                &format!("{}@x.io", "a".repeat(64)),
                &format!("{}@x.io", "a".repeat(64)),
            ),
        ] {
            let order = new_order(&order_with("customer_email", Some(json!(email)))).unwrap();
            assert_eq!(order.customer_email, normalised);
        }
    }

    #[test]
    fn quantity_rules() {
        for (text, message) in [
            ("0", "must be between 1 and 1000"),
            ("-1", "must be between 1 and 1000"),
            ("1001", "must be between 1 and 1000"),
            ("99999999999999999999999", "must be between 1 and 1000"),
            ("1.5", "must be a whole number"),
            ("3.0", "must be a whole number"),
            ("1e2", "must be a whole number"),
            ("\"3\"", "must be a whole number"),
            ("true", "must be a whole number"),
        ] {
            let body = order_with_raw("quantity", text);
            assert_eq!(only_error(new_order(&body), "quantity"), message, "{text}");
        }
        for (text, q) in [("1", 1), ("1000", 1000), ("7", 7)] {
            let body = order_with_raw("quantity", text);
            assert_eq!(new_order(&body).unwrap().quantity, q);
        }
    }

    #[test]
    fn amount_rules() {
        for (text, needle) in [
            ("\"0\"", "must be greater than 0"),
            ("0", "must be greater than 0"),
            ("\"-1\"", "must be greater than 0"),
            ("-1", "must be greater than 0"),
            ("\"1.005\"", "more than 2 decimals"),
            ("1.005", "more than 2 decimals"),
            ("1000000.01", "must not be greater than 1000000.00"),
            ("\"abc\"", "not a plain decimal"),
            ("1e3", "exponent"),
        ] {
            let body = order_with_raw("amount", text);
            let message = only_error(new_order(&body), "amount");
            assert!(message.contains(needle), "{text}: {message}");
        }
        for (text, cents) in [
            ("12.5", 1250),
            ("\"12.50\"", 1250),
            ("1000000.00", 100_000_000),
            ("0.01", 1),
        ] {
            let body = order_with_raw("amount", text);
            let order = new_order(&body).unwrap();
            assert_eq!(order.amount, Money::from_minor(cents));
        }
        let body = order_with_raw("amount", "12.5");
        assert_eq!(new_order(&body).unwrap().amount.to_string(), "12.50");
    }

    #[test]
    fn currency_rules() {
        for (given, stored) in [
            ("usd", "USD"),
            ("Gbp", "GBP"),
            (" chf ", "CHF"),
            ("JPY", "JPY"),
        ] {
            let order = new_order(&order_with("currency", Some(json!(given)))).unwrap();
            assert_eq!(order.currency, stored);
        }
        for bad in ["XXX", "US", "EURO", "€", "E1R"] {
            let message = only_error(
                new_order(&order_with("currency", Some(json!(bad)))),
                "currency",
            );
            assert_eq!(
                message, "must be one of EUR, USD, GBP, CHF, JPY, CAD, AUD, SEK, NOK, DKK, PLN",
                "{bad}"
            );
        }
    }

    #[test]
    fn string_rules() {
        // Counted in characters: 100 two-byte characters fit in the name.
        let name = "é".repeat(100);
        let order = new_order(&order_with("customer_name", Some(json!(name)))).unwrap();
        assert_eq!(order.customer_name, name);
        for (field, max) in [("customer_name", 100), ("product", 200), ("address", 300)] {
            let ok = "é".repeat(max);
            assert!(
                new_order(&order_with(field, Some(json!(ok)))).is_ok(),
                "{field}"
            );
            let long = "é".repeat(max + 1);
            let message = only_error(new_order(&order_with(field, Some(json!(long)))), field);
            assert_eq!(message, format!("is longer than {max} characters"));
        }
        for field in ["customer_name", "product", "address"] {
            let message = only_error(new_order(&order_with(field, Some(json!("   ")))), field);
            assert_eq!(message, "must not be empty");
            for bad in [
                "Jean\nDupont",
                "Jean\tDupont",
                "Jean\u{0}",
                "a\u{7f}b",
                "a\u{85}b",
            ] {
                let message = only_error(new_order(&order_with(field, Some(json!(bad)))), field);
                assert_eq!(message, "must not contain control characters", "{bad:?}");
            }
            for (bad, code) in [
                ("Jean \u{202E}tnopuD", "U+202E"),
                ("Jean\u{200B}Dupont", "U+200B"),
                ("\u{2066}Jean\u{2069}", "U+2066"),
                ("Jean\u{FEFF}", "U+FEFF"),
            ] {
                let message = only_error(new_order(&order_with(field, Some(json!(bad)))), field);
                assert!(
                    message.contains("bidirectional") && message.contains(code),
                    "{message}"
                );
            }
            // Scripts and emoji that need the zero-width (non-)joiner keep working.
            for good in [
                "\u{0645}\u{06CC}\u{200C}\u{062E}\u{0648}\u{0627}\u{0647}\u{0645}",
                "\u{1F469}\u{200D}\u{1F4BB} Ada",
            ] {
                assert!(
                    new_order(&order_with(field, Some(json!(good)))).is_ok(),
                    "{good:?}"
                );
            }
        }
    }

    #[test]
    fn a_flood_of_unknown_fields_gets_a_bounded_answer() {
        let mut body = serde_json::Map::new();
        for i in 0..5_500 {
            body.insert(format!("field_{i:05}"), json!(1));
        }
        body.insert("x".repeat(10_000), json!(1));
        let text = serde_json::Value::Object(body).to_string();
        let raw = RawValue::from_string(text.clone()).unwrap();
        let invalid = new_order(&raw).unwrap_err();
        assert_eq!(invalid.0.len(), MAX_REPORTED);
        let last = invalid.0.last().unwrap();
        assert!(last.message.contains("more problems"), "{}", last.message);
        let answer = serde_json::to_string(&invalid).unwrap();
        assert!(
            answer.len() * 20 < text.len(),
            "{} bytes for {}",
            answer.len(),
            text.len()
        );
        assert!(
            invalid
                .0
                .iter()
                .all(|e| e.field.chars().count() <= ECHOED_NAME_MAX + 1)
        );
    }

    #[test]
    fn every_error_is_reported_in_field_order() {
        let body = json!({
            "zzz": 1,
            "address": "",
            "currency": "XXX",
            "amount": "0",
            "quantity": 0,
            "product": 5,
            "customer_email": "a@b",
            "aaa": 2,
        });
        let invalid = new_order(&body).unwrap_err();
        let fields: Vec<&str> = invalid.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "customer_name",
                "customer_email",
                "product",
                "quantity",
                "amount",
                "currency",
                "address",
                "aaa",
                "zzz"
            ]
        );
        let text = invalid.to_string();
        assert!(
            text.starts_with(
                "customer_name: is required; customer_email: is not a valid email address; \
                 product: must be a string; quantity: must be between 1 and 1000; \
                 amount: must be greater than 0; currency: must be one of"
            ),
            "{text}"
        );
        assert!(
            text.contains("; address: must not be empty; aaa: unknown field"),
            "{text}"
        );
        let json = serde_json::to_value(&invalid).unwrap();
        assert_eq!(
            json[0],
            json!({"field": "customer_name", "message": "is required"})
        );
    }

    #[test]
    fn payment_requests() {
        let p = payment_request(&json!({"method": "credit_card"}), false).unwrap();
        assert_eq!(
            p,
            PaymentRequest {
                order_id: None,
                method: "Credit Card".into(),
                amount: None,
            }
        );
        let p =
            payment_request(&parse(r#"{"method": "PAYPAL", "amount": 999.99}"#), false).unwrap();
        assert_eq!(p.method, "PayPal");
        assert_eq!(p.amount, Some(Money::from_minor(99_999)));
        for (method, canonical) in [
            ("Bank Transfer", "Bank Transfer"),
            ("apple-pay", "Apple Pay"),
            ("google pay", "Google Pay"),
        ] {
            let p = payment_request(&json!({"method": method}), false).unwrap();
            assert_eq!(p.method, canonical);
        }

        let message = only_error(payment_request(&json!({"method": "cash"}), false), "method");
        assert_eq!(
            message,
            "must be one of Credit Card, PayPal, Bank Transfer, Apple Pay, Google Pay"
        );
        let message = only_error(payment_request(&json!({}), false), "method");
        assert_eq!(message, "is required");
        let message = only_error(payment_request(&json!({"method": 1}), false), "method");
        assert_eq!(message, "must be a string");
        let message = only_error(
            payment_request(&json!({"method": "PayPal", "amount": "0"}), false),
            "amount",
        );
        assert_eq!(message, "must be greater than 0");
        let message = only_error(
            payment_request(&json!({"method": "PayPal", "amount": "-5"}), false),
            "amount",
        );
        assert_eq!(message, "must be greater than 0");

        // order_id is unknown unless the route takes it from the body.
        let message = only_error(
            payment_request(&json!({"method": "PayPal", "order_id": "o-1"}), false),
            "order_id",
        );
        assert_eq!(message, "unknown field: the fields are method, amount");
        let message = only_error(
            payment_request(&json!({"method": "PayPal"}), true),
            "order_id",
        );
        assert_eq!(message, "is required");
        let p = payment_request(&json!({"order_id": " o-1 ", "method": "PayPal"}), true).unwrap();
        assert_eq!(p.order_id.as_deref(), Some("o-1"));
        let message = only_error(
            payment_request(
                &json!({"order_id": "o", "method": "PayPal", "tip": 1}),
                true,
            ),
            "tip",
        );
        assert_eq!(
            message,
            "unknown field: the fields are order_id, method, amount"
        );

        // Every error, in field order.
        let fields: Vec<(String, String)> = errors(payment_request(
            &json!({"x": 1, "amount": true, "order_id": 3}),
            true,
        ));
        let names: Vec<&str> = fields.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(names, ["order_id", "method", "amount", "x"]);
    }

    #[test]
    fn delivery_requests() {
        let empty = Value::Object(Map::new());
        assert_eq!(
            delivery_request(&empty, false).unwrap(),
            DeliveryRequest {
                order_id: None,
                carrier: None,
            }
        );
        let d = delivery_request(&json!({"carrier": " DHL "}), false).unwrap();
        assert_eq!(d.carrier.as_deref(), Some("DHL"));
        let d = delivery_request(&json!({"carrier": "La Poste Pro"}), false).unwrap();
        assert_eq!(d.carrier.as_deref(), Some("La Poste Pro"));
        let d = delivery_request(&json!({"carrier": null}), false).unwrap();
        assert_eq!(d.carrier, None);

        let message = only_error(delivery_request(&json!({"carrier": ""}), false), "carrier");
        assert_eq!(message, "must not be empty");
        let message = only_error(delivery_request(&json!({"carrier": 5}), false), "carrier");
        assert_eq!(message, "must be a string");
        let long = "x".repeat(61);
        let message = only_error(
            delivery_request(&json!({"carrier": long}), false),
            "carrier",
        );
        assert_eq!(message, "is longer than 60 characters");
        assert!(delivery_request(&json!({"carrier": "x".repeat(60)}), false).is_ok());

        let message = only_error(delivery_request(&empty, true), "order_id");
        assert_eq!(message, "is required");
        let d = delivery_request(&json!({"order_id": "o-1"}), true).unwrap();
        assert_eq!(d.order_id.as_deref(), Some("o-1"));
        let message = only_error(
            delivery_request(&json!({"order_id": "o-1"}), false),
            "order_id",
        );
        assert_eq!(message, "unknown field: the fields are carrier");
        let message = only_error(
            delivery_request(&json!({"status": "Shipped"}), false),
            "status",
        );
        assert!(message.starts_with("unknown field"), "{message}");
    }

    #[test]
    fn delivery_updates() {
        assert_eq!(
            delivery_update(&json!({"status": "In Transit"})),
            Ok(DeliveryStatus::InTransit)
        );
        assert_eq!(
            delivery_update(&json!({"status": "out_for_delivery"})),
            Ok(DeliveryStatus::OutForDelivery)
        );
        let message = only_error(delivery_update(&json!({"status": "Lost"})), "status");
        assert_eq!(
            message,
            "must be one of Shipped, In Transit, Out for Delivery, Delivered"
        );
        let message = only_error(delivery_update(&json!({})), "status");
        assert_eq!(message, "is required");
        let message = only_error(delivery_update(&json!({"status": 2})), "status");
        assert_eq!(message, "must be a string");
        let fields = errors(delivery_update(
            &json!({"status": "Delivered", "carrier": "DHL"}),
        ));
        assert_eq!(fields.len(), 1);
        assert_eq!(fields[0].0, "carrier");
    }

    #[test]
    fn cancel_requests() {
        assert_eq!(cancel_request(&json!({})), Ok(None));
        assert_eq!(cancel_request(&json!({"reason": null})), Ok(None));
        assert_eq!(cancel_request(&json!({"reason": "  "})), Ok(None));
        assert_eq!(
            cancel_request(&json!({"reason": " changed my mind "})),
            Ok(Some("changed my mind".into()))
        );
        assert!(cancel_request(&json!({"reason": "é".repeat(200)})).is_ok());
        let message = only_error(
            cancel_request(&json!({"reason": "é".repeat(201)})),
            "reason",
        );
        assert_eq!(message, "is longer than 200 characters");
        let message = only_error(cancel_request(&json!({"reason": 1})), "reason");
        assert_eq!(message, "must be a string");
        let message = only_error(cancel_request(&json!({"reason": "a\nb"})), "reason");
        assert_eq!(message, "must not contain control characters");
        let message = only_error(cancel_request(&json!({"why": "x"})), "why");
        assert_eq!(message, "unknown field: the fields are reason");
    }

    #[test]
    fn invalid_displays_every_error() {
        let invalid = Invalid(vec![
            FieldError::new("a", "is required"),
            FieldError::new("b", "must be a string"),
        ]);
        assert_eq!(invalid.to_string(), "a: is required; b: must be a string");
        assert_eq!(Invalid::one("x", "y").to_string(), "x: y");
    }

    #[test]
    fn simulator_settings_are_checked_together() {
        let rate = 0.1..=200.0;
        assert_eq!(
            simulator_settings(&json!({"running": true, "rate": 5}), rate.clone()).unwrap(),
            SimulatorSettings {
                running: Some(true),
                rate: Some(5.0),
                payment_failure_rate: None,
            }
        );
        let invalid = simulator_settings(
            &json!({"running": "yes", "rate": 500, "payment_failure_rate": -1, "speed": 2}),
            rate.clone(),
        )
        .unwrap_err();
        let fields: Vec<&str> = invalid.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["running", "rate", "payment_failure_rate", "speed"]);
        assert_eq!(invalid.0[1].message, "must be a number from 0.1 to 200");
        assert!(simulator_settings(&json!([1]), rate).is_err());
    }

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_event_browser_takes_a_topic_a_partition_and_an_offset_or_a_time() {
        let q = browse_query(&params(&[("topic", "payments"), ("partition", "2")])).unwrap();
        assert_eq!(
            q,
            BrowseQuery {
                topic: TopicRole::Payments,
                partition: 2,
                limit: 50,
                start: BrowseStart::Offset(0),
            }
        );
        assert!(q.check_partition(3).is_ok());
        assert_eq!(
            q.check_partition(2).unwrap_err().0,
            "partition must be 0 to 1 for payments"
        );
        let q = browse_query(&params(&[
            ("topic", "orders"),
            ("time", "2025-06-02T09:00:00Z"),
        ]))
        .unwrap();
        assert!(matches!(q.start, BrowseStart::Time(_)));
    }

    #[test]
    fn a_bad_browser_parameter_is_named() {
        for (pairs, names) in [
            (vec![], "topic is required"),
            (vec![("topic", "refunds")], "topic must be"),
            (vec![("topic", "orders"), ("partition", "-1")], "partition"),
            (vec![("topic", "orders"), ("limit", "0")], "limit"),
            (vec![("topic", "orders"), ("limit", "201")], "limit"),
            (vec![("topic", "orders"), ("offset", "-3")], "offset"),
            (
                vec![("topic", "orders"), ("offset", "1"), ("time", "x")],
                "not both",
            ),
            (vec![("topic", "orders"), ("time", "yesterday")], "RFC 3339"),
            (
                vec![("topic", "orders"), ("time", "0001-01-01T00:00:00Z")],
                "before 1970",
            ),
        ] {
            let error = browse_query(&params(&pairs)).unwrap_err();
            assert!(error.0.contains(names), "{pairs:?}: {error}");
        }
    }

    /// A page cursor as the read model writes them, for the listing tests: `<n>_<id>`.
    fn cursor(raw: &str) -> Option<(u64, String)> {
        let (n, id) = raw.split_once('_')?;
        Some((n.parse().ok()?, id.to_string()))
    }

    #[test]
    fn a_listing_takes_its_kind_s_statuses_in_any_spelling_and_names_them_in_its_own() {
        let q = list_params(&params(&[]), Listing::Orders, cursor).unwrap();
        assert_eq!(
            q,
            ListParams {
                status: None,
                text: None,
                limit: 50,
                before: None
            }
        );
        for (listing, given, own) in [
            (Listing::Orders, "payment_failed", "Payment Failed"),
            (Listing::Orders, " Out for Delivery ", "Out for Delivery"),
            (Listing::Payments, "failed", "FAILED"),
            (Listing::Deliveries, "in-transit", "In Transit"),
        ] {
            let q = list_params(&params(&[("status", given)]), listing, cursor).unwrap();
            assert_eq!(q.status, Some(own), "{listing:?} {given:?}");
        }
        let q = list_params(
            &params(&[
                ("status", " "),
                ("q", "  lamp "),
                ("limit", "500"),
                ("cursor", "17_o-1"),
            ]),
            Listing::Payments,
            cursor,
        )
        .unwrap();
        assert_eq!(q.status, None, "a blank status lists them all");
        assert_eq!(q.text.as_deref(), Some("lamp"));
        assert_eq!(q.limit, 500);
        assert_eq!(q.before, Some((17, "o-1".to_string())));
        let blank = list_params(
            &params(&[("q", " "), ("cursor", "")]),
            Listing::Orders,
            cursor,
        );
        assert_eq!(
            (blank.clone().unwrap().text, blank.unwrap().before),
            (None, None)
        );
    }

    #[test]
    fn a_bad_listing_parameter_is_named_with_what_it_takes() {
        for (listing, pairs, message) in [
            (
                Listing::Orders,
                vec![("limit", "0")],
                r#"limit must be a whole number from 1 to 500, not "0""#,
            ),
            (
                Listing::Orders,
                vec![("limit", "501")],
                r#"limit must be a whole number from 1 to 500, not "501""#,
            ),
            (
                Listing::Orders,
                vec![("status", "Lost")],
                r#"status "Lost" is not one of Pending, Payment Failed, Paid, Shipped, In Transit, Out for Delivery, Delivered, Cancelled"#,
            ),
            (
                Listing::Payments,
                vec![("status", "Paid")],
                r#"status "Paid" is not one of SUCCESS, FAILED"#,
            ),
            (
                Listing::Deliveries,
                vec![("status", "Pending")],
                r#"status "Pending" is not one of Shipped, In Transit, Out for Delivery, Delivered"#,
            ),
            (
                Listing::Orders,
                vec![("cursor", "yesterday")],
                r#"cursor "yesterday" is not one this server gave"#,
            ),
        ] {
            let error = list_params(&params(&pairs), listing, cursor).unwrap_err();
            assert_eq!(error.0, message, "{pairs:?}");
        }
    }

    #[test]
    fn wait_is_true_or_false() {
        for (given, wait) in [
            (None, false),
            (Some("false"), false),
            (Some("0"), false),
            (Some("true"), true),
            (Some("1"), true),
            (Some(""), true),
        ] {
            assert_eq!(wait_param(given), Ok(wait), "{given:?}");
        }
        assert_eq!(
            wait_param(Some("yes")).unwrap_err().0,
            r#"wait must be true or false, not "yes""#
        );
    }

    #[test]
    fn an_idempotency_key_is_1_to_255_visible_ascii_characters() {
        assert_eq!(idempotency_key(b"order-42/retry:1"), Ok("order-42/retry:1"));
        let longest = "k".repeat(255);
        assert_eq!(idempotency_key(longest.as_bytes()), Ok(longest.as_str()));
        let invisible = "Idempotency-Key must be visible ASCII";
        let shape = "Idempotency-Key must be 1 to 255 visible ASCII characters";
        for (key, message) in [
            (&b"caf\xc3\xa9"[..], invisible),
            (b"a\x00b", invisible),
            (b"a\x7fb", invisible),
            (b"", shape),
            (b"two words", shape),
            (b"tab\there", shape),
            ("k".repeat(256).as_bytes(), shape),
        ] {
            assert_eq!(
                idempotency_key(key),
                Err(InvalidIdempotencyKey(message.into())),
                "{key:?}"
            );
        }
    }
}
