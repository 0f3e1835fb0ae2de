//! The bodies of the REST API's answers.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::demo::CARRIERS;
use serde_json::value::RawValue;

use crate::domain::event::{
    DeliveryStatus, EventType, PaymentStatus, Position, TopicInfo, TopicRole,
};
use crate::domain::gateway::METHODS;
use crate::domain::lifecycle::{
    Action, OrderStatus, actions, at_or_past, next_delivery_status, retried_actions, stages,
};
use crate::domain::money::Money;
use crate::domain::validation::FieldError;
use crate::domain::validation::{CURRENCIES, DEFAULT_CURRENCY};

/// `GET /api/rules`: the shop's vocabulary and lifecycle, from the rules the server itself
/// applies, so that the dashboard holds no copy of them.
#[derive(Debug, Serialize, ToSchema)]
pub struct Rules {
    /// Every order status, in lifecycle order.
    pub order_statuses: Vec<OrderStatus>,
    #[schema(value_type = Vec<PaymentStatus>)]
    pub payment_statuses: Vec<&'static str>,
    /// Every delivery status, in the order a parcel goes through them.
    pub delivery_statuses: Vec<DeliveryStatus>,
    /// The commands an order takes in each status (none once it is delivered or cancelled).
    pub actions: BTreeMap<OrderStatus, Vec<Action>>,
    /// The status a delivery moves to when it is advanced.
    pub next_delivery_status: BTreeMap<DeliveryStatus, DeliveryStatus>,
    /// For each order status, the statuses of the orders that reached it: itself and those
    /// after it on the way of an order that goes well; itself alone off that way.
    pub at_or_past: BTreeMap<OrderStatus, Vec<OrderStatus>>,
    /// The way of an order that goes well, in stages: the statuses, in order, in which an
    /// order takes the same commands go together.
    pub stages: Vec<Vec<OrderStatus>>,
    /// The commands that, in a status, try again the step that failed (a declined payment);
    /// only the statuses that have some.
    pub retried_actions: BTreeMap<OrderStatus, Vec<Action>>,
    pub payment_methods: &'static [&'static str],
    pub carriers: &'static [&'static str],
    pub currencies: &'static [&'static str],
    /// How many decimals each currency's amounts have.
    pub currency_decimals: BTreeMap<&'static str, u32>,
    /// How many decimals every amount the API writes has.
    pub amount_decimals: u32,
    pub default_currency: &'static str,
    #[schema(value_type = Vec<TopicRole>, min_items = 3, max_items = 3)]
    pub topics: [TopicRole; 3],
}

impl Rules {
    fn build() -> Rules {
        Rules {
            order_statuses: OrderStatus::ALL.to_vec(),
            payment_statuses: PaymentStatus::ALL.iter().map(|s| s.as_str()).collect(),
            delivery_statuses: DeliveryStatus::ALL.to_vec(),
            actions: OrderStatus::ALL.iter().map(|&s| (s, actions(s))).collect(),
            next_delivery_status: DeliveryStatus::ALL
                .iter()
                .filter_map(|&s| next_delivery_status(s).map(|next| (s, next)))
                .collect(),
            at_or_past: OrderStatus::ALL
                .iter()
                .map(|&s| (s, at_or_past(s)))
                .collect(),
            stages: stages(),
            retried_actions: OrderStatus::ALL
                .iter()
                .map(|&s| (s, retried_actions(s)))
                .filter(|(_, retried)| !retried.is_empty())
                .collect(),
            payment_methods: &METHODS,
            carriers: &CARRIERS,
            currencies: &CURRENCIES,
            currency_decimals: CURRENCIES.iter().map(|&c| (c, Money::DECIMALS)).collect(),
            amount_decimals: Money::DECIMALS,
            default_currency: DEFAULT_CURRENCY,
            topics: TopicRole::ALL,
        }
    }

