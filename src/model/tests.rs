//! The apply rules and the queries, against a real store in a temporary directory.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use serde_json::{Value, json};

use super::query::{Cursor, ListQuery};
use super::store::{FetchedRecord, Resumed, Store, StoreSettings, TempDir};
use super::*;
use crate::domain::event::TopicLayout;

fn t(sec: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_767_225_600 + sec, 0).unwrap()
}

fn settings(dir: &TempDir) -> StoreSettings {
    settings_at(&dir.0)
}

fn settings_at(dir: &std::path::Path) -> StoreSettings {
    StoreSettings {
        dir: dir.to_path_buf(),
        cache_bytes: 4 << 20,
        retention: Duration::from_secs(7 * 24 * 3600),
        rebuild: false,
        live_buffer: super::store::FRAME_BUFFER,
    }
}

fn layout(partitions: i32) -> TopicLayout {
    TopicLayout::uniform("", partitions)
}

/// A store and the next offset of partition 0 of each topic.
struct Model {
    store: Store,
    offsets: HashMap<TopicRole, i64>,
    _dir: Option<TempDir>,
}

impl Model {
    async fn new() -> Self {
        let (store, dir) = Store::temporary(4 << 20);
        store.check_layout(&layout(1)).await.unwrap();
        Model {
            store,
            offsets: HashMap::new(),
            _dir: Some(dir),
        }
    }

    /// Applies `event` at the next offset of its topic's partition 0, in a batch of its own.
    async fn put(&mut self, event: &Event) -> Applied {
        self.put_at(event, event.time).await
    }

    /// [`Self::put`] with a Kafka record timestamp of its own.
    async fn put_at(&mut self, event: &Event, record_time: DateTime<Utc>) -> Applied {
        let topic = event.event_type.topic();
        let offset = self.offsets.entry(topic).or_default();
        let at = *offset;
        *offset += 1;
        let record = FetchedRecord {
            offset: at,
            key: Some(event.order_id.clone()),
            record_time,
            decoded: Ok((event.clone(), event.to_json())),
            idempotency: None,
        };
        let outcome = self
            .store
            .apply_fetched(topic, 0, vec![record], at + 1)
            .await
            .unwrap();
        if outcome.applied == 1 {
            Applied::New
        } else {
            assert_eq!(outcome.duplicates, 1);
            Applied::Duplicate
        }
    }

    /// Applies `events` (all of one topic) at the next offsets of partition 0, as one batch:
    /// one group commit, as in a replay.
    async fn put_all(&mut self, events: &[Event]) {
        let topic = events[0].event_type.topic();
        let offset = self.offsets.entry(topic).or_default();
        let records: Vec<FetchedRecord> = events
            .iter()
            .enumerate()
            .map(|(i, event)| {
                assert_eq!(event.event_type.topic(), topic);
                FetchedRecord {
                    offset: *offset + i as i64,
                    key: Some(event.order_id.clone()),
                    record_time: event.time,
                    decoded: Ok((event.clone(), event.to_json())),
                    idempotency: None,
                }
            })
            .collect();
        *offset += events.len() as i64;
        let next = *offset;
        let outcome = self
            .store
            .apply_fetched(topic, 0, records, next)
            .await
            .unwrap();
        assert_eq!(outcome.applied, events.len() as u64);
    }

    fn order(&self, id: &str) -> StoredOrder {
        self.store
            .query_blocking(|v| v.stored_order(id))
            .unwrap()
            .unwrap_or_else(|| panic!("no order {id}"))
    }

    fn counters(&self) -> Counters {
        self.store.query_blocking(|v| v.counters()).unwrap()
    }

    fn count(&self, status: OrderStatus) -> u64 {
        self.counters().by_status.get(&status).copied().unwrap_or(0)
    }

    fn list_orders(&self, query: ListQuery) -> Value {
        json_of(
            &self
                .store
                .query_blocking(|v| v.list_orders(&query))
                .unwrap(),
        )
    }
}

/// An answer as a client reads it.
fn json_of(answer: &impl serde::Serialize) -> Value {
    serde_json::from_str(&serde_json::to_string(answer).unwrap()).unwrap()
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["order_id"].as_str().unwrap().to_string())
        .collect()
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

#[tokio::test]
async fn a_whole_lifecycle_moves_the_counters() {
    let mut m = Model::new().await;
    m.put(&created("o1", 0, "Ann", 1000)).await;
    assert_eq!(m.order("o1").record.status, Some(OrderStatus::Pending));
    assert_eq!(m.count(OrderStatus::Pending), 1);
    m.put(&paid("o1", 1, false, 1)).await;
    m.put(&paid("o1", 2, true, 2)).await;
    assert_eq!(m.count(OrderStatus::Pending), 0);
    assert_eq!(m.count(OrderStatus::Paid), 1);
    assert_eq!(m.counters().revenue["EUR"], Money::from_minor(1000));
    for (i, s) in DeliveryStatus::ALL.into_iter().enumerate() {
        m.put(&delivery("o1", 3 + i as i64, s)).await;
    }
    let o = m.order("o1");
    assert_eq!(o.record.status, Some(OrderStatus::Delivered));
    assert_eq!(o.timeline.len(), 7);
    assert_eq!(o.record.anomalies, 0);
    assert_eq!(m.count(OrderStatus::Delivered), 1);
    assert_eq!(m.count(OrderStatus::Paid), 0);
    // Delivered orders are still revenue.
    let c = m.counters();
    assert_eq!(c.revenue["EUR"], Money::from_minor(1000));
    assert_eq!((c.payments_succeeded, c.payments_failed), (1, 1));
    assert_eq!((c.orders, c.deliveries, c.events), (1, 1, 7));
    let d = m
        .store
        .query_blocking(|v| v.delivery("o1-d"))
        .unwrap()
        .unwrap();
    assert_eq!(d.status, DeliveryStatus::Delivered);
}

