//! Merging small segments: a partition's run of small index entries (one
//! per agent flush, each in a multi-partition segment) is rewritten as one
//! per-partition segment of up to `merge_target_bytes`, then swapped into
//! the index in one transaction that checks nothing changed meanwhile
//! (`silt_metadata::merge`). A catch-up read then costs one GET per merged
//! segment instead of one per flush. Records, offsets and timestamps are
//! the same before, during and after; the replaced objects are deleted only
//! after the read grace period. Encoding runs on the blocking pool.

use std::sync::atomic::{AtomicU64, Ordering};

use silt_metadata::merge::MergeSwap;
use silt_metadata::{CompressionName, IndexEntry, TopicInfo};
use silt_segment::batch::{DEFAULT_MAX_DECOMPRESSED, decode_chunk};
use silt_segment::segment::SegmentWriter;
use silt_segment::{Compression, Record};

use crate::{Compactor, Error};

/// Index entries read per metadata round trip while looking for runs.
const PLAN_ENTRIES: usize = 1024;
/// Records per batch in a merged segment, by size (as the agents write).
const BATCH_TARGET_BYTES: usize = 256 << 10;

/// What one merge pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct MergeReport {
    /// Index entries replaced.
    pub entries: usize,
    /// Merged segments written and swapped in.
    pub segments: usize,
    pub bytes: u64,
}

fn compression(c: CompressionName) -> Compression {
    match c {
        CompressionName::None => Compression::None,
        CompressionName::Lz4 => Compression::Lz4,
        CompressionName::Zstd => Compression::Zstd,
    }
}

impl Compactor {
    pub async fn merge(&self) -> Result<MergeReport, Error> {
        let mut report = MergeReport::default();
        for topic in self.md.list_topics().await? {
            for p in 0..topic.partitions {
                let r = self.merge_partition(&topic, p).await?;
                report.entries += r.entries;
                report.segments += r.segments;
                report.bytes += r.bytes;
            }
        }
        Ok(report)
    }

    /// Finds runs of two or more consecutive small entries and merges each.
    async fn merge_partition(&self, topic: &TopicInfo, p: u32) -> Result<MergeReport, Error> {
        let target = self.config.merge_target_bytes;
        let small = (target / 8).max(1) as u64;
        let mut report = MergeReport::default();
        let Some(state) = self.md.partition_state(topic.id, p).await? else {
            return Ok(report);
        };
        let mut from = state.log_start_offset;
        while from < state.high_watermark {
            let Some(plan) = self.md.read_plan(topic.id, p, from, PLAN_ENTRIES).await? else {
                break;
            };
            let mut run: Vec<(u64, IndexEntry)> = Vec::new();
            let mut bytes = 0u64;
            let mut next = from;
            for (base, e) in plan.entries {
                next = base + u64::from(e.record_count);
                let fits =
                    u64::from(e.byte_len) < small && bytes + u64::from(e.byte_len) <= target as u64;
                if fits {
                    bytes += u64::from(e.byte_len);
                    run.push((base, e));
                    continue;
                }
                if run.len() >= 2 {
                    break;
                }
                run.clear();
                bytes = 0;
            }
            if run.len() >= 2 {
                let end = run
                    .last()
                    .map_or(next, |(b, e)| b + u64::from(e.record_count));
                if let Some(written) = self.merge_run(topic, p, run).await? {
                    report.entries += written.0;
                    report.segments += 1;
                    report.bytes += written.1;
                }
                from = end;
            } else if next > from {
                from = next;
            } else {
                break;
            }
        }
        Ok(report)
    }

    /// Rewrites one run as a per-partition segment and swaps it in; `None`
    /// if the run changed meanwhile (the new object is then an orphan for
    /// GC, never referenced).
    async fn merge_run(
        &self,
        topic: &TopicInfo,
        p: u32,
        run: Vec<(u64, IndexEntry)>,
    ) -> Result<Option<(usize, u64)>, Error> {
        let first = run[0].0;
        let mut records: Vec<Record> = Vec::new();
        let mut max_timestamp = i64::MIN;
        for (base, e) in &run {
            let chunk = crate::read_checked_chunk(&self.storage, e).await?;
            decode_chunk(&chunk, *base, *base, DEFAULT_MAX_DECOMPRESSED, |_, r| {
                records.push(r);
                true
            })?;
            max_timestamp = max_timestamp.max(e.max_timestamp);
        }
        let expected: u64 = run.iter().map(|(_, e)| u64::from(e.record_count)).sum();
        if records.len() as u64 != expected {
            return Err(Error::Archive(format!(
                "merge of {}/{p} from {first}: read {} records, the index says {expected}",
                topic.name,
                records.len()
            )));
        }
        let (topic_id, codec) = (topic.id, compression(topic.config.compression));
        let (bytes, infos) = tokio::task::spawn_blocking(move || {
            let mut w = SegmentWriter::default();
            w.begin_chunk(topic_id, p)?;
            let mut start = 0;
            let mut weight = 0;
            for (i, r) in records.iter().enumerate() {
                weight += r.weight();
                if weight >= BATCH_TARGET_BYTES || i + 1 == records.len() {
                    w.append_batch(&records[start..=i], codec)?;
                    start = i + 1;
                    weight = 0;
                }
            }
            Ok::<_, silt_segment::Error>(w.finish())
        })
        .await
        .map_err(|e| Error::Archive(format!("merge encoder task: {e}")))??;
        let [info] = infos[..] else {
            return Err(Error::Archive("a merged segment holds one chunk".into()));
        };
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let now = (self.now_ms)();
        let id = format!(
            "{:013}-{:016x}{:08x}",
            now.max(0),
            self.holder,
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let object = format!("segments/{id}.seg");
        let size = bytes.len() as u64;
        self.storage.put(&object, bytes.into()).await?;
        let swap = MergeSwap {
            topic_id,
            partition: p,
            segment_id: id,
            new: IndexEntry {
                object,
                byte_offset: info.offset,
                byte_len: info.len,
                record_count: info.record_count,
                max_timestamp,
            },
            old: run,
        };
        let garbage_at = now + self.config.gc_grace.as_millis() as i64;
        if !self.md.swap_merged(&swap, garbage_at).await? {
            tracing::info!(topic = %topic.name, partition = p, first, "merge raced a change; skipped");
            return Ok(None);
        }
        tracing::info!(topic = %topic.name, partition = p, first, entries = swap.old.len(), bytes = size, "merged");
        Ok(Some((swap.old.len(), size)))
    }
}
