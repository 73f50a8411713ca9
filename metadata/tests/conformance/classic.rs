//! Kafka's classic group protocol on every backend: the join barrier, the
//! leader's assignment, heartbeats that tell members to rejoin, expiry,
//! departures, and offset commits fenced as Kafka fences them.

use silt_metadata::groups::classic::{
    ClassicAssignment, ClassicJoin, JoinProgress, JoinedGeneration, SyncProgress,
};
use silt_metadata::groups::{JoinRequest, MemberRef, OffsetCommit, OffsetUpdate};
use silt_metadata::values::{ClassicPhase, ClassicProtocol, OffsetReset, Opaque};
use silt_metadata::{Metadata, Refusal, TopicConfig};

use crate::Fixture;

const SESSION: u32 = 10_000;
const REBALANCE: u32 = 30_000;

fn join(id: &str) -> ClassicJoin {
    join_with(id, SESSION, REBALANCE)
}

/// A classic join of member `id` subscribing to `t`, its protocol metadata
/// its own id.
pub fn join_with(id: &str, session_timeout_ms: u32, rebalance_timeout_ms: u32) -> ClassicJoin {
    ClassicJoin {
        member_id: id.into(),
        client_id: "test".into(),
        client_host: "127.0.0.1".into(),
        protocol_type: "consumer".into(),
        protocols: vec![ClassicProtocol {
            name: "range".into(),
            metadata: Opaque(id.as_bytes().to_vec()),
        }],
        session_timeout_ms,
        rebalance_timeout_ms,
        topics: vec!["t".into()],
    }
}

