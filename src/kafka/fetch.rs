//! Fetches, read by shopstream itself: every record of a partition is read through here (the
//! partition consumers, the WebSocket replay and the event browser alike, through
//! [`super::partitions::Partition`]).
//!
//! ## Why not rskafka's fetch
//! rskafka 0.6 decodes a fetch answer inside its own call and offers no hook:
//! - it reads lz4 and zstd only through crates that compile C, which shopstream refuses, so a
//!   single lz4 or zstd batch fails the whole fetch, and the partition stops there for good;
//! - it drops control batches (transaction markers) without saying where they ended, so a fetch
//!   that holds only a marker returns nothing and the consumer asks for the same offset again;
//! - it asks for `read_committed` but throws the aborted-transaction list away, so the records
//!   of aborted transactions would be applied.
//!
//! A fallback (rskafka first, this path only when rskafka fails) would still apply aborted
//! records, and would keep two readings of the log that can disagree. So every fetch goes one
//! way: a Fetch request (v4 to v12; v10 and later, as brokers send zstd batches only to those)
//! built and decoded with `kafka-protocol` (without its default codecs, which are C) over a raw
//! connection ([`super::wire`]) to the partition's leader, and the batches are framed and
//! decoded by [`super::batches`] with the pure-Rust codecs of [`super::codecs`].
//!
//! Every fetch also says which topic it read by the topic's id (from Metadata, looked up again
//! every [`TOPIC_ID_FRESH`]): a topic deleted and created again under the same name has a new
//! id, which the consumers compare with the one their store saved ([`Fetched::topic_id`]).
//!
//! Connections are kept per (use, topic, partition), like rskafka's partition clients, so a
//! consumer's long poll never holds the event browser back. A connection is opened with
//! `TCP_NODELAY`; every fetch is bounded by the same deadline as rskafka's calls; a connection
//! whose request failed or timed out is dropped, and after an error that says the leader moved
//! the leader is looked up again (a Metadata request to the bootstrap brokers).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, MetadataRequest, MetadataResponse, TopicName,
    fetch_request::{FetchPartition, FetchTopic},
    metadata_request::MetadataRequestTopic,
};
use kafka_protocol::protocol::StrBytes;
use rskafka::record::RecordAndOffset;

use super::KafkaError;
use super::batches::{self, AbortedTransaction, Unreadable};
use super::partitions::Use;
use super::wire::{BrokerConnection, WireError};
use crate::domain::event::TopicRole;

/// The Fetch versions shopstream speaks: from 4 (transactions; the lowest Kafka 4 accepts) to
/// 12 (the last that names topics; 13 and later name them by id).
const FETCH_VERSIONS: (i16, i16) = (4, 12);
/// Metadata versions: 4 is the lowest Kafka 4 accepts.
const METADATA_VERSIONS: (i16, i16) = (4, 12);
/// `read_committed`: nothing past the last stable offset, and the aborted transactions listed.
const READ_COMMITTED: i8 = 1;

/// Error codes of the Fetch answer that mean "ask the leader again".
const LEADER_MOVED: [i16; 6] = [
    3,   // UNKNOWN_TOPIC_OR_PARTITION
    5,   // LEADER_NOT_AVAILABLE
    6,   // NOT_LEADER_OR_FOLLOWER
    74,  // FENCED_LEADER_EPOCH
    75,  // UNKNOWN_LEADER_EPOCH
    100, // UNKNOWN_TOPIC_ID
];
const OFFSET_OUT_OF_RANGE: i16 = 1;
/// How long a topic's id is taken as known before it is looked up again.
pub const TOPIC_ID_FRESH: Duration = Duration::from_secs(5);

/// What one fetch read from a partition.
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    /// Records to apply, in offset order, from the offset asked for on.
    pub records: Vec<RecordAndOffset>,
    /// Batches that could not be read: skipped with their offsets.
    pub unreadable: Vec<Unreadable>,
    /// Records of aborted transactions, dropped.
    pub aborted: u64,
    /// Transaction markers passed.
    pub markers: u64,
    /// Where the next fetch starts: past every whole batch seen (the offset asked for when
    /// none was whole).
    pub next_offset: i64,
    /// The partition's end as the broker saw it.
    pub high_watermark: i64,
    /// The end of what `read_committed` may read (before an open transaction).
    pub last_stable_offset: i64,
    /// The id of the topic read (brokers before Kafka 2.8 have none), known as of at most
    /// [`TOPIC_ID_FRESH`] ago.
    pub topic_id: Option<uuid::Uuid>,
}

