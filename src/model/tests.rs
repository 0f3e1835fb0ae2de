use chrono::{TimeZone, Utc};
use serde_json::json;

use super::query::{Cursor, ListQuery};
use super::snapshot;
use super::*;
use crate::kafka::{TopicInfo, TopicLayout};

fn t(sec: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_767_225_600 + sec, 0).unwrap()
}

struct Log {
    offsets: HashMap<TopicRole, i64>,
}

impl Log {
    fn new() -> Self {
        Log {
            offsets: HashMap::new(),
        }
    }

    /// Applies `event` at the next offset of its topic's partition 0.
    fn put(&mut self, model: &mut ReadModel, event: &Event) -> Applied {
        let topic = event.event_type.topic();
        let offset = self.offsets.entry(topic).or_default();
        let position = Position {
            topic,
            partition: 0,
            offset: *offset,
        };
        *offset += 1;
        model.apply(event, position, &event.to_value(), None)
    }
}

fn created(order: &str, at: i64, name: &str, cents: i64) -> Event {
    Event {
        event_id: format!("{order}-created"),
        event_type: EventType::OrderCreated,
        order_id: order.into(),
        time: t(at),
        body: EventBody::OrderCreated(OrderDetails {
            customer_name: name.into(),
            customer_email: format!("{}@example.com", name.to_lowercase()),
            product: "Laptop".into(),
            quantity: 1,
            amount: Money::from_minor(cents),
            currency: "EUR".into(),
            address: "1 Rue de Paris".into(),
        }),
    }
}

fn paid(order: &str, at: i64, ok: bool, n: u32) -> Event {
    Event {
        event_id: format!("{order}-pay-{n}"),
        event_type: EventType::PaymentProcessed,
        order_id: order.into(),
        time: t(at),
        body: EventBody::PaymentProcessed(PaymentDetails {
            payment_id: format!("{order}-p{n}"),
            amount: Money::from_minor(1000),
            currency: "EUR".into(),
            method: "Credit Card".into(),
            status: if ok {
                PaymentStatus::Success
            } else {
                PaymentStatus::Failed
            },
            failure_reason: (!ok).then(|| "card_declined".into()),
        }),
    }
}

fn delivery(order: &str, at: i64, status: DeliveryStatus) -> Event {
    Event {
        event_id: format!("{order}-delivery-{}", status.as_str()),
        event_type: if status == DeliveryStatus::Shipped {
            EventType::DeliveryCreated
        } else {
            EventType::DeliveryUpdated
        },
        order_id: order.into(),
        time: t(at),
        body: EventBody::Delivery(DeliveryDetails {
            delivery_id: format!("{order}-d"),
            address: "1 Rue de Paris".into(),
            status,
            estimated_date: None,
            carrier: Some("DHL".into()),
        }),
    }
}

fn cancelled(order: &str, at: i64) -> Event {
    Event {
        event_id: format!("{order}-cancel"),
        event_type: EventType::OrderCancelled,
        order_id: order.into(),
        time: t(at),
        body: EventBody::OrderCancelled { reason: None },
    }
}

fn count(model: &ReadModel, status: OrderStatus) -> u64 {
    model
        .counters()
        .by_status
        .get(&status)
        .copied()
        .unwrap_or(0)
}

#[test]
fn a_whole_lifecycle_moves_the_counters() {
    let mut m = ReadModel::new();
    let mut log = Log::new();
    log.put(&mut m, &created("o1", 0, "Ann", 1000));
    assert_eq!(m.order("o1").unwrap().status, Some(OrderStatus::Pending));
    assert_eq!(count(&m, OrderStatus::Pending), 1);
    log.put(&mut m, &paid("o1", 1, false, 1));
    log.put(&mut m, &paid("o1", 2, true, 2));
    assert_eq!(count(&m, OrderStatus::Pending), 0);
    assert_eq!(count(&m, OrderStatus::Paid), 1);
    assert_eq!(m.counters().revenue["EUR"], Money::from_minor(1000));
    for (i, s) in DeliveryStatus::ALL.into_iter().enumerate() {
        log.put(&mut m, &delivery("o1", 3 + i as i64, s));
    }
    let o = m.order("o1").unwrap();
    assert_eq!(o.status, Some(OrderStatus::Delivered));
    assert_eq!(o.timeline.len(), 7);
    assert_eq!(o.anomalies, 0);
    assert_eq!(count(&m, OrderStatus::Delivered), 1);
    assert_eq!(count(&m, OrderStatus::Paid), 0);
    // Delivered orders are still revenue.
    assert_eq!(m.counters().revenue["EUR"], Money::from_minor(1000));
    assert_eq!(
        (
            m.counters().payments_succeeded,
            m.counters().payments_failed
        ),
        (1, 1)
    );
    let d = m.delivery("o1-d").unwrap();
    assert_eq!(d.status, DeliveryStatus::Delivered);
}

