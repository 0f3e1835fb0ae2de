//! Events: what happened to an order, on which topic, and where a record sits in the log.
//!
//! One JSON object per record value. Every field of the seed's three shapes keeps its name and
//! meaning (so producers and consumers written against the seed still work), and shopstream
//! adds `event_id` (the de-duplication key), `event_type` and what a real shop needs
//! (quantity, currency, carrier, failure reason). The values themselves are written and read in
//! [`crate::messages::record`]; what is not JSON or not a known shape is an
//! [`UndecodableRecord`].

use std::fmt;

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use uuid::Uuid;

use super::money::Money;

/// The three topics, by the role they play (their names may carry a prefix).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
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
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
pub struct Position {
    pub topic: TopicRole,
    pub partition: i32,
    pub offset: i64,
}

/// What happened, as `event_type` names it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
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
    pub const ALL: [EventType; 5] = [
        EventType::OrderCreated,
        EventType::OrderCancelled,
        EventType::PaymentProcessed,
        EventType::DeliveryCreated,
        EventType::DeliveryUpdated,
    ];

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

    pub fn parse(s: &str) -> Option<Self> {
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
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
pub enum PaymentStatus {
    #[serde(rename = "SUCCESS")]
    Success,
    #[serde(rename = "FAILED")]
    Failed,
}

impl PaymentStatus {
    pub const ALL: [PaymentStatus; 2] = [PaymentStatus::Success, PaymentStatus::Failed];

    /// Accepts `SUCCESS`, `failed`, ... (any case).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
    }

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
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
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
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
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
    /// The three topics under `prefix` and their role's name, each with `partitions`
    /// partitions.
    pub fn uniform(prefix: &str, partitions: i32) -> TopicLayout {
        TopicLayout {
            topics: TopicRole::ALL
                .iter()
                .map(|&role| TopicInfo {
                    role,
                    name: format!("{prefix}{}", role.as_str()),
                    partitions,
                })
                .collect(),
        }
    }

    /// The topic playing `role`.
    pub fn get(&self, role: TopicRole) -> &TopicInfo {
        self.topics
            .iter()
            .find(|t| t.role == role)
            .expect("a layout always holds the three topics")
    }

    /// Whether `self` is `before` with partitions added to some of its topics (and none taken
    /// away): the store built for `before` goes on, and the added partitions are consumed from
    /// their earliest offset.
    pub fn grows_from(&self, before: &TopicLayout) -> bool {
        self.topics.len() == before.topics.len()
            && self.topics.iter().all(|t| {
                before
                    .topics
                    .iter()
                    .any(|b| b.role == t.role && b.name == t.name && b.partitions <= t.partitions)
            })
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
    /// The W3C trace context of the HTTP request that wrote the record.
    pub const TRACEPARENT: &str = "traceparent";
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layout_grows_when_partitions_are_added_and_none_removed() {
        let three = TopicLayout::uniform("p.", 3);
        let mut more = three.clone();
        more.topics[1].partitions = 5;
        assert!(more.grows_from(&three));
        assert!(three.grows_from(&three));
        assert!(!three.grows_from(&more));
        assert!(!TopicLayout::uniform("q.", 5).grows_from(&three));
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
