//! Agent behaviour with injected time, randomness and faults.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prometheus_client::registry::Registry;
use silt_agent::{
    Agent, AgentConfig, Error, FetchRequest, Limits, Metrics, ProduceRecord, TestEnv,
};
use silt_metadata::fault::{FaultPlan, FaultyKv};
use silt_metadata::kv::Kv;
use silt_metadata::runner::RetryPolicy;
use silt_metadata::sqlite::SqliteKv;
use silt_metadata::{Metadata, TopicConfig};
use silt_segment::store::ObjectStorage;

struct Setup {
    agent: Agent,
    metrics: Metrics,
    md: Arc<Metadata>,
    _dir: tempfile::TempDir,
}

fn start(config: AgentConfig, storage: Option<ObjectStorage>, faults: Option<FaultPlan>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let sqlite: Arc<dyn Kv> = Arc::new(SqliteKv::open(dir.path().join("meta.db")).unwrap());
    let kv: Arc<dyn Kv> = match faults {
        Some(plan) => Arc::new(FaultyKv::new(sqlite, plan)),
        None => sqlite,
    };
    let policy = RetryPolicy {
        max_attempts: 100,
        ..RetryPolicy::default()
    };
    let md = Arc::new(Metadata::new(kv, policy, 1));
    let metrics = Metrics::new(&mut Registry::default());
    let env = Arc::new(TestEnv::new(1_700_000_000_000, 9));
    let agent = Agent::start(
        config,
        md.clone(),
        storage.unwrap_or_else(ObjectStorage::memory),
        env,
        metrics.clone(),
    );
    Setup {
        agent,
        metrics,
        md,
        _dir: dir,
    }
}

fn rec(value: &str) -> ProduceRecord {
    ProduceRecord {
        value: Some(Bytes::from(value.to_owned())),
        ..Default::default()
    }
}

fn keyed(key: &str, value: &str) -> ProduceRecord {
    ProduceRecord {
        key: Some(Bytes::from(key.to_owned())),
        ..rec(value)
    }
}

fn fetch_req(offset: u64, wait: Duration) -> FetchRequest {
    FetchRequest {
        offset,
        limits: Limits {
            max_records: 1000,
            max_bytes: 1 << 20,
        },
        wait,
    }
}

#[tokio::test]
async fn produce_assigns_offsets_in_request_order_and_keys_by_murmur2() {
    let s = start(AgentConfig::default(), None, None);
    s.agent
        .create_topic("t", 4, TopicConfig::default())
        .await
        .unwrap();
    let recs = vec![
        keyed("a", "1"),
        keyed("b", "2"),
        keyed("a", "3"),
        rec("4"),
        rec("5"),
    ];
    let offsets = s.agent.produce("t", recs).await.unwrap();
    let pa = silt_agent::partitioner::partition_for_key(b"a", 4);
    let pb = silt_agent::partitioner::partition_for_key(b"b", 4);
    assert_eq!(offsets[0].0, pa);
    assert_eq!(offsets[1].0, pb);
    assert_eq!(offsets[2].0, pa, "same key, same partition");
    assert_eq!(
        offsets[3].0, offsets[4].0,
        "unkeyed records of one request stick together"
    );
    assert_eq!(offsets[4].1, offsets[3].1 + 1);
    // Within a partition, offsets follow request order.
    let got = s
        .agent
        .fetch("t", pa, fetch_req(0, Duration::ZERO))
        .await
        .unwrap();
    let want: Vec<&[u8]> = offsets
        .iter()
        .zip([b"1", b"2", b"3", b"4", b"5"])
        .filter(|((p, _), _)| *p == pa)
        .map(|(_, v)| &v[..])
        .collect();
    let values: Vec<_> = got
        .records
        .iter()
        .map(|r| r.record.value.clone().unwrap())
        .collect();
    assert_eq!(values, want);
    for (r, (_, off)) in got
        .records
        .iter()
        .zip(offsets.iter().filter(|(p, _)| *p == pa))
    {
        assert_eq!(r.offset, *off);
    }
    assert_eq!(
        got.records[0].record.timestamp, 1_700_000_000_000,
        "the injected clock stamps records"
    );
}

