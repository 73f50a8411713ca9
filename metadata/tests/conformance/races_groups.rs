//! Races for groups, share groups, producers, expiry and topic deletion:
//! each round holds one transaction between its reads and its commit while
//! a rival commits, so only the conflict range of the read its case names
//! makes it retry (each fails on `sim` when that read is a snapshot read).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::{future::Future, sync::Arc, time::Duration};

use async_trait::async_trait;
use tokio::{sync::Notify, time::timeout};

use silt_metadata::groups::JoinRequest;
use silt_metadata::groups::classic::{ClassicAssignment, ClassicJoin};
use silt_metadata::kv::{KeyValue, Kv, KvError, Txn};
use silt_metadata::shares::{Ack, AckKind, Acquire};
use silt_metadata::values::shares::{Backoff, ShareGroupRecord, ShareTopic};
use silt_metadata::values::{ClassicPhase, OffsetReset, Opaque};
use silt_metadata::{Dedup, Error, ErrorKind, KafkaBatch, Metadata, ProducerId};
use silt_metadata::{Refusal, SegmentCommit, TopicConfig, UnitResult, runner::RetryPolicy};

use crate::units::{unit, with_units};
use crate::{Fixture, chunk, segment};

/// Holds the first commit of a [`GatedKv`]'s transactions until `go`.
#[derive(Debug, Default)]
struct Gate {
    used: AtomicBool,
    reached: Notify,
    go: Notify,
}
#[derive(Debug)]
struct GatedKv(Arc<dyn Kv>, Arc<Gate>);
struct GatedTxn(Box<dyn Txn>, Arc<Gate>);
type Rows = Result<Vec<KeyValue>, KvError>;
#[async_trait]
impl Kv for GatedKv {
    async fn begin(&self, read_only: bool) -> Result<Box<dyn Txn>, KvError> {
        let txn = self.0.begin(read_only).await?;
        Ok(Box::new(GatedTxn(txn, self.1.clone())))
    }
    async fn watch(&self, key: &[u8], seen: Option<&[u8]>) -> Result<(), KvError> {
        self.0.watch(key, seen).await
    }
    fn backend(&self) -> &'static str {
        self.0.backend()
    }
}

#[async_trait]
impl Txn for GatedTxn {
    async fn get(&mut self, key: &[u8], snapshot: bool) -> Result<Option<Vec<u8>>, KvError> {
        self.0.get(key, snapshot).await
    }
    async fn get_range(&mut self, b: &[u8], e: &[u8], n: usize, r: bool, s: bool) -> Rows {
        self.0.get_range(b, e, n, r, s).await
    }
    fn set(&mut self, key: &[u8], value: &[u8]) {
        self.0.set(key, value);
    }
    fn clear(&mut self, key: &[u8]) {
        self.0.clear(key);
    }
    fn clear_range(&mut self, begin: &[u8], end: &[u8]) {
        self.0.clear_range(begin, end);
    }
    async fn commit(self: Box<Self>) -> Result<(), KvError> {
        let GatedTxn(inner, gate) = *self;
        if !gate.used.swap(true, SeqCst) {
            gate.reached.notify_one();
            let _ = timeout(Duration::from_millis(100), gate.go.notified()).await;
        }
        inner.commit().await
    }
}

/// A second handle on the fixture's store whose first commit is held.
fn gated(f: &Fixture) -> (Metadata, Arc<Gate>) {
    let gate = Arc::new(Gate::default());
    if f.md.kv().backend() == "sqlite" {
        // Writers serialize: a rival would only wait out the hold.
        gate.used.store(true, SeqCst);
        gate.reached.notify_one();
    }
    let kv = Arc::new(GatedKv(f.md.kv().clone(), gate.clone()));
    (Metadata::new(kv, RetryPolicy::default(), 7), gate)
}

