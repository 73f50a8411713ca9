//! The segment commit: the one transaction that makes produced records
//! visible. It assigns offsets to a written segment's chunks and, for the
//! chunks of *commit units*, decides first whether they may be written at
//! all.
//!
//! A commit unit is the chunks of one request that must become visible
//! together or not at all (an atomic multi-topic produce, an idempotent
//! produce, a transaction that also commits a group's input offsets).
//! Units are checked in order, before any offset is assigned:
//! * every chunk's topic and partition must still exist (else `TopicGone`);
//! * a producer sequence must be the producer's next one at its current
//!   epoch (a retry of a recent one is a `Duplicate`, answered from the
//!   stored answer); a Kafka producer's batch must continue its partition's
//!   sequence window ([`crate::sequences`]); an idempotency key must be new
//!   or hold the same request;
//! * an offset commit must pass the group's fencing ([`crate::groups`]).
//!
//! A refused or duplicate unit's chunks get no offsets: their bytes stay in
//! the object, unindexed, until the compactor rewrites it. Chunks outside
//! any unit commit as before (a chunk of a vanished topic gets none).
//!
//! Idempotence: the `Segment(id)` record stores every chunk's base and every
//! unit's outcome, so a retry after an unknown commit result returns the
//! same answer and applies nothing twice. The record expires after a day
//! (retries come within seconds; a segment older than an hour is refused),
//! so segment records do not grow with all of history; what keeps a
//! committed object alive is its `ObjectRefs`, which GC also checks.

use std::sync::Arc;

use crate::groups::{OffsetCommit, validate_offset_commit};
use crate::keys::Key;
use crate::sequences::KafkaBatch;
use crate::values::{Answer, MAX_CHUNKS_PER_SEGMENT, Refusal};
use crate::{Error, Metadata, Result};

mod body;
mod units;

/// Answers of a producer's most recent requests are kept for retries; an
/// older sequence is refused as `SequenceTooOld` (Kafka keeps five batches).
pub const ANSWERS_KEPT: u64 = 5;

/// A segment older than this (by its writer's clock, from cut to commit)
/// is refused: so a GC fence only needs to outlive it (see [`MARK_TTL_MS`]).
pub const MAX_COMMIT_AGE_MS: i64 = 3_600_000;
/// How long a GC fence (`Collected`) is kept: far beyond the oldest commit
/// that could still arrive.
pub const MARK_TTL_MS: i64 = 24 * 3_600_000;
/// How long a `Segment` record (a commit's outcome, for its retries) is
/// kept: a retry comes within seconds, and a commit older than
/// [`MAX_COMMIT_AGE_MS`] is refused anyway.
pub const SEGMENT_RECORD_TTL_MS: i64 = 24 * 3_600_000;

/// One chunk of a segment, to be indexed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChunkCommit {
    pub topic_id: u64,
    pub partition: u32,
    pub byte_offset: u64,
    pub byte_len: u32,
    pub record_count: u32,
    pub max_timestamp: i64,
}

/// A segment object that has been written and now needs offsets.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SegmentCommit {
    /// Unique id of the segment; the idempotence key.
    pub segment_id: String,
    /// The object key holding it.
    pub object: String,
    /// When the writer cut the segment, and when it commits (its own clock).
    pub created_ms: i64,
    pub committed_ms: i64,
    /// In segment order; chunks of one partition get offsets in this order.
    pub chunks: Vec<ChunkCommit>,
    /// Groups of chunks that commit together or not at all, under conditions.
    pub units: Vec<CommitUnit>,
    /// The segment this one must follow (its writer's previous one, still
    /// unanswered when this was sent): until that one is committed, this
    /// one is answered [`Error::PredecessorPending`] and nothing of it is
    /// applied. So a writer may send its commits without waiting for each
    /// answer and still get offsets in its own order.
    #[serde(default)]
    pub after: Option<String>,
}

/// Chunks that commit all together or not at all.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CommitUnit {
    /// Indices into [`SegmentCommit::chunks`]; each chunk is in one unit at most.
    pub chunks: Vec<u32>,
    pub dedup: Option<Dedup>,
    /// Input offsets committed in the same transaction (exactly-once
    /// consume-transform-produce).
    pub offsets: Option<OffsetCommit>,
}

