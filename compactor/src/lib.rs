//! The compactor: background jobs over the whole log, run by one process at a
//! time (a metadata lease; extra instances wait harmlessly).
//!
//! Jobs today: **garbage collection of orphan segments** — objects left by an
//! agent that crashed between its segment PUT and the metadata commit —,
//! **expiry** of metadata keys whose time to live ended (idempotency keys,
//! idle producers, GC fences), found by a range read of the `Expiry` index,
//! never by a scan, the **Parquet archive** ([`archive`]), **merging** small
//! segments into per-partition ones, **Iceberg** commits of archive files
//! ([`iceberg`], per topic, optional), **retention** by
//! time and bytes, and **reclamation** of deleted topics and unreferenced
//! objects.
//!
//! Safety invariant: an object is deleted only if (1) its name is a segment
//! name this code understands, (2) it is older than `gc_grace`, and (3) a
//! metadata transaction found it uncommitted and fenced it (`Collected`),
//! after which its commit is refused — so a commit that stalls past the
//! grace period either landed first (and the object is kept) or is refused
//! (and its records were never acknowledged). A committed segment is never
//! deleted here. Deleting an orphan twice is harmless, so correctness does
//! not rest on the lease: the lease only saves duplicate work. GC lists only
//! segments named after its checkpoint: its work follows the write rate,
//! not all of history.

pub mod archive;
mod encoders;
pub mod iceberg;
mod merge;
mod metrics;
mod reclaim;
mod retention;
mod status;

pub use encoders::Encoders;
pub use metrics::CompactorMetrics;

use std::sync::Arc;
use std::time::Duration;

use silt_metadata::Metadata;
use silt_metadata::keys::GC_CHECKPOINT;
use silt_segment::store::ObjectStorage;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// The lease the active compactor holds.
pub const LEASE: &str = silt_metadata::keys::COMPACTOR_JOB;

/// Tuning.
#[derive(Debug, Clone)]
pub struct CompactorConfig {
    /// Time between job runs. Shorter reclaims space sooner, at the cost of
    /// more LIST requests.
    pub interval: Duration,
    /// Minimum age of an uncommitted segment before it is garbage. Must far
    /// exceed the longest a commit can take; an hour is generous.
    pub gc_grace: Duration,
    /// Rewrite committed records to Parquet under `archive/`.
    pub archive: bool,
    /// Bounds on one archive file (records, and bytes as stored in the
    /// segments it is read from; also about the memory one file in progress
    /// holds): bigger files mean fewer objects and better compression.
    pub archive_file_records: usize,
    pub archive_file_bytes: usize,
    /// Merge runs of small index entries into per-partition segments of
    /// about this size (0: never merge). Bigger means fewer GETs for a
    /// catch-up read, and more rewriting.
    pub merge_target_bytes: usize,
    /// The SQLite file of the Iceberg SQL catalog that topics with
    /// `archive.iceberg` are committed to (`None`: no Iceberg tables).
    pub iceberg_catalog: Option<std::path::PathBuf>,
}

impl Default for CompactorConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(60),
            gc_grace: Duration::from_secs(3600),
            archive: true,
            archive_file_records: 1_000_000,
            archive_file_bytes: 128 << 20,
            merge_target_bytes: 64 << 20,
            iceberg_catalog: None,
        }
    }
}

/// Errors of one job run (the run is retried at the next tick).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("metadata: {0}")]
    Metadata(#[from] silt_metadata::Error),
    #[error("object storage: {0}")]
    Storage(#[from] silt_segment::Error),
    #[error("archive: {0}")]
    Archive(String),
    #[error("{0} compactor job(s) failed; see the log")]
    JobsFailed(usize),
}

/// Reads an index entry's chunk and checks it — length, checksums, dense
/// offsets — before the compactor rewrites what it holds: damaged bytes
/// must never be archived or merged into the copy that outlives the
/// segments. (A damaged read fails the job; the next round reads again.)
async fn read_checked_chunk(
    storage: &ObjectStorage,
    e: &silt_metadata::IndexEntry,
) -> Result<bytes::Bytes, Error> {
    let range = e.byte_offset..e.byte_offset + u64::from(e.byte_len);
    let chunk = storage.get_range(&e.object, range).await?;
    silt_segment::batch::validate_chunk(&chunk, e.byte_len, e.record_count)?;
    Ok(chunk)
}

/// What one garbage collection did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct GcReport {
    pub scanned: usize,
    pub deleted: usize,
    /// Uncommitted but younger than the grace period: maybe still in flight.
    pub kept_recent: usize,
}

