//! Orphan collection against real SQLite metadata and a real local directory.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use silt_compactor::{Compactor, CompactorConfig, CompactorMetrics, GcReport, segment_id};
use silt_metadata::runner::RetryPolicy;
use silt_metadata::sqlite::SqliteKv;
use silt_metadata::{
    ChunkCommit, CommitUnit, Dedup, Metadata, SegmentCommit, TopicConfig, UnitResult,
};
use silt_segment::store::ObjectStorage;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

struct Setup {
    md: Arc<Metadata>,
    storage: ObjectStorage,
    clock: Arc<AtomicI64>,
    _dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let kv = Arc::new(SqliteKv::open(dir.path().join("meta.db")).unwrap());
    let md = Arc::new(Metadata::new(kv, RetryPolicy::default(), 3));
    let url = format!("file://{}", dir.path().join("objects").display());
    let storage = ObjectStorage::from_url(&url).unwrap();
    Setup {
        md,
        storage,
        clock: Arc::new(AtomicI64::new(now())),
        _dir: dir,
    }
}

/// A one-partition topic with the default config.
async fn topic(s: &Setup, name: &str) -> silt_metadata::TopicInfo {
    s.md.create_topic(name, 1, TopicConfig::default(), 0, 1)
        .await
        .unwrap()
}

fn compactor(s: &Setup, holder: u64) -> Compactor {
    let clock = s.clock.clone();
    let config = CompactorConfig {
        interval: Duration::from_secs(10),
        gc_grace: Duration::from_secs(3600),
        archive: false,
        merge_target_bytes: 0,
        ..CompactorConfig::default()
    };
    Compactor::new(
        config,
        s.md.clone(),
        s.storage.clone(),
        holder,
        Arc::new(move || clock.load(Ordering::SeqCst)),
        CompactorMetrics::new(&mut prometheus_client::registry::Registry::default()),
    )
}

#[tokio::test]
async fn only_old_uncommitted_segments_are_collected() {
    let s = setup();
    let t = topic(&s, "t").await;
    for key in [
        "segments/100-aa.seg",
        "segments/200-bb.seg",
        "segments/notes.txt",
    ] {
        s.storage.put(key, Bytes::from_static(b"x")).await.unwrap();
    }
    s.md.commit_segment(&commit_of(t.id, "100-aa", 0))
        .await
        .unwrap();
    let c = compactor(&s, 1);

    // Everything is recent: nothing is deleted, the uncommitted one may still be in flight.
    let r = c.tick().await.unwrap().unwrap().gc;
    assert_eq!(
        r,
        GcReport {
            scanned: 3,
            deleted: 0,
            kept_recent: 1
        }
    );

    // Two hours later the uncommitted segment is garbage; the committed one and
    // the unknown file are kept.
    s.clock.fetch_add(2 * 3600 * 1000, Ordering::SeqCst);
    let r = c.tick().await.unwrap().unwrap().gc;
    assert_eq!(
        r,
        GcReport {
            scanned: 3,
            deleted: 1,
            kept_recent: 0
        }
    );
    let left: Vec<String> = s
        .storage
        .list("segments")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(left, ["segments/100-aa.seg", "segments/notes.txt"]);
}

#[tokio::test]
async fn one_instance_works_at_a_time() {
    let s = setup();
    let (a, b) = (compactor(&s, 1), compactor(&s, 2));
    assert!(a.tick().await.unwrap().is_some());
    assert!(
        b.tick().await.unwrap().is_none(),
        "the second instance waits"
    );
    // a stops renewing; after its lease (3 intervals) lapses, b takes over.
    s.clock.fetch_add(31_000, Ordering::SeqCst);
    assert!(b.tick().await.unwrap().is_some());
    assert!(a.tick().await.unwrap().is_none());
}

#[test]
fn segment_names() {
    assert_eq!(
        segment_id("segments/1795573668293-e6b6f211437a0a84.seg"),
        Some("1795573668293-e6b6f211437a0a84")
    );
    for other in [
        "segments/x.seg#1",
        "segments/.seg",
        "archive/a.seg",
        "segments/a/b.seg",
        "segments/a.parquet",
    ] {
        assert_eq!(segment_id(other), None, "{other}");
    }
}

