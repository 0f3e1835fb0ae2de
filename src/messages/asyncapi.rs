//! `GET /api/asyncapi.json`: the three topics' records as an AsyncAPI 3.0 document, built once.
//!
//! The payloads are the schemas derived from the structs [`super::record`] serialises into
//! every record value, the headers are those of `crate::domain::event::headers`, the key is the
//! order id. The document describes what shopstream writes; what it reads from other producers
//! (the seed's shapes, lenient spellings, no `event_id`) is said in each channel's description.
//! `tests/documents.rs` checks it against the AsyncAPI 3.0 schema and the records a real
//! server wrote against it.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::domain::event::{EventType, TopicRole, headers};

/// The document as JSON text, built on first use.
pub fn json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| serde_json::to_string(&document()).expect("the document serialises"))
}

/// Kafka bindings' version (AsyncAPI's Kafka bindings 0.5.0).
const KAFKA_BINDINGS: &str = "0.5.0";

/// The message name of an event type in the document (`orderCreated`).
fn message_id(event_type: EventType) -> &'static str {
    match event_type {
        EventType::OrderCreated => "orderCreated",
        EventType::OrderCancelled => "orderCancelled",
        EventType::PaymentProcessed => "paymentProcessed",
        EventType::DeliveryCreated => "deliveryCreated",
        EventType::DeliveryUpdated => "deliveryUpdated",
    }
}

/// The payload schema's component name of an event type's value.
fn payload(event_type: EventType) -> &'static str {
    match event_type {
        EventType::OrderCreated => "OrderCreatedValue",
        EventType::OrderCancelled => "OrderCancelledValue",
        EventType::PaymentProcessed => "PaymentValue",
        EventType::DeliveryCreated | EventType::DeliveryUpdated => "DeliveryValue",
    }
}

fn summary(event_type: EventType) -> &'static str {
    match event_type {
        EventType::OrderCreated => "An order was placed.",
        EventType::OrderCancelled => "An order was cancelled.",
        EventType::PaymentProcessed => {
            "A payment was taken or declined (`status` SUCCESS or FAILED, with `failure_reason`)."
        }
        EventType::DeliveryCreated => "A paid order was shipped: its delivery starts as Shipped.",
        EventType::DeliveryUpdated => {
            "A delivery moved on (In Transit, Out for Delivery, Delivered)."
        }
    }
}

fn channel_description(topic: TopicRole) -> &'static str {
    match topic {
        TopicRole::Orders => {
            "Orders placed and cancelled. shopstream also reads the seed's order records: \
             without `event_id` (one is derived from topic, partition and offset), \
             `event_type` (a `status` of Cancelled makes it a cancellation), `quantity` (1) \
             or `currency` (EUR), with naive timestamps (taken as UTC), ids and amounts as \
             numbers or strings."
        }
        TopicRole::Payments => {
            "Payments. shopstream also reads the seed's payment records and relaxed statuses \
             (`success`, `succeeded`, `paid`; `failed`, `failure`, `declined`)."
        }
        TopicRole::Deliveries => {
            "Deliveries. shopstream also reads the seed's delivery records and relaxed statuses \
             (`in_transit`, `IN TRANSIT`)."
        }
    }
}

fn headers_schema() -> Value {
    json!({
        "type": "object",
        "description": "Kafka record headers, each value UTF-8 text.",
        "required": [headers::EVENT_TYPE, headers::CONTENT_TYPE, headers::PRODUCER],
        "properties": {
            headers::EVENT_TYPE: {
                "type": "string",
                "enum": EventType::ALL.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
                "description": "The value's `event_type`.",
            },
            headers::CONTENT_TYPE: { "type": "string", "const": "application/json" },
            headers::PRODUCER: {
                "type": "string",
                "pattern": "^shopstream/",
                "description": "`shopstream/<version>` on the records shopstream writes.",
            },
            headers::IDEMPOTENCY_KEY: {
                "type": "string",
                "description": "The request's `Idempotency-Key`, when it had one; with tokens \
                    configured, prefixed by an id of the token that sent it (`<id>/<key>`), so \
                    that two clients' keys never meet.",
            },
            headers::REQUEST_FINGERPRINT: {
                "type": "string",
                "format": "uuid",
                "description": "With `idempotency-key`: a UUID v5 of the request's method, path \
                    and canonical body. The same key with another fingerprint is refused with \
                    422.",
            },
            headers::TRACEPARENT: {
                "type": "string",
                "pattern": "^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
                "description": "W3C trace context of the HTTP request that wrote the record (its \
                    span), so that one trace runs from the client to the consumer.",
            },
        },
    })
}

