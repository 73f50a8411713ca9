//! Prometheus metrics of the compactor: what each job did, how far the
//! archive lags, and whether this instance holds the lease.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::TickReport;

#[derive(Debug, Clone)]
pub struct CompactorMetrics {
    /// 1 while this instance holds the compactor lease.
    pub lease_held: Gauge,
    pub rounds: Counter,
    pub round_failures: Counter,
    pub round_seconds: Histogram,
    pub orphans_deleted: Counter,
    pub keys_expired: Counter,
    pub archived_records: Counter,
    pub archived_bytes: Counter,
    pub archive_files: Counter,
    /// Committed records not archived yet, summed over all partitions.
    pub archive_lag_records: Gauge,
    pub retention_entries: Counter,
    pub objects_reclaimed: Counter,
    /// Small index entries replaced by merged segments.
    pub merged_entries: Counter,
    pub merged_segments: Counter,
}

impl CompactorMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self {
            lease_held: Gauge::default(),
            rounds: Counter::default(),
            round_failures: Counter::default(),
            round_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 20)),
            orphans_deleted: Counter::default(),
            keys_expired: Counter::default(),
            archived_records: Counter::default(),
            archived_bytes: Counter::default(),
            archive_files: Counter::default(),
            archive_lag_records: Gauge::default(),
            retention_entries: Counter::default(),
            objects_reclaimed: Counter::default(),
            merged_entries: Counter::default(),
            merged_segments: Counter::default(),
        };
        let r = registry.sub_registry_with_prefix("silt_compactor");
        r.register(
            "lease_held",
            "1 while this instance runs the compactor's jobs",
            m.lease_held.clone(),
        );
        r.register(
            "rounds",
            "Compactor rounds run under the lease",
            m.rounds.clone(),
        );
        r.register(
            "round_failures",
            "Compactor rounds that failed (retried next round)",
            m.round_failures.clone(),
        );
        r.register(
            "round_seconds",
            "Duration of a compactor round",
            m.round_seconds.clone(),
        );
        r.register(
            "orphans_deleted",
            "Never-committed segments fenced and deleted",
            m.orphans_deleted.clone(),
        );
        r.register(
            "keys_expired",
            "Metadata keys deleted at the end of their time to live",
            m.keys_expired.clone(),
        );
        r.register(
            "archived_records",
            "Records rewritten to the Parquet archive",
            m.archived_records.clone(),
        );
        r.register(
            "archived_bytes",
            "Parquet bytes written to the archive",
            m.archived_bytes.clone(),
        );
        r.register(
            "archive_files",
            "Parquet files written to the archive",
            m.archive_files.clone(),
        );
        r.register(
            "archive_lag_records",
            "Committed records not archived yet",
            m.archive_lag_records.clone(),
        );
        r.register(
            "retention_entries",
            "Index entries removed by retention",
            m.retention_entries.clone(),
        );
        r.register(
            "objects_reclaimed",
            "Objects deleted because nothing pointed into them",
            m.objects_reclaimed.clone(),
        );
        r.register(
            "merged_entries",
            "Small index entries replaced by merged per-partition segments",
            m.merged_entries.clone(),
        );
        r.register(
            "merged_segments",
            "Per-partition segments written by merges",
            m.merged_segments.clone(),
        );
        m
    }

    pub(crate) fn record(&self, r: &TickReport) {
        self.rounds.inc();
        self.round_failures.inc_by(r.failed_jobs as u64);
        self.orphans_deleted.inc_by(r.gc.deleted as u64);
        self.keys_expired.inc_by(r.expired as u64);
        self.archived_records.inc_by(r.archive.records);
        self.archived_bytes.inc_by(r.archive.bytes);
        self.archive_files.inc_by(r.archive.files as u64);
        self.archive_lag_records.set(r.archive.lag_records as i64);
        self.retention_entries.inc_by(r.retention.entries as u64);
        self.objects_reclaimed.inc_by(r.reclaim.objects as u64);
        self.merged_entries.inc_by(r.merge.entries as u64);
        self.merged_segments.inc_by(r.merge.segments as u64);
    }
}
