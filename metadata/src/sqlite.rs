//! The embedded backend: one SQLite file in WAL mode, shareable by several
//! processes on one host.
//!
//! * Write transactions run inside `BEGIN IMMEDIATE`: writers are serialized
//!   (in-process by a semaphore, across processes by SQLite's lock), so every
//!   write transaction is trivially serializable and never conflicts; a lock
//!   wait beyond `busy_timeout` is classified `Retryable`.
//! * Read-only transactions use `BEGIN DEFERRED`: a consistent WAL snapshot
//!   that never blocks or is blocked by writers.
//! * `synchronous=FULL`: a commit returns only after the WAL is fsynced.
//! * Watches: SQLite has no notifications, so one thread polls
//!   `PRAGMA data_version` (which changes whenever *another* connection,
//!   of any process, commits) every [`POLL_INTERVAL`] while someone watches,
//!   and sleeps otherwise. Watchers then re-read their key.
//!
//! Blocking SQLite calls run on tokio's blocking pool, never on the runtime.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::Thread;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use rusqlite::{Connection, ErrorCode, OpenFlags, params};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::kv::{ErrorClass, KeyValue, Kv, KvError, Txn};

const BACKEND: &str = "sqlite";
/// How often watchers' store is polled for commits by other connections.
pub const POLL_INTERVAL: Duration = Duration::from_millis(2);
const READERS: usize = 4;

fn classify(e: rusqlite::Error) -> KvError {
    let class = match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => ErrorClass::Retryable,
        // A full disk or a failing write clears up when space or the device
        // returns: the client should retry (503), never drop its data.
        Some(ErrorCode::DiskFull | ErrorCode::SystemIoFailure) => ErrorClass::Retryable,
        _ => ErrorClass::Fatal,
    };
    KvError::new(class, BACKEND, e)
}

fn open_conn(path: &Path) -> Result<Connection, KvError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(classify)?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(classify)?;
    conn.execute_batch(
        "PRAGMA journal_mode=WAL;
         PRAGMA synchronous=FULL;
         CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;",
    )
    .map_err(classify)?;
    Ok(conn)
}

/// A bounded set of connections, opened lazily.
#[derive(Debug)]
struct Pool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

impl Pool {
    fn new(path: PathBuf, size: usize) -> Self {
        Self {
            path,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(size)),
        }
    }

    async fn lease(self: &Arc<Self>) -> Result<Lease, KvError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| KvError::new(ErrorClass::Fatal, BACKEND, "pool closed"))?;
        let idle = self.idle.lock().pop();
        let conn = match idle {
            Some(c) => c,
            None => {
                let path = self.path.clone();
                run_blocking(move || open_conn(&path)).await?
            }
        };
        Ok(Lease {
            conn: Some(conn),
            pool: self.clone(),
            _permit: permit,
        })
    }
}

#[derive(Debug)]
struct Lease {
    conn: Option<Connection>,
    pool: Arc<Pool>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            self.pool.idle.lock().push(c);
        }
    }
}

async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, KvError> + Send + 'static,
) -> Result<T, KvError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| KvError::new(ErrorClass::Fatal, BACKEND, e))?
}

/// Polls `data_version` while anyone watches.
#[derive(Debug)]
struct Poller {
    tx: tokio::sync::watch::Sender<u64>,
    thread: Thread,
    stop: Arc<AtomicBool>,
}

impl Poller {
    fn start(path: PathBuf) -> Result<Self, KvError> {
        let conn = open_conn(&path)?;
        let (tx, _) = tokio::sync::watch::channel(0u64);
        let stop = Arc::new(AtomicBool::new(false));
        let (t, s) = (tx.clone(), stop.clone());
        let handle = std::thread::Builder::new()
            .name("silt-sqlite-watch".into())
            .spawn(move || poll_loop(&conn, &t, &s))
            .map_err(|e| KvError::new(ErrorClass::Fatal, BACKEND, e))?;
        Ok(Self {
            tx,
            thread: handle.thread().clone(),
            stop,
        })
    }

    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        let rx = self.tx.subscribe();
        self.thread.unpark();
        rx
    }
}

