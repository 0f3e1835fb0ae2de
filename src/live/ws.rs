//! WebSocket sessions (`GET /ws`).
//!
//! A session sends, in order: a `hello` frame with the server's cursor; when the client sent a
//! cursor, the events it missed, read from Kafka itself (with a `reset` frame for a partition
//! whose requested offset is no longer kept); a `caught_up` frame; then live events, one frame
//! each. It ends with a `closing` frame that carries the client's cursor and a close frame:
//! 1001 at shutdown or after 60 s without a word from the client (it is pinged every 20 s),
//! 1008 when it fell too far behind, 1011 after an `error` frame when Kafka failed during
//! the replay.
//!
//! Every client has the same bounded queue: the hub's ring of
//! [`FRAME_BUFFER`] frames, plus its socket's buffers. A client that falls further behind is
//! closed with its cursor and resumes from it; one whose socket takes nothing for 60 s is
//! dropped (nothing can reach it). Nothing shared is held while writing to a socket.
//!
//! A cursor is `topic:partition:next_offset,...` (`orders:0:12,payments:1:7`): per partition,
//! the next offset the client needs (its last offset seen + 1), topics by role name. A client
//! keeps the `start` cursor of the hello frame, moves it to `offset + 1` with every event (and
//! to `earliest` on a reset) and sends it back when it reconnects. A partition absent from a
//! client's cursor starts where the server is (live only).
//!
//! # No gap, no duplicate
//! 1. [`Store::subscribe`](crate::model::store::Store::subscribe) hands over a receiver and the
//!    consumed positions `S` in one step: every live frame received afterwards has an offset
//!    at or past `S[p]`, and the consumers publish every decodable record past it, in offset
//!    order per partition.
//! 2. For a client cursor `C`, the offsets `[C[p], S[p])` are read from Kafka and sent in
//!    order; meanwhile the receiver queues live frames.
//! 3. The session keeps `next[p]`, the next offset the client needs (`max(C[p], S[p])` after
//!    the replay). A live frame below it is dropped, otherwise it is sent and `next[p]` becomes
//!    its offset + 1: nothing is sent twice, and as live frames start at `S[p]`, nothing is
//!    skipped.
//! 4. When the receiver lags (the ring overwrote frames it had not read yet), the gap can no
//!    longer be filled from memory: the session closes and hands the client `next` as its
//!    cursor, and the next session replays from there. Publishing never waits for a client.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{FutureExt, SinkExt, StreamExt};
use http_body_util::Full;
use hyper::header::{
    CONNECTION, HeaderMap, HeaderName, HeaderValue, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use hyper::upgrade::Upgraded;
use hyper::{StatusCode, Version};
use hyper_util::rt::TokioIo;
use rskafka::client::Client;
use rskafka::client::error::{Error as ClientError, ProtocolError};
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::record::RecordAndOffset;
use serde_json::{Value, json};
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::AppState;
use crate::domain::event::{Event, Position, TopicRole};
use crate::http::{ApiError, Request, Response};
use crate::kafka::connection::KafkaSession;
use crate::kafka::{KafkaError, TopicLayout, with_deadline};
use crate::live::hub::{FRAME_BUFFER, LiveFrame};

/// How often the server pings an open connection.
const PING_INTERVAL: Duration = Duration::from_secs(20);
/// A client that sent nothing (not even a pong) for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest one message (or one flush) to a client may take; a client whose socket stays full
/// this long is dropped (no close frame can reach it anyway).
const SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest the closing handshake may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Most bytes asked for in one replay fetch.
const REPLAY_FETCH_BYTES: i32 = 1024 * 1024;
/// How long the broker may hold a replay fetch open (the offsets replayed exist already).
const REPLAY_FETCH_WAIT_MS: i32 = 100;
/// Tries of one Kafka call of the replay while the connection to Kafka looks healthy.
const REPLAY_ATTEMPTS: u32 = 3;
/// Fetches in a row that return no record before the replay of a partition gives up on the
/// rest of its range (only control batches left there).
const REPLAY_EMPTY_FETCHES: u32 = 3;
/// Most live frames written before one flush.
const LIVE_BATCH: usize = 256;
/// Most entries a cursor may name.
const MAX_CURSOR_ENTRIES: usize = 10_000;
/// Largest message a client may send (it only ever sends pings and close frames).
const MAX_CLIENT_MESSAGE: usize = 64 * 1024;

const TOO_SLOW: &str = "too slow: resume with your cursor";
const RETENTION_RESET: &str =
    "the requested offset is no longer kept by Kafka (retention); replaying from the earliest kept";
const PAST_END_RESET: &str = "the requested offset is past the end of the log (was the topic \
     recreated?); replaying from the earliest kept";

/// Numbers sessions in the logs.
static SESSION_IDS: AtomicU64 = AtomicU64::new(1);

// ---------------------------------------------------------------------------------------------
// Cursor
// ---------------------------------------------------------------------------------------------

/// A topic (by role) and a partition.
pub type PartitionKey = (TopicRole, i32);

/// Per partition, the next offset a client needs. Formats as `orders:0:12,payments:1:7`, in
/// topic then partition order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor(BTreeMap<PartitionKey, i64>);

/// Why a cursor is malformed; the message names the offending part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CursorError(pub String);

impl Cursor {
    /// The server's consumed positions, as returned by `Store::subscribe`.
    pub fn from_positions(positions: &[(TopicRole, i32, i64)]) -> Self {
        Self(positions.iter().map(|&(t, p, o)| ((t, p), o)).collect())
    }

    /// Parses `topic:partition:next_offset,...`; the empty string is the empty cursor.
    pub fn parse(text: &str) -> Result<Self, CursorError> {
        let mut cursor = BTreeMap::new();
        if text.trim().is_empty() {
            return Ok(Self(cursor));
        }
        for entry in text.split(',') {
            if cursor.len() == MAX_CURSOR_ENTRIES {
                return Err(CursorError(format!(
                    "more than {MAX_CURSOR_ENTRIES} entries"
                )));
            }
            let (key, offset) = parse_entry(entry.trim())?;
            if cursor.insert(key, offset).is_some() {
                return Err(CursorError(format!(
                    "`{}` names {}:{} a second time",
                    entry.trim(),
                    key.0,
                    key.1
                )));
            }
        }
        Ok(Self(cursor))
    }

    pub fn get(&self, key: PartitionKey) -> Option<i64> {
        self.0.get(&key).copied()
    }

    pub fn set(&mut self, key: PartitionKey, next_offset: i64) {
        self.0.insert(key, next_offset);
    }

    /// Moves a partition forward to `next_offset`, never back.
    pub fn raise(&mut self, key: PartitionKey, next_offset: i64) {
        let entry = self.0.entry(key).or_insert(next_offset);
        *entry = (*entry).max(next_offset);
    }

    pub fn iter(&self) -> impl Iterator<Item = (PartitionKey, i64)> + '_ {
        self.0.iter().map(|(&k, &o)| (k, o))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn parse_entry(entry: &str) -> Result<(PartitionKey, i64), CursorError> {
    let bad = |why: String| CursorError(format!("`{entry}`: {why}"));
    let parts: Vec<&str> = entry.split(':').collect();
    let [topic, partition, offset] = parts[..] else {
        return Err(bad(
            "expected topic:partition:next_offset, e.g. orders:0:12".into(),
        ));
    };
    let topic = TopicRole::parse(topic).ok_or_else(|| {
        bad(format!(
            "unknown topic `{topic}` (expected orders, payments or deliveries)"
        ))
    })?;
    let partition = partition
        .parse::<i32>()
        .ok()
        .filter(|p| *p >= 0)
        .ok_or_else(|| {
            bad(format!(
                "partition `{partition}` is not a non-negative integer"
            ))
        })?;
    let offset = offset
        .parse::<i64>()
        .ok()
        .filter(|o| *o >= 0)
        .ok_or_else(|| bad(format!("offset `{offset}` is not a non-negative integer")))?;
    Ok(((topic, partition), offset))
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, ((topic, partition), offset)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{topic}:{partition}:{offset}")?;
        }
        Ok(())
    }
}

