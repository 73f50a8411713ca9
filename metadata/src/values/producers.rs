//! Values of the producer keys: `Producer`, `ProducerAnswer` and
//! `Idempotency` (all binary).

use super::{Reader, V1, corrupt};
use crate::Error;

/// Value of `Producer(id)`: `v1 | epoch u32 | next_sequence u64 | expires_ms i64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerRecord {
    /// Bumped each time the producer's name is initialised again; requests
    /// of an older epoch are fenced.
    pub epoch: u32,
    /// The sequence the next new request must carry.
    pub next_sequence: u64,
    /// The producer is forgotten from this time on unless it produces
    /// (`Expiry` entries for the record and its answers end here).
    pub expires_ms: i64,
}

/// One part of an [`Answer`]: the offsets a request got on one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AnswerPart {
    pub topic_id: u64,
    pub partition: u32,
    pub base: u64,
    pub count: u32,
}

/// What a deduplicated request was answered, kept so its retries get the
/// same answer: `v1 | n u32 | (topic u64, partition u32, base u64, count u32)*`.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Answer {
    pub parts: Vec<AnswerPart>,
}

/// Value of `Idempotency(key)`: `v1 | expires_ms i64 | fingerprint u64 | answer`.
/// An `Expiry(expires_ms, key)` entry is written with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// The key is free again from this time on.
    pub expires_ms: i64,
    /// A hash of the request; a different request under the same key is refused.
    pub fingerprint: u64,
    pub answer: Answer,
}

/// Most batches a [`SequenceWindow`] remembers (Kafka keeps five per
/// producer and partition: a producer has at most five in flight).
pub const SEQUENCE_WINDOW: usize = 5;

/// One batch of a Kafka idempotent producer: its sequences and base offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SequencedBatch {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub base: u64,
}

/// Value of `KafkaSequence(producer_id, topic_id, partition)`: the batches
/// a Kafka idempotent producer last wrote to one partition, oldest first:
/// `v1 | epoch u32 | n u8 | (first i32, last i32, base u64)*`, n ≤ [`SEQUENCE_WINDOW`].
/// Expires with its producer (see `crate::producers`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SequenceWindow {
    pub epoch: u32,
    pub batches: Vec<SequencedBatch>,
}

impl SequenceWindow {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(6 + 16 * self.batches.len());
        v.push(V1);
        v.extend_from_slice(&self.epoch.to_be_bytes());
        v.push(self.batches.len() as u8);
        for b in &self.batches {
            v.extend_from_slice(&b.first_sequence.to_be_bytes());
            v.extend_from_slice(&b.last_sequence.to_be_bytes());
            v.extend_from_slice(&b.base.to_be_bytes());
        }
        v
    }

    pub fn decode(b: &[u8]) -> Result<Self, Error> {
        let mut r = Reader(b);
        (|| {
            r.version()?;
            let epoch = r.u32()?;
            let n = r.u8()? as usize;
            if n > SEQUENCE_WINDOW {
                return None;
            }
            let batches = (0..n)
                .map(|_| {
                    Some(SequencedBatch {
                        first_sequence: r.u32()? as i32,
                        last_sequence: r.u32()? as i32,
                        base: r.u64()?,
                    })
                })
                .collect::<Option<Vec<_>>>()?;
            r.end()?;
            Some(Self { epoch, batches })
        })()
        .ok_or(corrupt("sequence window"))
    }
}

impl ProducerRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(21);
        v.push(V1);
        v.extend_from_slice(&self.epoch.to_be_bytes());
        v.extend_from_slice(&self.next_sequence.to_be_bytes());
        v.extend_from_slice(&self.expires_ms.to_be_bytes());
        v
    }

    pub fn decode(b: &[u8]) -> Result<Self, Error> {
        let mut r = Reader(b);
        (|| {
            r.version()?;
            let p = Self {
                epoch: r.u32()?,
                next_sequence: r.u64()?,
                expires_ms: r.i64()?,
            };
            r.end()?;
            Some(p)
        })()
        .ok_or(corrupt("producer record"))
    }
}

