//! The read model: orders, payments, deliveries and statistics, built only from consumed
//! events (never from the HTTP request that produced them).
//!
//! The model lives on disk ([`store`]): its cost does not grow in memory with the shop's
//! history. This module holds the pure part: the record types and the rules that fold one
//! event into them. [`Changes`] is one group commit's worth of modified records, read from the
//! saved state through the small [`Lookup`] trait and written back by the store in one
//! transaction, together with the offsets of the records that produced them.
//!
//! Applying is idempotent by `event_id`, so replays and producer retries never double count:
//! every event belongs to one order, and an event whose id is already in that order's
//! timeline is a duplicate. The timeline is the de-duplication set, kept as long as the order.
//! An order's status is the fold of its timeline sorted by event time (bounded by the records'
//! Kafka timestamps: [`event_time`]), recomputed whenever an event joins it. The three topics are consumed independently, so a payment may be read
//! before the order it pays; folding by time gives the same state whatever the arrival order,
//! and an event that breaks the lifecycle stays in the timeline, flagged as an anomaly.

mod codec;
pub mod event_time;
pub mod query;
pub mod store;
mod tables;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::event::{
    DeliveryDetails, DeliveryStatus, Event, EventBody, EventType, OrderDetails, PaymentDetails,
    PaymentStatus, Position, TopicRole,
};
use crate::domain::lifecycle::{OrderStatus, Step, next_status};
use crate::domain::money::Money;

pub use store::StoreError;

/// How many minutes of per-minute order counts are kept.
pub const MINUTES_KEPT: i64 = 24 * 60;

/// One event in an order's history. It is rewritten with the timeline each time the order
/// changes, so it keeps only what refolding and the order's detail need (in the store's
/// binary encoding): the record value is stored once, apart ([`Changes::event_data`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineEntry {
    pub event_id: String,
    pub event_type: EventType,
    pub position: Position,
    pub time: DateTime<Utc>,
    /// Why this event breaks the lifecycle, if it does.
    pub anomaly: Option<String>,
    /// What the event does to the lifecycle, for refolding.
    pub(crate) step: Step,
    /// Where its record value is stored: the count of events applied when it was, a key that
    /// only grows, so that the stored values are never rewritten by compactions.
    pub(crate) data_key: u64,
    /// The order's status right after this event was first applied: what its live frame said,
    /// so that a replay from Kafka sends the same frame.
    pub(crate) status_after: Option<OrderStatus>,
    /// The Kafka record's timestamp, which bounds the event's own time ([`event_time`]).
    pub record_time: Option<DateTime<Utc>>,
}

/// What an event did to its order, as its live frame tells it: the order's status right after
/// the event was first applied, and the event's number in this store (it only grows, so a
/// client keeps a row's status from the event with the highest number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventEffect {
    pub order_status: Option<OrderStatus>,
    pub seq: u64,
}

impl StoredOrder {
    /// The effect of the event `event_id` of this order's timeline, if it is there.
    pub fn effect_of(&self, event_id: &str) -> Option<EventEffect> {
        self.timeline
            .iter()
            .find(|e| e.event_id == event_id)
            .map(|e| EventEffect {
                order_status: e.status_after,
                seq: e.data_key,
            })
    }
}

/// An order as the log tells it, without its timeline (list rows read only this).
#[derive(Debug, Clone, PartialEq)]
pub struct OrderRecord {
    pub order_id: String,
    /// `None` while only events of other topics were read for this order.
    pub details: Option<OrderDetails>,
    pub created_at: Option<DateTime<Utc>>,
    pub status: Option<OrderStatus>,
    pub updated_at: DateTime<Utc>,
    pub anomalies: usize,
    pub payment_ids: Vec<String>,
    pub delivery_ids: Vec<String>,
    /// The number ([`EventEffect::seq`]) of the last event applied to this order.
    pub seq: u64,
}

/// An order and its timeline, as the apply rules work on it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredOrder {
    pub record: OrderRecord,
    pub timeline: Vec<TimelineEntry>,
}

#[derive(Debug, Clone, PartialEq)]
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

#[derive(Debug, Clone, PartialEq)]
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
#[derive(Debug, Clone, PartialEq)]
pub struct IdempotentWrite {
    pub fingerprint: String,
    pub event_id: String,
    pub position: Position,
    /// The record value as JSON text.
    pub data: String,
    /// The Kafka time of the record, for pruning.
    pub record_time: DateTime<Utc>,
}

