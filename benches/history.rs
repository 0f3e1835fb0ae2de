//! How shopstream behaves as the shop's history grows: the same measurements with N orders
//! already in the log, for a few N, side by side.
//!
//! `cargo bench --bench history`
//!
//! For each N (default 0, 100 000 and 1 000 000):
//! 1. Fresh topics with a unique prefix (`orders`, `payments`, `deliveries`, 3 partitions).
//! 2. N orders written straight into the log with rskafka, in big batches: per order an
//!    `order.created`, a `payment.processed` (SUCCESS) and a `delivery.created` (Shipped), keyed
//!    by the order id and partitioned as shopstream does, one order per millisecond ending
//!    now (so the per-minute statistics have data).
//! 3. The release binary starts on an empty data dir; timed until `/readyz` says `caught_up`
//!    (the replay from empty: 3N events).
//! 4. A write load (32 keep-alive HTTP/1.1 connections sending `POST /api/orders`) for a fixed
//!    time, and meanwhile, each on its own connection, paced reads whose latency is measured:
//!    the newest page, a status filter, a deep page through the cursor (page 1 000, or the
//!    deepest there is), a `q` search for a customer's name, `/api/stats`, and the detail of
//!    random orders written in step 2.
//! 5. The detail of every 10th order written in step 2, a few connections in parallel.
//! 6. SIGTERM, timed until the process exits; the size of the data dir.
//! 7. A restart on the same data dir, timed until `caught_up` (the store and its offsets).
//!
//! Peak RSS is the child's `VmHWM` (`/proc/<pid>/status`), reset at the start of each phase
//! through `/proc/<pid>/clear_refs` where the kernel allows it (then each figure is the peak
//! of that phase alone; otherwise the peak since the start, which the output says).
//! Figures are printed, nothing is asserted on timings.
//!
//! The broker is the one in `KAFKA_BOOTSTRAP`, or the local one of `compose/kafka-local`
//! (started if needed, and stopped at the end only when this run started it). Everything
//! talks to 127.0.0.1; every wait is bounded; the topics this run created are deleted.
//!
//! Environment (all optional): `SHOPSTREAM_BENCH_HISTORY_ORDERS` (`0,100000,1000000`: the
//! list of N, comma separated), `SHOPSTREAM_BENCH_HISTORY_SECONDS` (10: how long the write
//! load runs), `SHOPSTREAM_BENCH_KEEP_BROKER=1` (never stop the local broker),
//! `SHOPSTREAM_BENCH_BINARY` (the shopstream binary to measure, e.g. the static musl build
//! that `compose/static-builds` makes; default: this build's).

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use http_body_util::Full;
use hyper::Request;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rand::Rng;
use rskafka::client::Client;
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::record::Record;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use uuid::Uuid;

use common::{
    CONNECT_TIMEOUT, MAX_CONSECUTIVE_FAILURES, PARTITIONS, REQUEST_TIMEOUT, STOP_TIMEOUT,
    create_topic, delete_topics, kafka_call, order_bodies,
};
use shopstream::domain::demo;
use shopstream::domain::event::{
    DeliveryDetails, DeliveryStatus, Event, EventBody, EventType, PaymentDetails, PaymentStatus,
    TopicRole, headers,
};
use shopstream::domain::partitioner::partition_for_key;

/// Keep-alive connections of the write load.
const WRITE_CONNECTIONS: usize = 32;
/// Connections reading the detail of every 10th order.
const DETAIL_CONNECTIONS: usize = 4;
/// Each read probe sends one request per this interval (or when the previous one answered,
/// if that took longer): latency under the write load, not a read load of its own.
const READ_INTERVAL: Duration = Duration::from_millis(20);
/// Cursor hops to the deep page.
const DEEP_PAGE_HOPS: usize = 1_000;
/// Page size of every list request.
const PAGE: usize = 50;
/// `POST /api/orders?wait=true` before the measured load (warms up, and gives orders to look
/// at when N = 0).
const WARM_UP_REQUESTS: usize = 320;
/// Longest shopstream may take to listen.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest shopstream may take to catch up with the log (a replay of 3 million events, whose
/// rate falls as the store grows: about 9,000 events/s at N = 1 000 000 on 2 cores).
const READY_TIMEOUT: Duration = Duration::from_secs(3600);
/// Longest the detail reads of every 10th order may take altogether.
const DETAIL_TIMEOUT: Duration = Duration::from_secs(900);
/// Records per produce request when filling the log.
const FILL_BATCH_RECORDS: usize = 1_000;
/// Value bytes per produce request when filling the log (below the broker's 1 MiB default).
const FILL_BATCH_BYTES: usize = 700 * 1024;
/// Log lines of the child kept in memory (it logs at warn: there should be few).
const MAX_LOG_LINES: usize = 10_000;

struct Settings {
    orders: Vec<usize>,
    load_duration: Duration,
    keep_broker: bool,
}

impl Settings {
    fn from_env() -> Result<Self, String> {
        let orders = match std::env::var("SHOPSTREAM_BENCH_HISTORY_ORDERS") {
            Ok(list) if !list.trim().is_empty() => {
                let mut orders = Vec::new();
                for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let n = item.replace('_', "").parse::<usize>().map_err(|e| {
                        format!("SHOPSTREAM_BENCH_HISTORY_ORDERS: {item:?} is not a count: {e}")
                    })?;
                    if n > 10_000_000 {
                        return Err(format!(
                            "SHOPSTREAM_BENCH_HISTORY_ORDERS: {n} is more than 10 000 000"
                        ));
                    }
                    orders.push(n);
                }
                orders
            }
            _ => vec![0, 100_000, 1_000_000],
        };
        let mut orders = orders;
        orders.sort_unstable();
        orders.dedup();
        if orders.is_empty() {
            return Err("SHOPSTREAM_BENCH_HISTORY_ORDERS names no count".into());
        }
        let seconds = std::env::var("SHOPSTREAM_BENCH_HISTORY_SECONDS")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(10, |v| v.clamp(1, 600));
        Ok(Self {
            orders,
            load_duration: Duration::from_secs(seconds),
            keep_broker: std::env::var("SHOPSTREAM_BENCH_KEEP_BROKER").is_ok_and(|v| v == "1"),
        })
    }
}

