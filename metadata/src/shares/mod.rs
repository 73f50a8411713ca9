//! Share groups: queue semantics over a log. Any number of workers lease
//! records one by one, accept, release or reject them; a record whose
//! lease expires comes back after a backoff, and one that keeps failing is
//! dead-lettered.
//!
//! Keys: `ShareGroup(g)` (configuration), `ShareWindow(g, topic, p)` (the
//! partition's in-flight window) and `ShareRecord(g, topic, p, offset)` (one
//! tracked record's delivery state).
//!
//! Invariants, each kept by a single transaction on one partition's window:
//! * **Every record finishes exactly once.** Offsets below the window's
//!   `start` are finished (accepted or dead-lettered); each offset in
//!   `[start, next)` has a `ShareRecord`; offsets from `next` on were never
//!   delivered. `start` moves only over finished records, and their records
//!   are removed as it does, so state is bounded by `max_in_flight` however
//!   long the stream runs.
//! * **One lease at a time.** Every transaction that changes a window or
//!   its records reads the window key with a conflicting read and writes
//!   it: that one conflict serialises them, so two concurrent leases of one
//!   record (or of the same new records past `next`) cannot both commit
//!   (the conformance suite's concurrency case fails on the simulated
//!   FoundationDB if the read is made a snapshot read). A delivery is named by its count: an ack for
//!   delivery `n` applies only while the record is leased by delivery `n`
//!   (expired or not, as long as nobody leased it since), so a late ack
//!   from a worker whose lease passed to another is refused as stale.
//! * **Key order** (`ordering: key`): a record is leased only when no
//!   earlier record of its key in the window is unfinished.
//!
//! Expiry is lazy: the transaction that next looks at a partition turns
//! expired leases into records available after their backoff (or into dead
//! letters after `max_deliveries`). Time and the jitter's randomness come
//! from the caller. A lease committed by an attempt whose result was
//! unknown, then leased again by the retry, is simply never acked: it
//! expires and the record is delivered again with a higher count.

mod admin;

use crate::catalog::read_partition;
use crate::keys::{Key, KeyRange};
use crate::kv::Txn;
use crate::values::groups::decode_json;
use crate::values::shares::{
    DeadReason, ShareGroupRecord, ShareOrdering, SharePhase, ShareRecordState, ShareStart,
    ShareWindow,
};
use crate::{Error, Metadata, Result};

/// Longest share group name.
pub const MAX_SHARE_GROUP: usize = 249;
/// Bounds on a share group's window per partition.
pub const MAX_IN_FLIGHT: u32 = 10_000;
/// A record in `DeadLettering` longer than this is copied by whoever looks
/// (its first copier died).
pub const DEAD_LETTER_GRACE_MS: i64 = 10_000;

/// A lease handed to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub offset: u64,
    /// The delivery's number: 1 for the first.
    pub deliveries: u16,
    pub until_ms: i64,
}

/// A record to copy to the dead-letter topic, then finish with
/// [`Metadata::share_dead_lettered`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadLetter {
    pub offset: u64,
    pub deliveries: u16,
    pub reason: DeadReason,
}

/// Key hashes of the records from `from` on, read by the caller before
/// leasing past the window (key ordering needs them).
#[derive(Debug, Clone, Default)]
pub struct NewKeys {
    pub from: u64,
    pub hashes: Vec<u64>,
}

/// A lease request on one partition.
#[derive(Debug, Clone)]
pub struct Acquire {
    pub max: usize,
    pub lease_ms: i64,
    pub now_ms: i64,
    /// Random per call: seeds the backoff jitter of records whose lease
    /// expired, and marks the leases this call takes (so its retry after
    /// an unknown commit result finds them).
    pub seed: u64,
    /// Required to lease past the window under key ordering.
    pub keys: Option<NewKeys>,
}

/// What a lease request got.
#[derive(Debug, Clone, Default)]
pub struct Acquired {
    pub leases: Vec<Lease>,
    pub dead: Vec<DeadLetter>,
    pub window: ShareWindow,
    pub high_watermark: u64,
    /// The window as this transaction left it.
    pub view: WindowView,
}

