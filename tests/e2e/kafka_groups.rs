//! The classic group protocol over the Kafka wire, its two members on two
//! agents sharing one metadata store: the join barrier across agents, the
//! leader's assignment reaching the follower, and the exact error codes
//! clients act on (MEMBER_ID_REQUIRED, ILLEGAL_GENERATION,
//! UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS).

use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, DescribeGroupsRequest, DescribeGroupsResponse, GroupId, HeartbeatRequest,
    HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse,
    ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse,
    SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};

use crate::common::{Silt, tempdir};
use crate::kafka::Conn;

const GROUP: &str = "wire";

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

fn agent(objects: &str, metadata: &str) -> Silt {
    let args = [
        "agent",
        "--object-store",
        objects,
        "--metadata",
        metadata,
        "--kafka-listen",
        "127.0.0.1:0",
    ];
    Silt::spawn(args.map(String::from).to_vec(), Vec::new())
}

async fn join(c: &mut Conn, member: &str) -> JoinGroupResponse {
    let mut p = JoinGroupRequestProtocol::default();
    p.name = s("range");
    p.metadata = Bytes::from_static(b"\0\0\0\0\0\x01\0\x01t\xff\xff\xff\xff");
    let mut r = JoinGroupRequest::default();
    r.group_id = GroupId(s(GROUP));
    r.session_timeout_ms = 10_000;
    r.rebalance_timeout_ms = 10_000;
    r.member_id = s(member);
    r.protocol_type = s("consumer");
    r.protocols = vec![p];
    let mut body = c.call(ApiKey::JoinGroup, 5, &r, 5).await;
    JoinGroupResponse::decode(&mut body, 5).unwrap()
}

/// Joins from scratch: the first answer names the member id (KIP-394).
async fn join_new(c: &mut Conn) -> JoinGroupResponse {
    let first = join(c, "").await;
    assert_eq!(first.error_code, 79, "MEMBER_ID_REQUIRED");
    assert!(!first.member_id.is_empty());
    join(c, &first.member_id).await
}

async fn sync(
    c: &mut Conn,
    member: &str,
    generation: i32,
    give: &[(&str, &str)],
) -> SyncGroupResponse {
    let mut r = SyncGroupRequest::default();
    r.group_id = GroupId(s(GROUP));
    r.generation_id = generation;
    r.member_id = s(member);
    r.assignments = give
        .iter()
        .map(|(m, a)| {
            let mut x = SyncGroupRequestAssignment::default();
            x.member_id = s(m);
            x.assignment = Bytes::copy_from_slice(a.as_bytes());
            x
        })
        .collect();
    let mut body = c.call(ApiKey::SyncGroup, 3, &r, 3).await;
    SyncGroupResponse::decode(&mut body, 3).unwrap()
}

async fn heartbeat(c: &mut Conn, member: &str, generation: i32) -> i16 {
    let mut r = HeartbeatRequest::default();
    r.group_id = GroupId(s(GROUP));
    r.generation_id = generation;
    r.member_id = s(member);
    let mut body = c.call(ApiKey::Heartbeat, 3, &r, 3).await;
    HeartbeatResponse::decode(&mut body, 3).unwrap().error_code
}

