//! Value schemas, one per key kind (see [`crate::keys`]). Hot values (read or
//! written by every produce and fetch) are fixed binary layouts led by a
//! version byte; rare ones (topic, group and member records) are JSON. All
//! values stay below FoundationDB's 100 kB value limit: `SegmentRecord` and
//! `Answer` are bounded by [`MAX_CHUNKS_PER_SEGMENT`].

pub(crate) mod groups;
mod producers;
pub mod shares;

use serde::{Deserialize, Serialize};

use crate::Error;

pub use groups::{
    ClassicGroup, ClassicMember, ClassicPhase, ClassicProtocol, CommittedOffset, GroupProtocol,
    GroupRecord, MAX_OFFSET_METADATA, MemberRecord, OffsetReset, Opaque, TopicAssignment,
    decode_json,
};
pub use producers::{
    Answer, AnswerPart, IdempotencyRecord, ProducerRecord, SEQUENCE_WINDOW, SequenceWindow,
    SequencedBatch,
};

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
    /// Delete records older than this (the compactor enforces it, whole
    /// index entries at a time, after archiving them). None keeps forever.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_ms: Option<u64>,
    /// Delete the oldest records past this many bytes per partition.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_bytes: Option<u64>,
    /// Serve offsets below the log start from the Parquet archive, so
    /// consumers replay history that retention removed from the log.
    #[serde(
        rename = "archive.serve_reads",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub archive_serve_reads: bool,
    /// Delete archive files whose newest record is older than this. None
    /// (the default) keeps the archive forever.
    #[serde(
        rename = "archive.retention_ms",
        skip_serializing_if = "Option::is_none"
    )]
    pub archive_retention_ms: Option<u64>,
    /// Also commit each archive file to the Iceberg table `silt.<topic>`
    /// of the compactor's SQL catalog. Incompatible with
    /// `archive.retention_ms` (the table would point at deleted files).
    #[serde(rename = "archive.iceberg", skip_serializing_if = "std::ops::Not::not")]
    pub archive_iceberg: bool,
}

impl TopicConfig {
    /// Refuses settings that contradict each other.
    pub fn validate(&self) -> Result<(), Error> {
        if self.archive_iceberg && self.archive_retention_ms.is_some() {
            return Err(Error::Invalid(
                "archive.iceberg keeps every archive file: it cannot have archive.retention_ms"
                    .into(),
            ));
        }
        Ok(())
    }
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

/// Value of `Partition(topic, p)`:
/// `v2 | log_start u64 | high_watermark u64 | retained_bytes u64` (a `v1`
/// value, without the bytes, reads as 0 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct PartitionState {
    /// The first offset still readable.
    pub log_start_offset: u64,
    /// One past the last committed offset.
    pub high_watermark: u64,
    /// Stored (compressed) bytes of `[log_start, high_watermark)`: what
    /// `retention_bytes` bounds.
    pub retained_bytes: u64,
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

/// Value of `Segment(id)`:
/// `v2 | committed_ms i64 | n u32 | base u64 * n | m u32 | outcome * m`, one
/// base per chunk of the commit (`u64::MAX`: the chunk got no offsets) and
/// one [`UnitOutcome`] per commit unit (13 bytes each). The chunks' topics
/// and partitions are the commit's own, so a retry knows them already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentRecord {
    pub committed_ms: i64,
    pub bases: Vec<Option<u64>>,
    pub units: Vec<UnitOutcome>,
}

/// What became of one commit unit (see `crate::SegmentCommit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitOutcome {
    Committed,
    /// An earlier request with the same producer sequence or idempotency key
    /// was committed; its answer is stored under that key.
    Duplicate,
    Refused(Refusal),
}

