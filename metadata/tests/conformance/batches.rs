//! Batched segment commits (what a sequencer sends) on every backend: a
//! batch is its segments committed one after another, in one transaction.

use silt_metadata::{CommitUnit, Dedup, ErrorKind, SegmentCommit, TopicConfig, UnitResult};

use crate::units::{unit, with_units};
use crate::{Fixture, chunk, segment};

fn sequenced(s: SegmentCommit, chunk: u32, dedup: Dedup) -> SegmentCommit {
    with_units(s, vec![unit(vec![chunk], Some(dedup))])
}

pub async fn batches_commit_as_one_after_another(f: Fixture) {
    let md = &f.md;
    let t = md
        .create_topic("t", 2, TopicConfig::default(), 0, 1)
        .await
        .unwrap();
    let p = md.init_producer(None, 0).await.unwrap();
    let seq = |sequence| Dedup::Producer {
        id: p.id,
        epoch: p.epoch,
        sequence,
    };
    assert!(
        md.collect_segment("fenced", "segments/fenced", 1)
            .await
            .unwrap()
    );
    let mut old = segment("old", vec![chunk(t.id, 0, 1)]);
    old.committed_ms = silt_metadata::commit::MAX_COMMIT_AGE_MS + 10;
    let mut invalid = segment("invalid", vec![chunk(t.id, 0, 1)]);
    invalid.units = vec![CommitUnit {
        chunks: vec![5],
        dedup: None,
        offsets: None,
    }];
    let a = segment("a", vec![chunk(t.id, 0, 2), chunk(t.id, 1, 3)]);
    let batch = vec![
        a.clone(),
        sequenced(segment("b", vec![chunk(t.id, 0, 1)]), 0, seq(0)),
        a.clone(), // a retry queued beside its original
        segment("fenced", vec![chunk(t.id, 1, 9)]),
        sequenced(segment("d", vec![chunk(t.id, 0, 4)]), 0, seq(1)),
        invalid,
        sequenced(segment("e", vec![chunk(t.id, 0, 7)]), 0, seq(0)),
        old,
    ];
    let out = md.commit_segments(batch.clone()).await.unwrap();
    assert_eq!(out.len(), batch.len());
    let bases = |i: usize| out[i].as_ref().unwrap().bases.clone();
    assert_eq!(bases(0), vec![Some(0), Some(0)]);
    assert_eq!(bases(1), vec![Some(2)], "batch order is offset order");
    assert_eq!(out[2].as_ref().unwrap(), out[0].as_ref().unwrap());
    assert_eq!(bases(4), vec![Some(3)], "sequences admit in batch order");
    assert_eq!(bases(6), vec![None], "a duplicate of b is not indexed");
    let UnitResult::Duplicate(answer) = &out[6].as_ref().unwrap().units[0] else {
        panic!("expected a duplicate: {:?}", out[6]);
    };
    assert_eq!(answer.parts[0].base, 2, "with b's answer");
    for (i, kind) in [
        (3, ErrorKind::Unavailable),
        (5, ErrorKind::InvalidArgument),
        (7, ErrorKind::Unavailable),
    ] {
        let e = out[i].as_ref().unwrap_err();
        assert_eq!(e.kind(), kind, "segment {i}: {e}");
    }
    let states = md.partition_states(t.id).await.unwrap();
    assert_eq!(
        (states[0].high_watermark, states[1].high_watermark),
        (2 + 1 + 4, 3)
    );
    // The whole batch again (a sequencer's retry after an unknown result):
    // the same answers, nothing indexed twice.
    let again = md.commit_segments(batch).await.unwrap();
    for (i, (first, second)) in out.iter().zip(&again).enumerate() {
        match (first, second) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "segment {i}"),
            (Err(a), Err(b)) => assert_eq!(a.kind(), b.kind(), "segment {i}"),
            _ => panic!("segment {i}: {first:?} then {second:?}"),
        }
    }
    let states = md.partition_states(t.id).await.unwrap();
    assert_eq!((states[0].high_watermark, states[1].high_watermark), (7, 3));
    let plan = md.read_plan(t.id, 0, 0, 10).await.unwrap().unwrap();
    let objects: Vec<&str> = plan
        .entries
        .iter()
        .map(|(_, e)| e.object.as_str())
        .collect();
    assert_eq!(objects, ["segments/a", "segments/b", "segments/d"]);
}

/// A segment sent to a sequencer whose answer was lost, then committed
/// directly by its agent, while the batch is still in flight: indexed once,
/// and both paths give the same answer.
pub async fn batched_and_direct_commits_of_one_segment_agree(f: Fixture) {
    let t =
        f.md.create_topic("t", 1, TopicConfig::default(), 0, 1)
            .await
            .unwrap();
    for round in 0..8u32 {
        let mine = segment(&format!("mine-{round}"), vec![chunk(t.id, 0, 3)]);
        let others: Vec<SegmentCommit> = (0..4)
            .map(|i| segment(&format!("other-{round}-{i}"), vec![chunk(t.id, 0, 1)]))
            .collect();
        let mut batch = others;
        let at = round as usize % 5;
        batch.insert(at, mine.clone());
        let (batched, direct) =
            tokio::join!(f.md.commit_segments(batch), f.md.commit_segment(&mine));
        let batched = batched.unwrap();
        assert_eq!(
            batched[at].as_ref().unwrap(),
            &direct.unwrap(),
            "round {round}: both paths give one answer"
        );
    }
    let hwm =
        f.md.partition_state(t.id, 0)
            .await
            .unwrap()
            .unwrap()
            .high_watermark;
    assert_eq!(hwm, 8 * (3 + 4), "every segment indexed exactly once");
}

/// A segment sent before its predecessor's answer commits only after it:
/// earlier in the same batch, or before; otherwise nothing of it applies.
pub async fn segments_wait_for_their_predecessor(f: Fixture) {
    let md = &f.md;
    let t = md
        .create_topic("t", 1, TopicConfig::default(), 0, 1)
        .await
        .unwrap();
    let after = |mut s: SegmentCommit, p: &str| {
        s.after = Some(p.into());
        s
    };
    let hwm = || async {
        md.partition_state(t.id, 0)
            .await
            .unwrap()
            .unwrap()
            .high_watermark
    };
    // Alone, before its predecessor: refused, nothing applied.
    let q = after(segment("q", vec![chunk(t.id, 0, 2)]), "p");
    let e = md.commit_segment(&q).await.unwrap_err();
    assert!(
        matches!(&e, silt_metadata::Error::PredecessorPending { after, .. } if after == "p"),
        "{e}"
    );
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert_eq!(hwm().await, 0);
    // Once the predecessor is committed, it commits after it.
    md.commit_segment(&segment("p", vec![chunk(t.id, 0, 3)]))
        .await
        .unwrap();
    assert_eq!(md.commit_segment(&q).await.unwrap().bases, vec![Some(3)]);
    // In one batch: after its predecessor, fine; before it, it waits.
    let out = md
        .commit_segments(vec![
            after(segment("s", vec![chunk(t.id, 0, 1)]), "r"),
            segment("r", vec![chunk(t.id, 0, 1)]),
            after(segment("u", vec![chunk(t.id, 0, 1)]), "r"),
        ])
        .await
        .unwrap();
    assert!(matches!(
        out[0],
        Err(silt_metadata::Error::PredecessorPending { .. })
    ));
    assert_eq!(out[1].as_ref().unwrap().bases, vec![Some(5)]);
    assert_eq!(out[2].as_ref().unwrap().bases, vec![Some(6)]);
    assert_eq!(hwm().await, 7);
}
