//! The store's tables in redb and how records are laid out in them.
//!
//! Values are JSON (small, self-describing, readable with any redb tool); keys are redb
//! tuples, so that every list is a range over an index in the order it is shown (newest
//! first: ranges are walked backwards). Times in keys are microseconds since the epoch.
//!
//! | table | key | value |
//! |---|---|---|
//! | `meta` | name | format version, topic layout, counters |
//! | `progress` | (topic, partition) | [`PartitionProgress`] |
//! | `orders`, `timelines` | order id | [`OrderRecord`], its timeline |
//! | `payments`, `deliveries` | id | the record |
//! | `*_by_time` | (time, id) | () |
//! | `*_by_status` | (status, time, id) | () |
//! | `search` | (kind, word, time, id) | () |
//! | `word_counts` | (kind, word) | records holding the word |
//! | `idempotency` | key | [`IdempotentWrite`] |
//! | `idempotency_by_time` | (record time, key) | (), for pruning |
//! | `minutes` | unix minute | [`MinuteStats`] |

use std::collections::BTreeSet;

use chrono::{DateTime, TimeDelta, Utc};
use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{
    Changes, Counters, DeliveryRecord, Lookup, MINUTES_KEPT, MinuteStats, OrderRecord,
    PartitionProgress, PaymentRecord, StoreError, StoredOrder, TimelineEntry,
};
use crate::domain::event::{DeliveryStatus, PaymentStatus, TopicRole};
use crate::domain::lifecycle::OrderStatus;

pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub const PROGRESS: TableDefinition<(u8, i32), &[u8]> = TableDefinition::new("progress");
pub const ORDERS: TableDefinition<&str, &[u8]> = TableDefinition::new("orders");
pub const TIMELINES: TableDefinition<&str, &[u8]> = TableDefinition::new("timelines");
pub const PAYMENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("payments");
pub const DELIVERIES: TableDefinition<&str, &[u8]> = TableDefinition::new("deliveries");
pub const ORDERS_BY_TIME: TableDefinition<(i64, &str), ()> = TableDefinition::new("orders_by_time");
pub const ORDERS_BY_STATUS: TableDefinition<(u8, i64, &str), ()> =
    TableDefinition::new("orders_by_status");
pub const PAYMENTS_BY_TIME: TableDefinition<(i64, &str), ()> =
    TableDefinition::new("payments_by_time");
pub const PAYMENTS_BY_STATUS: TableDefinition<(u8, i64, &str), ()> =
    TableDefinition::new("payments_by_status");
pub const DELIVERIES_BY_TIME: TableDefinition<(i64, &str), ()> =
    TableDefinition::new("deliveries_by_time");
pub const DELIVERIES_BY_STATUS: TableDefinition<(u8, i64, &str), ()> =
    TableDefinition::new("deliveries_by_status");
pub const SEARCH: TableDefinition<(u8, &str, i64, &str), ()> = TableDefinition::new("search");
/// How many records hold each word, so that a search walks its rarest word.
pub const WORD_COUNTS: TableDefinition<(u8, &str), u64> = TableDefinition::new("word_counts");
pub const IDEMPOTENCY: TableDefinition<&str, &[u8]> = TableDefinition::new("idempotency");
pub const IDEMPOTENCY_BY_TIME: TableDefinition<(i64, &str), ()> =
    TableDefinition::new("idempotency_by_time");
pub const MINUTES: TableDefinition<i64, &[u8]> = TableDefinition::new("minutes");

pub const META_FORMAT: &str = "format";
pub const META_TOPICS: &str = "topics";
pub const META_COUNTERS: &str = "counters";

/// Which list a `search` entry belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Orders = 0,
    Payments = 1,
    Deliveries = 2,
}

/// Most pruned entries per commit, so that pruning never makes one commit long.
const PRUNE_PER_COMMIT: usize = 2_000;

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("stored records always serialise")
}

pub fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

pub fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub fn topic_code(topic: TopicRole) -> u8 {
    match topic {
        TopicRole::Orders => 0,
        TopicRole::Payments => 1,
        TopicRole::Deliveries => 2,
    }
}

pub fn order_status_code(s: OrderStatus) -> u8 {
    OrderStatus::ALL.iter().position(|x| *x == s).unwrap_or(0) as u8
}

pub fn payment_status_code(s: PaymentStatus) -> u8 {
    match s {
        PaymentStatus::Success => 0,
        PaymentStatus::Failed => 1,
    }
}

