//! shopstream against the real broker: topics, health, readiness, routing, shutdown. The binary
//! runs as a child process where the process itself is what is checked (SIGTERM and its exit
//! status, flags refused, a busy address); the rest runs in-process ([`TestApp`]).

mod support;

use std::time::Duration;

use support::{Server, TestApp, http, logs};

#[tokio::test]
async fn starts_creates_its_topics_and_becomes_ready() {
    // A child process: how the binary ends on SIGTERM (its exit status, its last log line) is
    // part of what is checked.
    let bootstrap = support::bootstrap();
    let prefix = format!("{}.", support::unique_name("start"));
    let mut server = Server::start(
        &bootstrap,
        &["--topic-prefix", &prefix, "--partitions", "4"],
    );
    server.wait_ready(Duration::from_secs(60)).await;

    let (status, body) = http::get(server.addr, "/readyz").await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ready");
    let reported: Vec<(String, i64)> = body["kafka"]["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["partitions"].as_i64().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, i64)> = ["orders", "payments", "deliveries"]
        .iter()
        .map(|base| (format!("{prefix}{base}"), 4))
        .collect();
    assert_eq!(reported, expected);

    // The broker itself has them, with the configured partition count.
    let client = support::kafka_client(&bootstrap).await;
    let topics = client.list_topics().await.unwrap();
    for (name, partitions) in &expected {
        let topic = topics
            .iter()
            .find(|t| &t.name == name)
            .unwrap_or_else(|| panic!("topic {name} missing on the broker"));
        assert_eq!(topic.partitions.len() as i64, *partitions, "{name}");
    }

    let (status, body) = http::get(server.addr, "/healthz").await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");

    let status = server.terminate(Duration::from_secs(15));
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(server.logs().contains("\"stopped\""), "{}", server.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_finds_existing_topics_and_keeps_their_partition_count() {
    let bootstrap = support::bootstrap();
    let prefix = format!("{}.", support::unique_name("existing"));
    let first = TestApp::start(
        &bootstrap,
        &["--topic-prefix", &prefix, "--partitions", "2"],
    )
    .await;
    first.wait_ready(Duration::from_secs(60)).await;
    // Asked for 5, but the topics exist with 2: the broker's layout wins, and says so.
    let second = TestApp::start(
        &bootstrap,
        &["--topic-prefix", &prefix, "--partitions", "5"],
    )
    .await;
    second.wait_ready(Duration::from_secs(60)).await;
    let (_, body) = http::get(second.addr, "/readyz").await.unwrap();
    for topic in body["kafka"]["topics"].as_array().unwrap() {
        assert_eq!(topic["partitions"], 2, "{topic}");
    }
    let warnings = logs::lines(|line| {
        line["message"]
            .as_str()
            .is_some_and(|m| m.contains("another partition count"))
            && line["topic"]
                .as_str()
                .is_some_and(|t| t.starts_with(&prefix))
    });
    assert_eq!(warnings.len(), 3, "one per topic: {warnings:?}");
    assert!(
        warnings
            .iter()
            .all(|w| w["partitions"] == 2 && w["configured"] == 5)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_methods_get_json_errors() {
    // Routing needs no broker: point at a port where nothing listens.
    let nowhere = format!("127.0.0.1:{}", support::free_port());
    let server = TestApp::start(&nowhere, &[]).await;
    // Under /api an unknown path is a JSON 404 (elsewhere the dashboard's routes answer).
    let (status, body) = http::get(server.addr, "/api/no/such/page").await.unwrap();
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/api/no/such/page")
    );

    let (status, body) = http::post(server.addr, "/healthz", &serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(status, 405);
    assert_eq!(body["error"]["code"], "method_not_allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_broker_it_is_alive_but_not_ready_and_says_why() {
    let nowhere = format!("127.0.0.1:{}", support::free_port());
    let server = TestApp::start(&nowhere, &["--kafka-timeout", "1s"]).await;
    let (status, _) = http::get(server.addr, "/healthz").await.unwrap();
    assert_eq!(status, 200);
    let (status, body) = http::get(server.addr, "/readyz").await.unwrap();
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "kafka_unavailable");
    assert!(!body["error"]["message"].as_str().unwrap().is_empty());
}

#[test]
fn bad_flags_are_refused_before_anything_starts() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_shopstream"))
        .args(["--partitions", "zero"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--partitions"));

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_shopstream"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("shopstream {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn a_busy_listen_address_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_shopstream"))
        .args(["--listen", &addr, "--kafka", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot listen on") && stderr.contains(&addr),
        "{stderr}"
    );
}