fn main() {
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let command_line: Vec<String> = std::env::args().collect();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!("shopstream history benchmark: {}", command_line.join(" "));
    println!(
        "N (orders already in the log): {}; write load {:?} on {WRITE_CONNECTIONS} connections; \
         {cores} cores shared by this client, shopstream and the broker",
        settings
            .orders
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        settings.load_duration,
    );
    common::run_with_broker(settings.keep_broker, |bootstrap| async move {
        run(&settings, &bootstrap).await
    });
}

async fn run(settings: &Settings, bootstrap: &str) -> Result<(), String> {
    let client = common::connect(bootstrap).await?;
    let mut results = Vec::new();
    let mut failed = Vec::new();
    for &n in &settings.orders {
        eprintln!("=== N = {n} ===");
        let mut created = Vec::new();
        let outcome = one_history(settings, bootstrap, &client, n, &mut created).await;
        delete_topics(&client, &created).await;
        match outcome {
            Ok(result) => results.push(result),
            Err(e) => {
                eprintln!("N = {n} failed: {e}");
                failed.push(format!("N = {n}: {e}"));
            }
        }
    }
    print_report(settings, &results);
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("; "))
    }
}

// ------------------------------------------------------------------------------------------
// Filling the log.

/// What was written into the log.
struct History {
    /// Every order id, oldest first.
    order_ids: Vec<String>,
    /// A word of a customer's name that the log holds, for the `q` search.
    customer_word: Option<String>,
    value_bytes: usize,
    elapsed: Duration,
}

fn record(key: &str, event: &Event) -> Record {
    Record {
        key: Some(key.as_bytes().to_vec()),
        value: Some(event.to_bytes()),
        headers: BTreeMap::from([
            (
                headers::EVENT_TYPE.to_string(),
                event.event_type.as_str().as_bytes().to_vec(),
            ),
            (
                headers::CONTENT_TYPE.to_string(),
                b"application/json".to_vec(),
            ),
            (headers::PRODUCER.to_string(), b"shopstream-bench".to_vec()),
        ]),
        timestamp: event.time,
    }
}

/// The three events of one order's history: placed at `time`, paid 100 µs later, shipped
/// 100 µs after that.
fn order_history(rng: &mut impl Rng, order_id: &str, time: DateTime<Utc>) -> [Event; 3] {
    let details = demo::demo_order(rng);
    let carrier = demo::demo_carrier(rng);
    let payment = PaymentDetails {
        payment_id: Uuid::new_v4().to_string(),
        amount: details.amount,
        currency: details.currency.clone(),
        method: demo::demo_payment_method(rng).to_string(),
        status: PaymentStatus::Success,
        failure_reason: None,
    };
    let delivery = DeliveryDetails {
        delivery_id: Uuid::new_v4().to_string(),
        address: details.address.clone(),
        status: DeliveryStatus::Shipped,
        estimated_date: Some(demo::estimated_delivery(time.date_naive(), carrier)),
        carrier: Some(carrier.to_string()),
    };
    let event = |event_type, time, body| Event {
        event_id: Uuid::new_v4().to_string(),
        event_type,
        order_id: order_id.to_string(),
        time,
        body,
    };
    [
        event(
            EventType::OrderCreated,
            time,
            EventBody::OrderCreated(details),
        ),
        event(
            EventType::PaymentProcessed,
            time + TimeDelta::microseconds(100),
            EventBody::PaymentProcessed(payment),
        ),
        event(
            EventType::DeliveryCreated,
            time + TimeDelta::microseconds(200),
            EventBody::Delivery(delivery),
        ),
    ]
}

/// The last word of a customer name when it is plain ASCII letters ("Dupont"), lower case.
fn plain_last_name(customer_name: &str) -> Option<String> {
    let word = customer_name.split_whitespace().last()?;
    (word.len() > 2 && word.chars().all(|c| c.is_ascii_alphabetic()))
        .then(|| word.to_ascii_lowercase())
}