#[test]
fn replays_and_retries_never_double_count() {
    let mut m = ReadModel::new();
    let mut log = Log::new();
    let order = created("o1", 0, "Ann", 1000);
    assert_eq!(log.put(&mut m, &order), Applied::New);
    // The same event again, even at another offset (a producer retry), changes nothing.
    assert_eq!(log.put(&mut m, &order), Applied::Duplicate);
    log.put(&mut m, &paid("o1", 1, true, 1));
    assert_eq!(log.put(&mut m, &paid("o1", 1, true, 1)), Applied::Duplicate);
    assert_eq!(m.order_count(), 1);
    assert_eq!(m.order("o1").unwrap().timeline.len(), 2);
    assert_eq!(m.counters().payments_succeeded, 1);
    assert_eq!(m.counters().revenue["EUR"], Money::from_minor(1000));
    assert_eq!(m.counters().orders_per_minute.values().sum::<u64>(), 1);
}

#[test]
fn a_payment_read_before_its_order_gives_the_same_state() {
    let mut in_order = ReadModel::new();
    let mut reversed = ReadModel::new();
    let events = [
        created("o1", 0, "Ann", 1000),
        paid("o1", 5, true, 1),
        delivery("o1", 9, DeliveryStatus::Shipped),
    ];
    let mut log = Log::new();
    for e in &events {
        log.put(&mut in_order, e);
    }
    let mut log = Log::new();
    for e in events.iter().rev() {
        log.put(&mut reversed, e);
    }
    for m in [&in_order, &reversed] {
        let o = m.order("o1").unwrap();
        assert_eq!(o.status, Some(OrderStatus::Shipped));
        assert_eq!(o.anomalies, 0, "{:?}", o.timeline);
        assert_eq!(count(m, OrderStatus::Shipped), 1);
        assert_eq!(count(m, OrderStatus::Pending), 0);
        assert_eq!(m.counters().anomalies, 0);
        assert_eq!(m.counters().revenue["EUR"], Money::from_minor(1000));
    }
}

#[test]
fn an_event_that_breaks_the_lifecycle_is_kept_and_flagged() {
    let mut m = ReadModel::new();
    let mut log = Log::new();
    log.put(&mut m, &created("o1", 0, "Ann", 1000));
    log.put(&mut m, &cancelled("o1", 1));
    log.put(&mut m, &paid("o1", 2, true, 1));
    let o = m.order("o1").unwrap();
    assert_eq!(o.status, Some(OrderStatus::Cancelled));
    assert_eq!(o.timeline.len(), 3);
    assert_eq!(o.anomalies, 1);
    assert!(
        o.timeline[2]
            .anomaly
            .as_deref()
            .unwrap()
            .contains("Cancelled")
    );
    assert_eq!(m.counters().anomalies, 1);
    assert!(
        !m.counters()
            .revenue
            .get("EUR")
            .is_some_and(|r| r.is_positive())
    );

    // A payment for an order never seen is kept too, and not listed as an order.
    log.put(&mut m, &paid("ghost", 3, true, 1));
    assert_eq!(m.order("ghost").unwrap().anomalies, 1);
    assert_eq!(m.order_count(), 1);
}

