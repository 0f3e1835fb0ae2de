//! The connection to Kafka and its health, kept by one supervising task.
//!
//! The task connects (retrying with backoff while the broker is away), makes sure the topics
//! exist, publishes the connected [`KafkaSession`], then probes the broker every second. After
//! a few failed probes in a row it drops the client and connects anew, so a broker that was
//! restarted or replaced is found again without restarting shopstream.
//!
//! Readers (the HTTP handlers, and the producers and consumers built on top) never wait on the
//! task: they read the latest [`KafkaStatus`] from a `watch` channel.

use std::sync::Arc;
use std::time::Duration;

use rskafka::client::{Client, ClientBuilder};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::topics::{TopicLayout, ensure_topics};
use super::{KafkaError, backoff_for, with_deadline};
use crate::config::Config;

/// How often the broker is probed while connected.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// Every how many probes the sockets are swept for `TCP_NODELAY` ([`super::nodelay`]).
const NODELAY_SWEEP_EVERY: u64 = 10;
/// Longest a probe may take; also how stale the last good probe may be before we call Kafka
/// unreachable (so a hanging broker is noticed as fast as a stopped one).
const PROBE_DEADLINE: Duration = Duration::from_secs(3);
/// How old the last good probe may be before Kafka counts as unreachable: one slow probe on a
/// loaded machine is forgiven, two are not.
const STALE_AFTER: Duration = Duration::from_secs(1 + 3 + 3);
/// Failed probes in a row after which the client is rebuilt from the bootstrap list.
const PROBES_BEFORE_RECONNECT: u32 = 3;
/// Bounds of the wait between two connection attempts.
const RECONNECT_BACKOFF: (Duration, Duration) =
    (Duration::from_millis(200), Duration::from_secs(5));

/// A connected client and the topics it found; replaced as a whole on reconnect, so holders of
/// an old session can tell (by `generation`) that they should rebuild their partition clients.
#[derive(Debug)]
pub struct KafkaSession {
    pub client: Client,
    /// How this session's rskafka clients are built; the partition clients get clients of
    /// their own, bootstrapped at their leader ([`super::partitions`] says why).
    pub(super) recipe: ClientRecipe,
    pub topics: TopicLayout,
    /// Increases by one with each new connection.
    pub generation: u64,
    /// The partition clients built through this session.
    pub(super) partitions: super::partitions::PartitionClients,
    /// The raw connections that fetches go through ([`super::fetch`]).
    pub(super) fetchers: super::fetch::Fetchers,
}

/// What the rest of the server knows about Kafka right now.
#[derive(Debug, Clone, Default)]
pub struct KafkaStatus {
    /// The current session, once one was established (kept while a reconnect is under way,
    /// so that calls in flight can still fail properly through their own deadlines).
    pub session: Option<Arc<KafkaSession>>,
    /// When the broker last answered a probe.
    pub last_ok: Option<Instant>,
    /// Why Kafka is not usable, when it is not.
    pub problem: Option<String>,
}

/// Handle on the connection; cheap to clone.
#[derive(Debug, Clone)]
pub struct KafkaConnection {
    status: watch::Receiver<KafkaStatus>,
}

impl KafkaConnection {
    /// Starts the supervising task; it runs until `shutdown` is cancelled.
    pub fn start(config: Arc<Config>, shutdown: CancellationToken) -> Self {
        let (tx, rx) = watch::channel(KafkaStatus {
            problem: Some("connecting to Kafka".into()),
            ..KafkaStatus::default()
        });
        tokio::spawn(supervise(config, tx, shutdown));
        Self { status: rx }
    }

    /// A handle that never connects, for unit tests of what is built on one.
    #[cfg(test)]
    pub(crate) fn unconnected() -> Self {
        let (_, rx) = watch::channel(KafkaStatus {
            problem: Some("not connected (a unit test)".into()),
            ..KafkaStatus::default()
        });
        Self { status: rx }
    }

    /// A handle whose supervisor sees no problem (and no session), for unit tests of what
    /// asks it whether Kafka is healthy.
    #[cfg(test)]
    pub(crate) fn healthy() -> Self {
        let (_, rx) = watch::channel(KafkaStatus::default());
        Self { status: rx }
    }