/// Writes `count` orders, each with its payment and delivery, into the three topics of
/// `prefix`: one producer task per partition, fed in batches through a bounded channel, so
/// that memory stays flat whatever the count.
async fn fill_log(client: &Client, prefix: &str, count: usize) -> Result<History, String> {
    let started = Instant::now();
    let mut senders = Vec::new();
    let mut tasks = JoinSet::new();
    for role in TopicRole::ALL {
        let topic = format!("{prefix}{role}");
        for partition in 0..PARTITIONS {
            let partition_client = kafka_call(
                &format!("partition client {topic}/{partition}"),
                client.partition_client(topic.as_str(), partition, UnknownTopicHandling::Retry),
            )
            .await?;
            let (tx, mut rx) = mpsc::channel::<Vec<Record>>(2);
            senders.push(tx);
            let what = format!("produce to {topic}/{partition}");
            tasks.spawn(async move {
                let mut written = 0usize;
                while let Some(batch) = rx.recv().await {
                    let n = batch.len();
                    let offsets = kafka_call(
                        &what,
                        partition_client.produce(batch, Compression::NoCompression),
                    )
                    .await?;
                    if offsets.len() != n {
                        return Err(format!("{what}: {n} records sent, {} acked", offsets.len()));
                    }
                    written += n;
                }
                Ok::<usize, String>(written)
            });
        }
    }
    // Buffers per (topic, partition), in the order of `senders`.
    let mut buffers: Vec<(Vec<Record>, usize)> = (0..senders.len())
        .map(|_| (Vec::with_capacity(FILL_BATCH_RECORDS), 0))
        .collect();
    let mut rng = rand::rng();
    // One order per millisecond, the newest a second ago (never in the future, even with the
    // payment and delivery after it).
    let newest = Utc::now() - TimeDelta::seconds(1);
    let mut order_ids = Vec::with_capacity(count);
    let mut customer_word = None;
    let mut value_bytes = 0;
    let mut send_failed = false;
    'orders: for i in 0..count {
        let order_id = Uuid::new_v4().to_string();
        let time = newest - TimeDelta::milliseconds((count - 1 - i) as i64);
        let events = order_history(&mut rng, &order_id, time);
        if customer_word.is_none()
            && let EventBody::OrderCreated(details) = &events[0].body
        {
            customer_word = plain_last_name(&details.customer_name);
        }
        let partition = partition_for_key(order_id.as_bytes(), PARTITIONS) as usize;
        for (role_index, event) in events.iter().enumerate() {
            let slot = role_index * PARTITIONS as usize + partition;
            let record = record(&order_id, event);
            let size = record.approximate_size();
            value_bytes += record.value.as_ref().map_or(0, Vec::len);
            let (buffer, bytes) = &mut buffers[slot];
            if !buffer.is_empty()
                && (buffer.len() >= FILL_BATCH_RECORDS || *bytes + size > FILL_BATCH_BYTES)
            {
                let full = std::mem::replace(buffer, Vec::with_capacity(FILL_BATCH_RECORDS));
                *bytes = 0;
                if senders[slot].send(full).await.is_err() {
                    send_failed = true;
                    break 'orders;
                }
            }
            buffers[slot].0.push(record);
            buffers[slot].1 += size;
        }
        order_ids.push(order_id);
        if (i + 1) % 100_000 == 0 {
            eprintln!("  written {} orders", i + 1);
        }
    }
    if !send_failed {
        for (slot, (buffer, _)) in buffers.into_iter().enumerate() {
            if !buffer.is_empty() && senders[slot].send(buffer).await.is_err() {
                break;
            }
        }
    }
    drop(senders);
    let mut written = 0;
    let mut errors = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(n)) => written += n,
            Ok(Err(e)) => errors.push(e),
            Err(e) => errors.push(format!("producer task: {e}")),
        }
    }
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    if written != 3 * count {
        return Err(format!("{written} records written, {} expected", 3 * count));
    }
    Ok(History {
        order_ids,
        customer_word,
        value_bytes,
        elapsed: started.elapsed(),
    })
}

// ------------------------------------------------------------------------------------------
// The shopstream child process.

