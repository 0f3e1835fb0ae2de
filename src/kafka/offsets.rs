//! The broker's side of `/api/kafka`: earliest and latest offset of every partition, asked
//! with a deadline. Partition clients are kept between calls (a dashboard polls this), and
//! rebuilt after a reconnect or a failure.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use tokio::task::JoinSet;

use super::connection::KafkaSession;
use super::{KafkaError, with_deadline};
use crate::domain::event::TopicRole;

/// One partition's offsets on the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerOffsets {
    pub topic: TopicRole,
    pub partition: i32,
    pub earliest: i64,
    pub latest: i64,
}

type ClientCache = HashMap<(TopicRole, i32), (u64, Arc<PartitionClient>)>;

#[derive(Debug, Default)]
pub struct OffsetsReader {
    clients: Arc<Mutex<ClientCache>>,
}

impl OffsetsReader {
    /// Offsets of every partition, asked concurrently; a partition that fails is left out
    /// and the first error is returned alongside.
    pub async fn read(
        &self,
        session: &Arc<KafkaSession>,
        timeout: Duration,
    ) -> (Vec<BrokerOffsets>, Option<KafkaError>) {
        let mut tasks = JoinSet::new();
        for topic in &session.topics.topics {
            for partition in 0..topic.partitions {
                let session = Arc::clone(session);
                let clients = Arc::clone(&self.clients);
                let (role, name) = (topic.role, topic.name.clone());
                tasks.spawn(async move {
                    let client =
                        client_for(&clients, &session, role, &name, partition, timeout).await?;
                    let result = async {
                        let earliest = with_deadline(
                            "list offsets",
                            timeout,
                            client.get_offset(OffsetAt::Earliest),
                        )
                        .await?;
                        let latest = with_deadline(
                            "list offsets",
                            timeout,
                            client.get_offset(OffsetAt::Latest),
                        )
                        .await?;
                        Ok(BrokerOffsets {
                            topic: role,
                            partition,
                            earliest,
                            latest,
                        })
                    }
                    .await;
                    if result.is_err() {
                        clients
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&(role, partition));
                    }
                    result
                });
            }
        }
        let mut offsets = Vec::new();
        let mut first_error = None;
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Ok(o)) => offsets.push(o),
                Ok(Err(error)) => {
                    first_error.get_or_insert(error);
                }
                Err(join) => {
                    first_error.get_or_insert(KafkaError::NotConnected(join.to_string()));
                }
            }
        }
        offsets.sort_by_key(|o| (o.topic, o.partition));
        (offsets, first_error)
    }
}

async fn client_for(
    clients: &Mutex<ClientCache>,
    session: &KafkaSession,
    role: TopicRole,
    name: &str,
    partition: i32,
    timeout: Duration,
) -> Result<Arc<PartitionClient>, KafkaError> {
    if let Some((generation, client)) = clients
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&(role, partition))
        && *generation == session.generation
    {
        return Ok(Arc::clone(client));
    }
    let client = Arc::new(
        with_deadline(
            "partition client",
            timeout,
            session.client.partition_client(
                name.to_string(),
                partition,
                UnknownTopicHandling::Retry,
            ),
        )
        .await?,
    );
    clients
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert((role, partition), (session.generation, Arc::clone(&client)));
    Ok(client)
}

/// One record as the raw event browser shows it.
#[derive(Debug, Clone)]
pub struct BrowsedRecord {
    pub offset: i64,
    pub record: rskafka::record::Record,
}

/// Where a browse starts.
#[derive(Debug, Clone, Copy)]
pub enum Seek {
    Offset(i64),
    Time(chrono::DateTime<chrono::Utc>),
}

impl OffsetsReader {
    /// Up to `limit` records of one partition from `seek` on, read from Kafka itself; also
    /// returns the offset to continue from.
    pub async fn browse(
        &self,
        session: &Arc<KafkaSession>,
        role: TopicRole,
        partition: i32,
        seek: Seek,
        limit: usize,
        timeout: Duration,
    ) -> Result<(Vec<BrowsedRecord>, i64), KafkaError> {
        let name = session.topics.get(role).name.clone();
        let client = client_for(&self.clients, session, role, &name, partition, timeout).await?;
        let earliest = with_deadline(
            "list offsets",
            timeout,
            client.get_offset(OffsetAt::Earliest),
        )
        .await?;
        let latest =
            with_deadline("list offsets", timeout, client.get_offset(OffsetAt::Latest)).await?;
        let start = match seek {
            Seek::Offset(offset) => offset.clamp(earliest, latest),
            Seek::Time(time) => {
                // Kafka answers the first offset at or after the time, or -1 when every
                // record is older: then there is nothing to show, so start at the end.
                let at = with_deadline(
                    "list offsets",
                    timeout,
                    client.get_offset(OffsetAt::Timestamp(time)),
                )
                .await?;
                if at < 0 {
                    latest
                } else {
                    at.clamp(earliest, latest)
                }
            }
        };
        let mut records = Vec::new();
        let mut next = start;
        while records.len() < limit && next < latest {
            let (batch, _) = with_deadline(
                "fetch",
                timeout,
                client.fetch_records(next, 1..1024 * 1024, 100),
            )
            .await?;
            if batch.is_empty() {
                break;
            }
            for r in batch {
                if r.offset < next || records.len() == limit {
                    continue;
                }
                next = r.offset + 1;
                records.push(BrowsedRecord {
                    offset: r.offset,
                    record: r.record,
                });
            }
        }
        Ok((records, next))
    }
}
