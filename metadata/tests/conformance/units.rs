//! Commit units on every backend: all-or-nothing requests, producer
//! sequences, idempotency keys, and offsets committed with records.

use silt_metadata::groups::{JoinRequest, MemberRef, OffsetCommit, OffsetUpdate};
use silt_metadata::values::OffsetReset;
use silt_metadata::{CommitUnit, Dedup, Refusal, SegmentCommit, TopicConfig, UnitResult};

use crate::{Fixture, chunk, segment};

pub fn with_units(mut s: SegmentCommit, units: Vec<CommitUnit>) -> SegmentCommit {
    s.units = units;
    s
}

/// `expire` reports what its committed attempt removed: after an unknown
/// commit result, the retry finds entries already gone and reports fewer.
fn expired(f: &Fixture, got: usize, want: usize) {
    if f.faults.is_some() {
        assert!(got <= want, "expired {got}, more than the {want} due");
    } else {
        assert_eq!(got, want, "expiry entries removed");
    }
}

pub fn unit(chunks: Vec<u32>, dedup: Option<Dedup>) -> CommitUnit {
    CommitUnit {
        chunks,
        dedup,
        offsets: None,
    }
}

pub async fn units_are_all_or_nothing(f: Fixture) {
    let md = &f.md;
    let gone = md
        .create_topic("gone", 1, TopicConfig::default(), 0, 1)
        .await
        .unwrap();
    let kept = md
        .create_topic("kept", 2, TopicConfig::default(), 0, 2)
        .await
        .unwrap();
    md.delete_topic("gone").await.unwrap();
    let s = with_units(
        segment(
            "atomic",
            vec![
                chunk(kept.id, 0, 3), // plain: commits
                chunk(gone.id, 0, 2), // unit 0: its topic is gone...
                chunk(kept.id, 1, 4), // ...so this part of unit 0 is dropped too
                chunk(kept.id, 1, 1), // unit 1: commits
            ],
        ),
        vec![unit(vec![1, 2], None), unit(vec![3], None)],
    );
    let out = md.commit_segment(&s).await.unwrap();
    assert_eq!(out.bases, vec![Some(0), None, None, Some(0)]);
    assert_eq!(
        out.units,
        vec![
            UnitResult::Refused(Refusal::TopicGone),
            UnitResult::Committed
        ]
    );
    assert_eq!(md.commit_segment(&s).await.unwrap(), out, "a retry agrees");
    let states = md.partition_states(kept.id).await.unwrap();
    assert_eq!((states[0].high_watermark, states[1].high_watermark), (3, 1));
}

