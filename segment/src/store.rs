//! Object storage chosen by URL, with the durability a log needs.
//!
//! * `file:///dir` — a local directory. After a put returns, the object's data
//!   and its directory entry have been fsynced: acknowledged data survives a
//!   power cut, not only a process crash.
//! * `memory://` — in-process, for tests and benchmarks.
//! * `s3://bucket/prefix` — S3 or any S3-compatible server; endpoint, region and
//!   credentials come from the usual `AWS_*` environment variables
//!   (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, …;
//!   `AWS_ALLOW_HTTP=true` for a plain-HTTP endpoint).
//!
//! Keys are relative to the URL's prefix: `segments/<id>`, `archive/…`.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::error::{Error, Result};

/// A handle on the object store; cheap to clone.
#[derive(Debug, Clone)]
pub struct ObjectStorage {
    inner: Arc<dyn ObjectStore>,
    prefix: Path,
    url: Arc<str>,
}

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Key relative to the store's prefix.
    pub key: String,
    pub size: u64,
    /// Last modification, milliseconds since the Unix epoch.
    pub modified_ms: i64,
}

impl ObjectStorage {
    /// Opens the store a URL names; see the module documentation.
    pub fn from_url(url: &str) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidUrl {
            url: url.to_owned(),
            reason,
        };
        let parsed = url::Url::parse(url).map_err(|e| invalid(e.to_string()))?;
        match parsed.scheme() {
            "file" => {
                let dir = parsed
                    .to_file_path()
                    .map_err(|()| invalid("not an absolute local path".into()))?;
                std::fs::create_dir_all(&dir)?;
                // fsync the file, then its directory (and any directory it created),
                // before the put returns.
                let fs = LocalFileSystem::new_with_prefix(&dir)?.with_fsync(true);
                Ok(Self {
                    inner: Arc::new(fs),
                    prefix: Path::default(),
                    url: url.into(),
                })
            }
            "memory" => Ok(Self::memory()),
            "s3" => {
                let bucket = parsed
                    .host_str()
                    .ok_or_else(|| invalid("missing bucket".into()))?;
                let s3 = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .build()
                    .map_err(|e| invalid(e.to_string()))?;
                let prefix = Path::from(parsed.path().trim_matches('/'));
                Ok(Self {
                    inner: Arc::new(s3),
                    prefix,
                    url: url.into(),
                })
            }
            other => Err(invalid(format!(
                "unsupported scheme {other:?}; use file://, memory:// or s3://"
            ))),
        }
    }

    /// A fresh in-memory store.
    pub fn memory() -> Self {
        Self {
            inner: Arc::new(InMemory::new()),
            prefix: Path::default(),
            url: "memory://".into(),
        }
    }

    /// The URL this store was opened from.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn path(&self, key: &str) -> Path {
        self.prefix.parts().chain(Path::from(key).parts()).collect()
    }

    /// Writes an object whole. Returns once it is durable.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<()> {
        self.inner
            .put(&self.path(key), PutPayload::from(bytes))
            .await?;
        Ok(())
    }

    /// Reads a byte range of an object (one ranged GET).
    pub async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        Ok(self.inner.get_range(&self.path(key), range).await?)
    }

    /// Deletes an object; deleting a missing object is not an error.
    pub async fn delete(&self, key: &str) -> Result<()> {
        match self.inner.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Lists the objects under `prefix` (relative to the store's prefix).
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let metas: Vec<_> = self
            .inner
            .list(Some(&self.path(prefix)))
            .try_collect()
            .await?;
        Ok(self.infos(metas))
    }

    /// Lists the objects under `prefix` whose keys sort after `after`, in
    /// key order. S3 starts listing at `after` itself, so the work does not
    /// grow with the objects before it.
    pub async fn list_after(&self, prefix: &str, after: &str) -> Result<Vec<ObjectInfo>> {
        let metas: Vec<_> = self
            .inner
            .list_with_offset(Some(&self.path(prefix)), &self.path(after))
            .try_collect()
            .await?;
        let mut infos = self.infos(metas);
        infos.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(infos)
    }

    fn infos(&self, metas: Vec<object_store::ObjectMeta>) -> Vec<ObjectInfo> {
        let strip = self.prefix.parts().count();
        metas
            .into_iter()
            .map(|m| ObjectInfo {
                key: m
                    .location
                    .parts()
                    .skip(strip)
                    .map(|p| p.as_ref().to_owned())
                    .collect::<Vec<_>>()
                    .join("/"),
                size: m.size,
                modified_ms: m.last_modified.timestamp_millis(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_put_get_range_list_delete() {
        let dir = tempfile::tempdir().unwrap();
        let url = url::Url::from_directory_path(dir.path()).unwrap();
        let s = ObjectStorage::from_url(url.as_str()).unwrap();
        s.put("segments/a", Bytes::from_static(b"hello world"))
            .await
            .unwrap();
        assert_eq!(
            s.get_range("segments/a", 6..11).await.unwrap(),
            Bytes::from_static(b"world")
        );
        assert!(dir.path().join("segments/a").exists());
        let listed = s.list("segments").await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].key, "segments/a");
        assert_eq!(listed[0].size, 11);
        s.delete("segments/a").await.unwrap();
        s.delete("segments/a").await.unwrap();
        assert!(s.list("segments").await.unwrap().is_empty());
    }

    #[test]
    fn bad_urls_are_errors() {
        for url in ["ftp://x", "not a url", "s3://"] {
            assert!(ObjectStorage::from_url(url).is_err(), "{url}");
        }
    }
}
