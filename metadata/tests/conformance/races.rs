//! Transactions that stay correct only through their conflict ranges,
//! raced against each other. Sequential tests cannot see a missing
//! conflict range; on the simulated FoundationDB these can: each fails on
//! `sim` when the read it names is made a snapshot read (checked by hand
//! for every case here).

use std::collections::HashSet;

use silt_metadata::TopicConfig;
use silt_metadata::merge::MergeSwap;
use silt_metadata::retention::RetentionRule;

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

/// A merge's swap and retention both rewrite the partition state they read
/// (with a conflict); a commit racing them must never see its
/// high-watermark go back.
pub async fn merges_and_retention_never_roll_commits_back(f: Fixture) {
    let md = &f.md;
    let t = md
        .create_topic("t", 16, TopicConfig::default(), 0, 1)
        .await
        .unwrap();
    for p in 0..16u32 {
        for i in 0..3 {
            md.commit_segment(&segment(&format!("{p}-{i}"), vec![chunk(t.id, p, 1)]))
                .await
                .unwrap();
        }
        let plan = md.read_plan(t.id, p, 0, 10).await.unwrap().unwrap();
        let late = segment(&format!("{p}-late"), vec![chunk(t.id, p, 1)]);
        if p % 2 == 0 {
            // Merge the first two entries while a commit lands.
            let old: Vec<_> = plan.entries[..2].to_vec();
            let mut new = old[0].1.clone();
            new.object = format!("segments/merged-{p}");
            new.record_count = 2;
            let swap = MergeSwap {
                topic_id: t.id,
                partition: p,
                old,
                segment_id: format!("merged-{p}"),
                new,
            };
            let (swapped, committed) =
                tokio::join!(md.swap_merged(&swap, 0), md.commit_segment(&late));
            swapped.unwrap();
            committed.unwrap();
        } else {
            // Expire two entries (the limit cuts the range read short).
            let rule = RetentionRule {
                older_than_ms: Some(100),
                max_bytes: None,
                keep_from: u64::MAX,
            };
            let (expired, committed) = tokio::join!(
                md.apply_retention(t.id, p, rule, 0, 2),
                md.commit_segment(&late)
            );
            expired.unwrap();
            committed.unwrap();
        }
        let state = md.partition_state(t.id, p).await.unwrap().unwrap();
        assert_eq!(state.high_watermark, 4, "partition {p}: {state:?}");
        let next = segment(&format!("{p}-next"), vec![chunk(t.id, p, 1)]);
        let base = md.commit_segment(&next).await.unwrap().bases[0];
        assert_eq!(base, Some(4), "partition {p}: offsets reused");
    }
}

/// A holder releasing a lease that lapsed and passed to another must not
/// clear the successor's (`release_lease` reads it with a conflict).
pub async fn a_late_release_leaves_the_successor_alone(f: Fixture) {
    let md = &f.md;
    for round in 0..16 {
        let name = format!("job-{round}");
        assert!(md.acquire_lease(&name, 1, 0, 10).await.unwrap());
        let (released, taken) = tokio::join!(
            md.release_lease(&name, 1),
            md.acquire_lease(&name, 2, 100, 1_000)
        );
        released.unwrap();
        if taken.unwrap() {
            assert!(
                !md.acquire_lease(&name, 3, 200, 10).await.unwrap(),
                "round {round}: the successor's lease was released by its predecessor"
            );
        }
    }
}

/// Archive plans from one start, made at once, agree on one file
/// (`plan_archive` reads the progress with a conflict).
pub async fn racing_archive_plans_agree(f: Fixture) {
    for p in 0..8u32 {
        let plans: Vec<_> = (0..8u64)
            .map(|i| {
                let md = f.md.clone();
                tokio::spawn(async move { md.plan_archive(1, p, 0, 10 + i).await })
            })
            .collect();
        let mut ends = HashSet::new();
        for plan in plans {
            ends.insert(plan.await.unwrap().unwrap());
        }
        assert_eq!(ends.len(), 1, "partition {p}: plans {ends:?}");
    }
}
