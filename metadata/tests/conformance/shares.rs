//! Share groups on every backend: one lease per record at a time, stale
//! acks refused, expiry with backoff, dead letters after the last delivery,
//! key order, and a window that stays bounded.

use silt_metadata::shares::{Ack, AckKind, Acquire, NewKeys};
use silt_metadata::values::shares::{
    Backoff, DeadReason, ShareGroupRecord, ShareOrdering, ShareStart, ShareTopic,
};
use silt_metadata::{ErrorKind, TopicConfig};

use crate::{Fixture, chunk, segment};

fn group(topic: &str, ordering: ShareOrdering) -> ShareGroupRecord {
    ShareGroupRecord {
        topics: vec![ShareTopic {
            name: topic.into(),
            id: 0,
        }],
        lease_ms: 1_000,
        max_deliveries: 3,
        backoff: Backoff {
            base_ms: 100,
            factor: 2.0,
            cap_ms: 1_000,
            jitter: 0.0,
        },
        dlq_topic: format!("{topic}.dlq"),
        ordering,
        start: ShareStart::Earliest,
        max_in_flight: 4,
        created_ms: 1,
        replayed: Vec::new(),
    }
}

fn acquire(max: usize, now_ms: i64) -> Acquire {
    Acquire {
        max,
        lease_ms: 1_000,
        now_ms,
        seed: 7,
        keys: None,
    }
}

fn ack(offset: u64, deliveries: u16, kind: AckKind) -> Ack {
    Ack {
        offset,
        deliveries,
        kind,
    }
}

pub async fn share_groups_lease_each_record_once(f: Fixture) {
    let md = &f.md;
    let t = md
        .create_topic("q", 1, TopicConfig::default(), 0, 1)
        .await
        .unwrap();
    md.commit_segment(&segment("s1", vec![chunk(t.id, 0, 6)]))
        .await
        .unwrap();
    let g = group("q", ShareOrdering::None);
    md.create_share_group("workers", g.clone()).await.unwrap();
    // The same creation again (a retry) is fine; another one is refused.
    md.create_share_group("workers", g.clone()).await.unwrap();
    let other = ShareGroupRecord {
        created_ms: 2,
        ..g.clone()
    };
    assert_eq!(
        md.create_share_group("workers", other)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::AlreadyExists
    );

    // The window holds at most 4 records: 6 are committed.
    let a = md
        .share_acquire("workers", t.id, 0, acquire(10, 0))
        .await
        .unwrap();
    let offsets: Vec<u64> = a.leases.iter().map(|l| l.offset).collect();
    assert_eq!(offsets, [0, 1, 2, 3]);
    assert!(a.leases.iter().all(|l| l.deliveries == 1));
    // Nothing more while all four are leased.
    let b = md
        .share_acquire("workers", t.id, 0, acquire(10, 10))
        .await
        .unwrap();
    assert!(b.leases.is_empty());

    // Accept 0 and 1: the window moves on and admits 4 and 5.
    let out = md
        .share_ack(
            "workers",
            t.id,
            0,
            &[
                ack(0, 1, AckKind::Accept),
                ack(1, 1, AckKind::Accept),
                ack(2, 9, AckKind::Accept),
            ],
            20,
            1_000,
        )
        .await
        .unwrap();
    assert_eq!(
        out.applied,
        [true, true, false],
        "a wrong delivery is stale"
    );
    let c = md
        .share_acquire("workers", t.id, 0, acquire(10, 30))
        .await
        .unwrap();
    assert_eq!(
        c.leases.iter().map(|l| l.offset).collect::<Vec<_>>(),
        [4, 5]
    );
    assert_eq!(c.window.start, 2);

    // Release 2 (available now, same delivery count until leased again);
    // 3's lease expires at 1_000 and comes back 100 ms later.
    md.share_ack(
        "workers",
        t.id,
        0,
        &[ack(2, 1, AckKind::Release)],
        40,
        1_000,
    )
    .await
    .unwrap();
    let d = md
        .share_acquire("workers", t.id, 0, acquire(10, 50))
        .await
        .unwrap();
    assert_eq!(
        d.leases
            .iter()
            .map(|l| (l.offset, l.deliveries))
            .collect::<Vec<_>>(),
        [(2, 2)]
    );
    let e = md
        .share_acquire("workers", t.id, 0, acquire(10, 1_050))
        .await
        .unwrap();
    assert!(
        e.leases.iter().all(|l| l.offset != 3),
        "3 waits out its backoff"
    );
    let e = md
        .share_acquire("workers", t.id, 0, acquire(10, 1_100))
        .await
        .unwrap();
    assert!(e.leases.iter().any(|l| l.offset == 3 && l.deliveries == 2));
    // The first worker's late accept of 3 is stale now: another holds it.
    let late = md
        .share_ack(
            "workers",
            t.id,
            0,
            &[ack(3, 1, AckKind::Accept)],
            1_200,
            1_000,
        )
        .await
        .unwrap();
    assert_eq!(late.applied, [false]);

    let views = md.share_windows("workers").await.unwrap();
    assert_eq!(views.len(), 1);
    assert_eq!(views[0].window.accepted, 2);
    assert!(views[0].window.redelivered >= 2);
    md.delete_share_group("workers").await.unwrap();
    assert!(md.share_windows("workers").await.unwrap().is_empty());
    assert_eq!(
        md.share_acquire("workers", t.id, 0, acquire(1, 0))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
}

pub async fn share_groups_dead_letter_after_the_last_delivery(f: Fixture) {
    let md = &f.md;
    let t = md
        .create_topic("p", 1, TopicConfig::default(), 0, 1)
        .await
        .unwrap();
    md.commit_segment(&segment("s1", vec![chunk(t.id, 0, 2)]))
        .await
        .unwrap();
    md.create_share_group("g", group("p", ShareOrdering::None))
        .await
        .unwrap();
    // Offset 0 is rejected at once; offset 1 expires three times.
    let mut now = 0;
    let a = md
        .share_acquire("g", t.id, 0, acquire(2, now))
        .await
        .unwrap();
    assert_eq!(a.leases.len(), 2);
    let r = md
        .share_ack("g", t.id, 0, &[ack(0, 1, AckKind::Reject)], now, 1_000)
        .await
        .unwrap();
    assert_eq!(r.dead.len(), 1);
    assert_eq!(r.dead[0].reason, DeadReason::Rejected);
    md.share_dead_lettered("g", t.id, 0, &[0]).await.unwrap();
    let mut dead = Vec::new();
    for delivery in 2..=4u16 {
        now += 10_000;
        let a = md
            .share_acquire("g", t.id, 0, acquire(2, now))
            .await
            .unwrap();
        if delivery <= 3 {
            assert_eq!(a.leases.len(), 1);
            assert_eq!(a.leases[0].deliveries, delivery);
        } else {
            assert!(a.leases.is_empty());
            dead = a.dead;
        }
    }
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].offset, dead[0].deliveries), (1, 3));
    assert_eq!(dead[0].reason, DeadReason::MaxDeliveries);
    md.share_dead_lettered("g", t.id, 0, &[1]).await.unwrap();
    let w = md.share_windows("g").await.unwrap()[0];
    assert_eq!((w.window.start, w.window.dead_lettered), (2, 2));
    assert_eq!(
        w.leased + w.waiting + w.dead_lettering,
        0,
        "nothing left tracked"
    );
}

