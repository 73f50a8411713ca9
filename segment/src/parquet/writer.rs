//! Writing archive files. Records go from their decoded batches straight
//! into Parquet's column writers, with no Arrow arrays in between: keys and
//! values are handed over as shared slices of the decompressed batches and
//! copied once, into the page being built.
//!
//! Parquet wants each column's pages together, while records arrive a batch
//! at a time with every column interleaved. So each column's finished pages
//! are copied into a buffer of that column (the page's own buffers go back
//! to the allocator at once, for the next page), and the file is assembled
//! from those buffers when it is finished. Only a file's compressed pages
//! are held, never its records.
//!
//! The file is what Arrow's writer would write for [`super::schema`] (its
//! Parquet schema comes from that Arrow schema, which is also stored in the
//! footer): `offset` and `timestamp` required int64, `key` and `value`
//! optional binary, `headers` a required list of required structs of a
//! required string and an optional binary.

use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use parquet::arrow::{ArrowSchemaConverter, add_encoded_arrow_schema_to_metadata};
use parquet::basic::{Compression, ZstdLevel};
use parquet::column::page::{CompressedPage, PageWriteSpec, PageWriter};
use parquet::column::writer::{
    ColumnCloseResult, ColumnWriter, ColumnWriterImpl, get_column_writer,
};
use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::errors::{ParquetError, Result};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterPropertiesPtr};
use parquet::file::writer::{SerializedFileWriter, SerializedPageWriter, TrackedWrite};
use parquet::schema::types::{ColumnPath, SchemaDescriptor};

use crate::Record;

/// Room for the footer (schema, statistics, page indexes) when the finished
/// file's buffer is sized.
const FOOTER_ROOM: usize = 64 << 10;

/// Writes one archive file incrementally: batches of records (ascending
/// offsets) are encoded as they arrive.
pub struct ArchiveWriter {
    schema: SchemaDescriptor,
    props: WriterPropertiesPtr,
    columns: Columns,
    /// This batch's values and levels, kept from batch to batch.
    rows: Rows,
}

impl std::fmt::Debug for ArchiveWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveWriter")
            .field("encoded_bytes", &self.columns.encoded_bytes())
            .finish()
    }
}

impl ArchiveWriter {
    pub fn new() -> Result<Self> {
        let arrow = super::schema();
        let schema = ArrowSchemaConverter::new().convert(&arrow)?;
        // Page statistics (and so page indexes) for every column but the
        // payloads: min/max of opaque values prune nothing and cost a
        // comparison of every value.
        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_dictionary_enabled(false)
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_column_statistics_enabled(path(&["value"]), EnabledStatistics::None)
            .set_column_statistics_enabled(
                path(&["headers", "list", "element", "value"]),
                EnabledStatistics::None,
            )
            .build();
        add_encoded_arrow_schema_to_metadata(&arrow, &mut props);
        let props = Arc::new(props);
        let columns = Columns::new(&schema, &props)?;
        Ok(Self {
            schema,
            props,
            columns,
            rows: Rows::default(),
        })
    }

    /// Appends records whose offsets follow those written before. Keys and
    /// values move in and are copied once, into the pages. After an error
    /// the file is unusable (some columns may hold the batch, others not).
    pub fn write(&mut self, records: impl IntoIterator<Item = (u64, Record)>) -> Result<()> {
        self.rows.clear();
        for (offset, record) in records {
            self.rows.push(offset, record)?;
        }
        self.columns.write(&self.rows)
    }

    /// The finished file.
    pub fn finish(self) -> Result<Vec<u8>> {
        let chunks = self.columns.close()?;
        let size = chunks.iter().map(|(b, _)| b.len()).sum::<usize>() + FOOTER_ROOM;
        let mut file = SerializedFileWriter::new(
            Vec::with_capacity(size),
            self.schema.root_schema_ptr(),
            self.props,
        )?;
        let mut row_group = file.next_row_group()?;
        for (bytes, close) in chunks {
            row_group.append_column(&bytes, close)?;
        }
        row_group.close()?;
        file.into_inner()
    }
}

fn path(parts: &[&str]) -> ColumnPath {
    ColumnPath::new(parts.iter().map(|p| (*p).to_owned()).collect())
}

/// One batch, shredded into the file's six leaf columns: values, and the
/// definition and repetition levels of the optional and repeated ones.
#[derive(Debug, Default)]
struct Rows {
    offsets: Vec<i64>,
    timestamps: Vec<i64>,
    keys: Optional,
    values: Optional,
    header_keys: Optional,
    header_values: Optional,
    /// Shared by both header columns: 0 starts a record's list, 1 goes on.
    header_reps: Vec<i16>,
}

/// The present values of an optional (or repeated) column and the
/// definition level of every entry.
#[derive(Debug, Default)]
struct Optional {
    values: Vec<ByteArray>,
    defs: Vec<i16>,
}

impl Optional {
    /// A value, at definition level `level`.
    fn value(&mut self, v: ByteArray, level: i16) {
        self.values.push(v);
        self.defs.push(level);
    }

    /// No value: the entry is defined down to `level` only.
    fn none(&mut self, level: i16) {
        self.defs.push(level);
    }

    /// A nullable value whose level is `level` when present.
    fn option(&mut self, v: Option<Bytes>, level: i16) {
        match v {
            Some(v) => self.value(ByteArray::from(v), level),
            None => self.none(level - 1),
        }
    }

    fn clear(&mut self) {
        self.values.clear();
        self.defs.clear();
    }
}

impl Rows {
    fn clear(&mut self) {
        self.offsets.clear();
        self.timestamps.clear();
        self.keys.clear();
        self.values.clear();
        self.header_keys.clear();
        self.header_values.clear();
        self.header_reps.clear();
    }

