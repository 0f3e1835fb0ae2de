//! Prometheus metrics on prometheus-client, in Prometheus's naming conventions: base units
//! (seconds, bytes) in the names, `_total` on counters only, HELP and TYPE on every family.
//! The README's "Metrics" section is the table of every family.
//!
//! Two kinds of figures:
//! - **Histograms**, observed where things happen: request durations ([`RequestDurations`],
//!   by the HTTP service wrapper), produce acknowledgements (the producer's lanes own theirs),
//!   group commits (the store's applier owns its own), and live delivery (the WebSocket sessions).
//!   Every instrument belongs to one server ([`Metrics`] lives in its state), so servers that
//!   share a process (the tests) never mix their figures.
//! - **Everything else is read at scrape time** from state shopstream keeps anyway: the
//!   committed offsets and counters, what the consumers' fetches said of each partition's log
//!   end, `/proc`. [`Snapshot`] carries those figures into one scrape's registry; nothing is
//!   counted twice, and no scrape walks the store (its size on disk is measured at most every
//!   [`STORE_SIZE_EVERY`], see [`StoreSize`]).
//!
//! A scrape answers the classic text format (0.0.4), or OpenMetrics 1.0 when the scraper asks
//! for it in `Accept` (Prometheus does); [`Format`].

pub mod process;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use hyper::Method;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeLabelSet, EncodeMetric,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::domain::lifecycle::OrderStatus;
use crate::model::Counters;

pub use process::ProcessStats;

/// Bucket bounds of every duration histogram, in seconds: from half a millisecond (a request
/// answered from memory) to ten seconds (the Kafka deadline's order of magnitude).
pub const DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How long a measured size of the store on disk is reused: measuring walks its directory.
pub const STORE_SIZE_EVERY: Duration = Duration::from_secs(5);

/// A histogram of durations in seconds, with [`DURATION_BUCKETS`].
pub fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// A family of duration histograms.
pub type Durations<L> = Family<L, Histogram, fn() -> Histogram>;

/// A family of duration histograms, with [`DURATION_BUCKETS`].
pub fn durations<L: Clone + std::hash::Hash + Eq>() -> Durations<L> {
    Family::new_with_constructor(duration_histogram)
}

/// Labels of a per-topic figure (the topic's role: `orders`, `payments`, `deliveries`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    pub topic: &'static str,
}

/// Labels of a per-partition figure.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub topic: &'static str,
    pub partition: i32,
}

/// Labels of a request duration: the method, the route template (`/api/orders/{id}`, never
/// the path: `(file)` for the dashboard's files, `(none)` for no route) and the status code.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: &'static str,
    pub route: &'static str,
    pub status: u16,
}

/// Methods that get their own label value; any other is `OTHER`, so that a client inventing
/// methods cannot create series.
const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER",
];
/// Status codes shopstream answers; their series are found without a lock (others still
/// count, through the family's lock).
const STATUSES: [u16; 26] = [
    101, 200, 201, 202, 204, 206, 304, 400, 401, 403, 404, 405, 406, 408, 409, 413, 414, 415, 416,
    422, 429, 431, 500, 502, 503, 504,
];

fn method_index(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::PATCH => 4,
        Method::DELETE => 5,
        Method::OPTIONS => 6,
        _ => 7,
    }
}

/// `shopstream_http_request_duration_seconds`. Every request observes one histogram; finding
/// it takes no lock and allocates nothing: the series of (method, route template, status) is
/// looked up in the family once, then kept in its slot of a fixed table.
#[derive(Debug)]
pub struct RequestDurations {
    family: Durations<RequestLabels>,
    /// Route template to its row of `slots`.
    templates: HashMap<&'static str, usize>,
    /// One slot per (template, method, status).
    slots: Box<[OnceLock<Histogram>]>,
}

impl RequestDurations {
    /// For the route templates a request can be named by.
    pub fn new(templates: impl IntoIterator<Item = &'static str>) -> Self {
        let mut rows = HashMap::new();
        for template in templates {
            let next = rows.len();
            rows.entry(template).or_insert(next);
        }
        let slots = (0..rows.len() * METHODS.len() * STATUSES.len())
            .map(|_| OnceLock::new())
            .collect();
        Self {
            family: durations(),
            templates: rows,
            slots,
        }
    }