pub fn delivery_status_code(s: DeliveryStatus) -> u8 {
    DeliveryStatus::ALL
        .iter()
        .position(|x| *x == s)
        .unwrap_or(0) as u8
}

/// Creates every table, so that readers never meet a missing one.
pub fn create_all(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(META)?;
    txn.open_table(PROGRESS)?;
    txn.open_table(ORDERS)?;
    txn.open_table(TIMELINES)?;
    txn.open_table(PAYMENTS)?;
    txn.open_table(DELIVERIES)?;
    txn.open_table(ORDERS_BY_TIME)?;
    txn.open_table(ORDERS_BY_STATUS)?;
    txn.open_table(PAYMENTS_BY_TIME)?;
    txn.open_table(PAYMENTS_BY_STATUS)?;
    txn.open_table(DELIVERIES_BY_TIME)?;
    txn.open_table(DELIVERIES_BY_STATUS)?;
    txn.open_table(SEARCH)?;
    txn.open_table(WORD_COUNTS)?;
    txn.open_table(IDEMPOTENCY)?;
    txn.open_table(IDEMPOTENCY_BY_TIME)?;
    txn.open_table(MINUTES)?;
    Ok(())
}

/// Every table of one write transaction, opened once for the whole group commit.
pub struct WriteTables<'txn> {
    meta: Table<'txn, &'static str, &'static [u8]>,
    progress: Table<'txn, (u8, i32), &'static [u8]>,
    orders: Table<'txn, &'static str, &'static [u8]>,
    timelines: Table<'txn, &'static str, &'static [u8]>,
    payments: Table<'txn, &'static str, &'static [u8]>,
    deliveries: Table<'txn, &'static str, &'static [u8]>,
    orders_by_time: Table<'txn, (i64, &'static str), ()>,
    orders_by_status: Table<'txn, (u8, i64, &'static str), ()>,
    payments_by_time: Table<'txn, (i64, &'static str), ()>,
    payments_by_status: Table<'txn, (u8, i64, &'static str), ()>,
    deliveries_by_time: Table<'txn, (i64, &'static str), ()>,
    deliveries_by_status: Table<'txn, (u8, i64, &'static str), ()>,
    search: Table<'txn, (u8, &'static str, i64, &'static str), ()>,
    word_counts: Table<'txn, (u8, &'static str), u64>,
    idempotency: Table<'txn, &'static str, &'static [u8]>,
    idempotency_by_time: Table<'txn, (i64, &'static str), ()>,
    minutes: Table<'txn, i64, &'static [u8]>,
    /// Per-word count changes of this commit, written once per word at the end.
    word_deltas: std::collections::HashMap<(u8, String), i64>,
}

impl<'txn> WriteTables<'txn> {
    pub fn open(txn: &'txn WriteTransaction) -> Result<Self, StoreError> {
        Ok(Self {
            meta: txn.open_table(META)?,
            progress: txn.open_table(PROGRESS)?,
            orders: txn.open_table(ORDERS)?,
            timelines: txn.open_table(TIMELINES)?,
            payments: txn.open_table(PAYMENTS)?,
            deliveries: txn.open_table(DELIVERIES)?,
            orders_by_time: txn.open_table(ORDERS_BY_TIME)?,
            orders_by_status: txn.open_table(ORDERS_BY_STATUS)?,
            payments_by_time: txn.open_table(PAYMENTS_BY_TIME)?,
            payments_by_status: txn.open_table(PAYMENTS_BY_STATUS)?,
            deliveries_by_time: txn.open_table(DELIVERIES_BY_TIME)?,
            deliveries_by_status: txn.open_table(DELIVERIES_BY_STATUS)?,
            search: txn.open_table(SEARCH)?,
            word_counts: txn.open_table(WORD_COUNTS)?,
            idempotency: txn.open_table(IDEMPOTENCY)?,
            idempotency_by_time: txn.open_table(IDEMPOTENCY_BY_TIME)?,
            minutes: txn.open_table(MINUTES)?,
            word_deltas: std::collections::HashMap::new(),
        })
    }

