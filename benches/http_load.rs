//! Load runs of the real `shopstream` binary against a real broker, with references measured
//! on the same machine in the same run.
//!
//! `cargo bench --bench http_load [-- load|startup|latency|fanout]` (no word: every part)
//!
//! 1. **load: POST rate.** The release binary runs with a fresh `--topic-prefix`; C concurrent
//!    keep-alive HTTP/1.1 connections send `POST /api/orders` (valid demo orders) until a
//!    fixed count is answered or a time limit passes, for every C of the sweep. Reported:
//!    requests/s, latency percentiles, and CPU per order from `/proc`: the server's and the
//!    broker's JVMs', counted from the first request until the server applied the last event
//!    (every partition's lag is 0 in `/api/kafka`), so consumption deferred past the last
//!    answer is not free. The load client's own CPU is shown as the share of its one core, to
//!    tell when the client rather than the server is the limit. Two references, same record
//!    size, in the same run:
//!    - Kafka's own `org.apache.kafka.tools.ProducerPerformance`, `acks=all`, `linger.ms=5`,
//!      a million records (so that the JVM's start and warm-up do not dominate it), with the
//!      broker's CPU per record and the tool's own;
//!    - *direct*: the same order records produced by shopstream's own producer (its lanes:
//!      one batch per partition of whatever queued during the previous request, rskafka,
//!      acks=all) inside this process, with as many writers in flight as HTTP connections,
//!      without HTTP and without the consumer: what the Kafka client and the broker cost
//!      alone, so that the rest of the server's cost reads as HTTP plus consuming and applying.
//! 2. **startup: start-up with a full log.** Orders are produced straight into a fresh
//!    prefix's `orders` topic (rskafka, big batches, shopstream's record shape), then
//!    shopstream starts on an empty data dir and is timed until `/readyz` says `caught_up`; it
//!    is stopped with SIGTERM and started again on the same data dir (its store and offsets),
//!    timed again. Reference: the same records decoded and applied into a temporary store in
//!    this process.
//! 3. **latency: POST to live frame**, open loop (see `http_load/live.rs`): orders sent at
//!    fixed times at each rate, on a fresh store and on one holding many orders; a WebSocket
//!    client time-stamps each order's frame.
//! 4. **fanout**: many WebSocket clients while orders arrive at a fixed rate: frames per
//!    second, POST to frame per client, frames lost to clients that stayed connected.
//!
//! The broker is the one in `KAFKA_BOOTSTRAP`, or the local one of `compose/kafka-local`
//! (started if needed, and stopped at the end only when this run started it). Its JVMs' pids
//! come from `compose/kafka-local status` (set `KAFKA_LOCAL_DIR` to its state dir) or from
//! `SHOPSTREAM_BENCH_BROKER_PIDS`. Everything talks to 127.0.0.1; every wait is bounded; the
//! topics this run created are deleted.
//!
//! Environment (all optional): `SHOPSTREAM_BENCH_CONNECTIONS` (`1,8,16,32,48,64,128,256,512,
//! 1024`: one run per count), `SHOPSTREAM_BENCH_REFERENCE_RECORDS` (1000000, never fewer),
//! `SHOPSTREAM_BENCH_REQUESTS` (20000), `SHOPSTREAM_BENCH_SECONDS` (20, the longest the
//! measured load may run), `SHOPSTREAM_BENCH_DIRECT_RECORDS` (100000) and
//! `SHOPSTREAM_BENCH_DIRECT_WRITERS` (256), `SHOPSTREAM_BENCH_STARTUP_ORDERS` (100000),
//! `SHOPSTREAM_BENCH_KEEP_BROKER=1` (never stop the local broker), and those of the live
//! parts (see `http_load/live.rs`).

mod common;
#[path = "http_load/live.rs"]
mod live;
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{TimeDelta, Utc};
use http_body_util::Full;
use hyper::Request;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rskafka::client::Client;
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::record::Record;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use common::{
    CONNECT_TIMEOUT, MAX_CONSECUTIVE_FAILURES, PARTITIONS, REQUEST_TIMEOUT, STOP_TIMEOUT,
    create_topic, delete_topics, kafka_call, order_bodies,
};
use shopstream::domain::demo;
use shopstream::domain::event::{Event, EventBody, EventType, Position, TopicRole, headers};
use shopstream::domain::partitioner::partition_for_key;
use shopstream::domain::validation;
use shopstream::kafka::producer::{OutgoingRecord, Producer};
use shopstream::kafka::{KafkaConnection, TopicLayout};
use shopstream::model::store::{FetchedRecord, Store};
use support::{Server, http};

/// Longest shopstream may take to become ready / catch up.
const READY_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest ProducerPerformance may run.
const REFERENCE_TIMEOUT: Duration = Duration::from_secs(300);
/// Records per produce request when filling the log.
const FILL_BATCH_RECORDS: usize = 1_000;
/// Value bytes per produce request when filling the log (below the broker's 1 MiB default).
const FILL_BATCH_BYTES: usize = 700 * 1024;

struct Settings {
    /// The load runs, one per connection count.
    connections: Vec<usize>,
    /// Records of the ProducerPerformance reference: at least a million, so that the JVM's
    /// start and warm-up do not dominate it.
    reference_records: u64,
    requests: u64,
    max_duration: Duration,
    /// Records and writers in flight of the direct (in-process producer) reference.
    direct_records: usize,
    direct_writers: usize,
    startup_orders: usize,
    keep_broker: bool,
    run_load: bool,
    run_startup: bool,
    run_latency: bool,
    run_fanout: bool,
    live: live::LiveSettings,
}