    /// Counts one answered request.
    pub fn observe(&self, method: &Method, route: &'static str, status: u16, elapsed: Duration) {
        let method_at = method_index(method);
        let labels = || RequestLabels {
            method: METHODS[method_at],
            route,
            status,
        };
        let slot = self.templates.get(route).and_then(|row| {
            let status_at = STATUSES.iter().position(|s| *s == status)?;
            self.slots
                .get((row * METHODS.len() + method_at) * STATUSES.len() + status_at)
        });
        let seconds = elapsed.as_secs_f64();
        match slot {
            Some(slot) => slot
                .get_or_init(|| self.family.get_or_create_owned(&labels()))
                .observe(seconds),
            None => self.family.get_or_create(&labels()).observe(seconds),
        }
    }
}

/// What the producer's lanes observe: one acknowledgement duration per produce request, and the
/// requests that failed, per topic.
#[derive(Debug, Clone)]
pub struct ProduceMetrics {
    pub acknowledged: Durations<TopicLabels>,
    pub failed: Family<TopicLabels, Counter>,
}

impl Default for ProduceMetrics {
    fn default() -> Self {
        Self {
            acknowledged: durations(),
            failed: Family::default(),
        }
    }
}

/// The store's size on disk, measured at most every [`STORE_SIZE_EVERY`] and by one scrape at
/// a time; the others take the last figure.
#[derive(Debug, Default)]
pub struct StoreSize {
    bytes: AtomicU64,
    measured_at: Mutex<Option<Instant>>,
    measuring: AtomicBool,
}

impl StoreSize {
    /// The size, measured by `measure` (on a blocking thread) when the last figure is stale.
    pub async fn get(&self, measure: impl FnOnce() -> u64 + Send + 'static) -> u64 {
        let stale = self
            .measured_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none_or(|at| at.elapsed() >= STORE_SIZE_EVERY);
        if stale && !self.measuring.swap(true, Ordering::AcqRel) {
            if let Ok(bytes) = tokio::task::spawn_blocking(measure).await {
                self.bytes.store(bytes, Ordering::Release);
                *self.measured_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            }
            self.measuring.store(false, Ordering::Release);
        }
        self.bytes.load(Ordering::Acquire)
    }
}

/// One server's instruments.
#[derive(Debug)]
pub struct Metrics {
    pub requests: RequestDurations,
    /// From an event's publication after its group commit to its frame being written and
    /// flushed to one WebSocket client (one observation per frame and client).
    pub live_delivery: Histogram,
    /// The producer's (shared with its lanes).
    pub produce: ProduceMetrics,
    /// The store applier's: one observation per group commit that carries records.
    pub store_commits: Histogram,
    pub store_size: StoreSize,
}

impl Metrics {
    pub fn new(
        route_templates: impl IntoIterator<Item = &'static str>,
        produce: ProduceMetrics,
        store_commits: Histogram,
    ) -> Self {
        Self {
            requests: RequestDurations::new(route_templates),
            live_delivery: duration_histogram(),
            produce,
            store_commits,
            store_size: StoreSize::default(),
        }
    }

    /// The exposition of the instruments and of `snapshot`, in `format`.
    pub fn render(&self, snapshot: Snapshot, format: Format) -> String {
        let mut registry = Registry::default();
        registry.register(
            "shopstream_http_request_duration_seconds",
            "Time to answer an HTTP request, by method, route template and status code \
             (a WebSocket upgrade counts until its 101)",
            self.requests.family.clone(),
        );
        registry.register(
            "shopstream_kafka_produce_duration_seconds",
            "Time from sending a produce request (one batch of a partition's lane) to Kafka's \
             acknowledgement (acks=all), by topic",
            self.produce.acknowledged.clone(),
        );
        registry.register(
            "shopstream_kafka_produce_failures",
            "Produce requests that failed or timed out, by topic",
            self.produce.failed.clone(),
        );
        registry.register(
            "shopstream_store_commit_duration_seconds",
            "Time to apply one group commit of fetched records to the read model and commit it \
             with the offsets, a sync to disk included when one is due (commits of empty fetches \
             are not measured)",
            self.store_commits.clone(),
        );
        registry.register(
            "shopstream_live_delivery_duration_seconds",
            "Time from an event's publication after its commit to its frame being written and \
             flushed to a WebSocket client, per frame and client",
            self.live_delivery.clone(),
        );
        registry.register_collector(Box::new(snapshot));
        let mut out = String::with_capacity(32 * 1024);
        let encoded = match format {
            Format::Text => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
            }
            Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry),
        };
        // Writing to a String cannot fail, and every value is encodable.
        debug_assert!(encoded.is_ok());
        out
    }
}

/// The exposition format of a scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus's classic text format, version 0.0.4.
    Text,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
}

