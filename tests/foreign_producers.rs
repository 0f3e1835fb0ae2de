//! Records that shopstream did not write: Apache Kafka's own Java console producer, Python's
//! kafka-python, garbage on the topics, and a second shopstream instance writing to the same
//! topics. All against the real broker, each test on topics of its own (`--topic-prefix`).

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::record::Record;
use serde_json::{Value, json};
use shopstream::domain::event::derived_event_id;
use shopstream::domain::partitioner::partition_for_key;
use support::{
    Running, TestApp, console_produce, eventually, http, kafka_python_available, run_with_stdin,
};

/// Partitions of every topic (shopstream's default, not overridden by these tests).
const PARTITIONS: i32 = 3;
const READY: Duration = Duration::from_secs(60);
/// How long a record may take to show in the read model (polled every 100 ms).
const VISIBLE: Duration = Duration::from_secs(20);
/// How long two instances may take to agree (polled every 100 ms).
const CONVERGE: Duration = Duration::from_secs(30);

const SEED_NAME: &str = "Jean Dupont";
const SEED_EMAIL: &str = "jean.dupont@example.com";
const SEED_ADDRESS: &str = "123 Rue de Paris, 75000 Paris";

/// The seed's order record, exactly as its producer wrote it: no `event_id`, no
/// `event_type`, `amount` a JSON number, a naive timestamp.
fn seed_order(order_id: &str) -> String {
    format!(
        r#"{{"order_id": "{order_id}", "customer_name": "{SEED_NAME}", "customer_email": "{SEED_EMAIL}", "product": "Laptop", "amount": 999.99, "status": "Pending", "timestamp": "2024-01-29T10:30:15.123456", "address": "{SEED_ADDRESS}"}}"#
    )
}

fn seed_payment(order_id: &str, payment_id: &str) -> String {
    format!(
        r#"{{"payment_id": "{payment_id}", "order_id": "{order_id}", "amount": 999.99, "method": "Credit Card", "status": "SUCCESS", "timestamp": "2024-01-29T10:30:20.123456"}}"#
    )
}

fn seed_delivery(order_id: &str, delivery_id: &str) -> String {
    format!(
        r#"{{"delivery_id": "{delivery_id}", "order_id": "{order_id}", "address": "{SEED_ADDRESS}", "status": "In Transit", "estimated_date": "2024-02-05", "timestamp": "2024-01-29T10:30:25.123456"}}"#
    )
}

