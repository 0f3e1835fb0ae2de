//! Kafka's default partitioner for keyed records, bit for bit as the Java client computes it.
//!
//! rskafka leaves the choice of partition to its caller. We pick it exactly like the Java
//! client's default partitioner (`BuiltInPartitioner.partitionForKey`), which librdkafka-based
//! clients (Python's confluent-kafka, Go's confluent-kafka-go with `murmur2_random`) and
//! franz-go/sarama in their Java-compatible modes also reproduce. So a record keyed by an order
//! id lands on the same partition whichever of these clients produced it: all of one order's
//! events share a partition, and Kafka keeps them in order there.

/// Kafka's `org.apache.kafka.common.utils.Utils.murmur2`: 32-bit `MurmurHash2` with Kafka's seed.
///
/// The Java code works on signed `int`s with wrapping arithmetic and reads the input as
/// little-endian 4-byte chunks; the 1 to 3 trailing bytes are mixed with fall-through, each
/// byte masked with `0xff` (Java bytes are signed). Working on `u32` gives the same bits, since
/// wrapping multiplication, xor and the logical shift `>>>` do not care about the sign; the
/// result is reinterpreted as `i32` at the end, as Java returns it.
#[must_use]
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;

    // Java: `int h = seed ^ length;`. A Java array is shorter than 2^31, so keeping the low
    // 32 bits of a longer slice's length is only a choice for inputs Java cannot even hash.
    #[allow(clippy::cast_possible_truncation)]
    let mut h: u32 = SEED ^ (data.len() as u32);

    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }

    // The tail: Java's `switch (length % 4)` with fall-through from case 3 to 2 to 1.
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }

    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;

    h.cast_signed()
}

/// The partition Kafka's default partitioner chooses for a non-null `key` among `partitions`:
/// `Utils.toPositive(Utils.murmur2(key)) % partitions`, where `toPositive` clears the sign bit
/// (it is `n & 0x7fffffff`, not `abs`).
///
/// The result is in `0..partitions`.
///
/// # Panics
/// If `partitions <= 0`: a topic always has at least one partition, so this is a bug in the
/// caller.
#[must_use]
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    assert!(
        partitions > 0,
        "a topic has at least one partition, got {partitions}"
    );
    (murmur2(key) & 0x7fff_ffff) % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(label, key, murmur2, [partition for 1, 3, 6, 12 partitions])`.
    ///
    /// Produced by kafka-clients 4.1.1's `Utils.murmur2` and `Utils.toPositive(..) % n`, from a
    /// throwaway single-file Java program run with `java -cp 'kafka-clients-4.1.1.jar:…' Gen.java`.
    const JAVA_VECTORS: &[(&str, &[u8], i32, [i32; 4])] = &[
        ("empty", b"", 275_646_681, [0, 0, 3, 9]),
        ("a", b"a", -1_563_381_124, [0, 1, 4, 4]),
        ("ab", b"ab", 316_155_434, [0, 2, 2, 2]),
        ("abc", b"abc", 479_470_107, [0, 0, 3, 3]),
        ("abcd", b"abcd", -1_323_649_548, [0, 2, 2, 8]),
        ("abcde", b"abcde", 461_995_741, [0, 1, 1, 1]),
        ("abcdef", b"abcdef", 1_870_650_108, [0, 0, 0, 0]),
        ("abcdefg", b"abcdefg", -346_467_175, [0, 1, 1, 1]),
        ("abcdefgh", b"abcdefgh", -955_427_363, [0, 0, 3, 9]),
        ("21", b"21", -973_932_308, [0, 0, 0, 0]),
        ("foobar", b"foobar", -790_332_482, [0, 0, 0, 6]),
        (
            "uuid",
            b"123e4567-e89b-12d3-a456-426614174000",
            210_376_136,
            [0, 2, 2, 8],
        ),
        (
            "long",
            b"order-000000000042-shopstream-europe-west-the-quick-brown-fox-jumps-over-the-lazy-dog",
            -632_626_349,
            [0, 0, 3, 3],
        ),
        (
            "a-little-bit-long-string",
            b"a-little-bit-long-string",
            -985_981_536,
            [0, 2, 2, 8],
        ),
        (
            "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
            b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
            -58_897_971,
            [0, 2, 5, 5],
        ),
        (
            "utf-8 commande-é",
            "commande-é".as_bytes(),
            1_114_137_275,
            [0, 2, 5, 11],
        ),
        ("bytes ff", &[0xff], -311_467_685, [0, 0, 3, 3]),
        ("bytes 80 ff", &[0x80, 0xff], -80_095_470, [0, 2, 2, 2]),
        (
            "bytes ff fe 80",
            &[0xff, 0xfe, 0x80],
            -160_726_397,
            [0, 0, 3, 3],
        ),
        (
            "bytes de ad be ef",
            &[0xde, 0xad, 0xbe, 0xef],
            833_564_499,
            [0, 0, 3, 3],
        ),
        (
            "bytes 80 81 82 83 fd fe ff",
            &[0x80, 0x81, 0x82, 0x83, 0xfd, 0xfe, 0xff],
            1_632_358_497,
            [0, 0, 3, 9],
        ),
    ];

    #[test]
    fn murmur2_matches_the_java_client() {
        for &(label, key, hash, _) in JAVA_VECTORS {
            assert_eq!(murmur2(key), hash, "murmur2 of {label}");
        }
    }

    #[test]
    fn partition_for_key_matches_the_java_client() {
        for &(label, key, _, expected) in JAVA_VECTORS {
            for (n, want) in [1, 3, 6, 12].into_iter().zip(expected) {
                assert_eq!(
                    partition_for_key(key, n),
                    want,
                    "partition of {label} among {n}"
                );
            }
        }
    }

    #[test]
    fn every_tail_length_is_covered() {
        let lengths: std::collections::BTreeSet<usize> = JAVA_VECTORS
            .iter()
            .map(|(_, key, _, _)| key.len() % 4)
            .collect();
        assert_eq!(lengths.into_iter().collect::<Vec<_>>(), [0, 1, 2, 3]);
    }

    #[test]
    fn uuid_keys_spread_over_three_partitions() {
        const KEYS: usize = 10_000;
        let mut counts = [0_usize; 3];
        for _ in 0..KEYS {
            let key = uuid::Uuid::new_v4().to_string();
            let p = partition_for_key(key.as_bytes(), 3);
            assert!((0..3).contains(&p), "partition {p} out of range");
            counts[usize::try_from(p).expect("non-negative")] += 1;
        }
        for (p, &count) in counts.iter().enumerate() {
            assert!(
                count * 4 > KEYS,
                "partition {p} got {count} of {KEYS} keys: {counts:?}"
            );
        }
    }

    #[test]
    fn the_same_key_always_lands_on_the_same_partition() {
        let key = b"3f1c2a4e-9b7d-4c1e-8f00-123456789abc";
        let first = partition_for_key(key, 12);
        for _ in 0..100 {
            assert_eq!(partition_for_key(key, 12), first);
        }
    }

    #[test]
    #[should_panic(expected = "at least one partition")]
    fn zero_partitions_is_a_bug() {
        let _ = partition_for_key(b"a", 0);
    }

    #[test]
    #[should_panic(expected = "at least one partition")]
    fn negative_partitions_is_a_bug() {
        let _ = partition_for_key(b"a", -3);
    }
}