impl Format {
    /// OpenMetrics when the scraper's `Accept` names it, the classic text format otherwise.
    pub fn negotiate(accept: Option<&str>) -> Self {
        if accept.is_some_and(|a| a.contains("application/openmetrics-text")) {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// One partition as a scrape sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionSnapshot {
    pub topic: &'static str,
    pub partition: i32,
    /// The next offset shopstream will consume (its position).
    pub next_offset: i64,
    /// The high watermark and last stable offset its consumer's last fetch reported.
    pub log_end: Option<i64>,
    pub last_stable: Option<i64>,
    /// Records past the position, and how old the first of them is at most (`None` when
    /// unknown: no fetch answered yet, or no record read yet while records wait).
    pub lag_records: Option<i64>,
    pub lag_seconds: Option<f64>,
    pub skipped: u64,
    pub unreadable: u64,
    pub aborted: u64,
    pub resets: u64,
    pub stalled: bool,
}

impl PartitionSnapshot {
    fn labels(&self) -> PartitionLabels {
        PartitionLabels {
            topic: self.topic,
            partition: self.partition,
        }
    }
}

/// The figures a scrape reads from shopstream's state, encoded as one scrape's families.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub kafka_ready: bool,
    pub caught_up: bool,
    pub live_clients: u64,
    pub nodelay_sockets: u64,
    pub partitions: Vec<PartitionSnapshot>,
    /// The read model's counters (`None` when the store cannot be read: those families go).
    pub counters: Option<Counters>,
    pub store_bytes: u64,
    /// The resident size above which freed memory is handed back, and how often it was.
    pub memory_ceiling_bytes: u64,
    pub memory_trims: u64,
    /// `None` without `/proc`: the process families go.
    pub process: Option<ProcessStats>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

impl Collector for Snapshot {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let parts = &self.partitions;
        gauge(
            &mut e,
            "shopstream_build_info",
            "Always 1; the version of the shopstream binary is a label.",
            [(
                VersionLabels {
                    version: env!("CARGO_PKG_VERSION"),
                },
                1,
            )],
        )?;
        gauge1(
            &mut e,
            "shopstream_kafka_ready",
            "1 while the broker answers and the topics exist.",
            i64::from(self.kafka_ready),
        )?;
        gauge1(
            &mut e,
            "shopstream_caught_up",
            "1 once the replay of the log at start is over.",
            i64::from(self.caught_up),
        )?;
        gauge1(
            &mut e,
            "shopstream_live_clients",
            "Open WebSocket sessions.",
            self.live_clients,
        )?;
        counter1(
            &mut e,
            "shopstream_kafka_nodelay_sockets",
            "Broker connections switched to TCP_NODELAY.",
            self.nodelay_sockets,
        )?;

        gauge(
            &mut e,
            "shopstream_consumer_next_offset",
            "The next offset shopstream will consume (its position), as committed with the read model.",
            parts.iter().map(|p| (p.labels(), p.next_offset)),
        )?;
        gauge(
            &mut e,
            "shopstream_kafka_log_end_offset",
            "The partition's high watermark, as its consumer's last fetch reported it.",
            parts.iter().filter_map(|p| Some((p.labels(), p.log_end?))),
        )?;
        gauge(
            &mut e,
            "shopstream_kafka_last_stable_offset",
            "The end of what a read_committed consumer may read (before an open transaction), as the last fetch reported it.",
            parts
                .iter()
                .filter_map(|p| Some((p.labels(), p.last_stable?))),
        )?;
        gauge(
            &mut e,
            "shopstream_consumer_lag_records",
            "Records between the position and the log end.",
            parts
                .iter()
                .filter_map(|p| Some((p.labels(), p.lag_records?))),
        )?;
        gauge(
            &mut e,
            "shopstream_consumer_lag_seconds",
            "0 with no lag; otherwise the age of the last record consumed, an upper bound of the age of the oldest record waiting.",
            parts
                .iter()
                .filter_map(|p| Some((p.labels(), p.lag_seconds?))),
        )?;
        gauge(
            &mut e,
            "shopstream_partition_stalled",
            "1 while a partition makes no progress though it has something to read.",
            parts.iter().map(|p| (p.labels(), i64::from(p.stalled))),
        )?;
        counter(
            &mut e,
            "shopstream_records_skipped",
            "Records that were not shopstream events, skipped with a counted reason.",
            parts.iter().map(|p| (p.labels(), p.skipped)),
        )?;
        counter(
            &mut e,
            "shopstream_batches_unreadable",
            "Record batches that could not be read (corrupt bytes), skipped with their offsets.",
            parts.iter().map(|p| (p.labels(), p.unreadable)),
        )?;
        counter(
            &mut e,
            "shopstream_records_aborted",
            "Records of aborted transactions, read past and not applied.",
            parts.iter().map(|p| (p.labels(), p.aborted)),
        )?;
        counter(
            &mut e,
            "shopstream_offset_resets",
            "Saved offsets that were out of the log's range (retention, a re-created topic) and reset to the earliest.",
            parts.iter().map(|p| (p.labels(), p.resets)),
        )?;

        if let Some(c) = &self.counters {
            counter1(
                &mut e,
                "shopstream_events",
                "Distinct events applied to the read model (duplicates not counted); it starts over when the store is rebuilt.",
                c.events,
            )?;
            gauge1(
                &mut e,
                "shopstream_read_model_orders",
                "Orders the read model holds.",
                c.orders,
            )?;
            gauge1(
                &mut e,
                "shopstream_read_model_deliveries",
                "Deliveries the read model holds.",
                c.deliveries,
            )?;
            gauge(
                &mut e,
                "shopstream_orders",
                "Orders per status.",
                OrderStatus::ALL.iter().map(|s| {
                    (
                        StatusLabels { status: s.as_str() },
                        c.by_status.get(s).copied().unwrap_or(0),
                    )
                }),
            )?;
            counter(
                &mut e,
                "shopstream_payments",
                "Payments processed, by outcome.",
                [
                    (StatusLabels { status: "SUCCESS" }, c.payments_succeeded),
                    (StatusLabels { status: "FAILED" }, c.payments_failed),
                ],
            )?;
            counter1(
                &mut e,
                "shopstream_anomalies",
                "Events kept in an order's history though they break its lifecycle.",
                c.anomalies,
            )?;
        }
        gauge1(
            &mut e,
            "shopstream_store_bytes",
            "Size of the read model's store on disk, measured at most every 5 s.",
            self.store_bytes,
        )?;
        gauge1(
            &mut e,
            "shopstream_memory_ceiling_bytes",
            "Resident size above which freed memory is handed back to the system (7/4 of --cache-size; 0 where the allocator returns it itself).",
            self.memory_ceiling_bytes,
        )?;
        counter1(
            &mut e,
            "shopstream_memory_trims",
            "Times the resident size was above the ceiling and freed memory was handed back.",
            self.memory_trims,
        )?;

        if let Some(p) = &self.process {
            counter1(
                &mut e,
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                p.cpu_seconds,
            )?;
            gauge1(
                &mut e,
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                p.resident_memory_bytes,
            )?;
            gauge1(
                &mut e,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                p.virtual_memory_bytes,
            )?;
            if let Some(started) = p.start_time_seconds {
                gauge1(
                    &mut e,
                    "process_start_time_seconds",
                    "Start time of the process since unix epoch in seconds.",
                    started,
                )?;
            }
            if let Some(open) = p.open_fds {
                gauge1(
                    &mut e,
                    "process_open_fds",
                    "Number of open file descriptors.",
                    open,
                )?;
            }
            if let Some(max) = p.max_fds {
                gauge1(
                    &mut e,
                    "process_max_fds",
                    "Maximum number of open file descriptors.",
                    max,
                )?;
            }
        }
        Ok(())
    }
}

/// An unlabelled gauge.
fn gauge1<V: EncodeGaugeValue>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: V,
) -> Result<(), std::fmt::Error> {
    ConstGauge::new(value).encode(e.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

/// An unlabelled counter: `name` without `_total`, which the encoder adds.
fn counter1<V: EncodeCounterValue>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: V,
) -> Result<(), std::fmt::Error> {
    ConstCounter::new(value).encode(e.encode_descriptor(name, help, None, MetricType::Counter)?)
}

/// A gauge family with one sample per (labels, value). A family without samples is left out.
fn gauge<L: EncodeLabelSet, V: EncodeGaugeValue>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (L, V)>,
) -> Result<(), std::fmt::Error> {
    let mut samples = samples.into_iter().peekable();
    if samples.peek().is_none() {
        return Ok(());
    }
    let mut metric = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in samples {
        ConstGauge::new(value).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A counter family: `name` without `_total`, which the encoder adds.
fn counter<L: EncodeLabelSet, V: EncodeCounterValue>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (L, V)>,
) -> Result<(), std::fmt::Error> {
    let mut samples = samples.into_iter().peekable();
    if samples.peek().is_none() {
        return Ok(());
    }
    let mut metric = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in samples {
        ConstCounter::new(value).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