async fn commit(c: &mut Conn, member: &str, generation: i32, offset: i64) -> i16 {
    let mut p = OffsetCommitRequestPartition::default();
    p.partition_index = 0;
    p.committed_offset = offset;
    let mut t = OffsetCommitRequestTopic::default();
    t.name = TopicName(s("t"));
    t.partitions = vec![p];
    let mut r = OffsetCommitRequest::default();
    r.group_id = GroupId(s(GROUP));
    r.generation_id_or_member_epoch = generation;
    r.member_id = s(member);
    r.topics = vec![t];
    let mut body = c.call(ApiKey::OffsetCommit, 8, &r, 8).await;
    let a = OffsetCommitResponse::decode(&mut body, 8).unwrap();
    a.topics[0].partitions[0].error_code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_spans_two_agents() {
    let dir = tempdir();
    let objects = format!("file://{}/objects", dir.path().display());
    std::fs::create_dir_all(dir.path().join("objects")).unwrap();
    let metadata = format!("sqlite://{}/meta.db", dir.path().display());
    let a = agent(&objects, &metadata);
    let b = agent(&objects, &metadata);
    a.client().create_topic("t", 2).await;
    let mut c1 = Conn::open(a.kafka.as_deref().unwrap()).await;
    let mut c2 = Conn::open(b.kafka.as_deref().unwrap()).await;

    // Alone: generation 1, its own leader.
    let j1 = join_new(&mut c1).await;
    let m1 = j1.member_id.to_string();
    assert_eq!((j1.error_code, j1.generation_id), (0, 1));
    assert_eq!(j1.leader.as_str(), m1);
    assert_eq!(
        sync(&mut c1, &m1, 1, &[(&m1, "all")]).await.assignment,
        "all".as_bytes()
    );
    assert_eq!(commit(&mut c1, &m1, 1, 5).await, 0);
    assert_eq!(commit(&mut c1, &m1, 7, 6).await, 22, "ILLEGAL_GENERATION");
    assert_eq!(
        commit(&mut c1, "stranger", 1, 6).await,
        25,
        "UNKNOWN_MEMBER_ID"
    );

    // A second member joins on the other agent; its join waits at the
    // barrier until the first rejoins, told so by its heartbeat.
    let second = tokio::spawn(async move {
        let j = join_new(&mut c2).await;
        (c2, j)
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let code = heartbeat(&mut c1, &m1, 1).await;
        if code == 27 {
            break; // REBALANCE_IN_PROGRESS
        }
        assert_eq!(code, 0);
        assert!(
            Instant::now() < deadline,
            "the second join never opened the barrier"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let j1 = join(&mut c1, &m1).await;
    let (mut c2, j2) = second.await.unwrap();
    let m2 = j2.member_id.to_string();
    assert_eq!((j1.generation_id, j2.generation_id), (2, 2));
    assert_eq!(
        (j1.leader.as_str(), j2.leader.as_str()),
        (m1.as_str(), m1.as_str())
    );
    assert_eq!(j1.members.len(), 2, "the leader sees both members");
    assert!(j2.members.is_empty());

    // Before the leader assigns, commits wait for the new assignment.
    assert_eq!(
        commit(&mut c2, &m2, 2, 1).await,
        27,
        "REBALANCE_IN_PROGRESS"
    );
    let follower = tokio::spawn(async move {
        let r = sync(&mut c2, &m2, 2, &[]).await;
        (c2, m2, r)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mine = sync(&mut c1, &m1, 2, &[(&m1, "p0"), ("never-mind", "x")]).await;
    assert_eq!(mine.assignment, "p0".as_bytes());
    let (mut c2, m2, theirs) = follower.await.unwrap();
    assert_eq!(
        (theirs.error_code, theirs.assignment.len()),
        (0, 0),
        "m2 got nothing assigned"
    );
    assert_eq!(commit(&mut c2, &m2, 2, 3).await, 0);
    assert_eq!(
        commit(&mut c1, &m1, 1, 9).await,
        22,
        "the old generation is fenced"
    );

    // Kafka tools see the group.
    let mut d = DescribeGroupsRequest::default();
    d.groups = vec![GroupId(s(GROUP))];
    let mut body = c1.call(ApiKey::DescribeGroups, 5, &d, 5).await;
    let described = DescribeGroupsResponse::decode(&mut body, 5).unwrap();
    let g = &described.groups[0];
    assert_eq!(
        (g.group_state.as_str(), g.protocol_type.as_str()),
        ("Stable", "consumer")
    );
    assert_eq!(g.members.len(), 2);
    let mut body = c2
        .call(ApiKey::ListGroups, 4, &ListGroupsRequest::default(), 4)
        .await;
    let listed = ListGroupsResponse::decode(&mut body, 4).unwrap();
    assert!(listed.groups.iter().any(|l| l.group_id.as_str() == GROUP));

    // The leader leaves; the other is told to rejoin.
    let mut leave = LeaveGroupRequest::default();
    leave.group_id = GroupId(s(GROUP));
    let mut who = MemberIdentity::default();
    who.member_id = s(&m1);
    leave.members = vec![who];
    let mut body = c1.call(ApiKey::LeaveGroup, 3, &leave, 3).await;
    let left = LeaveGroupResponse::decode(&mut body, 3).unwrap();
    assert_eq!((left.error_code, left.members[0].error_code), (0, 0));
    assert_eq!(heartbeat(&mut c2, &m2, 2).await, 27);
}
