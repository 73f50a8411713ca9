//! Whole Kafka batches in and out: the fast path the Kafka front end uses.
//!
//! * In ([`Agent::append_batch`]): a batch a producer sent for one
//!   partition is checked off the runtime ([`silt_segment::produced`]) and
//!   stored byte for byte, compression and all, beside the records of every
//!   other request; only its base offset is rewritten. An idempotent
//!   producer's batch is a commit unit of its own, checked against its
//!   partition's sequence window in the commit that assigns its offsets.
//! * Out ([`Agent::read_batches`]): whole stored batches, base offsets made
//!   absolute — a read from inside a batch returns that batch, and the
//!   client skips the records before the offset it asked for, as Kafka
//!   clients do. Offsets only the Parquet archive still holds are encoded
//!   into batches again.
//!
//! Submitting and waiting are separate steps, so a connection can submit
//! its requests in order and wait for their commits together: within one
//! agent, what is submitted first commits first.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use silt_metadata::{Dedup, KafkaBatch, PartitionState};
use silt_segment::Compression;
use silt_segment::produced::ProducedBatch;
use tokio::sync::{oneshot, watch};

use crate::batcher::{Appended, Part, Payload, UnitSpec};
use crate::metrics::Traffic;
use crate::reader::Limits;
use crate::{Agent, BatchProblem, Error, Result};

/// A batch submitted to the batcher; [`PendingBatch::wait`] for its offsets.
#[derive(Debug)]
pub struct PendingBatch {
    agent: Agent,
    topic: String,
    /// Records in the batch.
    records: u64,
    answer: oneshot::Receiver<Result<Appended>>,
}

/// Where a batch went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchAppended {
    pub base_offset: u64,
    /// A retry of a batch committed before: its original offset.
    pub duplicate: bool,
}

/// Whole batches read from one partition.
#[derive(Debug, Clone)]
pub struct BatchRead {
    pub state: PartitionState,
    /// Batches laid end to end, base offsets absolute.
    pub batches: Bytes,
    /// The offset after the last record returned (the request's offset if none).
    pub next_offset: u64,
}

impl Agent {
    /// Checks a producer's batch and hands it to the batcher. Errors here
    /// mean nothing was written: the topic or partition is unknown, the
    /// batch is malformed ([`Error::InvalidBatch`]), or the agent is at its
    /// memory bound.
    /// At the memory bound it waits up to `admission_wait` for earlier
    /// requests to drain.
    pub async fn append_batch(
        &self,
        topic: &str,
        partition: u32,
        batch: Bytes,
        admission_wait: Duration,
    ) -> Result<PendingBatch> {
        let inner = &self.inner;
        if inner.shutdown.is_cancelled() {
            return Err(Error::ShuttingDown);
        }
        let t = self.partition_of(topic, partition).await?;
        let admission = self.admit_within(batch.len(), admission_wait).await?;
        let limit = inner.config.max_decompressed_batch;
        let checking = inner
            .checks
            .acquire()
            .await
            .map_err(|_| Error::ShuttingDown)?;
        let checked =
            tokio::task::spawn_blocking(move || silt_segment::produced::check(batch, limit))
                .await
                .map_err(|e| Error::Internal(format!("batch check failed: {e}")))?;
        drop(checking);
        let checked: ProducedBatch =
            checked.map_err(|e| Error::InvalidBatch(BatchProblem::from(&e), e.to_string()))?;
        let unit = checked.producer.map(|p| UnitSpec {
            dedup: Some(Dedup::KafkaBatch(KafkaBatch {
                producer_id: p.producer_id as u64,
                epoch: p.producer_epoch.max(0) as u32,
                topic_id: t.id,
                partition,
                first_sequence: p.first_sequence,
                last_sequence: p.last_sequence,
            })),
            offsets: None,
        });
        let records = u64::from(checked.record_count);
        let part = Part {
            topic_id: t.id,
            topic: t.name.as_str().into(),
            partition,
            // Only records Silt encodes itself use the topic's codec.
            compression: Compression::None,
            payload: Payload::Produced(checked),
        };
        let answer = self.enqueue(vec![part], unit, admission).await?;
        Ok(PendingBatch {
            agent: self.clone(),
            topic: topic.to_owned(),
            records,
            answer,
        })
    }

