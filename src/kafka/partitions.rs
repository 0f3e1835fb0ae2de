//! The one road to a partition: its clients, its offsets and its fetches, each with a deadline
//! and typed errors, for the producer lanes, the partition consumers, the offsets view, the
//! event browser and the WebSocket replay alike.
//!
//! Partition clients live in the [`KafkaSession`] they were built from, so a reconnect (a new
//! session) rebuilds them all without anyone comparing generations. Each is built on an
//! rskafka client of its own that starts from the partition's leader ([`Partition`]'s `build`
//! says why). Each [`Use`] has clients
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

/// How long a write runs before [`Partition::produce`] starts asking where the leader is
/// (most writes are answered well within it; a slow one costs a Metadata request every
/// [`LEADER_WATCH_EVERY`]). A leadership that moved without a failure (a preferred leader
/// elected again) is followed by rskafka inside the client, so a slow write after such a move
/// is given up once, and the next one goes to a client built at the new leader.
const LEADER_WATCH_AFTER: Duration = Duration::from_secs(1);
/// How often it asks from then on.
const LEADER_WATCH_EVERY: Duration = Duration::from_millis(500);
/// How often a partition client being built asks where the leader is ([`Partition`]'s
/// `build`): a build is rare, and a slow one is a leader that went away.
const BUILD_WATCH_EVERY: Duration = Duration::from_millis(200);

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
    clients: Mutex<HashMap<(Use, TopicRole, i32), Arc<LeaderClient>>>,
}