    /// The document as JSON text, built once.
    pub fn json() -> &'static str {
        static JSON: OnceLock<String> = OnceLock::new();
        JSON.get_or_init(|| serde_json::to_string(&Rules::build()).expect("rules serialise"))
    }
}

/// The answer to a write: the record value under the kind of thing written, and where the
/// event landed.
#[derive(Debug, Serialize, ToSchema)]
pub struct WriteAck<'a> {
    /// The order's record value (`order.created` or `order.cancelled`), as written to Kafka.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = super::record::order_value_schema)]
    pub order: Option<&'a RawValue>,
    /// The payment's record value, as written to Kafka.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = super::record::payment_value_schema)]
    pub payment: Option<&'a RawValue>,
    /// The delivery's record value, as written to Kafka.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = super::record::delivery_value_schema)]
    pub delivery: Option<&'a RawValue>,
    pub kafka: Position,
}

impl<'a> WriteAck<'a> {
    pub fn new(event_type: EventType, data: &'a RawValue, kafka: Position) -> Self {
        let mut ack = WriteAck {
            order: None,
            payment: None,
            delivery: None,
            kafka,
        };
        match event_type {
            EventType::OrderCreated | EventType::OrderCancelled => ack.order = Some(data),
            EventType::PaymentProcessed => ack.payment = Some(data),
            EventType::DeliveryCreated | EventType::DeliveryUpdated => ack.delivery = Some(data),
        }
        ack
    }
}

/// `{"error": {...}}`: every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody<'a> {
    pub error: ErrorDetail<'a>,
}

/// A stable machine `code`, a `message` a person can act on, and what else helps.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct ErrorDetail<'a> {
    pub code: &'a str,
    pub message: &'a str,
    /// The first field a validation error names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'a str>,
    /// Every field error of a validation error.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<FieldError>>)]
    pub fields: Option<&'a [FieldError]>,
    /// The methods a path answers (a 405).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>)]
    pub allow: Option<&'a [String]>,
    /// Where a written event landed (a write that was not visible in time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kafka: Option<Position>,
}

/// A page of a list: newest first; `next_cursor` goes on where it stopped.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// A listing's answer: a [`Page`] and, when filtered by status, that status in its own
/// spelling (`FAILED` for `?status=failed`), so that a client matches rows as the server did.
#[derive(Debug, Serialize, ToSchema)]
pub struct Listed<T> {
    #[serde(flatten)]
    pub page: Page<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

impl<T> Page<T> {
    pub fn last(items: Vec<T>) -> Self {
        Page {
            items,
            next_cursor: None,
        }
    }
}

/// An order without its timeline (a list row); the order's fields are absent while only
/// events of other topics were read for it.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderSummary {
    pub order_id: String,
    pub status: Option<OrderStatus>,
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
    #[schema(format = DateTime)]
    pub updated_at: String,
    pub anomalies: usize,
    /// The number of the last event applied to the order (see the live frames' `seq`).
    pub seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantity: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<Money>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentView {
    pub payment_id: String,
    pub order_id: String,
    pub amount: Money,
    pub currency: String,
    pub method: String,
    #[schema(value_type = PaymentStatus)]
    pub status: &'static str,
    pub failure_reason: Option<String>,
    #[schema(format = DateTime)]
    pub timestamp: String,
    pub kafka: Position,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    pub delivery_id: String,
    pub order_id: String,
    pub address: String,
    #[schema(value_type = DeliveryStatus)]
    pub status: &'static str,
    pub carrier: Option<String>,
    #[schema(format = Date)]
    pub estimated_date: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    pub kafka: Position,
}

/// One event of an order's timeline, with its record value as it was written.
#[derive(Debug, Serialize, ToSchema)]
pub struct TimelineItem {
    pub event_id: String,
    pub event_type: EventType,
    pub topic: TopicRole,
    pub partition: i32,
    pub offset: i64,
    #[schema(format = DateTime)]
    pub time: String,
    /// The order's status after this event, along the history in timeline order (an anomaly
    /// leaves it as it was).
    pub order_status: Option<OrderStatus>,
    /// The record value as its producer wrote it (shopstream's are described by
    /// `/api/asyncapi.json`; another producer's may hold other fields); `null` if not JSON.
    #[schema(value_type = Value)]
    pub data: Option<Box<RawValue>>,
    /// Why the event breaks the lifecycle, if it does.
    pub anomaly: Option<String>,
}

/// An order, its timeline across the three topics, its payments and deliveries.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderDetail {
    #[serde(flatten)]
    pub summary: OrderSummary,
    pub timeline: Vec<TimelineItem>,
    pub payments: Vec<PaymentView>,
    pub deliveries: Vec<DeliveryView>,
}

