//! One conformance suite, instantiated for every metadata backend: the same
//! tests must pass on SQLite, on SQLite under injected faults, and on
//! FoundationDB (when a cluster is reachable; otherwise the run says it was
//! skipped and why).
#![allow(clippy::unwrap_used)]

mod batches;
mod classic;
mod groups;
mod kafka;
mod races;
mod races_groups;
mod shares;
mod units;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use silt_metadata::fault::{FaultCounts, FaultPlan, FaultyKv};
use silt_metadata::kv::Kv;
use silt_metadata::runner::RetryPolicy;
use silt_metadata::sim::{SimConfig, SimKv};
use silt_metadata::sqlite::SqliteKv;
use silt_metadata::{ChunkCommit, ErrorKind, Metadata, PartitionState, SegmentCommit, TopicConfig};

use batches::*;
use classic::*;
use groups::*;
use kafka::*;
use races::*;
use races_groups::*;
use shares::*;
use units::*;

/// A backend under test; dropping it cleans up.
struct Fixture {
    md: Arc<Metadata>,
    faults: Option<Arc<FaultCounts>>,
    _dir: Option<tempfile::TempDir>,
}

fn policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 200,
        deadline: Duration::from_secs(60),
        ..RetryPolicy::default()
    }
}

fn fixture(
    kv: Arc<dyn Kv>,
    faults: Option<Arc<FaultCounts>>,
    dir: Option<tempfile::TempDir>,
) -> Fixture {
    Fixture {
        md: Arc::new(Metadata::new(kv, policy(), 42)),
        faults,
        _dir: dir,
    }
}

async fn sqlite() -> Option<Fixture> {
    let dir = tempfile::tempdir().unwrap();
    let kv = Arc::new(SqliteKv::open(dir.path().join("meta.db")).unwrap());
    Some(fixture(kv, None, Some(dir)))
}

async fn sqlite_faulty() -> Option<Fixture> {
    let dir = tempfile::tempdir().unwrap();
    let inner = Arc::new(SqliteKv::open(dir.path().join("meta.db")).unwrap());
    let plan = FaultPlan {
        seed: 7,
        conflict: 0.2,
        unknown_not_applied: 0.1,
        unknown_applied: 0.2,
        begin_error: 0.05,
        read_error: 0.02,
        late_commit: 0.05,
    };
    let kv = FaultyKv::new(inner, plan);
    let counts = kv.counts.clone();
    Some(fixture(Arc::new(kv), Some(counts), Some(dir)))
}

/// FoundationDB's semantics in process, with a little commit latency so
/// transactions really overlap.
fn sim_kv() -> Arc<SimKv> {
    Arc::new(SimKv::new(SimConfig {
        seed: 11,
        read_latency: Duration::from_micros(50),
        commit_latency: Duration::from_millis(1),
        jitter: 0.5,
    }))
}

async fn sim() -> Option<Fixture> {
    Some(fixture(sim_kv(), None, None))
}

async fn sim_faulty() -> Option<Fixture> {
    let plan = FaultPlan {
        seed: 9,
        conflict: 0.1,
        unknown_not_applied: 0.1,
        unknown_applied: 0.2,
        begin_error: 0.05,
        read_error: 0.02,
        late_commit: 0.05,
    };
    let kv = FaultyKv::new(sim_kv(), plan);
    let counts = kv.counts.clone();
    Some(fixture(Arc::new(kv), Some(counts), None))
}

#[cfg(feature = "fdb")]
async fn fdb() -> Option<Fixture> {
    let Ok(cluster) = std::env::var("FDB_CLUSTER_FILE") else {
        eprintln!("SKIPPED: FoundationDB conformance: FDB_CLUSTER_FILE is not set");
        return None;
    };
    // A fresh subspace per test: tests run concurrently and leave nothing behind.
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let sub = format!("silt-test-{}-{n}", std::process::id());
    let kv = silt_metadata::fdb::FdbKv::open(Some(&cluster), sub.as_bytes()).unwrap();
    kv.clear_all().await.unwrap();
    Some(fixture(Arc::new(kv), None, None))
}

fn chunk(topic_id: u64, partition: u32, records: u32) -> ChunkCommit {
    ChunkCommit {
        topic_id,
        partition,
        byte_offset: 8,
        byte_len: 100,
        record_count: records,
        max_timestamp: 5,
    }
}

