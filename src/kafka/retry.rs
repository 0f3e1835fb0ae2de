//! Trying a Kafka call again: a call that timed out or lost its connection is tried again (a
//! few times) unless the connection supervisor saw Kafka fail meanwhile, as a slow answer under
//! load is not an outage. A broker that refuses the request (it answered) is not asked again.
//!
//! [`Retrying`] wraps any [`PartitionLog`] with this policy, so a reader of the log (the
//! WebSocket replay) gets it without a retry loop of its own, and unit tests drive it with a
//! fake log.

use std::future::Future;

use rskafka::client::error::Error as ClientError;
use rskafka::client::partition::OffsetAt;

use super::KafkaError;
use super::connection::KafkaConnection;
use super::fetch::Fetched;
use super::partitions::PartitionLog;

/// Tries of one call while the connection to Kafka looks healthy.
pub const ATTEMPTS: u32 = 3;

/// A timeout or a lost connection, as opposed to the broker refusing the request.
pub fn is_transient(error: &KafkaError) -> bool {
    match error {
        KafkaError::Timeout { .. } | KafkaError::Connection { .. } => true,
        KafkaError::Client { source, .. } => !matches!(source, ClientError::ServerError { .. }),
        _ => false,
    }
}

/// Runs `call` up to `attempts` times: again after a transient error while `healthy` says the
/// connection supervisor sees no problem; the last error otherwise.
pub async fn retry<T, F, Fut>(
    attempts: u32,
    healthy: impl Fn() -> bool,
    call: F,
) -> Result<T, KafkaError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, KafkaError>>,
{
    let mut attempt = 1;
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(error) if attempt < attempts && is_transient(&error) && healthy() => {
                tracing::debug!(%error, attempt, "Kafka call failed; trying again");
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

/// A partition's log whose calls follow [`retry`], with the connection's health as the
/// supervisor reports it.
pub struct Retrying<L> {
    log: L,
    kafka: KafkaConnection,
    attempts: u32,
}

impl<L: PartitionLog> Retrying<L> {
    pub fn new(log: L, kafka: KafkaConnection, attempts: u32) -> Self {
        Self {
            log,
            kafka,
            attempts,
        }
    }

    fn healthy(&self) -> bool {
        self.kafka.status().problem.is_none()
    }
}

impl<L: PartitionLog> PartitionLog for Retrying<L> {
    fn offset(&self, at: OffsetAt) -> impl Future<Output = Result<i64, KafkaError>> + Send {
        retry(
            self.attempts,
            || self.healthy(),
            move || self.log.offset(at),
        )
    }

    fn read(
        &self,
        offset: i64,
        max_bytes: i32,
        max_wait_ms: i32,
    ) -> impl Future<Output = Result<Fetched, KafkaError>> + Send {
        retry(
            self.attempts,
            || self.healthy(),
            move || self.log.read(offset, max_bytes, max_wait_ms),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;

    /// A log whose calls fail with the errors given, in turn, then answer.
    struct Flaky {
        failures: Mutex<Vec<KafkaError>>,
        calls: Mutex<u32>,
    }

    impl Flaky {
        fn new(failures: Vec<KafkaError>) -> Self {
            Self {
                failures: Mutex::new(failures),
                calls: Mutex::new(0),
            }
        }

        fn answer(&self) -> Result<i64, KafkaError> {
            *self.calls.lock().unwrap() += 1;
            let mut failures = self.failures.lock().unwrap();
            if failures.is_empty() {
                Ok(42)
            } else {
                Err(failures.remove(0))
            }
        }

        fn calls(&self) -> u32 {
            *self.calls.lock().unwrap()
        }
    }

    impl PartitionLog for Flaky {
        async fn offset(&self, _at: OffsetAt) -> Result<i64, KafkaError> {
            self.answer()
        }

        async fn read(&self, _: i64, _: i32, _: i32) -> Result<Fetched, KafkaError> {
            self.answer().map(|_| Fetched::default())
        }
    }

    fn timeout() -> KafkaError {
        KafkaError::Timeout {
            operation: "fetch",
            after: Duration::from_secs(1),
        }
    }

    fn refused() -> KafkaError {
        KafkaError::OffsetOutOfRange { operation: "fetch" }
    }

    #[tokio::test]
    async fn a_timeout_is_tried_again_while_kafka_is_healthy() {
        let log = Retrying::new(
            Flaky::new(vec![timeout(), timeout()]),
            KafkaConnection::healthy(),
            ATTEMPTS,
        );
        assert_eq!(log.offset(OffsetAt::Latest).await.unwrap(), 42);
        assert_eq!(log.log.calls(), 3);

        let log = Retrying::new(
            Flaky::new(vec![timeout(), timeout(), timeout()]),
            KafkaConnection::healthy(),
            ATTEMPTS,
        );
        assert!(matches!(
            log.fetch(0, 1, 1).await,
            Err(KafkaError::Timeout { .. })
        ));
        assert_eq!(log.log.calls(), ATTEMPTS, "gives up after {ATTEMPTS} tries");
    }

    #[test]
    fn timeouts_and_lost_connections_are_transient_refusals_are_not() {
        assert!(is_transient(&timeout()));
        assert!(is_transient(&KafkaError::Connection {
            operation: "fetch",
            message: "connection reset".into()
        }));
        assert!(!is_transient(&refused()));
        assert!(!is_transient(&KafkaError::NotConnected("away".into())));
    }

    #[tokio::test]
    async fn a_refusal_or_a_failing_connection_is_not_tried_again() {
        let log = Retrying::new(
            Flaky::new(vec![refused()]),
            KafkaConnection::healthy(),
            ATTEMPTS,
        );
        assert!(matches!(
            log.offset(OffsetAt::Earliest).await,
            Err(KafkaError::OffsetOutOfRange { .. })
        ));
        assert_eq!(log.log.calls(), 1);

        let log = Retrying::new(
            Flaky::new(vec![timeout()]),
            KafkaConnection::unconnected(),
            ATTEMPTS,
        );
        assert!(log.offset(OffsetAt::Earliest).await.is_err());
        assert_eq!(log.log.calls(), 1, "the supervisor sees Kafka fail");
    }
}
