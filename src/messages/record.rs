//! Kafka record values: the JSON object shopstream writes for each event, and the one reading
//! of a record value into an [`Event`], whoever wrote it.
//!
//! Written values keep the seed's field names and meanings plus shopstream's own, in name
//! order. Reading is lenient where the seed's producers were (a number where a string was
//! meant, a missing `event_id`, relaxed status spellings) and reads amounts from their exact
//! text (see [`crate::domain::json`]).

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::domain::event::{
    DeliveryDetails, DeliveryStatus, Event, EventBody, EventType, OrderDetails, PaymentDetails,
    PaymentStatus, Position, TopicRole, UndecodableRecord, derived_event_id, format_time,
    normalise, parse_time,
};
use crate::domain::json::{self, Kind, MemberName};
use crate::domain::lifecycle::OrderStatus;
use crate::domain::money::Money;
use utoipa::{PartialSchema, ToSchema};

/// The value of an `order.created` record: the seed's order fields and shopstream's own, in
/// name order.
#[derive(Serialize, ToSchema)]
pub(crate) struct OrderCreatedValue<'a> {
    address: &'a str,
    amount: Money,
    /// ISO 4217 code.
    currency: &'a str,
    customer_email: &'a str,
    customer_name: &'a str,
    /// The de-duplication key: a UUID from shopstream, derived from the record's position for
    /// a foreign record without one.
    #[schema(format = "uuid")]
    event_id: &'a str,
    #[schema(schema_with = order_created_type)]
    event_type: &'static str,
    /// The record's key too.
    order_id: &'a str,
    product: &'a str,
    #[schema(minimum = 1)]
    quantity: u32,
    /// The seed's field: always `Pending` on a new order.
    #[schema(schema_with = pending_status)]
    status: &'static str,
    /// When the event happened: RFC 3339, UTC, microseconds.
    #[schema(format = DateTime)]
    timestamp: String,
}

/// The value of an `order.cancelled` record.
#[derive(Serialize, ToSchema)]
pub(crate) struct OrderCancelledValue<'a> {
    #[schema(format = "uuid")]
    event_id: &'a str,
    #[schema(schema_with = order_cancelled_type)]
    event_type: &'static str,
    order_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[schema(schema_with = cancelled_status)]
    status: &'static str,
    #[schema(format = DateTime)]
    timestamp: String,
}

/// The value of a `payment.processed` record.
#[derive(Serialize, ToSchema)]
pub(crate) struct PaymentValue<'a> {
    amount: Money,
    currency: &'a str,
    #[schema(format = "uuid")]
    event_id: &'a str,
    #[schema(schema_with = payment_processed_type)]
    event_type: &'static str,
    /// Why the gateway declined (`card_declined`, `insufficient_funds`, `limit_exceeded`,
    /// `amount_mismatch`); only on a failed payment.
    #[serde(skip_serializing_if = "Option::is_none")]
    failure_reason: Option<&'a str>,
    method: &'a str,
    order_id: &'a str,
    payment_id: &'a str,
    #[schema(value_type = PaymentStatus)]
    status: &'static str,
    #[schema(format = DateTime)]
    timestamp: String,
}

/// The value of a `delivery.created` or `delivery.updated` record.
#[derive(Serialize, ToSchema)]
pub(crate) struct DeliveryValue<'a> {
    address: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    carrier: Option<&'a str>,
    delivery_id: &'a str,
    /// `null` when unknown: the seed's records always have the field.
    #[schema(format = Date, required = true)]
    estimated_date: Option<String>,
    #[schema(format = "uuid")]
    event_id: &'a str,
    #[schema(schema_with = delivery_type)]
    event_type: &'static str,
    order_id: &'a str,
    #[schema(value_type = DeliveryStatus)]
    status: &'static str,
    #[schema(format = DateTime)]
    timestamp: String,
}

/// A string that can only be `value`.
fn constant(value: &str) -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
    schema(serde_json::json!({"type": "string", "enum": [value]}))
}

fn schema(value: serde_json::Value) -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
    serde_json::from_value(value).expect("a valid schema")
}

