//! Retention per topic (`retention_ms`, `retention_bytes`): a partition's
//! oldest index entries go (see `silt_metadata::retention`), never before
//! the archive has them when the archive is on; their objects go once
//! nothing else points into them, after the read grace period.

use silt_metadata::retention::RetentionRule;

use crate::{Compactor, Error};

/// Index entries removed per metadata transaction: small, since each
/// transaction contends with the agents' commits on the partition.
const BATCH: usize = 100;

/// What one retention pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Index entries removed (their records are no longer readable).
    pub entries: usize,
}

impl Compactor {
    pub async fn retention(&self) -> Result<RetentionReport, Error> {
        let now = (self.now_ms)();
        let garbage_at = now + self.config.gc_grace.as_millis() as i64;
        let mut report = RetentionReport::default();
        for topic in self.md.list_topics().await? {
            let c = &topic.config;
            if c.retention_ms.is_none() && c.retention_bytes.is_none() {
                continue;
            }
            for p in 0..topic.partitions {
                let keep_from = if self.config.archive {
                    self.md.archive_progress(topic.id, p).await?.next
                } else {
                    u64::MAX
                };
                let rule = RetentionRule {
                    older_than_ms: c
                        .retention_ms
                        .map(|ms| now.saturating_sub(i64::try_from(ms).unwrap_or(i64::MAX))),
                    max_bytes: c.retention_bytes,
                    keep_from,
                };
                loop {
                    let n = self
                        .md
                        .apply_retention(topic.id, p, rule, garbage_at, BATCH)
                        .await?;
                    report.entries += n;
                    if n < BATCH {
                        break;
                    }
                }
            }
        }
        Ok(report)
    }
}
