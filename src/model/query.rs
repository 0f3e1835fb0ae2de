//! Read-only views of the store for the API: filtered, newest-first pages with cursors, an
//! order with its timeline, and the statistics.
//!
//! Every list walks an index backwards from the cursor: the time index when unfiltered, the
//! status index for `status`, the word index for `q`. A `q` search matches whole words
//! (case-insensitive runs of letters and digits) of the customer's name, email and product, or
//! the whole order id (payments: order id, payment id, method; deliveries: order id, delivery
//! id, address, carrier). Every word of `q` must be found; the index walk follows the rarest one,
//! and stops after [`MAX_SCANNED`] candidates with a cursor to go on from.

use std::ops::Bound;

use chrono::{DateTime, TimeZone, Utc};
use redb::ReadOnlyTable;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::store::ReadView;
use super::tables::{self, Kind, micros};
use super::{
    Counters, DeliveryRecord, IdempotentWrite, MinuteStats, OrderRecord, PaymentRecord, StoreError,
    StoredOrder, query_id, query_words, unix_minute,
};
use crate::domain::event::{DeliveryStatus, PaymentStatus, format_time};
use crate::domain::lifecycle::OrderStatus;
use crate::domain::money::Money;

/// Largest page a client may ask for.
pub const MAX_LIMIT: usize = 500;
pub const DEFAULT_LIMIT: usize = 50;
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
struct ListKind<T> {
    kind: Kind,
    records: redb::TableDefinition<'static, &'static str, &'static [u8]>,
    by_time: redb::TableDefinition<'static, (i64, &'static str), ()>,
    by_status: redb::TableDefinition<'static, (u8, i64, &'static str), ()>,
    status_code: Option<u8>,
    matches_status: Box<dyn Fn(&T) -> bool>,
    words: fn(&T) -> std::collections::BTreeSet<String>,
    view: fn(&T) -> Value,
}

/// The (time, id) keys of one index, newest first, from just before the cursor.
type Keys<'a> = Box<dyn Iterator<Item = Result<(i64, String), StoreError>> + 'a>;

fn time_keys<'a>(
    table: &'a ReadOnlyTable<(i64, &'static str), ()>,
    before: Option<&Cursor>,
) -> Result<Keys<'a>, StoreError> {
    let upper = match before {
        Some(c) => Bound::Excluded((micros(c.time), c.id.as_str())),
        None => Bound::Unbounded,
    };
    let range = table.range::<(i64, &str)>((Bound::Unbounded, upper))?;
    Ok(Box::new(range.rev().map(|row| {
        let (key, _) = row?;
        let (t, id) = key.value();
        Ok((t, id.to_string()))
    })))
}

fn status_keys<'a>(
    table: &'a ReadOnlyTable<(u8, i64, &'static str), ()>,
    status: u8,
    before: Option<&Cursor>,
) -> Result<Keys<'a>, StoreError> {
    let upper = match before {
        Some(c) => Bound::Excluded((status, micros(c.time), c.id.as_str())),
        None => Bound::Excluded((status, i64::MAX, "")),
    };
    let lower = Bound::Included((status, i64::MIN, ""));
    let range = table.range::<(u8, i64, &str)>((lower, upper))?;
    Ok(Box::new(range.rev().map(|row| {
        let (key, _) = row?;
        let (_, t, id) = key.value();
        Ok((t, id.to_string()))
    })))
}

fn word_keys<'a>(
    table: &'a ReadOnlyTable<(u8, &'static str, i64, &'static str), ()>,
    kind: Kind,
    word: &'a str,
    before: Option<&'a Cursor>,
) -> Result<Keys<'a>, StoreError> {
    let k = kind as u8;
    let upper = match before {
        Some(c) => Bound::Excluded((k, word, micros(c.time), c.id.as_str())),
        None => Bound::Excluded((k, word, i64::MAX, "")),
    };
    let lower = Bound::Included((k, word, i64::MIN, ""));
    let range = table.range::<(u8, &str, i64, &str)>((lower, upper))?;
    Ok(Box::new(range.rev().map(|row| {
        let (key, _) = row?;
        let (_, _, t, id) = key.value();
        Ok((t, id.to_string()))
    })))
}