/// `GET /api/orders/{id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderAnswer {
    pub order: OrderDetail,
}

/// `GET /api/deliveries/{id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryAnswer {
    pub delivery: DeliveryView,
}

/// `GET /api/stats`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Stats {
    pub orders: OrderCounts,
    pub revenue: Vec<Revenue>,
    pub payments: PaymentCounts,
    pub deliveries: DeliveryCounts,
    pub anomalies: u64,
    pub orders_per_minute: Vec<MinuteRow>,
    pub events: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderCounts {
    pub total: u64,
    /// Every status, zero included.
    pub by_status: BTreeMap<OrderStatus, u64>,
    pub in_delivery: u64,
}

/// Revenue of paid orders in one currency.
#[derive(Debug, Serialize, ToSchema)]
pub struct Revenue {
    pub currency: String,
    pub amount: Money,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentCounts {
    pub succeeded: u64,
    pub failed: u64,
    /// `null` before the first payment.
    pub success_ratio: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryCounts {
    pub total: u64,
}

/// Orders created in one minute and their revenue.
#[derive(Debug, Serialize, ToSchema)]
pub struct MinuteRow {
    /// The minute's start.
    #[schema(format = DateTime)]
    pub minute: String,
    pub orders: u64,
    pub revenue: Money,
}

/// `GET /api/session` (and the answer to a sign-out): how the server authenticates
/// (`tokens`, `loopback` or `open`) and who the caller is.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    #[schema(schema_with = session_mode_schema)]
    pub mode: &'static str,
    pub authenticated: bool,
    pub role: Option<crate::access::Role>,
    pub via: Option<crate::access::Via>,
}

/// `POST /api/session`: signed in, with this role (the cookie holds the session).
#[derive(Debug, Serialize, ToSchema)]
pub struct SignedIn {
    pub role: crate::access::Role,
}

/// `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    #[schema(schema_with = health_status_schema)]
    pub status: &'static str,
    pub version: &'static str,
    pub uptime_seconds: u64,
}

/// `GET /readyz`: ready, or unavailable with the reason.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness<'a> {
    #[schema(schema_with = readiness_status_schema)]
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caught_up: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaTopics<'a>>,
    /// How far the replay of the log at start has come (once the consumers started).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay: Option<Replay>,
    /// Partitions that make no progress while they have something to read (status
    /// `degraded`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stalled: Vec<StalledPartition>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail<'a>>,
}

/// The replay of the log at start: records (offsets) done out of those to go, a rate and an
/// estimate of the time left. `records_total` is final once `total_known` (every partition
/// looked up the end of its log); `eta_seconds` is `null` until then, and while nothing moved.
#[derive(Debug, Serialize, ToSchema)]
pub struct Replay {
    pub records_done: u64,
    pub records_total: u64,
    pub total_known: bool,
    pub percent: f64,
    pub records_per_second: Option<f64>,
    pub eta_seconds: Option<u64>,
    pub elapsed_seconds: f64,
    pub partitions_done: usize,
    pub partitions: usize,
}