#[tokio::test]
async fn idempotency_keys_are_expired_by_time() {
    let s = setup();
    let t = topic(&s, "t").await;
    let keyed = |id: &str, key: &str, fingerprint: u64| SegmentCommit {
        units: vec![CommitUnit {
            chunks: vec![0],
            dedup: Some(Dedup::Key {
                key: key.into(),
                fingerprint,
                expires_ms: s.clock.load(Ordering::SeqCst) + 60_000,
            }),
            offsets: None,
        }],
        ..commit_of(t.id, id, s.clock.load(Ordering::SeqCst))
    };
    for (i, key) in ["a", "b", "c"].iter().enumerate() {
        s.md.commit_segment(&keyed(&format!("1-{i}"), key, 1))
            .await
            .unwrap();
    }
    let c = compactor(&s, 1);
    assert_eq!(c.tick().await.unwrap().unwrap().expired, 0, "not yet due");
    s.clock.fetch_add(61_000, Ordering::SeqCst);
    assert_eq!(c.tick().await.unwrap().unwrap().expired, 3);
    // The key is free again: another request under it commits.
    let again = s.md.commit_segment(&keyed("2-0", "a", 2)).await.unwrap();
    assert_eq!(again.units, vec![UnitResult::Committed]);
    assert_eq!(c.tick().await.unwrap().unwrap().expired, 0);
}

/// A commit for segment `id` (one chunk of `t`), made at `at`.
fn commit_of(t: u64, id: &str, at: i64) -> SegmentCommit {
    SegmentCommit {
        segment_id: id.into(),
        object: format!("segments/{id}.seg"),
        created_ms: at,
        committed_ms: at,
        chunks: vec![ChunkCommit {
            topic_id: t,
            partition: 0,
            byte_offset: 8,
            byte_len: 1,
            record_count: 1,
            max_timestamp: 0,
        }],
        units: Vec::new(),
        after: None,
    }
}

fn refused(r: Result<silt_metadata::CommitOutcome, silt_metadata::Error>) -> bool {
    matches!(r, Err(silt_metadata::Error::CommitRefused { .. }))
}

#[tokio::test]
async fn a_collected_segment_can_never_be_committed() {
    let s = setup();
    let t = topic(&s, "t").await;
    let at = now();
    // GC first: the late commit is refused (its records were never acked).
    assert!(
        s.md.collect_segment("1-late", "segments/1-late.seg", at)
            .await
            .unwrap()
    );
    assert!(refused(
        s.md.commit_segment(&commit_of(t.id, "1-late", at)).await
    ));
    // Commit first: GC leaves it alone.
    s.md.commit_segment(&commit_of(t.id, "2-ontime", at))
        .await
        .unwrap();
    assert!(
        !s.md
            .collect_segment("2-ontime", "segments/2-ontime.seg", at)
            .await
            .unwrap()
    );
    // A retry of a commit that landed still answers, collected or not.
    s.md.commit_segment(&commit_of(t.id, "2-ontime", at))
        .await
        .unwrap();
    // A commit that stalled past the commit age limit is refused outright.
    let mut stale = commit_of(t.id, "3-stale", at);
    stale.committed_ms = at + silt_metadata::commit::MAX_COMMIT_AGE_MS + 1;
    assert!(refused(s.md.commit_segment(&stale).await));
    assert_eq!(
        s.md.partition_state(t.id, 0)
            .await
            .unwrap()
            .unwrap()
            .high_watermark,
        1,
        "only the on-time segment is indexed"
    );
}

