//! The read path: one metadata read finds the index entries covering the
//! requested offset; chunks come from a byte-bounded cache shared by every
//! reader of this agent, or from one ranged GET each on a miss (concurrent
//! misses on the same chunk share one GET).

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use quick_cache::Weighter;
use quick_cache::sync::Cache;
use silt_metadata::{IndexEntry, Metadata, PartitionState, ReadPlan};
use silt_segment::Record;
use silt_segment::store::ObjectStorage;

use crate::Result;
use crate::metrics::Metrics;

/// Index entries read per fetch.
const PLAN_ENTRIES: usize = 32;
/// Chunks fetched at once by one read.
const PREFETCH: usize = 4;

type ChunkKey = (Arc<str>, u64, u32);

#[derive(Debug, Clone, Copy)]
struct ByteWeight;

impl Weighter<ChunkKey, Bytes> for ByteWeight {
    fn weight(&self, key: &ChunkKey, val: &Bytes) -> u64 {
        (val.len() + key.0.len() + 64) as u64
    }
}

/// Reads of one chunk before damaged bytes are reported as an error.
const READ_ATTEMPTS: u32 = 3;

/// What one fetch may return.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_records: usize,
    /// Soft: at least one record is returned even if it alone is larger, so
    /// a consumer can never get stuck behind a big record.
    pub max_bytes: usize,
}

/// A record read back, with its offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub offset: u64,
    pub record: Record,
}

#[derive(Debug)]
pub(crate) struct Reader {
    md: Arc<Metadata>,
    storage: ObjectStorage,
    cache: Cache<ChunkKey, Bytes, ByteWeight>,
    metrics: Metrics,
    max_decompressed: usize,
}

impl Reader {
    pub fn new(
        md: Arc<Metadata>,
        storage: ObjectStorage,
        cache_bytes: usize,
        metrics: Metrics,
        max_decompressed: usize,
    ) -> Self {
        let items = (cache_bytes / (256 << 10)).max(16);
        Self {
            md,
            storage,
            cache: Cache::with_weighter(items, cache_bytes as u64, ByteWeight),
            metrics,
            max_decompressed,
        }
    }

    /// Reads from `offset`; `None` if the partition does not exist. Returns
    /// no records when `offset` is outside `[log_start, high_watermark)`.
    pub async fn read(
        &self,
        topic_id: u64,
        partition: u32,
        offset: u64,
        limits: Limits,
    ) -> Result<Option<(PartitionState, Vec<StoredRecord>)>> {
        let Some(plan) = self
            .md
            .read_plan(topic_id, partition, offset, PLAN_ENTRIES)
            .await?
        else {
            return Ok(None);
        };
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut next = offset;
        let chunks = self.prefetch(&plan.entries, offset, limits);
        let mut chunks = std::pin::pin!(chunks);
        while let Some(fetched) = chunks.next().await {
            if out.len() >= limits.max_records || (bytes >= limits.max_bytes && !out.is_empty()) {
                break;
            }
            let (base, chunk) = fetched?;
            let base = &base;
            silt_segment::batch::decode_chunk(
                &chunk,
                *base,
                next,
                self.max_decompressed,
                |off, record| {
                    bytes += record.weight();
                    out.push(StoredRecord {
                        offset: off,
                        record,
                    });
                    next = off + 1;
                    out.len() < limits.max_records && bytes < limits.max_bytes
                },
            )?;
        }
        self.metrics.fetch_records.inc_by(out.len() as u64);
        Ok(Some((plan.state, out)))
    }

