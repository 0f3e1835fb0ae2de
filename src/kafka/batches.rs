//! From the bytes of one partition in a fetch answer to the records shopstream applies: pure
//! logic, no I/O, so that every case (codecs, transaction markers, aborted transactions,
//! corrupt batches, a batch cut short by the fetch size) is unit-tested on bytes.
//!
//! The bytes are a run of record batches. Each batch is framed here (base offset, length,
//! magic, last offset delta) before its content is decoded by `kafka-protocol` with the
//! codecs of [`super::codecs`], so that one batch that cannot be read costs only its own
//! offsets: it becomes an [`Unreadable`] range, counted by the consumer, and reading goes on
//! with the next batch. What the consumer reads next is past every whole batch seen
//! ([`Decoded::next_offset`]), whether it held records, transaction markers (control batches,
//! which carry no event), aborted records or unreadable bytes: a partition never stops on a
//! batch it cannot use.
//!
//! Transactions are read as Kafka's `read_committed` consumers read them: the fetch is made at
//! that isolation level, so the broker returns nothing past the last stable offset and lists
//! the aborted transactions of the range; the records of those transactions are dropped up to
//! their abort marker, as Java's `CompletedFetch` does.

use std::collections::{BTreeMap, HashSet};

use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use rskafka::record::{Record, RecordAndOffset};

use super::codecs::{self, Codec};

/// Bytes of a batch header up to and including the record count.
const BATCH_HEADER: usize = 61;
/// Where the fields of a batch header sit.
const LENGTH_AT: usize = 8;
const MAGIC_AT: usize = 16;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const PRODUCER_ID_AT: usize = 43;
/// The attribute bits of a batch.
const TRANSACTIONAL: i16 = 1 << 4;
const CONTROL: i16 = 1 << 5;

/// An aborted transaction as the fetch answer lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTransaction {
    pub producer_id: i64,
    pub first_offset: i64,
}

/// A range of offsets whose batch could not be read, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub first: i64,
    pub last: i64,
    pub reason: String,
}

/// What one partition's bytes held, from the offset asked for on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decoded {
    /// The records to apply, in offset order.
    pub records: Vec<RecordAndOffset>,
    /// Batches (or single records) that could not be read.
    pub unreadable: Vec<Unreadable>,
    /// Records of aborted transactions, dropped.
    pub aborted: u64,
    /// Transaction markers passed.
    pub markers: u64,
    /// Past the last whole batch seen; `None` when no whole batch was there.
    pub next_offset: Option<i64>,
}

/// Decodes the record batches in `bytes`, keeping records at `from` and after.
pub fn decode(bytes: &Bytes, from: i64, aborted: &[AbortedTransaction]) -> Decoded {
    let mut decoded = Decoded::default();
    let mut transactions = Transactions::new(aborted);
    let mut at = 0usize;
    while let Some(header) = bytes
        .get(at..)
        .and_then(|rest| rest.get(..BATCH_HEADER.min(17)))
    {
        let base = i64::from_be_bytes(header[..8].try_into().expect("8 bytes"));
        let length = i32::from_be_bytes(header[LENGTH_AT..12].try_into().expect("4 bytes"));
        let magic = header[MAGIC_AT] as i8;
        let Some(size) = usize::try_from(length).ok().and_then(|l| l.checked_add(12)) else {
            // A negative length: nothing after this can be framed either. The offset is all
            // that is known; the next fetch starts past it.
            decoded.skip(base, base, format!("batch length {length} is negative"));
            break;
        };
        let Some(batch) = bytes.get(at..).and_then(|rest| rest.get(..size)) else {
            // The fetch's size cut the last batch short; the next fetch starts with it. (The
            // broker always returns the first batch whole, however large.)
            if at == 0 {
                decoded.skip(
                    base,
                    base,
                    format!("batch of {size} bytes, but only {} bytes came", bytes.len()),
                );
            }
            break;
        };
        at += size;
        if magic != 2 {
            // Message format v0/v1 (before Kafka 0.11): the offset is the message's (or the
            // last inner one's, for a compressed wrapper).
            decoded.skip(base, base, format!("message format v{magic} is not read"));
            continue;
        }
        if batch.len() < BATCH_HEADER {
            decoded.skip(base, base, "batch header cut short".into());
            continue;
        }
        let attributes = i16::from_be_bytes(
            batch[ATTRIBUTES_AT..ATTRIBUTES_AT + 2]
                .try_into()
                .expect("2 bytes"),
        );
        let delta = i32::from_be_bytes(
            batch[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4]
                .try_into()
                .expect("4 bytes"),
        );
        let producer_id = i64::from_be_bytes(
            batch[PRODUCER_ID_AT..PRODUCER_ID_AT + 8]
                .try_into()
                .expect("8 bytes"),
        );
        let last = match base.checked_add(i64::from(delta.max(0))) {
            Some(last) => last,
            None => {
                decoded.skip(base, base, format!("last offset delta {delta} overflows"));
                continue;
            }
        };
        decoded.next_offset = Some(
            decoded
                .next_offset
                .unwrap_or(i64::MIN)
                .max(last.saturating_add(1)),
        );
        if last < from {
            continue;
        }
        let control = attributes & CONTROL != 0;
        let transactional = attributes & TRANSACTIONAL != 0;
        transactions.open_up_to(last);
        let records = match read_batch(batch, attributes) {
            Ok(records) => records,
            Err(reason) => {
                decoded.skip(base.max(from), last, reason);
                continue;
            }
        };
        if control {
            for record in &records {
                if record.offset >= from {
                    decoded.markers += 1;
                }
                if is_abort_marker(record) {
                    transactions.close(producer_id);
                }
            }
            continue;
        }
        if transactional && transactions.is_aborted(producer_id) {
            decoded.aborted += records.iter().filter(|r| r.offset >= from).count() as u64;
            continue;
        }
        for record in records.into_iter().filter(|r| r.offset >= from) {
            match convert(&record) {
                Ok(converted) => decoded.records.push(converted),
                Err(reason) => decoded.skip(record.offset, record.offset, reason),
            }
        }
    }
    decoded
}

