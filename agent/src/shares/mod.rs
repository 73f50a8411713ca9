//! Share groups on the agent: queue semantics (per-record leases, acks,
//! redelivery with backoff, dead letters) for any number of workers on any
//! agents. Every decision is one metadata transaction on one partition's
//! window (`silt_metadata::shares`); this module picks partitions, reads
//! the leased records from the log and copies dead letters.
//!
//! Invariant: a record is handed to a worker only with a lease committed
//! in metadata, and it leaves the group only by an accept or by a copy in
//! the dead-letter topic (an idempotent produce, keyed by group, topic,
//! partition and offset, made before the record is marked finished).

mod dlq;

pub use dlq::{DLQ_HEADERS, MAX_REPLAY, ShareGroupInfo, SharePartitionInfo};
pub use silt_metadata::values::shares::{Backoff, ShareOrdering, ShareStart};

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::time::Instant;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use silt_metadata::shares::{Ack, AckKind, Acquire, DeadLetter, NewKeys, WindowView};
use silt_metadata::values::shares::{ShareGroupRecord, ShareTopic};
use silt_segment::Record;

use crate::reader::Limits;
use crate::{Agent, Error, Result, TopicInfo};

/// Most records one share fetch returns.
pub const MAX_SHARE_FETCH_RECORDS: usize = 1_000;
/// Bounds on a lease.
pub const MIN_LEASE_MS: u64 = 100;
pub const MAX_LEASE_MS: u64 = 3_600_000;
/// Most deliveries one acks call names.
pub const MAX_ACKS: usize = 10_000;
/// Longest long-poll of a share fetch.
pub const MAX_SHARE_WAIT: Duration = Duration::from_secs(30);
/// How often a waiting fetch looks again for leases that expired or
/// backoffs that ended (new records wake it at once).
const RECHECK: Duration = Duration::from_millis(200);
/// Record bytes one fetch reads at most (soft: one record always fits).
const FETCH_BYTES: usize = 8 << 20;

/// A share group as asked for; `None` fields take the defaults.
#[derive(Debug, Clone, Default)]
pub struct ShareGroupSpec {
    pub topics: Vec<String>,
    pub lease_ms: Option<u64>,
    pub max_deliveries: Option<u16>,
    pub backoff: Option<Backoff>,
    pub dlq_topic: Option<String>,
    pub ordering: ShareOrdering,
    pub start: ShareStart,
    pub max_in_flight: Option<u32>,
}

/// One delivery of one record to a worker; `id` names it in acks.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: DeliveryId,
    pub topic: String,
    pub lease_until_ms: i64,
    pub record: Record,
}

/// Names a delivery: the record and the delivery's number. Printed as
/// `topic_id-partition-offset-delivery`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeliveryId {
    pub topic_id: u64,
    pub partition: u32,
    pub offset: u64,
    pub deliveries: u16,
}

impl fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{}-{}-{}",
            self.topic_id, self.partition, self.offset, self.deliveries
        )
    }
}

impl FromStr for DeliveryId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::InvalidArgument(format!("{s:?} is not a delivery id"));
        let mut parts = s.split('-');
        let mut next = || parts.next().ok_or_else(bad);
        let id = DeliveryId {
            topic_id: next()?.parse().map_err(|_| bad())?,
            partition: next()?.parse().map_err(|_| bad())?,
            offset: next()?.parse().map_err(|_| bad())?,
            deliveries: next()?.parse().map_err(|_| bad())?,
        };
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(id)
    }
}

/// A share fetch.
#[derive(Debug, Clone, Copy)]
pub struct ShareFetch {
    pub max_records: usize,
    pub lease_ms: Option<u64>,
    pub wait: Duration,
}

/// What a worker says about its deliveries.
#[derive(Debug, Clone, Default)]
pub struct ShareAcks {
    pub accept: Vec<DeliveryId>,
    pub release: Vec<DeliveryId>,
    pub reject: Vec<DeliveryId>,
    pub extend: Vec<DeliveryId>,
    /// The renewed lease of `extend`; the group's lease when absent.
    pub lease_ms: Option<u64>,
}

