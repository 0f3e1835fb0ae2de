//! The three topics: created when missing, with the configured partition count and replication
//! factor; when they already exist their real partition counts win, since the partitioner and
//! the consumers must follow what the broker has, not what we asked for.

use std::time::Duration;

use rskafka::client::Client;
use rskafka::client::error::{Error as ClientError, ProtocolError};

use super::{KafkaError, with_deadline};
use crate::config::Config;
use crate::domain::event::TopicRole;

pub use crate::domain::event::{TopicInfo, TopicLayout};

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

    for role in TopicRole::ALL {
        let name = config.topic_name(role.as_str());
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
        let topics: Vec<TopicInfo> = TopicRole::ALL
            .into_iter()
            .filter_map(|role| {
                let name = config.topic_name(role.as_str());
                listed
                    .iter()
                    .find(|t| t.name == name && !t.partitions.is_empty())
                    .map(|t| TopicInfo {
                        role,
                        name,
                        partitions: t.partitions.len() as i32,
                    })
            })
            .collect();
        if topics.len() == TopicRole::ALL.len() {
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
            let missing = TopicRole::ALL
                .iter()
                .map(|r| config.topic_name(r.as_str()))
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

/// How the partition counts `listed` by the broker differ from `layout`, if they do. A topic
/// missing from the listing (deleted, not re-created yet) is no change: its consumers report
/// their failing fetches until it is back.
pub fn layout_change(layout: &TopicLayout, listed: &[rskafka::topic::Topic]) -> Option<String> {
    layout.topics.iter().find_map(|topic| {
        let now = listed
            .iter()
            .find(|t| t.name == topic.name)?
            .partitions
            .len();
        let now = i32::try_from(now).ok().filter(|n| *n > 0)?;
        (now != topic.partitions).then(|| {
            format!(
                "{} has {now} partitions, was {}",
                topic.name, topic.partitions
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(counts: &[(&str, i32)]) -> Vec<rskafka::topic::Topic> {
        counts
            .iter()
            .map(|(name, n)| rskafka::topic::Topic {
                name: name.to_string(),
                partitions: (0..*n).collect(),
            })
            .collect()
    }

    #[test]
    fn a_grown_or_shrunk_topic_is_a_change_a_missing_one_is_not() {
        let layout = TopicLayout::uniform("p.", 3);
        let same = listed(&[("p.orders", 3), ("p.payments", 3), ("p.deliveries", 3)]);
        assert_eq!(layout_change(&layout, &same), None);
        let grown = listed(&[("p.orders", 3), ("p.payments", 5), ("p.deliveries", 3)]);
        assert_eq!(
            layout_change(&layout, &grown).as_deref(),
            Some("p.payments has 5 partitions, was 3")
        );
        let deleted = listed(&[("p.orders", 3), ("p.deliveries", 3)]);
        assert_eq!(layout_change(&layout, &deleted), None);
        let shrunk = listed(&[("p.orders", 1), ("p.payments", 3), ("p.deliveries", 3)]);
        assert!(layout_change(&layout, &shrunk).is_some());
    }
}