impl FromStr for Cursor {
    type Err = CursorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The `cursor` query parameter, when there is one.
fn requested_cursor(request: &Request) -> Result<Option<Cursor>, CursorError> {
    let Some(query) = request.uri().query() else {
        return Ok(None);
    };
    form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "cursor")
        .map(|(_, value)| Cursor::parse(&value))
        .transpose()
}

// ---------------------------------------------------------------------------------------------
// Replay plan
// ---------------------------------------------------------------------------------------------

/// What a session must do for one partition named in the client's cursor before going live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CatchUp {
    /// The client is behind: replay `[client, server)` from Kafka, from the earliest offset
    /// kept if `client` fell out of retention.
    Behind { requested: i64, server: i64 },
    /// The client is ahead (another instance served it, or the topic was recreated): nothing
    /// to replay, unless its offset is past the end of the log (then reset to the earliest
    /// kept and replay up to `server`).
    Ahead { requested: i64, server: i64 },
}

/// What one replay fetch brought.
enum Fetched {
    Records(Vec<RecordAndOffset>),
    /// Retention removed the offset asked for: go on from this one.
    Reset(i64),
}

/// Where a session starts and what it replays first.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Plan {
    /// The client's cursor where it sent one, the server's positions elsewhere.
    start: Cursor,
    catch_up: Vec<(PartitionKey, CatchUp)>,
}

