//! The live stream (`GET /ws`) against a real broker: the hello frame, live events, resuming by
//! cursor with no gap and no duplicate, the reset of a cursor older than retention, malformed
//! cursors, a slow client closed without slowing the others, Kafka failing during a replay,
//! and graceful shutdown.
//!
//! Events are written straight into the server's topics with rskafka, in the shape shopstream
//! writes them, so these tests depend on the consumers and the live stream only.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use futures_util::{SinkExt, StreamExt};
use rskafka::client::Client;
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::record::Record;
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use shopstream::domain::partitioner::partition_for_key;
use support::{PrivateBroker, Server, TestApp, http};

/// The server's default partition count per topic.
const PARTITIONS: i32 = 3;
/// Longest wait for any one frame.
const FRAME_WAIT: Duration = Duration::from_secs(20);
/// How long "nothing more arrives" is watched for.
const QUIET: Duration = Duration::from_millis(700);

// ---------------------------------------------------------------------------------------------
// A WebSocket test client
// ---------------------------------------------------------------------------------------------

/// What a client reads, pings and pongs left out.
#[derive(Debug)]
enum Frame {
    Json(Value),
    Closed(Option<(CloseCode, String)>),
}

struct WsClient {
    ws: WebSocketStream<TcpStream>,
}

fn ws_path(cursor: Option<&str>) -> String {
    match cursor {
        Some(cursor) => format!("/ws?cursor={cursor}"),
        None => "/ws".to_string(),
    }
}

impl WsClient {
    async fn connect(addr: SocketAddr, cursor: Option<&str>) -> Self {
        let stream = TcpStream::connect(addr)
            .await
            .expect("connect to shopstream");
        Self::handshake(stream, addr, cursor)
            .await
            .expect("WebSocket handshake")
    }

    async fn handshake(
        stream: TcpStream,
        addr: SocketAddr,
        cursor: Option<&str>,
    ) -> Result<Self, WsError> {
        let url = format!("ws://{addr}{}", ws_path(cursor));
        let (ws, response) =
            tokio::time::timeout(FRAME_WAIT, tokio_tungstenite::client_async(url, stream))
                .await
                .expect("the WebSocket handshake hung")?;
        assert_eq!(response.status(), 101);
        Ok(Self { ws })
    }

    /// The next text frame as JSON, or the close; `None` when nothing came within `within`.
    async fn frame_within(&mut self, within: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let message = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return None,
                Ok(None) => return Some(Frame::Closed(None)),
                Ok(Some(Err(error))) => panic!("WebSocket error: {error}"),
                Ok(Some(Ok(message))) => message,
            };
            match message {
                Message::Text(text) => {
                    let value = serde_json::from_str(text.as_str())
                        .unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
                    return Some(Frame::Json(value));
                }
                Message::Close(frame) => {
                    return Some(Frame::Closed(
                        frame.map(|f| (f.code, f.reason.as_str().to_string())),
                    ));
                }
                Message::Binary(_) => panic!("unexpected binary frame"),
                _ => {} // pings (answered by tungstenite) and pongs
            }
        }
    }

    /// The next JSON frame; panics on a close or after [`FRAME_WAIT`].
    async fn json(&mut self) -> Value {
        match self.frame_within(FRAME_WAIT).await {
            Some(Frame::Json(value)) => value,
            Some(Frame::Closed(close)) => panic!("closed while a frame was expected: {close:?}"),
            None => panic!("no frame within {FRAME_WAIT:?}"),
        }
    }

    /// The next JSON frame, which must be of `kind`.
    async fn expect(&mut self, kind: &str) -> Value {
        let frame = self.json().await;
        assert_eq!(frame["type"], kind, "expected a {kind} frame, got {frame}");
        frame
    }

    /// Exactly `n` event frames (any other frame fails the test).
    async fn events(&mut self, n: usize) -> Vec<Value> {
        let mut events = Vec::with_capacity(n);
        while events.len() < n {
            let frame = self.json().await;
            assert_eq!(
                frame["type"],
                "event",
                "after {} of {n} events: {frame}",
                events.len()
            );
            events.push(frame);
        }
        events
    }

    /// Asserts that no frame arrives for a moment.
    async fn assert_quiet(&mut self) {
        if let Some(frame) = self.frame_within(QUIET).await {
            panic!("expected nothing more, got {frame:?}");
        }
    }

    async fn send_json(&mut self, value: Value) {
        self.ws
            .send(Message::text(value.to_string()))
            .await
            .expect("send to shopstream");
    }

    /// Closes politely and waits (bounded) for the server's answer.
    async fn close(mut self) {
        let _ = self.ws.close(None).await;
        let _ = tokio::time::timeout(FRAME_WAIT, async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }
}

