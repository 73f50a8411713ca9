//! Batches as a Kafka producer sends them, checked before they are stored
//! byte for byte (the produce fast path: no re-encoding, compression kept).
//!
//! A produce request (v3 and later) carries exactly one v2 batch per
//! partition. Before it is accepted, [`check`] verifies what the stored
//! bytes must guarantee to every later reader:
//! * magic 2, a CRC-32C that matches, a known codec;
//! * `recordCount ≥ 1` and `lastOffsetDelta = recordCount − 1`, and each
//!   record's offset delta is its position — so offsets stay dense once the
//!   base offset is rewritten (Kafka's CRC does not cover it);
//! * every record parses (the records section is decompressed, bounded,
//!   and walked without building records);
//! * no transactional or control batch (transactions are not offered).
//!
//! The result names the producer's identity and sequence range, if any, so
//! duplicates can be recognised where offsets are assigned.

use bytes::Bytes;

use crate::Compression;
use crate::batch::{BatchHeader, HEADER_LEN, read_header};
use crate::error::{Reason, Result, corrupt};
use crate::varint::Cursor;

/// An idempotent producer's batch: who sent it and which sequences it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerBatch {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub first_sequence: i32,
    /// `first_sequence + record_count − 1`, wrapping at `i32::MAX` as Kafka does.
    pub last_sequence: i32,
}

/// One checked batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducedBatch {
    /// The batch exactly as sent.
    pub bytes: Bytes,
    pub record_count: u32,
    pub min_timestamp: i64,
    pub max_timestamp: i64,
    pub producer: Option<ProducerBatch>,
}

/// Checks that `bytes` is exactly one valid v2 batch (see the module docs),
/// decompressing at most `max_decompressed` bytes. CPU-bound: run it off
/// the async runtime.
pub fn check(bytes: Bytes, max_decompressed: usize) -> Result<ProducedBatch> {
    if bytes.len() < HEADER_LEN {
        return Err(corrupt("batch", bytes.len(), Reason::Truncated));
    }
    let header = read_header(&bytes)?;
    if header.total_len() != bytes.len() {
        return Err(corrupt(
            "batch",
            header.total_len(),
            Reason::Other("a partition's records must be exactly one batch"),
        ));
    }
    if header.transactional || header.control {
        return Err(corrupt(
            "batch",
            0,
            Reason::Unsupported("transactional and control batches are not accepted"),
        ));
    }
    if header.record_count < 1 || header.last_offset_delta != header.record_count - 1 {
        return Err(corrupt(
            "batch",
            0,
            Reason::Other("lastOffsetDelta must be recordCount - 1"),
        ));
    }
    let body = &bytes[HEADER_LEN..header.total_len()];
    let (min_timestamp, max_timestamp) = match header.compression {
        Compression::None => walk(body, &header)?,
        codec => walk(
            &codec.decompress(body, max_decompressed, HEADER_LEN)?,
            &header,
        )?,
    };
    Ok(ProducedBatch {
        producer: producer(&header),
        record_count: header.record_count as u32,
        min_timestamp,
        max_timestamp,
        bytes,
    })
}

/// Walks the records section without building records (a batch may pack
/// millions of tiny headers into its decompression limit): every length
/// in bounds, offset deltas counting up from 0, header keys UTF-8. Returns
/// the smallest and largest timestamps.
fn walk(records: &[u8], h: &BatchHeader) -> Result<(i64, i64)> {
    let mut c = Cursor::new(records, "record");
    let (mut min, mut max) = (i64::MAX, i64::MIN);
    for i in 0..h.record_count {
        let len = c.varint()?;
        let len = usize::try_from(len).map_err(|_| c.fail(Reason::BadLength(i64::from(len))))?;
        let mut r = Cursor::new(c.bytes(len)?, "record");
        let _attributes = r.u8()?;
        let ts = h.base_timestamp.wrapping_add(r.varlong()?);
        if r.varint()? != i {
            return Err(r.fail(Reason::Other("offset deltas must count up from 0")));
        }
        let _key = r.nullable_bytes()?;
        let _value = r.nullable_bytes()?;
        let headers = r.varint()?;
        if headers < 0 || headers as usize > r.remaining() {
            return Err(r.fail(Reason::BadLength(i64::from(headers))));
        }
        for _ in 0..headers {
            let key = r
                .nullable_bytes()?
                .ok_or(r.fail(Reason::Other("null header key")))?;
            std::str::from_utf8(key).map_err(|_| r.fail(Reason::BadUtf8))?;
            let _value = r.nullable_bytes()?;
        }
        min = min.min(ts);
        max = max.max(ts);
    }
    Ok((min, max))
}

