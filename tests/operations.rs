//! What operators follow shopstream by: one access-log line per request with its route
//! template, status, duration, request id and trace id; the request id echoed back; the W3C
//! trace context carried from the HTTP request into the Kafka record it wrote.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::TestApp;
use support::http::send;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_logged_once_and_its_trace_reaches_the_record() {
    // Its log is what this test reads: the in-process capture, by this test's request ids.
    let prefix = format!("{}.", support::unique_name("ops"));
    let server = TestApp::start(&support::bootstrap(), &["--topic-prefix", &prefix]).await;
    server.wait_ready(Duration::from_secs(60)).await;
    let order = json!({
        "customer_name": "Margaret Hamilton",
        "customer_email": "margaret@example.com",
        "product": "Apollo guidance computer",
        "amount": "42.00",
        "address": "MIT, Cambridge",
    });
    let placed = send(
        server.addr,
        "POST",
        "/api/orders?wait=true",
        &[
            ("content-type", "application/json"),
            ("x-request-id", "checkout-7f3a"),
            ("traceparent", TRACEPARENT),
        ],
        order.to_string(),
    )
    .await;
    assert_eq!(placed.status, 201, "{}", placed.json);
    assert_eq!(placed.headers["x-request-id"], "checkout-7f3a");
    let order_id = placed.json["order"]["order_id"]
        .as_str()
        .unwrap()
        .to_string();
    let detail = send(
        server.addr,
        "GET",
        &format!("/api/orders/{order_id}"),
        &[],
        "",
    )
    .await;
    assert_eq!(detail.status, 200);
    let made_up = detail.headers["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(
        made_up.len(),
        16,
        "a request without an id gets one: {made_up}"
    );

    // The record carries the caller's trace id under a span of shopstream's own.
    let position = &placed.json["kafka"];
    let path = format!(
        "/api/events?topic=orders&partition={}&offset={}&limit=1",
        position["partition"], position["offset"]
    );
    let browsed = send(server.addr, "GET", &path, &[], "").await;
    assert_eq!(browsed.status, 200, "{}", browsed.json);
    let headers = &browsed.json["records"][0]["headers"];
    let traceparent = headers["traceparent"]
        .as_str()
        .unwrap_or_else(|| panic!("{headers}"));
    assert!(
        traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{traceparent}"
    );
    assert!(
        !traceparent.contains("00f067aa0ba902b7"),
        "a span of its own: {traceparent}"
    );
    assert!(
        traceparent.ends_with("-01"),
        "the sampled flag is kept: {traceparent}"
    );

    // The consumer that applied the event says so under the same trace, with the span the
    // record carries as its parent.
    let record_span = traceparent.split('-').nth(2).unwrap().to_string();
    let applied = support::eventually(
        "the consumer's trace line",
        Duration::from_secs(10),
        || async {
            let lines = support::logs::lines(|l| {
                l["target"] == "shopstream::trace"
                    && l["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
            });
            lines
                .into_iter()
                .next()
                .ok_or_else(|| "no line yet".to_string())
        },
    )
    .await;
    assert_eq!(applied["message"], "event applied", "{applied}");
    assert_eq!(applied["parent_span_id"], record_span.as_str(), "{applied}");
    assert_eq!(applied["offset"], position["offset"], "{applied}");
    assert_eq!(applied["partition"], position["partition"], "{applied}");
    assert!(applied["since_written_ms"].as_i64().is_some(), "{applied}");

    // One access line per request, with the route's template, never the id.
    let lines = support::eventually("the access lines", Duration::from_secs(10), || async {
        let lines: Vec<Value> = support::logs::lines(|l| {
            l["target"] == "shopstream::access"
                && (l["request_id"] == "checkout-7f3a" || l["request_id"] == made_up.as_str())
        });
        let done = lines.iter().any(|l| l["route"] == "/api/orders/{id}");
        if done {
            Ok(lines)
        } else {
            Err(format!("{} lines", lines.len()))
        }
    })
    .await;
    let post: Vec<&Value> = lines
        .iter()
        .filter(|l| l["request_id"] == "checkout-7f3a")
        .collect();
    assert_eq!(post.len(), 1, "{post:?}");
    assert_eq!(post[0]["method"], "POST");
    assert_eq!(post[0]["route"], "/api/orders");
    assert_eq!(post[0]["status"], 201);
    assert_eq!(post[0]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(post[0]["duration_ms"].as_f64().is_some_and(|ms| ms >= 0.0));
    let get = lines
        .iter()
        .find(|l| l["route"] == "/api/orders/{id}")
        .unwrap();
    assert_eq!(get["request_id"], made_up.as_str());
    assert!(
        !get.to_string().contains(&order_id),
        "the template, not the id: {get}"
    );
}
