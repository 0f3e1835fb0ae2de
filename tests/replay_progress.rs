//! Long work is not silent: while shopstream replays a long log at start, `/readyz` shows the
//! records done out of those to go with a rate and an estimate of the time left, a startup
//! probe (`/readyz?caught_up=true`) answers 503 `catching_up` until the replay is over, and the
//! log reports the progress at a steady interval (`--progress-interval`).

mod support;

use std::time::{Duration, Instant};

use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::record::Record;
use serde_json::Value;
use support::TestApp;
use support::http;

/// Orders written before shopstream starts: enough for a replay of a few seconds in a debug
/// build (a few thousand events a second).
const ORDERS: usize = 12_000;
const PARTITIONS: i32 = 3;
/// Records per produce call: small batches, so that each fetch brings a part of the log.
const BATCH: usize = 200;

fn order(id: &str, n: usize) -> String {
    format!(
        r#"{{"order_id": "{id}", "customer_name": "Grace Hopper", "customer_email": "grace{n}@example.com", "product": "Compiler", "amount": 19.99, "status": "Pending", "timestamp": "2025-03-01T10:00:00Z", "address": "1 Navy Yard, Arlington"}}"#
    )
}

/// Creates the three topics of `prefix` and writes [`ORDERS`] orders to its `orders` topic.
async fn fill_log(bootstrap: &str, prefix: &str) {
    let client = support::kafka_client(bootstrap).await;
    let controller = client.controller_client().unwrap();
    for role in ["orders", "payments", "deliveries"] {
        tokio::time::timeout(
            Duration::from_secs(30),
            controller.create_topic(format!("{prefix}{role}"), PARTITIONS, 1, 10_000),
        )
        .await
        .expect("create topic timed out")
        .unwrap();
    }
    let topic = format!("{prefix}orders");
    let mut writers = tokio::task::JoinSet::new();
    for partition in 0..PARTITIONS {
        let partition_client = tokio::time::timeout(
            Duration::from_secs(30),
            client.partition_client(topic.as_str(), partition, UnknownTopicHandling::Retry),
        )
        .await
        .expect("partition client timed out")
        .unwrap();
        writers.spawn(async move {
            let share = ORDERS / PARTITIONS as usize;
            let mut written = 0;
            while written < share {
                let batch: Vec<Record> = (written..(written + BATCH).min(share))
                    .map(|n| {
                        let id = format!("p{partition}-{n}");
                        Record {
                            key: Some(id.clone().into_bytes()),
                            value: Some(order(&id, n).into_bytes()),
                            headers: Default::default(),
                            timestamp: rskafka::chrono::Utc::now(),
                        }
                    })
                    .collect();
                let n = batch.len();
                tokio::time::timeout(
                    Duration::from_secs(30),
                    partition_client.produce(batch, Compression::NoCompression),
                )
                .await
                .expect("produce timed out")
                .unwrap();
                written += n;
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replay_at_start_shows_its_progress_in_readyz_and_the_log() {
    let bootstrap = support::bootstrap();
    let prefix = format!("{}.", support::unique_name("progress"));
    fill_log(&bootstrap, &prefix).await;

    let server = TestApp::start(
        &bootstrap,
        &[
            "--topic-prefix",
            &prefix,
            "--progress-interval",
            "250ms",
            "--group-commit-interval",
            "off",
        ],
    )
    .await;
    // Every answer of /readyz until the replay is over (bounded; polled, never slept on).
    let started = Instant::now();
    let mut midway: Vec<Value> = Vec::new();
    let mut startup_probe_refused: Option<Value> = None;
    let last = loop {
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "not caught up after 240 s"
        );
        if let Ok((200, body)) = http::get(server.addr, "/readyz").await {
            if body["caught_up"] == true {
                break body;
            }
            let replay = &body["replay"];
            let done = replay["records_done"].as_u64().unwrap_or(0);
            if done > 0 && replay["total_known"] == true {
                midway.push(replay.clone());
                if startup_probe_refused.is_none()
                    && let Ok((503, probe)) = http::get(server.addr, "/readyz?caught_up=true").await
                    && probe["status"] == "catching_up"
                {
                    startup_probe_refused = Some(probe);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = started.elapsed();
    eprintln!(
        "replay of {ORDERS} orders took {took:?}; {} samples",
        midway.len()
    );

    // Seen midway: done out of the total, a rate, an estimate, and a partition count.
    let partway: Vec<&Value> = midway
        .iter()
        .filter(|r| r["records_done"].as_u64().unwrap() < ORDERS as u64)
        .collect();
    assert!(
        !partway.is_empty(),
        "no /readyz answer showed the replay under way ({took:?}): {midway:?}"
    );
    for replay in &partway {
        assert_eq!(replay["records_total"], ORDERS as u64, "{replay}");
        let percent = replay["percent"].as_f64().unwrap();
        assert!((0.0..100.0).contains(&percent), "{replay}");
        assert!(
            replay["records_per_second"].as_f64().unwrap() > 0.0,
            "{replay}"
        );
        assert!(replay["eta_seconds"].is_u64(), "{replay}");
        assert_eq!(replay["partitions"], 9, "{replay}");
        assert!(replay["partitions_done"].as_u64().unwrap() < 9, "{replay}");
    }
    let done: Vec<u64> = midway
        .iter()
        .map(|r| r["records_done"].as_u64().unwrap())
        .collect();
    assert!(done.windows(2).all(|w| w[0] <= w[1]), "{done:?}");

    // A startup probe waits for the end of the replay, and says how far it is.
    let refused = startup_probe_refused.expect("the startup probe was never refused midway");
    assert_eq!(refused["error"]["code"], "catching_up", "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("catching up with the log: "),
        "{refused}"
    );
    assert_eq!(refused["replay"]["records_total"], ORDERS as u64);
    let (status, probe) = http::get(server.addr, "/readyz?caught_up=true")
        .await
        .unwrap();
    assert_eq!(status, 200, "{probe}");
    let (status, _) = http::get(server.addr, "/readyz?caught_up=maybe")
        .await
        .unwrap();
    assert_eq!(status, 400);

    // Over: everything done, nothing left.
    let replay = &last["replay"];
    assert_eq!(replay["records_done"], ORDERS as u64, "{last}");
    assert_eq!(replay["records_total"], ORDERS as u64, "{last}");
    assert_eq!(replay["percent"], 100.0, "{last}");
    assert_eq!(replay["eta_seconds"], 0, "{last}");
    assert_eq!(replay["partitions_done"], 9, "{last}");

    // /api/kafka says where it began and how much it read.
    let (status, kafka) = http::get(server.addr, "/api/kafka").await.unwrap();
    assert_eq!(status, 200, "{kafka}");
    assert_eq!(kafka["start"]["from"], "earliest offsets", "{kafka}");
    assert_eq!(kafka["start"]["replayed_records"], ORDERS as u64, "{kafka}");

    // The log told the same story at a steady interval (the only replay of this test binary).
    let progress = support::logs::lines(|l| l["message"] == "catching up with the log");
    assert!(
        !progress.is_empty(),
        "no progress line in the log of a {took:?} replay"
    );
    for line in &progress {
        assert_eq!(line["level"], "INFO", "{line}");
        assert_eq!(line["target"], "shopstream::progress", "{line}");
        assert_eq!(line["records_total"], ORDERS as u64, "{line}");
        assert!(
            line["records_done"].as_u64().unwrap() < ORDERS as u64,
            "{line}"
        );
        assert!(line["percent"].is_f64(), "{line}");
    }
}
