//! Partition consumers: one task per (topic, partition), reading from the offset shopstream
//! tracks for it in the read model (rskafka has no consumer groups, and needs none here: every
//! instance reads every partition).
//!
//! A record that is not JSON or not a known shape is skipped, counted and logged once per
//! partition; consumption goes on. A batch that cannot be read (corrupt bytes) is skipped with
//! its offsets, counted and logged; transaction markers and aborted transactions are read past.
//! An offset that fell out of retention resets to the earliest one and is counted.
//!
//! Never a silent stall: a partition whose next offset has not moved for [`STALL_AFTER`] while
//! records wait for it (or while its fetches fail) is reported, with the reason, in
//! [`CatchUp::stalled`] (read by `/readyz`, `/metrics` and `/api/kafka`) and logged at warn. Every Kafka call goes through [`super::partitions`]: it has a deadline,
//! and after a failure the partition client is rebuilt (from the newest session, should the
//! connection have been replaced). The fetch-and-apply step reads through [`PartitionLog`], so
//! unit tests drive it with a fake log.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rskafka::client::partition::OffsetAt;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::KafkaError;
use super::connection::{KafkaConnection, KafkaSession};
use super::partitions::{Partition, PartitionLog, Use};
use super::records;
use crate::domain::event::{Position, TopicRole};
use crate::model::StoreError;
use crate::model::store::{FetchCounts, FetchedRecord, Store};

/// Why one consumer step failed; either way the consumer pauses and tries again.
#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Most bytes asked for in one fetch. Every partition's consumer may hold one fetched batch
/// while it waits for the store, decoded: 256 KiB (about 650 orders' records) keeps that
/// memory small and still fills a group commit. A larger record still comes whole: the broker
/// always returns at least one batch.
const FETCH_MAX_BYTES: i32 = 256 * 1024;
/// How long the broker may hold a fetch open waiting for new records.
const FETCH_MAX_WAIT_MS: i32 = 500;
/// Pause after a failed fetch, growing to the maximum. The maximum is also how late, at
/// worst, a partition resumes after its new leader took over (a broker killed or paused), on
/// top of the cluster's own failover; the shop's next command on an order waits for it, as it
/// needs the order read. A failed fetch costs one leader lookup, so trying again within a
/// second is cheap enough (README "Fault campaign").
const RETRY_PAUSE: (Duration, Duration) = (Duration::from_millis(100), Duration::from_millis(800));
/// How long a partition's next offset may stay put while records wait (or fetches fail)
/// before it is reported as stalled: several fetches and retries, far longer than a group
/// commit takes.
pub const STALL_AFTER: Duration = Duration::from_secs(15);
/// Unreadable batches logged one by one per partition; after that they are only counted.
const UNREADABLE_LOGGED: u32 = 5;

/// A partition that makes no progress while it has something to read, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stall {
    pub topic: TopicRole,
    pub partition: i32,
    /// The offset it is stuck at.
    pub offset: i64,
    /// Records known to wait past it (`None` when its fetches fail before the broker says).
    pub lag: Option<i64>,
    pub reason: String,
    /// Seconds without progress.
    pub seconds: u64,
}

/// Counts how much of the log was replayed at start, and says so once every partition caught up.
#[derive(Debug)]
pub struct CatchUp {
    started: Instant,
    partitions: usize,
    remaining: AtomicUsize,
    replayed: AtomicU64,
    from_store: bool,
    /// Partitions stalled right now, written by their consumers.
    stalls: Mutex<BTreeMap<(TopicRole, i32), Stall>>,
    /// Where each partition's log ended at its consumer's last fetch answer, written by the
    /// consumers; read by `/metrics` (lag without asking the broker again).
    log_ends: Mutex<BTreeMap<(TopicRole, i32), LogEnd>>,
    /// Each partition's part of the replay, written by its consumer as it goes.
    spans: Mutex<BTreeMap<(TopicRole, i32), Span>>,
    /// How long the replay took, once it is over.
    took: std::sync::OnceLock<Duration>,
    /// Becomes `true` once every partition caught up, for those who wait for it.
    finished: tokio::sync::watch::Sender<bool>,
}

/// One partition's part of the replay at start, in offsets: from where it started to the end of
/// its log at start, and where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: i64,
    target: i64,
    position: i64,
}

impl Span {
    fn total(&self) -> u64 {
        self.target.saturating_sub(self.start).max(0) as u64
    }

