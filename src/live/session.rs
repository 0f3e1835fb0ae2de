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
//! Cursors and the replay plan are in [`super::cursor`], the replay itself in
//! [`super::replay`]. A session gets a narrow [`LiveContext`], not the whole application state.
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
use serde_json::Value;
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;

use super::cursor::{CatchUp, Cursor, PartitionKey, Plan, plan};
use super::replay::{FrameSink, Replay, behind, text};
use crate::domain::event::TopicRole;
use crate::kafka::connection::KafkaSession;
use crate::kafka::partitions::{Partition, Use};
use crate::kafka::retry::{self, Retrying};
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
/// Most live frames written before one flush.
const LIVE_BATCH: usize = 256;
/// Replays from Kafka running at once; other sessions wait for their turn (their live frames
/// queue in the ring meanwhile), so that many clients resuming at once cannot make the server
/// read the log many times over at full speed.
pub const CONCURRENT_REPLAYS: usize = 4;

const TOO_SLOW: &str = "too slow: resume with your cursor";
const SIGNED_OUT: &str = "the session was signed out or expired: sign in again";

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
    /// `shopstream_live_delivery_duration_seconds`: observed once per live frame written.
    pub delivery: prometheus_client::metrics::histogram::Histogram,
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
pub(super) enum End {
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

pub(crate) struct Session {
    id: u64,
    ctx: LiveContext,
    client: Client,
    /// Per partition, the next offset the client needs: its cursor right now.
    next: Cursor,
    /// Event frames sent (replayed and live).
    sent: u64,
}

/// The client's side of a session: its socket, the live frames queued for it, its pings.
struct Client {
    ws: Socket,
    live: broadcast::Receiver<Arc<LiveFrame>>,
    /// Frames the live ring holds: a receiver with more unread has lost some.
    live_buffer: usize,
    ping: Interval,
    last_heard: Instant,
    shutdown: CancellationToken,
    /// Whether the client may still watch ([`LiveContext::still_allowed`]).
    still_allowed: Arc<dyn Fn() -> bool + Send + Sync>,
}

impl Session {
    pub(crate) async fn run(ctx: LiveContext, ws: Socket, requested: Option<Cursor>) {
        // Subscribe first: every frame published from now on is in the receiver.
        let (live, positions) = ctx.store.subscribe();
        let server = Cursor::from_positions(&positions);
        let plan = plan(&server, requested.as_ref());
        let mut ping = tokio::time::interval_at(Instant::now() + PING_INTERVAL, PING_INTERVAL);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let client = Client {
            ws,
            live,
            live_buffer: ctx.store.live_buffer(),
            ping,
            last_heard: Instant::now(),
            shutdown: ctx.shutdown.clone(),
            still_allowed: Arc::clone(&ctx.still_allowed),
        };
        let mut session = Session {
            id: SESSION_IDS.fetch_add(1, Ordering::Relaxed),
            ctx,
            client,
            next: plan.start.clone(),
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
            .client
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
            .client
            .send_all(vec![text(SessionFrame::CaughtUp { replayed })])
            .await
        {
            return end;
        }
        self.forward_live().await
    }

    // --- replay ------------------------------------------------------------------------------

    /// Replays every partition the client is behind on ([`super::replay`]); returns the
    /// number of event frames. A client further behind than `--max-replay` events in all gets
    /// a reset per partition instead (it reloads and follows live from the server's position);
    /// the others wait for one of the [`CONCURRENT_REPLAYS`] turns.
    async fn replay(&mut self, catch_up: Vec<(PartitionKey, CatchUp)>) -> Result<u64, End> {
        if catch_up.is_empty() {
            return Ok(0);
        }
        let mut replay = Replay {
            session: self.id,
            store: &self.ctx.store,
            shutdown: &self.ctx.shutdown,
            sink: &mut self.client,
            next: &mut self.next,
            replayed: 0,
        };
        let result = replay_partitions(&self.ctx, &mut replay, catch_up).await;
        let replayed = replay.replayed;
        self.sent += replayed;
        result.map(|()| replayed)
    }

    // --- live --------------------------------------------------------------------------------

    /// Forwards live frames, answers the client and pings it, until something ends the session.
    async fn forward_live(&mut self) -> End {
        loop {
            let client = &mut self.client;
            let step = tokio::select! {
                _ = client.shutdown.cancelled() => Err(End::Shutdown),
                message = client.ws.next() => match client.on_client(message) {
                    Ok(Some(reply)) => client.send_all(vec![reply]).await,
                    Ok(None) => Ok(()),
                    Err(end) => Err(end),
                },
                _ = client.ping.tick() => client.on_ping_tick().await,
                frame = client.live.recv() => match frame {
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
        let mut built = Vec::new();
        self.admit(&first, &mut batch, &mut built);
        let mut lagged = false;
        while batch.len() < LIVE_BATCH {
            match self.client.live.try_recv() {
                Ok(frame) => self.admit(&frame, &mut batch, &mut built),
                Err(TryRecvError::Lagged(_)) => {
                    lagged = true;
                    break;
                }
                Err(_) => break,
            }
        }
        self.sent += batch.len() as u64;
        self.client.send_all(batch).await?;
        // Written and flushed: each frame's way from its commit to this client ends here.
        for at in built {
            self.ctx.delivery.observe(at.elapsed().as_secs_f64());
        }
        if lagged { Err(End::TooSlow) } else { Ok(()) }
    }

    /// Queues a live frame unless the client has it already (with when it was built); moves the
    /// cursor past it.
    fn admit(
        &mut self,
        frame: &LiveFrame,
        batch: &mut Vec<Message>,
        built: &mut Vec<std::time::Instant>,
    ) {
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
        built.push(frame.built_at);
    }

    // --- closing -----------------------------------------------------------------------------

    /// Says why (with the client's cursor, to resume from), closes, and waits (bounded) for
    /// the client's close frame.
    async fn finish(mut self, end: End) {
        let cursor = self.next.to_string();
        tracing::info!(session = self.id, reason = %end, sent = self.sent, %cursor, "live session closed");
        let Some((code, reason)) = end.close_frame() else {
            // Sends the answer to a client's close frame, if tungstenite queued one.
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.client.ws.flush()).await;
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
        let ws = &mut self.client.ws;
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

/// The replay of every partition in `catch_up`, through the Kafka session of the moment, or
/// resets when the client is too far behind.
async fn replay_partitions(
    ctx: &LiveContext,
    replay: &mut Replay<'_, Client>,
    catch_up: Vec<(PartitionKey, CatchUp)>,
) -> Result<(), End> {
    let behind = behind(&catch_up);
    if behind > ctx.max_replay {
        tracing::info!(
            session = replay.session,
            behind,
            max = ctx.max_replay,
            "too far behind to replay; resetting the client to the live position"
        );
        return replay.skip_all(catch_up).await;
    }
    let _turn = tokio::select! {
        _ = ctx.shutdown.cancelled() => return Err(End::Shutdown),
        turn = Arc::clone(&ctx.replays).acquire_owned() => turn.map_err(|_| End::Shutdown)?,
    };
    let session = replay_session(ctx).map_err(End::Kafka)?;
    for (key, what) in catch_up {
        let (role, partition) = key;
        let topic = session.topics.get(role);
        if partition >= topic.partitions {
            tracing::debug!(session = replay.session, %role, partition, "cursor names a partition that does not exist; ignored");
            continue;
        }
        let log = Retrying::new(
            Partition::new(
                Arc::clone(&session),
                Use::Replay,
                role,
                partition,
                ctx.kafka_timeout,
            ),
            ctx.kafka.clone(),
            retry::ATTEMPTS,
        );
        replay.partition(&log, key, &topic.name, what).await?;
    }
    tracing::debug!(
        session = replay.session,
        replayed = replay.replayed,
        "replay done"
    );
    Ok(())
}

impl Client {
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
        if !(self.still_allowed)() {
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
            _ = self.shutdown.cancelled() => Err(End::Shutdown),
            written = write => written,
        }
    }
}

/// The replay writes to the socket, and between two batches stops early when shutting down or
/// already too far behind the live stream, and answers what the client sent meanwhile.
impl FrameSink for Client {
    fn send(&mut self, frames: Vec<Message>) -> impl Future<Output = Result<(), End>> + Send {
        self.send_all(frames)
    }

    async fn between_batches(&mut self) -> Result<(), End> {
        if self.shutdown.is_cancelled() {
            return Err(End::Shutdown);
        }
        // More unread than the ring holds: `recv` would report `Lagged`.
        if self.live.len() > self.live_buffer {
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

/// One write to a client, bounded by [`SEND_TIMEOUT`].
async fn within_send_timeout(write: impl Future<Output = Result<(), WsError>>) -> Result<(), End> {
    match tokio::time::timeout(SEND_TIMEOUT, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(End::ClientGone(error.to_string())),
        Err(_) => Err(End::Stalled),
    }
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