#[tokio::test]
async fn replays_and_retries_never_double_count() {
    let mut m = Model::new().await;
    let order = created("o1", 0, "Ann", 1000);
    assert_eq!(m.put(&order).await, Applied::New);
    // The same event again, even at another offset (a producer retry), changes nothing.
    assert_eq!(m.put(&order).await, Applied::Duplicate);
    m.put(&paid("o1", 1, true, 1)).await;
    assert_eq!(m.put(&paid("o1", 1, true, 1)).await, Applied::Duplicate);
    let c = m.counters();
    assert_eq!(c.orders, 1);
    assert_eq!(m.order("o1").timeline.len(), 2);
    assert_eq!(c.payments_succeeded, 1);
    assert_eq!(c.revenue["EUR"], Money::from_minor(1000));
    let stats = json_of(&m.store.query_blocking(|v| v.stats(t(0))).unwrap());
    let per_minute: u64 = stats["orders_per_minute"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["orders"].as_u64().unwrap())
        .sum();
    assert_eq!(per_minute, 1);
}

#[tokio::test]
async fn duplicates_within_one_group_commit_count_once() {
    let m = Model::new().await;
    let order = created("o1", 0, "Ann", 1000);
    let record = |offset| FetchedRecord {
        offset,
        key: Some("o1".into()),
        record_time: t(0),
        decoded: Ok((order.clone(), order.to_json())),
        idempotency: Some(("key-1".into(), "fp".into())),
    };
    let outcome = m
        .store
        .apply_fetched(TopicRole::Orders, 0, vec![record(0), record(1)], 2)
        .await
        .unwrap();
    assert_eq!((outcome.applied, outcome.duplicates), (1, 1));
    let write = m
        .store
        .query_blocking(|v| v.idempotent_write("key-1"))
        .unwrap()
        .unwrap();
    assert_eq!(write.position.offset, 0);
    assert_eq!(m.counters().orders, 1);
    assert_eq!(m.store.next_offset(TopicRole::Orders, 0), Some(2));
}

#[tokio::test]
async fn a_payment_read_before_its_order_gives_the_same_state() {
    let events = [
        created("o1", 0, "Ann", 1000),
        paid("o1", 5, true, 1),
        delivery("o1", 9, DeliveryStatus::Shipped),
    ];
    let mut in_order = Model::new().await;
    for e in &events {
        in_order.put(e).await;
    }
    let mut reversed = Model::new().await;
    for e in events.iter().rev() {
        reversed.put(e).await;
    }
    for m in [&in_order, &reversed] {
        let o = m.order("o1");
        assert_eq!(o.record.status, Some(OrderStatus::Shipped));
        assert_eq!(o.record.anomalies, 0, "{:?}", o.timeline);
        assert_eq!(m.count(OrderStatus::Shipped), 1);
        assert_eq!(m.count(OrderStatus::Pending), 0);
        assert_eq!(m.counters().anomalies, 0);
        assert_eq!(m.counters().revenue["EUR"], Money::from_minor(1000));
        let shipped = m.list_orders(ListQuery {
            limit: 10,
            status: Some("Shipped".into()),
            ..Default::default()
        });
        assert_eq!(ids(&shipped), ["o1"]);
    }
}

#[tokio::test]
async fn an_event_that_breaks_the_lifecycle_is_kept_and_flagged() {
    let mut m = Model::new().await;
    m.put(&created("o1", 0, "Ann", 1000)).await;
    m.put(&cancelled("o1", 1)).await;
    m.put(&paid("o1", 2, true, 1)).await;
    let o = m.order("o1");
    assert_eq!(o.record.status, Some(OrderStatus::Cancelled));
    assert_eq!(o.timeline.len(), 3);
    assert_eq!(o.record.anomalies, 1);
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
    m.put(&paid("ghost", 3, true, 1)).await;
    assert_eq!(m.order("ghost").record.anomalies, 1);
    assert_eq!(m.counters().orders, 1);
    let all = m.list_orders(ListQuery {
        limit: 100,
        ..Default::default()
    });
    assert_eq!(ids(&all), ["o1"]);
}