    fn done(&self) -> u64 {
        (self.position.saturating_sub(self.start).max(0) as u64).min(self.total())
    }
}

/// How far the replay at start has come. Counted in offsets: records, transaction markers and
/// skipped batches alike, from each partition's starting offset to the end its log had when
/// the replay started (what is written meanwhile is live traffic, not replay).
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayProgress {
    pub caught_up: bool,
    pub records_done: u64,
    /// Known once every partition looked up its end (`partitions_known`); a lower bound before.
    pub records_total: u64,
    pub partitions: usize,
    pub partitions_known: usize,
    pub partitions_done: usize,
    /// Since the replay started; frozen once it is over.
    pub elapsed: Duration,
    /// Records done per second since the start of the replay (`None` before the first).
    pub records_per_second: Option<f64>,
    /// At that rate, how long the rest takes (`None` while the rate or the total is unknown).
    pub eta: Option<Duration>,
}

impl ReplayProgress {
    /// Done, as a share of the total (1.0 once caught up).
    pub fn fraction(&self) -> f64 {
        if self.caught_up {
            1.0
        } else if self.records_total == 0 {
            0.0
        } else {
            self.records_done as f64 / self.records_total as f64
        }
    }

    /// One line for people: the log, systemd's `STATUS=`.
    pub fn summary(&self) -> String {
        if self.caught_up {
            return format!(
                "caught up with the log ({} records replayed in {:.1} s)",
                self.records_done,
                self.elapsed.as_secs_f64()
            );
        }
        let mut line = format!(
            "catching up with the log: {:.0}% ({} of {} records",
            self.fraction() * 100.0,
            self.records_done,
            self.records_total
        );
        if let Some(rate) = self.records_per_second {
            line.push_str(&format!(", {rate:.0} records/s"));
        }
        if let Some(eta) = self.eta {
            line.push_str(&format!(
                ", about {} s left",
                eta.as_secs_f64().ceil() as u64
            ));
        }
        line.push(')');
        line
    }
}

/// A partition's end as a fetch answer gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogEnd {
    pub high_watermark: i64,
    /// The end of what `read_committed` may read (`None` when the broker did not say).
    pub last_stable_offset: Option<i64>,
}

impl CatchUp {
    pub fn new(partitions: usize, from_store: bool) -> Self {
        Self {
            started: Instant::now(),
            partitions,
            remaining: AtomicUsize::new(partitions),
            replayed: AtomicU64::new(0),
            from_store,
            stalls: Mutex::default(),
            log_ends: Mutex::default(),
            spans: Mutex::default(),
            took: std::sync::OnceLock::new(),
            finished: tokio::sync::watch::Sender::new(partitions == 0),
        }
    }

    /// Each partition's log end as its consumer last learnt it.
    pub fn log_ends(&self) -> BTreeMap<(TopicRole, i32), LogEnd> {
        self.log_ends
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The end learnt from the offset lookup at start, until the first fetch answers: an
    /// idle partition's long poll may take a while, and a scrape should see its end already.
    fn set_log_end_if_unknown(&self, key: (TopicRole, i32), end: LogEnd) {
        self.log_ends
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_insert(end);
    }

    fn set_log_end(&self, key: (TopicRole, i32), end: LogEnd) {
        self.log_ends
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, end);
    }

    /// A partition's replay starts at `start` and ends at `target` (its log's end at start).
    fn begin(&self, key: (TopicRole, i32), start: i64, target: i64) {
        self.spans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_insert(Span {
                start,
                target,
                position: start,
            });
    }

