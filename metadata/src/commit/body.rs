//! The segment commit's transaction, over a batch of segments: one
//! segment when an agent commits alone, many when a sequencer batches the
//! commits of every agent (`silt_agent::sequencer`).
//!
//! A batch is the same as committing its segments one after another, in
//! batch order, in one transaction: each segment is decided as if alone
//! (retry, fence, age, units), chunks of one partition get offsets in
//! batch order, and a producer's sequences admit in order. What the batch
//! saves is round trips and conflicts: every segment record and fence,
//! every partition state and every object's reference count is read once,
//! all at once, and each partition state is written once.

use std::collections::HashMap;
use std::sync::Arc;

use super::units::{Decided, decide, replay, store_answer};
use super::{ChunkCommit, UnitResult};
use super::{CommitOutcome, CommitUnit, MAX_COMMIT_AGE_MS, SEGMENT_RECORD_TTL_MS, SegmentCommit};
use crate::catalog::counts_from;
use crate::keys::Key;
use crate::kv::Txn;
use crate::reclaim::queue_garbage;
use crate::values::{
    Answer, AnswerPart, IndexEntry, PartitionState, SegmentRecord, UnitOutcome, decode_u64,
    encode_u64,
};
use crate::{Error, Result};

/// A partition's state as the batch advances it.
#[derive(Debug)]
struct Advancing {
    state: PartitionState,
    /// Whether it changed (and must be written back).
    advanced: bool,
}

impl Advancing {
    fn new(state: PartitionState) -> Self {
        Self {
            state,
            advanced: false,
        }
    }
}