/// Runs `stale` (on a [`gated`] handle) up to its commit, then `rival` to
/// its end, then lets `stale` commit.
async fn interleave<S: Future, R: Future>(g: &Gate, stale: S, rival: R) -> (S::Output, R::Output) {
    tokio::join!(stale, async {
        let _ = timeout(Duration::from_secs(2), g.reached.notified()).await;
        let out = rival.await;
        g.go.notify_one();
        out
    })
}
/// Both succeeded, or were refused (as a race may have them).
fn settled<A, B>((a, b): (silt_metadata::Result<A>, silt_metadata::Result<B>)) {
    for e in [a.err(), b.err()].into_iter().flatten() {
        assert_eq!(e.kind(), ErrorKind::Refused, "{e}");
    }
}

async fn topic(f: &Fixture, name: &str, nonce: u64) -> u64 {
    let t = f.md.create_topic(name, 2, TopicConfig::default(), 0, nonce);
    t.await.unwrap().id
}
fn member(id: &str, session_timeout_ms: u32) -> JoinRequest {
    JoinRequest {
        member_id: id.into(),
        topics: vec!["t".into()],
        session_timeout_ms,
        offset_reset: OffsetReset::Earliest,
    }
}

/// a, c (10 s sessions) and x (1 s) join at 0; `rewrite` writes back the
/// members it read while c renews at 500 (to 10_500): the renewal must
/// survive, or (if `rewrite` deletes the group at 10_200) refuse it.
async fn renewal_survives(f: Fixture, rewrite: &str) {
    topic(&f, "t", 1).await;
    for round in 0..8 {
        let g = &format!("g{round}");
        for (id, session) in [("a", 10_000), ("c", 10_000), ("x", 1_000)] {
            f.md.join_group(g, &member(id, session), 0).await.unwrap();
        }
        let ((slow, gate), b) = (gated(&f), member("b", 10_000));
        let stale = async {
            match rewrite {
                "join" => slow.join_group(g, &b, 500).await.map(drop),
                "leave" => slow.leave_group(g, "x", 500).await,
                "delete" => slow.delete_group(g, 10_200).await,
                // x expired at 1_000: a's heartbeat removes it, rebalancing.
                _ => slow.heartbeat(g, "a", 0, 1_500).await.map(drop),
            }
        };
        let (done, beat) = interleave(&gate, stale, f.md.heartbeat(g, "c", 0, 500)).await;
        if rewrite == "delete" {
            let lost = matches!(beat, Err(Error::Refused(Refusal::UnknownMember)));
            assert!(done.is_err() || lost, "round {round}: deleted under c");
        } else {
            let members = f.md.describe_group(g).await.unwrap().members;
            let c = members.iter().find(|(id, _)| id == "c").unwrap();
            assert_eq!(c.1.expires_ms, 10_500, "round {round}: {rewrite}");
        }
        settled((done, beat));
    }
}

/// `join_group` reads the members with a conflict (groups/mod.rs:292).
pub async fn joins_keep_a_concurrent_renewal(f: Fixture) {
    renewal_survives(f, "join").await;
}
/// `leave_group` reads the members with a conflict (groups/mod.rs:378).
pub async fn leaves_keep_a_concurrent_renewal(f: Fixture) {
    renewal_survives(f, "leave").await;
}
/// A heartbeat finding a member expired re-reads the members with a
/// conflict (groups/mod.rs:552).
pub async fn expiries_keep_a_concurrent_renewal(f: Fixture) {
    renewal_survives(f, "expiry").await;
}
/// `delete_group` reads the members with a conflict (groups/mod.rs:520).
pub async fn group_deletes_respect_a_concurrent_renewal(f: Fixture) {
    renewal_survives(f, "delete").await;
}

fn classic(id: &str) -> ClassicJoin {
    crate::classic::join_with(id, 10_000, 1_000)
}

