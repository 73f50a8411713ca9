//! The write path: gather records of all topics and partitions, flush them
//! as one segment, and acknowledge producers only once their offsets are
//! committed.
//!
//! Group commit: a segment is cut as soon as records wait and an upload
//! slot is free (what already queued joins it), so a lightly loaded agent
//! answers within one PUT and one commit; while all `max_concurrent_flushes`
//! uploads are busy, records gather into the next segment, so a busy one
//! writes big segments. `flush_interval` bounds how long records wait for a
//! slot and `flush_bytes` how big a segment grows.
//!
//! Invariants:
//! * A producer's reply carries offsets only after (1) its segment object is
//!   durable in the object store and (2) the metadata transaction assigning
//!   those offsets has committed. Acknowledged ⇒ durable and readable.
//! * A request marked exclusive (atomic across topics, idempotent, or
//!   carrying group offsets) gets chunks of its own, which commit as one
//!   unit under its conditions, or not at all (`silt_metadata::commit`).
//! * A segment never exceeds `MAX_CHUNKS_PER_SEGMENT` chunks: a request
//!   that would overflow it waits for the next segment.
//! * Within one agent, segments commit in the order they were cut, although
//!   up to `max_concurrent_flushes` upload at once; so records a producer
//!   sends after an acknowledgement always get higher offsets, and records of
//!   one request keep their order.
//! * Memory is bounded: every buffered byte holds a permit of the agent's
//!   admission semaphore until its producer has been answered.
//! * Encoding and compression run on the blocking pool, off the runtime.

use std::collections::BTreeMap;
use std::sync::Arc;

use silt_metadata::groups::OffsetCommit;
use silt_metadata::values::MAX_CHUNKS_PER_SEGMENT;
use silt_metadata::{
    Answer, ChunkCommit, CommitOutcome, CommitUnit, Dedup, Refusal, SegmentCommit, UnitResult,
};
use silt_segment::produced::ProducedBatch;
use silt_segment::segment::{ChunkInfo, SegmentWriter};
use silt_segment::store::ObjectStorage;
use silt_segment::{Compression, Record};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::AgentConfig;
use crate::env::Env;
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::sequencer::order::{Predecessor, commit_in_order};
use crate::sequencer::route::Commits;
use crate::{Error, Result};

/// Holds admitted bytes until the producer is answered.
#[derive(Debug)]
pub(crate) struct Admission {
    pub permit: OwnedSemaphorePermit,
    pub metrics: Metrics,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.metrics
            .inflight_bytes
            .dec_by(self.permit.num_permits() as i64);
    }
}

/// One produce request, already partitioned.
#[derive(Debug)]
pub(crate) struct Append {
    /// A partition appears at most once.
    pub parts: Vec<Part>,
    /// `Some`: the request's chunks are its own and commit as one unit.
    pub unit: Option<UnitSpec>,
    pub reply: oneshot::Sender<Result<Appended>>,
    pub admission: Admission,
}

/// The records of one request for one partition.
#[derive(Debug)]
pub(crate) struct Part {
    pub topic_id: u64,
    /// For errors.
    pub topic: Arc<str>,
    pub partition: u32,
    pub compression: Compression,
    pub payload: Payload,
}

/// What a part holds.
#[derive(Debug)]
pub(crate) enum Payload {
    /// Records to encode into batches of the part's compression.
    Records(Vec<Record>),
    /// A batch a Kafka producer sent, checked; stored as it is.
    Produced(ProducedBatch),
}

impl Payload {
    pub fn record_count(&self) -> u32 {
        match self {
            Payload::Records(r) => r.len() as u32,
            Payload::Produced(b) => b.record_count,
        }
    }
}

/// The conditions of an exclusive request (see `silt_metadata::commit`).
#[derive(Debug, Clone, Default)]
pub(crate) struct UnitSpec {
    pub dedup: Option<Dedup>,
    pub offsets: Option<OffsetCommit>,
}

/// How a request ended.
#[derive(Debug)]
pub(crate) enum Appended {
    /// The base offset of each part.
    Committed(Vec<u64>),
    /// A retry of a committed request: the original answer.
    Duplicate(Answer),
}

#[derive(Debug)]
struct Waiter {
    reply: oneshot::Sender<Result<Appended>>,
    topics: Vec<Arc<str>>,
    bases: Vec<u64>,
    records: u64,
    unit: Option<UnitSpec>,
    outcome: Option<Result<Appended>>,
    _admission: Admission,
}