#[test]
fn listing_is_newest_first_with_filters_and_cursor_paging() {
    let mut m = ReadModel::new();
    let mut log = Log::new();
    for i in 0..25 {
        log.put(
            &mut m,
            &created(
                &format!("o{i:02}"),
                i,
                if i % 2 == 0 { "Ann" } else { "Bob" },
                1000,
            ),
        );
    }
    log.put(&mut m, &paid("o03", 100, true, 1));

    let first = m.list_orders(&ListQuery {
        limit: 10,
        ..Default::default()
    });
    let ids: Vec<&str> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["order_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids[0], "o24");
    assert_eq!(ids.len(), 10);
    let mut seen: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    let mut cursor = first["next_cursor"].as_str().map(str::to_string);
    while let Some(c) = cursor {
        let page = m.list_orders(&ListQuery {
            limit: 10,
            before: Cursor::decode(&c),
            ..Default::default()
        });
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["order_id"].as_str().unwrap().to_string()),
        );
        cursor = page["next_cursor"].as_str().map(str::to_string);
    }
    let expected: Vec<String> = (0..25).rev().map(|i| format!("o{i:02}")).collect();
    assert_eq!(seen, expected);

    let bobs = m.list_orders(&ListQuery {
        limit: 100,
        text: Some("BOB".into()),
        ..Default::default()
    });
    assert_eq!(bobs["items"].as_array().unwrap().len(), 12);
    assert_eq!(bobs["next_cursor"], Value::Null);
    let paid_orders = m.list_orders(&ListQuery {
        limit: 100,
        status: Some("paid".into()),
        ..Default::default()
    });
    assert_eq!(paid_orders["items"].as_array().unwrap().len(), 1);
    assert_eq!(paid_orders["items"][0]["order_id"], "o03");
    assert_eq!(
        m.list_payments(&ListQuery {
            limit: 5,
            ..Default::default()
        })["items"][0]["order_id"],
        "o03"
    );
}

#[test]
fn stats_count_the_last_hour_per_minute() {
    let mut m = ReadModel::new();
    let mut log = Log::new();
    log.put(&mut m, &created("a", 0, "Ann", 1000));
    log.put(&mut m, &created("b", 30, "Bob", 250));
    log.put(&mut m, &created("c", 120, "Cy", 100));
    log.put(&mut m, &paid("a", 200, true, 1));
    log.put(&mut m, &paid("b", 200, false, 1));
    let stats = m.stats(t(150));
    let per_minute = stats["orders_per_minute"].as_array().unwrap();
    assert_eq!(per_minute.len(), 60);
    assert_eq!(per_minute[59]["orders"], 1);
    assert_eq!(per_minute[57]["orders"], 2);
    assert_eq!(per_minute[57]["revenue"].to_string(), "12.50");
    assert_eq!(stats["orders"]["total"], 3);
    assert_eq!(stats["orders"]["by_status"]["Pending"], 1);
    assert_eq!(stats["orders"]["by_status"]["Payment Failed"], 1);
    assert_eq!(stats["payments"]["success_ratio"], json!(0.5));
    assert_eq!(stats["revenue"][0]["amount"].to_string(), "10.00");
}

#[test]
fn a_snapshot_restores_the_same_model_and_offsets() {
    let mut m = ReadModel::new();
    let mut log = Log::new();
    for i in 0..5 {
        log.put(&mut m, &created(&format!("o{i}"), i, "Ann", 1000 + i));
        log.put(&mut m, &paid(&format!("o{i}"), 10 + i, i % 2 == 0, 1));
    }
    m.progress_mut(TopicRole::Orders, 0).next_offset = 5;
    m.progress_mut(TopicRole::Payments, 0).skipped = 2;
    let layout = TopicLayout {
        topics: TopicRole::ALL
            .iter()
            .map(|&role| TopicInfo {
                role,
                name: role.as_str().into(),
                partitions: 1,
            })
            .collect(),
    };
    let dir =
        std::env::temp_dir().join(format!("shopstream-snapshot-test-{}", uuid::Uuid::new_v4()));
    snapshot::write(&dir, &snapshot::encode(&m, &layout)).unwrap();
    let snapshot::Loaded::Model(restored) = snapshot::load(&dir, &layout).unwrap() else {
        panic!("not loaded")
    };
    let all = ListQuery {
        limit: 100,
        ..Default::default()
    };
    assert_eq!(restored.list_orders(&all), m.list_orders(&all));
    assert_eq!(restored.list_payments(&all), m.list_payments(&all));
    assert_eq!(restored.stats(t(0)), m.stats(t(0)));
    assert_eq!(
        restored.progress(TopicRole::Orders, 0).unwrap().next_offset,
        5
    );
    assert_eq!(
        restored.progress(TopicRole::Payments, 0).unwrap().skipped,
        2
    );
    // Replaying an event already in the snapshot is still recognised.
    let mut restored = *restored;
    assert_eq!(
        log.put(&mut restored, &created("o1", 1, "Ann", 1001)),
        Applied::Duplicate
    );

    // Another layout: ignored, not misapplied.
    let mut other = layout.clone();
    other.topics[0].partitions = 6;
    assert!(matches!(
        snapshot::load(&dir, &other).unwrap(),
        snapshot::Loaded::Ignored(_)
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}
