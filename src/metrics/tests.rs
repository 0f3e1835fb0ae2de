use std::collections::BTreeMap;
use std::time::Duration;

use hyper::Method;

use super::*;

fn metrics() -> Metrics {
    Metrics::new(
        ["/api/orders", "/api/orders/{id}", "(file)", "(none)"],
        ProduceMetrics::default(),
        duration_histogram(),
    )
}

fn snapshot() -> Snapshot {
    let mut by_status = BTreeMap::new();
    by_status.insert(OrderStatus::Pending, 2);
    by_status.insert(OrderStatus::Paid, 1);
    Snapshot {
        kafka_ready: true,
        caught_up: true,
        live_clients: 1,
        nodelay_sockets: 4,
        partitions: vec![PartitionSnapshot {
            topic: "orders",
            partition: 0,
            next_offset: 7,
            log_end: Some(9),
            last_stable: Some(9),
            lag_records: Some(2),
            lag_seconds: Some(1.5),
            skipped: 1,
            unreadable: 0,
            aborted: 3,
            resets: 0,
            stalled: false,
        }],
        counters: Some(Counters {
            by_status,
            payments_succeeded: 1,
            payments_failed: 1,
            orders: 3,
            deliveries: 0,
            events: 5,
            ..Counters::default()
        }),
        store_bytes: 4096,
        memory_ceiling_bytes: 112 << 20,
        memory_trims: 3,
        process: Some(ProcessStats {
            cpu_seconds: 0.25,
            resident_memory_bytes: 1 << 20,
            virtual_memory_bytes: 1 << 24,
            start_time_seconds: Some(1_700_000_000.5),
            open_fds: Some(12),
            max_fds: Some(1024),
        }),
    }
}

/// The `# TYPE` of every family in a classic text exposition.
fn types(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, kind) = l.split_once(' ').unwrap();
            (name.to_string(), kind.to_string())
        })
        .collect()
}