pub async fn producer_sequences_commit_once(f: Fixture) {
    let md = &f.md;
    let t = md
        .create_topic("t", 2, TopicConfig::default(), 0, 1)
        .await
        .unwrap();
    let p = md.init_producer(None, 0).await.unwrap();
    assert_eq!(p.epoch, 0);
    let seq = |s| {
        Some(Dedup::Producer {
            id: p.id,
            epoch: p.epoch,
            sequence: s,
        })
    };
    let first = with_units(
        segment("p0", vec![chunk(t.id, 0, 2), chunk(t.id, 1, 3)]),
        vec![unit(vec![0, 1], seq(0))],
    );
    let out = md.commit_segment(&first).await.unwrap();
    assert_eq!(out.units, vec![UnitResult::Committed]);
    // The same request again, in another segment (a retry on another agent).
    let retry = with_units(
        segment("p0-retry", vec![chunk(t.id, 0, 2), chunk(t.id, 1, 3)]),
        vec![unit(vec![0, 1], seq(0))],
    );
    let dup = md.commit_segment(&retry).await.unwrap();
    assert_eq!(dup.bases, vec![None, None], "a duplicate is not indexed");
    let UnitResult::Duplicate(answer) = &dup.units[0] else {
        panic!("expected a duplicate, got {:?}", dup.units[0]);
    };
    let bases: Vec<u64> = answer.parts.iter().map(|a| a.base).collect();
    assert_eq!(bases, [0, 0]);
    assert_eq!(
        md.commit_segment(&retry).await.unwrap(),
        dup,
        "replaying a duplicate's segment agrees"
    );
    let gap = with_units(
        segment("p2", vec![chunk(t.id, 0, 1)]),
        vec![unit(vec![0], seq(2))],
    );
    assert_eq!(
        md.commit_segment(&gap).await.unwrap().units,
        vec![UnitResult::Refused(Refusal::OutOfOrderSequence {
            expected: 1
        })]
    );
    for s in 1..8u64 {
        let next = with_units(
            segment(&format!("q{s}"), vec![chunk(t.id, 0, 1)]),
            vec![unit(vec![0], seq(s))],
        );
        assert_eq!(
            md.commit_segment(&next).await.unwrap().units,
            vec![UnitResult::Committed]
        );
    }
    let ancient = with_units(
        segment("old", vec![chunk(t.id, 0, 1)]),
        vec![unit(vec![0], seq(1))],
    );
    assert!(matches!(
        md.commit_segment(&ancient).await.unwrap().units[0],
        UnitResult::Refused(Refusal::SequenceTooOld { .. })
    ));
    assert_eq!(
        md.partition_states(t.id).await.unwrap()[0].high_watermark,
        2 + 7
    );
    // Two producers with one name: the later incarnation fences the earlier.
    let a = md.init_producer(Some("etl"), 0).await.unwrap();
    let b = md.init_producer(Some("etl"), 0).await.unwrap();
    // A retry after an unknown result may bump the epoch twice: what
    // matters is that the later one is higher (it fences every earlier).
    assert_eq!(b.id, a.id);
    assert!(b.epoch > a.epoch, "{b:?} after {a:?}");
    let zombie = with_units(
        segment("z", vec![chunk(t.id, 1, 1)]),
        vec![unit(
            vec![0],
            Some(Dedup::Producer {
                id: a.id,
                epoch: a.epoch,
                sequence: 0,
            }),
        )],
    );
    assert_eq!(
        md.commit_segment(&zombie).await.unwrap().units,
        vec![UnitResult::Refused(Refusal::ProducerFenced {
            epoch: b.epoch
        })]
    );
}

pub async fn idempotency_keys_expire(f: Fixture) {
    let md = &f.md;
    let t = md
        .create_topic("t", 1, TopicConfig::default(), 0, 1)
        .await
        .unwrap();
    let keyed = |id: &str, fingerprint, now: i64| {
        let mut s = with_units(
            segment(id, vec![chunk(t.id, 0, 1)]),
            vec![unit(
                vec![0],
                Some(Dedup::Key {
                    key: "order-17".into(),
                    fingerprint,
                    expires_ms: now + 1_000,
                }),
            )],
        );
        (s.created_ms, s.committed_ms) = (now, now);
        s
    };
    let first = md.commit_segment(&keyed("k1", 9, 100)).await.unwrap();
    assert_eq!(first.units, vec![UnitResult::Committed]);
    let again = md.commit_segment(&keyed("k2", 9, 200)).await.unwrap();
    assert!(matches!(&again.units[0], UnitResult::Duplicate(a) if a.parts[0].base == 0));
    let other = md.commit_segment(&keyed("k3", 8, 300)).await.unwrap();
    assert_eq!(
        other.units,
        vec![UnitResult::Refused(Refusal::IdempotencyKeyReused)]
    );
    assert_eq!(md.expire(1_099, 100).await.unwrap(), 0, "not yet due");
    // After the window the key is free: a new request commits.
    let later = md.commit_segment(&keyed("k4", 8, 1_200)).await.unwrap();
    assert_eq!(later.units, vec![UnitResult::Committed]);
    expired(&f, md.expire(2_201, 100).await.unwrap(), 1);
    assert_eq!(md.expire(2_201, 100).await.unwrap(), 0, "nothing left due");
    let fresh = md.commit_segment(&keyed("k5", 1, 2_300)).await.unwrap();
    assert_eq!(fresh.units, vec![UnitResult::Committed]);
    assert_eq!(
        md.partition_states(t.id).await.unwrap()[0].high_watermark,
        3
    );
}

