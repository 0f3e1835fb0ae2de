//! Partition consumers: one task per (topic, partition), reading from the offset shopstream
//! tracks for it in the read model (rskafka has no consumer groups, and needs none here: every
//! instance reads every partition).
//!
//! A record that is not JSON or not a known shape is skipped, counted and logged once per
//! partition; consumption goes on. An offset that fell out of retention resets to the earliest
//! one and is counted. Every Kafka call goes through [`super::partitions`]: it has a deadline,
//! and after a failure the partition client is rebuilt (from the newest session, should the
//! connection have been replaced). The fetch-and-apply step reads through [`PartitionLog`], so
//! unit tests drive it with a fake log.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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
                Err(error) => {
                    // Either way the same range is fetched again after the pause: once the store
                    // takes writes, or through a rebuilt partition client.
                    tracing::debug!(topic = %self.topic_name, partition = self.partition, %error, "fetch and apply failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(RETRY_PAUSE.1);
                }
            }
        }
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
        if self.catch_up_target.is_none() {
            self.catch_up_target = Some(log.offset(OffsetAt::Latest).await?);
        }
        self.check_caught_up(offset, 0);

        let records = match log.fetch(offset, FETCH_MAX_BYTES, FETCH_MAX_WAIT_MS).await {
            Ok(records) => records,
            Err(KafkaError::OffsetOutOfRange { .. }) => {
                return self.reset_out_of_range(log, offset).await;
            }
            Err(error) => return Err(error.into()),
        };

        let count = records.len() as u64;
        let next_offset = records.last().map_or(offset, |r| r.offset + 1);
        let fetched: Vec<FetchedRecord> = records
            .into_iter()
            .filter(|r| r.offset >= offset)
            .map(|r| {
                let position = Position {
                    topic: self.role,
                    partition: self.partition,
                    offset: r.offset,
                };
                records::decode(position, &self.topic_name, &r.record)
            })
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

    /// The saved offset is no longer in the log (retention, or the topic was recreated):
    /// resume from the earliest record kept, and count it.
    async fn reset_out_of_range(
        &self,
        log: &impl PartitionLog,
        offset: i64,
    ) -> Result<(), StepError> {
        let earliest = log.offset(OffsetAt::Earliest).await?;
        let latest = log.offset(OffsetAt::Latest).await?;
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
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use chrono::{TimeZone, Utc};
    use rskafka::record::{Record, RecordAndOffset};

    use super::*;
    use crate::kafka::TopicLayout;
    use crate::model::store::TempDir;

    /// A partition's log in memory: its records from `earliest` on, fetched `max` at a time.
    struct FakeLog {
        earliest: i64,
        records: Vec<Option<String>>,
        max: usize,
        fetches: Mutex<Vec<i64>>,
    }

    impl FakeLog {
        fn latest(&self) -> i64 {
            self.earliest + self.records.len() as i64
        }
    }

    impl PartitionLog for FakeLog {
        async fn offset(&self, at: OffsetAt) -> Result<i64, KafkaError> {
            Ok(match at {
                OffsetAt::Earliest => self.earliest,
                _ => self.latest(),
            })
        }

        async fn fetch(
            &self,
            offset: i64,
            _max_bytes: i32,
            _max_wait_ms: i32,
        ) -> Result<Vec<RecordAndOffset>, KafkaError> {
            self.fetches.lock().unwrap().push(offset);
            if offset < self.earliest || offset > self.latest() {
                return Err(KafkaError::OffsetOutOfRange { operation: "fetch" });
            }
            let from = (offset - self.earliest) as usize;
            Ok(self.records[from..]
                .iter()
                .take(self.max)
                .enumerate()
                .map(|(i, value)| RecordAndOffset {
                    record: Record {
                        key: None,
                        value: value.as_ref().map(|v| v.as_bytes().to_vec()),
                        headers: BTreeMap::new(),
                        timestamp: Utc.with_ymd_and_hms(2025, 6, 2, 9, 0, 0).unwrap(),
                    },
                    offset: offset + i as i64,
                })
                .collect())
        }
    }

    fn order(id: &str) -> Option<String> {
        Some(format!(
            r#"{{"event_type":"order.created","order_id":"{id}","event_id":"e-{id}","customer_name":"Ann Lee","customer_email":"ann@example.com","product":"Lamp","quantity":1,"amount":12.50,"currency":"EUR","address":"1 Rue A, Paris","timestamp":"2025-06-02T09:00:00Z"}}"#
        ))
    }

    async fn consumer() -> (PartitionConsumer, TempDir) {
        let (store, dir) = Store::temporary(4 << 20);
        let layout = TopicLayout::uniform("", 1);
        store.check_layout(&layout).await.unwrap();
        let consumer = PartitionConsumer {
            role: TopicRole::Orders,
            topic_name: "orders".into(),
            partition: 0,
            kafka: KafkaConnection::unconnected(),
            store: Arc::new(store),
            catch_up: Arc::new(CatchUp::new(1, false)),
            kafka_timeout: Duration::from_secs(1),
            logged_skip: false,
            catch_up_target: None,
            caught_up: false,
            replayed: 0,
        };
        (consumer, dir)
    }

    #[tokio::test]
    async fn a_fetch_applies_its_events_counts_what_it_skips_and_catches_up() {
        let (mut consumer, _dir) = consumer().await;
        let log = FakeLog {
            earliest: 0,
            records: vec![order("o-1"), Some("not json".into()), None, order("o-2")],
            max: 3,
            fetches: Mutex::new(Vec::new()),
        };
        consumer.fetch_once(&log).await.unwrap();
        assert_eq!(consumer.store.next_offset(TopicRole::Orders, 0), Some(3));
        assert!(!consumer.catch_up.done(), "one record is left");
        consumer.fetch_once(&log).await.unwrap();
        assert_eq!(consumer.store.next_offset(TopicRole::Orders, 0), Some(4));
        assert!(consumer.catch_up.done());
        assert_eq!(*log.fetches.lock().unwrap(), vec![0, 3]);
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
        let log = FakeLog {
            earliest: 5,
            records: vec![order("o-5"), order("o-6")],
            max: 10,
            fetches: Mutex::new(Vec::new()),
        };
        consumer.fetch_once(&log).await.unwrap();
        assert_eq!(consumer.store.next_offset(TopicRole::Orders, 0), Some(5));
        consumer.fetch_once(&log).await.unwrap();
        assert_eq!(consumer.store.next_offset(TopicRole::Orders, 0), Some(7));
        let committed = consumer.store.committed();
        assert_eq!(committed.progress(TopicRole::Orders, 0).unwrap().resets, 2);
        assert_eq!(*log.fetches.lock().unwrap(), vec![2, 5]);
    }
}