/// What one round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TickReport {
    pub gc: GcReport,
    /// Metadata keys deleted because their time to live ended.
    pub expired: usize,
    pub archive: archive::ArchiveReport,
    pub iceberg: iceberg::IcebergReport,
    pub merge: merge::MergeReport,
    pub retention: retention::RetentionReport,
    pub reclaim: reclaim::ReclaimReport,
    /// Jobs that failed this round (logged; retried next round).
    pub failed_jobs: usize,
}

/// Clock skew tolerated between the agents, whose clocks name segments,
/// and the compactor: GC looks this far behind its cutoff again. A segment
/// named further in the past than this is never examined (a leak, never a
/// loss).
const NAME_SKEW_MS: i64 = 3_600_000;

/// Expired keys deleted per metadata transaction.
const EXPIRE_BATCH: usize = 1_000;

/// Milliseconds since the epoch; injected so tests control time.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// A compactor instance.
pub struct Compactor {
    config: CompactorConfig,
    md: Arc<Metadata>,
    storage: ObjectStorage,
    /// This instance's lease identity (random per process).
    holder: u64,
    now_ms: Clock,
    metrics: CompactorMetrics,
    /// The Iceberg catalog, opened on first use.
    iceberg: tokio::sync::OnceCell<iceberg::Iceberg>,
    /// The archive's encoder threads.
    encoders: Arc<Encoders>,
}

impl std::fmt::Debug for Compactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compactor")
            .field("config", &self.config)
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

/// The segment id of an object key `segments/<id>.seg`, or `None` for any
/// other name (which the collector then leaves alone).
pub fn segment_id(key: &str) -> Option<&str> {
    let id = key.strip_prefix("segments/")?.strip_suffix(".seg")?;
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')).then_some(id)
}

impl Compactor {
    pub fn new(
        config: CompactorConfig,
        md: Arc<Metadata>,
        storage: ObjectStorage,
        holder: u64,
        now_ms: Clock,
        metrics: CompactorMetrics,
    ) -> Self {
        Self {
            config,
            md,
            storage,
            holder,
            now_ms,
            metrics,
            iceberg: tokio::sync::OnceCell::new(),
            encoders: Arc::new(Encoders::per_core()),
        }
    }

    /// Runs the archive's encoding on `encoders`, a pool other compactors
    /// in this process may share (instead of one of its own).
    pub fn with_encoders(mut self, encoders: Arc<Encoders>) -> Self {
        self.encoders = encoders;
        self
    }

    /// Runs jobs every `interval` until `shutdown`, then gives the lease up.
    pub async fn run(&self, shutdown: CancellationToken) {
        loop {
            match self.tick().await {
                Ok(Some(report)) => tracing::info!(?report, "compactor: round done"),
                Ok(None) => tracing::debug!("compactor: another instance holds the lease"),
                Err(e) => tracing::warn!(error = %e, "compactor: job failed; retrying next tick"),
            }
            tokio::select! {
                () = tokio::time::sleep(self.config.interval) => {}
                () = shutdown.cancelled() => break,
            }
        }
        if let Err(e) = self.md.release_lease(LEASE, self.holder).await {
            tracing::warn!(error = %e, "compactor: could not release the lease");
        }
    }

    /// Runs every job once (waiting for the lease if another instance holds
    /// it), then gives the lease up.
    pub async fn run_once(&self) -> Result<TickReport, Error> {
        let report = loop {
            match self.tick().await? {
                Some(r) => break r,
                None => {
                    tracing::info!("another compactor holds the lease; waiting");
                    tokio::time::sleep(self.config.interval.min(Duration::from_secs(5))).await;
                }
            }
        };
        self.md.release_lease(LEASE, self.holder).await?;
        if report.failed_jobs > 0 {
            return Err(Error::JobsFailed(report.failed_jobs));
        }
        Ok(report)
    }

    /// One round: take or renew the lease, and run the jobs if we hold it.
    /// `None` when another instance holds the lease.
    pub async fn tick(&self) -> Result<Option<TickReport>, Error> {
        let start = std::time::Instant::now();
        let result = self.round().await;
        let m = &self.metrics;
        match &result {
            Ok(Some(report)) => {
                m.lease_held.set(1);
                m.record(report);
                m.round_seconds.observe(start.elapsed().as_secs_f64());
                self.publish_status(report, start.elapsed()).await;
            }
            Ok(None) => {
                m.lease_held.set(0);
            }
            Err(_) => {
                m.round_failures.inc();
            }
        }
        result
    }