fn order_created_type() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
    constant(EventType::OrderCreated.as_str())
}

fn order_cancelled_type() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
    constant(EventType::OrderCancelled.as_str())
}

fn payment_processed_type() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
    constant(EventType::PaymentProcessed.as_str())
}

fn delivery_type() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
    schema(serde_json::json!({
        "type": "string",
        "enum": [EventType::DeliveryCreated.as_str(), EventType::DeliveryUpdated.as_str()],
    }))
}

fn pending_status() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
    constant(OrderStatus::Pending.as_str())
}

fn cancelled_status() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
    constant(OrderStatus::Cancelled.as_str())
}

/// A reference to the component schema of `T`.
fn reference<T: ToSchema>() -> serde_json::Value {
    serde_json::json!({"$ref": format!("#/components/schemas/{}", T::name())})
}

/// The value of an orders record: `order.created` or `order.cancelled`.
pub fn order_value_schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
    schema(serde_json::json!({
        "oneOf": [reference::<OrderCreatedValue<'static>>(), reference::<OrderCancelledValue<'static>>()],
    }))
}

/// The value of a payments record.
pub fn payment_value_schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
    schema(reference::<PaymentValue<'static>>())
}

/// The value of a deliveries record.
pub fn delivery_value_schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
    schema(reference::<DeliveryValue<'static>>())
}

/// The record value schemas by name, each with the schemas it refers to.
pub fn value_schemas() -> Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::Schema>)> {
    let mut schemas = Vec::new();
    for (name, schema) in [
        (OrderCreatedValue::name(), OrderCreatedValue::schema()),
        (OrderCancelledValue::name(), OrderCancelledValue::schema()),
        (PaymentValue::name(), PaymentValue::schema()),
        (DeliveryValue::name(), DeliveryValue::schema()),
    ] {
        schemas.push((name.into_owned(), schema));
    }
    OrderCreatedValue::schemas(&mut schemas);
    OrderCancelledValue::schemas(&mut schemas);
    PaymentValue::schemas(&mut schemas);
    DeliveryValue::schemas(&mut schemas);
    schemas
}

