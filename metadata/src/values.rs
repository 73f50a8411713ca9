//! Value schemas, one per key kind (see [`crate::keys`]). Hot values (read or
//! written by every produce and fetch) are fixed binary layouts led by a
//! version byte; rare ones (topic records) are JSON. All values stay far
//! below FoundationDB's 100 kB value limit: `SegmentRecord` is bounded by
//! [`MAX_CHUNKS_PER_SEGMENT`].

use serde::{Deserialize, Serialize};

use crate::Error;

/// At most this many chunks in one segment commit (keeps the segment record
/// under 100 kB and the transaction well under 10 MB).
pub const MAX_CHUNKS_PER_SEGMENT: usize = 4096;

/// How a topic's batches are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompressionName {
    None,
    #[default]
    Lz4,
    Zstd,
}

/// Per-topic configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicConfig {
    /// Batch compression. lz4 costs little CPU; zstd saves more storage.
    pub compression: CompressionName,
    /// Delete records older than this (the compactor enforces it). None keeps forever.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_ms: Option<u64>,
    /// Delete the oldest records past this many bytes per partition.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_bytes: Option<u64>,
}

/// Value of `Topic(id)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    pub name: String,
    pub partitions: u32,
    pub config: TopicConfig,
    pub created_ms: i64,
    /// Random nonce of the creating call, so a retry after an unknown commit
    /// result recognises its own topic.
    pub nonce: u64,
}

/// Value of `Partition(topic, p)`: `v1 | log_start u64 | high_watermark u64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct PartitionState {
    /// The first offset still readable.
    pub log_start_offset: u64,
    /// One past the last committed offset.
    pub high_watermark: u64,
}

/// Value of `Index(topic, p, base)`:
/// `v1 | object_len u16 | object | byte_offset u64 | byte_len u32 | count u32 | max_ts i64`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// Object key, relative to the store's prefix.
    pub object: String,
    pub byte_offset: u64,
    pub byte_len: u32,
    pub record_count: u32,
    pub max_timestamp: i64,
}

/// Value of `Segment(id)`: `v1 | committed_ms i64 | n u32 | (topic u64, partition u32, base u64)*`;
/// a base of `u64::MAX` marks a chunk that was rejected (its topic was gone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentRecord {
    pub committed_ms: i64,
    pub chunks: Vec<(u64, u32, Option<u64>)>,
}

/// Value of `Lease(name)`: `v1 | holder u64 | expires_ms i64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseRecord {
    /// Random id of the process holding the lease.
    pub holder: u64,
    /// The lease lapses at this time unless renewed.
    pub expires_ms: i64,
}

const V1: u8 = 1;

fn corrupt(what: &'static str) -> Error {
    Error::Corrupt(what)
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_at_checked(N)?;
        self.0 = rest;
        head.try_into().ok()
    }
    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_be_bytes)
    }
    fn i64(&mut self) -> Option<i64> {
        self.take().map(i64::from_be_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_be_bytes)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_be_bytes)
    }
    fn version(&mut self) -> Option<()> {
        (self.take::<1>()? == [V1]).then_some(())
    }
}

pub fn encode_u64(v: u64) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

pub fn decode_u64(b: &[u8]) -> Result<u64, Error> {
    Reader(b).u64().ok_or(corrupt("u64 value"))
}

impl PartitionState {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![V1];
        v.extend_from_slice(&self.log_start_offset.to_be_bytes());
        v.extend_from_slice(&self.high_watermark.to_be_bytes());
        v
    }
    pub fn decode(b: &[u8]) -> Result<Self, Error> {
        let mut r = Reader(b);
        (|| {
            r.version()?;
            Some(Self {
                log_start_offset: r.u64()?,
                high_watermark: r.u64()?,
            })
        })()
        .ok_or(corrupt("partition state"))
    }
}