/// Connects once the server consumes every partition (its hello lists all nine), reads the
/// `caught_up` frame, and returns the client and its hello.
async fn connect_live(addr: SocketAddr) -> (WsClient, Value) {
    support::eventually(
        "the consumers start on every partition",
        Duration::from_secs(30),
        || async {
            let mut client = WsClient::connect(addr, None).await;
            let hello = client.expect("hello").await;
            if hello["partitions"].as_array().unwrap().len() != 3 * PARTITIONS as usize {
                client.close().await;
                return Err(format!("hello lists fewer partitions: {hello}"));
            }
            let caught_up = client.expect("caught_up").await;
            assert_eq!(caught_up["replayed"], 0);
            Ok((client, hello))
        },
    )
    .await
}

/// A client's cursor, kept the way the dashboard keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ClientCursor(BTreeMap<(String, i64), i64>);

impl ClientCursor {
    fn parse(text: &str) -> Self {
        let entries = text
            .split(',')
            .filter(|e| !e.is_empty())
            .map(|entry| {
                let parts: Vec<&str> = entry.split(':').collect();
                let [topic, partition, offset] = parts[..] else {
                    panic!("bad cursor entry {entry:?} in {text:?}")
                };
                (
                    (topic.to_string(), partition.parse().unwrap()),
                    offset.parse().unwrap(),
                )
            })
            .collect();
        Self(entries)
    }

    fn saw(&mut self, event: &Value) {
        let key = (
            event["topic"].as_str().unwrap().to_string(),
            event["partition"].as_i64().unwrap(),
        );
        self.0.insert(key, event["offset"].as_i64().unwrap() + 1);
    }