pub async fn transactions_commit_offsets_with_records(f: Fixture) {
    let md = &f.md;
    let input = md
        .create_topic("in", 1, TopicConfig::default(), 0, 1)
        .await
        .unwrap();
    let output = md
        .create_topic("out", 1, TopicConfig::default(), 0, 2)
        .await
        .unwrap();
    let m = md
        .join_group(
            "etl",
            &JoinRequest {
                member_id: "w1".into(),
                topics: vec!["in".into()],
                session_timeout_ms: 10_000,
                offset_reset: OffsetReset::Earliest,
            },
            0,
        )
        .await
        .unwrap();
    let txn = |id: &str, generation: u32, offset: u64| {
        let mut s = with_units(
            segment(id, vec![chunk(output.id, 0, 2)]),
            vec![CommitUnit {
                chunks: vec![0],
                dedup: None,
                offsets: Some(OffsetCommit {
                    group: "etl".into(),
                    member: Some(MemberRef {
                        member_id: "w1".into(),
                        generation,
                    }),
                    offsets: vec![OffsetUpdate {
                        topic_id: input.id,
                        partition: 0,
                        offset,
                        metadata: String::new(),
                    }],
                }),
            }],
        );
        (s.created_ms, s.committed_ms) = (10, 10);
        s
    };
    let ok = md
        .commit_segment(&txn("t1", m.generation, 4))
        .await
        .unwrap();
    assert_eq!(ok.units, vec![UnitResult::Committed]);
    let fenced = md
        .commit_segment(&txn("t2", m.generation + 7, 9))
        .await
        .unwrap();
    assert!(matches!(
        fenced.units[0],
        UnitResult::Refused(Refusal::StaleGeneration { .. })
    ));
    assert_eq!(
        fenced.bases,
        vec![None],
        "the output records stay invisible"
    );
    let offsets = md.committed_offsets("etl", None).await.unwrap();
    assert_eq!(
        offsets[0].committed.offset, 4,
        "and the input offset did not move"
    );
    assert_eq!(
        md.partition_states(output.id).await.unwrap()[0].high_watermark,
        2
    );
}

pub async fn idle_producers_are_forgotten(f: Fixture) {
    use silt_metadata::producers::PRODUCER_TTL_MS;
    let md = &f.md;
    let t = md
        .create_topic("t", 1, TopicConfig::default(), 0, 1)
        .await
        .unwrap();
    let p = md.init_producer(Some("nightly"), 0).await.unwrap();
    let seq = |id: &str, s: u64, at: i64| {
        let mut c = with_units(
            segment(id, vec![chunk(t.id, 0, 1)]),
            vec![unit(
                vec![0],
                Some(Dedup::Producer {
                    id: p.id,
                    epoch: p.epoch,
                    sequence: s,
                }),
            )],
        );
        (c.created_ms, c.committed_ms) = (at, at);
        c
    };
    // Producing keeps it alive past its first deadline.
    let late = PRODUCER_TTL_MS * 3 / 4;
    assert_eq!(
        md.commit_segment(&seq("s0", 0, late)).await.unwrap().units,
        vec![UnitResult::Committed]
    );
    // Only the segment's own record (kept a day) is due by the first deadline.
    expired(&f, md.expire(PRODUCER_TTL_MS + 1, 100).await.unwrap(), 1);
    // Idle for a whole TTL: the producer's record, its answers and its
    // Kafka sequence windows go.
    expired(
        &f,
        md.expire(late + PRODUCER_TTL_MS + 1, 100).await.unwrap(),
        3,
    );
    assert_eq!(
        md.commit_segment(&seq("s1", 1, late + PRODUCER_TTL_MS + 2))
            .await
            .unwrap()
            .units,
        vec![UnitResult::Refused(Refusal::UnknownProducer {
            producer_id: p.id
        })]
    );
    let again = md
        .init_producer(Some("nightly"), late + PRODUCER_TTL_MS + 3)
        .await
        .unwrap();
    assert_ne!(again.id, p.id, "a forgotten name gets a new id");
}

