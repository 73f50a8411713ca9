//! Kafka v2 record batches (`magic = 2`), byte for byte as Kafka writes them.
//!
//! ```text
//! baseOffset i64 | batchLength i32 | partitionLeaderEpoch i32 | magic i8 = 2
//! crc u32 (CRC-32C of everything after it) | attributes i16 | lastOffsetDelta i32
//! baseTimestamp i64 | maxTimestamp i64 | producerId i64 | producerEpoch i16
//! baseSequence i32 | recordCount i32 | records (compressed as a whole)
//! ```
//! Each record: `length varint | attributes i8 | timestampDelta varlong |
//! offsetDelta varint | key (varint len, -1 = null) | value | headers`.
//!
//! Invariant: `baseOffset` is outside the CRC, so a reader rewrites it from the
//! chunk-relative value stored here to the absolute offset without touching
//! the checksum.

use bytes::Bytes;

use crate::compression::Compression;
use crate::error::{Error, Reason, Result, corrupt};
use crate::varint::{Cursor, put_varint, put_varlong, varlong_len};

/// Size of the fixed batch header, up to and including `recordCount`.
pub const HEADER_LEN: usize = 61;
/// Byte offset of the field the CRC starts at (`attributes`).
const CRC_START: usize = 21;
/// The default bound on a batch's decompressed records section.
pub const DEFAULT_MAX_DECOMPRESSED: usize = 64 << 20;

/// One record: what producers send and consumers get back.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    pub key: Option<Bytes>,
    /// `None` is a tombstone.
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

/// A record header; keys are strings, values nullable bytes (as in Kafka).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub key: String,
    pub value: Option<Bytes>,
}

impl Record {
    /// The bytes this record takes in memory and on the wire, roughly; used to
    /// weigh admission and fetch limits.
    pub fn weight(&self) -> usize {
        let h: usize = self
            .headers
            .iter()
            .map(|h| h.key.len() + h.value.as_ref().map_or(0, Bytes::len) + 4)
            .sum();
        self.key.as_ref().map_or(0, Bytes::len) + self.value.as_ref().map_or(0, Bytes::len) + h + 16
    }
}

/// A decoded batch header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Bytes after the `batchLength` field.
    pub batch_length: i32,
    pub compression: Compression,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    /// Kafka's idempotent-producer fields; -1 when the producer has none.
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    /// The attributes' transactional (bit 4) and control (bit 5) flags.
    pub transactional: bool,
    pub control: bool,
    pub record_count: i32,
}

impl BatchHeader {
    /// Total size of the batch in bytes.
    pub fn total_len(&self) -> usize {
        12 + self.batch_length as usize
    }
}

fn len_i32(n: usize) -> Result<i32> {
    i32::try_from(n).map_err(|_| Error::Encode("length exceeds i32::MAX"))
}

fn put_nullable(out: &mut Vec<u8>, b: Option<&[u8]>) -> Result<()> {
    match b {
        None => put_varint(out, -1),
        Some(b) => {
            put_varint(out, len_i32(b.len())?);
            out.extend_from_slice(b);
        }
    }
    Ok(())
}

fn nullable_len(b: Option<&[u8]>) -> usize {
    b.map_or(1, |b| varlong_len(b.len() as i64) + b.len())
}

/// Writes one record straight into `out`: its length is computed first, so
/// no temporary buffer is needed.
fn encode_record(out: &mut Vec<u8>, r: &Record, base_ts: i64, delta: i32) -> Result<()> {
    let ts_delta = r.timestamp.wrapping_sub(base_ts);
    let mut len = 1
        + varlong_len(ts_delta)
        + varlong_len(i64::from(delta))
        + nullable_len(r.key.as_deref())
        + nullable_len(r.value.as_deref())
        + varlong_len(r.headers.len() as i64);
    for h in &r.headers {
        len += nullable_len(Some(h.key.as_bytes())) + nullable_len(h.value.as_deref());
    }
    out.reserve(len + 5);
    put_varint(out, len_i32(len)?);
    out.push(0); // attributes: unused
    put_varlong(out, ts_delta);
    put_varint(out, delta);
    put_nullable(out, r.key.as_deref())?;
    put_nullable(out, r.value.as_deref())?;
    put_varint(out, len_i32(r.headers.len())?);
    for h in &r.headers {
        put_nullable(out, Some(h.key.as_bytes()))?;
        put_nullable(out, h.value.as_deref())?;
    }
    Ok(())
}

