//! Merging: many small index entries of one partition (one per agent
//! flush, each in a multi-partition segment) are replaced by one entry in a
//! per-partition segment the compactor wrote, so a catch-up read costs one
//! GET instead of one per flush.
//!
//! The swap is one transaction that checks every old entry is still there
//! unchanged (a conflicting read: retention or another merge racing it
//! makes one of them fail) and that GC has not fenced the new object, then
//! replaces the entries, moves the object references, and queues objects
//! nothing points into any more for deletion after the read grace period.
//! Readers see the same offsets and records before, during and after.

use crate::keys::Key;
use crate::reclaim::{add_refs, remove_entry};
use crate::values::{IndexEntry, PartitionState};
use crate::{Error, Metadata, Result};

/// Index entries to replace by one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeSwap {
    pub topic_id: u64,
    pub partition: u32,
    /// Consecutive entries, ascending: `(base, entry)`.
    pub old: Vec<(u64, IndexEntry)>,
    /// The merged segment's id (its GC fence) and its one entry.
    pub segment_id: String,
    pub new: IndexEntry,
}

impl Metadata {
    /// Swaps the entries (see the module docs). False, with nothing
    /// changed, if any old entry changed or went, or the new object was
    /// collected.
    pub async fn swap_merged(&self, swap: &MergeSwap, garbage_at: i64) -> Result<bool> {
        let count: u64 = swap
            .old
            .iter()
            .map(|(_, e)| u64::from(e.record_count))
            .sum();
        let dense = swap
            .old
            .windows(2)
            .all(|w| w[0].0 + u64::from(w[0].1.record_count) == w[1].0);
        if swap.old.is_empty() || !dense || count != u64::from(swap.new.record_count) {
            return Err(Error::Invalid(
                "a merge must replace dense entries by as many records".into(),
            ));
        }
        self.run("swap_merged", false, |txn, _| {
            let s = swap.clone();
            Box::pin(async move {
                if txn
                    .get(&Key::Collected(&s.segment_id).encode(), false)
                    .await?
                    .is_some()
                {
                    return Ok(false);
                }
                for (base, e) in &s.old {
                    let key = Key::Index(s.topic_id, s.partition, *base).encode();
                    let now = txn.get(&key, false).await?;
                    if now.as_deref() != Some(e.encode().as_slice()) {
                        return Ok(false);
                    }
                }
                let pkey = Key::Partition(s.topic_id, s.partition).encode();
                let Some(b) = txn.get(&pkey, false).await? else {
                    return Ok(false);
                };
                let mut state = PartitionState::decode(&b)?;
                let old_bytes: u64 = s.old.iter().map(|(_, e)| u64::from(e.byte_len)).sum();
                for (base, e) in &s.old {
                    let key = Key::Index(s.topic_id, s.partition, *base).encode();
                    remove_entry(txn, &key, e, garbage_at).await?;
                }
                let first = s.old[0].0;
                txn.set(
                    &Key::Index(s.topic_id, s.partition, first).encode(),
                    &s.new.encode(),
                );
                add_refs(txn, &s.new.object, 1).await?;
                state.retained_bytes =
                    (state.retained_bytes + u64::from(s.new.byte_len)).saturating_sub(old_bytes);
                txn.set(&pkey, &state.encode());
                Ok(true)
            })
        })
        .await
    }
}