#[tokio::test]
async fn listing_is_newest_first_with_filters_and_cursor_paging() {
    let mut m = Model::new().await;
    for i in 0..25 {
        let name = if i % 2 == 0 { "Ann Lee" } else { "Bob Stone" };
        m.put(&created(&format!("o{i:02}"), i, name, 1000)).await;
    }
    m.put(&paid("o03", 100, true, 1)).await;

    let first = m.list_orders(ListQuery {
        limit: 10,
        ..Default::default()
    });
    assert_eq!(ids(&first)[0], "o24");
    assert_eq!(ids(&first).len(), 10);
    let mut seen = ids(&first);
    let mut cursor = first["next_cursor"].as_str().map(str::to_string);
    while let Some(c) = cursor {
        let page = m.list_orders(ListQuery {
            limit: 10,
            before: Cursor::decode(&c),
            ..Default::default()
        });
        seen.extend(ids(&page));
        cursor = page["next_cursor"].as_str().map(str::to_string);
    }
    let expected: Vec<String> = (0..25).rev().map(|i| format!("o{i:02}")).collect();
    assert_eq!(seen, expected);

    // Whole words, any case, every word of the query.
    let bobs = m.list_orders(ListQuery {
        limit: 100,
        text: Some("BOB".into()),
        ..Default::default()
    });
    assert_eq!(ids(&bobs).len(), 12);
    assert_eq!(bobs["next_cursor"], Value::Null);
    let bob_stone = m.list_orders(ListQuery {
        limit: 5,
        text: Some("stone bob".into()),
        ..Default::default()
    });
    assert_eq!(ids(&bob_stone), ["o23", "o21", "o19", "o17", "o15"]);
    let rest = m.list_orders(ListQuery {
        limit: 100,
        text: Some("stone bob".into()),
        before: Cursor::decode(bob_stone["next_cursor"].as_str().unwrap()),
        ..Default::default()
    });
    assert_eq!(ids(&rest).len(), 7);
    let nobody = m.list_orders(ListQuery {
        limit: 100,
        text: Some("ann stone".into()),
        ..Default::default()
    });
    assert!(ids(&nobody).is_empty());
    m.put(&created("ord-7f3a", 200, "Jean-Pierre Roux", 500))
        .await;
    for (q, found) in [
        ("ORD-7F3A", vec!["ord-7f3a"]),
        ("jean-pierre", vec!["ord-7f3a"]),
        ("roux jean", vec!["ord-7f3a"]),
        ("ord", vec![]),
    ] {
        let page = m.list_orders(ListQuery {
            limit: 10,
            text: Some(q.into()),
            ..Default::default()
        });
        assert_eq!(ids(&page), found, "q={q}");
    }
    let punctuation = m.list_orders(ListQuery {
        limit: 100,
        text: Some("@@ -".into()),
        ..Default::default()
    });
    assert!(ids(&punctuation).is_empty());
    let by_email = m.list_orders(ListQuery {
        limit: 100,
        text: Some("bob stone@example.com".into()),
        ..Default::default()
    });
    assert_eq!(ids(&by_email).len(), 12);

    let paid_orders = m.list_orders(ListQuery {
        limit: 100,
        status: Some("paid".into()),
        ..Default::default()
    });
    assert_eq!(ids(&paid_orders), ["o03"]);
    // The status index follows the order: no longer pending.
    let pending = m.list_orders(ListQuery {
        limit: 100,
        status: Some("Pending".into()),
        ..Default::default()
    });
    assert_eq!(ids(&pending).len(), 25);
    let paid_ann = m.list_orders(ListQuery {
        limit: 100,
        status: Some("Paid".into()),
        text: Some("bob".into()),
        ..Default::default()
    });
    assert_eq!(ids(&paid_ann), ["o03"]);
    let payments = m
        .store
        .query_blocking(|v| {
            v.list_payments(&ListQuery {
                limit: 5,
                ..Default::default()
            })
        })
        .unwrap();
    assert_eq!(payments.items[0].order_id, "o03");
}