/// Why a conditional write (a commit unit, an offset commit) was refused.
/// Nothing of it was applied.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize,
)]
pub enum Refusal {
    #[error("a topic or partition of the request no longer exists")]
    TopicGone,
    #[error("producer {producer_id} is unknown")]
    UnknownProducer { producer_id: u64 },
    #[error("the producer was fenced: its current epoch is {epoch}")]
    ProducerFenced { epoch: u32 },
    #[error("out-of-order sequence: expected {expected}")]
    OutOfOrderSequence { expected: u64 },
    #[error("sequence too old: answers are kept from sequence {oldest} on")]
    SequenceTooOld { oldest: u64 },
    #[error("the idempotency key was used for a different request")]
    IdempotencyKeyReused,
    #[error("the idempotent request does not match the one stored under its key")]
    RequestMismatch,
    #[error("unknown member (it left, or its session expired); join again")]
    UnknownMember,
    #[error("stale generation: the group is at generation {generation}")]
    StaleGeneration { generation: u32 },
    #[error("the group is rebalancing: generation {generation} is current")]
    RebalanceInProgress { generation: u32 },
    #[error("partition {partition} of topic id {topic_id} is not assigned to this member")]
    NotAssigned { topic_id: u64, partition: u32 },
    #[error("the group has live members; commit as a member")]
    GroupHasMembers,
    #[error("the group's live members use another membership protocol")]
    InconsistentProtocol,
}

impl Refusal {
    fn encode_into(&self, v: &mut Vec<u8>) {
        let (code, a, b): (u8, u64, u32) = match *self {
            Refusal::TopicGone => (1, 0, 0),
            Refusal::UnknownProducer { producer_id } => (2, producer_id, 0),
            Refusal::ProducerFenced { epoch } => (3, 0, epoch),
            Refusal::OutOfOrderSequence { expected } => (4, expected, 0),
            Refusal::SequenceTooOld { oldest } => (5, oldest, 0),
            Refusal::IdempotencyKeyReused => (6, 0, 0),
            Refusal::RequestMismatch => (7, 0, 0),
            Refusal::UnknownMember => (8, 0, 0),
            Refusal::StaleGeneration { generation } => (9, 0, generation),
            Refusal::RebalanceInProgress { generation } => (10, 0, generation),
            Refusal::NotAssigned {
                topic_id,
                partition,
            } => (11, topic_id, partition),
            Refusal::GroupHasMembers => (12, 0, 0),
            Refusal::InconsistentProtocol => (13, 0, 0),
        };
        v.push(code);
        v.extend_from_slice(&a.to_be_bytes());
        v.extend_from_slice(&b.to_be_bytes());
    }

    fn decode(code: u8, a: u64, b: u32) -> Option<Self> {
        Some(match code {
            1 => Refusal::TopicGone,
            2 => Refusal::UnknownProducer { producer_id: a },
            3 => Refusal::ProducerFenced { epoch: b },
            4 => Refusal::OutOfOrderSequence { expected: a },
            5 => Refusal::SequenceTooOld { oldest: a },
            6 => Refusal::IdempotencyKeyReused,
            7 => Refusal::RequestMismatch,
            8 => Refusal::UnknownMember,
            9 => Refusal::StaleGeneration { generation: b },
            10 => Refusal::RebalanceInProgress { generation: b },
            11 => Refusal::NotAssigned {
                topic_id: a,
                partition: b,
            },
            12 => Refusal::GroupHasMembers,
            13 => Refusal::InconsistentProtocol,
            _ => return None,
        })
    }
}

/// Value of `Lease(name)`: `v1 | holder u64 | expires_ms i64 [| contact
/// short_str]` (no contact: none given; older readers ignore it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseRecord {
    /// Random id of the process holding the lease.
    pub holder: u64,
    /// The lease lapses at this time unless renewed.
    pub expires_ms: i64,
    /// How others reach the holder (the sequencer's URL), or empty.
    pub contact: String,
}

/// Value of `JobStatus(job)`, JSON: what a singleton job's last round
/// did, for operators (the console, `GET /v1/cluster`). Written only by
/// the holder of the job's lease, checked in the same transaction.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JobStatus {
    /// The lease holder that ran the round.
    pub holder: u64,
    /// When the round finished, ms since the epoch.
    pub finished_ms: i64,
    /// The job's own report (its schema is the job's).
    pub report: serde_json::Value,
}

