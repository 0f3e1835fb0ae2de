//! The replay of a resuming session: per partition, the events its client missed, read from
//! Kafka itself and sent as the same frames the live stream published for them.
//!
//! The replay reads a partition through the [`PartitionLog`] trait of the Kafka access layer
//! (tried again after a timeout by [`crate::kafka::retry`]) and writes through a [`FrameSink`]:
//! the session's socket, or a vector in the unit tests below, which run it against a log in
//! memory. It moves the client's cursor (`next`) as it goes, so that a session that ends
//! half-way hands the client the cursor it reached.

use std::future::Future;
use std::time::Duration;

use rskafka::client::partition::OffsetAt;
use rskafka::record::RecordAndOffset;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::cursor::{CatchUp, Cursor, PartitionKey};
use super::session::End;
use crate::domain::event::{Event, Position, TopicRole};
use crate::kafka::partitions::PartitionLog;
use crate::kafka::{KafkaError, records};
use crate::messages::{LiveFrame, SessionFrame};
use crate::model::store::Store;

/// Most bytes asked for in one replay fetch.
const REPLAY_FETCH_BYTES: i32 = 1024 * 1024;
/// How long the broker may hold a replay fetch open (the offsets replayed exist already).
const REPLAY_FETCH_WAIT_MS: i32 = 100;
/// Fetches in a row that bring nothing (no record, no batch to go past) before the replay of
/// a partition gives up on the rest of its range (the log ends before it: a recreated topic).
const REPLAY_EMPTY_FETCHES: u32 = 3;
/// Most events one session replays per second.
const REPLAY_RATE: u64 = 50_000;

pub(super) const RETENTION_RESET: &str =
    "the requested offset is no longer kept by Kafka (retention); replaying from the earliest kept";
pub(super) const PAST_END_RESET: &str = "the requested offset is past the end of the log (was the topic \
     recreated?); replaying from the earliest kept";
pub(super) const TOO_FAR_BEHIND_RESET: &str = "more events to replay than one resume may (--max-replay): \
     reload, then follow the live stream from here";

/// Where a replay's frames go: the session's socket, or a test's vector.
pub(super) trait FrameSink: Send {
    /// Writes `frames` in order, then flushes.
    fn send(&mut self, frames: Vec<Message>) -> impl Future<Output = Result<(), End>> + Send;

    /// Before every batch: ends the replay early (shutdown, a client already too far behind
    /// the live stream) and handles what the client sent meanwhile.
    fn between_batches(&mut self) -> impl Future<Output = Result<(), End>> + Send;
}

/// How many events `catch_up` would replay in all (a partition to replay from the earliest
/// kept counts as the whole partition).
pub(super) fn behind(catch_up: &[(PartitionKey, CatchUp)]) -> u64 {
    catch_up
        .iter()
        .map(|(_, what)| match *what {
            CatchUp::Behind { requested, server } => server.saturating_sub(requested),
            // From the earliest kept: at most the whole partition.
            CatchUp::Ahead { server, .. } => server,
        })
        .map(|n| u64::try_from(n).unwrap_or(0))
        .fold(0u64, u64::saturating_add)
}

/// One session's replay: what it reads with and writes to, and how far it got.
pub(super) struct Replay<'a, S> {
    /// The session's number, in the logs.
    pub session: u64,
    /// Tells what each replayed event did to its order.
    pub store: &'a Store,
    pub shutdown: &'a CancellationToken,
    pub sink: &'a mut S,
    /// Per partition, the next offset the client needs: moved past every frame sent, and to
    /// the new start on a reset.
    pub next: &'a mut Cursor,
    /// Event frames sent so far.
    pub replayed: u64,
}

