//! Produce requests: partition, admit, hand to the batcher, answer.
//!
//! A request is one or more topic batches. It is *exclusive* — its chunks
//! commit as one unit, all or nothing — when it spans topics, carries an
//! idempotence identity (producer sequence or idempotency key), or commits
//! group offsets with its records (a transaction). A plain single-topic
//! request shares chunks with every other request in its segment; it is
//! atomic all the same, since one transaction commits the whole segment
//! and its topic cannot lose partitions.
//!
//! Retries of an idempotent request must land on the same partitions, so
//! its unkeyed records go to a partition derived from its identity instead
//! of the rotating sticky choice; a duplicate's stored answer is checked
//! against the retry's partitions and counts before it is returned.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use silt_metadata::Dedup;
use silt_segment::Record;
use tokio::sync::oneshot;

use crate::batcher::{Admission, Append, Appended, Part, Payload, UnitSpec};
use crate::groups::GroupCommit;
use crate::metrics::Traffic;
use crate::{Agent, Error, ProduceRecord, Result, compression, partitioner};

/// Records for one topic.
#[derive(Debug, Clone, Default)]
pub struct TopicBatch {
    pub topic: String,
    pub records: Vec<ProduceRecord>,
}

/// How retries of a request are recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Idempotence {
    /// An idempotent producer's next request (see [`Agent::init_producer`]).
    Producer { id: u64, epoch: u32, sequence: u64 },
    /// A client-chosen key; `fingerprint` identifies the request (see
    /// [`fingerprint`]). Remembered for the agent's idempotency window.
    Key { key: String, fingerprint: u64 },
}

/// A produce request.
#[derive(Debug, Clone, Default)]
pub struct ProduceRequest {
    pub batches: Vec<TopicBatch>,
    pub idempotence: Option<Idempotence>,
    /// Input offsets to commit with the records (consume-transform-produce).
    pub commit: Option<GroupCommit>,
}

/// Where each record went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceAnswer {
    /// Per batch, per record: `(partition, offset)`.
    pub offsets: Vec<Vec<(u32, u64)>>,
    /// The request had been committed before; these are its first offsets.
    pub duplicate: bool,
}

/// Longest idempotency key.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