impl PartitionClients {
    fn cached(&self, key: (Use, TopicRole, i32)) -> Option<Arc<LeaderClient>> {
        self.lock().get(&key).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(Use, TopicRole, i32), Arc<LeaderClient>>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A partition client, and the leader and leader epoch it was built at.
#[derive(Debug)]
struct LeaderClient {
    client: PartitionClient,
    leader: String,
    epoch: i32,
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
    async fn client(&self) -> Result<Arc<LeaderClient>, KafkaError> {
        let key = (self.use_, self.topic, self.partition);
        if let Some(client) = self.session.partitions.cached(key) {
            return Ok(client);
        }
        // Boxed: building a client is rare, and the box keeps the futures of the callers (the
        // HTTP handlers' among them) shallow enough for the compiler's layout queries.
        let client = Box::pin(self.build()).await?;
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

    /// A partition client on an rskafka client of its own, started from the partition's
    /// leader as the bootstrap brokers name it (the freshest leader epoch among the first
    /// answers, [`super::fetch::Fetchers::current_leader`]), within the call's deadline.
    ///
    /// A client of the session's would find the leader through its cached metadata and one
    /// cached connection to an arbitrary broker: after a broker stopped answering without
    /// closing its connections (paused, swapping, behind a black hole), every new partition
    /// client could wait on that broker until its deadline, and its stale metadata would send
    /// it to the old leader after the cluster had moved on. The lookup asks every bootstrap
    /// broker at once; the new client's first metadata comes from the leader itself.
    ///
    /// A leader that was just killed is still named until the cluster notices, and rskafka
    /// keeps trying to connect to it for its whole backoff deadline: so the build asks again
    /// every [`BUILD_WATCH_EVERY`] and starts over at a newer leader as soon as one is named,
    /// and a build that failed waits for one (within the deadline) rather than failing the
    /// write while the cluster elects it.
    async fn build(&self) -> Result<LeaderClient, KafkaError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let timed_out = || KafkaError::Timeout {
            operation: "partition client",
            after: self.timeout,
        };
        let lookup = self
            .session
            .fetchers
            .current_leader(self.topic_name(), self.partition);
        let found = tokio::time::timeout_at(deadline, lookup)
            .await
            .map_err(|_| timed_out())??;
        let (mut leader, mut epoch) = (found.leader, found.leader_epoch);
        loop {
            let attempt = tokio::time::timeout_at(deadline, self.build_at(&leader, epoch));
            let failed = tokio::select! {
                built = attempt => match built {
                    Ok(Ok(client)) => return Ok(client),
                    Ok(Err(error)) => error,
                    Err(_) => return Err(timed_out()),
                },
                moved = self.newer_leader(&leader, epoch, BUILD_WATCH_EVERY, BUILD_WATCH_EVERY) => {
                    (leader, epoch) = moved;
                    continue;
                }
            };
            // With a single replica no other broker can take over: the failure stands.
            if found.replicas < 2 || !leader_unreachable(&failed) {
                return Err(failed);
            }
            let moved = self.newer_leader(&leader, epoch, Duration::ZERO, BUILD_WATCH_EVERY);
            match tokio::time::timeout_at(deadline, moved).await {
                Ok(moved) => (leader, epoch) = moved,
                Err(_) => return Err(failed),
            }
        }
    }

    /// A partition client on a new rskafka client that starts from `leader`.
    async fn build_at(&self, leader: &str, epoch: i32) -> Result<LeaderClient, KafkaError> {
        let topic = self.topic_name();
        let builder = self.session.recipe.builder(vec![leader.to_string()]);
        let client = with_deadline("partition client", self.timeout, builder.build()).await?;
        let client = with_deadline(
            "partition client",
            self.timeout,
            client.partition_client(
                topic.to_string(),
                self.partition,
                UnknownTopicHandling::Retry,
            ),
        )
        .await?;
        Ok(LeaderClient {
            client,
            leader: leader.to_string(),
            epoch,
        })
    }

    /// After a failure of `client` it is dropped from the cache (unless another call already
    /// replaced it): the next call builds a new one, which finds the partition's leader again.
    /// A broker's answer that the offset is out of range is no failure of the connection.
    fn after<T>(
        &self,
        client: &Arc<LeaderClient>,
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
        let result =
            with_deadline("list offsets", self.timeout, client.client.get_offset(at)).await;
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
    ///
    /// A write that takes long is watched: once the bootstrap brokers that answer name
    /// another leader, the write is given up (its outcome unknown, as after its deadline) and
    /// the next one goes to the new leader. A leader that stopped answering without closing
    /// its connections (paused, swapping) would otherwise hold the write until the deadline,
    /// seconds after the cluster had moved its partitions.
    pub async fn produce(&self, records: Vec<Record>) -> Result<Vec<i64>, KafkaError> {
        let client = self.client().await?;
        let produce = with_deadline(
            "produce",
            self.timeout,
            client.client.produce(records, Compression::NoCompression),
        );
        let result = tokio::select! {
            result = produce => result,
            moved = self.leader_moved_from(&client) => Err(moved),
        };
        self.after(&client, result)
    }

    /// Resolves once the partition has a newer leader epoch on another broker than the one
    /// `built` was built at, asking from [`LEADER_WATCH_AFTER`] on, every
    /// [`LEADER_WATCH_EVERY`]; never otherwise.
    async fn leader_moved_from(&self, built: &LeaderClient) -> KafkaError {
        let (now, _) = self
            .newer_leader(
                &built.leader,
                built.epoch,
                LEADER_WATCH_AFTER,
                LEADER_WATCH_EVERY,
            )
            .await;
        KafkaError::Connection {
            operation: "produce",
            message: format!(
                "the partition's leader moved from {} to {now} while the write was in flight; \
                 its outcome is unknown",
                built.leader
            ),
        }
    }

    /// Resolves with the leader and its epoch once the bootstrap brokers name another broker
    /// than `leader` with a newer epoch than `epoch`, asking after `first` and then every
    /// `every` ([`took_over`]); never otherwise.
    async fn newer_leader(
        &self,
        leader: &str,
        epoch: i32,
        first: Duration,
        every: Duration,
    ) -> (String, i32) {
        tokio::time::sleep(first).await;
        loop {
            let started = tokio::time::Instant::now();
            let asked = tokio::time::timeout(
                every,
                self.session
                    .fetchers
                    .current_leader(self.topic_name(), self.partition),
            );
            if let Ok(Ok(now)) = asked.await
                && took_over((leader, epoch), (&now.leader, now.leader_epoch))
            {
                return (now.leader, now.leader_epoch);
            }
            tokio::time::sleep_until(started + every).await;
        }
    }
}

/// Whether the leader (address, epoch) the brokers name `now` took over from `was`: another
/// broker with a newer epoch. An older epoch is a broker's stale metadata (one that resumed
/// after a pause); an unknown one (-1: a broker too old to say) trusts the name.
fn took_over(was: (&str, i32), now: (&str, i32)) -> bool {
    now.0 != was.0 && (now.1 > was.1 || now.1 < 0 || was.1 < 0)
}

/// Whether a failed build means its broker could not be reached (dead, restarting, behind a
/// cut connection): then another leader may be named soon. Any other failure is final.
fn leader_unreachable(error: &KafkaError) -> bool {
    matches!(
        error,
        KafkaError::Timeout { .. }
            | KafkaError::Connection { .. }
            | KafkaError::Client {
                source: rskafka::client::error::Error::Connection(_),
                ..
            }
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_takes_over_only_on_another_broker_with_a_newer_epoch() {
        assert!(took_over(("b1:9092", 4), ("b2:9092", 5)));
        // The same broker, whatever its epoch: nothing moved for this client.
        assert!(!took_over(("b1:9092", 4), ("b1:9092", 5)));
        // A broker that resumed after a pause still names itself at its old epoch.
        assert!(!took_over(("b1:9092", 5), ("b2:9092", 4)));
        assert!(!took_over(("b1:9092", 5), ("b2:9092", 5)));
        // Brokers too old to give epochs: the name is all there is.
        assert!(took_over(("b1:9092", -1), ("b2:9092", -1)));
        assert!(took_over(("b1:9092", 3), ("b2:9092", -1)));
    }

    #[test]
    fn only_an_unreachable_leader_is_worth_waiting_for_another() {
        let timeout = KafkaError::Timeout {
            operation: "partition client",
            after: Duration::from_secs(5),
        };
        let refused = KafkaError::Connection {
            operation: "metadata",
            message: "connection refused".into(),
        };
        let missing = KafkaError::Topic {
            topic: "orders".into(),
            reason: "not in the broker's metadata".into(),
        };
        assert!(leader_unreachable(&timeout));
        assert!(leader_unreachable(&refused));
        assert!(!leader_unreachable(&missing));
        assert!(!leader_unreachable(&KafkaError::NotConnected(
            "no bootstrap broker".into()
        )));
    }
}