#[tokio::test]
async fn stats_count_the_last_hour_per_minute() {
    let mut m = Model::new().await;
    m.put(&created("a", 0, "Ann", 1000)).await;
    m.put(&created("b", 30, "Bob", 250)).await;
    m.put(&created("c", 120, "Cy", 100)).await;
    m.put(&paid("a", 200, true, 1)).await;
    m.put(&paid("b", 200, false, 1)).await;
    let stats = m.store.query_blocking(|v| v.stats(t(150))).unwrap();
    let per_minute = &stats.orders_per_minute;
    assert_eq!(per_minute.len(), 60);
    assert_eq!(per_minute[59].orders, 1);
    assert_eq!(per_minute[57].orders, 2);
    assert_eq!(per_minute[57].revenue, Money::from_minor(1250));
    assert_eq!(stats.orders.total, 3);
    assert_eq!(stats.orders.by_status[&OrderStatus::Pending], 1);
    assert_eq!(stats.orders.by_status[&OrderStatus::PaymentFailed], 1);
    assert_eq!(stats.payments.success_ratio, Some(0.5));
    assert_eq!(stats.revenue[0].amount, Money::from_minor(1000));
    // As a client reads it: amounts are numbers with two decimals.
    let text = serde_json::to_string(&stats).unwrap();
    assert!(
        text.contains(r#""revenue":[{"currency":"EUR","amount":10.00}]"#),
        "{text}"
    );
}

#[tokio::test]
async fn a_reopened_store_resumes_with_the_same_state_and_offsets() {
    let dir = TempDir::new();
    let all = ListQuery {
        limit: 100,
        ..Default::default()
    };
    let (orders, payments, stats, offsets, numbering) = {
        let store = Store::open(settings(&dir)).unwrap();
        assert_eq!(
            store.check_layout(&layout(1)).await.unwrap(),
            Resumed::Empty
        );
        let numbering = store.numbering();
        assert!(!numbering.is_empty());
        let mut m = Model {
            store,
            offsets: HashMap::new(),
            _dir: None,
        };
        for i in 0..5 {
            m.put(&created(&format!("o{i}"), i, "Ann", 1000 + i)).await;
            m.put(&paid(&format!("o{i}"), 10 + i, i % 2 == 0, 1)).await;
        }
        let snapshot = m
            .store
            .query_blocking(|v| Ok((v.list_orders(&all)?, v.list_payments(&all)?, v.stats(t(0))?)))
            .unwrap();
        let offsets = m.store.committed().partitions.clone();
        m.store.close();
        (snapshot.0, snapshot.1, snapshot.2, offsets, numbering)
    };

    let store = Store::open(settings(&dir)).unwrap();
    assert_eq!(
        store.check_layout(&layout(1)).await.unwrap(),
        Resumed::FromStore {
            events: 10,
            orders: 5
        }
    );
    assert_eq!(store.committed().partitions, offsets);
    assert_eq!(store.next_offset(TopicRole::Orders, 0), Some(5));
    // The events keep their numbers, so the numbering keeps its name.
    assert_eq!(store.numbering(), numbering);
    let again = store
        .query_blocking(|v| Ok((v.list_orders(&all)?, v.list_payments(&all)?, v.stats(t(0))?)))
        .unwrap();
    assert_eq!(json_of(&again), json_of(&(orders, payments, stats)));

    // Replaying an event already in the store is still recognised.
    let mut m = Model {
        store,
        offsets: HashMap::from([(TopicRole::Orders, 5)]),
        _dir: None,
    };
    assert_eq!(
        m.put(&created("o1", 1, "Ann", 1001)).await,
        Applied::Duplicate
    );
    m.store.close();

    // Other topics (another prefix): discarded, not misapplied. (More partitions on the same
    // topics keep the store: `partitions_added_to_the_topics_keep_the_store`.)
    let store = Store::open(settings(&dir)).unwrap();
    assert!(matches!(
        store
            .check_layout(&TopicLayout::uniform("other.", 1))
            .await
            .unwrap(),
        Resumed::Discarded(_)
    ));
    assert_eq!(store.query_blocking(|v| v.counters()).unwrap().orders, 0);
    assert!(store.committed().partitions.is_empty());
    // Counting starts again: another name, so that clients stop comparing with old numbers.
    assert_ne!(store.numbering(), numbering);
    store.close();
}

/// Leaves a closed store in `dir` that holds one order.
async fn store_with_one_order(dir: &TempDir) {
    let store = Store::open(settings(dir)).unwrap();
    store.check_layout(&layout(1)).await.unwrap();
    let mut m = Model {
        store,
        offsets: HashMap::new(),
        _dir: None,
    };
    m.put(&created("o1", 0, "Ann", 1000)).await;
    m.store.close();
}

/// An exit that does not wait for fjall's worker loses nothing that was committed, and the
/// database's lock is released once the thread letting go of it is done. (A reopen in the
/// same process reads the journal from the page cache, so this does not tell a synced commit
/// from an unsynced one; the kill -9 tests cover that.)
#[tokio::test]
async fn a_close_that_does_not_wait_for_the_database_keeps_every_commit() {
    let dir = TempDir::new();
    let store = Store::open(settings(&dir)).unwrap();
    store.check_layout(&layout(1)).await.unwrap();
    let mut m = Model {
        store,
        offsets: HashMap::new(),
        _dir: None,
    };
    for n in 0..50 {
        m.put(&created(&format!("o{n}"), n, "Ann", 1000)).await;
    }
    // Nothing is waited for: the database is let go of on a thread of its own.
    let _in_time = m.store.close_within(Duration::ZERO);
    // Its lock goes once that thread is done (bounded: the test's data is small).
    let mut store = None;
    for _ in 0..500 {
        match Store::open(settings(&dir)) {
            Ok(opened) => {
                store = Some(opened);
                break;
            }
            Err(store::OpenError::InUse { .. }) => std::thread::sleep(Duration::from_millis(10)),
            Err(other) => panic!("reopening failed: {other}"),
        }
    }
    let store = store.expect("the database is let go of within 5 s");
    assert_eq!(
        store.check_layout(&layout(1)).await.unwrap(),
        Resumed::FromStore {
            events: 50,
            orders: 50
        }
    );
    assert_eq!(store.query_blocking(|v| v.counters()).unwrap().orders, 50);
    assert_eq!(store.next_offset(TopicRole::Orders, 0), Some(50));
    // Waiting, with time to spare, lets go of it in time.
    assert!(store.close_within(Duration::from_secs(30)));
    Store::open(settings(&dir)).unwrap().close();
}

#[tokio::test]
async fn an_old_snapshot_is_noticed_and_the_store_rebuilt() {
    let dir = TempDir::new();
    store_with_one_order(&dir).await;
    std::fs::write(dir.0.join("snapshot.json"), b"{}").unwrap();
    let store = Store::open(settings(&dir)).unwrap();
    assert!(!dir.0.join("snapshot.json").exists());
    assert_eq!(
        store.check_layout(&layout(1)).await.unwrap(),
        Resumed::Empty
    );
    store.close();
}

/// Overwrites every file of the store (but its lock) with garbage.
fn overwrite_files(path: &std::path::Path) {
    for entry in std::fs::read_dir(path).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            overwrite_files(&path);
        } else if path.file_name().is_some_and(|n| n != "lock") {
            let len = std::fs::metadata(&path).unwrap().len().max(64) as usize;
            std::fs::write(&path, vec![0x5a; len]).unwrap();
        }
    }
}

#[tokio::test]
async fn a_corrupt_store_is_a_clear_error_that_names_the_way_out() {
    let dir = TempDir::new();
    store_with_one_order(&dir).await;
    overwrite_files(&dir.0.join(store::DIR_NAME));
    let error = Store::open(settings(&dir)).unwrap_err().to_string();
    assert!(error.contains("--rebuild-store"), "{error}");
    let mut rebuild = settings(&dir);
    rebuild.rebuild = true;
    let store = Store::open(rebuild).unwrap();
    assert_eq!(
        store.check_layout(&layout(1)).await.unwrap(),
        Resumed::Empty
    );
    store.close();
}

/// A store whose idempotency keys are kept for an hour of record time.
async fn store_keeping_keys_an_hour(dir: &TempDir) -> Store {
    let mut short = settings(dir);
    short.retention = Duration::from_secs(3600);
    let store = Store::open(short).unwrap();
    store.check_layout(&layout(1)).await.unwrap();
    store
}

/// `event` read at `offset`, written under the Idempotency-Key `key`.
fn keyed(event: Event, offset: i64, key: &str) -> FetchedRecord {
    FetchedRecord {
        offset,
        key: Some(event.order_id.clone()),
        record_time: event.time,
        decoded: Ok((event.clone(), event.to_json())),
        idempotency: Some((key.into(), "fp".into())),
    }
}