    /// Writes one batch's changes, its counters and its offsets, and prunes what fell out of
    /// retention. The caller commits.
    pub fn write(&mut self, changes: &Changes, retention: TimeDelta) -> Result<(), StoreError> {
        for (id, touched) in &changes.orders {
            let (Some(after), true) = (&touched.after, touched.changed) else {
                continue;
            };
            self.write_order(id, touched.before.as_ref(), after)?;
        }
        for (id, touched) in &changes.payments {
            let (Some(after), true) = (&touched.after, touched.changed) else {
                continue;
            };
            let before = touched.before.as_ref();
            let listed = |p: &PaymentRecord| (micros(p.time), Some(payment_status_code(p.status)));
            move_listing(
                &mut self.payments_by_time,
                &mut self.payments_by_status,
                id,
                before.map(listed),
                Some(listed(after)),
            )?;
            self.reindex_words(
                Kind::Payments,
                id,
                before.map(|b| (micros(b.time), b.search_words())),
                Some((micros(after.time), after.search_words())),
            )?;
            self.payments
                .insert(id.as_str(), encode(after).as_slice())?;
        }
        for (id, touched) in &changes.deliveries {
            let (Some(after), true) = (&touched.after, touched.changed) else {
                continue;
            };
            let before = touched.before.as_ref();
            let listed =
                |d: &DeliveryRecord| (micros(d.created_at), Some(delivery_status_code(d.status)));
            move_listing(
                &mut self.deliveries_by_time,
                &mut self.deliveries_by_status,
                id,
                before.map(listed),
                Some(listed(after)),
            )?;
            self.reindex_words(
                Kind::Deliveries,
                id,
                before.map(|b| (micros(b.created_at), b.search_words())),
                Some((micros(after.created_at), after.search_words())),
            )?;
            self.deliveries
                .insert(id.as_str(), encode(after).as_slice())?;
        }
        for (key, write) in &changes.idempotency {
            let t = micros(write.record_time);
            self.idempotency
                .insert(key.as_str(), encode(write).as_slice())?;
            self.idempotency_by_time.insert((t, key.as_str()), ())?;
        }
        for (minute, stats) in &changes.minutes {
            self.minutes.insert(*minute, encode(stats).as_slice())?;
        }
        if let Some(&newest) = changes.minutes.keys().next_back() {
            let oldest_kept = newest - MINUTES_KEPT;
            let old: Vec<i64> = self
                .minutes
                .range(..oldest_kept)?
                .take(PRUNE_PER_COMMIT)
                .map(|r| r.map(|(k, _)| k.value()))
                .collect::<Result<_, _>>()?;
            for minute in old {
                self.minutes.remove(minute)?;
            }
        }
        self.write_word_counts()?;
        self.meta
            .insert(META_COUNTERS, encode(&changes.counters).as_slice())?;
        for key in &changes.changed_progress {
            if let Some(p) = changes.progress.get(key) {
                self.progress
                    .insert((topic_code(key.0), key.1), encode(p).as_slice())?;
            }
        }
        if let Some(newest) = changes.counters.newest_record_time {
            self.prune(micros(newest - retention))?;
        }
        Ok(())
    }

    fn write_order(
        &mut self,
        id: &str,
        before: Option<&StoredOrder>,
        after: &StoredOrder,
    ) -> Result<(), StoreError> {
        let listed = |o: &StoredOrder| {
            o.record
                .created_at
                .map(|t| (micros(t), o.record.status.map(order_status_code)))
        };
        move_listing(
            &mut self.orders_by_time,
            &mut self.orders_by_status,
            id,
            before.and_then(listed),
            listed(after),
        )?;
        let words = |o: &StoredOrder| {
            o.record
                .created_at
                .map(|t| (micros(t), o.record.search_words()))
        };
        self.reindex_words(Kind::Orders, id, before.and_then(words), words(after))?;
        self.orders.insert(id, encode(&after.record).as_slice())?;
        self.timelines
            .insert(id, encode(&after.timeline).as_slice())?;
        Ok(())
    }

    /// Moves a record's search entries from its old words to its new ones.
    fn reindex_words(
        &mut self,
        kind: Kind,
        id: &str,
        before: Option<(i64, BTreeSet<String>)>,
        after: Option<(i64, BTreeSet<String>)>,
    ) -> Result<(), StoreError> {
        if before == after {
            return Ok(());
        }
        if let Some((t, words)) = &before {
            for word in words {
                self.search.remove((kind as u8, word.as_str(), *t, id))?;
                self.count_word(kind, word, -1)?;
            }
        }
        if let Some((t, words)) = &after {
            for word in words {
                self.search
                    .insert((kind as u8, word.as_str(), *t, id), ())?;
                self.count_word(kind, word, 1)?;
            }
        }
        Ok(())
    }

