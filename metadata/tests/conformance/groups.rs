//! Consumer groups on every backend: one owner per partition at every
//! generation, fencing of zombies and stale generations, standalone commits.

use std::collections::BTreeMap;

use silt_metadata::groups::{JoinRequest, MemberRef, Membership, OffsetCommit, OffsetUpdate};
use silt_metadata::values::OffsetReset;
use silt_metadata::{ErrorKind, Metadata, Refusal, TopicConfig};

use crate::Fixture;

fn join(id: &str, session_ms: u32) -> JoinRequest {
    JoinRequest {
        member_id: id.into(),
        topics: vec!["events".into()],
        session_timeout_ms: session_ms,
        offset_reset: OffsetReset::Earliest,
    }
}

fn refusal(e: silt_metadata::Error) -> Refusal {
    match e {
        silt_metadata::Error::Refused(r) => r,
        other => panic!("expected a refusal, got {other}"),
    }
}

/// Every live member heartbeats until all agree on the generation; checks
/// that the partitions are split exactly once among them.
async fn settle(md: &Metadata, members: &[&str], now: i64) -> (u32, BTreeMap<u32, String>) {
    let mut generation = 0;
    for _ in 0..10 {
        let mut owners = BTreeMap::new();
        let mut behind = false;
        for m in members {
            match md.heartbeat("g", m, generation, now).await {
                Ok(Membership { member, .. }) => {
                    for a in &member.assignment {
                        for &p in &a.partitions {
                            let prev = owners.insert(p, m.to_string());
                            assert!(prev.is_none(), "partition {p} has two owners");
                        }
                    }
                }
                Err(e) => match refusal(e) {
                    Refusal::RebalanceInProgress { generation: g }
                    | Refusal::StaleGeneration { generation: g } => {
                        generation = g;
                        behind = true;
                        break;
                    }
                    r => panic!("unexpected refusal {r:?}"),
                },
            }
        }
        if !behind {
            return (generation, owners);
        }
    }
    panic!("the group never settled");
}