/// Commits held back past the grace period race the collector: each
/// segment ends either committed with its object kept, or collected with
/// its commit refused — never committed with its object gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_racing_late_commits_never_deletes_acknowledged_data() {
    let s = setup();
    let t = topic(&s, "t").await;
    let written = now();
    let ids: Vec<String> = (0..40).map(|i| format!("{written:013}-{i:016x}")).collect();
    for id in &ids {
        s.storage
            .put(&format!("segments/{id}.seg"), Bytes::from_static(b"x"))
            .await
            .unwrap();
    }
    // The collector's clock is past the grace period; the commits are late.
    s.clock
        .store(written + 2 * 3_600_000 - 1_000, Ordering::SeqCst);
    let c = compactor(&s, 1);
    let commits = {
        let (md, ids) = (s.md.clone(), ids.clone());
        tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for id in ids.iter().rev() {
                outcomes.push((
                    id.clone(),
                    md.commit_segment(&commit_of(t.id, id, written)).await,
                ));
                tokio::task::yield_now().await;
            }
            outcomes
        })
    };
    let report = c.collect_orphans().await.unwrap();
    let outcomes = commits.await.unwrap();
    c.collect_orphans().await.unwrap(); // collects what the first pass saw committed-not-yet
    let left: std::collections::HashSet<String> = s
        .storage
        .list("segments")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    let mut committed = 0;
    for (id, outcome) in outcomes {
        let kept = left.contains(&format!("segments/{id}.seg"));
        match outcome {
            Ok(_) => {
                committed += 1;
                assert!(kept, "{id} was committed but its object is gone");
            }
            Err(e) => {
                assert!(refused(Err(e)), "only a fence refuses");
                assert!(!kept, "{id} was refused but its object was kept");
            }
        }
    }
    assert_eq!(
        s.md.partition_state(t.id, 0)
            .await
            .unwrap()
            .unwrap()
            .high_watermark,
        committed,
        "every committed segment is indexed, nothing else"
    );
    assert!(report.scanned > 0);
    eprintln!("race: {committed} of 40 committed first, the rest collected first");
}

#[tokio::test]
async fn gc_lists_only_segments_after_its_checkpoint() {
    let s = setup();
    let t = topic(&s, "t").await;
    let old = now() - 3 * 3_600_000;
    let id = format!("{old:013}-{:016x}", 1);
    s.storage
        .put(&format!("segments/{id}.seg"), Bytes::from_static(b"x"))
        .await
        .unwrap();
    s.md.commit_segment(&commit_of(t.id, &id, old))
        .await
        .unwrap();
    let c = compactor(&s, 1);
    assert_eq!(c.collect_orphans().await.unwrap().scanned, 1);
    assert_eq!(
        c.collect_orphans().await.unwrap().scanned,
        0,
        "the checkpoint moved past it"
    );
    // A new segment is still seen.
    let fresh = format!("{:013}-{:016x}", now(), 2);
    s.storage
        .put(&format!("segments/{fresh}.seg"), Bytes::from_static(b"x"))
        .await
        .unwrap();
    assert_eq!(c.collect_orphans().await.unwrap().kept_recent, 1);
}

/// A deleted topic's storage goes to zero: its index entries, its objects
/// (after the read grace period) and its archive files; a topic that shares
/// a segment with it keeps that object until it no longer needs it.
#[tokio::test]
async fn deleted_topics_are_reclaimed_to_zero() {
    let s = setup();
    let gone =
        s.md.create_topic("gone", 2, TopicConfig::default(), 0, 1)
            .await
            .unwrap();
    let kept =
        s.md.create_topic("kept", 1, TopicConfig::default(), 0, 2)
            .await
            .unwrap();
    let at = now();
    let chunk = |t: u64, p: u32| ChunkCommit {
        topic_id: t,
        partition: p,
        byte_offset: 8,
        byte_len: 1,
        record_count: 1,
        max_timestamp: 0,
    };
    for (id, chunks) in [
        ("1-a", vec![chunk(gone.id, 0), chunk(gone.id, 1)]),
        ("1-b", vec![chunk(gone.id, 0), chunk(kept.id, 0)]),
    ] {
        s.storage
            .put(&format!("segments/{id}.seg"), Bytes::from_static(b"x"))
            .await
            .unwrap();
        let mut c = commit_of(0, id, at);
        c.chunks = chunks;
        s.md.commit_segment(&c).await.unwrap();
    }
    assert_eq!(s.md.object_refs("segments/1-a.seg").await.unwrap(), 2);
    for (t, name) in [
        (gone.id, "gone"),
        (kept.id, "kept"),
        (gone.id + 100, "gone"),
    ] {
        let key = format!("archive/topic={name}/partition=0/{t:020}-{:020}.parquet", 0);
        s.storage.put(&key, Bytes::from_static(b"p")).await.unwrap();
    }
    s.md.delete_topic("gone").await.unwrap();
    let c = compactor(&s, 1);
    let r = c.tick().await.unwrap().unwrap().reclaim;
    assert_eq!(
        (r.entries, r.archive_files, r.objects),
        (3, 1, 0),
        "objects wait out the grace period"
    );
    assert!(s.md.deleted_topics().await.unwrap().is_empty());
    s.clock.fetch_add(3_600_001, Ordering::SeqCst);
    let r = c.tick().await.unwrap().unwrap().reclaim;
    assert_eq!(r.objects, 1, "only the segment nothing else needs");
    let mut left: Vec<String> = s
        .storage
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            format!(
                "archive/topic=gone/partition=0/{:020}-{:020}.parquet",
                gone.id + 100,
                0
            ),
            format!(
                "archive/topic=kept/partition=0/{:020}-{:020}.parquet",
                kept.id, 0
            ),
            "segments/1-b.seg".to_owned(),
        ],
        "another topic's files under the same name stay, and so does the shared segment"
    );
    assert_eq!(s.md.object_refs("segments/1-b.seg").await.unwrap(), 1);
}