#[tokio::test]
async fn idempotency_keys_older_than_the_retention_are_forgotten() {
    let dir = TempDir::new();
    let store = store_keeping_keys_an_hour(&dir).await;
    let old = keyed(created("old", 0, "Ann", 1000), 0, "key-old");
    let new = keyed(created("new", 7200, "Bob", 1000), 1, "key-new");
    store
        .apply_fetched(TopicRole::Orders, 0, vec![old, new], 2)
        .await
        .unwrap();
    let (old, new) = store
        .query_blocking(|v| {
            Ok((
                v.idempotent_write("key-old")?,
                v.idempotent_write("key-new")?,
            ))
        })
        .unwrap();
    assert!(old.is_none() && new.is_some(), "old {old:?}, new {new:?}");
    // The orders stay, with their timelines: replaying their events still counts once.
    let counters = store.query_blocking(|v| v.counters()).unwrap();
    assert_eq!((counters.orders, counters.events), (2, 2));
    let mut m = Model {
        store,
        offsets: HashMap::from([(TopicRole::Orders, 2)]),
        _dir: None,
    };
    assert_eq!(
        m.put(&created("old", 0, "Ann", 1000)).await,
        Applied::Duplicate
    );
    m.store.close();
}

#[tokio::test]
async fn pruning_takes_what_aged_out_since_the_last_commit_oldest_first_and_bounded() {
    let dir = TempDir::new();
    let store = store_keeping_keys_an_hour(&dir).await;
    let keyed = |order: &str, at: i64, offset: i64| {
        keyed(
            created(order, at, "Ann", 1000),
            offset,
            &format!("key-{order}"),
        )
    };
    let known = |key: &'static str| {
        store
            .query_blocking(move |v| Ok(v.idempotent_write(key)?.is_some()))
            .unwrap()
    };
    // More keys than one commit prunes, all within the retention when written.
    let many = tables::PRUNE_PER_COMMIT as i64 + 10;
    let records: Vec<_> = (0..many)
        .map(|i| keyed(&format!("o{i}"), i / 100, i))
        .collect();
    store
        .apply_fetched(TopicRole::Orders, 0, records, many)
        .await
        .unwrap();
    assert!(known("key-o0") && known("key-o2009"));

    // A record an hour later ages them all out: the oldest go first, as many as one commit
    // takes; the next commit takes the rest.
    let later = 3600 + many / 100 + 1;
    let mut offset = many;
    for (order, at) in [("late1", later), ("late2", later)] {
        store
            .apply_fetched(
                TopicRole::Orders,
                0,
                vec![keyed(order, at, offset)],
                offset + 1,
            )
            .await
            .unwrap();
        offset += 1;
        if order == "late1" {
            assert!(!known("key-o0") && !known("key-o1999"), "the oldest first");
            assert!(
                known("key-o2000") && known("key-o2009"),
                "at most one commit's worth"
            );
        }
    }
    assert!(!known("key-o2000") && !known("key-o2009"));
    assert!(known("key-late1") && known("key-late2"));

    // Later commits go on from where pruning stopped, and still forget what ages out.
    store
        .apply_fetched(
            TopicRole::Orders,
            0,
            vec![keyed("later", later + 3601, offset)],
            offset + 1,
        )
        .await
        .unwrap();
    assert!(!known("key-late1") && !known("key-late2") && known("key-later"));
    let counters = store.query_blocking(|v| v.counters()).unwrap();
    assert_eq!(counters.orders, many as u64 + 3);
    store.close();
}

#[tokio::test]
async fn minutes_more_than_a_day_before_the_newest_are_pruned_and_not_written_again() {
    let mut m = Model::new().await;
    m.put(&created("o1", 0, "Ann", 1000)).await;
    let day = super::MINUTES_KEPT * 60;
    m.put(&created("o2", day + 120, "Bob", 1000)).await;
    // A record from before the window, read after it moved on: not in the series.
    m.put(&created("o3", 60, "Cy", 1000)).await;
    let minutes = m
        .store
        .query_blocking(move |v| {
            Ok((
                v.minute(unix_minute(t(0)))?,
                v.minute(unix_minute(t(60)))?,
                v.minute(unix_minute(t(day + 120)))?,
            ))
        })
        .unwrap();
    assert_eq!(minutes.0, None, "pruned");
    assert_eq!(minutes.1, None, "older than the window: not written");
    assert_eq!(minutes.2.map(|s| s.orders), Some(1));
    let counters = m.store.query_blocking(|v| v.counters()).unwrap();
    assert_eq!(counters.orders, 3, "the orders themselves all count");
}

#[tokio::test]
async fn frames_are_published_after_the_commit_with_their_offsets() {
    let mut m = Model::new().await;
    let (mut live, positions) = m.store.subscribe();
    assert!(positions.is_empty());
    m.put(&created("o1", 0, "Ann", 1000)).await;
    let frame = live.recv().await.unwrap();
    assert_eq!(frame.position.offset, 0);
    assert!(m.store.committed().has_applied(TopicRole::Orders, 0, 0));
    let json: Value = serde_json::from_str(&frame.json).unwrap();
    assert_eq!(json["data"]["order_id"], "o1");
    assert_eq!(json["event_type"], "order.created");
    let (_, positions) = m.store.subscribe();
    assert_eq!(positions, vec![(TopicRole::Orders, 0, 1)]);
}