impl From<crate::kafka::consumer::ReplayProgress> for Replay {
    fn from(p: crate::kafka::consumer::ReplayProgress) -> Self {
        Self {
            records_done: p.records_done,
            records_total: p.records_total,
            total_known: p.partitions_known == p.partitions,
            percent: (p.fraction() * 1000.0).round() / 10.0,
            records_per_second: p.records_per_second.map(f64::round),
            eta_seconds: p.eta.map(|eta| eta.as_secs_f64().ceil() as u64),
            elapsed_seconds: (p.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            partitions_done: p.partitions_done,
            partitions: p.partitions,
        }
    }
}

/// A partition that makes no progress, and why.
#[derive(Debug, Serialize, ToSchema)]
pub struct StalledPartition {
    pub topic: TopicRole,
    pub partition: i32,
    pub offset: i64,
    pub lag: Option<i64>,
    pub reason: String,
    pub seconds: u64,
}

impl From<crate::kafka::consumer::Stall> for StalledPartition {
    fn from(s: crate::kafka::consumer::Stall) -> Self {
        Self {
            topic: s.topic,
            partition: s.partition,
            offset: s.offset,
            lag: s.lag,
            reason: s.reason,
            seconds: s.seconds,
        }
    }
}

/// The topics shopstream found (the brokers' addresses are in `/api/kafka`, for viewers: the
/// probes are open to everyone).
#[derive(Debug, Serialize, ToSchema)]
pub struct KafkaTopics<'a> {
    #[schema(value_type = Vec<TopicInfo>)]
    pub topics: &'a [TopicInfo],
}

/// `GET /api/kafka`.
#[derive(Debug, Serialize, ToSchema)]
pub struct KafkaOverview<'a> {
    #[schema(value_type = Vec<String>)]
    pub brokers: &'a [String],
    pub caught_up: bool,
    /// The replay of the log at start, once the consumers run.
    pub start: Option<StartReplay>,
    pub live_clients: usize,
    pub partitions: Vec<PartitionRow<'a>>,
}

/// Where the replay at start began and how much of the log it read (all it will once
/// `caught_up`): a restart from the store reads only what came after its offsets.
#[derive(Debug, Serialize, ToSchema)]
pub struct StartReplay {
    /// `stored offsets` or `earliest offsets`.
    #[schema(schema_with = start_from_schema)]
    pub from: &'static str,
    pub replayed_records: u64,
}

/// One partition on the broker and shopstream's position in it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PartitionRow<'a> {
    pub topic: TopicRole,
    pub topic_name: &'a str,
    pub partition: i32,
    pub earliest_offset: i64,
    pub latest_offset: i64,
    pub next_offset: i64,
    pub lag: i64,
    pub lag_seconds: f64,
    pub skipped: u64,
    pub offset_resets: u64,
    /// Batches that could not be read (corrupt bytes), skipped with their offsets.
    pub unreadable_batches: u64,
    /// Records of aborted transactions, read past and not applied.
    pub aborted_records: u64,
    /// Why the partition makes no progress while it has something to read, if it does not.
    pub stalled: Option<String>,
    #[schema(format = DateTime)]
    pub last_record_time: Option<String>,
}

/// `GET /api/events`: records of one partition, read from Kafka.
#[derive(Debug, Serialize, ToSchema)]
pub struct BrowsedRecords {
    pub topic: TopicRole,
    pub partition: i32,
    pub records: Vec<BrowsedRecord>,
    pub next_offset: i64,
}

/// One record as the log holds it, and what shopstream reads in it.
#[derive(Debug, Serialize, ToSchema)]
pub struct BrowsedRecord {
    pub offset: i64,
    /// The record's Kafka timestamp.
    #[schema(format = DateTime)]
    pub timestamp: String,
    pub key: Option<String>,
    pub headers: BTreeMap<String, String>,
    /// The event type shopstream reads, `null` for a record it skips.
    #[schema(value_type = Option<EventType>)]
    pub event_type: Option<&'static str>,
    /// The value as written, `null` when it is not JSON.
    #[schema(value_type = Value)]
    pub data: Option<Box<RawValue>>,
    /// Why shopstream skips the record.
    pub error: Option<String>,
}

