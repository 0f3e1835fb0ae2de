//! rskafka against the real broker: what shopstream's producer and consumers rely on.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use rskafka::chrono::{TimeZone, Utc};
use rskafka::client::partition::{Compression, OffsetAt, UnknownTopicHandling};
use rskafka::record::Record;

#[tokio::test]
async fn a_produced_record_is_fetched_back_with_key_value_headers_and_offset() {
    let client = support::kafka_client(&support::bootstrap()).await;
    let topic = support::unique_name("roundtrip");
    client
        .controller_client()
        .unwrap()
        .create_topic(&topic, 1, 1, 10_000)
        .await
        .expect("create topic");
    let partition = client
        .partition_client(&topic, 0, UnknownTopicHandling::Retry)
        .await
        .unwrap();

    let headers = BTreeMap::from([
        ("event-type".to_string(), b"order.created".to_vec()),
        ("content-type".to_string(), b"application/json".to_vec()),
    ]);
    let make = |n: u32| Record {
        key: Some(format!("order-{n}").into_bytes()),
        value: Some(format!(r#"{{"n":{n}}}"#).into_bytes()),
        headers: headers.clone(),
        timestamp: Utc
            .timestamp_millis_opt(1_700_000_000_000 + n as i64)
            .unwrap(),
    };
    let offsets = partition
        .produce(vec![make(0), make(1)], Compression::NoCompression)
        .await
        .unwrap();
    assert_eq!(offsets, vec![0, 1]);
    // A second batch, gzip-compressed, continues the offsets.
    let offsets = partition
        .produce(vec![make(2)], Compression::Gzip)
        .await
        .unwrap();
    assert_eq!(offsets, vec![2]);

    let (records, high_watermark) = partition
        .fetch_records(0, 1..1_000_000, 1_000)
        .await
        .unwrap();
    assert_eq!(high_watermark, 3);
    assert_eq!(records.len(), 3);
    for (n, fetched) in records.iter().enumerate() {
        assert_eq!(fetched.offset, n as i64);
        assert_eq!(fetched.record, make(n as u32));
    }
    assert_eq!(partition.get_offset(OffsetAt::Earliest).await.unwrap(), 0);
    assert_eq!(partition.get_offset(OffsetAt::Latest).await.unwrap(), 3);

    // Fetching from the end waits (up to max_wait) and returns nothing, not an error.
    let (none, _) = tokio::time::timeout(
        Duration::from_secs(10),
        partition.fetch_records(3, 1..1_000_000, 200),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(none.is_empty());
}