#[tokio::test]
async fn a_backup_is_a_store_of_its_own_and_only_the_newest_are_kept() {
    let mut m = Model::new().await;
    m.put(&created("o1", 0, "Ann", 1000)).await;
    m.put(&paid("o1", 1, true, 1)).await;
    let mut reports = Vec::new();
    for _ in 0..store::BACKUPS_KEPT + 1 {
        reports.push(m.store.backup().await.unwrap());
        // Backups are named by the millisecond.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let first = &reports[0];
    assert!(first.keys > 0 && first.bytes > 0, "{first:?}");
    assert!(!first.data_dir.exists(), "the oldest backup is removed");
    let backups = first.data_dir.parent().unwrap();
    assert_eq!(
        std::fs::read_dir(backups).unwrap().count(),
        store::BACKUPS_KEPT
    );

    // The newest opens as a store with the same state and offsets.
    let newest = reports.last().unwrap();
    let copy = Store::open(settings_at(&newest.data_dir)).unwrap();
    assert_eq!(
        copy.check_layout(&layout(1)).await.unwrap(),
        Resumed::FromStore {
            events: 2,
            orders: 1
        }
    );
    let order = copy
        .query_blocking(|v| v.stored_order("o1"))
        .unwrap()
        .unwrap();
    assert_eq!(order.record.status, Some(OrderStatus::Paid));
    assert_eq!(copy.next_offset(TopicRole::Payments, 0), Some(1));
    copy.close();
    m.store.close();
}

#[tokio::test]
async fn an_id_in_q_finds_the_records_by_key() {
    let mut m = Model::new().await;
    m.put(&created("ord-1", 0, "Ann", 1000)).await;
    m.put(&paid("ord-1", 1, false, 1)).await;
    m.put(&paid("ord-1", 2, true, 2)).await;
    m.put(&delivery("ord-1", 3, DeliveryStatus::Shipped)).await;
    m.put(&created("ord-2", 4, "Bob", 1000)).await;
    m.put(&paid("ord-2", 5, true, 1)).await;
    let list = |kind: &'static str, q: &str, status: Option<&str>| {
        let query = ListQuery {
            limit: 10,
            text: Some(q.into()),
            status: status.map(str::to_string),
            ..Default::default()
        };
        let page = m
            .store
            .query_blocking(move |v| {
                Ok(match kind {
                    "payments" => json_of(&v.list_payments(&query)?),
                    "deliveries" => json_of(&v.list_deliveries(&query)?),
                    _ => json_of(&v.list_orders(&query)?),
                })
            })
            .unwrap();
        let key = match kind {
            "payments" => "payment_id",
            "deliveries" => "delivery_id",
            _ => "order_id",
        };
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i[key].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(list("orders", "ORD-1", None), ["ord-1"]);
    // An order's payments, newest first, and the status filter still holds.
    assert_eq!(list("payments", "ord-1", None), ["ord-1-p2", "ord-1-p1"]);
    assert_eq!(list("payments", "ord-1", Some("FAILED")), ["ord-1-p1"]);
    assert_eq!(list("payments", "ord-2-p1", None), ["ord-2-p1"]);
    assert_eq!(list("deliveries", "ord-1", None), ["ord-1-d"]);
    assert_eq!(list("deliveries", "ord-1-d", None), ["ord-1-d"]);
    assert!(list("deliveries", "ord-2", None).is_empty());
    m.store.close();
}

/// Ids end index keys in two forms (a canonical UUID as its 16 bytes, any other id as its
/// text, `Key::id`): orders created at the same microsecond with ids of both forms are each
/// listed once through the cursor, in the indexes' order, and found by id.
#[tokio::test]
async fn ids_of_every_form_at_one_time_page_through_the_cursor_once_each() {
    let mut m = Model::new().await;
    let lower = "0f1c2a4e-8b0d-4c3e-9a57-2d1e0f9b8c7a";
    let upper = "6F1C2A4E-8B0D-4C3E-9A57-2D1E0F9B8C7A";
    let all = [
        lower,
        "ffffffff-0000-4000-8000-000000000000",
        upper,
        "o-1",
        "a",
    ];
    for id in all {
        m.put(&created(id, 7, "Ann", 1000)).await;
    }
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = m.list_orders(ListQuery {
            limit: 1,
            before,
            ..Default::default()
        });
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => before = Cursor::decode(c),
            None => break,
        }
    }
    // Newest first: the other ids, then the UUIDs, each group from its last key down.
    assert_eq!(
        seen,
        [
            "o-1",
            "a",
            upper,
            "ffffffff-0000-4000-8000-000000000000",
            lower
        ]
    );
    for id in all {
        let found = m.list_orders(ListQuery {
            limit: 10,
            text: Some(id.into()),
            ..Default::default()
        });
        if id.contains('-') {
            assert_eq!(ids(&found), [id], "{id}");
        }
    }
    m.store.close();
}

#[tokio::test]
async fn every_frame_carries_the_status_its_event_left_and_a_replay_reads_the_same() {
    let mut m = Model::new().await;
    let (mut frames, _) = m.store.subscribe();
    let events = [
        created("o1", 0, "Ann", 1000),
        paid("o1", 1, false, 1),
        paid("o1", 2, true, 2),
        // A producer retry of the successful payment: a frame, with the original's effect.
        paid("o1", 2, true, 2),
        // Cancelling a paid order breaks the lifecycle: the status stays Paid.
        cancelled("o1", 3),
        // A payment for an order never created: no status yet.
        paid("o2", 4, true, 1),
    ];
    for event in &events {
        m.put(event).await;
    }
    let mut seen = Vec::new();
    for _ in &events {
        let frame = frames.recv().await.unwrap();
        let json: Value = serde_json::from_str(&frame.json).unwrap();
        seen.push((json["order_status"].clone(), json["seq"].as_u64().unwrap()));
    }
    assert_eq!(
        seen,
        vec![
            (json!("Pending"), 1),
            (json!("Payment Failed"), 2),
            (json!("Paid"), 3),
            (json!("Paid"), 3),
            (json!("Paid"), 4),
            (Value::Null, 5),
        ]
    );
    let wanted: Vec<(String, String)> = events
        .iter()
        .map(|e| (e.order_id.clone(), e.event_id.clone()))
        .collect();
    let effects = m.store.query_blocking(|v| v.effects_of(&wanted)).unwrap();
    let replayed: Vec<(Value, u64)> = effects
        .into_iter()
        .map(|e| {
            let e = e.expect("every applied event has an effect");
            (serde_json::to_value(e.order_status).unwrap(), e.seq)
        })
        .collect();
    assert_eq!(replayed, seen);
    assert_eq!(m.order("o1").record.seq, 4);
}