/// A stable 64-bit hash (FNV-1a) of a request's parts, the same on every
/// agent and version: the fingerprint stored with an idempotency key.
pub fn fingerprint(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl Idempotence {
    fn seed(&self) -> u64 {
        match self {
            Idempotence::Producer {
                id,
                epoch,
                sequence,
            } => fingerprint(&[
                &id.to_be_bytes(),
                &epoch.to_be_bytes(),
                &sequence.to_be_bytes(),
            ]),
            Idempotence::Key { key, .. } => fingerprint(&[key.as_bytes()]),
        }
    }
}

/// Where each record of the request goes: `(part, position in part)`.
type Placement = Vec<Vec<(usize, u64)>>;

/// Records per topic of a request's parts.
fn per_topic(parts: &[Part]) -> HashMap<Arc<str>, u64> {
    let mut out = HashMap::new();
    for p in parts {
        *out.entry(p.topic.clone()).or_default() += u64::from(p.payload.record_count());
    }
    out
}

impl Agent {
    /// Appends records; answers with each record's partition and offset,
    /// in request order, once they are durable and visible.
    pub async fn produce_request(&self, req: ProduceRequest) -> Result<ProduceAnswer> {
        let inner = &self.inner;
        if inner.shutdown.is_cancelled() {
            self.count_rejected("shutting_down");
            return Err(Error::ShuttingDown);
        }
        if req.batches.iter().all(|b| b.records.is_empty()) {
            return Err(Error::InvalidArgument(
                "a produce request needs at least one record".into(),
            ));
        }
        if let Some(Idempotence::Key { key, .. }) = &req.idempotence {
            if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY {
                return Err(Error::InvalidArgument(format!(
                    "an idempotency key holds 1 to {MAX_IDEMPOTENCY_KEY} bytes"
                )));
            }
        }
        let exclusive = req.batches.len() > 1 || req.idempotence.is_some() || req.commit.is_some();
        let seed = req.idempotence.as_ref().map(Idempotence::seed);
        let (parts, placement, weight) = self.partition(req.batches, seed).await?;
        if parts.len() > silt_metadata::values::MAX_CHUNKS_PER_SEGMENT {
            return Err(Error::InvalidArgument(format!(
                "a request may write to at most {} partitions",
                silt_metadata::values::MAX_CHUNKS_PER_SEGMENT
            )));
        }
        let unit = if exclusive {
            let now = inner.env.now_ms();
            let window = inner.config.idempotency_window.as_millis() as i64;
            Some(UnitSpec {
                dedup: req.idempotence.map(|i| match i {
                    Idempotence::Producer {
                        id,
                        epoch,
                        sequence,
                    } => Dedup::Producer {
                        id,
                        epoch,
                        sequence,
                    },
                    Idempotence::Key { key, fingerprint } => Dedup::Key {
                        key,
                        fingerprint,
                        expires_ms: now.saturating_add(window),
                    },
                }),
                offsets: match req.commit {
                    Some(c) => Some(self.resolve_commit(c).await?),
                    None => None,
                },
            })
        } else {
            None
        };
        let shape: Vec<(u64, u32, u32)> = parts
            .iter()
            .map(|p| (p.topic_id, p.partition, p.payload.record_count()))
            .collect();
        let traffic = per_topic(&parts);
        let admission = self.admit(weight)?;
        let answer = self.enqueue(parts, unit, admission).await?;
        let (bases, duplicate) = match answer.await {
            Ok(Ok(Appended::Committed(bases))) => {
                for (topic, records) in traffic {
                    inner.metrics.count_topic(&topic, Traffic::Produce, records);
                }
                (bases, false)
            }
            Ok(Ok(Appended::Duplicate(a))) => {
                let same = a.parts.len() == shape.len()
                    && a.parts
                        .iter()
                        .zip(&shape)
                        .all(|(p, &(t, q, n))| (p.topic_id, p.partition, p.count) == (t, q, n));
                if !same {
                    return Err(Error::Refused(silt_metadata::Refusal::RequestMismatch));
                }
                inner.metrics.produce_duplicates.inc();
                (a.parts.iter().map(|p| p.base).collect(), true)
            }
            Ok(Err(Error::TopicNotFound(t))) => {
                // Deleted — or deleted and created again (by another agent)
                // since this agent cached it: then nothing was written and
                // a retry reaches the new topic.
                inner.topics.invalidate(&t);
                if inner.md.topic(&t).await?.is_some() {
                    return Err(Error::TopicChanged(t));
                }
                return Err(Error::TopicNotFound(t));
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(Error::Internal("the batcher dropped a request".into())),
        };
        let offsets = placement
            .into_iter()
            .map(|batch| {
                batch
                    .into_iter()
                    .map(|(i, k)| (shape[i].1, bases[i] + k))
                    .collect()
            })
            .collect();
        Ok(ProduceAnswer { offsets, duplicate })
    }

    /// Appends records to one topic; returns `(partition, offset)` per record.
    pub async fn produce(
        &self,
        topic: &str,
        records: Vec<ProduceRecord>,
    ) -> Result<Vec<(u32, u64)>> {
        let req = ProduceRequest {
            batches: vec![TopicBatch {
                topic: topic.to_owned(),
                records,
            }],
            ..ProduceRequest::default()
        };
        let mut answer = self.produce_request(req).await?;
        Ok(answer.offsets.pop().unwrap_or_default())
    }

    /// Chooses every record's partition; groups records into parts (one per
    /// partition). `seed` makes the choice for unkeyed records deterministic.
    async fn partition(
        &self,
        batches: Vec<TopicBatch>,
        seed: Option<u64>,
    ) -> Result<(Vec<Part>, Placement, usize)> {
        let inner = &self.inner;
        let now = inner.env.now_ms();
        // Each part's head (payload still empty) and records.
        let mut parts: Vec<(Part, Vec<Record>)> = Vec::new();
        let mut index: HashMap<(u64, u32), usize> = HashMap::new();
        let mut placement = Vec::with_capacity(batches.len());
        let mut weight = 0;
        for batch in batches {
            let t = inner.topics.get(&batch.topic).await?;
            let name: Arc<str> = t.name.as_str().into();
            let mut sticky = None;
            let mut places = Vec::with_capacity(batch.records.len());
            for r in batch.records {
                let p = match (r.partition, &r.key) {
                    (Some(p), _) if p >= t.partitions => {
                        return Err(Error::PartitionNotFound {
                            topic: batch.topic,
                            partition: p,
                            partitions: t.partitions,
                        });
                    }
                    (Some(p), _) => p,
                    (None, Some(k)) => partitioner::partition_for_key(k, t.partitions),
                    (None, None) => *sticky.get_or_insert_with(|| match seed {
                        Some(s) => (s % u64::from(t.partitions)) as u32,
                        None => inner.sticky.next(t.partitions),
                    }),
                };
                let record = Record {
                    timestamp: r.timestamp.unwrap_or(now),
                    key: r.key,
                    value: r.value,
                    headers: r.headers,
                };
                weight += record.weight();
                let i = *index.entry((t.id, p)).or_insert_with(|| {
                    let head = Part {
                        topic_id: t.id,
                        topic: name.clone(),
                        partition: p,
                        compression: compression(t.config.compression),
                        payload: Payload::Records(Vec::new()),
                    };
                    parts.push((head, Vec::new()));
                    parts.len() - 1
                });
                let records = &mut parts[i].1;
                places.push((i, records.len() as u64));
                records.push(record);
            }
            placement.push(places);
        }
        let parts = parts
            .into_iter()
            .map(|(head, records)| Part {
                payload: Payload::Records(records),
                ..head
            })
            .collect();
        Ok((parts, placement, weight))
    }

    /// Hands admitted parts to the batcher; the receiver gets their outcome.
    pub(crate) async fn enqueue(
        &self,
        parts: Vec<Part>,
        unit: Option<UnitSpec>,
        admission: Admission,
    ) -> Result<oneshot::Receiver<Result<Appended>>> {
        let (reply, answer) = oneshot::channel();
        let append = Append {
            parts,
            unit,
            reply,
            admission,
        };
        self.inner
            .appends
            .send(append)
            .await
            .map_err(|_| Error::ShuttingDown)?;
        Ok(answer)
    }

    /// Reserves `weight` bytes of the memory bound, or answers 429.
    pub(crate) fn admit(&self, weight: usize) -> Result<Admission> {
        let inner = &self.inner;
        let admitted = u32::try_from(weight).ok().and_then(|w| {
            inner
                .admission
                .clone()
                .try_acquire_many_owned(w.max(1))
                .ok()
        });
        self.admitted(admitted)
    }

    /// Reserves `weight` bytes of the memory bound, waiting up to `wait`
    /// for earlier requests to drain.
    pub(crate) async fn admit_within(&self, weight: usize, wait: Duration) -> Result<Admission> {
        let inner = &self.inner;
        let permits = u32::try_from(weight.max(1))
            .ok()
            .filter(|&w| w as usize <= inner.config.max_inflight_bytes);
        let admitted = match permits {
            Some(w) => tokio::time::timeout(wait, inner.admission.clone().acquire_many_owned(w))
                .await
                .ok()
                .and_then(Result::ok),
            None => None,
        };
        self.admitted(admitted)
    }

    fn admitted(&self, permit: Option<tokio::sync::OwnedSemaphorePermit>) -> Result<Admission> {
        let inner = &self.inner;
        let Some(permit) = permit else {
            self.count_rejected("overloaded");
            return Err(Error::Overloaded {
                retry_after: inner.config.flush_interval.max(Duration::from_millis(100)) * 2,
            });
        };
        inner
            .metrics
            .inflight_bytes
            .inc_by(permit.num_permits() as i64);
        Ok(Admission {
            permit,
            metrics: inner.metrics.clone(),
        })
    }

    fn count_rejected(&self, reason: &str) {
        self.inner
            .metrics
            .produce_rejected
            .get_or_create(&vec![("reason".into(), reason.into())])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_stable_and_separate_parts() {
        assert_eq!(fingerprint(&[b"abc"]), fingerprint(&[b"abc"]));
        assert_ne!(fingerprint(&[b"ab", b"c"]), fingerprint(&[b"a", b"bc"]));
        assert_ne!(fingerprint(&[b"abc"]), fingerprint(&[b"abd"]));
        // Pinned: the fingerprint is stored, so it must never change.
        assert_eq!(fingerprint(&[b""]), 0xaf64_724c_8602_eb6e);
    }
}