    /// A partition's replay reached `position`.
    fn advance(&self, key: (TopicRole, i32), position: i64) {
        if let Some(span) = self
            .spans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&key)
        {
            span.position = position;
        }
    }

    /// How far the replay has come, with a rate and an estimate of the time left.
    pub fn progress(&self) -> ReplayProgress {
        let caught_up = self.done();
        let spans = self.spans.lock().unwrap_or_else(|p| p.into_inner());
        let records_done: u64 = spans.values().map(Span::done).sum();
        let records_total: u64 = spans.values().map(Span::total).sum();
        let partitions_known = spans.len();
        drop(spans);
        let elapsed = self
            .took
            .get()
            .copied()
            .unwrap_or_else(|| self.started.elapsed());
        let seconds = elapsed.as_secs_f64();
        let records_per_second =
            (records_done > 0 && seconds > 0.0).then(|| records_done as f64 / seconds);
        let eta = if caught_up {
            Some(Duration::ZERO)
        } else {
            records_per_second
                .filter(|_| partitions_known == self.partitions)
                .map(|rate| {
                    Duration::from_secs_f64(
                        (records_total.saturating_sub(records_done) as f64 / rate).min(1e9),
                    )
                })
        };
        ReplayProgress {
            caught_up,
            records_done,
            records_total,
            partitions: self.partitions,
            partitions_known,
            partitions_done: self
                .partitions
                .saturating_sub(self.remaining.load(Ordering::Acquire)),
            elapsed,
            records_per_second,
            eta,
        }
    }

    /// Waits until every partition caught up.
    pub async fn wait_done(&self) {
        let mut finished = self.finished.subscribe();
        let _ = finished.wait_for(|done| *done).await;
    }

    /// The partitions that make no progress while they have something to read.
    pub fn stalled(&self) -> Vec<Stall> {
        self.stalls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    fn set_stall(&self, key: (TopicRole, i32), stall: Option<Stall>) {
        let mut stalls = self.stalls.lock().unwrap_or_else(|p| p.into_inner());
        match stall {
            Some(stall) => stalls.insert(key, stall),
            None => stalls.remove(&key),
        };
    }

    /// Where the replay at start began: `stored offsets` or `earliest offsets`.
    pub fn from(&self) -> &'static str {
        if self.from_store {
            "stored offsets"
        } else {
            "earliest offsets"
        }
    }

    /// Records the replay at start read so far (all of them once [`Self::done`]).
    pub fn replayed(&self) -> u64 {
        self.replayed.load(Ordering::Acquire)
    }

    /// Whether every partition reached the end of the log seen at start.
    pub fn done(&self) -> bool {
        self.remaining.load(Ordering::Acquire) == 0
    }

    fn partition_done(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            let _ = self.took.set(self.started.elapsed());
            self.finished.send_replace(true);
            tracing::info!(
                replayed_records = self.replayed(),
                from = self.from(),
                elapsed_ms = self.started.elapsed().as_millis() as u64,
                "caught up with the log"
            );
        }
    }
}

/// What every partition consumer shares.
#[derive(Clone)]
pub struct ConsumerContext {
    pub kafka: KafkaConnection,
    pub store: Arc<Store>,
    pub catch_up: Arc<CatchUp>,
    pub kafka_timeout: Duration,
}

/// Runs one consumer per partition of `session`'s topics until `shutdown`, then stops them.
///
/// Partitions added to a topic while shopstream runs: the connection's probe sees the new count
/// and publishes a session with it (`status`; the producer partitions by it from then on); the
/// store keeps its state and the new partitions get consumers, from their earliest offset. A
/// topic with fewer partitions than before (deleted and created again) is only logged.
pub async fn run(
    session: &KafkaSession,
    context: &ConsumerContext,
    mut status: tokio::sync::watch::Receiver<super::KafkaStatus>,
    shutdown: CancellationToken,
) {
    let stop = CancellationToken::new();
    let mut consumers = spawn_consumers(session, context, stop.clone());
    let mut layout = session.topics.clone();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            changed = status.changed() => if changed.is_err() { break },
        }
        let Some(session) = status.borrow_and_update().session.clone() else {
            continue;
        };
        if session.topics == layout {
            continue;
        }
        if !session.topics.grows_from(&layout) {
            tracing::warn!(
                was = ?layout.topics,
                now = ?session.topics.topics,
                "a topic has fewer partitions than before (deleted and created again?); the \
                 consumers go on with the partitions they had, and restarting shopstream \
                 rebuilds the store for the new layout"
            );
            continue;
        }
        if let Err(error) = context.store.check_layout(&session.topics).await {
            tracing::warn!(%error, "cannot record the new partitions in the store; trying at the next change");
            continue;
        }
        for topic in &session.topics.topics {
            let had = layout.get(topic.role).partitions;
            for partition in had..topic.partitions {
                tracing::info!(topic = %topic.name, partition, "consuming a partition added to the topic");
                spawn_consumer(
                    &mut consumers,
                    context,
                    topic,
                    partition,
                    false,
                    stop.clone(),
                );
            }
        }
        layout = session.topics.clone();
    }
    stop.cancel();
    while consumers.join_next().await.is_some() {}
}

