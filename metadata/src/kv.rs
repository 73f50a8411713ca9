//! The FoundationDB-shaped interface every backend implements, and nothing
//! more: ordered byte keys, (snapshot) point and range reads, buffered writes,
//! one atomic commit, and watches.
//!
//! Contract every backend honours (the conformance suite checks it):
//! * a transaction sees its own writes and a consistent snapshot of the rest;
//! * `commit` is atomic, and serializable with respect to the non-snapshot
//!   reads the transaction made;
//! * a dropped, uncommitted transaction leaves no trace;
//! * errors are *classified* ([`ErrorClass`]) by the backend, so the runner
//!   never guesses whether retrying is safe.

use std::fmt;

use async_trait::async_trait;

/// A key and its value, as returned by range reads.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// What a failure means for the transaction that met it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Another transaction won: nothing was committed; retry from scratch.
    Conflict,
    /// The commit may or may not have happened (FoundationDB's
    /// `commit_unknown_result`): retry only if the body is idempotent.
    MaybeCommitted,
    /// A transient failure (timeout, busy, too old): nothing was committed.
    Retryable,
    /// Retrying cannot help (I/O error, corrupt store, misuse).
    Fatal,
}

/// A classified backend error.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{backend} {class:?}: {message}")]
pub struct KvError {
    pub class: ErrorClass,
    pub backend: &'static str,
    pub message: String,
}

impl KvError {
    pub fn new(class: ErrorClass, backend: &'static str, message: impl fmt::Display) -> Self {
        Self {
            class,
            backend,
            message: message.to_string(),
        }
    }
}

/// One transaction. Writes are buffered until `commit`.
#[async_trait]
pub trait Txn: Send {
    /// Reads one key. A snapshot read adds no conflict range.
    async fn get(&mut self, key: &[u8], snapshot: bool) -> Result<Option<Vec<u8>>, KvError>;

    /// Reads several keys, as [`Txn::get`] each. Backends with a network
    /// round trip per read (FoundationDB) issue them all at once.
    async fn get_many(
        &mut self,
        keys: &[Vec<u8>],
        snapshot: bool,
    ) -> Result<Vec<Option<Vec<u8>>>, KvError> {
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            out.push(self.get(k, snapshot).await?);
        }
        Ok(out)
    }

    /// Reads keys in `[begin, end)`, in key order (or reverse), at most `limit`.
    async fn get_range(
        &mut self,
        begin: &[u8],
        end: &[u8],
        limit: usize,
        reverse: bool,
        snapshot: bool,
    ) -> Result<Vec<KeyValue>, KvError>;

    fn set(&mut self, key: &[u8], value: &[u8]);
    fn clear(&mut self, key: &[u8]);
    /// Clears every key in `[begin, end)`.
    fn clear_range(&mut self, begin: &[u8], end: &[u8]);

    /// Commits atomically. A read-only transaction commits trivially.
    async fn commit(self: Box<Self>) -> Result<(), KvError>;
}

/// A transactional ordered key-value store.
#[async_trait]
pub trait Kv: Send + Sync + fmt::Debug + 'static {
    /// Starts a transaction. `read_only` lets a backend serve it from a
    /// snapshot without taking write locks.
    async fn begin(&self, read_only: bool) -> Result<Box<dyn Txn>, KvError>;

    /// Resolves once the value of `key` differs from `seen` (immediately if it
    /// already does). Wakes for commits made by *any* process sharing the
    /// store. Cancel by dropping the future.
    async fn watch(&self, key: &[u8], seen: Option<&[u8]>) -> Result<(), KvError>;

    /// The backend's name, for logs and metrics.
    fn backend(&self) -> &'static str;
}
