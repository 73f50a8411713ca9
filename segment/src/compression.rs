//! Batch compression codecs, numbered as in Kafka's batch attributes
//! (bits 0–2), so batches Kafka clients send are stored as they are and
//! read back by Silt's own reader. lz4 uses the LZ4 *frame* format, as
//! Kafka does; snappy is read both raw (librdkafka) and in the xerial
//! framing the Java client and kafka-python write, and written raw.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Reason, Result, corrupt};

/// How the records section of a batch is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    /// What Kafka clients often send; slow. Silt itself writes it only on request.
    Gzip,
    Snappy,
    /// Fast, modest ratio: the default.
    #[default]
    Lz4,
    /// Better ratio, more CPU.
    Zstd,
}

/// Largest zstd window a decoder allocates: 2^24 bytes.
const ZSTD_MAX_WINDOW_LOG: u32 = 24;

/// The stream header of xerial's snappy framing.
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\0";
/// Magic, version and compatible-version fields.
const XERIAL_HEADER_LEN: usize = 16;

impl Compression {
    /// The codec id in Kafka's batch attributes.
    pub fn kafka_id(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    pub fn from_kafka_id(id: u8) -> Option<Self> {
        match id {
            0 => Some(Compression::None),
            1 => Some(Compression::Gzip),
            2 => Some(Compression::Snappy),
            3 => Some(Compression::Lz4),
            4 => Some(Compression::Zstd),
            _ => None,
        }
    }

    pub(crate) fn compress(self, input: &[u8], out: &mut Vec<u8>) -> Result<()> {
        match self {
            Compression::None => out.extend_from_slice(input),
            Compression::Gzip => {
                let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
                enc.write_all(input)?;
                enc.finish()?;
            }
            Compression::Snappy => {
                let compressed = snap::raw::Encoder::new()
                    .compress_vec(input)
                    .map_err(|_| Error::Encode("snappy encoder failed"))?;
                out.extend_from_slice(&compressed);
            }
            Compression::Lz4 => {
                let mut enc = lz4_flex::frame::FrameEncoder::new(out);
                enc.write_all(input)?;
                enc.finish()
                    .map_err(|_| Error::Encode("lz4 frame encoder failed"))?;
            }
            Compression::Zstd => {
                let compressed = zstd::bulk::compress(input, 1)?;
                out.extend_from_slice(&compressed);
            }
        }
        Ok(())
    }

    /// Decompresses at most `limit` bytes; more is an error, never an allocation.
    pub(crate) fn decompress(self, input: &[u8], limit: usize, at: usize) -> Result<Vec<u8>> {
        let bad = |e: std::io::Error| corrupt("batch", at, Reason::Decompress(e.to_string()));
        // Sized for a typical ratio up front: growing by doubling copies
        // the output and faults in fresh pages each time.
        let mut out = Vec::with_capacity(limit.min(input.len().saturating_mul(4)));
        let read = match self {
            Compression::None => return Ok(input.to_vec()),
            Compression::Gzip => flate2::read::GzDecoder::new(input)
                .take(limit as u64 + 1)
                .read_to_end(&mut out),
            Compression::Snappy => return snappy_decompress(input, limit, at),
            Compression::Lz4 => lz4_flex::frame::FrameDecoder::new(input)
                .take(limit as u64 + 1)
                .read_to_end(&mut out),
            Compression::Zstd => {
                let mut d = zstd::stream::read::Decoder::new(input).map_err(bad)?;
                // The frame's window is allocated up front: cap it (16 MiB
                // covers every level up to 19 and what Kafka clients send).
                d.window_log_max(ZSTD_MAX_WINDOW_LOG).map_err(bad)?;
                d.take(limit as u64 + 1).read_to_end(&mut out)
            }
        };
        read.map_err(bad)?;
        if out.len() > limit {
            return Err(Error::TooLarge { limit });
        }
        Ok(out)
    }
}

/// Raw snappy, or xerial's framing of it: the stream header, then blocks
/// of `length u32 BE | raw snappy`.
fn snappy_decompress(input: &[u8], limit: usize, at: usize) -> Result<Vec<u8>> {
    let bad = |why: String| corrupt("batch", at, Reason::Decompress(why));
    let raw = |block: &[u8], out: &mut Vec<u8>| -> Result<()> {
        let n = snap::raw::decompress_len(block).map_err(|e| bad(e.to_string()))?;
        if out.len() + n > limit {
            return Err(Error::TooLarge { limit });
        }
        let start = out.len();
        out.resize(start + n, 0);
        snap::raw::Decoder::new()
            .decompress(block, &mut out[start..])
            .map_err(|e| bad(e.to_string()))?;
        Ok(())
    };
    let mut out = Vec::new();
    if !input.starts_with(XERIAL_MAGIC) {
        raw(input, &mut out)?;
        return Ok(out);
    }
    let mut rest = input
        .get(XERIAL_HEADER_LEN..)
        .ok_or_else(|| bad("truncated xerial header".into()))?;
    while !rest.is_empty() {
        let (len, body) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| bad("truncated xerial block length".into()))?;
        let len = u32::from_be_bytes(*len) as usize;
        let block = body
            .get(..len)
            .ok_or_else(|| bad("truncated xerial block".into()))?;
        raw(block, &mut out)?;
        rest = &body[len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    #[test]
    fn every_codec_round_trips_and_keeps_its_kafka_id() {
        let input: Vec<u8> = (0..10_000u32)
            .flat_map(|i| (i % 251).to_be_bytes())
            .collect();
        for c in ALL {
            let mut out = Vec::new();
            c.compress(&input, &mut out).unwrap();
            assert_eq!(c.decompress(&out, 1 << 20, 0).unwrap(), input, "{c:?}");
            assert_eq!(Compression::from_kafka_id(c.kafka_id()), Some(c));
        }
    }

    #[test]
    fn decompression_is_bounded() {
        let input = vec![7u8; 100_000];
        // `None` is never decompressed: readers slice the batch instead.
        for c in &ALL[1..] {
            let mut out = Vec::new();
            c.compress(&input, &mut out).unwrap();
            assert!(
                matches!(c.decompress(&out, 1000, 0), Err(Error::TooLarge { .. })),
                "{c:?}"
            );
        }
    }

    #[test]
    fn xerial_framed_snappy_is_read() {
        let input = b"hello xerial hello xerial hello xerial".repeat(50);
        let (a, b) = input.split_at(700);
        let mut framed = XERIAL_MAGIC.to_vec();
        framed.extend_from_slice(&1i32.to_be_bytes());
        framed.extend_from_slice(&1i32.to_be_bytes());
        for part in [a, b] {
            let block = snap::raw::Encoder::new().compress_vec(part).unwrap();
            framed.extend_from_slice(&(block.len() as u32).to_be_bytes());
            framed.extend_from_slice(&block);
        }
        let out = Compression::Snappy.decompress(&framed, 1 << 20, 0).unwrap();
        assert_eq!(out, input);
        framed.truncate(framed.len() - 3);
        assert!(Compression::Snappy.decompress(&framed, 1 << 20, 0).is_err());
    }
}
