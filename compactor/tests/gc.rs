//! Orphan collection against real SQLite metadata and a real local directory.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use silt_compactor::{Compactor, CompactorConfig, GcReport, segment_id};
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

fn compactor(s: &Setup, holder: u64) -> Compactor {
    let clock = s.clock.clone();
    let config = CompactorConfig {
        interval: Duration::from_secs(10),
        gc_grace: Duration::from_secs(3600),
    };
    Compactor::new(
        config,
        s.md.clone(),
        s.storage.clone(),
        holder,
        Arc::new(move || clock.load(Ordering::SeqCst)),
    )
}

#[tokio::test]
async fn only_old_uncommitted_segments_are_collected() {
    let s = setup();
    let t =
        s.md.create_topic("t", 1, TopicConfig::default(), 0, 1)
            .await
            .unwrap();
    for key in [
        "segments/100-aa.seg",
        "segments/200-bb.seg",
        "segments/notes.txt",
    ] {
        s.storage.put(key, Bytes::from_static(b"x")).await.unwrap();
    }
    let chunk = ChunkCommit {
        topic_id: t.id,
        partition: 0,
        byte_offset: 8,
        byte_len: 1,
        record_count: 1,
        max_timestamp: 0,
    };
    let commit = SegmentCommit {
        segment_id: "100-aa".into(),
        object: "segments/100-aa.seg".into(),
        committed_ms: 0,
        chunks: vec![chunk],
        units: Vec::new(),
    };
    s.md.commit_segment(&commit).await.unwrap();
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
    let t =
        s.md.create_topic("t", 1, TopicConfig::default(), 0, 1)
            .await
            .unwrap();
    let keyed = |id: &str, key: &str, fingerprint: u64| SegmentCommit {
        segment_id: id.into(),
        object: format!("segments/{id}.seg"),
        committed_ms: s.clock.load(Ordering::SeqCst),
        chunks: vec![ChunkCommit {
            topic_id: t.id,
            partition: 0,
            byte_offset: 8,
            byte_len: 1,
            record_count: 1,
            max_timestamp: 0,
        }],
        units: vec![CommitUnit {
            chunks: vec![0],
            dedup: Some(Dedup::Key {
                key: key.into(),
                fingerprint,
                expires_ms: s.clock.load(Ordering::SeqCst) + 60_000,
            }),
            offsets: None,
        }],
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
