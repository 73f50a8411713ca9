//! Silt's data plane. An [`Agent`] is stateless: everything it knows lives in
//! the object store and the metadata store, so any agent serves any topic,
//! partition or consumer, and agents come and go without losing anything.
//!
//! * Produce ([`Agent::produce`]): partition, admit (bounded bytes), batch
//!   with every other request into one segment per flush, PUT, commit
//!   offsets in one metadata transaction, acknowledge. See [`batcher`].
//! * Fetch ([`Agent::fetch`]): read the index, ranged-GET chunks through a
//!   shared cache, long-poll at the high-watermark. See [`reader`], [`notify`].
//! * Consumer groups, idempotent producers and transactions ([`groups`],
//!   [`Agent::produce_request`]): state and fencing live in metadata, so a
//!   client may switch agents between any two calls.

mod archive;
pub mod batcher;
mod batches;
pub mod classic;
pub mod cluster;
pub mod config;
pub mod env;
mod error;
pub mod groups;
pub mod metrics;
pub mod notify;
pub mod partitioner;
mod produce;
pub mod reader;
pub mod sequencer;
pub mod shares;
mod topics;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
pub use silt_metadata::{CompressionName, MAX_PARTITIONS, TopicConfig, TopicInfo};
use silt_metadata::{Metadata, PartitionState};
use silt_segment::store::ObjectStorage;
use silt_segment::{Compression, Header};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use batches::{BatchAppended, BatchRead, PendingBatch};
pub use config::AgentConfig;
pub use env::{Env, JumpingClock, SystemEnv, TestEnv};
pub use error::{BatchProblem, Error, ErrorKind, Result};
pub use metrics::Metrics;
pub use produce::{
    Idempotence, MAX_IDEMPOTENCY_KEY, ProduceAnswer, ProduceRequest, TopicBatch, fingerprint,
};
pub use reader::{Limits, StoredRecord};
pub use silt_metadata::values::{OffsetReset, TopicAssignment};
pub use silt_metadata::{ProducerId, Refusal};

use batcher::{Append, FlushContext};
use metrics::Traffic;
use notify::Notifier;
use reader::Reader;
use sequencer::Unsequenced;
use sequencer::route::Commits;
use topics::TopicCache;

/// A record as a producer sends it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProduceRecord {
    /// Explicit partition; else chosen from the key, else round-robin.
    pub partition: Option<u32>,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
    /// Milliseconds since the epoch; the agent's clock when absent.
    pub timestamp: Option<i64>,
}

/// A fetch request.
#[derive(Debug, Clone, Copy)]
pub struct FetchRequest {
    pub offset: u64,
    pub limits: Limits,
    /// Long-poll: at the high-watermark, wait up to this long for records.
    pub wait: Duration,
}

/// A fetch answer.
#[derive(Debug, Clone)]
pub struct FetchResult {
    pub records: Vec<StoredRecord>,
    /// The offset to fetch next.
    pub next_offset: u64,
    pub high_watermark: u64,
    pub log_start_offset: u64,
}

/// A topic and the state of each partition.
#[derive(Debug, Clone)]
pub struct TopicDescription {
    pub topic: TopicInfo,
    pub partitions: Vec<PartitionState>,
}

/// A running agent. Clone freely; [`Agent::shutdown`] stops it.
#[derive(Debug, Clone)]
pub struct Agent {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: AgentConfig,
    md: Arc<Metadata>,
    env: Arc<dyn Env>,
    topics: TopicCache,
    reader: Reader,
    archive: archive::ArchiveReader,
    notifier: Arc<Notifier>,
    appends: mpsc::Sender<Append>,
    commits: Arc<Commits>,
    admission: Arc<Semaphore>,
    /// Produced batches being checked at once (each may decompress up to
    /// `max_decompressed_batch`): one per core.
    checks: Semaphore,
    sticky: partitioner::Sticky,
    metrics: Metrics,
    shutdown: CancellationToken,
    batcher: Mutex<Option<JoinHandle<()>>>,
    /// When this agent started, ms since the epoch.
    started_ms: i64,
}

fn compression(c: CompressionName) -> Compression {
    match c {
        CompressionName::None => Compression::None,
        CompressionName::Lz4 => Compression::Lz4,
        CompressionName::Zstd => Compression::Zstd,
    }
}

