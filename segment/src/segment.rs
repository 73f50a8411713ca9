//! The segment object: what one agent flush (or one compactor merge) writes.
//!
//! ```text
//! "SILTSEG1"                                   8-byte magic
//! chunk 0 | chunk 1 | …                        Kafka v2 batches, one chunk per (topic, partition)
//! footer: version u8 | count u32 | entry*      entry = 48 bytes, see ChunkInfo
//! trailer: footer_len u32 | footer_crc u32 | "SILTEND1"
//! ```
//! All integers are big-endian. Invariants: chunks are contiguous, ordered by
//! (topic id, partition) — a partition may have several consecutive chunks
//! (one per request that must commit on its own), committed in segment
//! order — and their batches carry base offsets relative to the chunk's
//! first record. The metadata index stores each chunk's byte range, so
//! a reader needs one ranged GET per chunk and never reads the footer; the
//! footer makes a segment self-describing for the compactor and for repair.

use crate::error::{Error, Reason, Result, corrupt};
use crate::varint::Cursor;

const MAGIC: &[u8; 8] = b"SILTSEG1";
const END_MAGIC: &[u8; 8] = b"SILTEND1";
const TRAILER_LEN: usize = 16;
const ENTRY_LEN: usize = 48;
const FOOTER_VERSION: u8 = 1;

/// Where one (topic, partition) chunk lies in a segment, and what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkInfo {
    pub topic_id: u64,
    pub partition: u32,
    /// Byte offset of the chunk in the segment object.
    pub offset: u64,
    pub len: u32,
    pub record_count: u32,
    pub batch_count: u32,
    pub min_timestamp: i64,
    pub max_timestamp: i64,
}

/// Builds a segment: chunks are appended in (topic, partition) order.
#[derive(Debug)]
pub struct SegmentWriter {
    buf: Vec<u8>,
    chunks: Vec<ChunkInfo>,
    open: Option<ChunkInfo>,
}

impl Default for SegmentWriter {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl SegmentWriter {
    pub fn with_capacity(bytes: usize) -> Self {
        let mut buf = Vec::with_capacity(bytes + 64);
        buf.extend_from_slice(MAGIC);
        Self {
            buf,
            chunks: Vec::new(),
            open: None,
        }
    }

    /// Starts a chunk of (topic, partition); keys must not decrease.
    pub fn begin_chunk(&mut self, topic_id: u64, partition: u32) -> Result<()> {
        self.end_chunk();
        if let Some(last) = self.chunks.last() {
            if (last.topic_id, last.partition) > (topic_id, partition) {
                return Err(Error::Encode("chunks must be in (topic, partition) order"));
            }
        }
        self.open = Some(ChunkInfo {
            topic_id,
            partition,
            offset: self.buf.len() as u64,
            len: 0,
            record_count: 0,
            batch_count: 0,
            min_timestamp: i64::MAX,
            max_timestamp: i64::MIN,
        });
        Ok(())
    }

    /// Appends one batch of records to the open chunk; returns the batch's
    /// offset relative to the chunk start.
    pub fn append_batch(
        &mut self,
        records: &[crate::Record],
        compression: crate::Compression,
    ) -> Result<u32> {
        let chunk = self
            .open
            .as_mut()
            .ok_or(Error::Encode("append_batch without begin_chunk"))?;
        let rel = chunk.record_count;
        crate::batch::encode(&mut self.buf, i64::from(rel), records, compression)?;
        let n = u32::try_from(records.len()).map_err(|_| Error::Encode("too many records"))?;
        chunk.record_count = rel
            .checked_add(n)
            .ok_or(Error::Encode("too many records in chunk"))?;
        chunk.batch_count += 1;
        for r in records {
            chunk.min_timestamp = chunk.min_timestamp.min(r.timestamp);
            chunk.max_timestamp = chunk.max_timestamp.max(r.timestamp);
        }
        Ok(rel)
    }

