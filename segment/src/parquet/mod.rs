//! The archive's Parquet format, shared by the compactor (which writes it)
//! and the agents (which serve old offsets from it): columns `offset`
//! int64, `timestamp` TIMESTAMP(MICROS, UTC), `key` and `value` nullable
//! binary, `headers` list<struct<key string, value binary>> (in record
//! order; keys may repeat). Rows sorted by offset; statistics and page
//! indexes on every column but the opaque values; no dictionary encoding;
//! zstd. Topic and partition live in the object's path, never in the
//! file. Written by [`ArchiveWriter`], read back through Arrow
//! ([`decode`]).

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, BinaryArray};
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::errors::ParquetError;

use crate::{Header, Record};

mod writer;

pub use writer::ArchiveWriter;

/// Field ids of the archive's columns (Parquet `field_id`, as Iceberg
/// readers match columns): stable, never reused. They are the ids Iceberg
/// assigns the archive's table schema (top-level fields first, in order,
/// then nested ones), so a table created from that schema keeps them.
pub mod field_ids {
    pub const OFFSET: i32 = 1;
    pub const TIMESTAMP: i32 = 2;
    pub const KEY: i32 = 3;
    pub const VALUE: i32 = 4;
    pub const HEADERS: i32 = 5;
    /// Only in Iceberg tables, from the partition spec (never in files).
    pub const PARTITION: i32 = 6;
    pub const HEADER: i32 = 7;
    pub const HEADER_KEY: i32 = 8;
    pub const HEADER_VALUE: i32 = 9;
}

fn field(name: &str, t: DataType, nullable: bool, id: i32) -> Field {
    let ids = std::collections::HashMap::from([(
        parquet::arrow::PARQUET_FIELD_ID_META_KEY.to_owned(),
        id.to_string(),
    )]);
    Field::new(name, t, nullable).with_metadata(ids)
}

fn header_fields() -> Fields {
    Fields::from(vec![
        field("key", DataType::Utf8, false, field_ids::HEADER_KEY),
        field("value", DataType::Binary, true, field_ids::HEADER_VALUE),
    ])
}

fn header_item() -> Arc<Field> {
    Arc::new(field(
        "element",
        DataType::Struct(header_fields()),
        false,
        field_ids::HEADER,
    ))
}

/// The archive's Arrow schema.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        field("offset", DataType::Int64, false, field_ids::OFFSET),
        field(
            "timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
            field_ids::TIMESTAMP,
        ),
        field("key", DataType::Binary, true, field_ids::KEY),
        field("value", DataType::Binary, true, field_ids::VALUE),
        field(
            "headers",
            DataType::List(header_item()),
            false,
            field_ids::HEADERS,
        ),
    ]))
}

/// Encodes records (ascending offsets) as one Parquet file.
pub fn encode(records: &[(u64, Record)]) -> Result<Vec<u8>, ParquetError> {
    let mut writer = ArchiveWriter::new()?;
    writer.write(records.iter().cloned())?;
    writer.finish()
}

fn general(what: &str) -> ParquetError {
    ParquetError::General(format!("archive format: {what}"))
}

/// Decodes an archive file: `(offset, record)` of every row with an offset
/// of at least `from`, until `keep` says stop.
pub fn decode(
    file: Bytes,
    from: u64,
    mut keep: impl FnMut(u64, Record) -> bool,
) -> Result<(), ParquetError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)?.build()?;
    for batch in reader {
        let batch = batch?;
        let col = |i: usize| {
            batch
                .columns()
                .get(i)
                .ok_or_else(|| general("missing column"))
        };
        let offsets = col(0)?
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| general("offset column"))?;
        let times = col(1)?
            .as_primitive_opt::<TimestampMicrosecondType>()
            .ok_or_else(|| general("timestamp column"))?;
        let keys = col(2)?
            .as_binary_opt::<i32>()
            .ok_or_else(|| general("key column"))?;
        let values = col(3)?
            .as_binary_opt::<i32>()
            .ok_or_else(|| general("value column"))?;
        let headers = col(4)?
            .as_list_opt::<i32>()
            .ok_or_else(|| general("headers column"))?;
        for i in 0..batch.num_rows() {
            let offset = u64::try_from(offsets.value(i)).map_err(|_| general("negative offset"))?;
            if offset < from {
                continue;
            }
            let bytes =
                |a: &BinaryArray| (!a.is_null(i)).then(|| Bytes::copy_from_slice(a.value(i)));
            let list = headers.value(i);
            let items = list
                .as_struct_opt()
                .ok_or_else(|| general("header struct"))?;
            let hk = items
                .column(0)
                .as_string_opt::<i32>()
                .ok_or_else(|| general("header key"))?;
            let hv = items
                .column(1)
                .as_binary_opt::<i32>()
                .ok_or_else(|| general("header value"))?;
            let headers = (0..items.len())
                .map(|j| Header {
                    key: hk.value(j).to_owned(),
                    value: (!hv.is_null(j)).then(|| Bytes::copy_from_slice(hv.value(j))),
                })
                .collect();
            let record = Record {
                timestamp: times.value(i).div_euclid(1000),
                key: bytes(keys),
                value: bytes(values),
                headers,
            };
            if !keep(offset, record) {
                return Ok(());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_files_round_trip() {
        let records: Vec<(u64, Record)> = (0..50u64)
            .map(|i| {
                (
                    100 + i,
                    Record {
                        timestamp: 1_700_000_000_000 + i as i64,
                        key: (i % 3 != 0).then(|| Bytes::from(format!("k{i}"))),
                        value: (i % 7 != 0).then(|| Bytes::from(vec![i as u8; i as usize])),
                        // Some records without headers, some with
                        // repeated keys and a null value.
                        headers: [
                            Header {
                                key: "h".into(),
                                value: Some(Bytes::from_static(b"1")),
                            },
                            Header {
                                key: "h".into(),
                                value: None,
                            },
                        ]
                        .into_iter()
                        .take((i % 3) as usize)
                        .collect(),
                    },
                )
            })
            .collect();
        let file = Bytes::from(encode(&records).unwrap());
        let mut back = Vec::new();
        decode(file.clone(), 0, |o, r| {
            back.push((o, r));
            true
        })
        .unwrap();
        assert_eq!(back, records);
        let mut tail = Vec::new();
        decode(file, 140, |o, _| {
            tail.push(o);
            tail.len() < 3
        })
        .unwrap();
        assert_eq!(tail, [140, 141, 142]);

        // Written in batches, the file holds the same rows.
        let mut writer = ArchiveWriter::new().unwrap();
        for batch in records.chunks(7) {
            writer.write(batch.iter().cloned()).unwrap();
        }
        let mut again = Vec::new();
        decode(Bytes::from(writer.finish().unwrap()), 0, |o, r| {
            again.push((o, r));
            true
        })
        .unwrap();
        assert_eq!(again, records);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode(Bytes::from_static(b"PAR1 not really PAR1"), 0, |_, _| true).is_err());
    }
}

