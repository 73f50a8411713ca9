//! Fault injection: wraps a backend and makes commits fail the ways
//! FoundationDB's do — conflicts, and unknown results both *before* and
//! *after* the real commit — from a seeded, deterministic sequence.
//! Counters tell a test how many faults it actually met.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::kv::{ErrorClass, KeyValue, Kv, KvError, Txn};

/// Probabilities (0.0–1.0) of each fault per write commit.
#[derive(Debug, Clone, Copy)]
pub struct FaultPlan {
    pub seed: u64,
    /// Commit rejected as a conflict; nothing applied.
    pub conflict: f64,
    /// Unknown result, and the commit did *not* happen.
    pub unknown_not_applied: f64,
    /// Unknown result, but the commit *did* happen.
    pub unknown_applied: f64,
}

/// How many faults were injected so far.
#[derive(Debug, Default)]
pub struct FaultCounts {
    pub conflicts: AtomicU64,
    pub unknown_not_applied: AtomicU64,
    pub unknown_applied: AtomicU64,
}

impl FaultCounts {
    pub fn total(&self) -> u64 {
        self.conflicts.load(Ordering::Relaxed)
            + self.unknown_not_applied.load(Ordering::Relaxed)
            + self.unknown_applied.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
pub struct FaultyKv {
    inner: Arc<dyn Kv>,
    plan: FaultPlan,
    rng: Arc<Mutex<u64>>,
    pub counts: Arc<FaultCounts>,
}

impl FaultyKv {
    pub fn new(inner: Arc<dyn Kv>, plan: FaultPlan) -> Self {
        Self {
            inner,
            plan,
            rng: Arc::new(Mutex::new(plan.seed | 1)),
            counts: Arc::default(),
        }
    }
}

fn roll(rng: &Mutex<u64>) -> f64 {
    let mut s = rng.lock();
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    (*s >> 11) as f64 / (1u64 << 53) as f64
}

#[async_trait]
impl Kv for FaultyKv {
    async fn begin(&self, read_only: bool) -> Result<Box<dyn Txn>, KvError> {
        let inner = self.inner.begin(read_only).await?;
        Ok(Box::new(FaultyTxn {
            inner,
            read_only,
            plan: self.plan,
            rng: self.rng.clone(),
            counts: self.counts.clone(),
        }))
    }

    async fn watch(&self, key: &[u8], seen: Option<&[u8]>) -> Result<(), KvError> {
        self.inner.watch(key, seen).await
    }

    fn backend(&self) -> &'static str {
        "faulty"
    }
}

struct FaultyTxn {
    inner: Box<dyn Txn>,
    read_only: bool,
    plan: FaultPlan,
    rng: Arc<Mutex<u64>>,
    counts: Arc<FaultCounts>,
}

#[async_trait]
impl Txn for FaultyTxn {
    async fn get(&mut self, key: &[u8], snapshot: bool) -> Result<Option<Vec<u8>>, KvError> {
        self.inner.get(key, snapshot).await
    }

    async fn get_range(
        &mut self,
        begin: &[u8],
        end: &[u8],
        limit: usize,
        reverse: bool,
        snapshot: bool,
    ) -> Result<Vec<KeyValue>, KvError> {
        self.inner
            .get_range(begin, end, limit, reverse, snapshot)
            .await
    }

    fn set(&mut self, key: &[u8], value: &[u8]) {
        self.inner.set(key, value);
    }

    fn clear(&mut self, key: &[u8]) {
        self.inner.clear(key);
    }

    fn clear_range(&mut self, begin: &[u8], end: &[u8]) {
        self.inner.clear_range(begin, end);
    }

    async fn commit(self: Box<Self>) -> Result<(), KvError> {
        if self.read_only {
            return self.inner.commit().await;
        }
        let p = self.plan;
        let r = roll(&self.rng);
        let fault = |class, msg: &str| Err(KvError::new(class, "faulty", msg));
        if r < p.conflict {
            self.counts.conflicts.fetch_add(1, Ordering::Relaxed);
            return fault(ErrorClass::Conflict, "injected conflict");
        }
        if r < p.conflict + p.unknown_not_applied {
            self.counts
                .unknown_not_applied
                .fetch_add(1, Ordering::Relaxed);
            return fault(
                ErrorClass::MaybeCommitted,
                "injected unknown result (not applied)",
            );
        }
        self.inner.commit().await?;
        if roll(&self.rng) < p.unknown_applied {
            self.counts.unknown_applied.fetch_add(1, Ordering::Relaxed);
            return fault(
                ErrorClass::MaybeCommitted,
                "injected unknown result (applied)",
            );
        }
        Ok(())
    }
}