    /// Appends a batch a producer sent ([`crate::produced::check`]ed), as
    /// it is except for its base offset, which becomes relative to the
    /// chunk; returns that offset.
    pub fn append_produced(&mut self, batch: &crate::produced::ProducedBatch) -> Result<u32> {
        let chunk = self
            .open
            .as_mut()
            .ok_or(Error::Encode("append_produced without begin_chunk"))?;
        let rel = chunk.record_count;
        let start = self.buf.len();
        self.buf.extend_from_slice(&batch.bytes);
        self.buf[start..start + 8].copy_from_slice(&i64::from(rel).to_be_bytes());
        chunk.record_count = rel
            .checked_add(batch.record_count)
            .ok_or(Error::Encode("too many records in chunk"))?;
        chunk.batch_count += 1;
        chunk.min_timestamp = chunk.min_timestamp.min(batch.min_timestamp);
        chunk.max_timestamp = chunk.max_timestamp.max(batch.max_timestamp);
        Ok(rel)
    }

    fn end_chunk(&mut self) {
        if let Some(mut c) = self.open.take() {
            c.len = (self.buf.len() as u64 - c.offset) as u32;
            if c.record_count > 0 {
                self.chunks.push(c);
            }
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty() && self.open.is_none_or(|c| c.record_count == 0)
    }

    /// Writes footer and trailer; returns the object bytes and the chunks.
    pub fn finish(mut self) -> (Vec<u8>, Vec<ChunkInfo>) {
        self.end_chunk();
        let footer_start = self.buf.len();
        self.buf.push(FOOTER_VERSION);
        self.buf
            .extend_from_slice(&(self.chunks.len() as u32).to_be_bytes());
        for c in &self.chunks {
            self.buf.extend_from_slice(&c.topic_id.to_be_bytes());
            self.buf.extend_from_slice(&c.partition.to_be_bytes());
            self.buf.extend_from_slice(&c.offset.to_be_bytes());
            self.buf.extend_from_slice(&c.len.to_be_bytes());
            self.buf.extend_from_slice(&c.record_count.to_be_bytes());
            self.buf.extend_from_slice(&c.batch_count.to_be_bytes());
            self.buf.extend_from_slice(&c.min_timestamp.to_be_bytes());
            self.buf.extend_from_slice(&c.max_timestamp.to_be_bytes());
        }
        let footer_len = (self.buf.len() - footer_start) as u32;
        let crc = crc32c::crc32c(&self.buf[footer_start..]);
        self.buf.extend_from_slice(&footer_len.to_be_bytes());
        self.buf.extend_from_slice(&crc.to_be_bytes());
        self.buf.extend_from_slice(END_MAGIC);
        (self.buf, self.chunks)
    }
}

/// The number of bytes at the end of an object that [`read_footer`] needs
/// when the footer holds `chunks` entries.
pub fn tail_len(chunks: usize) -> usize {
    TRAILER_LEN + 5 + chunks * ENTRY_LEN
}

/// Parses the trailer (the last 16 bytes); returns the footer length.
pub fn read_trailer(tail: &[u8]) -> Result<usize> {
    if tail.len() < TRAILER_LEN {
        return Err(corrupt("segment trailer", 0, Reason::Truncated));
    }
    let t = &tail[tail.len() - TRAILER_LEN..];
    if &t[8..] != END_MAGIC {
        return Err(corrupt("segment trailer", 8, Reason::BadMagic));
    }
    let mut c = Cursor::new(t, "segment trailer");
    Ok(c.u32()? as usize)
}

/// Parses the footer of a whole segment object (or of its tail, as long as
/// the tail holds the complete footer and trailer; `object_len` is the full
/// object size, used to check chunk ranges).
pub fn read_footer(tail: &[u8], object_len: u64) -> Result<Vec<ChunkInfo>> {
    let footer_len = read_trailer(tail)?;
    let end = tail.len() - TRAILER_LEN;
    let start =
        end.checked_sub(footer_len)
            .ok_or(corrupt("segment footer", 0, Reason::Truncated))?;
    let footer = &tail[start..end];
    let t = &tail[end..];
    let stored = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
    let computed = crc32c::crc32c(footer);
    if stored != computed {
        return Err(corrupt(
            "segment footer",
            start,
            Reason::CrcMismatch { stored, computed },
        ));
    }
    let mut c = Cursor::new(footer, "segment footer");
    if c.u8()? != FOOTER_VERSION {
        return Err(c.fail(Reason::Other("unknown footer version")));
    }
    let count = c.u32()? as usize;
    if count.checked_mul(ENTRY_LEN) != Some(c.remaining()) {
        return Err(c.fail(Reason::BadLength(count as i64)));
    }
    let data_end = object_len.saturating_sub((footer_len + TRAILER_LEN) as u64);
    let mut chunks = Vec::with_capacity(count);
    for _ in 0..count {
        let info = ChunkInfo {
            topic_id: c.u64()?,
            partition: c.u32()?,
            offset: c.u64()?,
            len: c.u32()?,
            record_count: c.u32()?,
            batch_count: c.u32()?,
            min_timestamp: c.i64()?,
            max_timestamp: c.i64()?,
        };
        let end = info.offset.checked_add(u64::from(info.len));
        if info.offset < MAGIC.len() as u64 || end.is_none_or(|e| e > data_end) {
            return Err(c.fail(Reason::Other("chunk range outside the data section")));
        }
        chunks.push(info);
    }
    Ok(chunks)
}

/// Checks the leading magic of a segment object.
pub fn check_magic(head: &[u8]) -> Result<()> {
    if head.get(..MAGIC.len()) != Some(MAGIC) {
        return Err(corrupt("segment", 0, Reason::BadMagic));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Compression, Record};
    use bytes::Bytes;
    use proptest::prelude::*;

    fn rec(i: i64) -> Record {
        Record {
            timestamp: 1000 + i,
            value: Some(Bytes::from(format!("v{i}"))),
            ..Default::default()
        }
    }

    proptest! {
        #[test]
        fn segment_round_trips(layout in proptest::collection::btree_map((0u64..4, 0u32..4), 1usize..5, 1..8)) {
            let mut w = SegmentWriter::default();
            for (&(t, p), &n) in &layout {
                w.begin_chunk(t, p).unwrap();
                for b in 0..n {
                    let recs: Vec<_> = (0..=b as i64).map(rec).collect();
                    w.append_batch(&recs, Compression::Lz4).unwrap();
                }
            }
            let (obj, chunks) = w.finish();
            check_magic(&obj).unwrap();
            prop_assert_eq!(read_footer(&obj, obj.len() as u64).unwrap(), chunks.clone());
            for c in &chunks {
                let bytes = &obj[c.offset as usize..(c.offset + u64::from(c.len)) as usize];
                let mut offsets = Vec::new();
                crate::batch::decode_chunk(&Bytes::copy_from_slice(bytes), 7, 0, 1 << 20, |o, _| { offsets.push(o); true }).unwrap();
                let want: Vec<u64> = (7..7 + u64::from(c.record_count)).collect();
                prop_assert_eq!(offsets, want);
            }
        }

        #[test]
        fn damaged_footer_is_an_error(cut in 1usize..64, flip in any::<prop::sample::Index>()) {
            let mut w = SegmentWriter::default();
            w.begin_chunk(1, 0).unwrap();
            w.append_batch(&[rec(1)], Compression::None).unwrap();
            let (obj, _) = w.finish();
            prop_assert!(read_footer(&obj[..obj.len() - cut], obj.len() as u64).is_err());
            let mut bad = obj.clone();
            let i = obj.len() - 1 - flip.index(tail_len(1));
            bad[i] ^= 0x01;
            prop_assert!(read_footer(&bad, bad.len() as u64).is_err());
        }
    }

    #[test]
    fn chunks_must_be_ordered() {
        let mut w = SegmentWriter::default();
        w.begin_chunk(2, 0).unwrap();
        w.append_batch(&[rec(0)], Compression::None).unwrap();
        assert!(w.begin_chunk(1, 5).is_err());
        assert!(
            w.begin_chunk(2, 0).is_ok(),
            "a partition may have several chunks"
        );
        w.append_batch(&[rec(1)], Compression::None).unwrap();
        let (_, chunks) = w.finish();
        assert_eq!(chunks.len(), 2);
    }
}