pub async fn groups_keep_one_owner_and_fence_zombies(f: Fixture) {
    let md = &f.md;
    let t = md
        .create_topic("events", 12, TopicConfig::default(), 0, 1)
        .await
        .unwrap();
    let mut now = 1_000;
    for m in ["a", "b", "c"] {
        let joined = md.join_group("g", &join(m, 10_000), now).await.unwrap();
        assert_eq!(joined.member_id, m);
        // A retried join (after an unknown result) finds the same member.
        let again = md.join_group("g", &join(m, 10_000), now).await.unwrap();
        assert_eq!(again.generation, joined.generation);
    }
    let (g3, owners) = settle(md, &["a", "b", "c"], now).await;
    assert_eq!(owners.len(), 12, "all 12 partitions assigned");
    for m in ["a", "b", "c"] {
        assert_eq!(owners.values().filter(|o| *o == m).count(), 4);
    }
    let commit = |member: &str, generation: u32, partition: u32, offset: u64| OffsetCommit {
        group: "g".into(),
        member: Some(MemberRef {
            member_id: member.into(),
            generation,
        }),
        offsets: vec![OffsetUpdate {
            topic_id: t.id,
            partition,
            offset,
            metadata: "m".into(),
        }],
    };
    let a_part = *owners.iter().find(|(_, o)| *o == "a").unwrap().0;
    let b_part = *owners.iter().find(|(_, o)| *o == "b").unwrap().0;
    md.commit_offsets(&commit("a", g3, a_part, 5), now)
        .await
        .unwrap();
    let e = md.commit_offsets(&commit("a", g3, b_part, 5), now).await;
    assert!(matches!(
        refusal(e.unwrap_err()),
        Refusal::NotAssigned { .. }
    ));
    // A standalone commit is refused while members are live.
    let standalone = OffsetCommit {
        member: None,
        ..commit("x", 0, a_part, 1)
    };
    assert_eq!(
        refusal(md.commit_offsets(&standalone, now).await.unwrap_err()),
        Refusal::GroupHasMembers
    );

    // b leaves; c pauses past its lease (a zombie).
    md.leave_group("g", "b", now).await.unwrap();
    md.leave_group("g", "b", now).await.unwrap(); // leaving twice is harmless
    now += 4_000;
    md.heartbeat("g", "a", g3 + 1, now).await.unwrap();
    md.heartbeat("g", "c", g3 + 1, now).await.unwrap();
    now += 7_000; // a heartbeat 7 s ago: live; c: also 7 s ago; a renews now
    let (g5, owners) = {
        let e = md.heartbeat("g", "a", g3 + 1, now).await;
        assert!(e.is_ok(), "{e:?}");
        now += 4_000; // c last renewed 11 s ago: expired
        settle(md, &["a"], now).await
    };
    assert!(g5 > g3 + 1, "c's expiry started a new generation");
    assert_eq!(owners.len(), 12);
    assert!(owners.values().all(|o| o == "a"), "a owns everything");
    // The zombie cannot commit, whatever generation it names.
    for generation in [g3 + 1, g5] {
        let e = md
            .commit_offsets(&commit("c", generation, a_part, 99), now)
            .await
            .unwrap_err();
        assert_eq!(refusal(e), Refusal::UnknownMember);
    }
    // Nor can a commit of an older generation by a live member.
    let e = md
        .commit_offsets(&commit("a", g3, a_part, 99), now)
        .await
        .unwrap_err();
    assert_eq!(refusal(e), Refusal::StaleGeneration { generation: g5 });
    assert_eq!(
        refusal(md.member_view("g", "c", g5, now).await.unwrap_err()),
        Refusal::UnknownMember
    );
    md.member_view("g", "a", g5, now).await.unwrap();
    let offsets = md.committed_offsets("g", Some(t.id)).await.unwrap();
    assert_eq!(offsets.len(), 1);
    assert_eq!(offsets[0].committed.offset, 5, "no fenced commit landed");

    let d = md.describe_group("g").await.unwrap();
    assert_eq!(d.members.len(), 1);
    assert_eq!(d.record.generation, g5);
    let listed = md.list_groups(None, now).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].live_members, 1);
    assert!(md.list_groups(Some("g"), now).await.unwrap().is_empty());
    assert_eq!(md.list_groups(Some("f"), now).await.unwrap().len(), 1);
    assert_eq!(
        refusal(md.delete_group("g", now).await.unwrap_err()),
        Refusal::GroupHasMembers
    );

    // Once nobody is live, standalone readers may commit.
    md.leave_group("g", "a", now).await.unwrap();
    md.commit_offsets(&standalone, now).await.unwrap();
    assert_eq!(
        md.committed_offsets("g", None).await.unwrap()[0]
            .committed
            .offset,
        1
    );
    md.delete_group("g", now).await.unwrap();
    assert_eq!(
        md.describe_group("g").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

pub async fn groups_validate_input(f: Fixture) {
    let md = &f.md;
    md.create_topic("events", 1, TopicConfig::default(), 0, 1)
        .await
        .unwrap();
    let bad = [
        JoinRequest {
            topics: vec!["nope".into()],
            ..join("m", 10_000)
        },
        JoinRequest {
            topics: vec![],
            ..join("m", 10_000)
        },
        join("m", 10),
        join("bad id", 10_000),
    ];
    let kinds: Vec<ErrorKind> = {
        let mut v = Vec::new();
        for b in &bad {
            v.push(md.join_group("g", b, 0).await.unwrap_err().kind());
        }
        v
    };
    assert_eq!(
        kinds,
        [
            ErrorKind::NotFound,
            ErrorKind::InvalidArgument,
            ErrorKind::InvalidArgument,
            ErrorKind::InvalidArgument
        ]
    );
    assert_eq!(
        md.join_group("bad group!", &join("m", 10_000), 0)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        refusal(md.heartbeat("g", "ghost", 1, 0).await.unwrap_err()),
        Refusal::UnknownMember
    );
}