/// Consumption state of one partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PartitionProgress {
    pub topic: TopicRole,
    pub partition: i32,
    /// The next offset to read.
    pub next_offset: i64,
    /// Records that were not JSON or not a known shape.
    pub skipped: u64,
    /// Times the saved offset had fallen out of retention and was reset to the earliest.
    pub resets: u64,
    /// Batches that could not be read (corrupt bytes), skipped with their offsets.
    #[serde(default)]
    pub unreadable: u64,
    /// Records of aborted transactions, read past and not applied.
    #[serde(default)]
    pub aborted: u64,
    /// The id of the topic these offsets belong to, when the broker gives ids: a topic deleted
    /// and created again under the same name has another one, and its offsets start over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_id: Option<String>,
    /// Time of the last record read.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_record_time: Option<DateTime<Utc>>,
}

impl PartitionProgress {
    pub fn new(topic: TopicRole, partition: i32) -> Self {
        Self {
            topic,
            partition,
            next_offset: 0,
            skipped: 0,
            resets: 0,
            unreadable: 0,
            aborted: 0,
            topic_id: None,
            last_record_time: None,
        }
    }
}

/// Counters kept as events apply, so that `/api/stats` costs nothing. Saved in the same
/// transaction as the records they count.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    pub by_status: BTreeMap<OrderStatus, u64>,
    /// Revenue of paid orders, per currency.
    pub revenue: BTreeMap<String, Money>,
    pub payments_succeeded: u64,
    pub payments_failed: u64,
    pub anomalies: u64,
    /// Orders whose creation was read.
    pub orders: u64,
    pub deliveries: u64,
    /// Distinct events applied.
    pub events: u64,
    /// The newest Kafka record time applied: the clock that retention is measured by, so that
    /// every instance and every replay prunes alike.
    pub newest_record_time: Option<DateTime<Utc>>,
}

/// Orders created in one minute, and their revenue in minor units (all currencies).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinuteStats {
    pub orders: u64,
    pub revenue: i64,
}

/// What applying one event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// New event, now part of the model.
    New,
    /// Already applied before (same `event_id`): nothing changed.
    Duplicate,
}

/// Reads of the saved state the apply rules need. The store implements it over a write
/// transaction; tests over a map.
pub trait Lookup {
    fn order(&self, order_id: &str) -> Result<Option<StoredOrder>, StoreError>;
    fn payment(&self, payment_id: &str) -> Result<Option<PaymentRecord>, StoreError>;
    fn delivery(&self, delivery_id: &str) -> Result<Option<DeliveryRecord>, StoreError>;
    fn idempotency_known(&self, key: &str) -> Result<bool, StoreError>;
    fn minute(&self, minute: i64) -> Result<Option<MinuteStats>, StoreError>;
}

/// A record as it was before this batch (`None`: new), or as much of it as its indexes need
/// (`B`: an order's timeline is not copied), and as it is now.
#[derive(Debug, Clone)]
pub struct Touched<T, B = T> {
    pub before: Option<B>,
    pub after: Option<T>,
    /// Whether `after` differs from `before` (only changed records are written).
    pub changed: bool,
}

/// The changes of one group commit: every record touched, with its saved version for the
/// store to update the indexes, and the counters and offsets as they will be committed.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    pub orders: HashMap<String, Touched<StoredOrder, OrderRecord>>,
    pub payments: HashMap<String, Touched<PaymentRecord>>,
    pub deliveries: HashMap<String, Touched<DeliveryRecord>>,
    pub idempotency: HashMap<String, IdempotentWrite>,
    /// The record value (JSON text) of every new event, by its [`TimelineEntry::data_key`].
    pub event_data: Vec<(u64, String)>,
    pub counters: Counters,
    pub minutes: BTreeMap<i64, MinuteStats>,
    /// Every partition's progress as it will be committed (only the changed ones are written).
    pub progress: BTreeMap<(TopicRole, i32), PartitionProgress>,
    pub changed_progress: BTreeSet<(TopicRole, i32)>,
}

impl Changes {
    /// Starts a batch from the committed counters and offsets.
    pub fn new(
        counters: Counters,
        progress: BTreeMap<(TopicRole, i32), PartitionProgress>,
    ) -> Self {
        Self {
            counters,
            progress,
            ..Self::default()
        }
    }

