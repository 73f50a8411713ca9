//! Iceberg tables over the Parquet archive. For each topic with
//! `archive.iceberg` on, every archive file is also committed to the table
//! `silt.<topic>` of a SQL catalog (SQLite, readable by pyiceberg and
//! Iceberg's JDBC catalog), so Iceberg readers see the archive with
//! snapshots and a schema. The files are not copied: the table's data
//! files are the archive's own.
//!
//! Table schema: the archive's columns with their Parquet field ids, plus
//! `partition` (int, field id 9), an identity partition whose values come
//! from the manifests, never from the files (Iceberg readers fill a
//! missing identity-partition column from the partition tuple).
//!
//! Exactly once: the table property `silt.next.<partition>` says where
//! the table's files of each partition end. A commit adds the next files
//! and moves those properties in one Iceberg commit (a compare-and-set of
//! the catalog's metadata pointer, never retried blindly), so a crash or a
//! second compactor can only redo a commit that did not happen. Each
//! topic incarnation has its own table location (`iceberg/<topic>-<id>`):
//! a table left by a deleted topic of the same name is dropped and
//! replaced.

mod catalog;
mod storage;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use iceberg::io::FileIOBuilder;
use iceberg::spec::{
    DataContentType, DataFileBuilder, DataFileFormat, Datum, ListType, Literal, NestedField,
    PrimitiveType, Schema, Struct, StructType, Transform, Type, UnboundPartitionSpec,
};
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::{Catalog, NamespaceIdent, TableCreation, TableIdent};
use silt_metadata::TopicInfo;
use silt_segment::parquet::{FooterSummary, field_ids, footer_len};
use silt_segment::store::ObjectStorage;

pub use catalog::SqliteCatalog;
pub use storage::{SiltStorage, SiltStorageFactory};

use crate::{Compactor, Error};

/// The catalog name tables are registered under, and their namespace.
pub const CATALOG: &str = "silt";
pub const NAMESPACE: &str = "silt";

/// Most archive files one commit adds per partition (bounds a commit's
/// manifest and the footers read for it).
const FILES_PER_COMMIT: usize = 1_000;

/// What one publishing pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct IcebergReport {
    pub commits: usize,
    pub files: usize,
    pub records: u64,
}

fn iceberg_error(e: iceberg::Error) -> Error {
    Error::Archive(format!("iceberg: {e}"))
}

/// The archive's Iceberg schema.
pub fn table_schema() -> iceberg::Result<Schema> {
    let header = StructType::new(vec![
        NestedField::required(
            field_ids::HEADER_KEY,
            "key",
            Type::Primitive(PrimitiveType::String),
        )
        .into(),
        NestedField::optional(
            field_ids::HEADER_VALUE,
            "value",
            Type::Primitive(PrimitiveType::Binary),
        )
        .into(),
    ]);
    Schema::builder()
        .with_fields(vec![
            NestedField::required(
                field_ids::OFFSET,
                "offset",
                Type::Primitive(PrimitiveType::Long),
            )
            .into(),
            NestedField::required(
                field_ids::TIMESTAMP,
                "timestamp",
                Type::Primitive(PrimitiveType::Timestamptz),
            )
            .into(),
            NestedField::optional(
                field_ids::KEY,
                "key",
                Type::Primitive(PrimitiveType::Binary),
            )
            .into(),
            NestedField::optional(
                field_ids::VALUE,
                "value",
                Type::Primitive(PrimitiveType::Binary),
            )
            .into(),
            NestedField::required(
                field_ids::HEADERS,
                "headers",
                Type::List(ListType::new(
                    NestedField::required(field_ids::HEADER, "element", Type::Struct(header))
                        .into(),
                )),
            )
            .into(),
            // Optional only because readers fill a missing column from the
            // partition tuple only when it is: every row has one.
            NestedField::optional(
                field_ids::PARTITION,
                "partition",
                Type::Primitive(PrimitiveType::Int),
            )
            .into(),
        ])
        .build()
}

/// The catalog and the store it keeps its files in.
#[derive(Debug)]
pub(crate) struct Iceberg {
    catalog: SqliteCatalog,
    store: ObjectStorage,
}

