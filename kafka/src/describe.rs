//! `DescribeGroups` and `ListGroups`, over every group — Kafka groups with
//! their classic-protocol state, and groups of HTTP consumers (protocol
//! type `silt-http`), so Kafka tools see everything Silt holds.

use bytes::Bytes;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    DescribeGroupsRequest, DescribeGroupsResponse, ListGroupsRequest, ListGroupsResponse,
    ResponseKind,
};
use kafka_protocol::protocol::StrBytes;
use silt_agent::Error;
use silt_agent::classic::{ClassicPhase, GroupDescription};
use silt_agent::groups::{GroupProtocol, MAX_GROUPS_LISTED};

use crate::Broker;
use crate::conn::Answer;
use crate::errors::code;
use crate::groups::group_id;

/// The protocol type shown for groups of HTTP consumers.
const HTTP_PROTOCOL_TYPE: &str = "silt-http";
/// Most groups one ListGroups answer walks (pages of the group listing).
const MAX_LISTED: usize = 100 * MAX_GROUPS_LISTED;

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

/// Kafka's state name and protocol type of a group.
fn state(d: &GroupDescription, now_ms: i64) -> (&'static str, String) {
    let live = d.members.iter().any(|(_, m)| m.is_live(now_ms));
    match (&d.record.classic, d.record.protocol) {
        (Some(c), Some(GroupProtocol::Kafka)) => (c.phase.kafka_name(), c.protocol_type.clone()),
        (_, Some(GroupProtocol::Http)) if live => ("Stable", HTTP_PROTOCOL_TYPE.into()),
        _ => (ClassicPhase::Empty.kafka_name(), String::new()),
    }
}

pub(crate) async fn describe(broker: &Broker, req: DescribeGroupsRequest, version: i16) -> Answer {
    let mut r = DescribeGroupsResponse::default();
    let now = broker.agent.now_ms();
    for name in req.groups {
        let mut g = DescribedGroup::default();
        g.group_id = name.clone();
        g.authorized_operations = i32::MIN;
        match broker.agent.group_description(&name).await {
            Ok(d) => {
                let (state, protocol_type) = state(&d, now);
                g.group_state = s(state);
                g.protocol_type = s(protocol_type);
                let classic = d.record.classic.as_ref();
                g.protocol_data = s(classic.and_then(|c| c.protocol.clone()).unwrap_or_default());
                let protocol = classic
                    .and_then(|c| c.protocol.as_deref())
                    .unwrap_or_default();
                for (id, m) in d.members.iter().filter(|(_, m)| m.is_live(now)) {
                    let mut out = DescribedGroupMember::default();
                    out.member_id = s(id.clone());
                    if let Some(c) = &m.classic {
                        out.client_id = s(c.client_id.clone());
                        out.client_host = s(c.client_host.clone());
                        let meta = c.protocols.iter().find(|p| p.name == protocol);
                        out.member_metadata =
                            Bytes::from(meta.map(|p| p.metadata.0.clone()).unwrap_or_default());
                        out.member_assignment = Bytes::from(c.assignment.0.clone());
                    }
                    g.members.push(out);
                }
            }
            // Kafka describes an unknown group as dead, without an error.
            Err(Error::GroupNotFound(_)) => g.group_state = s("Dead"),
            Err(e) => g.error_code = code(&e).code(),
        }
        r.groups.push(g);
    }
    Answer {
        body: ResponseKind::DescribeGroups(r),
        version,
    }
}

pub(crate) async fn list(broker: &Broker, req: ListGroupsRequest, version: i16) -> Answer {
    let mut r = ListGroupsResponse::default();
    let mut after: Option<String> = None;
    let mut seen = 0;
    loop {
        let page = match broker.agent.list_groups(after.as_deref()).await {
            Ok(p) => p,
            Err(e) => {
                r.error_code = code(&e).code();
                break;
            }
        };
        let Some(last) = page.last() else { break };
        after = Some(last.name.clone());
        seen += page.len();
        for g in &page {
            let (state, protocol_type) = match (&g.record.classic, g.record.protocol) {
                (Some(c), Some(GroupProtocol::Kafka)) => {
                    (c.phase.kafka_name(), c.protocol_type.clone())
                }
                (_, Some(GroupProtocol::Http)) if g.live_members > 0 => {
                    ("Stable", HTTP_PROTOCOL_TYPE.into())
                }
                _ => (ClassicPhase::Empty.kafka_name(), String::new()),
            };
            if !req.states_filter.is_empty()
                && !req
                    .states_filter
                    .iter()
                    .any(|f| f.eq_ignore_ascii_case(state))
            {
                continue;
            }
            if !req.types_filter.is_empty()
                && !req
                    .types_filter
                    .iter()
                    .any(|f| f.eq_ignore_ascii_case("classic"))
            {
                continue;
            }
            let mut out = ListedGroup::default();
            out.group_id = group_id(&g.name);
            out.protocol_type = s(protocol_type);
            out.group_state = s(state);
            out.group_type = s("classic");
            r.groups.push(out);
        }
        if page.len() < MAX_GROUPS_LISTED || seen >= MAX_LISTED {
            break;
        }
    }
    Answer {
        body: ResponseKind::ListGroups(r),
        version,
    }
}
