//! Batch compression codecs, numbered as in Kafka's batch attributes
//! (bits 0–2). lz4 uses the LZ4 *frame* format, as Kafka does.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Reason, Result, corrupt};

/// How the records section of a batch is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    /// Fast, modest ratio: the default.
    #[default]
    Lz4,
    /// Better ratio, more CPU.
    Zstd,
}

impl Compression {
    /// The codec id in Kafka's batch attributes.
    pub fn kafka_id(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    pub fn from_kafka_id(id: u8) -> Option<Self> {
        match id {
            0 => Some(Compression::None),
            3 => Some(Compression::Lz4),
            4 => Some(Compression::Zstd),
            _ => None,
        }
    }

    pub(crate) fn compress(self, input: &[u8], out: &mut Vec<u8>) -> Result<()> {
        match self {
            Compression::None => out.extend_from_slice(input),
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
            Compression::Lz4 => lz4_flex::frame::FrameDecoder::new(input)
                .take(limit as u64 + 1)
                .read_to_end(&mut out),
            Compression::Zstd => zstd::stream::read::Decoder::new(input)
                .map_err(bad)?
                .take(limit as u64 + 1)
                .read_to_end(&mut out),
        };
        read.map_err(bad)?;
        if out.len() > limit {
            return Err(Error::TooLarge { limit });
        }
        Ok(out)
    }
}
