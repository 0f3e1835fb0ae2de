//! Live sessions: what a WebSocket client (`GET /ws`, upgraded by [`crate::http::upgrade`])
//! receives, and in which order.
//!
//! A session sends, in order: a `hello` frame with the server's cursor; when the client sent a
//! cursor, the events it missed, read from Kafka itself (with a `reset` frame for a partition
//! whose requested offset is no longer kept); a `caught_up` frame; then live events, one frame
//! each. It ends with a `closing` frame that carries the client's cursor and a close frame:
//! 1001 at shutdown or after 60 s without a word from the client (it is pinged every 20 s),
//! 1008 when it fell too far behind, 1011 after an `error` frame when Kafka failed during
//! the replay.
//!
//! Every client has the same bounded queue: the store's ring of frames
//! (`--live-buffer`, [`FRAME_BUFFER`](crate::model::store::FRAME_BUFFER) by default), plus its socket's buffers. A client that falls further behind is
//! closed with its cursor and resumes from it; one whose socket takes nothing for 60 s is
//! dropped (nothing can reach it). Nothing shared is held while writing to a socket.
//!
//! Cursors and the replay plan are in [`super::cursor`]. A session gets a narrow
//! [`LiveContext`], not the whole application state.
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

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{FutureExt, SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use rskafka::client::error::Error as ClientError;
use rskafka::client::partition::OffsetAt;
use rskafka::record::RecordAndOffset;
use serde_json::Value;
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;

use super::cursor::{CatchUp, Cursor, PartitionKey, Plan, plan};
use crate::domain::event::{Event, Position, TopicRole};
use crate::kafka::connection::KafkaSession;
use crate::kafka::partitions::{Partition, PartitionLog, Use};
use crate::kafka::records;
use crate::kafka::{KafkaConnection, KafkaError};
use crate::messages::{LiveFrame, PartitionPosition, SessionFrame};
use crate::model::store::Store;

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
/// Replays from Kafka running at once; other sessions wait for their turn (their live frames
/// queue in the ring meanwhile), so that many clients resuming at once cannot make the server
/// read the log many times over at full speed.
pub const CONCURRENT_REPLAYS: usize = 4;
/// Most events one session replays per second.
const REPLAY_RATE: u64 = 50_000;

const TOO_SLOW: &str = "too slow: resume with your cursor";
const SIGNED_OUT: &str = "the session was signed out or expired: sign in again";
const RETENTION_RESET: &str =
    "the requested offset is no longer kept by Kafka (retention); replaying from the earliest kept";
const PAST_END_RESET: &str = "the requested offset is past the end of the log (was the topic \
     recreated?); replaying from the earliest kept";
const TOO_FAR_BEHIND_RESET: &str = "more events to replay than one resume may (--max-replay): \
     reload, then follow the live stream from here";

/// Numbers sessions in the logs.
static SESSION_IDS: AtomicU64 = AtomicU64::new(1);

/// What a session needs of the server: the committed positions and the live frames (the
/// store), the Kafka connection its replay reads through, and the shutdown signal.
#[derive(Clone)]
pub struct LiveContext {
    pub store: Arc<Store>,
    pub kafka: KafkaConnection,
    pub kafka_timeout: Duration,
    pub shutdown: CancellationToken,
    /// Turns to replay from Kafka ([`CONCURRENT_REPLAYS`]).
    pub replays: Arc<tokio::sync::Semaphore>,
    /// Most events one resume may replay; a client further behind gets resets instead.
    pub max_replay: u64,
    /// Whether the client may still watch (its session cookie may have been signed out or
    /// expired since the upgrade); asked at every ping.
    pub still_allowed: Arc<dyn Fn() -> bool + Send + Sync>,
}

impl fmt::Debug for LiveContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveContext")
            .field("kafka_timeout", &self.kafka_timeout)
            .field("max_replay", &self.max_replay)
            .finish_non_exhaustive()
    }
}

/// A WebSocket connection, once upgraded.
pub type Socket = WebSocketStream<TokioIo<Upgraded>>;

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
    /// The session cookie it was opened with was signed out or expired.
    SignedOut,
    /// A message could not be written within [`SEND_TIMEOUT`].
    Stalled,
    /// Kafka failed during the replay.
    Kafka(KafkaError),
    /// The store could not be read during the replay.
    Store(String),
}