impl JobStatus {
    pub fn encode(&self) -> Vec<u8> {
        groups::encode_json(self)
    }
    pub fn decode(b: &[u8]) -> Result<Self, Error> {
        groups::decode_json(b, "job status")
    }
}

pub(crate) const V1: u8 = 1;
const V2: u8 = 2;

pub(crate) fn corrupt(what: &'static str) -> Error {
    Error::Corrupt(what)
}

pub(crate) struct Reader<'a>(pub &'a [u8]);

impl Reader<'_> {
    pub(crate) fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_at_checked(N)?;
        self.0 = rest;
        head.try_into().ok()
    }
    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_be_bytes)
    }
    pub(crate) fn i64(&mut self) -> Option<i64> {
        self.take().map(i64::from_be_bytes)
    }
    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_be_bytes)
    }
    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_be_bytes)
    }
    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|[b]| b)
    }
    pub(crate) fn version(&mut self) -> Option<()> {
        (self.u8()? == V1).then_some(())
    }
    /// `len u16 | UTF-8 bytes`.
    pub(crate) fn short_str(&mut self) -> Option<String> {
        let n = self.u16()? as usize;
        let (s, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(std::str::from_utf8(s).ok()?.to_owned())
    }
    pub(crate) fn end(&self) -> Option<()> {
        self.0.is_empty().then_some(())
    }
}

pub(crate) fn put_short_str(v: &mut Vec<u8>, s: &str) {
    let n = s.len().min(u16::MAX as usize);
    v.extend_from_slice(&(n as u16).to_be_bytes());
    v.extend_from_slice(&s.as_bytes()[..n]);
}

pub fn encode_u64(v: u64) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

pub fn decode_u64(b: &[u8]) -> Result<u64, Error> {
    Reader(b).u64().ok_or(corrupt("u64 value"))
}

