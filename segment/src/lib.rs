//! Silt's object formats, shared by the agent and the compactor.
//!
//! * [`batch`] — Kafka v2 record batches (magic 2, CRC-32C, every Kafka codec).
//!   A batch is stored with a base offset *relative to its chunk*; readers add
//!   the chunk's absolute base offset, which Kafka's CRC does not cover, so the
//!   bytes stay valid Kafka batches after patching.
//! * [`produced`] — batches as Kafka producers send them, checked before
//!   they are stored as they are.
//! * [`segment`] — one segment object: per-(topic, partition) chunks of
//!   batches, then a footer indexing the chunks, then a fixed trailer.
//! * [`store`] — object storage chosen by URL (`file://`, `memory://`, `s3://`),
//!   with fsync-on-put for local directories so that an acknowledged segment
//!   survives a power cut.
//!
//! Every decoder returns [`Error`] on corrupt or truncated input; none panics.

pub mod batch;
pub mod compression;
mod error;
pub mod latency;
#[cfg(feature = "parquet")]
pub mod parquet;
pub mod produced;
pub mod segment;
pub mod store;
mod varint;

pub use batch::{Header, Record};
pub use compression::Compression;
pub use error::{Error, Reason, Result};