/// How a unit recognises its own retries.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Dedup {
    /// An idempotent producer's request sequence.
    Producer { id: u64, epoch: u32, sequence: u64 },
    /// A client-chosen key, remembered until `expires_ms`.
    Key {
        key: String,
        fingerprint: u64,
        expires_ms: i64,
    },
    /// A Kafka idempotent producer's batch (a unit of one chunk).
    KafkaBatch(KafkaBatch),
}

/// What the commit decided.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CommitOutcome {
    /// Per chunk: its base offset, or `None` if it got none.
    pub bases: Vec<Option<u64>>,
    /// Per unit.
    pub units: Vec<UnitResult>,
}

/// The fate of one unit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum UnitResult {
    Committed,
    /// A retry of a request already committed: its original answer.
    Duplicate(Answer),
    Refused(Refusal),
}

impl Metadata {
    /// GC's half of the fence: marks a never-committed segment collected,
    /// after which its commit is refused. False (and nothing written) if the
    /// segment was committed or anything points into its object. Delete the
    /// object only after this returns true.
    pub async fn collect_segment(
        &self,
        segment_id: &str,
        object: &str,
        now_ms: i64,
    ) -> Result<bool> {
        self.run("collect_segment", false, |txn, _| {
            let (id, object) = (segment_id.to_owned(), object.to_owned());
            Box::pin(async move {
                if txn.get(&Key::Segment(&id).encode(), false).await?.is_some()
                    || txn
                        .get(&Key::ObjectRefs(&object).encode(), false)
                        .await?
                        .is_some()
                {
                    return Ok(false);
                }
                let mark = Key::Collected(&id).encode();
                if txn.get(&mark, false).await?.is_none() {
                    txn.set(&mark, &crate::values::encode_u64(now_ms.max(0) as u64));
                    let at = now_ms.saturating_add(MARK_TTL_MS);
                    txn.set(&Key::Expiry(at, &mark).encode(), &[]);
                }
                Ok(true)
            })
        })
        .await
    }

    /// Assigns offsets to a written segment's chunks, exactly once (see the
    /// module docs). Retrying, even after an unknown commit result, returns
    /// the same outcome and indexes nothing twice.
    pub async fn commit_segment(&self, commit: &SegmentCommit) -> Result<CommitOutcome> {
        let mut outcomes = self.commit_segments(vec![commit.clone()]).await?;
        outcomes
            .pop()
            .unwrap_or(Err(Error::Corrupt("a batch of one without an answer")))
    }

    /// Commits several segments in one transaction, as if one after another
    /// in this order ([`body`]): one answer per segment. An invalid or
    /// refused segment gets its error without failing the others; an error
    /// of the transaction itself fails them all (each may then be retried,
    /// alone or batched, as a retry after an unknown result).
    pub async fn commit_segments(
        &self,
        batch: Vec<SegmentCommit>,
    ) -> Result<Vec<Result<CommitOutcome>>> {
        let (valid, checked): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .map(|c| match validate(&c) {
                Ok(()) => (Some(c), Ok(())),
                Err(e) => (None, Err(e)),
            })
            .unzip();
        let valid = Arc::new(valid.into_iter().flatten().collect::<Vec<_>>());
        let mut outcomes = if valid.is_empty() {
            Vec::new()
        } else {
            self.run("commit_segment", false, |txn, _| {
                Box::pin(body::commit_batch(txn, valid.clone()))
            })
            .await?
        }
        .into_iter();
        Ok(checked
            .into_iter()
            .map(|c| match c {
                Ok(()) => outcomes
                    .next()
                    .unwrap_or(Err(Error::Corrupt("a batch answered short"))),
                Err(e) => Err(e),
            })
            .collect())
    }
}

/// What a segment commit must satisfy before it reaches a transaction.
fn validate(commit: &SegmentCommit) -> Result<()> {
    if commit.chunks.len() > MAX_CHUNKS_PER_SEGMENT {
        return Err(Error::Invalid(format!(
            "a segment holds at most {MAX_CHUNKS_PER_SEGMENT} chunks"
        )));
    }
    let mut claimed = vec![false; commit.chunks.len()];
    for u in &commit.units {
        if let Some(o) = &u.offsets {
            validate_offset_commit(o)?;
        }
        for &i in &u.chunks {
            match claimed.get_mut(i as usize) {
                Some(c) if !*c => *c = true,
                _ => return Err(Error::Invalid("a unit names a bad or taken chunk".into())),
            }
        }
    }
    Ok(())
}