impl Waiter {
    fn fail(&mut self, e: Error) {
        if !matches!(self.outcome, Some(Err(_))) {
            self.outcome = Some(Err(e));
        }
    }
}

#[derive(Debug)]
struct Chunk {
    compression: Compression,
    /// In arrival order; neighbouring records are merged into one piece.
    pieces: Vec<Payload>,
    record_count: u32,
    /// Holds one exclusive request's part; never shared.
    exclusive: bool,
    /// `(waiter, part, offset of the part's first record within the chunk)`.
    parts: Vec<(usize, usize, u32)>,
}

#[derive(Debug, Default)]
struct Pending {
    /// Per partition, its chunks in arrival order.
    chunks: BTreeMap<(u64, u32), Vec<Chunk>>,
    chunk_count: usize,
    waiters: Vec<Waiter>,
    bytes: usize,
    opened: Option<Instant>,
}

impl Pending {
    /// Whether `a` fits without the segment exceeding its chunk bound.
    fn fits(&self, a: &Append) -> bool {
        self.chunk_count + a.parts.len() <= MAX_CHUNKS_PER_SEGMENT
    }

    fn add(&mut self, a: Append) {
        let w = self.waiters.len();
        self.bytes += a.admission.permit.num_permits();
        self.opened.get_or_insert_with(Instant::now);
        let exclusive = a.unit.is_some();
        let mut records = 0;
        let mut topics = Vec::with_capacity(a.parts.len());
        for (part, p) in a.parts.into_iter().enumerate() {
            let list = self.chunks.entry((p.topic_id, p.partition)).or_default();
            let shared = list.last_mut().filter(|c| !exclusive && !c.exclusive);
            let chunk = match shared {
                Some(c) => c,
                None => {
                    self.chunk_count += 1;
                    list.push(Chunk {
                        compression: p.compression,
                        pieces: Vec::new(),
                        record_count: 0,
                        exclusive,
                        parts: Vec::new(),
                    });
                    list.last_mut().expect("just pushed")
                }
            };
            chunk.compression = p.compression;
            chunk.parts.push((w, part, chunk.record_count));
            let n = p.payload.record_count();
            records += u64::from(n);
            chunk.record_count += n;
            match (chunk.pieces.last_mut(), p.payload) {
                (Some(Payload::Records(last)), Payload::Records(more)) => last.extend(more),
                (_, payload) => chunk.pieces.push(payload),
            }
            topics.push(p.topic);
        }
        self.waiters.push(Waiter {
            reply: a.reply,
            bases: vec![0; topics.len()],
            topics,
            records,
            unit: a.unit,
            outcome: None,
            _admission: a.admission,
        });
    }

    fn is_empty(&self) -> bool {
        self.waiters.is_empty()
    }

    /// Chunks in segment order.
    fn ordered(&self) -> impl Iterator<Item = (&(u64, u32), &Chunk)> {
        self.chunks
            .iter()
            .flat_map(|(k, list)| list.iter().map(move |c| (k, c)))
    }
}

/// What every flush needs.
#[derive(Debug)]
pub(crate) struct FlushContext {
    pub config: AgentConfig,
    pub commits: Arc<Commits>,
    pub storage: ObjectStorage,
    pub env: Arc<dyn Env>,
    pub notifier: Arc<Notifier>,
    pub metrics: Metrics,
}

