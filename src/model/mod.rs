//! The read model: orders, payments, deliveries and statistics, built only from consumed
//! events (never from the HTTP request that produced them).
//!
//! Pure logic, no I/O: [`ReadModel::apply`] takes one decoded event and its position, and is
//! idempotent by `event_id`, so replays and producer retries never double count. The offsets
//! consumed so far live in the same structure ([`PartitionProgress`]), so a snapshot of the
//! model always carries exactly the offsets it reflects ([`snapshot`]).
//!
//! An order's status is the fold of its timeline sorted by event time, recomputed whenever an
//! event joins it. The three topics are consumed independently, so a payment may be read before
//! the order it pays; folding by time gives the same state whatever the arrival order, and an
//! event that breaks the lifecycle stays in the timeline, flagged as an anomaly.

pub mod query;
pub mod snapshot;
pub mod store;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::event::{
    DeliveryDetails, DeliveryStatus, Event, EventBody, EventType, OrderDetails, PaymentDetails,
    PaymentStatus, Position, TopicRole,
};
use crate::domain::lifecycle::{OrderStatus, transition};
use crate::domain::money::Money;

/// How many minutes of per-minute order counts are kept.
const MINUTES_KEPT: i64 = 24 * 60;

/// One event in an order's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub event_id: String,
    pub event_type: EventType,
    pub position: Position,
    pub time: DateTime<Utc>,
    /// The record value as it was read.
    pub data: Value,
    /// Why this event breaks the lifecycle, if it does.
    pub anomaly: Option<String>,
    /// The decoded event, for refolding.
    pub(crate) body: EventBody,
}

/// An order as the log tells it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderRecord {
    pub order_id: String,
    /// `None` while only events of other topics were read for this order.
    pub details: Option<OrderDetails>,
    pub created_at: Option<DateTime<Utc>>,
    pub status: Option<OrderStatus>,
    pub updated_at: DateTime<Utc>,
    pub timeline: Vec<TimelineEntry>,
    pub anomalies: usize,
    pub payment_ids: Vec<String>,
    pub delivery_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentRecord {
    pub payment_id: String,
    pub order_id: String,
    pub amount: Money,
    pub currency: String,
    pub method: String,
    pub status: PaymentStatus,
    pub failure_reason: Option<String>,
    pub time: DateTime<Utc>,
    pub position: Position,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    pub delivery_id: String,
    pub order_id: String,
    pub address: String,
    pub status: DeliveryStatus,
    pub carrier: Option<String>,
    pub estimated_date: Option<chrono::NaiveDate>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub position: Position,
}

/// What a request with an `Idempotency-Key` produced, so that the same key gets the same
/// answer, even from another instance or after a restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdempotentWrite {
    pub fingerprint: String,
    pub event_id: String,
    pub position: Position,
    pub data: Value,
}

/// Consumption state of one partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionProgress {
    pub topic: TopicRole,
    pub partition: i32,
    /// The next offset to read.
    pub next_offset: i64,
    /// Records that were not JSON or not a known shape.
    pub skipped: u64,
    /// Times the saved offset had fallen out of retention and was reset to the earliest.
    pub resets: u64,
    /// Time of the last record read.
    pub last_record_time: Option<DateTime<Utc>>,
}

/// Counters kept as events apply, so that `/api/stats` costs nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    pub by_status: BTreeMap<OrderStatus, u64>,
    /// Revenue of paid orders, per currency.
    pub revenue: BTreeMap<String, Money>,
    pub payments_succeeded: u64,
    pub payments_failed: u64,
    pub anomalies: u64,
    /// Orders created per minute (unix minute → count), the last [`MINUTES_KEPT`].
    pub orders_per_minute: BTreeMap<i64, u64>,
    /// Revenue of orders created per minute (unix minute → minor units), all currencies.
    pub revenue_per_minute: BTreeMap<i64, i64>,
}

/// What applying one event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// New event, now part of the model.
    New,
    /// Already applied before (same `event_id`): nothing changed.
    Duplicate,
}

/// The whole read model. Fields are private: the model changes only through [`Self::apply`]
/// and the progress methods.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReadModel {
    orders: HashMap<String, OrderRecord>,
    payments: HashMap<String, PaymentRecord>,
    deliveries: HashMap<String, DeliveryRecord>,
    seen_events: HashSet<String>,
    idempotency: HashMap<String, IdempotentWrite>,
    partitions: Vec<PartitionProgress>,
    counters: Counters,
    // Indexes for newest-first listing; derived, rebuilt after loading a snapshot.
    #[serde(skip)]
    orders_by_time: BTreeSet<(DateTime<Utc>, String)>,
    #[serde(skip)]
    payments_by_time: BTreeSet<(DateTime<Utc>, String)>,
    #[serde(skip)]
    deliveries_by_time: BTreeSet<(DateTime<Utc>, String)>,
}