impl IndexEntry {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(27 + self.object.len());
        v.push(V1);
        v.extend_from_slice(&(self.object.len() as u16).to_be_bytes());
        v.extend_from_slice(self.object.as_bytes());
        v.extend_from_slice(&self.byte_offset.to_be_bytes());
        v.extend_from_slice(&self.byte_len.to_be_bytes());
        v.extend_from_slice(&self.record_count.to_be_bytes());
        v.extend_from_slice(&self.max_timestamp.to_be_bytes());
        v
    }
    pub fn decode(b: &[u8]) -> Result<Self, Error> {
        let mut r = Reader(b);
        (|| {
            r.version()?;
            let n = r.u16()? as usize;
            let (obj, rest) = r.0.split_at_checked(n)?;
            let object = std::str::from_utf8(obj).ok()?.to_owned();
            r.0 = rest;
            Some(Self {
                object,
                byte_offset: r.u64()?,
                byte_len: r.u32()?,
                record_count: r.u32()?,
                max_timestamp: r.i64()?,
            })
        })()
        .ok_or(corrupt("index entry"))
    }
}

impl SegmentRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(13 + self.chunks.len() * 20);
        v.push(V1);
        v.extend_from_slice(&self.committed_ms.to_be_bytes());
        v.extend_from_slice(&(self.chunks.len() as u32).to_be_bytes());
        for &(t, p, base) in &self.chunks {
            v.extend_from_slice(&t.to_be_bytes());
            v.extend_from_slice(&p.to_be_bytes());
            v.extend_from_slice(&base.unwrap_or(u64::MAX).to_be_bytes());
        }
        v
    }
    pub fn decode(b: &[u8]) -> Result<Self, Error> {
        let mut r = Reader(b);
        (|| {
            r.version()?;
            let committed_ms = r.i64()?;
            let n = r.u32()? as usize;
            if r.0.len() != n * 20 {
                return None;
            }
            let chunks = (0..n)
                .map(|_| {
                    Some((
                        r.u64()?,
                        r.u32()?,
                        Some(r.u64()?).filter(|&b| b != u64::MAX),
                    ))
                })
                .collect::<Option<Vec<_>>>()?;
            Some(Self {
                committed_ms,
                chunks,
            })
        })()
        .ok_or(corrupt("segment record"))
    }
}

impl LeaseRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![V1];
        v.extend_from_slice(&self.holder.to_be_bytes());
        v.extend_from_slice(&self.expires_ms.to_be_bytes());
        v
    }
    pub fn decode(b: &[u8]) -> Result<Self, Error> {
        let mut r = Reader(b);
        (|| {
            r.version()?;
            Some(Self {
                holder: r.u64()?,
                expires_ms: r.i64()?,
            })
        })()
        .ok_or(corrupt("lease"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn partition_state_round_trips(a in any::<u64>(), b in any::<u64>()) {
            let s = PartitionState { log_start_offset: a, high_watermark: b };
            prop_assert_eq!(PartitionState::decode(&s.encode()).unwrap(), s);
        }
        #[test]
        fn index_entry_round_trips(object in "[a-z0-9/]{0,80}", o in any::<u64>(), l in any::<u32>(), c in any::<u32>(), t in any::<i64>()) {
            let e = IndexEntry { object, byte_offset: o, byte_len: l, record_count: c, max_timestamp: t };
            prop_assert_eq!(IndexEntry::decode(&e.encode()).unwrap(), e);
        }
        #[test]
        fn segment_record_round_trips(ts in any::<i64>(), chunks in proptest::collection::vec((any::<u64>(), any::<u32>(), proptest::option::of(0u64..u64::MAX)), 0..50)) {
            let r = SegmentRecord { committed_ms: ts, chunks };
            prop_assert_eq!(SegmentRecord::decode(&r.encode()).unwrap(), r);
        }
        #[test]
        fn lease_round_trips(holder in any::<u64>(), expires_ms in any::<i64>()) {
            let l = LeaseRecord { holder, expires_ms };
            prop_assert_eq!(LeaseRecord::decode(&l.encode()).unwrap(), l);
        }
        #[test]
        fn garbage_is_an_error_not_a_panic(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = PartitionState::decode(&b);
            let _ = IndexEntry::decode(&b);
            let _ = SegmentRecord::decode(&b);
            let _ = LeaseRecord::decode(&b);
        }
    }

    #[test]
    fn max_segment_record_fits_fdb_value_limit() {
        let r = SegmentRecord {
            committed_ms: 0,
            chunks: vec![(1, 2, Some(3)); MAX_CHUNKS_PER_SEGMENT],
        };
        assert!(r.encode().len() < 100_000);
    }
}