impl Settings {
    fn from_env() -> Self {
        let number = |name: &str, default: u64, max: u64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map_or(default, |v| v.clamp(1, max))
        };
        // `cargo bench` passes `--bench`; a bare word selects one part.
        let parts: Vec<String> = std::env::args()
            .skip(1)
            .filter(|a| !a.starts_with('-'))
            .collect();
        let selected = |part: &str| parts.is_empty() || parts.iter().any(|p| part.contains(p));
        Self {
            connections: std::env::var("SHOPSTREAM_BENCH_CONNECTIONS")
                .ok()
                .map(|v| {
                    v.split(',')
                        .filter_map(|c| c.trim().parse::<usize>().ok())
                        .map(|c| c.clamp(1, 1024))
                        .collect::<Vec<_>>()
                })
                .filter(|list| !list.is_empty())
                .unwrap_or_else(|| vec![1, 8, 16, 32, 48, 64, 128, 256, 512, 1024]),
            reference_records: number("SHOPSTREAM_BENCH_REFERENCE_RECORDS", 1_000_000, 20_000_000)
                .max(1_000_000),
            requests: number("SHOPSTREAM_BENCH_REQUESTS", 20_000, 5_000_000),
            max_duration: Duration::from_secs(number("SHOPSTREAM_BENCH_SECONDS", 20, 600)),
            direct_records: number("SHOPSTREAM_BENCH_DIRECT_RECORDS", 100_000, 5_000_000) as usize,
            direct_writers: number("SHOPSTREAM_BENCH_DIRECT_WRITERS", 256, 4096) as usize,
            startup_orders: number("SHOPSTREAM_BENCH_STARTUP_ORDERS", 100_000, 5_000_000) as usize,
            keep_broker: std::env::var("SHOPSTREAM_BENCH_KEEP_BROKER").is_ok_and(|v| v == "1"),
            run_load: selected("load"),
            run_startup: selected("startup"),
            run_latency: selected("latency"),
            run_fanout: selected("fanout"),
            live: live::LiveSettings::from_env(),
        }
    }
}

fn main() {
    let settings = Settings::from_env();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    eprintln!(
        "shopstream HTTP load benchmark ({cores} cores; client, server and broker share them)"
    );
    common::run_with_broker(settings.keep_broker, |bootstrap| async move {
        run(&settings, &bootstrap).await
    });
}

async fn run(settings: &Settings, bootstrap: &str) -> Result<(), String> {
    let client = common::connect(bootstrap).await?;
    let mut created_topics = Vec::new();
    let load = if settings.run_load {
        Some(load_sweep(settings, bootstrap, &client, &mut created_topics).await)
    } else {
        None
    };
    let startup = if settings.run_startup {
        Some(startup_phase(settings, bootstrap, &client, &mut created_topics).await)
    } else {
        None
    };
    let latency = if settings.run_latency {
        Some(live::latency_phase(&settings.live, bootstrap, &client, &mut created_topics).await)
    } else {
        None
    };
    let fanout = if settings.run_fanout {
        Some(live::fanout_phase(&settings.live, bootstrap, &client, &mut created_topics).await)
    } else {
        None
    };
    delete_topics(&client, &created_topics).await;

    let mut reference_failed = None;
    if let Some(load) = &load {
        match load {
            Ok(report) => {
                report.print(settings);
                reference_failed = report.reference.as_ref().err().cloned();
            }
            Err(e) => eprintln!("load run failed: {e}"),
        }
    }
    if let Some(startup) = &startup {
        match startup {
            Ok(report) => report.print(),
            Err(e) => eprintln!("start-up run failed: {e}"),
        }
    }
    match &latency {
        Some(Ok(report)) => report.print(),
        Some(Err(e)) => eprintln!("latency run failed: {e}"),
        None => {}
    }
    match &fanout {
        Some(Ok(report)) => report.print(),
        Some(Err(e)) => eprintln!("fan-out run failed: {e}"),
        None => {}
    }
    match (load, startup, latency, fanout) {
        (Some(Err(e)), ..) | (_, Some(Err(e)), ..) => Err(e),
        (_, _, Some(Err(e)), _) | (.., Some(Err(e))) => Err(e),
        _ => reference_failed.map_or(Ok(()), Err),
    }
}

fn unique_prefix(what: &str) -> String {
    format!(
        "bench-{what}-{}.",
        &Uuid::new_v4().simple().to_string()[..8]
    )
}

