//! Commit units: deciding whether a request's chunks may be written
//! (producer sequences, idempotency keys, offset commits), remembering the
//! answer a committed unit got, and replaying it to the unit's retries.

use std::collections::HashMap;

use super::{
    ANSWERS_KEPT, ChunkCommit, CommitOutcome, CommitUnit, Dedup, SegmentCommit, UnitResult,
};
use crate::groups::{check_offset_commit, write_offsets};
use crate::keys::Key;
use crate::kv::Txn;
use crate::producers::{PRODUCER_TTL_MS, put_producer};
use crate::sequences;
use crate::values::{
    Answer, IdempotencyRecord, ProducerRecord, Refusal, SegmentRecord, UnitOutcome,
};
use crate::{Error, Result};

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

/// The units of a segment, decided in order.
#[derive(Debug)]
pub(super) struct Decided {
    /// Per unit; a `Duplicate` in `repeats` is filled in once bases are known.
    pub results: Vec<UnitResult>,
    /// Later units that repeat a committed one of the same segment (a retry
    /// that landed beside its original): `(unit, original)`.
    pub repeats: Vec<(usize, usize)>,
    /// Per chunk: whether it gets offsets.
    pub admitted: Vec<bool>,
}

/// Decides every unit of `c` (given which of its topics exist, by id) and
/// which chunks get offsets.
pub(super) async fn decide(
    txn: &mut dyn Txn,
    c: &SegmentCommit,
    topics: &HashMap<u64, Option<u32>>,
) -> Result<Decided> {
    let exists = |ch: &ChunkCommit| {
        topics
            .get(&ch.topic_id)
            .copied()
            .flatten()
            .is_some_and(|n| ch.partition < n)
            && ch.record_count > 0
    };
    let mut unit_of = vec![None; c.chunks.len()];
    let mut results = Vec::with_capacity(c.units.len());
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
                    UnitResult::Duplicate(Answer::default())
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
    let admitted = c
        .chunks
        .iter()
        .enumerate()
        .map(|(i, ch)| unit_of[i].is_none_or(|u| results[u] == UnitResult::Committed) && exists(ch))
        .collect();
    Ok(Decided {
        results,
        repeats,
        admitted,
    })
}

/// Decides a unit whose chunks all exist: checks first, then writes the
/// producer's new sequence and the offsets (the answer comes later, once
/// the bases are known).
pub(super) async fn admit(txn: &mut dyn Txn, unit: &CommitUnit, now_ms: i64) -> Result<UnitResult> {
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
pub(super) async fn store_answer(
    txn: &mut dyn Txn,
    dedup: &Dedup,
    answer: Answer,
    now_ms: i64,
) -> Result<()> {
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
pub(super) async fn replay(
    txn: &mut dyn Txn,
    c: &SegmentCommit,
    rec: SegmentRecord,
) -> Result<CommitOutcome> {
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
