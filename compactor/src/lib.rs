//! The compactor: background jobs over the whole log, run by one process at a
//! time (a metadata lease; extra instances wait harmlessly).
//!
//! Jobs today: **garbage collection of orphan segments** — objects left by an
//! agent that crashed between its segment PUT and the metadata commit — and
//! **expiry** of metadata keys whose time to live ended (idempotency keys),
//! found by a range read of the `Expiry` index, never by a scan.
//!
//! Safety invariant: an object is deleted only if (1) its name is a segment
//! name this code understands, (2) its segment was never committed, and (3)
//! it is older than `gc_grace`, far beyond the longest a commit can take (the
//! metadata retry deadline is seconds). A committed segment is never deleted
//! here, whatever else happens to its topic. Deleting an orphan twice is
//! harmless, so correctness does not rest on the lease: the lease only saves
//! duplicate work.
//!
//! Merging small segments, the Parquet archive and retention come with the
//! compactor's own issue (see docs/architecture.md).

use std::sync::Arc;
use std::time::Duration;

use silt_metadata::Metadata;
use silt_segment::store::ObjectStorage;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// The lease the active compactor holds.
pub const LEASE: &str = "compactor";

/// Tuning.
#[derive(Debug, Clone)]
pub struct CompactorConfig {
    /// Time between job runs. Shorter reclaims space sooner, at the cost of
    /// more LIST requests.
    pub interval: Duration,
    /// Minimum age of an uncommitted segment before it is garbage. Must far
    /// exceed the longest a commit can take; an hour is generous.
    pub gc_grace: Duration,
}

impl Default for CompactorConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(60),
            gc_grace: Duration::from_secs(3600),
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
}

/// What one garbage collection did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcReport {
    pub scanned: usize,
    pub deleted: usize,
    /// Uncommitted but younger than the grace period: maybe still in flight.
    pub kept_recent: usize,
}

/// What one round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickReport {
    pub gc: GcReport,
    /// Metadata keys deleted because their time to live ended.
    pub expired: usize,
}

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
    ) -> Self {
        Self {
            config,
            md,
            storage,
            holder,
            now_ms,
        }
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

    /// One round: take or renew the lease, and run the jobs if we hold it.
    /// `None` when another instance holds the lease.
    pub async fn tick(&self) -> Result<Option<TickReport>, Error> {
        let ttl = (self.config.interval * 3).as_millis() as i64;
        if !self
            .md
            .acquire_lease(LEASE, self.holder, (self.now_ms)(), ttl)
            .await?
        {
            return Ok(None);
        }
        let gc = self
            .collect_orphans()
            .instrument(tracing::info_span!("gc"))
            .await?;
        let expired = self
            .expire()
            .instrument(tracing::info_span!("expire"))
            .await?;
        Ok(Some(TickReport { gc, expired }))
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
    /// the grace period (see the module's safety invariant).
    pub async fn collect_orphans(&self) -> Result<GcReport, Error> {
        let cutoff = (self.now_ms)() - self.config.gc_grace.as_millis() as i64;
        let mut report = GcReport::default();
        for object in self.storage.list("segments").await? {
            report.scanned += 1;
            let Some(id) = segment_id(&object.key) else {
                continue;
            };
            if self.md.segment_committed(id).await? {
                continue;
            }
            if object.modified_ms > cutoff {
                report.kept_recent += 1;
                continue;
            }
            tracing::info!(object = %object.key, "deleting an uncommitted segment");
            self.storage.delete(&object.key).await?;
            report.deleted += 1;
        }
        Ok(report)
    }
}