/// The raw fetch connections of one session, and the leaders they go to.
#[derive(Debug)]
pub struct Fetchers {
    bootstrap: Vec<String>,
    /// The SASL login of every connection, when configured.
    sasl: Option<crate::config::SaslCredentials>,
    slots: Mutex<HashMap<(Use, TopicRole, i32), Slot>>,
    /// Leader address by (topic name, partition).
    leaders: Mutex<HashMap<(String, i32), String>>,
    /// A topic's id, and when it was looked up.
    topic_ids: Mutex<HashMap<String, (uuid::Uuid, tokio::time::Instant)>>,
}

type Slot = Arc<tokio::sync::Mutex<Option<BrokerConnection>>>;

impl Fetchers {
    pub fn new(bootstrap: Vec<String>, sasl: Option<crate::config::SaslCredentials>) -> Self {
        Self {
            bootstrap,
            sasl,
            slots: Mutex::default(),
            leaders: Mutex::default(),
            topic_ids: Mutex::default(),
        }
    }

    /// The topic's id as last looked up, if that was recently.
    fn fresh_topic_id(&self, topic: &str) -> Option<uuid::Uuid> {
        self.topic_ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(topic)
            .filter(|(_, at)| at.elapsed() < TOPIC_ID_FRESH)
            .map(|(id, _)| *id)
    }

    fn learn(&self, topic: &str, partition: i32, found: &Found) {
        self.leaders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((topic.to_string(), partition), found.leader.clone());
        if let Some(id) = found.topic_id {
            self.topic_ids
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(topic.to_string(), (id, tokio::time::Instant::now()));
        }
    }

    /// The topic's id: recent, or looked up now (`None` when the lookup fails or the broker
    /// has no ids; the fetch itself does not fail for it).
    async fn topic_id(&self, topic: &str, partition: i32) -> Option<uuid::Uuid> {
        if let Some(id) = self.fresh_topic_id(topic) {
            return Some(id);
        }
        let found = self.lookup(topic, partition).await.ok()?;
        found.topic_id
    }