fn refusal<T: std::fmt::Debug>(r: silt_metadata::Result<T>) -> Refusal {
    match r {
        Err(silt_metadata::Error::Refused(r)) => r,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn progress(md: &Metadata, id: &str, now: i64) -> JoinProgress {
    md.classic_join_progress("g", id, now).await.unwrap().0
}

async fn joined(md: &Metadata, id: &str, now: i64) -> JoinedGeneration {
    match progress(md, id, now).await {
        JoinProgress::Joined(g) => g,
        other => panic!("{id} has not joined: {other:?}"),
    }
}

async fn sync(
    md: &Metadata,
    id: &str,
    generation: u32,
    give: Option<&[ClassicAssignment]>,
    now: i64,
) -> SyncProgress {
    md.classic_sync("g", id, generation, give, now)
        .await
        .unwrap()
        .0
}

fn give(id: &str, partitions: Vec<u32>) -> ClassicAssignment {
    ClassicAssignment {
        member_id: id.into(),
        assignment: Opaque(format!("{id}:{partitions:?}").into_bytes()),
        topics: vec![("t".into(), partitions)],
    }
}

fn commit(member: Option<(&str, u32)>, topic_id: u64, offset: u64) -> OffsetCommit {
    OffsetCommit {
        group: "g".into(),
        member: member.map(|(id, generation)| MemberRef {
            member_id: id.into(),
            generation,
        }),
        offsets: vec![OffsetUpdate {
            topic_id,
            partition: 0,
            offset,
            metadata: String::new(),
        }],
    }
}

pub async fn classic_groups_form_generations_and_fence_commits(f: Fixture) {
    let md = &f.md;
    let t = md
        .create_topic("t", 4, TopicConfig::default(), 0, 1)
        .await
        .unwrap();
    // Alone, a member's join closes the barrier at once.
    md.classic_join("g", &join("a"), 0).await.unwrap();
    let g1 = joined(md, "a", 1).await;
    assert_eq!((g1.generation, g1.leader.as_str()), (1, "a"));
    assert_eq!(g1.members, vec![("a".to_owned(), Opaque(b"a".to_vec()))]);
    let all = [give("a", vec![0, 1, 2, 3])];
    assert!(matches!(
        sync(md, "a", 1, Some(&all), 2).await,
        SyncProgress::Assigned(_)
    ));
    md.commit_offsets(&commit(Some(("a", 1)), t.id, 5), 3)
        .await
        .unwrap();

    // A second member opens the barrier; the first learns it by heartbeat
    // and may still commit at its generation before it rejoins.
    md.classic_join("g", &join("b"), 100).await.unwrap();
    assert_eq!(progress(md, "b", 101).await, JoinProgress::Waiting);
    let beat = md.classic_heartbeat("g", "a", 1, 102).await;
    assert_eq!(
        refusal(beat),
        Refusal::RebalanceInProgress { generation: 1 }
    );
    md.commit_offsets(&commit(Some(("a", 1)), t.id, 6), 103)
        .await
        .unwrap();
    md.classic_join("g", &join("a"), 104).await.unwrap();
    let la = joined(md, "a", 105).await;
    let lb = joined(md, "b", 105).await;
    assert_eq!((la.generation, lb.generation), (2, 2));
    assert_eq!(
        (la.leader.as_str(), lb.leader.as_str()),
        ("a", "a"),
        "the leader stays"
    );
    assert_eq!(la.members.len(), 2, "the leader sees every member");
    assert!(lb.members.is_empty(), "a follower sees none");

    // Until the leader assigns: followers wait, and commits are refused.
    assert_eq!(sync(md, "b", 2, None, 106).await, SyncProgress::Waiting);
    let early = md
        .commit_offsets(&commit(Some(("b", 2)), t.id, 7), 106)
        .await;
    assert_eq!(
        refusal(early),
        Refusal::RebalanceInProgress { generation: 2 }
    );
    let split = [give("a", vec![0, 1]), give("b", vec![2, 3])];
    let SyncProgress::Assigned(mine) = sync(md, "a", 2, Some(&split), 107).await else {
        panic!("the leader's sync assigns");
    };
    assert_eq!(mine, split[0].assignment);
    assert_eq!(
        sync(md, "b", 2, None, 108).await,
        SyncProgress::Assigned(split[1].assignment.clone())
    );
    md.classic_heartbeat("g", "b", 2, 109).await.unwrap();

    // Fencing, exactly as Kafka does it.
    let stale = md
        .commit_offsets(&commit(Some(("a", 1)), t.id, 8), 110)
        .await;
    assert_eq!(refusal(stale), Refusal::StaleGeneration { generation: 2 });
    let zombie = md
        .commit_offsets(&commit(Some(("z", 2)), t.id, 8), 110)
        .await;
    assert_eq!(refusal(zombie), Refusal::UnknownMember);
    let standalone = md.commit_offsets(&commit(None, t.id, 8), 110).await;
    assert_eq!(refusal(standalone), Refusal::GroupHasMembers);
    md.commit_offsets(&commit(Some(("b", 2)), t.id, 8), 111)
        .await
        .unwrap();
    let offsets = md.committed_offsets("g", Some(t.id)).await.unwrap();
    assert_eq!(offsets[0].committed.offset, 8);

    // The group's members show with their partitions; HTTP members are kept out.
    let d = md.describe_group("g").await.unwrap();
    let classic = d.record.classic.as_ref().unwrap();
    assert_eq!(classic.phase, ClassicPhase::Stable);
    assert_eq!(d.members[1].1.assignment[0].partitions, vec![2, 3]);
    let http = JoinRequest {
        member_id: "h".into(),
        topics: vec!["t".into()],
        session_timeout_ms: SESSION,
        offset_reset: OffsetReset::Earliest,
    };
    assert_eq!(
        refusal(md.join_group("g", &http, 112).await),
        Refusal::InconsistentProtocol
    );
}

pub async fn classic_members_expire_and_leave(f: Fixture) {
    let md = &f.md;
    md.create_topic("t", 2, TopicConfig::default(), 0, 1)
        .await
        .unwrap();
    for id in ["a", "b"] {
        md.classic_join("g", &join(id), 0).await.unwrap();
    }
    // a formed generation 1 alone; b's join opened the barrier again, and
    // a (told so by its sync) rejoins.
    assert_eq!(joined(md, "a", 1).await.generation, 1);
    assert_eq!(
        refusal(md.classic_sync("g", "a", 1, None, 1).await),
        Refusal::RebalanceInProgress { generation: 1 }
    );
    md.classic_join("g", &join("a"), 1).await.unwrap();
    let g = joined(md, "a", 1).await.generation;
    assert_eq!((g, joined(md, "b", 1).await.generation), (2, 2));
    let both = [give("a", vec![0]), give("b", vec![1])];
    sync(md, "a", g, Some(&both), 2).await;

    // b stops heartbeating; a's heartbeat after b's session starts a
    // rebalance, and the barrier closes without b.
    let later = i64::from(SESSION) + 10;
    md.classic_heartbeat("g", "a", g, 5_000).await.unwrap();
    let beat = md.classic_heartbeat("g", "a", g, later).await;
    assert_eq!(
        refusal(beat),
        Refusal::RebalanceInProgress { generation: g }
    );
    md.classic_join("g", &join("a"), later + 1).await.unwrap();
    let alone = joined(md, "a", later + 2).await;
    assert_eq!((alone.generation, alone.members.len()), (g + 1, 1));
    assert_eq!(
        refusal(md.classic_heartbeat("g", "b", g, later + 3).await),
        Refusal::UnknownMember
    );

    // c joins; a never rejoins; at the rebalance deadline the barrier
    // closes without a, although its lease is still good.
    sync(md, "a", g + 1, Some(&[give("a", vec![0, 1])]), later + 3).await;
    let t0 = later + 10;
    md.classic_join("g", &join("c"), t0).await.unwrap();
    // Both keep their leases (c by waiting, a by heartbeats that keep
    // telling it to rejoin) until the deadline.
    let due = t0 + i64::from(REBALANCE) + 1;
    for now in (t0 + 1..due).step_by(5_000) {
        assert_eq!(progress(md, "c", now).await, JoinProgress::Waiting);
        let beat = md.classic_heartbeat("g", "a", g + 1, now).await;
        assert_eq!(
            refusal(beat),
            Refusal::RebalanceInProgress { generation: g + 1 }
        );
    }
    let c = joined(md, "c", due).await;
    assert_eq!((c.generation, c.leader.as_str()), (g + 2, "c"));
    assert_eq!(
        refusal(md.classic_heartbeat("g", "a", g + 1, due + 1).await),
        Refusal::UnknownMember
    );

    // The last member leaves: the group is empty, its offsets stay open
    // to standalone commits.
    let left = md
        .classic_leave("g", &["c".into(), "x".into()], due + 2)
        .await
        .unwrap();
    assert_eq!(left, vec![Ok(()), Err(Refusal::UnknownMember)]);
    let d = md.describe_group("g").await.unwrap();
    assert_eq!(d.record.classic.unwrap().phase, ClassicPhase::Empty);
    assert!(d.members.is_empty());
}
