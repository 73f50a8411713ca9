//! What the compactor tells operators about itself. After each round the
//! lease holder writes `JobStatus("compactor")` (metadata key 0x1A) holding
//! a [`Status`], so every agent can show the compactor's health (`GET
//! /v1/cluster`, the console) wherever the compactor runs. Only the
//! lease's current holder can write it (the write checks the lease in the
//! same transaction). Publishing is best effort: a failed write is logged
//! and the next round writes again; no job reads it back except to carry
//! its totals on.

use serde::{Deserialize, Serialize};
use silt_metadata::values::JobStatus;

use crate::{Compactor, LEASE, TickReport};

/// The `report` of the compactor's `JobStatus` record.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// How long the last round took.
    pub duration_ms: u64,
    /// Totals over every holder's rounds.
    #[serde(flatten)]
    pub carried: Carried,
    /// What the last round did.
    pub report: TickReport,
}

/// What one round's status carries on from the previous one.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Carried {
    /// Rounds run by any holder since the record was first written.
    pub rounds: u64,
    /// When a round last merged segments.
    pub last_merge_ms: Option<i64>,
    /// When a round last deleted objects (orphans, reclaimed or expired
    /// data).
    pub last_collect_ms: Option<i64>,
}

impl Carried {
    fn after(self, report: &TickReport, finished_ms: i64) -> Self {
        let collected = report.gc.deleted + report.reclaim.objects + report.reclaim.archive_files;
        Self {
            rounds: self.rounds + 1,
            last_merge_ms: (report.merge.segments > 0)
                .then_some(finished_ms)
                .or(self.last_merge_ms),
            last_collect_ms: (collected > 0)
                .then_some(finished_ms)
                .or(self.last_collect_ms),
        }
    }
}

impl Compactor {
    /// Publishes a finished round's status, carrying the totals on from
    /// the record as it stands (another holder may have written it since
    /// this one last did: one point read per round).
    pub(crate) async fn publish_status(&self, report: &TickReport, duration: std::time::Duration) {
        let previous = match self.md.job_status(LEASE).await {
            Ok(Some(s)) => serde_json::from_value(s.report).unwrap_or_default(),
            Ok(None) => Carried::default(),
            Err(e) => {
                tracing::warn!(error = %e, "compactor: could not read its status");
                return;
            }
        };
        let finished_ms = (self.now_ms)();
        let status = Status {
            duration_ms: duration.as_millis() as u64,
            carried: previous.after(report, finished_ms),
            report: *report,
        };
        let record = JobStatus {
            holder: self.holder,
            finished_ms,
            report: serde_json::to_value(&status).unwrap_or_default(),
        };
        match self.md.put_job_status(LEASE, &record, finished_ms).await {
            Ok(true) => {}
            Ok(false) => tracing::info!("compactor: lease lost; not publishing this round"),
            Err(e) => tracing::warn!(error = %e, "compactor: could not publish its status"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_carry_over_rounds_that_did_nothing() {
        let mut merged = TickReport::default();
        merged.merge.segments = 2;
        let c = Carried::default().after(&merged, 10);
        assert_eq!(
            (c.rounds, c.last_merge_ms, c.last_collect_ms),
            (1, Some(10), None)
        );
        let mut collected = TickReport::default();
        collected.reclaim.objects = 1;
        let c = c.after(&collected, 20).after(&TickReport::default(), 30);
        assert_eq!(
            (c.rounds, c.last_merge_ms, c.last_collect_ms),
            (3, Some(10), Some(20))
        );
    }
}