impl ReadModel {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one event read at `position`. `idempotency` is the key and request fingerprint
    /// the producing request carried, if any.
    pub fn apply(
        &mut self,
        event: &Event,
        position: Position,
        data: &Value,
        idempotency: Option<(String, String)>,
    ) -> Applied {
        if !self.seen_events.insert(event.event_id.clone()) {
            return Applied::Duplicate;
        }
        if let Some((key, fingerprint)) = idempotency {
            self.idempotency.entry(key).or_insert(IdempotentWrite {
                fingerprint,
                event_id: event.event_id.clone(),
                position,
                data: data.clone(),
            });
        }

        match &event.body {
            EventBody::PaymentProcessed(p) => self.record_payment(event, p, position),
            EventBody::Delivery(d) => self.record_delivery(event, d, position),
            _ => {}
        }
        self.record_in_order(event, position, data);
        Applied::New
    }

    fn record_payment(&mut self, event: &Event, p: &PaymentDetails, position: Position) {
        match p.status {
            PaymentStatus::Success => self.counters.payments_succeeded += 1,
            PaymentStatus::Failed => self.counters.payments_failed += 1,
        }
        if let Some(old) = self.payments.get(&p.payment_id) {
            self.payments_by_time
                .remove(&(old.time, old.payment_id.clone()));
        }
        self.payments_by_time
            .insert((event.time, p.payment_id.clone()));
        self.payments.insert(
            p.payment_id.clone(),
            PaymentRecord {
                payment_id: p.payment_id.clone(),
                order_id: event.order_id.clone(),
                amount: p.amount,
                currency: p.currency.clone(),
                method: p.method.clone(),
                status: p.status,
                failure_reason: p.failure_reason.clone(),
                time: event.time,
                position,
            },
        );
    }

    fn record_delivery(&mut self, event: &Event, d: &DeliveryDetails, position: Position) {
        match self.deliveries.get_mut(&d.delivery_id) {
            // Updates may be read out of order: the newest by event time wins.
            Some(existing) => {
                if event.time >= existing.updated_at {
                    existing.status = d.status;
                    existing.updated_at = event.time;
                    existing.position = position;
                    if d.carrier.is_some() {
                        existing.carrier = d.carrier.clone();
                    }
                    if d.estimated_date.is_some() {
                        existing.estimated_date = d.estimated_date;
                    }
                }
                if event.time < existing.created_at {
                    self.deliveries_by_time
                        .remove(&(existing.created_at, d.delivery_id.clone()));
                    existing.created_at = event.time;
                    self.deliveries_by_time
                        .insert((event.time, d.delivery_id.clone()));
                }
            }
            None => {
                self.deliveries_by_time
                    .insert((event.time, d.delivery_id.clone()));
                self.deliveries.insert(
                    d.delivery_id.clone(),
                    DeliveryRecord {
                        delivery_id: d.delivery_id.clone(),
                        order_id: event.order_id.clone(),
                        address: d.address.clone(),
                        status: d.status,
                        carrier: d.carrier.clone(),
                        estimated_date: d.estimated_date,
                        created_at: event.time,
                        updated_at: event.time,
                        position,
                    },
                );
            }
        }
    }

    fn record_in_order(&mut self, event: &Event, position: Position, data: &Value) {
        let order = self
            .orders
            .entry(event.order_id.clone())
            .or_insert_with(|| OrderRecord {
                order_id: event.order_id.clone(),
                details: None,
                created_at: None,
                status: None,
                updated_at: event.time,
                timeline: Vec::new(),
                anomalies: 0,
                payment_ids: Vec::new(),
                delivery_ids: Vec::new(),
            });
        let before = (order.status, order.details.clone(), order.anomalies);
        match &event.body {
            EventBody::PaymentProcessed(p) if !order.payment_ids.contains(&p.payment_id) => {
                order.payment_ids.push(p.payment_id.clone());
            }
            EventBody::Delivery(d) if !order.delivery_ids.contains(&d.delivery_id) => {
                order.delivery_ids.push(d.delivery_id.clone());
            }
            _ => {}
        }

        if let EventBody::OrderCreated(details) = &event.body
            && order.details.is_none()
        {
            order.details = Some(details.clone());
            order.created_at = Some(event.time);
            self.orders_by_time
                .insert((event.time, order.order_id.clone()));
            let minute = unix_minute(event.time);
            *self.counters.orders_per_minute.entry(minute).or_default() += 1;
            *self.counters.revenue_per_minute.entry(minute).or_default() += details.amount.minor();
            prune_minutes(&mut self.counters.orders_per_minute);
            prune_minutes(&mut self.counters.revenue_per_minute);
        }

        let entry = TimelineEntry {
            event_id: event.event_id.clone(),
            event_type: event.event_type,
            position,
            time: event.time,
            data: data.clone(),
            anomaly: None,
            body: event.body.clone(),
        };
        let at = order
            .timeline
            .partition_point(|e| timeline_key(e) <= timeline_key(&entry));
        order.timeline.insert(at, entry);
        order.updated_at = order.updated_at.max(event.time);
        refold(order);

        let after = (order.status, order.details.clone(), order.anomalies);
        self.counters.anomalies = self.counters.anomalies + after.2 as u64 - before.2 as u64;
        update_counters(
            &mut self.counters,
            (before.0, before.1.as_ref()),
            (after.0, after.1.as_ref()),
        );
    }