#[test]
fn every_family_has_help_and_a_type_and_only_counters_end_in_total() {
    let m = metrics();
    m.requests
        .observe(&Method::GET, "/api/orders", 200, Duration::from_millis(3));
    let text = m.render(snapshot(), Format::Text);
    let types = types(&text);
    for (name, kind) in &types {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("# HELP {name} "))),
            "{name} has no HELP:\n{text}"
        );
        assert_eq!(
            name.ends_with("_total"),
            kind == "counter",
            "{name} is a {kind}"
        );
        assert!(
            ["counter", "gauge", "histogram"].contains(&kind.as_str()),
            "{name}: {kind}"
        );
    }
    let expected = [
        ("shopstream_events_total", "counter"),
        ("shopstream_anomalies_total", "counter"),
        ("shopstream_payments_total", "counter"),
        ("shopstream_records_skipped_total", "counter"),
        ("shopstream_batches_unreadable_total", "counter"),
        ("shopstream_records_aborted_total", "counter"),
        ("shopstream_offset_resets_total", "counter"),
        ("shopstream_kafka_nodelay_sockets_total", "counter"),
        ("shopstream_kafka_ready", "gauge"),
        ("shopstream_caught_up", "gauge"),
        ("shopstream_live_clients", "gauge"),
        ("shopstream_orders", "gauge"),
        ("shopstream_read_model_orders", "gauge"),
        ("shopstream_read_model_deliveries", "gauge"),
        ("shopstream_store_bytes", "gauge"),
        ("shopstream_memory_ceiling_bytes", "gauge"),
        ("shopstream_memory_trims_total", "counter"),
        ("shopstream_consumer_next_offset", "gauge"),
        ("shopstream_kafka_log_end_offset", "gauge"),
        ("shopstream_kafka_last_stable_offset", "gauge"),
        ("shopstream_consumer_lag_records", "gauge"),
        ("shopstream_consumer_lag_seconds", "gauge"),
        ("shopstream_partition_stalled", "gauge"),
        ("shopstream_build_info", "gauge"),
        ("shopstream_http_request_duration_seconds", "histogram"),
        ("process_cpu_seconds_total", "counter"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_virtual_memory_bytes", "gauge"),
        ("process_start_time_seconds", "gauge"),
        ("process_open_fds", "gauge"),
        ("process_max_fds", "gauge"),
    ];
    for (name, kind) in expected {
        assert_eq!(
            types.get(name).map(String::as_str),
            Some(kind),
            "{name}:\n{text}"
        );
    }
    // Gone: uptime (process_start_time_seconds says it) and the gauge of events.
    assert!(!text.contains("shopstream_uptime_seconds"));
    assert!(!text.contains("# TYPE shopstream_events_total gauge"));
    for line in [
        "shopstream_events_total 5",
        "shopstream_orders{status=\"Pending\"} 2",
        "shopstream_orders{status=\"Cancelled\"} 0",
        "shopstream_payments_total{status=\"FAILED\"} 1",
        "shopstream_consumer_lag_records{topic=\"orders\",partition=\"0\"} 2",
        "shopstream_consumer_lag_seconds{topic=\"orders\",partition=\"0\"} 1.5",
        "shopstream_kafka_log_end_offset{topic=\"orders\",partition=\"0\"} 9",
        "shopstream_records_aborted_total{topic=\"orders\",partition=\"0\"} 3",
        "process_max_fds 1024",
        "process_start_time_seconds 1700000000.5",
        "shopstream_http_request_duration_seconds_count{method=\"GET\",route=\"/api/orders\",status=\"200\"} 1",
        "shopstream_http_request_duration_seconds_bucket{method=\"GET\",route=\"/api/orders\",status=\"200\",le=\"0.005\"} 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
}

#[test]
fn families_without_figures_are_left_out() {
    let text = metrics().render(
        Snapshot {
            partitions: Vec::new(),
            counters: None,
            process: None,
            ..snapshot()
        },
        Format::Text,
    );
    for gone in [
        "shopstream_consumer_lag_records",
        "shopstream_orders",
        "shopstream_events_total",
        "process_",
        // No request observed yet: no series, and no empty family either.
        "shopstream_http_request_duration_seconds",
    ] {
        assert!(!text.contains(gone), "{gone} in:\n{text}");
    }
    assert!(text.contains("shopstream_store_bytes 4096"));
    assert!(text.contains("shopstream_memory_ceiling_bytes 117440512"));
    assert!(text.contains("shopstream_memory_trims_total 3"));
}

#[test]
fn requests_are_counted_by_method_route_template_and_status_with_bounded_labels() {
    let m = metrics();
    for _ in 0..3 {
        m.requests.observe(
            &Method::GET,
            "/api/orders/{id}",
            404,
            Duration::from_micros(300),
        );
    }
    m.requests
        .observe(&Method::POST, "/api/orders", 201, Duration::from_secs(2));
    // A status outside the table and a method nobody uses still count, through the family.
    m.requests
        .observe(&Method::GET, "/api/orders", 418, Duration::from_millis(1));
    let odd = Method::from_bytes(b"BREW").unwrap();
    m.requests
        .observe(&odd, "(none)", 405, Duration::from_millis(1));
    // A template not in the table (never from routes::handle) is still counted.
    m.requests
        .observe(&Method::GET, "/elsewhere", 200, Duration::from_millis(1));
    let text = m.render(snapshot(), Format::Text);
    for line in [
        "shopstream_http_request_duration_seconds_count{method=\"GET\",route=\"/api/orders/{id}\",status=\"404\"} 3",
        "shopstream_http_request_duration_seconds_bucket{method=\"GET\",route=\"/api/orders/{id}\",status=\"404\",le=\"0.0005\"} 3",
        "shopstream_http_request_duration_seconds_bucket{method=\"POST\",route=\"/api/orders\",status=\"201\",le=\"1\"} 0",
        "shopstream_http_request_duration_seconds_bucket{method=\"POST\",route=\"/api/orders\",status=\"201\",le=\"2.5\"} 1",
        "shopstream_http_request_duration_seconds_bucket{method=\"POST\",route=\"/api/orders\",status=\"201\",le=\"+Inf\"} 1",
        "shopstream_http_request_duration_seconds_sum{method=\"POST\",route=\"/api/orders\",status=\"201\"} 2.0",
        "shopstream_http_request_duration_seconds_count{method=\"GET\",route=\"/api/orders\",status=\"418\"} 1",
        "shopstream_http_request_duration_seconds_count{method=\"OTHER\",route=\"(none)\",status=\"405\"} 1",
        "shopstream_http_request_duration_seconds_count{method=\"GET\",route=\"/elsewhere\",status=\"200\"} 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
    assert!(!text.contains("BREW"));
}

#[test]
fn openmetrics_is_served_to_a_scraper_that_asks_for_it() {
    let prometheus =
        "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1";
    assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
    assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
    assert_eq!(Format::negotiate(None), Format::Text);
    assert!(
        Format::Text
            .content_type()
            .starts_with("text/plain; version=0.0.4")
    );
    assert!(
        Format::OpenMetrics
            .content_type()
            .starts_with("application/openmetrics-text; version=1.0.0")
    );

    let m = metrics();
    m.produce
        .acknowledged
        .get_or_create(&TopicLabels { topic: "orders" })
        .observe(0.002);
    let text = m.render(snapshot(), Format::OpenMetrics);
    assert!(text.ends_with("# EOF\n"), "{text}");
    // OpenMetrics names a counter family without its `_total`; the samples keep it.
    assert!(text.contains("# TYPE shopstream_events counter\n"));
    assert!(text.contains("\nshopstream_events_total 5\n"));
    assert!(text.contains("shopstream_kafka_produce_duration_seconds_count{topic=\"orders\"} 1"));
}

#[tokio::test]
async fn the_store_size_is_measured_at_most_every_few_seconds() {
    let size = StoreSize::default();
    let measured = std::sync::Arc::new(AtomicU64::new(0));
    let measure = |bytes| {
        let measured = std::sync::Arc::clone(&measured);
        move || {
            measured.fetch_add(1, Ordering::SeqCst);
            bytes
        }
    };
    assert_eq!(size.get(measure(100)).await, 100);
    // Within STORE_SIZE_EVERY the last figure is reused; nothing is walked.
    assert_eq!(size.get(measure(200)).await, 100);
    assert_eq!(measured.load(Ordering::SeqCst), 1);
    *size.measured_at.lock().unwrap() = Some(Instant::now() - STORE_SIZE_EVERY);
    assert_eq!(size.get(measure(300)).await, 300);
    assert_eq!(measured.load(Ordering::SeqCst), 2);
}
