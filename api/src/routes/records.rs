//! Fetch (JSON or Server-Sent Events) and offsets of one partition.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use silt_agent::{Agent, FetchRequest, Limits};

use crate::AppState;
use crate::extract::{Path, Query};
use crate::problem::{ApiResult, Problem};
use crate::types::{Encoding, FetchResponse, OffsetsOut, RecordOut};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchQuery {
    /// Signed so that a negative offset gets a precise error.
    offset: Option<i64>,
    max_records: Option<usize>,
    max_bytes: Option<usize>,
    wait_ms: Option<u64>,
    #[serde(default)]
    encoding: Encoding,
}

struct Fetch {
    offset: Option<u64>,
    limits: Limits,
    wait: Duration,
    encoding: Encoding,
}

fn validate(s: &AppState, q: FetchQuery) -> ApiResult<Fetch> {
    let offset = match q.offset {
        Some(o) if o < 0 => {
            return Err(Problem::bad_request(
                "invalid_offset",
                format!("offset must be >= 0, got {o}"),
            ));
        }
        o => o.map(|o| o as u64),
    };
    let (limits, wait) = read_limits(s, q.max_records, q.max_bytes, q.wait_ms)?;
    Ok(Fetch {
        offset,
        limits,
        wait,
        encoding: q.encoding,
    })
}

/// Checks a read's `max_records`, `max_bytes` and `wait_ms` against the
/// configured bounds, filling in defaults.
pub(crate) fn read_limits(
    s: &AppState,
    max_records: Option<usize>,
    max_bytes: Option<usize>,
    wait_ms: Option<u64>,
) -> ApiResult<(Limits, Duration)> {
    let c = &s.config;
    let max_records = max_records.unwrap_or(c.default_fetch_records);
    if max_records == 0 || max_records > c.max_fetch_records {
        return Err(Problem::bad_request(
            "invalid_max_records",
            format!("max_records must be 1..={}", c.max_fetch_records),
        ));
    }
    let max_bytes = max_bytes.unwrap_or(c.default_fetch_bytes);
    if max_bytes == 0 || max_bytes > c.max_fetch_bytes {
        return Err(Problem::bad_request(
            "invalid_max_bytes",
            format!("max_bytes must be 1..={}", c.max_fetch_bytes),
        ));
    }
    let wait = Duration::from_millis(wait_ms.unwrap_or(0));
    if wait > c.max_wait {
        return Err(Problem::bad_request(
            "invalid_wait",
            format!("wait_ms must be at most {}", c.max_wait.as_millis()),
        ));
    }
    Ok((
        Limits {
            max_records,
            max_bytes,
        },
        wait,
    ))
}

async fn start_offset(
    agent: &Agent,
    topic: &str,
    partition: u32,
    given: Option<u64>,
) -> ApiResult<u64> {
    match given {
        Some(o) => Ok(o),
        None => Ok(agent.offsets(topic, partition).await?.log_start_offset),
    }
}

/// `GET /v1/topics/{topic}/partitions/{partition}/records`: JSON, or an SSE
/// stream with `Accept: text/event-stream`.
pub async fn fetch(
    State(s): State<AppState>,
    Path((topic, partition)): Path<(String, u32)>,
    Query(q): Query<FetchQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let f = validate(&s, q)?;
    let wants_sse = wants_sse(&headers);
    // SSE resumes after Last-Event-ID, and never long-polls its first read,
    // so that errors (unknown topic, offset out of range) still get a status.
    let (offset, wait) = if wants_sse {
        (last_event_id(&headers)?.or(f.offset), Duration::ZERO)
    } else {
        (f.offset, f.wait)
    };
    let offset = start_offset(&s.agent, &topic, partition, offset).await?;
    let r = s
        .agent
        .fetch(
            &topic,
            partition,
            FetchRequest {
                offset,
                limits: f.limits,
                wait,
            },
        )
        .await?;
    if wants_sse {
        return Ok(sse(s, topic, partition, f, r).into_response());
    }
    // A record that cannot be shown in the chosen encoding (non-UTF-8 bytes
    // with encoding=utf8) ends the answer before it, so the records before
    // it are delivered; fetched first, it is a 422 naming its offset, which
    // the consumer reads with encoding=base64 to get past it.
    let mut records = Vec::with_capacity(r.records.len());
    let mut next_offset = r.next_offset;
    for rec in r.records {
        let offset = rec.offset;
        match RecordOut::new(partition, rec, f.encoding) {
            Ok(out) => records.push(out),
            Err(p) if records.is_empty() => return Err(p.with("offset", offset)),
            Err(_) => {
                next_offset = offset;
                break;
            }
        }
    }
    Ok(axum::Json(FetchResponse {
        records,
        next_offset,
        high_watermark: r.high_watermark,
        log_start_offset: r.log_start_offset,
    })
    .into_response())
}