/// a forms generation 1 alone; unless a syncs, b's join reopens it until
/// 1_000 (a never rejoins). `stale` is held across c joining (reopening it
/// until 3_000) or, against a's heartbeat, b closing the barrier.
async fn classic_race(f: Fixture, stale: &str) {
    topic(&f, "t", 1).await;
    let give = [ClassicAssignment {
        member_id: "a".into(),
        assignment: Opaque(b"a".to_vec()),
        topics: vec![("t".into(), vec![0, 1])],
    }];
    for round in 0..8 {
        let g = &format!("{stale}{round}");
        let n = if stale == "sync" { 1 } else { 2 };
        for id in &["a", "b"][..n] {
            f.md.classic_join(g, &classic(id), 0).await.unwrap();
        }
        let ((slow, gate), give) = (gated(&f), Some(&give[..]));
        let held = async {
            match stale {
                "sync" => slow.classic_sync(g, "a", 1, give, 2_000).await.map(drop),
                "progress" => slow.classic_join_progress(g, "b", 2_000).await.map(drop),
                _ => slow.classic_heartbeat(g, "a", 1, 2_000).await,
            }
        };
        let rival = async {
            match stale {
                "heartbeat" => f.md.classic_join_progress(g, "b", 2_000).await.map(drop),
                _ => f.md.classic_join(g, &classic("c"), 2_000).await,
            }
        };
        settled(interleave(&gate, held, rival).await);
        let d = f.md.describe_group(g).await.unwrap();
        let phase = d.record.classic.map(|c| c.phase);
        let ok = match stale {
            "heartbeat" => d.members.iter().all(|(id, _)| id != "a"),
            _ => matches!(phase, Some(ClassicPhase::Joining { .. })),
        };
        assert!(ok, "round {round}: {stale}");
    }
}

/// `classic_sync` reads the group with a conflict (groups/classic.rs:634):
/// the leader's assignment never makes Stable a group a join reopened.
pub async fn classic_syncs_never_hide_a_join(f: Fixture) {
    classic_race(f, "sync").await;
}
/// `classic_join_progress` reads the group with a conflict
/// (groups/classic.rs:313): no barrier closes over a join extending it.
pub async fn classic_barriers_never_close_over_a_join(f: Fixture) {
    classic_race(f, "progress").await;
}
/// `classic_heartbeat` reads the group with a conflict
/// (groups/classic.rs:417): a member the barrier dropped stays dropped.
pub async fn classic_heartbeats_never_revive_a_dropped_member(f: Fixture) {
    classic_race(f, "heartbeat").await;
}

fn share_group(created_ms: i64) -> ShareGroupRecord {
    let name = String::from("q");
    ShareGroupRecord {
        topics: vec![ShareTopic { name, id: 0 }],
        lease_ms: 1_000_000,
        max_deliveries: 3,
        backoff: Backoff::default(),
        dlq_topic: "q.dlq".into(),
        ordering: Default::default(),
        start: Default::default(),
        max_in_flight: 1_000,
        created_ms,
        replayed: Vec::new(),
    }
}
/// A record is finished (accepted, or rejected and dead-lettered) while a
/// lease appends one at the window's `next`, past the finisher's records.
async fn windows_never_shrink(f: Fixture, dead_letter: bool) {
    let (md, t) = (&f.md, topic(&f, "q", 1).await);
    let s = segment("s", vec![chunk(t, 0, 100)]);
    md.commit_segment(&s).await.unwrap();
    md.create_share_group("w", share_group(1)).await.unwrap();
    let acquire = |seed| Acquire {
        max: 1,
        lease_ms: 1_000_000,
        now_ms: 10,
        seed,
        keys: None,
    };
    let ack = |offset, kind| Ack {
        offset,
        deliveries: 1,
        kind,
    };
    let mut leased = HashSet::new();
    for round in 0..8u64 {
        let first = md.share_acquire("w", t, 0, acquire(2 * round));
        let first = first.await.unwrap().leases;
        let o = first[0].offset;
        if dead_letter {
            let reject = [ack(o, AckKind::Reject)];
            md.share_ack("w", t, 0, &reject, 10, 1).await.unwrap();
        }
        let ((slow, gate), accept) = (gated(&f), [ack(o, AckKind::Accept)]);
        let finish = async {
            if dead_letter {
                slow.share_dead_lettered("w", t, 0, &[o]).await.map(drop)
            } else {
                slow.share_ack("w", t, 0, &accept, 10, 1).await.map(drop)
            }
        };
        let grow = md.share_acquire("w", t, 0, acquire(2 * round + 1));
        let (finished, grown) = interleave(&gate, finish, grow).await;
        finished.unwrap();
        let grown = grown.unwrap();
        assert_eq!((first.len(), grown.leases.len()), (1, 1), "round {round}");
        for l in first.iter().chain(&grown.leases) {
            let fresh = l.deliveries == 1 && leased.insert(l.offset);
            assert!(fresh, "round {round}: {l:?} leased twice");
        }
        let w = md.share_window("w", t, 0).await.unwrap().unwrap();
        assert!(w.next >= grown.window.next, "round {round}: {w:?}");
    }
}

