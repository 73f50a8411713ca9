//! Retrying `delete_topic` after an unknown commit result must not delete
//! a topic another client created again under the same name meanwhile.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use silt_metadata::kv::{ErrorClass, KeyValue, Kv, KvError, Txn};
use silt_metadata::runner::RetryPolicy;
use silt_metadata::sqlite::SqliteKv;
use silt_metadata::{Metadata, TopicConfig};

/// Commits the first write for real, then lets another client re-create
/// the topic, then reports the result as unknown.
#[derive(Debug)]
struct RecreateAfterUnknown {
    inner: Arc<dyn Kv>,
    armed: Arc<AtomicBool>,
}

struct Wrapped {
    inner: Box<dyn Txn>,
    kv: Arc<dyn Kv>,
    armed: Arc<AtomicBool>,
    read_only: bool,
}

#[async_trait]
impl Kv for RecreateAfterUnknown {
    async fn begin(&self, read_only: bool) -> Result<Box<dyn Txn>, KvError> {
        Ok(Box::new(Wrapped {
            inner: self.inner.begin(read_only).await?,
            kv: self.inner.clone(),
            armed: self.armed.clone(),
            read_only,
        }))
    }
    async fn watch(&self, key: &[u8], seen: Option<&[u8]>) -> Result<(), KvError> {
        self.inner.watch(key, seen).await
    }
    fn backend(&self) -> &'static str {
        "recreate-after-unknown"
    }
}

#[async_trait]
impl Txn for Wrapped {
    async fn get(&mut self, key: &[u8], snapshot: bool) -> Result<Option<Vec<u8>>, KvError> {
        self.inner.get(key, snapshot).await
    }
    async fn get_range(
        &mut self,
        b: &[u8],
        e: &[u8],
        limit: usize,
        reverse: bool,
        snapshot: bool,
    ) -> Result<Vec<KeyValue>, KvError> {
        self.inner.get_range(b, e, limit, reverse, snapshot).await
    }
    fn set(&mut self, k: &[u8], v: &[u8]) {
        self.inner.set(k, v);
    }
    fn clear(&mut self, k: &[u8]) {
        self.inner.clear(k);
    }
    fn clear_range(&mut self, b: &[u8], e: &[u8]) {
        self.inner.clear_range(b, e);
    }
    async fn commit(self: Box<Self>) -> Result<(), KvError> {
        let fire = !self.read_only && self.armed.swap(false, Ordering::SeqCst);
        self.inner.commit().await?;
        if fire {
            let other = Metadata::new(self.kv.clone(), RetryPolicy::default(), 2);
            other
                .create_topic("orders", 2, TopicConfig::default(), 5, 99)
                .await
                .unwrap();
            return Err(KvError::new(ErrorClass::MaybeCommitted, "test", "unknown"));
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_retried_delete_spares_a_topic_created_again_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let inner: Arc<dyn Kv> = Arc::new(SqliteKv::open(dir.path().join("meta.db")).unwrap());
    let armed = Arc::new(AtomicBool::new(false));
    let kv = Arc::new(RecreateAfterUnknown {
        inner,
        armed: armed.clone(),
    });
    let md = Metadata::new(kv, RetryPolicy::default(), 1);
    let first = md
        .create_topic("orders", 1, TopicConfig::default(), 0, 1)
        .await
        .unwrap();
    armed.store(true, Ordering::SeqCst);
    md.delete_topic("orders").await.unwrap();
    let now = md
        .topic("orders")
        .await
        .unwrap()
        .expect("the new topic survives");
    assert_ne!(now.id, first.id);
    assert_eq!(now.partitions, 2);
}
