//! The one decoder from a Kafka record to an event, used by the consumers, the WebSocket replay
//! and the event browser, so that all three read a record the same way.

use rskafka::record::Record;

use crate::domain::event::{Event, Position, UndecodableRecord, headers};
use crate::model::store::FetchedRecord;

/// Decodes the record read at `position` of the topic named `topic_name`.
pub fn decode(position: Position, topic_name: &str, record: Record) -> FetchedRecord {
    let Record {
        key,
        value,
        mut headers,
        timestamp,
    } = record;
    let decoded = match value {
        Some(value) => Event::decode(&value, position, topic_name, timestamp).map(|event| {
            // Decoding checked that the whole value is UTF-8: the bytes become the text as
            // they are, without a copy.
            let text = String::from_utf8(value)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
            (event, text)
        }),
        None => Err(UndecodableRecord("no value (tombstone)".into())),
    };
    let mut header = |name: &str| headers.remove(name).and_then(|v| String::from_utf8(v).ok());
    let idempotency = header(headers::IDEMPOTENCY_KEY).zip(header(headers::REQUEST_FINGERPRINT));
    FetchedRecord {
        offset: position.offset,
        key: key.map(|k| {
            String::from_utf8(k)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
        }),
        record_time: timestamp,
        decoded,
        idempotency,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::domain::event::TopicRole;

    fn record(value: Option<&str>, headers: &[(&str, &str)]) -> Record {
        Record {
            key: Some(b"order-1".to_vec()),
            value: value.map(|v| v.as_bytes().to_vec()),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect::<BTreeMap<_, _>>(),
            timestamp: Utc.with_ymd_and_hms(2025, 6, 2, 9, 0, 0).unwrap(),
        }
    }

    fn at(offset: i64) -> Position {
        Position {
            topic: TopicRole::Orders,
            partition: 1,
            offset,
        }
    }

    #[test]
    fn a_record_becomes_its_event_with_key_value_and_idempotency_headers() {
        let value = r#"{"event_type":"order.created","order_id":"o-1","event_id":"e-1","customer_name":"Ann Lee","customer_email":"ann@example.com","product":"Lamp","quantity":1,"amount":12.50,"currency":"EUR","address":"1 Rue A, Paris","timestamp":"2025-06-02T09:00:00Z"}"#;
        let fetched = decode(
            at(7),
            "orders",
            record(
                Some(value),
                &[
                    (headers::IDEMPOTENCY_KEY, "k-1"),
                    (headers::REQUEST_FINGERPRINT, "f-1"),
                ],
            ),
        );
        assert_eq!(fetched.offset, 7);
        assert_eq!(fetched.key.as_deref(), Some("order-1"));
        assert_eq!(
            fetched.idempotency,
            Some(("k-1".to_string(), "f-1".to_string()))
        );
        let (event, data) = fetched.decoded.expect("a shopstream order record");
        assert_eq!(event.order_id, "o-1");
        assert_eq!(event.event_id, "e-1");
        assert_eq!(data, value);
    }

    #[test]
    fn a_tombstone_and_a_non_json_value_are_undecodable_with_a_reason() {
        let tombstone = decode(at(0), "orders", record(None, &[]));
        assert_eq!(
            tombstone.decoded.unwrap_err().0,
            "no value (tombstone)".to_string()
        );
        let garbage = decode(at(1), "orders", record(Some("not json"), &[]));
        assert!(garbage.decoded.unwrap_err().0.starts_with("not JSON"));
        // A header without its pair is no idempotency.
        let half = decode(
            at(2),
            "orders",
            record(Some("{}"), &[(headers::IDEMPOTENCY_KEY, "k")]),
        );
        assert_eq!(half.idempotency, None);
    }
}