fn new_prefix(test: &str) -> String {
    format!("{}.", support::unique_name(test))
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `GET path`, 200 expected.
async fn get_ok(addr: SocketAddr, path: &str) -> Value {
    let (status, body) = http::get(addr, path).await.unwrap();
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// The order's detail once it exists with at least `events` timeline entries.
async fn order_with_events(server: &impl Running, order_id: &str, events: usize) -> Value {
    let path = format!("/api/orders/{order_id}");
    eventually(
        &format!("order {order_id} with {events} events"),
        VISIBLE,
        || async {
            match http::get(server.addr(), &path).await? {
                (200, body) if body["order"]["timeline"].as_array().unwrap().len() >= events => {
                    Ok(body["order"].clone())
                }
                (status, body) => Err(format!("{status} {body}")),
            }
        },
    )
    .await
}

/// The checks every seed-shaped order read from a foreign producer passes.
fn assert_seed_order(order: &Value, order_id: &str) {
    assert_eq!(order["order_id"], order_id, "{order}");
    assert_eq!(order["customer_name"], SEED_NAME, "{order}");
    assert_eq!(order["customer_email"], SEED_EMAIL, "{order}");
    assert_eq!(order["product"], "Laptop", "{order}");
    assert_eq!(order["address"], SEED_ADDRESS, "{order}");
    assert_eq!(order["quantity"], 1, "{order}");
    assert_eq!(order["currency"], "EUR", "{order}");
    // Exact money: the JSON number's own text, not the nearest f64.
    assert_eq!(order["amount"].to_string(), "999.99", "{order}");
    assert_eq!(
        order["created_at"], "2024-01-29T10:30:15.123456Z",
        "{order}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_from_the_java_console_producer_are_consumed() {
    let started = Instant::now();
    let bootstrap = support::bootstrap();
    let prefix = new_prefix("java");
    let server = TestApp::start(&bootstrap, &["--topic-prefix", &prefix]).await;
    server.wait_ready(READY).await;

    let order_id = new_id();
    let payment_id = new_id();
    let delivery_id = new_id();
    // More orders after the first one, so that the partitioner check below cannot pass by
    // chance (one key has a one in three chance to land on the expected partition).
    let others: Vec<String> = (0..9).map(|_| new_id()).collect();
    let mut order_records = vec![(order_id.clone(), seed_order(&order_id))];
    order_records.extend(others.iter().map(|id| (id.clone(), seed_order(id))));
    let records = [
        ("orders", order_records),
        (
            "payments",
            vec![(order_id.clone(), seed_payment(&order_id, &payment_id))],
        ),
        (
            "deliveries",
            vec![(order_id.clone(), seed_delivery(&order_id, &delivery_id))],
        ),
    ];
    // Three JVMs at once: each takes a few seconds to start. The read model orders an
    // order's events by time, so the order they arrive in does not matter.
    let producers: Vec<_> = records
        .into_iter()
        .map(|(topic, lines)| {
            let (bootstrap, topic) = (bootstrap.clone(), format!("{prefix}{topic}"));
            tokio::task::spawn_blocking(move || {
                let lines: Vec<(&str, &str)> = lines
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                console_produce(&bootstrap, &topic, &lines);
            })
        })
        .collect();
    for producer in producers {
        producer.await.unwrap();
    }

    let order = order_with_events(&server, &order_id, 3).await;
    assert_seed_order(&order, &order_id);
    assert_eq!(order["status"], "In Transit", "{order}");
    assert_eq!(order["anomalies"], 0, "{order}");

    // Java's default partitioner placed the key where shopstream's partitioner does, on all
    // three topics; each record is the first of its (fresh) partition.
    let expected_partition = partition_for_key(order_id.as_bytes(), PARTITIONS);
    let timeline = order["timeline"].as_array().unwrap();
    assert_eq!(timeline.len(), 3, "{order}");
    let expected = [
        ("orders", "order.created", "2024-01-29T10:30:15.123456Z"),
        (
            "payments",
            "payment.processed",
            "2024-01-29T10:30:20.123456Z",
        ),
        (
            "deliveries",
            "delivery.updated",
            "2024-01-29T10:30:25.123456Z",
        ),
    ];
    for (entry, (topic, event_type, time)) in timeline.iter().zip(expected) {
        assert_eq!(entry["topic"], topic, "{entry}");
        assert_eq!(entry["event_type"], event_type, "{entry}");
        assert_eq!(entry["partition"], expected_partition, "{entry}");
        assert_eq!(entry["offset"], 0, "{entry}");
        assert_eq!(entry["time"], time, "{entry}");
        assert!(entry["anomaly"].is_null(), "{entry}");
        // No event_id in the record: one derived from where it sits.
        assert_eq!(
            entry["event_id"],
            derived_event_id(&format!("{prefix}{topic}"), expected_partition, 0),
            "{entry}"
        );
        assert_eq!(entry["data"]["order_id"], order_id.as_str(), "{entry}");
    }
    assert_eq!(timeline[0]["data"]["amount"].to_string(), "999.99");
    for other in &others {
        let order = order_with_events(&server, other, 1).await;
        assert_seed_order(&order, other);
        assert_eq!(order["status"], "Pending", "{order}");
        assert_eq!(
            order["timeline"][0]["partition"],
            partition_for_key(other.as_bytes(), PARTITIONS),
            "Java placed {other} elsewhere: {order}"
        );
    }

    let payments = order["payments"].as_array().unwrap();
    assert_eq!(payments.len(), 1, "{order}");
    assert_eq!(payments[0]["payment_id"], payment_id.as_str());
    assert_eq!(payments[0]["amount"].to_string(), "999.99");
    assert_eq!(payments[0]["method"], "Credit Card");
    assert_eq!(payments[0]["status"], "SUCCESS");
    let deliveries = order["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1, "{order}");
    assert_eq!(deliveries[0]["delivery_id"], delivery_id.as_str());
    assert_eq!(deliveries[0]["status"], "In Transit");
    assert_eq!(deliveries[0]["estimated_date"], "2024-02-05");
    assert_eq!(deliveries[0]["address"], SEED_ADDRESS);

    let stats = get_ok(server.addr, "/api/stats").await;
    assert_eq!(stats["orders"]["total"], 1 + others.len(), "{stats}");
    assert_eq!(stats["orders"]["by_status"]["In Transit"], 1, "{stats}");
    assert_eq!(
        stats["orders"]["by_status"]["Pending"],
        others.len(),
        "{stats}"
    );
    assert_eq!(stats["orders"]["in_delivery"], 1, "{stats}");
    assert_eq!(stats["payments"]["succeeded"], 1, "{stats}");
    assert_eq!(stats["payments"]["failed"], 0, "{stats}");
    assert_eq!(stats["deliveries"]["total"], 1, "{stats}");
    assert_eq!(stats["anomalies"], 0, "{stats}");
    assert_eq!(stats["events"], 3 + others.len(), "{stats}");
    let revenue = stats["revenue"].as_array().unwrap();
    assert_eq!(revenue.len(), 1, "{stats}");
    assert_eq!(revenue[0]["currency"], "EUR", "{stats}");
    assert_eq!(revenue[0]["amount"].to_string(), "999.99", "{stats}");
    eprintln!("java console producer test took {:?}", started.elapsed());
}

/// The `skipping a record` warnings logged for `topic` (by the TestApps of this process).
fn skip_warnings(topic: &str) -> Vec<Value> {
    support::logs::lines(|event| {
        event["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("skipping a record"))
            && event["topic"] == topic
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_records_are_skipped_counted_and_logged_once() {
    // Its log is part of what is checked: read from the in-process capture.
    let started = Instant::now();
    let bootstrap = support::bootstrap();
    let prefix = new_prefix("garbage");
    let server = TestApp::start(&bootstrap, &["--topic-prefix", &prefix]).await;
    server.wait_ready(READY).await;

    // All under one key, so all on one partition: the valid order comes after the two bad
    // records there, and is only read if consumption goes on past them.
    let order_id = new_id();
    let topic = format!("{prefix}orders");
    let valid = seed_order(&order_id);
    console_produce(
        &bootstrap,
        &topic,
        &[
            (&order_id, "not json at all"),
            (&order_id, r#"{"hello": "world"}"#),
            (&order_id, &valid),
        ],
    );
    let partition = partition_for_key(order_id.as_bytes(), PARTITIONS);

    let order = order_with_events(&server, &order_id, 1).await;
    assert_seed_order(&order, &order_id);
    assert_eq!(order["status"], "Pending", "{order}");
    assert_eq!(order["timeline"][0]["offset"], 2, "{order}");

    let skipped_on = |body: &Value| -> BTreeMap<i64, (i64, i64)> {
        body["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["topic"] == "orders")
            .map(|p| {
                (
                    p["partition"].as_i64().unwrap(),
                    (
                        p["skipped"].as_i64().unwrap(),
                        p["next_offset"].as_i64().unwrap(),
                    ),
                )
            })
            .collect()
    };
    let kafka = get_ok(server.addr, "/api/kafka").await;
    let orders = skipped_on(&kafka);
    assert_eq!(orders.len(), PARTITIONS as usize, "{kafka}");
    assert_eq!(orders.values().map(|(s, _)| s).sum::<i64>(), 2, "{kafka}");
    assert_eq!(orders[&i64::from(partition)], (2, 3), "{kafka}");

    // Logged once for the partition, naming the first bad record. The warning is written
    // right after the batch is applied: wait for it (bounded).
    let warnings = eventually("the skip warning", VISIBLE, || async {
        let warnings = skip_warnings(&topic);
        if warnings.is_empty() {
            Err("no warning yet".to_string())
        } else {
            Ok(warnings)
        }
    })
    .await;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0]["topic"], topic.as_str(), "{}", warnings[0]);
    assert_eq!(warnings[0]["partition"], partition, "{}", warnings[0]);
    assert_eq!(warnings[0]["offset"], 0, "{}", warnings[0]);
    assert!(
        warnings[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("not JSON")),
        "{}",
        warnings[0]
    );

    // Later garbage on the same partition (from another client, rskafka, with no headers) is
    // counted too but not logged again; what follows it is still read.
    let client = support::kafka_client(&bootstrap).await;
    let partition_client = client
        .partition_client(&topic, partition, UnknownTopicHandling::Retry)
        .await
        .unwrap();
    let record = |value: &[u8]| Record {
        key: Some(order_id.as_bytes().to_vec()),
        value: Some(value.to_vec()),
        headers: BTreeMap::new(),
        timestamp: rskafka::chrono::Utc::now(),
    };
    // A cancellation of the order in the seed's spelling (status "Cancelled"), after a record
    // whose `amount` is not money.
    let bad = format!(
        r#"{{"order_id": "{order_id}", "customer_name": "X", "product": "Y", "amount": "lots"}}"#
    );
    let cancel = format!(r#"{{"order_id": "{order_id}", "status": "Cancelled"}}"#);
    let offsets = tokio::time::timeout(
        Duration::from_secs(30),
        partition_client.produce(
            vec![record(bad.as_bytes()), record(cancel.as_bytes())],
            Compression::NoCompression,
        ),
    )
    .await
    .expect("produce timed out")
    .unwrap();
    assert_eq!(offsets, vec![3, 4]);

    let order = order_with_events(&server, &order_id, 2).await;
    assert_eq!(order["status"], "Cancelled", "{order}");
    assert_eq!(order["anomalies"], 0, "{order}");
    let kafka = get_ok(server.addr, "/api/kafka").await;
    let orders = skipped_on(&kafka);
    assert_eq!(orders[&i64::from(partition)], (3, 5), "{kafka}");
    assert_eq!(orders.values().map(|(s, _)| s).sum::<i64>(), 3, "{kafka}");
    // A second warning, if there were to be one, is logged before the consumer reads on: a
    // later order on the same partition, once applied, proves it would be in the log by now.
    let marker = std::iter::repeat_with(new_id)
        .find(|id| partition_for_key(id.as_bytes(), PARTITIONS) == partition)
        .unwrap();
    let marker_value = seed_order(&marker);
    tokio::time::timeout(
        Duration::from_secs(30),
        partition_client.produce(
            vec![Record {
                key: Some(marker.as_bytes().to_vec()),
                ..record(marker_value.as_bytes())
            }],
            Compression::NoCompression,
        ),
    )
    .await
    .expect("produce timed out")
    .unwrap();
    order_with_events(&server, &marker, 1).await;
    let warnings = skip_warnings(&topic);
    assert_eq!(warnings.len(), 1, "logged again: {warnings:?}");

    let stats = get_ok(server.addr, "/api/stats").await;
    assert_eq!(stats["orders"]["total"], 2, "{stats}");
    assert_eq!(stats["events"], 3, "{stats}");
    eprintln!("unreadable records test took {:?}", started.elapsed());
}

/// A producer written like the seed's: kafka-python, key = order id, value = json.dumps.
const PYTHON_PRODUCER: &str = r#"
import json, sys
from kafka import KafkaProducer

bootstrap, topic, order_id = sys.argv[1:4]
producer = KafkaProducer(
    bootstrap_servers=bootstrap,
    key_serializer=lambda k: k.encode("utf-8"),
    value_serializer=lambda v: json.dumps(v).encode("utf-8"),
    acks="all",
    request_timeout_ms=10000,
    max_block_ms=20000,
)
order = {
    "order_id": order_id,
    "customer_name": "Jean Dupont",
    "customer_email": "jean.dupont@example.com",
    "product": "Laptop",
    "amount": 999.99,
    "status": "Pending",
    "timestamp": "2024-01-29T10:30:15.123456",
    "address": "123 Rue de Paris, 75000 Paris",
}
sent = producer.send(topic, key=order_id, value=order).get(timeout=30)
producer.flush(timeout=30)
producer.close(timeout=10)
print(json.dumps({"partition": sent.partition, "offset": sent.offset}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_from_kafka_python_are_consumed_when_it_is_available() {
    let started = Instant::now();
    if !tokio::task::spawn_blocking(kafka_python_available)
        .await
        .unwrap()
    {
        eprintln!("NOTE: kafka-python unavailable; the Python producer case is skipped");
        return;
    }
    let bootstrap = support::bootstrap();
    let prefix = new_prefix("python");
    let server = TestApp::start(&bootstrap, &["--topic-prefix", &prefix]).await;
    server.wait_ready(READY).await;

    let order_id = new_id();
    let topic = format!("{prefix}orders");
    let output = {
        let (bootstrap, order_id) = (bootstrap.clone(), order_id.clone());
        tokio::task::spawn_blocking(move || {
            run_with_stdin(
                Command::new("python3").args([
                    "-c",
                    PYTHON_PRODUCER,
                    &bootstrap,
                    &topic,
                    &order_id,
                ]),
                b"",
                Duration::from_secs(90),
            )
        })
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("python producer: {e}"))
    };
    assert!(
        output.status.success(),
        "python producer failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let sent: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "python producer printed {:?}: {e}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    let expected_partition = partition_for_key(order_id.as_bytes(), PARTITIONS);
    assert_eq!(sent["partition"], expected_partition, "{sent}");

    let order = order_with_events(&server, &order_id, 1).await;
    assert_seed_order(&order, &order_id);
    assert_eq!(order["status"], "Pending", "{order}");
    assert_eq!(order["anomalies"], 0, "{order}");
    let entry = &order["timeline"][0];
    assert_eq!(entry["topic"], "orders", "{entry}");
    assert_eq!(entry["partition"], expected_partition, "{entry}");
    assert_eq!(entry["offset"], sent["offset"], "{entry}");
    let stats = get_ok(server.addr, "/api/stats").await;
    assert_eq!(stats["orders"]["by_status"]["Pending"], 1, "{stats}");
    eprintln!("kafka-python test took {:?}", started.elapsed());
}

/// `POST path` with `body`; the status and body, or a panic if the server did not answer.
async fn post(addr: SocketAddr, path: &str, body: Value) -> (u16, Value) {
    http::post(addr, path, &body).await.unwrap()
}

/// `POST path` with `body`, 201 expected.
async fn post_created(addr: SocketAddr, path: &str, body: Value) -> Value {
    let (status, answer) = post(addr, path, body).await;
    assert_eq!(status, 201, "POST {path}: {answer}");
    answer
}

/// Waits until `server` shows the order, with `status` when given, and returns it.
async fn wait_for_order(server: &impl Running, order_id: &str, status: Option<&str>) -> Value {
    let path = format!("/api/orders/{order_id}");
    eventually(
        &format!("order {order_id} ({status:?}) on {}", server.addr()),
        VISIBLE,
        || async {
            match http::get(server.addr(), &path).await? {
                (200, body) if status.is_none_or(|s| body["order"]["status"] == s) => {
                    Ok(body["order"].clone())
                }
                (code, body) => Err(format!("{code} {body}")),
            }
        },
    )
    .await
}

/// What two instances must agree on: the statistics (minus the per-minute series, which
/// depends on the clock) and the whole order list.
async fn shared_view(server: &impl Running) -> Result<Value, String> {
    let stats = match http::get(server.addr(), "/api/stats").await? {
        (200, stats) => stats,
        (status, body) => return Err(format!("stats: {status} {body}")),
    };
    let orders = match http::get(server.addr(), "/api/orders?limit=500").await? {
        (200, page) => page,
        (status, body) => return Err(format!("orders: {status} {body}")),
    };
    Ok(json!({
        "orders": stats["orders"],
        "payments": stats["payments"],
        "revenue": stats["revenue"],
        "events": stats["events"],
        "deliveries": stats["deliveries"],
        "anomalies": stats["anomalies"],
        // Each instance numbers the events it applies itself (`seq`): not shared.
        "list": orders["items"].as_array().map(|items| items.iter().map(|o| {
            let mut o = o.clone();
            o.as_object_mut().map(|m| m.remove("seq"));
            o
        }).collect::<Vec<_>>()),
        "more": orders["next_cursor"],
    }))
}

/// Waits until both instances have read `events` events and show the same state; returns it.
async fn converged(a: &impl Running, b: &impl Running, events: u64) -> Value {
    eventually("both instances agree", CONVERGE, || async {
        let (view_a, view_b) = (shared_view(a).await?, shared_view(b).await?);
        if view_a["events"] != events || view_b["events"] != events {
            return Err(format!(
                "events: A {} B {}, want {events}",
                view_a["events"], view_b["events"]
            ));
        }
        if view_a != view_b {
            return Err(format!("A and B differ:\nA {view_a}\nB {view_b}"));
        }
        Ok(view_a)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_the_same_topics_converge() {
    let started = Instant::now();
    let bootstrap = support::bootstrap();
    let prefix = new_prefix("twins");
    // Started together: both find the topics missing and race to create them.
    let a = TestApp::start(&bootstrap, &["--topic-prefix", &prefix]).await;
    let b = TestApp::start(&bootstrap, &["--topic-prefix", &prefix]).await;
    tokio::join!(a.wait_ready(READY), b.wait_ready(READY));
    assert_ne!(a.data_dir, b.data_dir);
    let servers = [&a, &b];

    // 20 orders through each.
    let mut orders: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    for (side, server) in servers.iter().enumerate() {
        for _ in 0..20 {
            let answer = post_created(server.addr, "/api/orders/create", json!({})).await;
            orders[side].push(answer["order"]["order_id"].as_str().unwrap().to_string());
        }
    }
    let mut events = 40;

    // Half of each side's orders paid through the OTHER instance (once it sees the order),
    // a quarter of each side's cancelled through the other one too.
    for side in 0..2 {
        let other = servers[1 - side];
        for order_id in &orders[side][..10] {
            wait_for_order(other, order_id, Some("Pending")).await;
            let paid = post_created(
                other.addr,
                &format!("/api/orders/{order_id}/payments"),
                json!({"method": "PayPal"}),
            )
            .await;
            // Demo customers are at example domains and PayPal has no limit: it succeeds.
            assert_eq!(paid["payment"]["status"], "SUCCESS", "{paid}");
            events += 1;
        }
        for order_id in &orders[side][10..15] {
            wait_for_order(other, order_id, Some("Pending")).await;
            post_created(
                other.addr,
                &format!("/api/orders/{order_id}/cancel"),
                json!({"reason": "changed my mind"}),
            )
            .await;
            events += 1;
        }
    }

    // Five paid orders per side shipped by the instance that took the order (once it sees
    // the other's payment), and two of those deliveries moved on by the other instance.
    for side in 0..2 {
        let (own, other) = (servers[side], servers[1 - side]);
        for (n, order_id) in orders[side][..5].iter().enumerate() {
            wait_for_order(own, order_id, Some("Paid")).await;
            let shipped = post_created(
                own.addr,
                &format!("/api/orders/{order_id}/deliveries"),
                json!({"carrier": "Chronopost"}),
            )
            .await;
            events += 1;
            if n < 2 {
                let delivery_id = shipped["delivery"]["delivery_id"].as_str().unwrap();
                wait_for_order(other, order_id, Some("Shipped")).await;
                let (status, answer) = http::request(
                    other.addr,
                    "PATCH",
                    &format!("/api/deliveries/{delivery_id}"),
                    Some(json!({"status": "In Transit"}).to_string()),
                )
                .await
                .unwrap();
                assert_eq!(status, 201, "PATCH delivery: {answer}");
                events += 1;
            }
        }
    }
    assert_eq!(events, 84);

    let view = converged(&a, &b, events).await;
    let by_status = &view["orders"]["by_status"];
    assert_eq!(view["orders"]["total"], 40, "{view}");
    assert_eq!(by_status["Pending"], 10, "{view}");
    assert_eq!(by_status["Paid"], 10, "{view}");
    assert_eq!(by_status["Shipped"], 6, "{view}");
    assert_eq!(by_status["In Transit"], 4, "{view}");
    assert_eq!(by_status["Cancelled"], 10, "{view}");
    assert_eq!(view["payments"]["succeeded"], 20, "{view}");
    assert_eq!(view["deliveries"]["total"], 10, "{view}");
    assert_eq!(view["anomalies"], 0, "{view}");
    assert_eq!(view["list"].as_array().unwrap().len(), 40, "{view}");
    eprintln!(
        "two instances converged on 84 events after {:?}",
        started.elapsed()
    );

    // Races: a cancel through A and a payment through B, at the same time, for Pending orders
    // both instances see. Both may be accepted; the log then holds both, and both instances
    // must settle on the same status and the same anomaly count (the loser is flagged).
    let mut races = Vec::new();
    for _ in 0..3 {
        let answer = post_created(a.addr, "/api/orders/create", json!({})).await;
        let order_id = answer["order"]["order_id"].as_str().unwrap().to_string();
        wait_for_order(&b, &order_id, Some("Pending")).await;
        events += 1;
        races.push(order_id);
    }
    for order_id in &races {
        let (cancel_path, pay_path) = (
            format!("/api/orders/{order_id}/cancel"),
            format!("/api/orders/{order_id}/payments"),
        );
        let (cancelled, paid) = tokio::join!(
            post(a.addr, &cancel_path, json!({})),
            post(b.addr, &pay_path, json!({"method": "PayPal"})),
        );
        let accepted = [&cancelled, &paid]
            .iter()
            .filter(|(status, answer)| {
                assert!(
                    [201, 409].contains(status),
                    "race on {order_id}: {status} {answer}"
                );
                *status == 201
            })
            .count();
        assert!(accepted >= 1, "race on {order_id}: neither was accepted");
        events += accepted as u64;

        let final_a = eventually("race settled", CONVERGE, || async {
            let (on_a, on_b) = (
                get_ok(a.addr, &format!("/api/orders/{order_id}")).await["order"].clone(),
                get_ok(b.addr, &format!("/api/orders/{order_id}")).await["order"].clone(),
            );
            let entries = |o: &Value| o["timeline"].as_array().unwrap().len();
            if entries(&on_a) != 1 + accepted || entries(&on_b) != 1 + accepted {
                return Err(format!("timelines: A {on_a} B {on_b}"));
            }
            Ok((on_a, on_b))
        })
        .await;
        let (on_a, on_b) = final_a;
        assert_eq!(on_a["status"], on_b["status"], "A {on_a}\nB {on_b}");
        assert_eq!(on_a["anomalies"], on_b["anomalies"], "A {on_a}\nB {on_b}");
        assert_eq!(on_a["timeline"], on_b["timeline"], "A {on_a}\nB {on_b}");
        assert_eq!(on_a["anomalies"], accepted - 1, "{on_a}");
        assert!(
            on_a["status"] == "Cancelled" || on_a["status"] == "Paid",
            "{on_a}"
        );
        eprintln!(
            "race on {order_id}: cancel {} / pay {} -> {} with {} anomaly",
            cancelled.0, paid.0, on_a["status"], on_a["anomalies"]
        );
    }
    let view = converged(&a, &b, events).await;
    assert_eq!(view["orders"]["total"], 43, "{view}");
    eprintln!("two instances test took {:?}", started.elapsed());
}
