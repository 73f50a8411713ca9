//! Kafka idempotent producers: sequence numbers per partition.
//!
//! A Kafka producer gets its id and epoch from the same producer records as
//! Silt's HTTP idempotent producers ([`crate::producers`]), but numbers its
//! records per partition: each batch carries the sequence of its first
//! record. Where the batch's offsets are assigned ([`crate::commit`]), in
//! the same transaction, its `KafkaSequence` window decides:
//! * the batch continues the window (its first sequence follows the last
//!   one, wrapping at `i32::MAX`; or the window is empty or of an older
//!   epoch and it starts at 0): it commits, and joins the window;
//! * it repeats one of the window's batches exactly: a duplicate, answered
//!   with that batch's original base offset;
//! * it is older than the window: `SequenceTooOld` (Kafka's
//!   `DUPLICATE_SEQUENCE_NUMBER`, which clients treat as delivered);
//! * anything else is a gap: `OutOfOrderSequence`.
//!
//! The window holds the last [`SEQUENCE_WINDOW`] batches, as Kafka does: a
//! producer has at most five in flight per partition. It expires with its
//! producer record.

use crate::keys::Key;
use crate::kv::Txn;
use crate::values::{
    Answer, AnswerPart, ProducerRecord, Refusal, SEQUENCE_WINDOW, SequenceWindow, SequencedBatch,
};
use crate::{Result, UnitResult};

/// One Kafka idempotent batch, as the commit unit of its single chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct KafkaBatch {
    pub producer_id: u64,
    pub epoch: u32,
    pub topic_id: u64,
    pub partition: u32,
    pub first_sequence: i32,
    pub last_sequence: i32,
}

/// Base offset of a batch admitted in this transaction, until it is known.
const UNASSIGNED: u64 = u64::MAX;

impl KafkaBatch {
    fn key(&self) -> Vec<u8> {
        Key::KafkaSequence(self.producer_id, self.topic_id, self.partition).encode()
    }

    fn count(&self) -> u32 {
        let n = i64::from(self.last_sequence) - i64::from(self.first_sequence);
        // Wrapped past i32::MAX.
        let n = if n < 0 {
            n + i64::from(i32::MAX) + 1
        } else {
            n
        };
        (n + 1) as u32
    }

    fn answer(&self, base: u64) -> Answer {
        Answer {
            parts: vec![AnswerPart {
                topic_id: self.topic_id,
                partition: self.partition,
                base,
                count: self.count(),
            }],
        }
    }
}

/// What the window decided.
pub(crate) enum Check {
    /// Commit it; then [`admit`] with this producer record and window.
    Next(ProducerRecord, SequenceWindow),
    /// Decided without committing.
    Done(UnitResult),
}

fn follows(last: i32) -> i32 {
    if last == i32::MAX { 0 } else { last + 1 }
}

pub(crate) async fn check(txn: &mut dyn Txn, b: &KafkaBatch) -> Result<Check> {
    let refuse = |r| Ok(Check::Done(UnitResult::Refused(r)));
    let Some(raw) = txn
        .get(&Key::Producer(b.producer_id).encode(), false)
        .await?
    else {
        return refuse(Refusal::UnknownProducer {
            producer_id: b.producer_id,
        });
    };
    let producer = ProducerRecord::decode(&raw)?;
    if b.epoch < producer.epoch {
        return refuse(Refusal::ProducerFenced {
            epoch: producer.epoch,
        });
    }
    if b.epoch > producer.epoch {
        return refuse(Refusal::UnknownProducer {
            producer_id: b.producer_id,
        });
    }
    let window = match txn.get(&b.key(), false).await? {
        Some(raw) => SequenceWindow::decode(&raw)?,
        None => SequenceWindow::default(),
    };
    let window = if window.epoch == b.epoch {
        window
    } else {
        // A new epoch numbers from 0 again.
        SequenceWindow {
            epoch: b.epoch,
            batches: Vec::new(),
        }
    };
    let Some(last) = window.batches.last() else {
        return if b.first_sequence == 0 {
            Ok(Check::Next(producer, window))
        } else {
            refuse(Refusal::OutOfOrderSequence { expected: 0 })
        };
    };
    if let Some(dup) = window
        .batches
        .iter()
        .find(|w| (w.first_sequence, w.last_sequence) == (b.first_sequence, b.last_sequence))
    {
        return Ok(Check::Done(UnitResult::Duplicate(b.answer(dup.base))));
    }
    let expected = follows(last.last_sequence);
    if b.first_sequence == expected {
        return Ok(Check::Next(producer, window));
    }
    let oldest = window.batches[0].first_sequence;
    // Older than the window (no wrap in between): delivered long ago.
    if b.first_sequence < oldest && oldest <= last.last_sequence {
        return refuse(Refusal::SequenceTooOld {
            oldest: oldest as u64,
        });
    }
    refuse(Refusal::OutOfOrderSequence {
        expected: expected as u64,
    })
}

/// Adds an admitted batch to its window; its base offset follows in
/// [`record_base`] once the commit has assigned it.
pub(crate) fn admit(txn: &mut dyn Txn, b: &KafkaBatch, mut window: SequenceWindow) {
    window.batches.push(SequencedBatch {
        first_sequence: b.first_sequence,
        last_sequence: b.last_sequence,
        base: UNASSIGNED,
    });
    if window.batches.len() > SEQUENCE_WINDOW {
        window.batches.remove(0);
    }
    txn.set(&b.key(), &window.encode());
}

/// Records the base offset an admitted batch got.
pub(crate) async fn record_base(txn: &mut dyn Txn, b: &KafkaBatch, base: u64) -> Result<()> {
    let key = b.key();
    let Some(raw) = txn.get(&key, false).await? else {
        return Err(crate::Error::Corrupt(
            "sequence window vanished in its commit",
        ));
    };
    let mut window = SequenceWindow::decode(&raw)?;
    let entry = window.batches.iter_mut().rev().find(|w| {
        (w.first_sequence, w.last_sequence, w.base)
            == (b.first_sequence, b.last_sequence, UNASSIGNED)
    });
    let Some(entry) = entry else {
        return Err(crate::Error::Corrupt(
            "admitted batch missing from its window",
        ));
    };
    entry.base = base;
    txn.set(&key, &window.encode());
    Ok(())
}

/// The answer a committed batch got, for a retried commit's replay.
pub(crate) async fn stored(txn: &mut dyn Txn, b: &KafkaBatch) -> Result<Option<Answer>> {
    let Some(raw) = txn.get(&b.key(), true).await? else {
        return Ok(None);
    };
    let window = SequenceWindow::decode(&raw)?;
    Ok(window
        .batches
        .iter()
        .find(|w| (w.first_sequence, w.last_sequence) == (b.first_sequence, b.last_sequence))
        .filter(|w| w.base != UNASSIGNED)
        .map(|w| b.answer(w.base)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(first: i32, last: i32) -> KafkaBatch {
        KafkaBatch {
            producer_id: 1,
            epoch: 0,
            topic_id: 2,
            partition: 3,
            first_sequence: first,
            last_sequence: last,
        }
    }

    #[test]
    fn counts_wrap_like_kafka() {
        assert_eq!(batch(0, 9).count(), 10);
        assert_eq!(batch(i32::MAX - 1, 1).count(), 4);
        assert_eq!(follows(i32::MAX), 0);
    }
}
