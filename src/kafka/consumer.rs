//! Partition consumers: one task per (topic, partition), reading from the offset shopstream
//! tracks for it in the read model (rskafka has no consumer groups, and needs none here: every
//! instance reads every partition).
//!
//! A record that is not JSON or not a known shape is skipped, counted and logged once per
//! partition; consumption goes on. An offset that fell out of retention resets to the earliest
//! one and is counted. Every Kafka call has a deadline; after a failure the partition client is
//! rebuilt (from the newest session, should the connection have been replaced).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rskafka::client::error::{Error as ClientError, ProtocolError};
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::connection::{KafkaConnection, KafkaSession};
use super::{KafkaError, with_deadline};
use crate::domain::event::{Event, Position, TopicRole, headers};
use crate::model::StoreError;
use crate::model::store::{FetchedRecord, Store};

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
/// Pause after a failed fetch, growing to the maximum.
const RETRY_PAUSE: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));

/// Counts how much of the log was replayed at start, and says so once every partition caught up.
#[derive(Debug)]
pub struct CatchUp {
    started: Instant,
    remaining: AtomicUsize,
    replayed: AtomicU64,
    from_store: bool,
}

impl CatchUp {
    pub fn new(partitions: usize, from_store: bool) -> Self {
        Self {
            started: Instant::now(),
            remaining: AtomicUsize::new(partitions),
            replayed: AtomicU64::new(0),
            from_store,
        }
    }

    /// Whether every partition reached the end of the log seen at start.
    pub fn done(&self) -> bool {
        self.remaining.load(Ordering::Acquire) == 0
    }

    fn partition_done(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            tracing::info!(
                replayed_records = self.replayed.load(Ordering::Acquire),
                from = if self.from_store {
                    "stored offsets"
                } else {
                    "earliest offsets"
                },
                elapsed_ms = self.started.elapsed().as_millis() as u64,
                "caught up with the log"
            );
        }
    }
}

/// Starts one consumer per partition of the session's topics.
pub fn spawn_consumers(
    session: &KafkaSession,
    kafka: KafkaConnection,
    store: Arc<Store>,
    catch_up: Arc<CatchUp>,
    shutdown: CancellationToken,
    kafka_timeout: Duration,
) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    for topic in &session.topics.topics {
        for partition in 0..topic.partitions {
            let consumer = PartitionConsumer {
                role: topic.role,
                topic_name: topic.name.clone(),
                partition,
                kafka: kafka.clone(),
                store: Arc::clone(&store),
                catch_up: Arc::clone(&catch_up),
                kafka_timeout,
                logged_skip: false,
                client: None,
                catch_up_target: None,
                caught_up: false,
                replayed: 0,
            };
            tasks.spawn(consumer.run(shutdown.clone()));
        }
    }
    tasks
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
    /// The partition client and the session generation it was built from.
    client: Option<(u64, PartitionClient)>,
    /// The end of the log when this consumer started: reaching it ends the replay.
    catch_up_target: Option<i64>,
    caught_up: bool,
    replayed: u64,
}

