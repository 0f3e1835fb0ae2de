//! `GET /metrics` of a real shopstream against the real broker, after orders, a payment and a
//! WebSocket client: the families, their types and labels, counters and histograms that move
//! with the traffic, and the whole exposition checked by Prometheus's own
//! `promtool check metrics` (built and cached by `compose/promtool`; `compose/test` passes it
//! in `PROMTOOL`). Without promtool the check says why and is skipped, except in CI
//! (`CI` set), where it fails.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use support::{TestApp, http};

async fn start() -> TestApp {
    let prefix = format!("{}.", support::unique_name("metrics"));
    let app = TestApp::start(&support::bootstrap(), &["--topic-prefix", &prefix]).await;
    app.wait_ready(Duration::from_secs(60)).await;
    app
}

fn order_body(name: &str) -> Value {
    json!({
        "customer_name": name,
        "customer_email": "claire.martin@example.com",
        "product": "Desk lamp",
        "amount": "49.90",
        "address": "8 Rue des Lilas, 69003 Lyon",
    })
}

async fn post(app: &TestApp, path: &str, body: &Value) -> http::Reply {
    http::send(
        app.addr,
        "POST",
        path,
        &[("content-type", "application/json")],
        body.to_string(),
    )
    .await
}

/// One scrape in the classic text format: its content type and text.
async fn scrape(app: &TestApp) -> (String, String) {
    let reply = http::send(app.addr, "GET", "/metrics", &[], "").await;
    assert_eq!(reply.status, 200);
    let content_type = reply.headers["content-type"].to_str().unwrap().to_string();
    (content_type, String::from_utf8(reply.raw.to_vec()).unwrap())
}

/// An exposition read back: every sample by `name{labels}` as written, and each family's
/// HELP and TYPE.
#[derive(Debug, Default)]
struct Exposition {
    samples: BTreeMap<String, f64>,
    help: BTreeSet<String>,
    types: BTreeMap<String, String>,
}

impl Exposition {
    fn parse(text: &str) -> Self {
        let mut parsed = Self::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                parsed
                    .help
                    .insert(rest.split(' ').next().unwrap().to_string());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                parsed.types.insert(name.to_string(), kind.to_string());
            } else if !line.is_empty() && !line.starts_with('#') {
                let (series, value) = line.rsplit_once(' ').unwrap();
                let value = match value {
                    "+Inf" => f64::INFINITY,
                    v => v
                        .parse()
                        .unwrap_or_else(|_| panic!("bad value in {line:?}")),
                };
                parsed.samples.insert(series.to_string(), value);
            }
        }
        parsed
    }

    fn get(&self, series: &str) -> f64 {
        *self
            .samples
            .get(series)
            .unwrap_or_else(|| panic!("no sample {series}"))
    }

    /// The sum of a family's samples whose labels contain every one of `labels`.
    fn sum(&self, name: &str, labels: &[&str]) -> f64 {
        self.samples
            .iter()
            .filter(|(series, _)| {
                let (n, rest) = series.split_once('{').unwrap_or((series, ""));
                n == name && labels.iter().all(|l| rest.contains(l))
            })
            .map(|(_, v)| v)
            .sum()
    }
}

/// The families shopstream exports and their types (process families included: the tests
/// run where `/proc` is).
const FAMILIES: &[(&str, &str)] = &[
    ("shopstream_build_info", "gauge"),
    ("shopstream_kafka_ready", "gauge"),
    ("shopstream_caught_up", "gauge"),
    ("shopstream_live_clients", "gauge"),
    ("shopstream_kafka_nodelay_sockets_total", "counter"),
    ("shopstream_consumer_next_offset", "gauge"),
    ("shopstream_kafka_log_end_offset", "gauge"),
    ("shopstream_kafka_last_stable_offset", "gauge"),
    ("shopstream_consumer_lag_records", "gauge"),
    ("shopstream_consumer_lag_seconds", "gauge"),
    ("shopstream_partition_stalled", "gauge"),
    ("shopstream_records_skipped_total", "counter"),
    ("shopstream_batches_unreadable_total", "counter"),
    ("shopstream_records_aborted_total", "counter"),
    ("shopstream_offset_resets_total", "counter"),
    ("shopstream_events_total", "counter"),
    ("shopstream_read_model_orders", "gauge"),
    ("shopstream_read_model_deliveries", "gauge"),
    ("shopstream_orders", "gauge"),
    ("shopstream_payments_total", "counter"),
    ("shopstream_anomalies_total", "counter"),
    ("shopstream_store_bytes", "gauge"),
    ("shopstream_memory_ceiling_bytes", "gauge"),
    ("shopstream_memory_trims_total", "counter"),
    ("shopstream_http_request_duration_seconds", "histogram"),
    ("shopstream_kafka_produce_duration_seconds", "histogram"),
    ("shopstream_kafka_produce_failures_total", "counter"),
    ("shopstream_store_commit_duration_seconds", "histogram"),
    ("shopstream_live_delivery_duration_seconds", "histogram"),
    ("process_cpu_seconds_total", "counter"),
    ("process_resident_memory_bytes", "gauge"),
    ("process_virtual_memory_bytes", "gauge"),
    ("process_start_time_seconds", "gauge"),
    ("process_open_fds", "gauge"),
    ("process_max_fds", "gauge"),
];

