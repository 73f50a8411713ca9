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
//!
//! Every call is bounded ([`Bounds`]): an S3 request attempt times out and
//! is retried with exponential backoff and jitter, and a whole call —
//! retries included, or a local operation on a hung disk — fails with
//! [`Error::Timeout`] once its bound passes, so a caller never waits on the
//! store without limit. Callers answer such failures as retriable.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientConfigKey, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
};

use crate::error::{Error, Result};

/// A handle on the object store; cheap to clone.
#[derive(Debug, Clone)]
pub struct ObjectStorage {
    inner: Arc<dyn ObjectStore>,
    prefix: Path,
    url: Arc<str>,
    bounds: Bounds,
    /// A PUT still running after this long is sent again, and the first to
    /// finish wins (objects are immutable, so both write the same bytes):
    /// one slow request no longer sets the tail latency.
    hedge_after: Option<Duration>,
}

/// Time bounds on object-store calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// One S3 request attempt.
    pub attempt: Duration,
    /// A whole call, retries included.
    pub call: Duration,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            attempt: Duration::from_secs(10),
            call: Duration::from_secs(30),
        }
    }
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
        Self::from_url_bounded(url, Bounds::default())
    }

    /// Opens the store a URL names, with these bounds on every call.
    pub fn from_url_bounded(url: &str, bounds: Bounds) -> Result<Self> {
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
                    bounds,
                    hedge_after: None,
                })
            }
            "memory" => Ok(Self {
                bounds,
                ..Self::memory()
            }),
            "s3" => {
                let bucket = parsed
                    .host_str()
                    .ok_or_else(|| invalid("missing bucket".into()))?;
                // Set key by key: the environment's client options (such
                // as AWS_ALLOW_HTTP) stay as they are.
                let s3 = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_config(
                        AmazonS3ConfigKey::Client(ClientConfigKey::Timeout),
                        format!("{}ms", bounds.attempt.as_millis()),
                    )
                    .with_config(
                        AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
                        format!("{}ms", bounds.attempt.as_millis().min(2000)),
                    )
                    .with_retry(RetryConfig {
                        backoff: BackoffConfig {
                            init_backoff: Duration::from_millis(50),
                            max_backoff: Duration::from_secs(2),
                            base: 2.0,
                        },
                        max_retries: 5,
                        retry_timeout: bounds.call,
                    })
                    .build()
                    .map_err(|e| invalid(e.to_string()))?;
                let prefix = Path::from(parsed.path().trim_matches('/'));
                Ok(Self {
                    inner: Arc::new(s3),
                    prefix,
                    url: url.into(),
                    bounds,
                    hedge_after: None,
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
            bounds: Bounds::default(),
            hedge_after: None,
        }
    }

    /// The URL this store was opened from.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs one call within the call bound.
    async fn bounded<T>(
        &self,
        op: &'static str,
        call: impl Future<Output = object_store::Result<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.bounds.call, call).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(Error::Timeout {
                op,
                after: self.bounds.call,
            }),
        }
    }

    fn path(&self, key: &str) -> Path {
        self.prefix.parts().chain(Path::from(key).parts()).collect()
    }

    /// Puts that run longer than `after` are hedged (see `hedge_after`).
    pub fn with_hedged_puts(mut self, after: Duration) -> Self {
        self.hedge_after = Some(after);
        self
    }

    /// The same store behind modelled latency (benchmarks only).
    pub fn with_latency(mut self, model: crate::latency::LatencyModel, seed: u64) -> Self {
        self.inner = Arc::new(crate::latency::LatencyStore::new(self.inner, model, seed));
        self
    }

    /// Writes an object whole. Returns once it is durable.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<()> {
        let path = self.path(key);
        let first = self.inner.put(&path, PutPayload::from(bytes.clone()));
        let Some(after) = self.hedge_after else {
            self.bounded("put", first).await?;
            return Ok(());
        };
        self.bounded("put", async {
            tokio::pin!(first);
            tokio::select! {
                done = &mut first => return done,
                () = tokio::time::sleep(after) => {}
            }
            let second = self.inner.put(&path, PutPayload::from(bytes));
            tokio::pin!(second);
            // The first success wins; a failure waits for the other.
            tokio::select! {
                done = &mut first => match done {
                    Ok(r) => Ok(r),
                    Err(_) => second.await,
                },
                done = &mut second => match done {
                    Ok(r) => Ok(r),
                    Err(_) => first.await,
                },
            }
        })
        .await?;
        Ok(())
    }

    /// Reads a byte range of an object (one ranged GET).
    pub async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        self.bounded("get", self.inner.get_range(&self.path(key), range))
            .await
    }

    /// Reads a whole object.
    pub async fn get(&self, key: &str) -> Result<Bytes> {
        self.bounded("get", async {
            self.inner.get(&self.path(key)).await?.bytes().await
        })
        .await
    }

    /// An object's size; `None` if there is no such object.
    pub async fn head(&self, key: &str) -> Result<Option<u64>> {
        self.bounded("head", async {
            match self.inner.head(&self.path(key)).await {
                Ok(meta) => Ok(Some(meta.size)),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// Where an object lives, as other tools name it: `file:///dir/key`,
    /// `s3://bucket/prefix/key`, `memory:///key` (the store's URL without
    /// its query, then the key).
    pub fn location(&self, key: &str) -> String {
        let base = self.url.split('?').next().unwrap_or_default();
        format!("{}/{key}", base.trim_end_matches('/'))
    }

    /// The key of a [`ObjectStorage::location`] of this store.
    pub fn key_of<'a>(&self, location: &'a str) -> Option<&'a str> {
        let base = self.url.split('?').next().unwrap_or_default();
        location
            .strip_prefix(base.trim_end_matches('/'))?
            .strip_prefix('/')
    }

    /// Deletes an object; deleting a missing object is not an error.
    pub async fn delete(&self, key: &str) -> Result<()> {
        self.bounded("delete", async {
            match self.inner.delete(&self.path(key)).await {
                Err(object_store::Error::NotFound { .. }) => Ok(()),
                other => other,
            }
        })
        .await
    }

    /// Lists the objects under `prefix` (relative to the store's prefix).
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let metas: Vec<_> = self
            .bounded(
                "list",
                self.inner.list(Some(&self.path(prefix))).try_collect(),
            )
            .await?;
        Ok(self.infos(metas))
    }

    /// Lists the objects under `prefix` whose keys sort after `after`, in
    /// key order. S3 starts listing at `after` itself, so the work does not
    /// grow with the objects before it.
    pub async fn list_after(&self, prefix: &str, after: &str) -> Result<Vec<ObjectInfo>> {
        let metas: Vec<_> = self
            .bounded(
                "list",
                self.inner
                    .list_with_offset(Some(&self.path(prefix)), &self.path(after))
                    .try_collect(),
            )
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
        assert_eq!(
            s.get("segments/a").await.unwrap(),
            Bytes::from_static(b"hello world")
        );
        assert_eq!(s.head("segments/a").await.unwrap(), Some(11));
        assert_eq!(s.head("segments/b").await.unwrap(), None);
        let at = s.location("segments/a");
        assert!(
            at.starts_with("file:///") && at.ends_with("/segments/a"),
            "{at}"
        );
        assert_eq!(s.key_of(&at), Some("segments/a"));
        s.delete("segments/a").await.unwrap();
        s.delete("segments/a").await.unwrap();
        assert!(s.list("segments").await.unwrap().is_empty());
    }

    /// A read that hangs (a FIFO nobody writes, like a hung disk) fails
    /// with a timeout once the call bound passes.
    #[tokio::test]
    async fn a_hung_call_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("hang");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let url = url::Url::from_directory_path(dir.path()).unwrap();
        let bounds = Bounds {
            attempt: Duration::from_millis(100),
            call: Duration::from_millis(200),
        };
        let s = ObjectStorage::from_url_bounded(url.as_str(), bounds).unwrap();
        let err = s.get_range("hang", 0..4).await.unwrap_err();
        assert!(matches!(err, Error::Timeout { op: "get", .. }), "{err}");
        // Release the blocked reader thread so the runtime can shut down.
        let _ = std::fs::write(&fifo, b"done");
    }

    /// On S3 Standard's modelled latency (virtual time), hedging PUTs
    /// after 60 ms cuts the tail: the p99 and the worst PUT get shorter.
    #[tokio::test(start_paused = true)]
    async fn hedged_puts_cut_the_tail() {
        async fn latencies(s: &ObjectStorage) -> Vec<Duration> {
            let mut out = Vec::new();
            for i in 0..500 {
                let t = tokio::time::Instant::now();
                s.put(&format!("k{i}"), Bytes::from_static(b"x"))
                    .await
                    .unwrap();
                out.push(t.elapsed());
            }
            out.sort();
            out
        }
        let model = crate::latency::LatencyModel::s3_standard();
        let plain = latencies(&ObjectStorage::memory().with_latency(model, 3)).await;
        let hedged = ObjectStorage::memory()
            .with_latency(model, 3)
            .with_hedged_puts(Duration::from_millis(60));
        let hedged = latencies(&hedged).await;
        assert!(
            hedged[494] < plain[494],
            "p99 {:?} vs {:?}",
            hedged[494],
            plain[494]
        );
        assert!(
            hedged[499] < plain[499],
            "max {:?} vs {:?}",
            hedged[499],
            plain[499]
        );
        assert!(
            hedged[494] < Duration::from_millis(150),
            "{:?}",
            hedged[494]
        );
    }

    #[test]
    fn bad_urls_are_errors() {
        for url in ["ftp://x", "not a url", "s3://"] {
            assert!(ObjectStorage::from_url(url).is_err(), "{url}");
        }
    }
}