impl PartitionConsumer {
    async fn run(mut self, shutdown: CancellationToken) {
        let mut pause = RETRY_PAUSE.0;
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let result = tokio::select! {
                _ = shutdown.cancelled() => return,
                result = self.step() => result,
            };
            match result {
                Ok(()) => pause = RETRY_PAUSE.0,
                Err(StepError::Store(error)) => {
                    // The partition client is fine: the same range is fetched again once the
                    // store takes writes.
                    tracing::debug!(topic = %self.topic_name, partition = self.partition, %error, "store refused the batch");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(RETRY_PAUSE.1);
                }
                Err(StepError::Kafka(error)) => {
                    tracing::debug!(topic = %self.topic_name, partition = self.partition, %error, "fetch failed");
                    self.client = None;
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(RETRY_PAUSE.1);
                }
            }
        }
    }

    /// One fetch and its application. On error the partition client is dropped (the caller
    /// pauses, then the next step builds a fresh one).
    async fn step(&mut self) -> Result<(), StepError> {
        let session = self.kafka.ready_session()?;
        let (generation, client) = match self.client.take() {
            Some((generation, client)) if generation == session.generation => (generation, client),
            _ => {
                let client = with_deadline(
                    "partition client",
                    self.kafka_timeout,
                    session.client.partition_client(
                        self.topic_name.clone(),
                        self.partition,
                        UnknownTopicHandling::Retry,
                    ),
                )
                .await?;
                (session.generation, client)
            }
        };
        let fetched = self.fetch_once(&client).await;
        if !matches!(fetched, Err(StepError::Kafka(_))) {
            self.client = Some((generation, client));
        }
        fetched
    }

    async fn fetch_once(&mut self, client: &PartitionClient) -> Result<(), StepError> {
        let offset = match self.store.next_offset(self.role, self.partition) {
            Some(offset) => offset,
            // Never consumed: start at the earliest record still kept.
            None => {
                let earliest = self.offset_at(client, OffsetAt::Earliest).await?;
                self.store
                    .apply_fetched_from(self.role, self.partition, None, Vec::new(), earliest)
                    .await?;
                earliest
            }
        };
        if self.catch_up_target.is_none() {
            self.catch_up_target = Some(self.offset_at(client, OffsetAt::Latest).await?);
        }
        self.check_caught_up(offset, 0);

        let fetch = client.fetch_records(offset, 1..FETCH_MAX_BYTES, FETCH_MAX_WAIT_MS);
        let deadline = self.kafka_timeout + Duration::from_millis(FETCH_MAX_WAIT_MS as u64);
        let (records, _high_watermark) = match with_deadline("fetch", deadline, fetch).await {
            Ok(fetched) => fetched,
            Err(KafkaError::Client {
                source:
                    ClientError::ServerError {
                        protocol_error: ProtocolError::OffsetOutOfRange,
                        ..
                    },
                ..
            }) => return self.reset_out_of_range(client, offset).await,
            Err(error) => return Err(error.into()),
        };

        let count = records.len() as u64;
        let next_offset = records.last().map_or(offset, |r| r.offset + 1);
        let fetched: Vec<FetchedRecord> = records
            .into_iter()
            .filter(|r| r.offset >= offset)
            .map(|r| self.decode(r))
            .collect();
        let outcome = self
            .store
            .apply_fetched_from(
                self.role,
                self.partition,
                Some(offset),
                fetched,
                next_offset,
            )
            .await?;
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
        self.check_caught_up(next_offset, count);
        Ok(())
    }

    /// Counts replayed records and reports this partition once it reached the end of the log
    /// seen at start.
    fn check_caught_up(&mut self, position: i64, records: u64) {
        if self.caught_up {
            return;
        }
        self.replayed += records;
        if self
            .catch_up_target
            .is_some_and(|target| position >= target)
        {
            self.caught_up = true;
            self.catch_up
                .replayed
                .fetch_add(self.replayed, Ordering::AcqRel);
            tracing::debug!(topic = %self.topic_name, partition = self.partition, replayed = self.replayed, "partition caught up");
            self.catch_up.partition_done();
        }
    }

    async fn offset_at(&self, client: &PartitionClient, at: OffsetAt) -> Result<i64, KafkaError> {
        with_deadline("list offsets", self.kafka_timeout, client.get_offset(at)).await
    }

    /// The saved offset is no longer in the log (retention, or the topic was recreated):
    /// resume from the earliest record kept, and count it.
    async fn reset_out_of_range(
        &self,
        client: &PartitionClient,
        offset: i64,
    ) -> Result<(), StepError> {
        let earliest = self.offset_at(client, OffsetAt::Earliest).await?;
        let latest = self.offset_at(client, OffsetAt::Latest).await?;
        let to = if offset > latest {
            earliest
        } else {
            earliest.max(offset)
        };
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

    fn decode(&self, r: rskafka::record::RecordAndOffset) -> FetchedRecord {
        let position = Position {
            topic: self.role,
            partition: self.partition,
            offset: r.offset,
        };
        let record = r.record;
        let decoded = match &record.value {
            Some(value) => Event::decode(value, position, &self.topic_name, record.timestamp).map(
                |(event, _)| {
                    // It parsed as JSON, so it is UTF-8.
                    (event, String::from_utf8_lossy(value).into_owned())
                },
            ),
            None => Err(crate::domain::event::UndecodableRecord(
                "no value (tombstone)".into(),
            )),
        };
        let header = |name: &str| {
            record
                .headers
                .get(name)
                .and_then(|v| String::from_utf8(v.clone()).ok())
        };
        let idempotency =
            header(headers::IDEMPOTENCY_KEY).zip(header(headers::REQUEST_FINGERPRINT));
        FetchedRecord {
            offset: r.offset,
            key: record
                .key
                .as_ref()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            record_time: record.timestamp,
            decoded,
            idempotency,
        }
    }
}