/// One record value, of whichever event.
#[derive(Serialize)]
#[serde(untagged)]
enum RecordValue<'a> {
    OrderCreated(OrderCreatedValue<'a>),
    OrderCancelled(OrderCancelledValue<'a>),
    Payment(PaymentValue<'a>),
    Delivery(DeliveryValue<'a>),
}

fn record_value(e: &Event) -> RecordValue<'_> {
    let (event_id, event_type, order_id) = (&*e.event_id, e.event_type.as_str(), &*e.order_id);
    let timestamp = format_time(e.time);
    match &e.body {
        EventBody::OrderCreated(o) => RecordValue::OrderCreated(OrderCreatedValue {
            address: &o.address,
            amount: o.amount,
            currency: &o.currency,
            customer_email: &o.customer_email,
            customer_name: &o.customer_name,
            event_id,
            event_type,
            order_id,
            product: &o.product,
            quantity: o.quantity,
            status: "Pending",
            timestamp,
        }),
        EventBody::OrderCancelled { reason } => RecordValue::OrderCancelled(OrderCancelledValue {
            event_id,
            event_type,
            order_id,
            reason: reason.as_deref(),
            status: "Cancelled",
            timestamp,
        }),
        EventBody::PaymentProcessed(p) => RecordValue::Payment(PaymentValue {
            amount: p.amount,
            currency: &p.currency,
            event_id,
            event_type,
            failure_reason: p.failure_reason.as_deref(),
            method: &p.method,
            order_id,
            payment_id: &p.payment_id,
            status: p.status.as_str(),
            timestamp,
        }),
        EventBody::Delivery(d) => RecordValue::Delivery(DeliveryValue {
            address: &d.address,
            carrier: d.carrier.as_deref(),
            delivery_id: &d.delivery_id,
            estimated_date: d.estimated_date.map(|d| d.format("%Y-%m-%d").to_string()),
            event_id,
            event_type,
            order_id,
            status: d.status.as_str(),
            timestamp,
        }),
    }
}

/// The fields shopstream reads from a record value, each as its raw text; any other field is
/// skipped without being looked at. A field given twice keeps its last value, as a parsed
/// `serde_json::Value` did.
#[derive(Default)]
struct RecordFields<'a> {
    order_id: Option<&'a RawValue>,
    timestamp: Option<&'a RawValue>,
    event_id: Option<&'a RawValue>,
    event_type: Option<&'a RawValue>,
    status: Option<&'a RawValue>,
    reason: Option<&'a RawValue>,
    customer_name: Option<&'a RawValue>,
    customer_email: Option<&'a RawValue>,
    product: Option<&'a RawValue>,
    quantity: Option<&'a RawValue>,
    amount: Option<&'a RawValue>,
    currency: Option<&'a RawValue>,
    address: Option<&'a RawValue>,
    payment_id: Option<&'a RawValue>,
    method: Option<&'a RawValue>,
    failure_reason: Option<&'a RawValue>,
    delivery_id: Option<&'a RawValue>,
    estimated_date: Option<&'a RawValue>,
    carrier: Option<&'a RawValue>,
}

impl<'a> RecordFields<'a> {
    /// Where the field `name` goes, `None` for a field shopstream does not read.
    fn slot(&mut self, name: &str) -> Option<&mut Option<&'a RawValue>> {
        Some(match name {
            "order_id" => &mut self.order_id,
            "timestamp" => &mut self.timestamp,
            "event_id" => &mut self.event_id,
            "event_type" => &mut self.event_type,
            "status" => &mut self.status,
            "reason" => &mut self.reason,
            "customer_name" => &mut self.customer_name,
            "customer_email" => &mut self.customer_email,
            "product" => &mut self.product,
            "quantity" => &mut self.quantity,
            "amount" => &mut self.amount,
            "currency" => &mut self.currency,
            "address" => &mut self.address,
            "payment_id" => &mut self.payment_id,
            "method" => &mut self.method,
            "failure_reason" => &mut self.failure_reason,
            "delivery_id" => &mut self.delivery_id,
            "estimated_date" => &mut self.estimated_date,
            "carrier" => &mut self.carrier,
            _ => return None,
        })
    }
}

impl<'de> Deserialize<'de> for RecordFields<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = RecordFields<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<RecordFields<'de>, M::Error> {
                let mut fields = RecordFields::default();
                while let Some(MemberName(name)) = map.next_key::<MemberName<'de>>()? {
                    match fields.slot(&name) {
                        Some(slot) => *slot = map.next_value::<Option<&'de RawValue>>()?,
                        None => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(fields)
            }
        }
        deserializer.deserialize_map(Visit)
    }
}

/// A text field: a string, or a number's text (the seed's producers sometimes wrote ids as
/// numbers); `None` for anything else.
fn text(value: Option<&RawValue>) -> Option<String> {
    let value = value?;
    match Kind::of(value) {
        Kind::String => json::string(value),
        Kind::Number => json::number(value).map(str::to_owned),
        _ => None,
    }
}