    /// The chunks an answer within `limits` from `offset` may need, in
    /// order, fetched up to [`PREFETCH`] at once: a catch-up read waits for
    /// one object-store round trip per few chunks, not per chunk. Entries
    /// are taken until their records or stored bytes (never more than the
    /// decoded ones) reach the limits, so no more is fetched than the
    /// answer could use.
    pub(crate) fn prefetch<'a>(
        &'a self,
        entries: &'a [(u64, IndexEntry)],
        offset: u64,
        limits: Limits,
    ) -> impl futures::Stream<Item = Result<(u64, Bytes)>> + 'a {
        let (mut records, mut bytes) = (0usize, 0usize);
        let needed = entries.iter().take_while(move |(base, e)| {
            let more = records < limits.max_records && bytes < limits.max_bytes;
            let end = base + u64::from(e.record_count);
            records += end.saturating_sub(offset.max(*base)) as usize;
            bytes += e.byte_len as usize;
            more
        });
        futures::stream::iter(needed)
            .map(move |(base, e)| async move { Ok((*base, self.chunk(e).await?)) })
            .buffered(PREFETCH)
    }

    /// The first record at or after `from` whose timestamp is at least
    /// `timestamp`: `(offset, its timestamp)`, or `None` if there is none
    /// (or no such partition). Index entries whose newest record is older
    /// are skipped without reading them; timestamps need not grow with
    /// offsets, so the first entry that may hold one is read record by
    /// record. Work grows with the partition's index entries (Kafka keeps
    /// a time index for this; merged segments keep the entries few).
    pub async fn offset_for_timestamp(
        &self,
        topic_id: u64,
        partition: u32,
        from: u64,
        timestamp: i64,
    ) -> Result<Option<(u64, i64)>> {
        let mut next = from;
        loop {
            let Some(plan) = self
                .md
                .read_plan(topic_id, partition, next, PLAN_ENTRIES)
                .await?
            else {
                return Ok(None);
            };
            if plan.entries.is_empty() {
                return Ok(None);
            }
            for (base, entry) in &plan.entries {
                let end = base + u64::from(entry.record_count);
                if entry.max_timestamp >= timestamp {
                    let chunk = self.chunk(entry).await?;
                    let mut found = None;
                    silt_segment::batch::decode_chunk(
                        &chunk,
                        *base,
                        next,
                        self.max_decompressed,
                        |off, record| {
                            if record.timestamp >= timestamp {
                                found = Some((off, record.timestamp));
                            }
                            found.is_none()
                        },
                    )?;
                    if found.is_some() {
                        return Ok(found);
                    }
                }
                next = next.max(end);
            }
        }
    }

    /// A whole (small) object through the same cache and single-flight
    /// misses as chunks: archive files, which never change once written.
    pub(crate) async fn object(&self, key: &str, size: u64) -> Result<Bytes> {
        let entry = IndexEntry {
            object: key.to_owned(),
            byte_offset: 0,
            byte_len: u32::try_from(size).map_err(|_| {
                crate::Error::Internal(format!("archive file {key} is too large to serve"))
            })?,
            record_count: 0,
            max_timestamp: 0,
        };
        self.chunk(&entry).await
    }

    /// The index entries from `offset` on; `None` if the partition does not exist.
    pub(crate) async fn plan(
        &self,
        topic_id: u64,
        partition: u32,
        offset: u64,
    ) -> Result<Option<ReadPlan>> {
        Ok(self
            .md
            .read_plan(topic_id, partition, offset, PLAN_ENTRIES)
            .await?)
    }

    pub(crate) async fn chunk(&self, e: &IndexEntry) -> Result<Bytes> {
        let key: ChunkKey = (e.object.as_str().into(), e.byte_offset, e.byte_len);
        match self.cache.get_value_or_guard_async(&key).await {
            Ok(bytes) => {
                self.metrics.cache_hits.inc();
                Ok(bytes)
            }
            Err(guard) => {
                self.metrics.cache_misses.inc();
                let bytes = self.fetch_valid(e).await?;
                let _ = guard.insert(bytes.clone());
                Ok(bytes)
            }
        }
    }

    /// Reads a chunk and checks its length, checksums and offsets before
    /// anything trusts or caches it. Bytes damaged in transit are read
    /// again, up to [`READ_ATTEMPTS`] times in all; damaged bytes are an
    /// error, never served. Archive files (no
    /// segment chunks) are checked by their own decoder.
    async fn fetch_valid(&self, e: &IndexEntry) -> Result<Bytes> {
        let range = e.byte_offset..e.byte_offset + u64::from(e.byte_len);
        let mut tries = 0;
        loop {
            tries += 1;
            let bytes = self.storage.get_range(&e.object, range.clone()).await?;
            let checked = if e.record_count > 0 {
                silt_segment::batch::validate_chunk(&bytes, e.byte_len, e.record_count)
            } else {
                silt_segment::batch::validate_len(&bytes, e.byte_len)
            };
            match checked {
                Ok(()) => return Ok(bytes),
                Err(err) if tries >= READ_ATTEMPTS => {
                    self.metrics.corrupt_chunks.inc();
                    return Err(err.into());
                }
                Err(err) => {
                    self.metrics.corrupt_chunks.inc();
                    tracing::warn!(object = %e.object, error = %err, "damaged chunk; reading it again");
                }
            }
        }
    }
}
