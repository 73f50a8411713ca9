//! Fault injection: wraps a backend and makes transactions fail the ways
//! FoundationDB's do — errors on begin and on reads, conflicts, unknown
//! results both *before* and *after* the real commit, and commits that land
//! only after the caller gave up on them. Each transaction draws from its
//! own generator, seeded from the plan's seed and the transaction's number,
//! so concurrent transactions do not perturb each other's faults.
//! Counters tell a test how many faults it actually met.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use crate::kv::{ErrorClass, KeyValue, Kv, KvError, Txn};

/// Probabilities (0.0–1.0) of each fault: per transaction begun, per read,
/// and per write commit.
#[derive(Debug, Clone, Copy, Default)]
pub struct FaultPlan {
    pub seed: u64,
    /// Begin fails (retriable); nothing started.
    pub begin_error: f64,
    /// A read fails (retriable).
    pub read_error: f64,
    /// Commit rejected as a conflict; nothing applied.
    pub conflict: f64,
    /// Unknown result, and the commit did *not* happen.
    pub unknown_not_applied: f64,
    /// Unknown result, but the commit *did* happen.
    pub unknown_applied: f64,
    /// Unknown result at once, and the commit lands [`LATE_BY`] later.
    pub late_commit: f64,
}

/// How long a late commit takes to land after its caller was told
/// "unknown".
pub const LATE_BY: Duration = Duration::from_millis(30);

/// How many faults were injected so far.
#[derive(Debug, Default)]
pub struct FaultCounts {
    pub begin_errors: AtomicU64,
    pub read_errors: AtomicU64,
    pub conflicts: AtomicU64,
    pub unknown_not_applied: AtomicU64,
    pub unknown_applied: AtomicU64,
    pub late_commits: AtomicU64,
}

impl FaultCounts {
    pub fn total(&self) -> u64 {
        [
            &self.begin_errors,
            &self.read_errors,
            &self.conflicts,
            &self.unknown_not_applied,
            &self.unknown_applied,
            &self.late_commits,
        ]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
    }
}

#[derive(Debug)]
pub struct FaultyKv {
    inner: Arc<dyn Kv>,
    plan: FaultPlan,
    /// Transactions begun so far: the next one's number.
    begun: AtomicU64,
    pub counts: Arc<FaultCounts>,
}

impl FaultyKv {
    pub fn new(inner: Arc<dyn Kv>, plan: FaultPlan) -> Self {
        Self {
            inner,
            plan,
            begun: AtomicU64::new(0),
            counts: Arc::default(),
        }
    }
}

/// One transaction's generator (xorshift), seeded by splitmix64 from the
/// plan's seed and the transaction's number.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn for_txn(seed: u64, n: u64) -> Self {
        let mut z = seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Self((z ^ (z >> 31)) | 1)
    }

    fn roll(&mut self) -> f64 {
        let s = &mut self.0;
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        (*s >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn fault<T>(class: ErrorClass, msg: &str) -> Result<T, KvError> {
    Err(KvError::new(class, "faulty", msg))
}

#[async_trait]
impl Kv for FaultyKv {
    async fn begin(&self, read_only: bool) -> Result<Box<dyn Txn>, KvError> {
        let n = self.begun.fetch_add(1, Ordering::Relaxed);
        let mut rng = Rng::for_txn(self.plan.seed, n);
        if rng.roll() < self.plan.begin_error {
            self.counts.begin_errors.fetch_add(1, Ordering::Relaxed);
            return fault(ErrorClass::Retryable, "injected error on begin");
        }
        let inner = self.inner.begin(read_only).await?;
        Ok(Box::new(FaultyTxn {
            inner,
            read_only,
            plan: self.plan,
            rng,
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
    rng: Rng,
    counts: Arc<FaultCounts>,
}

impl FaultyTxn {
    fn read_fault(&mut self) -> Result<(), KvError> {
        if self.rng.roll() < self.plan.read_error {
            self.counts.read_errors.fetch_add(1, Ordering::Relaxed);
            return fault(ErrorClass::Retryable, "injected error on read");
        }
        Ok(())
    }
}

#[async_trait]
impl Txn for FaultyTxn {
    async fn get(&mut self, key: &[u8], snapshot: bool) -> Result<Option<Vec<u8>>, KvError> {
        self.read_fault()?;
        self.inner.get(key, snapshot).await
    }

    async fn get_many(
        &mut self,
        keys: &[Vec<u8>],
        snapshot: bool,
    ) -> Result<Vec<Option<Vec<u8>>>, KvError> {
        self.read_fault()?;
        self.inner.get_many(keys, snapshot).await
    }

    async fn get_range(
        &mut self,
        begin: &[u8],
        end: &[u8],
        limit: usize,
        reverse: bool,
        snapshot: bool,
    ) -> Result<Vec<KeyValue>, KvError> {
        self.read_fault()?;
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

    async fn commit(mut self: Box<Self>) -> Result<(), KvError> {
        if self.read_only {
            return self.inner.commit().await;
        }
        let p = self.plan;
        let r = self.rng.roll();
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
        if r < p.conflict + p.unknown_not_applied + p.late_commit {
            self.counts.late_commits.fetch_add(1, Ordering::Relaxed);
            let inner = self.inner;
            tokio::spawn(async move {
                tokio::time::sleep(LATE_BY).await;
                let _ = inner.commit().await;
            });
            return fault(
                ErrorClass::MaybeCommitted,
                "injected unknown result (the commit lands later)",
            );
        }
        self.inner.commit().await?;
        if self.rng.roll() < p.unknown_applied {
            self.counts.unknown_applied.fetch_add(1, Ordering::Relaxed);
            return fault(
                ErrorClass::MaybeCommitted,
                "injected unknown result (applied)",
            );
        }
        Ok(())
    }
}
