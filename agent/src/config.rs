//! Agent configuration: plain data with defaults; each field says what it
//! trades off. The binary fills it from flags and environment variables.

use std::time::Duration;

/// Tuning of one agent.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Longest a produced record waits for its segment to be flushed. Lower
    /// means lower produce latency, but more, smaller objects (more PUTs,
    /// more metadata commits, higher cost per byte on S3).
    pub flush_interval: Duration,
    /// Group commit: cut a segment as soon as an upload slot is free rather
    /// than waiting out `flush_interval` (see `batcher`). Off, every segment
    /// waits for the interval or `flush_bytes`: fewer, larger objects at
    /// light load, at the cost of latency.
    pub group_commit: bool,
    /// Flush as soon as this many bytes are buffered. Larger segments cost
    /// fewer requests per byte; smaller ones bound latency under load.
    pub flush_bytes: usize,
    /// Segments uploading at once. More overlaps PUT latency (useful on S3);
    /// commits stay in creation order regardless.
    pub max_concurrent_flushes: usize,
    /// Bytes of produced records held in memory (buffered or being flushed).
    /// Past it, produce answers 429 with Retry-After instead of growing.
    pub max_inflight_bytes: usize,
    /// Bytes of segment chunks kept in the read cache. More memory, fewer
    /// GETs for consumers reading near the tail or re-reading.
    pub cache_bytes: usize,
    /// How long a topic lookup is cached. Another agent's topic deletion is
    /// seen within this delay (produce to it fails at commit regardless).
    pub topic_cache_ttl: Duration,
    /// Records in one Kafka batch are capped at about this many bytes
    /// (uncompressed); bigger batches compress better, smaller ones let a
    /// fetch decode less than it returns.
    pub batch_target_bytes: usize,
    /// Bound on a batch's decompressed size when reading (guards against
    /// corrupt or hostile objects).
    pub max_decompressed_batch: usize,
    /// How long an `Idempotency-Key` is remembered: a retry within it gets
    /// the original answer; after it the key is free again.
    pub idempotency_window: Duration,
    /// Send segment commits through the elected sequencer (see
    /// [`crate::sequencer`]): no conflicts between agents committing to the
    /// same partitions, at the cost of one hop. Off, every agent commits
    /// its own segments.
    pub sequencer: bool,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            flush_interval: Duration::from_millis(20),
            group_commit: true,
            flush_bytes: 8 << 20,
            max_concurrent_flushes: 4,
            max_inflight_bytes: 256 << 20,
            cache_bytes: 256 << 20,
            topic_cache_ttl: Duration::from_secs(5),
            batch_target_bytes: 256 << 10,
            max_decompressed_batch: 64 << 20,
            idempotency_window: Duration::from_secs(24 * 3600),
            sequencer: true,
        }
    }
}