/// Appends one batch holding `records` to `out`, with the given base offset.
/// Returns the number of bytes written. An empty `records` is an error.
pub fn encode(
    out: &mut Vec<u8>,
    base_offset: i64,
    records: &[Record],
    compression: Compression,
) -> Result<usize> {
    let (first, rest) = records
        .split_first()
        .ok_or(Error::Encode("a batch needs at least one record"))?;
    let base_ts = first.timestamp;
    let max_ts = rest.iter().fold(base_ts, |m, r| m.max(r.timestamp));
    let start = out.len();
    out.extend_from_slice(&base_offset.to_be_bytes());
    out.extend_from_slice(&[0; 4]); // batchLength, patched below
    out.extend_from_slice(&(-1i32).to_be_bytes()); // partitionLeaderEpoch
    out.push(2); // magic
    out.extend_from_slice(&[0; 4]); // crc, patched below
    out.extend_from_slice(&i16::from(compression.kafka_id()).to_be_bytes());
    out.extend_from_slice(&len_i32(records.len() - 1)?.to_be_bytes());
    out.extend_from_slice(&base_ts.to_be_bytes());
    out.extend_from_slice(&max_ts.to_be_bytes());
    out.extend_from_slice(&(-1i64).to_be_bytes()); // producerId
    out.extend_from_slice(&(-1i16).to_be_bytes()); // producerEpoch
    out.extend_from_slice(&(-1i32).to_be_bytes()); // baseSequence
    out.extend_from_slice(&len_i32(records.len())?.to_be_bytes());
    if compression == Compression::None {
        for (i, r) in records.iter().enumerate() {
            encode_record(out, r, base_ts, len_i32(i)?)?;
        }
    } else {
        let mut raw = Vec::with_capacity(records.iter().map(|r| r.weight() + 8).sum());
        for (i, r) in records.iter().enumerate() {
            encode_record(&mut raw, r, base_ts, len_i32(i)?)?;
        }
        compression.compress(&raw, out)?;
    }
    let batch_length = len_i32(out.len() - start - 12)?;
    out[start + 8..start + 12].copy_from_slice(&batch_length.to_be_bytes());
    let crc = crc32c::crc32c(&out[start + CRC_START..]);
    out[start + 17..start + 21].copy_from_slice(&crc.to_be_bytes());
    Ok(out.len() - start)
}

/// Reads and validates the header of the batch at the start of `buf`
/// (including its CRC, which needs the whole batch to be present).
pub fn read_header(buf: &[u8]) -> Result<BatchHeader> {
    let mut c = Cursor::new(buf, "batch");
    let base_offset = c.i64()?;
    let batch_length = c.i32()?;
    if (batch_length as i64) < (HEADER_LEN as i64 - 12) {
        return Err(c.fail(Reason::BadLength(i64::from(batch_length))));
    }
    if buf.len() < 12 + batch_length as usize {
        return Err(corrupt("batch", buf.len(), Reason::Truncated));
    }
    let _leader_epoch = c.i32()?;
    if c.u8()? != 2 {
        return Err(c.fail(Reason::BadMagic));
    }
    let stored = c.u32()?;
    let computed = crc32c::crc32c(&buf[CRC_START..12 + batch_length as usize]);
    if stored != computed {
        return Err(c.fail(Reason::CrcMismatch { stored, computed }));
    }
    let attributes = c.i16()?;
    let codec = (attributes & 0x7) as u8;
    let compression =
        Compression::from_kafka_id(codec).ok_or(c.fail(Reason::UnknownCompression(codec)))?;
    let last_offset_delta = c.i32()?;
    let base_timestamp = c.i64()?;
    let max_timestamp = c.i64()?;
    let producer_id = c.i64()?;
    let producer_epoch = c.i16()?;
    let base_sequence = c.i32()?;
    let record_count = c.i32()?;
    if record_count < 0 || last_offset_delta < 0 {
        return Err(c.fail(Reason::BadLength(i64::from(record_count))));
    }
    Ok(BatchHeader {
        base_offset,
        batch_length,
        compression,
        last_offset_delta,
        base_timestamp,
        max_timestamp,
        producer_id,
        producer_epoch,
        base_sequence,
        transactional: attributes & 0x10 != 0,
        control: attributes & 0x20 != 0,
        record_count,
    })
}

