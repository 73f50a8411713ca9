//! The commit sequencer: one agent, elected by lease, commits the segments
//! of every agent, many per metadata transaction.
//!
//! Why: every segment commit reads and advances the state of each
//! partition it touches. When many agents commit at once to the same
//! partitions, those transactions conflict and retry on FoundationDB, and
//! the retries grow with the number of agents (`silt bench --contention`).
//! With one writer of partition states there is nothing to conflict with:
//! the sequencer takes whatever commits are queued, commits them in one
//! transaction ([`silt_metadata::Metadata::commit_segments`]), and answers
//! each; while that transaction is in flight the next batch gathers.
//!
//! **Invariant: the sequencer changes who sends a segment's commit, never
//! what is committed.** A batch is its segments committed one after
//! another, in one transaction, and a segment's `Segment` record makes its
//! commit idempotent wherever it is sent. So two sequencers at once (a
//! lease overlap), none at all, or one segment sent to a sequencer *and*
//! committed directly (its answer lost) all stay correct: offsets dense,
//! each segment indexed once, acked = durable. Every failure of the
//! sequenced path (busy, lost, stopped, refused) therefore has one answer:
//! the agent commits the segment itself ([`route`]).
//!
//! Bounded: the queue holds [`SequencerLimits::queue`] segments (a full
//! queue sends agents to direct commits), and a batch holds at most
//! [`SequencerLimits::max_batch_chunks`] chunks, far inside FoundationDB's
//! 10 MB and 5 s transaction limits.

pub mod order;
pub mod route;

use std::sync::Arc;

use silt_metadata::Metadata;
pub use silt_metadata::{CommitOutcome, SegmentCommit};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::metrics::Metrics;

/// The path of the internal endpoint on which the sequencer takes other
/// agents' commits (JSON `SegmentCommit` in, JSON `CommitOutcome` out).
pub const COMMIT_PATH: &str = "/internal/v1/commit";
/// The header carrying the sequencer's token (its lease holder id, which
/// only readers of the metadata store know).
pub const TOKEN_HEADER: &str = "silt-sequencer-token";
/// The problem code of [`Unsequenced::Pending`] on the internal endpoint.
pub const PENDING_CODE: &str = "predecessor_pending";
/// The lease the sequencer holds.
pub const LEASE: &str = "sequencer";

/// Bounds of one sequencer.
#[derive(Debug, Clone, Copy)]
pub struct SequencerLimits {
    /// Segments waiting for a batch; past it, agents commit directly.
    pub queue: usize,
    /// Chunks in one batch (a transaction writes about 150 bytes for each).
    pub max_batch_chunks: usize,
}

impl Default for SequencerLimits {
    fn default() -> Self {
        Self {
            queue: 4096,
            max_batch_chunks: 16_384,
        }
    }
}

/// Why the sequenced path gave no answer; the agent then commits directly.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Unsequenced {
    #[error("the sequencer's queue is full")]
    Busy,
    #[error("the sequencer has stopped")]
    Stopped,
    #[error("not the sequencer (the lease moved on)")]
    NotSequencer,
    #[error("the sequencer could not commit: {0}")]
    Failed(String),
    /// An answer, not a failure: the segment must follow `after`, which is
    /// not committed yet (`silt_metadata::Error::PredecessorPending`).
    #[error("segment {segment} waits for segment {after}")]
    Pending { segment: String, after: String },
}

struct Job {
    commit: SegmentCommit,
    reply: oneshot::Sender<Result<CommitOutcome, Unsequenced>>,
}

/// A running sequencer: a bounded queue and the task that drains it in
/// batches.
#[derive(Clone)]
pub struct Sequencer {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Sequencer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sequencer")
            .field("queued", &(self.jobs.max_capacity() - self.jobs.capacity()))
            .finish()
    }
}

impl Sequencer {
    /// Starts the batching task; it commits what is queued and ends once
    /// `stop` is cancelled.
    pub fn start(
        md: Arc<Metadata>,
        limits: SequencerLimits,
        metrics: Option<Metrics>,
        stop: CancellationToken,
    ) -> Self {
        let (jobs, rx) = mpsc::channel(limits.queue.max(1));
        tokio::spawn(run(md, rx, limits, metrics, stop));
        Self { jobs }
    }

    /// Commits `commit` in the next batch.
    pub async fn commit(&self, commit: SegmentCommit) -> Result<CommitOutcome, Unsequenced> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .try_send(Job { commit, reply })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => Unsequenced::Busy,
                mpsc::error::TrySendError::Closed(_) => Unsequenced::Stopped,
            })?;
        answer.await.map_err(|_| Unsequenced::Stopped)?
    }
}

async fn run(
    md: Arc<Metadata>,
    mut rx: mpsc::Receiver<Job>,
    limits: SequencerLimits,
    metrics: Option<Metrics>,
    stop: CancellationToken,
) {
    let mut carry: Option<Job> = None;
    loop {
        let first = match carry.take() {
            Some(job) => job,
            None => tokio::select! {
                job = rx.recv() => match job {
                    Some(job) => job,
                    None => return,
                },
                () = stop.cancelled() => {
                    // Take nothing more; commit what is already queued.
                    rx.close();
                    match rx.recv().await {
                        Some(job) => job,
                        None => return,
                    }
                }
            },
        };
        let mut chunks = first.commit.chunks.len();
        let mut jobs = vec![first];
        while let Ok(job) = rx.try_recv() {
            if chunks + job.commit.chunks.len() > limits.max_batch_chunks {
                carry = Some(job);
                break;
            }
            chunks += job.commit.chunks.len();
            jobs.push(job);
        }
        let span = tracing::debug_span!("sequencer_batch", segments = jobs.len(), chunks);
        commit_batch(&md, jobs, metrics.as_ref())
            .instrument(span)
            .await;
    }
}

async fn commit_batch(md: &Metadata, jobs: Vec<Job>, metrics: Option<&Metrics>) {
    if let Some(m) = metrics {
        m.sequencer_batch_segments.observe(jobs.len() as f64);
    }
    let (commits, replies): (Vec<_>, Vec<_>) =
        jobs.into_iter().map(|j| (j.commit, j.reply)).unzip();
    match md.commit_segments(commits).await {
        Ok(outcomes) => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(outcome.map_err(|e| match e {
                    silt_metadata::Error::PredecessorPending { segment, after } => {
                        Unsequenced::Pending { segment, after }
                    }
                    e => Unsequenced::Failed(e.to_string()),
                }));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "sequenced batch failed; its agents commit directly");
            let why = e.to_string();
            for reply in replies {
                let _ = reply.send(Err(Unsequenced::Failed(why.clone())));
            }
        }
    }
}