/// Pure: compares the server's positions with the client's cursor. A partition the server has
/// not consumed yet needs no replay: its live frames start at the earliest offset kept.
fn plan(server: &Cursor, client: Option<&Cursor>) -> Plan {
    let mut start = server.clone();
    let mut catch_up = Vec::new();
    for (key, requested) in client.into_iter().flat_map(Cursor::iter) {
        start.set(key, requested);
        match server.get(key) {
            Some(server) if requested < server => {
                catch_up.push((key, CatchUp::Behind { requested, server }))
            }
            Some(server) if requested > server => {
                catch_up.push((key, CatchUp::Ahead { requested, server }))
            }
            _ => {}
        }
    }
    Plan { start, catch_up }
}

// ---------------------------------------------------------------------------------------------
// Handshake
// ---------------------------------------------------------------------------------------------

/// Upgrades `GET /ws` to a live session: checks the cursor, then the WebSocket handshake,
/// answers 101 and runs the session on its own task.
pub async fn handle(state: Arc<AppState>, mut request: Request) -> Response {
    let requested = match requested_cursor(&request) {
        Ok(cursor) => cursor,
        Err(error) => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_cursor",
                format!("malformed cursor: {error}"),
            )
            .into_response();
        }
    };
    let accept = match accept_key(request.version(), request.headers()) {
        Ok(accept) => accept,
        Err(refusal) => return refuse(refusal),
    };
    let upgrade = hyper::upgrade::on(&mut request);
    state.sessions.clone().spawn(async move {
        match upgrade.await {
            Ok(upgraded) => {
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(websocket_config()),
                )
                .await;
                Session::run(state, ws, requested).await;
            }
            Err(error) => tracing::debug!(%error, "WebSocket upgrade failed"),
        }
    });
    switching_protocols(&accept)
}

/// Checks the client's handshake (RFC 6455 section 4.2.1); returns `Sec-WebSocket-Accept`.
fn accept_key(version: Version, headers: &HeaderMap) -> Result<String, ApiError> {
    let required =
        |message: &str| ApiError::new(StatusCode::BAD_REQUEST, "websocket_required", message);
    if !has_token(headers, &UPGRADE, "websocket") || !has_token(headers, &CONNECTION, "upgrade") {
        return Err(required(
            "GET /ws is a WebSocket endpoint: send `Upgrade: websocket` and `Connection: Upgrade`",
        ));
    }
    if version != Version::HTTP_11 {
        return Err(required("a WebSocket upgrade needs HTTP/1.1"));
    }
    if headers
        .get(SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err(ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "websocket_version",
            "only WebSocket version 13 is supported (`Sec-WebSocket-Version: 13`)",
        ));
    }
    match headers.get(SEC_WEBSOCKET_KEY) {
        // Base64 of 16 bytes.
        Some(key) if key.len() == 24 => Ok(derive_accept_key(key.as_bytes())),
        _ => Err(required(
            "`Sec-WebSocket-Key` is missing or not 16 bytes in base64",
        )),
    }
}

/// The answer to a refused handshake; a 426 names the version spoken (RFC 6455 4.4).
fn refuse(error: ApiError) -> Response {
    let upgrade_required = error.status == StatusCode::UPGRADE_REQUIRED;
    let mut response = error.into_response();
    if upgrade_required {
        response
            .headers_mut()
            .insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
    }
    response
}

/// Whether a comma-separated header holds `token` (case-insensitive), in any of its values.
fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

fn switching_protocols(accept: &str) -> Response {
    let mut response = hyper::Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(accept) {
        headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_CLIENT_MESSAGE))
        .max_frame_size(Some(MAX_CLIENT_MESSAGE))
}

// ---------------------------------------------------------------------------------------------
// Session
// ---------------------------------------------------------------------------------------------

type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// Why a session ends.
#[derive(Debug)]
enum End {
    /// The client closed, or its connection broke: nothing more can be sent.
    ClientGone(String),
    /// The server is shutting down.
    Shutdown,
    /// The live ring overwrote frames this client had not read yet.
    TooSlow,
    /// Nothing heard from the client for [`IDLE_TIMEOUT`].
    Idle,
    /// A message could not be written within [`SEND_TIMEOUT`].
    Stalled,
    /// Kafka failed during the replay.
    Kafka(KafkaError),
}

impl End {
    /// The close code and reason to send, or `None` when the socket cannot take them.
    fn close_frame(&self) -> Option<(CloseCode, &'static str)> {
        match self {
            End::ClientGone(_) | End::Stalled => None,
            End::Shutdown => Some((CloseCode::Away, "server shutting down")),
            End::TooSlow => Some((CloseCode::Policy, TOO_SLOW)),
            End::Idle => Some((CloseCode::Away, "idle: no pong received")),
            End::Kafka(_) => Some((CloseCode::Error, "Kafka is unavailable: retry later")),
        }
    }
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            End::ClientGone(why) => write!(f, "client gone: {why}"),
            End::Shutdown => f.write_str("server shutting down"),
            End::TooSlow => f.write_str(TOO_SLOW),
            End::Idle => write!(f, "nothing heard from the client for {IDLE_TIMEOUT:?}"),
            End::Stalled => write!(f, "the client took no message for {SEND_TIMEOUT:?}"),
            End::Kafka(error) => write!(f, "Kafka failed during the replay: {error}"),
        }
    }
}

