//! Consumed offsets committed to a Kafka consumer group, **for monitoring only**: so that
//! `kafka-consumer-groups.sh --describe`, Kafka consoles (Kafbat UI, AKHQ, Redpanda Console)
//! and lag monitors (Burrow) show where shopstream is and how far behind.
//!
//! shopstream never reads these offsets back: its position is the one its store commits in the
//! same transaction as the state ([`crate::model::store`]), and it resumes from there. The
//! group is a *simple* one, as the admin client and consumers that assign partitions
//! themselves use: no member joins it, and every OffsetCommit goes with generation -1 and an
//! empty member id, which the group coordinator accepts while the group has no members. Each
//! instance commits to a group of its own (`--consumer-group`), since every instance reads
//! every partition.
//!
//! The requests (FindCoordinator, then OffsetCommit) go over the raw connection of
//! [`super::wire`], built with `kafka-protocol`: `TCP_NODELAY`, the SASL login of every other
//! broker connection, and the Kafka deadline (`--kafka-timeout`) on each commit, the lookup of
//! the coordinator (and a retry while it loads or moves) included. The committer
//! runs as a task of its own and only reads the store's committed offsets, so a slow or failing
//! coordinator never holds consumption back; a failure is logged once, and the next round
//! tries again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::{
    ApiKey, FindCoordinatorRequest, FindCoordinatorResponse, GroupId, OffsetCommitRequest,
    OffsetCommitResponse, TopicName,
    offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic},
};
use kafka_protocol::protocol::StrBytes;
use tokio_util::sync::CancellationToken;

use super::wire::{BrokerConnection, WireError};
use super::{KafkaConnection, KafkaError};
use crate::config::SaslCredentials;
use crate::model::store::Store;

/// FindCoordinator: 1 is the lowest Kafka 4 accepts; from 4 on, keys come in a list.
const FIND_COORDINATOR_VERSIONS: (i16, i16) = (1, 6);
/// OffsetCommit: 2 is the lowest Kafka 4 accepts; 10 names topics by id.
const OFFSET_COMMIT_VERSIONS: (i16, i16) = (2, 9);
/// FindCoordinator's key type of a consumer group.
const KEY_TYPE_GROUP: i8 = 0;
/// The coordinator is loading, not there yet, or moved: ask again who it is.
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const NOT_COORDINATOR: i16 = 16;
/// Pause before asking again while the coordinator is being elected (the first group on a new
/// cluster creates `__consumer_offsets`), within one call's deadline.
const COORDINATOR_RETRY: Duration = Duration::from_millis(250);
/// The last commit at shutdown gets at most this long (or the Kafka deadline, if shorter), so
/// that stopping stays well inside a container's grace period.
const LAST_COMMIT_WITHIN: Duration = Duration::from_secs(2);

/// One partition's position: topic name, partition, next offset to read.
pub type Position = (String, i32, i64);

/// Commits positions to one consumer group; keeps its coordinator's connection between rounds.
#[derive(Debug)]
pub struct GroupCommitter {
    group: String,
    bootstrap: Vec<String>,
    sasl: Option<SaslCredentials>,
    deadline: Duration,
    /// The coordinator's connection, dropped after any failure on it.
    coordinator: Option<BrokerConnection>,
    /// What the group holds, as far as this instance knows: the offsets it last accepted.
    committed: BTreeMap<(String, i32), i64>,
}

