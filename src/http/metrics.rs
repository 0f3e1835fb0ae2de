//! `GET /metrics`: Prometheus text exposition of what operators alert on: Kafka readiness,
//! consumer positions and skipped records per partition, events applied, orders per status,
//! live clients. Everything comes from state already kept; nothing is counted twice.

use std::fmt::Write;

use hyper::StatusCode;
use hyper::header::{CONTENT_TYPE, HeaderValue};

use super::{Body, Response};
use crate::AppState;

pub async fn render(state: &AppState) -> Response {
    let mut out = String::with_capacity(4096);
    let ready = state.kafka.ready_session().is_ok();
    let caught_up = state.catch_up.get().is_some_and(|c| c.done());
    family(
        &mut out,
        "shopstream_kafka_ready",
        "1 while the broker answers",
        "gauge",
        [("", if ready { 1.0 } else { 0.0 })],
    );
    family(
        &mut out,
        "shopstream_caught_up",
        "1 once the replay at start is over",
        "gauge",
        [("", if caught_up { 1.0 } else { 0.0 })],
    );
    family(
        &mut out,
        "shopstream_live_clients",
        "open WebSocket sessions",
        "gauge",
        [("", state.store.live_clients() as f64)],
    );
    family(
        &mut out,
        "shopstream_uptime_seconds",
        "seconds since start",
        "gauge",
        [("", state.started_at.elapsed().as_secs_f64())],
    );

    let counters = {
        let store = std::sync::Arc::clone(&state.store);
        store
            .query(|view| view.counters())
            .await
            .unwrap_or_default()
    };
    {
        let committed = state.store.committed();
        let partitions = &committed.partitions;
        let label = |p: &crate::model::PartitionProgress| {
            format!("topic=\"{}\",partition=\"{}\"", p.topic, p.partition)
        };
        family(
            &mut out,
            "shopstream_consumer_next_offset",
            "next offset shopstream will consume",
            "gauge",
            partitions.iter().map(|p| (label(p), p.next_offset as f64)),
        );
        family(
            &mut out,
            "shopstream_records_skipped_total",
            "records that were not shopstream events",
            "counter",
            partitions.iter().map(|p| (label(p), p.skipped as f64)),
        );
        family(
            &mut out,
            "shopstream_batches_unreadable_total",
            "record batches that could not be read (corrupt bytes), skipped with their offsets",
            "counter",
            partitions.iter().map(|p| (label(p), p.unreadable as f64)),
        );
        family(
            &mut out,
            "shopstream_records_aborted_total",
            "records of aborted transactions, read past and not applied",
            "counter",
            partitions.iter().map(|p| (label(p), p.aborted as f64)),
        );
        let stalls = state
            .catch_up
            .get()
            .map(|c| c.stalled())
            .unwrap_or_default();
        family(
            &mut out,
            "shopstream_partition_stalled",
            "1 while a partition makes no progress though it has something to read",
            "gauge",
            partitions.iter().map(|p| {
                let stalled = stalls
                    .iter()
                    .any(|s| s.topic == p.topic && s.partition == p.partition);
                (label(p), if stalled { 1.0 } else { 0.0 })
            }),
        );
        family(
            &mut out,
            "shopstream_offset_resets_total",
            "saved offsets that fell out of retention",
            "counter",
            partitions.iter().map(|p| (label(p), p.resets as f64)),
        );
        family(
            &mut out,
            "shopstream_kafka_nodelay_sockets_total",
            "broker connections switched to TCP_NODELAY",
            "counter",
            [("", crate::kafka::nodelay::switched_total() as f64)],
        );
        family(
            &mut out,
            "shopstream_events_total",
            "distinct events in the read model",
            "gauge",
            [("", counters.events as f64)],
        );
        let by_status: Vec<(String, f64)> = crate::domain::lifecycle::OrderStatus::ALL
            .iter()
            .map(|s| {
                (
                    format!("status=\"{s}\""),
                    counters.by_status.get(s).copied().unwrap_or(0) as f64,
                )
            })
            .collect();
        family(
            &mut out,
            "shopstream_orders",
            "orders per status",
            "gauge",
            by_status,
        );
        let payments = [
            (
                "status=\"SUCCESS\"".to_string(),
                counters.payments_succeeded as f64,
            ),
            (
                "status=\"FAILED\"".to_string(),
                counters.payments_failed as f64,
            ),
        ];
        family(
            &mut out,
            "shopstream_payments_total",
            "payments processed",
            "counter",
            payments,
        );
        family(
            &mut out,
            "shopstream_anomalies",
            "events that break the lifecycle",
            "gauge",
            [("", counters.anomalies as f64)],
        );
        family(
            &mut out,
            "shopstream_store_bytes",
            "size of the read model's store file",
            "gauge",
            [("", state.store.file_bytes() as f64)],
        );
    }

    let mut response = hyper::Response::new(Body::from(out));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// One metric family: its help and type lines, then one sample per (labels, value); empty
/// labels give an unlabelled sample.
fn family<L: std::fmt::Display>(
    out: &mut String,
    name: &str,
    help: &str,
    kind: &str,
    samples: impl IntoIterator<Item = (L, f64)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        let labels = labels.to_string();
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}