impl Answer {
    fn encode_into(&self, v: &mut Vec<u8>) {
        v.extend_from_slice(&(self.parts.len() as u32).to_be_bytes());
        for p in &self.parts {
            v.extend_from_slice(&p.topic_id.to_be_bytes());
            v.extend_from_slice(&p.partition.to_be_bytes());
            v.extend_from_slice(&p.base.to_be_bytes());
            v.extend_from_slice(&p.count.to_be_bytes());
        }
    }

    fn decode_from(r: &mut Reader<'_>) -> Option<Self> {
        let n = r.u32()? as usize;
        if r.0.len() != n.checked_mul(24)? {
            return None;
        }
        let parts = (0..n)
            .map(|_| {
                Some(AnswerPart {
                    topic_id: r.u64()?,
                    partition: r.u32()?,
                    base: r.u64()?,
                    count: r.u32()?,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self { parts })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(5 + self.parts.len() * 24);
        v.push(V1);
        self.encode_into(&mut v);
        v
    }

    pub fn decode(b: &[u8]) -> Result<Self, Error> {
        let mut r = Reader(b);
        (|| {
            r.version()?;
            Self::decode_from(&mut r)
        })()
        .ok_or(corrupt("answer"))
    }
}

impl IdempotencyRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(21 + self.answer.parts.len() * 24);
        v.push(V1);
        v.extend_from_slice(&self.expires_ms.to_be_bytes());
        v.extend_from_slice(&self.fingerprint.to_be_bytes());
        self.answer.encode_into(&mut v);
        v
    }

    pub fn decode(b: &[u8]) -> Result<Self, Error> {
        let mut r = Reader(b);
        (|| {
            r.version()?;
            Some(Self {
                expires_ms: r.i64()?,
                fingerprint: r.u64()?,
                answer: Answer::decode_from(&mut r)?,
            })
        })()
        .ok_or(corrupt("idempotency record"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::MAX_CHUNKS_PER_SEGMENT;
    use proptest::prelude::*;

    fn answer() -> impl Strategy<Value = Answer> {
        proptest::collection::vec(
            (any::<u64>(), any::<u32>(), any::<u64>(), any::<u32>()),
            0..20,
        )
        .prop_map(|v| Answer {
            parts: v
                .into_iter()
                .map(|(topic_id, partition, base, count)| AnswerPart {
                    topic_id,
                    partition,
                    base,
                    count,
                })
                .collect(),
        })
    }

    proptest! {
        #[test]
        fn producer_round_trips(epoch in any::<u32>(), seq in any::<u64>(), exp in any::<i64>()) {
            let p = ProducerRecord { epoch, next_sequence: seq, expires_ms: exp };
            prop_assert_eq!(ProducerRecord::decode(&p.encode()).unwrap(), p);
        }
        #[test]
        fn answers_round_trip(a in answer(), ms in any::<i64>(), fp in any::<u64>()) {
            prop_assert_eq!(Answer::decode(&a.encode()).unwrap(), a.clone());
            let r = IdempotencyRecord { expires_ms: ms, fingerprint: fp, answer: a };
            prop_assert_eq!(IdempotencyRecord::decode(&r.encode()).unwrap(), r);
        }
        #[test]
        fn sequence_windows_round_trip(epoch in any::<u32>(), b in proptest::collection::vec((any::<i32>(), any::<i32>(), any::<u64>()), 0..=SEQUENCE_WINDOW)) {
            let w = SequenceWindow {
                epoch,
                batches: b.into_iter().map(|(f, l, base)| SequencedBatch { first_sequence: f, last_sequence: l, base }).collect(),
            };
            prop_assert_eq!(SequenceWindow::decode(&w.encode()).unwrap(), w);
        }
        #[test]
        fn garbage_is_an_error_not_a_panic(b in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = SequenceWindow::decode(&b);
            let _ = ProducerRecord::decode(&b);
            let _ = Answer::decode(&b);
            let _ = IdempotencyRecord::decode(&b);
        }
    }

    #[test]
    fn largest_answer_fits_fdb_value_limit() {
        let a = Answer {
            parts: vec![
                AnswerPart {
                    topic_id: 1,
                    partition: 2,
                    base: 3,
                    count: 4
                };
                MAX_CHUNKS_PER_SEGMENT
            ],
        };
        assert!(a.encode().len() < 100_000);
    }
}
