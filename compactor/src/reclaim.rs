//! Reclaiming storage: index entries and archive files of deleted topics,
//! then every object nothing points into any more (see
//! `silt_metadata::reclaim`), once its grace period for in-flight reads has
//! passed. Both are bounded batches per transaction, found by range reads
//! (deleted-topic marks, the garbage queue by time), never by listing all
//! objects.

use crate::{Compactor, Error};

/// Index entries or queued objects handled per metadata transaction.
const BATCH: usize = 1_000;

/// What one reclamation pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReclaimReport {
    /// Index entries of deleted topics removed.
    pub entries: usize,
    /// Archive files of deleted topics removed.
    pub archive_files: usize,
    /// Objects deleted because nothing pointed into them any more.
    pub objects: usize,
}

impl Compactor {
    /// Reclaims deleted topics, then deletes due garbage objects.
    pub async fn reclaim(&self) -> Result<ReclaimReport, Error> {
        let now = (self.now_ms)();
        let garbage_at = now + self.config.gc_grace.as_millis() as i64;
        let mut report = ReclaimReport::default();
        for topic in self.md.deleted_topics().await? {
            loop {
                let n = self.md.reclaim_index(topic.id, garbage_at, BATCH).await?;
                report.entries += n;
                if n == 0 {
                    break;
                }
            }
            let files = self
                .storage
                .list(&format!("archive/topic={}", topic.name))
                .await?;
            let mine = format!("{:020}-", topic.id);
            for f in files {
                if f.key
                    .rsplit('/')
                    .next()
                    .is_some_and(|n| n.starts_with(&mine))
                {
                    self.storage.delete(&f.key).await?;
                    report.archive_files += 1;
                }
            }
            // Its Iceberg table, if it had one: metadata files, then the
            // catalog entry (files first: a crash leaves a table to drop,
            // never files nobody knows of).
            for f in self
                .storage
                .list(&format!("iceberg/{}-{}/", topic.name, topic.id))
                .await?
            {
                self.storage.delete(&f.key).await?;
                report.archive_files += 1;
            }
            self.drop_iceberg_table(&topic.name, topic.id).await?;
            self.md.finish_reclaim(topic.id).await?;
            tracing::info!(topic = %topic.name, id = topic.id, "deleted topic reclaimed");
        }
        loop {
            let due = self.md.garbage_due(now, BATCH).await?;
            for g in &due {
                self.storage.delete(&g.object).await?;
            }
            self.md.forget_garbage(&due).await?;
            report.objects += due.len();
            if due.len() < BATCH {
                break;
            }
        }
        Ok(report)
    }
}