    fn count_word(&mut self, kind: Kind, word: &str, delta: i64) -> Result<(), StoreError> {
        *self
            .word_deltas
            .entry((kind as u8, word.to_string()))
            .or_default() += delta;
        Ok(())
    }

    fn write_word_counts(&mut self) -> Result<(), StoreError> {
        for ((kind, word), delta) in std::mem::take(&mut self.word_deltas) {
            if delta == 0 {
                continue;
            }
            let key = (kind, word.as_str());
            let now = self.word_counts.get(key)?.map_or(0, |v| v.value());
            let next = now.saturating_add_signed(delta);
            if next == 0 {
                self.word_counts.remove(key)?;
            } else {
                self.word_counts.insert(key, next)?;
            }
        }
        Ok(())
    }

    /// Forgets idempotency keys whose record is older than `cutoff` (microseconds), a bounded
    /// number per commit.
    fn prune(&mut self, cutoff: i64) -> Result<(), StoreError> {
        let old: Vec<(i64, String)> = self
            .idempotency_by_time
            .range(..(cutoff, ""))?
            .take(PRUNE_PER_COMMIT)
            .map(|r| r.map(|(k, _)| (k.value().0, k.value().1.to_string())))
            .collect::<Result<_, _>>()?;
        for (t, key) in old {
            self.idempotency_by_time.remove((t, key.as_str()))?;
            self.idempotency.remove(key.as_str())?;
        }
        Ok(())
    }
}

/// Moves a record's entries in a time index and a status index from where its old (time,
/// status) put them to where its new one does; `None`: not listed.
fn move_listing(
    by_time: &mut Table<'_, (i64, &'static str), ()>,
    by_status: &mut Table<'_, (u8, i64, &'static str), ()>,
    id: &str,
    old: Option<(i64, Option<u8>)>,
    new: Option<(i64, Option<u8>)>,
) -> Result<(), StoreError> {
    if old == new {
        return Ok(());
    }
    if let Some((t, status)) = old {
        by_time.remove((t, id))?;
        if let Some(s) = status {
            by_status.remove((s, t, id))?;
        }
    }
    if let Some((t, status)) = new {
        by_time.insert((t, id), ())?;
        if let Some(s) = status {
            by_status.insert((s, t, id), ())?;
        }
    }
    Ok(())
}

impl Lookup for WriteTables<'_> {
    fn order(&self, order_id: &str) -> Result<Option<StoredOrder>, StoreError> {
        read_order(&self.orders, &self.timelines, order_id)
    }

    fn payment(&self, payment_id: &str) -> Result<Option<PaymentRecord>, StoreError> {
        read_json(&self.payments, "payment", payment_id)
    }

    fn delivery(&self, delivery_id: &str) -> Result<Option<DeliveryRecord>, StoreError> {
        read_json(&self.deliveries, "delivery", delivery_id)
    }

    fn idempotency_known(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self.idempotency.get(key)?.is_some())
    }

    fn minute(&self, minute: i64) -> Result<Option<MinuteStats>, StoreError> {
        match self.minutes.get(minute)? {
            Some(v) => Ok(Some(decode("minute", v.value())?)),
            None => Ok(None),
        }
    }
}

/// One JSON value by its string key.
pub fn read_json<T: DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    what: &str,
    key: &str,
) -> Result<Option<T>, StoreError> {
    match table.get(key)? {
        Some(v) => Ok(Some(decode(what, v.value())?)),
        None => Ok(None),
    }
}

pub fn read_order(
    orders: &impl ReadableTable<&'static str, &'static [u8]>,
    timelines: &impl ReadableTable<&'static str, &'static [u8]>,
    order_id: &str,
) -> Result<Option<StoredOrder>, StoreError> {
    let Some(record) = read_json::<OrderRecord>(orders, "order", order_id)? else {
        return Ok(None);
    };
    let timeline: Vec<TimelineEntry> =
        read_json(timelines, "timeline", order_id)?.unwrap_or_default();
    Ok(Some(StoredOrder { record, timeline }))
}

/// Every partition's saved progress.
pub fn read_progress(
    table: &impl ReadableTable<(u8, i32), &'static [u8]>,
) -> Result<Vec<PartitionProgress>, StoreError> {
    let mut all = Vec::new();
    for row in table.iter()? {
        let (_, value) = row?;
        all.push(decode("progress", value.value())?);
    }
    Ok(all)
}

pub fn read_counters(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Counters, StoreError> {
    Ok(read_json(meta, "counters", META_COUNTERS)?.unwrap_or_default())
}
