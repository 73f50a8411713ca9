//! Values of the share-group keys (see `crate::shares`): the group's
//! configuration (JSON, rare), each partition's in-flight window and each
//! tracked record's delivery state (fixed binary, read by every fetch).

use serde::{Deserialize, Serialize};

use super::{Reader, V1, corrupt};
use crate::Result;

/// Which records of a partition a share group may hand out together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShareOrdering {
    /// Any available record, to any worker (the default).
    #[default]
    None,
    /// One record per key at a time, in offset order: a record waits until
    /// every earlier record of its key was accepted or dead-lettered
    /// (RocketMQ's ordered consumption). Records without a key are not
    /// ordered.
    Key,
}

/// Where a share group starts reading a partition it has never read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShareStart {
    #[default]
    Earliest,
    /// The high-watermark when the group first fetches from the partition.
    Latest,
}

/// Redelivery delay after a lease expires: `base · factor^(deliveries-1)`,
/// at most `cap`, spread by ±`jitter` (a fraction).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Backoff {
    pub base_ms: u64,
    pub factor: f64,
    pub cap_ms: u64,
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base_ms: 1_000,
            factor: 2.0,
            cap_ms: 60_000,
            jitter: 0.1,
        }
    }
}

impl Backoff {
    /// The delay before a record delivered `deliveries` times is offered
    /// again; `unit` in `[0, 1)` draws the jitter.
    pub fn delay_ms(&self, deliveries: u16, unit: f64) -> i64 {
        let exp = i32::from(deliveries.saturating_sub(1)).min(64);
        let raw = (self.base_ms as f64) * self.factor.powi(exp);
        let capped = raw.min(self.cap_ms as f64);
        let spread = 1.0 + self.jitter * (2.0 * unit - 1.0);
        (capped * spread).max(0.0).round() as i64
    }
}

/// A subscribed topic, by name and by id (the id keys the windows, so a
/// topic deleted and created again starts afresh).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareTopic {
    pub name: String,
    pub id: u64,
}

/// Value of `ShareGroup(g)`, JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShareGroupRecord {
    pub topics: Vec<ShareTopic>,
    /// Lease of a fetch that names none.
    pub lease_ms: u64,
    /// Deliveries after which a record is dead-lettered instead of offered
    /// again.
    pub max_deliveries: u16,
    pub backoff: Backoff,
    /// Where dead letters go.
    pub dlq_topic: String,
    pub ordering: ShareOrdering,
    pub start: ShareStart,
    /// Most records tracked per partition (leased, waiting out a backoff,
    /// or finished past the window's start): the bound on the group's state.
    pub max_in_flight: u32,
    pub created_ms: i64,
    /// Next offset of each dead-letter partition to replay (`dlq/replay`).
    #[serde(default)]
    pub replayed: Vec<u64>,
}

/// Value of `ShareWindow(g, topic, partition)`:
/// `v1 | start u64 | next u64 | accepted u64 | dead_lettered u64 | redelivered u64`.
/// Every offset below `start` is finished; every offset in `[start, next)`
/// has a `ShareRecord`; no offset from `next` on was ever delivered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShareWindow {
    pub start: u64,
    pub next: u64,
    /// Totals, for the group's description and metrics.
    pub accepted: u64,
    pub dead_lettered: u64,
    /// Deliveries after the first.
    pub redelivered: u64,
}

impl ShareWindow {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![V1];
        for n in [
            self.start,
            self.next,
            self.accepted,
            self.dead_lettered,
            self.redelivered,
        ] {
            v.extend_from_slice(&n.to_be_bytes());
        }
        v
    }

    pub fn decode(b: &[u8]) -> Result<Self> {
        let mut r = Reader(b);
        (|| {
            r.version()?;
            let w = Self {
                start: r.u64()?,
                next: r.u64()?,
                accepted: r.u64()?,
                dead_lettered: r.u64()?,
                redelivered: r.u64()?,
            };
            r.end()?;
            Some(w)
        })()
        .ok_or(corrupt("share window"))
    }
}

/// Where one tracked record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharePhase {
    /// May be leased from `at_ms` on (after a release, an expired lease's
    /// backoff, or at once when first tracked).
    Available { at_ms: i64 },
    /// Leased by the delivery numbered `deliveries` until `until_ms`.
    Leased { until_ms: i64 },
    /// To be copied to the dead-letter topic (the copy is idempotent); the
    /// agent that moved it here does it, another retries after `since_ms`
    /// plus a grace period.
    DeadLettering { since_ms: i64, reason: DeadReason },
    /// Accepted or dead-lettered; removed when the window's start passes.
    Done { accepted: bool },
}