    /// Reads whole batches from `offset` up to about `max_bytes` (at least
    /// one batch, however large, so a consumer never sticks). Returns no
    /// batches at the high-watermark; `OffsetOutOfRange` outside the log.
    pub async fn read_batches(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        max_bytes: usize,
    ) -> Result<BatchRead> {
        let inner = &self.inner;
        let t = self.partition_of(topic, partition).await?;
        let Some(plan) = inner.reader.plan(t.id, partition, offset).await? else {
            inner.topics.invalidate(topic);
            return Err(Error::TopicNotFound(topic.to_owned()));
        };
        let state = plan.state;
        if offset < state.log_start_offset && t.config.archive_serve_reads {
            return self
                .read_archived(&t, partition, offset, max_bytes, state)
                .await;
        }
        if offset < state.log_start_offset || offset > state.high_watermark {
            return Err(Error::OffsetOutOfRange {
                offset,
                earliest: state.log_start_offset,
                latest: state.high_watermark,
            });
        }
        let mut out = BytesMut::new();
        let mut next = offset;
        let limits = Limits {
            max_records: usize::MAX,
            max_bytes,
        };
        let chunks = inner.reader.prefetch(&plan.entries, offset, limits);
        let mut chunks = std::pin::pin!(chunks);
        while let Some(fetched) = chunks.next().await {
            if !out.is_empty() && out.len() >= max_bytes {
                break;
            }
            let (base, chunk) = fetched?;
            next = silt_segment::batch::copy_batches(&chunk, base, next, max_bytes, &mut out)?;
        }
        inner.metrics.fetch_records.inc_by(next - offset);
        inner
            .metrics
            .count_topic(topic, Traffic::Fetch, next - offset);
        Ok(BatchRead {
            state,
            batches: out.freeze(),
            next_offset: next,
        })
    }

    /// A receiver that changes whenever the partition's high-watermark
    /// grows (commits by any agent): long-polls over many partitions
    /// subscribe to each, then read, then wait on any.
    pub async fn subscribe(&self, topic: &str, partition: u32) -> Result<watch::Receiver<u64>> {
        let t = self.partition_of(topic, partition).await?;
        Ok(self.inner.notifier.subscribe(t.id, partition))
    }

    /// Archived records, encoded into one batch.
    async fn read_archived(
        &self,
        t: &silt_metadata::TopicInfo,
        partition: u32,
        offset: u64,
        max_bytes: usize,
        state: PartitionState,
    ) -> Result<BatchRead> {
        let inner = &self.inner;
        let limits = Limits {
            max_records: 10_000,
            max_bytes,
        };
        let records = inner
            .archive
            .read(
                &inner.reader,
                t,
                partition,
                offset,
                state.log_start_offset,
                limits,
            )
            .await?;
        let Some(first) = records.first() else {
            return Err(Error::OffsetOutOfRange {
                offset,
                earliest: state.log_start_offset,
                latest: state.high_watermark,
            });
        };
        let base = first.offset;
        let next_offset = base + records.len() as u64;
        self.inner
            .metrics
            .count_topic(&t.name, Traffic::Fetch, records.len() as u64);
        let records: Vec<_> = records.into_iter().map(|r| r.record).collect();
        let mut out = Vec::new();
        let base = i64::try_from(base).map_err(|_| Error::Internal("offset exceeds i64".into()))?;
        silt_segment::batch::encode(&mut out, base, &records, Compression::None)?;
        Ok(BatchRead {
            state,
            batches: out.into(),
            next_offset,
        })
    }
}

impl PendingBatch {
    /// Waits for the batch's commit.
    pub async fn wait(self) -> Result<BatchAppended> {
        let inner = &self.agent.inner;
        match self.answer.await {
            Ok(Ok(Appended::Committed(bases))) => {
                inner
                    .metrics
                    .count_topic(&self.topic, Traffic::Produce, self.records);
                Ok(BatchAppended {
                    base_offset: bases.first().copied().unwrap_or_default(),
                    duplicate: false,
                })
            }
            Ok(Ok(Appended::Duplicate(a))) => {
                inner.metrics.produce_duplicates.inc();
                Ok(BatchAppended {
                    base_offset: a.parts.first().map_or(0, |p| p.base),
                    duplicate: true,
                })
            }
            Ok(Err(Error::TopicNotFound(t))) => {
                inner.topics.invalidate(&t);
                Err(Error::TopicNotFound(self.topic))
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Internal("the batcher dropped a request".into())),
        }
    }
}
