//! The shared read model: one lock around [`ReadModel`], a version counter that waiters watch,
//! and the live hub, published to under the same lock so that a client which subscribes and
//! reads the positions in one step sees every later event exactly once.
//!
//! Written only by the partition consumers ([`Store::apply_fetched`]); read by the HTTP
//! handlers, the WebSocket sessions and the snapshot writer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::{broadcast, watch};

use super::{Applied, ReadModel};
use crate::domain::event::{Event, Position, TopicRole, UndecodableRecord};
use crate::live::hub::{Hub, LiveFrame};

/// A partition and the next offset the consumers will read from it.
pub type ConsumedPosition = (TopicRole, i32, i64);

/// One record fetched from Kafka, decoded (or not).
#[derive(Debug)]
pub struct FetchedRecord {
    pub offset: i64,
    pub key: Option<String>,
    pub record_time: DateTime<Utc>,
    pub decoded: Result<(Event, Value), UndecodableRecord>,
    /// `Idempotency-Key` and request fingerprint, from the record's headers.
    pub idempotency: Option<(String, String)>,
}

/// What one applied batch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    pub applied: u64,
    pub duplicates: u64,
    /// The skipped records: offset and reason.
    pub skipped: Vec<(i64, String)>,
}

#[derive(Debug)]
pub struct Store {
    model: RwLock<ReadModel>,
    version: watch::Sender<u64>,
    hub: Hub,
    /// Set on every change, cleared by the snapshot writer.
    dirty: AtomicBool,
}

impl Store {
    pub fn new(model: ReadModel) -> Self {
        Self {
            model: RwLock::new(model),
            version: watch::channel(0).0,
            hub: Hub::new(),
            dirty: AtomicBool::new(false),
        }
    }

    /// Runs `f` with the model read-locked. Keep `f` short: consumers wait for the lock.
    pub fn read<R>(&self, f: impl FnOnce(&ReadModel) -> R) -> R {
        f(&self.model.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Replaces the whole model (a loaded snapshot), before consumption starts.
    pub fn replace(&self, model: ReadModel) {
        *self.model.write().unwrap_or_else(|p| p.into_inner()) = model;
        self.bump();
    }

    /// Applies records fetched from one partition, then moves its next offset to `next_offset`
    /// (past the batch, even where it held no record, e.g. after compaction or transaction
    /// markers).
    pub fn apply_fetched(
        &self,
        topic: TopicRole,
        partition: i32,
        records: Vec<FetchedRecord>,
        next_offset: i64,
    ) -> BatchOutcome {
        let mut outcome = BatchOutcome::default();
        {
            let mut model = self.model.write().unwrap_or_else(|p| p.into_inner());
            let from = model.progress_mut(topic, partition).next_offset;
            for record in records {
                if record.offset < from {
                    continue;
                }
                let position = Position {
                    topic,
                    partition,
                    offset: record.offset,
                };
                match record.decoded {
                    Ok((event, data)) => {
                        match model.apply(&event, position, &data, record.idempotency) {
                            Applied::New => outcome.applied += 1,
                            Applied::Duplicate => outcome.duplicates += 1,
                        }
                        // Every decodable record is a frame, duplicates too: a client that
                        // replays from Kafka sees the same frames, offset for offset.
                        self.hub.publish(LiveFrame::new(
                            position,
                            &event.event_id,
                            event.event_type,
                            record.key.as_deref(),
                            event.time,
                            &data,
                        ));
                    }
                    Err(reason) => {
                        model.progress_mut(topic, partition).skipped += 1;
                        outcome.skipped.push((record.offset, reason.0));
                    }
                }
                let progress = model.progress_mut(topic, partition);
                progress.last_record_time = Some(record.record_time);
            }
            let progress = model.progress_mut(topic, partition);
            progress.next_offset = progress.next_offset.max(next_offset);
        }
        self.bump();
        outcome
    }

    /// Moves a partition's next offset after it fell out of retention (counted as a reset).
    pub fn reset_offset(&self, topic: TopicRole, partition: i32, to: i64) {
        {
            let mut model = self.model.write().unwrap_or_else(|p| p.into_inner());
            let progress = model.progress_mut(topic, partition);
            progress.next_offset = to;
            progress.resets += 1;
        }
        self.bump();
    }

    /// The next offset to consume for a partition (0 when never consumed).
    pub fn next_offset(&self, topic: TopicRole, partition: i32) -> Option<i64> {
        self.read(|m| m.progress(topic, partition).map(|p| p.next_offset))
    }

    /// Subscribes to live frames and reads the consumed positions in one step: every frame
    /// received afterwards has an offset at or past the returned positions.
    pub fn subscribe(&self) -> (broadcast::Receiver<Arc<LiveFrame>>, Vec<ConsumedPosition>) {
        let model = self.model.read().unwrap_or_else(|p| p.into_inner());
        let receiver = self.hub.subscribe();
        let positions = model
            .partitions()
            .iter()
            .map(|p| (p.topic, p.partition, p.next_offset))
            .collect();
        (receiver, positions)
    }

    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Waits until `ready` holds for the model, at most `within`. Returns whether it held.
    pub async fn wait_for(&self, within: Duration, ready: impl Fn(&ReadModel) -> bool) -> bool {
        let mut changes = self.version.subscribe();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.read(&ready) {
                return true;
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                _ => return self.read(&ready),
            }
        }
    }

    /// Whether the model changed since the last call (for the snapshot writer).
    pub fn take_dirty(&self) -> bool {
        self.dirty.swap(false, Ordering::AcqRel)
    }

    fn bump(&self) {
        self.dirty.store(true, Ordering::Release);
        self.version.send_modify(|v| *v += 1);
    }
}