impl Agent {
    /// Starts an agent (its batcher task) on the current tokio runtime.
    pub fn start(
        config: AgentConfig,
        md: Arc<Metadata>,
        storage: ObjectStorage,
        env: Arc<dyn Env>,
        metrics: Metrics,
    ) -> Self {
        let shutdown = CancellationToken::new();
        let notifier = Notifier::new(md.clone(), shutdown.clone());
        let (appends, rx) = mpsc::channel(1024);
        let commits = Arc::new(Commits::new(
            md.clone(),
            env.clone(),
            metrics.clone(),
            shutdown.clone(),
        ));
        let ctx = Arc::new(FlushContext {
            config: config.clone(),
            commits: commits.clone(),
            storage: storage.clone(),
            env: env.clone(),
            notifier: notifier.clone(),
            metrics: metrics.clone(),
        });
        let batcher = tokio::spawn(batcher::run(ctx, rx, shutdown.clone()));
        let inner = Inner {
            topics: TopicCache::new(md.clone(), config.topic_cache_ttl),
            archive: archive::ArchiveReader::new(storage.clone()),
            reader: Reader::new(
                md.clone(),
                storage,
                config.cache_bytes,
                metrics.clone(),
                config.max_decompressed_batch,
            ),
            admission: Arc::new(Semaphore::new(
                config.max_inflight_bytes.min(Semaphore::MAX_PERMITS),
            )),
            checks: Semaphore::new(
                std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get),
            ),
            sticky: partitioner::Sticky::new(env.random_u64() as u32),
            started_ms: env.now_ms(),
            config,
            md,
            env,
            notifier,
            appends,
            commits,
            metrics,
            shutdown,
            batcher: Mutex::new(Some(batcher)),
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Joins commit sequencing ([`sequencer`]) unless the config turns it
    /// off: with `url` (how other agents reach this one) the agent stands
    /// for the sequencer's lease; without, it only sends its commits to
    /// whoever holds it.
    pub fn join_sequencing(&self, url: Option<String>) {
        if self.inner.config.sequencer {
            self.inner.commits.elect(url);
        }
    }

    /// Another agent's segment commit, sent to this one as the sequencer
    /// with `token`.
    pub async fn sequence_commit(
        &self,
        token: &str,
        commit: silt_metadata::SegmentCommit,
    ) -> std::result::Result<silt_metadata::CommitOutcome, Unsequenced> {
        let token = sequencer::route::parse_token(token).map_err(|_| Unsequenced::NotSequencer)?;
        self.inner.commits.serve(token, commit).await
    }

    /// The agent's clock (injected; tests move it).
    pub fn now_ms(&self) -> i64 {
        self.inner.env.now_ms()
    }

    pub fn config(&self) -> &AgentConfig {
        &self.inner.config
    }

    /// Stops accepting produce requests, flushes and answers every accepted
    /// one, and wakes long-polling fetches. Idempotent.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        let task = self.inner.batcher.lock().take();
        if let Some(task) = task {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "batcher task failed");
            }
        }
    }

    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutdown.is_cancelled()
    }

    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        config: TopicConfig,
    ) -> Result<TopicInfo> {
        let env = &self.inner.env;
        let t = self
            .inner
            .md
            .create_topic(name, partitions, config, env.now_ms(), env.random_u64())
            .await?;
        self.inner.topics.invalidate(name);
        Ok(t)
    }

    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        self.inner.md.delete_topic(name).await?;
        self.inner.topics.invalidate(name);
        self.inner.metrics.forget_topic(name);
        Ok(())
    }

    pub async fn list_topics(&self) -> Result<Vec<TopicInfo>> {
        Ok(self.inner.md.list_topics().await?)
    }

    pub async fn describe_topic(&self, name: &str) -> Result<TopicDescription> {
        let topic = self
            .inner
            .md
            .topic(name)
            .await?
            .ok_or_else(|| Error::TopicNotFound(name.to_owned()))?;
        let partitions = self.inner.md.partition_states(topic.id).await?;
        Ok(TopicDescription { topic, partitions })
    }

    /// The first `limit` topics (by name) with their partitions' states
    /// (sixteen topics read at a time), and whether more topics exist.
    pub async fn describe_topics(&self, limit: usize) -> Result<(Vec<TopicDescription>, bool)> {
        use futures::{StreamExt, TryStreamExt};
        let md = &self.inner.md;
        let mut topics = md.list_topics().await?;
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        let more = topics.len() > limit;
        topics.truncate(limit);
        let described = futures::stream::iter(topics)
            .map(|topic| async move {
                let partitions = md.partition_states(topic.id).await?;
                Ok::<_, Error>(TopicDescription { topic, partitions })
            })
            .buffered(16)
            .try_collect()
            .await?;
        Ok((described, more))
    }

    async fn partition_of(&self, topic: &str, partition: u32) -> Result<Arc<TopicInfo>> {
        let t = self.inner.topics.get(topic).await?;
        if partition >= t.partitions {
            return Err(Error::PartitionNotFound {
                topic: topic.to_owned(),
                partition,
                partitions: t.partitions,
            });
        }
        Ok(t)
    }

    /// The earliest and latest offsets of a partition.
    pub async fn offsets(&self, topic: &str, partition: u32) -> Result<PartitionState> {
        let t = self.partition_of(topic, partition).await?;
        match self.inner.md.partition_state(t.id, partition).await? {
            Some(s) => Ok(s),
            None => {
                self.inner.topics.invalidate(topic);
                Err(Error::TopicNotFound(topic.to_owned()))
            }
        }
    }

    /// The first offset whose record's timestamp is at least `timestamp`,
    /// with that timestamp; `None` if no record is that recent.
    pub async fn offset_for_timestamp(
        &self,
        topic: &str,
        partition: u32,
        timestamp: i64,
    ) -> Result<Option<(u64, i64)>> {
        let state = self.offsets(topic, partition).await?;
        let t = self.partition_of(topic, partition).await?;
        self.inner
            .reader
            .offset_for_timestamp(t.id, partition, state.log_start_offset, timestamp)
            .await
    }

    /// Reads records from `offset`, long-polling at the high-watermark.
    pub async fn fetch(
        &self,
        topic: &str,
        partition: u32,
        req: FetchRequest,
    ) -> Result<FetchResult> {
        let r = self.read_or_wait(topic, partition, req).await?;
        self.inner
            .metrics
            .count_topic(topic, Traffic::Fetch, r.records.len() as u64);
        Ok(r)
    }

    async fn read_or_wait(
        &self,
        topic: &str,
        partition: u32,
        req: FetchRequest,
    ) -> Result<FetchResult> {
        let inner = &self.inner;
        let t = self.partition_of(topic, partition).await?;
        let deadline = Instant::now() + req.wait;
        let mut changes = None;
        loop {
            let Some((state, records)) = inner
                .reader
                .read(t.id, partition, req.offset, req.limits)
                .await?
            else {
                inner.topics.invalidate(topic);
                return Err(Error::TopicNotFound(topic.to_owned()));
            };
            if req.offset < state.log_start_offset && t.config.archive_serve_reads {
                let records = inner
                    .archive
                    .read(
                        &inner.reader,
                        &t,
                        partition,
                        req.offset,
                        state.log_start_offset,
                        req.limits,
                    )
                    .await?;
                if let Some(last) = records.last() {
                    return Ok(FetchResult {
                        next_offset: last.offset + 1,
                        records,
                        high_watermark: state.high_watermark,
                        log_start_offset: state.log_start_offset,
                    });
                }
            }
            if req.offset < state.log_start_offset || req.offset > state.high_watermark {
                return Err(Error::OffsetOutOfRange {
                    offset: req.offset,
                    earliest: state.log_start_offset,
                    latest: state.high_watermark,
                });
            }
            let waiting = records.is_empty()
                && req.offset == state.high_watermark
                && Instant::now() < deadline
                && !inner.shutdown.is_cancelled();
            if !waiting {
                let next_offset = records.last().map_or(req.offset, |r| r.offset + 1);
                return Ok(FetchResult {
                    records,
                    next_offset,
                    high_watermark: state.high_watermark,
                    log_start_offset: state.log_start_offset,
                });
            }
            match &mut changes {
                // Subscribe, then read again: no commit can fall in between.
                None => changes = Some(inner.notifier.subscribe(t.id, partition)),
                Some(rx) => {
                    tokio::select! {
                        _ = rx.changed() => {}
                        () = tokio::time::sleep_until(deadline) => {}
                        () = inner.shutdown.cancelled() => {}
                    }
                }
            }
        }
    }
}
