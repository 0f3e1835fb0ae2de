//! `GET /metrics`: the Prometheus exposition of [`crate::metrics`]. A scrape reads what
//! shopstream keeps anyway (the committed offsets, the counters saved with them, what the
//! consumers' fetches said of each log's end, `/proc`) and the instruments' histograms; it
//! never walks the store (its size on disk is reused for a few seconds) and asks the broker
//! nothing.

use std::sync::Arc;

use chrono::Utc;
use hyper::StatusCode;
use hyper::header::{ACCEPT, CONTENT_TYPE, HeaderValue};

use super::{Body, Request, Response};
use crate::AppState;
use crate::metrics::{Format, PartitionSnapshot, Snapshot};

pub async fn render(state: &AppState, request: &Request) -> Response {
    let format = Format::negotiate(request.headers().get(ACCEPT).and_then(|v| v.to_str().ok()));
    let snapshot = snapshot(state).await;
    let text = state.metrics.render(snapshot, format);
    let mut response = hyper::Response::new(Body::from(text));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    response
}

/// The figures of one scrape.
async fn snapshot(state: &AppState) -> Snapshot {
    let catch_up = state.catch_up.get();
    let stalls = catch_up.map(|c| c.stalled()).unwrap_or_default();
    let ends = catch_up.map(|c| c.log_ends()).unwrap_or_default();
    let committed = state.store.committed();
    let now = Utc::now();
    let partitions = committed
        .partitions
        .iter()
        .map(|p| {
            let key = (p.topic, p.partition);
            let end = ends.get(&key);
            let lag = end.map(|e| e.high_watermark.saturating_sub(p.next_offset).max(0));
            // As /api/kafka: the age of the last record consumed bounds the age of the oldest
            // one waiting; unknown while records wait and none was read yet.
            let lag_seconds = match (lag, p.last_record_time) {
                (Some(0), _) => Some(0.0),
                (Some(_), Some(last)) => Some((now - last).num_milliseconds().max(0) as f64 / 1e3),
                _ => None,
            };
            PartitionSnapshot {
                topic: p.topic.as_str(),
                partition: p.partition,
                next_offset: p.next_offset,
                log_end: end.map(|e| e.high_watermark),
                last_stable: end.and_then(|e| e.last_stable_offset),
                lag_records: lag,
                lag_seconds,
                skipped: p.skipped,
                unreadable: p.unreadable,
                aborted: p.aborted,
                resets: p.resets,
                stalled: stalls
                    .iter()
                    .any(|s| s.topic == p.topic && s.partition == p.partition),
            }
        })
        .collect();
    // One key of the last commit (the counters), not a scan.
    let counters = state.store.query(|view| view.counters()).await.ok();
    let store_bytes = {
        let store = Arc::clone(&state.store);
        state
            .metrics
            .store_size
            .get(move || store.file_bytes())
            .await
    };
    Snapshot {
        kafka_ready: state.kafka.ready_session().is_ok(),
        caught_up: catch_up.is_some_and(|c| c.done()),
        live_clients: state.store.live_clients() as u64,
        nodelay_sockets: crate::kafka::nodelay::switched_total(),
        partitions,
        counters,
        store_bytes,
        memory_ceiling_bytes: crate::allocator::resident_ceiling(),
        memory_trims: crate::allocator::ceiling_trims(),
        // Small reads of /proc, but file reads all the same: off the async threads.
        process: tokio::task::spawn_blocking(crate::metrics::process::read)
            .await
            .ok()
            .flatten(),
    }
}