    /// Progress of one partition (created at offset 0 when first asked for), marked changed.
    pub fn progress_mut(&mut self, topic: TopicRole, partition: i32) -> &mut PartitionProgress {
        self.changed_progress.insert((topic, partition));
        self.progress
            .entry((topic, partition))
            .or_insert_with(|| PartitionProgress::new(topic, partition))
    }

    pub fn progress(&self, topic: TopicRole, partition: i32) -> Option<&PartitionProgress> {
        self.progress.get(&(topic, partition))
    }

    /// What the event `event_id` of `order_id` did, once [`Changes::apply`] took it.
    pub fn effect_of(&self, order_id: &str, event_id: &str) -> Option<EventEffect> {
        self.orders
            .get(order_id)
            .and_then(|t| t.after.as_ref())
            .and_then(|o| o.effect_of(event_id))
    }

    /// Applies one event read at `position`. `data` is the record value as JSON text;
    /// `idempotency` the key and request fingerprint the producing request carried, if any.
    pub fn apply(
        &mut self,
        saved: &impl Lookup,
        event: &Event,
        position: Position,
        data: &str,
        record_time: DateTime<Utc>,
        idempotency: Option<(String, String)>,
    ) -> Result<Applied, StoreError> {
        let order = touch_order(&mut self.orders, saved, &event.order_id)?;
        if order.after.as_ref().is_some_and(|o| {
            o.timeline
                .iter()
                .any(|entry| entry.event_id == event.event_id)
        }) {
            return Ok(Applied::Duplicate);
        }
        self.counters.events += 1;
        self.counters.newest_record_time = self.counters.newest_record_time.max(Some(record_time));
        if let Some((key, fingerprint)) = idempotency
            && !self.idempotency.contains_key(&key)
            && !saved.idempotency_known(&key)?
        {
            self.idempotency.insert(
                key,
                IdempotentWrite {
                    fingerprint,
                    event_id: event.event_id.clone(),
                    position,
                    data: data.to_string(),
                    record_time,
                },
            );
        }

        // Lists, statistics and "newest wins" read the event's time only within the bounds its
        // record's timestamp sets.
        let (at, _) = event_time::bounded(event.time, record_time);
        match &event.body {
            EventBody::PaymentProcessed(p) => self.record_payment(saved, event, p, position, at)?,
            EventBody::Delivery(d) => self.record_delivery(saved, event, d, position, at)?,
            _ => {}
        }
        self.record_in_order(saved, event, position, data, record_time)?;
        Ok(Applied::New)
    }

    fn record_payment(
        &mut self,
        saved: &impl Lookup,
        event: &Event,
        p: &PaymentDetails,
        position: Position,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        match p.status {
            PaymentStatus::Success => self.counters.payments_succeeded += 1,
            PaymentStatus::Failed => self.counters.payments_failed += 1,
        }
        let touched = touch(
            &mut self.payments,
            &p.payment_id,
            |id| saved.payment(id),
            Clone::clone,
        )?;
        touched.changed = true;
        touched.after = Some(PaymentRecord {
            payment_id: p.payment_id.clone(),
            order_id: event.order_id.clone(),
            amount: p.amount,
            currency: p.currency.clone(),
            method: p.method.clone(),
            status: p.status,
            failure_reason: p.failure_reason.clone(),
            time: at,
            position,
        });
        Ok(())
    }

    fn record_delivery(
        &mut self,
        saved: &impl Lookup,
        event: &Event,
        d: &DeliveryDetails,
        position: Position,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let touched = touch(
            &mut self.deliveries,
            &d.delivery_id,
            |id| saved.delivery(id),
            Clone::clone,
        )?;
        touched.changed = true;
        match &mut touched.after {
            // Updates may be read out of order: the newest by event time wins.
            Some(existing) => {
                if at >= existing.updated_at {
                    existing.status = d.status;
                    existing.updated_at = at;
                    existing.position = position;
                    if d.carrier.is_some() {
                        existing.carrier = d.carrier.clone();
                    }
                    if d.estimated_date.is_some() {
                        existing.estimated_date = d.estimated_date;
                    }
                }
                if at < existing.created_at {
                    existing.created_at = at;
                }
            }
            None => {
                self.counters.deliveries += 1;
                touched.after = Some(DeliveryRecord {
                    delivery_id: d.delivery_id.clone(),
                    order_id: event.order_id.clone(),
                    address: d.address.clone(),
                    status: d.status,
                    carrier: d.carrier.clone(),
                    estimated_date: d.estimated_date,
                    created_at: at,
                    updated_at: at,
                    position,
                });
            }
        }
        Ok(())
    }

