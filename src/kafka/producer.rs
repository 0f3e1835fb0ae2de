//! The producer: records go to the partition Kafka's default partitioner picks for their key,
//! and an HTTP write answers only once Kafka acknowledged its record (acks = all).
//!
//! One lane (a task and a queue) per partition. A lane sends whatever queued up while its
//! previous request was in flight as one batch, so concurrent requests share round trips
//! instead of paying one each, without any linger delay when the load is light.
//!
//! Under concurrent load a lane lingers a little, but never on a timer: when its previous
//! batch held more than one record and fewer have queued this time, it yields to the other
//! ready tasks (the HTTP handlers about to enqueue their records) a few times before sending
//! ([`keep_gathering`]). Every produce request costs the broker about the same whatever it
//! holds (and wakes the consumers' fetches once), so fewer, fuller requests are what let the
//! broker keep up at 32 to 64 connections; a lone writer never waits.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rskafka::record::Record;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::KafkaError;
use super::connection::KafkaConnection;
use super::partitions::{Partition, Use};
use crate::domain::event::{Position, TopicRole};
use crate::domain::partitioner::partition_for_key;
use crate::metrics::{ProduceMetrics, TopicLabels};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

/// Most records in one produce request.
const MAX_BATCH_RECORDS: usize = 500;
/// Most value bytes in one produce request.
const MAX_BATCH_BYTES: usize = 900 * 1024;
/// Records waiting per partition before writers are told Kafka is too slow (503).
const LANE_QUEUE: usize = 10_000;
/// Most times a lane yields to other tasks to let its batch fill ([`keep_gathering`]).
const LINGER_YIELDS: usize = 8;

/// One record to write.
#[derive(Debug, Clone)]
pub struct OutgoingRecord {
    pub key: String,
    pub value: Vec<u8>,
    pub headers: BTreeMap<String, Vec<u8>>,
    pub time: DateTime<Utc>,
}

type PartitionKey = (TopicRole, i32);

/// Where the shop's commands write their records: Kafka through [`Producer`], or a log in
/// memory in the commands' unit tests.
pub trait RecordSink: Send + Sync + 'static {
    /// The partition of `key` on `topic`, as every Kafka client computes it.
    fn partition_for(&self, topic: TopicRole, key: &str) -> Result<i32, KafkaError>;

    /// Writes one record and returns where it landed, once acknowledged.
    fn send(
        &self,
        topic: TopicRole,
        record: OutgoingRecord,
    ) -> impl std::future::Future<Output = Result<Position, KafkaError>> + Send;

    /// The highest offset this instance wrote to a partition, if any.
    fn written(&self, topic: TopicRole, partition: i32) -> Option<i64>;
}

impl RecordSink for Producer {
    fn partition_for(&self, topic: TopicRole, key: &str) -> Result<i32, KafkaError> {
        Producer::partition_for(self, topic, key)
    }

    async fn send(&self, topic: TopicRole, record: OutgoingRecord) -> Result<Position, KafkaError> {
        Producer::send(self, topic, record).await
    }

    fn written(&self, topic: TopicRole, partition: i32) -> Option<i64> {
        Producer::written(self, topic, partition)
    }
}

struct Job {
    record: Record,
    reply: oneshot::Sender<Result<i64, String>>,
}

/// Handle on the lanes; cheap to clone.
#[derive(Clone)]
pub struct Producer {
    kafka: KafkaConnection,
    timeout: Duration,
    lanes: Arc<Mutex<HashMap<PartitionKey, mpsc::Sender<Job>>>>,
    /// Highest offset this instance wrote per partition (read-your-writes for commands).
    written: Arc<Mutex<HashMap<PartitionKey, i64>>>,
    shutdown: CancellationToken,
    /// Acknowledgement durations and failures per topic, observed by the lanes.
    metrics: ProduceMetrics,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer").finish_non_exhaustive()
    }
}

