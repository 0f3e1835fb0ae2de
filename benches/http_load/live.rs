//! The live parts of `http_load`: how long an order takes from its POST to its frame on a
//! dashboard's WebSocket (`latency`), and what many dashboards at once cost (`fanout`).
//!
//! Both send `POST /api/orders` on an **open-loop** schedule: the send time of order `i` is
//! fixed in advance (`start + i / rate`), each request goes out on a free keep-alive
//! connection or a new one, so a slow answer cannot delay or hide the sends after it.
//! Latencies are counted from the scheduled time (a send the client itself made late counts
//! its lateness; the lateness is printed too). WebSocket clients connect before the first
//! send, without a cursor (live only), and time-stamp every `orders` event frame on arrival;
//! frames and POST answers are matched afterwards by partition and offset, so a frame that
//! arrives before its POST's answer is counted right.
//!
//! - *latency*: one WebSocket client; each rate of `SHOPSTREAM_BENCH_LATENCY_RATES`
//!   (`100,1000,5000` orders/s) for `SHOPSTREAM_BENCH_LATENCY_SECONDS` (60) each, first on a
//!   fresh store, then on a store that holds `SHOPSTREAM_BENCH_HISTORY_ORDERS` (1000000; 0
//!   skips it) orders, written straight into the log through rskafka and replayed by the
//!   server before the first send. Prints POST→frame p50, p99 and max, POST→201, and the
//!   achieved send rate.
//! - *fanout*: `SHOPSTREAM_BENCH_FANOUT_CLIENTS` (`100,500`) WebSocket clients while orders
//!   arrive at `SHOPSTREAM_BENCH_FANOUT_RATE` (200) per second for
//!   `SHOPSTREAM_BENCH_FANOUT_SECONDS` (30). Prints frames delivered per second, POST→frame
//!   p50 and p99 over every client's frames, and frames lost: acknowledged orders whose frame
//!   a client that stayed connected never got (a client the server disconnected, as too slow,
//!   is counted apart).
//!
//! The clients run on the benchmark's single thread; its share of that core is printed, so
//! a run where the client was the limit shows as one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::Full;
use hyper::Request;
use hyper::client::conn::http1::SendRequest;
use rskafka::client::Client;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::common::{REQUEST_TIMEOUT, create_topic, exchange, order_bodies};
use crate::support::Server;
use crate::{
    BrokerPids, CpuSample, CpuUse, STOP_TIMEOUT, fill_orders, ms, percentile, unique_prefix, us,
    wait_caught_up,
};
use shopstream::domain::event::TopicRole;

/// Most HTTP connections the open-loop sender opens; past it a send waits (and is late).
const MAX_SENDER_CONNECTIONS: usize = 1_000;
/// Longest the clients may wait for the last frames after the last answer.
const DELIVERY_GRACE: Duration = Duration::from_secs(15);
/// Longest a WebSocket handshake and its `hello` frame may take.
const WS_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Orders written into the log per fill call (bounds the fill's memory).
const FILL_CHUNK: usize = 100_000;

pub struct LiveSettings {
    rates: Vec<u64>,
    latency_seconds: u64,
    history_orders: usize,
    fanout_clients: Vec<usize>,
    fanout_rate: u64,
    fanout_seconds: u64,
}

impl LiveSettings {
    pub fn from_env() -> Self {
        let number = |name: &str, default: u64, max: u64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map_or(default, |v| v.min(max))
        };
        let list = |name: &str, default: &[u64], max: u64| {
            std::env::var(name)
                .ok()
                .map(|v| {
                    v.split(',')
                        .filter_map(|c| c.trim().parse::<u64>().ok())
                        .map(|c| c.clamp(1, max))
                        .collect::<Vec<_>>()
                })
                .filter(|list| !list.is_empty())
                .unwrap_or_else(|| default.to_vec())
        };
        Self {
            rates: list(
                "SHOPSTREAM_BENCH_LATENCY_RATES",
                &[100, 1_000, 5_000],
                50_000,
            ),
            latency_seconds: number("SHOPSTREAM_BENCH_LATENCY_SECONDS", 60, 3_600).max(1),
            history_orders: number("SHOPSTREAM_BENCH_HISTORY_ORDERS", 1_000_000, 10_000_000)
                as usize,
            fanout_clients: list("SHOPSTREAM_BENCH_FANOUT_CLIENTS", &[100, 500], 1_000)
                .into_iter()
                .map(|c| c as usize)
                .collect(),
            fanout_rate: number("SHOPSTREAM_BENCH_FANOUT_RATE", 200, 50_000).max(1),
            fanout_seconds: number("SHOPSTREAM_BENCH_FANOUT_SECONDS", 30, 3_600).max(1),
        }
    }
}