#[tokio::test]
async fn an_event_dated_far_after_its_record_counts_at_the_record_time_as_an_anomaly() {
    let mut m = Model::new().await;
    m.put(&created("o1", 0, "Ann", 1000)).await;
    // Dated ten years ahead of its record: it must not empty the per-minute statistics (their
    // window follows the newest minute) nor sit at the top of the list.
    let mut future = created("o2", 315_360_000, "Bob", 2000);
    future.event_id = "o2-created".into();
    m.put_at(&future, t(60)).await;
    let o2 = m.order("o2");
    assert_eq!(o2.record.created_at, Some(t(60)));
    assert_eq!(o2.record.status, Some(OrderStatus::Pending));
    assert_eq!(o2.record.anomalies, 1);
    let why = o2.timeline[0].anomaly.as_deref().unwrap();
    assert!(why.contains("after its Kafka record's timestamp"), "{why}");
    assert_eq!(
        o2.timeline[0].time,
        t(315_360_000),
        "the time as written is kept"
    );
    let minutes = m
        .store
        .query_blocking(|v| Ok((v.minute(unix_minute(t(0)))?, v.minute(unix_minute(t(60)))?)))
        .unwrap();
    assert_eq!(
        minutes.0.map(|s| s.orders),
        Some(1),
        "the first minute is still there"
    );
    assert_eq!(minutes.1.map(|s| s.orders), Some(1));
    assert_eq!(m.counters().anomalies, 1);
    // Absurdly back-dated: same treatment.
    let ancient = created("o3", -1_767_225_600 + 1, "Cy", 100);
    m.put_at(&ancient, t(120)).await;
    let o3 = m.order("o3");
    assert_eq!(o3.record.created_at, Some(t(120)));
    assert!(
        o3.timeline[0]
            .anomaly
            .as_deref()
            .unwrap()
            .contains("days before")
    );
}

#[tokio::test]
async fn a_cancel_back_dated_before_a_payment_written_long_before_it_does_not_undo_the_payment() {
    let mut m = Model::new().await;
    m.put(&created("o1", 0, "Ann", 1000)).await;
    m.put(&paid("o1", 10, true, 1)).await;
    // Written an hour after the payment, dated before it.
    m.put_at(&cancelled("o1", 5), t(3610)).await;
    let order = m.order("o1");
    assert_eq!(order.record.status, Some(OrderStatus::Paid));
    assert_eq!(m.count(OrderStatus::Paid), 1);
    let last = order.timeline.last().unwrap();
    assert_eq!(last.event_type, EventType::OrderCancelled);
    let why = last.anomaly.as_deref().unwrap();
    assert!(why.contains("placed after it"), "{why}");
    assert_eq!(order.record.anomalies, 1);
}

#[tokio::test]
async fn events_written_together_keep_their_own_times_whatever_the_order_they_are_read_in() {
    // A backfill: dated months before their records, written within seconds, read payment
    // first. And a race within the skew: the earlier event wins, as before.
    let mut m = Model::new().await;
    m.put_at(&paid("o1", -9_000_000, true, 1), t(2)).await;
    m.put_at(&created("o1", -9_000_010, "Ann", 1000), t(1))
        .await;
    let order = m.order("o1");
    assert_eq!(order.record.status, Some(OrderStatus::Paid));
    assert_eq!(order.record.anomalies, 0);
    assert_eq!(order.record.created_at, Some(t(-9_000_010)));

    m.put_at(&created("o2", 0, "Bob", 1000), t(0)).await;
    m.put_at(&paid("o2", 20, true, 1), t(20)).await;
    m.put_at(&cancelled("o2", 15), t(60)).await;
    let order = m.order("o2");
    assert_eq!(order.record.status, Some(OrderStatus::Cancelled));
    assert_eq!(
        order.record.anomalies, 1,
        "the later payment is the anomaly"
    );
}

#[tokio::test]
async fn partitions_added_to_the_topics_keep_the_store() {
    let mut m = Model::new().await;
    m.put(&created("o1", 0, "Ann", 1000)).await;
    let resumed = m.store.check_layout(&layout(3)).await.unwrap();
    assert!(
        matches!(resumed, Resumed::FromStore { events: 1, .. }),
        "{resumed:?}"
    );
    assert!(
        m.store
            .query_blocking(|v| v.stored_order("o1"))
            .unwrap()
            .is_some()
    );
    // Fewer partitions than the store was built for is another layout.
    let resumed = m.store.check_layout(&layout(2)).await.unwrap();
    assert!(matches!(resumed, Resumed::Discarded(_)), "{resumed:?}");
}

#[tokio::test]
async fn record_timestamps_at_the_ends_of_the_calendar_do_not_panic() {
    let mut m = Model::new().await;
    let mut first = created("o1", 0, "Ann", 1000);
    first.time = DateTime::<Utc>::MAX_UTC;
    m.put_at(&first, DateTime::<Utc>::MAX_UTC).await;
    let mut second = created("o2", 0, "Bob", 1000);
    second.time = DateTime::<Utc>::MIN_UTC;
    m.put_at(&second, DateTime::<Utc>::MIN_UTC).await;
    m.put_at(&paid("o1", 0, true, 1), DateTime::<Utc>::MIN_UTC)
        .await;
    assert_eq!(m.counters().orders, 2);
}

