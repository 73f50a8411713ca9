//! An Iceberg SQL catalog on SQLite, in the layout of Iceberg's JDBC catalog
//! (schema v1, with `iceberg_type`) and pyiceberg's `SqlCatalog` (tables
//! `iceberg_tables` and `iceberg_namespace_properties`), so those readers
//! open the same file.
//! The pointer to a table's current metadata moves by compare-and-set in
//! one SQL statement: two writers cannot both commit on the same version.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use iceberg::io::FileIO;
use iceberg::spec::{TableMetadata, TableMetadataBuilder};
use iceberg::table::Table;
use iceberg::{
    Catalog, Error, ErrorKind, MetadataLocation, Namespace, NamespaceIdent, Result, Runtime,
    TableCommit, TableCreation, TableIdent,
};
use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS iceberg_tables (
    catalog_name VARCHAR(255) NOT NULL,
    table_namespace VARCHAR(255) NOT NULL,
    table_name VARCHAR(255) NOT NULL,
    metadata_location VARCHAR(1000),
    previous_metadata_location VARCHAR(1000),
    iceberg_type VARCHAR(5),
    PRIMARY KEY (catalog_name, table_namespace, table_name)
);
CREATE TABLE IF NOT EXISTS iceberg_namespace_properties (
    catalog_name VARCHAR(255) NOT NULL,
    namespace VARCHAR(255) NOT NULL,
    property_key VARCHAR(255) NOT NULL,
    property_value VARCHAR(1000),
    PRIMARY KEY (catalog_name, namespace, property_key)
);";

/// The property that marks a namespace as existing (as pyiceberg does).
const EXISTS: &str = "exists";

/// An Iceberg catalog in one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteCatalog {
    name: String,
    db: Arc<Mutex<Connection>>,
    file_io: FileIO,
    warehouse: String,
}

fn sql_error(e: rusqlite::Error) -> Error {
    Error::new(ErrorKind::Unexpected, "iceberg catalog database").with_source(e)
}

fn namespace_key(ns: &NamespaceIdent) -> String {
    ns.join(".")
}

impl SqliteCatalog {
    /// Opens (creating if needed) the catalog `name` in the SQLite file at
    /// `path`; new tables go under `warehouse` (a location of `file_io`).
    pub fn open(name: &str, path: &Path, file_io: FileIO, warehouse: String) -> Result<Self> {
        let db = Connection::open(path).map_err(sql_error)?;
        db.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sql_error)?;
        db.execute_batch(SCHEMA).map_err(sql_error)?;
        Ok(Self {
            name: name.to_owned(),
            db: Arc::new(Mutex::new(db)),
            file_io,
            warehouse,
        })
    }

    /// Runs one SQL job off the async runtime.
    async fn sql<T: Send + 'static>(
        &self,
        job: impl FnOnce(&Connection, &str) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let (db, name) = (self.db.clone(), self.name.clone());
        tokio::task::spawn_blocking(move || job(&db.lock(), &name))
            .await
            .map_err(|e| Error::new(ErrorKind::Unexpected, format!("catalog task: {e}")))?
            .map_err(sql_error)
    }

    /// The table's current metadata location, if the catalog has the table.
    pub async fn metadata_location(&self, table: &TableIdent) -> Result<Option<String>> {
        self.location_of(table).await
    }

    async fn location_of(&self, table: &TableIdent) -> Result<Option<String>> {
        let (ns, t) = (namespace_key(table.namespace()), table.name().to_owned());
        self.sql(move |db, cat| {
            db.query_row(
                "SELECT metadata_location FROM iceberg_tables
                 WHERE catalog_name = ?1 AND table_namespace = ?2 AND table_name = ?3",
                params![cat, ns, t],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()
            .map(Option::flatten)
        })
        .await
    }

    /// Adds a table's pointer; `TableAlreadyExists` if the name is taken.
    async fn insert_table(&self, table: &TableIdent, location: String) -> Result<()> {
        let (ns, t) = (namespace_key(table.namespace()), table.name().to_owned());
        let inserted = self
            .sql(move |db, cat| {
                db.execute(
                    "INSERT OR IGNORE INTO iceberg_tables
                     (catalog_name, table_namespace, table_name, metadata_location, iceberg_type)
                     VALUES (?1, ?2, ?3, ?4, 'TABLE')",
                    params![cat, ns, t, location],
                )
            })
            .await?;
        if inserted == 0 {
            return Err(Error::new(
                ErrorKind::TableAlreadyExists,
                format!("table {table} exists"),
            ));
        }
        Ok(())
    }

    fn table(&self, ident: TableIdent, metadata: TableMetadata, location: String) -> Result<Table> {
        Table::builder()
            .identifier(ident)
            .metadata(metadata)
            .metadata_location(location)
            .file_io(self.file_io.clone())
            .runtime(Runtime::current())
            .build()
    }
}