// ------------------------------------------------------------------------------------------
// The open-loop sender.

/// One scheduled `POST /api/orders`.
struct Sent {
    /// When it was due.
    due: Instant,
    /// How late the client actually sent it.
    slip: Duration,
    /// From `due` to the end of the answer.
    answered: Duration,
    /// Where the order landed (partition, offset), when the answer was a 201.
    position: Option<(i32, i64)>,
    failure: Option<String>,
}

/// Sends `rate × duration` orders, order `i` due at `start + i / rate`, each on a free
/// keep-alive connection or a new one (at most [`MAX_SENDER_CONNECTIONS`]).
async fn open_loop(
    addr: SocketAddr,
    bodies: Arc<Vec<Bytes>>,
    rate: u64,
    duration: Duration,
) -> Vec<Sent> {
    let count = rate * duration.as_secs();
    let pool: Arc<Mutex<Vec<SendRequest<Full<Bytes>>>>> = Arc::default();
    let permits = Arc::new(Semaphore::new(MAX_SENDER_CONNECTIONS));
    let start = tokio::time::Instant::now() + Duration::from_millis(20);
    let mut requests = JoinSet::new();
    for i in 0..count {
        let due = start + Duration::from_nanos(i * 1_000_000_000 / rate);
        tokio::time::sleep_until(due).await;
        let body = bodies[i as usize % bodies.len()].clone();
        let (pool, permits) = (Arc::clone(&pool), Arc::clone(&permits));
        requests.spawn(post_one(addr, body, due.into_std(), pool, permits));
    }
    let mut sent = Vec::with_capacity(count as usize);
    while let Some(done) = requests.join_next().await {
        if let Ok(one) = done {
            sent.push(one);
        }
    }
    sent.sort_by_key(|s| s.due);
    sent
}

async fn post_one(
    addr: SocketAddr,
    body: Bytes,
    due: Instant,
    pool: Arc<Mutex<Vec<SendRequest<Full<Bytes>>>>>,
    permits: Arc<Semaphore>,
) -> Sent {
    let _permit = permits.acquire_owned().await;
    let mut sent = Sent {
        due,
        slip: Duration::ZERO,
        answered: Duration::ZERO,
        position: None,
        failure: None,
    };
    // A pooled connection the server closed meanwhile is dropped, as any pooling client
    // does, before a request is sent on it.
    let pooled = loop {
        match pool.lock().unwrap().pop() {
            Some(conn) if conn.is_closed() => continue,
            other => break other,
        }
    };
    let mut conn = match pooled {
        Some(conn) => conn,
        None => match crate::connect(addr).await {
            Ok(conn) => conn,
            Err(e) => {
                sent.failure = Some(e);
                return sent;
            }
        },
    };
    let request = Request::post("/api/orders")
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .body(Full::new(body))
        .expect("a valid request");
    sent.slip = due.elapsed();
    let answer = tokio::time::timeout(REQUEST_TIMEOUT, exchange(&mut conn, request)).await;
    sent.answered = due.elapsed();
    match answer {
        Ok(Ok((201, body))) => {
            let json: Value = serde_json::from_slice(&body).unwrap_or_default();
            let kafka = &json["kafka"];
            sent.position = kafka["partition"]
                .as_i64()
                .zip(kafka["offset"].as_i64())
                .map(|(p, o)| (p as i32, o));
            if sent.position.is_none() {
                sent.failure = Some("a 201 without its position".into());
            }
            pool.lock().unwrap().push(conn);
        }
        Ok(Ok((status, _))) => {
            sent.failure = Some(format!("HTTP {status}"));
            pool.lock().unwrap().push(conn);
        }
        Ok(Err(e)) => sent.failure = Some(e),
        Err(_) => sent.failure = Some(format!("no answer within {REQUEST_TIMEOUT:?}")),
    }
    sent
}