impl<S: FrameSink> Replay<'_, S> {
    /// A reset per partition, to the server's position: the client reloads and follows the
    /// live stream from there instead of replaying.
    pub async fn skip_all(&mut self, catch_up: Vec<(PartitionKey, CatchUp)>) -> Result<(), End> {
        for (key, what) in catch_up {
            let (CatchUp::Behind { requested, server } | CatchUp::Ahead { requested, server }) =
                what;
            self.reset(key, requested, server, TOO_FAR_BEHIND_RESET)
                .await?;
        }
        Ok(())
    }

    /// Replays one partition of `topic_name` through `log`, as `what` says.
    pub async fn partition(
        &mut self,
        log: &impl PartitionLog,
        key: PartitionKey,
        topic_name: &str,
        what: CatchUp,
    ) -> Result<(), End> {
        let (role, partition) = key;
        let Some((from, to)) = self.range(log, key, what).await? else {
            return Ok(());
        };
        let mut offset = from;
        let mut replayed = 0;
        let mut empty_fetches = 0;
        let started = Instant::now();
        while offset < to {
            self.sink.between_batches().await?;
            // At most REPLAY_RATE events a second: wait until the events sent so far are due.
            let due = started + Duration::from_secs_f64(replayed as f64 / REPLAY_RATE as f64);
            if due > Instant::now() {
                tokio::select! {
                    _ = self.shutdown.cancelled() => return Err(End::Shutdown),
                    _ = tokio::time::sleep_until(due) => {}
                }
            }
            let (records, past) = match self.batch(log, key, topic_name, offset).await? {
                Fetched::Records(records, past) => (records, past.min(to)),
                Fetched::Reset(earliest) => {
                    offset = earliest;
                    continue;
                }
            };
            let Some(last) = records
                .iter()
                .map(|r| r.offset)
                .filter(|o| (offset..to).contains(o))
                .max()
            else {
                if past > offset {
                    // Only markers or unreadable batches here: go past them.
                    offset = past;
                    self.next.set(key, offset);
                    continue;
                }
                empty_fetches += 1;
                if empty_fetches == REPLAY_EMPTY_FETCHES {
                    tracing::warn!(session = self.session, topic = %topic_name, partition, offset, to, "no record left to replay in range; skipping to the live stream");
                    break;
                }
                continue;
            };
            empty_fetches = 0;
            let decoded: Vec<Replayed> = records
                .into_iter()
                .filter(|r| (offset..to).contains(&r.offset))
                .filter_map(|r| decode_replayed(role, partition, topic_name, r))
                .collect();
            let frames = replay_frames(self.store, decoded).await?;
            replayed += frames.len() as u64;
            self.replayed += frames.len() as u64;
            self.sink.send(frames).await?;
            offset = last.saturating_add(1).max(past);
            self.next.set(key, offset);
        }
        self.next.raise(key, to);
        Ok(())
    }

    /// The offsets to replay for one partition, `[from, to)`, after telling the client about a
    /// reset when its offset is no longer in the log.
    async fn range(
        &mut self,
        log: &impl PartitionLog,
        key: PartitionKey,
        what: CatchUp,
    ) -> Result<Option<(i64, i64)>, End> {
        match what {
            CatchUp::Behind { requested, server } => {
                let earliest = call(self.shutdown, log.offset(OffsetAt::Earliest)).await?;
                if requested < earliest {
                    self.reset(key, requested, earliest, RETENTION_RESET)
                        .await?;
                }
                Ok(Some((requested.max(earliest), server)))
            }
            CatchUp::Ahead { requested, server } => {
                let latest = call(self.shutdown, log.offset(OffsetAt::Latest)).await?;
                if requested <= latest {
                    return Ok(None);
                }
                let earliest = call(self.shutdown, log.offset(OffsetAt::Earliest)).await?;
                self.reset(key, requested, earliest, PAST_END_RESET).await?;
                Ok(Some((earliest, server)))
            }
        }
    }

    /// One batch of records from `offset`; when retention removed `offset` meanwhile, the
    /// client gets a reset.
    async fn batch(
        &mut self,
        log: &impl PartitionLog,
        key: PartitionKey,
        topic_name: &str,
        offset: i64,
    ) -> Result<Fetched, End> {
        let fetch = log.read(offset, REPLAY_FETCH_BYTES, REPLAY_FETCH_WAIT_MS);
        match call(self.shutdown, fetch).await {
            Ok(fetched) => Ok(Fetched::Records(fetched.records, fetched.next_offset)),
            Err(End::Kafka(KafkaError::OffsetOutOfRange { .. })) => {
                let earliest = call(self.shutdown, log.offset(OffsetAt::Earliest)).await?;
                if earliest <= offset {
                    return Err(End::Kafka(KafkaError::Topic {
                        topic: topic_name.to_string(),
                        reason: format!("offset {offset} of partition {} is out of range", key.1),
                    }));
                }
                self.reset(key, offset, earliest, RETENTION_RESET).await?;
                Ok(Fetched::Reset(earliest))
            }
            Err(end) => Err(end),
        }
    }

    /// Tells the client its offset for a partition is gone, and moves its cursor there.
    async fn reset(
        &mut self,
        key: PartitionKey,
        requested: i64,
        earliest: i64,
        reason: &str,
    ) -> Result<(), End> {
        tracing::info!(session = self.session, topic = %key.0, partition = key.1, requested, earliest, "cursor reset");
        self.next.set(key, earliest);
        self.sink
            .send(vec![text(SessionFrame::Reset {
                topic: key.0,
                partition: key.1,
                requested,
                earliest,
                reason,
            })])
            .await
    }
}

