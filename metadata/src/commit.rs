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

use std::collections::HashMap;

use crate::catalog::partition_counts;
use crate::groups::{OffsetCommit, check_offset_commit, validate_offset_commit, write_offsets};
use crate::keys::Key;
use crate::kv::Txn;
use crate::producers::{PRODUCER_TTL_MS, put_producer};
use crate::reclaim::{add_refs, queue_garbage};
use crate::sequences::{self, KafkaBatch};
use crate::values::{
    Answer, AnswerPart, IdempotencyRecord, IndexEntry, MAX_CHUNKS_PER_SEGMENT, PartitionState,
    ProducerRecord, Refusal, SegmentRecord, UnitOutcome,
};
use crate::{Error, Metadata, Result};

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkCommit {
    pub topic_id: u64,
    pub partition: u32,
    pub byte_offset: u64,
    pub byte_len: u32,
    pub record_count: u32,
    pub max_timestamp: i64,
}

/// A segment object that has been written and now needs offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

/// Chunks that commit all together or not at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitUnit {
    /// Indices into [`SegmentCommit::chunks`]; each chunk is in one unit at most.
    pub chunks: Vec<u32>,
    pub dedup: Option<Dedup>,
    /// Input offsets committed in the same transaction (exactly-once
    /// consume-transform-produce).
    pub offsets: Option<OffsetCommit>,
}

/// How a unit recognises its own retries.
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// What identifies a request's retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Identity<'a> {
    Producer(u64, u32, u64),
    Key(&'a str),
    /// Producer, topic, partition, first sequence.
    KafkaBatch(u64, u64, u32, i32),
}

impl Dedup {
    fn identity(&self) -> Identity<'_> {
        match self {
            Dedup::Producer {
                id,
                epoch,
                sequence,
            } => Identity::Producer(*id, *epoch, *sequence),
            Dedup::Key { key, .. } => Identity::Key(key),
            Dedup::KafkaBatch(b) => {
                Identity::KafkaBatch(b.producer_id, b.topic_id, b.partition, b.first_sequence)
            }
        }
    }

    /// Whether two requests of one identity are the same request (an
    /// idempotency key also compares the request's fingerprint).
    fn same_request(&self, other: &Dedup) -> bool {
        match (self, other) {
            (Dedup::Key { fingerprint: a, .. }, Dedup::Key { fingerprint: b, .. }) => a == b,
            (Dedup::KafkaBatch(a), Dedup::KafkaBatch(b)) => a == b,
            _ => true,
        }
    }
}

/// What the commit decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitOutcome {
    /// Per chunk: its base offset, or `None` if it got none.
    pub bases: Vec<Option<u64>>,
    /// Per unit.
    pub units: Vec<UnitResult>,
}

/// The fate of one unit.
#[derive(Debug, Clone, PartialEq, Eq)]
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
        self.run("commit_segment", false, |txn, _| {
            let c = commit.clone();
            Box::pin(async move { commit_segment_body(txn, &c).await })
        })
        .await
    }
}