    fn push(&mut self, offset: u64, r: Record) -> Result<()> {
        let offset = i64::try_from(offset)
            .map_err(|_| ParquetError::General(format!("offset {offset} exceeds int64")))?;
        self.offsets.push(offset);
        self.timestamps.push(r.timestamp.saturating_mul(1000));
        self.keys.option(r.key, 1);
        self.values.option(r.value, 1);
        // `headers.list.element.{key,value}`: level 0 is an empty list; in
        // an element the key is required (1), the value nullable (2).
        if r.headers.is_empty() {
            self.header_keys.none(0);
            self.header_values.none(0);
            self.header_reps.push(0);
        }
        for (i, h) in r.headers.into_iter().enumerate() {
            self.header_keys
                .value(ByteArray::from(h.key.into_bytes()), 1);
            self.header_values.option(h.value, 2);
            self.header_reps.push(i16::from(i > 0));
        }
        Ok(())
    }
}

/// The file's column writers, in schema order.
struct Columns {
    offset: Column<Int64Type>,
    timestamp: Column<Int64Type>,
    key: Column<ByteArrayType>,
    value: Column<ByteArrayType>,
    header_key: Column<ByteArrayType>,
    header_value: Column<ByteArrayType>,
}

impl Columns {
    fn new(schema: &SchemaDescriptor, props: &WriterPropertiesPtr) -> Result<Self> {
        if schema.num_columns() != 6 {
            return Err(ParquetError::General(format!(
                "archive schema: {} leaf columns, not 6",
                schema.num_columns()
            )));
        }
        Ok(Self {
            offset: Column::new(schema, 0, props, int64)?,
            timestamp: Column::new(schema, 1, props, int64)?,
            key: Column::new(schema, 2, props, byte_array)?,
            value: Column::new(schema, 3, props, byte_array)?,
            header_key: Column::new(schema, 4, props, byte_array)?,
            header_value: Column::new(schema, 5, props, byte_array)?,
        })
    }

    fn write(&mut self, rows: &Rows) -> Result<()> {
        self.offset.writer.write_batch(&rows.offsets, None, None)?;
        self.timestamp
            .writer
            .write_batch(&rows.timestamps, None, None)?;
        let optional = |c: &mut Column<ByteArrayType>, o: &Optional| {
            c.writer.write_batch(&o.values, Some(&o.defs), None)
        };
        optional(&mut self.key, &rows.keys)?;
        optional(&mut self.value, &rows.values)?;
        let repeated = |c: &mut Column<ByteArrayType>, o: &Optional| {
            c.writer
                .write_batch(&o.values, Some(&o.defs), Some(&rows.header_reps))
        };
        repeated(&mut self.header_key, &rows.header_keys)?;
        repeated(&mut self.header_value, &rows.header_values)?;
        Ok(())
    }

    fn encoded_bytes(&self) -> usize {
        [
            &self.offset.pages,
            &self.timestamp.pages,
            &self.key.pages,
            &self.value.pages,
            &self.header_key.pages,
            &self.header_value.pages,
        ]
        .iter()
        .map(|p| p.0.lock().bytes_written())
        .sum()
    }

    /// Each column's pages and what its writer says about them.
    fn close(self) -> Result<Vec<(Bytes, ColumnCloseResult)>> {
        Ok(vec![
            self.offset.close()?,
            self.timestamp.close()?,
            self.key.close()?,
            self.value.close()?,
            self.header_key.close()?,
            self.header_value.close()?,
        ])
    }
}

fn int64(w: ColumnWriter<'static>) -> Option<ColumnWriterImpl<'static, Int64Type>> {
    match w {
        ColumnWriter::Int64ColumnWriter(w) => Some(w),
        _ => None,
    }
}

fn byte_array(w: ColumnWriter<'static>) -> Option<ColumnWriterImpl<'static, ByteArrayType>> {
    match w {
        ColumnWriter::ByteArrayColumnWriter(w) => Some(w),
        _ => None,
    }
}

/// A leaf column's writer and the buffer its pages go to.
struct Column<T: parquet::data_type::DataType> {
    writer: ColumnWriterImpl<'static, T>,
    pages: Pages,
}

impl<T: parquet::data_type::DataType> Column<T> {
    fn new(
        schema: &SchemaDescriptor,
        i: usize,
        props: &WriterPropertiesPtr,
        typed: fn(ColumnWriter<'static>) -> Option<ColumnWriterImpl<'static, T>>,
    ) -> Result<Self> {
        let pages = Pages::default();
        let writer = get_column_writer(schema.column(i), props.clone(), Box::new(pages.clone()));
        let writer = typed(writer).ok_or_else(|| {
            ParquetError::General(format!("archive schema: column {i} has another type"))
        })?;
        Ok(Self { writer, pages })
    }

    fn close(self) -> Result<(Bytes, ColumnCloseResult)> {
        let close = self.writer.close()?;
        let pages = std::mem::replace(&mut *self.pages.0.lock(), TrackedWrite::new(Vec::new()));
        Ok((Bytes::from(pages.into_inner()?), close))
    }
}

/// A column's finished pages (header, then compressed data), end to end.
/// Shared between the column writer, which owns its page writer, and the
/// [`Column`] that takes the pages back when the column is closed.
#[derive(Clone)]
struct Pages(Arc<Mutex<TrackedWrite<Vec<u8>>>>);

impl Default for Pages {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(TrackedWrite::new(Vec::new()))))
    }
}

impl PageWriter for Pages {
    fn write_page(&mut self, page: CompressedPage) -> Result<PageWriteSpec> {
        SerializedPageWriter::new(&mut self.0.lock()).write_page(page)
    }

    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}