/// A retry that lands in the same segment as its original (one agent, one
/// flush) is a duplicate too, never written twice.
pub async fn retries_within_one_segment_are_duplicates(f: Fixture) {
    let md = &f.md;
    let t = md
        .create_topic("t", 1, TopicConfig::default(), 0, 1)
        .await
        .unwrap();
    let p = md.init_producer(None, 0).await.unwrap();
    let seq = |s| {
        Some(Dedup::Producer {
            id: p.id,
            epoch: p.epoch,
            sequence: s,
        })
    };
    let key = |fingerprint| {
        Some(Dedup::Key {
            key: "k".into(),
            fingerprint,
            expires_ms: 1_000_000,
        })
    };
    let s = with_units(
        segment("same", (0..6).map(|_| chunk(t.id, 0, 2)).collect()),
        vec![
            unit(vec![0], seq(0)),
            unit(vec![1], seq(0)), // the retry
            unit(vec![2], seq(1)), // the next request
            unit(vec![3], key(7)),
            unit(vec![4], key(7)), // the retry
            unit(vec![5], key(8)), // another request under the same key
        ],
    );
    let out = md.commit_segment(&s).await.unwrap();
    assert_eq!(out.bases, vec![Some(0), None, Some(2), Some(4), None, None]);
    let base = |r: &UnitResult| match r {
        UnitResult::Duplicate(a) => a.parts[0].base,
        other => panic!("expected a duplicate, got {other:?}"),
    };
    assert_eq!(base(&out.units[1]), 0);
    assert_eq!(out.units[2], UnitResult::Committed);
    assert_eq!(base(&out.units[4]), 4);
    assert_eq!(
        out.units[5],
        UnitResult::Refused(Refusal::IdempotencyKeyReused)
    );
    assert_eq!(md.commit_segment(&s).await.unwrap(), out, "a retry agrees");
    assert_eq!(
        md.partition_states(t.id).await.unwrap()[0].high_watermark,
        6
    );
}

/// Archive progress: a file's range is planned before it is written, every
/// writer follows the plan, and progress moves by compare-and-set.
pub async fn archive_progress_is_planned_then_advanced(f: Fixture) {
    let md = &f.md;
    assert_eq!(md.archive_progress(1, 0).await.unwrap().next, 0);
    assert_eq!(md.plan_archive(1, 0, 0, 10).await.unwrap(), Some(10));
    // A second writer from the same start follows the first plan.
    assert_eq!(md.plan_archive(1, 0, 0, 12).await.unwrap(), Some(10));
    assert!(
        !md.advance_archive(1, 0, 0, 12).await.unwrap(),
        "not the plan"
    );
    assert!(md.advance_archive(1, 0, 0, 10).await.unwrap());
    assert!(md.advance_archive(1, 0, 0, 10).await.unwrap(), "idempotent");
    let p = md.archive_progress(1, 0).await.unwrap();
    assert_eq!((p.next, p.planned_end), (10, None));
    assert_eq!(
        md.plan_archive(1, 0, 5, 20).await.unwrap(),
        None,
        "moved past 5"
    );
    // Retention moved the log start past the progress: the plan may jump.
    assert_eq!(md.plan_archive(1, 0, 40, 50).await.unwrap(), Some(50));
    assert!(md.advance_archive(1, 0, 40, 50).await.unwrap());
    assert_eq!(md.archive_progress(1, 0).await.unwrap().next, 50);
}
