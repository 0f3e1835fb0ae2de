//! The five record batch codecs of Kafka (none, gzip, snappy, lz4, zstd), decoded in pure
//! Rust, for [`super::batches`].
//!
//! rskafka 0.6 reads lz4 and zstd only through the `lz4` and `zstd` crates, which compile C, so
//! shopstream decodes batches itself: gzip with flate2's Rust backend, snappy with `snap` (both
//! already in the tree through rskafka), lz4 with `lz4_flex` (already in the tree through fjall)
//! and zstd with `ruzstd`, a decoder written in Rust. What each codec's bytes look like in a
//! Kafka batch:
//! - gzip: one gzip stream (RFC 1952).
//! - snappy: the Java client writes xerial's framing (`\x82SNAPPY\0`, two version words, then
//!   blocks each prefixed by its big-endian length); librdkafka and kafka-python may write one
//!   raw snappy block. Both are read.
//! - lz4: the LZ4 frame format (Kafka 0.10 and later, KIP-57).
//! - zstd: one or more zstd frames.
//!
//! Decompression is bounded ([`MAX_DECOMPRESSED`]): a small batch that expands without end (a
//! "zip bomb") is unreadable rather than a way to exhaust memory.

use std::io::Read;

/// Most bytes one batch may decompress to. The broker bounds a batch's compressed size
/// (`message.max.bytes`, 1 MiB by default), not what it expands to.
pub const MAX_DECOMPRESSED: usize = 64 * 1024 * 1024;

/// A batch's codec, from the three low bits of its attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    pub fn from_attributes(attributes: i16) -> Option<Codec> {
        Some(match attributes & 0x7 {
            0 => Codec::None,
            1 => Codec::Gzip,
            2 => Codec::Snappy,
            3 => Codec::Lz4,
            4 => Codec::Zstd,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Gzip => "gzip",
            Codec::Snappy => "snappy",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }
}

/// The magic of xerial's snappy framing, as the Java client writes it.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";

/// Decompresses the records section of a batch written with `codec`.
///
/// # Errors
/// A message saying why the bytes are not what the codec reads, or that they expand beyond
/// [`MAX_DECOMPRESSED`].
pub fn decompress(codec: Codec, compressed: &[u8]) -> Result<Vec<u8>, String> {
    match codec {
        Codec::None => Ok(compressed.to_vec()),
        Codec::Gzip => read_bounded(flate2::read::GzDecoder::new(compressed), "gzip"),
        Codec::Snappy => snappy(compressed),
        Codec::Lz4 => read_bounded(lz4_flex::frame::FrameDecoder::new(compressed), "lz4"),
        Codec::Zstd => {
            let decoder = ruzstd::decoding::StreamingDecoder::new(compressed)
                .map_err(|e| format!("zstd: {e}"))?;
            read_bounded(decoder, "zstd")
        }
    }
}

/// Reads `reader` to its end, failing past [`MAX_DECOMPRESSED`] bytes.
fn read_bounded(reader: impl Read, codec: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    reader
        .take(MAX_DECOMPRESSED as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("{codec}: {e}"))?;
    if out.len() > MAX_DECOMPRESSED {
        return Err(format!(
            "{codec}: expands to more than {MAX_DECOMPRESSED} bytes"
        ));
    }
    Ok(out)
}

/// xerial framing or one raw block.
fn snappy(compressed: &[u8]) -> Result<Vec<u8>, String> {
    let Some(mut rest) = compressed.strip_prefix(XERIAL_MAGIC) else {
        return snappy_block(compressed, 0);
    };
    // Version and minimum compatible version.
    rest = rest
        .get(8..)
        .ok_or("snappy: xerial header cut short".to_string())?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (length, tail) = rest
            .split_first_chunk::<4>()
            .ok_or("snappy: xerial block length cut short".to_string())?;
        let length = u32::from_be_bytes(*length) as usize;
        let block = tail
            .get(..length)
            .ok_or("snappy: xerial block cut short".to_string())?;
        out.extend(snappy_block(block, out.len())?);
        rest = &tail[length..];
    }
    Ok(out)
}

