//! Fan-out of consumed events to live clients.
//!
//! A `tokio::sync::broadcast` ring of [`FRAME_BUFFER`] frames: publishing never waits for a
//! client, and a client that falls more than the ring behind learns it (`Lagged`) and is closed
//! with a reason, to resume by cursor; it never slows the others, and memory stays bounded.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::broadcast;

use crate::domain::event::{EventType, Position, format_time};

/// How many frames a client may fall behind before it is disconnected.
pub const FRAME_BUFFER: usize = 4096;

/// One event as sent to clients, serialised once.
#[derive(Debug)]
pub struct LiveFrame {
    pub position: Position,
    pub event_id: String,
    /// The whole frame as JSON text.
    pub json: Arc<str>,
}

/// The wire shape of an event frame.
#[derive(serde::Serialize)]
struct EventFrame<'a> {
    r#type: &'static str,
    topic: crate::domain::event::TopicRole,
    partition: i32,
    offset: i64,
    event_type: &'static str,
    event: &'static str,
    event_id: &'a str,
    key: Option<&'a str>,
    timestamp: String,
    data: &'a RawValue,
}

impl LiveFrame {
    /// The frame for one consumed record; `data` is the record value as JSON text, sent as
    /// it was written.
    pub fn new(
        position: Position,
        event_id: &str,
        event_type: EventType,
        key: Option<&str>,
        time: DateTime<Utc>,
        data: &str,
    ) -> Self {
        let fallback;
        let data: &RawValue = match serde_json::from_str::<&RawValue>(data.trim()) {
            Ok(raw) => raw,
            Err(_) => {
                fallback = RawValue::from_string(Value::String(data.to_string()).to_string())
                    .expect("a JSON string is JSON");
                &fallback
            }
        };
        let frame = EventFrame {
            r#type: "event",
            topic: position.topic,
            partition: position.partition,
            offset: position.offset,
            event_type: event_type.as_str(),
            event: position.topic.seed_event_name(),
            event_id,
            key,
            timestamp: format_time(time),
            data,
        };
        Self {
            position,
            event_id: event_id.to_string(),
            json: Arc::from(serde_json::to_string(&frame).expect("frames always serialise")),
        }
    }
}

/// The sending side; cheap to clone.
#[derive(Debug, Clone)]
pub struct Hub {
    sender: broadcast::Sender<Arc<LiveFrame>>,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    pub fn new() -> Self {
        let (sender, _) = broadcast::channel(FRAME_BUFFER);
        Self { sender }
    }

    /// Sends to every subscriber; having none is fine.
    pub fn publish(&self, frame: LiveFrame) {
        let _ = self.sender.send(Arc::new(frame));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LiveFrame>> {
        self.sender.subscribe()
    }

    pub fn client_count(&self) -> usize {
        self.sender.receiver_count()
    }
}
