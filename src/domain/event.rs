//! Events and their Kafka records.
//!
//! One JSON object per record value. Every field of the seed's three shapes keeps its name and
//! meaning (so producers and consumers written against the seed still work), and shopstream
//! adds `event_id` (the de-duplication key), `event_type` and what a real shop needs
//! (quantity, currency, carrier, failure reason). Decoding is lenient where it can be: a
//! seed-shaped record with no `event_id`, naive timestamps and `amount` as a JSON number is
//! understood; what is not JSON or not a known shape is an [`UndecodableRecord`].

use std::fmt;

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::money::Money;

/// The three topics, by the role they play (their names may carry a prefix).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum TopicRole {
    Orders,
    Payments,
    Deliveries,
}

impl TopicRole {
    pub const ALL: [TopicRole; 3] = [
        TopicRole::Orders,
        TopicRole::Payments,
        TopicRole::Deliveries,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TopicRole::Orders => "orders",
            TopicRole::Payments => "payments",
            TopicRole::Deliveries => "deliveries",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The seed's Socket.IO event name for a record of this topic.
    pub fn seed_event_name(self) -> &'static str {
        match self {
            TopicRole::Orders => "new_order",
            TopicRole::Payments => "new_payment",
            TopicRole::Deliveries => "new_delivery",
        }
    }
}

impl fmt::Display for TopicRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a record sits in Kafka.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Position {
    pub topic: TopicRole,
    pub partition: i32,
    pub offset: i64,
}

/// What happened, as `event_type` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum EventType {
    #[serde(rename = "order.created")]
    OrderCreated,
    #[serde(rename = "order.cancelled")]
    OrderCancelled,
    #[serde(rename = "payment.processed")]
    PaymentProcessed,
    #[serde(rename = "delivery.created")]
    DeliveryCreated,
    #[serde(rename = "delivery.updated")]
    DeliveryUpdated,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::OrderCreated => "order.created",
            EventType::OrderCancelled => "order.cancelled",
            EventType::PaymentProcessed => "payment.processed",
            EventType::DeliveryCreated => "delivery.created",
            EventType::DeliveryUpdated => "delivery.updated",
        }
    }

    pub fn topic(self) -> TopicRole {
        match self {
            EventType::OrderCreated | EventType::OrderCancelled => TopicRole::Orders,
            EventType::PaymentProcessed => TopicRole::Payments,
            EventType::DeliveryCreated | EventType::DeliveryUpdated => TopicRole::Deliveries,
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            EventType::OrderCreated,
            EventType::OrderCancelled,
            EventType::PaymentProcessed,
            EventType::DeliveryCreated,
            EventType::DeliveryUpdated,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }
}

/// The customer's order as placed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OrderDetails {
    pub customer_name: String,
    pub customer_email: String,
    pub product: String,
    pub quantity: u32,
    /// The order's total.
    pub amount: Money,
    pub currency: String,
    pub address: String,
}

/// Outcome of a payment, with the seed's spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum PaymentStatus {
    #[serde(rename = "SUCCESS")]
    Success,
    #[serde(rename = "FAILED")]
    Failed,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Success => "SUCCESS",
            PaymentStatus::Failed => "FAILED",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PaymentDetails {
    pub payment_id: String,
    pub amount: Money,
    /// The order's currency (records without one are taken as EUR, like orders).
    pub currency: String,
    pub method: String,
    pub status: PaymentStatus,
    pub failure_reason: Option<String>,
}

