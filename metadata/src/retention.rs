//! Retention: the oldest index entries of a partition go once they are
//! older than the topic's `retention_ms` or the partition holds more than
//! its `retention_bytes`; the log start advances past them, and their
//! objects' references are released (see [`crate::reclaim`]). A fetch below
//! the log start then answers `offset_out_of_range`.
//!
//! Whole index entries go at a time (an entry goes when its newest record
//! is past the time limit), and never past `keep_from` — the archive's
//! progress when the archive is on, so no record leaves before it has been
//! archived.

use crate::keys::{Key, KeyRange};
use crate::reclaim::remove_entry;
use crate::values::IndexEntry;
use crate::{Error, Metadata, Result};

/// What may go from one partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionRule {
    /// Entries whose newest record is older than this (ms) go.
    pub older_than_ms: Option<i64>,
    /// The oldest entries go while the partition holds more than this.
    pub max_bytes: Option<u64>,
    /// Nothing at or past this offset goes.
    pub keep_from: u64,
}

impl Metadata {
    /// Applies `rule` to up to `limit` of a partition's oldest entries;
    /// returns how many went. Objects left without references are queued
    /// for deletion at `garbage_at`.
    pub async fn apply_retention(
        &self,
        topic_id: u64,
        partition: u32,
        rule: RetentionRule,
        garbage_at: i64,
        limit: usize,
    ) -> Result<usize> {
        self.run("apply_retention", false, |txn, _| {
            Box::pin(async move {
                let key = Key::Partition(topic_id, partition).encode();
                let Some(b) = txn.get(&key, false).await? else {
                    return Ok(0);
                };
                let mut state = crate::values::PartitionState::decode(&b)?;
                let r = KeyRange::index(topic_id, partition, state.log_start_offset, u64::MAX);
                let rows = txn.get_range(&r.begin, &r.end, limit, false, false).await?;
                let mut removed = 0;
                for (k, v) in rows {
                    let Ok(Key::Index(_, _, base)) = crate::keys::decode(&k) else {
                        return Err(Error::Corrupt("index key"));
                    };
                    let e = IndexEntry::decode(&v)?;
                    let end = base + u64::from(e.record_count);
                    let expired = rule.older_than_ms.is_some_and(|t| e.max_timestamp < t);
                    let too_big = rule.max_bytes.is_some_and(|m| state.retained_bytes > m);
                    if end > rule.keep_from || !(expired || too_big) {
                        break;
                    }
                    remove_entry(txn, &k, &e, garbage_at).await?;
                    state.log_start_offset = end;
                    state.retained_bytes =
                        state.retained_bytes.saturating_sub(u64::from(e.byte_len));
                    removed += 1;
                }
                if removed > 0 {
                    txn.set(&key, &state.encode());
                }
                Ok(removed)
            })
        })
        .await
    }
}