    fn slot(&self, key: (Use, TopicRole, i32)) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(slots.entry(key).or_default())
    }

    fn forget_leader(&self, topic: &str, partition: i32) {
        self.leaders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(topic.to_string(), partition));
    }

    /// Records of one partition from `offset`, up to about `max_bytes` (the first batch comes
    /// whole, however large), waiting up to `max_wait_ms` for one; all of it within `deadline`.
    #[allow(clippy::too_many_arguments)]
    pub async fn fetch(
        &self,
        use_: Use,
        role: TopicRole,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: i32,
        max_wait_ms: i32,
        deadline: Duration,
    ) -> Result<Fetched, KafkaError> {
        let slot = self.slot((use_, role, partition));
        let mut held = slot.lock().await;
        // Taken out while in use: a request that fails or times out drops its connection.
        let connection = held.take();
        let call = self.fetch_on(connection, topic, partition, offset, max_bytes, max_wait_ms);
        match tokio::time::timeout(deadline, call).await {
            Ok(Ok((connection, fetched))) => {
                *held = Some(connection);
                Ok(fetched)
            }
            Ok(Err(error)) => {
                if !matches!(error, KafkaError::OffsetOutOfRange { .. }) {
                    self.forget_leader(topic, partition);
                }
                Err(error)
            }
            Err(_) => {
                self.forget_leader(topic, partition);
                Err(KafkaError::Timeout {
                    operation: "fetch",
                    after: deadline,
                })
            }
        }
    }

    async fn fetch_on(
        &self,
        connection: Option<BrokerConnection>,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: i32,
        max_wait_ms: i32,
    ) -> Result<(BrokerConnection, Fetched), KafkaError> {
        let mut connection = match connection {
            Some(connection) => connection,
            None => {
                let leader = self.leader(topic, partition).await?;
                BrokerConnection::connect(&leader, self.sasl.as_ref())
                    .await
                    .map_err(wire)?
            }
        };
        let version = connection
            .version(ApiKey::Fetch, FETCH_VERSIONS)
            .map_err(wire)?;
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(max_wait_ms.max(0))
            .with_min_bytes(1)
            .with_max_bytes(max_bytes)
            .with_isolation_level(READ_COMMITTED)
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(partition)
                            .with_current_leader_epoch(-1)
                            .with_fetch_offset(offset)
                            .with_last_fetched_epoch(-1)
                            .with_log_start_offset(-1)
                            .with_partition_max_bytes(max_bytes),
                    ]),
            ]);
        let answer: FetchResponse = connection
            .call(ApiKey::Fetch, version, &request)
            .await
            .map_err(wire)?;
        if answer.error_code != 0 {
            return Err(broker_error("fetch", answer.error_code));
        }
        let data = answer
            .responses
            .into_iter()
            .filter(|t| t.topic.0.as_str() == topic)
            .flat_map(|t| t.partitions)
            .find(|p| p.partition_index == partition)
            .ok_or_else(|| KafkaError::Connection {
                operation: "fetch",
                message: format!("the answer holds no data for {topic}/{partition}"),
            })?;
        match data.error_code {
            0 => {}
            OFFSET_OUT_OF_RANGE => return Err(KafkaError::OffsetOutOfRange { operation: "fetch" }),
            code => return Err(broker_error("fetch", code)),
        }
        let aborted: Vec<AbortedTransaction> = data
            .aborted_transactions
            .unwrap_or_default()
            .into_iter()
            .map(|t| AbortedTransaction {
                producer_id: t.producer_id.0,
                first_offset: t.first_offset,
            })
            .collect();
        let decoded = match &data.records {
            Some(bytes) => batches::decode(bytes, offset, &aborted),
            None => batches::Decoded::default(),
        };
        let topic_id = self.topic_id(topic, partition).await;
        let fetched = Fetched {
            topic_id,
            records: decoded.records,
            unreadable: decoded.unreadable,
            aborted: decoded.aborted,
            markers: decoded.markers,
            next_offset: decoded.next_offset.unwrap_or(offset).max(offset),
            high_watermark: data.high_watermark,
            last_stable_offset: data.last_stable_offset,
        };
        Ok((connection, fetched))
    }

    /// The leader of a partition, from the cache or a Metadata request to a bootstrap broker.
    async fn leader(&self, topic: &str, partition: i32) -> Result<String, KafkaError> {
        let key = (topic.to_string(), partition);
        if let Some(addr) = self
            .leaders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(addr.clone());
        }
        Ok(self.lookup(topic, partition).await?.leader)
    }

    /// Asks every bootstrap broker at once about a partition and goes with the freshest of
    /// the first answers; remembers what it said.
    ///
    /// One after the other, a broker that accepts connections but does not answer (paused,
    /// swapping, behind a black hole) held every lookup until the fetch's deadline, and with
    /// it every partition whose leader had moved, though the other brokers knew the new
    /// leader. A lookup is rare (after a failed fetch, for the topic id every
    /// [`TOPIC_ID_FRESH`], when a partition client is built, and every half second of a write
    /// that takes over a second), so asking all of them costs little.
    ///
    /// The first answer is not always the freshest: a broker that was paused answers at once
    /// when it resumes, from metadata that still names it the leader. So the answers that come
    /// within [`LATER_ANSWERS`] of the first are weighed too, and the highest leader epoch wins.
    async fn lookup(&self, topic: &str, partition: i32) -> Result<Found, KafkaError> {
        use futures_util::StreamExt;
        if self.bootstrap.is_empty() {
            return Err(KafkaError::NotConnected("no bootstrap broker".into()));
        }
        let mut asks: futures_util::stream::FuturesUnordered<_> = self
            .bootstrap
            .iter()
            .map(|bootstrap| lookup_leader(bootstrap, self.sasl.as_ref(), topic, partition))
            .collect();
        let mut best: Option<Found> = None;
        let mut last_error = None;
        while let Some(answer) = asks.next().await {
            match answer {
                Ok(found) => {
                    best = Some(found);
                    break;
                }
                Err(error) => last_error = Some(error),
            }
        }
        let Some(mut best) = best else {
            return Err(last_error
                .unwrap_or_else(|| KafkaError::NotConnected("no bootstrap broker".into())));
        };
        let later = async {
            while let Some(answer) = asks.next().await {
                if let Ok(found) = answer
                    && found.leader_epoch > best.leader_epoch
                {
                    best = found;
                }
            }
        };
        let _ = tokio::time::timeout(LATER_ANSWERS, later).await;
        self.learn(topic, partition, &best);
        Ok(best)
    }

    /// Where the partition's leader is now, its leader epoch and its replica count, as
    /// [`Self::lookup`] finds it (never from the cache): the produce path builds its clients
    /// there, and watches a slow write for a newer epoch.
    pub(super) async fn current_leader(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Found, KafkaError> {
        self.lookup(topic, partition).await
    }
}

/// How long a lookup still listens after its first answer (every broker on a healthy cluster
/// answers a Metadata request within a few milliseconds).
const LATER_ANSWERS: Duration = Duration::from_millis(50);