/// Where promtool is: `PROMTOOL`, or where compose/promtool caches it. `Err` says why not.
fn promtool() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("PROMTOOL") {
        return Ok(PathBuf::from(path));
    }
    let cache = std::env::var_os("SHOPSTREAM_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("shopstream")))
        .or_else(|| std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".cache/shopstream")))
        .ok_or("neither PROMTOOL nor a cache directory is set")?;
    let cached = cache.join("promtool-v0.316.0/promtool");
    if cached.is_file() {
        Ok(cached)
    } else {
        Err(format!(
            "PROMTOOL is not set and {} does not exist: run compose/promtool (compose/test does)",
            cached.display()
        ))
    }
}

/// `promtool check metrics` on `text`: its verdict and what it printed.
fn promtool_check(promtool: &PathBuf, text: &str) -> (bool, String) {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", promtool.display()));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), said)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_after_real_traffic_has_every_family_moving_counters_and_passes_promtool() {
    let app = start().await;

    // A dashboard: a WebSocket client that will receive every event.
    let stream = TcpStream::connect(app.addr).await.unwrap();
    let (mut ws, response) =
        tokio_tungstenite::client_async(format!("ws://{}/ws", app.addr), stream)
            .await
            .expect("WebSocket handshake");
    assert_eq!(response.status(), 101);

    // Two orders, one paid, both read back; one order that does not exist.
    let mut ids = Vec::new();
    for name in ["Claire Martin", "Hugo Laurent"] {
        let placed = post(&app, "/api/orders?wait=true", &order_body(name)).await;
        assert_eq!(placed.status, 201, "{}", placed.json);
        ids.push(
            placed.json["order"]["order_id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let paid = post(
        &app,
        &format!("/api/orders/{}/payments?wait=true", ids[0]),
        &json!({"method": "Credit Card"}),
    )
    .await;
    assert_eq!(paid.status, 201, "{}", paid.json);
    for id in &ids {
        let (status, _) = http::get(app.addr, &format!("/api/orders/{id}"))
            .await
            .unwrap();
        assert_eq!(status, 200);
    }
    let (status, _) = http::get(app.addr, "/api/orders/no-such-order")
        .await
        .unwrap();
    assert_eq!(status, 404);

    // The three events reach the client.
    let mut events = 0;
    while events < 3 {
        let message = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("a live frame within 20 s")
            .expect("the stream stays open")
            .expect("a readable frame");
        if let Message::Text(text) = message {
            let frame: Value = serde_json::from_str(text.as_str()).unwrap();
            if frame["type"] == "event" {
                events += 1;
            }
        }
    }

    // A frame counts once its write is flushed, which may end just after the client read it.
    let mut scrapes = 0;
    let (content_type, text) = loop {
        let (content_type, text) = scrape(&app).await;
        scrapes += 1;
        let delivered =
            Exposition::parse(&text).sum("shopstream_live_delivery_duration_seconds_count", &[]);
        if delivered >= 3.0 || scrapes == 100 {
            break (content_type, text);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let first = Exposition::parse(&text);

    // Every family: HELP and TYPE, of the right type; `_total` on counters only.
    for (name, kind) in FAMILIES {
        assert_eq!(
            first.types.get(*name).map(String::as_str),
            Some(*kind),
            "{name}:\n{text}"
        );
    }
    for (name, kind) in &first.types {
        assert!(first.help.contains(name), "{name} has no HELP");
        assert_eq!(
            name.ends_with("_total"),
            kind == "counter",
            "{name}: {kind}"
        );
    }
    assert!(
        !text.contains("uptime"),
        "uptime is process_start_time_seconds now"
    );

    // The read model's figures.
    assert!(first.get("shopstream_events_total") >= 3.0);
    assert_eq!(first.get("shopstream_read_model_orders"), 2.0);
    assert_eq!(first.sum("shopstream_orders", &[]), 2.0);
    assert_eq!(first.sum("shopstream_payments_total", &[]), 1.0);
    assert_eq!(first.get("shopstream_kafka_ready"), 1.0);
    assert_eq!(first.get("shopstream_caught_up"), 1.0);
    assert_eq!(first.get("shopstream_live_clients"), 1.0);
    assert!(first.get("shopstream_store_bytes") > 0.0);
    // Freed memory goes back to the system above 7/4 of the default 64 MiB cache (glibc
    // builds; musl's allocator returns it itself and no ceiling is watched).
    let ceiling = if cfg!(target_env = "gnu") {
        112.0 * 1024.0 * 1024.0
    } else {
        0.0
    };
    assert_eq!(first.get("shopstream_memory_ceiling_bytes"), ceiling);

    // Per partition: position, log end and lag, nothing behind once the writes were read.
    let partition = "{topic=\"orders\",partition=\"0\"}";
    for family in [
        "shopstream_consumer_next_offset",
        "shopstream_kafka_log_end_offset",
        "shopstream_consumer_lag_records",
        "shopstream_consumer_lag_seconds",
        "shopstream_records_skipped_total",
    ] {
        first.get(&format!("{family}{partition}"));
    }
    let orders_end = first.sum("shopstream_kafka_log_end_offset", &["topic=\"orders\""]);
    let orders_read = first.sum("shopstream_consumer_next_offset", &["topic=\"orders\""]);
    assert_eq!((orders_end, orders_read), (2.0, 2.0), "two order records");
    assert_eq!(first.sum("shopstream_consumer_lag_records", &[]), 0.0);

    // Requests by method, route template and status: ids never become labels.
    let requests = "shopstream_http_request_duration_seconds_count";
    assert_eq!(
        first.get(&format!(
            "{requests}{{method=\"POST\",route=\"/api/orders\",status=\"201\"}}"
        )),
        2.0
    );
    assert_eq!(
        first.get(&format!(
            "{requests}{{method=\"POST\",route=\"/api/orders/{{id}}/payments\",status=\"201\"}}"
        )),
        1.0
    );
    assert_eq!(
        first.get(&format!(
            "{requests}{{method=\"GET\",route=\"/api/orders/{{id}}\",status=\"200\"}}"
        )),
        2.0
    );
    assert_eq!(
        first.get(&format!(
            "{requests}{{method=\"GET\",route=\"/api/orders/{{id}}\",status=\"404\"}}"
        )),
        1.0
    );
    assert_eq!(
        first.get(&format!(
            "{requests}{{method=\"GET\",route=\"/ws\",status=\"101\"}}"
        )),
        1.0
    );
    for id in &ids {
        assert!(!text.contains(id.as_str()), "an order id became a label");
    }
    assert!(!text.contains("no-such-order"));

    // The other histograms saw the traffic.
    assert!(first.get("shopstream_kafka_produce_duration_seconds_count{topic=\"orders\"}") >= 1.0);
    assert!(
        first.get("shopstream_kafka_produce_duration_seconds_count{topic=\"payments\"}") >= 1.0
    );
    assert_eq!(
        first.sum("shopstream_kafka_produce_failures_total", &[]),
        0.0
    );
    assert!(first.get("shopstream_store_commit_duration_seconds_count") >= 1.0);
    assert!(
        first.get("shopstream_live_delivery_duration_seconds_count") >= 3.0,
        "three frames written to the client"
    );

    // The process, read from /proc.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let started = first.get("process_start_time_seconds");
    assert!(
        started <= now && started > now - 3600.0,
        "{started} vs {now}"
    );
    assert!(first.get("process_resident_memory_bytes") > 1e6);
    assert!(first.get("process_open_fds") >= 3.0);
    assert!(first.get("process_cpu_seconds_total") > 0.0);

    // Another order: the counters and histograms move.
    let placed = post(&app, "/api/orders?wait=true", &order_body("Léa Petit")).await;
    assert_eq!(placed.status, 201);
    let (_, text) = scrape(&app).await;
    let second = Exposition::parse(&text);
    assert!(second.get("shopstream_events_total") > first.get("shopstream_events_total"));
    assert_eq!(
        second.get(&format!(
            "{requests}{{method=\"POST\",route=\"/api/orders\",status=\"201\"}}"
        )),
        3.0
    );
    assert_eq!(
        second.get(&format!(
            "{requests}{{method=\"GET\",route=\"/metrics\",status=\"200\"}}"
        )),
        f64::from(scrapes),
        "the earlier scrapes count once answered"
    );
    assert!(
        second.get("shopstream_kafka_produce_duration_seconds_count{topic=\"orders\"}")
            > first.get("shopstream_kafka_produce_duration_seconds_count{topic=\"orders\"}")
    );
    assert_eq!(second.get("shopstream_read_model_orders"), 3.0);

    // OpenMetrics for a scraper that asks for it.
    let open = http::send(
        app.addr,
        "GET",
        "/metrics",
        &[(
            "accept",
            "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4",
        )],
        "",
    )
    .await;
    assert!(
        open.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text; version=1.0.0")
    );
    let open = String::from_utf8(open.raw.to_vec()).unwrap();
    assert!(open.ends_with("# EOF\n"));
    assert!(open.contains("# TYPE shopstream_events counter\n"));

    // Prometheus's own check of the classic exposition.
    match promtool() {
        Ok(promtool) => {
            let (passed, said) = promtool_check(&promtool, &text);
            assert!(
                passed && said.trim().is_empty(),
                "promtool check metrics refused the exposition:\n{said}\n---\n{text}"
            );
        }
        Err(why) if std::env::var_os("CI").is_some() => {
            panic!("CI must check /metrics with promtool: {why}")
        }
        Err(why) => eprintln!("SKIPPED the promtool check: {why}"),
    }
}