/// `GET /api/simulator`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SimulatorView {
    pub running: bool,
    pub rate: f64,
    pub payment_failure_rate: f64,
    pub in_flight: u64,
    pub started: SimulatorCounts,
    pub errors: u64,
    pub last_error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SimulatorCounts {
    pub orders: u64,
    pub payments: u64,
    pub deliveries: u64,
}

/// A string that is one of `values`, for the `&'static str` fields whose values are fixed.
fn one_of(values: &[&str], description: &str) -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
    let schema = serde_json::json!({"type": "string", "enum": values, "description": description});
    serde_json::from_value(schema).expect("a string enum is a schema")
}

fn session_mode_schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
    one_of(
        &["tokens", "loopback", "open"],
        "How the server authenticates: tokens are configured; no token and loopback clients \
         only; no token and every client (`--allow-unauthenticated`).",
    )
}

fn health_status_schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
    one_of(&["ok"], "Always `ok`: the process serves.")
}

fn readiness_status_schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
    one_of(
        &["ready", "degraded", "unavailable", "catching_up"],
        "`ready`; `degraded` (200) while a partition is stalled; `unavailable` (503) with the \
         reason in `error`; `catching_up` (503, only when `?caught_up=true` was asked) while \
         the replay at start goes on, with its progress in `replay`.",
    )
}

fn start_from_schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
    one_of(
        &["stored offsets", "earliest offsets"],
        "Where the replay at start began.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn the_rules_document_names_statuses_actions_and_vocabulary() {
        let rules: Value = serde_json::from_str(Rules::json()).unwrap();
        assert_eq!(rules["order_statuses"][1], "Payment Failed");
        assert_eq!(rules["delivery_statuses"][3], "Delivered");
        assert_eq!(
            rules["actions"]["Pending"],
            serde_json::json!(["pay", "cancel"])
        );
        assert_eq!(rules["actions"]["Paid"], serde_json::json!(["ship"]));
        assert_eq!(rules["actions"]["Delivered"], serde_json::json!([]));
        assert_eq!(
            rules["next_delivery_status"]["In Transit"],
            "Out for Delivery"
        );
        assert_eq!(rules["next_delivery_status"].get("Delivered"), None);
        assert_eq!(
            rules["payment_statuses"],
            serde_json::json!(["SUCCESS", "FAILED"])
        );
        assert_eq!(
            rules["at_or_past"]["Paid"],
            serde_json::json!([
                "Paid",
                "Shipped",
                "In Transit",
                "Out for Delivery",
                "Delivered"
            ])
        );
        assert_eq!(
            rules["at_or_past"]["Payment Failed"],
            serde_json::json!(["Payment Failed"])
        );
        assert_eq!(
            rules["at_or_past"]["Pending"], rules["order_statuses"],
            "every order was placed"
        );
        assert_eq!(
            rules["stages"],
            serde_json::json!([
                ["Pending"],
                ["Paid"],
                ["Shipped", "In Transit", "Out for Delivery"],
                ["Delivered"]
            ])
        );
        assert_eq!(
            rules["retried_actions"],
            serde_json::json!({"Payment Failed": ["pay"]})
        );
        assert_eq!(rules["currency_decimals"]["EUR"], 2);
        assert_eq!(
            rules["currency_decimals"]["JPY"], 2,
            "the shop counts yen in hundredths too"
        );
        assert_eq!(
            rules["currency_decimals"].as_object().unwrap().len(),
            rules["currencies"].as_array().unwrap().len()
        );
        assert_eq!(rules["amount_decimals"], 2);
        assert_eq!(rules["currencies"][0], "EUR");
        assert_eq!(rules["default_currency"], "EUR");
        assert_eq!(rules["carriers"][0], "Colissimo");
        assert_eq!(
            rules["topics"],
            serde_json::json!(["orders", "payments", "deliveries"])
        );
    }
}