impl Fetchers {
    /// The partitions of `topics` as the first bootstrap broker to answer lists them (a topic
    /// the broker does not know is left out): the connection's probe, which one broker that
    /// stopped answering must not fail while the others answer.
    pub(super) async fn list_topics(
        &self,
        topics: &[String],
    ) -> Result<Vec<rskafka::topic::Topic>, KafkaError> {
        if self.bootstrap.is_empty() {
            return Err(KafkaError::NotConnected("no bootstrap broker".into()));
        }
        let asks = self
            .bootstrap
            .iter()
            .map(|bootstrap| Box::pin(list_partitions(bootstrap, self.sasl.as_ref(), topics)));
        let (listed, _slower) = futures_util::future::select_ok(asks).await?;
        Ok(listed)
    }
}

/// Asks `bootstrap` for the partitions of `topics`.
async fn list_partitions(
    bootstrap: &str,
    sasl: Option<&crate::config::SaslCredentials>,
    topics: &[String],
) -> Result<Vec<rskafka::topic::Topic>, KafkaError> {
    let answer = metadata(bootstrap, sasl, topics).await?;
    Ok(answer
        .topics
        .iter()
        .filter(|t| t.error_code == 0)
        .filter_map(|t| {
            Some(rskafka::topic::Topic {
                name: t.name.as_ref()?.0.to_string(),
                partitions: t.partitions.iter().map(|p| p.partition_index).collect(),
            })
        })
        .collect())
}

/// What `bootstrap` knows of `topics` (a Metadata request on a connection of its own).
async fn metadata(
    bootstrap: &str,
    sasl: Option<&crate::config::SaslCredentials>,
    topics: &[String],
) -> Result<MetadataResponse, KafkaError> {
    let mut connection = BrokerConnection::connect(bootstrap, sasl)
        .await
        .map_err(wire)?;
    let version = connection
        .version(ApiKey::Metadata, METADATA_VERSIONS)
        .map_err(wire)?;
    let request = MetadataRequest::default()
        .with_topics(Some(
            topics
                .iter()
                .map(|topic| {
                    MetadataRequestTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(topic.clone()))))
                })
                .collect(),
        ))
        .with_allow_auto_topic_creation(false);
    connection
        .call(ApiKey::Metadata, version, &request)
        .await
        .map_err(wire)
}

/// What Metadata says of a partition: its leader's address and epoch, its replica count and
/// its topic's id.
pub(super) struct Found {
    /// The leader's address.
    pub leader: String,
    /// The partition's leader epoch (-1 from brokers before Metadata v7): higher is newer.
    pub leader_epoch: i32,
    /// How many brokers hold a replica: with one, no other leader can take over.
    pub replicas: usize,
    topic_id: Option<uuid::Uuid>,
}

/// Asks `bootstrap` where the leader of `topic`/`partition` is, and the topic's id.
async fn lookup_leader(
    bootstrap: &str,
    sasl: Option<&crate::config::SaslCredentials>,
    topic: &str,
    partition: i32,
) -> Result<Found, KafkaError> {
    let answer = metadata(bootstrap, sasl, &[topic.to_string()]).await?;
    let found = answer
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
        .ok_or_else(|| KafkaError::Topic {
            topic: topic.to_string(),
            reason: "not in the broker's metadata".into(),
        })?;
    if found.error_code != 0 {
        return Err(broker_error("metadata", found.error_code));
    }
    let (leader, leader_epoch, replicas) = found
        .partitions
        .iter()
        .find(|p| p.partition_index == partition)
        .map(|p| (p.leader_id, p.leader_epoch, p.replica_nodes.len()))
        .ok_or_else(|| KafkaError::Topic {
            topic: topic.to_string(),
            reason: format!("partition {partition} is not in the broker's metadata"),
        })?;
    let topic_id = Some(found.topic_id).filter(|id| !id.is_nil());
    answer
        .brokers
        .iter()
        .find(|b| b.node_id == leader)
        .map(|b| Found {
            leader: format!("{}:{}", b.host.as_str(), b.port),
            leader_epoch,
            replicas,
            topic_id,
        })
        .ok_or_else(|| KafkaError::Connection {
            operation: "metadata",
            message: format!(
                "the leader of {topic}/{partition} ({}) is not listed",
                leader.0
            ),
        })
}

fn wire(error: WireError) -> KafkaError {
    KafkaError::Connection {
        operation: "fetch",
        message: error.to_string(),
    }
}

fn broker_error(operation: &'static str, code: i16) -> KafkaError {
    let moved = LEADER_MOVED.contains(&code);
    KafkaError::Connection {
        operation,
        message: format!(
            "the broker answered error {code}{}",
            if moved { " (the leader moved)" } else { "" }
        ),
    }
}
