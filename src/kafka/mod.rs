//! Everything that talks to Kafka: through rskafka, except fetches, which shopstream makes and
//! decodes itself ([`fetch`]: every codec in pure Rust, transaction markers, aborted
//! transactions).
//!
//! - [`connection`]: builds the rskafka client with a deadline on every call, keeps it healthy
//!   (probing, reconnecting) and tells the rest of the server whether Kafka answers.
//! - [`topics`]: creates the three topics when missing and learns their partition counts.
//! - [`partitions`]: the one road to a partition (clients, offsets, fetches, produce) that
//!   [`producer`], [`consumer`], [`offsets`] and the WebSocket replay share; [`retry`] tries a
//!   call again after a timeout while Kafka looks healthy.
//! - [`group`]: the consumed offsets committed to a consumer group, for Kafka's own tools
//!   (FindCoordinator and OffsetCommit over the raw connections of [`wire`]).
//!
//! Every call goes through [`with_deadline`]: rskafka retries forever by default, and a server
//! that hangs because its broker is away is worse than one that answers 503.

pub mod batches;
pub mod codecs;
pub mod connection;
pub mod consumer;
#[cfg(test)]
pub mod fake_log;
pub mod fetch;
pub mod group;
pub mod nodelay;
pub mod offsets;
pub mod partitions;
pub mod producer;
pub mod records;
pub mod retry;
pub mod topics;
pub mod wire;

use std::future::Future;
use std::time::Duration;

use rskafka::BackoffConfig;

pub use connection::{KafkaConnection, KafkaStatus};
pub use topics::{TopicInfo, TopicLayout};

/// What went wrong while talking to Kafka.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// The call did not finish before its deadline (the broker is away or overloaded).
    #[error("Kafka did not answer `{operation}` within {after:?}")]
    Timeout {
        operation: &'static str,
        after: Duration,
    },
    /// rskafka reported an error (connection refused, protocol error, retries exhausted).
    #[error("Kafka `{operation}` failed: {source}")]
    Client {
        operation: &'static str,
        #[source]
        source: rskafka::client::error::Error,
    },
    /// A topic is missing or not usable after shopstream tried to create it.
    #[error("topic `{topic}`: {reason}")]
    Topic { topic: String, reason: String },
    /// Kafka refused or failed a write.
    #[error("writing to {topic}/{partition} failed: {message}")]
    Write {
        topic: crate::domain::event::TopicRole,
        partition: i32,
        message: String,
    },
    /// The offset asked for is not in the partition's log (retention removed it, or the topic
    /// was recreated): the caller moves to an offset the log holds.
    #[error("Kafka `{operation}`: the offset is out of the range of the log")]
    OffsetOutOfRange { operation: &'static str },
    /// A raw connection of [`fetch`] failed, or the broker answered its request with an error.
    #[error("Kafka `{operation}` failed: {message}")]
    Connection {
        operation: &'static str,
        message: String,
    },
    /// No connection to Kafka has been established yet (or it was lost).
    #[error("not connected to Kafka: {0}")]
    NotConnected(String),
}

impl KafkaError {
    /// What a client may be told: the kind of trouble and what to do, without the broker's
    /// addresses, error texts or shopstream's internals (those go to the log and to
    /// `/api/kafka`, for operators).
    pub fn public_message(&self) -> String {
        match self {
            KafkaError::Timeout { after, .. } => {
                format!("Kafka did not answer within {after:?}; retry later")
            }
            KafkaError::NotConnected(detail) if detail.to_ascii_lowercase().contains("sasl") => {
                "the Kafka broker refused shopstream's SASL login (check its user name and \
                 password); retry later"
                    .into()
            }
            KafkaError::NotConnected(_) => {
                "shopstream is not connected to Kafka right now; retry later".into()
            }
            KafkaError::Topic { topic, .. } => {
                format!("the Kafka topic {topic} cannot be used right now; retry later")
            }
            KafkaError::OffsetOutOfRange { .. } => {
                "the offset asked for is not in the log (retention, or a recreated topic)".into()
            }
            KafkaError::Client { .. }
            | KafkaError::Write { .. }
            | KafkaError::Connection { .. } => "Kafka failed the request; retry later".into(),
        }
    }
}

/// Runs one Kafka call with a deadline, naming the operation in the error.
pub async fn with_deadline<T, F>(
    operation: &'static str,
    after: Duration,
    call: F,
) -> Result<T, KafkaError>
where
    F: Future<Output = Result<T, rskafka::client::error::Error>>,
{
    use rskafka::client::error::{Error as ClientError, ProtocolError};
    match tokio::time::timeout(after, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(ClientError::ServerError {
            protocol_error: ProtocolError::OffsetOutOfRange,
            ..
        })) => Err(KafkaError::OffsetOutOfRange { operation }),
        Ok(Err(source)) => Err(KafkaError::Client { operation, source }),
        Err(_) => Err(KafkaError::Timeout { operation, after }),
    }
}

/// rskafka's internal retries, bounded by the same deadline as the call around them, so a
/// failing call gives up (and its error reaches us) instead of retrying in the background.
///
/// While a dead broker's partitions wait for new leaders, every try finds the old leader in
/// the metadata and fails at once; the first try after the cluster moved them succeeds. So
/// the longest pause between tries is part of what a write waits on top of the cluster's
/// failover: half a second (it was 1 s, and the fault campaign measured writes answering up
/// to 2.5 s after the cluster had moved the leaders; README "Fault campaign"). Not less: a
/// refused SASL login takes the broker about 0.4 s a try, and more tries within `deadline`
/// would bring its error close to the call's own deadline.
pub fn backoff_for(deadline: Duration) -> BackoffConfig {
    BackoffConfig {
        init_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(500),
        base: 2.0,
        deadline: Some(deadline),
    }
}