struct Session {
    id: u64,
    state: Arc<AppState>,
    ws: Socket,
    live: broadcast::Receiver<Arc<LiveFrame>>,
    /// Per partition, the next offset the client needs: its cursor right now.
    next: Cursor,
    ping: Interval,
    last_heard: Instant,
    /// Event frames sent (replayed and live).
    sent: u64,
}

impl Session {
    async fn run(state: Arc<AppState>, ws: Socket, requested: Option<Cursor>) {
        // Subscribe first: every frame published from now on is in the receiver.
        let (live, positions) = state.store.subscribe();
        let server = Cursor::from_positions(&positions);
        let plan = plan(&server, requested.as_ref());
        let mut ping = tokio::time::interval_at(Instant::now() + PING_INTERVAL, PING_INTERVAL);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut session = Session {
            id: SESSION_IDS.fetch_add(1, Ordering::Relaxed),
            state,
            ws,
            live,
            next: plan.start.clone(),
            ping,
            last_heard: Instant::now(),
            sent: 0,
        };
        tracing::info!(
            session = session.id,
            resume = requested.is_some(),
            partitions_to_replay = plan.catch_up.len(),
            clients = session.state.store.hub().client_count(),
            "live session opened"
        );
        let end = session.serve(&server, &positions, plan).await;
        session.finish(end).await;
    }

    /// Hello, replay, caught-up, then live frames until something ends the session.
    async fn serve(
        &mut self,
        server: &Cursor,
        positions: &[(TopicRole, i32, i64)],
        plan: Plan,
    ) -> End {
        if let Err(end) = self
            .send_all(vec![hello(server, positions, &plan.start)])
            .await
        {
            return end;
        }
        let replayed = match self.replay(plan.catch_up).await {
            Ok(replayed) => replayed,
            Err(end) => return end,
        };
        if let Err(end) = self
            .send_all(vec![text(
                json!({"type": "caught_up", "replayed": replayed}),
            )])
            .await
        {
            return end;
        }
        self.forward_live().await
    }

    // --- replay ------------------------------------------------------------------------------

    /// Replays every partition the client is behind on; returns the number of event frames.
    async fn replay(&mut self, catch_up: Vec<(PartitionKey, CatchUp)>) -> Result<u64, End> {
        if catch_up.is_empty() {
            return Ok(0);
        }
        let session = replay_session(&self.state).map_err(End::Kafka)?;
        let mut replayed = 0;
        for (key, what) in catch_up {
            replayed += self
                .replay_partition(&session.client, &session.topics, key, what)
                .await?;
        }
        tracing::debug!(session = self.id, replayed, "replay done");
        Ok(replayed)
    }

    async fn replay_partition(
        &mut self,
        kafka: &Client,
        topics: &TopicLayout,
        key: PartitionKey,
        what: CatchUp,
    ) -> Result<u64, End> {
        let (role, partition) = key;
        let topic = topics.get(role);
        if partition >= topic.partitions {
            tracing::debug!(session = self.id, %role, partition, "cursor names a partition that does not exist; ignored");
            return Ok(0);
        }
        let timeout = self.state.config.kafka_timeout;
        let client = replay_call(&self.state, || {
            let call = kafka.partition_client(&topic.name, partition, UnknownTopicHandling::Retry);
            with_deadline("partition client", timeout, call)
        })
        .await?;
        let Some((from, to)) = self.replay_range(&client, key, what).await? else {
            return Ok(0);
        };
        let mut offset = from;
        let mut replayed = 0;
        let mut empty_fetches = 0;
        while offset < to {
            self.between_batches().await?;
            let records = match self.fetch_batch(&client, key, &topic.name, offset).await? {
                Fetched::Records(records) => records,
                Fetched::Reset(earliest) => {
                    offset = earliest;
                    continue;
                }
            };
            let Some(last) = records
                .iter()
                .map(|r| r.offset)
                .filter(|o| (offset..to).contains(o))
                .max()
            else {
                empty_fetches += 1;
                if empty_fetches == REPLAY_EMPTY_FETCHES {
                    tracing::warn!(session = self.id, topic = %topic.name, partition, offset, to, "no record left to replay in range; skipping to the live stream");
                    break;
                }
                continue;
            };
            empty_fetches = 0;
            let frames: Vec<Message> = records
                .into_iter()
                .filter(|r| (offset..to).contains(&r.offset))
                .filter_map(|r| replay_frame(role, partition, &topic.name, r))
                .map(|frame| Message::text(frame.json.as_ref()))
                .collect();
            replayed += frames.len() as u64;
            self.sent += frames.len() as u64;
            self.send_all(frames).await?;
            offset = last + 1;
            self.next.set(key, offset);
        }
        self.next.raise(key, to);
        Ok(replayed)
    }