/// Runs the batcher until `shutdown`, then drains: every request already
/// accepted is flushed and answered before this returns.
pub(crate) async fn run(
    ctx: Arc<FlushContext>,
    mut rx: mpsc::Receiver<Append>,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(ctx.config.max_concurrent_flushes.max(1)));
    let mut flushes = JoinSet::new();
    let mut pending = Pending::default();
    let mut prev_commit: Option<Predecessor> = None;
    // A request that did not fit the open segment; it opens the next one.
    let mut deferred: Option<Append> = None;
    let mut closing = false;
    loop {
        let deadline = pending.opened.map(|t| t + ctx.config.flush_interval);
        let full = pending.bytes >= ctx.config.flush_bytes || deferred.is_some();
        let idle_slot = ctx.config.group_commit && slots.available_permits() > 0;
        let due = !pending.is_empty()
            && (full || closing || idle_slot || deadline.is_some_and(|d| d <= Instant::now()));
        if closing && pending.is_empty() && rx.is_closed() && rx.is_empty() {
            break;
        }
        // Stop receiving while the segment is full, or once closed and drained.
        let drained = closing && rx.is_empty();
        let receiving = !full && !drained;
        tokio::select! {
            biased;
            slot = slots.clone().acquire_owned(), if due => {
                let Ok(slot) = slot else { break };
                // What has already queued rides along.
                while deferred.is_none() && pending.bytes < ctx.config.flush_bytes {
                    match rx.try_recv() {
                        Ok(a) if pending.fits(&a) => pending.add(a),
                        Ok(a) => deferred = Some(a),
                        Err(_) => break,
                    }
                }
                let name = SegmentName::new(&ctx);
                let (done_tx, done_rx) = oneshot::channel();
                let prev = prev_commit.replace(Predecessor {
                    segment_id: name.id.clone(),
                    done: done_rx,
                });
                let batch = std::mem::take(&mut pending);
                if let Some(a) = deferred.take() {
                    pending.add(a);
                }
                let records: u64 = batch.waiters.iter().map(|w| w.records).sum();
                let span = tracing::info_span!("flush", records, bytes = batch.bytes, chunks = batch.chunk_count);
                flushes.spawn(flush(ctx.clone(), batch, slot, name, prev, done_tx).instrument(span));
            }
            () = shutdown.cancelled(), if !closing => {
                closing = true;
                rx.close();
            }
            msg = rx.recv(), if receiving => match msg {
                Some(a) if pending.fits(&a) => pending.add(a),
                Some(a) => deferred = Some(a),
                None if closing => {}
                None => { closing = true; }
            },
            () = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() && !due => {}
            Some(_) = flushes.join_next(), if !flushes.is_empty() => {}
        }
    }
    while flushes.join_next().await.is_some() {}
}

/// Encodes the pending records into one segment, in (topic, partition) order.
fn encode(pending: &Pending, batch_target: usize) -> Result<(Vec<u8>, Vec<ChunkInfo>)> {
    let mut w = SegmentWriter::with_capacity(pending.bytes + pending.bytes / 8);
    for (&(topic, partition), chunk) in pending.ordered() {
        w.begin_chunk(topic, partition)?;
        for piece in &chunk.pieces {
            let records = match piece {
                Payload::Produced(batch) => {
                    w.append_produced(batch)?;
                    continue;
                }
                Payload::Records(records) => records,
            };
            let mut start = 0;
            let mut weight = 0;
            for (i, r) in records.iter().enumerate() {
                weight += r.weight();
                if weight >= batch_target || i + 1 == records.len() {
                    w.append_batch(&records[start..=i], chunk.compression)?;
                    start = i + 1;
                    weight = 0;
                }
            }
        }
    }
    Ok(w.finish())
}

async fn flush(
    ctx: Arc<FlushContext>,
    mut pending: Pending,
    _slot: OwnedSemaphorePermit,
    name: SegmentName,
    prev: Option<Predecessor>,
    done: oneshot::Sender<()>,
) {
    let opened = pending.opened.unwrap_or_else(Instant::now);
    let result = write_and_commit(&ctx, &mut pending, name, prev).await;
    drop(done);
    match result {
        Ok(()) => {
            ctx.metrics.segments_flushed.inc();
            ctx.metrics
                .flush_seconds
                .observe(opened.elapsed().as_secs_f64());
        }
        Err(e) => {
            tracing::error!(error = %e, "flush failed; producers get an error");
            ctx.metrics.flush_failures.inc();
            for w in &mut pending.waiters {
                w.fail(e.clone());
            }
        }
    }
    for w in pending.waiters {
        let answer = w.outcome.unwrap_or(Ok(Appended::Committed(w.bases)));
        if let Ok(Appended::Committed(_)) = &answer {
            ctx.metrics.produce_records.inc_by(w.records);
            ctx.metrics
                .produce_bytes
                .inc_by(w._admission.permit.num_permits() as u64);
        }
        let _ = w.reply.send(answer);
    }
}

/// A segment's id and object, given when it is cut.
#[derive(Debug)]
struct SegmentName {
    id: String,
    created_ms: i64,
}

impl SegmentName {
    fn new(ctx: &FlushContext) -> Self {
        let created_ms = ctx.env.now_ms();
        let id = format!("{:013}-{:016x}", created_ms.max(0), ctx.env.random_u64());
        Self { id, created_ms }
    }
}

