//! The three topics: created when missing, with the configured partition count and replication
//! factor; when they already exist their real partition counts win, since the partitioner and
//! the consumers must follow what the broker has, not what we asked for.

use std::time::Duration;

use rskafka::client::Client;
use rskafka::client::error::{Error as ClientError, ProtocolError};

use super::{KafkaError, with_deadline};
use crate::config::{Config, TOPIC_BASE_NAMES};

/// One topic as the broker knows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TopicInfo {
    /// Name without the prefix: `orders`, `payments` or `deliveries`.
    pub role: &'static str,
    /// Full name on the broker.
    pub name: String,
    pub partitions: i32,
}

/// The three topics shopstream uses, in the order of [`TOPIC_BASE_NAMES`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TopicLayout {
    pub topics: Vec<TopicInfo>,
}

impl TopicLayout {
    /// The topic playing `role` (`orders`, `payments`, `deliveries`).
    pub fn get(&self, role: &str) -> Option<&TopicInfo> {
        self.topics.iter().find(|t| t.role == role)
    }
}

/// Creates whichever of the three topics is missing, then waits (bounded) until the broker's
/// metadata shows all three, and returns their partition counts.
pub async fn ensure_topics(client: &Client, config: &Config) -> Result<TopicLayout, KafkaError> {
    let deadline = config.kafka_timeout;
    let existing = with_deadline("list topics", deadline, client.list_topics()).await?;
    let controller = client
        .controller_client()
        .map_err(|source| KafkaError::Client {
            operation: "controller client",
            source,
        })?;

    for base in TOPIC_BASE_NAMES {
        let name = config.topic_name(base);
        if existing.iter().any(|t| t.name == name) {
            continue;
        }
        let create = controller.create_topic(
            name.clone(),
            config.partitions,
            config.replication_factor,
            deadline.as_millis().min(i32::MAX as u128) as i32,
        );
        match with_deadline("create topic", deadline, create).await {
            Ok(()) => tracing::info!(
                topic = %name,
                partitions = config.partitions,
                replication_factor = config.replication_factor,
                "created topic"
            ),
            // Another instance created it between our listing and our request: fine.
            Err(KafkaError::Client {
                source:
                    ClientError::ServerError {
                        protocol_error: ProtocolError::TopicAlreadyExists,
                        ..
                    },
                ..
            }) => {}
            Err(KafkaError::Client {
                source:
                    ClientError::ServerError {
                        protocol_error,
                        error_message,
                        ..
                    },
                ..
            }) => {
                return Err(KafkaError::Topic {
                    topic: name,
                    reason: format!(
                        "the broker refused to create it ({protocol_error}: {})",
                        error_message.unwrap_or_else(|| "no message".into())
                    ),
                });
            }
            Err(other) => return Err(other),
        }
    }
    wait_for_topics(client, config).await
}

/// Metadata can lag a creation by a moment: poll until every topic shows its partitions.
async fn wait_for_topics(client: &Client, config: &Config) -> Result<TopicLayout, KafkaError> {
    let started = tokio::time::Instant::now();
    loop {
        let listed =
            with_deadline("list topics", config.kafka_timeout, client.list_topics()).await?;
        let topics: Vec<TopicInfo> = TOPIC_BASE_NAMES
            .iter()
            .filter_map(|base| {
                let name = config.topic_name(base);
                listed
                    .iter()
                    .find(|t| t.name == name && !t.partitions.is_empty())
                    .map(|t| TopicInfo {
                        role: base,
                        name,
                        partitions: t.partitions.len() as i32,
                    })
            })
            .collect();
        if topics.len() == TOPIC_BASE_NAMES.len() {
            for t in topics.iter().filter(|t| t.partitions != config.partitions) {
                tracing::warn!(
                    topic = %t.name,
                    partitions = t.partitions,
                    configured = config.partitions,
                    "topic exists with another partition count; using the broker's"
                );
            }
            return Ok(TopicLayout { topics });
        }
        if started.elapsed() > config.kafka_timeout {
            let missing = TOPIC_BASE_NAMES
                .iter()
                .map(|b| config.topic_name(b))
                .find(|n| !topics.iter().any(|t| &t.name == n))
                .unwrap_or_default();
            return Err(KafkaError::Topic {
                topic: missing,
                reason: "not visible in the broker's metadata after creation".into(),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