    /// The offsets to replay for one partition, `[from, to)`, after telling the client about a
    /// reset when its offset is no longer in the log.
    async fn replay_range(
        &mut self,
        client: &PartitionClient,
        key: PartitionKey,
        what: CatchUp,
    ) -> Result<Option<(i64, i64)>, End> {
        match what {
            CatchUp::Behind { requested, server } => {
                let earliest = offset_at(&self.state, client, OffsetAt::Earliest).await?;
                if requested < earliest {
                    self.reset(key, requested, earliest, RETENTION_RESET)
                        .await?;
                }
                Ok(Some((requested.max(earliest), server)))
            }
            CatchUp::Ahead { requested, server } => {
                let latest = offset_at(&self.state, client, OffsetAt::Latest).await?;
                if requested <= latest {
                    return Ok(None);
                }
                let earliest = offset_at(&self.state, client, OffsetAt::Earliest).await?;
                self.reset(key, requested, earliest, PAST_END_RESET).await?;
                Ok(Some((earliest, server)))
            }
        }
    }

    /// One batch of records from `offset`; when retention removed `offset` meanwhile, the
    /// client gets a reset.
    async fn fetch_batch(
        &mut self,
        client: &PartitionClient,
        key: PartitionKey,
        topic_name: &str,
        offset: i64,
    ) -> Result<Fetched, End> {
        let timeout = self.state.config.kafka_timeout;
        match replay_call(&self.state, || fetch(client, offset, timeout)).await {
            Ok(records) => Ok(Fetched::Records(records)),
            Err(End::Kafka(error)) if is_out_of_range(&error) => {
                let earliest = offset_at(&self.state, client, OffsetAt::Earliest).await?;
                if earliest <= offset {
                    return Err(End::Kafka(KafkaError::Topic {
                        topic: topic_name.to_string(),
                        reason: format!("offset {offset} of partition {} is out of range", key.1),
                    }));
                }
                self.reset(key, offset, earliest, RETENTION_RESET).await?;
                Ok(Fetched::Reset(earliest))
            }
            Err(end) => Err(end),
        }
    }

    /// Tells the client its offset for a partition is gone, and moves its cursor there.
    async fn reset(
        &mut self,
        key: PartitionKey,
        requested: i64,
        earliest: i64,
        reason: &str,
    ) -> Result<(), End> {
        tracing::info!(session = self.id, topic = %key.0, partition = key.1, requested, earliest, "cursor reset");
        self.next.set(key, earliest);
        self.send_all(vec![text(json!({
            "type": "reset",
            "topic": key.0,
            "partition": key.1,
            "requested": requested,
            "earliest": earliest,
            "reason": reason,
        }))])
        .await
    }

    /// Between two replay batches: stop early when shutting down or already too far behind the
    /// live stream, and handle what the client sent meanwhile.
    async fn between_batches(&mut self) -> Result<(), End> {
        if self.state.shutdown.is_cancelled() {
            return Err(End::Shutdown);
        }
        // More unread than the ring holds: `recv` would report `Lagged`.
        if self.live.len() > FRAME_BUFFER {
            return Err(End::TooSlow);
        }
        while let Some(message) = self.ws.next().now_or_never() {
            if let Some(reply) = self.on_client(message)? {
                self.send_all(vec![reply]).await?;
            }
        }
        if self.ping.tick().now_or_never().is_some() {
            self.on_ping_tick().await?;
        }
        Ok(())
    }

    // --- live --------------------------------------------------------------------------------