impl Event {
    /// The record value: one JSON object in the seed's shape plus shopstream's fields.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&record_value(self)).expect("an event always serialises")
    }

    /// The record value as JSON that needs no parse to be sent on as it is (a write's answer
    /// embeds it): `RawValue::from_string` would parse again what was just encoded.
    pub fn to_raw_json(&self) -> Box<RawValue> {
        serde_json::value::to_raw_value(&record_value(self)).expect("an event always serialises")
    }

    /// The record value as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&record_value(self)).expect("an event always serialises")
    }

    /// Decodes a record value read from `position`. `record_time` (the Kafka timestamp) stands
    /// in for a missing `timestamp`; a record without `event_id` gets one derived from its
    /// position, so that replays of a foreign record are recognised as the same event.
    ///
    /// # Errors
    /// [`UndecodableRecord`] saying why the record is not an event.
    pub fn decode(
        value: &[u8],
        position: Position,
        topic_name: &str,
        record_time: DateTime<Utc>,
    ) -> Result<Event, UndecodableRecord> {
        // serde_json checks the text of the fields it reads, not of those it skips; the record
        // value is kept and sent on as text, so all of it must be UTF-8.
        let text = std::str::from_utf8(value)
            .map_err(|e| UndecodableRecord(format!("not JSON: not UTF-8 ({e})")))?;
        // The same bound as request bodies: serde_json skips unknown fields without one, and
        // the value is sent on to clients whose parsers stop at about this depth.
        if json::nesting_depth(value, json::MAX_DEPTH) > json::MAX_DEPTH {
            return Err(UndecodableRecord(format!(
                "nested more than {} levels deep",
                json::MAX_DEPTH
            )));
        }
        let fields: RecordFields<'_> = serde_json::from_str(text).map_err(|e| {
            let first = value.iter().find(|b| !b.is_ascii_whitespace());
            UndecodableRecord(if e.is_syntax() || e.is_eof() {
                format!("not JSON: {e}")
            } else if first != Some(&b'{') {
                "not a JSON object".into()
            } else {
                format!("unreadable record: {e}")
            })
        })?;
        decode_fields(&fields, position, topic_name, record_time)
    }
}

fn decode_fields(
    f: &RecordFields<'_>,
    position: Position,
    topic_name: &str,
    record_time: DateTime<Utc>,
) -> Result<Event, UndecodableRecord> {
    let required = |name: &str, value: Option<&RawValue>| {
        text(value)
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| UndecodableRecord(format!("no `{name}`")))
    };
    let money = |name: &str, value: Option<&RawValue>| -> Result<Money, UndecodableRecord> {
        let value = value.ok_or_else(|| UndecodableRecord(format!("no `{name}`")))?;
        Money::from_json(value).map_err(|e| UndecodableRecord(format!("`{name}`: {e}")))
    };

    let order_id = required("order_id", f.order_id)?;
    let time = match text(f.timestamp) {
        Some(t) => parse_time(&t)
            .ok_or_else(|| UndecodableRecord(format!("`timestamp` {t:?} is not a date-time")))?,
        None => record_time,
    };
    let event_id = text(f.event_id)
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| derived_event_id(topic_name, position.partition, position.offset));
    let declared = match text(f.event_type) {
        Some(t) => Some(
            EventType::parse(&t)
                .ok_or_else(|| UndecodableRecord(format!("unknown event_type {t:?}")))?,
        ),
        None => None,
    };
    let status = text(f.status).unwrap_or_default();

    let (event_type, body) = match position.topic {
        TopicRole::Orders => {
            let cancelled = match declared {
                Some(EventType::OrderCancelled) => true,
                Some(EventType::OrderCreated) => false,
                None => normalise(&status) == "cancelled",
                Some(other) => {
                    return Err(UndecodableRecord(format!(
                        "{} on the orders topic",
                        other.as_str()
                    )));
                }
            };
            if cancelled {
                (
                    EventType::OrderCancelled,
                    EventBody::OrderCancelled {
                        reason: text(f.reason),
                    },
                )
            } else {
                let quantity = match f.quantity {
                    None => 1,
                    Some(q) => json::number(q)
                        .and_then(|q| q.parse::<u32>().ok())
                        .ok_or_else(|| UndecodableRecord("`quantity` is not a count".into()))?,
                };
                let details = OrderDetails {
                    customer_name: required("customer_name", f.customer_name)?,
                    customer_email: text(f.customer_email).unwrap_or_default(),
                    product: required("product", f.product)?,
                    quantity,
                    amount: money("amount", f.amount)?,
                    currency: text(f.currency).unwrap_or_else(|| "EUR".into()),
                    address: text(f.address).unwrap_or_default(),
                };
                (EventType::OrderCreated, EventBody::OrderCreated(details))
            }
        }
        TopicRole::Payments => {
            if declared.is_some_and(|t| t != EventType::PaymentProcessed) {
                return Err(UndecodableRecord(
                    "not a payment event on the payments topic".into(),
                ));
            }
            let status = match normalise(&status).as_str() {
                "success" | "succeeded" | "paid" => PaymentStatus::Success,
                "failed" | "failure" | "declined" => PaymentStatus::Failed,
                _ => return Err(UndecodableRecord(format!("payment `status` {status:?}"))),
            };
            let details = PaymentDetails {
                payment_id: text(f.payment_id).unwrap_or_else(|| event_id.clone()),
                amount: money("amount", f.amount)?,
                currency: text(f.currency).unwrap_or_else(|| "EUR".into()),
                method: text(f.method).unwrap_or_else(|| "unknown".into()),
                status,
                failure_reason: text(f.failure_reason),
            };
            (
                EventType::PaymentProcessed,
                EventBody::PaymentProcessed(details),
            )
        }
        TopicRole::Deliveries => {
            let event_type = match declared {
                None | Some(EventType::DeliveryUpdated) => EventType::DeliveryUpdated,
                Some(EventType::DeliveryCreated) => EventType::DeliveryCreated,
                Some(_) => {
                    return Err(UndecodableRecord(
                        "not a delivery event on the deliveries topic".into(),
                    ));
                }
            };
            let status = DeliveryStatus::parse(&status)
                .ok_or_else(|| UndecodableRecord(format!("delivery `status` {status:?}")))?;
            let estimated_date = match text(f.estimated_date) {
                Some(d) => Some(
                    NaiveDate::parse_from_str(&d, "%Y-%m-%d")
                        .map_err(|_| UndecodableRecord(format!("`estimated_date` {d:?}")))?,
                ),
                None => None,
            };
            let details = DeliveryDetails {
                delivery_id: text(f.delivery_id).unwrap_or_else(|| format!("delivery-{order_id}")),
                address: text(f.address).unwrap_or_default(),
                status,
                estimated_date,
                carrier: text(f.carrier),
            };
            (event_type, EventBody::Delivery(details))
        }
    };
    let event = Event {
        event_id,
        event_type,
        order_id,
        time,
        body,
    };
    check_bounds(&event)?;
    Ok(event)
}

