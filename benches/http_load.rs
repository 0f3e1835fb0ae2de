//! Load run of the real `shopstream` binary against a real broker, with references measured
//! on the same machine in the same run.
//!
//! `cargo bench --bench http_load [-- load|startup]`
//!
//! 1. **POST rate.** The release binary runs with a fresh `--topic-prefix`; C concurrent
//!    keep-alive HTTP/1.1 connections send `POST /api/orders` (valid demo orders) until a
//!    fixed count is answered or a time limit passes. Reported: requests/s and latency
//!    percentiles, and the server's CPU time per order (from `/proc`), for each connection
//!    count. Reference: Kafka's own `org.apache.kafka.tools.ProducerPerformance`, same record
//!    size, `acks=all`, `linger.ms=5`, a million records (so that the JVM's start and warm-up
//!    do not dominate it), to a topic with the same partition count, so the result reads as
//!    "shopstream's POST rate is x of what the broker takes from its reference producer on
//!    this machine".
//! 2. **Start-up with a full log.** Orders are produced straight into a fresh prefix's
//!    `orders` topic (rskafka, big batches, shopstream's record shape), then shopstream starts
//!    on an empty data dir and is timed until `/readyz` says `caught_up`; it is stopped with
//!    SIGTERM and started again on the same data dir (its store and offsets), timed again.
//!    Reference: the same records decoded and applied into a temporary store in this process.
//!
//! The broker is the one in `KAFKA_BOOTSTRAP`, or the local one of `compose/kafka-local`
//! (started if needed, and stopped at the end only when this run started it). Everything
//! talks to 127.0.0.1; every wait is bounded; the topics this run created are deleted.
//!
//! Environment (all optional): `SHOPSTREAM_BENCH_CONNECTIONS` (`32,64,256`: one run per count),
//! `SHOPSTREAM_BENCH_REFERENCE_RECORDS` (1000000, never fewer), `SHOPSTREAM_BENCH_REQUESTS`
//! (20000), `SHOPSTREAM_BENCH_SECONDS` (20, the longest the measured load may run),
//! `SHOPSTREAM_BENCH_STARTUP_ORDERS` (100000), `SHOPSTREAM_BENCH_KEEP_BROKER=1` (never stop
//! the local broker).

mod common;
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
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rskafka::client::Client;
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::record::Record;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use uuid::Uuid;

use common::{
    CONNECT_TIMEOUT, MAX_CONSECUTIVE_FAILURES, PARTITIONS, REQUEST_TIMEOUT, STOP_TIMEOUT,
    create_topic, delete_topics, kafka_call, order_bodies,
};
use shopstream::domain::demo;
use shopstream::domain::event::{Event, EventBody, EventType, Position, TopicRole, headers};
use shopstream::domain::partitioner::partition_for_key;
use shopstream::domain::validation;
use shopstream::kafka::TopicLayout;
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
    startup_orders: usize,
    keep_broker: bool,
    run_load: bool,
    run_startup: bool,
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
                .unwrap_or_else(|| vec![32, 64, 256]),
            reference_records: number("SHOPSTREAM_BENCH_REFERENCE_RECORDS", 1_000_000, 20_000_000)
                .max(1_000_000),
            requests: number("SHOPSTREAM_BENCH_REQUESTS", 20_000, 5_000_000),
            max_duration: Duration::from_secs(number("SHOPSTREAM_BENCH_SECONDS", 20, 600)),
            startup_orders: number("SHOPSTREAM_BENCH_STARTUP_ORDERS", 100_000, 5_000_000) as usize,
            keep_broker: std::env::var("SHOPSTREAM_BENCH_KEEP_BROKER").is_ok_and(|v| v == "1"),
            run_load: selected("load"),
            run_startup: selected("startup"),
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
    match (load, startup) {
        (Some(Err(e)), _) | (_, Some(Err(e))) => Err(e),
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
            conn.ready().await.map_err(|e| format!("connection: {e}"))?;
            let response = conn
                .send_request(request)
                .await
                .map_err(|e| format!("request: {e}"))?;
            let status = response.status().as_u16();
            response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("body: {e}"))?;
            Ok::<u16, String>(status)
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
    })
}

