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
use silt_agent::groups::{GroupFetch, GroupInfo, JoinSpec, MemberState};
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
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stopped_at: Vec<StoppedAt>,
}

/// A record that cannot be shown in the asked encoding: its partition's
/// records stop before it (the next fetch starts at it again). The consumer
/// reads it with `encoding=base64`, or commits past it.
#[derive(Debug, Serialize)]
pub struct StoppedAt {
    topic: String,
    partition: u32,
    offset: u64,
    code: &'static str,
}

impl StoppedAt {
    /// Why a stream ends on it: the problem, naming the record.
    fn problem(&self) -> Problem {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            self.code,
            format!(
                "the record at {}/{} offset {} cannot be shown in this encoding; fetch with ?encoding=base64, or commit past it",
                self.topic, self.partition, self.offset
            ),
        )
        .with("topic", self.topic.clone())
        .with("partition", self.partition)
        .with("offset", self.offset)
    }
}

/// The records as shown in `enc`, and the cursor to go on from. Each
/// partition stops before its first record that `enc` cannot show.
fn records_out(
    mut r: silt_agent::groups::GroupRecords,
    enc: Encoding,
) -> (Vec<GroupRecordOut>, String, Vec<StoppedAt>) {
    let mut stopped = Vec::new();
    let records = loop {
        let mut out = Vec::with_capacity(r.records.len());
        let mut failed = None;
        for (i, g) in r.records.iter().enumerate() {
            match RecordOut::new(g.partition, g.record.clone(), enc) {
                Ok(record) => out.push(GroupRecordOut {
                    topic: g.topic.to_string(),
                    record,
                }),
                Err(p) => {
                    failed = Some((i, p.code));
                    break;
                }
            }
        }
        let Some((i, code)) = failed else {
            break out;
        };
        let g = &r.records[i];
        stopped.push(StoppedAt {
            topic: g.topic.to_string(),
            partition: g.partition,
            offset: g.record.offset,
            code,
        });
        r.cut_before(i);
    };
    (records, r.next_cursor(), stopped)
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
    let generation = r.member.generation;
    let assignments = assignments(&r.member);
    // Always 200 with the cursor, even when a stopped record left nothing
    // to return: the cursor's rotation moves on, so the next fetch reads
    // the other partitions first and one bad record cannot starve them.
    let (records, next_cursor, stopped_at) = records_out(r, q.encoding);
    Ok(axum::Json(GroupFetchOut {
        records,
        next_cursor,
        generation,
        assignments,
        stopped_at,
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
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stopped_at: Vec<StoppedAt>,
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
                let (records, next_cursor, stopped_at) = records_out(r, self.encoding);
                self.cursor = Some(next_cursor.clone());
                if let (true, Some(first)) = (records.is_empty(), stopped_at.first()) {
                    // Only an undecodable record is left: reading on would
                    // spin on it, so the stream ends naming it.
                    let problem = first.problem();
                    self.end("error", problem)
                } else if records.is_empty() {
                    Event::default().event("ping").data("{}")
                } else {
                    Event::default()
                        .event("records")
                        .json_data(RecordsEvent {
                            records,
                            next_cursor,
                            stopped_at,
                        })
                        .unwrap_or_default()
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