// ------------------------------------------------------------------------------------------
// The WebSocket clients.

/// The part of a live frame the clients read.
#[derive(serde::Deserialize)]
struct FrameHead {
    #[serde(rename = "type")]
    kind: String,
    topic: Option<String>,
    partition: Option<i32>,
    offset: Option<i64>,
}

/// What one client saw: every `orders` event frame (partition, offset, arrival), and why the
/// server closed it, if it did.
struct WatchLog {
    frames: Vec<(i32, i64, Instant)>,
    closed: Option<String>,
}

struct Watcher {
    frames: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<WatchLog>,
}

/// Connects a live client (no cursor: live only) and waits for its `hello` frame.
async fn watch(addr: SocketAddr, stop: CancellationToken) -> Result<Watcher, String> {
    let (mut ws, hello) = tokio::time::timeout(WS_CONNECT_TIMEOUT, async {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/ws"), stream)
            .await
            .map_err(|e| format!("WebSocket handshake: {e}"))?;
        let hello = loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => break text.as_str().to_string(),
                Some(Ok(_)) => continue,
                other => return Err(format!("no hello frame: {other:?}")),
            }
        };
        Ok::<_, String>((ws, hello))
    })
    .await
    .map_err(|_| format!("no WebSocket session within {WS_CONNECT_TIMEOUT:?}"))??;
    if !hello.contains("\"hello\"") {
        return Err(format!("the first frame is not a hello: {hello}"));
    }
    let frames = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&frames);
    let task = tokio::spawn(async move {
        let mut log = WatchLog {
            frames: Vec::new(),
            closed: None,
        };
        loop {
            let message = tokio::select! {
                _ = stop.cancelled() => break,
                message = ws.next() => message,
            };
            let arrived = Instant::now();
            match message {
                Some(Ok(Message::Text(text))) => {
                    let Ok(head) = serde_json::from_str::<FrameHead>(text.as_str()) else {
                        continue;
                    };
                    if head.kind == "event"
                        && head.topic.as_deref() == Some("orders")
                        && let (Some(p), Some(o)) = (head.partition, head.offset)
                    {
                        log.frames.push((p, o, arrived));
                        counter.fetch_add(1, Ordering::Relaxed);
                    } else if head.kind == "closing" {
                        log.closed = Some(text.as_str().to_string());
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    log.closed
                        .get_or_insert_with(|| format!("closed: {frame:?}"));
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    log.closed.get_or_insert_with(|| format!("error: {e}"));
                    break;
                }
                None => {
                    log.closed.get_or_insert_with(|| "connection ended".into());
                    break;
                }
            }
        }
        let _ = ws.close(None).await;
        log
    });
    Ok(Watcher { frames, task })
}

// ------------------------------------------------------------------------------------------
// One measured run: clients connected, orders sent, frames matched.

/// The figures of one run (one rate, one number of clients).
struct LiveRun {
    rate: u64,
    clients: usize,
    due: usize,
    acknowledged: usize,
    failures: HashMap<String, u64>,
    /// Sends ÷ the time between the first and the last actual send.
    achieved_rate: f64,
    slip_p99: u64,
    /// POST→201 from the due time, µs, sorted.
    answered: Vec<u64>,
    /// POST→frame from the due time over every client's frames, µs, sorted.
    to_frame: Vec<u64>,
    frames_per_second: f64,
    /// Acknowledged orders whose frame a client that stayed connected never got.
    lost: u64,
    /// Clients the server closed during the run, and the first reason.
    disconnected: usize,
    disconnect_reason: Option<String>,
    cpu: CpuUse,
}