/// What the batch does with one segment.
#[derive(Debug)]
enum Plan {
    /// Committed by an earlier attempt: answer from its record.
    Replay(SegmentRecord),
    /// Refused before anything was written.
    Refused(&'static str),
    /// Its predecessor is not committed: nothing written.
    Pending,
    /// The same segment as an earlier one of the batch (a retry that
    /// arrived while the original was queued): the same answer.
    SameAs(usize),
    /// To decide and commit.
    Fresh,
}

/// Commits `batch` in the transaction `txn` (see the module docs): one
/// answer per segment, in order. A refused segment's answer is
/// [`Error::CommitRefused`], one whose predecessor is not committed
/// [`Error::PredecessorPending`]; any other error fails the whole batch.
pub(super) async fn commit_batch(
    txn: &mut dyn Txn,
    batch: Arc<Vec<SegmentCommit>>,
) -> Result<Vec<Result<CommitOutcome>>> {
    // Everything the batch may need, in one concurrent read with conflicts:
    // every segment's record (a retry finds it) and GC fence (a concurrent
    // collection and this commit cannot both succeed), every topic, every
    // partition state (two commits to a partition serialize) and every
    // object's reference count.
    let mut topic_ids: Vec<u64> = batch
        .iter()
        .flat_map(|c| c.chunks.iter().map(|ch| ch.topic_id))
        .collect();
    topic_ids.sort_unstable();
    topic_ids.dedup();
    let mut partitions: Vec<(u64, u32)> = batch
        .iter()
        .flat_map(|c| c.chunks.iter().map(|ch| (ch.topic_id, ch.partition)))
        .collect();
    partitions.sort_unstable();
    partitions.dedup();
    let mut objects: Vec<&str> = batch.iter().map(|c| c.object.as_str()).collect();
    objects.sort_unstable();
    objects.dedup();
    let mut keys: Vec<Vec<u8>> =
        Vec::with_capacity(3 * batch.len() + topic_ids.len() + partitions.len() + objects.len());
    for c in batch.iter() {
        keys.push(Key::Segment(&c.segment_id).encode());
        keys.push(Key::Collected(&c.segment_id).encode());
        // A predecessor's record (the segment's own again when it has none).
        keys.push(Key::Segment(c.after.as_ref().unwrap_or(&c.segment_id)).encode());
    }
    keys.extend(topic_ids.iter().map(|&id| Key::Topic(id).encode()));
    keys.extend(
        partitions
            .iter()
            .map(|&(t, p)| Key::Partition(t, p).encode()),
    );
    keys.extend(objects.iter().map(|o| Key::ObjectRefs(o).encode()));
    let found = txn.get_many(&keys, false).await?;
    let (segments, rest) = found.split_at(3 * batch.len());
    let (topic_values, rest) = rest.split_at(topic_ids.len());
    let (state_values, ref_values) = rest.split_at(partitions.len());
    let topics = counts_from(&topic_ids, topic_values)?;
    // A partition of a deleted topic has no state; its chunks get no offsets.
    let mut states = HashMap::with_capacity(partitions.len());
    for (tp, v) in partitions.into_iter().zip(state_values) {
        if let Some(v) = v {
            states.insert(tp, Advancing::new(PartitionState::decode(v)?));
        }
    }
    let mut refs = HashMap::with_capacity(objects.len());
    for (o, v) in objects.into_iter().zip(ref_values) {
        refs.insert(o, v.as_deref().map(decode_u64).transpose()?.unwrap_or(0));
    }
    let mut plans: Vec<Plan> = Vec::with_capacity(batch.len());
    let mut first_of: HashMap<&str, usize> = HashMap::new();
    for (i, c) in batch.iter().enumerate() {
        let [record, mark, predecessor] = [0, 1, 2].map(|k| &segments[3 * i + k]);
        // Committed before, or earlier in this batch (a batch commits all
        // its fresh segments or none).
        let follows = |after: &str| {
            predecessor.is_some()
                || first_of.get(after).is_some_and(|&j| {
                    matches!(plans[j], Plan::Replay(_) | Plan::Fresh | Plan::SameAs(_))
                })
        };
        plans.push(if let Some(&j) = first_of.get(c.segment_id.as_str()) {
            Plan::SameAs(j)
        } else if let Some(done) = record {
            Plan::Replay(SegmentRecord::decode(done)?)
        } else if mark.is_some() {
            Plan::Refused("garbage-collected before its commit")
        } else if c.committed_ms.saturating_sub(c.created_ms) > MAX_COMMIT_AGE_MS {
            Plan::Refused("too old to commit")
        } else if c.after.as_deref().is_some_and(|a| !follows(a)) {
            Plan::Pending
        } else {
            Plan::Fresh
        });
        first_of.entry(&c.segment_id).or_insert(i);
    }
    // Each segment decided and indexed in turn, so a segment sees what the
    // ones before it wrote (a producer's next sequence, a stored answer).
    let mut outcomes = Vec::with_capacity(batch.len());
    // The last segment that raised a high-watermark (a fresh id).
    let mut mark = None;
    for (c, plan) in batch.iter().zip(plans) {
        outcomes.push(match plan {
            Plan::Replay(rec) => Ok(replay(txn, c, rec).await?),
            Plan::Refused(reason) => Err(Some(reason)),
            Plan::Pending => Err(None),
            Plan::SameAs(j) => match &outcomes[j] {
                Ok(outcome) => Ok(Clone::clone(outcome)),
                Err(reason) => Err(*reason),
            },
            Plan::Fresh => {
                let decided = decide(txn, c, &topics).await?;
                let outcome = index(txn, c, decided, &mut states, &mut refs).await?;
                if outcome.bases.iter().any(Option::is_some) {
                    mark = Some(c.segment_id.as_str());
                }
                Ok(outcome)
            }
        });
    }
    for ((topic_id, partition), s) in &states {
        if s.advanced {
            let key = Key::Partition(*topic_id, *partition).encode();
            txn.set(&key, &s.state.encode());
        }
    }
    // Wake every agent's long-polls: blind, so concurrent commits do not
    // conflict here; the value only has to differ from the last one.
    if let Some(id) = mark {
        txn.set(&Key::LogChanged.encode(), id.as_bytes());
    }
    for (object, n) in refs.into_iter().filter(|(_, n)| *n > 0) {
        txn.set(&Key::ObjectRefs(object).encode(), &encode_u64(n));
    }
    Ok(batch
        .iter()
        .zip(outcomes)
        .map(|(c, o)| {
            o.map_err(|refusal| match refusal {
                Some(reason) => Error::CommitRefused {
                    segment: c.segment_id.clone(),
                    reason,
                },
                None => Error::PredecessorPending {
                    segment: c.segment_id.clone(),
                    after: c.after.clone().unwrap_or_default(),
                },
            })
        })
        .collect())
}

/// Gives a segment's admitted chunks their offsets and writes everything
/// its retries need: references, stored answers, the segment record.
async fn index<'a>(
    txn: &mut dyn Txn,
    c: &'a SegmentCommit,
    decided: Decided,
    states: &mut HashMap<(u64, u32), Advancing>,
    refs: &mut HashMap<&'a str, u64>,
) -> Result<CommitOutcome> {
    let Decided {
        mut results,
        repeats,
        admitted,
    } = decided;
    let mut bases = Vec::with_capacity(c.chunks.len());
    for (ch, admitted) in c.chunks.iter().zip(admitted) {
        bases.push(if admitted {
            Some(index_chunk(txn, c, ch, states)?)
        } else {
            None
        });
    }
    // The object's references: one per indexed chunk; none, and it is garbage.
    let indexed = bases.iter().filter(|b| b.is_some()).count() as u64;
    let n = refs.entry(c.object.as_str()).or_default();
    *n += indexed;
    if indexed == 0 {
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
    let seg_key = Key::Segment(&c.segment_id).encode();
    txn.set(&seg_key, &record.encode());
    let forget_at = c.committed_ms.saturating_add(SEGMENT_RECORD_TTL_MS);
    txn.set(&Key::Expiry(forget_at, &seg_key).encode(), &[]);
    Ok(CommitOutcome {
        bases,
        units: results,
    })
}

/// Writes the index entry of an admitted chunk and advances its partition
/// in `states` (written back once, at the end of the batch).
fn index_chunk(
    txn: &mut dyn Txn,
    c: &SegmentCommit,
    ch: &ChunkCommit,
    states: &mut HashMap<(u64, u32), Advancing>,
) -> Result<u64> {
    let slot = states
        .get_mut(&(ch.topic_id, ch.partition))
        .ok_or(Error::Corrupt("partition state not read"))?;
    slot.advanced = true;
    let state = &mut slot.state;
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
    Ok(base)
}