fn get_json<T: DeserializeOwned>(
    table: &ReadOnlyTable<&'static str, &'static [u8]>,
    what: &str,
    id: &str,
) -> Result<Option<T>, StoreError> {
    tables::read_json(table, what, id)
}

impl ReadView {
    fn table<K: redb::Key + 'static, V: redb::Value + 'static>(
        &self,
        definition: redb::TableDefinition<K, V>,
    ) -> Result<ReadOnlyTable<K, V>, StoreError> {
        Ok(self.txn.open_table(definition)?)
    }

    /// An order without its timeline.
    pub fn order(&self, order_id: &str) -> Result<Option<OrderRecord>, StoreError> {
        get_json(&self.table(tables::ORDERS)?, "order", order_id)
    }

    pub fn stored_order(&self, order_id: &str) -> Result<Option<StoredOrder>, StoreError> {
        tables::read_order(
            &self.table(tables::ORDERS)?,
            &self.table(tables::TIMELINES)?,
            order_id,
        )
    }

    pub fn payment(&self, payment_id: &str) -> Result<Option<PaymentRecord>, StoreError> {
        get_json(&self.table(tables::PAYMENTS)?, "payment", payment_id)
    }

    pub fn delivery(&self, delivery_id: &str) -> Result<Option<DeliveryRecord>, StoreError> {
        get_json(&self.table(tables::DELIVERIES)?, "delivery", delivery_id)
    }

    pub fn idempotent_write(&self, key: &str) -> Result<Option<IdempotentWrite>, StoreError> {
        get_json(&self.table(tables::IDEMPOTENCY)?, "idempotency", key)
    }

    pub fn counters(&self) -> Result<Counters, StoreError> {
        tables::read_counters(&self.table(tables::META)?)
    }