async fn commit_segment_body(txn: &mut dyn Txn, c: &SegmentCommit) -> Result<CommitOutcome> {
    let seg_key = Key::Segment(&c.segment_id).encode();
    if let Some(done) = txn.get(&seg_key, false).await? {
        return replay(txn, c, SegmentRecord::decode(&done)?).await;
    }
    // The GC fence: a conflicting read, so a concurrent collection and this
    // commit cannot both succeed.
    let refused = |reason| Error::CommitRefused {
        segment: c.segment_id.clone(),
        reason,
    };
    let mark = Key::Collected(&c.segment_id).encode();
    if txn.get(&mark, false).await?.is_some() {
        return Err(refused("garbage-collected before its commit"));
    }
    if c.committed_ms.saturating_sub(c.created_ms) > MAX_COMMIT_AGE_MS {
        return Err(refused("too old to commit"));
    }
    let topics =
        partition_counts(txn, c.chunks.iter().map(|ch| ch.topic_id).collect(), false).await?;
    let exists = |ch: &ChunkCommit| {
        topics[&ch.topic_id].is_some_and(|n| ch.partition < n) && ch.record_count > 0
    };
    let mut unit_of = vec![None; c.chunks.len()];
    let mut results = Vec::with_capacity(c.units.len());
    // The first unit of each dedup identity, and later units that repeat a
    // committed one (a retry that landed in the same segment).
    let mut first: HashMap<Identity<'_>, usize> = HashMap::new();
    let mut repeats = Vec::new();
    for (u, unit) in c.units.iter().enumerate() {
        for &i in &unit.chunks {
            unit_of[i as usize] = Some(u);
        }
        let earlier = unit
            .dedup
            .as_ref()
            .and_then(|d| Some((d, *first.get(&d.identity())?)));
        let result = match earlier {
            Some((d, orig)) => match (&results[orig], &c.units[orig].dedup) {
                (_, Some(o)) if !d.same_request(o) => {
                    UnitResult::Refused(Refusal::IdempotencyKeyReused)
                }
                (UnitResult::Committed, _) => {
                    repeats.push((u, orig));
                    UnitResult::Duplicate(Answer::default()) // filled in below
                }
                (other, _) => other.clone(),
            },
            None if unit.chunks.iter().all(|&i| exists(&c.chunks[i as usize])) => {
                admit(txn, unit, c.committed_ms).await?
            }
            None => UnitResult::Refused(Refusal::TopicGone),
        };
        if let Some(d) = &unit.dedup {
            first.entry(d.identity()).or_insert(u);
        }
        results.push(result);
    }
    let admitted: Vec<bool> = c
        .chunks
        .iter()
        .enumerate()
        .map(|(i, ch)| unit_of[i].is_none_or(|u| results[u] == UnitResult::Committed) && exists(ch))
        .collect();
    // Every partition's state in one concurrent read (a segment may touch
    // thousands), with conflicts: two commits to a partition serialize.
    let mut states = read_states(
        txn,
        c.chunks
            .iter()
            .zip(&admitted)
            .filter(|(_, a)| **a)
            .map(|(ch, _)| (ch.topic_id, ch.partition)),
    )
    .await?;
    let mut bases = Vec::with_capacity(c.chunks.len());
    for (ch, admitted) in c.chunks.iter().zip(admitted) {
        bases.push(if admitted {
            Some(index_chunk(txn, c, ch, &mut states)?)
        } else {
            None
        });
    }
    // The object's references: one per indexed chunk; none, and it is garbage.
    let indexed = bases.iter().filter(|b| b.is_some()).count() as u64;
    if indexed > 0 {
        add_refs(txn, &c.object, indexed).await?;
    } else {
        queue_garbage(txn, &c.object, c.committed_ms);
    }
    let answer = |unit: &CommitUnit| Answer {
        parts: unit
            .chunks
            .iter()
            .map(|&i| {
                let ch = &c.chunks[i as usize];
                AnswerPart {
                    topic_id: ch.topic_id,
                    partition: ch.partition,
                    base: bases[i as usize].unwrap_or_default(),
                    count: ch.record_count,
                }
            })
            .collect(),
    };
    for (unit, result) in c.units.iter().zip(&results) {
        if let (UnitResult::Committed, Some(dedup)) = (result, &unit.dedup) {
            store_answer(txn, dedup, answer(unit), c.committed_ms).await?;
        }
    }
    for (u, orig) in repeats {
        results[u] = UnitResult::Duplicate(answer(&c.units[orig]));
    }
    let record = SegmentRecord {
        committed_ms: c.committed_ms,
        bases: bases.clone(),
        units: results
            .iter()
            .map(|r| match r {
                UnitResult::Committed => UnitOutcome::Committed,
                UnitResult::Duplicate(_) => UnitOutcome::Duplicate,
                UnitResult::Refused(r) => UnitOutcome::Refused(*r),
            })
            .collect(),
    };
    txn.set(&seg_key, &record.encode());
    let forget_at = c.committed_ms.saturating_add(SEGMENT_RECORD_TTL_MS);
    txn.set(&Key::Expiry(forget_at, &seg_key).encode(), &[]);
    Ok(CommitOutcome {
        bases,
        units: results,
    })
}

/// The states of the given partitions (each read once, all at once).
async fn read_states(
    txn: &mut dyn Txn,
    partitions: impl Iterator<Item = (u64, u32)>,
) -> Result<HashMap<(u64, u32), PartitionState>> {
    let mut wanted: Vec<(u64, u32)> = partitions.collect();
    wanted.sort_unstable();
    wanted.dedup();
    let keys: Vec<Vec<u8>> = wanted
        .iter()
        .map(|&(t, p)| Key::Partition(t, p).encode())
        .collect();
    let values = txn.get_many(&keys, false).await?;
    wanted
        .into_iter()
        .zip(values)
        .map(|(tp, v)| {
            let v = v.ok_or(Error::Corrupt("missing partition state"))?;
            Ok((tp, PartitionState::decode(&v)?))
        })
        .collect()
}