    fn record_in_order(
        &mut self,
        saved: &impl Lookup,
        event: &Event,
        position: Position,
        data: &str,
        record_time: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (at, _) = event_time::bounded(event.time, record_time);
        let touched = touch_order(&mut self.orders, saved, &event.order_id)?;
        touched.changed = true;
        let order = touched.after.get_or_insert_with(|| StoredOrder {
            record: OrderRecord {
                order_id: event.order_id.clone(),
                details: None,
                created_at: None,
                status: None,
                updated_at: at,
                anomalies: 0,
                payment_ids: Vec::new(),
                delivery_ids: Vec::new(),
                seq: 0,
            },
            timeline: Vec::new(),
        });
        let record = &mut order.record;
        // An order's details are set once (its first `order.created`) and never change, so
        // the counters need only know whether it had them before: no copy of them per event.
        let (status_before, had_details, anomalies_before) =
            (record.status, record.details.is_some(), record.anomalies);
        match &event.body {
            EventBody::PaymentProcessed(p) if !record.payment_ids.contains(&p.payment_id) => {
                record.payment_ids.push(p.payment_id.clone());
            }
            EventBody::Delivery(d) if !record.delivery_ids.contains(&d.delivery_id) => {
                record.delivery_ids.push(d.delivery_id.clone());
            }
            _ => {}
        }

        let mut created_minute = None;
        if let EventBody::OrderCreated(details) = &event.body
            && record.details.is_none()
        {
            record.details = Some(details.clone());
            record.created_at = Some(at);
            self.counters.orders += 1;
            created_minute = Some((unix_minute(at), details.amount.minor()));
        }

        let entry = TimelineEntry {
            event_id: event.event_id.clone(),
            event_type: event.event_type,
            position,
            time: event.time,
            anomaly: None,
            step: Step::of(&event.body),
            data_key: self.counters.events,
            status_after: None,
            record_time: Some(record_time),
        };
        let data_key = entry.data_key;
        // The record value is written once, apart from the timeline that is rewritten as
        // the order changes.
        self.event_data.push((entry.data_key, data.to_string()));
        order.timeline.push(entry);
        order.record.updated_at = order.record.updated_at.max(at);
        order.record.seq = data_key;
        refold(order);
        let status = order.record.status;
        if let Some(entry) = order.timeline.iter_mut().find(|e| e.data_key == data_key) {
            entry.status_after = status;
        }

        let record = &order.record;
        self.counters.anomalies = self
            .counters
            .anomalies
            .saturating_add(record.anomalies as u64)
            .saturating_sub(anomalies_before as u64);
        let details_before = record.details.as_ref().filter(|_| had_details);
        update_counters(
            &mut self.counters,
            (status_before, details_before),
            (record.status, record.details.as_ref()),
        );
        if let Some((minute, cents)) = created_minute {
            let stats = match self.minutes.get(&minute) {
                Some(stats) => *stats,
                None => saved.minute(minute)?.unwrap_or_default(),
            };
            self.minutes.insert(
                minute,
                MinuteStats {
                    orders: stats.orders.saturating_add(1),
                    revenue: stats.revenue.saturating_add(cents),
                },
            );
        }
        Ok(())
    }
}

/// The batch's working copy of a record, read from the saved state the first time; `keep`
/// takes what the indexes need of the saved version.
fn touch<'a, T, B>(
    map: &'a mut HashMap<String, Touched<T, B>>,
    id: &str,
    load: impl FnOnce(&str) -> Result<Option<T>, StoreError>,
    keep: impl FnOnce(&T) -> B,
) -> Result<&'a mut Touched<T, B>, StoreError> {
    if !map.contains_key(id) {
        let after = load(id)?;
        map.insert(
            id.to_string(),
            Touched {
                before: after.as_ref().map(keep),
                after,
                changed: false,
            },
        );
    }
    Ok(map.get_mut(id).expect("inserted above"))
}