async fn producer_performance(
    bootstrap: &str,
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
    let output = tokio::task::spawn_blocking(move || {
        support::run_with_stdin(&mut command, b"", REFERENCE_TIMEOUT)
    })
    .await
    .map_err(|e| e.to_string())??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    parse_reference(&stdout).ok_or_else(|| {
        format!(
            "ProducerPerformance gave no summary ({}):\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
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
    /// The server's CPU time (user + system, from `/proc`) per answered order, in µs.
    server_cpu_per_order_us: Option<f64>,
}

/// Every connection count's run, then the reference once.
struct LoadSweep {
    runs: Vec<LoadReport>,
    reference: Result<Reference, String>,
}

/// The load runs (a fresh shopstream on fresh topics each), then Kafka's own producer on the
/// same machine: same record size, acks=all, linger.ms=5, at least a million records.
async fn load_sweep(
    settings: &Settings,
    bootstrap: &str,
    client: &Client,
    created: &mut Vec<String>,
) -> Result<LoadSweep, String> {
    let mut runs = Vec::new();
    for &connections in &settings.connections {
        runs.push(load_phase(settings, connections, bootstrap, client, created).await?);
    }
    let record_size = runs.first().map_or(0, |r| r.record_size);
    let topic = format!("{}perf", unique_prefix("reference"));
    create_topic(client, &topic, created).await?;
    let reference =
        producer_performance(bootstrap, &topic, settings.reference_records, record_size).await;
    Ok(LoadSweep { runs, reference })
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

async fn load_phase(
    settings: &Settings,
    connections: usize,
    bootstrap: &str,
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
    let cpu_before = cpu_time(server.pid());
    let result = run_load(
        server.addr,
        &bodies,
        connections,
        settings.requests,
        settings.max_duration,
    )
    .await;
    let cpu = cpu_before.zip(cpu_time(server.pid()));
    let _ = server.terminate(STOP_TIMEOUT);
    drop(server);
    if result.ok == 0 {
        return Err(format!("no request succeeded: {:?}", result.failures));
    }

    Ok(LoadReport {
        connections,
        record_size,
        warm_up: warm.ok,
        server_cpu_per_order_us: cpu
            .map(|(before, after)| (after - before).as_secs_f64() * 1e6 / result.ok as f64),
        result,
    })
}

impl LoadSweep {
    fn print(&self, settings: &Settings) {
        println!();
        println!(
            "POST /api/orders: keep-alive HTTP/1.1 connections, {} requests asked per run (time \
             limit {:?}), a fresh shopstream on fresh topics per run",
            settings.requests, settings.max_duration,
        );
        let reference = self.reference.as_ref().ok();
        println!(
            "{:>11} | {:>9} | {:>8} | {:>8} | {:>8} | {:>8} | {:>8} | {:>12} | {:>10}",
            "connections",
            "per s",
            "mean ms",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "CPU µs/order",
            "÷ Kafka"
        );
        println!("{}", "-".repeat(11 + 9 + 8 * 5 + 12 + 10 + 3 * 8));
        for run in &self.runs {
            let r = &run.result;
            let rate = r.ok as f64 / r.elapsed.as_secs_f64();
            let mean = r.latencies.iter().sum::<u64>() as f64 / r.latencies.len().max(1) as f64;
            println!(
                "{:>11} | {:>9.0} | {:>8.2} | {:>8} | {:>8} | {:>8} | {:>8} | {:>12} | {:>10}",
                run.connections,
                rate,
                mean / 1000.0,
                ms(percentile(&r.latencies, 50.0)),
                ms(percentile(&r.latencies, 90.0)),
                ms(percentile(&r.latencies, 99.0)),
                ms(r.latencies.last().copied().unwrap_or(0)),
                run.server_cpu_per_order_us
                    .map_or("-".to_string(), |us| format!("{us:.1}")),
                reference.map_or("-".to_string(), |k| format!("{:.3}", rate / k.per_second)),
            );
            let failed: u64 = r.failures.values().sum();
            if failed > 0 || r.timed_out {
                println!(
                    "{:>11}   201: {}, failed: {failed} {:?}{}, after {} warm-up requests",
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
        match &self.reference {
            Ok(k) => {
                println!(
                    "reference: Kafka ProducerPerformance, {} records of {} bytes, acks=all, \
                     linger.ms=5: {:.0} records/s (avg {:.2} ms, p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms, \
                     max {:.0} ms)",
                    k.records,
                    self.runs.first().map_or(0, |r| r.record_size),
                    k.per_second,
                    k.avg_ms,
                    k.p50_ms,
                    k.p95_ms,
                    k.p99_ms,
                    k.max_ms
                );
                println!("ProducerPerformance said: {}", k.line);
            }
            Err(e) => println!("Kafka ProducerPerformance failed, no ratio: {e}"),
        }
        println!(
            "(record value {} bytes, {PARTITIONS} partitions. shopstream: closed loop, latency \
             per HTTP request, CPU of the server process only (the client and the broker share \
             the machine); the tool: open loop, latency per record inside its own batches)",
            self.runs.first().map_or(0, |r| r.record_size)
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
