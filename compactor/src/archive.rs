//! The Parquet archive: committed records rewritten to Parquet in a
//! Hive-style layout that Spark, DuckDB and Athena read without a catalog:
//!
//! ```text
//! archive/topic=<name>/partition=<p>/<topic id>-<first offset>.parquet   (20 digits each)
//! ```
//!
//! Columns: `offset` int64, `timestamp` TIMESTAMP(MICROS, UTC), `key` and
//! `value` nullable binary, `headers` list<struct<key string, value
//! binary>> (in record order; keys may repeat). Topic and partition are in
//! the path and never in the file (readers silently prefer the path). Rows
//! are sorted by offset, with statistics and page indexes; key and value are
//! never dictionary-encoded, and values (of records and headers) have no
//! statistics (min/max of opaque payloads prune nothing); pages are
//! zstd-compressed. Decoding and encoding run on the compactor's encoder
//! threads ([`crate::encoders`]), off the runtime, while the next chunks
//! are read: only a file's compressed pages are held in memory, never all
//! its records.
//!
//! Exactly once, across crashes and overlapping instances: the range of a
//! file is planned in metadata before it is written
//! (`silt_metadata::archive`), a file is published with one PUT under its
//! final name (its first offset), and the progress then moves by
//! compare-and-set. A crash in between, or a second compactor, rewrites the
//! same name with the same records — never a second file holding the same
//! offsets, never a gap.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;

use silt_metadata::TopicInfo;
use silt_segment::Record;
use silt_segment::batch::{DEFAULT_MAX_DECOMPRESSED, decode_chunk};
use silt_segment::parquet::ArchiveWriter;

use crate::{Compactor, Error};

/// Index entries read per metadata round trip while archiving.
const PLAN_ENTRIES: usize = 64;

/// Chunk reads in flight per partition being archived.
const READ_AHEAD: usize = 8;

/// Stored (compressed) chunk bytes per batch handed from the reader to the
/// encoder.
const BATCH_BYTES: usize = 1 << 20;

/// Chunks as stored, each with the offset of its first record.
type Chunks = Vec<(u64, Bytes)>;

/// What one archive pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ArchiveReport {
    pub files: usize,
    pub records: u64,
    /// Bytes of Parquet written.
    pub bytes: u64,
    /// Committed records still not archived after the pass.
    pub lag_records: u64,
}

/// The object key of a partition's archive file starting at `first_offset`.
/// The topic id in the name keeps a deleted topic's files apart from those
/// of a new topic of the same name, until they are reclaimed.
pub fn archive_key(topic: &TopicInfo, partition: u32, first_offset: u64) -> String {
    format!(
        "archive/topic={}/partition={partition}/{:020}-{first_offset:020}.parquet",
        topic.name, topic.id
    )
}

impl Compactor {
    /// Archives every committed record not archived yet, a file per
    /// partition per pass (more when a partition has more than a file's
    /// worth).
    pub async fn archive(&self) -> Result<ArchiveReport, Error> {
        let mut work = Vec::new();
        for topic in self.md.list_topics().await? {
            let topic = Arc::new(topic);
            let states = self.md.partition_states(topic.id).await?;
            for (p, state) in states.into_iter().enumerate() {
                work.push((topic.clone(), p as u32, state));
            }
        }
        let mut passes = futures::stream::iter(work)
            .map(|(topic, p, state)| async move { self.archive_partition(&topic, p, state).await })
            // A partition per encoder thread: reading, encoding and
            // uploading overlap.
            .buffer_unordered(self.encoders.threads());
        let mut report = ArchiveReport::default();
        while let Some(r) = passes.next().await {
            let r = r?;
            report.files += r.files;
            report.records += r.records;
            report.bytes += r.bytes;
            report.lag_records += r.lag_records;
        }
        Ok(report)
    }

    /// Archives one partition up to its high-watermark as of `state`.
    async fn archive_partition(
        &self,
        topic: &TopicInfo,
        p: u32,
        state: silt_metadata::PartitionState,
    ) -> Result<ArchiveReport, Error> {
        let mut report = ArchiveReport::default();
        let mut next = self
            .md
            .archive_progress(topic.id, p)
            .await?
            .next
            .max(state.log_start_offset);
        while next < state.high_watermark {
            let Some(file) = self
                .archive_file(topic, p, next, state.high_watermark)
                .await?
            else {
                break;
            };
            report.files += 1;
            report.records += file.end - next;
            report.bytes += file.bytes;
            next = file.end;
        }
        report.lag_records = state.high_watermark.saturating_sub(next);
        Ok(report)
    }