fn poll_loop(conn: &Connection, tx: &tokio::sync::watch::Sender<u64>, stop: &AtomicBool) {
    let version = || {
        conn.query_row("PRAGMA data_version", [], |r| r.get::<_, i64>(0))
            .ok()
    };
    let mut last = version();
    while !stop.load(Ordering::Acquire) {
        if tx.receiver_count() == 0 {
            std::thread::park_timeout(Duration::from_millis(250));
            continue;
        }
        std::thread::sleep(POLL_INTERVAL);
        let now = version();
        if now != last {
            last = now;
            tx.send_modify(|v| *v += 1);
        }
    }
}

/// The SQLite key-value store.
#[derive(Debug)]
pub struct SqliteKv {
    writers: Arc<Pool>,
    readers: Arc<Pool>,
    poller: Poller,
}

impl SqliteKv {
    /// Opens (creating if needed) the database file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, KvError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| KvError::new(ErrorClass::Fatal, BACKEND, e))?;
        }
        drop(open_conn(&path)?); // create the schema eagerly, surfacing errors now
        Ok(Self {
            writers: Arc::new(Pool::new(path.clone(), 1)),
            readers: Arc::new(Pool::new(path.clone(), READERS)),
            poller: Poller::start(path)?,
        })
    }
}

impl Drop for SqliteKv {
    fn drop(&mut self) {
        self.poller.stop.store(true, Ordering::Release);
        self.poller.thread.unpark();
    }
}

#[async_trait]
impl Kv for SqliteKv {
    async fn begin(&self, read_only: bool) -> Result<Box<dyn Txn>, KvError> {
        let lease = if read_only {
            self.readers.lease().await?
        } else {
            self.writers.lease().await?
        };
        Ok(Box::new(SqliteTxn {
            lease,
            read_only,
            ops: Vec::new(),
            open: false,
        }))
    }

    async fn watch(&self, key: &[u8], seen: Option<&[u8]>) -> Result<(), KvError> {
        let mut changes = self.poller.subscribe();
        loop {
            let mut txn = self.begin(true).await?;
            let now = txn.get(key, true).await?;
            drop(txn);
            if now.as_deref() != seen {
                return Ok(());
            }
            changes
                .changed()
                .await
                .map_err(|_| KvError::new(ErrorClass::Fatal, BACKEND, "watch poller stopped"))?;
        }
    }

    fn backend(&self) -> &'static str {
        BACKEND
    }
}

#[derive(Debug)]
enum Op {
    Set(Vec<u8>, Vec<u8>),
    Clear(Vec<u8>),
    ClearRange(Vec<u8>, Vec<u8>),
}

#[derive(Debug)]
struct SqliteTxn {
    lease: Lease,
    read_only: bool,
    /// Writes not yet applied; applied (inside the open SQLite transaction)
    /// before every read, so reads see them, and at commit.
    ops: Vec<Op>,
    /// A SQLite transaction is open on the connection.
    open: bool,
}

impl SqliteTxn {
    /// Runs `f` on the connection on the blocking pool, first opening the
    /// SQLite transaction and applying buffered writes.
    async fn with_conn<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, KvError> {
        let conn = self.lease.conn.take().ok_or_else(|| {
            KvError::new(
                ErrorClass::Fatal,
                BACKEND,
                "transaction used after a cancelled call",
            )
        })?;
        let begin = match (self.open, self.read_only) {
            (true, _) => None,
            (false, true) => Some("BEGIN DEFERRED"),
            (false, false) => Some("BEGIN IMMEDIATE"),
        };
        let ops = std::mem::take(&mut self.ops);
        let (conn, began, result) = tokio::task::spawn_blocking(move || {
            let mut began = false;
            let r = (|| {
                if let Some(sql) = begin {
                    conn.execute_batch(sql)?;
                    began = true;
                }
                apply(&conn, &ops)?;
                f(&conn)
            })();
            (conn, began, r)
        })
        .await
        .map_err(|e| KvError::new(ErrorClass::Fatal, BACKEND, e))?;
        self.lease.conn = Some(conn);
        // Open as soon as BEGIN succeeded, even if what followed failed: the
        // drop then rolls it back, and the pooled connection is clean for
        // its next user (a failed statement does not end the transaction).
        if began {
            self.open = true;
        }
        result.map_err(classify)
    }
}

