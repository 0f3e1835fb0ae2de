//! The read model on disk: one fjall database (an LSM tree) in the data dir, written by one
//! applier thread.
//!
//! The partition consumers hand their fetched batches to the applier ([`Store::apply_fetched`]);
//! it takes every batch that is waiting, applies them in one write transaction together with
//! the next offsets of their partitions and the counters, and commits (group commit). State
//! and offsets therefore never disagree: a restart resumes from the last commit with nothing
//! to load. A group commit is one atomic write batch: it reaches the journal (the operating
//! system's cache) before the batches are answered, and once a second the journal is synced.
//! After a crash the store falls back to the last batch the journal holds whole, never to a
//! torn one, and the consumers replay the log from there.
//!
//! Readers (HTTP handlers, commands) read a snapshot, which never blocks the writer, on
//! tokio's blocking threads ([`Store::query`]). Live frames are built after the
//! commit, outside any lock, and published together with the new offsets under one short
//! mutex, so that a client which subscribes and reads the offsets in one step
//! ([`Store::subscribe`]) sees every later event exactly once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::{broadcast, oneshot, watch};

pub use super::tables::ReadView;
use super::tables::{self, Key, Pruned, Table, WriteTables};
use super::{Applied, Changes, Counters, EventEffect, PartitionProgress};
use crate::domain::event::{Event, Position, TopicLayout, TopicRole, UndecodableRecord};
use crate::messages::LiveFrame;

/// How many frames a live client may fall behind before it is disconnected, unless configured
/// otherwise ([`StoreSettings::live_buffer`]): the size of the broadcast ring every committed
/// event is published to. Publishing never waits for a client; one that falls more than the
/// ring behind learns it (`Lagged`) and is closed with its cursor, to resume from it. Memory
/// stays bounded and a slow client never slows the others.
pub const FRAME_BUFFER: usize = 4096;

/// A partition and the next offset the consumers will read from it.
pub type ConsumedPosition = (TopicRole, i32, i64);

/// The directory the store lives in, inside the data dir.
pub const DIR_NAME: &str = "store";
/// What older versions kept in the data dir (a JSON snapshot, a redb file): noticed and
/// removed, and the store is rebuilt from the log.
const OLD_STATE: [&str; 2] = ["snapshot.json", "shopstream.redb"];
/// The keyspace of the records and their indexes.
const KEYSPACE: &str = "shop";
/// The keyspace of the record values (see [`tables`]).
const EVENTS_KEYSPACE: &str = "events";
/// A keyspace of one key, written only to learn whether fjall still accepts writes.
const PROBE_KEYSPACE: &str = "probe";
/// How long the applier waits for the disk to take the write buffers before it says so.
const SLOW_DISK: Duration = Duration::from_secs(30);
/// Where backups go, inside the data dir.
pub const BACKUPS_DIR: &str = "backups";
/// How many backups are kept: a new one removes the oldest beyond this.
pub const BACKUPS_KEPT: usize = 3;
/// Keys per write batch of a backup.
const BACKUP_BATCH_KEYS: usize = 10_000;
/// Bumped whenever the saved shape changes incompatibly: an older store is rebuilt from the
/// log, never misread.
const FORMAT_VERSION: u32 = 12;
/// How often a commit is made durable (fsync).
const DURABLE_EVERY: Duration = Duration::from_secs(1);
/// Most records in one group commit: enough to share a commit's fixed costs (counters,
/// word counts, the journal write), few enough that the work in flight stays small. While
/// the consumers catch up, several partitions' fetches (256 KiB, about 800 records each) are
/// usually waiting: one commit takes them together, and an order whose creation, payment
/// and delivery land in the same group is read and written once instead of three times.
/// Memtables are rotated between commits, so a group's keys (about 7 MiB for 4,096 records)
/// can take a memtable that far past its size. Measured on a replay of 100,000 orders
/// (`cargo bench --bench history`): 1,000 records gave 4,400-5,900 events/s, 4,096 gave
/// 8,600 (peak RSS 148 to 171 MiB), 8,192 no more speed for 40 MiB more; at 150,000 orders
/// 2,048 took the replay's peak RSS from 168 to 140 MiB, at 18,112 against 21,450 events/s
/// (one run each; runs of one build spread by 15%).
const GROUP_RECORDS: usize = 2_048;
/// Sealed memtables of one keyspace that may wait for a flush before commits wait too.
/// Fewer save little memory and cost time: with two, the replay's peak RSS was 5 to 10 MiB
/// lower (150,000 orders), and commits waited behind compactions: POST→frame p99 at 5,000
/// orders/s was 55 and 73 ms against 48 and 51 with three (`cargo bench --bench http_load --
/// latency`, fresh store, runs alternated); with one the replay ran a third slower.
const SEALED_MEMTABLES_WAITING: usize = 3;
/// How long the store has applied no record before the allocator is asked to hand back
/// what the last busy spell freed ([`crate::allocator::release_free_memory`]).
const QUIET_BEFORE_TRIM: Duration = Duration::from_secs(1);

/// Why the store could not be read or written.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("the store is unreadable: {0}")]
    Corrupt(String),
    #[error("the store cannot be written: {0}")]
    Io(String),
    #[error("the store is closed")]
    Closed,
    /// The batch was fetched from an offset the store no longer holds (it went back to its
    /// last durable commit): fetch again from the store's offset.
    #[error("the batch does not start at the stored offset")]
    Stale,
}

impl From<fjall::Error> for StoreError {
    fn from(e: fjall::Error) -> Self {
        use fjall::Error as E;
        match e {
            E::Io(_) | E::Poisoned | E::Locked => StoreError::Io(e.to_string()),
            E::Storage(fjall::LsmError::Io(_)) => StoreError::Io(e.to_string()),
            E::KeyspaceDeleted => StoreError::Closed,
            other => StoreError::Corrupt(other.to_string()),
        }
    }
}

/// Where the store lives and how much memory it may use.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub dir: PathBuf,
    /// The store's memory: three quarters for fjall's block cache, the rest for its write
    /// buffers ([`Engine::open`]); the work in flight comes on top.
    pub cache_bytes: usize,
    /// How long idempotency keys are remembered, measured in Kafka record time.
    pub retention: Duration,
    /// Throw the store away at start and replay the log.
    pub rebuild: bool,
    /// The live ring's size in frames (see [`FRAME_BUFFER`]).
    pub live_buffer: usize,
}