fn segment(id: &str, chunks: Vec<ChunkCommit>) -> SegmentCommit {
    SegmentCommit {
        segment_id: id.into(),
        object: format!("segments/{id}"),
        created_ms: 1,
        committed_ms: 1,
        chunks,
        units: Vec::new(),
        after: None,
    }
}

async fn topics_lifecycle(f: Fixture) {
    let md = &f.md;
    let t = md
        .create_topic("orders", 3, TopicConfig::default(), 10, 1)
        .await
        .unwrap();
    assert_eq!(
        (t.name.as_str(), t.partitions, t.created_ms),
        ("orders", 3, 10)
    );
    let again = md
        .create_topic("orders", 3, TopicConfig::default(), 11, 2)
        .await
        .unwrap_err();
    assert_eq!(again.kind(), ErrorKind::AlreadyExists);
    for bad in ["", "a b", "..", &"x".repeat(250)] {
        let e = md
            .create_topic(bad, 1, TopicConfig::default(), 0, 3)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad:?}");
    }
    for n in [0, 5000] {
        let e = md
            .create_topic("p", n, TopicConfig::default(), 0, 4)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    }
    md.create_topic("audit", 1, TopicConfig::default(), 12, 5)
        .await
        .unwrap();
    let names: Vec<_> = md
        .list_topics()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["orders", "audit"]);
    assert_eq!(md.topic("orders").await.unwrap(), Some(t.clone()));
    assert_eq!(
        md.partition_states(t.id).await.unwrap(),
        vec![PartitionState::default(); 3]
    );
    md.delete_topic("orders").await.unwrap();
    assert_eq!(md.topic("orders").await.unwrap(), None);
    assert_eq!(
        md.delete_topic("orders").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert!(md.partition_states(t.id).await.unwrap().is_empty());
    let reborn = md
        .create_topic("orders", 1, TopicConfig::default(), 13, 6)
        .await
        .unwrap();
    assert_ne!(reborn.id, t.id, "a recreated topic gets a new id");
}

async fn commits_assign_dense_offsets(f: Fixture) {
    let md = &f.md;
    let t = md
        .create_topic("t", 2, TopicConfig::default(), 0, 1)
        .await
        .unwrap();
    let a = md
        .commit_segment(&segment("s1", vec![chunk(t.id, 0, 3), chunk(t.id, 1, 2)]))
        .await
        .unwrap()
        .bases;
    assert_eq!(a, vec![Some(0), Some(0)]);
    let b = md
        .commit_segment(&segment("s2", vec![chunk(t.id, 0, 4)]))
        .await
        .unwrap()
        .bases;
    assert_eq!(b, vec![Some(3)]);
    let states = md.partition_states(t.id).await.unwrap();
    assert_eq!(states[0].high_watermark, 7);
    assert_eq!(states[1].high_watermark, 2);
    // Offset 4 lies inside the second entry (3..7); the plan starts there.
    let plan = md.read_plan(t.id, 0, 4, 10).await.unwrap().unwrap();
    let bases: Vec<u64> = plan.entries.iter().map(|(b, _)| *b).collect();
    assert_eq!(bases, [3]);
    assert_eq!(plan.entries[0].1.object, "segments/s2");
    let plan = md.read_plan(t.id, 0, 0, 10).await.unwrap().unwrap();
    assert_eq!(
        plan.entries.iter().map(|(b, _)| *b).collect::<Vec<_>>(),
        [0, 3]
    );
    let plan = md.read_plan(t.id, 0, 0, 1).await.unwrap().unwrap();
    assert_eq!(plan.entries.len(), 1);
    // At or past the high-watermark: no entries, state still reported.
    let plan = md.read_plan(t.id, 0, 7, 10).await.unwrap().unwrap();
    assert!(plan.entries.is_empty());
    assert_eq!(plan.state.high_watermark, 7);
    assert!(
        md.read_plan(t.id, 9, 0, 10).await.unwrap().is_none(),
        "no such partition"
    );
}

async fn commits_are_idempotent(f: Fixture) {
    let md = &f.md;
    let t = md
        .create_topic("t", 1, TopicConfig::default(), 0, 1)
        .await
        .unwrap();
    let s = segment("dup", vec![chunk(t.id, 0, 5)]);
    let first = md.commit_segment(&s).await.unwrap().bases;
    let second = md.commit_segment(&s).await.unwrap().bases;
    assert_eq!(first, second);
    assert_eq!(
        md.partition_state(t.id, 0)
            .await
            .unwrap()
            .unwrap()
            .high_watermark,
        5
    );
}