/// `share_ack` reads the window with a conflict (shares/mod.rs:490).
pub async fn share_acks_never_shrink_the_window(f: Fixture) {
    windows_never_shrink(f, false).await;
}
/// `share_dead_lettered` reads the window with a conflict (shares/mod.rs:581).
pub async fn share_dead_letters_never_shrink_the_window(f: Fixture) {
    windows_never_shrink(f, true).await;
}

/// `create_share_group` reads the group's key with a conflict
/// (shares/admin.rs:35): of two creations at once, exactly one succeeds.
pub async fn share_groups_are_created_once(f: Fixture) {
    topic(&f, "q", 1).await;
    for round in 0..8 {
        let name = &format!("sg{round}");
        let (slow, gate) = gated(&f);
        let first = slow.create_share_group(name, share_group(1));
        let second = f.md.create_share_group(name, share_group(2));
        let exists = |e: &Error| e.kind() == ErrorKind::AlreadyExists;
        let winner = match interleave(&gate, first, second).await {
            (Ok(()), Err(e)) if exists(&e) => 1,
            (Err(e), Ok(())) if exists(&e) => 2,
            other => panic!("round {round}: {other:?}"),
        };
        let kept = f.md.share_group(name).await.unwrap().unwrap();
        assert_eq!(kept.created_ms, winner, "round {round}");
    }
}

fn deduped(name: String, topic_id: u64, dedup: Dedup, now: i64) -> SegmentCommit {
    let segment = segment(&name, vec![chunk(topic_id, 0, 1)]);
    let mut s = with_units(segment, vec![unit(vec![0], Some(dedup))]);
    (s.created_ms, s.committed_ms) = (now, now);
    s
}

/// A Kafka batch's commit reads its producer with a conflict
/// (sequences.rs:85): a batch of the old epoch never restores that epoch.
pub async fn kafka_batches_never_restore_a_fenced_epoch(f: Fixture) {
    let (md, t) = (&f.md, topic(&f, "k", 1).await);
    let batch = |name: String, p: ProducerId, first| {
        let b = KafkaBatch {
            producer_id: p.id,
            epoch: p.epoch,
            topic_id: t,
            partition: 0,
            first_sequence: first,
            last_sequence: first,
        };
        deduped(name, t, Dedup::KafkaBatch(b), 1)
    };
    let commit = |s: SegmentCommit| async move { md.commit_segment(&s).await.unwrap().units };
    for round in 0..8 {
        let name: &str = &format!("tx{round}");
        let old = md.init_producer(Some(name), 0).await.unwrap();
        let ((slow, gate), zombie) = (gated(&f), batch(format!("z{round}"), old, 0));
        let raced = slow.commit_segment(&zombie);
        let (raced, new) = interleave(&gate, raced, md.init_producer(Some(name), 0)).await;
        let (_, new) = (raced.unwrap(), new.unwrap());
        assert!(new.id == old.id && new.epoch > old.epoch, "{new:?}");
        let fenced = UnitResult::Refused(Refusal::ProducerFenced { epoch: new.epoch });
        let late = commit(batch(format!("l{round}"), old, 1)).await;
        assert_eq!(late, [fenced], "round {round}: the old epoch is back");
        let current = commit(batch(format!("n{round}"), new, 0)).await;
        assert_eq!(current, [UnitResult::Committed], "round {round}");
    }
}