#[async_trait]
impl Catalog for SqliteCatalog {
    async fn list_namespaces(
        &self,
        parent: Option<&NamespaceIdent>,
    ) -> Result<Vec<NamespaceIdent>> {
        let prefix = parent.map(|p| format!("{}.", namespace_key(p)));
        let names: Vec<String> = self
            .sql(|db, cat| {
                let mut st = db.prepare(
                    "SELECT table_namespace FROM iceberg_tables WHERE catalog_name = ?1
                     UNION SELECT namespace FROM iceberg_namespace_properties WHERE catalog_name = ?1",
                )?;
                st.query_map(params![cat], |r| r.get(0))?.collect()
            })
            .await?;
        names
            .into_iter()
            .filter(|n| prefix.as_ref().is_none_or(|p| n.starts_with(p.as_str())))
            .map(|n| NamespaceIdent::from_strs(n.split('.')))
            .collect()
    }

    async fn create_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> Result<Namespace> {
        if self.namespace_exists(namespace).await? {
            return Err(Error::new(
                ErrorKind::NamespaceAlreadyExists,
                format!("namespace {namespace:?} exists"),
            ));
        }
        self.update_namespace(namespace, properties.clone()).await?;
        Ok(Namespace::with_properties(namespace.clone(), properties))
    }

    async fn get_namespace(&self, namespace: &NamespaceIdent) -> Result<Namespace> {
        if !self.namespace_exists(namespace).await? {
            return Err(Error::new(
                ErrorKind::NamespaceNotFound,
                format!("no namespace {namespace:?}"),
            ));
        }
        let ns = namespace_key(namespace);
        let props: Vec<(String, String)> = self
            .sql(move |db, cat| {
                let mut st = db.prepare(
                    "SELECT property_key, property_value FROM iceberg_namespace_properties
                     WHERE catalog_name = ?1 AND namespace = ?2 AND property_key != ?3",
                )?;
                st.query_map(params![cat, ns, EXISTS], |r| {
                    Ok((
                        r.get(0)?,
                        r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                    ))
                })?
                .collect()
            })
            .await?;
        Ok(Namespace::with_properties(
            namespace.clone(),
            props.into_iter().collect(),
        ))
    }

