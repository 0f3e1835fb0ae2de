//! Read-only views of the store for the API: filtered, newest-first pages with cursors, an
//! order with its timeline, and the statistics.
//!
//! Every list walks an index backwards from the cursor: the time index when unfiltered, the
//! status index for `status`, the word index for `q`. A `q` search matches whole words
//! (case-insensitive runs of letters and digits) of the customer's name, email and product
//! (payments: method; deliveries: address, carrier), or a whole id: `q=<order id>` finds the
//! order, its payments and its deliveries, `q=<payment or delivery id>` that record, by key.
//! Every word of `q` must be found; the index walk follows the rarest one, and stops after
//! [`MAX_SCANNED`] candidates with a cursor to go on from. A word's entries are keys of their
//! own or blocks of many (`ReadView::search_entries` merges both); every candidate is checked
//! against its record, which also skips an entry a block kept after the record changed.

use chrono::{DateTime, TimeZone, Utc};
use serde_json::value::RawValue;

pub use super::tables::ReadView;
use super::tables::{self, Key, Kind, Table, micros, time_and_id};
use super::{
    Counters, DeliveryRecord, EventEffect, IdempotentWrite, Lookup, MinuteStats, OrderRecord,
    PaymentRecord, StoreError, StoredOrder, query_id, query_words, unix_minute,
};
use crate::domain::event::{DeliveryStatus, PaymentStatus, format_time};
use crate::domain::json;
use crate::domain::lifecycle::{OrderStatus, next_status};
use crate::domain::money::Money;
use crate::messages::api::{
    DeliveryCounts, DeliveryView, MinuteRow, OrderCounts, OrderDetail, OrderSummary, Page,
    PaymentCounts, PaymentView, Revenue, Stats, TimelineItem,
};

/// Largest page a client may ask for.
pub const MAX_LIMIT: usize = crate::domain::validation::LIST_MAX_LIMIT;
/// Most index entries one search request looks at before answering with what it found.
pub const MAX_SCANNED: usize = 20_000;

/// Where a page starts: just after this (time, id), going back in time. Opaque to clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub time: DateTime<Utc>,
    pub id: String,
}

impl Cursor {
    pub fn encode(&self) -> String {
        format!("{}_{}", self.time.timestamp_micros(), self.id)
    }

    /// Where the cursor stands in an index: its time in microseconds and its id as index keys
    /// end with it, ordered as the index walks order them.
    fn position(&self) -> (i64, Vec<u8>) {
        (micros(self.time), tables::id_order(&self.id))
    }

    pub fn decode(s: &str) -> Option<Cursor> {
        let (micros, id) = s.split_once('_')?;
        let time = Utc.timestamp_micros(micros.parse().ok()?).single()?;
        (!id.is_empty()).then(|| Cursor {
            time,
            id: id.to_string(),
        })
    }
}

/// A listing request: filters, page size and where to start.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Status, already validated against the listed kind.
    pub status: Option<String>,
    /// Words to find.
    pub text: Option<String>,
    pub limit: usize,
    pub before: Option<Cursor>,
}

/// What one list kind needs: its tables, how to read its status, how to show a row.
struct ListKind<T, V> {
    kind: Kind,
    /// Reads a record by its id.
    read: fn(&ReadView, &str) -> Result<Option<T>, StoreError>,
    status_code: Option<u8>,
    matches_status: Box<dyn Fn(&T) -> bool>,
    words: fn(&T) -> std::collections::BTreeSet<String>,
    /// The time a row is listed at.
    time: fn(&T) -> DateTime<Utc>,
    /// The ids of the records an id names: the record itself, or those of an order.
    by_id: fn(&ReadView, &str) -> Result<Vec<String>, StoreError>,
    view: fn(&T) -> V,
}

/// The (time, id) keys of one index, newest first, from just before the cursor.
type Keys<'a> = Box<dyn Iterator<Item = Result<(i64, String), StoreError>> + 'a>;

/// The entries of the index range that starts with `prefix`, newest first, below the cursor.
fn index_keys<'a>(view: &'a ReadView, prefix: Key, before: Option<&Cursor>) -> Keys<'a> {
    let skip = prefix.0.len();
    let upper = match before {
        Some(c) => prefix.clone().int(micros(c.time)).id(&c.id),
        None => prefix.clone().byte(0xff),
    };
    Box::new(
        view.keys_back(prefix, upper)
            .map(move |key| time_and_id(&key?, skip)),
    )
}