/// Waits (bounded) until `/readyz` answers 200 with `"caught_up": true`.
async fn wait_caught_up(server: &Server) -> Result<(), String> {
    let started = Instant::now();
    loop {
        if let Ok((200, body)) = http::get(server.addr, "/readyz").await
            && body["caught_up"] == true
        {
            return Ok(());
        }
        if started.elapsed() > READY_TIMEOUT {
            return Err(format!(
                "shopstream did not catch up within {READY_TIMEOUT:?}; last logs:\n{}",
                tail(&server.logs(), 20)
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The JSON fields of the first log line with `message`.
fn log_line(server: &Server, message: &str) -> Option<Value> {
    server.logs().lines().find_map(|line| {
        let event: Value = serde_json::from_str(line).ok()?;
        (event["message"] == message).then_some(event)
    })
}

/// Percentile by nearest rank of sorted values.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(micros: u64) -> String {
    format!("{:.2}", micros as f64 / 1000.0)
}

// ------------------------------------------------------------------------------------------
// Part 1: POST /api/orders under load, against Kafka's ProducerPerformance.

struct LoadResult {
    ok: u64,
    failures: BTreeMap<String, u64>,
    /// Latency of every 201, in microseconds, sorted.
    latencies: Vec<u64>,
    elapsed: Duration,
    /// Stopped by the time limit rather than the request count.
    timed_out: bool,
}

#[derive(Default)]
struct Worker {
    ok: u64,
    failures: BTreeMap<String, u64>,
    latencies: Vec<u64>,
}

impl Worker {
    fn fail(&mut self, why: impl Into<String>) {
        *self.failures.entry(why.into()).or_default() += 1;
    }
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, String> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(connection);
    Ok(sender)
}

/// One keep-alive connection sending requests one after the other until the shared count or
/// the deadline is reached.
async fn connection_loop(
    addr: SocketAddr,
    bodies: Arc<Vec<Bytes>>,
    next: Arc<AtomicU64>,
    requests: u64,
    deadline: Instant,
) -> Worker {
    let mut worker = Worker::default();
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    let mut failures_in_a_row = 0;
    let host = addr.to_string();
    while Instant::now() < deadline && failures_in_a_row < MAX_CONSECUTIVE_FAILURES {
        let ticket = next.fetch_add(1, Ordering::Relaxed);
        if ticket >= requests {
            break;
        }
        let conn = match &mut sender {
            Some(conn) => conn,
            None => match connect(addr).await {
                Ok(conn) => sender.insert(conn),
                Err(e) => {
                    worker.fail(e);
                    failures_in_a_row += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let body = bodies[ticket as usize % bodies.len()].clone();
        let request = Request::post("/api/orders")
            .header("host", &host)
            .header("content-type", "application/json")
            .body(Full::new(body))
            .expect("a valid request");
        let started = Instant::now();
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, async {
            common::exchange(conn, request)
                .await
                .map(|(status, _)| status)
        })
        .await;
        let took = started.elapsed();
        match answer {
            Ok(Ok(201)) => {
                worker.ok += 1;
                worker.latencies.push(took.as_micros() as u64);
                failures_in_a_row = 0;
            }
            Ok(Ok(status)) => {
                worker.fail(format!("HTTP {status}"));
                failures_in_a_row += 1;
            }
            Ok(Err(e)) => {
                worker.fail(e);
                failures_in_a_row += 1;
                sender = None;
            }
            Err(_) => {
                worker.fail(format!("no answer within {REQUEST_TIMEOUT:?}"));
                failures_in_a_row += 1;
                sender = None;
            }
        }
    }
    worker
}

async fn run_load(
    addr: SocketAddr,
    bodies: &Arc<Vec<Bytes>>,
    connections: usize,
    requests: u64,
    max_duration: Duration,
) -> LoadResult {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + max_duration;
    let mut tasks = JoinSet::new();
    for _ in 0..connections {
        tasks.spawn(connection_loop(
            addr,
            Arc::clone(bodies),
            Arc::clone(&next),
            requests,
            deadline,
        ));
    }
    let mut result = LoadResult {
        ok: 0,
        failures: BTreeMap::new(),
        latencies: Vec::new(),
        elapsed: Duration::ZERO,
        timed_out: false,
    };
    while let Some(worker) = tasks.join_next().await {
        let worker = worker.unwrap_or_else(|e| {
            let mut w = Worker::default();
            w.fail(format!("load task failed: {e}"));
            w
        });
        result.ok += worker.ok;
        result.latencies.extend(worker.latencies);
        for (why, n) in worker.failures {
            *result.failures.entry(why).or_default() += n;
        }
    }
    result.elapsed = started.elapsed();
    result.timed_out = next.load(Ordering::Relaxed) < requests;
    result.latencies.sort_unstable();
    result
}

/// ProducerPerformance's summary line.
struct Reference {
    records: u64,
    per_second: f64,
    avg_ms: f64,
    max_ms: f64,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    line: String,
    /// Broker CPU per record, and the tool's own (its JVM) as the client's.
    cpu: CpuUse,
}

/// Parses "N records sent, X records/sec (Y MB/sec), A ms avg latency, M ms max latency,
/// P ms 50th, P ms 95th, P ms 99th, P ms 99.9th."
fn parse_reference(stdout: &str) -> Option<Reference> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.contains("records sent") && l.contains("50th"))?;
    let numbers: Vec<f64> = line
        .split(',')
        .filter_map(|field| field.split_whitespace().next()?.parse().ok())
        .collect();
    let [
        records,
        per_second,
        avg_ms,
        max_ms,
        p50_ms,
        p95_ms,
        p99_ms,
        ..,
    ] = numbers[..]
    else {
        return None;
    };
    Some(Reference {
        records: records as u64,
        per_second,
        avg_ms,
        max_ms,
        p50_ms,
        p95_ms,
        p99_ms,
        line: line.trim().to_string(),
        cpu: CpuUse::default(),
    })
}

async fn producer_performance(
    bootstrap: &str,
    broker: &BrokerPids,
    topic: &str,
    records: u64,
    record_size: usize,
) -> Result<Reference, String> {
    let mut command = Command::new(support::repo_root().join("compose/kafka-local"));
    command.args([
        "java-class",
        "org.apache.kafka.tools.ProducerPerformance",
        "--topic",
        topic,
        "--num-records",
        &records.to_string(),
        "--record-size",
        &record_size.to_string(),
        "--throughput",
        "-1",
        "--producer-props",
        &format!("bootstrap.servers={bootstrap}"),
        "acks=all",
        "linger.ms=5",
    ]);
    eprintln!("reference: {command:?}");
    let before = CpuSample::now(None, broker);
    let tool_before = children_cpu_time();
    let output = tokio::task::spawn_blocking(move || {
        support::run_with_stdin(&mut command, b"", REFERENCE_TIMEOUT)
    })
    .await
    .map_err(|e| e.to_string())??;
    let after = CpuSample::now(None, broker);
    let tool = tool_before
        .zip(children_cpu_time())
        .map(|(a, b)| b.saturating_sub(a));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut reference = parse_reference(&stdout).ok_or_else(|| {
        format!(
            "ProducerPerformance gave no summary ({}):\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    // The JVM's start is in its CPU time too: with a million records it is a small part.
    reference.cpu = CpuUse {
        broker_us: before.per(&after, reference.records).broker_us,
        client_us: tool.map(|t| t.as_secs_f64() * 1e6 / reference.records.max(1) as f64),
        ..CpuUse::default()
    };
    Ok(reference)
}

/// The direct reference: shopstream's producer in this process.
struct Direct {
    records: usize,
    writers: usize,
    per_second: f64,
    /// Latency of each send, µs, sorted.
    latencies: Vec<u64>,
    /// `client_us` is this process: shopstream's producer lanes and rskafka.
    cpu: CpuUse,
}

/// Order records as shopstream writes them (value, key, headers), built before the clock runs.
fn direct_records(count: usize) -> Vec<OutgoingRecord> {
    let mut rng = rand::rng();
    (0..count)
        .map(|_| {
            let order_id = Uuid::new_v4().to_string();
            let time = Utc::now();
            let event = order_event(
                order_id.clone(),
                time,
                EventBody::OrderCreated(demo::demo_order(&mut rng)),
            );
            OutgoingRecord {
                key: order_id,
                value: event.to_bytes(),
                headers: BTreeMap::from([
                    (headers::EVENT_TYPE.to_string(), b"order.created".to_vec()),
                    (
                        headers::CONTENT_TYPE.to_string(),
                        b"application/json".to_vec(),
                    ),
                    (headers::PRODUCER.to_string(), b"shopstream-bench".to_vec()),
                ]),
                time,
            }
        })
        .collect()
}

/// Writes `direct_records` order records through shopstream's own `Producer` (its lanes and
/// their batching, rskafka, acks=all) from `direct_writers` tasks that each wait for their
/// acknowledgement before the next send, as an HTTP connection does. No HTTP, no consumer.
async fn direct_reference(
    settings: &Settings,
    bootstrap: &str,
    broker: &BrokerPids,
    client: &Client,
    created: &mut Vec<String>,
) -> Result<Direct, String> {
    use clap::Parser;

    let prefix = unique_prefix("direct");
    for role in TopicRole::ALL {
        create_topic(client, &format!("{prefix}{role}"), created).await?;
    }
    let config = shopstream::Config::try_parse_from([
        "shopstream",
        "--kafka",
        bootstrap,
        "--topic-prefix",
        &prefix,
    ])
    .map_err(|e| e.to_string())?;
    let timeout = config.kafka_timeout;
    let shutdown = CancellationToken::new();
    let kafka = KafkaConnection::start(Arc::new(config), shutdown.clone());
    let producer = Producer::new(kafka.clone(), timeout, shutdown.clone());
    let started = Instant::now();
    while kafka.ready_session().is_err() {
        if started.elapsed() > READY_TIMEOUT {
            shutdown.cancel();
            return Err("the in-process producer did not connect".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let records = Arc::new(direct_records(settings.direct_records));
    eprintln!(
        "direct: {} records from {} writers through shopstream's producer",
        records.len(),
        settings.direct_writers
    );
    let next = Arc::new(AtomicU64::new(0));
    let before = CpuSample::now(None, broker);
    let mut writers = JoinSet::new();
    for _ in 0..settings.direct_writers {
        let (producer, records, next) = (producer.clone(), Arc::clone(&records), Arc::clone(&next));
        writers.spawn(async move {
            let mut latencies = Vec::new();
            let mut failed = 0u64;
            loop {
                let ticket = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(record) = records.get(ticket) else {
                    break;
                };
                let sent = Instant::now();
                match producer.send(TopicRole::Orders, record.clone()).await {
                    Ok(_) => latencies.push(sent.elapsed().as_micros() as u64),
                    Err(_) => failed += 1,
                }
            }
            (latencies, failed)
        });
    }
    let mut latencies = Vec::with_capacity(records.len());
    let mut failed = 0;
    while let Some(done) = writers.join_next().await {
        let (l, f) = done.map_err(|e| e.to_string())?;
        latencies.extend(l);
        failed += f;
    }
    let after = CpuSample::now(None, broker);
    shutdown.cancel();
    if failed > 0 {
        eprintln!("direct: {failed} sends failed");
    }
    latencies.sort_unstable();
    let written = latencies.len() as u64;
    Ok(Direct {
        records: records.len(),
        writers: settings.direct_writers,
        per_second: written as f64 / after.at.duration_since(before.at).as_secs_f64(),
        latencies,
        cpu: before.per(&after, written),
    })
}

/// The size of the record value shopstream writes for each body, on average.
fn record_size(bodies: &[Value]) -> Result<usize, String> {
    let mut total = 0;
    for body in bodies {
        let raw = serde_json::value::to_raw_value(body).map_err(|e| e.to_string())?;
        let details =
            validation::new_order(&raw).map_err(|e| format!("invalid body {body}: {e:?}"))?;
        total += order_event(
            Uuid::new_v4().to_string(),
            Utc::now(),
            EventBody::OrderCreated(details),
        )
        .to_bytes()
        .len();
    }
    Ok(total.div_ceil(bodies.len().max(1)))
}

fn order_event(order_id: String, time: chrono::DateTime<Utc>, body: EventBody) -> Event {
    Event {
        event_id: Uuid::new_v4().to_string(),
        event_type: EventType::OrderCreated,
        order_id,
        time,
        body,
    }
}

struct LoadReport {
    connections: usize,
    record_size: usize,
    warm_up: u64,
    result: LoadResult,
    /// CPU (user + system, from `/proc`) per answered order, from the first request until
    /// the last event was applied.
    cpu: CpuUse,
    /// From the last answer until the server had applied every event.
    drain: Duration,
}

/// Every connection count's run, then the references once.
struct LoadSweep {
    runs: Vec<LoadReport>,
    reference: Result<Reference, String>,
    direct: Result<Direct, String>,
}

/// The load runs (a fresh shopstream on fresh topics each), then Kafka's own producer on the
/// same machine: same record size, acks=all, linger.ms=5, at least a million records.
async fn load_sweep(
    settings: &Settings,
    bootstrap: &str,
    client: &Client,
    created: &mut Vec<String>,
) -> Result<LoadSweep, String> {
    let broker = BrokerPids::find(bootstrap);
    let mut runs = Vec::new();
    for &connections in &settings.connections {
        runs.push(load_phase(settings, connections, bootstrap, &broker, client, created).await?);
    }
    let record_size = runs.first().map_or(0, |r| r.record_size);
    let direct = direct_reference(settings, bootstrap, &broker, client, created).await;
    let topic = format!("{}perf", unique_prefix("reference"));
    create_topic(client, &topic, created).await?;
    let reference = producer_performance(
        bootstrap,
        &broker,
        &topic,
        settings.reference_records,
        record_size,
    )
    .await;
    Ok(LoadSweep {
        runs,
        reference,
        direct,
    })
}

/// CPU time (user + system) of process `pid` so far, from `/proc/<pid>/stat`.
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // Linux's USER_HZ is 100 on every architecture shopstream runs on.
    Some(Duration::from_millis(ticks * 10))
}

/// CPU time of this process's children that were waited for (`cutime` + `cstime`): what a
/// tool run to its end, and everything it waited for in turn, used.
fn children_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(13)?.parse::<u64>().ok()? + fields.get(14)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// The broker's JVM processes, whose CPU time `/proc` gives.
struct BrokerPids(Vec<u32>);

impl BrokerPids {
    /// From `SHOPSTREAM_BENCH_BROKER_PIDS` (comma-separated), or from `compose/kafka-local
    /// status` (its `KAFKA_LOCAL_DIR`): the running nodes whose broker address is in
    /// `bootstrap`. Empty (and said so) when neither names a live java process.
    fn find(bootstrap: &str) -> Self {
        let listed: Vec<u32> = match std::env::var("SHOPSTREAM_BENCH_BROKER_PIDS") {
            Ok(pids) => pids
                .split(',')
                .filter_map(|p| p.trim().parse().ok())
                .collect(),
            Err(_) => Command::new(support::repo_root().join("compose/kafka-local"))
                .arg("status")
                .output()
                .map(|out| {
                    String::from_utf8_lossy(&out.stdout)
                        .lines()
                        .filter(|line| line.ends_with("running"))
                        .filter(|line| {
                            line.split_whitespace()
                                .skip_while(|w| *w != "broker")
                                .nth(1)
                                .is_some_and(|addr| bootstrap.split(',').any(|b| b == addr))
                        })
                        .filter_map(|line| {
                            line.split_whitespace()
                                .skip_while(|w| *w != "pid")
                                .nth(1)?
                                .parse()
                                .ok()
                        })
                        .collect()
                })
                .unwrap_or_default(),
        };
        let pids: Vec<u32> = listed
            .into_iter()
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|comm| comm.trim() == "java")
            })
            .collect();
        if pids.is_empty() {
            eprintln!(
                "the broker's JVM pids are unknown (set KAFKA_LOCAL_DIR to its state dir, or \
                 SHOPSTREAM_BENCH_BROKER_PIDS): no broker CPU figures"
            );
        } else {
            eprintln!("broker JVM pids: {pids:?}");
        }
        Self(pids)
    }

    fn cpu(&self) -> Option<Duration> {
        if self.0.is_empty() {
            return None;
        }
        self.0.iter().map(|&pid| cpu_time(pid)).sum()
    }
}

/// CPU times of the server, the broker and this process (the load client) at one instant.
#[derive(Clone, Copy)]
struct CpuSample {
    at: Instant,
    server: Option<Duration>,
    broker: Option<Duration>,
    client: Option<Duration>,
}

/// CPU per unit of work between two samples, in µs, and the client's share of its one core.
#[derive(Clone, Copy, Default)]
struct CpuUse {
    server_us: Option<f64>,
    broker_us: Option<f64>,
    client_us: Option<f64>,
    /// Client CPU ÷ wall time: near 1.0, the single-threaded client is the limit.
    client_core: Option<f64>,
}

impl CpuSample {
    fn now(server: Option<u32>, broker: &BrokerPids) -> Self {
        Self {
            at: Instant::now(),
            server: server.and_then(cpu_time),
            broker: broker.cpu(),
            client: cpu_time(std::process::id()),
        }
    }

    fn per(&self, later: &CpuSample, count: u64) -> CpuUse {
        let per = |a: Option<Duration>, b: Option<Duration>| {
            a.zip(b)
                .map(|(a, b)| b.saturating_sub(a).as_secs_f64() * 1e6 / count.max(1) as f64)
        };
        let wall = later.at.duration_since(self.at).as_secs_f64();
        CpuUse {
            server_us: per(self.server, later.server),
            broker_us: per(self.broker, later.broker),
            client_us: per(self.client, later.client),
            client_core: self
                .client
                .zip(later.client)
                .map(|(a, b)| b.saturating_sub(a).as_secs_f64() / wall.max(1e-9)),
        }
    }
}

fn us(value: Option<f64>) -> String {
    value.map_or("-".to_string(), |v| format!("{v:.1}"))
}

/// Waits (bounded) until the server consumed and applied everything in its topics: every
/// partition's lag is 0 in `/api/kafka`.
async fn wait_applied(addr: SocketAddr) -> Result<Duration, String> {
    let started = Instant::now();
    loop {
        if let Ok((200, body)) = http::get(addr, "/api/kafka").await
            && let Some(partitions) = body["partitions"].as_array()
            && !partitions.is_empty()
            && partitions.iter().all(|p| p["lag"] == 0)
        {
            return Ok(started.elapsed());
        }
        if started.elapsed() > READY_TIMEOUT {
            return Err(format!(
                "shopstream did not apply its topics within {READY_TIMEOUT:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn load_phase(
    settings: &Settings,
    connections: usize,
    bootstrap: &str,
    broker: &BrokerPids,
    client: &Client,
    created: &mut Vec<String>,
) -> Result<LoadReport, String> {
    let prefix = unique_prefix("load");
    for role in TopicRole::ALL {
        create_topic(client, &format!("{prefix}{role}"), created).await?;
    }
    let bodies = order_bodies(256);
    let record_size = record_size(&bodies)?;
    let bodies: Arc<Vec<Bytes>> = Arc::new(
        bodies
            .iter()
            .map(|b| Bytes::from(serde_json::to_vec(b).expect("JSON")))
            .collect(),
    );

    eprintln!("load: starting shopstream with --topic-prefix {prefix}");
    let mut server = Server::start(bootstrap, &["--topic-prefix", &prefix]);
    wait_caught_up(&server).await?;

    let warm_up = (settings.requests / 10).clamp(connections as u64, 2_000);
    eprintln!("load: warm-up, {warm_up} requests");
    let warm = run_load(
        server.addr,
        &bodies,
        connections,
        warm_up,
        Duration::from_secs(30),
    )
    .await;
    if warm.ok == 0 {
        return Err(format!(
            "no request succeeded during the warm-up: {:?}; logs:\n{}",
            warm.failures,
            tail(&server.logs(), 20)
        ));
    }
    eprintln!(
        "load: {} requests on {} connections (at most {:?})",
        settings.requests, connections, settings.max_duration
    );
    // The warm-up's events are applied before the measured window opens.
    wait_applied(server.addr).await?;
    let before = CpuSample::now(Some(server.pid()), broker);
    let result = run_load(
        server.addr,
        &bodies,
        connections,
        settings.requests,
        settings.max_duration,
    )
    .await;
    let drain = wait_applied(server.addr).await;
    let after = CpuSample::now(Some(server.pid()), broker);
    let _ = server.terminate(STOP_TIMEOUT);
    drop(server);
    let drain = drain?;
    if result.ok == 0 {
        return Err(format!("no request succeeded: {:?}", result.failures));
    }
    let mut cpu = before.per(&after, result.ok);
    // The client's share of its core while it was sending, not while the server drained.
    cpu.client_core = cpu.client_core.map(|share| {
        share * after.at.duration_since(before.at).as_secs_f64() / result.elapsed.as_secs_f64()
    });

    Ok(LoadReport {
        connections,
        record_size,
        warm_up: warm.ok,
        cpu,
        drain,
        result,
    })
}

impl LoadSweep {
    fn print(&self, settings: &Settings) {
        let record_size = self.runs.first().map_or(0, |r| r.record_size);
        println!();
        println!(
            "POST /api/orders: keep-alive HTTP/1.1 connections, {} requests asked per run (time \
             limit {:?}), a fresh shopstream on fresh topics per run; CPU per order from the \
             first request until every event was applied",
            settings.requests, settings.max_duration,
        );
        let kafka = self.reference.as_ref().ok();
        let direct = self.direct.as_ref().ok();
        println!(
            "{:>5} | {:>7} | {:>7} | {:>7} | {:>7} | {:>8} | {:>8} | {:>8} | {:>6} | {:>8} | {:>7} | {:>8}",
            "conns",
            "per s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "srv µs",
            "brk µs",
            "client",
            "drain ms",
            "÷ Kafka",
            "÷ direct"
        );
        println!("{}", "-".repeat(5 + 7 * 5 + 8 * 5 + 6 + 11 * 3));
        for run in &self.runs {
            let r = &run.result;
            let rate = r.ok as f64 / r.elapsed.as_secs_f64();
            println!(
                "{:>5} | {:>7.0} | {:>7} | {:>7} | {:>7} | {:>8} | {:>8} | {:>8} | {:>6} | {:>8} | {:>7} | {:>8}",
                run.connections,
                rate,
                ms(percentile(&r.latencies, 50.0)),
                ms(percentile(&r.latencies, 90.0)),
                ms(percentile(&r.latencies, 99.0)),
                ms(r.latencies.last().copied().unwrap_or(0)),
                us(run.cpu.server_us),
                us(run.cpu.broker_us),
                run.cpu
                    .client_core
                    .map_or("-".to_string(), |c| format!("{:.0}%", c * 100.0)),
                run.drain.as_millis(),
                kafka.map_or("-".to_string(), |k| format!("{:.3}", rate / k.per_second)),
                direct.map_or("-".to_string(), |d| format!("{:.3}", rate / d.per_second)),
            );
            let failed: u64 = r.failures.values().sum();
            if failed > 0 || r.timed_out {
                println!(
                    "{:>5}   201: {}, failed: {failed} {:?}{}, after {} warm-up requests",
                    "",
                    r.ok,
                    r.failures,
                    if r.timed_out {
                        ", time limit reached"
                    } else {
                        ""
                    },
                    run.warm_up
                );
            }
        }
        println!(
            "(srv / brk: CPU µs per order of the shopstream process / of the broker's JVMs; \
             client: the load client's share of its one core while sending; drain: from the \
             last answer until the server had applied every event)"
        );
        println!("references, same record size ({record_size} bytes), {PARTITIONS} partitions:");
        match &self.direct {
            Ok(d) => println!(
                "  direct (shopstream's producer lanes + rskafka in the bench process, no HTTP, \
                 no consumer): {} records from {} writers, acks=all: {:.0} records/s, p50 {} ms, \
                 p99 {} ms; CPU µs per record: client {} (bench process), broker {}",
                d.records,
                d.writers,
                d.per_second,
                ms(percentile(&d.latencies, 50.0)),
                ms(percentile(&d.latencies, 99.0)),
                us(d.cpu.client_us),
                us(d.cpu.broker_us),
            ),
            Err(e) => println!("  direct: failed, no ratio: {e}"),
        }
        match &self.reference {
            Ok(k) => {
                println!(
                    "  Kafka ProducerPerformance, {} records, acks=all, linger.ms=5: {:.0} \
                     records/s (avg {:.2} ms, p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms, max \
                     {:.0} ms); CPU µs per record: client {} (its JVM, start included), broker {}",
                    k.records,
                    k.per_second,
                    k.avg_ms,
                    k.p50_ms,
                    k.p95_ms,
                    k.p99_ms,
                    k.max_ms,
                    us(k.cpu.client_us),
                    us(k.cpu.broker_us),
                );
                println!("  ProducerPerformance said: {}", k.line);
            }
            Err(e) => println!("  Kafka ProducerPerformance failed, no ratio: {e}"),
        }
        if let (Some(best), Some(d)) = (
            self.runs
                .iter()
                .filter_map(|r| r.cpu.server_us.map(|us| (us, r)))
                .min_by(|a, b| a.0.total_cmp(&b.0)),
            direct,
        ) && let Some(client_us) = d.cpu.client_us
        {
            println!(
                "  the server's lowest CPU per order ({:.1} µs at {} connections) less the direct \
                 producer's {:.1} µs per record: {:.1} µs for HTTP, the event, consuming and \
                 applying",
                best.0,
                best.1.connections,
                client_us,
                best.0 - client_us
            );
        }
        println!(
            "(shopstream: closed loop, latency per HTTP request; ProducerPerformance: open loop, \
             latency per record inside its own batches. Client, server and broker share the \
             machine's cores.)"
        );
    }
}

// ------------------------------------------------------------------------------------------
// Part 2: start-up with a full log, with and without a store.

struct StartRun {
    wall: Duration,
    listening: Duration,
    replayed: Option<u64>,
    server_elapsed_ms: Option<u64>,
    from: String,
    orders_seen: Option<u64>,
}

struct StartupReport {
    orders: usize,
    fill_time: Duration,
    fill_bytes: usize,
    cold: StartRun,
    stop_time: Duration,
    store_bytes: u64,
    warm: StartRun,
    in_process_replay: Duration,
}

/// Produces `count` order.created records into `topic` straight through rskafka, shaped
/// as shopstream writes them; returns every record value with where it landed.
async fn fill_orders(
    client: &Client,
    topic: &str,
    count: usize,
) -> Result<Vec<(Vec<u8>, Position)>, String> {
    let mut rng = rand::rng();
    let now = Utc::now();
    let mut per_partition: Vec<Vec<Record>> = (0..PARTITIONS).map(|_| Vec::new()).collect();
    for i in 0..count {
        let order_id = Uuid::new_v4().to_string();
        let time = now - TimeDelta::milliseconds((count - i) as i64);
        let event = order_event(
            order_id.clone(),
            time,
            EventBody::OrderCreated(demo::demo_order(&mut rng)),
        );
        let partition = partition_for_key(order_id.as_bytes(), PARTITIONS);
        per_partition[partition as usize].push(Record {
            key: Some(order_id.into_bytes()),
            value: Some(event.to_bytes()),
            headers: BTreeMap::from([
                (headers::EVENT_TYPE.to_string(), b"order.created".to_vec()),
                (
                    headers::CONTENT_TYPE.to_string(),
                    b"application/json".to_vec(),
                ),
                (headers::PRODUCER.to_string(), b"shopstream-bench".to_vec()),
            ]),
            timestamp: time,
        });
    }
    let mut tasks = JoinSet::new();
    for (partition, records) in per_partition.into_iter().enumerate() {
        let partition = partition as i32;
        let client = kafka_call(
            "partition client",
            client.partition_client(topic, partition, UnknownTopicHandling::Retry),
        )
        .await?;
        tasks.spawn(async move {
            let mut written = Vec::with_capacity(records.len());
            let mut records = records.into_iter().peekable();
            while records.peek().is_some() {
                let mut batch = Vec::new();
                let mut bytes = 0;
                while let Some(record) = records
                    .next_if(|_| batch.len() < FILL_BATCH_RECORDS && bytes < FILL_BATCH_BYTES)
                {
                    bytes += record.approximate_size();
                    batch.push(record);
                }
                let values: Vec<Vec<u8>> = batch
                    .iter()
                    .map(|r| r.value.clone().unwrap_or_default())
                    .collect();
                let offsets =
                    kafka_call("produce", client.produce(batch, Compression::NoCompression))
                        .await?;
                for (value, offset) in values.into_iter().zip(offsets) {
                    let position = Position {
                        topic: TopicRole::Orders,
                        partition,
                        offset,
                    };
                    written.push((value, position));
                }
            }
            Ok::<_, String>(written)
        });
    }
    let mut all = Vec::with_capacity(count);
    while let Some(done) = tasks.join_next().await {
        all.extend(done.map_err(|e| e.to_string())??);
    }
    Ok(all)
}

/// Starts shopstream on `data_dir` and times it until it caught up with the log.
async fn timed_start(
    bootstrap: &str,
    prefix: &str,
    data_dir: PathBuf,
) -> Result<(Server, StartRun), String> {
    let started = Instant::now();
    let server = Server::start_with_data_dir(bootstrap, &["--topic-prefix", prefix], data_dir);
    let listening = started.elapsed();
    wait_caught_up(&server).await?;
    let wall = started.elapsed();
    let caught_up = log_line(&server, "caught up with the log");
    let orders_seen = match http::get(server.addr, "/api/stats").await {
        Ok((200, stats)) => stats["orders"]["total"].as_u64(),
        _ => None,
    };
    let run = StartRun {
        wall,
        listening,
        replayed: caught_up
            .as_ref()
            .and_then(|l| l["replayed_records"].as_u64()),
        server_elapsed_ms: caught_up.as_ref().and_then(|l| l["elapsed_ms"].as_u64()),
        from: caught_up
            .as_ref()
            .and_then(|l| l["from"].as_str())
            .unwrap_or("?")
            .to_string(),
        orders_seen,
    };
    Ok((server, run))
}

async fn startup_phase(
    settings: &Settings,
    bootstrap: &str,
    client: &Client,
    created: &mut Vec<String>,
) -> Result<StartupReport, String> {
    let prefix = unique_prefix("startup");
    for role in TopicRole::ALL {
        create_topic(client, &format!("{prefix}{role}"), created).await?;
    }
    let orders = settings.startup_orders;
    eprintln!("startup: writing {orders} orders into {prefix}orders");
    let fill_started = Instant::now();
    let records = fill_orders(client, &format!("{prefix}orders"), orders).await?;
    let fill_time = fill_started.elapsed();
    let fill_bytes = records.iter().map(|(v, _)| v.len()).sum();

    // Reference 1: the same records decoded and applied here, on one thread, no Kafka.
    let layout = TopicLayout::uniform(&prefix, PARTITIONS);
    let replay_started = Instant::now();
    let (store, _scratch) = Store::temporary(64 << 20);
    store
        .check_layout(&layout)
        .await
        .map_err(|e| e.to_string())?;
    let record_time = Utc::now();
    let mut per_partition: BTreeMap<i32, Vec<FetchedRecord>> = BTreeMap::new();
    for (value, position) in &records {
        let event = Event::decode(
            value,
            *position,
            &layout.get(position.topic).name,
            record_time,
        )
        .map_err(|e| format!("a record we wrote does not decode: {e}"))?;
        let batch = per_partition.entry(position.partition).or_default();
        batch.push(FetchedRecord {
            offset: position.offset,
            key: Some(event.order_id.clone()),
            record_time,
            decoded: Ok((event, String::from_utf8_lossy(value).into_owned())),
            idempotency: None,
        });
        if batch.len() == 10_000 {
            let next = position.offset + 1;
            let full = std::mem::take(batch);
            store
                .apply_fetched(TopicRole::Orders, position.partition, full, next)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    for (partition, batch) in per_partition {
        if let Some(last) = batch.last() {
            let next = last.offset + 1;
            store
                .apply_fetched(TopicRole::Orders, partition, batch, next)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    let in_process_replay = replay_started.elapsed();
    drop(records);
    tokio::task::spawn_blocking(move || store.close())
        .await
        .map_err(|e| e.to_string())?;

    let data_dir = std::env::temp_dir().join(format!("{}data", prefix));
    eprintln!("startup: shopstream on an empty data dir");
    let (mut server, cold) = timed_start(bootstrap, &prefix, data_dir).await?;
    let stop_started = Instant::now();
    let status = server.terminate(STOP_TIMEOUT);
    let stop_time = stop_started.elapsed();
    if !status.success() {
        return Err(format!("shopstream exited with {status} after SIGTERM"));
    }
    let data_dir = server.into_data_dir();
    let store_bytes =
        shopstream::model::store::disk_bytes(&data_dir.join(shopstream::model::store::DIR_NAME));
    if store_bytes == 0 {
        return Err("no store after SIGTERM".into());
    }

    eprintln!("startup: shopstream again, on the same data dir (with its store)");
    let (mut server, warm) = timed_start(bootstrap, &prefix, data_dir).await?;
    let _ = server.terminate(STOP_TIMEOUT);
    drop(server);

    Ok(StartupReport {
        orders,
        fill_time,
        fill_bytes,
        cold,
        stop_time,
        store_bytes,
        warm,
        in_process_replay,
    })
}

impl StartupReport {
    fn print(&self) {
        let secs = |d: Duration| format!("{:.3}", d.as_secs_f64());
        let opt = |v: Option<u64>| v.map_or("?".to_string(), |v| v.to_string());
        println!();
        println!(
            "Start-up with {} orders in the log ({} partitions, {:.1} MB of record values)",
            self.orders,
            PARTITIONS,
            self.fill_bytes as f64 / 1e6
        );
        println!(
            "{:<44} | {:>9} | {:>9} | {:>10} | {:>9} | {:>16} | {:>8}",
            "", "wall s", "listen s", "server ms", "replayed", "from", "orders"
        );
        println!("{}", "-".repeat(44 + 9 * 3 + 10 + 16 + 8 + 6 * 3));
        for (name, run) in [
            ("empty data dir (replay from earliest)", &self.cold),
            ("after SIGTERM (store + its offsets)", &self.warm),
        ] {
            println!(
                "{:<44} | {:>9} | {:>9} | {:>10} | {:>9} | {:>16} | {:>8}",
                name,
                secs(run.wall),
                secs(run.listening),
                opt(run.server_elapsed_ms),
                opt(run.replayed),
                run.from,
                opt(run.orders_seen),
            );
        }
        let ratio = self.warm.wall.as_secs_f64() / self.cold.wall.as_secs_f64();
        println!("ratio: with the store / without = {ratio:.3} (wall time to caught_up)");
        let replay_rate =
            self.cold.replayed.unwrap_or(self.orders as u64) as f64 / self.cold.wall.as_secs_f64();
        println!(
            "replay rate (cold, wall): {replay_rate:.0} records/s; SIGTERM to exit: {} s; \
             store {} bytes ({:.0} bytes/order)",
            secs(self.stop_time),
            self.store_bytes,
            self.store_bytes as f64 / self.orders as f64
        );
        println!("references measured in this run:");
        println!(
            "  decode + apply of the same records into a store in-process (no Kafka): {} s; \
             cold start / it = {:.2}",
            secs(self.in_process_replay),
            self.cold.wall.as_secs_f64() / self.in_process_replay.as_secs_f64()
        );
        println!(
            "  rskafka produce of the {} records (batches of up to {FILL_BATCH_RECORDS}, acks=all): \
             {} s = {:.0} records/s",
            self.orders,
            secs(self.fill_time),
            self.orders as f64 / self.fill_time.as_secs_f64()
        );
    }
}