/// Decodes the records of one validated batch. Offsets are
/// `header.base_offset + offset_delta + offset_adjust`.
///
/// Keys and values are slices of `buf` (or of the decompressed body), not
/// copies: a record costs no allocation of its own.
pub fn decode_records(
    buf: &Bytes,
    header: &BatchHeader,
    offset_adjust: i64,
    max_decompressed: usize,
    mut sink: impl FnMut(i64, Record) -> Result<()>,
) -> Result<()> {
    let records = match header.compression {
        Compression::None => buf.slice(HEADER_LEN..header.total_len()),
        codec => Bytes::from(codec.decompress(
            &buf[HEADER_LEN..header.total_len()],
            max_decompressed,
            HEADER_LEN,
        )?),
    };
    let share = |part: &[u8]| records.slice_ref(part);
    let mut c = Cursor::new(&records, "record");
    for _ in 0..header.record_count {
        let len = c.varint()?;
        if len < 0 {
            return Err(c.fail(Reason::BadLength(i64::from(len))));
        }
        let mut r = Cursor::new(c.bytes(len as usize)?, "record");
        let _attributes = r.u8()?;
        let ts_delta = r.varlong()?;
        let offset_delta = r.varint()?;
        let key = r.nullable_bytes()?.map(share);
        let value = r.nullable_bytes()?.map(share);
        let n_headers = r.varint()?;
        if n_headers < 0 || n_headers as usize > r.remaining() {
            return Err(r.fail(Reason::BadLength(i64::from(n_headers))));
        }
        let mut headers = Vec::with_capacity(n_headers as usize);
        for _ in 0..n_headers {
            let k = r
                .nullable_bytes()?
                .ok_or(r.fail(Reason::Other("null header key")))?;
            let key = std::str::from_utf8(k).map_err(|_| r.fail(Reason::BadUtf8))?;
            let value = r.nullable_bytes()?.map(share);
            headers.push(Header {
                key: key.to_owned(),
                value,
            });
        }
        let offset = header
            .base_offset
            .saturating_add(i64::from(offset_delta))
            .saturating_add(offset_adjust);
        let timestamp = header.base_timestamp.wrapping_add(ts_delta);
        sink(
            offset,
            Record {
                timestamp,
                key,
                value,
                headers,
            },
        )?;
    }
    Ok(())
}

/// Iterates over the batches laid end to end in `buf`, yielding each batch's
/// validated header and its byte range.
#[derive(Debug)]
pub struct Batches<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Batches<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }
}

impl<'a> Iterator for Batches<'a> {
    type Item = Result<(BatchHeader, &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let rest = &self.buf[self.pos..];
        let item = read_header(rest).map(|h| (h, &rest[..h.total_len()]));
        match &item {
            Ok((h, _)) => self.pos += h.total_len(),
            Err(_) => self.pos = self.buf.len(),
        }
        Some(item.map_err(|e| match e {
            Error::Corrupt { what, at, reason } => Error::Corrupt {
                what,
                at: at + self.pos,
                reason,
            },
            e => e,
        }))
    }
}

/// Checks that a read returned all `byte_len` bytes it asked for.
pub fn validate_len(bytes: &[u8], byte_len: u32) -> Result<()> {
    if bytes.len() != byte_len as usize {
        return Err(corrupt("chunk", bytes.len(), Reason::Truncated));
    }
    Ok(())
}

/// Checks a chunk as read back, without decoding its records: its length,
/// every batch's header and checksum, and — since Kafka's checksum does
/// not cover a batch's base offset — that the batches' offsets run densely
/// from 0 to exactly `record_count`. What readers and the compactor run
/// before trusting (caching, archiving, merging) bytes.
pub fn validate_chunk(chunk: &[u8], byte_len: u32, record_count: u32) -> Result<()> {
    validate_len(chunk, byte_len)?;
    let mut next = 0i64;
    let mut at = 0;
    for batch in Batches::new(chunk) {
        let (header, bytes) = batch?;
        if header.base_offset != next || header.last_offset_delta < 0 {
            return Err(corrupt(
                "chunk",
                at,
                Reason::Other("batch offsets are not dense"),
            ));
        }
        next += i64::from(header.last_offset_delta) + 1;
        at += bytes.len();
    }
    if next != i64::from(record_count) {
        return Err(corrupt(
            "chunk",
            at,
            Reason::Other("record count differs from the index"),
        ));
    }
    Ok(())
}