/// Where a parcel is, with the seed's spelling ("In Transit", ...). Ordered: a delivery only
/// moves forward.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum DeliveryStatus {
    #[serde(rename = "Shipped")]
    Shipped,
    #[serde(rename = "In Transit")]
    InTransit,
    #[serde(rename = "Out for Delivery")]
    OutForDelivery,
    #[serde(rename = "Delivered")]
    Delivered,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 4] = [
        DeliveryStatus::Shipped,
        DeliveryStatus::InTransit,
        DeliveryStatus::OutForDelivery,
        DeliveryStatus::Delivered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Shipped => "Shipped",
            DeliveryStatus::InTransit => "In Transit",
            DeliveryStatus::OutForDelivery => "Out for Delivery",
            DeliveryStatus::Delivered => "Delivered",
        }
    }

    /// Accepts the seed's spelling and relaxed forms (`in_transit`, `IN TRANSIT`, `InTransit`).
    pub fn parse(s: &str) -> Option<Self> {
        let wanted = normalise(s);
        Self::ALL
            .into_iter()
            .find(|d| normalise(d.as_str()) == wanted)
    }
}

/// Lower-case letters and digits only: "Out for Delivery" == "out_for_delivery".
pub fn normalise(s: &str) -> String {
    s.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeliveryDetails {
    pub delivery_id: String,
    pub address: String,
    pub status: DeliveryStatus,
    pub estimated_date: Option<NaiveDate>,
    pub carrier: Option<String>,
}

/// What an event says, by kind.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum EventBody {
    OrderCreated(OrderDetails),
    OrderCancelled { reason: Option<String> },
    PaymentProcessed(PaymentDetails),
    Delivery(DeliveryDetails),
}

/// One topic as the broker knows it (learnt by `kafka::topics`, kept by the store so that a
/// changed layout is noticed).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TopicInfo {
    /// Which of the three topics this is.
    pub role: TopicRole,
    /// Full name on the broker.
    pub name: String,
    pub partitions: i32,
}

/// The three topics shopstream uses, in the order of [`TopicRole::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TopicLayout {
    pub topics: Vec<TopicInfo>,
}

impl TopicLayout {
    /// The topic playing `role`.
    pub fn get(&self, role: TopicRole) -> &TopicInfo {
        self.topics
            .iter()
            .find(|t| t.role == role)
            .expect("a layout always holds the three topics")
    }

    /// The role of a full topic name, if it is one of ours.
    pub fn role_of(&self, name: &str) -> Option<TopicRole> {
        self.topics.iter().find(|t| t.name == name).map(|t| t.role)
    }
}

/// One event, decoded from a record or about to be encoded into one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Event {
    pub event_id: String,
    pub event_type: EventType,
    pub order_id: String,
    pub time: DateTime<Utc>,
    pub body: EventBody,
}

/// Header names on every record shopstream writes.
pub mod headers {
    pub const EVENT_TYPE: &str = "event-type";
    pub const CONTENT_TYPE: &str = "content-type";
    pub const PRODUCER: &str = "producer";
    /// The client's `Idempotency-Key`, when it sent one.
    pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
    /// Fingerprint of the request that carried the key (a different body under the same key
    /// is refused with 422).
    pub const REQUEST_FINGERPRINT: &str = "request-fingerprint";
}

/// Timestamps as shopstream writes them: RFC 3339, UTC, microseconds.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// RFC 3339, or the seed's naive `2024-01-29T10:30:15.123456` (taken as UTC).
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .map(|n| n.and_utc())
}