    /// The latest status.
    pub fn status(&self) -> KafkaStatus {
        self.status.borrow().clone()
    }

    /// A receiver that wakes up on every status change (for tasks that follow reconnects).
    pub fn subscribe(&self) -> watch::Receiver<KafkaStatus> {
        self.status.clone()
    }

    /// The session when Kafka answered recently, or why it cannot be used.
    pub fn ready_session(&self) -> Result<Arc<KafkaSession>, KafkaError> {
        let status = self.status.borrow();
        if let Some(problem) = &status.problem {
            return Err(KafkaError::NotConnected(problem.clone()));
        }
        let fresh = status.last_ok.is_some_and(|at| at.elapsed() <= STALE_AFTER);
        match (&status.session, fresh) {
            (Some(session), true) => Ok(Arc::clone(session)),
            (Some(_), false) => Err(KafkaError::NotConnected(format!(
                "the broker has not answered for more than {:?}",
                STALE_AFTER
            ))),
            (None, _) => Err(KafkaError::NotConnected("connecting to Kafka".into())),
        }
    }
}

/// Connect, probe, reconnect: until shutdown.
async fn supervise(
    config: Arc<Config>,
    tx: watch::Sender<KafkaStatus>,
    shutdown: CancellationToken,
) {
    let mut generation = 0;
    let mut wait = RECONNECT_BACKOFF.0;
    loop {
        let attempt = tokio::select! {
            _ = shutdown.cancelled() => return,
            attempt = connect(&config) => attempt,
        };
        match attempt {
            Ok((client, topics)) => {
                generation += 1;
                wait = RECONNECT_BACKOFF.0;
                tracing::info!(
                    brokers = ?config.kafka_brokers,
                    generation,
                    topics = ?topics.topics.iter().map(|t| format!("{}({})", t.name, t.partitions)).collect::<Vec<_>>(),
                    "connected to Kafka"
                );
                let session = Arc::new(KafkaSession {
                    client,
                    recipe: ClientRecipe::new(&config),
                    topics,
                    generation,
                    partitions: Default::default(),
                    // The settings were checked at start; the connect above used them.
                    fetchers: super::fetch::Fetchers::new(
                        config.kafka_brokers.clone(),
                        config.kafka_sasl().ok().flatten(),
                    ),
                });
                tx.send_replace(KafkaStatus {
                    session: Some(Arc::clone(&session)),
                    last_ok: Some(Instant::now()),
                    problem: None,
                });
                if !monitor(&session, &tx, &shutdown).await {
                    return;
                }
            }
            Err(error) => {
                tracing::warn!(%error, retry_in = ?wait, "cannot connect to Kafka");
                tx.send_modify(|s| s.problem = Some(error.to_string()));
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
                wait = (wait * 2).min(RECONNECT_BACKOFF.1);
            }
        }
    }
}

/// What every rskafka client of shopstream is built with, whichever brokers it starts from.
#[derive(Debug, Clone)]
pub(super) struct ClientRecipe {
    backoff: rskafka::BackoffConfig,
    sasl: Option<crate::config::SaslCredentials>,
}

impl ClientRecipe {
    /// The settings were checked at start (an unusable SASL setting is no recipe's concern:
    /// [`connect`] reports it).
    fn new(config: &Config) -> Self {
        Self {
            // rskafka's own retries give up well before our deadline (its deadline counts only
            // the pauses between tries, not the tries: a refused SASL login takes the broker
            // about 0.4 s to answer), so that the error that kept it retrying is what the API
            // and /readyz report, rather than only "did not answer in time". Every call still
            // has our deadline, and our own layer retries.
            backoff: backoff_for(config.kafka_timeout / 4),
            sasl: config.kafka_sasl().ok().flatten(),
        }
    }

    /// A builder of a client that starts from `brokers`.
    pub(super) fn builder(&self, brokers: Vec<String>) -> ClientBuilder {
        let builder = ClientBuilder::new(brokers)
            .client_id(format!("shopstream-{}", env!("CARGO_PKG_VERSION")))
            .backoff_config(self.backoff.clone());
        match &self.sasl {
            Some(sasl) => builder.sasl_config(sasl_config(sasl.clone())),
            None => builder,
        }
    }
}