/// Starts one consumer per partition of the session's topics. Each counts towards the replay
/// at start ([`CatchUp`]).
fn spawn_consumers(
    session: &KafkaSession,
    context: &ConsumerContext,
    shutdown: CancellationToken,
) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    for topic in &session.topics.topics {
        for partition in 0..topic.partitions {
            spawn_consumer(
                &mut tasks,
                context,
                topic,
                partition,
                true,
                shutdown.clone(),
            );
        }
    }
    tasks
}

/// Starts the consumer of one partition; `counted`: it takes part in the replay at start (a
/// partition added to a topic later does not).
fn spawn_consumer(
    tasks: &mut JoinSet<()>,
    context: &ConsumerContext,
    topic: &crate::kafka::TopicInfo,
    partition: i32,
    counted: bool,
    shutdown: CancellationToken,
) {
    let consumer = PartitionConsumer::new(context, topic.role, &topic.name, partition, counted);
    tasks.spawn(consumer.run(shutdown));
}

/// Whether a partition moves, measured from the last time its next offset changed.
#[derive(Debug)]
struct Watch {
    offset: Option<i64>,
    since: tokio::time::Instant,
    /// Where the readable log ended at the last fetch (the last stable offset).
    end: Option<i64>,
    /// The last failure since the offset last moved.
    failure: Option<String>,
    reported: bool,
}

struct PartitionConsumer {
    role: TopicRole,
    topic_name: String,
    partition: i32,
    kafka: KafkaConnection,
    store: Arc<Store>,
    catch_up: Arc<CatchUp>,
    kafka_timeout: Duration,
    logged_skip: bool,
    unreadable_logged: u32,
    /// The end of the log when this consumer started: reaching it ends the replay.
    catch_up_target: Option<i64>,
    caught_up: bool,
    replayed: u64,
    watch: Watch,
}

impl PartitionConsumer {
    fn new(
        context: &ConsumerContext,
        role: TopicRole,
        topic_name: &str,
        partition: i32,
        counted: bool,
    ) -> Self {
        Self {
            role,
            topic_name: topic_name.to_string(),
            partition,
            kafka: context.kafka.clone(),
            store: Arc::clone(&context.store),
            catch_up: Arc::clone(&context.catch_up),
            kafka_timeout: context.kafka_timeout,
            logged_skip: false,
            unreadable_logged: 0,
            catch_up_target: None,
            caught_up: !counted,
            replayed: 0,
            watch: Watch {
                offset: None,
                since: tokio::time::Instant::now(),
                end: None,
                failure: None,
                reported: false,
            },
        }
    }

