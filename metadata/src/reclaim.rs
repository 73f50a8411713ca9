//! Storage reclamation: which objects are still needed, and which can go.
//!
//! Every object holding indexed data has `ObjectRefs(object)`: how many
//! index entries point into it, set by the transaction that indexes it and
//! lowered by every transaction that removes an entry (topic deletion,
//! retention, merge). When it reaches zero — or a commit indexes nothing of
//! its segment — the object is queued as `Garbage(at, object)`, `at` being
//! a grace period later so that reads which found the entry before it went
//! still get their bytes. Deleting queued objects is a range read by time.
//!
//! Deleting a topic only removes its name, record and partitions (one small
//! transaction) and leaves `Reclaim(topic)`: its index entries are removed
//! later in bounded batches, whatever the topic's size, and the compactor
//! deletes its archive files.

use crate::keys::{Key, KeyKind, KeyRange};
use crate::kv::Txn;
use crate::values::{IndexEntry, decode_u64, encode_u64};
use crate::{Error, Metadata, Result};

/// An object queued for deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GarbageItem {
    pub at_ms: i64,
    pub object: String,
}

/// A deleted topic still being reclaimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedTopic {
    pub id: u64,
    pub name: String,
}

/// Records that `n` index entries now point into `object`.
pub(crate) async fn add_refs(txn: &mut dyn Txn, object: &str, n: u64) -> Result<()> {
    let key = Key::ObjectRefs(object).encode();
    let now = match txn.get(&key, false).await? {
        Some(b) => decode_u64(&b)?,
        None => 0,
    };
    txn.set(&key, &encode_u64(now + n));
    Ok(())
}

/// Records that one index entry into `object` is gone; queues the object
/// for deletion at `garbage_at` once nothing points into it.
pub(crate) async fn drop_ref(txn: &mut dyn Txn, object: &str, garbage_at: i64) -> Result<()> {
    let key = Key::ObjectRefs(object).encode();
    // No count (an object indexed before counts existed) means unknown:
    // never deleted here — a leak at worst, never a loss.
    if let Some(b) = txn.get(&key, false).await? {
        match decode_u64(&b)? {
            n if n > 1 => txn.set(&key, &encode_u64(n - 1)),
            _ => {
                txn.clear(&key);
                queue_garbage(txn, object, garbage_at);
            }
        }
    }
    Ok(())
}

/// Queues an object nothing points into for deletion at `at`.
pub(crate) fn queue_garbage(txn: &mut dyn Txn, object: &str, at: i64) {
    txn.set(&Key::Garbage(at, object).encode(), &[]);
}

/// Removes one index entry (by key), releasing its object reference.
pub(crate) async fn remove_entry(
    txn: &mut dyn Txn,
    key: &[u8],
    entry: &IndexEntry,
    garbage_at: i64,
) -> Result<()> {
    txn.clear(key);
    drop_ref(txn, &entry.object, garbage_at).await
}

impl Metadata {
    /// Deleted topics whose storage is still being reclaimed.
    pub async fn deleted_topics(&self) -> Result<Vec<DeletedTopic>> {
        self.run("deleted_topics", true, |txn, _| {
            Box::pin(async move {
                let r = KeyRange::kind(KeyKind::Reclaim);
                let rows = txn
                    .get_range(&r.begin, &r.end, usize::MAX, false, true)
                    .await?;
                rows.into_iter()
                    .map(|(k, v)| match crate::keys::decode(&k) {
                        Ok(Key::Reclaim(id)) => Ok(DeletedTopic {
                            id,
                            name: String::from_utf8(v).map_err(|_| Error::Corrupt("reclaim"))?,
                        }),
                        _ => Err(Error::Corrupt("reclaim key")),
                    })
                    .collect()
            })
        })
        .await
    }

    /// Removes up to `limit` index entries of a deleted topic, releasing
    /// their objects (deletable from `garbage_at`). Returns how many were
    /// removed; 0 once none remain (the topic's metadata is then gone, but
    /// for its `Reclaim` mark, which [`Metadata::finish_reclaim`] clears).
    pub async fn reclaim_index(
        &self,
        topic_id: u64,
        garbage_at: i64,
        limit: usize,
    ) -> Result<usize> {
        self.run("reclaim_index", false, |txn, _| {
            Box::pin(async move {
                let r = KeyRange::topic_index(topic_id);
                let rows = txn.get_range(&r.begin, &r.end, limit, false, false).await?;
                for (k, v) in &rows {
                    remove_entry(txn, k, &IndexEntry::decode(v)?, garbage_at).await?;
                }
                if rows.is_empty() {
                    let a = KeyRange::prefix({
                        let mut p = vec![KeyKind::Archive as u8];
                        p.extend_from_slice(&topic_id.to_be_bytes());
                        p
                    });
                    txn.clear_range(&a.begin, &a.end);
                }
                Ok(rows.len())
            })
        })
        .await
    }

    /// Forgets a deleted topic once its index and archive are gone.
    pub async fn finish_reclaim(&self, topic_id: u64) -> Result<()> {
        self.run("finish_reclaim", false, |txn, _| {
            Box::pin(async move {
                txn.clear(&Key::Reclaim(topic_id).encode());
                Ok(())
            })
        })
        .await
    }

    /// Objects whose deletion is due at `now_ms` (at most `limit`).
    pub async fn garbage_due(&self, now_ms: i64, limit: usize) -> Result<Vec<GarbageItem>> {
        self.run("garbage_due", true, |txn, _| {
            Box::pin(async move {
                let r = KeyRange::garbage_before(now_ms);
                let rows = txn.get_range(&r.begin, &r.end, limit, false, true).await?;
                rows.into_iter()
                    .map(|(k, _)| match crate::keys::decode(&k) {
                        Ok(Key::Garbage(at, object)) => Ok(GarbageItem {
                            at_ms: at,
                            object: object.to_owned(),
                        }),
                        _ => Err(Error::Corrupt("garbage key")),
                    })
                    .collect()
            })
        })
        .await
    }

    /// Drops objects from the garbage queue (after deleting them).
    pub async fn forget_garbage(&self, items: &[GarbageItem]) -> Result<()> {
        self.run("forget_garbage", false, |txn, _| {
            let keys: Vec<Vec<u8>> = items
                .iter()
                .map(|g| Key::Garbage(g.at_ms, &g.object).encode())
                .collect();
            Box::pin(async move {
                for k in keys {
                    txn.clear(&k);
                }
                Ok(())
            })
        })
        .await
    }

    /// How many index entries point into `object` (0: none, or unknown).
    pub async fn object_refs(&self, object: &str) -> Result<u64> {
        self.run("object_refs", true, |txn, _| {
            let key = Key::ObjectRefs(object).encode();
            Box::pin(async move {
                Ok(match txn.get(&key, true).await? {
                    Some(b) => decode_u64(&b)?,
                    None => 0,
                })
            })
        })
        .await
    }
}