/// Builds a client from the bootstrap list and makes sure the topics exist.
async fn connect(config: &Config) -> Result<(Client, TopicLayout), KafkaError> {
    config.kafka_sasl().map_err(KafkaError::NotConnected)?;
    let builder = ClientRecipe::new(config).builder(config.kafka_brokers.clone());
    let client = with_deadline("connect", config.kafka_timeout, builder.build()).await?;
    super::nodelay::sweep();
    let topics = ensure_topics(&client, config).await?;
    Ok((client, topics))
}

/// rskafka's SASL settings (its SASL is pure Rust: PLAIN and SCRAM through rsasl).
fn sasl_config(sasl: crate::config::SaslCredentials) -> rskafka::client::SaslConfig {
    use crate::config::SaslMechanism;
    use rskafka::client::{Credentials, SaslConfig};
    let credentials = Credentials::new(sasl.username, sasl.password);
    match sasl.mechanism {
        SaslMechanism::Plain => SaslConfig::Plain(credentials),
        SaslMechanism::ScramSha256 => SaslConfig::ScramSha256(credentials),
        SaslMechanism::ScramSha512 => SaslConfig::ScramSha512(credentials),
    }
}

/// Probes the broker until it stops answering for good (returns `true`: reconnect) or
/// shutdown (returns `false`).
async fn monitor(
    session: &KafkaSession,
    tx: &watch::Sender<KafkaStatus>,
    shutdown: &CancellationToken,
) -> bool {
    let mut failures = 0;
    let mut reported = false;
    let mut probes: u64 = 0;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(PROBE_INTERVAL) => {}
        }
        probes += 1;
        if probes.is_multiple_of(NODELAY_SWEEP_EVERY) {
            // Catches a connection rskafka reopened inside a call; the listing grows with the
            // open files (WebSockets, store tables), so off the async threads.
            tokio::task::spawn_blocking(super::nodelay::sweep);
        }
        // Through the raw connections, every bootstrap broker asked at once: rskafka's
        // listing goes to one cached broker, and a broker of a cluster that stopped answering
        // without closing its connections (paused, swapping) would make shopstream refuse
        // every write, and rebuild its client, while the other brokers serve.
        let names: Vec<String> = session
            .topics
            .topics
            .iter()
            .map(|t| t.name.clone())
            .collect();
        let probe = session.fetchers.list_topics(&names);
        let listed = match tokio::time::timeout(PROBE_DEADLINE, probe).await {
            Ok(listed) => listed,
            Err(_) => Err(KafkaError::Timeout {
                operation: "probe",
                after: PROBE_DEADLINE,
            }),
        };
        match listed {
            Ok(listed) => {
                // The probe is the periodic metadata refresh too: a topic whose partition count
                // changed (`kafka-topics --alter --partitions`, or deleted and created again)
                // gets a new session, so that the producer's partitioner and the consumers
                // follow the broker's count together.
                if let Some(change) = super::topics::layout_change(&session.topics, &listed) {
                    tracing::info!(%change, "the topics' partitions changed; reconnecting to follow them");
                    return true;
                }
                if reported {
                    tracing::info!("Kafka answers again");
                }
                failures = 0;
                reported = false;
                tx.send_modify(|s| {
                    s.last_ok = Some(Instant::now());
                    s.problem = None;
                });
            }
            Err(error) => {
                failures += 1;
                // A refused connection or a broker error means Kafka is away now; a single slow
                // answer may only mean a busy machine, and staleness catches a hang anyway.
                let slow_once = failures == 1 && matches!(error, KafkaError::Timeout { .. });
                if slow_once {
                    tracing::debug!(%error, "slow Kafka probe");
                    continue;
                }
                if !reported {
                    reported = true;
                    tracing::warn!(%error, "Kafka stopped answering");
                }
                tx.send_modify(|s| s.problem = Some(error.to_string()));
                if failures >= PROBES_BEFORE_RECONNECT {
                    tracing::info!("rebuilding the Kafka client");
                    return true;
                }
            }
        }
    }
}