/// A call of the log, which gives way to shutdown.
async fn call<T>(
    shutdown: &CancellationToken,
    call: impl Future<Output = Result<T, KafkaError>>,
) -> Result<T, End> {
    tokio::select! {
        _ = shutdown.cancelled() => Err(End::Shutdown),
        result = call => result.map_err(End::Kafka),
    }
}

/// What one replay fetch brought.
enum Fetched {
    /// The records, and where the next fetch starts: past transaction markers, aborted and
    /// unreadable batches too, which hold no record to replay.
    Records(Vec<RecordAndOffset>, i64),
    /// Retention removed the offset asked for: go on from this one.
    Reset(i64),
}

pub(super) fn text(frame: SessionFrame<'_>) -> Message {
    Message::text(frame.to_json())
}

/// The replayed records as the same frames the live stream published for them: what each
/// event did to its order is read back from the store, which applied every record the
/// replay reaches (it stops at the server's cursor).
async fn replay_frames(store: &Store, replayed: Vec<Replayed>) -> Result<Vec<Message>, End> {
    let wanted: Vec<(String, String)> = replayed
        .iter()
        .map(|r| (r.event.order_id.clone(), r.event.event_id.clone()))
        .collect();
    let effects = store
        .query(move |view| view.effects_of(&wanted))
        .await
        .map_err(|error| End::Store(error.to_string()))?;
    Ok(replayed
        .into_iter()
        .zip(effects)
        .map(|(r, effect)| {
            let effect = effect.unwrap_or_default();
            let frame = LiveFrame::new(
                r.position,
                &r.event,
                r.key.as_deref(),
                &r.data,
                effect.order_status,
                effect.seq,
            );
            Message::text(frame.json.as_ref())
        })
        .collect())
}

/// A record read back from Kafka, decoded exactly as the consumers decode it.
struct Replayed {
    position: Position,
    event: Event,
    key: Option<String>,
    data: String,
}