/// The release `shopstream` binary as a child process, logging at warn level (JSON lines kept
/// in memory), killed when dropped.
struct Shopstream {
    child: Child,
    addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Shopstream {
    /// Starts shopstream on `data_dir` and waits (bounded) until it serves `/healthz`. At warn
    /// level it does not log its `listening` line, so it listens on a port chosen here (tried
    /// again on another one if that port was taken in the meantime).
    async fn start(bootstrap: &str, prefix: &str, data_dir: &Path) -> Result<Self, String> {
        let mut last_error = String::new();
        for _ in 0..3 {
            let addr = SocketAddr::from(([127, 0, 0, 1], support::free_port()));
            let mut child = Command::new(shopstream_binary())
                .arg("--kafka")
                .arg(bootstrap)
                .arg("--listen")
                .arg(addr.to_string())
                .args(["--log-format", "json", "--topic-prefix", prefix])
                .arg("--data-dir")
                .arg(data_dir)
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("cannot start shopstream: {e}"))?;
            let logs = Arc::new(Mutex::new(Vec::new()));
            if let Some(stderr) = child.stderr.take() {
                let sink = Arc::clone(&logs);
                std::thread::spawn(move || {
                    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                        let mut logs = sink.lock().unwrap_or_else(|e| e.into_inner());
                        if logs.len() < MAX_LOG_LINES {
                            logs.push(line);
                        }
                    }
                });
            }
            let mut server = Self { child, addr, logs };
            let started = Instant::now();
            loop {
                if let Some(status) = server.child.try_wait().map_err(|e| e.to_string())? {
                    // Give the log reader a moment to take the last lines.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    last_error = format!(
                        "shopstream exited with {status} before it listened; logs:\n{}",
                        server.logs_tail(20)
                    );
                    break;
                }
                if let Ok((200, _)) = support::http::get(addr, "/healthz").await {
                    return Ok(server);
                }
                if started.elapsed() > LISTEN_TIMEOUT {
                    return Err(format!(
                        "shopstream did not listen on {addr} within {LISTEN_TIMEOUT:?}; logs:\n{}",
                        server.logs_tail(20)
                    ));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if !last_error.contains("in use") {
                break;
            }
        }
        Err(last_error)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn logs_tail(&self, lines: usize) -> String {
        let logs = self.logs();
        logs[logs.len().saturating_sub(lines)..].join("\n")
    }

    /// A `kB` field of `/proc/<pid>/status`, in bytes.
    fn status_bytes(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let line = status.lines().find(|l| l.starts_with(field))?;
        let kib: u64 = line[field.len()..]
            .trim_start_matches(':')
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        Some(kib * 1024)
    }

    /// Peak resident set size (since the start or the last [`Self::reset_peak`]).
    fn peak_rss(&self) -> Option<u64> {
        self.status_bytes("VmHWM")
    }

    /// Resets `VmHWM` to the current RSS (Linux ≥ 4.0); false when the kernel refused.
    fn reset_peak(&self) -> bool {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid()), b"5").is_ok()
    }

    /// Waits (bounded) until `/readyz` answers 200 with `"caught_up": true`.
    async fn wait_caught_up(&mut self) -> Result<(), String> {
        let started = Instant::now();
        let mut next_progress = Duration::from_secs(10);
        loop {
            if let Ok((200, body)) = support::http::get(self.addr, "/readyz").await
                && body["caught_up"] == true
            {
                return Ok(());
            }
            if started.elapsed() >= next_progress {
                next_progress += Duration::from_secs(10);
                let events = match support::http::get(self.addr, "/api/stats").await {
                    Ok((200, stats)) => stats["events"].to_string(),
                    _ => "?".to_string(),
                };
                eprintln!(
                    "  catching up: {:.0} s, {events} events applied, RSS {:.0} MiB",
                    started.elapsed().as_secs_f64(),
                    self.status_bytes("VmRSS").unwrap_or(0) as f64 / (1024.0 * 1024.0)
                );
            }
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!(
                    "shopstream exited with {status} before it caught up; logs:\n{}",
                    self.logs_tail(20)
                ));
            }
            if started.elapsed() > READY_TIMEOUT {
                return Err(format!(
                    "shopstream did not catch up within {READY_TIMEOUT:?}; logs:\n{}",
                    self.logs_tail(20)
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGTERM and waits (bounded) for the exit; returns how long it took.
    async fn terminate(&mut self) -> Result<(Duration, ExitStatus), String> {
        let pid = self.pid().to_string();
        let started = Instant::now();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .map_err(|e| format!("kill -TERM {pid}: {e}"))?;
        if !sent.success() {
            return Err(format!("kill -TERM {pid} failed ({sent})"));
        }
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                return Ok((started.elapsed(), status));
            }
            if started.elapsed() > STOP_TIMEOUT {
                return Err(format!(
                    "shopstream did not stop within {STOP_TIMEOUT:?} of SIGTERM"
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for Shopstream {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The data dir, removed when dropped.
struct DataDir(PathBuf);

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Sum of the sizes of the files under `dir`, and of the disk space they take (a sparse file
/// takes less than its size).
fn dir_bytes(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&entry.path()),
            Ok(m) => (m.len(), m.blocks() * 512),
            Err(_) => (0, 0),
        })
        .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
}

// ------------------------------------------------------------------------------------------
// HTTP.

/// One keep-alive HTTP/1.1 connection, opened again after an error.
struct Conn {
    addr: SocketAddr,
    host: String,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            host: addr.to_string(),
            sender: None,
        }
    }

    async fn connect(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, String> {
        if self.sender.is_none() {
            let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(self.addr))
                .await
                .map_err(|_| "connect timed out".to_string())?
                .map_err(|e| format!("connect: {e}"))?;
            let _ = stream.set_nodelay(true);
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            tokio::spawn(connection);
            self.sender = Some(sender);
        }
        Ok(self.sender.as_mut().expect("just connected"))
    }

    /// Status and body of one request, within [`REQUEST_TIMEOUT`].
    async fn send(&mut self, post: Option<Bytes>, path: &str) -> Result<(u16, Bytes), String> {
        let request = match &post {
            Some(body) => Request::post(path)
                .header("content-type", "application/json")
                .body(Full::new(body.clone())),
            None => Request::get(path).body(Full::new(Bytes::new())),
        };
        let mut request = request.map_err(|e| format!("bad request {path}: {e}"))?;
        request.headers_mut().insert(
            hyper::header::HOST,
            self.host.parse().map_err(|_| "bad host".to_string())?,
        );
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, async {
            common::exchange(self.connect().await?, request).await
        })
        .await;
        match answer {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => {
                self.sender = None;
                Err(e)
            }
            Err(_) => {
                self.sender = None;
                Err(format!("no answer within {REQUEST_TIMEOUT:?}"))
            }
        }
    }

    async fn get_json(&mut self, path: &str) -> Result<Value, String> {
        match self.send(None, path).await? {
            (200, body) => serde_json::from_slice(&body).map_err(|e| format!("{path}: {e}")),
            (status, body) => Err(format!(
                "{path}: HTTP {status}: {}",
                String::from_utf8_lossy(&body)
            )),
        }
    }
}

/// Latencies (µs) and failures of one kind of request.
#[derive(Default)]
struct Timings {
    ok: u64,
    failures: BTreeMap<String, u64>,
    latencies: Vec<u64>,
}

impl Timings {
    fn fail(&mut self, why: impl Into<String>) {
        *self.failures.entry(why.into()).or_default() += 1;
    }

    /// One timed GET: a 200 counts with its latency, anything else as a failure with its
    /// reason. Returns whether it was a 200.
    async fn get(&mut self, conn: &mut Conn, path: &str) -> bool {
        let started = Instant::now();
        match conn.send(None, path).await {
            Ok((200, _)) => {
                self.ok += 1;
                self.latencies.push(started.elapsed().as_micros() as u64);
                true
            }
            Ok((status, _)) => {
                self.fail(format!("HTTP {status}"));
                false
            }
            Err(e) => {
                self.fail(e);
                false
            }
        }
    }

    fn merge(&mut self, other: Timings) {
        self.ok += other.ok;
        self.latencies.extend(other.latencies);
        for (why, n) in other.failures {
            *self.failures.entry(why).or_default() += n;
        }
    }

    fn failed(&self) -> u64 {
        self.failures.values().sum()
    }

    /// Percentile by nearest rank, in milliseconds.
    fn percentile_ms(&mut self, p: f64) -> Option<f64> {
        if self.latencies.is_empty() {
            return None;
        }
        self.latencies.sort_unstable();
        let rank = ((p / 100.0) * self.latencies.len() as f64).ceil() as usize;
        Some(self.latencies[rank.clamp(1, self.latencies.len()) - 1] as f64 / 1000.0)
    }
}

/// One connection posting orders until `deadline` (or until `tickets` are used up), keeping
/// the order ids of the answers when `ids` is given.
async fn post_loop(
    addr: SocketAddr,
    path: &'static str,
    bodies: Arc<Vec<Bytes>>,
    tickets: Arc<AtomicUsize>,
    max: usize,
    deadline: Instant,
    keep_ids: bool,
) -> (Timings, Vec<String>) {
    let mut conn = Conn::new(addr);
    let mut timings = Timings::default();
    let mut ids = Vec::new();
    let mut failures_in_a_row = 0;
    while Instant::now() < deadline && failures_in_a_row < MAX_CONSECUTIVE_FAILURES {
        let ticket = tickets.fetch_add(1, Ordering::Relaxed);
        if ticket >= max {
            break;
        }
        let body = bodies[ticket % bodies.len()].clone();
        let started = Instant::now();
        match conn.send(Some(body), path).await {
            Ok((201, answer)) => {
                timings.ok += 1;
                timings.latencies.push(started.elapsed().as_micros() as u64);
                failures_in_a_row = 0;
                if keep_ids
                    && let Ok(answer) = serde_json::from_slice::<Value>(&answer)
                    && let Some(id) = answer["order"]["order_id"].as_str()
                {
                    ids.push(id.to_string());
                }
            }
            Ok((status, _)) => {
                timings.fail(format!("HTTP {status}"));
                failures_in_a_row += 1;
            }
            Err(e) => {
                timings.fail(e);
                failures_in_a_row += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    (timings, ids)
}

/// `connections` connections posting orders; the total, its wall time and the order ids.
async fn post_orders(
    addr: SocketAddr,
    path: &'static str,
    bodies: &Arc<Vec<Bytes>>,
    connections: usize,
    max: usize,
    duration: Duration,
    keep_ids: bool,
) -> (Timings, Duration, Vec<String>) {
    let tickets = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = JoinSet::new();
    for _ in 0..connections {
        tasks.spawn(post_loop(
            addr,
            path,
            Arc::clone(bodies),
            Arc::clone(&tickets),
            max,
            deadline,
            keep_ids,
        ));
    }
    let mut all = Timings::default();
    let mut ids = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((timings, more)) => {
                all.merge(timings);
                ids.extend(more);
            }
            Err(e) => all.fail(format!("load task failed: {e}")),
        }
    }
    (all, started.elapsed(), ids)
}

/// What a read probe asks for.
#[derive(Clone)]
enum Target {
    Path(String),
    /// `GET /api/orders/{id}` of a random one of these.
    RandomOrder(Arc<Vec<String>>),
}

/// One connection sending the probe's request once per [`READ_INTERVAL`] from `start` until
/// `deadline`.
async fn probe_loop(
    addr: SocketAddr,
    target: Target,
    start: Instant,
    deadline: Instant,
) -> Timings {
    let mut conn = Conn::new(addr);
    let mut timings = Timings::default();
    let mut ticks = tokio::time::interval_at(start.into(), READ_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures_in_a_row = 0;
    loop {
        ticks.tick().await;
        if Instant::now() >= deadline || failures_in_a_row >= MAX_CONSECUTIVE_FAILURES {
            break;
        }
        let path = match &target {
            Target::Path(path) => path.clone(),
            Target::RandomOrder(ids) => {
                let id = &ids[rand::rng().random_range(0..ids.len())];
                format!("/api/orders/{id}")
            }
        };
        if timings.get(&mut conn, &path).await {
            failures_in_a_row = 0;
        } else {
            failures_in_a_row += 1;
        }
    }
    timings
}

/// One connection reading `/api/orders/{id}` for the ids it takes from the shared list.
async fn detail_loop(addr: SocketAddr, ids: Arc<Vec<String>>, next: Arc<AtomicUsize>) -> Timings {
    let mut conn = Conn::new(addr);
    let mut timings = Timings::default();
    let mut failures_in_a_row = 0;
    let deadline = Instant::now() + DETAIL_TIMEOUT;
    while failures_in_a_row < MAX_CONSECUTIVE_FAILURES && Instant::now() < deadline {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(id) = ids.get(i) else { break };
        if timings.get(&mut conn, &format!("/api/orders/{id}")).await {
            failures_in_a_row = 0;
        } else {
            failures_in_a_row += 1;
        }
    }
    timings
}

/// Follows `next_cursor` from the newest page, at most `hops` times; the last cursor found
/// (None when there is a single page) and the number of hops made.
async fn walk_pages(conn: &mut Conn, hops: usize) -> Result<(Option<String>, usize), String> {
    let mut cursor: Option<String> = None;
    let mut made = 0;
    while made < hops {
        let path = match &cursor {
            Some(c) => format!("/api/orders?limit={PAGE}&cursor={c}"),
            None => format!("/api/orders?limit={PAGE}"),
        };
        let page = conn.get_json(&path).await?;
        match page["next_cursor"].as_str() {
            Some(next) => {
                cursor = Some(next.to_string());
                made += 1;
            }
            None => break,
        }
    }
    Ok((cursor, made))
}

fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

// ------------------------------------------------------------------------------------------
// One N.

/// The read kinds measured during the write load, in the order of the table.
const READS: [&str; 6] = [
    "newest page",
    "status=Shipped",
    "deep page (cursor)",
    "q search",
    "/api/stats",
    "order detail",
];

/// What one read kind gave during the write load.
struct ReadFigures {
    p50: Option<f64>,
    p99: Option<f64>,
    samples: u64,
    failures: BTreeMap<String, u64>,
}

#[derive(Default)]
struct Measured {
    orders: usize,
    fill: Option<Duration>,
    fill_bytes: usize,
    replay: Option<Duration>,
    rss_replay: Option<u64>,
    post_rate: Option<f64>,
    post_p99: Option<f64>,
    post_ok: u64,
    post_failures: BTreeMap<String, u64>,
    rss_load: Option<u64>,
    reads: Vec<ReadFigures>,
    deep_page_hops: usize,
    walk_ms_per_page: Option<f64>,
    q_word: String,
    details: usize,
    detail_rate: Option<f64>,
    detail_p99: Option<f64>,
    detail_failures: u64,
    rss_details: Option<u64>,
    stop: Option<Duration>,
    data_dir_bytes: Option<u64>,
    data_dir_allocated: Option<u64>,
    restart: Option<Duration>,
    rss_restart: Option<u64>,
    peak_resets: bool,
    checks: Vec<String>,
    warnings: Vec<String>,
}

async fn one_history(
    settings: &Settings,
    bootstrap: &str,
    client: &Client,
    n: usize,
    created: &mut Vec<String>,
) -> Result<Measured, String> {
    let id = &Uuid::new_v4().simple().to_string()[..8];
    let prefix = format!("bench-history-{n}-{id}.");
    for role in TopicRole::ALL {
        create_topic(client, &format!("{prefix}{role}"), created).await?;
    }
    let mut m = Measured {
        orders: n,
        ..Default::default()
    };

    // 2. The history, straight into the log.
    eprintln!("writing {n} orders (3 events each) into {prefix}*");
    let history = fill_log(client, &prefix, n).await?;
    m.fill = Some(history.elapsed);
    m.fill_bytes = history.value_bytes;

    // 3. Replay from empty.
    let data_dir = DataDir(std::env::temp_dir().join(format!("{prefix}data")));
    eprintln!("starting shopstream on an empty data dir");
    let started = Instant::now();
    let mut server = Shopstream::start(bootstrap, &prefix, &data_dir.0).await?;
    server.wait_caught_up().await?;
    m.replay = Some(started.elapsed());
    m.rss_replay = server.peak_rss();
    let mut conn = Conn::new(server.addr);
    let stats = conn.get_json("/api/stats").await?;
    m.checks.push(format!(
        "after replay: orders {} (expected {n}), Shipped {}, events {} (expected {}), anomalies {}",
        stats["orders"]["total"],
        stats["orders"]["by_status"]["Shipped"],
        stats["events"],
        3 * n,
        stats["anomalies"],
    ));
    if stats["orders"]["total"].as_u64() != Some(n as u64)
        || stats["orders"]["by_status"]["Shipped"].as_u64() != Some(n as u64)
    {
        m.warnings
            .push("the read model after the replay does not hold the history written".into());
    }
    m.peak_resets = server.reset_peak();

    // Warm-up (also gives orders to look at when the history is empty).
    let bodies = order_bodies(256);
    let fallback_word = bodies
        .iter()
        .find_map(|b| plain_last_name(b["customer_name"].as_str().unwrap_or_default()))
        .unwrap_or_else(|| "dupont".to_string());
    let bodies: Arc<Vec<Bytes>> = Arc::new(
        bodies
            .iter()
            .map(|b| Bytes::from(serde_json::to_vec(b).expect("JSON")))
            .collect(),
    );
    eprintln!("warm-up: {WARM_UP_REQUESTS} POST /api/orders?wait=true");
    let (warm, _, warm_ids) = post_orders(
        server.addr,
        "/api/orders?wait=true",
        &bodies,
        WRITE_CONNECTIONS,
        WARM_UP_REQUESTS,
        Duration::from_secs(60),
        true,
    )
    .await;
    if warm.ok == 0 {
        return Err(format!(
            "no request succeeded during the warm-up: {:?}; logs:\n{}",
            warm.failures,
            server.logs_tail(20)
        ));
    }

    // The deep page's cursor, found before the load.
    let walk_started = Instant::now();
    let (deep_cursor, hops) = walk_pages(&mut conn, DEEP_PAGE_HOPS).await?;
    if hops > 0 {
        m.walk_ms_per_page = Some(walk_started.elapsed().as_secs_f64() * 1000.0 / hops as f64);
    }
    m.deep_page_hops = hops;
    let deep_page = match &deep_cursor {
        Some(c) => format!("/api/orders?limit={PAGE}&cursor={c}"),
        None => format!("/api/orders?limit={PAGE}"),
    };
    let word = history.customer_word.clone().unwrap_or(fallback_word);
    m.q_word = word.clone();
    let q_page = format!("/api/orders?q={}&limit={PAGE}", encode(&word));
    let q_items = conn.get_json(&q_page).await?["items"]
        .as_array()
        .map_or(0, Vec::len);
    m.checks.push(format!(
        "q={word}: {q_items} items on the first page; deep page after {hops} cursor hops"
    ));
    let every_tenth: Arc<Vec<String>> =
        Arc::new(history.order_ids.iter().step_by(10).cloned().collect());
    let old_ids = Arc::new(if history.order_ids.is_empty() {
        warm_ids
    } else {
        history.order_ids
    });
    if old_ids.is_empty() {
        return Err("no order id to read".into());
    }

    // 4. The write load, with the reads measured meanwhile.
    eprintln!(
        "write load: {WRITE_CONNECTIONS} connections for {:?}, reads measured meanwhile",
        settings.load_duration
    );
    let targets = [
        Target::Path(format!("/api/orders?limit={PAGE}")),
        Target::Path(format!("/api/orders?status=Shipped&limit={PAGE}")),
        Target::Path(deep_page),
        Target::Path(q_page),
        Target::Path("/api/stats".to_string()),
        Target::RandomOrder(Arc::clone(&old_ids)),
    ];
    let now = Instant::now();
    let deadline = now + settings.load_duration;
    let mut probes = JoinSet::new();
    let kinds = targets.len() as u32;
    for (i, target) in targets.into_iter().enumerate() {
        let addr = server.addr;
        // Spread over the interval, so that the probes do not queue behind each other.
        let start = now + READ_INTERVAL * i as u32 / kinds;
        probes.spawn(async move { (i, probe_loop(addr, target, start, deadline).await) });
    }
    let (mut load, load_time, _) = post_orders(
        server.addr,
        "/api/orders",
        &bodies,
        WRITE_CONNECTIONS,
        usize::MAX,
        settings.load_duration,
        false,
    )
    .await;
    let mut reads: Vec<Option<Timings>> = (0..READS.len()).map(|_| None).collect();
    while let Some(done) = probes.join_next().await {
        if let Ok((i, timings)) = done {
            reads[i] = Some(timings);
        }
    }
    m.rss_load = server.peak_rss();
    m.post_ok = load.ok;
    m.post_rate = (load.ok > 0).then(|| load.ok as f64 / load_time.as_secs_f64());
    m.post_p99 = load.percentile_ms(99.0);
    m.post_failures = std::mem::take(&mut load.failures);
    m.reads = reads
        .into_iter()
        .map(|t| {
            let mut t = t.unwrap_or_default();
            ReadFigures {
                p50: t.percentile_ms(50.0),
                p99: t.percentile_ms(99.0),
                samples: t.ok,
                failures: std::mem::take(&mut t.failures),
            }
        })
        .collect();

    // 5. The detail of every 10th order of the history.
    drop(old_ids);
    m.details = every_tenth.len();
    let _ = server.reset_peak();
    if !every_tenth.is_empty() {
        eprintln!(
            "reading the detail of {} orders on {DETAIL_CONNECTIONS} connections",
            every_tenth.len()
        );
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut tasks = JoinSet::new();
        for _ in 0..DETAIL_CONNECTIONS {
            tasks.spawn(detail_loop(
                server.addr,
                Arc::clone(&every_tenth),
                Arc::clone(&next),
            ));
        }
        let mut all = Timings::default();
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(t) => all.merge(t),
                Err(e) => all.fail(format!("detail task failed: {e}")),
            }
        }
        let took = started.elapsed();
        m.detail_rate = (all.ok > 0).then(|| all.ok as f64 / took.as_secs_f64());
        m.detail_p99 = all.percentile_ms(99.0);
        m.detail_failures = all.failed();
        if all.ok as usize != every_tenth.len() {
            m.warnings.push(format!(
                "detail reads: {} of {} answered 200 ({:?})",
                all.ok,
                every_tenth.len(),
                all.failures
            ));
        }
    }
    m.rss_details = server.peak_rss();

    // 6. SIGTERM.
    eprintln!("SIGTERM");
    let (stop, status) = server.terminate().await?;
    m.stop = Some(stop);
    if !status.success() {
        m.warnings
            .push(format!("shopstream exited with {status} after SIGTERM"));
    }
    collect_warnings(&server, "first run", &mut m.warnings);
    drop(server);
    let (size, allocated) = dir_bytes(&data_dir.0);
    m.data_dir_bytes = Some(size);
    m.data_dir_allocated = Some(allocated);

    // 7. Restart on the same data dir.
    eprintln!("starting shopstream again on the same data dir");
    let started = Instant::now();
    let mut server = Shopstream::start(bootstrap, &prefix, &data_dir.0).await?;
    server.wait_caught_up().await?;
    m.restart = Some(started.elapsed());
    m.rss_restart = server.peak_rss();
    let stats = Conn::new(server.addr).get_json("/api/stats").await?;
    let expected = n as u64 + warm.ok + load.ok;
    m.checks.push(format!(
        "after restart: orders {} (history {n} + warm-up {} + load {} = {expected})",
        stats["orders"]["total"], warm.ok, load.ok,
    ));
    if stats["orders"]["total"].as_u64() != Some(expected) {
        m.warnings.push(format!(
            "after the restart the read model has {} orders, {expected} were acknowledged",
            stats["orders"]["total"]
        ));
    }
    let (_, status) = server.terminate().await?;
    if !status.success() {
        m.warnings.push(format!(
            "shopstream (restart) exited with {status} after SIGTERM"
        ));
    }
    collect_warnings(&server, "restart", &mut m.warnings);
    Ok(m)
}

/// The child's warn and error lines, counted by message.
fn collect_warnings(server: &Shopstream, run: &str, warnings: &mut Vec<String>) {
    let mut by_message: BTreeMap<String, (u64, String)> = BTreeMap::new();
    for line in server.logs() {
        let (key, level) = match serde_json::from_str::<Value>(&line) {
            Ok(event) => (
                event["message"].as_str().unwrap_or(&line).to_string(),
                event["level"].as_str().unwrap_or("?").to_string(),
            ),
            Err(_) => (line.clone(), "?".to_string()),
        };
        let entry = by_message.entry(key).or_insert((0, level));
        entry.0 += 1;
    }
    for (message, (count, level)) in by_message {
        warnings.push(format!(
            "{run}: shopstream logged {count}× {level}: {message}"
        ));
    }
}

// ------------------------------------------------------------------------------------------
// The report.

fn mib(bytes: Option<u64>) -> Option<f64> {
    bytes.map(|b| b as f64 / (1024.0 * 1024.0))
}

fn secs(d: Option<Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64())
}

fn print_report(settings: &Settings, results: &[Measured]) {
    if results.is_empty() {
        println!("no N completed");
        return;
    }
    let peak = if results.iter().all(|m| m.peak_resets) {
        "peak RSS"
    } else {
        "peak RSS since start"
    };
    let mut rows: Vec<(String, Vec<Option<f64>>, usize)> = Vec::new();
    let mut row = |label: String, f: &dyn Fn(&Measured) -> Option<f64>, decimals: usize| {
        rows.push((label, results.iter().map(f).collect(), decimals));
    };
    row(
        "peak RSS during replay (MiB)".into(),
        &|m| mib(m.rss_replay),
        1,
    );
    row(
        format!("{peak} during write load (MiB)"),
        &|m| mib(m.rss_load),
        1,
    );
    row(
        format!("{peak} during detail reads (MiB)"),
        &|m| mib(m.rss_details),
        1,
    );
    row(
        "peak RSS restart to caught_up (MiB)".into(),
        &|m| mib(m.rss_restart),
        1,
    );
    row("data dir size (MiB)".into(), &|m| mib(m.data_dir_bytes), 1);
    row(
        "data dir on disk (MiB, allocated)".into(),
        &|m| mib(m.data_dir_allocated),
        1,
    );
    row("restart to caught_up (s)".into(), &|m| secs(m.restart), 3);
    row("replay from empty (s)".into(), &|m| secs(m.replay), 3);
    row(
        "replay from empty (events/s)".into(),
        &|m| {
            secs(m.replay)
                .filter(|_| m.orders > 0)
                .map(|s| 3.0 * m.orders as f64 / s)
        },
        0,
    );
    row(
        format!("POST /api/orders req/s ({WRITE_CONNECTIONS} conns)"),
        &|m| m.post_rate,
        0,
    );
    row("POST /api/orders p99 (ms)".into(), &|m| m.post_p99, 2);
    for (i, name) in READS.iter().enumerate() {
        row(
            format!("p99 {name} (ms)"),
            &move |m| m.reads.get(i).and_then(|r| r.p99),
            2,
        );
    }
    for (i, name) in READS.iter().enumerate() {
        row(
            format!("p50 {name} (ms)"),
            &move |m| m.reads.get(i).and_then(|r| r.p50),
            2,
        );
    }
    row(
        "detail of every 10th order (req/s)".into(),
        &|m| m.detail_rate,
        0,
    );
    row(
        "detail of every 10th order p99 (ms)".into(),
        &|m| m.detail_p99,
        2,
    );
    row(
        "cursor walk before load (ms/page)".into(),
        &|m| m.walk_ms_per_page,
        2,
    );
    row("SIGTERM to exit (s)".into(), &|m| secs(m.stop), 3);
    row(
        "log fill by rskafka (s, reference)".into(),
        &|m| secs(m.fill).filter(|_| m.orders > 0),
        3,
    );

    let label_width = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
    let column = 12;
    let fmt = |v: Option<f64>, decimals: usize| match v {
        Some(v) if v.is_finite() => format!("{v:.decimals$}"),
        _ => "-".to_string(),
    };
    println!();
    let mut header = format!("{:<label_width$}", "N orders in the log");
    for m in results {
        header.push_str(&format!(" | {:>column$}", m.orders));
    }
    println!("{header}");
    println!("{}", "-".repeat(header.chars().count()));
    for (label, values, decimals) in &rows {
        let mut line = format!("{label:<label_width$}");
        for v in values {
            line.push_str(&format!(" | {:>column$}", fmt(*v, *decimals)));
        }
        println!("{line}");
    }

    let zero = results.iter().position(|m| m.orders == 0);
    let max = results.len() - 1;
    match zero {
        Some(zero) if max != zero => {
            println!();
            println!(
                "ratios at N = {} ÷ at N = 0 (above 1: grows with the history)",
                results[max].orders
            );
            for (label, values, _) in &rows {
                let ratio = match (values[max], values[zero]) {
                    (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
                    _ => "-".to_string(),
                };
                println!("{label:<label_width$} | {ratio:>column$}");
            }
        }
        _ => println!("(no ratios: N = 0 and a larger N are not both in the list)"),
    }

    println!();
    println!(
        "reads: one request per {READ_INTERVAL:?} per kind, each on its own keep-alive \
         connection, while the write load runs for {:?}; page size {PAGE}; detail reads of \
         every 10th order on {DETAIL_CONNECTIONS} connections after the load",
        settings.load_duration
    );
    if results.iter().any(|m| !m.peak_resets) {
        println!(
            "note: /proc/<pid>/clear_refs was refused, so the peaks are since the process started"
        );
    }
    for m in results {
        println!();
        println!(
            "N = {}: {} orders posted during the load, {:.1} MB of record values in the log, \
             q word {:?}, deep page after {} hops, {} detail reads",
            m.orders,
            m.post_ok,
            m.fill_bytes as f64 / 1e6,
            m.q_word,
            m.deep_page_hops,
            m.details,
        );
        for check in &m.checks {
            println!("  {check}");
        }
        let samples: Vec<String> = READS
            .iter()
            .zip(&m.reads)
            .map(|(name, r)| format!("{name} {}", r.samples))
            .collect();
        println!("  read samples: {}", samples.join(", "));
        if !m.post_failures.is_empty() {
            println!("  POST failures: {:?}", m.post_failures);
        }
        for (name, r) in READS.iter().zip(&m.reads) {
            if !r.failures.is_empty() {
                println!("  {name} failures: {:?}", r.failures);
            }
        }
        if m.detail_failures > 0 {
            println!("  detail read failures: {}", m.detail_failures);
        }
        for warning in &m.warnings {
            println!("  warning: {warning}");
        }
    }
}

/// The binary under test: `SHOPSTREAM_BENCH_BINARY`, or the one cargo built with this bench.
fn shopstream_binary() -> std::path::PathBuf {
    std::env::var_os("SHOPSTREAM_BENCH_BINARY")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_shopstream").into())
}
