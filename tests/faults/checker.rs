//! The checker: what the log holds, read with a plain Kafka consumer (rskafka's own fetch,
//! not shopstream's fetch path, over the brokers' direct listeners), against what every
//! client saw and what every instance's API says.
//!
//! It reports:
//! - `missing`: a command acknowledged to a client whose event is not in the log, or an order
//!   in the log that an instance does not show;
//! - `duplicate`: one idempotency key with more than one event in the log, or one event shown
//!   twice by an instance;
//! - `causal`: two commands of an order, the second sent after the first was acknowledged,
//!   whose events are in the other order (in the fold of the log, or in an instance's
//!   timeline);
//! - `fold`: an instance whose order (status, timeline, the copy of each event it applied,
//!   anomalies, payments, deliveries) or statistics differ from a fold of the log;
//! - `divergence`: two instances that disagree once quiet;
//! - `unexpected`: answers no well-behaved client should get (422, 400), commands of a
//!   sequence refused for good, records the checker cannot read.
//!
//! The fold is the checker's own, written from the lifecycle in the README (not shopstream's
//! code): an order's distinct events (the first copy of each event id in its partition, as a
//! retried write may leave two), ordered by event time, then lifecycle step, then position.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rskafka::client::partition::{OffsetAt, UnknownTopicHandling};
use serde_json::Value;

use super::clients::{OpKind, OpRecord, Outcome};
use crate::support::http;

pub const TOPICS: [&str; 3] = ["orders", "payments", "deliveries"];

/// One record of the three topics, as the checker reads it.
#[derive(Debug, Clone)]
pub struct LogRecord {
    /// Index into [`TOPICS`].
    pub topic: usize,
    pub partition: i32,
    pub offset: i64,
    pub event_id: String,
    pub event_type: String,
    pub order_id: String,
    pub time: DateTime<Utc>,
    /// The `idempotency-key` header.
    pub key: Option<String>,
    /// `status` of the value (a payment's SUCCESS/FAILED, a delivery's status).
    pub status: Option<String>,
    pub payment_id: Option<String>,
    pub delivery_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Missing,
    Duplicate,
    Causal,
    Fold,
    Divergence,
    Unexpected,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Missing,
        Kind::Duplicate,
        Kind::Causal,
        Kind::Fold,
        Kind::Divergence,
        Kind::Unexpected,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Missing => "acknowledged but missing",
            Kind::Duplicate => "duplicated events",
            Kind::Causal => "causal order violated",
            Kind::Fold => "read model differs from the fold of the log",
            Kind::Divergence => "instances disagree once quiet",
            Kind::Unexpected => "unexpected answers or records",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Anomaly {
    pub kind: Kind,
    pub detail: String,
}

// ------------------------------------------------------------------------------------------
// Reading the log.

/// Reads the three topics incrementally: each call reads what was added since the last.
pub struct LogReader {
    brokers: Vec<String>,
    client: rskafka::client::Client,
    prefix: String,
    next: HashMap<(usize, i32), i64>,
    pub records: Vec<LogRecord>,
    pub unreadable: Vec<String>,
}

impl LogReader {
    pub async fn connect(direct_bootstrap: &str, prefix: &str) -> Self {
        let brokers: Vec<String> = direct_bootstrap.split(',').map(str::to_string).collect();
        let client = Self::client(&brokers)
            .await
            .expect("the checker's Kafka client connects");
        Self {
            brokers,
            client,
            prefix: prefix.to_string(),
            next: HashMap::new(),
            records: Vec::new(),
            unreadable: Vec::new(),
        }
    }

    /// Reads every partition up to its end as of now; returns the ends.
    pub async fn read_to_end(&mut self) -> BTreeMap<(usize, i32), i64> {
        let mut ends = BTreeMap::new();
        for (t, topic) in TOPICS.iter().enumerate() {
            let name = format!("{}{topic}", self.prefix);
            for partition in 0..3 {
                let end = self.read_partition(t, &name, partition).await;
                ends.insert((t, partition), end);
            }
        }
        ends
    }

    /// A client with a bounded backoff: rskafka's default retries forever, and a connection
    /// to a broker that was killed and restarted stayed half-closed under it.
    async fn client(brokers: &[String]) -> Result<rskafka::client::Client, String> {
        let build = rskafka::client::ClientBuilder::new(brokers.to_vec())
            .backoff_config(rskafka::BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(1),
                base: 2.0,
                deadline: Some(Duration::from_secs(5)),
            })
            .build();
        tokio::time::timeout(Duration::from_secs(30), build)
            .await
            .map_err(|_| "the checker's Kafka client did not connect in 30 s".to_string())?
            .map_err(|e| e.to_string())
    }