    fn list<T: DeserializeOwned>(
        &self,
        kind: ListKind<T>,
        query: &ListQuery,
    ) -> Result<Value, StoreError> {
        let records = self.table(kind.records)?;
        let by_time = self.table(kind.by_time)?;
        let by_status = self.table(kind.by_status)?;
        let search = self.table(tables::SEARCH)?;
        let counts = self.table(tables::WORD_COUNTS)?;
        let before = query.before.as_ref();

        let mut wanted: Vec<String> = query.text.as_deref().map(query_words).unwrap_or_default();
        if query.text.is_some() && wanted.is_empty() {
            // Nothing to look for (only punctuation): nothing matches.
            return Ok(json!({ "items": [], "next_cursor": null }));
        }
        let count = |word: &str| -> Result<u64, StoreError> {
            Ok(counts
                .get((kind.kind as u8, word))?
                .map_or(0, |v| v.value()))
        };
        // An id is one word of its own: `q=<id>` looks it up whole.
        if let Some(id) = query.text.as_deref().and_then(query_id)
            && count(&id)? > 0
        {
            wanted = vec![id];
        }
        let mut rarest: Option<(u64, &str)> = None;
        for word in &wanted {
            let n = count(word)?;
            if rarest.is_none_or(|(best, _)| n < best) {
                rarest = Some((n, word.as_str()));
            }
        }
        let rarest = rarest.map(|(_, w)| w);

        let keys = match (rarest, kind.status_code) {
            (Some(word), _) => word_keys(&search, kind.kind, word, before)?,
            (None, Some(status)) => status_keys(&by_status, status, before)?,
            (None, None) => time_keys(&by_time, before)?,
        };
        let filtered = rarest.is_some();
        let limit = query.limit.clamp(1, MAX_LIMIT);
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
            let Some(record) = get_json::<T>(&records, "record", &id)? else {
                continue;
            };
            if filtered {
                let words = (kind.words)(&record);
                if !(kind.matches_status)(&record) || !wanted.iter().all(|w| words.contains(w)) {
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
        Ok(json!({ "items": items, "next_cursor": next_cursor }))
    }

    pub fn list_orders(&self, query: &ListQuery) -> Result<Value, StoreError> {
        let status = query.status.as_deref().and_then(OrderStatus::parse);
        self.list(
            ListKind::<OrderRecord> {
                kind: Kind::Orders,
                records: tables::ORDERS,
                by_time: tables::ORDERS_BY_TIME,
                by_status: tables::ORDERS_BY_STATUS,
                status_code: status.map(tables::order_status_code),
                matches_status: Box::new(move |o| status.is_none_or(|s| o.status == Some(s))),
                words: OrderRecord::search_words,
                view: order_summary,
            },
            query,
        )
    }

    pub fn list_payments(&self, query: &ListQuery) -> Result<Value, StoreError> {
        let status = query.status.as_deref().and_then(payment_status);
        self.list(
            ListKind::<PaymentRecord> {
                kind: Kind::Payments,
                records: tables::PAYMENTS,
                by_time: tables::PAYMENTS_BY_TIME,
                by_status: tables::PAYMENTS_BY_STATUS,
                status_code: status.map(tables::payment_status_code),
                matches_status: Box::new(move |p| status.is_none_or(|s| p.status == s)),
                words: PaymentRecord::search_words,
                view: payment_view,
            },
            query,
        )
    }

    pub fn list_deliveries(&self, query: &ListQuery) -> Result<Value, StoreError> {
        let status = query.status.as_deref().and_then(DeliveryStatus::parse);
        self.list(
            ListKind::<DeliveryRecord> {
                kind: Kind::Deliveries,
                records: tables::DELIVERIES,
                by_time: tables::DELIVERIES_BY_TIME,
                by_status: tables::DELIVERIES_BY_STATUS,
                status_code: status.map(tables::delivery_status_code),
                matches_status: Box::new(move |d| status.is_none_or(|s| d.status == s)),
                words: DeliveryRecord::search_words,
                view: delivery_view,
            },
            query,
        )
    }

    /// An order, its payments, its delivery and its timeline across the three topics.
    pub fn order_detail(&self, order_id: &str) -> Result<Option<Value>, StoreError> {
        let Some(order) = self.stored_order(order_id)? else {
            return Ok(None);
        };
        let mut view = order_summary(&order.record);
        view["timeline"] = order
            .timeline
            .iter()
            .map(|e| {
                json!({
                    "event_id": e.event_id,
                    "event_type": e.event_type,
                    "topic": e.position.topic,
                    "partition": e.position.partition,
                    "offset": e.position.offset,
                    "time": format_time(e.time),
                    "data": serde_json::from_str::<Value>(&e.data)
                        .unwrap_or_else(|_| Value::String(e.data.clone())),
                    "anomaly": e.anomaly,
                })
            })
            .collect();
        let payments = self.table(tables::PAYMENTS)?;
        let mut shown = Vec::new();
        for id in &order.record.payment_ids {
            if let Some(p) = get_json::<PaymentRecord>(&payments, "payment", id)? {
                shown.push(payment_view(&p));
            }
        }
        view["payments"] = Value::Array(shown);
        let deliveries = self.table(tables::DELIVERIES)?;
        let mut shown = Vec::new();
        for id in &order.record.delivery_ids {
            if let Some(d) = get_json::<DeliveryRecord>(&deliveries, "delivery", id)? {
                shown.push(delivery_view(&d));
            }
        }
        view["deliveries"] = Value::Array(shown);
        Ok(Some(view))
    }

    /// Counts per status, revenue of paid orders, payment success ratio, and orders and
    /// revenue per minute over the hour before `now`.
    pub fn stats(&self, now: DateTime<Utc>) -> Result<Value, StoreError> {
        let c = self.counters()?;
        let minutes = self.table(tables::MINUTES)?;
        let by_status: serde_json::Map<String, Value> = OrderStatus::ALL
            .iter()
            .map(|s| {
                (
                    s.as_str().to_string(),
                    json!(c.by_status.get(s).copied().unwrap_or(0)),
                )
            })
            .collect();
        let attempts = c.payments_succeeded + c.payments_failed;
        let this_minute = unix_minute(now);
        let mut per_minute = Vec::with_capacity(60);
        for m in this_minute - 59..=this_minute {
            let stats: MinuteStats = match minutes.get(m)? {
                Some(v) => tables::decode("minute", v.value())?,
                None => MinuteStats::default(),
            };
            per_minute.push(json!({
                "minute": format_time(Utc.timestamp_opt(m * 60, 0).single().unwrap_or(now)),
                "orders": stats.orders,
                "revenue": Money::from_minor(stats.revenue),
            }));
        }
        let in_delivery: u64 = OrderStatus::ALL
            .iter()
            .filter(|s| s.is_in_delivery())
            .map(|s| c.by_status.get(s).copied().unwrap_or(0))
            .sum();
        Ok(json!({
            "orders": {
                "total": c.orders,
                "by_status": by_status,
                "in_delivery": in_delivery,
            },
            "revenue": c.revenue.iter().map(|(currency, amount)| json!({"currency": currency, "amount": amount})).collect::<Vec<_>>(),
            "payments": {
                "succeeded": c.payments_succeeded,
                "failed": c.payments_failed,
                "success_ratio": if attempts == 0 { Value::Null } else { json!(c.payments_succeeded as f64 / attempts as f64) },
            },
            "deliveries": { "total": c.deliveries },
            "anomalies": c.anomalies,
            "orders_per_minute": per_minute,
            "events": c.events,
        }))
    }
}

/// An order without its timeline (list rows).
pub fn order_summary(o: &OrderRecord) -> Value {
    let mut v = json!({
        "order_id": o.order_id,
        "status": o.status,
        "created_at": o.created_at.map(format_time),
        "updated_at": format_time(o.updated_at),
        "anomalies": o.anomalies,
    });
    if let Some(d) = &o.details {
        v["customer_name"] = json!(d.customer_name);
        v["customer_email"] = json!(d.customer_email);
        v["product"] = json!(d.product);
        v["quantity"] = json!(d.quantity);
        v["amount"] = json!(d.amount);
        v["currency"] = json!(d.currency);
        v["address"] = json!(d.address);
    }
    v
}

pub fn payment_view(p: &PaymentRecord) -> Value {
    json!({
        "payment_id": p.payment_id,
        "order_id": p.order_id,
        "amount": p.amount,
        "currency": p.currency,
        "method": p.method,
        "status": p.status.as_str(),
        "failure_reason": p.failure_reason,
        "timestamp": format_time(p.time),
        "kafka": p.position,
    })
}

pub fn delivery_view(d: &DeliveryRecord) -> Value {
    json!({
        "delivery_id": d.delivery_id,
        "order_id": d.order_id,
        "address": d.address,
        "status": d.status.as_str(),
        "carrier": d.carrier,
        "estimated_date": d.estimated_date.map(|d| d.format("%Y-%m-%d").to_string()),
        "created_at": format_time(d.created_at),
        "updated_at": format_time(d.updated_at),
        "kafka": d.position,
    })
}

fn payment_status(s: &str) -> Option<PaymentStatus> {
    [PaymentStatus::Success, PaymentStatus::Failed]
        .into_iter()
        .find(|p| p.as_str().eq_ignore_ascii_case(s))
}

/// Whether `s` names a payment status (`SUCCESS`, `failed`, ...).
pub fn is_payment_status(s: &str) -> bool {
    payment_status(s).is_some()
}