/// What acks did: deliveries not applied are stale (the lease passed to
/// another delivery, or the record was already finished).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AckSummary {
    pub applied: usize,
    pub stale: Vec<DeliveryId>,
}

/// A key's hash for key ordering: never 0 (0 means "no key").
fn key_hash(key: Option<&[u8]>) -> u64 {
    key.map_or(0, |k| crate::produce::fingerprint(&[k]) | 1)
}

fn check_lease(lease_ms: u64) -> Result<u64> {
    if (MIN_LEASE_MS..=MAX_LEASE_MS).contains(&lease_ms) {
        Ok(lease_ms)
    } else {
        Err(Error::InvalidArgument(format!(
            "a lease lasts {MIN_LEASE_MS} to {MAX_LEASE_MS} ms"
        )))
    }
}

impl Agent {
    /// Creates a share group over existing topics, and its dead-letter
    /// topic (one partition) unless it exists.
    pub async fn create_share_group(&self, name: &str, spec: ShareGroupSpec) -> Result<()> {
        let inner = &self.inner;
        if spec.topics.is_empty() || spec.topics.len() > silt_metadata::groups::MAX_SUBSCRIPTIONS {
            return Err(Error::InvalidArgument(format!(
                "a share group subscribes to 1 to {} topics",
                silt_metadata::groups::MAX_SUBSCRIPTIONS
            )));
        }
        let backoff = spec.backoff.unwrap_or_default();
        let valid = (1.0..=100.0).contains(&backoff.factor)
            && (0.0..=1.0).contains(&backoff.jitter)
            && backoff.cap_ms >= backoff.base_ms;
        if !valid {
            return Err(Error::InvalidArgument(
                "backoff: factor 1 to 100, jitter 0 to 1, cap_ms at least base_ms".into(),
            ));
        }
        let first = spec.topics[0].clone();
        let dlq_topic = spec.dlq_topic.unwrap_or_else(|| format!("{first}.dlq"));
        if spec.topics.contains(&dlq_topic) {
            return Err(Error::InvalidArgument(
                "a share group cannot subscribe to its own dead-letter topic".into(),
            ));
        }
        let record = ShareGroupRecord {
            topics: spec
                .topics
                .iter()
                .map(|name| ShareTopic {
                    name: name.clone(),
                    id: 0,
                })
                .collect(),
            lease_ms: check_lease(spec.lease_ms.unwrap_or(30_000))?,
            max_deliveries: spec.max_deliveries.unwrap_or(5),
            backoff,
            dlq_topic: dlq_topic.clone(),
            ordering: spec.ordering,
            start: spec.start,
            max_in_flight: spec.max_in_flight.unwrap_or(1_000),
            created_ms: inner.env.now_ms(),
            replayed: Vec::new(),
        };
        match self
            .create_topic(&dlq_topic, 1, silt_metadata::TopicConfig::default())
            .await
        {
            Ok(_) | Err(Error::TopicExists(_)) => {}
            Err(e) => return Err(e),
        }
        inner.md.create_share_group(name, record).await?;
        Ok(())
    }

    pub async fn delete_share_group(&self, name: &str) -> Result<()> {
        Ok(self.inner.md.delete_share_group(name).await?)
    }

    pub async fn list_share_groups(&self, after: Option<&str>) -> Result<Vec<String>> {
        Ok(self
            .inner
            .md
            .list_share_groups(after, silt_metadata::groups::MAX_GROUPS_LISTED)
            .await?)
    }

    pub(crate) async fn share_group(&self, name: &str) -> Result<ShareGroupRecord> {
        self.inner
            .md
            .share_group(name)
            .await?
            .ok_or_else(|| Error::GroupNotFound(name.to_owned()))
    }

