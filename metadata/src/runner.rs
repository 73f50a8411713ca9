//! Runs transaction bodies to completion, retrying exactly when it is safe.
//!
//! The decision comes from the error's [`ErrorClass`], set by the backend,
//! never from string matching:
//!
//! | class            | retried?                                         |
//! |------------------|--------------------------------------------------|
//! | `Conflict`       | yes — nothing was committed                      |
//! | `Retryable`      | yes — nothing was committed                      |
//! | `MaybeCommitted` | only if the body is idempotent; the next attempt |
//! |                  | is told so through [`Attempt::after_unknown`]    |
//! | `Fatal`          | no                                               |
//!
//! Every body written in this crate is idempotent: it first looks for the
//! trace its own earlier commit would have left (a segment record, a topic's
//! creation nonce) and returns that result instead of applying itself twice.
//! Backoff is exponential with jitter drawn from an injected seed, and bounded
//! by both an attempt count and a deadline. Each attempt is bounded too
//! (like FoundationDB's 5 s transaction limit): one abandoned before its
//! commit is retried, one abandoned during its commit is an unknown result.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use crate::Error;
use crate::kv::{ErrorClass, Kv, KvError, Txn};

/// A boxed future borrowing the transaction.
pub type TxnFuture<'t, T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send + 't>>;

/// Retry limits. Defaults suit interactive requests.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts before giving up (the first included).
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubles each time.
    pub initial_backoff: Duration,
    /// Cap on one backoff.
    pub max_backoff: Duration,
    /// Give up once this much time has passed since the first attempt.
    pub deadline: Duration,
    /// One attempt that takes longer is abandoned (FoundationDB's own
    /// transaction limit is 5 s): before its commit as a retriable failure,
    /// during it as an unknown result.
    pub attempt_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 20,
            initial_backoff: Duration::from_millis(2),
            max_backoff: Duration::from_millis(500),
            deadline: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(5),
        }
    }
}

/// What a body knows about earlier attempts of the same call.
#[derive(Debug, Clone, Copy, Default)]
pub struct Attempt {
    /// 0 for the first attempt.
    pub number: u32,
    /// An earlier attempt's commit may have succeeded.
    pub after_unknown: bool,
}

/// Counts of one kind of transaction since the process started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxnStats {
    /// Calls (each may take several attempts).
    pub runs: u64,
    /// Attempts after the first (conflicts, unknown results, transient errors).
    pub retries: u64,
    /// Calls that gave up or failed for good.
    pub failures: u64,
}

/// Runs transaction bodies against one store.
#[derive(Debug)]
pub struct Runner {
    pub(crate) kv: std::sync::Arc<dyn Kv>,
    policy: RetryPolicy,
    jitter: Mutex<u64>,
    stats: Mutex<std::collections::BTreeMap<&'static str, TxnStats>>,
}

impl Runner {
    pub fn new(kv: std::sync::Arc<dyn Kv>, policy: RetryPolicy, seed: u64) -> Self {
        Self {
            kv,
            policy,
            jitter: Mutex::new(seed | 1),
            stats: Mutex::default(),
        }
    }

    /// Per transaction name, what ran so far (for metrics and benchmarks).
    pub fn stats(&self) -> Vec<(&'static str, TxnStats)> {
        self.stats.lock().iter().map(|(k, v)| (*k, *v)).collect()
    }

    fn count(&self, name: &'static str, f: impl FnOnce(&mut TxnStats)) {
        f(self.stats.lock().entry(name).or_default());
    }

    fn next_jitter(&self) -> f64 {
        let mut s = self.jitter.lock();
        // xorshift64*: deterministic for a given seed.
        *s ^= *s >> 12;
        *s ^= *s << 25;
        *s ^= *s >> 27;
        (s.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Runs `body` in a transaction and commits it, retrying per the policy.
    pub async fn run<T, F>(
        &self,
        name: &'static str,
        read_only: bool,
        mut body: F,
    ) -> Result<T, Error>
    where
        T: Send,
        F: for<'t> FnMut(&'t mut dyn Txn, Attempt) -> TxnFuture<'t, T> + Send,
    {
        let start = Instant::now();
        self.count(name, |s| s.runs += 1);
        let mut attempt = Attempt::default();
        let mut backoff = self.policy.initial_backoff;
        loop {
            let committing = AtomicBool::new(false);
            let bounded = tokio::time::timeout(self.policy.attempt_timeout, async {
                let mut txn = self.kv.begin(read_only).await?;
                let value = body(txn.as_mut(), attempt).await?;
                committing.store(true, Ordering::Relaxed);
                txn.commit().await?;
                Ok::<T, Error>(value)
            })
            .await;
            let result = bounded.unwrap_or_else(|_| {
                let class = if committing.load(Ordering::Relaxed) {
                    ErrorClass::MaybeCommitted
                } else {
                    ErrorClass::Retryable
                };
                let timeout = self.policy.attempt_timeout;
                Err(Error::Kv(KvError::new(
                    class,
                    "runner",
                    format!("attempt timed out after {timeout:?}"),
                )))
            });
            let class = match &result {
                Err(Error::Kv(e)) => e.class,
                _ => return result,
            };
            self.count(name, |s| s.retries += 1);
            attempt.number += 1;
            attempt.after_unknown |= class == ErrorClass::MaybeCommitted;
            let exhausted = attempt.number >= self.policy.max_attempts
                || start.elapsed() + backoff > self.policy.deadline;
            if class == ErrorClass::Fatal || exhausted {
                self.count(name, |s| {
                    s.retries -= 1;
                    s.failures += 1;
                });
                tracing::warn!(
                    txn = name,
                    attempts = attempt.number,
                    ?class,
                    "transaction failed"
                );
                return result;
            }
            tracing::debug!(
                txn = name,
                attempt = attempt.number,
                ?class,
                "retrying transaction"
            );
            let sleep = backoff.mul_f64(0.5 + self.next_jitter());
            tokio::time::sleep(sleep).await;
            backoff = (backoff * 2).min(self.policy.max_backoff);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicU32;

    use super::*;
    use crate::sqlite::SqliteKv;

    /// An attempt that hangs past its bound is abandoned and retried; the
    /// call succeeds on the next attempt.
    #[tokio::test]
    async fn a_hung_attempt_is_abandoned_and_retried() {
        let dir = tempfile::tempdir().unwrap();
        let kv = Arc::new(SqliteKv::open(dir.path().join("m.db")).unwrap());
        let policy = RetryPolicy {
            attempt_timeout: Duration::from_millis(50),
            ..RetryPolicy::default()
        };
        let runner = Runner::new(kv, policy, 1);
        let calls = AtomicU32::new(0);
        let value = runner
            .run("hang_once", true, |_txn, attempt| {
                let first = calls.fetch_add(1, Ordering::Relaxed) == 0;
                Box::pin(async move {
                    if first {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                    Ok(attempt.number)
                })
            })
            .await
            .unwrap();
        assert_eq!(value, 1, "the second attempt answered");
        assert_eq!(runner.stats()[0].1.retries, 1);
    }
}