impl Event {
    /// The record value: one JSON object in the seed's shape plus shopstream's fields.
    pub fn to_value(&self) -> Value {
        let mut v = Map::new();
        v.insert("event_id".into(), json!(self.event_id));
        v.insert("event_type".into(), json!(self.event_type.as_str()));
        v.insert("order_id".into(), json!(self.order_id));
        v.insert("timestamp".into(), json!(format_time(self.time)));
        match &self.body {
            EventBody::OrderCreated(o) => {
                insert_order(&mut v, o);
                v.insert("status".into(), json!("Pending"));
            }
            EventBody::OrderCancelled { reason } => {
                v.insert("status".into(), json!("Cancelled"));
                if let Some(r) = reason {
                    v.insert("reason".into(), json!(r));
                }
            }
            EventBody::PaymentProcessed(p) => {
                v.insert("payment_id".into(), json!(p.payment_id));
                v.insert("amount".into(), json!(p.amount));
                v.insert("currency".into(), json!(p.currency));
                v.insert("method".into(), json!(p.method));
                v.insert("status".into(), json!(p.status.as_str()));
                if let Some(r) = &p.failure_reason {
                    v.insert("failure_reason".into(), json!(r));
                }
            }
            EventBody::Delivery(d) => {
                v.insert("delivery_id".into(), json!(d.delivery_id));
                v.insert("address".into(), json!(d.address));
                v.insert("status".into(), json!(d.status.as_str()));
                v.insert(
                    "estimated_date".into(),
                    json!(d.estimated_date.map(|d| d.format("%Y-%m-%d").to_string())),
                );
                if let Some(c) = &d.carrier {
                    v.insert("carrier".into(), json!(c));
                }
            }
        }
        Value::Object(v)
    }

    /// The record value as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.to_value()).expect("an event always serialises")
    }

    /// Decodes a record value read from `position`. `record_time` (the Kafka timestamp) stands
    /// in for a missing `timestamp`; a record without `event_id` gets one derived from its
    /// position, so that replays of a foreign record are recognised as the same event.
    pub fn decode(
        value: &[u8],
        position: Position,
        topic_name: &str,
        record_time: DateTime<Utc>,
    ) -> Result<(Event, Value), UndecodableRecord> {
        let value: Value = serde_json::from_slice(value)
            .map_err(|e| UndecodableRecord(format!("not JSON: {e}")))?;
        let object = value
            .as_object()
            .ok_or_else(|| UndecodableRecord("not a JSON object".into()))?;
        let event = decode_object(object, position, topic_name, record_time)?;
        Ok((event, value))
    }
}

fn insert_order(v: &mut Map<String, Value>, o: &OrderDetails) {
    v.insert("customer_name".into(), json!(o.customer_name));
    v.insert("customer_email".into(), json!(o.customer_email));
    v.insert("product".into(), json!(o.product));
    v.insert("quantity".into(), json!(o.quantity));
    v.insert("amount".into(), json!(o.amount));
    v.insert("currency".into(), json!(o.currency));
    v.insert("address".into(), json!(o.address));
}

/// Why a record was skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UndecodableRecord(pub String);

/// The id of a record written without `event_id`: the same record always gets the same id.
pub fn derived_event_id(topic_name: &str, partition: i32, offset: i64) -> String {
    Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("shopstream/{topic_name}/{partition}/{offset}").as_bytes(),
    )
    .to_string()
}