    async fn namespace_exists(&self, namespace: &NamespaceIdent) -> Result<bool> {
        let ns = namespace_key(namespace);
        self.sql(move |db, cat| {
            db.query_row(
                "SELECT EXISTS(SELECT 1 FROM iceberg_namespace_properties
                               WHERE catalog_name = ?1 AND namespace = ?2)
                     OR EXISTS(SELECT 1 FROM iceberg_tables
                               WHERE catalog_name = ?1 AND table_namespace = ?2)",
                params![cat, ns],
                |r| r.get(0),
            )
        })
        .await
    }

    async fn update_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> Result<()> {
        let ns = namespace_key(namespace);
        self.sql(move |db, cat| {
            let mut st = db.prepare(
                "INSERT OR REPLACE INTO iceberg_namespace_properties
                 (catalog_name, namespace, property_key, property_value) VALUES (?1, ?2, ?3, ?4)",
            )?;
            st.execute(params![cat, ns, EXISTS, "true"])?;
            for (k, v) in &properties {
                st.execute(params![cat, ns, k, v])?;
            }
            Ok(())
        })
        .await
    }

    async fn drop_namespace(&self, namespace: &NamespaceIdent) -> Result<()> {
        if !self.list_tables(namespace).await?.is_empty() {
            return Err(Error::new(
                ErrorKind::PreconditionFailed,
                format!("namespace {namespace:?} still has tables"),
            ));
        }
        let ns = namespace_key(namespace);
        self.sql(move |db, cat| {
            db.execute(
                "DELETE FROM iceberg_namespace_properties WHERE catalog_name = ?1 AND namespace = ?2",
                params![cat, ns],
            )
            .map(drop)
        })
        .await
    }

    async fn list_tables(&self, namespace: &NamespaceIdent) -> Result<Vec<TableIdent>> {
        let ns = namespace_key(namespace);
        let names: Vec<String> = self
            .sql(move |db, cat| {
                let mut st = db.prepare(
                    "SELECT table_name FROM iceberg_tables
                     WHERE catalog_name = ?1 AND table_namespace = ?2 ORDER BY table_name",
                )?;
                st.query_map(params![cat, ns], |r| r.get(0))?.collect()
            })
            .await?;
        Ok(names
            .into_iter()
            .map(|n| TableIdent::new(namespace.clone(), n))
            .collect())
    }

    async fn create_table(
        &self,
        namespace: &NamespaceIdent,
        creation: TableCreation,
    ) -> Result<Table> {
        let ident = TableIdent::new(namespace.clone(), creation.name.clone());
        if self.table_exists(&ident).await? {
            return Err(Error::new(
                ErrorKind::TableAlreadyExists,
                format!("table {ident} exists"),
            ));
        }
        let location = creation.location.clone().unwrap_or_else(|| {
            format!(
                "{}/{}/{}",
                self.warehouse,
                namespace.join("/"),
                creation.name
            )
        });
        let creation = TableCreation {
            location: Some(location.clone()),
            ..creation
        };
        let metadata = TableMetadataBuilder::from_table_creation(creation)?
            .build()?
            .metadata;
        let at = MetadataLocation::new_with_metadata(location, &metadata);
        metadata.write_to(&self.file_io, &at).await?;
        self.insert_table(&ident, at.to_string()).await?;
        self.table(ident, metadata, at.to_string())
    }

    async fn load_table(&self, table: &TableIdent) -> Result<Table> {
        let Some(location) = self.location_of(table).await? else {
            return Err(Error::new(
                ErrorKind::TableNotFound,
                format!("no table {table}"),
            ));
        };
        let metadata = TableMetadata::read_from(&self.file_io, &location).await?;
        self.table(table.clone(), metadata, location)
    }

    async fn drop_table(&self, table: &TableIdent) -> Result<()> {
        let (ns, t) = (namespace_key(table.namespace()), table.name().to_owned());
        let n = self
            .sql(move |db, cat| {
                db.execute(
                    "DELETE FROM iceberg_tables
                     WHERE catalog_name = ?1 AND table_namespace = ?2 AND table_name = ?3",
                    params![cat, ns, t],
                )
            })
            .await?;
        if n == 0 {
            return Err(Error::new(
                ErrorKind::TableNotFound,
                format!("no table {table}"),
            ));
        }
        Ok(())
    }

    async fn purge_table(&self, table: &TableIdent) -> Result<()> {
        let t = self.load_table(table).await?;
        self.drop_table(table).await?;
        iceberg::drop_table_data(&t).await
    }

    async fn table_exists(&self, table: &TableIdent) -> Result<bool> {
        Ok(self.location_of(table).await?.is_some())
    }

    async fn rename_table(&self, src: &TableIdent, dest: &TableIdent) -> Result<()> {
        if self.table_exists(dest).await? {
            return Err(Error::new(
                ErrorKind::TableAlreadyExists,
                format!("table {dest} exists"),
            ));
        }
        let (sn, st) = (namespace_key(src.namespace()), src.name().to_owned());
        let (dn, dt) = (namespace_key(dest.namespace()), dest.name().to_owned());
        let n = self
            .sql(move |db, cat| {
                db.execute(
                    "UPDATE iceberg_tables SET table_namespace = ?4, table_name = ?5
                     WHERE catalog_name = ?1 AND table_namespace = ?2 AND table_name = ?3",
                    params![cat, sn, st, dn, dt],
                )
            })
            .await?;
        if n == 0 {
            return Err(Error::new(
                ErrorKind::TableNotFound,
                format!("no table {src}"),
            ));
        }
        Ok(())
    }

    async fn register_table(&self, table: &TableIdent, metadata_location: String) -> Result<Table> {
        let metadata = TableMetadata::read_from(&self.file_io, &metadata_location).await?;
        self.insert_table(table, metadata_location.clone()).await?;
        self.table(table.clone(), metadata, metadata_location)
    }

    async fn update_table(&self, commit: TableCommit) -> Result<Table> {
        let current = self.load_table(commit.identifier()).await?;
        let previous = current.metadata_location_result()?.to_owned();
        let staged = commit.apply(current)?;
        let location = staged.metadata_location_result()?.to_owned();
        let at: MetadataLocation = location.parse()?;
        staged.metadata().write_to(staged.file_io(), &at).await?;
        let ident = staged.identifier().clone();
        let (ns, t) = (namespace_key(ident.namespace()), ident.name().to_owned());
        let (new, old) = (location.clone(), previous.clone());
        let moved = self
            .sql(move |db, cat| {
                db.execute(
                    "UPDATE iceberg_tables SET metadata_location = ?4, previous_metadata_location = ?5
                     WHERE catalog_name = ?1 AND table_namespace = ?2 AND table_name = ?3
                       AND metadata_location = ?5",
                    params![cat, ns, t, new, old],
                )
            })
            .await?;
        if moved == 0 {
            return Err(Error::new(
                ErrorKind::CatalogCommitConflicts,
                format!("table {ident} changed while this commit was prepared"),
            )
            .with_retryable(true));
        }
        Ok(staged)
    }
}