impl Decoded {
    fn skip(&mut self, first: i64, last: i64, reason: String) {
        self.next_offset = Some(
            self.next_offset
                .unwrap_or(i64::MIN)
                .max(last.saturating_add(1)),
        );
        self.unreadable.push(Unreadable {
            first,
            last,
            reason,
        });
    }
}

/// Decodes one whole batch (header checked, CRC included) with the codecs of this crate.
fn read_batch(
    batch: &[u8],
    attributes: i16,
) -> Result<Vec<kafka_protocol::records::Record>, String> {
    let codec = Codec::from_attributes(attributes)
        .ok_or_else(|| format!("unknown compression {}", attributes & 0x7))?;
    let mut buf = Bytes::copy_from_slice(batch);
    let decompress = |compressed: &mut Bytes, _: kafka_protocol::records::Compression| {
        codecs::decompress(codec, compressed)
            .map(Bytes::from)
            .map_err(anyhow::Error::msg)
    };
    kafka_protocol::records::RecordBatchDecoder::decode_with_custom_compression(
        &mut buf,
        Some(decompress),
    )
    .map(|set| set.records)
    .map_err(|e| format!("{} batch: {e}", codec.name()))
}

/// A control record whose key says ABORT (version, then type 0).
fn is_abort_marker(record: &kafka_protocol::records::Record) -> bool {
    record
        .key
        .as_ref()
        .and_then(|k| k.get(2..4))
        .is_some_and(|t| t == [0, 0])
}

/// A decoded record as the rest of shopstream reads records.
fn convert(record: &kafka_protocol::records::Record) -> Result<RecordAndOffset, String> {
    let timestamp: DateTime<Utc> = Utc
        .timestamp_millis_opt(record.timestamp)
        .single()
        .ok_or_else(|| format!("record timestamp {} is out of range", record.timestamp))?;
    let headers: BTreeMap<String, Vec<u8>> = record
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                v.as_ref().map(|v| v.to_vec()).unwrap_or_default(),
            )
        })
        .collect();
    Ok(RecordAndOffset {
        record: Record {
            key: record.key.as_ref().map(|k| k.to_vec()),
            value: record.value.as_ref().map(|v| v.to_vec()),
            headers,
            timestamp,
        },
        offset: record.offset,
    })
}

/// The aborted transactions of one fetch, opened as the batches reach their first offset and
/// closed by their abort marker.
struct Transactions {
    pending: Vec<AbortedTransaction>,
    open: HashSet<i64>,
}

impl Transactions {
    fn new(aborted: &[AbortedTransaction]) -> Self {
        let mut pending = aborted.to_vec();
        // Latest first, so that the next one to open is at the end.
        pending.sort_by_key(|t| std::cmp::Reverse(t.first_offset));
        Self {
            pending,
            open: HashSet::new(),
        }
    }