    async fn read_partition(&mut self, t: usize, name: &str, partition: i32) -> i64 {
        // A broker may just have come back: retry the whole partition a few times, each time
        // through a new client (a fresh view of the leaders and fresh connections).
        let mut last = String::new();
        for _ in 0..30 {
            match self.try_read_partition(t, name, partition).await {
                Ok(end) => return end,
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            match Self::client(&self.brokers).await {
                Ok(client) => self.client = client,
                Err(e) => last = e,
            }
        }
        panic!("the checker cannot read {name}/{partition}: {last}");
    }

    async fn try_read_partition(
        &mut self,
        t: usize,
        name: &str,
        partition: i32,
    ) -> Result<i64, String> {
        let client = tokio::time::timeout(
            Duration::from_secs(10),
            self.client
                .partition_client(name, partition, UnknownTopicHandling::Retry),
        )
        .await
        .map_err(|_| "no partition client in time".to_string())?
        .map_err(|e| e.to_string())?;
        let end =
            tokio::time::timeout(Duration::from_secs(10), client.get_offset(OffsetAt::Latest))
                .await
                .map_err(|_| "no end offset in time".to_string())?
                .map_err(|e| e.to_string())?;
        let mut offset = *self.next.get(&(t, partition)).unwrap_or(&0);
        while offset < end {
            let (records, _) = tokio::time::timeout(
                Duration::from_secs(10),
                client.fetch_records(offset, 1..4_000_000, 200),
            )
            .await
            .map_err(|_| "no fetch answer in time".to_string())?
            .map_err(|e| e.to_string())?;
            if records.is_empty() {
                break;
            }
            for r in records {
                offset = r.offset + 1;
                match parse(t, partition, r.offset, &r.record) {
                    Ok(record) => self.records.push(record),
                    Err(e) => self
                        .unreadable
                        .push(format!("{name}/{partition}@{}: {e}", r.offset)),
                }
            }
            self.next.insert((t, partition), offset);
        }
        Ok(end)
    }
}

fn parse(
    topic: usize,
    partition: i32,
    offset: i64,
    record: &rskafka::record::Record,
) -> Result<LogRecord, String> {
    let value: Value = serde_json::from_slice(record.value.as_deref().unwrap_or_default())
        .map_err(|e| format!("not JSON: {e}"))?;
    let text = |name: &str| value[name].as_str().map(str::to_string);
    let time = text("timestamp")
        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
        .ok_or("no RFC 3339 timestamp")?
        .with_timezone(&Utc);
    Ok(LogRecord {
        topic,
        partition,
        offset,
        event_id: text("event_id").ok_or("no event_id")?,
        event_type: text("event_type").ok_or("no event_type")?,
        order_id: text("order_id").ok_or("no order_id")?,
        time,
        key: record
            .headers
            .get("idempotency-key")
            .map(|k| String::from_utf8_lossy(k).into_owned()),
        status: text("status"),
        payment_id: text("payment_id"),
        delivery_id: text("delivery_id"),
    })
}

// ------------------------------------------------------------------------------------------
// What an instance's API says.

/// One order as `GET /api/orders/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShownOrder {
    pub status: Option<String>,
    /// (event id, topic index, partition, offset, anomaly?) in the timeline's order.
    pub timeline: Vec<(String, usize, i32, i64, bool)>,
    pub payments: BTreeSet<(String, String)>,
    pub deliveries: BTreeSet<String>,
}

/// What an instance shows of the orders asked for (`None`: 404), and its statistics.
#[derive(Debug, Clone, Default)]
pub struct View {
    pub name: String,
    pub orders: HashMap<String, Option<ShownOrder>>,
    pub stats: Value,
}

