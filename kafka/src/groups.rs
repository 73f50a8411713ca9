//! The classic group protocol: `FindCoordinator` (this agent coordinates
//! every group), `JoinGroup`, `SyncGroup`, `Heartbeat`, `LeaveGroup`. The
//! state machine and its fencing live in metadata
//! (`silt_metadata::groups::classic`), so members of one group may be
//! connected to different agents.
//!
//! The consumer protocol's subscriptions and assignments are decoded when
//! they parse, so the group's topics and each member's partitions show in
//! Silt's own group description (HTTP, `silt groups`) with their lag.
//! Static membership (`group.instance.id`) is treated as dynamic.

use std::time::Duration;

use bytes::{Buf, Bytes};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{
    BrokerId, ConsumerProtocolAssignment, ConsumerProtocolSubscription, FindCoordinatorRequest,
    FindCoordinatorResponse, GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ResponseKind, SyncGroupRequest,
    SyncGroupResponse,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use silt_agent::classic::{
    ClassicAssignment, ClassicJoin, ClassicProtocol, MAX_SESSION_TIMEOUT_MS,
    MIN_SESSION_TIMEOUT_MS, Opaque,
};
use silt_agent::{Error, Refusal};

use crate::Broker;
use crate::conn::{Answer, Client};
use crate::errors::code;
use crate::metadata::NODE_ID;

/// The protocol type consumers use; its metadata formats are decoded.
const CONSUMER: &str = "consumer";
/// Longest a follower's SyncGroup waits for the leader's assignment.
const SYNC_WAIT: Duration = Duration::from_secs(60);

/// Group errors: a bad name is `INVALID_GROUP_ID`, the rest as usual.
/// Group errors: a bad name is `INVALID_GROUP_ID`, and a metadata store
/// that cannot answer is `COORDINATOR_NOT_AVAILABLE` (which consumers
/// retry; `REQUEST_TIMED_OUT` is fatal to some); the rest as usual.
fn group_code(e: &Error) -> ResponseError {
    match e {
        Error::InvalidArgument(m) if m.contains("group") => ResponseError::InvalidGroupId,
        e if e.kind() == silt_agent::ErrorKind::Unavailable => {
            ResponseError::CoordinatorNotAvailable
        }
        e => code(e),
    }
}

pub(crate) fn find_coordinator(
    broker: &Broker,
    req: FindCoordinatorRequest,
    version: i16,
) -> Answer {
    let mut r = FindCoordinatorResponse::default();
    // Transactions are not offered: no transaction coordinator.
    let supported = req.key_type == 0;
    let host = StrBytes::from_string(broker.host.clone());
    if version < 4 {
        if supported {
            r.node_id = BrokerId(NODE_ID);
            r.host = host;
            r.port = i32::from(broker.port);
        } else {
            r.node_id = BrokerId(-1);
            r.port = -1;
            r.error_code = ResponseError::CoordinatorNotAvailable.code();
        }
    } else {
        for key in req.coordinator_keys {
            let mut c = Coordinator::default();
            c.key = key;
            if supported {
                c.node_id = BrokerId(NODE_ID);
                c.host = host.clone();
                c.port = i32::from(broker.port);
            } else {
                c.node_id = BrokerId(-1);
                c.port = -1;
                c.error_code = ResponseError::CoordinatorNotAvailable.code();
            }
            r.coordinators.push(c);
        }
    }
    Answer {
        body: ResponseKind::FindCoordinator(r),
        version,
    }
}

pub(crate) async fn join(
    broker: &Broker,
    req: JoinGroupRequest,
    version: i16,
    client: &Client,
) -> Answer {
    let client_id = client.id.as_str();
    let mut r = JoinGroupResponse::default();
    r.generation_id = -1;
    let answer = |r| Answer {
        body: ResponseKind::JoinGroup(r),
        version,
    };
    let session = req.session_timeout_ms;
    if !(MIN_SESSION_TIMEOUT_MS as i32..=MAX_SESSION_TIMEOUT_MS as i32).contains(&session) {
        r.error_code = ResponseError::InvalidSessionTimeout.code();
        return answer(r);
    }
    let mut member_id = req.member_id.to_string();
    if member_id.is_empty() {
        member_id = broker.agent.new_member_id(client_id);
        r.member_id = StrBytes::from_string(member_id.clone());
        if version >= 4 {
            // KIP-394: the client joins again with this id.
            r.error_code = ResponseError::MemberIdRequired.code();
            return answer(r);
        }
    }
    r.member_id = StrBytes::from_string(member_id.clone());
    let rebalance = if version >= 1 {
        req.rebalance_timeout_ms
    } else {
        session
    };
    let protocol_type = req.protocol_type.to_string();
    let topics = if protocol_type == CONSUMER {
        req.protocols
            .first()
            .and_then(|p| subscription(&p.metadata))
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let join = ClassicJoin {
        member_id,
        client_id: client_id.to_owned(),
        client_host: client.host.clone(),
        protocol_type,
        protocols: req
            .protocols
            .iter()
            .map(|p| ClassicProtocol {
                name: p.name.to_string(),
                metadata: Opaque(p.metadata.to_vec()),
            })
            .collect(),
        session_timeout_ms: session as u32,
        rebalance_timeout_ms: rebalance.max(0) as u32,
        topics,
    };
    let wait = Duration::from_millis(rebalance.max(0) as u64) + Duration::from_secs(5);
    match broker.agent.classic_join(&req.group_id.0, join, wait).await {
        Ok(g) => {
            r.generation_id = g.generation as i32;
            r.protocol_type = Some(StrBytes::from_string(g.protocol_type));
            r.protocol_name = Some(StrBytes::from_string(g.protocol));
            r.leader = StrBytes::from_string(g.leader);
            r.members = g
                .members
                .into_iter()
                .map(|(id, metadata)| {
                    let mut m = JoinGroupResponseMember::default();
                    m.member_id = StrBytes::from_string(id);
                    m.metadata = Bytes::from(metadata.0);
                    m
                })
                .collect();
        }
        Err(e) => {
            tracing::debug!(error = %e, "join refused");
            r.error_code = group_code(&e).code();
        }
    }
    answer(r)
}

pub(crate) async fn sync(broker: &Broker, req: SyncGroupRequest, version: i16) -> Answer {
    let mut r = SyncGroupResponse::default();
    let consumer = req
        .protocol_type
        .as_ref()
        .is_none_or(|t| t.as_str() == CONSUMER);
    let assignments: Vec<ClassicAssignment> = req
        .assignments
        .iter()
        .map(|a| ClassicAssignment {
            member_id: a.member_id.to_string(),
            assignment: Opaque(a.assignment.to_vec()),
            topics: if consumer {
                assignment(&a.assignment).unwrap_or_default()
            } else {
                Vec::new()
            },
        })
        .collect();
    // Passed whatever its length: only the leader's count, and a leader
    // may assign nothing.
    let assignments = Some(assignments);
    let synced = match u32::try_from(req.generation_id) {
        Ok(generation) => {
            broker
                .agent
                .classic_sync(
                    &req.group_id.0,
                    &req.member_id,
                    generation,
                    assignments,
                    SYNC_WAIT,
                )
                .await
        }
        Err(_) => Err(Error::Refused(Refusal::StaleGeneration { generation: 0 })),
    };
    match synced {
        Ok(a) => {
            r.assignment = Bytes::from(a.0);
            r.protocol_type = req.protocol_type;
            r.protocol_name = req.protocol_name;
        }
        Err(e) => r.error_code = group_code(&e).code(),
    }
    Answer {
        body: ResponseKind::SyncGroup(r),
        version,
    }
}

pub(crate) async fn heartbeat(broker: &Broker, req: HeartbeatRequest, version: i16) -> Answer {
    let mut r = HeartbeatResponse::default();
    let beat = match u32::try_from(req.generation_id) {
        Ok(generation) => {
            broker
                .agent
                .classic_heartbeat(&req.group_id.0, &req.member_id, generation)
                .await
        }
        Err(_) => Err(Error::Refused(Refusal::StaleGeneration { generation: 0 })),
    };
    if let Err(e) = beat {
        r.error_code = group_code(&e).code();
    }
    Answer {
        body: ResponseKind::Heartbeat(r),
        version,
    }
}

pub(crate) async fn leave(broker: &Broker, req: LeaveGroupRequest, version: i16) -> Answer {
    let mut r = LeaveGroupResponse::default();
    let ids: Vec<String> = if version >= 3 {
        req.members
            .iter()
            .map(|m| m.member_id.to_string())
            .collect()
    } else {
        vec![req.member_id.to_string()]
    };
    match broker.agent.classic_leave(&req.group_id.0, &ids).await {
        Ok(results) => {
            for (m, result) in req.members.iter().zip(&results) {
                let mut out = MemberResponse::default();
                out.member_id = m.member_id.clone();
                out.group_instance_id = m.group_instance_id.clone();
                if let Err(refusal) = result {
                    out.error_code = crate::errors::refusal(*refusal).code();
                }
                r.members.push(out);
            }
            if version < 3 {
                if let Some(Err(refusal)) = results.first() {
                    r.error_code = crate::errors::refusal(*refusal).code();
                }
            }
        }
        Err(e) => r.error_code = group_code(&e).code(),
    }
    Answer {
        body: ResponseKind::LeaveGroup(r),
        version,
    }
}

/// The topics of a consumer subscription (`version i16 | body`).
fn subscription(metadata: &Bytes) -> Option<Vec<String>> {
    let mut b = metadata.clone();
    let version = b.try_get_i16().ok()?;
    let s = ConsumerProtocolSubscription::decode(&mut b, version.clamp(0, 3)).ok()?;
    Some(s.topics.into_iter().map(|t| t.to_string()).collect())
}

/// The partitions of a consumer assignment (`version i16 | body`).
fn assignment(bytes: &Bytes) -> Option<Vec<(String, Vec<u32>)>> {
    let mut b = bytes.clone();
    let version = b.try_get_i16().ok()?;
    let a = ConsumerProtocolAssignment::decode(&mut b, version.clamp(0, 3)).ok()?;
    Some(
        a.assigned_partitions
            .into_iter()
            .map(|t| {
                let parts = t
                    .partitions
                    .iter()
                    .filter_map(|&p| u32::try_from(p).ok())
                    .collect();
                (t.topic.to_string(), parts)
            })
            .collect(),
    )
}

/// A group id as Kafka's type.
pub(crate) fn group_id(name: &str) -> GroupId {
    GroupId(StrBytes::from_string(name.to_owned()))
}
