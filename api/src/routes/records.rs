//! Produce, fetch (JSON or Server-Sent Events) and offsets.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use silt_agent::{Agent, FetchRequest, Limits, ProduceRecord};

use crate::AppState;
use crate::extract::{JsonBody, Path, Query};
use crate::problem::{ApiResult, Problem};
use crate::types::{
    Encoding, EncodingQuery, FetchResponse, OffsetOut, OffsetsOut, ProduceBody, ProduceLimits,
    ProduceResponse, RecordOut,
};

/// Parses and checks a produce body; strings borrow from it where possible.
fn parse_records(
    s: &AppState,
    forced: Option<u32>,
    enc: Encoding,
    raw: &JsonBody,
) -> ApiResult<Vec<ProduceRecord>> {
    let c = &s.config;
    let body: ProduceBody<'_> = raw.parse()?;
    if body.records.is_empty() {
        return Err(Problem::bad_request(
            "no_records",
            "`records` must hold at least one record",
        ));
    }
    if body.records.len() > c.max_records_per_request {
        return Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_records",
            format!(
                "{} records in one request; the limit is {}",
                body.records.len(),
                c.max_records_per_request
            ),
        ));
    }
    let limits = ProduceLimits {
        max_record_bytes: c.max_record_bytes,
        max_headers: c.max_headers,
    };
    let mut records = Vec::with_capacity(body.records.len());
    for (i, r) in body.records.into_iter().enumerate() {
        let mut r = r.into_record(enc, &raw.0, i, &limits)?;
        if let Some(p) = forced {
            if r.partition.is_some_and(|q| q != p) {
                return Err(Problem::bad_request(
                    "partition_mismatch",
                    format!("records[{i}] names a partition other than {p}, the one in the path"),
                ));
            }
            r.partition = Some(p);
        }
        records.push(r);
    }
    Ok(records)
}

async fn produce_inner(
    s: &AppState,
    topic: &str,
    forced: Option<u32>,
    enc: Encoding,
    body: JsonBody,
) -> ApiResult<axum::Json<ProduceResponse>> {
    let records = parse_records(s, forced, enc, &body)?;
    drop(body); // the records hold slices of it; nothing else needs it
    let offsets = s.agent.produce(topic, records).await?;
    Ok(axum::Json(ProduceResponse {
        offsets: offsets
            .into_iter()
            .map(|(partition, offset)| OffsetOut { partition, offset })
            .collect(),
    }))
}

/// `POST /v1/topics/{topic}/records`
pub async fn produce(
    State(s): State<AppState>,
    Path(topic): Path<String>,
    Query(q): Query<EncodingQuery>,
    body: JsonBody,
) -> ApiResult<axum::Json<ProduceResponse>> {
    produce_inner(&s, &topic, None, q.encoding, body).await
}

/// `POST /v1/topics/{topic}/partitions/{partition}/records`
pub async fn produce_to_partition(
    State(s): State<AppState>,
    Path((topic, partition)): Path<(String, u32)>,
    Query(q): Query<EncodingQuery>,
    body: JsonBody,
) -> ApiResult<axum::Json<ProduceResponse>> {
    produce_inner(&s, &topic, Some(partition), q.encoding, body).await
}

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
    let c = &s.config;
    let offset = match q.offset {
        Some(o) if o < 0 => {
            return Err(Problem::bad_request(
                "invalid_offset",
                format!("offset must be >= 0, got {o}"),
            ));
        }
        o => o.map(|o| o as u64),
    };
    let max_records = q.max_records.unwrap_or(c.default_fetch_records);
    if max_records == 0 || max_records > c.max_fetch_records {
        return Err(Problem::bad_request(
            "invalid_max_records",
            format!("max_records must be 1..={}", c.max_fetch_records),
        ));
    }
    let max_bytes = q.max_bytes.unwrap_or(c.default_fetch_bytes);
    if max_bytes == 0 || max_bytes > c.max_fetch_bytes {
        return Err(Problem::bad_request(
            "invalid_max_bytes",
            format!("max_bytes must be 1..={}", c.max_fetch_bytes),
        ));
    }
    let wait = Duration::from_millis(q.wait_ms.unwrap_or(0));
    if wait > c.max_wait {
        return Err(Problem::bad_request(
            "invalid_wait",
            format!("wait_ms must be at most {}", c.max_wait.as_millis()),
        ));
    }
    Ok(Fetch {
        offset,
        limits: Limits {
            max_records,
            max_bytes,
        },
        wait,
        encoding: q.encoding,
    })
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
    let wants_sse = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    // SSE resumes after Last-Event-ID, and never long-polls its first read,
    // so that errors (unknown topic, offset out of range) still get a status.
    let (offset, wait) = if wants_sse {
        let resume = headers
            .get("last-event-id")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(|o| o + 1);
        (resume.or(f.offset), Duration::ZERO)
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
    let records = r
        .records
        .into_iter()
        .map(|rec| RecordOut::new(partition, rec, f.encoding))
        .collect::<ApiResult<_>>()?;
    Ok(axum::Json(FetchResponse {
        records,
        next_offset: r.next_offset,
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

/// `GET /v1/topics/{topic}/partitions/{partition}/offsets`
pub async fn offsets(
    State(s): State<AppState>,
    Path((topic, partition)): Path<(String, u32)>,
) -> ApiResult<axum::Json<OffsetsOut>> {
    let st = s.agent.offsets(&topic, partition).await?;
    Ok(axum::Json(OffsetsOut {
        earliest_offset: st.log_start_offset,
        latest_offset: st.high_watermark,
    }))
}