    /// Forwards live frames, answers the client and pings it, until something ends the session.
    async fn forward_live(&mut self) -> End {
        loop {
            let step = tokio::select! {
                _ = self.state.shutdown.cancelled() => Err(End::Shutdown),
                message = self.ws.next() => match self.on_client(message) {
                    Ok(Some(reply)) => self.send_all(vec![reply]).await,
                    Ok(None) => Ok(()),
                    Err(end) => Err(end),
                },
                _ = self.ping.tick() => self.on_ping_tick().await,
                frame = self.live.recv() => match frame {
                    Ok(frame) => self.forward(frame).await,
                    Err(RecvError::Lagged(_)) => Err(End::TooSlow),
                    Err(RecvError::Closed) => Err(End::Shutdown),
                },
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    /// Sends `first` and whatever else is already queued (up to a batch), then flushes once.
    async fn forward(&mut self, first: Arc<LiveFrame>) -> Result<(), End> {
        let mut batch = Vec::new();
        self.admit(&first, &mut batch);
        let mut lagged = false;
        while batch.len() < LIVE_BATCH {
            match self.live.try_recv() {
                Ok(frame) => self.admit(&frame, &mut batch),
                Err(TryRecvError::Lagged(_)) => {
                    lagged = true;
                    break;
                }
                Err(_) => break,
            }
        }
        self.sent += batch.len() as u64;
        self.send_all(batch).await?;
        if lagged { Err(End::TooSlow) } else { Ok(()) }
    }

    /// Queues a live frame unless the client has it already; moves the cursor past it.
    fn admit(&mut self, frame: &LiveFrame, batch: &mut Vec<Message>) {
        let key = (frame.position.topic, frame.position.partition);
        if self
            .next
            .get(key)
            .is_some_and(|next| frame.position.offset < next)
        {
            return;
        }
        self.next.set(key, frame.position.offset + 1);
        batch.push(Message::text(frame.json.as_ref()));
    }

    // --- client, pings, writes, closing ------------------------------------------------------

    /// Handles one thing read from the client; returns a reply to send, if any.
    fn on_client(
        &mut self,
        message: Option<Result<Message, WsError>>,
    ) -> Result<Option<Message>, End> {
        let message = match message {
            None => return Err(End::ClientGone("connection closed".into())),
            Some(Err(error)) => return Err(End::ClientGone(error.to_string())),
            Some(Ok(message)) => message,
        };
        self.last_heard = Instant::now();
        match message {
            // tungstenite queued the answering close frame; `finish` flushes it.
            Message::Close(frame) => Err(End::ClientGone(match frame {
                Some(frame) => format!("client closed ({}: {})", frame.code, frame.reason),
                None => "client closed".into(),
            })),
            // The dashboard's own liveness check (browsers cannot send ping frames).
            Message::Text(body) => {
                let is_ping = serde_json::from_str::<Value>(body.as_str())
                    .is_ok_and(|v| v.get("type").and_then(Value::as_str) == Some("ping"));
                Ok(is_ping.then(|| text(json!({"type": "pong"}))))
            }
            // Pings are answered by tungstenite; pongs only prove the client is there.
            _ => Ok(None),
        }
    }

    async fn on_ping_tick(&mut self) -> Result<(), End> {
        if self.last_heard.elapsed() >= IDLE_TIMEOUT {
            return Err(End::Idle);
        }
        self.send_all(vec![Message::Ping(Bytes::new())]).await
    }

    /// Writes and flushes; gives way to shutdown. Each message (and the flush) may take
    /// [`SEND_TIMEOUT`]: a slow reader makes progress, a socket that takes nothing is dropped.
    async fn send_all(&mut self, messages: Vec<Message>) -> Result<(), End> {
        if messages.is_empty() {
            return Ok(());
        }
        let ws = &mut self.ws;
        let write = async move {
            for message in messages {
                within_send_timeout(ws.feed(message)).await?;
            }
            within_send_timeout(ws.flush()).await
        };
        tokio::select! {
            _ = self.state.shutdown.cancelled() => Err(End::Shutdown),
            written = write => written,
        }
    }

    /// Says why (with the client's cursor, to resume from), closes, and waits (bounded) for
    /// the client's close frame.
    async fn finish(mut self, end: End) {
        let cursor = self.next.to_string();
        tracing::info!(session = self.id, reason = %end, sent = self.sent, %cursor, "live session closed");
        let Some((code, reason)) = end.close_frame() else {
            // Sends the answer to a client's close frame, if tungstenite queued one.
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.ws.flush()).await;
            return;
        };
        let mut messages = Vec::new();
        if let End::Kafka(error) = &end {
            messages.push(text(json!({
                "type": "error",
                "code": "kafka_unavailable",
                "message": error.to_string(),
            })));
        }
        messages.push(text(
            json!({"type": "closing", "reason": reason, "cursor": cursor}),
        ));
        messages.push(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })));
        let ws = &mut self.ws;
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async move {
            for message in messages {
                ws.feed(message).await?;
            }
            ws.flush().await?;
            // Until the client's close frame (or the connection ends).
            while let Some(Ok(_)) = ws.next().await {}
            Ok::<(), WsError>(())
        })
        .await;
    }
}

// ---------------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------------

/// The Kafka session a replay reads with: the current one unless the connection supervisor
/// saw Kafka fail. (Not `ready_session`, whose freshness check also fails when this process is
/// merely too busy to probe on time; each call of the replay has its own deadline anyway.)
fn replay_session(state: &AppState) -> Result<Arc<KafkaSession>, KafkaError> {
    let status = state.kafka.status();
    match (status.problem, status.session) {
        (Some(problem), _) => Err(KafkaError::NotConnected(problem)),
        (None, Some(session)) => Ok(session),
        (None, None) => Err(KafkaError::NotConnected("connecting to Kafka".into())),
    }
}

