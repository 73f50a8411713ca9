//! Iceberg's file I/O over Silt's object store: table metadata, manifests
//! and the archive's data files all live in the same bucket (or directory),
//! named by [`ObjectStorage::location`] (`s3://bucket/prefix/key`,
//! `file:///dir/key`), the names Iceberg readers open them by.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use iceberg::io::{
    FileMetadata, FileRead, FileWrite, InputFile, OutputFile, Storage, StorageConfig,
    StorageFactory,
};
use iceberg::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};
use silt_segment::store::ObjectStorage;

/// Iceberg storage backed by one [`ObjectStorage`]. Serialisable as Iceberg
/// requires, by the store's URL only: a deserialised copy is detached and
/// refuses every call (Silt never sends one anywhere).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SiltStorage {
    url: String,
    #[serde(skip)]
    store: Option<ObjectStorage>,
}

impl SiltStorage {
    pub fn new(store: ObjectStorage) -> Self {
        Self {
            url: store.url().to_owned(),
            store: Some(store),
        }
    }

    /// The store and the key a location names.
    fn resolve<'a>(&'a self, location: &'a str) -> Result<(&'a ObjectStorage, &'a str)> {
        let store = self
            .store
            .as_ref()
            .ok_or_else(|| Error::new(ErrorKind::Unexpected, "detached Silt storage"))?;
        let key = store.key_of(location).ok_or_else(|| {
            Error::new(
                ErrorKind::DataInvalid,
                format!("{location} is outside the object store {}", self.url),
            )
        })?;
        Ok((store, key))
    }
}

fn io(e: silt_segment::Error) -> Error {
    Error::new(ErrorKind::Unexpected, "object storage").with_source(e)
}

#[async_trait]
#[typetag::serde]
impl Storage for SiltStorage {
    async fn exists(&self, path: &str) -> Result<bool> {
        let (store, key) = self.resolve(path)?;
        Ok(store.head(key).await.map_err(io)?.is_some())
    }

    async fn metadata(&self, path: &str) -> Result<FileMetadata> {
        let (store, key) = self.resolve(path)?;
        match store.head(key).await.map_err(io)? {
            Some(size) => Ok(FileMetadata { size }),
            None => Err(Error::new(
                ErrorKind::DataInvalid,
                format!("{path}: not found"),
            )),
        }
    }

    async fn read(&self, path: &str) -> Result<Bytes> {
        let (store, key) = self.resolve(path)?;
        store.get(key).await.map_err(io)
    }

    async fn reader(&self, path: &str) -> Result<Box<dyn FileRead>> {
        let (store, key) = self.resolve(path)?;
        Ok(Box::new(Reader {
            store: store.clone(),
            key: key.to_owned(),
        }))
    }

    async fn write(&self, path: &str, bs: Bytes) -> Result<()> {
        let (store, key) = self.resolve(path)?;
        store.put(key, bs).await.map_err(io)
    }

    async fn writer(&self, path: &str) -> Result<Box<dyn FileWrite>> {
        let (store, key) = self.resolve(path)?;
        Ok(Box::new(Writer {
            store: store.clone(),
            key: key.to_owned(),
            buf: Vec::new(),
        }))
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let (store, key) = self.resolve(path)?;
        store.delete(key).await.map_err(io)
    }

    async fn delete_prefix(&self, path: &str) -> Result<()> {
        let (store, key) = self.resolve(path)?;
        for o in store.list(key).await.map_err(io)? {
            store.delete(&o.key).await.map_err(io)?;
        }
        Ok(())
    }

    async fn delete_stream(&self, mut paths: BoxStream<'static, String>) -> Result<()> {
        while let Some(path) = paths.next().await {
            self.delete(&path).await?;
        }
        Ok(())
    }

    fn new_input(&self, path: &str) -> Result<InputFile> {
        self.resolve(path)?;
        Ok(InputFile::new(Arc::new(self.clone()), path.to_owned()))
    }

    fn new_output(&self, path: &str) -> Result<OutputFile> {
        self.resolve(path)?;
        Ok(OutputFile::new(Arc::new(self.clone()), path.to_owned()))
    }
}

/// Ranged reads of one object.
struct Reader {
    store: ObjectStorage,
    key: String,
}

#[async_trait]
impl FileRead for Reader {
    async fn read(&self, range: Range<u64>) -> Result<Bytes> {
        self.store.get_range(&self.key, range).await.map_err(io)
    }
}

/// Buffers what is written and publishes it with one PUT on close (Iceberg
/// writes only small metadata files this way here).
struct Writer {
    store: ObjectStorage,
    key: String,
    buf: Vec<u8>,
}

#[async_trait]
impl FileWrite for Writer {
    async fn write(&mut self, bs: Bytes) -> Result<()> {
        self.buf.extend_from_slice(&bs);
        Ok(())
    }

    async fn close(&mut self) -> Result<()> {
        let bytes = Bytes::from(std::mem::take(&mut self.buf));
        self.store.put(&self.key, bytes).await.map_err(io)
    }
}

/// Hands Iceberg's file I/O the one storage above.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SiltStorageFactory(pub SiltStorage);

#[typetag::serde]
impl StorageFactory for SiltStorageFactory {
    fn build(&self, _config: &StorageConfig) -> Result<Arc<dyn Storage>> {
        Ok(Arc::new(self.0.clone()))
    }
}