    fn format(&self) -> String {
        let order = |t: &str| {
            ["orders", "payments", "deliveries"]
                .iter()
                .position(|r| *r == t)
        };
        let mut entries: Vec<_> = self.0.iter().collect();
        entries.sort_by_key(|((t, p), _)| (order(t), *p));
        entries
            .iter()
            .map(|((t, p), o)| format!("{t}:{p}:{o}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

// ---------------------------------------------------------------------------------------------
// Writing events straight into the server's topics
// ---------------------------------------------------------------------------------------------

/// One order event written to Kafka.
#[derive(Debug, Clone)]
struct Produced {
    event_id: String,
    key: String,
    partition: i32,
    offset: i64,
    value: Value,
}

/// The `orders` topic of one server, one partition client per partition.
struct Orders {
    _client: Client,
    partitions: Vec<PartitionClient>,
}

impl Orders {
    async fn open(prefix: &str) -> Self {
        let client = support::kafka_client(&support::bootstrap()).await;
        Self::open_on(client, prefix).await
    }

    async fn open_on(client: Client, prefix: &str) -> Self {
        let topic = format!("{prefix}orders");
        let mut partitions = Vec::new();
        for partition in 0..PARTITIONS {
            let partition_client = tokio::time::timeout(
                FRAME_WAIT,
                client.partition_client(&topic, partition, UnknownTopicHandling::Retry),
            )
            .await
            .expect("partition client timed out")
            .expect("partition client");
            partitions.push(partition_client);
        }
        Self {
            _client: client,
            partitions,
        }
    }

    /// `n` orders, each on the partition its key maps to.
    async fn produce(&self, n: usize) -> Vec<Produced> {
        let mut produced = Vec::new();
        for _ in 0..n {
            let order_id = format!("ord-{}", uuid::Uuid::new_v4().simple());
            let partition = partition_for_key(order_id.as_bytes(), PARTITIONS);
            produced.extend(self.produce_to(partition, vec![order_id], 0).await);
        }
        produced
    }

    /// One order per id, all on `partition`, in one batch; `pad` bytes of address padding.
    async fn produce_to(
        &self,
        partition: i32,
        order_ids: Vec<String>,
        pad: usize,
    ) -> Vec<Produced> {
        let values: Vec<(String, Value)> = order_ids
            .into_iter()
            .map(|id| {
                let value = order_value(&id, pad);
                (id, value)
            })
            .collect();
        let records = values
            .iter()
            .map(|(key, value)| Record {
                key: Some(key.clone().into_bytes()),
                value: Some(value.to_string().into_bytes()),
                headers: BTreeMap::from([("event-type".to_string(), b"order.created".to_vec())]),
                timestamp: rskafka::chrono::Utc::now(),
            })
            .collect();
        let offsets = tokio::time::timeout(
            FRAME_WAIT,
            self.partitions[partition as usize].produce(records, Compression::NoCompression),
        )
        .await
        .expect("produce timed out")
        .expect("produce");
        values
            .into_iter()
            .zip(offsets)
            .map(|((key, value), offset)| Produced {
                event_id: value["event_id"].as_str().unwrap().to_string(),
                key,
                partition,
                offset,
                value,
            })
            .collect()
    }
}

/// An `order.created` record value as shopstream writes it.
fn order_value(order_id: &str, pad: usize) -> Value {
    let mut value = json!({
        "event_id": uuid::Uuid::new_v4().to_string(),
        "event_type": "order.created",
        "order_id": order_id,
        "customer_name": "Ada Lovelace",
        "customer_email": "ada@example.com",
        "product": "Laptop",
        "quantity": 1,
        "currency": "EUR",
        "status": "Pending",
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "address": format!("1 Analytical Way{}", " ".repeat(pad)),
    });
    value["amount"] = json!(10);
    value
}

/// Checks that `event` is the frame for `produced`.
fn assert_frame_for(event: &Value, produced: &Produced) {
    assert_eq!(event["type"], "event");
    assert_eq!(event["topic"], "orders");
    assert_eq!(event["partition"], produced.partition);
    assert_eq!(event["offset"], produced.offset);
    assert_eq!(event["event_type"], "order.created");
    assert_eq!(event["event"], "new_order");
    assert_eq!(event["event_id"], produced.event_id.as_str());
    assert_eq!(event["key"], produced.key.as_str());
    assert_eq!(event["data"], produced.value);
    // What the event did to its order, as the server's read model says.
    assert_eq!(event["order_status"], "Pending", "{event}");
    assert!(event["seq"].as_u64().is_some_and(|n| n > 0), "{event}");
}

/// Event frames by event id; fails on a duplicate.
fn by_event_id(events: &[Value]) -> BTreeMap<String, Value> {
    let mut map = BTreeMap::new();
    for event in events {
        let id = event["event_id"].as_str().unwrap().to_string();
        assert!(
            map.insert(id, event.clone()).is_none(),
            "duplicate frame {event}"
        );
    }
    map
}

async fn start_server(test: &str) -> (TestApp, String) {
    start_server_with(test, &[]).await
}

/// shopstream in-process on its own topics, with `extra` flags.
async fn start_server_with(test: &str, extra: &[&str]) -> (TestApp, String) {
    let prefix = format!("{}.", support::unique_name(test));
    let flags: Vec<&str> = ["--topic-prefix", &prefix]
        .into_iter()
        .chain(extra.iter().copied())
        .collect();
    let server = TestApp::start(&support::bootstrap(), &flags).await;
    server.wait_ready(Duration::from_secs(60)).await;
    (server, prefix)
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gets_a_hello_then_one_frame_per_event() {
    let (server, prefix) = start_server("ws-live").await;
    let (mut client, hello) = connect_live(server.addr).await;

    assert!(hello["server"].as_str().unwrap().starts_with("shopstream "));
    // The name of the store's numbering of events, which the frames' `seq` belong to.
    assert!(
        hello["store"].as_str().is_some_and(|s| !s.is_empty()),
        "{hello}"
    );
    let cursor = ClientCursor::parse(hello["cursor"].as_str().unwrap());
    assert_eq!(cursor.0.len(), 9, "{hello}");
    for topic in ["orders", "payments", "deliveries"] {
        for partition in 0..PARTITIONS as i64 {
            assert_eq!(
                cursor.0.get(&(topic.to_string(), partition)),
                Some(&0),
                "{hello}"
            );
        }
    }
    assert_eq!(hello["start"], hello["cursor"]);
    assert_eq!(
        hello["partitions"][0],
        json!({"topic": "orders", "partition": 0, "next_offset": 0})
    );

    let orders = Orders::open(&prefix).await;
    let produced = orders.produce(5).await;
    let events = client.events(5).await;
    let received = by_event_id(&events);
    for p in &produced {
        assert_frame_for(&received[&p.event_id], p);
    }
    client.assert_quiet().await;

    // The dashboard's own liveness check.
    client.send_json(json!({"type": "ping"})).await;
    assert_eq!(client.json().await, json!({"type": "pong"}));
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_by_cursor_with_no_gap_and_no_duplicate() {
    let (server, prefix) = start_server("ws-resume").await;
    let orders = Orders::open(&prefix).await;
    // Watches everything, to know when the server consumed what it is asked to replay.
    let (mut observer, _) = connect_live(server.addr).await;
    let (mut client, hello) = connect_live(server.addr).await;
    let mut cursor = ClientCursor::parse(hello["start"].as_str().unwrap());

    let first = orders.produce(4).await;
    for event in client.events(4).await {
        cursor.saw(&event);
    }
    observer.events(4).await;
    client.close().await;

    // Missed while disconnected.
    let missed = orders.produce(6).await;
    let observed = by_event_id(&observer.events(6).await);

    let mut client = WsClient::connect(server.addr, Some(&cursor.format())).await;
    let hello = client.expect("hello").await;
    assert_eq!(hello["start"], cursor.format().as_str());
    let replayed = client.events(missed.len()).await;
    let caught_up = client.expect("caught_up").await;
    assert_eq!(caught_up["replayed"], missed.len());

    let replayed_by_id = by_event_id(&replayed);
    let missed_ids: BTreeSet<_> = missed.iter().map(|p| p.event_id.clone()).collect();
    assert_eq!(
        replayed_by_id.keys().cloned().collect::<BTreeSet<_>>(),
        missed_ids
    );
    for p in &missed {
        // A replayed frame is the very frame the live stream sent.
        assert_frame_for(&replayed_by_id[&p.event_id], p);
        assert_eq!(replayed_by_id[&p.event_id], observed[&p.event_id]);
    }
    // Offsets per partition: increasing, each once, none of the first batch.
    let mut seen = BTreeSet::new();
    for event in &replayed {
        assert!(seen.insert((event["partition"].as_i64(), event["offset"].as_i64())));
        cursor.saw(event);
    }
    for p in &first {
        assert!(!seen.contains(&(Some(p.partition as i64), Some(p.offset))));
    }

    // Then live, each event once.
    let later = orders.produce(3).await;
    let live = by_event_id(&client.events(3).await);
    for p in &later {
        assert_frame_for(&live[&p.event_id], p);
    }
    client.assert_quiet().await;
    client.close().await;
    observer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_older_than_retention_gets_a_reset_then_the_replay_from_the_earliest() {
    let (server, prefix) = start_server("ws-reset").await;
    let orders = Orders::open(&prefix).await;
    let (mut observer, _) = connect_live(server.addr).await;
    let ids = (0..10).map(|n| format!("ord-reset-{n}")).collect();
    let produced = orders.produce_to(0, ids, 0).await;
    assert_eq!(produced.last().unwrap().offset, 9);
    observer.events(10).await;

    // Records below offset 6 are deleted, as retention would.
    tokio::time::timeout(FRAME_WAIT, orders.partitions[0].delete_records(6, 10_000))
        .await
        .expect("delete records timed out")
        .expect("delete records");

    // Asking for offset 2: reset to 6, then offsets 6..=9.
    let mut client = WsClient::connect(server.addr, Some("orders:0:2")).await;
    client.expect("hello").await;
    let reset = client.expect("reset").await;
    assert_eq!(reset["topic"], "orders");
    assert_eq!(reset["partition"], 0);
    assert_eq!(reset["requested"], 2);
    assert_eq!(reset["earliest"], 6);
    assert!(
        reset["reason"].as_str().unwrap().contains("retention"),
        "{reset}"
    );
    let replayed = client.events(4).await;
    for (event, p) in replayed.iter().zip(&produced[6..]) {
        assert_frame_for(event, p);
    }
    assert_eq!(client.expect("caught_up").await["replayed"], 4);
    client.assert_quiet().await;
    client.close().await;

    // A cursor past the end of the log (a recreated topic) is reset too.
    let mut client = WsClient::connect(server.addr, Some("orders:0:50")).await;
    client.expect("hello").await;
    let reset = client.expect("reset").await;
    assert_eq!(
        (reset["requested"].as_i64(), reset["earliest"].as_i64()),
        (Some(50), Some(6))
    );
    assert!(
        reset["reason"].as_str().unwrap().contains("past the end"),
        "{reset}"
    );
    assert_eq!(client.events(4).await, replayed);
    assert_eq!(client.expect("caught_up").await["replayed"], 4);
    client.close().await;

    // A cursor at the server's position replays nothing.
    let mut client = WsClient::connect(server.addr, Some("orders:0:10")).await;
    client.expect("hello").await;
    assert_eq!(client.expect("caught_up").await["replayed"], 0);
    client.close().await;
    observer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_cursor_or_a_plain_get_is_refused_with_a_json_error() {
    let server = TestApp::start(
        &support::bootstrap(),
        &[
            "--topic-prefix",
            &format!("{}.", support::unique_name("ws-bad")),
        ],
    )
    .await;

    let (status, body) = http::get(server.addr, "/ws").await.unwrap();
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "websocket_required", "{body}");

    let (status, body) = http::get(server.addr, "/ws?cursor=orders:x:1")
        .await
        .unwrap();
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "bad_cursor", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("orders:x:1") && message.contains("partition"),
        "{message}"
    );

    for (cursor, needle) in [
        ("orders:0:1,refunds:0:1", "refunds"),
        ("orders:0:-1", "offset"),
        ("orders%3A0", "orders:0"),
    ] {
        let (status, body) = http::get(server.addr, &ws_path(Some(cursor)))
            .await
            .unwrap();
        assert_eq!(status, 400, "{cursor}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(needle),
            "{body}"
        );
    }

    // Through a real WebSocket handshake: refused before the upgrade.
    let stream = TcpStream::connect(server.addr).await.unwrap();
    match WsClient::handshake(stream, server.addr, Some("orders:0:x")).await {
        Err(WsError::Http(response)) => {
            assert_eq!(response.status(), 400);
            let body: Value =
                serde_json::from_slice(response.body().as_deref().unwrap_or_default()).unwrap();
            assert_eq!(body["error"]["code"], "bad_cursor");
        }
        Err(other) => panic!("expected an HTTP 400, got {other}"),
        Ok(_) => panic!("a malformed cursor was accepted"),
    }

    // A percent-encoded cursor is fine.
    let mut client =
        WsClient::connect(server.addr, Some("orders%3A0%3A0%2Cpayments%3A1%3A0")).await;
    assert_eq!(
        client.expect("hello").await["start"]
            .as_str()
            .map(|s| s.contains("payments:1:0")),
        Some(true)
    );
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_is_closed_with_its_cursor_and_does_not_slow_the_others() {
    // A live ring of 1,024 frames rather than the default 4,096: room for the fast client to
    // take a few whole group commits, and the slow one is cut off once its socket's buffers
    // and 1,024 frames are full, with 60% of the records the default needed.
    const LIVE_BUFFER: &str = "1024";
    const RECORDS: usize = 3_600;
    const PAD: usize = 4_000;
    const BATCH: usize = 100;

    let (server, prefix) = start_server_with("ws-slow", &["--live-buffer", LIVE_BUFFER]).await;
    let orders = Orders::open(&prefix).await;

    // B: reads as fast as it can, from before the burst, and gets every event once.
    let (mut fast, _) = connect_live(server.addr).await;
    // A: a client that cannot keep up: it reads nothing during the burst, through a small
    // receive buffer, so that its socket fills after a few hundred frames. (The burst must
    // take less than the server's 60 s write timeout, past which A would be dropped without
    // a word.)
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    let stream = socket.connect(server.addr).await.unwrap();
    let mut slow = WsClient::handshake(stream, server.addr, None)
        .await
        .unwrap();
    let hello = slow.expect("hello").await;
    slow.expect("caught_up").await;
    let slow_start = ClientCursor::parse(hello["start"].as_str().unwrap());

    let started = Instant::now();
    let fast_reader = tokio::spawn(async move {
        let mut ids = BTreeSet::new();
        while ids.len() < RECORDS {
            let frame = match fast.frame_within(Duration::from_secs(60)).await {
                Some(Frame::Json(frame)) => frame,
                other => panic!("the fast client got {other:?} after {} events", ids.len()),
            };
            assert_eq!(frame["type"], "event", "{frame}");
            let id = frame["event_id"].as_str().unwrap().to_string();
            assert!(ids.insert(id), "duplicate {frame}");
        }
        (fast, ids)
    });

    // Written as fast as Kafka takes them, the three partitions in parallel.
    let per_partition = RECORDS / PARTITIONS as usize;
    let writes = (0..PARTITIONS).map(|partition| {
        let orders = &orders;
        async move {
            let mut produced = Vec::new();
            for batch in 0..per_partition / BATCH {
                let ids = (0..BATCH)
                    .map(|n| format!("ord-slow-{partition}-{batch}-{n}"))
                    .collect();
                produced.extend(orders.produce_to(partition, ids, PAD).await);
            }
            produced
        }
    });
    let produced: Vec<Produced> = join_all(writes).await.into_iter().flatten().collect();
    assert_eq!(produced.len(), RECORDS);
    let all_ids: BTreeSet<String> = produced.iter().map(|p| p.event_id.clone()).collect();

    let (fast, fast_ids) = tokio::time::timeout(Duration::from_secs(180), fast_reader)
        .await
        .expect("the fast client did not get every event within 180 s")
        .unwrap();
    assert_eq!(fast_ids, all_ids);
    eprintln!(
        "fast client got {RECORDS} events in {:?}",
        started.elapsed()
    );

    // A finally reads: what was queued for it, then why it was closed, with its cursor, and
    // the close frame.
    let (frames, close) = tokio::time::timeout(Duration::from_secs(120), async {
        let mut frames = Vec::new();
        loop {
            match slow.frame_within(FRAME_WAIT).await {
                Some(Frame::Json(frame)) => frames.push(frame),
                Some(Frame::Closed(close)) => return (frames, close),
                None => panic!("the slow client heard nothing for {FRAME_WAIT:?}"),
            }
        }
    })
    .await
    .expect("the slow client was not closed");
    let (closing, events) = frames.split_last().expect("no frame at all");
    let mut slow_cursor = slow_start;
    let mut slow_ids = BTreeSet::new();
    for event in events {
        assert_eq!(event["type"], "event", "{event}");
        assert!(slow_ids.insert(event["event_id"].as_str().unwrap().to_string()));
        slow_cursor.saw(event);
    }
    assert!(slow_ids.len() < RECORDS, "the slow client was not cut off");
    assert_eq!(closing["type"], "closing", "{closing}");
    assert!(
        closing["reason"].as_str().unwrap().contains("too slow"),
        "{closing}"
    );
    // The server's cursor is exactly what the client itself counted.
    assert_eq!(closing["cursor"], slow_cursor.format().as_str());
    let (code, reason) = close.expect("a close frame with a reason");
    assert_eq!(code, CloseCode::Policy);
    assert!(reason.contains("too slow"), "{reason}");
    eprintln!(
        "slow client got {} events before it was closed",
        slow_ids.len()
    );

    // It resumes from its cursor and gets exactly the rest.
    let mut resumed =
        WsClient::connect(server.addr, Some(closing["cursor"].as_str().unwrap())).await;
    resumed.expect("hello").await;
    let missing = RECORDS - slow_ids.len();
    let rest = tokio::time::timeout(Duration::from_secs(120), resumed.events(missing))
        .await
        .expect("the replay took more than 120 s");
    for event in &rest {
        assert!(
            slow_ids.insert(event["event_id"].as_str().unwrap().to_string()),
            "duplicate {event}"
        );
    }
    assert_eq!(slow_ids, all_ids);
    assert_eq!(resumed.expect("caught_up").await["replayed"], missing);
    resumed.close().await;
    fast.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_failing_during_a_replay_ends_the_session_with_an_error_and_the_cursor() {
    let broker = PrivateBroker::start("ws-outage");
    let prefix = format!("{}.", support::unique_name("ws-outage"));
    let server = TestApp::start(&broker.bootstrap, &["--topic-prefix", &prefix]).await;
    server.wait_ready(Duration::from_secs(60)).await;
    let orders = Orders::open_on(support::kafka_client(&broker.bootstrap).await, &prefix).await;
    let (mut observer, _) = connect_live(server.addr).await;
    let produced = orders
        .produce_to(1, vec!["ord-outage-1".into(), "ord-outage-2".into()], 0)
        .await;
    observer.events(2).await;
    observer.close().await;

    broker.stop();
    support::eventually("/readyz 503", Duration::from_secs(20), || async {
        match http::get(server.addr, "/readyz").await {
            Ok((503, _)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    let mut client = WsClient::connect(server.addr, Some("orders:1:0")).await;
    client.expect("hello").await;
    let error = client.expect("error").await;
    assert_eq!(error["code"], "kafka_unavailable", "{error}");
    let closing = client.expect("closing").await;
    // Nothing was replayed: the client resumes where it asked to start.
    assert!(
        closing["cursor"].as_str().unwrap().contains("orders:1:0"),
        "{closing}"
    );
    match client.frame_within(FRAME_WAIT).await {
        Some(Frame::Closed(Some((code, _)))) => assert_eq!(code, CloseCode::Error),
        other => panic!("expected a close frame, got {other:?}"),
    }

    // Once Kafka is back, the same cursor replays the two records.
    broker.restart();
    server.wait_ready(Duration::from_secs(60)).await;
    let mut client = WsClient::connect(server.addr, Some("orders:1:0")).await;
    client.expect("hello").await;
    let replayed = client.events(2).await;
    for (event, p) in replayed.iter().zip(&produced) {
        assert_frame_for(event, p);
    }
    assert_eq!(client.expect("caught_up").await["replayed"], 2);
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_sessions_with_a_close_frame_and_the_cursor() {
    // The binary itself, as it gets SIGTERM.
    let prefix = format!("{}.", support::unique_name("ws-shutdown"));
    let server = Server::start(&support::bootstrap(), &["--topic-prefix", &prefix]);
    server.wait_ready(Duration::from_secs(60)).await;
    let orders = Orders::open(&prefix).await;
    let (mut client, hello) = connect_live(server.addr).await;
    let mut cursor = ClientCursor::parse(hello["start"].as_str().unwrap());
    orders.produce(2).await;
    for event in client.events(2).await {
        cursor.saw(&event);
    }

    let mut server = server;
    let stopping = tokio::task::spawn_blocking(move || {
        let status = server.terminate(Duration::from_secs(30));
        (server, status)
    });
    let closing = client.expect("closing").await;
    assert_eq!(closing["reason"], "server shutting down");
    assert_eq!(closing["cursor"], cursor.format().as_str());
    match client.frame_within(FRAME_WAIT).await {
        Some(Frame::Closed(Some((code, reason)))) => {
            assert_eq!(code, CloseCode::Away);
            assert_eq!(reason, "server shutting down");
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
    let (_server, status) = stopping.await.unwrap();
    assert!(status.success(), "{status}");
}