    /// Writes one file from `from` (at most up to `until` and the size
    /// bounds), then moves the progress. `None` if there was nothing to
    /// read (the topic went away) or another compactor moved the progress.
    async fn archive_file(
        &self,
        topic: &TopicInfo,
        partition: u32,
        from: u64,
        until: u64,
    ) -> Result<Option<ArchivedFile>, Error> {
        let Some(proposed) = self.propose_end(topic.id, partition, from, until).await? else {
            return Ok(None);
        };
        // Plan first: whoever writes this file writes exactly [from, end).
        let Some(end) = self
            .md
            .plan_archive(topic.id, partition, from, proposed)
            .await?
        else {
            return Ok(None);
        };
        // Reading and encoding overlap: stored chunks go through a short
        // queue to an encoder thread, which decodes and encodes them.
        let (batches, queue) = tokio::sync::mpsc::channel::<Chunks>(2);
        let encoder = self.encoders.run(move || encode_file(queue, from, end));
        let read = self.read_range(topic.id, partition, from, end, batches);
        let (encoded, read) = tokio::join!(encoder, read);
        let (encoded, encoded_end) = encoded??;
        read?;
        if encoded_end != end {
            return Err(Error::Archive(format!(
                "planned records {from}..{end} are no longer readable"
            )));
        }
        let key = archive_key(topic, partition, from);
        let bytes = encoded.len() as u64;
        self.storage.put(&key, encoded.into()).await?;
        if !self
            .md
            .advance_archive(topic.id, partition, from, end)
            .await?
        {
            tracing::warn!(%key, "archive progress moved under us; leaving it");
            return Ok(None);
        }
        tracing::info!(%key, records = end - from, bytes, "archived");
        Ok(Some(ArchivedFile { end, bytes }))
    }

    /// Where a file starting at `from` should end: at `until`, or where
    /// the index entries from `from` reach the file's record or byte
    /// bound (bytes as stored in segments). `None` if nothing is readable.
    async fn propose_end(
        &self,
        topic_id: u64,
        partition: u32,
        from: u64,
        until: u64,
    ) -> Result<Option<u64>, Error> {
        let max_records = u64::try_from(self.config.archive_file_records).unwrap_or(u64::MAX);
        let until = until.min(from.saturating_add(max_records));
        let max_bytes = self.config.archive_file_bytes as u64;
        let (mut end, mut bytes) = (from, 0u64);
        while end < until && bytes < max_bytes {
            let Some(plan) = self
                .md
                .read_plan(topic_id, partition, end, PLAN_ENTRIES)
                .await?
            else {
                break;
            };
            let before = end;
            for (base, entry) in &plan.entries {
                if end >= until || bytes >= max_bytes {
                    break;
                }
                end = end.max((base + u64::from(entry.record_count)).min(until));
                bytes += u64::from(entry.byte_len);
            }
            if end == before {
                break;
            }
        }
        Ok((end > from).then_some(end))
    }

    /// Reads the stored chunks holding `[from, until)` into `batches` of
    /// about [`BATCH_BYTES`], a few chunks in flight ahead.
    async fn read_range(
        &self,
        topic_id: u64,
        partition: u32,
        from: u64,
        until: u64,
        batches: tokio::sync::mpsc::Sender<Chunks>,
    ) -> Result<(), Error> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        let mut next = from;
        while next < until {
            let before = next;
            let Some(plan) = self
                .md
                .read_plan(topic_id, partition, next, PLAN_ENTRIES)
                .await?
            else {
                break;
            };
            let reads: Vec<_> = plan
                .entries
                .into_iter()
                .take_while(|(base, _)| *base < until)
                .map(|(base, entry)| {
                    let storage = self.storage.clone();
                    async move {
                        let end = base + u64::from(entry.record_count);
                        (base, end, crate::read_checked_chunk(&storage, &entry).await)
                    }
                })
                .collect();
            let mut chunks = futures::stream::iter(reads).buffered(READ_AHEAD);
            while let Some((base, end, chunk)) = chunks.next().await {
                let chunk = chunk?;
                next = next.max(end);
                bytes += chunk.len();
                batch.push((base, chunk));
                if bytes >= BATCH_BYTES {
                    bytes = 0;
                    if batches.send(std::mem::take(&mut batch)).await.is_err() {
                        // The encoder failed; its error is the one to report.
                        return Ok(());
                    }
                }
            }
            if next == before {
                return Err(Error::Archive(format!(
                    "no record readable at offset {next} of partition {partition}"
                )));
            }
        }
        if !batch.is_empty() {
            // An encoder that failed reports its own error.
            let _ = batches.send(batch).await;
        }
        Ok(())
    }
}

fn archive_error(e: impl std::fmt::Display) -> Error {
    Error::Archive(e.to_string())
}

/// Decodes the chunks of `[from, end)` as they arrive and encodes their
/// records into one file; returns it and one past the last offset decoded.
/// Decoding runs here, beside the encoding, so that the decompressed
/// batches are allocated and freed on the thread that uses them, and one
/// batch of records is reused from chunk to chunk.
fn encode_file(
    mut queue: tokio::sync::mpsc::Receiver<Chunks>,
    from: u64,
    end: u64,
) -> Result<(Vec<u8>, u64), Error> {
    let mut writer = ArchiveWriter::new().map_err(archive_error)?;
    let mut records: Vec<(u64, Record)> = Vec::new();
    let mut next = from;
    while let Some(chunks) = queue.blocking_recv() {
        for (base, chunk) in &chunks {
            decode_chunk(chunk, *base, next, DEFAULT_MAX_DECOMPRESSED, |off, r| {
                if off >= end {
                    return false;
                }
                records.push((off, r));
                next = off + 1;
                true
            })?;
        }
        writer.write(records.drain(..)).map_err(archive_error)?;
    }
    Ok((writer.finish().map_err(archive_error)?, next))
}

struct ArchivedFile {
    /// One past the last archived offset.
    end: u64,
    bytes: u64,
}