/// A producer sequence's commit reads its producer with a conflict
/// (commit/units.rs:208): one request on two topics at once commits once.
pub async fn producer_sequences_commit_once_across_topics(f: Fixture) {
    let (a, b) = (topic(&f, "pa", 1).await, topic(&f, "pb", 2).await);
    for round in 0..8 {
        let p = f.md.init_producer(None, 0).await.unwrap();
        let seq = Dedup::Producer {
            id: p.id,
            epoch: p.epoch,
            sequence: 0,
        };
        let x = deduped(format!("x{round}"), a, seq.clone(), 1);
        let y = deduped(format!("y{round}"), b, seq, 1);
        let (slow, gate) = gated(&f);
        let (x, y) = interleave(&gate, slow.commit_segment(&x), f.md.commit_segment(&y)).await;
        let mut units = [x.unwrap().units, y.unwrap().units].concat();
        units.retain(|u| *u != UnitResult::Committed);
        let duplicate = matches!(&units[..], [UnitResult::Duplicate(_)]);
        assert!(duplicate, "round {round}: {units:?} besides one commit");
    }
}

/// `expire` reads what is due with a conflict (producers.rs:132): an
/// idempotency key renewed meanwhile survives.
pub async fn expiry_spares_a_renewed_idempotency_key(f: Fixture) {
    let (md, t) = (&f.md, topic(&f, "t", 1).await);
    let keyed = |name: String, key: &str, fingerprint, now: i64, ttl: i64| {
        let dedup = Dedup::Key {
            key: key.into(),
            fingerprint,
            expires_ms: now + ttl,
        };
        deduped(name, t, dedup, now)
    };
    let commit = |s: SegmentCommit| async move { md.commit_segment(&s).await.unwrap().units };
    for round in 0..8 {
        let key: &str = &format!("k{round}");
        commit(keyed(format!("a{round}"), key, 1, 100, 1_000)).await;
        // Due at 1_100; a new request at 1_500 renews it until 101_500.
        let renew = keyed(format!("b{round}"), key, 2, 1_500, 100_000);
        let (slow, gate) = gated(&f);
        let (expired, renewed) = interleave(&gate, slow.expire(2_000, 1_000), commit(renew)).await;
        expired.unwrap();
        assert_eq!(renewed, [UnitResult::Committed]);
        let again = commit(keyed(format!("c{round}"), key, 2, 1_600, 100_000)).await;
        let kept = matches!(&again[..], [UnitResult::Duplicate(_)]);
        assert!(kept, "round {round}: the renewed key expired: {again:?}");
    }
}

/// `delete_topic` reads the name with a conflict (catalog.rs:262): a name
/// deleted and taken again meanwhile is not cleared, orphaning its topic.
pub async fn topic_deletes_never_orphan_a_recreated_name(f: Fixture) {
    let md = &f.md;
    for round in 0..8u64 {
        let name = &format!("re{round}");
        topic(&f, name, 2 * round).await;
        let (slow, gate) = gated(&f);
        let recreate = async {
            let _ = md.delete_topic(name).await; // or NotFound: already gone
            topic(&f, name, 2 * round + 1).await
        };
        let (_, b) = interleave(&gate, slow.delete_topic(name), recreate).await;
        let found = md.topic(name).await.unwrap().map(|t| t.id);
        let deleted = md.deleted_topics().await.unwrap();
        let listed = deleted.iter().any(|d| d.id == b);
        let ok = found == Some(b) || (found.is_none() && listed);
        assert!(ok, "round {round}: topic {b} orphaned ({found:?})");
    }
}