/// What a worker says about one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckKind {
    Accept,
    /// Available again now (or dead-lettered if it was the last delivery).
    Release,
    Reject,
    /// Renew the lease for `lease_ms` from now.
    Extend,
}

/// One acknowledgement: the delivery `deliveries` of `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub offset: u64,
    pub deliveries: u16,
    pub kind: AckKind,
}

/// What acknowledgements did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AckOutcome {
    /// Acks applied, in request order: `false` for a stale delivery.
    pub applied: Vec<bool>,
    pub dead: Vec<DeadLetter>,
    /// The window as this transaction left it.
    pub view: WindowView,
}

/// A partition's window and what its tracked records are doing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowView {
    pub topic_id: u64,
    pub partition: u32,
    pub window: ShareWindow,
    pub leased: u64,
    /// Tracked records available now or after a backoff.
    pub waiting: u64,
    pub dead_lettering: u64,
    /// First delivery time of the oldest unfinished record.
    pub oldest_unacked_ms: Option<i64>,
}

fn key_window(g: &str, t: u64, p: u32) -> Vec<u8> {
    Key::ShareWindow(g, t, p).encode()
}

async fn read_group(txn: &mut dyn Txn, group: &str) -> Result<ShareGroupRecord> {
    match txn.get(&Key::ShareGroup(group).encode(), false).await? {
        Some(b) => decode_json(&b, "share group"),
        None => Err(Error::GroupNotFound(group.to_owned())),
    }
}

/// The tracked records of `[w.start, w.next)`, in offset order.
async fn read_records(
    txn: &mut dyn Txn,
    g: &str,
    t: u64,
    p: u32,
    w: &ShareWindow,
) -> Result<Vec<(u64, ShareRecordState)>> {
    if w.next <= w.start {
        return Ok(Vec::new());
    }
    let r = KeyRange::share_window_records(g, t, p, w.start, w.next);
    let rows = txn
        .get_range(&r.begin, &r.end, (w.next - w.start) as usize, false, false)
        .await?;
    rows.iter()
        .map(|(k, v)| {
            let offset = match crate::keys::decode(k) {
                Ok(Key::ShareRecord(_, _, _, o)) => o,
                _ => return Err(Error::Corrupt("share record key")),
            };
            Ok((offset, ShareRecordState::decode(v)?))
        })
        .collect()
}