/// A Kafka call of the replay. Gives way to shutdown; a call that timed out or lost its
/// connection is tried again (up to [`REPLAY_ATTEMPTS`] times) unless the connection
/// supervisor saw Kafka fail meanwhile: a slow answer under load is not an outage.
async fn replay_call<T, F, Fut>(state: &AppState, call: F) -> Result<T, End>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, KafkaError>>,
{
    let mut attempt = 1;
    loop {
        let result = tokio::select! {
            _ = state.shutdown.cancelled() => return Err(End::Shutdown),
            result = call() => result,
        };
        match result {
            Ok(value) => return Ok(value),
            Err(error)
                if attempt < REPLAY_ATTEMPTS
                    && is_transient(&error)
                    && state.kafka.status().problem.is_none() =>
            {
                tracing::debug!(%error, attempt, "replay call failed; trying again");
                attempt += 1;
            }
            Err(error) => return Err(End::Kafka(error)),
        }
    }
}

/// A timeout or a lost connection, as opposed to the broker refusing the request.
fn is_transient(error: &KafkaError) -> bool {
    match error {
        KafkaError::Timeout { .. } => true,
        KafkaError::Client { source, .. } => !matches!(source, ClientError::ServerError { .. }),
        _ => false,
    }
}

fn is_out_of_range(error: &KafkaError) -> bool {
    matches!(
        error,
        KafkaError::Client {
            source: ClientError::ServerError {
                protocol_error: ProtocolError::OffsetOutOfRange,
                ..
            },
            ..
        }
    )
}

async fn offset_at(state: &AppState, client: &PartitionClient, at: OffsetAt) -> Result<i64, End> {
    let timeout = state.config.kafka_timeout;
    replay_call(state, || {
        with_deadline("list offsets", timeout, client.get_offset(at))
    })
    .await
}

/// One replay fetch, with a deadline.
async fn fetch(
    client: &PartitionClient,
    offset: i64,
    timeout: Duration,
) -> Result<Vec<RecordAndOffset>, KafkaError> {
    let deadline = timeout + Duration::from_millis(REPLAY_FETCH_WAIT_MS as u64);
    let fetch = client.fetch_records(offset, 1..REPLAY_FETCH_BYTES, REPLAY_FETCH_WAIT_MS);
    let (records, _high_watermark) = with_deadline("fetch", deadline, fetch).await?;
    Ok(records)
}

/// One write to a client, bounded by [`SEND_TIMEOUT`].
async fn within_send_timeout(write: impl Future<Output = Result<(), WsError>>) -> Result<(), End> {
    match tokio::time::timeout(SEND_TIMEOUT, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(End::ClientGone(error.to_string())),
        Err(_) => Err(End::Stalled),
    }
}

fn text(value: Value) -> Message {
    Message::text(value.to_string())
}

/// The first frame: the server's cursor, where this session starts, and the server's version.
fn hello(server: &Cursor, positions: &[(TopicRole, i32, i64)], start: &Cursor) -> Message {
    let partitions: Vec<Value> = positions
        .iter()
        .map(|&(topic, partition, next_offset)| {
            json!({"topic": topic, "partition": partition, "next_offset": next_offset})
        })
        .collect();
    text(json!({
        "type": "hello",
        "server": concat!("shopstream ", env!("CARGO_PKG_VERSION")),
        "cursor": server.to_string(),
        "start": start.to_string(),
        "partitions": partitions,
    }))
}