impl StoreSettings {
    pub fn path(&self) -> PathBuf {
        self.dir.join(DIR_NAME)
    }
}

/// Why opening failed; the message names the way out.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create the data dir {path}: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the store {path} is already open in another shopstream process: give each instance \
         its own --data-dir"
    )]
    InUse { path: PathBuf },
    #[error(
        "the store {path} cannot be opened ({reason}); it only holds state rebuilt from Kafka: \
         start with --rebuild-store (SHOPSTREAM_REBUILD_STORE=true) to discard it and replay \
         the log"
    )]
    Unreadable { path: PathBuf, reason: String },
}

/// One record fetched from Kafka, decoded (or not).
#[derive(Debug)]
pub struct FetchedRecord {
    pub offset: i64,
    pub key: Option<String>,
    pub record_time: DateTime<Utc>,
    /// The event and the record value as JSON text.
    pub decoded: Result<(Event, String), UndecodableRecord>,
    /// `Idempotency-Key` and request fingerprint, from the record's headers.
    pub idempotency: Option<(String, String)>,
}

/// What a fetch read past besides its records, counted with its batch, and the id of the topic
/// it read (saved with the offsets it reaches).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FetchCounts {
    /// Batches that could not be read.
    pub unreadable: u64,
    /// Records of aborted transactions.
    pub aborted: u64,
    pub topic_id: Option<String>,
}

/// What one applied batch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    pub applied: u64,
    pub duplicates: u64,
    /// The skipped records: offset and reason.
    pub skipped: Vec<(i64, String)>,
}

/// What the store held for the topics at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resumed {
    /// Nothing yet: the log is replayed from the earliest offsets.
    Empty,
    /// Offsets and state of an earlier run: consumption resumes from them.
    FromStore { events: u64, orders: u64 },
    /// State for other topics (another prefix or partition count): discarded, with the reason.
    Discarded(String),
}

/// The offsets of the last commit, as every waiter sees them.
#[derive(Debug, Clone, Default)]
pub struct Committed {
    /// Sorted by (topic, partition).
    pub partitions: Vec<PartitionProgress>,
}

impl Committed {
    pub fn progress(&self, topic: TopicRole, partition: i32) -> Option<&PartitionProgress> {
        self.partitions
            .binary_search_by(|p| (p.topic, p.partition).cmp(&(topic, partition)))
            .ok()
            .map(|at| &self.partitions[at])
    }

    /// Whether the record at `offset` of the partition has been applied.
    pub fn has_applied(&self, topic: TopicRole, partition: i32, offset: i64) -> bool {
        self.progress(topic, partition)
            .is_some_and(|p| p.next_offset > offset)
    }
}