impl Producer {
    pub fn new(kafka: KafkaConnection, timeout: Duration, shutdown: CancellationToken) -> Self {
        Self {
            kafka,
            timeout,
            lanes: Arc::default(),
            written: Arc::default(),
            shutdown,
            metrics: ProduceMetrics::default(),
        }
    }

    /// What the lanes measure (for `/metrics`).
    pub fn metrics(&self) -> ProduceMetrics {
        self.metrics.clone()
    }

    /// The partition of `key` on `topic`, as every Kafka client computes it.
    pub fn partition_for(&self, topic: TopicRole, key: &str) -> Result<i32, KafkaError> {
        let session = self.kafka.ready_session()?;
        Ok(partition_for_key(
            key.as_bytes(),
            session.topics.get(topic).partitions,
        ))
    }

    /// Writes one record and returns where it landed, once Kafka acknowledged it. Fails fast
    /// (503) while Kafka is unreachable, and within the Kafka deadline otherwise.
    pub async fn send(
        &self,
        topic: TopicRole,
        record: OutgoingRecord,
    ) -> Result<Position, KafkaError> {
        let partition = self.partition_for(topic, &record.key)?;
        let lane = self.lane(topic, partition);
        let (reply, answer) = oneshot::channel();
        let job = Job {
            record: Record {
                key: Some(record.key.into_bytes()),
                value: Some(record.value),
                headers: record.headers,
                timestamp: record.time,
            },
            reply,
        };
        lane.try_send(job).map_err(|_| {
            KafkaError::NotConnected(format!(
                "too many writes waiting for Kafka on {topic}/{partition}"
            ))
        })?;
        // The lane's own call has the Kafka deadline; this bound covers the queue before it.
        let budget = self.timeout + self.timeout.min(Duration::from_secs(3));
        let offset = match tokio::time::timeout(budget, answer).await {
            Ok(Ok(Ok(offset))) => offset,
            Ok(Ok(Err(message))) => {
                return Err(KafkaError::Write {
                    topic,
                    partition,
                    message,
                });
            }
            Ok(Err(_)) => return Err(KafkaError::NotConnected("shutting down".into())),
            Err(_) => {
                return Err(KafkaError::Timeout {
                    operation: "produce",
                    after: budget,
                });
            }
        };
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        let highest = written.entry((topic, partition)).or_insert(offset);
        *highest = (*highest).max(offset);
        Ok(Position {
            topic,
            partition,
            offset,
        })
    }

    /// The highest offset this instance wrote to a partition, if any.
    pub fn written(&self, topic: TopicRole, partition: i32) -> Option<i64> {
        self.written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(topic, partition))
            .copied()
    }

    fn lane(&self, topic: TopicRole, partition: i32) -> mpsc::Sender<Job> {
        let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        lanes
            .entry((topic, partition))
            .or_insert_with(|| {
                let (sender, receiver) = mpsc::channel(LANE_QUEUE);
                let labels = TopicLabels {
                    topic: topic.as_str(),
                };
                let lane = Lane {
                    topic,
                    partition,
                    kafka: self.kafka.clone(),
                    timeout: self.timeout,
                    acknowledged: self.metrics.acknowledged.get_or_create_owned(&labels),
                    failed: self.metrics.failed.get_or_create_owned(&labels),
                };
                tokio::spawn(lane.run(receiver, self.shutdown.clone()));
                sender
            })
            .clone()
    }
}

/// Whether a lane holding `gathered` records (`bytes` of them) after `yields` yields should
/// yield once more before sending: only when its last batch held several records (writers are
/// concurrent), this one has fewer so far, there is room, and it has not yielded enough yet.
fn keep_gathering(last_batch: usize, gathered: usize, bytes: usize, yields: usize) -> bool {
    last_batch > 1
        && gathered < last_batch
        && gathered < MAX_BATCH_RECORDS
        && bytes < MAX_BATCH_BYTES
        && yields < LINGER_YIELDS
}

