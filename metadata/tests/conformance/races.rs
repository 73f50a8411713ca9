//! Transactions that stay correct only through their conflict ranges,
//! raced against each other. Sequential tests cannot see a missing
//! conflict range; on the simulated FoundationDB these can: each fails on
//! `sim` when the read it names is made a snapshot read (checked by hand
//! for every case here).

use std::collections::HashSet;

use silt_metadata::TopicConfig;

use crate::{Fixture, chunk, segment};

/// GC's fence against a commit: never both acknowledged and collected.
/// `collect_segment` reads the segment's record and its object's reference
/// count with conflicts (the commit writes both), each covering the other:
/// with both as snapshot reads this fails on `sim`.
pub async fn gc_and_commit_never_both_win(f: Fixture) {
    let t =
        f.md.create_topic("t", 1, TopicConfig::default(), 0, 1)
            .await
            .unwrap();
    for round in 0..32 {
        let id = format!("race-{round}");
        let s = segment(&id, vec![chunk(t.id, 0, 1)]);
        let (committed, collected) = tokio::join!(
            f.md.commit_segment(&s),
            f.md.collect_segment(&id, &s.object, 1)
        );
        assert!(
            !(committed.is_ok() && collected.unwrap()),
            "round {round}: acknowledged and collected"
        );
    }
}

/// One lease, many claimants at once (`claim_lease` reads the lease with a
/// conflict): exactly one wins.
pub async fn racing_claimants_get_one_lease(f: Fixture) {
    for round in 0..8i64 {
        let name = format!("job-{round}");
        let tasks: Vec<_> = (1..=8u64)
            .map(|holder| {
                let (md, name) = (f.md.clone(), name.clone());
                tokio::spawn(async move { md.acquire_lease(&name, holder, 1_000, 100).await })
            })
            .collect();
        let mut won = 0;
        for t in tasks {
            won += usize::from(t.await.unwrap().unwrap());
        }
        assert_eq!(won, 1, "round {round}: {won} holders");
    }
}

/// Topics and producers created at once get distinct ids (the id counter
/// is read with a conflict), and one name's incarnations distinct epochs.
pub async fn racing_creations_get_distinct_ids(f: Fixture) {
    let topics: Vec<_> = (0..16u64)
        .map(|i| {
            let md = f.md.clone();
            tokio::spawn(async move {
                md.create_topic(&format!("t{i}"), 1, TopicConfig::default(), 0, i)
                    .await
            })
        })
        .collect();
    let mut ids = HashSet::new();
    for t in topics {
        assert!(ids.insert(t.await.unwrap().unwrap().id), "a topic id twice");
    }
    let producers: Vec<_> = (0..16)
        .map(|_| {
            let md = f.md.clone();
            tokio::spawn(async move { md.init_producer(None, 0).await })
        })
        .collect();
    let mut ids = HashSet::new();
    for p in producers {
        assert!(
            ids.insert(p.await.unwrap().unwrap().id),
            "a producer id twice"
        );
    }
    let named: Vec<_> = (0..8)
        .map(|_| {
            let md = f.md.clone();
            tokio::spawn(async move { md.init_producer(Some("etl"), 0).await })
        })
        .collect();
    let mut epochs = HashSet::new();
    for p in named {
        assert!(
            epochs.insert(p.await.unwrap().unwrap().epoch),
            "an epoch twice"
        );
    }
}