/// Writes the index entry of an admitted chunk and advances its partition
/// (in `states`, read by [`read_states`]).
fn index_chunk(
    txn: &mut dyn Txn,
    c: &SegmentCommit,
    ch: &ChunkCommit,
    states: &mut HashMap<(u64, u32), PartitionState>,
) -> Result<u64> {
    let state = states
        .get_mut(&(ch.topic_id, ch.partition))
        .ok_or(Error::Corrupt("partition state not read"))?;
    let base = state.high_watermark;
    let entry = IndexEntry {
        object: c.object.clone(),
        byte_offset: ch.byte_offset,
        byte_len: ch.byte_len,
        record_count: ch.record_count,
        max_timestamp: ch.max_timestamp,
    };
    txn.set(
        &Key::Index(ch.topic_id, ch.partition, base).encode(),
        &entry.encode(),
    );
    state.high_watermark += u64::from(ch.record_count);
    state.retained_bytes += u64::from(ch.byte_len);
    txn.set(
        &Key::Partition(ch.topic_id, ch.partition).encode(),
        &state.encode(),
    );
    Ok(base)
}

/// Decides a unit whose chunks all exist: checks first, then writes the
/// producer's new sequence and the offsets (the answer comes later, once
/// the bases are known).
async fn admit(txn: &mut dyn Txn, unit: &CommitUnit, now_ms: i64) -> Result<UnitResult> {
    // The producer whose record moves on: `(id, record, its next request sequence)`.
    let mut producer = None;
    let mut window = None;
    match &unit.dedup {
        Some(Dedup::Producer {
            id,
            epoch,
            sequence,
        }) => match check_sequence(txn, *id, *epoch, *sequence).await? {
            SequenceCheck::Next(rec) => {
                let next = rec.next_sequence + 1;
                producer = Some((*id, rec, next));
            }
            SequenceCheck::Done(r) => return Ok(r),
        },
        Some(Dedup::KafkaBatch(b)) => match sequences::check(txn, b).await? {
            sequences::Check::Next(rec, w) => {
                let next = rec.next_sequence;
                producer = Some((b.producer_id, rec, next));
                window = Some((b, w));
            }
            sequences::Check::Done(r) => return Ok(r),
        },
        Some(Dedup::Key {
            key, fingerprint, ..
        }) => {
            if let Some(b) = txn.get(&Key::Idempotency(key).encode(), false).await? {
                let rec = IdempotencyRecord::decode(&b)?;
                if rec.expires_ms > now_ms {
                    return Ok(if rec.fingerprint == *fingerprint {
                        UnitResult::Duplicate(rec.answer)
                    } else {
                        UnitResult::Refused(Refusal::IdempotencyKeyReused)
                    });
                }
            }
        }
        None => {}
    }
    if let Some(o) = &unit.offsets {
        if let Err(r) = check_offset_commit(txn, o, now_ms).await? {
            return Ok(UnitResult::Refused(r));
        }
    }
    if let Some((b, w)) = window {
        sequences::admit(txn, b, w);
    }
    if let Some((id, mut rec, next)) = producer {
        rec.next_sequence = next;
        // Push the expiry out, rewriting its index only twice per lifetime.
        let previous = rec.expires_ms;
        if previous - now_ms < PRODUCER_TTL_MS / 2 {
            rec.expires_ms = now_ms.saturating_add(PRODUCER_TTL_MS);
        }
        put_producer(txn, id, &rec, Some(previous));
    }
    if let Some(o) = &unit.offsets {
        write_offsets(txn, o, now_ms).await?;
    }
    Ok(UnitResult::Committed)
}

enum SequenceCheck {
    /// The sequence is the next one: commit, then advance the record.
    Next(ProducerRecord),
    /// Decided without committing.
    Done(UnitResult),
}