async fn live_run(
    server: &Server,
    broker: &BrokerPids,
    rate: u64,
    seconds: u64,
    clients: usize,
) -> Result<LiveRun, String> {
    let stop = CancellationToken::new();
    let mut watchers = Vec::with_capacity(clients);
    for _ in 0..clients {
        watchers.push(watch(server.addr, stop.clone()).await?);
    }
    let bodies: Arc<Vec<Bytes>> = Arc::new(
        order_bodies(256)
            .iter()
            .map(|b| Bytes::from(serde_json::to_vec(b).expect("JSON")))
            .collect(),
    );
    eprintln!("live: {rate} orders/s for {seconds} s, {clients} WebSocket client(s)");
    let before = CpuSample::now(Some(server.pid()), broker);
    let sent = open_loop(server.addr, bodies, rate, Duration::from_secs(seconds)).await;
    let acknowledged = sent.iter().filter(|s| s.position.is_some()).count() as u64;
    // Every client that is still connected gets (bounded) time for the last frames.
    let waiting = Instant::now();
    while waiting.elapsed() < DELIVERY_GRACE
        && watchers
            .iter()
            .any(|w| !w.task.is_finished() && w.frames.load(Ordering::Relaxed) < acknowledged)
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let after = CpuSample::now(Some(server.pid()), broker);
    stop.cancel();
    let mut logs = Vec::with_capacity(watchers.len());
    for watcher in watchers {
        logs.push(watcher.task.await.map_err(|e| e.to_string())?);
    }
    Ok(measure(
        rate,
        clients,
        &sent,
        logs,
        before.per(&after, acknowledged),
    ))
}

/// Matches the frames with the answers (by partition and offset) and computes the figures.
fn measure(rate: u64, clients: usize, sent: &[Sent], logs: Vec<WatchLog>, cpu: CpuUse) -> LiveRun {
    let due_at: HashMap<(i32, i64), Instant> = sent
        .iter()
        .filter_map(|s| s.position.map(|p| (p, s.due)))
        .collect();
    let mut failures: HashMap<String, u64> = HashMap::new();
    for failure in sent.iter().filter_map(|s| s.failure.as_ref()) {
        *failures.entry(failure.clone()).or_default() += 1;
    }
    let mut to_frame = Vec::new();
    let mut lost = 0;
    let mut disconnected = 0;
    let mut disconnect_reason = None;
    let mut last_frame = None;
    for log in &logs {
        let matched = log
            .frames
            .iter()
            .filter_map(|&(p, o, arrived)| {
                let due = due_at.get(&(p, o))?;
                last_frame = last_frame.max(Some(arrived));
                Some(arrived.saturating_duration_since(*due).as_micros() as u64)
            })
            .inspect(|&latency| to_frame.push(latency))
            .count();
        if log.closed.is_some() {
            disconnected += 1;
            disconnect_reason = disconnect_reason.or_else(|| log.closed.clone());
        } else {
            lost += due_at.len().saturating_sub(matched) as u64;
        }
    }
    to_frame.sort_unstable();
    let mut answered: Vec<u64> = sent
        .iter()
        .filter(|s| s.position.is_some())
        .map(|s| s.answered.as_micros() as u64)
        .collect();
    answered.sort_unstable();
    let mut slips: Vec<u64> = sent.iter().map(|s| s.slip.as_micros() as u64).collect();
    slips.sort_unstable();
    let first_send = sent.first().map(|s| s.due + s.slip);
    let last_send = sent.iter().map(|s| s.due + s.slip).max();
    let achieved_rate = match first_send.zip(last_send) {
        Some((first, last)) if last > first => {
            (sent.len() - 1) as f64 / last.duration_since(first).as_secs_f64()
        }
        _ => 0.0,
    };
    let frames_per_second = match sent.first().zip(last_frame) {
        Some((first, last)) if last > first.due => {
            to_frame.len() as f64 / last.duration_since(first.due).as_secs_f64()
        }
        _ => 0.0,
    };
    LiveRun {
        rate,
        clients,
        due: sent.len(),
        acknowledged: due_at.len(),
        failures,
        achieved_rate,
        slip_p99: percentile(&slips, 99.0),
        answered,
        to_frame,
        frames_per_second,
        lost,
        disconnected,
        disconnect_reason,
        cpu,
    }
}

// ------------------------------------------------------------------------------------------
// latency: one client, each rate, fresh store and a store with history.