/// Copies the chunk's batches that hold offsets at or after `from` to
/// `out`, whole and with absolute base offsets (`base_offset` plus the
/// chunk-relative one), until `out` holds `max_bytes` (at least one batch is
/// copied). Returns the offset after the last record copied, or `from`.
/// The chunk must have been validated ([`validate_chunk`]).
pub fn copy_batches(
    chunk: &[u8],
    base_offset: u64,
    from: u64,
    max_bytes: usize,
    out: &mut bytes::BytesMut,
) -> Result<u64> {
    let mut next = from;
    for batch in Batches::new(chunk) {
        let (header, bytes) = batch?;
        let first = base_offset.saturating_add(header.base_offset.max(0) as u64);
        let end = first.saturating_add(header.last_offset_delta as u64 + 1);
        if end <= from {
            continue;
        }
        if !out.is_empty() && out.len() + bytes.len() > max_bytes {
            break;
        }
        let start = out.len();
        out.extend_from_slice(bytes);
        let absolute = i64::try_from(first).map_err(|_| Error::Encode("offset exceeds i64"))?;
        out[start..start + 8].copy_from_slice(&absolute.to_be_bytes());
        next = end;
    }
    Ok(next)
}

/// Decodes every record in a chunk (batches laid end to end), adding
/// `base_offset` to the chunk-relative offsets, and keeps those at or after
/// `from`. `keep` returns false to stop early. Records share `chunk`'s
/// memory (see [`decode_records`]).
pub fn decode_chunk(
    chunk: &Bytes,
    base_offset: u64,
    from: u64,
    max_decompressed: usize,
    mut keep: impl FnMut(u64, Record) -> bool,
) -> Result<()> {
    let adjust = i64::try_from(base_offset).map_err(|_| Error::Encode("offset exceeds i64"))?;
    for batch in Batches::new(chunk) {
        let (header, bytes) = batch?;
        // Untrusted fields: saturate rather than overflow.
        let last = header
            .base_offset
            .saturating_add(i64::from(header.last_offset_delta))
            .saturating_add(adjust);
        if last < i64::try_from(from).unwrap_or(i64::MAX) {
            continue;
        }
        let mut stop = false;
        let batch = chunk.slice_ref(bytes);
        decode_records(&batch, &header, adjust, max_decompressed, |off, rec| {
            if !stop && off >= 0 && off as u64 >= from {
                stop = !keep(off as u64, rec);
            }
            Ok(())
        })?;
        if stop {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_bytes() -> impl Strategy<Value = Option<Bytes>> {
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from))
    }

    fn arb_record() -> impl Strategy<Value = Record> {
        (
            any::<i64>(),
            arb_bytes(),
            arb_bytes(),
            proptest::collection::vec(("[a-z]{0,8}", arb_bytes()), 0..3),
        )
            .prop_map(|(timestamp, key, value, hs)| Record {
                timestamp,
                key,
                value,
                headers: hs
                    .into_iter()
                    .map(|(key, value)| Header { key, value })
                    .collect(),
            })
    }

    fn arb_compression() -> impl Strategy<Value = Compression> {
        prop_oneof![
            Just(Compression::None),
            Just(Compression::Lz4),
            Just(Compression::Zstd)
        ]
    }

    /// Kafka's checksum does not cover a batch's base offset: a flipped bit
    /// there must still be caught, as must a count that differs from the
    /// index's.
    #[test]
    fn validation_catches_what_the_checksum_cannot() {
        let recs: Vec<Record> = (0..5).map(|_| Record::default()).collect();
        let mut chunk = Vec::new();
        encode(&mut chunk, 0, &recs[..2], Compression::None).unwrap();
        let second = chunk.len();
        encode(&mut chunk, 2, &recs[2..], Compression::Lz4).unwrap();
        let len = chunk.len() as u32;
        validate_chunk(&chunk, len, 5).unwrap();
        assert!(validate_chunk(&chunk, len, 6).is_err());
        assert!(
            validate_chunk(&chunk[..chunk.len() - 1], len, 5).is_err(),
            "short read"
        );
        let mut flipped = chunk.clone();
        flipped[second + 4] ^= 0x20; // inside the second batch's base offset
        assert!(validate_chunk(&flipped, len, 5).is_err());
        let mut flipped = chunk;
        flipped[3] ^= 0x01; // the first batch's base offset
        assert!(validate_chunk(&flipped, len, 5).is_err());
    }

    fn decode_all(chunk: &[u8], base: u64) -> Result<Vec<(u64, Record)>> {
        let mut out = Vec::new();
        decode_chunk(
            &Bytes::copy_from_slice(chunk),
            base,
            0,
            DEFAULT_MAX_DECOMPRESSED,
            |o, r| {
                out.push((o, r));
                true
            },
        )?;
        Ok(out)
    }

    proptest! {
        #[test]
        fn batches_round_trip(
            batches in proptest::collection::vec(proptest::collection::vec(arb_record(), 1..6), 1..4),
            codec in arb_compression(),
            base in 0u64..1 << 40,
        ) {
            let mut chunk = Vec::new();
            let mut rel = 0i64;
            for b in &batches {
                encode(&mut chunk, rel, b, codec).unwrap();
                rel += b.len() as i64;
            }
            let got = decode_all(&chunk, base).unwrap();
            let want: Vec<_> = batches.iter().flatten().cloned().enumerate()
                .map(|(i, r)| (base + i as u64, r)).collect();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn corrupt_input_is_an_error_not_a_panic(
            records in proptest::collection::vec(arb_record(), 1..4),
            codec in arb_compression(),
            flip in any::<prop::sample::Index>(),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut chunk = Vec::new();
            encode(&mut chunk, 0, &records, codec).unwrap();
            let mut flipped = chunk.clone();
            let i = flip.index(flipped.len());
            flipped[i] ^= 0x5a;
            // baseOffset and partitionLeaderEpoch lie outside the CRC (as in
            // Kafka); every other flipped byte must be detected.
            let r = decode_all(&flipped, 0);
            if i >= 8 && !(12..16).contains(&i) { prop_assert!(r.is_err()); }
            let cut_at = cut.index(chunk.len());
            prop_assert!(decode_all(&chunk[..cut_at], 0).is_err() || cut_at == 0);
        }

        #[test]
        fn extreme_offsets_never_overflow(base in any::<i64>(), adjust in any::<u64>(), from in any::<u64>()) {
            let mut chunk = Vec::new();
            encode(&mut chunk, base, &[Record::default(), Record::default()], Compression::None).unwrap();
            let _ = decode_chunk(&Bytes::from(chunk), adjust, from, 1 << 20, |_, _| true);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_all(&bytes, 0);
        }
    }

    #[test]
    fn decompression_is_bounded() {
        let big = Record {
            value: Some(Bytes::from(vec![0u8; 1 << 20])),
            ..Default::default()
        };
        let mut chunk = Vec::new();
        encode(&mut chunk, 0, &[big], Compression::Zstd).unwrap();
        assert!(chunk.len() < 10_000, "zeros compress well");
        let err = decode_chunk(&Bytes::from(chunk), 0, 0, 4096, |_, _| true).unwrap_err();
        assert!(matches!(err, Error::TooLarge { limit: 4096 }), "{err}");
    }

    #[test]
    fn from_skips_earlier_records_and_keep_stops() {
        let recs: Vec<Record> = (0..10)
            .map(|i| Record {
                timestamp: i,
                ..Default::default()
            })
            .collect();
        let mut chunk = Vec::new();
        encode(&mut chunk, 0, &recs[..5], Compression::None).unwrap();
        encode(&mut chunk, 5, &recs[5..], Compression::Lz4).unwrap();
        let mut got = Vec::new();
        decode_chunk(
            &Bytes::from(chunk),
            100,
            103,
            DEFAULT_MAX_DECOMPRESSED,
            |o, _| {
                got.push(o);
                got.len() < 4
            },
        )
        .unwrap();
        assert_eq!(got, vec![103, 104, 105, 106]);
    }
}