/// Most characters of an id (order, event, payment, delivery): ids become keys of the store,
/// whose keys are bounded, and appear in every list row.
pub const MAX_ID_CHARS: usize = 128;
/// Most characters of a free-text field (names, email, product, address, method, reasons):
/// far above what the API accepts (an address of 300), so that other producers' records are
/// read as they are, while a field of megabytes is not copied into every list row.
pub const MAX_TEXT_CHARS: usize = 10_000;

/// What a record from any producer must respect to be applied: ids short and without control
/// characters, free text bounded (line breaks and tabs allowed), amounts not negative. A record
/// that does not is skipped with the reason, like any other undecodable record.
fn check_bounds(event: &Event) -> Result<(), UndecodableRecord> {
    let id = |name: &str, value: &str| {
        if value.chars().count() > MAX_ID_CHARS {
            return Err(UndecodableRecord(format!(
                "`{name}` is longer than {MAX_ID_CHARS} characters"
            )));
        }
        if value.chars().any(char::is_control) {
            return Err(UndecodableRecord(format!(
                "`{name}` holds control characters"
            )));
        }
        Ok(())
    };
    let free = |name: &str, value: &str| {
        if value.chars().count() > MAX_TEXT_CHARS {
            return Err(UndecodableRecord(format!(
                "`{name}` is longer than {MAX_TEXT_CHARS} characters"
            )));
        }
        if value
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            return Err(UndecodableRecord(format!(
                "`{name}` holds control characters"
            )));
        }
        Ok(())
    };
    let amount = |name: &str, value: Money| {
        if value.minor() < 0 {
            return Err(UndecodableRecord(format!("`{name}` is negative")));
        }
        Ok(())
    };
    id("order_id", &event.order_id)?;
    id("event_id", &event.event_id)?;
    match &event.body {
        EventBody::OrderCreated(o) => {
            free("customer_name", &o.customer_name)?;
            free("customer_email", &o.customer_email)?;
            free("product", &o.product)?;
            free("address", &o.address)?;
            id("currency", &o.currency)?;
            amount("amount", o.amount)?;
        }
        EventBody::OrderCancelled { reason } => free("reason", reason.as_deref().unwrap_or(""))?,
        EventBody::PaymentProcessed(p) => {
            id("payment_id", &p.payment_id)?;
            id("currency", &p.currency)?;
            free("method", &p.method)?;
            free("failure_reason", p.failure_reason.as_deref().unwrap_or(""))?;
            amount("amount", p.amount)?;
        }
        EventBody::Delivery(d) => {
            id("delivery_id", &d.delivery_id)?;
            free("address", &d.address)?;
            free("carrier", d.carrier.as_deref().unwrap_or(""))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::Value;

    fn at(topic: TopicRole, offset: i64) -> Position {
        Position {
            topic,
            partition: 1,
            offset,
        }
    }

    fn kafka_time() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap()
    }

    fn sample_order() -> Event {
        Event {
            event_id: "0b7e6c8e-3f55-4a4e-9f0c-0a9d1f3c7a11".into(),
            event_type: EventType::OrderCreated,
            order_id: "123e4567-e89b-12d3-a456-426614174000".into(),
            time: Utc.with_ymd_and_hms(2024, 1, 29, 10, 30, 15).unwrap(),
            body: EventBody::OrderCreated(OrderDetails {
                customer_name: "Jean Dupont".into(),
                customer_email: "jean.dupont@example.com".into(),
                product: "Laptop".into(),
                quantity: 1,
                amount: Money::from_minor(99_999),
                currency: "EUR".into(),
                address: "123 Rue de Paris, 75000 Paris".into(),
            }),
        }
    }

    #[test]
    fn our_order_record_keeps_every_seed_field_and_round_trips() {
        let event = sample_order();
        let text = event.to_json();
        // The amount is a number with its two decimals, as written.
        assert!(text.contains(r#""amount":999.99,"#), "{text}");
        let value: Value = serde_json::from_str(&text).unwrap();
        for field in [
            "order_id",
            "customer_name",
            "customer_email",
            "product",
            "amount",
            "status",
            "timestamp",
            "address",
        ] {
            assert!(value.get(field).is_some(), "seed field {field} missing");
        }
        assert_eq!(value["status"], "Pending");
        assert_eq!(value["timestamp"], "2024-01-29T10:30:15.000000Z");
        // Fields in name order, as they always were written.
        let names: Vec<&String> = value.as_object().unwrap().keys().collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        let decoded = Event::decode(
            &event.to_bytes(),
            at(TopicRole::Orders, 0),
            "orders",
            kafka_time(),
        )
        .unwrap();
        assert_eq!(decoded, event);
    }

    #[test]
    fn every_kind_round_trips() {
        let base = sample_order();
        let events = [
            Event {
                event_type: EventType::OrderCancelled,
                body: EventBody::OrderCancelled {
                    reason: Some("customer request".into()),
                },
                ..base.clone()
            },
            Event {
                event_type: EventType::PaymentProcessed,
                body: EventBody::PaymentProcessed(PaymentDetails {
                    payment_id: "p-1".into(),
                    amount: Money::from_minor(99_999),
                    currency: "EUR".into(),
                    method: "Credit Card".into(),
                    status: PaymentStatus::Failed,
                    failure_reason: Some("card_declined".into()),
                }),
                ..base.clone()
            },
            Event {
                event_type: EventType::DeliveryCreated,
                body: EventBody::Delivery(DeliveryDetails {
                    delivery_id: "d-1".into(),
                    address: "1 Main St".into(),
                    status: DeliveryStatus::Shipped,
                    estimated_date: NaiveDate::from_ymd_opt(2024, 2, 5),
                    carrier: Some("DHL".into()),
                }),
                ..base.clone()
            },
            Event {
                event_type: EventType::DeliveryUpdated,
                body: EventBody::Delivery(DeliveryDetails {
                    delivery_id: "d-1".into(),
                    address: "1 Main St".into(),
                    status: DeliveryStatus::InTransit,
                    estimated_date: None,
                    carrier: None,
                }),
                ..base.clone()
            },
        ];
        for event in events {
            let topic = event.event_type.topic();
            let decoded =
                Event::decode(&event.to_bytes(), at(topic, 3), "x", kafka_time()).unwrap();
            assert_eq!(decoded, event);
        }
    }

    #[test]
    fn seed_records_without_event_id_are_understood() {
        let order = br#"{"order_id": "123e4567-e89b-12d3-a456-426614174000", "customer_name": "Jean Dupont",
            "customer_email": "jean.dupont@example.com", "product": "Laptop", "amount": 999.99,
            "status": "Pending", "timestamp": "2024-01-29T10:30:15.123456", "address": "123 Rue de Paris, 75000 Paris"}"#;
        let e = Event::decode(order, at(TopicRole::Orders, 7), "orders", kafka_time()).unwrap();
        assert_eq!(e.event_type, EventType::OrderCreated);
        assert_eq!(e.event_id, derived_event_id("orders", 1, 7));
        assert_eq!(format_time(e.time), "2024-01-29T10:30:15.123456Z");
        let EventBody::OrderCreated(o) = &e.body else {
            panic!()
        };
        assert_eq!(o.amount, Money::from_minor(99_999));
        assert_eq!(o.quantity, 1);

        let payment = br#"{"payment_id": "987f6543-e89b-12d3-a456-426614174000", "order_id": "123e4567-e89b-12d3-a456-426614174000",
            "amount": 999.99, "method": "Credit Card", "status": "SUCCESS", "timestamp": "2024-01-29T10:30:20.123456"}"#;
        let e = Event::decode(
            payment,
            at(TopicRole::Payments, 0),
            "payments",
            kafka_time(),
        )
        .unwrap();
        assert!(matches!(
            e.body,
            EventBody::PaymentProcessed(PaymentDetails {
                status: PaymentStatus::Success,
                ..
            })
        ));

        let delivery = br#"{"delivery_id": "654a3210-e89b-12d3-a456-426614174000", "order_id": "123e4567-e89b-12d3-a456-426614174000",
            "address": "123 Rue de Paris, 75000 Paris", "status": "In Transit", "estimated_date": "2024-02-05",
            "timestamp": "2024-01-29T10:30:25.123456"}"#;
        let e = Event::decode(
            delivery,
            at(TopicRole::Deliveries, 0),
            "deliveries",
            kafka_time(),
        )
        .unwrap();
        assert_eq!(e.event_type, EventType::DeliveryUpdated);
        assert!(matches!(
            e.body,
            EventBody::Delivery(DeliveryDetails {
                status: DeliveryStatus::InTransit,
                ..
            })
        ));
    }

    #[test]
    fn numbers_keep_their_digits_and_ids_may_be_numbers() {
        let order = br#"{"order_id": 12345678901234567890123, "customer_name": "A", "product": "P",
            "amount": 12345678901234.56, "quantity": 3, "unknown": {"deep": [1, 2, {"x": 1e400}]}}"#;
        let e = Event::decode(order, at(TopicRole::Orders, 0), "orders", kafka_time()).unwrap();
        assert_eq!(e.order_id, "12345678901234567890123");
        let EventBody::OrderCreated(o) = &e.body else {
            panic!()
        };
        assert_eq!(o.amount, Money::from_minor(1_234_567_890_123_456));
        assert_eq!(o.quantity, 3);
    }

    #[test]
    fn a_field_given_twice_keeps_its_last_value_and_names_may_be_escaped() {
        let order =
            br#"{"order_id": "first", "order_id": "o-2", "customer_name": "A", "product": "P",
            "amo\u0075nt": 5, "x": {"order_id": "nested"}}"#;
        let e = Event::decode(order, at(TopicRole::Orders, 0), "orders", kafka_time()).unwrap();
        assert_eq!(e.order_id, "o-2");
        let EventBody::OrderCreated(o) = &e.body else {
            panic!()
        };
        assert_eq!(o.amount, Money::from_minor(500));
    }

    #[test]
    fn bytes_that_are_not_utf8_anywhere_are_refused() {
        let mut order =
            br#"{"order_id": "o", "customer_name": "A", "product": "P", "amount": 5, "note": "x"}"#
                .to_vec();
        let at_x = order.iter().rposition(|&b| b == b'x').unwrap();
        order[at_x] = 0xff;
        let err =
            Event::decode(&order, at(TopicRole::Orders, 0), "orders", kafka_time()).unwrap_err();
        assert!(err.0.contains("not UTF-8"), "{err}");
    }

    #[test]
    fn a_missing_timestamp_falls_back_to_the_record_time() {
        let e = Event::decode(
            br#"{"order_id":"o","customer_name":"A","product":"P","amount":"5"}"#,
            at(TopicRole::Orders, 0),
            "orders",
            kafka_time(),
        )
        .unwrap();
        assert_eq!(e.time, kafka_time());
    }

    #[test]
    fn unknown_shapes_are_refused_with_a_reason() {
        let cases: [(&[u8], TopicRole, &str); 10] = [
            (b"not json", TopicRole::Orders, "not JSON"),
            (b"{\"order_id\": ", TopicRole::Orders, "not JSON"),
            (b"[1,2]", TopicRole::Orders, "not a JSON object"),
            (br#"{"customer_name":"A"}"#, TopicRole::Orders, "order_id"),
            (br#"{"order_id":"o","customer_name":"A","product":"P","amount":1.234}"#, TopicRole::Orders, "amount"),
            (br#"{"order_id":"o","customer_name":"A","product":"P","amount":1,"quantity":2.0}"#, TopicRole::Orders, "quantity"),
            (br#"{"order_id":"o","amount":1,"status":"MAYBE"}"#, TopicRole::Payments, "status"),
            (br#"{"order_id":"o","status":"Lost"}"#, TopicRole::Deliveries, "status"),
            (br#"{"order_id":"o","event_type":"order.exploded"}"#, TopicRole::Orders, "event_type"),
            (br#"{"order_id":"o","customer_name":"A","product":"P","amount":1,"timestamp":"yesterday"}"#, TopicRole::Orders, "timestamp"),
        ];
        for (bytes, topic, needle) in cases {
            let err = Event::decode(bytes, at(topic, 0), "t", kafka_time()).unwrap_err();
            assert!(err.0.contains(needle), "{err} should mention {needle}");
        }
    }

    #[test]
    fn oversized_ids_control_characters_and_negative_amounts_are_undecodable() {
        let order = |order_id: &str, name: &str, amount: &str| {
            format!(
                r#"{{"order_id": {}, "customer_name": {}, "product": "Lamp", "amount": {amount}}}"#,
                Value::from(order_id),
                Value::from(name)
            )
        };
        let decode = |value: String| {
            Event::decode(
                value.as_bytes(),
                at(TopicRole::Orders, 3),
                "orders",
                kafka_time(),
            )
        };
        let long_id = "o".repeat(MAX_ID_CHARS + 1);
        let reason = decode(order(&long_id, "Ann", "1.00")).unwrap_err().0;
        assert!(reason.contains("`order_id` is longer"), "{reason}");
        let reason = decode(order("o\u{1}x", "Ann", "1.00")).unwrap_err().0;
        assert!(reason.contains("control characters"), "{reason}");
        let reason = decode(order("o-1", &"n".repeat(MAX_TEXT_CHARS + 1), "1.00"))
            .unwrap_err()
            .0;
        assert!(reason.contains("`customer_name` is longer"), "{reason}");
        let reason = decode(order("o-1", "Ann", "-5.00")).unwrap_err().0;
        assert!(reason.contains("negative"), "{reason}");
        // A line break in free text is fine; the largest amount is read exactly.
        let ok = decode(order("o-1", "Ann\nLee", "999999999999999.99")).unwrap();
        match ok.body {
            EventBody::OrderCreated(o) => assert_eq!(o.amount.minor(), 99_999_999_999_999_999),
            other => panic!("{other:?}"),
        }
    }
}