/// Why a record was dead-lettered (the `silt-dlq-reason` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadReason {
    /// A worker rejected it.
    Rejected,
    /// Its last allowed delivery's lease expired or was released.
    MaxDeliveries,
}

impl DeadReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadReason::Rejected => "rejected",
            DeadReason::MaxDeliveries => "max_deliveries",
        }
    }
}

/// Value of `ShareRecord(g, topic, partition, offset)`:
/// `v1 | phase u8 | reason u8 | at_ms i64 | deliveries u16 | key_hash u64 | first_ms i64 | holder u64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShareRecordState {
    pub phase: SharePhase,
    /// Deliveries so far (the current lease is delivery `deliveries`).
    pub deliveries: u16,
    /// A hash of the record's key (0: no key), for key ordering.
    pub key_hash: u64,
    /// When it was first delivered (0: never), for the oldest unacked age.
    pub first_ms: i64,
    /// The nonce of the fetch that leased it last: a retry of that fetch
    /// after an unknown commit result finds its leases again.
    pub holder: u64,
}

impl ShareRecordState {
    pub fn encode(&self) -> Vec<u8> {
        let (tag, reason, at) = match self.phase {
            SharePhase::Available { at_ms } => (0u8, 0u8, at_ms),
            SharePhase::Leased { until_ms } => (1, 0, until_ms),
            SharePhase::DeadLettering { since_ms, reason } => (
                2,
                match reason {
                    DeadReason::Rejected => 0,
                    DeadReason::MaxDeliveries => 1,
                },
                since_ms,
            ),
            SharePhase::Done { accepted } => (3, u8::from(accepted), 0),
        };
        let mut v = vec![V1, tag, reason];
        v.extend_from_slice(&at.to_be_bytes());
        v.extend_from_slice(&self.deliveries.to_be_bytes());
        v.extend_from_slice(&self.key_hash.to_be_bytes());
        v.extend_from_slice(&self.first_ms.to_be_bytes());
        v.extend_from_slice(&self.holder.to_be_bytes());
        v
    }

    pub fn decode(b: &[u8]) -> Result<Self> {
        let mut r = Reader(b);
        (|| {
            r.version()?;
            let (tag, reason, at) = (r.u8()?, r.u8()?, r.i64()?);
            let phase = match (tag, reason) {
                (0, _) => SharePhase::Available { at_ms: at },
                (1, _) => SharePhase::Leased { until_ms: at },
                (2, 0) => SharePhase::DeadLettering {
                    since_ms: at,
                    reason: DeadReason::Rejected,
                },
                (2, 1) => SharePhase::DeadLettering {
                    since_ms: at,
                    reason: DeadReason::MaxDeliveries,
                },
                (3, a) => SharePhase::Done { accepted: a == 1 },
                _ => return None,
            };
            let s = Self {
                phase,
                deliveries: r.u16()?,
                key_hash: r.u64()?,
                first_ms: r.i64()?,
                holder: r.u64()?,
            };
            r.end()?;
            Some(s)
        })()
        .ok_or(corrupt("share record"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        let w = ShareWindow {
            start: 3,
            next: 9,
            accepted: 2,
            dead_lettered: 1,
            redelivered: 4,
        };
        assert_eq!(ShareWindow::decode(&w.encode()).unwrap(), w);
        for phase in [
            SharePhase::Available { at_ms: 5 },
            SharePhase::Leased { until_ms: -1 },
            SharePhase::DeadLettering {
                since_ms: 7,
                reason: DeadReason::MaxDeliveries,
            },
            SharePhase::DeadLettering {
                since_ms: 7,
                reason: DeadReason::Rejected,
            },
            SharePhase::Done { accepted: true },
            SharePhase::Done { accepted: false },
        ] {
            let s = ShareRecordState {
                phase,
                deliveries: 3,
                key_hash: u64::MAX,
                first_ms: 11,
                holder: 12,
            };
            assert_eq!(ShareRecordState::decode(&s.encode()).unwrap(), s);
        }
        assert!(ShareRecordState::decode(&[1, 9]).is_err());
    }

    #[test]
    fn backoff_grows_to_its_cap_within_the_jitter() {
        let b = Backoff::default();
        assert_eq!(b.delay_ms(1, 0.5), 1_000);
        assert_eq!(b.delay_ms(3, 0.5), 4_000);
        assert_eq!(b.delay_ms(30, 0.5), 60_000);
        assert_eq!(b.delay_ms(1, 0.0), 900);
        assert!(b.delay_ms(2, 0.999_999) <= 2_200);
    }
}