impl End {
    /// The close code and reason to send, or `None` when the socket cannot take them.
    fn close_frame(&self) -> Option<(CloseCode, &'static str)> {
        match self {
            End::ClientGone(_) | End::Stalled => None,
            End::Shutdown => Some((CloseCode::Away, "server shutting down")),
            End::TooSlow => Some((CloseCode::Policy, TOO_SLOW)),
            End::Idle => Some((CloseCode::Away, "idle: no pong received")),
            End::SignedOut => Some((CloseCode::Policy, SIGNED_OUT)),
            End::Kafka(_) => Some((CloseCode::Error, "Kafka is unavailable: retry later")),
            End::Store(_) => Some((CloseCode::Error, "the store is unavailable: retry later")),
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
            End::SignedOut => f.write_str(SIGNED_OUT),
            End::Stalled => write!(f, "the client took no message for {SEND_TIMEOUT:?}"),
            End::Kafka(error) => write!(f, "Kafka failed during the replay: {error}"),
            End::Store(error) => write!(f, "the store failed during the replay: {error}"),
        }
    }
}

/// What one replay fetch brought.
enum Fetched {
    /// The records, and where the next fetch starts: past transaction markers, aborted and
    /// unreadable batches too, which hold no record to replay.
    Records(Vec<RecordAndOffset>, i64),
    /// Retention removed the offset asked for: go on from this one.
    Reset(i64),
}