/// The length of an archive file's footer metadata, from its last 8 bytes
/// (`len u32 LE | "PAR1"`).
pub fn footer_len(tail: &[u8]) -> Result<usize, ParquetError> {
    match tail {
        [a, b, c, d, b'P', b'A', b'R', b'1'] => Ok(u32::from_le_bytes([*a, *b, *c, *d]) as usize),
        _ => Err(general("not a Parquet file")),
    }
}

/// The newest record timestamp (ms) of an archive file, from its footer
/// metadata's statistics; `None` for an empty file.
pub fn max_timestamp_ms(footer: &[u8]) -> Result<Option<i64>, ParquetError> {
    Ok(FooterSummary::decode(footer)?
        .timestamps_us
        .map(|(_, max)| max.div_euclid(1000)))
}

/// What an archive file's footer says about its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FooterSummary {
    pub rows: u64,
    /// Smallest and largest offset.
    pub offsets: Option<(i64, i64)>,
    /// Smallest and largest timestamp, microseconds.
    pub timestamps_us: Option<(i64, i64)>,
}

impl FooterSummary {
    /// From footer metadata (the bytes before the last 8 of the file).
    pub fn decode(footer: &[u8]) -> Result<Self, ParquetError> {
        use parquet::file::metadata::ParquetMetaDataReader;
        use parquet::file::statistics::Statistics;
        let meta = ParquetMetaDataReader::decode_metadata(footer)?;
        let widen = |acc: Option<(i64, i64)>, s: Option<&Statistics>| match s {
            Some(Statistics::Int64(s)) => Ok(match (s.min_opt(), s.max_opt()) {
                (Some(&lo), Some(&hi)) => {
                    Some(acc.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))))
                }
                _ => acc,
            }),
            _ => Err(general("offset or timestamp statistics missing")),
        };
        let mut out = FooterSummary {
            rows: 0,
            offsets: None,
            timestamps_us: None,
        };
        for rg in meta.row_groups() {
            out.rows += u64::try_from(rg.num_rows()).unwrap_or(0);
            out.offsets = widen(out.offsets, rg.column(0).statistics())?;
            out.timestamps_us = widen(out.timestamps_us, rg.column(1).statistics())?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod footer_tests {
    use super::*;

    #[test]
    fn the_footer_tells_the_newest_timestamp() {
        let records: Vec<(u64, Record)> = [5i64, 9, 7]
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                (
                    i as u64,
                    Record {
                        timestamp: 1_700_000_000_000 + t,
                        ..Record::default()
                    },
                )
            })
            .collect();
        let file = encode(&records).unwrap();
        let n = footer_len(&file[file.len() - 8..]).unwrap();
        let footer = &file[file.len() - 8 - n..file.len() - 8];
        assert_eq!(max_timestamp_ms(footer).unwrap(), Some(1_700_000_000_009));
        let summary = FooterSummary::decode(footer).unwrap();
        assert_eq!(summary.rows, 3);
        assert_eq!(summary.offsets, Some((0, 2)));
        assert_eq!(
            summary.timestamps_us,
            Some((1_700_000_000_005_000, 1_700_000_000_009_000))
        );
        assert!(footer_len(b"12345678").is_err());
    }
}
