//! A partition's log in memory, for the unit tests of what reads through [`PartitionLog`]
//! (the partition consumers, the WebSocket replay): what each offset holds from the earliest
//! on, fetched a few at a time as [`super::batches`] would have decoded it, with retention and
//! failures a test can bring about.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use chrono::{TimeZone, Utc};
use rskafka::client::partition::OffsetAt;
use rskafka::record::{Record, RecordAndOffset};

use super::KafkaError;
use super::batches::Unreadable;
use super::fetch::Fetched;
use super::partitions::PartitionLog;

/// What one offset of a fake log holds.
#[derive(Debug, Clone)]
pub enum Entry {
    /// A record with this value (`None`: a tombstone).
    Value(Option<String>),
    /// A transaction marker.
    Marker,
    /// A record of an aborted transaction.
    Aborted,
    /// A batch of one record that cannot be read.
    Corrupt,
}

impl From<Option<String>> for Entry {
    fn from(value: Option<String>) -> Self {
        Entry::Value(value)
    }
}

pub struct FakeLog {
    /// The offset of `entries[0]`.
    base: i64,
    entries: Vec<Entry>,
    /// Most entries one fetch reads.
    max: usize,
    state: Mutex<State>,
}

struct State {
    earliest: i64,
    /// Every offset fetched from, in order.
    fetches: Vec<i64>,
    /// Fetches that fail, by the offset fetched from, once each.
    failures: VecDeque<(i64, KafkaError)>,
    /// After this many fetches, retention removes every record before the offset.
    retention: Option<(usize, i64)>,
    /// Every fetch fails with this (the broker refuses), while set.
    failing: Option<String>,
}

impl FakeLog {
    /// `entries` from offset `earliest` on; a fetch reads them all.
    pub fn new(earliest: i64, entries: Vec<Entry>) -> Self {
        Self {
            base: earliest,
            entries,
            max: usize::MAX,
            state: Mutex::new(State {
                earliest,
                fetches: Vec::new(),
                failures: VecDeque::new(),
                retention: None,
                failing: None,
            }),
        }
    }

    /// At most `max` entries a fetch.
    pub fn max(mut self, max: usize) -> Self {
        self.max = max;
        self
    }

    /// Retention removes every record before `earliest` now.
    pub fn forget_before(self, earliest: i64) -> Self {
        self.lock().earliest = earliest;
        self
    }

    /// Retention removes every record before `earliest` once `fetches` fetches were made.
    pub fn forget_after(self, fetches: usize, earliest: i64) -> Self {
        self.lock().retention = Some((fetches, earliest));
        self
    }

    /// The next fetch from `offset` fails with `error` (twice when given twice).
    pub fn fail_fetch(self, offset: i64, error: KafkaError) -> Self {
        self.lock().failures.push_back((offset, error));
        self
    }

    /// Every fetch fails, with `message` as the broker's answer, until called with `None`.
    pub fn fail_every_fetch(&self, message: Option<&str>) {
        self.lock().failing = message.map(str::to_string);
    }

    pub fn latest(&self) -> i64 {
        self.base + self.entries.len() as i64
    }

    /// Every offset fetched from so far, in order.
    pub fn fetches(&self) -> Vec<i64> {
        self.lock().fetches.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }
}

impl PartitionLog for FakeLog {
    async fn offset(&self, at: OffsetAt) -> Result<i64, KafkaError> {
        let state = self.lock();
        Ok(match at {
            OffsetAt::Earliest => state.earliest,
            _ => self.latest(),
        })
    }

    async fn read(
        &self,
        offset: i64,
        _max_bytes: i32,
        _max_wait_ms: i32,
    ) -> Result<Fetched, KafkaError> {
        let mut state = self.lock();
        state.fetches.push(offset);
        if let Some((after, earliest)) = state.retention
            && state.fetches.len() > after
        {
            state.earliest = state.earliest.max(earliest);
        }
        if let Some(message) = state.failing.clone() {
            return Err(KafkaError::Connection {
                operation: "fetch",
                message,
            });
        }
        if let Some(at) = state.failures.iter().position(|(o, _)| *o == offset) {
            let (_, error) = state.failures.remove(at).expect("found");
            return Err(error);
        }
        if offset < state.earliest || offset > self.latest() {
            return Err(KafkaError::OffsetOutOfRange { operation: "fetch" });
        }
        let mut fetched = Fetched {
            high_watermark: self.latest(),
            last_stable_offset: self.latest(),
            next_offset: offset,
            ..Fetched::default()
        };
        let from = (offset - self.base) as usize;
        for (i, entry) in self.entries[from..].iter().take(self.max).enumerate() {
            let at = offset + i as i64;
            fetched.next_offset = at + 1;
            match entry {
                Entry::Value(value) => fetched.records.push(RecordAndOffset {
                    record: Record {
                        key: None,
                        value: value.as_ref().map(|v| v.as_bytes().to_vec()),
                        headers: BTreeMap::new(),
                        timestamp: Utc.with_ymd_and_hms(2025, 6, 2, 9, 0, 0).unwrap(),
                    },
                    offset: at,
                }),
                Entry::Marker => fetched.markers += 1,
                Entry::Aborted => fetched.aborted += 1,
                Entry::Corrupt => fetched.unreadable.push(Unreadable {
                    first: at,
                    last: at,
                    reason: "corrupt".into(),
                }),
            }
        }
        Ok(fetched)
    }
}

/// The value of an `order.created` record for order `id`.
pub fn order_created(id: &str) -> Option<String> {
    Some(format!(
        r#"{{"event_type":"order.created","order_id":"{id}","event_id":"e-{id}","customer_name":"Ann Lee","customer_email":"ann@example.com","product":"Lamp","quantity":1,"amount":12.50,"currency":"EUR","address":"1 Rue A, Paris","timestamp":"2025-06-02T09:00:00Z"}}"#
    ))
}