impl ReadView {
    /// An order without its timeline.
    pub fn order(&self, order_id: &str) -> Result<Option<OrderRecord>, StoreError> {
        self.read_order_record(order_id)
    }

    pub fn stored_order(&self, order_id: &str) -> Result<Option<StoredOrder>, StoreError> {
        self.read_order(order_id)
    }

    /// What each `(order_id, event_id)` did to its order (see [`EventEffect`]); an order read
    /// once for consecutive events of it.
    pub fn effects_of(
        &self,
        events: &[(String, String)],
    ) -> Result<Vec<Option<EventEffect>>, StoreError> {
        let mut effects = Vec::with_capacity(events.len());
        let mut last: Option<(&str, Option<StoredOrder>)> = None;
        for (order_id, event_id) in events {
            if last.as_ref().is_none_or(|(id, _)| id != order_id) {
                last = Some((order_id, self.stored_order(order_id)?));
            }
            let order = last.as_ref().and_then(|(_, o)| o.as_ref());
            effects.push(order.and_then(|o| o.effect_of(event_id)));
        }
        Ok(effects)
    }

    pub fn payment(&self, payment_id: &str) -> Result<Option<PaymentRecord>, StoreError> {
        Lookup::payment(self, payment_id)
    }

    pub fn delivery(&self, delivery_id: &str) -> Result<Option<DeliveryRecord>, StoreError> {
        Lookup::delivery(self, delivery_id)
    }

    pub fn idempotent_write(&self, key: &str) -> Result<Option<IdempotentWrite>, StoreError> {
        self.binary("idempotency", &Key::new(Table::Idempotency).last(key))
    }

    pub fn counters(&self) -> Result<Counters, StoreError> {
        self.read_counters()
    }