    async fn round(&self) -> Result<Option<TickReport>, Error> {
        let ttl = (self.config.interval * 3).as_millis() as i64;
        if !self
            .md
            .acquire_lease(LEASE, self.holder, (self.now_ms)(), ttl)
            .await?
        {
            return Ok(None);
        }
        // Each job runs even if another failed: one bad partition must not
        // stop GC, retention or reclamation everywhere.
        let mut failed = 0;
        // GC then expiry (which may remove the `Segment` records GC reads)
        // touch nothing the archive reads or writes: they run beside it. The
        // jobs after it depend on its progress.
        let collect = async {
            let gc = self
                .collect_orphans()
                .instrument(tracing::info_span!("gc"))
                .await;
            let expired = self
                .expire()
                .instrument(tracing::info_span!("expire"))
                .await;
            (gc, expired)
        };
        let archive = async {
            if self.config.archive {
                Some(
                    self.archive()
                        .instrument(tracing::info_span!("archive"))
                        .await,
                )
            } else {
                None
            }
        };
        let ((gc, expired), archive) = tokio::join!(collect, archive);
        let gc = settle("gc", gc, &mut failed);
        let expired = settle("expire", expired, &mut failed);
        let archive = archive.map_or_else(archive::ArchiveReport::default, |r| {
            settle("archive", r, &mut failed)
        });
        let iceberg = if self.config.archive {
            settle(
                "iceberg",
                self.publish_iceberg()
                    .instrument(tracing::info_span!("iceberg"))
                    .await,
                &mut failed,
            )
        } else {
            iceberg::IcebergReport::default()
        };
        let merge = if self.config.merge_target_bytes > 0 {
            settle(
                "merge",
                self.merge().instrument(tracing::info_span!("merge")).await,
                &mut failed,
            )
        } else {
            merge::MergeReport::default()
        };
        let retention = settle(
            "retention",
            self.retention()
                .instrument(tracing::info_span!("retention"))
                .await,
            &mut failed,
        );
        let reclaim = settle(
            "reclaim",
            self.reclaim()
                .instrument(tracing::info_span!("reclaim"))
                .await,
            &mut failed,
        );
        Ok(Some(TickReport {
            gc,
            expired,
            archive,
            iceberg,
            merge,
            retention,
            reclaim,
            failed_jobs: failed,
        }))
    }

    /// Deletes every key whose time to live has ended, a batch per
    /// transaction (bounded work per transaction, whatever the backlog).
    pub async fn expire(&self) -> Result<usize, Error> {
        let now = (self.now_ms)();
        let mut total = 0;
        loop {
            let n = self.md.expire(now, EXPIRE_BATCH).await?;
            total += n;
            if n < EXPIRE_BATCH {
                return Ok(total);
            }
        }
    }

    /// Deletes segment objects that were never committed and are older than
    /// the grace period (see the module's safety invariant). Each is first
    /// fenced in metadata (`collect_segment`): from then on its commit is
    /// refused, so a commit that stalled past the grace period can never
    /// acknowledge records whose object is gone. Lists only segments named
    /// after the GC checkpoint, which advances past what has been examined.
    pub async fn collect_orphans(&self) -> Result<GcReport, Error> {
        let now = (self.now_ms)();
        let cutoff = now - self.config.gc_grace.as_millis() as i64;
        let checkpoint = self.md.counter(GC_CHECKPOINT).await?.unwrap_or(0);
        let after = format!("segments/{checkpoint:013}");
        let mut report = GcReport::default();
        // The name time of the oldest segment that may still be committed.
        let mut oldest_pending = u64::MAX;
        for object in self.storage.list_after("segments", &after).await? {
            report.scanned += 1;
            let Some(id) = segment_id(&object.key) else {
                continue;
            };
            if self.md.segment_committed(id).await? {
                continue;
            }
            if object.modified_ms > cutoff {
                report.kept_recent += 1;
                oldest_pending = oldest_pending.min(name_ms(id));
                continue;
            }
            if self.md.collect_segment(id, &object.key, now).await? {
                tracing::info!(object = %object.key, "deleting an uncommitted segment");
                self.storage.delete(&object.key).await?;
                report.deleted += 1;
            }
        }
        // Every segment named before the next checkpoint was examined; a
        // segment written after the cutoff is named (by its agent's clock)
        // no earlier than NAME_SKEW_MS before it.
        let next = oldest_pending
            .min(cutoff.saturating_sub(NAME_SKEW_MS).max(0) as u64)
            .max(checkpoint);
        if next > checkpoint {
            self.md.set_counter(GC_CHECKPOINT, next).await?;
        }
        Ok(report)
    }
}

/// A job's report, or (logged, counted in `failed`) an empty one.
fn settle<T: Default>(name: &str, r: Result<T, Error>, failed: &mut usize) -> T {
    r.unwrap_or_else(|e| {
        tracing::warn!(job = name, error = %e, "compactor job failed; retrying next round");
        *failed += 1;
        T::default()
    })
}

/// The time a segment's name carries (`<ms>-<random>`), 0 if none.
fn name_ms(id: &str) -> u64 {
    id.split('-')
        .next()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(0)
}
