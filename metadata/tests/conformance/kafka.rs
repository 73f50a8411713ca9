//! Kafka idempotent producers on every backend: per-partition sequence
//! windows decide, in the commit that assigns offsets, what is new, a
//! duplicate (answered with its original offset), too old, or a gap.

use silt_metadata::{CommitUnit, Dedup, KafkaBatch, Refusal, TopicConfig, UnitResult};

use crate::{Fixture, chunk, segment};

fn unit(chunk: u32, b: KafkaBatch) -> CommitUnit {
    CommitUnit {
        chunks: vec![chunk],
        dedup: Some(Dedup::KafkaBatch(b)),
        offsets: None,
    }
}

pub async fn kafka_sequences_commit_once_per_partition(f: Fixture) {
    let md = &f.md;
    let t = md
        .create_topic("k", 2, TopicConfig::default(), 0, 1)
        .await
        .unwrap();
    let p = md.init_producer(None, 0).await.unwrap();
    let batch = |partition, first: i32, n: i32| KafkaBatch {
        producer_id: p.id,
        epoch: p.epoch,
        topic_id: t.id,
        partition,
        first_sequence: first,
        last_sequence: first + n - 1,
    };
    let commit = |name: &str, parts: Vec<KafkaBatch>| {
        let mut s = segment(
            name,
            parts
                .iter()
                .map(|b| {
                    chunk(
                        t.id,
                        b.partition,
                        (b.last_sequence - b.first_sequence + 1) as u32,
                    )
                })
                .collect(),
        );
        s.units = parts
            .into_iter()
            .enumerate()
            .map(|(i, b)| unit(i as u32, b))
            .collect();
        s
    };
    // Two batches of one partition in one segment, and partition 1 on its own.
    let s = commit("a", vec![batch(0, 0, 3), batch(0, 3, 2), batch(1, 0, 4)]);
    let out = md.commit_segment(&s).await.unwrap();
    assert_eq!(out.bases, vec![Some(0), Some(3), Some(0)]);
    assert_eq!(out.units, vec![UnitResult::Committed; 3]);
    assert_eq!(md.commit_segment(&s).await.unwrap(), out, "a retry agrees");
    // A retry of the second batch on another agent: its original offset.
    let retry = commit("a-retry", vec![batch(0, 3, 2)]);
    let dup = md.commit_segment(&retry).await.unwrap();
    assert_eq!(dup.bases, vec![None], "a duplicate is not indexed");
    let UnitResult::Duplicate(answer) = &dup.units[0] else {
        panic!("expected a duplicate, got {:?}", dup.units[0]);
    };
    assert_eq!((answer.parts[0].base, answer.parts[0].count), (3, 2));
    assert_eq!(md.commit_segment(&retry).await.unwrap(), dup);
    // A gap, and a batch overlapping the window without matching one.
    for (name, b) in [("gap", batch(0, 6, 1)), ("overlap", batch(0, 4, 1))] {
        assert_eq!(
            md.commit_segment(&commit(name, vec![b]))
                .await
                .unwrap()
                .units,
            vec![UnitResult::Refused(Refusal::OutOfOrderSequence {
                expected: 5
            })],
            "{name}"
        );
    }
    // Five more batches push the first two out of the window.
    for i in 0..5 {
        let s = commit(&format!("n{i}"), vec![batch(0, 5 + i, 1)]);
        assert_eq!(
            md.commit_segment(&s).await.unwrap().units,
            vec![UnitResult::Committed]
        );
    }
    assert_eq!(
        md.commit_segment(&commit("old", vec![batch(0, 0, 3)]))
            .await
            .unwrap()
            .units,
        vec![UnitResult::Refused(Refusal::SequenceTooOld { oldest: 5 })]
    );
    let state = md.partition_state(t.id, 0).await.unwrap().unwrap();
    assert_eq!(state.high_watermark, 10, "nothing was written twice");
    // A new producer must start at 0.
    let q = md.init_producer(None, 0).await.unwrap();
    let mut late = batch(0, 7, 1);
    late.producer_id = q.id;
    assert_eq!(
        md.commit_segment(&commit("late", vec![late]))
            .await
            .unwrap()
            .units,
        vec![UnitResult::Refused(Refusal::OutOfOrderSequence {
            expected: 0
        })]
    );
}

pub async fn kafka_producers_are_fenced_by_epoch(f: Fixture) {
    let md = &f.md;
    let t = md
        .create_topic("k", 1, TopicConfig::default(), 0, 1)
        .await
        .unwrap();
    let old = md.init_producer(Some("tx"), 0).await.unwrap();
    let new = md.init_producer(Some("tx"), 0).await.unwrap();
    assert_eq!((new.id, new.epoch), (old.id, old.epoch + 1));
    let batch = |epoch, first| KafkaBatch {
        producer_id: old.id,
        epoch,
        topic_id: t.id,
        partition: 0,
        first_sequence: first,
        last_sequence: first,
    };
    let one = |name: &str, b| {
        let mut s = segment(name, vec![chunk(t.id, 0, 1)]);
        s.units = vec![unit(0, b)];
        s
    };
    assert_eq!(
        md.commit_segment(&one("zombie", batch(old.epoch, 0)))
            .await
            .unwrap()
            .units,
        vec![UnitResult::Refused(Refusal::ProducerFenced {
            epoch: new.epoch
        })]
    );
    assert_eq!(
        md.commit_segment(&one("future", batch(new.epoch + 1, 0)))
            .await
            .unwrap()
            .units,
        vec![UnitResult::Refused(Refusal::UnknownProducer {
            producer_id: old.id
        })]
    );
    assert_eq!(
        md.commit_segment(&one("current", batch(new.epoch, 0)))
            .await
            .unwrap()
            .units,
        vec![UnitResult::Committed]
    );
}