async fn concurrent_commits_are_serializable(f: Fixture) {
    let t =
        f.md.create_topic("t", 2, TopicConfig::default(), 0, 1)
            .await
            .unwrap();
    let mut tasks = Vec::new();
    for i in 0..16u32 {
        let md = f.md.clone();
        tasks.push(tokio::spawn(async move {
            let s = segment(
                &format!("c{i}"),
                vec![chunk(t.id, 0, i + 1), chunk(t.id, 1, 1)],
            );
            md.commit_segment(&s).await.unwrap().bases
        }));
    }
    let mut ranges = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        let bases = task.await.unwrap();
        ranges.push((bases[0].unwrap(), bases[0].unwrap() + i as u64 + 1));
    }
    ranges.sort();
    let mut next = 0;
    for (start, end) in ranges {
        assert_eq!(start, next, "offsets are dense and never overlap");
        next = end;
    }
    let states = f.md.partition_states(t.id).await.unwrap();
    assert_eq!(states[0].high_watermark, (1..=16).sum::<u64>());
    assert_eq!(states[1].high_watermark, 16);
}

async fn commits_to_deleted_topics_are_rejected(f: Fixture) {
    let md = &f.md;
    let t = md
        .create_topic("gone", 1, TopicConfig::default(), 0, 1)
        .await
        .unwrap();
    let keep = md
        .create_topic("kept", 1, TopicConfig::default(), 0, 2)
        .await
        .unwrap();
    md.delete_topic("gone").await.unwrap();
    let out = md
        .commit_segment(&segment(
            "s",
            vec![
                chunk(t.id, 0, 2),
                chunk(keep.id, 0, 2),
                chunk(keep.id, 7, 1),
            ],
        ))
        .await
        .unwrap()
        .bases;
    assert_eq!(out, vec![None, Some(0), None]);
}

async fn watches_wake_on_commit(f: Fixture) {
    let t =
        f.md.create_topic("w", 1, TopicConfig::default(), 0, 1)
            .await
            .unwrap();
    let (mark, states) = f.md.log_states(&[(t.id, 0)]).await.unwrap();
    assert_eq!(states, vec![Some(PartitionState::default())]);
    let md = f.md.clone();
    let seen = mark.clone();
    let waiter = tokio::spawn(async move { md.watch_log(seen.as_deref()).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished(), "nothing changed yet");
    // A commit to any partition moves the one mark every agent watches.
    f.md.commit_segment(&segment("w1", vec![chunk(t.id, 0, 1)]))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("watch fired")
        .unwrap()
        .unwrap();
    let (moved, states) = f.md.log_states(&[(t.id, 0)]).await.unwrap();
    assert_ne!(moved, mark);
    assert_eq!(states[0].as_ref().map(|s| s.high_watermark), Some(1));
    // A stale mark returns at once.
    tokio::time::timeout(Duration::from_secs(5), f.md.watch_log(mark.as_deref()))
        .await
        .expect("stale watch returns")
        .unwrap();
    // Deleting the topic moves it too, and its partitions read as gone.
    f.md.delete_topic("w").await.unwrap();
    let (after_delete, states) = f.md.log_states(&[(t.id, 0)]).await.unwrap();
    assert_ne!(after_delete, moved);
    assert_eq!(states, vec![None]);
}

async fn kv_contract(f: Fixture) {
    let kv = f.md.kv().clone();
    // Retried by hand (the wrapper may fail commits); the body is idempotent.
    loop {
        let mut t = kv.begin(false).await.unwrap();
        for k in [b"a1", b"a2", b"a3", b"b1"] {
            t.set(k, b"v");
        }
        assert_eq!(
            t.get(b"a2", false).await.unwrap().as_deref(),
            Some(&b"v"[..]),
            "reads its own writes"
        );
        t.clear_range(b"a2", b"a3");
        let keys: Vec<_> = t
            .get_range(b"a", b"b", 10, false, false)
            .await
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, [b"a1".to_vec(), b"a3".to_vec()]);
        assert!(
            t.get_range(b"a", b"b", 0, false, false)
                .await
                .unwrap()
                .is_empty(),
            "a limit of 0 reads nothing (FoundationDB's own 0 means unlimited)"
        );
        let rev = t.get_range(b"a", b"c", 2, true, false).await.unwrap();
        assert_eq!(
            rev.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
            [b"b1".to_vec(), b"a3".to_vec()]
        );
        if t.commit().await.is_ok() {
            break;
        }
    }
    // A dropped transaction leaves no trace.
    let mut t = kv.begin(false).await.unwrap();
    t.set(b"zz", b"never");
    t.get(b"zz", false).await.unwrap();
    drop(t);
    let mut r = kv.begin(true).await.unwrap();
    assert_eq!(r.get(b"zz", true).await.unwrap(), None);
    assert_eq!(
        r.get(b"a1", true).await.unwrap().as_deref(),
        Some(&b"v"[..])
    );
    r.commit().await.unwrap();
}