    async fn run(mut self, shutdown: CancellationToken) {
        let mut pause = RETRY_PAUSE.0;
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let result = tokio::select! {
                _ = shutdown.cancelled() => break,
                result = self.step() => result,
            };
            match result {
                Ok(()) => {
                    pause = RETRY_PAUSE.0;
                    self.watch.failure = None;
                    self.observe();
                }
                Err(error) => {
                    // Either way the same range is fetched again after the pause: once the store
                    // takes writes, or through a rebuilt connection.
                    tracing::debug!(topic = %self.topic_name, partition = self.partition, %error, "fetch and apply failed");
                    self.watch.failure = Some(error.to_string());
                    self.observe();
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(RETRY_PAUSE.1);
                }
            }
        }
        self.catch_up.set_stall((self.role, self.partition), None);
    }

    /// Reports a partition that has not moved for [`STALL_AFTER`] while it has something to
    /// read or its fetches fail, and clears the report once it moves again.
    fn observe(&mut self) {
        let offset = self.store.next_offset(self.role, self.partition);
        let now = tokio::time::Instant::now();
        if offset != self.watch.offset {
            self.watch.offset = offset;
            self.watch.since = now;
            if self.watch.reported {
                self.watch.reported = false;
                tracing::info!(topic = %self.topic_name, partition = self.partition, offset, "partition moves again");
                self.catch_up.set_stall((self.role, self.partition), None);
            }
            return;
        }
        // Idle with nothing to read is no stall: the clock starts when something waits.
        let waiting = self.watch.failure.is_some()
            || self
                .watch
                .end
                .is_some_and(|end| offset.is_some_and(|offset| end > offset));
        if !waiting {
            self.watch.since = now;
        }
        let Some(stall) = stall_of(
            self.role,
            self.partition,
            &self.watch,
            now.saturating_duration_since(self.watch.since),
        ) else {
            if self.watch.reported {
                self.watch.reported = false;
                self.catch_up.set_stall((self.role, self.partition), None);
            }
            return;
        };
        if !self.watch.reported {
            self.watch.reported = true;
            tracing::warn!(
                topic = %self.topic_name,
                partition = self.partition,
                offset = stall.offset,
                lag = stall.lag,
                reason = %stall.reason,
                "partition makes no progress (shown in /readyz, /metrics and /api/kafka)"
            );
        }
        self.catch_up
            .set_stall((self.role, self.partition), Some(stall));
    }

    /// One fetch and its application, through the current session.
    async fn step(&mut self) -> Result<(), StepError> {
        let session = self.kafka.ready_session()?;
        let log = Partition::new(
            session,
            Use::Consume,
            self.role,
            self.partition,
            self.kafka_timeout,
        );
        self.fetch_once(&log).await
    }

    async fn fetch_once(&mut self, log: &impl PartitionLog) -> Result<(), StepError> {
        let offset = match self.store.next_offset(self.role, self.partition) {
            Some(offset) => offset,
            // Never consumed: start at the earliest record still kept.
            None => {
                let earliest = log.offset(OffsetAt::Earliest).await?;
                self.store
                    .apply_fetched_from(self.role, self.partition, None, Vec::new(), earliest)
                    .await?;
                earliest
            }
        };
        if self.catch_up_target.is_none() && !self.caught_up {
            let target = log.offset(OffsetAt::Latest).await?;
            self.catch_up_target = Some(target);
            self.catch_up
                .begin((self.role, self.partition), offset, target);
            self.catch_up.set_log_end_if_unknown(
                (self.role, self.partition),
                LogEnd {
                    high_watermark: target.max(0),
                    last_stable_offset: None,
                },
            );
        }
        self.check_caught_up(offset, 0, None);

        let fetched = match log.read(offset, FETCH_MAX_BYTES, FETCH_MAX_WAIT_MS).await {
            Ok(fetched) => fetched,
            Err(KafkaError::OffsetOutOfRange { .. }) => {
                return self.reset_out_of_range(log, offset).await;
            }
            Err(error) => return Err(error.into()),
        };
        let topic_id = fetched.topic_id.map(|id| id.to_string());
        let saved_id = self
            .store
            .committed()
            .progress(self.role, self.partition)
            .and_then(|p| p.topic_id.clone());
        if let (Some(now), Some(saved)) = (&topic_id, &saved_id)
            && now != saved
            && let earliest = log.offset(OffsetAt::Earliest).await?.max(0)
            // Already at the new log's start (its end was before the saved offset, and that
            // reset came first): the batch below records the new id.
            && offset != earliest
        {
            // Deleted and created again under the same name: the saved offset belongs to the
            // old log, even where the new one already reaches past it.
            tracing::warn!(
                topic = %self.topic_name,
                partition = self.partition,
                offset,
                was = %saved,
                now = %now,
                resume_at = earliest,
                "the topic was deleted and created again (its id changed); resetting"
            );
            self.store
                .reset_offset_of(self.role, self.partition, earliest, topic_id)
                .await?;
            return Ok(());
        }
        self.catch_up.set_log_end(
            (self.role, self.partition),
            LogEnd {
                high_watermark: fetched.high_watermark.max(0),
                last_stable_offset: (fetched.last_stable_offset >= 0)
                    .then_some(fetched.last_stable_offset),
            },
        );
        // The end of what read_committed may read; brokers that do not say (-1) give the high
        // watermark only.
        self.watch.end = Some(if fetched.last_stable_offset >= 0 {
            fetched.last_stable_offset
        } else {
            fetched.high_watermark.max(0)
        });

        let count = fetched.records.len() as u64;
        // Past every whole batch seen: records, transaction markers, aborted and unreadable
        // batches alike.
        let next_offset = fetched.next_offset.max(offset);
        for unreadable in &fetched.unreadable {
            if self.unreadable_logged < UNREADABLE_LOGGED {
                self.unreadable_logged += 1;
                tracing::warn!(
                    topic = %self.topic_name,
                    partition = self.partition,
                    first_offset = unreadable.first,
                    last_offset = unreadable.last,
                    reason = %unreadable.reason,
                    "skipping a batch that cannot be read (counted in /api/kafka)"
                );
            }
        }
        let counts = FetchCounts {
            unreadable: fetched.unreadable.len() as u64,
            aborted: fetched.aborted,
            topic_id,
        };
        // The traces the records carry, kept only when someone follows them (RUST_LOG with
        // shopstream::trace=debug): a request's trace then runs to the event's application.
        let follow_traces = tracing::enabled!(target: TRACE_TARGET, tracing::Level::DEBUG);
        let mut traces = Vec::new();
        let fetched: Vec<FetchedRecord> = fetched
            .records
            .into_iter()
            .filter(|r| r.offset >= offset)
            .map(|r| {
                if follow_traces && let Some(trace) = record_trace(&r.record) {
                    traces.push((r.offset, trace, r.record.timestamp));
                }
                let position = Position {
                    topic: self.role,
                    partition: self.partition,
                    offset: r.offset,
                };
                records::decode(position, &self.topic_name, r.record)
            })
            .collect();
        let outcome = self
            .store
            .apply_fetch(
                self.role,
                self.partition,
                Some(offset),
                fetched,
                next_offset,
                counts,
            )
            .await?;
        let applied_at = chrono::Utc::now();
        for (offset, trace, written) in traces {
            tracing::debug!(
                target: TRACE_TARGET,
                trace_id = %trace.trace_id_hex(),
                parent_span_id = %trace.span_id_hex(),
                topic = %self.topic_name,
                partition = self.partition,
                offset,
                since_written_ms = (applied_at - written).num_milliseconds(),
                "event applied"
            );
        }
        if let Some((skipped_offset, reason)) = outcome.skipped.first()
            && !self.logged_skip
        {
            self.logged_skip = true;
            tracing::warn!(
                topic = %self.topic_name,
                partition = self.partition,
                offset = skipped_offset,
                %reason,
                "skipping a record that is not a shopstream event (counted in /api/kafka; \
                 further ones on this partition are not logged)"
            );
        }
        self.check_caught_up(next_offset, count, self.watch.end);
        Ok(())
    }

    /// Counts replayed records and reports this partition once it reached the end of the log
    /// seen at start, or everything a `read_committed` reader may read (an open transaction
    /// holds the rest back until it ends).
    fn check_caught_up(&mut self, position: i64, records: u64, readable_end: Option<i64>) {
        if self.caught_up {
            return;
        }
        self.replayed += records;
        let reached = self
            .catch_up_target
            .is_some_and(|target| position >= target)
            || readable_end.is_some_and(|end| position >= end);
        // Reached through the readable end (an open transaction holds the rest back): what
        // is left of this partition's part is not replay any more.
        let at = match self.catch_up_target {
            Some(target) if reached => position.max(target),
            _ => position,
        };
        self.catch_up.advance((self.role, self.partition), at);
        if reached {
            self.caught_up = true;
            self.catch_up
                .replayed
                .fetch_add(self.replayed, Ordering::AcqRel);
            tracing::debug!(topic = %self.topic_name, partition = self.partition, replayed = self.replayed, "partition caught up");
            self.catch_up.partition_done();
        }
    }

    /// The saved offset is not in the log (retention removed it, or the topic was deleted and
    /// created again, so the new log is shorter): resume from the earliest record kept, and
    /// count it. Never `clamp`: a topic re-created between the two calls may answer
    /// earliest > latest.
    async fn reset_out_of_range(
        &self,
        log: &impl PartitionLog,
        offset: i64,
    ) -> Result<(), StepError> {
        let earliest = log.offset(OffsetAt::Earliest).await?;
        let latest = log.offset(OffsetAt::Latest).await?;
        let to = reset_target(offset, earliest, latest);
        tracing::warn!(
            topic = %self.topic_name,
            partition = self.partition,
            offset,
            earliest,
            latest,
            resume_at = to,
            "saved offset is out of range of the log; resetting"
        );
        self.store
            .reset_offset(self.role, self.partition, to)
            .await?;
        Ok(())
    }
}