pub fn shown_order(body: &Value) -> ShownOrder {
    let order = &body["order"];
    let timeline = order["timeline"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| {
                    (
                        i["event_id"].as_str().unwrap_or_default().to_string(),
                        TOPICS
                            .iter()
                            .position(|t| i["topic"] == *t)
                            .unwrap_or(usize::MAX),
                        i["partition"].as_i64().unwrap_or(-1) as i32,
                        i["offset"].as_i64().unwrap_or(-1),
                        !i["anomaly"].is_null(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let ids = |list: &str, id: &str, with_status: bool| -> BTreeSet<(String, String)> {
        order[list]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|p| {
                        (
                            p[id].as_str().unwrap_or_default().to_string(),
                            if with_status {
                                p["status"].as_str().unwrap_or_default().to_string()
                            } else {
                                String::new()
                            },
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    ShownOrder {
        status: order["status"].as_str().map(str::to_string),
        timeline,
        payments: ids("payments", "payment_id", true),
        deliveries: ids("deliveries", "delivery_id", false)
            .into_iter()
            .map(|(id, _)| id)
            .collect(),
    }
}

/// Asks instance `addr` for every order of `ids` (a few requests at a time) and its stats.
pub async fn fetch_view(name: &str, addr: SocketAddr, ids: &[String]) -> Result<View, String> {
    use futures_util::StreamExt;
    let answers: Vec<Result<(String, Option<ShownOrder>), String>> =
        futures_util::stream::iter(ids.iter().cloned())
            .map(|id| async move {
                let path = format!("/api/orders/{id}");
                for _ in 0..5 {
                    match http::get(addr, &path).await {
                        Ok((200, body)) => return Ok((id, Some(shown_order(&body)))),
                        Ok((404, _)) => return Ok((id, None)),
                        _ => tokio::time::sleep(Duration::from_millis(500)).await,
                    }
                }
                Err(format!("{name}: GET {path} kept failing"))
            })
            .buffer_unordered(8)
            .collect()
            .await;
    let mut view = View {
        name: name.to_string(),
        ..View::default()
    };
    for answer in answers {
        let (id, order) = answer?;
        view.orders.insert(id, order);
    }
    view.stats = match http::get(addr, "/api/stats").await {
        Ok((200, stats)) => stats,
        other => return Err(format!("{name}: /api/stats {other:?}")),
    };
    Ok(view)
}

// ------------------------------------------------------------------------------------------
// The fold, and the comparisons.

/// An order as the checker folds it from the log.
#[derive(Debug, Clone, Default)]
pub struct Folded {
    pub status: Option<&'static str>,
    /// (event id, topic, partition, offset, anomaly?) in event order.
    pub timeline: Vec<(String, usize, i32, i64, bool)>,
    pub payments: BTreeSet<(String, String)>,
    pub deliveries: BTreeSet<String>,
}

fn rank(event_type: &str) -> u8 {
    match event_type {
        "order.created" => 0,
        "payment.processed" => 1,
        "order.cancelled" => 2,
        "delivery.created" => 3,
        "delivery.updated" => 4,
        _ => 5,
    }
}

/// The delivery statuses in their order, as order statuses.
const DELIVERY: [&str; 4] = ["Shipped", "In Transit", "Out for Delivery", "Delivered"];

/// The lifecycle of the README, step by step: the status after `event`, or `None` when the
/// event breaks it (an anomaly: the status stays).
fn step(status: Option<&'static str>, event: &LogRecord) -> Option<&'static str> {
    match (event.event_type.as_str(), status) {
        ("order.created", None) => Some("Pending"),
        ("payment.processed", Some("Pending" | "Payment Failed")) => {
            match event.status.as_deref() {
                Some("SUCCESS") => Some("Paid"),
                Some("FAILED") => Some("Payment Failed"),
                _ => None,
            }
        }
        ("order.cancelled", Some("Pending" | "Payment Failed")) => Some("Cancelled"),
        ("delivery.created" | "delivery.updated", Some(current)) => {
            let next = DELIVERY
                .iter()
                .position(|d| Some(*d) == event.status.as_deref())?;
            match current {
                "Paid" => Some(DELIVERY[next]),
                _ => {
                    let at = DELIVERY[..3].iter().position(|d| *d == current)?;
                    (next > at).then_some(DELIVERY[next])
                }
            }
        }
        _ => None,
    }
}

/// Folds every order of the log.
pub fn fold(records: &[LogRecord]) -> HashMap<String, Folded> {
    // The first copy of each event: the lowest offset (every copy of an event lands on the
    // same partition, its order's).
    let mut first: HashMap<&str, &LogRecord> = HashMap::new();
    for r in records {
        first
            .entry(r.event_id.as_str())
            .and_modify(|seen| {
                if (r.topic, r.partition, r.offset) < (seen.topic, seen.partition, seen.offset) {
                    *seen = r;
                }
            })
            .or_insert(r);
    }
    let mut by_order: HashMap<&str, Vec<&LogRecord>> = HashMap::new();
    for r in first.values() {
        by_order.entry(r.order_id.as_str()).or_default().push(r);
    }
    by_order
        .into_iter()
        .map(|(order_id, mut events)| {
            events.sort_by(|a, b| {
                (a.time, rank(&a.event_type), a.topic, a.partition, a.offset).cmp(&(
                    b.time,
                    rank(&b.event_type),
                    b.topic,
                    b.partition,
                    b.offset,
                ))
            });
            let mut folded = Folded::default();
            for e in events {
                let next = step(folded.status, e);
                if next.is_some() {
                    folded.status = next;
                }
                folded.timeline.push((
                    e.event_id.clone(),
                    e.topic,
                    e.partition,
                    e.offset,
                    next.is_none(),
                ));
                if let Some(p) = &e.payment_id {
                    folded
                        .payments
                        .insert((p.clone(), e.status.clone().unwrap_or_default()));
                }
                if let Some(d) = &e.delivery_id {
                    folded.deliveries.insert(d.clone());
                }
            }
            (order_id.to_string(), folded)
        })
        .collect()
}

/// Everything the checker compares, for the orders of `scope` (all of them when `None`).
pub fn check(
    ops: &[OpRecord],
    records: &[LogRecord],
    unreadable: &[String],
    views: &[View],
    scope: Option<&HashSet<String>>,
) -> Vec<Anomaly> {
    let mut found = Vec::new();
    let mut report = |kind: Kind, detail: String| found.push(Anomaly { kind, detail });
    for u in unreadable {
        report(
            Kind::Unexpected,
            format!("a record the checker cannot read: {u}"),
        );
    }
    let in_scope = |order: &str| scope.is_none_or(|s| s.contains(order));

    // Acknowledged but missing.
    let mut events: HashMap<&str, Vec<&LogRecord>> = HashMap::new();
    for r in records {
        events.entry(r.event_id.as_str()).or_default().push(r);
    }
    for op in ops {
        for u in &op.unexpected {
            report(Kind::Unexpected, format!("{} {:?}: {u}", op.key, op.kind));
        }
        if let Outcome::Refused(status, code) = &op.outcome
            && !op.racing
        {
            report(
                Kind::Unexpected,
                format!(
                    "{:?} of order {:?} (key {}) refused for good with {status} {code} after {} \
                     tries: an instance never showed what was acknowledged before it",
                    op.kind, op.order_id, op.key, op.attempts
                ),
            );
        }
        let Some(ack) = op.ack() else { continue };
        match events.get(ack.event_id.as_str()) {
            None => report(
                Kind::Missing,
                format!(
                    "{:?} of order {:?} acknowledged to writer {} at {:.2} s (key {}, {}/{}@{}) \
                     is not in the log",
                    op.kind,
                    op.order_id,
                    op.writer,
                    op.done_at,
                    op.key,
                    ack.topic,
                    ack.partition,
                    ack.offset
                ),
            ),
            Some(copies) => {
                if copies.iter().any(|r| r.event_type != op.kind.event_type()) {
                    report(
                        Kind::Unexpected,
                        format!(
                            "{:?} (key {}) acknowledged as another event type",
                            op.kind, op.key
                        ),
                    );
                }
            }
        }
    }

    // Duplicates: one key, one event. Without keys in the log this would see nothing.
    if !records.is_empty() && records.iter().all(|r| r.key.is_none()) {
        report(
            Kind::Unexpected,
            "no record of the log carries an idempotency-key header: duplicates cannot be told"
                .into(),
        );
    }
    let mut by_key: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    for r in records {
        if let Some(key) = &r.key {
            by_key
                .entry(key.as_str())
                .or_default()
                .insert(r.event_id.as_str());
        }
    }
    for (key, ids) in &by_key {
        if ids.len() > 1 {
            report(
                Kind::Duplicate,
                format!("idempotency key {key} wrote {} events: {ids:?}", ids.len()),
            );
        }
    }

    let folded = fold(records);

    // Causal order: a command sent after another was acknowledged comes after it.
    let mut acked_by_order: HashMap<&str, Vec<&OpRecord>> = HashMap::new();
    for op in ops {
        if let (Some(order), Some(_)) = (&op.order_id, op.ack()) {
            acked_by_order.entry(order.as_str()).or_default().push(op);
        }
    }
    for (order, acked) in &acked_by_order {
        if !in_scope(order) {
            continue;
        }
        let Some(f) = folded.get(*order) else {
            continue;
        };
        let place = |id: &str, timeline: &[(String, usize, i32, i64, bool)]| {
            timeline.iter().position(|e| e.0 == id)
        };
        for a in acked.iter() {
            for b in acked.iter() {
                if a.done_at >= b.first_sent {
                    continue;
                }
                let (ea, eb) = (&a.ack().unwrap().event_id, &b.ack().unwrap().event_id);
                let mut check_in = |what: &str, timeline: &[(String, usize, i32, i64, bool)]| {
                    if let (Some(ia), Some(ib)) = (place(ea, timeline), place(eb, timeline))
                        && ia > ib
                    {
                        report(
                            Kind::Causal,
                            format!(
                                "order {order}: {:?} (acknowledged at {:.2} s) comes after {:?} \
                                 (sent at {:.2} s) in {what}",
                                a.kind, a.done_at, b.kind, b.first_sent
                            ),
                        );
                    }
                };
                check_in("the log", &f.timeline);
                for v in views {
                    if let Some(Some(shown)) = v.orders.get(*order) {
                        check_in(&format!("{}'s timeline", v.name), &shown.timeline);
                    }
                }
            }
        }
    }

    // Each instance against the fold.
    for v in views {
        for (order, f) in &folded {
            if !in_scope(order) {
                continue;
            }
            let Some(shown) = v.orders.get(order) else {
                continue; // not asked for
            };
            let Some(shown) = shown else {
                report(
                    Kind::Missing,
                    format!("order {order} is in the log but {} answers 404", v.name),
                );
                continue;
            };
            let ids: Vec<&String> = shown.timeline.iter().map(|e| &e.0).collect();
            let distinct: BTreeSet<&&String> = ids.iter().collect();
            if distinct.len() != ids.len() {
                report(
                    Kind::Duplicate,
                    format!("{} shows an event of order {order} twice: {ids:?}", v.name),
                );
            }
            let mut differs = Vec::new();
            if shown.status.as_deref() != f.status {
                differs.push(format!("status {:?}, fold {:?}", shown.status, f.status));
            }
            if shown.timeline != f.timeline {
                differs.push(format!(
                    "timeline {:?}, fold {:?}",
                    shown.timeline, f.timeline
                ));
            }
            if shown.payments != f.payments {
                differs.push(format!(
                    "payments {:?}, fold {:?}",
                    shown.payments, f.payments
                ));
            }
            if shown.deliveries != f.deliveries {
                differs.push(format!(
                    "deliveries {:?}, fold {:?}",
                    shown.deliveries, f.deliveries
                ));
            }
            if !differs.is_empty() {
                report(
                    Kind::Fold,
                    format!("{}, order {order}: {}", v.name, differs.join("; ")),
                );
            }
        }
        // Statistics against the whole fold.
        let created: Vec<&Folded> = folded.values().filter(|f| f.status.is_some()).collect();
        let total = v.stats["orders"]["total"].as_u64();
        if total != Some(created.len() as u64) {
            report(
                Kind::Fold,
                format!(
                    "{}: /api/stats counts {total:?} orders, the log holds {}",
                    v.name,
                    created.len()
                ),
            );
        }
        let mut by_status: BTreeMap<&str, u64> = BTreeMap::new();
        for f in &created {
            *by_status.entry(f.status.unwrap()).or_default() += 1;
        }
        if let Some(shown) = v.stats["orders"]["by_status"].as_object() {
            for (status, count) in shown {
                let expected = by_status.get(status.as_str()).copied().unwrap_or(0);
                if count.as_u64() != Some(expected) {
                    report(
                        Kind::Fold,
                        format!(
                            "{}: /api/stats counts {count} {status} orders, the fold {expected}",
                            v.name
                        ),
                    );
                }
            }
        }
    }

    // The instances against each other.
    for pair in views.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        for (order, shown) in &a.orders {
            if !in_scope(order) {
                continue;
            }
            if let Some(other) = b.orders.get(order)
                && other != shown
            {
                report(
                    Kind::Divergence,
                    format!(
                        "order {order}: {} shows {shown:?}, {} shows {other:?}",
                        a.name, b.name
                    ),
                );
            }
        }
        for part in [
            "orders",
            "revenue",
            "payments",
            "deliveries",
            "anomalies",
            "events",
        ] {
            if a.stats[part] != b.stats[part] {
                report(
                    Kind::Divergence,
                    format!(
                        "/api/stats {part}: {} {}, {} {}",
                        a.name, a.stats[part], b.name, b.stats[part]
                    ),
                );
            }
        }
    }
    found
}

/// The orders a set of commands touched (to check only those at a checkpoint).
pub fn orders_of(ops: &[OpRecord]) -> HashSet<String> {
    ops.iter().filter_map(|o| o.order_id.clone()).collect()
}

/// Every order id the log holds.
pub fn orders_in_log(records: &[LogRecord]) -> BTreeSet<String> {
    records.iter().map(|r| r.order_id.clone()).collect()
}

/// Commands of one kind, for the report.
pub fn count(ops: &[OpRecord], kind: OpKind) -> usize {
    ops.iter()
        .filter(|o| o.kind == kind && o.ack().is_some())
        .count()
}