/// One raw snappy block, refused when it would take the output past the bound.
fn snappy_block(block: &[u8], already: usize) -> Result<Vec<u8>, String> {
    let length = snap::raw::decompress_len(block).map_err(|e| format!("snappy: {e}"))?;
    if already.saturating_add(length) > MAX_DECOMPRESSED {
        return Err(format!(
            "snappy: expands to more than {MAX_DECOMPRESSED} bytes"
        ));
    }
    snap::raw::Decoder::new()
        .decompress_vec(block)
        .map_err(|e| format!("snappy: {e}"))
}

/// Compressors for the tests of this module and of [`super::batches`]: what the Java client
/// writes for each codec.
#[cfg(test)]
pub(crate) mod encode {
    use std::io::Write;

    use super::{Codec, XERIAL_MAGIC};

    pub fn compress(codec: Codec, plain: &[u8]) -> Vec<u8> {
        match codec {
            Codec::None => plain.to_vec(),
            Codec::Gzip => {
                let mut encoder =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                encoder.write_all(plain).unwrap();
                encoder.finish().unwrap()
            }
            Codec::Snappy => {
                let mut out = XERIAL_MAGIC.to_vec();
                out.extend(1i32.to_be_bytes());
                out.extend(1i32.to_be_bytes());
                for chunk in plain.chunks(1000) {
                    let block = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
                    out.extend((block.len() as u32).to_be_bytes());
                    out.extend(block);
                }
                out
            }
            Codec::Lz4 => {
                let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::new());
                encoder.write_all(plain).unwrap();
                encoder.finish().unwrap()
            }
            Codec::Zstd => ruzstd::encoding::compress_to_vec(
                plain,
                ruzstd::encoding::CompressionLevel::Fastest,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Codec; 5] = [
        Codec::None,
        Codec::Gzip,
        Codec::Snappy,
        Codec::Lz4,
        Codec::Zstd,
    ];

    #[test]
    fn every_codec_reads_what_its_compressor_wrote() {
        let plain: Vec<u8> = (0..20_000u32)
            .flat_map(|n| (n % 251).to_le_bytes())
            .collect();
        for codec in ALL {
            let compressed = encode::compress(codec, &plain);
            assert_eq!(decompress(codec, &compressed).unwrap(), plain, "{codec:?}");
        }
        // A raw snappy block, as librdkafka writes it.
        let raw = snap::raw::Encoder::new().compress_vec(&plain).unwrap();
        assert_eq!(decompress(Codec::Snappy, &raw).unwrap(), plain);
    }

    #[test]
    fn corrupt_or_truncated_bytes_are_an_error_never_a_panic() {
        let plain = b"{\"order_id\":\"o-1\"}".repeat(50);
        for codec in ALL.into_iter().filter(|c| *c != Codec::None) {
            let good = encode::compress(codec, &plain);
            for cut in [0, 1, good.len() / 2, good.len() - 1] {
                let _ = decompress(codec, &good[..cut]);
            }
            let mut flipped = good.clone();
            for i in (0..flipped.len()).step_by(3) {
                flipped[i] ^= 0x5a;
            }
            // Either refused or some other bytes: never the original, never a panic.
            if let Ok(out) = decompress(codec, &flipped) {
                assert_ne!(out, plain, "{codec:?}");
            }
            assert!(decompress(codec, b"definitely not compressed").is_err());
        }
    }

    #[test]
    fn a_batch_that_expands_without_bound_is_refused() {
        let plain = vec![0u8; MAX_DECOMPRESSED + 1];
        for codec in [Codec::Gzip, Codec::Lz4, Codec::Zstd, Codec::Snappy] {
            let compressed = encode::compress(codec, &plain);
            let error = decompress(codec, &compressed).unwrap_err();
            assert!(error.contains("expands to more than"), "{codec:?}: {error}");
        }
    }
}
