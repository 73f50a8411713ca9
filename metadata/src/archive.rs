//! Archive progress per partition: `Archive(topic, partition)` holds the
//! next offset to archive and, while a file is being written, the end of
//! the range it was planned to hold. Planning first makes the file for a
//! given start deterministic: any instance that writes it (a second
//! compactor during a lease hand-over, a restart after a crash) writes
//! exactly `[next, planned_end)`, so files never overlap and never leave a
//! gap, and the progress moves only by compare-and-set.

use crate::keys::Key;
use crate::kv::Txn;
use crate::values::{Reader, V1, corrupt};
use crate::{Metadata, Result};

/// Value of `Archive(topic, partition)`: `v1 | next u64 | planned_end u64`
/// (0: no file planned).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArchiveProgress {
    /// The next offset to archive.
    pub next: u64,
    /// The end of the file being written from `next`, if one is planned.
    pub planned_end: Option<u64>,
}

impl ArchiveProgress {
    fn encode(&self) -> Vec<u8> {
        let mut v = vec![V1];
        v.extend_from_slice(&self.next.to_be_bytes());
        v.extend_from_slice(&self.planned_end.unwrap_or(0).to_be_bytes());
        v
    }

    pub fn decode(b: &[u8]) -> Result<Self> {
        let mut r = Reader(b);
        (|| {
            r.version()?;
            let p = Self {
                next: r.u64()?,
                planned_end: Some(r.u64()?).filter(|&e| e != 0),
            };
            r.end()?;
            Some(p)
        })()
        .ok_or(corrupt("archive progress"))
    }
}

async fn read(txn: &mut dyn Txn, key: &[u8], snapshot: bool) -> Result<ArchiveProgress> {
    match txn.get(key, snapshot).await? {
        Some(b) => ArchiveProgress::decode(&b),
        None => Ok(ArchiveProgress::default()),
    }
}

impl Metadata {
    pub async fn archive_progress(&self, topic_id: u64, partition: u32) -> Result<ArchiveProgress> {
        self.run("archive_progress", true, |txn, _| {
            let key = Key::Archive(topic_id, partition).encode();
            Box::pin(async move { read(txn, &key, true).await })
        })
        .await
    }

    /// Plans the file starting at `from` (the stored `next`, or the log
    /// start if retention moved past it) to end at `proposed_end`, unless a
    /// plan from `from` exists: returns the end to write. `None` if the
    /// progress moved past `from` meanwhile.
    pub async fn plan_archive(
        &self,
        topic_id: u64,
        partition: u32,
        from: u64,
        proposed_end: u64,
    ) -> Result<Option<u64>> {
        self.run("plan_archive", false, |txn, _| {
            let key = Key::Archive(topic_id, partition).encode();
            Box::pin(async move {
                let mut p = read(txn, &key, false).await?;
                if p.next > from {
                    return Ok(None);
                }
                if p.next == from {
                    if let Some(end) = p.planned_end {
                        return Ok(Some(end));
                    }
                } else if p.planned_end.is_some_and(|e| e > from) {
                    // A plan overlapping `from` must be finished first.
                    return Ok(None);
                }
                p = ArchiveProgress {
                    next: from,
                    planned_end: Some(proposed_end),
                };
                txn.set(&key, &p.encode());
                Ok(Some(proposed_end))
            })
        })
        .await
    }

    /// Marks the planned file `[from, to)` written: the progress moves to
    /// `to` if it is still at `from` with that plan (or is at `to` already).
    pub async fn advance_archive(
        &self,
        topic_id: u64,
        partition: u32,
        from: u64,
        to: u64,
    ) -> Result<bool> {
        self.run("advance_archive", false, |txn, _| {
            let key = Key::Archive(topic_id, partition).encode();
            Box::pin(async move {
                let p = read(txn, &key, false).await?;
                if p.next == to {
                    return Ok(true);
                }
                if p.next != from || p.planned_end != Some(to) {
                    return Ok(false);
                }
                let done = ArchiveProgress {
                    next: to,
                    planned_end: None,
                };
                txn.set(&key, &done.encode());
                Ok(true)
            })
        })
        .await
    }
}
