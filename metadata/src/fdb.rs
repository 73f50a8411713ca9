//! The FoundationDB backend: the production engine.
//!
//! Every key of the keyspace is stored under a tuple-encoded subspace
//! (`("silt",)` by default), so several deployments can share a cluster.
//! Error classes come straight from FoundationDB's own predicates:
//! `not_committed` (1020) is a `Conflict`, `is_maybe_committed()`
//! (`commit_unknown_result`, 1021) is `MaybeCommitted`, any other
//! `is_retryable()` error is `Retryable`, the rest are `Fatal`.
//! Watches are FoundationDB watches: committed with a read of the key, they
//! fire on any later change, from any client.

use std::sync::OnceLock;

use async_trait::async_trait;
use foundationdb::{Database, FdbError, KeySelector, RangeOption, Transaction};
use futures::TryStreamExt;

use crate::kv::{ErrorClass, KeyValue, Kv, KvError, Txn};

const BACKEND: &str = "fdb";
const NOT_COMMITTED: i32 = 1020;

fn classify(e: &FdbError) -> KvError {
    let class = if e.code() == NOT_COMMITTED {
        ErrorClass::Conflict
    } else if e.is_maybe_committed() {
        ErrorClass::MaybeCommitted
    } else if e.is_retryable() {
        ErrorClass::Retryable
    } else {
        ErrorClass::Fatal
    };
    KvError::new(class, BACKEND, format!("{} ({})", e.message(), e.code()))
}

/// Starts the FoundationDB network thread once per process; it runs until the
/// process exits (the client library allows one network per process).
#[allow(unsafe_code)]
fn ensure_network() {
    static NETWORK: OnceLock<()> = OnceLock::new();
    NETWORK.get_or_init(|| {
        // SAFETY: called at most once per process (OnceLock), before any
        // database is opened; the returned guard is leaked on purpose so the
        // network is never stopped while databases may still be in use.
        let guard = unsafe { foundationdb::boot() };
        std::mem::forget(guard);
    });
}

/// A FoundationDB database, seen through a key prefix.
pub struct FdbKv {
    db: Database,
    prefix: Vec<u8>,
}

impl std::fmt::Debug for FdbKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FdbKv")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl FdbKv {
    /// Opens the cluster named by `cluster_file` (the default cluster file,
    /// or `FDB_CLUSTER_FILE`, when `None`), with keys under `(subspace,)`.
    /// Tests use one subspace each, so they can run concurrently and clean up.
    pub fn open(cluster_file: Option<&str>, subspace: &[u8]) -> Result<Self, KvError> {
        ensure_network();
        let db = Database::new(cluster_file).map_err(|e| classify(&e))?;
        let prefix = foundationdb::tuple::pack(&(subspace.to_vec(),));
        Ok(Self { db, prefix })
    }

    /// Deletes every key under this handle's subspace.
    pub async fn clear_all(&self) -> Result<(), KvError> {
        let trx = self.db.create_trx().map_err(|e| classify(&e))?;
        let mut end = self.prefix.clone();
        end.push(0xFF);
        trx.clear_range(&self.prefix, &end);
        trx.commit().await.map_err(|e| classify(&e))?;
        Ok(())
    }

    fn key(&self, k: &[u8]) -> Vec<u8> {
        let mut full = Vec::with_capacity(self.prefix.len() + k.len());
        full.extend_from_slice(&self.prefix);
        full.extend_from_slice(k);
        full
    }
}

#[async_trait]
impl Kv for FdbKv {
    async fn begin(&self, read_only: bool) -> Result<Box<dyn Txn>, KvError> {
        let trx = self.db.create_trx().map_err(|e| classify(&e))?;
        Ok(Box::new(FdbTxn {
            trx,
            prefix: self.prefix.clone(),
            read_only,
        }))
    }

    async fn watch(&self, key: &[u8], seen: Option<&[u8]>) -> Result<(), KvError> {
        let key = self.key(key);
        let trx = self.db.create_trx().map_err(|e| classify(&e))?;
        let now = trx.get(&key, false).await.map_err(|e| classify(&e))?;
        if now.as_deref() != seen {
            return Ok(());
        }
        let fired = trx.watch(&key);
        trx.commit().await.map_err(|e| classify(&e))?;
        fired.await.map_err(|e| classify(&e))
    }

    fn backend(&self) -> &'static str {
        BACKEND
    }
}

struct FdbTxn {
    trx: Transaction,
    prefix: Vec<u8>,
    read_only: bool,
}

impl FdbTxn {
    fn key(&self, k: &[u8]) -> Vec<u8> {
        let mut full = self.prefix.clone();
        full.extend_from_slice(k);
        full
    }
}

#[async_trait]
impl Txn for FdbTxn {
    async fn get(&mut self, key: &[u8], snapshot: bool) -> Result<Option<Vec<u8>>, KvError> {
        let v = self
            .trx
            .get(&self.key(key), snapshot)
            .await
            .map_err(|e| classify(&e))?;
        Ok(v.map(|s| s.to_vec()))
    }

    async fn get_many(
        &mut self,
        keys: &[Vec<u8>],
        snapshot: bool,
    ) -> Result<Vec<Option<Vec<u8>>>, KvError> {
        // All in flight at once: one round trip, not one per key.
        let reads = keys.iter().map(|k| self.trx.get(&self.key(k), snapshot));
        let values = futures::future::try_join_all(reads)
            .await
            .map_err(|e| classify(&e))?;
        Ok(values.into_iter().map(|v| v.map(|s| s.to_vec())).collect())
    }

    async fn get_range(
        &mut self,
        begin: &[u8],
        end: &[u8],
        limit: usize,
        reverse: bool,
        snapshot: bool,
    ) -> Result<Vec<KeyValue>, KvError> {
        // FoundationDB reads a limit of 0 as "no limit"; the contract (and
        // SQLite) read it as "nothing".
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut opt = RangeOption::from((
            KeySelector::first_greater_or_equal(self.key(begin)),
            KeySelector::first_greater_or_equal(self.key(end)),
        ));
        opt.reverse = reverse;
        opt.limit = (limit != usize::MAX).then_some(limit);
        let n = self.prefix.len();
        self.trx
            .get_ranges_keyvalues(opt, snapshot)
            .map_ok(|kv| (kv.key()[n..].to_vec(), kv.value().to_vec()))
            .try_collect()
            .await
            .map_err(|e| classify(&e))
    }

    fn set(&mut self, key: &[u8], value: &[u8]) {
        self.trx.set(&self.key(key), value);
    }

    fn clear(&mut self, key: &[u8]) {
        self.trx.clear(&self.key(key));
    }

    fn clear_range(&mut self, begin: &[u8], end: &[u8]) {
        self.trx.clear_range(&self.key(begin), &self.key(end));
    }

    async fn commit(self: Box<Self>) -> Result<(), KvError> {
        if self.read_only {
            return Ok(());
        }
        self.trx
            .commit()
            .await
            .map(|_| ())
            .map_err(|e| classify(&e))
    }
}