/// The batch's working copy of an order; its indexes need only the saved record, not the
/// timeline.
fn touch_order<'a>(
    orders: &'a mut HashMap<String, Touched<StoredOrder, OrderRecord>>,
    saved: &impl Lookup,
    order_id: &str,
) -> Result<&'a mut Touched<StoredOrder, OrderRecord>, StoreError> {
    touch(orders, order_id, |id| saved.order(id), |o| o.record.clone())
}

/// Puts the order's timeline in order ([`event_time::arrange`]: event time within the bounds
/// of the records' timestamps, then lifecycle rank, then position) and recomputes the order's
/// status and anomalies from it. An entry whose time was not taken as written is an anomaly
/// with that reason, besides any lifecycle step it breaks.
fn refold(order: &mut StoredOrder) {
    let times = event_time::arrange(&mut order.timeline);
    let mut status = None;
    let mut anomalies = 0;
    for (entry, time) in order.timeline.iter_mut().zip(times) {
        let step = match next_status(status, entry.step) {
            Ok(next) => {
                status = Some(next);
                None
            }
            Err(violation) => Some(violation.0),
        };
        entry.anomaly = match (time, step) {
            (Some(time), Some(step)) => Some(format!("{time}; {step}")),
            (time, step) => time.or(step),
        };
        if entry.anomaly.is_some() {
            anomalies += 1;
        }
    }
    order.record.status = status;
    order.record.anomalies = anomalies;
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
            *total = Money::from_minor(total.minor().saturating_sub(d.amount.minor()));
        }
    }
    if let (Some(status), Some(d)) = after {
        *c.by_status.entry(status).or_default() += 1;
        if status.is_paid() {
            let total = c.revenue.entry(d.currency.clone()).or_default();
            *total = Money::from_minor(total.minor().saturating_add(d.amount.minor()));
        }
    }
}

pub(crate) fn unix_minute(t: DateTime<Utc>) -> i64 {
    t.duration_trunc(TimeDelta::minutes(1))
        .unwrap_or(t)
        .timestamp()
        / 60
}

/// The words an order, payment or delivery is found by with `q`: the lower-case runs of
/// letters and digits of the given text fields. Ids are not words: `q=<id>` looks the record
/// up by its key instead, which costs no index entry. Bounded, so that a hostile record cannot
/// make a huge index entry.
pub fn search_words<'a>(fields: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    const MAX_WORDS: usize = 32;
    const MAX_WORD_CHARS: usize = 64;
    let mut words = BTreeSet::new();
    for field in fields {
        for word in query_words(field) {
            if words.len() == MAX_WORDS {
                return words;
            }
            if word.chars().count() <= MAX_WORD_CHARS {
                words.insert(word);
            }
        }
    }
    words
}

/// The words of a `q` text: its lower-case runs of letters and digits.
pub fn query_words(text: &str) -> Vec<String> {
    let mut words: Vec<String> = text
        .to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect();
    words.sort();
    words.dedup();
    words
}

/// The whole `q` text when it may be an id (letters, digits and dashes, at least one dash),
/// so that `q=<order id>` finds the order by its key.
pub fn query_id(text: &str) -> Option<&str> {
    let id = text.trim();
    (id.contains('-') && id.chars().all(|c| c.is_alphanumeric() || c == '-')).then_some(id)
}

impl OrderRecord {
    /// The text fields its search words come from.
    pub fn word_fields(&self) -> Vec<&str> {
        match &self.details {
            Some(d) => vec![
                d.customer_name.as_str(),
                d.customer_email.as_str(),
                d.product.as_str(),
            ],
            None => Vec::new(),
        }
    }

    pub fn search_words(&self) -> BTreeSet<String> {
        search_words(self.word_fields())
    }
}

impl PaymentRecord {
    pub fn word_fields(&self) -> Vec<&str> {
        vec![self.method.as_str()]
    }

    pub fn search_words(&self) -> BTreeSet<String> {
        search_words(self.word_fields())
    }
}

impl DeliveryRecord {
    pub fn word_fields(&self) -> Vec<&str> {
        let mut fields = vec![self.address.as_str()];
        if let Some(c) = &self.carrier {
            fields.push(c);
        }
        fields
    }

    pub fn search_words(&self) -> BTreeSet<String> {
        search_words(self.word_fields())
    }
}

#[cfg(test)]
mod tests;