/// One store's runs.
struct StoreRuns {
    label: String,
    /// Orders in the log before the runs, and the server's time to catch up with them.
    history: usize,
    replay: Duration,
    runs: Vec<LiveRun>,
}

pub struct LatencyReport {
    seconds: u64,
    stores: Vec<StoreRuns>,
}

pub async fn latency_phase(
    settings: &LiveSettings,
    bootstrap: &str,
    client: &Client,
    created: &mut Vec<String>,
) -> Result<LatencyReport, String> {
    let broker = BrokerPids::find(bootstrap);
    let mut stores = Vec::new();
    let mut histories = vec![0];
    if settings.history_orders > 0 {
        histories.push(settings.history_orders);
    }
    for history in histories {
        let prefix = unique_prefix("latency");
        for role in TopicRole::ALL {
            create_topic(client, &format!("{prefix}{role}"), created).await?;
        }
        fill_history(client, &format!("{prefix}orders"), history).await?;
        let started = Instant::now();
        let mut server = Server::start(bootstrap, &["--topic-prefix", &prefix]);
        wait_caught_up(&server).await?;
        let replay = started.elapsed();
        let mut runs = Vec::new();
        for &rate in &settings.rates {
            runs.push(live_run(&server, &broker, rate, settings.latency_seconds, 1).await?);
        }
        let _ = server.terminate(STOP_TIMEOUT);
        drop(server);
        stores.push(StoreRuns {
            label: if history == 0 {
                "fresh store".into()
            } else {
                format!("{history} orders")
            },
            history,
            replay,
            runs,
        });
    }
    Ok(LatencyReport {
        seconds: settings.latency_seconds,
        stores,
    })
}

