//! Serving old offsets from the Parquet archive: once retention has moved
//! a partition's log start past an offset, a fetch for it is answered from
//! the archive files the compactor wrote (when the topic's
//! `archive.serve_reads` is on) — the same records and offsets the consumer
//! would have read before. Files are found by listing the partition's
//! archive folder (cached briefly: files are immutable once written) and
//! read whole through the shared read cache; decoding runs off the runtime.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use silt_metadata::TopicInfo;
use silt_segment::store::ObjectStorage;
use tokio::time::Instant;

use crate::reader::{Limits, Reader, StoredRecord};
use crate::{Error, Result};

/// How long a partition's archive listing is reused.
const LISTING_TTL: Duration = Duration::from_secs(10);
/// Bound on cached listings.
const MAX_LISTINGS: usize = 10_000;

/// An archive file: its first offset, object key and size.
#[derive(Debug, Clone)]
struct ArchiveFile {
    first_offset: u64,
    key: String,
    size: u64,
}

type Listing = (Instant, Arc<Vec<ArchiveFile>>);

#[derive(Debug)]
pub(crate) struct ArchiveReader {
    storage: ObjectStorage,
    listings: Mutex<HashMap<(u64, u32), Listing>>,
}

impl ArchiveReader {
    pub fn new(storage: ObjectStorage) -> Self {
        Self {
            storage,
            listings: Mutex::default(),
        }
    }

    /// The topic's archive files of one partition, ascending by first offset.
    async fn files(&self, topic: &TopicInfo, partition: u32) -> Result<Arc<Vec<ArchiveFile>>> {
        let key = (topic.id, partition);
        if let Some((at, files)) = self.listings.lock().get(&key) {
            if at.elapsed() < LISTING_TTL {
                return Ok(files.clone());
            }
        }
        let prefix = format!("archive/topic={}/partition={partition}", topic.name);
        let mine = format!("{:020}-", topic.id);
        let mut files: Vec<ArchiveFile> = self
            .storage
            .list(&prefix)
            .await?
            .into_iter()
            .filter_map(|o| {
                let name = o.key.rsplit('/').next()?;
                let first = name.strip_prefix(&mine)?.strip_suffix(".parquet")?;
                Some(ArchiveFile {
                    first_offset: first.parse().ok()?,
                    key: o.key.clone(),
                    size: o.size,
                })
            })
            .collect();
        files.sort_by_key(|f| f.first_offset);
        let files = Arc::new(files);
        let mut listings = self.listings.lock();
        if listings.len() >= MAX_LISTINGS {
            listings.clear();
        }
        listings.insert(key, (Instant::now(), files.clone()));
        Ok(files)
    }

    /// Records from `offset` (below `until`, the log start) out of the
    /// archive; empty if no archive file holds `offset`.
    pub async fn read(
        &self,
        reader: &Reader,
        topic: &TopicInfo,
        partition: u32,
        offset: u64,
        until: u64,
        limits: Limits,
    ) -> Result<Vec<StoredRecord>> {
        let files = self.files(topic, partition).await?;
        let Some(file) = files.iter().rev().find(|f| f.first_offset <= offset) else {
            return Ok(Vec::new());
        };
        let bytes = reader.object(&file.key, file.size).await?;
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let mut size = 0;
            silt_segment::parquet::decode(bytes, offset, |o, record| {
                if o >= until {
                    return false;
                }
                size += record.weight();
                out.push(StoredRecord { offset: o, record });
                out.len() < limits.max_records && size < limits.max_bytes
            })
            .map(|()| out)
        })
        .await
        .map_err(|e| Error::Internal(format!("archive decoder task: {e}")))?
        .map_err(|e| Error::Internal(format!("archive file {}: {e}", file.key)))
    }
}
