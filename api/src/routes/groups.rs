//! Consumer groups over HTTP: join, heartbeat, leave, group fetch (JSON or
//! Server-Sent Events), offset commits and descriptions. Every call may go
//! to any agent; the state lives in metadata (see `silt_agent::groups`).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use silt_agent::groups::{GroupFetch, GroupInfo, GroupRecord, JoinSpec, MemberState};
use silt_agent::{Agent, Error, Limits, OffsetReset, Refusal};

use crate::AppState;
use crate::extract::{Json, Path, Query};
use crate::problem::{ApiResult, Problem};
use crate::routes::records::{read_limits, wants_sse};
use crate::types::{Encoding, OffsetsIn, RecordOut};

/// Default session timeout of an HTTP member.
const DEFAULT_SESSION_MS: u32 = 30_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinBody {
    topics: Vec<String>,
    #[serde(default)]
    session_timeout_ms: Option<u32>,
    #[serde(default)]
    auto_offset_reset: OffsetReset,
    #[serde(default)]
    client_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatBody {
    generation: u32,
}

#[derive(Debug, Serialize)]
pub struct PartitionRef {
    topic: String,
    partition: u32,
}

#[derive(Debug, Serialize)]
pub struct MemberOut {
    member_id: String,
    generation: u32,
    assignments: Vec<PartitionRef>,
    session_timeout_ms: u32,
}

fn assignments(m: &MemberState) -> Vec<PartitionRef> {
    m.assignment
        .iter()
        .flat_map(|a| {
            a.partitions.iter().map(|&partition| PartitionRef {
                topic: a.topic.clone(),
                partition,
            })
        })
        .collect()
}

impl From<MemberState> for MemberOut {
    fn from(m: MemberState) -> Self {
        Self {
            assignments: assignments(&m),
            member_id: m.member_id,
            generation: m.generation,
            session_timeout_ms: m.session_timeout_ms,
        }
    }
}

/// `POST /v1/consumer-groups/{group}/members`
pub async fn join(
    State(s): State<AppState>,
    Path(group): Path<String>,
    Json(b): Json<JoinBody>,
) -> ApiResult<(StatusCode, axum::Json<MemberOut>)> {
    let spec = JoinSpec {
        topics: b.topics,
        session_timeout: Duration::from_millis(
            b.session_timeout_ms.unwrap_or(DEFAULT_SESSION_MS).into(),
        ),
        offset_reset: b.auto_offset_reset,
        client_id: b.client_id,
    };
    let m = s.agent.join_group(&group, spec).await?;
    Ok((StatusCode::CREATED, axum::Json(m.into())))
}

/// `PUT /v1/consumer-groups/{group}/members/{member}`
pub async fn heartbeat(
    State(s): State<AppState>,
    Path((group, member)): Path<(String, String)>,
    Json(b): Json<HeartbeatBody>,
) -> ApiResult<axum::Json<MemberOut>> {
    let m = s.agent.heartbeat(&group, &member, b.generation).await?;
    Ok(axum::Json(m.into()))
}

/// `DELETE /v1/consumer-groups/{group}/members/{member}`
pub async fn leave(
    State(s): State<AppState>,
    Path((group, member)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    s.agent.leave_group(&group, &member).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupFetchQuery {
    generation: u32,
    #[serde(default)]
    cursor: Option<String>,
    max_records: Option<usize>,
    max_bytes: Option<usize>,
    wait_ms: Option<u64>,
    #[serde(default)]
    encoding: Encoding,
}

#[derive(Debug, Serialize)]
pub struct GroupRecordOut {
    topic: String,
    #[serde(flatten)]
    record: RecordOut,
}

#[derive(Debug, Serialize)]
pub struct GroupFetchOut {
    records: Vec<GroupRecordOut>,
    next_cursor: String,
    generation: u32,
    assignments: Vec<PartitionRef>,
}

fn records_out(records: Vec<GroupRecord>, enc: Encoding) -> ApiResult<Vec<GroupRecordOut>> {
    records
        .into_iter()
        .map(|r| {
            Ok(GroupRecordOut {
                topic: r.topic.to_string(),
                record: RecordOut::new(r.partition, r.record, enc)?,
            })
        })
        .collect()
}

/// `GET /v1/consumer-groups/{group}/members/{member}/records`: JSON, or
/// Server-Sent Events (`records`, `rebalance`, `ping`) with
/// `Accept: text/event-stream`.
pub async fn fetch(
    State(s): State<AppState>,
    Path((group, member)): Path<(String, String)>,
    Query(q): Query<GroupFetchQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let (limits, wait) = read_limits(&s, q.max_records, q.max_bytes, q.wait_ms)?;
    let req = GroupFetch {
        generation: q.generation,
        cursor: q.cursor,
        limits,
        wait: if wants_sse(&headers) {
            Duration::ZERO
        } else {
            wait
        },
    };
    // The first read answers with a status even for SSE, so that errors
    // (unknown member, stale generation) are plain problems.
    let r = s.agent.group_fetch(&group, &member, req).await?;
    if wants_sse(&headers) {
        let stream = GroupStream {
            agent: s.agent.clone(),
            group,
            member,
            generation: q.generation,
            limits,
            encoding: q.encoding,
            first: Some(r),
            cursor: None,
            done: false,
        };
        return Ok(stream.into_sse().into_response());
    }
    Ok(axum::Json(GroupFetchOut {
        records: records_out(r.records, q.encoding)?,
        next_cursor: r.next_cursor,
        generation: r.member.generation,
        assignments: assignments(&r.member),
    })
    .into_response())
}

/// A member's record stream: long-polls on, ends with a `rebalance` event
/// when the member must heartbeat (or join) again.
struct GroupStream {
    agent: Agent,
    group: String,
    member: String,
    generation: u32,
    limits: Limits,
    encoding: Encoding,
    first: Option<silt_agent::groups::GroupRecords>,
    cursor: Option<String>,
    done: bool,
}

#[derive(Debug, Serialize)]
struct RecordsEvent {
    records: Vec<GroupRecordOut>,
    next_cursor: String,
}

impl GroupStream {
    async fn next_event(&mut self) -> Option<Event> {
        if self.done || self.agent.is_shutting_down() {
            return None;
        }
        let r = match self.first.take() {
            Some(r) => Ok(r),
            None => {
                let req = GroupFetch {
                    generation: self.generation,
                    cursor: self.cursor.clone(),
                    limits: self.limits,
                    wait: Duration::from_secs(25),
                };
                self.agent.group_fetch(&self.group, &self.member, req).await
            }
        };
        let event = match r {
            Ok(r) => {
                self.cursor = Some(r.next_cursor.clone());
                if r.records.is_empty() {
                    Event::default().event("ping").data("{}")
                } else {
                    match records_out(r.records, self.encoding) {
                        Ok(records) => Event::default()
                            .event("records")
                            .json_data(RecordsEvent {
                                records,
                                next_cursor: r.next_cursor,
                            })
                            .unwrap_or_default(),
                        Err(p) => self.end("error", p),
                    }
                }
            }
            Err(Error::Refused(
                r @ (Refusal::StaleGeneration { .. }
                | Refusal::RebalanceInProgress { .. }
                | Refusal::UnknownMember),
            )) => self.end("rebalance", Problem::from(Error::Refused(r))),
            Err(e) => self.end("error", Problem::from(e)),
        };
        Some(event)
    }

    fn end(&mut self, name: &'static str, p: Problem) -> Event {
        self.done = true;
        Event::default()
            .event(name)
            .json_data(p)
            .unwrap_or_default()
    }

    fn into_sse(self) -> impl IntoResponse {
        let stream = futures::stream::unfold(self, |mut st| async move {
            let ev = st.next_event().await?;
            Some((Ok::<_, Infallible>(ev), st))
        });
        Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
    }
}

/// `POST /v1/consumer-groups/{group}/offsets`
pub async fn commit(
    State(s): State<AppState>,
    Path(group): Path<String>,
    Json(b): Json<OffsetsIn>,
) -> ApiResult<StatusCode> {
    s.agent.commit_offsets(b.into_commit(group)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffsetsQuery {
    #[serde(default)]
    topic: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct PartitionOut {
    topic: String,
    partition: u32,
    committed_offset: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<String>,
    high_watermark: u64,
    lag: Option<u64>,
    owner: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct OffsetsOut {
    offsets: Vec<PartitionOut>,
}

fn partitions_out(g: &GroupInfo, committed_only: bool) -> Vec<PartitionOut> {
    g.partitions
        .iter()
        .filter(|p| !committed_only || p.committed.is_some())
        .map(|p| PartitionOut {
            topic: p.topic.clone(),
            partition: p.partition,
            committed_offset: p.committed,
            metadata: p.metadata.clone(),
            high_watermark: p.high_watermark,
            lag: p.lag,
            owner: p.owner.clone(),
        })
        .collect()
}

/// `GET /v1/consumer-groups/{group}/offsets?topic=`
pub async fn offsets(
    State(s): State<AppState>,
    Path(group): Path<String>,
    Query(q): Query<OffsetsQuery>,
) -> ApiResult<axum::Json<OffsetsOut>> {
    let g = s.agent.describe_group(&group, q.topic.as_deref()).await?;
    Ok(axum::Json(OffsetsOut {
        offsets: partitions_out(&g, true),
    }))
}

#[derive(Debug, Serialize)]
pub struct DescribedMember {
    member_id: String,
    /// False once its lease lapsed; it keeps its partitions until another
    /// member's call removes it and rebalances.
    live: bool,
    expires_ms: i64,
    assignments: Vec<PartitionRef>,
}

#[derive(Debug, Serialize)]
pub struct GroupOut {
    name: String,
    generation: u32,
    /// `"http"`, or null while the group has no members.
    protocol: Option<silt_agent::groups::GroupProtocol>,
    /// `"stable"` with live members, else `"empty"`.
    state: &'static str,
    members: Vec<DescribedMember>,
    partitions: Vec<PartitionOut>,
}

/// `GET /v1/consumer-groups/{group}`
pub async fn describe(
    State(s): State<AppState>,
    Path(group): Path<String>,
) -> ApiResult<axum::Json<GroupOut>> {
    let g = s.agent.describe_group(&group, None).await?;
    let members = g
        .members
        .iter()
        .map(|m| DescribedMember {
            member_id: m.member_id.clone(),
            live: m.expires_ms > g.now_ms,
            expires_ms: m.expires_ms,
            assignments: assignments(m),
        })
        .collect();
    Ok(axum::Json(GroupOut {
        state: if g.live_members().next().is_some() {
            "stable"
        } else {
            "empty"
        },
        partitions: partitions_out(&g, false),
        name: g.name,
        generation: g.generation,
        protocol: g.protocol,
        members,
    }))
}

#[derive(Debug, Serialize)]
pub struct GroupSummaryOut {
    name: String,
    generation: u32,
    protocol: Option<silt_agent::groups::GroupProtocol>,
    members: usize,
}

#[derive(Debug, Serialize)]
pub struct GroupList {
    groups: Vec<GroupSummaryOut>,
    /// Set when more groups follow: pass it as `after` for the next page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_after: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    after: Option<String>,
}

/// `GET /v1/consumer-groups?after=`: a page of groups in name order.
pub async fn list(
    State(s): State<AppState>,
    Query(q): Query<ListQuery>,
) -> ApiResult<axum::Json<GroupList>> {
    let groups: Vec<GroupSummaryOut> = s
        .agent
        .list_groups(q.after.as_deref())
        .await?
        .into_iter()
        .map(|g| GroupSummaryOut {
            name: g.name,
            generation: g.record.generation,
            protocol: g.record.protocol,
            members: g.live_members,
        })
        .collect();
    let next_after = (groups.len() >= silt_agent::groups::MAX_GROUPS_LISTED)
        .then(|| groups.last().map(|g| g.name.clone()))
        .flatten();
    Ok(axum::Json(GroupList { groups, next_after }))
}

/// `DELETE /v1/consumer-groups/{group}`: only without live members.
pub async fn delete(State(s): State<AppState>, Path(group): Path<String>) -> ApiResult<StatusCode> {
    s.agent.delete_group(&group).await?;
    Ok(StatusCode::NO_CONTENT)
}