/// A uniform draw in `[0, 1)` from `seed` and `offset` (splitmix64).
fn unit(seed: u64, offset: u64) -> f64 {
    let mut z = seed ^ offset.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// A record whose lease ended (expired or released): available after
/// `delay_ms`, or a dead letter once it had its last delivery.
fn lease_ended(
    s: &mut ShareRecordState,
    group: &ShareGroupRecord,
    at_ms: i64,
    delay_ms: i64,
) -> bool {
    if s.deliveries >= group.max_deliveries {
        s.phase = SharePhase::DeadLettering {
            since_ms: at_ms,
            reason: DeadReason::MaxDeliveries,
        };
        true
    } else {
        s.phase = SharePhase::Available {
            at_ms: at_ms.saturating_add(delay_ms),
        };
        false
    }
}

/// Whether `ack` was applied by an earlier attempt whose commit result was
/// unknown: the record is where the ack would have put it. `Some(dead
/// letter)` when that place is dead-lettering (the copy is still to make).
fn applied_before(
    records: &[(u64, ShareRecordState)],
    w: &ShareWindow,
    ack: &Ack,
) -> Option<Option<DeadLetter>> {
    let Ok(i) = records.binary_search_by_key(&ack.offset, |(o, _)| *o) else {
        // Finished and passed by the window's start.
        return (ack.offset < w.start && ack.kind == AckKind::Accept).then_some(None);
    };
    let s = &records[i].1;
    if s.deliveries != ack.deliveries {
        return None;
    }
    match (ack.kind, s.phase) {
        (AckKind::Accept, SharePhase::Done { accepted: true })
        | (AckKind::Release, SharePhase::Available { .. }) => Some(None),
        (AckKind::Reject | AckKind::Release, SharePhase::DeadLettering { reason, .. }) => {
            Some(Some(DeadLetter {
                offset: ack.offset,
                deliveries: s.deliveries,
                reason,
            }))
        }
        (AckKind::Reject, SharePhase::Done { accepted: false }) => Some(None),
        _ => None,
    }
}

/// A window's counts from its tracked records.
fn view_of(t: u64, p: u32, window: ShareWindow, records: &[(u64, ShareRecordState)]) -> WindowView {
    let mut view = WindowView {
        topic_id: t,
        partition: p,
        window,
        ..WindowView::default()
    };
    for (offset, s) in records {
        if *offset < window.start {
            continue;
        }
        match s.phase {
            SharePhase::Leased { .. } => view.leased += 1,
            SharePhase::Available { .. } => view.waiting += 1,
            SharePhase::DeadLettering { .. } => view.dead_lettering += 1,
            SharePhase::Done { .. } => continue,
        }
        if s.first_ms != 0 {
            view.oldest_unacked_ms = Some(
                view.oldest_unacked_ms
                    .map_or(s.first_ms, |m| m.min(s.first_ms)),
            );
        }
    }
    view
}

/// Moves the window's start over finished records, removing them.
fn advance(
    txn: &mut dyn Txn,
    g: &str,
    t: u64,
    p: u32,
    w: &mut ShareWindow,
    records: &[(u64, ShareRecordState)],
) {
    for (offset, s) in records {
        if *offset != w.start || !matches!(s.phase, SharePhase::Done { .. }) {
            break;
        }
        txn.clear(&Key::ShareRecord(g, t, p, *offset).encode());
        w.start += 1;
    }
}

impl Metadata {
    /// Leases up to `req.max` records of one partition: expired leases
    /// first become available again (or dead letters), then available
    /// records are leased in offset order, then the window grows into
    /// records never delivered, up to the high-watermark and
    /// `max_in_flight`.
    pub async fn share_acquire(
        &self,
        group: &str,
        topic_id: u64,
        partition: u32,
        req: Acquire,
    ) -> Result<Acquired> {
        self.run("share_acquire", false, |txn, attempt| {
            let req = req.clone();
            let group = group.to_owned();
            Box::pin(async move {
                let group = group.as_str();
                let g = read_group(txn, group).await?;
                let Some(state) = read_partition(txn, topic_id, partition, true).await? else {
                    return Err(Error::TopicNotFound(format!("topic id {topic_id}")));
                };
                let wkey = key_window(group, topic_id, partition);
                let mut w = match txn.get(&wkey, false).await? {
                    Some(b) => ShareWindow::decode(&b)?,
                    None => {
                        let at = match g.start {
                            ShareStart::Earliest => state.log_start_offset,
                            ShareStart::Latest => state.high_watermark,
                        };
                        ShareWindow {
                            start: at,
                            next: at,
                            ..ShareWindow::default()
                        }
                    }
                };
                let mut records = read_records(txn, group, topic_id, partition, &w).await?;
                // Retention removed records never finished: they are gone
                // for every reader, so they leave the window unfinished.
                if w.start < state.log_start_offset {
                    for (o, _) in records.iter().filter(|(o, _)| *o < state.log_start_offset) {
                        txn.clear(&Key::ShareRecord(group, topic_id, partition, *o).encode());
                    }
                    records.retain(|(o, _)| *o >= state.log_start_offset);
                    w.start = state.log_start_offset;
                    w.next = w.next.max(w.start);
                }
                let now = req.now_ms;
                let until = now.saturating_add(req.lease_ms);
                let by_key = g.ordering == ShareOrdering::Key;
                let mut out = Acquired {
                    high_watermark: state.high_watermark,
                    ..Acquired::default()
                };
                let mut blocked = std::collections::HashSet::new();
                for (offset, s) in &mut records {
                    let before = *s;
                    if let SharePhase::Leased { until_ms } = s.phase {
                        if attempt.after_unknown && s.holder == req.seed && until_ms == until {
                            // Leased by this very call's earlier attempt.
                            out.leases.push(Lease {
                                offset: *offset,
                                deliveries: s.deliveries,
                                until_ms,
                            });
                        } else if until_ms <= now {
                            let delay = g.backoff.delay_ms(s.deliveries, unit(req.seed, *offset));
                            if lease_ended(s, &g, until_ms, delay) {
                                out.dead.push(DeadLetter {
                                    offset: *offset,
                                    deliveries: s.deliveries,
                                    reason: DeadReason::MaxDeliveries,
                                });
                            }
                        }
                    }
                    match s.phase {
                        SharePhase::Available { at_ms }
                            if at_ms <= now
                                && out.leases.len() < req.max
                                && !(by_key
                                    && s.key_hash != 0
                                    && blocked.contains(&s.key_hash)) =>
                        {
                            s.deliveries = s.deliveries.saturating_add(1);
                            if s.deliveries > 1 {
                                w.redelivered += 1;
                            }
                            if s.first_ms == 0 {
                                s.first_ms = now;
                            }
                            s.phase = SharePhase::Leased { until_ms: until };
                            s.holder = req.seed;
                            out.leases.push(Lease {
                                offset: *offset,
                                deliveries: s.deliveries,
                                until_ms: until,
                            });
                        }
                        SharePhase::DeadLettering { since_ms, reason }
                            if since_ms.saturating_add(DEAD_LETTER_GRACE_MS) <= now =>
                        {
                            s.phase = SharePhase::DeadLettering {
                                since_ms: now,
                                reason,
                            };
                            out.dead.push(DeadLetter {
                                offset: *offset,
                                deliveries: s.deliveries,
                                reason,
                            });
                        }
                        _ => {}
                    }
                    if !matches!(s.phase, SharePhase::Done { .. }) && s.key_hash != 0 {
                        blocked.insert(s.key_hash);
                    }
                    if *s != before {
                        txn.set(
                            &Key::ShareRecord(group, topic_id, partition, *offset).encode(),
                            &s.encode(),
                        );
                    }
                }
                // Grow the window into records never delivered.
                let cap = w.start.saturating_add(u64::from(g.max_in_flight));
                let end = state.high_watermark.min(cap);
                while w.next < end && out.leases.len() < req.max {
                    let key_hash = match (&req.keys, by_key) {
                        (_, false) => 0,
                        (Some(k), true) if w.next >= k.from => {
                            match k.hashes.get((w.next - k.from) as usize) {
                                Some(&h) => h,
                                None => break,
                            }
                        }
                        _ => break,
                    };
                    let free = !(by_key && key_hash != 0 && blocked.contains(&key_hash));
                    let s = ShareRecordState {
                        phase: if free {
                            SharePhase::Leased { until_ms: until }
                        } else {
                            SharePhase::Available { at_ms: now }
                        },
                        deliveries: u16::from(free),
                        key_hash,
                        first_ms: if free { now } else { 0 },
                        holder: req.seed,
                    };
                    if free {
                        out.leases.push(Lease {
                            offset: w.next,
                            deliveries: 1,
                            until_ms: until,
                        });
                    }
                    if key_hash != 0 {
                        blocked.insert(key_hash);
                    }
                    txn.set(
                        &Key::ShareRecord(group, topic_id, partition, w.next).encode(),
                        &s.encode(),
                    );
                    records.push((w.next, s));
                    w.next += 1;
                }
                advance(txn, group, topic_id, partition, &mut w, &records);
                txn.set(&wkey, &w.encode());
                out.window = w;
                out.view = view_of(topic_id, partition, w, &records);
                Ok(out)
            })
        })
        .await
    }

    /// Applies acknowledgements to one partition's deliveries.
    pub async fn share_ack(
        &self,
        group: &str,
        topic_id: u64,
        partition: u32,
        acks: &[Ack],
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<AckOutcome> {
        self.run("share_ack", false, |txn, attempt| {
            let group = group.to_owned();
            let acks = acks.to_vec();
            Box::pin(async move {
                let group = group.as_str();
                let g = read_group(txn, group).await?;
                let wkey = key_window(group, topic_id, partition);
                let Some(b) = txn.get(&wkey, false).await? else {
                    return Ok(AckOutcome {
                        applied: vec![false; acks.len()],
                        ..AckOutcome::default()
                    });
                };
                let mut w = ShareWindow::decode(&b)?;
                let mut records = read_records(txn, group, topic_id, partition, &w).await?;
                let mut out = AckOutcome::default();
                for ack in &acks {
                    if attempt.after_unknown {
                        if let Some(done) = applied_before(&records, &w, ack) {
                            out.applied.push(true);
                            out.dead.extend(done);
                            continue;
                        }
                    }
                    let found = records
                        .binary_search_by_key(&ack.offset, |(o, _)| *o)
                        .ok()
                        .map(|i| &mut records[i].1)
                        .filter(|s| {
                            s.deliveries == ack.deliveries
                                && matches!(s.phase, SharePhase::Leased { .. })
                        });
                    let Some(s) = found else {
                        out.applied.push(false);
                        continue;
                    };
                    match ack.kind {
                        AckKind::Accept => {
                            s.phase = SharePhase::Done { accepted: true };
                            w.accepted += 1;
                        }
                        AckKind::Release => {
                            if lease_ended(s, &g, now_ms, 0) {
                                out.dead.push(DeadLetter {
                                    offset: ack.offset,
                                    deliveries: s.deliveries,
                                    reason: DeadReason::MaxDeliveries,
                                });
                            }
                        }
                        AckKind::Reject => {
                            s.phase = SharePhase::DeadLettering {
                                since_ms: now_ms,
                                reason: DeadReason::Rejected,
                            };
                            out.dead.push(DeadLetter {
                                offset: ack.offset,
                                deliveries: s.deliveries,
                                reason: DeadReason::Rejected,
                            });
                        }
                        AckKind::Extend => {
                            s.phase = SharePhase::Leased {
                                until_ms: now_ms.saturating_add(lease_ms),
                            };
                        }
                    }
                    txn.set(
                        &Key::ShareRecord(group, topic_id, partition, ack.offset).encode(),
                        &s.encode(),
                    );
                    out.applied.push(true);
                }
                advance(txn, group, topic_id, partition, &mut w, &records);
                txn.set(&wkey, &w.encode());
                out.view = view_of(topic_id, partition, w, &records);
                Ok(out)
            })
        })
        .await
    }

    /// Finishes dead letters once their copies are in the dead-letter
    /// topic; returns the window as left. Records no longer dead-lettering
    /// (finished by another agent) are left alone.
    pub async fn share_dead_lettered(
        &self,
        group: &str,
        topic_id: u64,
        partition: u32,
        offsets: &[u64],
    ) -> Result<WindowView> {
        self.run("share_dead_lettered", false, |txn, _| {
            let group = group.to_owned();
            let offsets = offsets.to_vec();
            Box::pin(async move {
                let group = group.as_str();
                let wkey = key_window(group, topic_id, partition);
                let Some(b) = txn.get(&wkey, false).await? else {
                    return Ok(WindowView::default());
                };
                let mut w = ShareWindow::decode(&b)?;
                let mut records = read_records(txn, group, topic_id, partition, &w).await?;
                for (offset, s) in &mut records {
                    if offsets.contains(offset)
                        && matches!(s.phase, SharePhase::DeadLettering { .. })
                    {
                        s.phase = SharePhase::Done { accepted: false };
                        w.dead_lettered += 1;
                        txn.set(
                            &Key::ShareRecord(group, topic_id, partition, *offset).encode(),
                            &s.encode(),
                        );
                    }
                }
                advance(txn, group, topic_id, partition, &mut w, &records);
                txn.set(&wkey, &w.encode());
                Ok(view_of(topic_id, partition, w, &records))
            })
        })
        .await
    }
}
