//! Retention per topic (`retention_ms`, `retention_bytes`): a partition's
//! oldest index entries go (see `silt_metadata::retention`), never before
//! the archive has them when the archive is on; their objects go once
//! nothing else points into them, after the read grace period.

use silt_metadata::TopicInfo;
use silt_metadata::retention::RetentionRule;
use silt_segment::parquet;

use crate::{Compactor, Error};

/// Index entries removed per metadata transaction: small, since each
/// transaction contends with the agents' commits on the partition.
const BATCH: usize = 100;

/// What one retention pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RetentionReport {
    /// Index entries removed (their records are no longer readable).
    pub entries: usize,
    /// Archive files removed by `archive.retention_ms`.
    pub archive_files: usize,
}

impl Compactor {
    pub async fn retention(&self) -> Result<RetentionReport, Error> {
        let now = (self.now_ms)();
        let garbage_at = now + self.config.gc_grace.as_millis() as i64;
        let mut report = RetentionReport::default();
        for topic in self.md.list_topics().await? {
            let c = &topic.config;
            if let Some(ms) = c.archive_retention_ms {
                let cutoff = now.saturating_sub(i64::try_from(ms).unwrap_or(i64::MAX));
                report.archive_files += self.expire_archive(&topic, cutoff).await?;
            }
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

    /// Deletes the topic's archive files whose newest record is older than
    /// `cutoff_ms` (read from each candidate's footer statistics). Only
    /// files written before the cutoff are candidates: a newer file holds
    /// records committed after it.
    async fn expire_archive(&self, topic: &TopicInfo, cutoff_ms: i64) -> Result<usize, Error> {
        let mine = format!("{:020}-", topic.id);
        let mut deleted = 0;
        for f in self
            .storage
            .list(&format!("archive/topic={}", topic.name))
            .await?
        {
            let ours = f
                .key
                .rsplit('/')
                .next()
                .is_some_and(|n| n.starts_with(&mine));
            if !ours || f.modified_ms >= cutoff_ms || f.size < 8 {
                continue;
            }
            let tail = self.storage.get_range(&f.key, f.size - 8..f.size).await?;
            let n = parquet::footer_len(&tail).map_err(|e| Error::Archive(e.to_string()))? as u64;
            let start = f
                .size
                .checked_sub(8 + n)
                .ok_or_else(|| Error::Archive(format!("{}: footer longer than the file", f.key)))?;
            let footer = self.storage.get_range(&f.key, start..f.size - 8).await?;
            let newest =
                parquet::max_timestamp_ms(&footer).map_err(|e| Error::Archive(e.to_string()))?;
            if newest.is_none_or(|t| t < cutoff_ms) {
                self.storage.delete(&f.key).await?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}
