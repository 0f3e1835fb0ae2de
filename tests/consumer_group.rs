//! Kafka's own tools see shopstream: the consumed offsets are committed to the instance's
//! consumer group (`--consumer-group`) while it runs and once more when it stops, and Apache
//! Kafka's `kafka-consumer-groups.sh` (`ConsumerGroupCommand --describe`) shows the same
//! positions as `/api/kafka`, and the lag of records written after it stopped.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::record::Record;
use support::TestApp;
use support::http;

/// `kafka-consumer-groups.sh` is this class of Kafka's tools jar.
const CONSUMER_GROUP_COMMAND: &str = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand";

/// One row of `--describe`: current offset, log end offset, lag (`-` is `None`).
type Row = (Option<i64>, Option<i64>, Option<i64>);

/// `kafka-consumer-groups.sh --describe --group GROUP`: its rows by (topic, partition).
async fn describe(bootstrap: &str, group: &str) -> BTreeMap<(String, i32), Row> {
    let args = [
        "--bootstrap-server".to_string(),
        bootstrap.to_string(),
        "--describe".to_string(),
        "--group".to_string(),
        group.to_string(),
    ];
    let output = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        support::kafka_tool(CONSUMER_GROUP_COMMAND, &args)
    })
    .await
    .unwrap();
    let number = |s: &str| s.parse::<i64>().ok();
    let mut rows = BTreeMap::new();
    let mut columns: Option<Vec<String>> = None;
    for line in output.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"GROUP") {
            columns = Some(words.iter().map(|w| w.to_string()).collect());
            continue;
        }
        let Some(columns) = &columns else { continue };
        if words.len() < 6 || words[0] != group {
            continue;
        }
        let at = |name: &str| columns.iter().position(|c| c == name).unwrap();
        rows.insert(
            (
                words[at("TOPIC")].to_string(),
                words[at("PARTITION")].parse().unwrap(),
            ),
            (
                number(words[at("CURRENT-OFFSET")]),
                number(words[at("LOG-END-OFFSET")]),
                number(words[at("LAG")]),
            ),
        );
    }
    rows
}

/// shopstream's own view: next offset and latest offset by (topic, partition).
async fn positions(app: &TestApp) -> BTreeMap<(String, i32), (i64, i64)> {
    let (status, kafka) = http::get(app.addr, "/api/kafka").await.unwrap();
    assert_eq!(status, 200, "{kafka}");
    kafka["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                (
                    p["topic_name"].as_str().unwrap().to_string(),
                    p["partition"].as_i64().unwrap() as i32,
                ),
                (
                    p["next_offset"].as_i64().unwrap(),
                    p["latest_offset"].as_i64().unwrap(),
                ),
            )
        })
        .collect()
}

/// Places `n` generated orders and waits until the read model shows each.
async fn place_orders(app: &TestApp, n: usize) {
    for _ in 0..n {
        let (status, body) = http::request(app.addr, "POST", "/api/orders/create?wait=true", None)
            .await
            .unwrap();
        assert_eq!(status, 201, "{body}");
    }
}

/// The rows match shopstream's positions: every partition, current offset = next offset.
fn matches(
    rows: &BTreeMap<(String, i32), Row>,
    positions: &BTreeMap<(String, i32), (i64, i64)>,
) -> Result<(), String> {
    for (key, (next, _)) in positions {
        match rows.get(key) {
            Some((Some(current), _, _)) if current == next => {}
            other => {
                return Err(format!(
                    "{key:?}: the group shows {other:?}, shopstream {next}"
                ));
            }
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafkas_consumer_group_tool_shows_shopstreams_offsets_and_lag() {
    let bootstrap = support::bootstrap();
    let prefix = format!("{}.", support::unique_name("group"));
    let group = support::unique_name("shopstream-group");

    // Running: committed every 500 ms while positions move.
    let app = TestApp::start(
        &bootstrap,
        &[
            "--topic-prefix",
            &prefix,
            "--consumer-group",
            &group,
            "--group-commit-interval",
            "500ms",
        ],
    )
    .await;
    app.wait_ready(Duration::from_secs(60)).await;
    place_orders(&app, 4).await;
    let running = positions(&app).await;
    assert_eq!(running.len(), 9, "{running:?}");
    assert_eq!(
        running.values().map(|(next, _)| next).sum::<i64>(),
        4,
        "{running:?}"
    );
    let rows = support::eventually(
        "the group shows the running shopstream's offsets",
        Duration::from_secs(120),
        || async {
            let rows = describe(&bootstrap, &group).await;
            matches(&rows, &running).map(|()| rows)
        },
    )
    .await;
    for (key, (_, end, lag)) in &rows {
        assert_eq!((*end, *lag), (Some(running[key].1), Some(0)), "{key:?}");
    }
    let data_dir = app.stop(Duration::from_secs(10)).await;

    // Stopping commits a last time: with an hour between rounds, only the commit at the start
    // and the one at shutdown happen, and the orders placed between show only through the
    // second.
    let app = TestApp::start_with_data_dir(
        &bootstrap,
        &[
            "--topic-prefix",
            &prefix,
            "--consumer-group",
            &group,
            "--group-commit-interval",
            "1h",
        ],
        data_dir,
    )
    .await;
    app.wait_ready(Duration::from_secs(60)).await;
    place_orders(&app, 3).await;
    let stopped = positions(&app).await;
    assert_eq!(stopped.values().map(|(next, _)| next).sum::<i64>(), 7);
    drop(app.stop(Duration::from_secs(10)).await);

    // Records written while shopstream is away are its lag.
    let (orders, partition) = (format!("{prefix}orders"), 1);
    let client = support::kafka_client(&bootstrap).await;
    let partition_client = client
        .partition_client(orders.as_str(), partition, UnknownTopicHandling::Retry)
        .await
        .unwrap();
    let record = Record {
        key: Some(b"not-read-yet".to_vec()),
        value: Some(b"{}".to_vec()),
        headers: Default::default(),
        timestamp: rskafka::chrono::Utc::now(),
    };
    tokio::time::timeout(
        Duration::from_secs(30),
        partition_client.produce(vec![record.clone(), record], Compression::NoCompression),
    )
    .await
    .expect("produce timed out")
    .unwrap();

    let rows = describe(&bootstrap, &group).await;
    matches(&rows, &stopped).unwrap_or_else(|e| panic!("after shutdown: {e}; {rows:?}"));
    for (key, (_, end, lag)) in &rows {
        let (next, latest) = stopped[key];
        let written_since = if *key == (orders.clone(), partition) {
            2
        } else {
            0
        };
        assert_eq!(
            (*end, *lag),
            (
                Some(latest + written_since),
                Some(latest + written_since - next)
            ),
            "{key:?}: {rows:?}"
        );
    }
}