async fn write_and_commit(
    ctx: &FlushContext,
    pending: &mut Pending,
    name: SegmentName,
    prev: Option<Predecessor>,
) -> Result<()> {
    let taken = std::mem::take(pending);
    let target = ctx.config.batch_target_bytes;
    let (taken, encoded) = tokio::task::spawn_blocking(move || {
        let r = encode(&taken, target);
        (taken, r)
    })
    .await
    .map_err(|e| Error::Internal(format!("encoder task failed: {e}")))?;
    *pending = taken;
    let (bytes, infos) = encoded?;
    let SegmentName { id, created_ms } = name;
    let object = format!("segments/{id}.seg");
    let size = bytes.len();
    let put_start = Instant::now();
    ctx.storage.put(&object, bytes.into()).await?;
    ctx.metrics
        .put_seconds
        .observe(put_start.elapsed().as_secs_f64());
    ctx.metrics.segment_bytes.inc_by(size as u64);
    let commit = SegmentCommit {
        segment_id: id,
        object,
        created_ms,
        committed_ms: ctx.env.now_ms(),
        chunks: infos
            .iter()
            .map(|c| ChunkCommit {
                topic_id: c.topic_id,
                partition: c.partition,
                byte_offset: c.offset,
                byte_len: c.len,
                record_count: c.record_count,
                max_timestamp: c.max_timestamp,
            })
            .collect(),
        units: units(pending),
        after: None,
    };
    let commit_start = Instant::now();
    let commits = ctx.commits.clone();
    let segment = commit.object.clone();
    let outcome = commit_in_order(commit, prev, commits.sequenced(), |c| {
        let commits = commits.clone();
        async move { commits.commit(&c).await }
    })
    .await?;
    ctx.metrics
        .commit_seconds
        .observe(commit_start.elapsed().as_secs_f64());
    tracing::debug!(%segment, bytes = size, chunks = infos.len(), "segment committed");
    answer(ctx, pending, outcome);
    Ok(())
}

/// The commit units of the exclusive requests, in arrival order: each
/// names its chunks' positions in the segment, in the request's part order
/// (the order its stored answer keeps, so a retry can be matched).
fn units(pending: &Pending) -> Vec<CommitUnit> {
    let mut chunks_of: BTreeMap<usize, BTreeMap<usize, u32>> = BTreeMap::new();
    for (i, (_, chunk)) in pending.ordered().enumerate() {
        if chunk.exclusive {
            for &(w, part, _) in &chunk.parts {
                chunks_of.entry(w).or_default().insert(part, i as u32);
            }
        }
    }
    pending
        .waiters
        .iter()
        .enumerate()
        .filter_map(|(w, waiter)| {
            let spec = waiter.unit.as_ref()?;
            Some(CommitUnit {
                chunks: chunks_of
                    .remove(&w)
                    .map(|parts| parts.into_values().collect())
                    .unwrap_or_default(),
                dedup: spec.dedup.clone(),
                offsets: spec.offsets.clone(),
            })
        })
        .collect()
}

/// Spreads the commit's outcome over the waiters and wakes long-polls.
fn answer(ctx: &FlushContext, pending: &mut Pending, outcome: CommitOutcome) {
    let gone = |w: &Waiter, part: usize| Error::TopicNotFound(w.topics[part].to_string());
    let Pending {
        chunks, waiters, ..
    } = pending;
    let ordered = chunks
        .iter()
        .flat_map(|(k, list)| list.iter().map(move |c| (k, c)));
    for ((&(topic, partition), chunk), base) in ordered.zip(&outcome.bases) {
        match base {
            Some(base) => {
                ctx.notifier
                    .publish(topic, partition, base + u64::from(chunk.record_count));
                for &(w, part, rel) in &chunk.parts {
                    waiters[w].bases[part] = base + u64::from(rel);
                }
            }
            // A unit's chunk: its unit's outcome says why.
            None if chunk.exclusive => {}
            None => {
                for &(w, part, _) in &chunk.parts {
                    let e = gone(&waiters[w], part);
                    waiters[w].fail(e);
                }
            }
        }
    }
    let exclusive = waiters.iter_mut().filter(|w| w.unit.is_some());
    for (w, result) in exclusive.zip(outcome.units) {
        match result {
            UnitResult::Committed => {}
            UnitResult::Duplicate(a) => w.outcome = Some(Ok(Appended::Duplicate(a))),
            UnitResult::Refused(Refusal::TopicGone) => {
                let e = gone(w, 0);
                w.fail(e);
            }
            UnitResult::Refused(r) => w.fail(Error::Refused(r)),
        }
    }
}