    /// Progress of one partition (created at offset `start` when first asked for).
    pub fn progress_mut(&mut self, topic: TopicRole, partition: i32) -> &mut PartitionProgress {
        let at = match self
            .partitions
            .binary_search_by(|p| (p.topic, p.partition).cmp(&(topic, partition)))
        {
            Ok(at) => at,
            Err(at) => {
                self.partitions.insert(
                    at,
                    PartitionProgress {
                        topic,
                        partition,
                        next_offset: 0,
                        skipped: 0,
                        resets: 0,
                        last_record_time: None,
                    },
                );
                at
            }
        };
        &mut self.partitions[at]
    }

    pub fn progress(&self, topic: TopicRole, partition: i32) -> Option<&PartitionProgress> {
        self.partitions
            .binary_search_by(|p| (p.topic, p.partition).cmp(&(topic, partition)))
            .ok()
            .map(|at| &self.partitions[at])
    }

    pub fn partitions(&self) -> &[PartitionProgress] {
        &self.partitions
    }

    pub fn order(&self, order_id: &str) -> Option<&OrderRecord> {
        self.orders.get(order_id)
    }

    pub fn payment(&self, payment_id: &str) -> Option<&PaymentRecord> {
        self.payments.get(payment_id)
    }

    pub fn delivery(&self, delivery_id: &str) -> Option<&DeliveryRecord> {
        self.deliveries.get(delivery_id)
    }

    pub fn idempotent_write(&self, key: &str) -> Option<&IdempotentWrite> {
        self.idempotency.get(key)
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn event_count(&self) -> usize {
        self.seen_events.len()
    }

    pub fn order_count(&self) -> usize {
        self.orders_by_time.len()
    }

    /// Rebuilds what is derived rather than saved (after loading a snapshot).
    fn rebuild_indexes(&mut self) {
        self.orders_by_time = self
            .orders
            .values()
            .filter_map(|o| o.created_at.map(|t| (t, o.order_id.clone())))
            .collect();
        self.payments_by_time = self
            .payments
            .values()
            .map(|p| (p.time, p.payment_id.clone()))
            .collect();
        self.deliveries_by_time = self
            .deliveries
            .values()
            .map(|d| (d.created_at, d.delivery_id.clone()))
            .collect();
    }
}

/// Timeline order: event time, then lifecycle rank (an order is created before it is paid,
/// paid before it ships), then position.
fn timeline_key(e: &TimelineEntry) -> (DateTime<Utc>, u8, Position) {
    let rank = match e.event_type {
        EventType::OrderCreated => 0,
        EventType::PaymentProcessed => 1,
        EventType::OrderCancelled => 2,
        EventType::DeliveryCreated => 3,
        EventType::DeliveryUpdated => 4,
    };
    (e.time, rank, e.position)
}

/// Recomputes the order's status and anomalies from its timeline.
fn refold(order: &mut OrderRecord) {
    let mut status = None;
    let mut anomalies = 0;
    for entry in &mut order.timeline {
        match transition(status, &entry.body) {
            Ok(next) => {
                status = Some(next);
                entry.anomaly = None;
            }
            Err(violation) => {
                entry.anomaly = Some(violation.0);
                anomalies += 1;
            }
        }
    }
    order.status = status;
    order.anomalies = anomalies;
}

/// Moves an order's contribution to the counters from its old state to its new one.
fn update_counters(
    c: &mut Counters,
    before: (Option<OrderStatus>, Option<&OrderDetails>),
    after: (Option<OrderStatus>, Option<&OrderDetails>),
) {
    if let (Some(status), Some(_)) = before {
        if let Some(n) = c.by_status.get_mut(&status) {
            *n = n.saturating_sub(1);
        }
        if let (true, Some(d)) = (status.is_paid(), before.1) {
            let total = c.revenue.entry(d.currency.clone()).or_default();
            *total = Money::from_minor(total.minor() - d.amount.minor());
        }
    }
    if let (Some(status), Some(d)) = after {
        *c.by_status.entry(status).or_default() += 1;
        if status.is_paid() {
            let total = c.revenue.entry(d.currency.clone()).or_default();
            *total = Money::from_minor(total.minor() + d.amount.minor());
        }
    }
}

pub(crate) fn unix_minute(t: DateTime<Utc>) -> i64 {
    t.duration_trunc(TimeDelta::minutes(1))
        .unwrap_or(t)
        .timestamp()
        / 60
}

fn prune_minutes<V>(per_minute: &mut BTreeMap<i64, V>) {
    let (Some(&oldest), Some(&newest)) = (per_minute.keys().next(), per_minute.keys().next_back())
    else {
        return;
    };
    if oldest < newest - MINUTES_KEPT {
        *per_minute = per_minute.split_off(&(newest - MINUTES_KEPT));
    }
}

#[cfg(test)]
mod tests;