    /// The subscribed partitions, for topics that still exist as subscribed
    /// (a topic deleted, or deleted and created again, is skipped).
    async fn share_partitions(&self, g: &ShareGroupRecord) -> Result<Vec<(Arc<TopicInfo>, u32)>> {
        let mut parts = Vec::new();
        for st in &g.topics {
            match self.inner.topics.get(&st.name).await {
                Ok(t) if t.id == st.id => parts.extend((0..t.partitions).map(|p| (t.clone(), p))),
                Ok(_) | Err(Error::TopicNotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(parts)
    }

    /// Leases up to `max_records` records from the group's partitions
    /// (starting at a random one, so workers spread), waiting up to `wait`
    /// when none is available.
    pub async fn share_fetch(&self, name: &str, req: ShareFetch) -> Result<Vec<Delivery>> {
        let inner = &self.inner;
        if !(1..=MAX_SHARE_FETCH_RECORDS).contains(&req.max_records) {
            return Err(Error::InvalidArgument(format!(
                "max_records is 1 to {MAX_SHARE_FETCH_RECORDS}"
            )));
        }
        let g = self.share_group(name).await?;
        let lease_ms = check_lease(req.lease_ms.unwrap_or(g.lease_ms))?;
        let parts = self.share_partitions(&g).await?;
        let deadline = Instant::now() + req.wait.min(MAX_SHARE_WAIT);
        let mut changes = Vec::new();
        loop {
            let mut out = Vec::new();
            let first = (inner.env.random_u64() % parts.len().max(1) as u64) as usize;
            for i in 0..parts.len() {
                if out.len() >= req.max_records {
                    break;
                }
                let (t, p) = &parts[(first + i) % parts.len()];
                let want = req.max_records - out.len();
                self.lease_from(name, &g, t, *p, want, lease_ms, &mut out)
                    .await?;
            }
            if !out.is_empty() || Instant::now() >= deadline || inner.shutdown.is_cancelled() {
                return Ok(out);
            }
            if changes.is_empty() {
                // Subscribe, then look again: no commit can fall in between.
                changes = parts
                    .iter()
                    .map(|(t, p)| inner.notifier.subscribe(t.id, *p))
                    .collect();
                continue;
            }
            let wake = futures::future::select_all(
                changes
                    .iter_mut()
                    .map(|rx| rx.changed().map(|_| ()).boxed()),
            );
            tokio::select! {
                _ = wake => {}
                () = tokio::time::sleep(RECHECK.min(deadline - Instant::now())) => {}
                () = inner.shutdown.cancelled() => {}
            }
        }
    }

    /// One lease transaction on one partition; appends what it leased.
    #[allow(clippy::too_many_arguments)]
    async fn lease_from(
        &self,
        name: &str,
        g: &ShareGroupRecord,
        t: &Arc<TopicInfo>,
        p: u32,
        want: usize,
        lease_ms: u64,
        out: &mut Vec<Delivery>,
    ) -> Result<()> {
        let inner = &self.inner;
        // Key ordering needs the keys of records past the window first.
        let mut known: HashMap<u64, Record> = HashMap::new();
        let keys = if g.ordering == ShareOrdering::Key {
            let from = match inner.md.share_window(name, t.id, p).await? {
                Some(w) => w.next,
                None => {
                    let state = inner.md.partition_state(t.id, p).await?.unwrap_or_default();
                    match g.start {
                        ShareStart::Earliest => state.log_start_offset,
                        ShareStart::Latest => state.high_watermark,
                    }
                }
            };
            let limits = Limits {
                max_records: want.min(g.max_in_flight as usize),
                max_bytes: FETCH_BYTES,
            };
            let read = inner.reader.read(t.id, p, from, limits).await?;
            let records = read.map(|(_, r)| r).unwrap_or_default();
            let mut hashes = Vec::with_capacity(records.len());
            for r in records {
                // Dense from `from`: a gap would misplace every later hash.
                if r.offset != from + hashes.len() as u64 {
                    break;
                }
                hashes.push(key_hash(r.record.key.as_deref()));
                known.insert(r.offset, r.record);
            }
            Some(NewKeys { from, hashes })
        } else {
            None
        };
        let acquired = inner
            .md
            .share_acquire(
                name,
                t.id,
                p,
                Acquire {
                    max: want,
                    lease_ms: lease_ms as i64,
                    now_ms: inner.env.now_ms(),
                    seed: inner.env.random_u64(),
                    keys,
                },
            )
            .await?;
        let available = acquired.view.waiting
            + acquired
                .high_watermark
                .saturating_sub(acquired.view.window.next);
        self.record_window(name, &t.name, &acquired.view, Some(available));
        if !acquired.dead.is_empty() {
            self.dead_letter(name, g, t, p, &acquired.dead).await;
        }
        if acquired.leases.is_empty() {
            return Ok(());
        }
        let offsets: Vec<u64> = acquired.leases.iter().map(|l| l.offset).collect();
        let mut records = self.read_offsets(t, p, &offsets, known).await?;
        let before = out.len();
        for lease in acquired.leases {
            // A record retention removed meanwhile is gone for every reader:
            // its lease expires and the window passes it.
            let Some(record) = records.remove(&lease.offset) else {
                continue;
            };
            out.push(Delivery {
                id: DeliveryId {
                    topic_id: t.id,
                    partition: p,
                    offset: lease.offset,
                    deliveries: lease.deliveries,
                },
                topic: t.name.clone(),
                lease_until_ms: lease.until_ms,
                record,
            });
        }
        let delivered = (out.len() - before) as u64;
        inner.metrics.share_deliveries.inc_by(delivered);
        inner
            .metrics
            .count_topic(&t.name, crate::metrics::Traffic::Fetch, delivered);
        Ok(())
    }

    /// The records at `offsets` (ascending) of one partition, reading runs
    /// of neighbours at once; `known` ones are not read again.
    pub(crate) async fn read_offsets(
        &self,
        t: &TopicInfo,
        p: u32,
        offsets: &[u64],
        mut known: HashMap<u64, Record>,
    ) -> Result<BTreeMap<u64, Record>> {
        let mut out = BTreeMap::new();
        let mut i = 0;
        while i < offsets.len() {
            let o = offsets[i];
            if let Some(r) = known.remove(&o) {
                out.insert(o, r);
                i += 1;
                continue;
            }
            let last = offsets[offsets.len() - 1];
            let limits = Limits {
                max_records: ((last - o + 1) as usize).min(MAX_SHARE_FETCH_RECORDS),
                max_bytes: FETCH_BYTES,
            };
            let read = self.inner.reader.read(t.id, p, o, limits).await?;
            let records = read.map(|(_, r)| r).unwrap_or_default();
            let mut reached = o;
            for r in records {
                reached = r.offset;
                if offsets[i..].binary_search(&r.offset).is_ok() {
                    out.insert(r.offset, r.record);
                }
            }
            // Past everything this read covered (at least `o` itself).
            while i < offsets.len() && offsets[i] <= reached {
                i += 1;
            }
        }
        Ok(out)
    }

    /// Applies a worker's acks; copies the records it rejected (or
    /// released on their last delivery) to the dead-letter topic.
    pub async fn share_ack(&self, name: &str, acks: ShareAcks) -> Result<AckSummary> {
        let inner = &self.inner;
        let total = acks.accept.len() + acks.release.len() + acks.reject.len() + acks.extend.len();
        if total > MAX_ACKS {
            return Err(Error::InvalidArgument(format!(
                "at most {MAX_ACKS} deliveries per call"
            )));
        }
        let g = self.share_group(name).await?;
        let lease_ms = check_lease(acks.lease_ms.unwrap_or(g.lease_ms))?;
        let mut by_partition: BTreeMap<(u64, u32), Vec<(DeliveryId, AckKind)>> = BTreeMap::new();
        for (ids, kind) in [
            (&acks.accept, AckKind::Accept),
            (&acks.release, AckKind::Release),
            (&acks.reject, AckKind::Reject),
            (&acks.extend, AckKind::Extend),
        ] {
            for id in ids {
                by_partition
                    .entry((id.topic_id, id.partition))
                    .or_default()
                    .push((*id, kind));
            }
        }
        let mut summary = AckSummary::default();
        for ((topic_id, p), items) in by_partition {
            let list: Vec<Ack> = items
                .iter()
                .map(|(id, kind)| Ack {
                    offset: id.offset,
                    deliveries: id.deliveries,
                    kind: *kind,
                })
                .collect();
            let out = inner
                .md
                .share_ack(
                    name,
                    topic_id,
                    p,
                    &list,
                    inner.env.now_ms(),
                    lease_ms as i64,
                )
                .await?;
            for ((id, kind), applied) in items.iter().zip(&out.applied) {
                if *applied {
                    summary.applied += 1;
                    inner
                        .metrics
                        .share_acks
                        .get_or_create(&kind_label(*kind))
                        .inc();
                } else {
                    summary.stale.push(*id);
                    inner.metrics.share_acks.get_or_create(&stale_label()).inc();
                }
            }
            if let Some(st) = g.topics.iter().find(|t| t.id == topic_id) {
                self.record_window(name, &st.name, &out.view, None);
            }
            if !out.dead.is_empty() {
                if let Some(t) = self.share_topic(&g, topic_id).await? {
                    self.dead_letter(name, &g, &t, p, &out.dead).await;
                }
            }
        }
        Ok(summary)
    }

    /// Exports a window as this agent just saw it.
    pub(super) fn record_window(
        &self,
        group: &str,
        topic: &str,
        v: &WindowView,
        available: Option<u64>,
    ) {
        let m = &self.inner.metrics;
        let labels = vec![
            ("group".to_owned(), group.to_owned()),
            ("topic".to_owned(), topic.to_owned()),
            ("partition".to_owned(), v.partition.to_string()),
        ];
        let set = |f: &Family<Vec<(String, String)>, Gauge>, n: u64| {
            f.get_or_create(&labels)
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        };
        if let Some(a) = available {
            set(&m.share_available, a);
        }
        set(&m.share_leased, v.leased);
        set(&m.share_accepted, v.window.accepted);
        set(&m.share_dead_lettered, v.window.dead_lettered);
        set(&m.share_redelivered, v.window.redelivered);
        let age = v
            .oldest_unacked_ms
            .map_or(0, |t| (self.inner.env.now_ms() - t).max(0));
        m.share_oldest_unacked_ms.get_or_create(&labels).set(age);
    }

    /// The subscribed topic with this id, if it still exists.
    async fn share_topic(&self, g: &ShareGroupRecord, id: u64) -> Result<Option<Arc<TopicInfo>>> {
        let Some(st) = g.topics.iter().find(|t| t.id == id) else {
            return Ok(None);
        };
        match self.inner.topics.get(&st.name).await {
            Ok(t) if t.id == id => Ok(Some(t)),
            Ok(_) | Err(Error::TopicNotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Copies dead letters, then marks them finished. Failures are logged:
    /// the records stay dead-lettering, and the next fetch that looks at
    /// the partition after the grace period copies them again (the copy is
    /// idempotent).
    async fn dead_letter(
        &self,
        name: &str,
        g: &ShareGroupRecord,
        t: &Arc<TopicInfo>,
        p: u32,
        dead: &[DeadLetter],
    ) {
        if let Err(e) = self.copy_dead_letters(name, g, t, p, dead).await {
            tracing::warn!(group = name, topic = %t.name, partition = p, error = %e,
                "dead letters not copied yet; a later fetch retries");
        }
    }
}

fn kind_label(kind: AckKind) -> Vec<(String, String)> {
    let k = match kind {
        AckKind::Accept => "accept",
        AckKind::Release => "release",
        AckKind::Reject => "reject",
        AckKind::Extend => "extend",
    };
    vec![("kind".into(), k.into())]
}

fn stale_label() -> Vec<(String, String)> {
    vec![("kind".into(), "stale".into())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_ids_round_trip_and_reject_garbage() {
        let id = DeliveryId {
            topic_id: 7,
            partition: 3,
            offset: 99,
            deliveries: 2,
        };
        assert_eq!(id.to_string().parse::<DeliveryId>().unwrap(), id);
        for bad in ["", "1-2-3", "1-2-3-4-5", "a-2-3-4", "1-2-3-70000"] {
            assert!(bad.parse::<DeliveryId>().is_err(), "{bad}");
        }
        assert_eq!(key_hash(None), 0);
        assert_ne!(key_hash(Some(b"")), 0);
    }
}