/// A record read back from Kafka as the same frame the live stream published for it (decoded
/// exactly as the consumers decode); `None` for a record the consumers skip.
fn replay_frame(
    role: TopicRole,
    partition: i32,
    topic_name: &str,
    r: RecordAndOffset,
) -> Option<LiveFrame> {
    let position = Position {
        topic: role,
        partition,
        offset: r.offset,
    };
    let record = r.record;
    let value = record.value.as_deref()?;
    let (event, _) = Event::decode(value, position, topic_name, record.timestamp).ok()?;
    let data = std::str::from_utf8(value).ok()?;
    let key = record
        .key
        .as_ref()
        .map(|k| String::from_utf8_lossy(k).into_owned());
    Some(LiveFrame::new(
        position,
        &event.event_id,
        event.event_type,
        key.as_deref(),
        event.time,
        data,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(s: &str) -> Cursor {
        Cursor::parse(s).unwrap()
    }

    #[test]
    fn a_cursor_round_trips_in_topic_then_partition_order() {
        let c = cursor("payments:1:7, orders:1:3,orders:0:12,deliveries:2:0");
        assert_eq!(
            c.to_string(),
            "orders:0:12,orders:1:3,payments:1:7,deliveries:2:0"
        );
        assert_eq!(c.get((TopicRole::Orders, 0)), Some(12));
        assert_eq!(c.get((TopicRole::Payments, 0)), None);
        assert_eq!(c.len(), 4);
        assert_eq!(cursor(&c.to_string()), c);
        assert!(cursor("").is_empty());
        assert_eq!(cursor("").to_string(), "");
    }

    #[test]
    fn a_malformed_cursor_names_the_bad_part() {
        let cases = [
            ("orders:x:1", "`orders:x:1`: partition `x`"),
            ("orders:0:1,orders:-1:1", "`orders:-1:1`: partition `-1`"),
            ("orders:0:y", "`orders:0:y`: offset `y`"),
            ("orders:0:-5", "offset `-5`"),
            ("refunds:0:1", "unknown topic `refunds`"),
            (
                "orders:0",
                "`orders:0`: expected topic:partition:next_offset",
            ),
            ("orders:0:1:2", "expected topic:partition:next_offset"),
            ("orders:0:1,", "``: expected"),
            ("orders:0:1,orders:0:2", "names orders:0 a second time"),
            ("orders.0.1", "expected topic:partition:next_offset"),
        ];
        for (text, needle) in cases {
            let error = Cursor::parse(text).unwrap_err();
            assert!(
                error.0.contains(needle),
                "{text:?}: {error} should contain {needle:?}"
            );
        }
    }

    #[test]
    fn a_cursor_has_a_size_limit() {
        let long: Vec<String> = (0..=MAX_CURSOR_ENTRIES)
            .map(|p| format!("orders:{p}:0"))
            .collect();
        assert!(
            Cursor::parse(&long.join(","))
                .unwrap_err()
                .0
                .contains("more than")
        );
    }

    #[test]
    fn raise_never_moves_back() {
        let mut c = cursor("orders:0:5");
        c.raise((TopicRole::Orders, 0), 3);
        c.raise((TopicRole::Orders, 1), 4);
        assert_eq!(c.to_string(), "orders:0:5,orders:1:4");
        c.raise((TopicRole::Orders, 0), 9);
        assert_eq!(c.get((TopicRole::Orders, 0)), Some(9));
    }

    #[test]
    fn without_a_cursor_a_session_starts_at_the_server_and_replays_nothing() {
        let server = cursor("orders:0:12,orders:1:7");
        let p = plan(&server, None);
        assert_eq!(p.start, server);
        assert!(p.catch_up.is_empty());
    }

    #[test]
    fn a_cursor_behind_replays_ahead_is_checked_absent_starts_live() {
        let server = cursor("orders:0:12,orders:1:7,payments:0:3");
        let client = cursor("orders:0:10,orders:1:9,payments:0:3,deliveries:0:4");
        let p = plan(&server, Some(&client));
        // Client entries win; partitions it did not name start at the server.
        assert_eq!(
            p.start.to_string(),
            "orders:0:10,orders:1:9,payments:0:3,deliveries:0:4"
        );
        assert_eq!(
            p.catch_up,
            vec![
                (
                    (TopicRole::Orders, 0),
                    CatchUp::Behind {
                        requested: 10,
                        server: 12
                    }
                ),
                (
                    (TopicRole::Orders, 1),
                    CatchUp::Ahead {
                        requested: 9,
                        server: 7
                    }
                ),
            ]
        );
        let partial = plan(&server, Some(&cursor("orders:1:2")));
        assert_eq!(
            partial.start.to_string(),
            "orders:0:12,orders:1:2,payments:0:3"
        );
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    const GOOD: [(&str, &str); 4] = [
        ("upgrade", "websocket"),
        ("connection", "keep-alive, Upgrade"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    #[test]
    fn the_handshake_answers_the_rfc_example() {
        let accept = accept_key(Version::HTTP_11, &headers(&GOOD)).unwrap();
        // RFC 6455, section 1.3.
        assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        let response = switching_protocols(&accept);
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(
            response.headers()[SEC_WEBSOCKET_ACCEPT],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn a_bad_handshake_is_refused() {
        let without = |name: &str| -> Vec<(&str, &str)> {
            GOOD.iter().copied().filter(|(n, _)| *n != name).collect()
        };
        for missing in ["upgrade", "connection", "sec-websocket-key"] {
            let refused = accept_key(Version::HTTP_11, &headers(&without(missing))).unwrap_err();
            assert_eq!(refused.status, StatusCode::BAD_REQUEST, "without {missing}");
            assert_eq!(refused.code, "websocket_required");
        }
        let refused = accept_key(
            Version::HTTP_11,
            &headers(&without("sec-websocket-version")),
        );
        let response = refuse(refused.unwrap_err());
        assert_eq!(response.status(), StatusCode::UPGRADE_REQUIRED);
        assert_eq!(response.headers()[SEC_WEBSOCKET_VERSION], "13");
        let refused = accept_key(Version::HTTP_10, &headers(&GOOD)).unwrap_err();
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    }
}