/// Where a partition whose saved `offset` is out of the log's range goes on from: past the end
/// (a re-created, shorter log) or before the start (retention), the earliest record kept.
fn reset_target(offset: i64, earliest: i64, latest: i64) -> i64 {
    if offset > latest || offset < earliest {
        earliest.max(0)
    } else {
        // In range after all (the log moved between the fetch and these calls): go on.
        offset
    }
}

/// The stall a partition is in, if it is in one: no move for [`STALL_AFTER`] while the
/// readable log goes past it, or while its fetches fail.
fn stall_of(topic: TopicRole, partition: i32, watch: &Watch, still: Duration) -> Option<Stall> {
    if still < STALL_AFTER {
        return None;
    }
    let offset = watch.offset?;
    let lag = watch.end.map(|end| end.saturating_sub(offset).max(0));
    let reason = match (&watch.failure, lag) {
        (Some(failure), _) => format!("its fetches fail: {failure}"),
        (None, Some(lag)) if lag > 0 => {
            format!("{lag} records wait past offset {offset}, but fetches bring nothing new")
        }
        _ => return None,
    };
    Some(Stall {
        topic,
        partition,
        offset,
        lag,
        reason,
        seconds: still.as_secs(),
    })
}

/// The log target of the consumer's per-event trace lines (off unless asked for).
pub const TRACE_TARGET: &str = "shopstream::trace";