    fn list<T, V>(&self, kind: ListKind<T, V>, query: &ListQuery) -> Result<Page<V>, StoreError> {
        let before = query.before.as_ref();
        let limit = query.limit.clamp(1, MAX_LIMIT);
        if let Some(id) = query.text.as_deref().and_then(query_id) {
            let found = self.list_by_id(&kind, id, before, limit)?;
            if !found.is_empty() {
                return Ok(Page::last(found));
            }
        }
        let wanted: Vec<String> = query.text.as_deref().map(query_words).unwrap_or_default();
        if query.text.is_some() && wanted.is_empty() {
            // Nothing to look for (only punctuation): nothing matches.
            return Ok(Page::last(Vec::new()));
        }
        let mut rarest: Option<(usize, &str)> = None;
        for word in &wanted {
            let n = self.word_entries(kind.kind, word, tables::WORD_COUNT_CAP)?;
            if n == 0 {
                // A word no record holds: nothing matches every word.
                return Ok(Page::last(Vec::new()));
            }
            if rarest.is_none_or(|(best, _)| n < best) {
                rarest = Some((n, word.as_str()));
            }
        }
        let rarest = rarest.map(|(_, w)| w);

        let (by_time, by_status) = kind.kind.tables();
        let keys: Keys = match (rarest, kind.status_code) {
            (Some(word), _) => {
                let below = before.map(Cursor::position);
                // The walk below takes at most MAX_SCANNED + 1 entries, and the merge may
                // read each of them twice (once on its own, once in a block).
                let entries = self.search_entries(kind.kind, word, below, 2 * MAX_SCANNED + 4)?;
                Box::new(entries.map(|entry| {
                    let (t, id) = entry?;
                    Ok((t, tables::key_id(&id)?))
                }))
            }
            (None, Some(status)) => index_keys(self, Key::new(by_status).byte(status), before),
            (None, None) => index_keys(self, Key::new(by_time), before),
        };
        let filtered = rarest.is_some();
        let mut items = Vec::with_capacity(limit.min(64));
        let mut last: Option<(i64, String)> = None;
        let mut more = false;
        for (scanned, key) in keys.enumerate() {
            let (t, id) = key?;
            if filtered && scanned >= MAX_SCANNED {
                // Enough work for one request: the client goes on from here.
                more = true;
                break;
            }
            let Some(record) = (kind.read)(self, &id)? else {
                continue;
            };
            if filtered {
                // An entry that a block still holds after its record's words or time changed
                // no longer matches the record: skipped like any other miss.
                let words = (kind.words)(&record);
                if !(kind.matches_status)(&record)
                    || micros((kind.time)(&record)) != t
                    || !wanted.iter().all(|w| words.contains(w))
                {
                    last = Some((t, id));
                    continue;
                }
            }
            if items.len() == limit {
                more = true;
                break;
            }
            items.push((kind.view)(&record));
            last = Some((t, id));
        }
        let next_cursor = if more {
            last.and_then(|(t, id)| {
                Utc.timestamp_micros(t)
                    .single()
                    .map(|time| Cursor { time, id }.encode())
            })
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    /// The rows an id names (as written, or lower-case), newest first, below the cursor.
    fn list_by_id<T, V>(
        &self,
        kind: &ListKind<T, V>,
        id: &str,
        before: Option<&Cursor>,
        limit: usize,
    ) -> Result<Vec<V>, StoreError> {
        let mut ids = (kind.by_id)(self, id)?;
        let lower = id.to_lowercase();
        if lower != id {
            ids.extend((kind.by_id)(self, &lower)?);
        }
        ids.sort();
        ids.dedup();
        // Ordered as the index walk orders them, so that the cursor means the same here.
        let bound = before.map(Cursor::position);
        let mut rows = Vec::new();
        for id in ids {
            let Some(record) = (kind.read)(self, &id)? else {
                continue;
            };
            let at = (micros((kind.time)(&record)), tables::id_order(&id));
            let below = bound.as_ref().is_none_or(|bound| &at < bound);
            if below && (kind.matches_status)(&record) {
                rows.push((at, record));
            }
        }
        rows.sort_by(|a, b| b.0.cmp(&a.0));
        Ok(rows
            .iter()
            .take(limit)
            .map(|(_, r)| (kind.view)(r))
            .collect())
    }

    pub fn list_orders(&self, query: &ListQuery) -> Result<Page<OrderSummary>, StoreError> {
        let status = query.status.as_deref().and_then(OrderStatus::parse);
        self.list(
            ListKind {
                kind: Kind::Orders,
                read: |view, id| view.order(id),
                status_code: status.map(tables::order_status_code),
                matches_status: Box::new(move |o: &OrderRecord| {
                    status.is_none_or(|s| o.status == Some(s))
                }),
                words: OrderRecord::search_words,
                time: |o| o.created_at.unwrap_or(o.updated_at),
                by_id: |view, id| Ok(view.order(id)?.map(|o| o.order_id).into_iter().collect()),
                view: order_summary,
            },
            query,
        )
    }

    pub fn list_payments(&self, query: &ListQuery) -> Result<Page<PaymentView>, StoreError> {
        let status = query.status.as_deref().and_then(PaymentStatus::parse);
        self.list(
            ListKind {
                kind: Kind::Payments,
                read: |view, id| view.payment(id),
                status_code: status.map(tables::payment_status_code),
                matches_status: Box::new(move |p: &PaymentRecord| {
                    status.is_none_or(|s| p.status == s)
                }),
                words: PaymentRecord::search_words,
                time: |p| p.time,
                by_id: |view, id| {
                    let mut ids: Vec<String> =
                        view.order(id)?.map(|o| o.payment_ids).unwrap_or_default();
                    ids.extend(view.payment(id)?.map(|p| p.payment_id));
                    Ok(ids)
                },
                view: payment_view,
            },
            query,
        )
    }

    pub fn list_deliveries(&self, query: &ListQuery) -> Result<Page<DeliveryView>, StoreError> {
        let status = query.status.as_deref().and_then(DeliveryStatus::parse);
        self.list(
            ListKind {
                kind: Kind::Deliveries,
                read: |view, id| view.delivery(id),
                status_code: status.map(tables::delivery_status_code),
                matches_status: Box::new(move |d: &DeliveryRecord| {
                    status.is_none_or(|s| d.status == s)
                }),
                words: DeliveryRecord::search_words,
                time: |d| d.created_at,
                by_id: |view, id| {
                    let mut ids: Vec<String> =
                        view.order(id)?.map(|o| o.delivery_ids).unwrap_or_default();
                    ids.extend(view.delivery(id)?.map(|d| d.delivery_id));
                    Ok(ids)
                },
                view: delivery_view,
            },
            query,
        )
    }

    /// An order, its payments, its delivery and its timeline across the three topics.
    pub fn order_detail(&self, order_id: &str) -> Result<Option<OrderDetail>, StoreError> {
        let Some(order) = self.stored_order(order_id)? else {
            return Ok(None);
        };
        let mut timeline = Vec::with_capacity(order.timeline.len());
        // The status along the history, as the refold computes it: the same on every instance
        // that read the same events, whatever order it read them in.
        let mut status = None;
        for e in order.timeline {
            if let Ok(next) = next_status(status, e.step) {
                status = Some(next);
            }
            let data = self
                .event_data(e.data_key)?
                .map(|d| RawValue::from_string(d).unwrap_or_else(|_| json::null()));
            timeline.push(TimelineItem {
                event_id: e.event_id,
                event_type: e.event_type,
                topic: e.position.topic,
                partition: e.position.partition,
                offset: e.position.offset,
                time: format_time(e.time),
                order_status: status,
                data,
                anomaly: e.anomaly,
            });
        }
        let mut payments = Vec::new();
        for id in &order.record.payment_ids {
            if let Some(p) = self.payment(id)? {
                payments.push(payment_view(&p));
            }
        }
        let mut deliveries = Vec::new();
        for id in &order.record.delivery_ids {
            if let Some(d) = self.delivery(id)? {
                deliveries.push(delivery_view(&d));
            }
        }
        Ok(Some(OrderDetail {
            summary: order_summary(&order.record),
            timeline,
            payments,
            deliveries,
        }))
    }

    /// Counts per status, revenue of paid orders, payment success ratio, and orders and
    /// revenue per minute over the hour before `now`.
    pub fn stats(&self, now: DateTime<Utc>) -> Result<Stats, StoreError> {
        let c = self.counters()?;
        let count = |s: &OrderStatus| c.by_status.get(s).copied().unwrap_or(0);
        let attempts = c.payments_succeeded + c.payments_failed;
        let this_minute = unix_minute(now);
        let mut per_minute = Vec::with_capacity(60);
        for m in this_minute - 59..=this_minute {
            let stats: MinuteStats = self.minute(m)?.unwrap_or_default();
            per_minute.push(MinuteRow {
                minute: format_time(Utc.timestamp_opt(m * 60, 0).single().unwrap_or(now)),
                orders: stats.orders,
                revenue: Money::from_minor(stats.revenue),
            });
        }
        Ok(Stats {
            orders: OrderCounts {
                total: c.orders,
                by_status: OrderStatus::ALL.iter().map(|s| (*s, count(s))).collect(),
                in_delivery: OrderStatus::ALL
                    .iter()
                    .filter(|s| s.is_in_delivery())
                    .map(count)
                    .sum(),
            },
            revenue: c
                .revenue
                .iter()
                .map(|(currency, amount)| Revenue {
                    currency: currency.clone(),
                    amount: *amount,
                })
                .collect(),
            payments: PaymentCounts {
                succeeded: c.payments_succeeded,
                failed: c.payments_failed,
                success_ratio: (attempts > 0)
                    .then(|| c.payments_succeeded as f64 / attempts as f64),
            },
            deliveries: DeliveryCounts {
                total: c.deliveries,
            },
            anomalies: c.anomalies,
            orders_per_minute: per_minute,
            events: c.events,
        })
    }
}

/// An order without its timeline (list rows).
pub fn order_summary(o: &OrderRecord) -> OrderSummary {
    let d = o.details.as_ref();
    OrderSummary {
        order_id: o.order_id.clone(),
        status: o.status,
        created_at: o.created_at.map(format_time),
        updated_at: format_time(o.updated_at),
        anomalies: o.anomalies,
        seq: o.seq,
        customer_name: d.map(|d| d.customer_name.clone()),
        customer_email: d.map(|d| d.customer_email.clone()),
        product: d.map(|d| d.product.clone()),
        quantity: d.map(|d| d.quantity),
        amount: d.map(|d| d.amount),
        currency: d.map(|d| d.currency.clone()),
        address: d.map(|d| d.address.clone()),
    }
}

pub fn payment_view(p: &PaymentRecord) -> PaymentView {
    PaymentView {
        payment_id: p.payment_id.clone(),
        order_id: p.order_id.clone(),
        amount: p.amount,
        currency: p.currency.clone(),
        method: p.method.clone(),
        status: p.status.as_str(),
        failure_reason: p.failure_reason.clone(),
        timestamp: format_time(p.time),
        kafka: p.position,
    }
}

pub fn delivery_view(d: &DeliveryRecord) -> DeliveryView {
    DeliveryView {
        delivery_id: d.delivery_id.clone(),
        order_id: d.order_id.clone(),
        address: d.address.clone(),
        status: d.status.as_str(),
        carrier: d.carrier.clone(),
        estimated_date: d.estimated_date.map(|d| d.format("%Y-%m-%d").to_string()),
        created_at: format_time(d.created_at),
        updated_at: format_time(d.updated_at),
        kafka: d.position,
    }
}