impl GroupCommitter {
    pub fn new(
        group: String,
        bootstrap: Vec<String>,
        sasl: Option<SaslCredentials>,
        deadline: Duration,
    ) -> Self {
        Self {
            group,
            bootstrap,
            sasl,
            deadline,
            coordinator: None,
            committed: BTreeMap::new(),
        }
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    /// The positions that differ from what the group holds.
    fn moved(&self, positions: &[Position]) -> Vec<Position> {
        positions
            .iter()
            .filter(|(topic, partition, offset)| {
                self.committed.get(&(topic.clone(), *partition)) != Some(offset)
            })
            .cloned()
            .collect()
    }

    /// Commits the positions that moved since the group last accepted them; the number of
    /// partitions committed (0 when nothing moved: no request is sent). The whole call,
    /// finding the coordinator again while it loads or moves, runs within the Kafka deadline.
    pub async fn commit(&mut self, positions: &[Position]) -> Result<usize, KafkaError> {
        let moved = self.moved(positions);
        if moved.is_empty() {
            return Ok(0);
        }
        let deadline = self.deadline;
        tokio::time::timeout(deadline, self.commit_moved(&moved))
            .await
            .unwrap_or_else(|_| {
                // Whatever was in flight is dropped with its connection.
                self.coordinator = None;
                Err(KafkaError::Timeout {
                    operation: "offset commit",
                    after: deadline,
                })
            })
    }

    async fn commit_moved(&mut self, moved: &[Position]) -> Result<usize, KafkaError> {
        loop {
            let mut connection = match self.coordinator.take() {
                Some(connection) => connection,
                None => self.find_coordinator().await?,
            };
            let answer = commit_on(&mut connection, &self.group, moved)
                .await
                .map_err(|e| wire("offset commit", e))?;
            let mut refused: Option<(String, i32, i16)> = None;
            for topic in &answer.topics {
                for partition in &topic.partitions {
                    let key = (topic.name.0.to_string(), partition.partition_index);
                    if partition.error_code == 0 {
                        if let Some((_, _, offset)) =
                            moved.iter().find(|(t, p, _)| (t, p) == (&key.0, &key.1))
                        {
                            self.committed.insert(key, *offset);
                        }
                    } else if refused.is_none() {
                        refused = Some((key.0, key.1, partition.error_code));
                    }
                }
            }
            match refused {
                None => {
                    self.coordinator = Some(connection);
                    return Ok(moved.len());
                }
                // Loading, not elected yet, or moved: ask who coordinates the group now.
                Some((_, _, code)) if is_coordinator_error(code) => {
                    tokio::time::sleep(COORDINATOR_RETRY).await;
                }
                Some((topic, partition, code)) => {
                    self.coordinator = Some(connection);
                    return Err(KafkaError::Connection {
                        operation: "offset commit",
                        message: format!(
                            "the coordinator refused {topic}/{partition} for group `{}`: {}",
                            self.group,
                            error_name(code)
                        ),
                    });
                }
            }
        }
    }

    /// Asks the bootstrap brokers, one after the other, which broker coordinates the group, and
    /// connects to it.
    async fn find_coordinator(&self) -> Result<BrokerConnection, KafkaError> {
        let mut last = None;
        for bootstrap in &self.bootstrap {
            match find_coordinator_via(bootstrap, self.sasl.as_ref(), &self.group).await {
                Ok(coordinator) => {
                    return BrokerConnection::connect(&coordinator, self.sasl.as_ref())
                        .await
                        .map_err(|e| wire("connect to the group coordinator", e));
                }
                Err(error) => last = Some(error),
            }
        }
        Err(last.unwrap_or_else(|| KafkaError::NotConnected("no bootstrap broker".into())))
    }
}

/// FindCoordinator through `bootstrap`: the coordinator's `host:port`. While the coordinator
/// is being elected (a new cluster's first group), asks again (the caller bounds the time).
async fn find_coordinator_via(
    bootstrap: &str,
    sasl: Option<&SaslCredentials>,
    group: &str,
) -> Result<String, KafkaError> {
    let operation = "find coordinator";
    let mut connection = BrokerConnection::connect(bootstrap, sasl)
        .await
        .map_err(|e| wire(operation, e))?;
    let version = connection
        .version(ApiKey::FindCoordinator, FIND_COORDINATOR_VERSIONS)
        .map_err(|e| wire(operation, e))?;
    loop {
        let key = StrBytes::from_string(group.to_string());
        let mut request = FindCoordinatorRequest::default().with_key_type(KEY_TYPE_GROUP);
        request = if version >= 4 {
            request.with_coordinator_keys(vec![key])
        } else {
            request.with_key(key)
        };
        let answer: FindCoordinatorResponse = connection
            .call(ApiKey::FindCoordinator, version, &request)
            .await
            .map_err(|e| wire(operation, e))?;
        let (code, message, host, port) = match answer.coordinators.first() {
            Some(c) if version >= 4 => (
                c.error_code,
                c.error_message.clone(),
                c.host.clone(),
                c.port,
            ),
            _ => (
                answer.error_code,
                answer.error_message.clone(),
                answer.host.clone(),
                answer.port,
            ),
        };
        match code {
            0 => return Ok(format!("{}:{port}", host.as_str())),
            COORDINATOR_LOAD_IN_PROGRESS | COORDINATOR_NOT_AVAILABLE => {
                tokio::time::sleep(COORDINATOR_RETRY).await;
            }
            code => {
                let message = message.as_ref().map_or("", |m| m.as_str());
                return Err(KafkaError::Connection {
                    operation,
                    message: format!("{bootstrap} answered {} {message}", error_name(code)),
                });
            }
        }
    }
}

/// One OffsetCommit of a simple group: generation -1, no member.
async fn commit_on(
    connection: &mut BrokerConnection,
    group: &str,
    positions: &[Position],
) -> Result<OffsetCommitResponse, WireError> {
    let version = connection.version(ApiKey::OffsetCommit, OFFSET_COMMIT_VERSIONS)?;
    let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for (topic, partition, offset) in positions {
        topics.entry(topic).or_default().push(
            OffsetCommitRequestPartition::default()
                .with_partition_index(*partition)
                .with_committed_offset(*offset)
                .with_committed_leader_epoch(-1)
                .with_committed_metadata(Some(StrBytes::from_static_str("shopstream"))),
        );
    }
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(StrBytes::from_static_str(""))
        .with_retention_time_ms(-1)
        .with_topics(
            topics
                .into_iter()
                .map(|(name, partitions)| {
                    OffsetCommitRequestTopic::default()
                        .with_name(TopicName(StrBytes::from_string(name.to_string())))
                        .with_partitions(partitions)
                })
                .collect(),
        );
    connection
        .call(ApiKey::OffsetCommit, version, &request)
        .await
}

fn is_coordinator_error(code: i16) -> bool {
    matches!(
        code,
        COORDINATOR_LOAD_IN_PROGRESS | COORDINATOR_NOT_AVAILABLE | NOT_COORDINATOR
    )
}

/// The name of a Kafka error code an operator may meet here, with what it means for this group.
fn error_name(code: i16) -> String {
    let name = match code {
        3 => "UNKNOWN_TOPIC_OR_PARTITION",
        COORDINATOR_LOAD_IN_PROGRESS => "COORDINATOR_LOAD_IN_PROGRESS",
        COORDINATOR_NOT_AVAILABLE => "COORDINATOR_NOT_AVAILABLE",
        NOT_COORDINATOR => "NOT_COORDINATOR",
        22 | 25 | 27 => {
            return format!(
                "error {code}: the group has members of its own (another application uses this \
                 name); give shopstream a group of its own with --consumer-group"
            );
        }
        29 => "TOPIC_AUTHORIZATION_FAILED",
        30 => "GROUP_AUTHORIZATION_FAILED (allow READ on the group)",
        69 => "GROUP_ID_NOT_FOUND",
        _ => return format!("error {code}"),
    };
    format!("{name} (error {code})")
}

fn wire(operation: &'static str, error: WireError) -> KafkaError {
    KafkaError::Connection {
        operation,
        message: error.to_string(),
    }
}

/// Every partition's next offset from the store's last commit, named by the topics of the
/// current session (none before the first connection).
fn positions(kafka: &KafkaConnection, store: &Store) -> Option<Vec<Position>> {
    let session = kafka.status().session?;
    let committed = store.committed();
    Some(
        committed
            .partitions
            .iter()
            .filter(|p| p.next_offset >= 0)
            .map(|p| {
                (
                    session.topics.get(p.topic).name.clone(),
                    p.partition,
                    p.next_offset,
                )
            })
            .collect(),
    )
}

/// Commits every `every` while positions move, until `stop`; then once more, bounded, so the
/// group ends where the store ended. Call `stop` after the store's last commit.
pub async fn run(
    mut committer: GroupCommitter,
    kafka: KafkaConnection,
    store: Arc<Store>,
    every: Duration,
    stop: CancellationToken,
) {
    tracing::info!(
        group = committer.group(),
        every = ?every,
        "committing the consumed offsets to a consumer group, for Kafka's tools (shopstream \
         resumes from its store, not from the group)"
    );
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    let mut first = true;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let Some(positions) = positions(&kafka, &store) else {
            continue;
        };
        let result = tokio::select! {
            _ = stop.cancelled() => break,
            result = committer.commit(&positions) => result,
        };
        match result {
            Ok(0) => {}
            Ok(partitions) => {
                if failing {
                    tracing::info!(
                        group = committer.group(),
                        "committing offsets to the consumer group again"
                    );
                } else if first {
                    tracing::info!(
                        group = committer.group(),
                        partitions,
                        "committed offsets to the consumer group"
                    );
                }
                failing = false;
                first = false;
            }
            Err(error) => {
                if failing {
                    tracing::debug!(group = committer.group(), %error, "offset commit failed again");
                } else {
                    failing = true;
                    tracing::warn!(
                        group = committer.group(),
                        %error,
                        retry_in = ?every,
                        "cannot commit offsets to the consumer group (only Kafka's tools miss \
                         them: consumption goes on); retrying"
                    );
                }
            }
        }
    }
    let Some(positions) = positions(&kafka, &store) else {
        return;
    };
    let within = LAST_COMMIT_WITHIN.min(committer.deadline);
    match tokio::time::timeout(within, committer.commit(&positions)).await {
        Ok(Ok(partitions)) => {
            tracing::debug!(
                group = committer.group(),
                partitions,
                "last offsets committed to the consumer group"
            )
        }
        Ok(Err(error)) => {
            tracing::warn!(group = committer.group(), %error, "the last offset commit failed")
        }
        Err(_) => tracing::warn!(
            group = committer.group(),
            ?within,
            "the last offset commit did not finish in time"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_positions_that_moved_are_committed() {
        let mut committer = GroupCommitter::new(
            "g".into(),
            vec!["127.0.0.1:1".into()],
            None,
            Duration::from_secs(1),
        );
        let positions = vec![
            ("orders".to_string(), 0, 5),
            ("orders".to_string(), 1, 0),
            ("payments".to_string(), 0, 2),
        ];
        assert_eq!(committer.moved(&positions), positions);
        committer.committed.insert(("orders".into(), 0), 5);
        committer.committed.insert(("payments".into(), 0), 1);
        assert_eq!(
            committer.moved(&positions),
            vec![("orders".to_string(), 1, 0), ("payments".to_string(), 0, 2)]
        );
    }

    #[tokio::test]
    async fn an_unreachable_broker_is_an_error_within_the_deadline_and_nothing_is_committed() {
        // A port where nothing listens: refused at once; the error names the operation.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut committer = GroupCommitter::new(
            "g".into(),
            vec![format!("127.0.0.1:{port}")],
            None,
            Duration::from_secs(2),
        );
        let started = std::time::Instant::now();
        let error = committer
            .commit(&[("orders".to_string(), 0, 1)])
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(error.to_string().contains("find coordinator"), "{error}");
        assert!(committer.committed.is_empty());
        assert_eq!(committer.moved(&[("orders".to_string(), 0, 1)]).len(), 1);
    }

    #[test]
    fn refusals_say_what_to_do() {
        assert!(error_name(30).contains("READ on the group"));
        assert!(error_name(25).contains("--consumer-group"));
        assert_eq!(error_name(999), "error 999");
    }
}