/// The W3C trace context a record's `traceparent` header carries, when it is well formed.
fn record_trace(record: &rskafka::record::Record) -> Option<crate::telemetry::TraceContext> {
    let header = record
        .headers
        .get(crate::domain::event::headers::TRACEPARENT)?;
    crate::telemetry::TraceContext::parse(std::str::from_utf8(header).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::TopicLayout;
    use crate::kafka::fake_log::{Entry, FakeLog, order_created as order};
    use crate::model::store::TempDir;

    async fn consumer() -> (PartitionConsumer, TempDir) {
        let (store, dir) = Store::temporary(4 << 20);
        let layout = TopicLayout::uniform("", 1);
        store.check_layout(&layout).await.unwrap();
        let context = ConsumerContext {
            kafka: KafkaConnection::unconnected(),
            store: Arc::new(store),
            catch_up: Arc::new(CatchUp::new(1, false)),
            kafka_timeout: Duration::from_secs(1),
        };
        let consumer = PartitionConsumer::new(&context, TopicRole::Orders, "orders", 0, true);
        (consumer, dir)
    }

    #[tokio::test]
    async fn a_fetch_applies_its_events_counts_what_it_skips_and_catches_up() {
        let (mut consumer, _dir) = consumer().await;
        let log = FakeLog::new(
            0,
            vec![
                order("o-1").into(),
                Some("not json".to_string()).into(),
                None.into(),
                order("o-2").into(),
            ],
        )
        .max(3);
        let before = consumer.catch_up.progress();
        assert_eq!((before.records_done, before.records_total), (0, 0));
        assert_eq!((before.partitions, before.partitions_known), (1, 0));
        assert_eq!(before.eta, None, "no end known yet");
        consumer.fetch_once(&log).await.unwrap();
        assert_eq!(consumer.store.next_offset(TopicRole::Orders, 0), Some(3));
        assert!(!consumer.catch_up.done(), "one record is left");
        // The fetch answer's log end is kept for /metrics' lag.
        assert_eq!(
            consumer.catch_up.log_ends().get(&(TopicRole::Orders, 0)),
            Some(&LogEnd {
                high_watermark: 4,
                last_stable_offset: Some(4),
            })
        );
        let midway = consumer.catch_up.progress();
        assert_eq!((midway.records_done, midway.records_total), (3, 4));
        assert_eq!((midway.partitions_known, midway.partitions_done), (1, 0));
        assert!(!midway.caught_up);
        assert!(midway.records_per_second.is_some_and(|r| r > 0.0));
        assert!(midway.eta.is_some());
        assert!(
            midway
                .summary()
                .starts_with("catching up with the log: 75% (3 of 4 records"),
            "{}",
            midway.summary()
        );
        consumer.fetch_once(&log).await.unwrap();
        assert_eq!(consumer.store.next_offset(TopicRole::Orders, 0), Some(4));
        assert!(consumer.catch_up.done());
        let done = consumer.catch_up.progress();
        assert_eq!((done.records_done, done.records_total), (4, 4));
        assert_eq!((done.partitions_done, done.eta), (1, Some(Duration::ZERO)));
        assert_eq!(done.fraction(), 1.0);
        // Whoever waits for the end of the replay is told.
        tokio::time::timeout(Duration::from_secs(1), consumer.catch_up.wait_done())
            .await
            .expect("the replay is over");
        assert_eq!(log.fetches(), vec![0, 3]);
        let progress = consumer.store.committed();
        let progress = progress.progress(TopicRole::Orders, 0).unwrap();
        assert_eq!(progress.skipped, 2, "the garbage and the tombstone");
        assert_eq!(progress.resets, 0);
        let (first, second) = consumer
            .store
            .query(|view| Ok((view.order("o-1")?, view.order("o-2")?)))
            .await
            .unwrap();
        assert!(first.is_some() && second.is_some());
    }

    #[tokio::test]
    async fn an_offset_gone_from_the_log_resumes_at_the_earliest_and_is_counted() {
        let (mut consumer, _dir) = consumer().await;
        // The store had reached offset 2 when retention removed everything before 5.
        consumer
            .store
            .reset_offset(TopicRole::Orders, 0, 2)
            .await
            .unwrap();
        let log = FakeLog::new(5, vec![order("o-5").into(), order("o-6").into()]).max(10);
        consumer.fetch_once(&log).await.unwrap();
        assert_eq!(consumer.store.next_offset(TopicRole::Orders, 0), Some(5));
        consumer.fetch_once(&log).await.unwrap();
        assert_eq!(consumer.store.next_offset(TopicRole::Orders, 0), Some(7));
        let committed = consumer.store.committed();
        assert_eq!(committed.progress(TopicRole::Orders, 0).unwrap().resets, 2);
        assert_eq!(log.fetches(), vec![2, 5]);
    }

    #[tokio::test]
    async fn markers_aborted_records_and_unreadable_batches_move_the_offset_and_are_counted() {
        let (mut consumer, _dir) = consumer().await;
        let log = FakeLog::new(
            0,
            vec![
                order("o-1").into(),
                Entry::Marker,
                Entry::Aborted,
                Entry::Aborted,
                Entry::Marker,
                Entry::Corrupt,
                order("o-2").into(),
            ],
        )
        .max(2);
        // Fetches of only a marker, only aborted records, or only an unreadable batch still
        // move on: four fetches, never the same offset twice.
        for _ in 0..4 {
            consumer.fetch_once(&log).await.unwrap();
        }
        assert_eq!(log.fetches(), vec![0, 2, 4, 6]);
        assert_eq!(consumer.store.next_offset(TopicRole::Orders, 0), Some(7));
        assert!(consumer.catch_up.done());
        let committed = consumer.store.committed();
        let progress = committed.progress(TopicRole::Orders, 0).unwrap();
        assert_eq!(
            (progress.unreadable, progress.aborted, progress.skipped),
            (1, 2, 0)
        );
        let orders = consumer
            .store
            .query(|view| Ok((view.order("o-1")?.is_some(), view.order("o-2")?.is_some())))
            .await
            .unwrap();
        assert_eq!(orders, (true, true));
    }

    #[tokio::test(start_paused = true)]
    async fn a_partition_that_cannot_move_while_records_wait_is_reported_until_it_moves() {
        let (mut consumer, _dir) = consumer().await;
        let log = FakeLog::new(0, vec![order("o-1").into(), order("o-2").into()]).max(1);
        consumer.fetch_once(&log).await.unwrap();
        consumer.observe();
        log.fail_every_fetch(Some("the broker refuses"));
        // Failing, but not for long yet: no stall.
        let error = consumer.fetch_once(&log).await.unwrap_err();
        consumer.watch.failure = Some(error.to_string());
        consumer.observe();
        assert!(consumer.catch_up.stalled().is_empty());
        tokio::time::advance(STALL_AFTER + Duration::from_secs(1)).await;
        consumer.observe();
        let stalled = consumer.catch_up.stalled();
        assert_eq!(stalled.len(), 1, "{stalled:?}");
        assert_eq!(stalled[0].offset, 1);
        assert_eq!(stalled[0].lag, Some(1));
        assert!(
            stalled[0].reason.contains("the broker refuses"),
            "{stalled:?}"
        );
        // It moves again: the report goes.
        log.fail_every_fetch(None);
        consumer.fetch_once(&log).await.unwrap();
        consumer.watch.failure = None;
        consumer.observe();
        assert!(consumer.catch_up.stalled().is_empty());
        // Idle at the end of the log is no stall, however long.
        tokio::time::advance(STALL_AFTER * 4).await;
        consumer.observe();
        assert!(consumer.catch_up.stalled().is_empty());
    }

    #[test]
    fn an_offset_out_of_the_log_resets_to_the_earliest_even_when_the_log_is_inconsistent() {
        assert_eq!(
            reset_target(10, 0, 5),
            0,
            "past the end of a re-created log"
        );
        assert_eq!(reset_target(2, 5, 9), 5, "before the start (retention)");
        assert_eq!(reset_target(7, 5, 9), 7, "in range after all");
        // A topic re-created between the two calls: earliest > latest, no panic.
        assert_eq!(reset_target(3, 8, 2), 8);
        assert_eq!(reset_target(3, -1, -1), 0);
    }
}