struct Lane {
    topic: TopicRole,
    partition: i32,
    kafka: KafkaConnection,
    timeout: Duration,
    /// This topic's series, looked up once: a produce request observes without a lookup.
    acknowledged: Histogram,
    failed: Counter,
}

impl Lane {
    async fn run(mut self, mut queue: mpsc::Receiver<Job>, shutdown: CancellationToken) {
        let mut last_batch = 0usize;
        loop {
            let first = tokio::select! {
                _ = shutdown.cancelled() => break,
                job = queue.recv() => match job { Some(job) => job, None => break },
            };
            let mut batch = vec![first];
            let mut bytes = batch[0].record.approximate_size();
            let mut yields = 0;
            loop {
                while batch.len() < MAX_BATCH_RECORDS && bytes < MAX_BATCH_BYTES {
                    match queue.try_recv() {
                        Ok(job) => {
                            bytes += job.record.approximate_size();
                            batch.push(job);
                        }
                        Err(_) => break,
                    }
                }
                if !keep_gathering(last_batch, batch.len(), bytes, yields) {
                    break;
                }
                yields += 1;
                tokio::task::yield_now().await;
            }
            last_batch = batch.len();
            self.write(batch).await;
        }
        // Writers still queued learn that their record was not written.
        queue.close();
        while let Ok(job) = queue.try_recv() {
            let _ = job.reply.send(Err("shopstream is shutting down".into()));
        }
    }

    async fn write(&mut self, batch: Vec<Job>) {
        let (records, replies): (Vec<Record>, Vec<_>) =
            batch.into_iter().map(|job| (job.record, job.reply)).unzip();
        let count = records.len();
        let started = Instant::now();
        let result = match self.kafka.ready_session() {
            Ok(session) => {
                Partition::new(
                    session,
                    Use::Produce,
                    self.topic,
                    self.partition,
                    self.timeout,
                )
                .produce(records)
                .await
            }
            Err(error) => Err(error),
        };
        match &result {
            Ok(_) => self.acknowledged.observe(started.elapsed().as_secs_f64()),
            Err(_) => {
                self.failed.inc();
            }
        }
        match result {
            Ok(offsets) if offsets.len() == count => {
                for (reply, offset) in replies.into_iter().zip(offsets) {
                    let _ = reply.send(Ok(offset));
                }
            }
            Ok(offsets) => {
                let message = format!("Kafka acknowledged {} of {count} records", offsets.len());
                for reply in replies {
                    let _ = reply.send(Err(message.clone()));
                }
            }
            Err(error) => {
                // A timed-out request may still have been written: the caller's retry with the
                // same Idempotency-Key carries the same event id, so it cannot count twice.
                tracing::warn!(topic = %self.topic, partition = self.partition, %error, "produce failed");
                let message = error.to_string();
                for reply in replies {
                    let _ = reply.send(Err(message.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lane_lingers_only_while_concurrent_writers_may_still_fill_its_batch() {
        // A lone writer (last batch of one, or the first batch) is sent at once.
        assert!(!keep_gathering(0, 1, 300, 0));
        assert!(!keep_gathering(1, 1, 300, 0));
        // After a batch of ten, a batch of three waits for more, a few yields at most.
        assert!(keep_gathering(10, 3, 900, 0));
        assert!(keep_gathering(10, 3, 900, LINGER_YIELDS - 1));
        assert!(!keep_gathering(10, 3, 900, LINGER_YIELDS));
        // As full as the last one, or full by count or bytes: sent.
        assert!(!keep_gathering(10, 10, 3_000, 1));
        assert!(!keep_gathering(
            MAX_BATCH_RECORDS + 1,
            MAX_BATCH_RECORDS,
            1,
            0
        ));
        assert!(!keep_gathering(10, 3, MAX_BATCH_BYTES, 0));
    }
}