struct SseState {
    agent: Agent,
    topic: String,
    partition: u32,
    fetch: Fetch,
    next: u64,
    buffer: VecDeque<silt_agent::StoredRecord>,
    done: bool,
}

fn sse(
    s: AppState,
    topic: String,
    partition: u32,
    fetch: Fetch,
    first: silt_agent::FetchResult,
) -> impl IntoResponse {
    let state = SseState {
        agent: s.agent,
        topic,
        partition,
        next: first.next_offset,
        buffer: first.records.into(),
        fetch,
        done: false,
    };
    let stream = futures::stream::unfold(state, |mut st| async move {
        loop {
            if st.done {
                return None;
            }
            if let Some(rec) = st.buffer.pop_front() {
                let id = rec.offset.to_string();
                let ev = match RecordOut::new(st.partition, rec, st.fetch.encoding) {
                    Ok(out) => Event::default().event("record").id(id).json_data(out),
                    Err(p) => {
                        st.done = true;
                        Event::default().event("error").json_data(p)
                    }
                };
                let ev =
                    ev.unwrap_or_else(|_| Event::default().event("error").data("encoding failed"));
                return Some((Ok::<_, Infallible>(ev), st));
            }
            if st.agent.is_shutting_down() {
                return None;
            }
            let req = FetchRequest {
                offset: st.next,
                limits: st.fetch.limits,
                wait: Duration::from_secs(25),
            };
            match st.agent.fetch(&st.topic, st.partition, req).await {
                Ok(r) => {
                    st.next = r.next_offset;
                    st.buffer.extend(r.records);
                }
                Err(e) => {
                    st.done = true;
                    let p = Problem::from(e);
                    let ev = Event::default()
                        .event("error")
                        .json_data(p)
                        .unwrap_or_default();
                    return Some((Ok(ev), st));
                }
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// Where an SSE stream resumes: one past `Last-Event-ID` (an offset). A
/// malformed or last-possible id is a 400, never a silent replay.
fn last_event_id(headers: &HeaderMap) -> ApiResult<Option<u64>> {
    let Some(v) = headers.get("last-event-id") else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .and_then(|o| o.checked_add(1))
        .map(Some)
        .ok_or_else(|| {
            Problem::bad_request(
                "invalid_last_event_id",
                "Last-Event-ID must be the offset of a record received (a non-negative integer)",
            )
        })
}

/// Whether the client asked for Server-Sent Events.
pub(crate) fn wants_sse(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffsetsQuery {
    /// Milliseconds since the epoch: also find the first offset this recent.
    timestamp: Option<i64>,
}

/// `GET /v1/topics/{topic}/partitions/{partition}/offsets[?timestamp=]`
pub async fn offsets(
    State(s): State<AppState>,
    Path((topic, partition)): Path<(String, u32)>,
    Query(q): Query<OffsetsQuery>,
) -> ApiResult<axum::Json<OffsetsOut>> {
    let st = s.agent.offsets(&topic, partition).await?;
    let timestamp_offset = match q.timestamp {
        Some(ts) => Some(
            s.agent
                .offset_for_timestamp(&topic, partition, ts)
                .await?
                .map(|(offset, _)| offset),
        ),
        None => None,
    };
    Ok(axum::Json(OffsetsOut {
        earliest_offset: st.log_start_offset,
        latest_offset: st.high_watermark,
        timestamp_offset,
    }))
}
