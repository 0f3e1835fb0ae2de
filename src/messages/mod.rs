//! The JSON shopstream sends, as typed serde structs, in one place: the frames of the live
//! stream here (the event frame is built once per committed event by the store and shared by
//! every client), the API's answers in [`api`], Kafka record values in [`record`], the
//! request bodies' schemas in [`requests`], and the records' AsyncAPI document in
//! [`asyncapi`].

pub mod api;
pub mod asyncapi;
pub mod record;
pub mod requests;

use std::sync::Arc;

use serde_json::Value;
use serde_json::value::RawValue;

use crate::domain::event::{Event, EventBody, Position, TopicRole, format_time};
use crate::domain::lifecycle::OrderStatus;

/// One event as sent to clients, serialised once.
#[derive(Debug)]
pub struct LiveFrame {
    pub position: Position,
    pub event_id: String,
    /// The whole frame as JSON text.
    pub json: Arc<str>,
    /// When it was built: right after its group commit, as it goes out to the live ring (the
    /// start of `shopstream_live_delivery_duration_seconds`).
    pub built_at: std::time::Instant,
}

/// The wire shape of an event frame.
#[derive(serde::Serialize)]
struct EventFrame<'a> {
    r#type: &'static str,
    topic: TopicRole,
    partition: i32,
    offset: i64,
    event_type: &'static str,
    event: &'static str,
    event_id: &'a str,
    key: Option<&'a str>,
    timestamp: String,
    /// The order's status right after the event was applied (`null` while the order has no
    /// status, a payment read before its order, say): clients show it as it is, without
    /// rules of their own.
    order_status: Option<OrderStatus>,
    /// The event's number in this server's store: of two frames about one order, the one with
    /// the higher number is the newer state.
    seq: u64,
    /// A payment's outcome in the API's spelling, whatever the record wrote.
    #[serde(skip_serializing_if = "Option::is_none")]
    payment_status: Option<&'static str>,
    /// A delivery's status in the API's spelling (`in_transit` becomes `In Transit`).
    #[serde(skip_serializing_if = "Option::is_none")]
    delivery_status: Option<&'static str>,
    /// The record value, or `null` when it is larger than [`MAX_FRAME_DATA`] (only a foreign
    /// producer writes such records; the order's detail shows them).
    data: &'a RawValue,
    /// The size of a record value left out of the frame.
    #[serde(skip_serializing_if = "Option::is_none")]
    data_omitted_bytes: Option<usize>,
}

/// Largest record value carried in a live frame. The live ring holds `--live-buffer` frames
/// for every client together, so this bounds it in bytes as well as in frames (4,096 frames
/// of at most about 17 KiB: under 70 MiB however large the records in the log are).
pub const MAX_FRAME_DATA: usize = 16 * 1024;

impl LiveFrame {
    /// The frame for one consumed record; `data` is the record value as JSON text, sent as
    /// it was written.
    pub fn new(
        position: Position,
        event: &Event,
        key: Option<&str>,
        data: &str,
        order_status: Option<OrderStatus>,
        seq: u64,
    ) -> Self {
        let fallback;
        let omitted = (data.len() > MAX_FRAME_DATA).then_some(data.len());
        let data: &RawValue = match serde_json::from_str::<&RawValue>(data.trim()) {
            _ if omitted.is_some() => crate::domain::json::null_ref(),
            Ok(raw) => raw,
            Err(_) => {
                fallback = RawValue::from_string(Value::String(data.to_string()).to_string())
                    .expect("a JSON string is JSON");
                &fallback
            }
        };
        let (payment_status, delivery_status) = match &event.body {
            EventBody::PaymentProcessed(p) => (Some(p.status.as_str()), None),
            EventBody::Delivery(d) => (None, Some(d.status.as_str())),
            _ => (None, None),
        };
        let frame = EventFrame {
            r#type: "event",
            topic: position.topic,
            partition: position.partition,
            offset: position.offset,
            event_type: event.event_type.as_str(),
            event: position.topic.seed_event_name(),
            event_id: &event.event_id,
            key,
            timestamp: format_time(event.time),
            order_status,
            seq,
            payment_status,
            delivery_status,
            data,
            data_omitted_bytes: omitted,
        };
        Self {
            position,
            event_id: event.event_id.clone(),
            json: Arc::from(serde_json::to_string(&frame).expect("frames always serialise")),
            built_at: std::time::Instant::now(),
        }
    }
}

/// The other frames of a live session, tagged by `type` (see [`crate::live::session`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SessionFrame<'a> {
    /// The first frame: the server's version and cursor, and where this session starts.
    Hello {
        server: &'static str,
        /// The name of the store's event numbering: frames' `seq` compare only within one.
        store: String,
        cursor: String,
        start: String,
        partitions: Vec<PartitionPosition>,
    },
    /// The replay from Kafka is over; live frames follow.
    CaughtUp {
        replayed: u64,
    },
    /// The client's offset for a partition is no longer in the log: it goes on from `earliest`.
    Reset {
        topic: crate::domain::event::TopicRole,
        partition: i32,
        requested: i64,
        earliest: i64,
        reason: &'a str,
    },
    /// The answer to a client's `{"type": "ping"}`.
    Pong,
    Error {
        code: &'static str,
        message: String,
    },
    /// The last frame before the close frame: why, and the cursor to resume from.
    Closing {
        reason: &'a str,
        cursor: String,
    },
}

/// The next offset the server will read from a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PartitionPosition {
    pub topic: crate::domain::event::TopicRole,
    pub partition: i32,
    pub next_offset: i64,
}

impl SessionFrame<'_> {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("frames always serialise")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::TopicRole;

    #[test]
    fn session_frames_are_tagged_by_type() {
        let hello = SessionFrame::Hello {
            server: "shopstream 0",
            store: "n-1".into(),
            cursor: "orders:0:3".into(),
            start: "orders:0:1".into(),
            partitions: vec![PartitionPosition {
                topic: TopicRole::Orders,
                partition: 0,
                next_offset: 3,
            }],
        };
        let json: Value = serde_json::from_str(&hello.to_json()).unwrap();
        assert_eq!(json["type"], "hello");
        assert_eq!(json["partitions"][0]["topic"], "orders");
        assert_eq!(json["partitions"][0]["next_offset"], 3);
        assert_eq!(SessionFrame::Pong.to_json(), r#"{"type":"pong"}"#);
        assert_eq!(
            SessionFrame::CaughtUp { replayed: 2 }.to_json(),
            r#"{"type":"caught_up","replayed":2}"#
        );
        let closing: Value = serde_json::from_str(
            &SessionFrame::Closing {
                reason: "server shutting down",
                cursor: "orders:0:4".into(),
            }
            .to_json(),
        )
        .unwrap();
        assert_eq!(closing["type"], "closing");
        assert_eq!(closing["cursor"], "orders:0:4");
    }
}