#[tokio::test]
async fn bounded_memory_refuses_with_overloaded_and_shutdown_answers_everyone() {
    // Nothing flushes on its own: the interval is an hour and flush_bytes is huge.
    let config = AgentConfig {
        flush_interval: Duration::from_secs(3600),
        flush_bytes: 1 << 30,
        max_inflight_bytes: 10_000,
        ..AgentConfig::default()
    };
    let s = start(config, None, None);
    s.agent
        .create_topic("t", 1, TopicConfig::default())
        .await
        .unwrap();
    let big = || vec![rec(&"x".repeat(6_000))];
    let agent = s.agent.clone();
    let first =
        tokio::spawn(async move { agent.produce("t", vec![rec(&"x".repeat(6_000))]).await });
    while s.metrics.inflight_bytes.get() == 0 {
        tokio::task::yield_now().await;
    }
    match s.agent.produce("t", big()).await {
        Err(Error::Overloaded { retry_after }) => assert!(retry_after > Duration::ZERO),
        other => panic!("expected Overloaded, got {other:?}"),
    }
    assert!(
        !first.is_finished(),
        "the first request waits for its flush"
    );
    s.agent.shutdown().await;
    let offsets = first.await.unwrap().unwrap();
    assert_eq!(
        offsets,
        vec![(0, 0)],
        "shutdown flushed and answered the waiting producer"
    );
    assert_eq!(
        s.metrics.inflight_bytes.get(),
        0,
        "every admitted byte was released"
    );
    assert!(matches!(
        s.agent.produce("t", big()).await,
        Err(Error::ShuttingDown)
    ));
}

#[tokio::test]
async fn flush_bytes_cuts_a_segment_before_the_interval() {
    let config = AgentConfig {
        flush_interval: Duration::from_secs(3600),
        flush_bytes: 1_000,
        // Group commit would flush at once anyway.
        group_commit: false,
        ..AgentConfig::default()
    };
    let s = start(config, None, None);
    s.agent
        .create_topic("t", 1, TopicConfig::default())
        .await
        .unwrap();
    let r = tokio::time::timeout(
        Duration::from_secs(30),
        s.agent.produce("t", vec![rec(&"y".repeat(2_000))]),
    )
    .await;
    assert_eq!(
        r.expect("flushed by size, not by the hour-long interval")
            .unwrap(),
        vec![(0, 0)]
    );
    assert_eq!(s.metrics.segments_flushed.get(), 1);
}

#[tokio::test]
async fn long_poll_wakes_on_commit() {
    let s = start(AgentConfig::default(), None, None);
    s.agent
        .create_topic("t", 1, TopicConfig::default())
        .await
        .unwrap();
    let agent = s.agent.clone();
    let poll = tokio::spawn(async move {
        agent
            .fetch("t", 0, fetch_req(0, Duration::from_secs(60)))
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!poll.is_finished());
    s.agent.produce("t", vec![rec("hello")]).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(30), poll)
        .await
        .expect("woken by the commit")
        .unwrap()
        .unwrap();
    assert_eq!(got.records[0].record.value.as_deref(), Some(&b"hello"[..]));
    assert_eq!((got.next_offset, got.high_watermark), (1, 1));
    // Without waiting, a fetch at the high-watermark returns at once, empty.
    let empty = s
        .agent
        .fetch("t", 0, fetch_req(1, Duration::ZERO))
        .await
        .unwrap();
    assert!(empty.records.is_empty());
    assert!(matches!(
        s.agent.fetch("t", 0, fetch_req(2, Duration::ZERO)).await,
        Err(Error::OffsetOutOfRange {
            offset: 2,
            earliest: 0,
            latest: 1
        })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_under_metadata_faults() {
    let plan = FaultPlan {
        seed: 3,
        conflict: 0.2,
        unknown_not_applied: 0.1,
        unknown_applied: 0.2,
        begin_error: 0.05,
        read_error: 0.02,
        late_commit: 0.05,
    };
    let config = AgentConfig {
        flush_interval: Duration::from_millis(2),
        ..AgentConfig::default()
    };
    let s = start(config, None, Some(plan));
    s.agent
        .create_topic("t", 2, TopicConfig::default())
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for p in 0..4 {
        let agent = s.agent.clone();
        tasks.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            for i in 0..25 {
                let recs = (0..4)
                    .map(|j| keyed(&format!("{p}-{j}"), &format!("{p}:{i}:{j}")))
                    .collect();
                acks.extend(agent.produce("t", recs).await.unwrap());
            }
            acks
        }));
    }
    let mut acked = std::collections::HashSet::new();
    for t in tasks {
        for a in t.await.unwrap() {
            assert!(acked.insert(a), "{a:?} acknowledged twice");
        }
    }
    let d = s.agent.describe_topic("t").await.unwrap();
    let total: u64 = d.partitions.iter().map(|p| p.high_watermark).sum();
    assert_eq!(
        total, 400,
        "every record indexed exactly once despite retries"
    );
}