async fn check_sequence(
    txn: &mut dyn Txn,
    id: u64,
    epoch: u32,
    sequence: u64,
) -> Result<SequenceCheck> {
    let refuse = |r| Ok(SequenceCheck::Done(UnitResult::Refused(r)));
    let Some(b) = txn.get(&Key::Producer(id).encode(), false).await? else {
        return refuse(Refusal::UnknownProducer { producer_id: id });
    };
    let rec = ProducerRecord::decode(&b)?;
    if epoch < rec.epoch {
        return refuse(Refusal::ProducerFenced { epoch: rec.epoch });
    }
    if epoch > rec.epoch {
        return refuse(Refusal::UnknownProducer { producer_id: id });
    }
    let next = rec.next_sequence;
    if sequence == next {
        return Ok(SequenceCheck::Next(rec));
    }
    if sequence > next {
        return refuse(Refusal::OutOfOrderSequence { expected: next });
    }
    let oldest = next.saturating_sub(ANSWERS_KEPT);
    if sequence >= oldest {
        if let Some(b) = txn
            .get(&Key::ProducerAnswer(id, sequence).encode(), false)
            .await?
        {
            return Ok(SequenceCheck::Done(UnitResult::Duplicate(Answer::decode(
                &b,
            )?)));
        }
    }
    refuse(Refusal::SequenceTooOld { oldest })
}

/// Remembers a committed unit's answer under its dedup key.
async fn store_answer(txn: &mut dyn Txn, dedup: &Dedup, answer: Answer, now_ms: i64) -> Result<()> {
    match dedup {
        Dedup::Producer { id, sequence, .. } => {
            txn.set(
                &Key::ProducerAnswer(*id, *sequence).encode(),
                &answer.encode(),
            );
            if let Some(old) = sequence.checked_sub(ANSWERS_KEPT) {
                txn.clear(&Key::ProducerAnswer(*id, old).encode());
            }
        }
        Dedup::KafkaBatch(b) => {
            let base = answer.parts.first().map_or(0, |p| p.base);
            sequences::record_base(txn, b, base).await?;
        }
        Dedup::Key {
            key,
            fingerprint,
            expires_ms,
        } => {
            let k = Key::Idempotency(key).encode();
            // An expired record may still be there; drop its expiry entry.
            if let Some(b) = txn.get(&k, false).await? {
                let old = IdempotencyRecord::decode(&b)?;
                txn.clear(&Key::Expiry(old.expires_ms, &k).encode());
            }
            let rec = IdempotencyRecord {
                expires_ms: (*expires_ms).max(now_ms),
                fingerprint: *fingerprint,
                answer,
            };
            txn.set(&k, &rec.encode());
            txn.set(&Key::Expiry(rec.expires_ms, &k).encode(), &[]);
        }
    }
    Ok(())
}

/// The outcome of a segment committed earlier (this call's retry).
async fn replay(txn: &mut dyn Txn, c: &SegmentCommit, rec: SegmentRecord) -> Result<CommitOutcome> {
    if rec.bases.len() != c.chunks.len() || rec.units.len() != c.units.len() {
        return Err(Error::Corrupt("segment record of another commit"));
    }
    let mut units = Vec::with_capacity(rec.units.len());
    for (unit, outcome) in c.units.iter().zip(rec.units) {
        units.push(match outcome {
            UnitOutcome::Committed => UnitResult::Committed,
            UnitOutcome::Refused(r) => UnitResult::Refused(r),
            UnitOutcome::Duplicate => stored_answer(txn, unit.dedup.as_ref()).await?,
        });
    }
    Ok(CommitOutcome {
        bases: rec.bases,
        units,
    })
}

async fn stored_answer(txn: &mut dyn Txn, dedup: Option<&Dedup>) -> Result<UnitResult> {
    let stored = match dedup {
        Some(Dedup::Producer { id, sequence, .. }) => txn
            .get(&Key::ProducerAnswer(*id, *sequence).encode(), true)
            .await?
            .map(|b| Answer::decode(&b))
            .transpose()?,
        Some(Dedup::Key { key, .. }) => txn
            .get(&Key::Idempotency(key).encode(), true)
            .await?
            .map(|b| IdempotencyRecord::decode(&b).map(|r| r.answer))
            .transpose()?,
        Some(Dedup::KafkaBatch(b)) => sequences::stored(txn, b).await?,
        None => None,
    };
    Ok(match stored {
        Some(a) => UnitResult::Duplicate(a),
        None => UnitResult::Refused(Refusal::SequenceTooOld { oldest: 0 }),
    })
}