impl Iceberg {
    pub(crate) fn open(path: &Path, store: &ObjectStorage) -> Result<Self, Error> {
        let factory = SiltStorageFactory(SiltStorage::new(store.clone()));
        let file_io = FileIOBuilder::new(Arc::new(factory)).build();
        let warehouse = store.location("iceberg");
        let catalog =
            SqliteCatalog::open(CATALOG, path, file_io, warehouse).map_err(iceberg_error)?;
        Ok(Self {
            catalog,
            store: store.clone(),
        })
    }

    /// The table of this topic incarnation, created if missing.
    async fn table(&self, topic: &TopicInfo) -> Result<Table, Error> {
        let ns = NamespaceIdent::new(NAMESPACE.to_owned());
        let ident = TableIdent::new(ns.clone(), topic.name.clone());
        let id = topic.id.to_string();
        if self
            .catalog
            .table_exists(&ident)
            .await
            .map_err(iceberg_error)?
        {
            let table = self
                .catalog
                .load_table(&ident)
                .await
                .map_err(iceberg_error)?;
            if table.metadata().properties().get("silt.topic_id") == Some(&id) {
                return Ok(table);
            }
            // A deleted topic's table: its files are being reclaimed.
            self.catalog
                .drop_table(&ident)
                .await
                .map_err(iceberg_error)?;
        }
        if !self
            .catalog
            .namespace_exists(&ns)
            .await
            .map_err(iceberg_error)?
        {
            self.catalog
                .create_namespace(&ns, HashMap::new())
                .await
                .map_err(iceberg_error)?;
        }
        let spec = UnboundPartitionSpec::builder()
            .add_partition_field(field_ids::PARTITION, "partition", Transform::Identity)
            .map_err(iceberg_error)?
            .build();
        let creation = TableCreation::builder()
            .name(topic.name.clone())
            .location(
                self.store
                    .location(&format!("iceberg/{}-{}", topic.name, topic.id)),
            )
            .schema(table_schema().map_err(iceberg_error)?)
            .partition_spec(spec)
            .properties([
                ("silt.topic_id".to_owned(), id),
                // Never retry a commit inside the library: a retry would
                // add the same files again; the next pass starts afresh.
                ("commit.retry.num-retries".to_owned(), "0".to_owned()),
            ])
            .build();
        let table = self
            .catalog
            .create_table(&ns, creation)
            .await
            .map_err(iceberg_error)?;
        // The files' field ids must be the table's.
        let expected = table_schema().map_err(iceberg_error)?;
        let ids = |s: &Schema| {
            let mut ids: Vec<(i32, String)> = s
                .field_id_to_name_map()
                .iter()
                .map(|(id, name)| (*id, name.clone()))
                .collect();
            ids.sort();
            ids
        };
        if ids(table.metadata().current_schema()) != ids(&expected) {
            return Err(Error::Archive(format!(
                "iceberg assigned the table {} field ids unlike the archive files'",
                topic.name
            )));
        }
        Ok(table)
    }
}

impl Compactor {
    /// The Iceberg catalog, opened on first use; `None` if none is set.
    async fn iceberg(&self) -> Result<Option<&Iceberg>, Error> {
        let Some(path) = &self.config.iceberg_catalog else {
            return Ok(None);
        };
        let ice = self
            .iceberg
            .get_or_try_init(|| async { Iceberg::open(path, &self.storage) })
            .await?;
        Ok(Some(ice))
    }

    /// Drops the Iceberg table of a deleted topic incarnation, if the
    /// catalog has it (a table of a newer topic of that name stays).
    pub(crate) async fn drop_iceberg_table(&self, name: &str, topic_id: u64) -> Result<(), Error> {
        let Some(ice) = self.iceberg().await? else {
            return Ok(());
        };
        let ident = TableIdent::new(NamespaceIdent::new(NAMESPACE.to_owned()), name.to_owned());
        // The metadata location names the incarnation (`iceberg/<topic>-<id>/`).
        let own = format!("/iceberg/{name}-{topic_id}/");
        let location = ice
            .catalog
            .metadata_location(&ident)
            .await
            .map_err(iceberg_error)?;
        if !location.is_some_and(|l| l.contains(&own)) {
            return Ok(());
        }
        ice.catalog.drop_table(&ident).await.map_err(iceberg_error)
    }
}