impl PartitionState {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![V2];
        v.extend_from_slice(&self.log_start_offset.to_be_bytes());
        v.extend_from_slice(&self.high_watermark.to_be_bytes());
        v.extend_from_slice(&self.retained_bytes.to_be_bytes());
        v
    }
    pub fn decode(b: &[u8]) -> Result<Self, Error> {
        let mut r = Reader(b);
        (|| {
            let version = r.u8()?;
            let s = Self {
                log_start_offset: r.u64()?,
                high_watermark: r.u64()?,
                retained_bytes: match version {
                    V1 => 0,
                    V2 => r.u64()?,
                    _ => return None,
                },
            };
            r.end()?;
            Some(s)
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
        let mut v = Vec::with_capacity(17 + self.bases.len() * 8 + self.units.len() * 13);
        v.push(V2);
        v.extend_from_slice(&self.committed_ms.to_be_bytes());
        v.extend_from_slice(&(self.bases.len() as u32).to_be_bytes());
        for base in &self.bases {
            v.extend_from_slice(&base.unwrap_or(u64::MAX).to_be_bytes());
        }
        v.extend_from_slice(&(self.units.len() as u32).to_be_bytes());
        for u in &self.units {
            match u {
                UnitOutcome::Committed => v.extend_from_slice(&[0; 13]),
                UnitOutcome::Duplicate => {
                    v.push(0xFF);
                    v.extend_from_slice(&[0; 12]);
                }
                UnitOutcome::Refused(r) => r.encode_into(&mut v),
            }
        }
        v
    }
    pub fn decode(b: &[u8]) -> Result<Self, Error> {
        let mut r = Reader(b);
        (|| {
            if r.u8()? != V2 {
                return None;
            }
            let committed_ms = r.i64()?;
            let n = r.u32()? as usize;
            if r.0.len() < n.checked_mul(8)? {
                return None;
            }
            let bases = (0..n)
                .map(|_| Some(Some(r.u64()?).filter(|&b| b != u64::MAX)))
                .collect::<Option<Vec<_>>>()?;
            let m = r.u32()? as usize;
            if r.0.len() != m.checked_mul(13)? {
                return None;
            }
            let units = (0..m)
                .map(|_| {
                    let (code, a, b) = (r.u8()?, r.u64()?, r.u32()?);
                    Some(match code {
                        0 => UnitOutcome::Committed,
                        0xFF => UnitOutcome::Duplicate,
                        c => UnitOutcome::Refused(Refusal::decode(c, a, b)?),
                    })
                })
                .collect::<Option<Vec<_>>>()?;
            r.end()?;
            Some(Self {
                committed_ms,
                bases,
                units,
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
        if !self.contact.is_empty() {
            put_short_str(&mut v, &self.contact);
        }
        v
    }
    pub fn decode(b: &[u8]) -> Result<Self, Error> {
        let mut r = Reader(b);
        (|| {
            r.version()?;
            let (holder, expires_ms) = (r.u64()?, r.i64()?);
            let contact = match r.end() {
                Some(()) => String::new(),
                None => r.short_str()?,
            };
            r.end()?;
            Some(Self {
                holder,
                expires_ms,
                contact,
            })
        })()
        .ok_or(corrupt("lease"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn iceberg_topics_keep_their_archive() {
        let config: TopicConfig =
            serde_json::from_str(r#"{"archive.iceberg": true, "archive.retention_ms": 5}"#)
                .unwrap();
        assert!(matches!(config.validate(), Err(Error::Invalid(_))));
        let ok: TopicConfig = serde_json::from_str(r#"{"archive.iceberg": true}"#).unwrap();
        assert!(ok.archive_iceberg && ok.validate().is_ok());
    }

    proptest! {
        #[test]
        fn partition_state_round_trips(a in any::<u64>(), b in any::<u64>()) {
            let s = PartitionState { log_start_offset: a, high_watermark: b, retained_bytes: a ^ b };
            prop_assert_eq!(PartitionState::decode(&s.encode()).unwrap(), s);
            let mut v1 = vec![V1];
            v1.extend_from_slice(&a.to_be_bytes());
            v1.extend_from_slice(&b.to_be_bytes());
            prop_assert_eq!(PartitionState::decode(&v1).unwrap().retained_bytes, 0);
        }
        #[test]
        fn index_entry_round_trips(object in "[a-z0-9/]{0,80}", o in any::<u64>(), l in any::<u32>(), c in any::<u32>(), t in any::<i64>()) {
            let e = IndexEntry { object, byte_offset: o, byte_len: l, record_count: c, max_timestamp: t };
            prop_assert_eq!(IndexEntry::decode(&e.encode()).unwrap(), e);
        }
        #[test]
        fn segment_record_round_trips(
            ts in any::<i64>(),
            bases in proptest::collection::vec(proptest::option::of(0u64..u64::MAX), 0..50),
            units in proptest::collection::vec((0u8..15, any::<u64>(), any::<u32>()), 0..20),
        ) {
            let units = units
                .into_iter()
                .map(|(c, a, b)| match c {
                    0 => UnitOutcome::Committed,
                    14 => UnitOutcome::Duplicate,
                    c => Refusal::decode(c, a, b).map_or(UnitOutcome::Committed, UnitOutcome::Refused),
                })
                .collect();
            let r = SegmentRecord { committed_ms: ts, bases, units };
            prop_assert_eq!(SegmentRecord::decode(&r.encode()).unwrap(), r);
        }
        #[test]
        fn lease_round_trips(holder in any::<u64>(), expires_ms in any::<i64>(), contact in "[a-z:/.0-9]{0,40}") {
            let l = LeaseRecord { holder, expires_ms, contact };
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
            bases: vec![Some(3); MAX_CHUNKS_PER_SEGMENT],
            units: vec![UnitOutcome::Duplicate; MAX_CHUNKS_PER_SEGMENT],
        };
        assert!(r.encode().len() < 100_000);
    }
}