#[tokio::test]
async fn object_store_failure_fails_the_producers_and_indexes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // A plain file where the segments directory should be: every PUT fails.
    std::fs::write(dir.path().join("segments"), b"not a directory").unwrap();
    let url = format!("file://{}", dir.path().display());
    let s = start(
        AgentConfig::default(),
        Some(ObjectStorage::from_url(&url).unwrap()),
        None,
    );
    s.agent
        .create_topic("t", 1, TopicConfig::default())
        .await
        .unwrap();
    let err = s.agent.produce("t", vec![rec("lost?")]).await.unwrap_err();
    assert_eq!(err.kind(), silt_agent::ErrorKind::Unavailable, "{err}");
    assert_eq!(s.agent.offsets("t", 0).await.unwrap().high_watermark, 0);
    assert_eq!(s.metrics.flush_failures.get(), 1);
}

/// Requests that together touch more partitions than a segment may hold
/// (4,096 chunks) go into consecutive segments instead of failing the flush.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_never_exceeds_the_chunk_bound() {
    let config = AgentConfig {
        flush_interval: Duration::from_millis(300),
        ..AgentConfig::default()
    };
    let s = start(config, None, None);
    for t in ["wide-a", "wide-b"] {
        s.agent
            .create_topic(t, 3000, TopicConfig::default())
            .await
            .unwrap();
    }
    let spread = |n: u32| -> Vec<ProduceRecord> {
        (0..n)
            .map(|p| ProduceRecord {
                partition: Some(p),
                ..rec("x")
            })
            .collect()
    };
    let (a, b) = tokio::join!(
        s.agent.produce("wide-a", spread(3000)),
        s.agent.produce("wide-b", spread(3000))
    );
    assert_eq!(a.unwrap().len(), 3000);
    assert_eq!(b.unwrap().len(), 3000);
    assert!(
        s.metrics.segments_flushed.get() >= 2,
        "cut into two segments"
    );
    assert_eq!(s.metrics.flush_failures.get(), 0);
}

/// An agent whose topic cache is stale (the topic was deleted and created
/// again through another agent) answers a retriable error, never a 404, and
/// the retry lands in the new topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_topic_is_a_retriable_error_for_a_stale_agent() {
    let a = start(AgentConfig::default(), None, None);
    let md = a.md.clone();
    let metrics = Metrics::new(&mut Registry::default());
    let env = Arc::new(TestEnv::new(1_700_000_000_000, 3));
    let b = Agent::start(
        AgentConfig::default(),
        md,
        ObjectStorage::memory(),
        env,
        metrics,
    );
    a.agent
        .create_topic("t", 1, TopicConfig::default())
        .await
        .unwrap();
    a.agent.produce("t", vec![rec("cached")]).await.unwrap();
    b.delete_topic("t").await.unwrap();
    b.create_topic("t", 1, TopicConfig::default())
        .await
        .unwrap();
    let e = a.agent.produce("t", vec![rec("x")]).await.unwrap_err();
    assert!(matches!(e, Error::TopicChanged(_)), "{e:?}");
    assert_eq!(e.kind(), silt_agent::ErrorKind::Unavailable);
    let offsets = a.agent.produce("t", vec![rec("y")]).await.unwrap();
    assert_eq!(
        offsets,
        vec![(0, 0)],
        "the retry is the new topic's first record"
    );
}

/// A read fetches the chunks its answer may need, a few at once, and no
/// more: one record asked for, one chunk read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_prefetch_only_what_the_answer_can_use() {
    let s = start(AgentConfig::default(), None, None);
    s.agent
        .create_topic("t", 1, TopicConfig::default())
        .await
        .unwrap();
    // One segment, so one chunk, per request (group commit flushes each).
    for i in 0..10 {
        s.agent
            .produce("t", vec![rec(&format!("r{i}"))])
            .await
            .unwrap();
    }
    assert_eq!(s.metrics.segments_flushed.get(), 10);
    let mut one = fetch_req(0, Duration::ZERO);
    one.limits.max_records = 1;
    let got = s.agent.fetch("t", 0, one).await.unwrap();
    assert_eq!(got.records.len(), 1);
    assert_eq!(s.metrics.cache_misses.get(), 1, "one chunk for one record");
    let all = s
        .agent
        .fetch("t", 0, fetch_req(0, Duration::ZERO))
        .await
        .unwrap();
    let values: Vec<_> = all
        .records
        .iter()
        .map(|r| r.record.value.clone().unwrap())
        .collect();
    assert_eq!(values.len(), 10);
    assert_eq!(values[9], Bytes::from("r9"), "in order");
    assert_eq!(s.metrics.cache_misses.get(), 10, "each chunk read once");
}