enum Work {
    Batch {
        topic: TopicRole,
        partition: i32,
        /// The stored next offset the fetch started from (`Some(None)`: never consumed);
        /// `None` applies without checking (tests and benchmarks).
        expected: Option<Option<i64>>,
        records: Vec<FetchedRecord>,
        next_offset: i64,
        counts: FetchCounts,
        reply: oneshot::Sender<Result<BatchOutcome, StoreError>>,
    },
    Reset {
        topic: TopicRole,
        partition: i32,
        to: i64,
        /// The topic's new id, when the reset is for a topic created again.
        topic_id: Option<String>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Layout {
        layout: TopicLayout,
        reply: oneshot::Sender<Result<Resumed, StoreError>>,
    },
}

/// What the applier and the readers share.
#[derive(Debug)]
struct Shared {
    /// Names this store's numbering of events (the frames' `seq`): set anew whenever the
    /// store starts counting from zero. Written by the applier at the layout check, read by
    /// live sessions for their `hello`.
    numbering: RwLock<String>,
    /// `None` only while the applier reopens the store after an I/O error.
    db: RwLock<Option<Arc<Engine>>>,
    path: PathBuf,
    settings: StoreSettings,
    /// Written by the applier after each commit; read by waiters, consumers and views.
    committed: watch::Sender<Arc<Committed>>,
    live: broadcast::Sender<Arc<LiveFrame>>,
    /// Held while frames and the offsets they reach are published, and while a client
    /// subscribes, so that the two always agree.
    publish: Mutex<()>,
    /// Why the store cannot be written right now (a full disk, say); `None` when healthy.
    fault: watch::Sender<Option<String>>,
    /// Set by [`Store::close`]: the applier stops retrying and exits.
    closing: std::sync::atomic::AtomicBool,
    /// Set while a backup is being written (one at a time).
    backing_up: std::sync::atomic::AtomicBool,
    /// Observed by the applier once per successful group commit that carries records; read by
    /// `/metrics`.
    commit_durations: prometheus_client::metrics::histogram::Histogram,
}

#[derive(Debug)]
pub struct Store {
    shared: Arc<Shared>,
    work: Mutex<Option<std_mpsc::Sender<Work>>>,
    applier: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Store {
    /// Opens (or creates) the store in the data dir and starts its applier thread.
    pub fn open(settings: StoreSettings) -> Result<Self, OpenError> {
        std::fs::create_dir_all(&settings.dir).map_err(|source| OpenError::Dir {
            path: settings.dir.clone(),
            source,
        })?;
        let path = settings.path();
        for old in OLD_STATE.map(|name| settings.dir.join(name)) {
            if old.exists() {
                tracing::warn!(
                    path = %old.display(),
                    "found the state of an older shopstream; it is no longer used: removing \
                     it, the store is rebuilt from the log"
                );
                let _ = std::fs::remove_file(&old);
                let _ = std::fs::remove_dir_all(&path);
            }
        }
        if settings.rebuild && path.exists() {
            tracing::warn!(path = %path.display(), "--rebuild-store: discarding the store, the log is replayed");
            std::fs::remove_dir_all(&path).map_err(|e| OpenError::Unreadable {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        }
        let db = Engine::open(&path, settings.cache_bytes)?;
        let (counters, progress) = load_state(&db).map_err(|e| OpenError::Unreadable {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let committed = Committed {
            partitions: progress.values().cloned().collect(),
        };
        let shared = Arc::new(Shared {
            db: RwLock::new(Some(Arc::new(db))),
            path,
            settings: settings.clone(),
            committed: watch::channel(Arc::new(committed)).0,
            live: broadcast::channel(settings.live_buffer.max(1).next_power_of_two()).0,
            publish: Mutex::new(()),
            fault: watch::channel(None).0,
            closing: std::sync::atomic::AtomicBool::new(false),
            backing_up: std::sync::atomic::AtomicBool::new(false),
            numbering: RwLock::new(String::new()),
            commit_durations: crate::metrics::duration_histogram(),
        });
        let (sender, receiver) = std_mpsc::channel();
        let applier = Applier {
            shared: Arc::clone(&shared),
            counters,
            progress,
            retention: TimeDelta::from_std(settings.retention).unwrap_or(TimeDelta::MAX),
            pruned: Pruned::default(),
            last_durable: Instant::now(),
            durable_pending: false,
            applied_at: None,
            ceiling: crate::allocator::ResidentCeiling::default(),
        };
        let handle = std::thread::Builder::new()
            .name("shopstream-applier".into())
            .spawn(move || applier.run(receiver))
            .expect("the applier thread starts");
        Ok(Self {
            shared,
            work: Mutex::new(Some(sender)),
            applier: Mutex::new(Some(handle)),
        })
    }

    /// A store in a fresh temporary directory (tests and benchmarks).
    pub fn temporary(cache_bytes: usize) -> (Self, TempDir) {
        let dir = TempDir::new();
        let store = Self::open(StoreSettings {
            dir: dir.0.clone(),
            cache_bytes,
            retention: Duration::from_secs(7 * 24 * 3600),
            rebuild: false,
            live_buffer: FRAME_BUFFER,
        })
        .expect("a temporary store opens");
        (store, dir)
    }

    /// Hands work with a reply channel to the applier and waits for its answer.
    async fn ask<T>(
        &self,
        work: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Work,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(work(reply))?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    fn send(&self, work: Work) -> Result<(), StoreError> {
        let sender = self.work.lock().unwrap_or_else(|p| p.into_inner());
        sender
            .as_ref()
            .ok_or(StoreError::Closed)?
            .send(work)
            .map_err(|_| StoreError::Closed)
    }

    /// Checks that the saved state was built for these topics; discards it otherwise.
    pub async fn check_layout(&self, layout: &TopicLayout) -> Result<Resumed, StoreError> {
        self.ask(|reply| Work::Layout {
            layout: layout.clone(),
            reply,
        })
        .await
    }

    /// Applies records fetched from one partition and moves its next offset to `next_offset`
    /// (past the batch, even where it held no record, e.g. after compaction or transaction
    /// markers), in one transaction with the next group commit. Answers once committed.
    pub async fn apply_fetched(
        &self,
        topic: TopicRole,
        partition: i32,
        records: Vec<FetchedRecord>,
        next_offset: i64,
    ) -> Result<BatchOutcome, StoreError> {
        self.apply(
            topic,
            partition,
            None,
            records,
            next_offset,
            FetchCounts::default(),
        )
        .await
    }

    /// [`Self::apply_fetched`] for a batch fetched from `expected`, the stored next offset the
    /// consumer read (`None`: never consumed). When the store no longer holds that offset
    /// (it went back to its last durable commit after an I/O error) the batch is refused with
    /// [`StoreError::Stale`] and nothing is applied: applying it would skip records.
    pub async fn apply_fetched_from(
        &self,
        topic: TopicRole,
        partition: i32,
        expected: Option<i64>,
        records: Vec<FetchedRecord>,
        next_offset: i64,
    ) -> Result<BatchOutcome, StoreError> {
        self.apply(
            topic,
            partition,
            Some(expected),
            records,
            next_offset,
            FetchCounts::default(),
        )
        .await
    }

    /// [`Self::apply_fetched_from`] with what the fetch read past besides its records
    /// (unreadable batches, aborted transactions), counted in the same transaction.
    pub async fn apply_fetch(
        &self,
        topic: TopicRole,
        partition: i32,
        expected: Option<i64>,
        records: Vec<FetchedRecord>,
        next_offset: i64,
        counts: FetchCounts,
    ) -> Result<BatchOutcome, StoreError> {
        self.apply(
            topic,
            partition,
            Some(expected),
            records,
            next_offset,
            counts,
        )
        .await
    }

    async fn apply(
        &self,
        topic: TopicRole,
        partition: i32,
        expected: Option<Option<i64>>,
        records: Vec<FetchedRecord>,
        next_offset: i64,
        counts: FetchCounts,
    ) -> Result<BatchOutcome, StoreError> {
        self.ask(|reply| Work::Batch {
            topic,
            partition,
            expected,
            records,
            next_offset,
            counts,
            reply,
        })
        .await
    }

    /// Moves a partition's next offset after it fell out of retention (counted as a reset).
    pub async fn reset_offset(
        &self,
        topic: TopicRole,
        partition: i32,
        to: i64,
    ) -> Result<(), StoreError> {
        self.reset_offset_of(topic, partition, to, None).await
    }

    /// [`Self::reset_offset`] for a topic deleted and created again: its offsets belong to the
    /// topic `topic_id` from now on.
    pub async fn reset_offset_of(
        &self,
        topic: TopicRole,
        partition: i32,
        to: i64,
        topic_id: Option<String>,
    ) -> Result<(), StoreError> {
        self.ask(|reply| Work::Reset {
            topic,
            partition,
            to,
            topic_id,
            reply,
        })
        .await
    }

    /// Stops the applier after the work already handed to it, with a last durable commit.
    /// Blocking: call it from a blocking thread.
    pub fn close(&self) {
        drop(self.stop_applier());
    }

    /// [`Store::close`] for a process about to exit: waits at most `limit` for fjall to let
    /// go of the database. Closing it waits for fjall's worker to end the flush or compaction
    /// it is running, which takes seconds on a large store (SIGTERM to exit took 1.9 s at
    /// 1,000,000 orders); the last commit is durable by then, and leaving that work unfinished
    /// is no worse than a crash after a sync, which the journal recovers. Returns whether the
    /// database was let go of in time.
    pub fn close_within(&self, limit: Duration) -> bool {
        let Some(engine) = self.stop_applier() else {
            return true;
        };
        let (done, closed) = std_mpsc::channel();
        let dropper = std::thread::Builder::new()
            .name("shopstream-store-close".into())
            .spawn(move || {
                drop(engine);
                let _ = done.send(());
            });
        match dropper {
            Ok(_) => closed.recv_timeout(limit).is_ok(),
            // The closure, and the database with it, was dropped right here, waiting.
            Err(_) => true,
        }
    }

    /// Stops the applier (its last commit is durable) and takes the database from the
    /// readers, who are done with it once their query ends; the lock goes with the last one.
    fn stop_applier(&self) -> Option<Arc<Engine>> {
        self.shared
            .closing
            .store(true, std::sync::atomic::Ordering::Release);
        self.work.lock().unwrap_or_else(|p| p.into_inner()).take();
        let handle = self
            .applier
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
        self.shared
            .db
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// The offsets of the last commit.
    pub fn committed(&self) -> Arc<Committed> {
        Arc::clone(&self.shared.committed.borrow())
    }

    /// The next offset to consume for a partition (`None` when never consumed).
    pub fn next_offset(&self, topic: TopicRole, partition: i32) -> Option<i64> {
        self.committed()
            .progress(topic, partition)
            .map(|p| p.next_offset)
    }

    /// Why the store cannot be written right now, if it cannot.
    pub fn fault(&self) -> Option<String> {
        self.shared.fault.borrow().clone()
    }

    /// How long its group commits take: one observation per commit that carries records (the
    /// batches of every partition waiting, applied, written with their offsets and committed).
    pub fn commit_durations(&self) -> prometheus_client::metrics::histogram::Histogram {
        self.shared.commit_durations.clone()
    }

    /// Size of the store on disk in bytes.
    pub fn file_bytes(&self) -> u64 {
        disk_bytes(&self.shared.path)
    }

    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Runs `f` on a snapshot of the last commit, on a blocking thread.
    pub async fn query<R: Send + 'static>(
        &self,
        f: impl FnOnce(&ReadView) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let db = self.database()?;
        tokio::task::spawn_blocking(move || f(&db.view()))
            .await
            .map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` on a snapshot on this thread (tests, benchmarks, blocking callers).
    pub fn query_blocking<R>(
        &self,
        f: impl FnOnce(&ReadView) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        f(&self.database()?.view())
    }

    fn database(&self) -> Result<Arc<Engine>, StoreError> {
        self.shared
            .db
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| {
                let closed = self
                    .work
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .is_none();
                if closed {
                    StoreError::Closed
                } else {
                    StoreError::Io("the store is being reopened".into())
                }
            })
    }

    /// Copies the last commit into `<data-dir>/backups/<UTC time>/`, a data dir of its own:
    /// shopstream started with `--data-dir` on it resumes from the copy's offsets. Made while
    /// the applier goes on, from one snapshot, so the copy is one consistent commit. The
    /// newest [`BACKUPS_KEPT`] backups are kept; one is written at a time.
    pub async fn backup(&self) -> Result<BackupReport, BackupError> {
        let db = self.database()?;
        let shared = Arc::clone(&self.shared);
        if shared
            .backing_up
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return Err(BackupError::Running);
        }
        let written = tokio::task::spawn_blocking(move || {
            // Cleared however the copy ends, a panic included.
            struct Done(Arc<Shared>);
            impl Drop for Done {
                fn drop(&mut self) {
                    self.0
                        .backing_up
                        .store(false, std::sync::atomic::Ordering::Release);
                }
            }
            let done = Done(shared);
            write_backup(&db, &done.0.settings.dir.join(BACKUPS_DIR))
        })
        .await
        .map_err(|_| StoreError::Closed)?;
        Ok(written?)
    }

    /// The name of this store's event numbering (see the frames' `seq`): a client that saw
    /// another one must not compare numbers across the two.
    pub fn numbering(&self) -> String {
        self.shared
            .numbering
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// How many frames a live client may fall behind: the ring's size, the configured one
    /// rounded up to a power of two as tokio's broadcast channel does.
    pub fn live_buffer(&self) -> usize {
        self.shared.settings.live_buffer.max(1).next_power_of_two()
    }

    /// Subscribes to live frames and reads the committed positions in one step: every frame
    /// received afterwards has an offset at or past the returned positions.
    pub fn subscribe(&self) -> (broadcast::Receiver<Arc<LiveFrame>>, Vec<ConsumedPosition>) {
        let _publishing = self
            .shared
            .publish
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let receiver = self.shared.live.subscribe();
        let positions = self
            .shared
            .committed
            .borrow()
            .partitions
            .iter()
            .map(|p| (p.topic, p.partition, p.next_offset))
            .collect();
        (receiver, positions)
    }

    /// Live clients subscribed right now.
    pub fn live_clients(&self) -> usize {
        self.shared.live.receiver_count()
    }

    /// Waits until `ready` holds for the committed offsets, at most `within`. Returns whether
    /// it held.
    pub async fn wait_for(&self, within: Duration, ready: impl Fn(&Committed) -> bool) -> bool {
        let mut changes = self.shared.committed.subscribe();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if ready(&changes.borrow_and_update()) {
                return true;
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                _ => return ready(&changes.borrow()),
            }
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.work.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

/// What one backup wrote.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct BackupReport {
    /// The data dir to start shopstream on to run from the copy.
    #[schema(value_type = String)]
    pub data_dir: PathBuf,
    pub keys: u64,
    pub bytes: u64,
    pub took_ms: u64,
    /// The offsets the copy resumes from.
    pub partitions: Vec<PartitionProgress>,
}

/// Why a backup was not made.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("a backup is already being written; try again when it is done")]
    Running,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Writes every key of one snapshot into a new database under `backups`, then keeps the
/// newest [`BACKUPS_KEPT`]. The copy is written under a `.partial` name and renamed when
/// whole and synced, so a backup dir without that suffix is always complete.
fn write_backup(db: &Engine, backups: &Path) -> Result<BackupReport, StoreError> {
    let started = Instant::now();
    let io = |e: std::io::Error| StoreError::Io(format!("backup: {e}"));
    let view = db.view();
    let name = Utc::now().format("%Y%m%dT%H%M%S%.3fZ").to_string();
    let partial = backups.join(format!("{name}.partial"));
    let target = backups.join(&name);
    std::fs::create_dir_all(&partial).map_err(io)?;
    let copied = (|| {
        let copy = Engine::open(&partial.join(DIR_NAME), 8 << 20)
            .map_err(|e| StoreError::Io(format!("backup: {e}")))?;
        let mut keys = 0u64;
        let mut batch = copy.db.batch();
        for (from, to) in [(&view.shop, &copy.shop), (&view.events, &copy.events)] {
            for row in fjall::Readable::iter(&view.snapshot, from) {
                let (key, value) = row.into_inner()?;
                batch.insert(to, key, value);
                keys += 1;
                if keys.is_multiple_of(BACKUP_BATCH_KEYS as u64) {
                    copy.wait_for_flushes(|| {})?;
                    std::mem::replace(&mut batch, copy.db.batch()).commit()?;
                }
            }
        }
        batch.commit()?;
        copy.sync()?;
        Ok::<_, StoreError>(keys)
    })();
    let keys = match copied {
        Ok(keys) => keys,
        Err(error) => {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(error);
        }
    };
    std::fs::rename(&partial, &target).map_err(io)?;
    let mut complete: Vec<PathBuf> = std::fs::read_dir(backups)
        .map_err(io)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_none_or(|x| x != "partial"))
        .collect();
    complete.sort();
    let old = complete.len().saturating_sub(BACKUPS_KEPT);
    for path in &complete[..old] {
        let _ = std::fs::remove_dir_all(path);
    }
    Ok(BackupReport {
        bytes: disk_bytes(&target),
        data_dir: target,
        keys,
        took_ms: started.elapsed().as_millis() as u64,
        partitions: view.read_progress()?,
    })
}

/// A directory removed when dropped.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("shopstream-store-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temporary dir");
        Self(dir)
    }
}

impl Default for TempDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The open database and its keyspaces (see [`tables`]).
struct Engine {
    db: fjall::Database,
    shop: fjall::Keyspace,
    events: fjall::Keyspace,
    probe: fjall::Keyspace,
    /// The memtable sizes at which `shop`'s and `events`' are sealed and flushed.
    memtable_bytes: u64,
    events_memtable_bytes: u64,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Engine")
    }
}

impl Engine {
    fn open(path: &Path, cache_bytes: usize) -> Result<Self, OpenError> {
        // `--cache-size` bounds the store's memory: the block cache takes three quarters, the
        // write buffers the rest (up to an eighth more at their fullest). A memtable of the
        // records is flushed at a sixteenth of the size, one of the values at a thirty-second,
        // and commits wait while three of either wait for the disk
        // ([`Engine::wait_for_flushes`]): at most three eighths by fjall's count, which leaves
        // out the skip list's nodes and the allocator's rounding (about as much again).
        let budget = cache_bytes.max(1 << 20) as u64;
        let memtable = (budget / 16).max(1 << 20);
        let events_memtable = memtable / 2;
        let cache = budget - budget / 4;
        let db = fjall::Database::builder(path)
            .cache_size(cache)
            // One background worker. With two, fjall 3.1's first worker hands every compaction
            // request back to the queue while the second is busy, and picks it up again at
            // once: a busy loop for as long as a compaction runs (13% of the CPU under write
            // load; 15-19% more CPU per order than with one worker, `benches/wrk/post-orders`).
            .worker_threads(1)
            // The journal is what a restart replays: once it holds 64 MiB, the memtables it
            // backs are flushed (the probe keyspace's too, which fills too slowly to be
            // flushed otherwise), so that a restart stays short.
            .max_journaling_size(64 << 20)
            .open()
            .map_err(|e| match e {
                fjall::Error::Locked => OpenError::InUse {
                    path: path.to_path_buf(),
                },
                other => unreadable(path, other),
            })?;
        let shop = db
            .keyspace(KEYSPACE, || {
                // Tables of 16 MiB: a compaction's buffers (its bloom filter's key hashes,
                // say) grow with the tables it writes.
                fjall::KeyspaceCreateOptions::default()
                    .max_memtable_size(memtable)
                    .compaction_strategy(std::sync::Arc::new(
                        fjall::compaction::Leveled::default().with_table_target_size(16 << 20),
                    ))
            })
            .map_err(|e| unreadable(path, e))?;
        // Its keys only grow: a flushed table never overlaps the next, and compactions move
        // tables rather than rewrite them. It takes about a quarter of the bytes written, so
        // its tables are compressed from the first level on (they are seldom written again),
        // and its reads always find their key: the last level needs no bloom filter.
        let events = db
            .keyspace(EVENTS_KEYSPACE, || {
                fjall::KeyspaceCreateOptions::default()
                    .max_memtable_size(events_memtable)
                    .data_block_compression_policy(fjall::config::CompressionPolicy::all(
                        fjall::CompressionType::Lz4,
                    ))
                    .expect_point_read_hits(true)
                    .compaction_strategy(std::sync::Arc::new(
                        fjall::compaction::Leveled::default().with_table_target_size(16 << 20),
                    ))
            })
            .map_err(|e| unreadable(path, e))?;
        let probe = db
            .keyspace(PROBE_KEYSPACE, fjall::KeyspaceCreateOptions::default)
            .map_err(|e| unreadable(path, e))?;
        Ok(Self {
            db,
            shop,
            events,
            probe,
            memtable_bytes: memtable,
            events_memtable_bytes: events_memtable,
        })
    }

    /// Waits while the write buffers or the first level are full, before a commit would wait
    /// inside fjall, which never gives up: when the disk is full its flushes fail, and a
    /// commit would wait for them for ever. Here a failed flush (fjall then refuses every
    /// write) is an I/O error; `slow` is called once the wait passes [`SLOW_DISK`].
    fn wait_for_flushes(&self, slow: impl Fn()) -> Result<(), StoreError> {
        // fjall seals a full memtable only when a worker is free to take the request; behind
        // a long compaction the memtable would keep growing, and memory with it.
        for (keyspace, max) in [
            (&self.shop, self.memtable_bytes),
            (&self.events, self.events_memtable_bytes),
        ] {
            if fjall::AbstractTree::active_memtable(&keyspace.tree).size() > max {
                keyspace.rotate_memtable()?;
            }
        }
        let started = Instant::now();
        let mut said = false;
        let full = |k: &fjall::Keyspace| {
            k.sealed_memtable_count() >= SEALED_MEMTABLES_WAITING || k.l0_table_count() >= 20
        };
        while full(&self.shop) || full(&self.events) {
            self.probe()?;
            if !said && started.elapsed() >= SLOW_DISK {
                slow();
                said = true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Fails when fjall refuses writes (after a failed flush or journal write).
    fn probe(&self) -> Result<(), StoreError> {
        let mut batch = self.db.batch();
        batch.insert(&self.probe, [0u8], [0u8]);
        Ok(batch.commit()?)
    }

    fn view(&self) -> ReadView {
        ReadView {
            snapshot: self.db.snapshot(),
            shop: self.shop.clone(),
            events: self.events.clone(),
        }
    }

    /// Syncs the journal: every commit before it survives a crash of the machine.
    fn sync(&self) -> Result<(), StoreError> {
        Ok(self.db.persist(fjall::PersistMode::SyncAll)?)
    }
}

/// Bytes of the files under `path` (or of the file itself).
pub fn disk_bytes(path: &Path) -> u64 {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::read_dir(path).map_or(0, |entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| disk_bytes(&e.path()))
                .sum()
        }),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

fn unreadable(path: &Path, e: impl std::fmt::Display) -> OpenError {
    OpenError::Unreadable {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

type ProgressMap = BTreeMap<(TopicRole, i32), PartitionProgress>;

fn load_state(db: &Engine) -> Result<(Counters, ProgressMap), StoreError> {
    let view = db.view();
    let counters = view.read_counters()?;
    let progress = view
        .read_progress()?
        .into_iter()
        .map(|p| ((p.topic, p.partition), p))
        .collect();
    Ok((counters, progress))
}

/// The frame of one applied (or duplicate) record, built after the commit.
struct PendingFrame {
    position: Position,
    event: Event,
    key: Option<String>,
    data: String,
    effect: EventEffect,
}

enum Reply {
    Batch(
        oneshot::Sender<Result<BatchOutcome, StoreError>>,
        BatchOutcome,
    ),
    Reset(oneshot::Sender<Result<(), StoreError>>),
}

impl Reply {
    fn fail(self, error: &StoreError) {
        match self {
            Reply::Batch(reply, _) => {
                let _ = reply.send(Err(error.clone()));
            }
            Reply::Reset(reply) => {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }

    fn succeed(self) {
        match self {
            Reply::Batch(reply, outcome) => {
                let _ = reply.send(Ok(outcome));
            }
            Reply::Reset(reply) => {
                let _ = reply.send(Ok(()));
            }
        }
    }
}

/// The one writer.
struct Applier {
    shared: Arc<Shared>,
    /// Counters and offsets as last committed.
    counters: Counters,
    progress: ProgressMap,
    retention: TimeDelta,
    /// How far pruning went, as of the last commit.
    pruned: Pruned,
    last_durable: Instant,
    /// Whether a commit since the last durable one is not durable yet.
    durable_pending: bool,
    /// When the last commit that carried records ended, until the memory it freed is handed
    /// back ([`QUIET_BEFORE_TRIM`]).
    applied_at: Option<Instant>,
    /// Hands freed memory back whenever the resident size passes the ceiling (under load).
    ceiling: crate::allocator::ResidentCeiling,
}

impl Applier {
    fn run(mut self, receiver: std_mpsc::Receiver<Work>) {
        loop {
            let waiting = match receiver.try_recv() {
                Ok(work) => Ok(work),
                Err(std_mpsc::TryRecvError::Empty) => {
                    // Nothing to apply: a hand-back here delays no commit that was ready.
                    self.ceiling.look();
                    receiver.recv_timeout(DURABLE_EVERY)
                }
                Err(std_mpsc::TryRecvError::Disconnected) => break,
            };
            let first = match waiting {
                Ok(work) => work,
                Err(std_mpsc::RecvTimeoutError::Timeout) => {
                    if self.durable_pending {
                        self.make_durable();
                    }
                    self.release_memory_when_quiet();
                    continue;
                }
                Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let mut group = Vec::new();
            let mut records = 0;
            let mut next = Some(first);
            while let Some(work) = next.take() {
                match work {
                    Work::Layout { layout, reply } => {
                        // Alone, after what came before it.
                        self.commit_group(std::mem::take(&mut group));
                        records = 0;
                        let _ = reply.send(self.check_layout(&layout));
                    }
                    other => {
                        if let Work::Batch { records: r, .. } = &other {
                            records += r.len();
                        }
                        group.push(other);
                    }
                }
                if records < GROUP_RECORDS {
                    next = receiver.try_recv().ok();
                }
            }
            self.commit_group(group);
            self.release_memory_when_quiet();
        }
        if self.durable_pending {
            self.make_durable();
        }
        tracing::debug!("store applier stopped");
    }

    /// Once no record has been applied for [`QUIET_BEFORE_TRIM`], hands what the busy spell
    /// freed back to the system: once per spell, never under a steady load.
    fn release_memory_when_quiet(&mut self) {
        if self
            .applied_at
            .is_some_and(|at| at.elapsed() >= QUIET_BEFORE_TRIM)
        {
            self.applied_at = None;
            crate::allocator::release_free_memory();
        }
    }

    fn database(&self) -> Option<Arc<Engine>> {
        self.shared
            .db
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Applies a group of batches in one transaction, commits, then publishes and answers.
    fn commit_group(&mut self, group: Vec<Work>) {
        if group.is_empty() {
            return;
        }
        let records: usize = group
            .iter()
            .map(|work| match work {
                Work::Batch { records, .. } => records.len(),
                _ => 0,
            })
            .sum();
        let mut changes = Changes::new(self.counters.clone(), self.progress.clone());
        // Most records touch an order of their own: sized once, not grown by rehashing.
        changes.orders.reserve(records);
        let mut frames = Vec::with_capacity(records);
        let mut replies = Vec::with_capacity(group.len());
        // Consumers idle at the end of the log hand over empty batches twice a second: only
        // commits that carry records are measured.
        let carries_records = group
            .iter()
            .any(|work| matches!(work, Work::Batch { records, .. } if !records.is_empty()));
        let started = Instant::now();
        let result = self.try_commit(group, &mut changes, &mut frames, &mut replies);
        match result {
            Ok(()) => {
                if carries_records {
                    self.shared
                        .commit_durations
                        .observe(started.elapsed().as_secs_f64());
                    self.applied_at = Some(Instant::now());
                }
                self.counters = changes.counters;
                self.progress = changes.progress;
                if self.shared.fault.borrow().is_some() {
                    tracing::info!("the store is writable again");
                    self.shared.fault.send_replace(None);
                }
                self.publish(frames);
                for reply in replies {
                    reply.succeed();
                }
            }
            Err(error) => {
                tracing::warn!(%error, "a group commit failed; its batches are fetched again");
                self.shared.fault.send_replace(Some(error.to_string()));
                for reply in replies {
                    reply.fail(&error);
                }
                if matches!(error, StoreError::Io(_)) {
                    self.reopen();
                } else {
                    self.reload_state();
                }
            }
        }
    }

    /// Takes the counters and offsets from the last commit again: a group that failed after
    /// its batch was committed (while syncing, say) must not have the next group reuse its
    /// event numbers, which key the record values.
    fn reload_state(&mut self) {
        self.pruned = Pruned::default();
        let Some(db) = self.database() else { return };
        match load_state(&db) {
            Ok((counters, progress)) => {
                self.counters = counters;
                self.progress = progress;
            }
            Err(error) => tracing::warn!(%error, "cannot read the store's last commit back"),
        }
    }

    fn try_commit(
        &mut self,
        group: Vec<Work>,
        changes: &mut Changes,
        frames: &mut Vec<PendingFrame>,
        replies: &mut Vec<Reply>,
    ) -> Result<(), StoreError> {
        let db = self.database().ok_or(StoreError::Closed)?;
        db.wait_for_flushes(|| {
            tracing::warn!("the store has waited 30 s for its disk to take its write buffers");
            self.shared.fault.send_replace(Some(
                "the store is waiting for its disk to take its write buffers".into(),
            ));
        })?;
        let saved = db.view();
        let durable = self.last_durable.elapsed() >= DURABLE_EVERY;
        {
            let mut tables = WriteTables::new(&db.db, &saved);
            for work in group {
                match work {
                    Work::Batch {
                        topic,
                        partition,
                        expected,
                        records,
                        next_offset,
                        counts,
                        reply,
                    } => {
                        let stored = changes.progress(topic, partition).map(|p| p.next_offset);
                        if expected.is_some_and(|expected| expected != stored) {
                            let _ = reply.send(Err(StoreError::Stale));
                            continue;
                        }
                        let outcome = apply_batch(
                            &saved,
                            changes,
                            frames,
                            topic,
                            partition,
                            records,
                            next_offset,
                            counts,
                        );
                        match outcome {
                            Ok(outcome) => replies.push(Reply::Batch(reply, outcome)),
                            Err(error) => {
                                let _ = reply.send(Err(error.clone()));
                                return Err(error);
                            }
                        }
                    }
                    Work::Reset {
                        topic,
                        partition,
                        to,
                        topic_id,
                        reply,
                    } => {
                        let progress = changes.progress_mut(topic, partition);
                        progress.next_offset = to;
                        progress.resets += 1;
                        if topic_id.is_some() {
                            progress.topic_id = topic_id;
                        }
                        replies.push(Reply::Reset(reply));
                    }
                    Work::Layout { .. } => unreachable!("layout checks run alone"),
                }
            }
            let pruned = tables.write(changes, self.retention, self.pruned)?;
            tables.commit()?;
            self.pruned = pruned;
        }
        if durable {
            db.sync()?;
            self.last_durable = Instant::now();
            self.durable_pending = false;
        } else {
            self.durable_pending = true;
        }
        Ok(())
    }

    /// Syncs the journal, so that the commits before it survive a crash of the machine.
    fn make_durable(&mut self) {
        let Some(db) = self.database() else { return };
        match db.sync() {
            Ok(()) => {
                self.last_durable = Instant::now();
                self.durable_pending = false;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot make the store durable");
                self.shared.fault.send_replace(Some(error.to_string()));
                if matches!(error, StoreError::Io(_)) {
                    self.reopen();
                }
            }
        }
    }

    /// Frames, then the offsets they reach, under the publish lock. Frames are built only for
    /// clients: a replay with nobody watching skips them. A client that subscribes meanwhile
    /// does so under the same lock, so the frames are then built there, rather than lost.
    fn publish(&self, frames: Vec<PendingFrame>) {
        let build = |frames: Vec<PendingFrame>| -> Vec<LiveFrame> {
            frames
                .into_iter()
                .map(|f| {
                    LiveFrame::new(
                        f.position,
                        &f.event,
                        f.key.as_deref(),
                        &f.data,
                        f.effect.order_status,
                        f.effect.seq,
                    )
                })
                .collect()
        };
        let (mut built, mut pending) = if self.shared.live.receiver_count() > 0 {
            (build(frames), Vec::new())
        } else {
            (Vec::new(), frames)
        };
        let committed = Arc::new(Committed {
            partitions: self.progress.values().cloned().collect(),
        });
        let _publishing = self
            .shared
            .publish
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if !pending.is_empty() && self.shared.live.receiver_count() > 0 {
            built = build(std::mem::take(&mut pending));
        }
        for frame in built {
            // Having no subscriber is fine.
            let _ = self.shared.live.send(Arc::new(frame));
        }
        self.shared.committed.send_replace(committed);
    }

    /// After an I/O error fjall refuses further writes until the database is opened again.
    /// It then holds the last commit its journal holds whole: the offsets go back to it and
    /// the consumers read the log again from there.
    fn reopen(&mut self) {
        let old = self
            .shared
            .db
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(old) = old {
            // Readers hold the handle only for one query.
            let waited = Instant::now();
            while Arc::strong_count(&old) > 1 && waited.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(10));
            }
            drop(old);
        }
        let mut pause = Duration::from_millis(100);
        loop {
            match Engine::open(&self.shared.path, self.shared.settings.cache_bytes)
                .map_err(|e| StoreError::Io(e.to_string()))
                .and_then(|db| load_state(&db).map(|state| (db, state)))
            {
                Ok((db, (counters, progress))) => {
                    self.counters = counters;
                    self.progress = progress;
                    self.pruned = Pruned::default();
                    *self.shared.db.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(db));
                    self.last_durable = Instant::now();
                    self.durable_pending = false;
                    self.publish(Vec::new());
                    tracing::info!("the store was reopened at the last commit its journal holds");
                    return;
                }
                Err(error) => {
                    if self
                        .shared
                        .closing
                        .load(std::sync::atomic::Ordering::Acquire)
                    {
                        tracing::warn!(%error, "stopping with the store not reopened; the log is replayed from the last commit the store holds at the next start");
                        return;
                    }
                    tracing::warn!(%error, "cannot reopen the store yet");
                    self.shared.fault.send_replace(Some(error.to_string()));
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    fn check_layout(&mut self, layout: &TopicLayout) -> Result<Resumed, StoreError> {
        // The tables may be emptied below: pruning starts over.
        self.pruned = Pruned::default();
        let db = self.database().ok_or(StoreError::Closed)?;
        let view = db.view();
        let format: Option<u32> =
            view.json("format", &Key::new(Table::Meta).last(tables::META_FORMAT))?;
        let topics: Option<TopicLayout> =
            view.json("topics", &Key::new(Table::Meta).last(tables::META_TOPICS))?;
        let resumed = match (format, topics) {
            (None, None) if self.progress.is_empty() => Resumed::Empty,
            // The same topics, or partitions added to them: what the store holds stays true,
            // and the new partitions are read from their start.
            (Some(FORMAT_VERSION), Some(topics)) if layout.grows_from(&topics) => {
                Resumed::FromStore {
                    events: self.counters.events,
                    orders: self.counters.orders,
                }
            }
            (Some(FORMAT_VERSION), Some(topics)) => Resumed::Discarded(format!(
                "built for topics {:?}, now {:?}",
                topics.topics, layout.topics
            )),
            (format, _) => Resumed::Discarded(format!(
                "format {} (this version writes {FORMAT_VERSION})",
                format.map_or("unknown".to_string(), |f| f.to_string())
            )),
        };
        let saved_numbering: Option<String> = view.json(
            "numbering",
            &Key::new(Table::Meta).last(tables::META_NUMBERING),
        )?;
        drop(view);
        let numbering = match (&resumed, saved_numbering) {
            (Resumed::FromStore { .. }, Some(saved)) => saved,
            // Counting starts from zero: a new name for the new numbers.
            _ => uuid::Uuid::new_v4().simple().to_string(),
        };
        if let Resumed::Discarded(_) = resumed {
            // The record values first, the records then, the layout last: a crash in between
            // leaves the old layout or none, and the next start clears again.
            db.events.clear()?;
            db.shop.clear()?;
            self.counters = Counters::default();
            self.progress.clear();
        }
        let view = db.view();
        let mut tables = WriteTables::new(&db.db, &view);
        tables.put_meta(tables::META_FORMAT, tables::encode(&FORMAT_VERSION));
        tables.put_meta(tables::META_TOPICS, tables::encode(layout));
        tables.put_meta(tables::META_NUMBERING, tables::encode(&numbering));
        tables.commit()?;
        *self
            .shared
            .numbering
            .write()
            .unwrap_or_else(|p| p.into_inner()) = numbering;
        db.sync()?;
        self.last_durable = Instant::now();
        self.durable_pending = false;
        self.publish(Vec::new());
        Ok(resumed)
    }
}

/// Applies one partition's batch into the group's changes; returns what it did.
#[allow(clippy::too_many_arguments)] // the fields of one `Work::Batch`, taken apart
fn apply_batch(
    saved: &ReadView,
    changes: &mut Changes,
    frames: &mut Vec<PendingFrame>,
    topic: TopicRole,
    partition: i32,
    records: Vec<FetchedRecord>,
    next_offset: i64,
    counts: FetchCounts,
) -> Result<BatchOutcome, StoreError> {
    let mut outcome = BatchOutcome::default();
    {
        let progress = changes.progress_mut(topic, partition);
        progress.unreadable = progress.unreadable.saturating_add(counts.unreadable);
        progress.aborted = progress.aborted.saturating_add(counts.aborted);
        if counts.topic_id.is_some() {
            progress.topic_id = counts.topic_id;
        }
    }
    let from = changes.progress_mut(topic, partition).next_offset;
    for record in records {
        if record.offset < from {
            continue;
        }
        let position = Position {
            topic,
            partition,
            offset: record.offset,
        };
        match record.decoded {
            Ok((event, data)) => {
                match changes.apply(
                    saved,
                    &event,
                    position,
                    &data,
                    record.record_time,
                    record.idempotency,
                )? {
                    Applied::New => outcome.applied += 1,
                    Applied::Duplicate => outcome.duplicates += 1,
                }
                // Every decodable record is a frame, duplicates too: a client that replays
                // from Kafka sees the same frames, offset for offset.
                let effect = changes
                    .effect_of(&event.order_id, &event.event_id)
                    .unwrap_or_default();
                frames.push(PendingFrame {
                    position,
                    event,
                    key: record.key,
                    data,
                    effect,
                });
            }
            Err(reason) => {
                changes.progress_mut(topic, partition).skipped += 1;
                outcome.skipped.push((record.offset, reason.0));
            }
        }
        changes.progress_mut(topic, partition).last_record_time = Some(record.record_time);
    }
    let progress = changes.progress_mut(topic, partition);
    progress.next_offset = progress.next_offset.max(next_offset);
    Ok(outcome)
}