fn apply(conn: &Connection, ops: &[Op]) -> rusqlite::Result<()> {
    for op in ops {
        match op {
            Op::Set(k, v) => conn
                .prepare_cached("INSERT OR REPLACE INTO kv (k, v) VALUES (?1, ?2)")?
                .execute(params![k, v])?,
            Op::Clear(k) => conn
                .prepare_cached("DELETE FROM kv WHERE k = ?1")?
                .execute(params![k])?,
            Op::ClearRange(b, e) => conn
                .prepare_cached("DELETE FROM kv WHERE k >= ?1 AND k < ?2")?
                .execute(params![b, e])?,
        };
    }
    Ok(())
}

#[async_trait]
impl Txn for SqliteTxn {
    async fn get(&mut self, key: &[u8], _snapshot: bool) -> Result<Option<Vec<u8>>, KvError> {
        let key = key.to_vec();
        self.with_conn(move |c| {
            let mut st = c.prepare_cached("SELECT v FROM kv WHERE k = ?1")?;
            let mut rows = st.query(params![key])?;
            rows.next()?.map(|r| r.get(0)).transpose()
        })
        .await
    }

    async fn get_range(
        &mut self,
        begin: &[u8],
        end: &[u8],
        limit: usize,
        reverse: bool,
        _snapshot: bool,
    ) -> Result<Vec<KeyValue>, KvError> {
        let (b, e) = (begin.to_vec(), end.to_vec());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with_conn(move |c| {
            let sql = if reverse {
                "SELECT k, v FROM kv WHERE k >= ?1 AND k < ?2 ORDER BY k DESC LIMIT ?3"
            } else {
                "SELECT k, v FROM kv WHERE k >= ?1 AND k < ?2 ORDER BY k ASC LIMIT ?3"
            };
            let mut st = c.prepare_cached(sql)?;
            let rows = st.query_map(params![b, e, limit], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
        .await
    }

    fn set(&mut self, key: &[u8], value: &[u8]) {
        self.ops.push(Op::Set(key.to_vec(), value.to_vec()));
    }

    fn clear(&mut self, key: &[u8]) {
        self.ops.push(Op::Clear(key.to_vec()));
    }

    fn clear_range(&mut self, begin: &[u8], end: &[u8]) {
        self.ops.push(Op::ClearRange(begin.to_vec(), end.to_vec()));
    }

    async fn commit(mut self: Box<Self>) -> Result<(), KvError> {
        if self.read_only && !self.ops.is_empty() {
            return Err(KvError::new(
                ErrorClass::Fatal,
                BACKEND,
                "write in a read-only transaction",
            ));
        }
        if !self.open && self.ops.is_empty() {
            return Ok(());
        }
        self.with_conn(|c| c.execute_batch("COMMIT")).await?;
        self.open = false;
        Ok(())
    }
}

impl Drop for SqliteTxn {
    fn drop(&mut self) {
        if self.open {
            if let Some(c) = &self.lease.conn {
                // Fast (no I/O beyond discarding the WAL frames); keeps the
                // pooled connection clean for its next user.
                if c.execute_batch("ROLLBACK").is_err() {
                    self.lease.conn = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A write transaction whose BEGIN succeeded but whose first statement
    /// failed must not leave its connection inside the transaction: the
    /// next writer would fail until restart.
    #[tokio::test]
    async fn a_failed_first_statement_does_not_poison_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let kv = SqliteKv::open(dir.path().join("meta.db")).unwrap();
        let mut t = SqliteTxn {
            lease: kv.writers.lease().await.unwrap(),
            read_only: false,
            ops: Vec::new(),
            open: false,
        };
        let failed = t
            .with_conn(|c| c.execute_batch("SELECT * FROM no_such_table"))
            .await;
        assert!(failed.is_err());
        drop(t);
        let mut next = kv.begin(false).await.unwrap();
        next.set(b"k", b"v");
        next.commit().await.unwrap();
        let mut r = kv.begin(true).await.unwrap();
        assert_eq!(r.get(b"k", true).await.unwrap().as_deref(), Some(&b"v"[..]));
    }
}