fn message(event_type: EventType) -> Value {
    json!({
        "name": event_type.as_str(),
        "title": event_type.as_str(),
        "summary": summary(event_type),
        "contentType": "application/json",
        "headers": {
            "allOf": [
                { "$ref": "#/components/schemas/RecordHeaders" },
                { "properties": { headers::EVENT_TYPE: { "const": event_type.as_str() } } },
            ],
        },
        "payload": { "$ref": format!("#/components/schemas/{}", payload(event_type)) },
        "correlationId": { "$ref": "#/components/correlationIds/traceparent" },
        "bindings": { "kafka": {
            "key": {
                "type": "string",
                "description": "The order id (UTF-8). Every event of an order has it, so all of \
                    them land on the same partition number of each topic: Kafka's default \
                    partitioner (murmur2 of the key bytes), as the Java, Python and Go clients \
                    place them.",
            },
            "bindingVersion": KAFKA_BINDINGS,
        } },
    })
}

fn document() -> Value {
    let mut schemas: BTreeMap<String, Value> = super::record::value_schemas()
        .into_iter()
        .map(|(name, schema)| {
            let schema = serde_json::to_value(schema).expect("a schema serialises");
            (name, schema)
        })
        .collect();
    schemas.insert("RecordHeaders".into(), headers_schema());

    let mut channels = serde_json::Map::new();
    let mut operations = serde_json::Map::new();
    for topic in TopicRole::ALL {
        let events: Vec<EventType> = EventType::ALL
            .into_iter()
            .filter(|t| t.topic() == topic)
            .collect();
        let messages: serde_json::Map<String, Value> = events
            .iter()
            .map(|&t| {
                let id = message_id(t);
                (
                    id.to_string(),
                    json!({ "$ref": format!("#/components/messages/{id}") }),
                )
            })
            .collect();
        let name = topic.as_str();
        channels.insert(
            name.to_string(),
            json!({
                "address": name,
                "title": name,
                "description": format!(
                    "{} The topic's name carries `--topic-prefix` when one is set.",
                    channel_description(topic)
                ),
                "messages": messages,
                "bindings": { "kafka": {
                    "topic": name,
                    "bindingVersion": KAFKA_BINDINGS,
                } },
            }),
        );
        let channel_messages: Vec<Value> = events
            .iter()
            .map(|&t| json!({ "$ref": format!("#/channels/{name}/messages/{}", message_id(t)) }))
            .collect();
        operations.insert(
            format!("write{}", capitalised(name)),
            json!({
                "action": "send",
                "channel": { "$ref": format!("#/channels/{name}") },
                "summary": format!(
                    "shopstream writes one record per command (`acks=all`) to {name}."
                ),
                "messages": channel_messages,
            }),
        );
        operations.insert(
            format!("read{}", capitalised(name)),
            json!({
                "action": "receive",
                "channel": { "$ref": format!("#/channels/{name}") },
                "summary": format!(
                    "shopstream reads {name} partition by partition (`read_committed`) and \
                     builds its read model from the records, whoever wrote them."
                ),
                "messages": channel_messages,
            }),
        );
    }

    let messages: serde_json::Map<String, Value> = EventType::ALL
        .iter()
        .map(|&t| (message_id(t).to_string(), message(t)))
        .collect();

    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "shopstream records",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The records shopstream writes to and reads from Kafka. Values are \
                one JSON object each, in name order, keeping every field of the seed's shapes \
                (so producers and consumers written for the seed still work) and adding \
                `event_id` (the de-duplication key), `event_type`, `quantity`, `currency`, \
                `carrier` and `failure_reason`. Amounts are exact JSON numbers with two \
                decimals (`999.99`): read them from their text, not as binary floating point. \
                Timestamps are RFC 3339, UTC, with microseconds. A record that is not JSON or \
                not a known shape is skipped and counted, never applied.",
            "license": { "name": "MIT OR Apache-2.0" },
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": schemas,
            "messages": messages,
            "correlationIds": {
                "traceparent": {
                    "description": "The W3C trace context of the request that wrote the record.",
                    "location": "$message.header#/traceparent",
                },
            },
        },
    })
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_type_has_a_message_on_its_topic() {
        let doc: Value = serde_json::from_str(json()).unwrap();
        for t in EventType::ALL {
            let channel = &doc["channels"][t.topic().as_str()];
            assert!(
                channel["messages"][message_id(t)].is_object(),
                "{}",
                t.as_str()
            );
            let payload = doc["components"]["messages"][message_id(t)]["payload"]["$ref"]
                .as_str()
                .unwrap();
            assert!(
                doc.pointer(payload.trim_start_matches('#')).is_some(),
                "{payload}"
            );
        }
    }
}