/// How many blocks the search index holds.
fn search_blocks(m: &Model) -> usize {
    use super::tables::{Key, Table};
    m.store
        .query_blocking(|v| {
            Ok(v.keys(
                Key::new(Table::SearchBlocks),
                Key(vec![Table::SearchBlocks as u8 + 1]),
            )
            .count())
        })
        .unwrap()
}

/// Every page of a `q` search of orders, `limit` at a time through the cursor.
fn search_all(m: &Model, q: &str, limit: usize) -> Vec<String> {
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = m.list_orders(ListQuery {
            limit,
            text: Some(q.into()),
            before,
            ..Default::default()
        });
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => before = Cursor::decode(c),
            None => return seen,
        }
    }
}

#[tokio::test]
async fn a_search_index_written_in_blocks_pages_like_one_written_key_by_key() {
    // Three replay-sized batches whose times interleave (their blocks overlap), orders at one
    // time with ids of every form, then orders one by one (keys of their own).
    let name = |i: i64| if i % 3 == 0 { "Ann Lee" } else { "Bob Lee" };
    let batches: Vec<Vec<Event>> = (0..3)
        .map(|b| {
            (0..20)
                .map(|i| created(&format!("o{b}-{i:02}"), i * 3 + b, name(i), 1000))
                .collect()
        })
        .collect();
    let same_time: Vec<Event> = [
        "0f1c2a4e-8b0d-4c3e-9a57-2d1e0f9b8c7a",
        "ffffffff-0000-4000-8000-000000000000",
        "o-x",
        "a",
        "6F1C2A4E-8B0D-4C3E-9A57-2D1E0F9B8C7A",
    ]
    .iter()
    .map(|id| created(id, 30, "Ann Lee", 1000))
    .collect();
    let singles: Vec<Event> = (0..6)
        .map(|i| created(&format!("s{i}"), i * 11, name(i), 1000))
        .collect();

    let mut blocks = Model::new().await;
    for batch in batches.iter().chain([&same_time]) {
        blocks.put_all(batch).await;
    }
    let mut one_by_one = Model::new().await;
    for event in batches.iter().flatten().chain(&same_time) {
        one_by_one.put(event).await;
    }
    for event in &singles {
        blocks.put(event).await;
        one_by_one.put(event).await;
    }
    for q in ["lee", "ann", "bob", "ann lee", "laptop", "nobody"] {
        let expected = search_all(&one_by_one, q, 100);
        for limit in [1, 4, 7, 100] {
            assert_eq!(
                search_all(&blocks, q, limit),
                expected,
                "q={q} limit={limit}"
            );
        }
    }
    assert_eq!(search_all(&blocks, "lee", 100).len(), 71);
    assert_eq!(search_all(&blocks, "ann", 7).len(), 21 + 5 + 2);
    assert!(search_blocks(&blocks) > 0);
    assert_eq!(search_blocks(&one_by_one), 0);
    // The same order newest first as the unfiltered list.
    let all = blocks.list_orders(ListQuery {
        limit: 100,
        ..Default::default()
    });
    assert_eq!(search_all(&blocks, "laptop", 9), ids(&all));
}

#[tokio::test]
async fn a_word_a_record_no_longer_holds_is_not_found_in_its_block() {
    let mut m = Model::new().await;
    let orders: Vec<Event> = (0..8)
        .map(|i| created(&format!("o{i}"), i, "Ann", 1000))
        .collect();
    m.put_all(&orders).await;
    let shipped: Vec<Event> = (0..8)
        .map(|i| delivery(&format!("o{i}"), 10 + i, DeliveryStatus::Shipped))
        .collect();
    m.put_all(&shipped).await;
    // o3's carrier changes: its DHL entry stays in the block, and must not be found.
    let mut moved = delivery("o3", 30, DeliveryStatus::InTransit);
    if let EventBody::Delivery(d) = &mut moved.body {
        d.carrier = Some("UPS".into());
    }
    assert!(search_blocks(&m) > 0);
    m.put(&moved).await;
    let deliveries = |q: &str| -> Vec<String> {
        let page = m
            .store
            .query_blocking(|v| {
                v.list_deliveries(&ListQuery {
                    limit: 100,
                    text: Some(q.into()),
                    ..Default::default()
                })
            })
            .unwrap();
        json_of(&page)["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["delivery_id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        deliveries("dhl"),
        ["o7-d", "o6-d", "o5-d", "o4-d", "o2-d", "o1-d", "o0-d"]
    );
    assert_eq!(deliveries("ups"), ["o3-d"]);
    assert_eq!(deliveries("paris").len(), 8);
}

#[tokio::test]
async fn a_cursor_finds_blocks_however_far_their_newest_entry_lies_above_it() {
    // Narrow blocks far apart, then one block as wide as the whole history: a walk from a
    // cursor starts at most the widest span above it, and must still reach every block that
    // holds entries below it.
    let batch = |prefix: &str, times: Vec<i64>| -> Vec<Event> {
        times
            .into_iter()
            .enumerate()
            .map(|(i, at)| created(&format!("{prefix}{i:02}"), at, "Ann Lee", 1000))
            .collect()
    };
    let batches = [
        batch("early", (0..6).collect()),
        batch("late", (1_000..1_006).collect()),
        batch("wide", vec![-50, 3, 500, 1_003, 2_000]),
        batch("later", (3_000..3_004).collect()),
    ];
    let mut blocks = Model::new().await;
    let mut one_by_one = Model::new().await;
    for batch in &batches {
        blocks.put_all(batch).await;
        for event in batch {
            one_by_one.put(event).await;
        }
    }
    assert!(search_blocks(&blocks) >= 4);
    let expected = search_all(&one_by_one, "ann", 100);
    assert_eq!(expected.len(), 21);
    for limit in [1, 2, 5] {
        assert_eq!(search_all(&blocks, "lee", limit), expected, "limit {limit}");
    }
}