fn decode_object(
    o: &Map<String, Value>,
    position: Position,
    topic_name: &str,
    record_time: DateTime<Utc>,
) -> Result<Event, UndecodableRecord> {
    let text = |name: &str| -> Option<String> {
        match o.get(name)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    let required = |name: &str| {
        text(name)
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| UndecodableRecord(format!("no `{name}`")))
    };
    let money = |name: &str| -> Result<Money, UndecodableRecord> {
        let v = o
            .get(name)
            .ok_or_else(|| UndecodableRecord(format!("no `{name}`")))?;
        Money::from_json(v).map_err(|e| UndecodableRecord(format!("`{name}`: {e}")))
    };

    let order_id = required("order_id")?;
    let time = match text("timestamp") {
        Some(t) => parse_time(&t)
            .ok_or_else(|| UndecodableRecord(format!("`timestamp` {t:?} is not a date-time")))?,
        None => record_time,
    };
    let event_id = text("event_id")
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| derived_event_id(topic_name, position.partition, position.offset));
    let declared = match text("event_type") {
        Some(t) => Some(
            EventType::parse(&t)
                .ok_or_else(|| UndecodableRecord(format!("unknown event_type {t:?}")))?,
        ),
        None => None,
    };
    let status = text("status").unwrap_or_default();

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
                        reason: text("reason"),
                    },
                )
            } else {
                let quantity = match o.get("quantity") {
                    None | Some(Value::Null) => 1,
                    Some(q) => q
                        .as_u64()
                        .and_then(|q| u32::try_from(q).ok())
                        .ok_or_else(|| UndecodableRecord("`quantity` is not a count".into()))?,
                };
                let details = OrderDetails {
                    customer_name: required("customer_name")?,
                    customer_email: text("customer_email").unwrap_or_default(),
                    product: required("product")?,
                    quantity,
                    amount: money("amount")?,
                    currency: text("currency").unwrap_or_else(|| "EUR".into()),
                    address: text("address").unwrap_or_default(),
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
                payment_id: text("payment_id").unwrap_or_else(|| event_id.clone()),
                amount: money("amount")?,
                currency: text("currency").unwrap_or_else(|| "EUR".into()),
                method: text("method").unwrap_or_else(|| "unknown".into()),
                status,
                failure_reason: text("failure_reason"),
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
            let estimated_date = match text("estimated_date") {
                Some(d) => Some(
                    NaiveDate::parse_from_str(&d, "%Y-%m-%d")
                        .map_err(|_| UndecodableRecord(format!("`estimated_date` {d:?}")))?,
                ),
                None => None,
            };
            let details = DeliveryDetails {
                delivery_id: text("delivery_id").unwrap_or_else(|| format!("delivery-{order_id}")),
                address: text("address").unwrap_or_default(),
                status,
                estimated_date,
                carrier: text("carrier"),
            };
            (event_type, EventBody::Delivery(details))
        }
    };
    Ok(Event {
        event_id,
        event_type,
        order_id,
        time,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

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
        let value = event.to_value();
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
        assert_eq!(value["amount"].to_string(), "999.99");
        assert_eq!(value["timestamp"], "2024-01-29T10:30:15.000000Z");
        let (decoded, _) = Event::decode(
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
        ];
        for event in events {
            let topic = event.event_type.topic();
            let (decoded, _) =
                Event::decode(&event.to_bytes(), at(topic, 3), "x", kafka_time()).unwrap();
            assert_eq!(decoded, event);
        }
    }

    #[test]
    fn seed_records_without_event_id_are_understood() {
        let order = br#"{"order_id": "123e4567-e89b-12d3-a456-426614174000", "customer_name": "Jean Dupont",
            "customer_email": "jean.dupont@example.com", "product": "Laptop", "amount": 999.99,
            "status": "Pending", "timestamp": "2024-01-29T10:30:15.123456", "address": "123 Rue de Paris, 75000 Paris"}"#;
        let (e, _) =
            Event::decode(order, at(TopicRole::Orders, 7), "orders", kafka_time()).unwrap();
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
        let (e, _) = Event::decode(
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
        let (e, _) = Event::decode(
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
    fn a_missing_timestamp_falls_back_to_the_record_time() {
        let (e, _) = Event::decode(
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
        let cases: [(&[u8], TopicRole, &str); 8] = [
            (b"not json", TopicRole::Orders, "not JSON"),
            (b"[1,2]", TopicRole::Orders, "not a JSON object"),
            (br#"{"customer_name":"A"}"#, TopicRole::Orders, "order_id"),
            (br#"{"order_id":"o","customer_name":"A","product":"P","amount":1.234}"#, TopicRole::Orders, "amount"),
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
    fn delivery_status_parsing_is_relaxed() {
        assert_eq!(
            DeliveryStatus::parse("in_transit"),
            Some(DeliveryStatus::InTransit)
        );
        assert_eq!(
            DeliveryStatus::parse("OUT FOR DELIVERY"),
            Some(DeliveryStatus::OutForDelivery)
        );
        assert_eq!(DeliveryStatus::parse("lost"), None);
        assert!(DeliveryStatus::Shipped < DeliveryStatus::Delivered);
    }
}