/// Under injected faults every commit still lands exactly once.
async fn exactly_once_under_faults(f: Fixture) {
    let md = &f.md;
    let t = md
        .create_topic("x", 1, TopicConfig::default(), 0, 1)
        .await
        .unwrap();
    let mut seen = BTreeSet::new();
    for i in 0..60u32 {
        let bases = md
            .commit_segment(&segment(&format!("f{i}"), vec![chunk(t.id, 0, 2)]))
            .await
            .unwrap()
            .bases;
        assert!(
            seen.insert(bases[0].unwrap()),
            "no base offset assigned twice"
        );
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        (0..60).map(|i| i * 2).collect::<Vec<_>>()
    );
    assert_eq!(
        md.partition_state(t.id, 0)
            .await
            .unwrap()
            .unwrap()
            .high_watermark,
        120
    );
    if let Some(c) = &f.faults {
        assert!(
            c.total() > 20,
            "the fault wrapper injected faults ({})",
            c.total()
        );
    }
}

async fn leases_admit_one_holder_at_a_time(f: Fixture) {
    let md = &f.md;
    assert!(
        md.acquire_lease("job", 1, 1_000, 100).await.unwrap(),
        "a free lease is granted"
    );
    assert!(
        !md.acquire_lease("job", 2, 1_050, 100).await.unwrap(),
        "a valid lease is not stolen"
    );
    assert!(
        md.acquire_lease("job", 1, 1_050, 100).await.unwrap(),
        "the holder renews"
    );
    assert!(
        !md.acquire_lease("job", 2, 1_149, 100).await.unwrap(),
        "renewal extended it to 1150"
    );
    assert!(
        md.acquire_lease("job", 2, 1_150, 100).await.unwrap(),
        "a lapsed lease can be taken"
    );
    assert!(
        !md.acquire_lease("job", 1, 1_160, 100).await.unwrap(),
        "the old holder lost it"
    );
    assert!(
        md.acquire_lease("other", 1, 1_160, 100).await.unwrap(),
        "leases are independent"
    );
    md.release_lease("job", 1).await.unwrap(); // not the holder: no effect
    assert!(!md.acquire_lease("job", 3, 1_170, 100).await.unwrap());
    md.release_lease("job", 2).await.unwrap();
    assert!(
        md.acquire_lease("job", 3, 1_170, 100).await.unwrap(),
        "released leases are free at once"
    );
}

async fn job_status_keeps_the_last_round_of_the_lease_holder(f: Fixture) {
    use silt_metadata::values::JobStatus;
    let md = &f.md;
    let status = |holder, finished_ms| JobStatus {
        holder,
        finished_ms,
        report: serde_json::json!({"rounds": finished_ms, "gc": {"deleted": 0}}),
    };
    assert_eq!(md.job_status("compactor").await.unwrap(), None);
    assert!(
        !md.put_job_status("compactor", &status(7, 1_000), 1_000)
            .await
            .unwrap(),
        "nobody holds the lease: nothing is written"
    );
    assert!(md.acquire_lease("compactor", 7, 1_000, 100).await.unwrap());
    for at in [1_010, 1_020] {
        assert!(
            md.put_job_status("compactor", &status(7, at), at)
                .await
                .unwrap()
        );
        assert_eq!(
            md.job_status("compactor").await.unwrap(),
            Some(status(7, at))
        );
    }
    // Another holder, and the first one after its lease lapsed: refused.
    assert!(
        !md.put_job_status("compactor", &status(8, 1_030), 1_030)
            .await
            .unwrap()
    );
    assert!(
        !md.put_job_status("compactor", &status(7, 1_100), 1_100)
            .await
            .unwrap()
    );
    assert!(md.acquire_lease("compactor", 8, 1_100, 100).await.unwrap());
    assert!(
        md.put_job_status("compactor", &status(8, 1_110), 1_110)
            .await
            .unwrap()
    );
    assert_eq!(
        md.job_status("compactor").await.unwrap(),
        Some(status(8, 1_110))
    );
    assert_eq!(md.job_status("other").await.unwrap(), None);
}