/// Retention by time and by bytes advances the log start, makes older
/// offsets unreadable, and releases the objects nothing else needs.
#[tokio::test]
async fn retention_advances_the_log_start_and_frees_objects() {
    let s = setup();
    let at = now();
    let by_time = TopicConfig {
        retention_ms: Some(60_000),
        ..TopicConfig::default()
    };
    let by_bytes = TopicConfig {
        retention_bytes: Some(250),
        ..TopicConfig::default()
    };
    let t = s.md.create_topic("t", 1, by_time, 0, 1).await.unwrap();
    let b = s.md.create_topic("b", 1, by_bytes, 0, 2).await.unwrap();
    for (i, age) in [600_000, 300_000, 1_000].into_iter().enumerate() {
        let id = format!("{at:013}-{i:016x}");
        s.storage
            .put(&format!("segments/{id}.seg"), Bytes::from_static(b"x"))
            .await
            .unwrap();
        let mut c = commit_of(t.id, &id, at);
        c.chunks[0].max_timestamp = at - age;
        c.chunks[0].byte_len = 100;
        let mut other = c.chunks[0].clone();
        other.topic_id = b.id;
        c.chunks.push(other);
        s.md.commit_segment(&c).await.unwrap();
    }
    let c = compactor(&s, 1);
    let r = c.tick().await.unwrap().unwrap();
    // t: two entries older than a minute; b: 300 bytes > 250 → one goes.
    assert_eq!(r.retention.entries, 3);
    let st = s.md.partition_state(t.id, 0).await.unwrap().unwrap();
    assert_eq!(
        (st.log_start_offset, st.high_watermark, st.retained_bytes),
        (2, 3, 100)
    );
    let sb = s.md.partition_state(b.id, 0).await.unwrap().unwrap();
    assert_eq!((sb.log_start_offset, sb.retained_bytes), (1, 200));
    let plan = s.md.read_plan(t.id, 0, 0, 10).await.unwrap().unwrap();
    assert!(
        plan.entries.is_empty(),
        "below the log start: nothing to read"
    );
    // The oldest segment is needed by neither topic now: freed after grace.
    s.clock.fetch_add(3_600_001, Ordering::SeqCst);
    let r = c.tick().await.unwrap().unwrap();
    assert_eq!(r.reclaim.objects, 1);
    assert_eq!(s.storage.list("segments").await.unwrap().len(), 2);
}

#[tokio::test]
async fn retention_never_passes_the_archive() {
    use silt_metadata::retention::RetentionRule;
    let s = setup();
    let at = now();
    let t = topic(&s, "t").await;
    for i in 0..3 {
        let mut c = commit_of(t.id, &format!("{at:013}-{i:016x}"), at);
        c.chunks[0].max_timestamp = 0;
        s.md.commit_segment(&c).await.unwrap();
    }
    let rule = RetentionRule {
        older_than_ms: Some(at),
        max_bytes: None,
        keep_from: 1, // only offset 0 is archived
    };
    assert_eq!(
        s.md.apply_retention(t.id, 0, rule, at, 100).await.unwrap(),
        1
    );
    let st = s.md.partition_state(t.id, 0).await.unwrap().unwrap();
    assert_eq!(st.log_start_offset, 1);
}
