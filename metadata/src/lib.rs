//! Silt's metadata: the keyspace ([`keys`], [`values`]) and every transaction
//! on it ([`Metadata`]), written once against the small FoundationDB-shaped
//! interface in [`kv`]. Backends implement only that interface:
//!
//! * [`sqlite`] — the embedded default: one file, WAL, `synchronous=FULL`;
//!   several processes on one host may share it.
//! * `fdb` — FoundationDB (cargo feature `fdb`), the production engine.
//! * [`sim`] — in-process, with FoundationDB's transaction semantics
//!   (versions, conflict ranges, limits, latency): tests and benchmarks.
//! * [`fault`] — wraps any backend and injects conflicts and unknown commit
//!   results, for tests.
//!
//! Invariants (checked by the conformance suite on every backend): offsets of
//! a partition are dense from its log start; a segment is indexed at most
//! once, however often its commit is retried; a commit is acknowledged only
//! when durable in the store; a commit unit is all or nothing, a producer
//! sequence, Kafka batch sequence or idempotency key commits at most once, and a fenced member
//! never moves a group's offsets ([`commit`], [`groups`], [`producers`]).

pub mod archive;
mod catalog;
pub mod commit;
mod error;
pub mod fault;
#[cfg(feature = "fdb")]
pub mod fdb;
pub mod groups;
pub mod keys;
pub mod kv;
mod lease;
pub mod merge;
pub mod producers;
pub mod reclaim;
pub mod retention;
pub mod runner;
pub mod sequences;
pub mod shares;
pub mod sim;
pub mod sqlite;
pub mod values;

use std::sync::Arc;

pub use catalog::{MAX_PARTITIONS, Metadata, ReadPlan, TopicInfo};
pub use commit::{ChunkCommit, CommitOutcome, CommitUnit, Dedup, SegmentCommit, UnitResult};
pub use error::{Error, ErrorKind, Result};
pub use producers::ProducerId;
pub use sequences::KafkaBatch;
pub use values::{Answer, CompressionName, IndexEntry, PartitionState, Refusal, TopicConfig};

/// Opens the store a URL names:
/// * `sqlite:///abs/path/meta.db` (or `sqlite:relative/path.db`);
/// * `fdb:` / `fdb:///path/to/fdb.cluster` (needs the `fdb` feature; the
///   default cluster file applies when no path is given).
pub fn open_kv(url: &str) -> Result<Arc<dyn kv::Kv>> {
    let invalid = |reason: &str| Error::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        if path.is_empty() {
            return Err(invalid("missing database path"));
        }
        return Ok(Arc::new(sqlite::SqliteKv::open(path)?));
    }
    if let Some(rest) = url.strip_prefix("fdb:") {
        let cluster_file = rest.trim_start_matches("//");
        let cluster_file = (!cluster_file.is_empty()).then_some(cluster_file);
        #[cfg(feature = "fdb")]
        return Ok(Arc::new(fdb::FdbKv::open(cluster_file, b"silt")?));
        #[cfg(not(feature = "fdb"))]
        {
            let _ = cluster_file;
            return Err(invalid(
                "this build has no FoundationDB support; rebuild with --features fdb",
            ));
        }
    }
    Err(invalid("unsupported scheme; use sqlite:// or fdb:"))
}