pub async fn share_groups_keep_key_order(f: Fixture) {
    let md = &f.md;
    let t = md
        .create_topic("o", 1, TopicConfig::default(), 0, 1)
        .await
        .unwrap();
    md.commit_segment(&segment("s1", vec![chunk(t.id, 0, 4)]))
        .await
        .unwrap();
    md.create_share_group("g", group("o", ShareOrdering::Key))
        .await
        .unwrap();
    // Without the keys of new records, nothing can be leased past the window.
    let a = md.share_acquire("g", t.id, 0, acquire(4, 0)).await.unwrap();
    assert!(a.leases.is_empty());
    // Keys A B A C: the second A waits for the first.
    let keyed = Acquire {
        keys: Some(NewKeys {
            from: 0,
            hashes: vec![11, 22, 11, 33],
        }),
        ..acquire(4, 0)
    };
    let a = md.share_acquire("g", t.id, 0, keyed).await.unwrap();
    assert_eq!(
        a.leases.iter().map(|l| l.offset).collect::<Vec<_>>(),
        [0, 1, 3]
    );
    let b = md.share_acquire("g", t.id, 0, acquire(4, 5)).await.unwrap();
    assert!(b.leases.is_empty(), "2 waits for 0");
    md.share_ack("g", t.id, 0, &[ack(0, 1, AckKind::Accept)], 6, 1_000)
        .await
        .unwrap();
    let c = md.share_acquire("g", t.id, 0, acquire(4, 7)).await.unwrap();
    assert_eq!(c.leases.iter().map(|l| l.offset).collect::<Vec<_>>(), [2]);
}

/// Concurrent lease transactions on one partition never hand one record to
/// two deliveries: each reads the window and its records with conflicting
/// reads (on the simulated FoundationDB, snapshot reads there would let
/// two commits lease the same record).
pub async fn share_leases_never_overlap_under_concurrency(f: Fixture) {
    let md = &f.md;
    let t = md
        .create_topic("c", 1, TopicConfig::default(), 0, 1)
        .await
        .unwrap();
    md.commit_segment(&segment("s1", vec![chunk(t.id, 0, 200)]))
        .await
        .unwrap();
    let g = ShareGroupRecord {
        max_in_flight: 200,
        ..group("c", ShareOrdering::None)
    };
    md.create_share_group("g", g).await.unwrap();
    let tasks: Vec<_> = (0..8u64)
        .map(|i| {
            let md = md.clone();
            let tid = t.id;
            tokio::spawn(async move {
                let mut got = Vec::new();
                for round in 0..5 {
                    let req = Acquire {
                        seed: i * 100 + round,
                        ..acquire(5, 10)
                    };
                    got.extend(md.share_acquire("g", tid, 0, req).await.unwrap().leases);
                }
                got
            })
        })
        .collect();
    let mut seen = std::collections::BTreeMap::new();
    for task in tasks {
        for lease in task.await.unwrap() {
            assert_eq!(lease.deliveries, 1, "{lease:?}: no lease expired");
            assert!(
                seen.insert(lease.offset, lease).is_none(),
                "{} leased twice",
                lease.offset
            );
        }
    }
    assert_eq!(seen.len(), 200, "8 × 5 × 5 leases, each record once");
}
