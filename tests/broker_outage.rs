//! What shopstream does when its broker goes away and comes back. Uses a broker of its own,
//! since stopping the shared one would disturb the other tests.

mod support;

use std::time::{Duration, Instant};

use support::{PrivateBroker, TestApp, http};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_503_promptly_when_the_broker_stops_and_200_when_it_returns() {
    let broker = PrivateBroker::start("outage");
    let prefix = format!("{}.", support::unique_name("outage"));
    let server = TestApp::start(&broker.bootstrap, &["--topic-prefix", &prefix]).await;
    server.wait_ready(Duration::from_secs(60)).await;

    broker.stop();
    let stopped_at = Instant::now();
    let body = loop {
        // Each request is bounded by http::REQUEST_DEADLINE: a hanging /readyz fails here.
        let (status, body) = http::get(server.addr, "/readyz")
            .await
            .expect("/readyz hung");
        if status == 503 {
            break body;
        }
        assert_eq!(status, 200);
        assert!(
            stopped_at.elapsed() < Duration::from_secs(10),
            "/readyz still 200 ten seconds after the broker stopped"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["error"]["code"], "kafka_unavailable");
    // Everyone may ask /readyz: it says what is wrong, never where the broker lives.
    assert!(
        !body.to_string().contains(&broker.port.to_string()),
        "{body}"
    );
    // Liveness is not readiness: the process still answers.
    assert_eq!(http::get(server.addr, "/healthz").await.unwrap().0, 200);

    // The broker returns on the same address: shopstream recovers by itself.
    broker.restart();
    server.wait_ready(Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_answer_503_promptly_while_the_broker_is_away_and_work_again_after() {
    let broker = PrivateBroker::start("outage-writes");
    let prefix = format!("{}.", support::unique_name("outage-writes"));
    let server = TestApp::start(&broker.bootstrap, &["--topic-prefix", &prefix]).await;
    server.wait_ready(Duration::from_secs(60)).await;
    let (status, _) = http::post(
        server.addr,
        "/api/orders/create?wait=true",
        &serde_json::json!({}),
    )
    .await
    .unwrap();
    assert_eq!(status, 201);

    broker.stop();
    // Every write in the next seconds answers, 503 with a JSON error, within 10 seconds.
    for _ in 0..3 {
        let sent = Instant::now();
        let (status, body) = http::post(server.addr, "/api/orders/create", &serde_json::json!({}))
            .await
            .expect("a write hung while the broker was away");
        assert_eq!(status, 503, "{body}");
        assert!(
            body["error"]["code"]
                .as_str()
                .unwrap()
                .starts_with("kafka_"),
            "{body}"
        );
        assert!(
            sent.elapsed() < Duration::from_secs(10),
            "took {:?}",
            sent.elapsed()
        );
        // The client is told what is wrong, not where the broker lives.
        assert!(
            !body.to_string().contains(&broker.port.to_string()),
            "{body}"
        );
    }

    broker.restart();
    server.wait_ready(Duration::from_secs(60)).await;
    writes_resume(server.addr).await;
    // Both orders, the one before and the one after the outage, are there.
    let (_, stats) = http::get(server.addr, "/api/stats").await.unwrap();
    assert_eq!(stats["orders"]["total"], 2, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_broker_connection_has_tcp_nodelay_also_after_the_broker_restarts() {
    // In-process: the sockets checked are this process's own, read back with getsockopt.
    let broker = PrivateBroker::start("nodelay");
    let prefix = format!("{}.", support::unique_name("nodelay"));
    let server = TestApp::start(&broker.bootstrap, &["--topic-prefix", &prefix]).await;
    server.wait_ready(Duration::from_secs(60)).await;
    let (status, _) = http::post(
        server.addr,
        "/api/orders/create?wait=true",
        &serde_json::json!({}),
    )
    .await
    .unwrap();
    assert_eq!(status, 201);
    let all_nodelay = |what: &'static str| async move {
        support::eventually(what, Duration::from_secs(30), || async {
            let connections = shopstream::kafka::nodelay::connections_to(broker.port);
            let without: Vec<_> = connections.iter().filter(|(_, on)| !on).collect();
            if !connections.is_empty() && without.is_empty() {
                Ok(connections.len())
            } else {
                Err(format!(
                    "{} connections, without TCP_NODELAY: {without:?}",
                    connections.len()
                ))
            }
        })
        .await
    };
    let before = all_nodelay("every broker connection has TCP_NODELAY").await;
    assert!(
        before >= 2,
        "producer, consumers and the raw fetches connect: {before}"
    );

    broker.stop();
    broker.restart();
    server.wait_ready(Duration::from_secs(60)).await;
    writes_resume(server.addr).await;
    // The connections rskafka and the fetches opened again have it too.
    all_nodelay("every connection opened after the restart has TCP_NODELAY").await;
}

/// Waits (bounded) until an order is placed and read back again after an outage.
async fn writes_resume(addr: std::net::SocketAddr) {
    support::eventually("writes resume", Duration::from_secs(30), || async {
        let (status, body) =
            http::post(addr, "/api/orders/create?wait=true", &serde_json::json!({})).await?;
        if status == 201 {
            Ok(())
        } else {
            Err(format!("{status} {body}"))
        }
    })
    .await;
}
