//! Read-only views of the model for the API: filtered, newest-first pages with cursors, an
//! order with its timeline, and the statistics. Everything here is pure and returns JSON
//! values shaped for the HTTP answers.

use std::collections::BTreeSet;
use std::ops::Bound;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};

use super::{DeliveryRecord, OrderRecord, PaymentRecord, ReadModel, unix_minute};
use crate::domain::event::{DeliveryStatus, PaymentStatus, format_time};
use crate::domain::lifecycle::OrderStatus;
use crate::domain::money::Money;

/// Largest page a client may ask for.
pub const MAX_LIMIT: usize = 500;
pub const DEFAULT_LIMIT: usize = 50;

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
    /// Case-insensitive text to find.
    pub text: Option<String>,
    pub limit: usize,
    pub before: Option<Cursor>,
}

/// Newest-first walk over an index, starting after the cursor, keeping what `keep` accepts.
fn page<'a, T: 'a>(
    index: &'a BTreeSet<(DateTime<Utc>, String)>,
    query: &ListQuery,
    lookup: impl Fn(&str) -> Option<&'a T>,
    keep: impl Fn(&T) -> bool,
    view: impl Fn(&T) -> Value,
) -> Value {
    let upper = match &query.before {
        Some(c) => Bound::Excluded((c.time, c.id.clone())),
        None => Bound::Unbounded,
    };
    let limit = query.limit.clamp(1, MAX_LIMIT);
    let mut items = Vec::with_capacity(limit.min(64));
    let mut last = None;
    let mut more = false;
    for (time, id) in index.range((Bound::Unbounded, upper)).rev() {
        let Some(item) = lookup(id) else { continue };
        if !keep(item) {
            continue;
        }
        if items.len() == limit {
            more = true;
            break;
        }
        items.push(view(item));
        last = Some(Cursor {
            time: *time,
            id: id.clone(),
        });
    }
    json!({
        "items": items,
        "next_cursor": if more { last.map(|c| c.encode()) } else { None },
    })
}

fn contains(haystack: &str, needle_lower: &str) -> bool {
    haystack.to_lowercase().contains(needle_lower)
}

impl ReadModel {
    pub fn list_orders(&self, query: &ListQuery) -> Value {
        let status = query.status.as_deref().and_then(OrderStatus::parse);
        let text = query.text.as_ref().map(|t| t.to_lowercase());
        page(
            &self.orders_by_time,
            query,
            |id| self.orders.get(id),
            |o: &OrderRecord| {
                status.is_none_or(|s| o.status == Some(s))
                    && text.as_deref().is_none_or(|t| {
                        o.details.as_ref().is_some_and(|d| {
                            contains(&d.customer_name, t)
                                || contains(&d.customer_email, t)
                                || contains(&d.product, t)
                        }) || o.order_id.contains(t)
                    })
            },
            order_summary,
        )
    }

    pub fn list_payments(&self, query: &ListQuery) -> Value {
        let status = query.status.as_deref().map(str::to_uppercase);
        let text = query.text.as_ref().map(|t| t.to_lowercase());
        page(
            &self.payments_by_time,
            query,
            |id| self.payments.get(id),
            |p: &PaymentRecord| {
                status.as_deref().is_none_or(|s| p.status.as_str() == s)
                    && text.as_deref().is_none_or(|t| {
                        p.order_id.contains(t) || p.payment_id.contains(t) || contains(&p.method, t)
                    })
            },
            payment_view,
        )
    }

    pub fn list_deliveries(&self, query: &ListQuery) -> Value {
        let status = query.status.as_deref().and_then(DeliveryStatus::parse);
        let text = query.text.as_ref().map(|t| t.to_lowercase());
        page(
            &self.deliveries_by_time,
            query,
            |id| self.deliveries.get(id),
            |d: &DeliveryRecord| {
                status.is_none_or(|s| d.status == s)
                    && text.as_deref().is_none_or(|t| {
                        d.order_id.contains(t)
                            || d.delivery_id.contains(t)
                            || contains(&d.address, t)
                            || d.carrier.as_deref().is_some_and(|c| contains(c, t))
                    })
            },
            delivery_view,
        )
    }

    /// An order, its payments, its delivery and its timeline across the three topics.
    pub fn order_detail(&self, order_id: &str) -> Option<Value> {
        let order = self.orders.get(order_id)?;
        let mut view = order_summary(order);
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
                    "data": e.data,
                    "anomaly": e.anomaly,
                })
            })
            .collect();
        view["payments"] = order
            .payment_ids
            .iter()
            .filter_map(|id| self.payments.get(id))
            .map(payment_view)
            .collect();
        view["deliveries"] = order
            .delivery_ids
            .iter()
            .filter_map(|id| self.deliveries.get(id))
            .map(delivery_view)
            .collect();
        Some(view)
    }

    /// Counts per status, revenue of paid orders, payment success ratio, and orders and
    /// revenue per minute over the hour before `now`.
    pub fn stats(&self, now: DateTime<Utc>) -> Value {
        let c = &self.counters;
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
        let per_minute: Vec<Value> = (this_minute - 59..=this_minute)
            .map(|m| {
                json!({
                    "minute": format_time(Utc.timestamp_opt(m * 60, 0).single().unwrap_or(now)),
                    "orders": c.orders_per_minute.get(&m).copied().unwrap_or(0),
                    "revenue": Money::from_minor(c.revenue_per_minute.get(&m).copied().unwrap_or(0)),
                })
            })
            .collect();
        let in_delivery: u64 = OrderStatus::ALL
            .iter()
            .filter(|s| s.is_in_delivery())
            .map(|s| c.by_status.get(s).copied().unwrap_or(0))
            .sum();
        json!({
            "orders": {
                "total": self.orders_by_time.len(),
                "by_status": by_status,
                "in_delivery": in_delivery,
            },
            "revenue": c.revenue.iter().map(|(currency, amount)| json!({"currency": currency, "amount": amount})).collect::<Vec<_>>(),
            "payments": {
                "succeeded": c.payments_succeeded,
                "failed": c.payments_failed,
                "success_ratio": if attempts == 0 { Value::Null } else { json!(c.payments_succeeded as f64 / attempts as f64) },
            },
            "deliveries": { "total": self.deliveries.len() },
            "anomalies": c.anomalies,
            "orders_per_minute": per_minute,
            "events": self.seen_events.len(),
        })
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

/// Whether `s` names a payment status (`SUCCESS`, `failed`, ...).
pub fn is_payment_status(s: &str) -> bool {
    [PaymentStatus::Success, PaymentStatus::Failed]
        .iter()
        .any(|p| p.as_str().eq_ignore_ascii_case(s))
}