pub(crate) struct Session {
    id: u64,
    ctx: LiveContext,
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
    pub(crate) async fn run(ctx: LiveContext, ws: Socket, requested: Option<Cursor>) {
        // Subscribe first: every frame published from now on is in the receiver.
        let (live, positions) = ctx.store.subscribe();
        let server = Cursor::from_positions(&positions);
        let plan = plan(&server, requested.as_ref());
        let mut ping = tokio::time::interval_at(Instant::now() + PING_INTERVAL, PING_INTERVAL);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut session = Session {
            id: SESSION_IDS.fetch_add(1, Ordering::Relaxed),
            ctx,
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
            clients = session.ctx.store.live_clients(),
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
            .send_all(vec![hello(
                self.ctx.store.numbering(),
                server,
                positions,
                &plan.start,
            )])
            .await
        {
            return end;
        }
        let replayed = match self.replay(plan.catch_up).await {
            Ok(replayed) => replayed,
            Err(end) => return end,
        };
        if let Err(end) = self
            .send_all(vec![text(SessionFrame::CaughtUp { replayed })])
            .await
        {
            return end;
        }
        self.forward_live().await
    }

    // --- replay ------------------------------------------------------------------------------

    /// Replays every partition the client is behind on; returns the number of event frames.
    /// A client further behind than `--max-replay` events in all gets a reset per partition
    /// instead (it reloads and follows live from the server's position); the others wait
    /// for one of the [`CONCURRENT_REPLAYS`] turns.
    async fn replay(&mut self, catch_up: Vec<(PartitionKey, CatchUp)>) -> Result<u64, End> {
        if catch_up.is_empty() {
            return Ok(0);
        }
        let behind: u64 = catch_up
            .iter()
            .map(|(_, what)| match *what {
                CatchUp::Behind { requested, server } => server.saturating_sub(requested),
                // From the earliest kept: at most the whole partition.
                CatchUp::Ahead { server, .. } => server,
            })
            .map(|n| u64::try_from(n).unwrap_or(0))
            .fold(0u64, u64::saturating_add);
        if behind > self.ctx.max_replay {
            tracing::info!(
                session = self.id,
                behind,
                max = self.ctx.max_replay,
                "too far behind to replay; resetting the client to the live position"
            );
            for (key, what) in catch_up {
                let (CatchUp::Behind { requested, server } | CatchUp::Ahead { requested, server }) =
                    what;
                self.reset(key, requested, server, TOO_FAR_BEHIND_RESET)
                    .await?;
            }
            return Ok(0);
        }
        let replays = Arc::clone(&self.ctx.replays);
        let _turn = tokio::select! {
            _ = self.ctx.shutdown.cancelled() => return Err(End::Shutdown),
            turn = replays.acquire_owned() => turn.map_err(|_| End::Shutdown)?,
        };
        let session = replay_session(&self.ctx).map_err(End::Kafka)?;
        let mut replayed = 0;
        for (key, what) in catch_up {
            replayed += self.replay_partition(&session, key, what).await?;
        }
        tracing::debug!(session = self.id, replayed, "replay done");
        Ok(replayed)
    }

    async fn replay_partition(
        &mut self,
        session: &Arc<KafkaSession>,
        key: PartitionKey,
        what: CatchUp,
    ) -> Result<u64, End> {
        let (role, partition) = key;
        let topic = session.topics.get(role);
        if partition >= topic.partitions {
            tracing::debug!(session = self.id, %role, partition, "cursor names a partition that does not exist; ignored");
            return Ok(0);
        }
        let log = Partition::new(
            Arc::clone(session),
            Use::Replay,
            role,
            partition,
            self.ctx.kafka_timeout,
        );
        let Some((from, to)) = self.replay_range(&log, key, what).await? else {
            return Ok(0);
        };
        let mut offset = from;
        let mut replayed = 0;
        let mut empty_fetches = 0;
        let started = Instant::now();
        while offset < to {
            self.between_batches().await?;
            // At most REPLAY_RATE events a second: wait until the events sent so far are due.
            let due = started + Duration::from_secs_f64(replayed as f64 / REPLAY_RATE as f64);
            if due > Instant::now() {
                tokio::select! {
                    _ = self.ctx.shutdown.cancelled() => return Err(End::Shutdown),
                    _ = tokio::time::sleep_until(due) => {}
                }
            }
            let (records, past) = match self.fetch_batch(&log, key, &topic.name, offset).await? {
                Fetched::Records(records, past) => (records, past.min(to)),
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
                if past > offset {
                    // Only markers or unreadable batches here: go past them.
                    offset = past;
                    self.next.set(key, offset);
                    continue;
                }
                empty_fetches += 1;
                if empty_fetches == REPLAY_EMPTY_FETCHES {
                    tracing::warn!(session = self.id, topic = %topic.name, partition, offset, to, "no record left to replay in range; skipping to the live stream");
                    break;
                }
                continue;
            };
            empty_fetches = 0;
            let decoded: Vec<Replayed> = records
                .into_iter()
                .filter(|r| (offset..to).contains(&r.offset))
                .filter_map(|r| decode_replayed(role, partition, &topic.name, r))
                .collect();
            let frames = replay_frames(&self.ctx.store, decoded).await?;
            replayed += frames.len() as u64;
            self.sent += frames.len() as u64;
            self.send_all(frames).await?;
            offset = last.saturating_add(1).max(past);
            self.next.set(key, offset);
        }
        self.next.raise(key, to);
        Ok(replayed)
    }

    /// The offsets to replay for one partition, `[from, to)`, after telling the client about a
    /// reset when its offset is no longer in the log.
    async fn replay_range(
        &mut self,
        log: &impl PartitionLog,
        key: PartitionKey,
        what: CatchUp,
    ) -> Result<Option<(i64, i64)>, End> {
        match what {
            CatchUp::Behind { requested, server } => {
                let earliest = offset_at(&self.ctx, log, OffsetAt::Earliest).await?;
                if requested < earliest {
                    self.reset(key, requested, earliest, RETENTION_RESET)
                        .await?;
                }
                Ok(Some((requested.max(earliest), server)))
            }
            CatchUp::Ahead { requested, server } => {
                let latest = offset_at(&self.ctx, log, OffsetAt::Latest).await?;
                if requested <= latest {
                    return Ok(None);
                }
                let earliest = offset_at(&self.ctx, log, OffsetAt::Earliest).await?;
                self.reset(key, requested, earliest, PAST_END_RESET).await?;
                Ok(Some((earliest, server)))
            }
        }
    }

    /// One batch of records from `offset`; when retention removed `offset` meanwhile, the
    /// client gets a reset.
    async fn fetch_batch(
        &mut self,
        log: &impl PartitionLog,
        key: PartitionKey,
        topic_name: &str,
        offset: i64,
    ) -> Result<Fetched, End> {
        let fetch = || log.read(offset, REPLAY_FETCH_BYTES, REPLAY_FETCH_WAIT_MS);
        match replay_call(&self.ctx, fetch).await {
            Ok(fetched) => Ok(Fetched::Records(fetched.records, fetched.next_offset)),
            Err(End::Kafka(KafkaError::OffsetOutOfRange { .. })) => {
                let earliest = offset_at(&self.ctx, log, OffsetAt::Earliest).await?;
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
        self.send_all(vec![text(SessionFrame::Reset {
            topic: key.0,
            partition: key.1,
            requested,
            earliest,
            reason,
        })])
        .await
    }

    /// Between two replay batches: stop early when shutting down or already too far behind the
    /// live stream, and handle what the client sent meanwhile.
    async fn between_batches(&mut self) -> Result<(), End> {
        if self.ctx.shutdown.is_cancelled() {
            return Err(End::Shutdown);
        }
        // More unread than the ring holds: `recv` would report `Lagged`.
        if self.live.len() > self.ctx.store.live_buffer() {
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
                _ = self.ctx.shutdown.cancelled() => Err(End::Shutdown),
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
                Ok(is_ping.then(|| text(SessionFrame::Pong)))
            }
            // Pings are answered by tungstenite; pongs only prove the client is there.
            _ => Ok(None),
        }
    }

    async fn on_ping_tick(&mut self) -> Result<(), End> {
        if self.last_heard.elapsed() >= IDLE_TIMEOUT {
            return Err(End::Idle);
        }
        if !(self.ctx.still_allowed)() {
            return Err(End::SignedOut);
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
            _ = self.ctx.shutdown.cancelled() => Err(End::Shutdown),
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
            messages.push(text(SessionFrame::Error {
                code: "kafka_unavailable",
                message: error.to_string(),
            }));
        }
        messages.push(text(SessionFrame::Closing { reason, cursor }));
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
fn replay_session(ctx: &LiveContext) -> Result<Arc<KafkaSession>, KafkaError> {
    let status = ctx.kafka.status();
    match (status.problem, status.session) {
        (Some(problem), _) => Err(KafkaError::NotConnected(problem)),
        (None, Some(session)) => Ok(session),
        (None, None) => Err(KafkaError::NotConnected("connecting to Kafka".into())),
    }
}

/// A Kafka call of the replay. Gives way to shutdown; a call that timed out or lost its
/// connection is tried again (up to [`REPLAY_ATTEMPTS`] times) unless the connection
/// supervisor saw Kafka fail meanwhile: a slow answer under load is not an outage.
async fn replay_call<T, F, Fut>(ctx: &LiveContext, call: F) -> Result<T, End>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, KafkaError>>,
{
    let mut attempt = 1;
    loop {
        let result = tokio::select! {
            _ = ctx.shutdown.cancelled() => return Err(End::Shutdown),
            result = call() => result,
        };
        match result {
            Ok(value) => return Ok(value),
            Err(error)
                if attempt < REPLAY_ATTEMPTS
                    && is_transient(&error)
                    && ctx.kafka.status().problem.is_none() =>
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
        KafkaError::Timeout { .. } | KafkaError::Connection { .. } => true,
        KafkaError::Client { source, .. } => !matches!(source, ClientError::ServerError { .. }),
        _ => false,
    }
}

async fn offset_at(ctx: &LiveContext, log: &impl PartitionLog, at: OffsetAt) -> Result<i64, End> {
    replay_call(ctx, || log.offset(at)).await
}

/// One write to a client, bounded by [`SEND_TIMEOUT`].
async fn within_send_timeout(write: impl Future<Output = Result<(), WsError>>) -> Result<(), End> {
    match tokio::time::timeout(SEND_TIMEOUT, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(End::ClientGone(error.to_string())),
        Err(_) => Err(End::Stalled),
    }
}

fn text(frame: SessionFrame<'_>) -> Message {
    Message::text(frame.to_json())
}

/// The first frame: the server's cursor, where this session starts, and the server's version.
fn hello(
    store: String,
    server: &Cursor,
    positions: &[(TopicRole, i32, i64)],
    start: &Cursor,
) -> Message {
    text(SessionFrame::Hello {
        server: concat!("shopstream ", env!("CARGO_PKG_VERSION")),
        store,
        cursor: server.to_string(),
        start: start.to_string(),
        partitions: positions
            .iter()
            .map(|&(topic, partition, next_offset)| PartitionPosition {
                topic,
                partition,
                next_offset,
            })
            .collect(),
    })
}

/// The replayed records as the same frames the live stream published for them: what each
/// event did to its order is read back from the store, which applied every record the
/// replay reaches (it stops at the server's cursor).
async fn replay_frames(store: &Store, replayed: Vec<Replayed>) -> Result<Vec<Message>, End> {
    let wanted: Vec<(String, String)> = replayed
        .iter()
        .map(|r| (r.event.order_id.clone(), r.event.event_id.clone()))
        .collect();
    let effects = store
        .query(move |view| view.effects_of(&wanted))
        .await
        .map_err(|error| End::Store(error.to_string()))?;
    Ok(replayed
        .into_iter()
        .zip(effects)
        .map(|(r, effect)| {
            let effect = effect.unwrap_or_default();
            let frame = LiveFrame::new(
                r.position,
                &r.event,
                r.key.as_deref(),
                &r.data,
                effect.order_status,
                effect.seq,
            );
            Message::text(frame.json.as_ref())
        })
        .collect())
}

/// A record read back from Kafka, decoded exactly as the consumers decode it.
struct Replayed {
    position: Position,
    event: Event,
    key: Option<String>,
    data: String,
}

/// `None` for a record the consumers skip: it never was a frame.
fn decode_replayed(
    role: TopicRole,
    partition: i32,
    topic_name: &str,
    r: RecordAndOffset,
) -> Option<Replayed> {
    let position = Position {
        topic: role,
        partition,
        offset: r.offset,
    };
    let fetched = records::decode(position, topic_name, &r.record);
    let (event, data) = fetched.decoded.ok()?;
    Some(Replayed {
        position,
        event,
        key: fetched.key,
        data,
    })
}