/// `None` for a record the consumers skip: it never was a frame.
fn decode_replayed(
    role: TopicRole,
    partition: i32,
    topic_name: &str,
    r: RecordAndOffset,
) -> Option<Replayed> {
    let position = Position {
        topic: role,
        partition,
        offset: r.offset,
    };
    let fetched = records::decode(position, topic_name, r.record);
    let (event, data) = fetched.decoded.ok()?;
    Some(Replayed {
        position,
        event,
        key: fetched.key,
        data,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::{Value, json};

    use super::*;
    use crate::kafka::TopicLayout;
    use crate::kafka::connection::KafkaConnection;
    use crate::kafka::fake_log::{Entry, FakeLog, order_created as order};
    use crate::kafka::retry::{ATTEMPTS, Retrying};
    use crate::model::store::TempDir;

    const ORDERS: PartitionKey = (TopicRole::Orders, 0);

    /// The frames a replay sent, batch by batch, as text (like the socket, it sends nothing
    /// for an empty batch); `stop_at` ends the replay at that call of `between_batches`, as a
    /// client too far behind the live stream would.
    #[derive(Default)]
    struct Frames {
        batches: Vec<Vec<String>>,
        between: usize,
        stop_at: Option<usize>,
    }

    impl Frames {
        fn of_type(&self, kind: &str) -> Vec<Value> {
            self.batches
                .concat()
                .iter()
                .map(|text| serde_json::from_str::<Value>(text).unwrap())
                .filter(|frame| frame["type"] == kind)
                .collect()
        }

        fn offsets(&self) -> Vec<i64> {
            self.of_type("event")
                .iter()
                .map(|f| f["offset"].as_i64().unwrap())
                .collect()
        }
    }

    impl FrameSink for Frames {
        async fn send(&mut self, frames: Vec<Message>) -> Result<(), End> {
            if !frames.is_empty() {
                let texts = frames.iter().map(|m| m.to_text().unwrap().to_string());
                self.batches.push(texts.collect());
            }
            Ok(())
        }

        async fn between_batches(&mut self) -> Result<(), End> {
            self.between += 1;
            if self.stop_at == Some(self.between) {
                return Err(End::TooSlow);
            }
            Ok(())
        }
    }

    /// A store that applied `records` (from offset 0), as the consumers do, and the frames the
    /// live stream published meanwhile.
    async fn store_with(records: Vec<Entry>) -> (Arc<Store>, TempDir, Vec<String>) {
        let log = FakeLog::new(0, records);
        let (store, dir) = Store::temporary(4 << 20);
        store
            .check_layout(&TopicLayout::uniform("", 1))
            .await
            .unwrap();
        let (mut live, _) = store.subscribe();
        let fetched = log
            .fetch(0, i32::MAX, 0)
            .await
            .unwrap()
            .iter()
            .map(|r| {
                let position = Position {
                    topic: TopicRole::Orders,
                    partition: 0,
                    offset: r.offset,
                };
                records::decode(position, "orders", r.record.clone())
            })
            .collect();
        store
            .apply_fetched_from(TopicRole::Orders, 0, None, fetched, log.latest())
            .await
            .unwrap();
        let mut published = Vec::new();
        while let Ok(frame) = live.try_recv() {
            published.push(frame.json.to_string());
        }
        (Arc::new(store), dir, published)
    }

    /// What a replay of the orders partition did, for a client whose cursor was at `start`.
    struct Outcome {
        result: Result<(), End>,
        next: String,
        replayed: u64,
        frames: Frames,
    }

    async fn replay(
        store: &Store,
        log: &impl PartitionLog,
        what: CatchUp,
        start: i64,
        mut frames: Frames,
    ) -> Outcome {
        let shutdown = CancellationToken::new();
        let mut next = Cursor::default();
        next.set(ORDERS, start);
        let mut replay = Replay {
            session: 1,
            store,
            shutdown: &shutdown,
            sink: &mut frames,
            next: &mut next,
            replayed: 0,
        };
        let result = replay.partition(log, ORDERS, "orders", what).await;
        let replayed = replay.replayed;
        Outcome {
            result,
            next: next.to_string(),
            replayed,
            frames,
        }
    }

    fn orders(n: usize) -> Vec<Entry> {
        (0..n).map(|i| order(&format!("o-{i}")).into()).collect()
    }

    fn behind(requested: i64, server: i64) -> CatchUp {
        CatchUp::Behind { requested, server }
    }

    fn timeout() -> KafkaError {
        KafkaError::Timeout {
            operation: "fetch",
            after: Duration::from_secs(1),
        }
    }

    #[tokio::test]
    async fn a_resume_gets_the_live_stream_s_frames_in_batches_without_what_cannot_be_decoded() {
        let records: Vec<Entry> = vec![
            order("o-0").into(),
            Some("not json".to_string()).into(),
            None.into(),
            order("o-3").into(),
            order("o-4").into(),
            order("o-5").into(),
        ];
        let (store, _dir, published) = store_with(records.clone()).await;
        assert_eq!(published.len(), 4, "every decodable record was published");
        let log = FakeLog::new(0, records).max(2);
        let done = replay(&store, &log, behind(1, 6), 1, Frames::default()).await;
        done.result.unwrap();
        assert_eq!(done.replayed, 3);
        assert_eq!(done.next, "orders:0:6");
        assert_eq!(
            log.fetches(),
            vec![1, 3, 5],
            "batches of two from the cursor on"
        );
        assert_eq!(
            done.frames.between, 3,
            "a chance to stop before every batch"
        );
        assert_eq!(
            done.frames.batches.concat(),
            published[1..],
            "the garbage and the tombstone skipped, the rest byte for byte as published"
        );
        assert!(done.frames.of_type("reset").is_empty());
    }

    #[tokio::test]
    async fn an_offset_retention_removed_is_a_reset_to_the_earliest_kept() {
        let (store, _dir, _) = store_with(orders(6)).await;
        let log = FakeLog::new(0, orders(6)).forget_before(3);
        let done = replay(&store, &log, behind(1, 6), 1, Frames::default()).await;
        done.result.unwrap();
        let resets = done.frames.of_type("reset");
        assert_eq!(
            resets,
            [
                json!({"type": "reset", "topic": "orders", "partition": 0, "requested": 1,
                    "earliest": 3, "reason": RETENTION_RESET})
            ]
        );
        assert_eq!(done.frames.batches[0].len(), 1, "the reset comes first");
        assert_eq!(done.frames.offsets(), [3, 4, 5]);
        assert_eq!(done.next, "orders:0:6");

        // Retention runs during the replay: the fetch past it is out of range.
        let log = FakeLog::new(0, orders(6)).max(2).forget_after(1, 4);
        let done = replay(&store, &log, behind(0, 6), 0, Frames::default()).await;
        done.result.unwrap();
        assert_eq!(log.fetches(), vec![0, 2, 4]);
        let resets = done.frames.of_type("reset");
        assert_eq!(resets.len(), 1);
        assert_eq!(
            (&resets[0]["requested"], &resets[0]["earliest"]),
            (&json!(2), &json!(4))
        );
        assert_eq!(done.frames.offsets(), [0, 1, 4, 5]);
        assert_eq!(done.next, "orders:0:6");
    }

    #[tokio::test]
    async fn a_cursor_past_the_end_of_the_log_starts_again_at_the_earliest() {
        let (store, _dir, _) = store_with(orders(3)).await;
        let log = FakeLog::new(0, orders(3));
        // The topic was recreated: the client asks for 9, the log ends at 3.
        let ahead = CatchUp::Ahead {
            requested: 9,
            server: 3,
        };
        let done = replay(&store, &log, ahead, 9, Frames::default()).await;
        done.result.unwrap();
        let resets = done.frames.of_type("reset");
        assert_eq!(resets.len(), 1);
        assert_eq!(resets[0]["reason"], PAST_END_RESET);
        assert_eq!(
            (&resets[0]["requested"], &resets[0]["earliest"]),
            (&json!(9), &json!(0))
        );
        assert_eq!(done.frames.offsets(), [0, 1, 2]);
        assert_eq!(done.next, "orders:0:3");

        // Ahead of the server but still in the log: the live stream brings it the rest.
        let ahead = CatchUp::Ahead {
            requested: 2,
            server: 1,
        };
        let done = replay(&store, &log, ahead, 2, Frames::default()).await;
        done.result.unwrap();
        assert!(done.frames.batches.is_empty());
        assert_eq!(done.next, "orders:0:2");
    }

    #[tokio::test]
    async fn markers_aborted_and_unreadable_batches_are_gone_past_without_a_frame() {
        let mut entries = orders(2);
        entries.extend([Entry::Marker, Entry::Aborted, Entry::Corrupt, Entry::Marker]);
        entries.push(order("o-6").into());
        let (store, _dir, _) = store_with(orders(7)).await;
        let log = FakeLog::new(0, entries).max(3);
        let done = replay(&store, &log, behind(0, 7), 0, Frames::default()).await;
        done.result.unwrap();
        assert_eq!(done.frames.offsets(), [0, 1, 6]);
        assert_eq!(log.fetches(), vec![0, 3, 6], "never the same offset twice");
        assert_eq!(done.next, "orders:0:7");
    }

    #[tokio::test]
    async fn a_range_the_log_no_longer_holds_is_given_up_after_three_empty_fetches() {
        // The topic was recreated shorter: the server had reached 5, the log ends at 2.
        let (store, _dir, _) = store_with(orders(2)).await;
        let log = FakeLog::new(0, orders(2));
        let done = replay(&store, &log, behind(0, 5), 0, Frames::default()).await;
        done.result.unwrap();
        assert_eq!(done.frames.offsets(), [0, 1]);
        assert_eq!(log.fetches(), vec![0, 2, 2, 2]);
        assert_eq!(
            done.next, "orders:0:5",
            "the live stream goes on from the server's position"
        );
    }

    #[tokio::test]
    async fn a_replay_that_ends_early_hands_back_the_cursor_it_reached() {
        let (store, _dir, _) = store_with(orders(6)).await;
        let log = FakeLog::new(0, orders(6)).max(2);

        // Kafka fails after the first batch.
        let failing = FakeLog::new(0, orders(6)).max(2).fail_fetch(2, timeout());
        let done = replay(&store, &failing, behind(0, 6), 0, Frames::default()).await;
        assert!(
            matches!(done.result, Err(End::Kafka(KafkaError::Timeout { .. }))),
            "{:?}",
            done.result
        );
        assert_eq!((done.replayed, done.next.as_str()), (2, "orders:0:2"));

        // The client falls too far behind the live stream before the third batch.
        let frames = Frames {
            stop_at: Some(3),
            ..Frames::default()
        };
        let done = replay(&store, &log, behind(0, 6), 0, frames).await;
        assert!(matches!(done.result, Err(End::TooSlow)));
        assert_eq!((done.replayed, done.next.as_str()), (4, "orders:0:4"));
    }

    #[tokio::test]
    async fn a_timeout_is_tried_again_while_kafka_is_healthy_and_ends_the_replay_otherwise() {
        let (store, _dir, _) = store_with(orders(4)).await;
        let twice = || {
            FakeLog::new(0, orders(4))
                .max(2)
                .fail_fetch(2, timeout())
                .fail_fetch(2, timeout())
        };
        let healthy = Retrying::new(twice(), KafkaConnection::healthy(), ATTEMPTS);
        let done = replay(&store, &healthy, behind(0, 4), 0, Frames::default()).await;
        done.result.unwrap();
        assert_eq!(done.frames.offsets(), [0, 1, 2, 3]);

        // While the connection supervisor sees Kafka fail, the first timeout ends it.
        let failing = Retrying::new(twice(), KafkaConnection::unconnected(), ATTEMPTS);
        let done = replay(&store, &failing, behind(0, 4), 0, Frames::default()).await;
        assert!(matches!(
            done.result,
            Err(End::Kafka(KafkaError::Timeout { .. }))
        ));
        assert_eq!(done.next, "orders:0:2");
    }

    #[tokio::test]
    async fn a_client_too_far_behind_is_reset_to_the_server_s_position() {
        let catch_up = vec![
            (ORDERS, behind(10, 500)),
            (
                (TopicRole::Payments, 1),
                CatchUp::Ahead {
                    requested: 90,
                    server: 70,
                },
            ),
        ];
        assert_eq!(super::behind(&catch_up), 490 + 70);
        let (store, _dir, _) = store_with(Vec::new()).await;
        let shutdown = CancellationToken::new();
        let mut frames = Frames::default();
        let mut next = Cursor::parse("orders:0:10,payments:1:90").unwrap();
        let mut replay = Replay {
            session: 1,
            store: &store,
            shutdown: &shutdown,
            sink: &mut frames,
            next: &mut next,
            replayed: 0,
        };
        replay.skip_all(catch_up).await.unwrap();
        let resets = frames.of_type("reset");
        assert_eq!(resets.len(), 2);
        assert!(resets.iter().all(|r| r["reason"] == TOO_FAR_BEHIND_RESET));
        assert_eq!(next.to_string(), "orders:0:500,payments:1:70");
    }
}