async fn segment_commits_are_visible(f: Fixture) {
    let md = &f.md;
    let t = md
        .create_topic("s", 1, TopicConfig::default(), 0, 1)
        .await
        .unwrap();
    assert!(!md.segment_committed("seg-a").await.unwrap());
    md.commit_segment(&segment("seg-a", vec![chunk(t.id, 0, 1)]))
        .await
        .unwrap();
    assert!(md.segment_committed("seg-a").await.unwrap());
    assert!(!md.segment_committed("seg-b").await.unwrap());
}

macro_rules! suite {
    ($backend:ident) => {
        mod $backend {
            macro_rules! case {
                ($name:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        if let Some(f) = super::$backend().await {
                            super::$name(f).await;
                        }
                    }
                };
            }
            case!(topics_lifecycle);
            case!(job_status_keeps_the_last_round_of_the_lease_holder);
            case!(commits_assign_dense_offsets);
            case!(commits_are_idempotent);
            case!(batches_commit_as_one_after_another);
            case!(batched_and_direct_commits_of_one_segment_agree);
            case!(segments_wait_for_their_predecessor);
            case!(gc_and_commit_never_both_win);
            case!(racing_claimants_get_one_lease);
            case!(racing_creations_get_distinct_ids);
            case!(merges_and_retention_never_roll_commits_back);
            case!(a_late_release_leaves_the_successor_alone);
            case!(racing_archive_plans_agree);
            case!(joins_keep_a_concurrent_renewal);
            case!(leaves_keep_a_concurrent_renewal);
            case!(expiries_keep_a_concurrent_renewal);
            case!(group_deletes_respect_a_concurrent_renewal);
            case!(classic_syncs_never_hide_a_join);
            case!(classic_barriers_never_close_over_a_join);
            case!(classic_heartbeats_never_revive_a_dropped_member);
            case!(share_acks_never_shrink_the_window);
            case!(share_dead_letters_never_shrink_the_window);
            case!(share_groups_are_created_once);
            case!(kafka_batches_never_restore_a_fenced_epoch);
            case!(producer_sequences_commit_once_across_topics);
            case!(expiry_spares_a_renewed_idempotency_key);
            case!(topic_deletes_never_orphan_a_recreated_name);
            case!(concurrent_commits_are_serializable);
            case!(commits_to_deleted_topics_are_rejected);
            case!(watches_wake_on_commit);
            case!(kv_contract);
            case!(exactly_once_under_faults);
            case!(leases_admit_one_holder_at_a_time);
            case!(segment_commits_are_visible);
            case!(groups_keep_one_owner_and_fence_zombies);
            case!(groups_validate_input);
            case!(units_are_all_or_nothing);
            case!(producer_sequences_commit_once);
            case!(idempotency_keys_expire);
            case!(transactions_commit_offsets_with_records);
            case!(idle_producers_are_forgotten);
            case!(retries_within_one_segment_are_duplicates);
            case!(archive_progress_is_planned_then_advanced);
            case!(kafka_sequences_commit_once_per_partition);
            case!(kafka_producers_are_fenced_by_epoch);
            case!(classic_groups_form_generations_and_fence_commits);
            case!(classic_members_expire_and_leave);
            case!(share_groups_lease_each_record_once);
            case!(share_groups_dead_letter_after_the_last_delivery);
            case!(share_groups_keep_key_order);
            case!(share_leases_never_overlap_under_concurrency);
        }
    };
}

suite!(sqlite);
suite!(sqlite_faulty);
suite!(sim);
suite!(sim_faulty);
#[cfg(feature = "fdb")]
suite!(fdb);

#[cfg(not(feature = "fdb"))]
#[test]
#[ignore = "SKIPPED: FoundationDB conformance needs `--features fdb` (libfdb_c) and FDB_CLUSTER_FILE"]
fn fdb_conformance() {}