    fn open_up_to(&mut self, last: i64) {
        while self.pending.last().is_some_and(|t| t.first_offset <= last) {
            let t = self.pending.pop().expect("checked");
            self.open.insert(t.producer_id);
        }
    }

    fn is_aborted(&self, producer_id: i64) -> bool {
        self.open.contains(&producer_id)
    }

    fn close(&mut self, producer_id: i64) {
        self.open.remove(&producer_id);
    }
}

#[cfg(test)]
mod tests {
    use indexmap::IndexMap;
    use kafka_protocol::records::{
        Compression, Record as WireRecord, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    use super::*;
    use crate::kafka::codecs::encode;

    /// One batch as a producer writes it: records from `base`, with `codec`.
    fn batch(base: i64, values: &[&str], codec: Codec, producer: Option<(i64, bool)>) -> Vec<u8> {
        let (producer_id, control) = producer.unwrap_or((-1, false));
        let records: Vec<WireRecord> = values
            .iter()
            .enumerate()
            .map(|(i, v)| WireRecord {
                transactional: producer.is_some(),
                control,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id,
                producer_epoch: 0,
                timestamp_type: TimestampType::Creation,
                offset: base + i as i64,
                // Kept in step with the offset, so that the encoder makes one batch of them.
                sequence: i as i32,
                timestamp: 1_748_854_800_000 + i as i64,
                key: if control {
                    // version 0, type: "abort" or "commit" by the value text.
                    Some(Bytes::from(vec![0, 0, 0, u8::from(*v == "commit")]))
                } else {
                    Some(Bytes::from(format!("k-{i}")))
                },
                value: (!control).then(|| Bytes::from(v.to_string())),
                headers: IndexMap::from_iter([(
                    "producer".to_string().into(),
                    Some(Bytes::from_static(b"test")),
                )]),
            })
            .collect();
        let mut out = bytes::BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: match codec {
                Codec::None => Compression::None,
                Codec::Gzip => Compression::Gzip,
                Codec::Snappy => Compression::Snappy,
                Codec::Lz4 => Compression::Lz4,
                Codec::Zstd => Compression::Zstd,
            },
        };
        let compressor =
            |plain: &mut bytes::BytesMut, out: &mut bytes::BytesMut, _: Compression| {
                out.extend_from_slice(&encode::compress(codec, plain));
                Ok(())
            };
        RecordBatchEncoder::encode_with_custom_compression(
            &mut out,
            records.iter(),
            &options,
            Some(compressor),
        )
        .unwrap();
        out.to_vec()
    }

