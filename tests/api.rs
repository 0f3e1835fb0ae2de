//! The REST API end to end on the real broker: writes land in Kafka, come back through the
//! consumers and show in the read model; bad input gets a 4xx naming the problem.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::http::{Reply, send};
use support::{TestApp, http};

/// The content type every JSON body is sent with.
const JSON: &[(&str, &str)] = &[("content-type", "application/json")];

async fn start() -> TestApp {
    let prefix = format!("{}.", support::unique_name("api"));
    let server = TestApp::start(&support::bootstrap(), &["--topic-prefix", &prefix]).await;
    server.wait_ready(Duration::from_secs(60)).await;
    server
}

fn order_body() -> Value {
    json!({
        "customer_name": "Jean Dupont",
        "customer_email": "jean.dupont@example.com",
        "product": "Laptop",
        "quantity": 2,
        "amount": "1999.98",
        "currency": "EUR",
        "address": "123 Rue de Paris, 75000 Paris",
    })
}

async fn post(server: &TestApp, path: &str, body: &Value, headers: &[(&str, &str)]) -> Reply {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    send(server.addr, "POST", path, &all, body.to_string()).await
}

/// Polls `GET path` until it answers 200 with a body `done` accepts (bounded).
async fn eventually(server: &TestApp, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    support::eventually(path, Duration::from_secs(15), || async {
        let (status, body) = http::get(server.addr, path).await?;
        if status == 200 && done(&body) {
            Ok(body)
        } else {
            Err(format!("{status}: {body}"))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_goes_through_its_whole_lifecycle() {
    let server = start().await;
    let created = post(&server, "/api/orders", &order_body(), &[]).await;
    assert_eq!(created.status, 201, "{}", created.json);
    let order = &created.json["order"];
    let order_id = order["order_id"].as_str().unwrap().to_string();
    assert_eq!(order["status"], "Pending");
    // Money stays exact: a number with its two decimals, as written.
    let text = String::from_utf8_lossy(&created.raw);
    assert!(text.contains(r#""amount":1999.98,"#), "{text}");
    assert_eq!(order["event_type"], "order.created");
    assert_eq!(created.json["kafka"]["topic"], "orders");
    // Kafka's default partitioner placed it, as a Java client would.
    let expected = shopstream::domain::partitioner::partition_for_key(order_id.as_bytes(), 3);
    assert_eq!(created.json["kafka"]["partition"], expected);

    let paid = post(
        &server,
        &format!("/api/orders/{order_id}/payments"),
        &json!({"method": "Credit Card"}),
        &[],
    )
    .await;
    assert_eq!(paid.status, 201, "{}", paid.json);
    assert_eq!(paid.json["payment"]["status"], "SUCCESS");

    // Illegal moves are refused with 409 and a reason.
    let cancel = post(
        &server,
        &format!("/api/orders/{order_id}/cancel"),
        &json!({}),
        &[],
    )
    .await;
    assert_eq!(cancel.status, 409);
    assert_eq!(cancel.json["error"]["code"], "illegal_transition");
    assert!(
        cancel.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Paid")
    );

    let shipped = post(
        &server,
        &format!("/api/orders/{order_id}/deliveries?wait=true"),
        &json!({"carrier": "DHL"}),
        &[],
    )
    .await;
    assert_eq!(shipped.status, 201, "{}", shipped.json);
    let delivery_id = shipped.json["delivery"]["delivery_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(shipped.json["delivery"]["status"], "Shipped");
    assert!(shipped.json["delivery"]["estimated_date"].is_string());

    for status in ["In Transit", "Out for Delivery", "Delivered"] {
        let moved = send(
            server.addr,
            "PATCH",
            &format!("/api/deliveries/{delivery_id}?wait=true"),
            JSON,
            json!({ "status": status }).to_string(),
        )
        .await;
        assert_eq!(moved.status, 201, "{}", moved.json);
    }
    let backwards = send(
        server.addr,
        "PATCH",
        &format!("/api/deliveries/{delivery_id}"),
        JSON,
        r#"{"status":"In Transit"}"#,
    )
    .await;
    assert_eq!(backwards.status, 409, "{}", backwards.json);

    let detail = eventually(&server, &format!("/api/orders/{order_id}"), |b| {
        b["order"]["status"] == "Delivered"
    })
    .await;
    let timeline = detail["order"]["timeline"].as_array().unwrap();
    let types: Vec<&str> = timeline
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "order.created",
            "payment.processed",
            "delivery.created",
            "delivery.updated",
            "delivery.updated",
            "delivery.updated"
        ]
    );
    for entry in timeline {
        assert!(
            entry["topic"].is_string()
                && entry["partition"].is_number()
                && entry["offset"].is_number()
        );
        assert!(entry["time"].is_string());
        assert_eq!(entry["anomaly"], Value::Null);
    }
    assert_eq!(detail["order"]["payments"].as_array().unwrap().len(), 1);

    let stats = eventually(&server, "/api/stats", |s| {
        s["orders"]["by_status"]["Delivered"] == 1
    })
    .await;
    assert_eq!(stats["revenue"][0]["amount"], json!(1999.98));
    let raw = send(server.addr, "GET", "/api/stats", &[], "").await.raw;
    let text = String::from_utf8_lossy(&raw);
    assert!(
        text.contains(r#""revenue":[{"currency":"EUR","amount":1999.98}]"#),
        "{text}"
    );
    assert_eq!(stats["payments"]["success_ratio"], json!(1.0));
    let per_minute = stats["orders_per_minute"].as_array().unwrap();
    assert_eq!(per_minute.len(), 60);
    assert_eq!(
        per_minute
            .iter()
            .map(|m| m["orders"].as_u64().unwrap())
            .sum::<u64>(),
        1
    );

    // The rules the dashboard takes from the server: a delivered order takes no command.
    let (status, rules) = http::get(server.addr, "/api/rules").await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(rules["actions"]["Delivered"], json!([]));
    assert_eq!(rules["actions"]["Pending"], json!(["pay", "cancel"]));
    assert_eq!(rules["next_delivery_status"]["Shipped"], "In Transit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_failures_follow_the_documented_gateway_rules_and_may_be_retried() {
    let server = start().await;
    let mut body = order_body();
    body["customer_email"] = json!("someone@decline.test");
    let created = post(&server, "/api/orders", &body, &[]).await;
    let order_id = created.json["order"]["order_id"]
        .as_str()
        .unwrap()
        .to_string();
    let declined = post(
        &server,
        &format!("/api/orders/{order_id}/payments"),
        &json!({"method": "PayPal"}),
        &[],
    )
    .await;
    assert_eq!(declined.status, 201);
    assert_eq!(declined.json["payment"]["status"], "FAILED");
    assert_eq!(declined.json["payment"]["failure_reason"], "card_declined");

    // A wrong amount fails too; the seed's route with order_id in the body works.
    let created = post(&server, "/api/orders", &order_body(), &[]).await;
    let order_id = created.json["order"]["order_id"]
        .as_str()
        .unwrap()
        .to_string();
    let mismatch = post(
        &server,
        "/api/payments",
        &json!({"order_id": order_id, "method": "Bank Transfer", "amount": "1.00"}),
        &[],
    )
    .await;
    assert_eq!(
        mismatch.json["payment"]["failure_reason"], "amount_mismatch",
        "{}",
        mismatch.json
    );
    let retried = post(
        &server,
        "/api/payments",
        &json!({"order_id": order_id, "method": "Bank Transfer", "amount": 1999.98}),
        &[],
    )
    .await;
    assert_eq!(
        retried.json["payment"]["status"], "SUCCESS",
        "{}",
        retried.json
    );
    // The seed's delivery route.
    let shipped = post(
        &server,
        "/api/deliveries",
        &json!({"order_id": order_id}),
        &[],
    )
    .await;
    assert_eq!(shipped.status, 201, "{}", shipped.json);

    let payments = eventually(&server, "/api/payments?status=failed", |p| {
        p["items"].as_array().unwrap().len() == 2
    })
    .await;
    assert!(
        payments["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["status"] == "FAILED")
    );
    assert_eq!(
        payments["status"], "FAILED",
        "the filter comes back in the server's spelling"
    );
    eventually(&server, "/api/deliveries", |d| {
        d["items"].as_array().unwrap().len() == 1
    })
    .await;
    let stats = eventually(&server, "/api/stats", |s| s["payments"]["failed"] == 2).await;
    assert_eq!(
        stats["payments"]["success_ratio"].as_f64().unwrap(),
        1.0 / 3.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_4xx_that_names_the_problem() {
    let server = start().await;
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"customer_email": "a@example.com", "product": "P", "amount": "5", "address": "x"}),
            "customer_name",
        ),
        (
            json!({"customer_name": "A", "customer_email": "not-an-email", "product": "P", "amount": "5", "address": "x"}),
            "customer_email",
        ),
        (
            json!({"customer_name": "A", "customer_email": "a@example.com", "product": "P", "amount": "0", "address": "x"}),
            "amount",
        ),
        (
            json!({"customer_name": "A", "customer_email": "a@example.com", "product": "P", "amount": "1.005", "address": "x"}),
            "amount",
        ),
        (
            json!({"customer_name": "A", "customer_email": "a@example.com", "product": "P", "amount": 5, "quantity": 1001, "address": "x"}),
            "quantity",
        ),
        (
            json!({"customer_name": "A", "customer_email": "a@example.com", "product": 7, "amount": 5, "address": "x"}),
            "product",
        ),
        (
            json!({"customer_name": "A".repeat(101), "customer_email": "a@example.com", "product": "P", "amount": 5, "address": "x"}),
            "customer_name",
        ),
        (
            json!({"customer_name": "A", "customer_email": "a@example.com", "product": "P", "amount": 5, "address": "x", "coupon": "FREE"}),
            "coupon",
        ),
    ];
    for (body, field) in cases {
        let reply = post(&server, "/api/orders", &body, &[]).await;
        assert_eq!(reply.status, 422, "{body} → {}", reply.json);
        assert_eq!(reply.json["error"]["code"], "validation_failed");
        let fields: Vec<&str> = reply.json["error"]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["field"].as_str().unwrap())
            .collect();
        assert!(
            fields.contains(&field),
            "{body}: {fields:?} should name {field}"
        );
        assert!(
            reply.json["error"]["message"]
                .as_str()
                .unwrap()
                .contains(field)
        );
    }

    let not_json = send(server.addr, "POST", "/api/orders", JSON, "{not json").await;
    assert_eq!(
        (not_json.status, not_json.json["error"]["code"].as_str()),
        (400, Some("invalid_json"))
    );
    let huge = send(
        server.addr,
        "POST",
        "/api/orders",
        JSON,
        vec![b' '; 65 * 1024],
    )
    .await;
    assert_eq!(
        (huge.status, huge.json["error"]["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    let missing = post(
        &server,
        "/api/orders/no-such-order/payments",
        &json!({"method": "PayPal"}),
        &[],
    )
    .await;
    assert_eq!(missing.status, 404);
    let bad_method = post(
        &server,
        "/api/orders/x/payments",
        &json!({"method": "Bitcoin"}),
        &[],
    )
    .await;
    assert_eq!(
        (
            bad_method.status,
            bad_method.json["error"]["field"].as_str()
        ),
        (422, Some("method"))
    );
    let bad_limit = http::get(server.addr, "/api/orders?limit=501")
        .await
        .unwrap();
    assert_eq!(bad_limit.0, 400);
    assert!(
        bad_limit.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limit")
    );
    let bad_status = http::get(server.addr, "/api/orders?status=Lost")
        .await
        .unwrap();
    assert_eq!(bad_status.0, 400);
    let bad_cursor = http::get(server.addr, "/api/orders?cursor=garbage")
        .await
        .unwrap();
    assert_eq!(bad_cursor.0, 400);
    let bad_wait = post(&server, "/api/orders?wait=maybe", &order_body(), &[]).await;
    assert_eq!(bad_wait.status, 400);
    let unknown_delivery = send(
        server.addr,
        "PATCH",
        "/api/deliveries/nope",
        JSON,
        r#"{"status":"Delivered"}"#,
    )
    .await;
    assert_eq!(unknown_delivery.status, 404);
    // A body nested far deeper than any order, with a key (its fingerprint walks the body):
    // refused before anything walks it, and the server goes on.
    let deep = "[".repeat(30_000) + &"]".repeat(30_000);
    let nested = send(
        server.addr,
        "POST",
        "/api/orders",
        &[
            ("content-type", "application/json"),
            ("idempotency-key", "deep-1"),
        ],
        deep,
    )
    .await;
    assert_eq!(nested.status, 400, "{}", nested.json);
    assert_eq!(nested.json["error"]["code"], "invalid_json");
    assert!(
        nested.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("128 levels"),
        "{}",
        nested.json
    );
    let bad_key = post(
        &server,
        "/api/orders",
        &order_body(),
        &[("idempotency-key", "has space")],
    )
    .await;
    assert_eq!(bad_key.status, 400);
    // No order was written by any of these.
    let (_, stats) = http::get(server.addr, "/api/stats").await.unwrap();
    assert_eq!(stats["orders"]["total"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_give_the_same_answer_and_no_second_event() {
    let server = start().await;
    let key = [("idempotency-key", "order-42-attempt")];
    let first = post(&server, "/api/orders", &order_body(), &key).await;
    assert_eq!(first.status, 201);
    let again = post(&server, "/api/orders", &order_body(), &key).await;
    assert_eq!(again.status, 201);
    assert_eq!(again.json, first.json, "the same answer");
    assert_eq!(again.headers.get("idempotent-replayed").unwrap(), "true");

    let mut other = order_body();
    other["quantity"] = json!(3);
    let reused = post(&server, "/api/orders", &other, &key).await;
    assert_eq!(reused.status, 422);
    assert_eq!(reused.json["error"]["code"], "idempotency_key_reused");

    // A key on a payment: retried, still one payment.
    let order_id = first.json["order"]["order_id"].as_str().unwrap();
    let pay_key = [("idempotency-key", "pay-1")];
    let path = format!("/api/orders/{order_id}/payments");
    let p1 = post(&server, &path, &json!({"method": "PayPal"}), &pay_key).await;
    let p2 = post(&server, &path, &json!({"method": "PayPal"}), &pay_key).await;
    assert_eq!((p1.status, p2.status), (201, 201));
    assert_eq!(p1.json, p2.json);

    let detail = eventually(&server, &format!("/api/orders/{order_id}"), |b| {
        b["order"]["status"] == "Paid"
    })
    .await;
    assert_eq!(
        detail["order"]["timeline"].as_array().unwrap().len(),
        2,
        "{detail}"
    );
    let (_, list) = http::get(server.addr, "/api/orders").await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let (_, kafka) = http::get(server.addr, "/api/kafka").await.unwrap();
    let written: i64 = kafka["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["latest_offset"].as_i64().unwrap())
        .sum();
    assert_eq!(
        written, 2,
        "one order record and one payment record in Kafka: {kafka}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_are_newest_first_with_filters_and_cursor_paging() {
    let server = start().await;
    let mut ids = Vec::new();
    for i in 0..12 {
        let mut body = order_body();
        body["customer_name"] = json!(if i % 3 == 0 {
            format!("Zoé {i}")
        } else {
            format!("Ann {i}")
        });
        let reply = post(&server, "/api/orders?wait=true", &body, &[]).await;
        assert_eq!(reply.status, 201);
        ids.push(
            reply.json["order"]["order_id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let generated = post(&server, "/api/orders/create?wait=true", &json!({}), &[]).await;
    assert_eq!(generated.status, 201, "{}", generated.json);
    assert!(
        generated.json["order"]["customer_name"]
            .as_str()
            .unwrap()
            .len()
            > 3
    );
    ids.push(
        generated.json["order"]["order_id"]
            .as_str()
            .unwrap()
            .to_string(),
    );

    let seen = support::all_order_ids(server.addr, 5).await;
    ids.reverse();
    assert_eq!(seen, ids, "newest first, every order once");

    let (_, found) = http::get(server.addr, "/api/orders?q=zo%C3%A9")
        .await
        .unwrap();
    assert_eq!(found["items"].as_array().unwrap().len(), 4);
    let (_, pending) = http::get(server.addr, "/api/orders?status=pending&limit=500")
        .await
        .unwrap();
    assert_eq!(pending["items"].as_array().unwrap().len(), 13);
    assert_eq!(pending["status"], "Pending");
    let (_, paid) = http::get(server.addr, "/api/orders?status=Paid")
        .await
        .unwrap();
    assert!(paid["items"].as_array().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_view_shows_offsets_and_lag_per_partition() {
    let server = start().await;
    for _ in 0..3 {
        assert_eq!(
            post(&server, "/api/orders/create?wait=true", &json!({}), &[])
                .await
                .status,
            201
        );
    }
    let (status, kafka) = http::get(server.addr, "/api/kafka").await.unwrap();
    assert_eq!(status, 200);
    let partitions = kafka["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 9);
    let orders: Vec<&Value> = partitions
        .iter()
        .filter(|p| p["topic"] == "orders")
        .collect();
    assert_eq!(
        orders
            .iter()
            .map(|p| p["latest_offset"].as_i64().unwrap())
            .sum::<i64>(),
        3
    );
    for p in partitions {
        assert_eq!(p["lag"], 0, "{p}");
        assert_eq!(p["next_offset"], p["latest_offset"]);
        assert_eq!(p["earliest_offset"], 0);
        assert_eq!(p["skipped"], 0);
        assert!(p["lag_seconds"].is_number());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_browser_reads_records_from_kafka_by_offset_and_time() {
    let server = start().await;
    let mut ids = Vec::new();
    for _ in 0..6 {
        let reply = post(&server, "/api/orders/create", &json!({}), &[]).await;
        ids.push((
            reply.json["kafka"]["partition"].as_i64().unwrap(),
            reply.json["kafka"]["offset"].as_i64().unwrap(),
            reply.json["order"]["order_id"]
                .as_str()
                .unwrap()
                .to_string(),
        ));
    }
    let (partition, offset, order_id) = ids.last().unwrap().clone();
    let (status, page) = http::get(
        server.addr,
        &format!("/api/events?topic=orders&partition={partition}&offset={offset}&limit=1"),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{page}");
    let record = &page["records"][0];
    assert_eq!(record["offset"], offset);
    assert_eq!(record["key"], order_id.as_str());
    assert_eq!(record["event_type"], "order.created");
    assert_eq!(record["headers"]["event-type"], "order.created");
    assert_eq!(record["headers"]["content-type"], "application/json");
    assert_eq!(record["data"]["order_id"], order_id.as_str());
    assert_eq!(page["next_offset"], offset + 1);

    // Seek by time: from the epoch, the partition's first record.
    let (_, from_epoch) = http::get(
        server.addr,
        &format!("/api/events?topic=orders&partition={partition}&time=1970-01-01T00:00:00Z"),
    )
    .await
    .unwrap();
    assert_eq!(from_epoch["records"][0]["offset"], 0);
    // From the future: nothing.
    let (_, future) = http::get(
        server.addr,
        &format!("/api/events?topic=orders&partition={partition}&time=2999-01-01T00:00:00Z"),
    )
    .await
    .unwrap();
    assert!(future["records"].as_array().unwrap().is_empty(), "{future}");

    for bad in [
        "/api/events?topic=shipments",
        "/api/events?topic=orders&partition=9",
        "/api/events?topic=orders&offset=-1",
        "/api/events?topic=orders&time=yesterday",
        "/api/events?topic=orders&limit=0",
        // Kafka's timestamps start in 1970: a 400, not a broker error reported as a 503.
        "/api/events?topic=orders&time=0001-01-01T00:00:00Z",
    ] {
        let (status, body) = http::get(server.addr, bad).await.unwrap();
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_query");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_drives_whole_lifecycles_through_the_api_path() {
    let server = start().await;
    let (status, state) = http::get(server.addr, "/api/simulator").await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(state["running"], false);
    let bad = post(&server, "/api/simulator", &json!({"rate": 1000}), &[]).await;
    assert_eq!(
        (bad.status, bad.json["error"]["field"].as_str()),
        (422, Some("rate"))
    );

    let started = post(
        &server,
        "/api/simulator",
        &json!({"running": true, "rate": 50, "payment_failure_rate": 0.5}),
        &[],
    )
    .await;
    assert_eq!(started.status, 200, "{}", started.json);
    assert_eq!(started.json["running"], true);
    // Orders, payments (some failing) and deliveries all appear in the read model.
    let stats = eventually(&server, "/api/stats", |s| {
        s["orders"]["total"].as_u64().unwrap() >= 20
            && s["payments"]["failed"].as_u64().unwrap() >= 1
            && s["payments"]["succeeded"].as_u64().unwrap() >= 1
            && s["deliveries"]["total"].as_u64().unwrap() >= 1
    })
    .await;
    assert_eq!(stats["anomalies"], 0, "{stats}");
    let stopped = post(&server, "/api/simulator", &json!({"running": false}), &[]).await;
    assert_eq!(stopped.json["running"], false);
    assert_eq!(stopped.json["errors"], 0, "{}", stopped.json);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_expose_readiness_positions_and_orders_per_status() {
    let server = start().await;
    post(&server, "/api/orders/create?wait=true", &json!({}), &[]).await;
    let reply = send(server.addr, "GET", "/metrics", &[], "").await;
    assert_eq!(reply.status, 200);
    assert!(
        reply.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = String::from_utf8(reply.raw.to_vec()).unwrap();
    for line in [
        "shopstream_kafka_ready 1",
        "shopstream_orders{status=\"Pending\"} 1",
        "# TYPE shopstream_records_skipped_total counter",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
    assert!(text.contains("shopstream_consumer_next_offset{topic=\"orders\",partition=\"0\"}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_is_served_from_the_binary_with_validators_and_compression() {
    let server = start().await;
    let page = send(server.addr, "GET", "/", &[("accept-encoding", "gzip")], "").await;
    assert_eq!(page.status, 200);
    assert!(
        page.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let etag = page.headers["etag"].to_str().unwrap().to_string();
    let again = send(server.addr, "GET", "/", &[("if-none-match", &etag)], "").await;
    assert_eq!(again.status, 304);
    // A client-side route loads the same page; an unknown file is a 404; /api stays JSON.
    let route = send(server.addr, "GET", "/orders/some-id", &[], "").await;
    assert_eq!(
        (route.status, route.headers["etag"].to_str().unwrap()),
        (200, etag.as_str())
    );
    assert_eq!(
        send(server.addr, "GET", "/no-such-file.js", &[], "")
            .await
            .status,
        404
    );
    let api = send(server.addr, "GET", "/api/nothing", &[], "").await;
    assert_eq!(
        (api.status, api.json["error"]["code"].as_str()),
        (404, Some("not_found"))
    );

    // Every text asset of some size goes out gzipped to a browser that accepts it, and
    // decompresses to the file as it is in static/.
    let root = support::repo_root().join("static");
    let mut checked = 0;
    for entry in walk(&root) {
        let name = entry.to_string_lossy().to_string();
        let bytes = std::fs::read(&entry).unwrap();
        if bytes.len() < 2048
            || !(name.ends_with(".js") || name.ends_with(".css") || name.ends_with(".html"))
        {
            continue;
        }
        let path = format!("/{}", entry.strip_prefix(&root).unwrap().to_string_lossy());
        let reply = send(
            server.addr,
            "GET",
            &path,
            &[("accept-encoding", "br, gzip")],
            "",
        )
        .await;
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.headers["content-encoding"], "gzip", "{path}");
        let mut plain = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(&reply.raw[..]),
            &mut plain,
        )
        .unwrap();
        assert_eq!(plain, bytes, "{path}");
        let identity = send(server.addr, "GET", &path, &[], "").await;
        assert!(identity.headers.get("content-encoding").is_none());
        assert_eq!(identity.raw.to_vec(), bytes);
        checked += 1;
    }
    assert!(checked > 0, "no text asset over 2 KiB to check");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
