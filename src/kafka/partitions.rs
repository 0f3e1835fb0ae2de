//! The one road to a partition: its clients, its offsets and its fetches, each with a deadline
//! and typed errors, for the producer lanes, the partition consumers, the offsets view, the
//! event browser and the WebSocket replay alike.
//!
//! Partition clients live in the [`KafkaSession`] they were built from, so a reconnect (a new
//! session) rebuilds them all without anyone comparing generations. Each [`Use`] has clients
//! of its own: a partition client keeps one connection to the partition's leader, and a broker
//! answers the requests of one connection in order, so a consumer's long-polling fetch must
//! never hold a produce request back.
//!
//! The consumer and the replay read through the small [`PartitionLog`] trait, which a fake log
//! implements in unit tests; the real-broker tests use [`Partition`].

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rskafka::client::partition::{Compression, OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::record::{Record, RecordAndOffset};

use super::connection::KafkaSession;
use super::fetch::Fetched;
use super::{KafkaError, with_deadline};
use crate::domain::event::TopicRole;

/// Who a partition client serves (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Use {
    Produce,
    Consume,
    /// The offsets view and the event browser: short calls.
    Inspect,
    /// WebSocket replays, apart from the offsets view they could otherwise hold back.
    Replay,
}

/// The partition clients of one session, built on first use.
#[derive(Debug, Default)]
pub struct PartitionClients {
    clients: Mutex<HashMap<(Use, TopicRole, i32), Arc<PartitionClient>>>,
}

impl PartitionClients {
    fn cached(&self, key: (Use, TopicRole, i32)) -> Option<Arc<PartitionClient>> {
        self.lock().get(&key).cloned()
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(Use, TopicRole, i32), Arc<PartitionClient>>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One partition of one topic, as one [`Use`] reads and writes it, with one deadline per call.
#[derive(Debug, Clone)]
pub struct Partition {
    session: Arc<KafkaSession>,
    use_: Use,
    topic: TopicRole,
    partition: i32,
    timeout: Duration,
}

impl Partition {
    pub fn new(
        session: Arc<KafkaSession>,
        use_: Use,
        topic: TopicRole,
        partition: i32,
        timeout: Duration,
    ) -> Self {
        Self {
            session,
            use_,
            topic,
            partition,
            timeout,
        }
    }

    /// The topic's name in Kafka.
    fn topic_name(&self) -> &str {
        &self.session.topics.get(self.topic).name
    }

    /// The cached client, or a new one.
    async fn client(&self) -> Result<Arc<PartitionClient>, KafkaError> {
        let key = (self.use_, self.topic, self.partition);
        if let Some(client) = self.session.partitions.cached(key) {
            return Ok(client);
        }
        // Boxed: building a client is rare, and the box keeps the futures of the callers (the
        // HTTP handlers' among them) shallow enough for the compiler's layout queries.
        let client = Box::pin(with_deadline(
            "partition client",
            self.timeout,
            self.session.client.partition_client(
                self.topic_name().to_string(),
                self.partition,
                UnknownTopicHandling::Retry,
            ),
        ))
        .await?;
        // rskafka connected to the leader while building it.
        super::nodelay::sweep();
        // Another call may have built one meanwhile: keep one client per use.
        let client = Arc::clone(
            self.session
                .partitions
                .lock()
                .entry(key)
                .or_insert_with(|| Arc::new(client)),
        );
        Ok(client)
    }

    /// After a failure of `client` it is dropped from the cache (unless another call already
    /// replaced it): the next call builds a new one, which finds the partition's leader again.
    /// A broker's answer that the offset is out of range is no failure of the connection.
    fn after<T>(
        &self,
        client: &Arc<PartitionClient>,
        result: Result<T, KafkaError>,
    ) -> Result<T, KafkaError> {
        if let Err(error) = &result
            && !matches!(error, KafkaError::OffsetOutOfRange { .. })
        {
            let mut clients = self.session.partitions.lock();
            let key = (self.use_, self.topic, self.partition);
            if clients
                .get(&key)
                .is_some_and(|cached| Arc::ptr_eq(cached, client))
            {
                clients.remove(&key);
            }
        }
        result
    }

    pub async fn offset(&self, at: OffsetAt) -> Result<i64, KafkaError> {
        let client = self.client().await?;
        let result = with_deadline("list offsets", self.timeout, client.get_offset(at)).await;
        self.after(&client, result)
    }

    /// What the log holds from `offset` on, up to about `max_bytes`, waiting up to
    /// `max_wait_ms` for the first record; the deadline covers the wait. Read by shopstream
    /// itself, not rskafka ([`super::fetch`] says why).
    pub async fn read(
        &self,
        offset: i64,
        max_bytes: i32,
        max_wait_ms: i32,
    ) -> Result<Fetched, KafkaError> {
        let deadline = self.timeout + Duration::from_millis(max_wait_ms.max(0) as u64);
        self.session
            .fetchers
            .fetch(
                self.use_,
                self.topic,
                self.topic_name(),
                self.partition,
                offset,
                max_bytes,
                max_wait_ms,
                deadline,
            )
            .await
    }

    /// Writes `records` in one produce request; the offsets Kafka gave them.
    pub async fn produce(&self, records: Vec<Record>) -> Result<Vec<i64>, KafkaError> {
        let client = self.client().await?;
        let produce = client.produce(records, Compression::NoCompression);
        let result = with_deadline("produce", self.timeout, produce).await;
        self.after(&client, result)
    }
}

/// What the consumer and the replay need of a partition's log.
pub trait PartitionLog: Send + Sync {
    fn offset(&self, at: OffsetAt) -> impl Future<Output = Result<i64, KafkaError>> + Send;

    /// Everything one fetch read: records, unreadable batches, where to go on from.
    fn read(
        &self,
        offset: i64,
        max_bytes: i32,
        max_wait_ms: i32,
    ) -> impl Future<Output = Result<Fetched, KafkaError>> + Send;

    /// Only the records of one fetch (the replay and the event browser).
    fn fetch(
        &self,
        offset: i64,
        max_bytes: i32,
        max_wait_ms: i32,
    ) -> impl Future<Output = Result<Vec<RecordAndOffset>, KafkaError>> + Send {
        async move {
            self.read(offset, max_bytes, max_wait_ms)
                .await
                .map(|f| f.records)
        }
    }
}

impl PartitionLog for Partition {
    fn offset(&self, at: OffsetAt) -> impl Future<Output = Result<i64, KafkaError>> + Send {
        Partition::offset(self, at)
    }

    fn read(
        &self,
        offset: i64,
        max_bytes: i32,
        max_wait_ms: i32,
    ) -> impl Future<Output = Result<Fetched, KafkaError>> + Send {
        Partition::read(self, offset, max_bytes, max_wait_ms)
    }
}