/// Writes `orders` order.created records into `topic` straight through rskafka, in chunks.
async fn fill_history(client: &Client, topic: &str, orders: usize) -> Result<(), String> {
    if orders == 0 {
        return Ok(());
    }
    let started = Instant::now();
    let mut written = 0;
    while written < orders {
        let chunk = FILL_CHUNK.min(orders - written);
        fill_orders(client, topic, chunk).await?;
        written += chunk;
        eprintln!("latency: {written} of {orders} orders in {topic}");
    }
    eprintln!(
        "latency: filled in {:.1} s; the server replays them next",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

impl LatencyReport {
    pub fn print(&self) {
        println!();
        println!(
            "POST /api/orders → its frame on a WebSocket client: open loop, {} s per rate, \
             latency from each send's scheduled time",
            self.seconds
        );
        println!(
            "{:<16} | {:>6} | {:>9} | {:>8} | {:>7} | {:>7} | {:>8} | {:>8} | {:>8} | {:>8} | {:>8} | {:>6} | {:>6} | {:>6}",
            "store",
            "rate",
            "achieved",
            "late p99",
            "sent",
            "frames",
            "frame p50",
            "p99 ms",
            "max ms",
            "201 p50",
            "p99 ms",
            "srv µs",
            "brk µs",
            "client"
        );
        println!(
            "{}",
            "-".repeat(16 + 6 + 9 + 8 + 7 * 2 + 9 + 8 * 4 + 6 * 3 + 13 * 3)
        );
        for store in &self.stores {
            for run in &store.runs {
                println!(
                    "{:<16} | {:>6} | {:>9.0} | {:>8} | {:>7} | {:>7} | {:>9} | {:>8} | {:>8} | {:>8} | {:>8} | {:>6} | {:>6} | {:>6}",
                    store.label,
                    run.rate,
                    run.achieved_rate,
                    ms(run.slip_p99),
                    run.due,
                    run.to_frame.len(),
                    ms(percentile(&run.to_frame, 50.0)),
                    ms(percentile(&run.to_frame, 99.0)),
                    ms(run.to_frame.last().copied().unwrap_or(0)),
                    ms(percentile(&run.answered, 50.0)),
                    ms(percentile(&run.answered, 99.0)),
                    us(run.cpu.server_us),
                    us(run.cpu.broker_us),
                    run.cpu
                        .client_core
                        .map_or("-".into(), |c| format!("{:.0}%", c * 100.0)),
                );
                run.print_problems();
            }
            if store.history > 0 {
                println!(
                    "{:<16}   (the server replayed the {} orders in {:.1} s before the first send)",
                    "",
                    store.history,
                    store.replay.as_secs_f64()
                );
            }
        }
        println!(
            "(achieved: sends per second between the first and the last actual send; late p99: \
             how late the client sent (a full pool of connections, or a busy client); frames: \
             frames matched to an acknowledged order; srv / brk: CPU µs per order of shopstream \
             / of the broker's JVMs; client: the bench's share of its one core)"
        );
    }
}

impl LiveRun {
    fn print_problems(&self) {
        let failed: u64 = self.failures.values().sum();
        if failed > 0 || self.lost > 0 || self.disconnected > 0 {
            println!(
                "{:<16}   acknowledged {} of {}, failures {:?}, lost {}, disconnected {} ({})",
                "",
                self.acknowledged,
                self.due,
                self.failures,
                self.lost,
                self.disconnected,
                self.disconnect_reason.as_deref().unwrap_or("-"),
            );
        }
    }
}

// ------------------------------------------------------------------------------------------
// fanout: many clients, one rate.

pub struct FanoutReport {
    rate: u64,
    seconds: u64,
    runs: Vec<LiveRun>,
}

pub async fn fanout_phase(
    settings: &LiveSettings,
    bootstrap: &str,
    client: &Client,
    created: &mut Vec<String>,
) -> Result<FanoutReport, String> {
    let broker = BrokerPids::find(bootstrap);
    let prefix = unique_prefix("fanout");
    for role in TopicRole::ALL {
        create_topic(client, &format!("{prefix}{role}"), created).await?;
    }
    let mut server = Server::start(bootstrap, &["--topic-prefix", &prefix]);
    wait_caught_up(&server).await?;
    let mut runs = Vec::new();
    for &clients in &settings.fanout_clients {
        let run = live_run(
            &server,
            &broker,
            settings.fanout_rate,
            settings.fanout_seconds,
            clients,
        )
        .await;
        match run {
            Ok(run) => runs.push(run),
            Err(e) => {
                let _ = server.terminate(STOP_TIMEOUT);
                return Err(e);
            }
        }
    }
    let _ = server.terminate(STOP_TIMEOUT);
    Ok(FanoutReport {
        rate: settings.fanout_rate,
        seconds: settings.fanout_seconds,
        runs,
    })
}

impl FanoutReport {
    pub fn print(&self) {
        println!();
        println!(
            "Fan-out: WebSocket clients while orders arrive at {} per second (open loop, {} s); \
             POST→frame from each send's scheduled time over every client's frames",
            self.rate, self.seconds
        );
        println!(
            "{:>7} | {:>8} | {:>8} | {:>9} | {:>9} | {:>9} | {:>8} | {:>8} | {:>6} | {:>6} | {:>7} | {:>6}",
            "clients",
            "acked",
            "late p99",
            "frames/s",
            "frame p50",
            "p99 ms",
            "max ms",
            "lost",
            "closed",
            "srv µs",
            "brk µs",
            "client"
        );
        println!("{}", "-".repeat(7 + 8 * 4 + 9 * 3 + 6 * 3 + 7 + 11 * 3));
        for run in &self.runs {
            println!(
                "{:>7} | {:>8} | {:>8} | {:>9.0} | {:>9} | {:>9} | {:>8} | {:>8} | {:>6} | {:>6} | {:>7} | {:>6}",
                run.clients,
                run.acknowledged,
                ms(run.slip_p99),
                run.frames_per_second,
                ms(percentile(&run.to_frame, 50.0)),
                ms(percentile(&run.to_frame, 99.0)),
                ms(run.to_frame.last().copied().unwrap_or(0)),
                run.lost,
                run.disconnected,
                us(run.cpu.server_us),
                us(run.cpu.broker_us),
                run.cpu
                    .client_core
                    .map_or("-".into(), |c| format!("{:.0}%", c * 100.0)),
            );
            run.print_problems();
        }
        println!(
            "(lost: acknowledged orders whose frame a client that stayed connected never got, \
             summed over the clients; closed: clients the server disconnected; srv µs: \
             shopstream's CPU per order, every client's frame included)"
        );
    }
}