    fn values(decoded: &Decoded) -> Vec<(i64, String)> {
        decoded
            .records
            .iter()
            .map(|r| {
                (
                    r.offset,
                    String::from_utf8(r.record.value.clone().unwrap()).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn batches_of_every_codec_are_read_from_the_offset_asked_for() {
        let mut bytes = Vec::new();
        let codecs = [
            Codec::None,
            Codec::Gzip,
            Codec::Snappy,
            Codec::Lz4,
            Codec::Zstd,
        ];
        for (i, codec) in codecs.into_iter().enumerate() {
            let base = i as i64 * 2;
            bytes.extend(batch(
                base,
                &[&format!("a{base}"), &format!("b{base}")],
                codec,
                None,
            ));
        }
        let decoded = decode(&Bytes::from(bytes), 1, &[]);
        assert!(decoded.unreadable.is_empty(), "{:?}", decoded.unreadable);
        assert_eq!(decoded.next_offset, Some(10));
        let got = values(&decoded);
        assert_eq!(got.len(), 9, "offset 0 is before the one asked for");
        assert_eq!(got[0], (1, "b0".into()));
        assert_eq!(got[8], (9, "b8".into()));
        let first = &decoded.records[0].record;
        assert_eq!(first.headers["producer"], b"test");
        assert_eq!(first.timestamp.timestamp_millis(), 1_748_854_800_001);
    }

    #[test]
    fn a_corrupt_batch_is_skipped_with_its_offsets_and_reading_goes_on() {
        let mut corrupt = batch(2, &["x", "y", "z"], Codec::Lz4, None);
        let n = corrupt.len();
        corrupt[n - 3] ^= 0xff;
        let mut bytes = batch(0, &["a", "b"], Codec::None, None);
        bytes.extend(corrupt);
        bytes.extend(batch(5, &["c"], Codec::Zstd, None));
        let decoded = decode(&Bytes::from(bytes), 0, &[]);
        assert_eq!(
            values(&decoded),
            vec![(0, "a".into()), (1, "b".into()), (5, "c".into())]
        );
        assert_eq!(decoded.unreadable.len(), 1);
        let u = &decoded.unreadable[0];
        assert_eq!((u.first, u.last), (2, 4));
        assert!(u.reason.contains("Cyclic redundancy check"), "{}", u.reason);
        assert_eq!(decoded.next_offset, Some(6));
    }

    #[test]
    fn a_batch_cut_short_by_the_fetch_size_waits_for_the_next_fetch() {
        let mut bytes = batch(0, &["a"], Codec::None, None);
        let second = batch(1, &["b"], Codec::Gzip, None);
        bytes.extend(&second[..second.len() - 5]);
        let decoded = decode(&Bytes::from(bytes), 0, &[]);
        assert_eq!(values(&decoded), vec![(0, "a".into())]);
        assert!(decoded.unreadable.is_empty());
        assert_eq!(decoded.next_offset, Some(1));
        // Nothing whole at all: the first batch is always whole, so that is unreadable.
        let alone = decode(&Bytes::from(second[..second.len() - 5].to_vec()), 1, &[]);
        assert_eq!(alone.unreadable.len(), 1);
        assert_eq!(alone.next_offset, Some(2));
        // Empty bytes: nothing seen.
        assert_eq!(decode(&Bytes::new(), 3, &[]).next_offset, None);
    }

    #[test]
    fn markers_advance_and_aborted_transactions_are_dropped() {
        let mut bytes = Vec::new();
        // Producer 7 commits offsets 0-1 (marker at 2); producer 8 aborts 3-4 (marker at 5);
        // plain records at 6.
        bytes.extend(batch(0, &["t1", "t2"], Codec::Lz4, Some((7, false))));
        bytes.extend(batch(2, &["commit"], Codec::None, Some((7, true))));
        bytes.extend(batch(3, &["gone1", "gone2"], Codec::Zstd, Some((8, false))));
        bytes.extend(batch(5, &["abort"], Codec::None, Some((8, true))));
        bytes.extend(batch(6, &["plain"], Codec::None, None));
        let aborted = [AbortedTransaction {
            producer_id: 8,
            first_offset: 3,
        }];
        let decoded = decode(&Bytes::from(bytes.clone()), 0, &aborted);
        assert_eq!(
            values(&decoded),
            vec![(0, "t1".into()), (1, "t2".into()), (6, "plain".into())]
        );
        assert_eq!(decoded.aborted, 2);
        assert_eq!(decoded.markers, 2);
        assert_eq!(decoded.next_offset, Some(7));
        // A fetch of only a marker still moves the offset on.
        let marker = batch(2, &["commit"], Codec::None, Some((7, true)));
        let alone = decode(&Bytes::from(marker), 2, &[]);
        assert!(alone.records.is_empty());
        assert_eq!(alone.next_offset, Some(3));
    }

    #[test]
    fn hostile_framing_is_unreadable_never_a_panic() {
        let good = batch(0, &["a"], Codec::None, None);
        // A negative length, an absurd one, an old magic, garbage.
        let mut negative = good.clone();
        negative[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert_eq!(decode(&Bytes::from(negative), 0, &[]).unreadable.len(), 1);
        let mut huge = good.clone();
        huge[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
        assert_eq!(decode(&Bytes::from(huge), 0, &[]).unreadable.len(), 1);
        let mut old = good.clone();
        old[MAGIC_AT] = 1;
        let decoded = decode(&Bytes::from(old), 0, &[]);
        assert!(decoded.unreadable[0].reason.contains("message format v1"));
        let mut overflow = good.clone();
        overflow[..8].copy_from_slice(&i64::MAX.to_be_bytes());
        overflow[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4]
            .copy_from_slice(&5i32.to_be_bytes());
        let decoded = decode(&Bytes::from(overflow), 0, &[]);
        assert_eq!(decoded.unreadable.len(), 1);
        for len in 0..good.len() {
            let _ = decode(&Bytes::from(good[..len].to_vec()), 0, &[]);
        }
        let noise: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let _ = decode(&Bytes::from(noise), 0, &[]);
    }
}
