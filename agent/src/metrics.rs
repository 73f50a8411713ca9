//! Prometheus metrics of the data plane, registered into the process
//! registry that `/metrics` encodes.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Data-plane metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub produce_records: Counter,
    pub produce_bytes: Counter,
    /// By reason: `overloaded`, `shutting_down`.
    pub produce_rejected: Family<Vec<(String, String)>, Counter>,
    pub inflight_bytes: Gauge,
    pub segments_flushed: Counter,
    pub segment_bytes: Counter,
    pub flush_failures: Counter,
    /// Seconds from the first record buffered to offsets committed.
    pub flush_seconds: Histogram,
    pub put_seconds: Histogram,
    pub commit_seconds: Histogram,
    /// Segment commits by route: `local` (this agent is the sequencer),
    /// `remote` (sent to it), `direct` (no sequencer), `fallback` (the
    /// sequenced path failed; committed directly).
    pub segment_commits: Family<Vec<(String, String)>, Counter>,
    /// Segments per sequenced transaction (this agent as the sequencer).
    pub sequencer_batch_segments: Histogram,
    pub fetch_records: Counter,
    /// Per topic and direction (`op`: `produce`, `fetch`): records through
    /// this agent. See [`Metrics::count_topic`].
    pub topic_records: Family<TopicTraffic, Counter>,
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    /// Chunks read back damaged (bad checksum or length); each is read again.
    pub corrupt_chunks: Counter,
    /// Membership changes (joins, leaves) this agent carried out.
    pub group_rebalances: Counter,
    /// Offset commits accepted (alone; transactions count as produce).
    pub group_commits: Counter,
    /// Retried requests answered from a stored answer instead of written again.
    pub produce_duplicates: Counter,
    /// Per consumer group, topic and partition: high-watermark minus the
    /// committed offset, set by each offset commit this agent carries out.
    pub group_lag_records: Family<Vec<(String, String)>, Gauge>,
    /// Records leased to share-group workers (every delivery counts).
    pub share_deliveries: Counter,
    /// Share-group acknowledgements, by kind: `accept`, `release`,
    /// `reject`, `extend`, or `stale` (refused: the lease had passed on).
    pub share_acks: Family<Vec<(String, String)>, Counter>,
    /// Records copied to dead-letter topics.
    pub share_dead_letters: Counter,
    /// Per share group, topic and partition, as this agent last saw the
    /// window (take the max across agents): records available (never
    /// delivered, or waiting out a backoff), leased, accepted,
    /// dead-lettered, redelivered (totals) and the oldest unacked age.
    pub share_available: Family<Vec<(String, String)>, Gauge>,
    pub share_leased: Family<Vec<(String, String)>, Gauge>,
    pub share_accepted: Family<Vec<(String, String)>, Gauge>,
    pub share_dead_lettered: Family<Vec<(String, String)>, Gauge>,
    pub share_redelivered: Family<Vec<(String, String)>, Gauge>,
    pub share_oldest_unacked_ms: Family<Vec<(String, String)>, Gauge>,
}

fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self {
            produce_records: Counter::default(),
            produce_bytes: Counter::default(),
            produce_rejected: Family::default(),
            inflight_bytes: Gauge::default(),
            segments_flushed: Counter::default(),
            segment_bytes: Counter::default(),
            flush_failures: Counter::default(),
            flush_seconds: latency(),
            put_seconds: latency(),
            commit_seconds: latency(),
            segment_commits: Family::default(),
            sequencer_batch_segments: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            fetch_records: Counter::default(),
            topic_records: Family::default(),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            corrupt_chunks: Counter::default(),
            group_rebalances: Counter::default(),
            group_commits: Counter::default(),
            produce_duplicates: Counter::default(),
            group_lag_records: Family::default(),
            share_deliveries: Counter::default(),
            share_acks: Family::default(),
            share_dead_letters: Counter::default(),
            share_available: Family::default(),
            share_leased: Family::default(),
            share_accepted: Family::default(),
            share_dead_lettered: Family::default(),
            share_redelivered: Family::default(),
            share_oldest_unacked_ms: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("silt");
        r.register(
            "group_lag_records",
            "Consumer-group lag (high-watermark minus committed offset) at its last commit here, per partition",
            m.group_lag_records.clone(),
        );
        r.register(
            "share_deliveries",
            "Records leased to share-group workers",
            m.share_deliveries.clone(),
        );
        r.register(
            "share_acks",
            "Share-group acknowledgements, by kind (stale: refused)",
            m.share_acks.clone(),
        );
        r.register(
            "share_dead_letters",
            "Records copied to dead-letter topics",
            m.share_dead_letters.clone(),
        );
        for (name, help, family) in [
            (
                "share_available",
                "Share-group records available (never delivered or in backoff), per partition",
                &m.share_available,
            ),
            (
                "share_leased",
                "Share-group records leased now, per partition",
                &m.share_leased,
            ),
            (
                "share_accepted",
                "Share-group records accepted (total), per partition",
                &m.share_accepted,
            ),
            (
                "share_dead_lettered",
                "Share-group records dead-lettered (total), per partition",
                &m.share_dead_lettered,
            ),
            (
                "share_redelivered",
                "Share-group deliveries after the first (total), per partition",
                &m.share_redelivered,
            ),
            (
                "share_oldest_unacked_ms",
                "Age of the oldest delivered, unfinished share-group record, per partition",
                &m.share_oldest_unacked_ms,
            ),
        ] {
            r.register(name, help, family.clone());
        }
        r.register(
            "produce_records",
            "Records acknowledged to producers",
            m.produce_records.clone(),
        );
        r.register(
            "produce_bytes",
            "Record bytes acknowledged to producers",
            m.produce_bytes.clone(),
        );
        r.register(
            "produce_rejected",
            "Produce requests refused, by reason",
            m.produce_rejected.clone(),
        );
        r.register(
            "inflight_bytes",
            "Produced bytes buffered or being flushed",
            m.inflight_bytes.clone(),
        );
        r.register(
            "segments_flushed",
            "Segment objects written and committed",
            m.segments_flushed.clone(),
        );
        r.register(
            "segment_bytes",
            "Bytes of segment objects written",
            m.segment_bytes.clone(),
        );
        r.register(
            "flush_failures",
            "Flushes that failed (producers got an error)",
            m.flush_failures.clone(),
        );
        r.register(
            "flush_seconds",
            "First buffered record to offsets committed",
            m.flush_seconds.clone(),
        );
        r.register("put_seconds", "Segment PUT latency", m.put_seconds.clone());
        r.register(
            "commit_seconds",
            "Offset-assigning metadata commit latency",
            m.commit_seconds.clone(),
        );
        r.register(
            "segment_commits",
            "Segment commits by route (local, remote: sequenced; direct; fallback: sequenced path failed)",
            m.segment_commits.clone(),
        );
        r.register(
            "sequencer_batch_segments",
            "Segments per sequenced metadata transaction",
            m.sequencer_batch_segments.clone(),
        );
        r.register(
            "fetch_records",
            "Records returned to consumers",
            m.fetch_records.clone(),
        );
        r.register(
            "topic_records",
            "Records produced and fetched through this agent, per topic (op: produce, fetch)",
            m.topic_records.clone(),
        );
        r.register("cache_hits", "Read-cache hits", m.cache_hits.clone());
        r.register(
            "cache_misses",
            "Read-cache misses (ranged GETs)",
            m.cache_misses.clone(),
        );
        r.register(
            "corrupt_chunks",
            "Chunks read back with a bad checksum or length (never served)",
            m.corrupt_chunks.clone(),
        );
        r.register(
            "group_rebalances",
            "Consumer group joins and leaves (each starts a new generation)",
            m.group_rebalances.clone(),
        );
        r.register(
            "group_commits",
            "Consumer group offset commits accepted",
            m.group_commits.clone(),
        );
        r.register(
            "produce_duplicates",
            "Retried produce requests answered with their original offsets (idempotent producers, Idempotency-Key)",
            m.produce_duplicates.clone(),
        );
        m
    }
}

/// A direction of [`Metrics::topic_records`].
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Traffic {
    /// Records acknowledged to producers.
    Produce,
    /// Records answered to consumers: fetches (HTTP, Kafka, group members)
    /// and share-group deliveries.
    Fetch,
}

impl EncodeLabelValue for Traffic {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder,
    ) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        encoder.write_str(match self {
            Traffic::Produce => "produce",
            Traffic::Fetch => "fetch",
        })
    }
}

/// Labels of [`Metrics::topic_records`].
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicTraffic {
    pub topic: String,
    pub op: Traffic,
}

impl Metrics {
    /// Counts `records` produced to or fetched from `topic` through this
    /// agent.
    pub fn count_topic(&self, topic: &str, op: Traffic, records: u64) {
        if records == 0 {
            return;
        }
        let labels = TopicTraffic {
            topic: topic.to_owned(),
            op,
        };
        self.topic_records.get_or_create(&labels).inc_by(records);
    }

    /// Forgets a deleted topic's traffic series (on the agent that deleted
    /// it; others keep theirs until they restart).
    pub fn forget_topic(&self, topic: &str) {
        for op in [Traffic::Produce, Traffic::Fetch] {
            self.topic_records.remove(&TopicTraffic {
                topic: topic.to_owned(),
                op,
            });
        }
    }
}

/// Metadata transactions by name — runs, retries (conflicts, unknown
/// results, transient errors, abandoned attempts) and failures — read from
/// the metadata store's own counters at each scrape.
#[derive(Debug)]
pub struct MetadataTransactions(pub std::sync::Arc<silt_metadata::Metadata>);

impl prometheus_client::collector::Collector for MetadataTransactions {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::MetricType;
        use prometheus_client::metrics::counter::ConstCounter;
        type Pick = fn(&silt_metadata::runner::TxnStats) -> u64;
        let stats = self.0.transaction_stats();
        let series: [(&str, &str, Pick); 3] = [
            ("metadata_transactions", "Metadata transactions run", |s| {
                s.runs
            }),
            (
                "metadata_transaction_retries",
                "Metadata transaction attempts after the first (conflicts, unknown results, transient errors, timeouts)",
                |s| s.retries,
            ),
            (
                "metadata_transaction_failures",
                "Metadata transactions that gave up or failed for good",
                |s| s.failures,
            ),
        ];
        for (name, help, pick) in series {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (txn, s) in &stats {
                let labels = [("txn", *txn)];
                ConstCounter::new(pick(s)).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
