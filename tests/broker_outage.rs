//! What shopstream does when its broker goes away and comes back. Uses a broker of its own,
//! since stopping the shared one would disturb the other tests.

mod support;

use std::time::{Duration, Instant};

use support::{PrivateBroker, Server, http};

#[tokio::test]
async fn readyz_turns_503_promptly_when_the_broker_stops_and_200_when_it_returns() {
    let broker = PrivateBroker::start("outage");
    let prefix = format!("{}.", support::unique_name("outage"));
    let server = Server::start(&broker.bootstrap, &["--topic-prefix", &prefix]);
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
    // Liveness is not readiness: the process still answers.
    assert_eq!(http::get(server.addr, "/healthz").await.unwrap().0, 200);

    // The broker returns on the same address: shopstream recovers by itself.
    broker.restart();
    server.wait_ready(Duration::from_secs(60)).await;
}
