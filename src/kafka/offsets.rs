//! The broker's side of `/api/kafka` and the event browser: earliest and latest offset of every
//! partition, and records read back, through [`super::partitions`] (clients kept between
//! calls, as a dashboard polls this, and rebuilt after a reconnect or a failure).

use std::sync::Arc;
use std::time::Duration;

use rskafka::client::partition::OffsetAt;
use tokio::task::JoinSet;

use super::KafkaError;
use super::connection::KafkaSession;
use super::partitions::{Partition, Use};
use crate::domain::event::TopicRole;
use crate::domain::validation::BrowseStart;

/// One partition's offsets on the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerOffsets {
    pub topic: TopicRole,
    pub partition: i32,
    pub earliest: i64,
    pub latest: i64,
}

/// Offsets of every partition, asked concurrently; a partition that fails is left out
/// and the first error is returned alongside.
pub async fn read(
    session: &Arc<KafkaSession>,
    timeout: Duration,
) -> (Vec<BrokerOffsets>, Option<KafkaError>) {
    let mut tasks = JoinSet::new();
    for topic in &session.topics.topics {
        for partition in 0..topic.partitions {
            let log = Partition::new(
                Arc::clone(session),
                Use::Inspect,
                topic.role,
                partition,
                timeout,
            );
            let role = topic.role;
            tasks.spawn(async move {
                Ok(BrokerOffsets {
                    topic: role,
                    partition,
                    earliest: log.offset(OffsetAt::Earliest).await?,
                    latest: log.offset(OffsetAt::Latest).await?,
                })
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

/// Most bytes of one fetch of the event browser (it shows at most 200 records).
const BROWSE_FETCH_BYTES: i32 = 1024 * 1024;
/// The browser reads what is there: a short wait.
const BROWSE_FETCH_WAIT_MS: i32 = 100;

/// One record as the raw event browser shows it.
#[derive(Debug, Clone)]
pub struct BrowsedRecord {
    pub offset: i64,
    pub record: rskafka::record::Record,
}

/// Up to `limit` records of one partition from `start` on, read from Kafka itself; also
/// returns the offset to continue from.
pub async fn browse(
    session: &Arc<KafkaSession>,
    role: TopicRole,
    partition: i32,
    start: BrowseStart,
    limit: usize,
    timeout: Duration,
) -> Result<(Vec<BrowsedRecord>, i64), KafkaError> {
    let log = Partition::new(Arc::clone(session), Use::Inspect, role, partition, timeout);
    let earliest = log.offset(OffsetAt::Earliest).await?;
    let latest = log.offset(OffsetAt::Latest).await?;
    let from = match start {
        // Not `clamp`: a topic recreated between the two calls may answer earliest > latest.
        BrowseStart::Offset(offset) => offset.min(latest).max(earliest),
        BrowseStart::Time(time) => {
            // Kafka answers the first offset at or after the time, or -1 when every
            // record is older: then there is nothing to show, so start at the end.
            let at = log.offset(OffsetAt::Timestamp(time)).await?;
            if at < 0 {
                latest
            } else {
                at.min(latest).max(earliest)
            }
        }
    };
    let mut records = Vec::new();
    let mut next = from;
    while records.len() < limit && next < latest {
        let fetched = log
            .read(next, BROWSE_FETCH_BYTES, BROWSE_FETCH_WAIT_MS)
            .await?;
        if fetched.next_offset <= next {
            break;
        }
        let past = fetched.next_offset;
        for r in fetched.records {
            if r.offset < next || records.len() == limit {
                continue;
            }
            next = r.offset.saturating_add(1);
            records.push(BrowsedRecord {
                offset: r.offset,
                record: r.record,
            });
        }
        // Past transaction markers, aborted and unreadable batches too (unless the limit
        // stopped this page inside the fetch).
        if records.len() < limit {
            next = next.max(past);
        }
    }
    Ok((records, next))
}