fn producer(h: &BatchHeader) -> Option<ProducerBatch> {
    if h.producer_id < 0 || h.base_sequence < 0 {
        return None;
    }
    let last = i64::from(h.base_sequence) + i64::from(h.record_count) - 1;
    Some(ProducerBatch {
        producer_id: h.producer_id,
        producer_epoch: h.producer_epoch,
        first_sequence: h.base_sequence,
        last_sequence: (last % (i64::from(i32::MAX) + 1)) as i32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::encode;
    use crate::{Compression, Record};

    fn batch(n: usize, c: Compression) -> Vec<u8> {
        let records: Vec<Record> = (0..n)
            .map(|i| Record {
                timestamp: 1_000 + i as i64,
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(vec![b'v'; 40])),
                headers: vec![],
            })
            .collect();
        let mut out = Vec::new();
        encode(&mut out, 0, &records, c).unwrap();
        out
    }

    fn recrc(b: &mut [u8]) {
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
    }

    #[test]
    fn accepts_every_codec_and_reports_counts_and_times() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let b = check(Bytes::from(batch(10, c)), 1 << 20).unwrap();
            assert_eq!(
                (b.record_count, b.min_timestamp, b.max_timestamp),
                (10, 1000, 1009)
            );
            assert_eq!(b.producer, None);
        }
    }

    #[test]
    fn reads_the_producer_and_wraps_sequences() {
        let mut b = batch(3, Compression::None);
        b[43..51].copy_from_slice(&7i64.to_be_bytes());
        b[51..53].copy_from_slice(&2i16.to_be_bytes());
        b[53..57].copy_from_slice(&(i32::MAX - 1).to_be_bytes());
        recrc(&mut b);
        let p = check(Bytes::from(b), 1 << 20).unwrap().producer.unwrap();
        assert_eq!(
            (
                p.producer_id,
                p.producer_epoch,
                p.first_sequence,
                p.last_sequence
            ),
            (7, 2, i32::MAX - 1, 0)
        );
    }

    #[test]
    fn refuses_what_readers_could_not_trust() {
        // Two batches for one partition.
        let mut two = batch(2, Compression::None);
        two.extend(batch(2, Compression::None));
        assert!(check(Bytes::from(two), 1 << 20).is_err());
        // A count that disagrees with lastOffsetDelta.
        let mut b = batch(3, Compression::None);
        b[23..27].copy_from_slice(&5i32.to_be_bytes());
        recrc(&mut b);
        assert!(check(Bytes::from(b), 1 << 20).is_err());
        // A transactional batch.
        let mut b = batch(3, Compression::None);
        b[22] |= 0x10;
        recrc(&mut b);
        assert!(check(Bytes::from(b), 1 << 20).is_err());
        // A flipped bit.
        let mut b = batch(3, Compression::Lz4);
        let last = b.len() - 1;
        b[last] ^= 1;
        assert!(check(Bytes::from(b), 1 << 20).is_err());
        // Truncated.
        assert!(
            check(
                Bytes::from(batch(3, Compression::None)[..40].to_vec()),
                1 << 20
            )
            .is_err()
        );
    }

    #[test]
    fn refuses_records_whose_deltas_skip() {
        // Record 1's offset delta (the byte after its length, attributes
        // and timestamp delta) changed from 1 to 2: the header still agrees.
        let mut b = batch(2, Compression::None);
        let first_len = b[HEADER_LEN] as usize / 2; // zigzag varint, < 64
        let second = HEADER_LEN + 1 + first_len;
        assert_eq!(b[second + 3], 2, "offset delta 1, zigzag");
        b[second + 3] = 4;
        recrc(&mut b);
        assert!(check(Bytes::from(b), 1 << 20).is_err());
    }
}