/// Where a partition's table files end, from the table's properties.
fn table_next(table: &Table, partition: u32) -> u64 {
    table
        .metadata()
        .properties()
        .get(&format!("silt.next.{partition}"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl Compactor {
    /// Commits every archive file not yet in its topic's Iceberg table, a
    /// commit per topic per pass. Without a catalog configured, nothing.
    pub async fn publish_iceberg(&self) -> Result<IcebergReport, Error> {
        let Some(ice) = self.iceberg().await? else {
            return Ok(IcebergReport::default());
        };
        let mut report = IcebergReport::default();
        for topic in self.md.list_topics().await? {
            if !topic.config.archive_iceberg {
                continue;
            }
            let table = ice.table(&topic).await?;
            let mut files = Vec::new();
            let mut moved = Vec::new();
            for p in 0..topic.partitions {
                let from = table_next(&table, p);
                let archived = self.md.archive_progress(topic.id, p).await?.next;
                if from >= archived {
                    continue;
                }
                let (added, next) = self.data_files(&topic, p, from, archived).await?;
                if next > from {
                    report.records += next - from;
                    files.extend(added);
                    moved.push((format!("silt.next.{p}"), next.to_string()));
                }
            }
            if files.is_empty() {
                continue;
            }
            report.files += files.len();
            let tx = Transaction::new(&table);
            let tx = tx
                .fast_append()
                .add_data_files(files)
                .apply(tx)
                .map_err(iceberg_error)?;
            let mut props = tx.update_table_properties();
            for (k, v) in moved {
                props = props.set(k, v);
            }
            let tx = props.apply(tx).map_err(iceberg_error)?;
            tx.commit(&ice.catalog).await.map_err(iceberg_error)?;
            report.commits += 1;
            tracing::info!(topic = %topic.name, files = report.files, "iceberg commit");
        }
        Ok(report)
    }

    /// The archive files of a partition from offset `from` (dense, in
    /// order) below `until`, as Iceberg data files; and where they end.
    async fn data_files(
        &self,
        topic: &TopicInfo,
        partition: u32,
        from: u64,
        until: u64,
    ) -> Result<(Vec<iceberg::spec::DataFile>, u64), Error> {
        let prefix = format!("archive/topic={}/partition={partition}/", topic.name);
        let own = format!("{prefix}{:020}-", topic.id);
        let mut keys: Vec<(u64, String, u64)> = self
            .storage
            .list(&prefix)
            .await?
            .into_iter()
            .filter_map(|o| {
                let first = o
                    .key
                    .strip_prefix(&own)?
                    .strip_suffix(".parquet")?
                    .parse()
                    .ok()?;
                Some((first, o.key, o.size))
            })
            .filter(|(first, _, _)| *first >= from && *first < until)
            .collect();
        keys.sort_unstable();
        let mut next = from;
        let mut out = Vec::new();
        for (first, key, size) in keys.into_iter().take(FILES_PER_COMMIT) {
            if first != next {
                // A gap (a file not written yet): stop before it.
                break;
            }
            let tail = self
                .storage
                .get_range(&key, size.saturating_sub(8)..size)
                .await?;
            let n = footer_len(&tail).map_err(|e| Error::Archive(e.to_string()))? as u64;
            let footer = self
                .storage
                .get_range(&key, size.saturating_sub(8 + n)..size - 8)
                .await?;
            let s = FooterSummary::decode(&footer).map_err(|e| Error::Archive(e.to_string()))?;
            let mut lower = HashMap::new();
            let mut upper = HashMap::new();
            if let (Some((lo, hi)), Some((tlo, thi))) = (s.offsets, s.timestamps_us) {
                lower.insert(field_ids::OFFSET, Datum::long(lo));
                upper.insert(field_ids::OFFSET, Datum::long(hi));
                lower.insert(field_ids::TIMESTAMP, Datum::timestamptz_micros(tlo));
                upper.insert(field_ids::TIMESTAMP, Datum::timestamptz_micros(thi));
            }
            let file = DataFileBuilder::default()
                .content(DataContentType::Data)
                .file_path(self.storage.location(&key))
                .file_format(DataFileFormat::Parquet)
                .partition(Struct::from_iter([Some(Literal::int(partition as i32))]))
                .record_count(s.rows)
                .file_size_in_bytes(size)
                .lower_bounds(lower)
                .upper_bounds(upper)
                .build()
                .map_err(|e| Error::Archive(format!("iceberg data file: {e}")))?;
            out.push(file);
            next = first + s.rows;
        }
        Ok((out, next))
    }
}
