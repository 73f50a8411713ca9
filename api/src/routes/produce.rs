//! Produce: to one topic (`/v1/topics/{t}/records`, optionally one
//! partition), to several topics atomically (`/v1/records`), and with the
//! input offsets of a consume-transform-produce step (`/v1/transactions`).
//! Every form takes an idempotent producer's `{"producer":{…}}` or an
//! `Idempotency-Key` header, so that a retry returns the original answer
//! with `"duplicate": true` instead of writing twice.

use crate::bounded::ListLimits;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use serde::{Deserialize, Serialize};
use silt_agent::{Idempotence, ProduceRecord, ProduceRequest, TopicBatch};

use crate::AppState;
use crate::extract::{JsonBody, Path, Query};
use crate::problem::{ApiResult, Problem};
use crate::types::{
    Encoding, EncodingQuery, MultiProduceResponse, OffsetOut, ProduceBody, ProduceLimits,
    ProduceResponse, ProducerSeq, RecordIn, TopicOffsetOut, TransactionBody,
};

/// Where a record's topic comes from.
#[derive(Clone, Copy)]
enum Target<'p> {
    /// The path's topic (and, optionally, partition).
    Path(&'p str, Option<u32>),
    /// Each record names its own.
    PerRecord,
}

/// A request's records grouped by topic.
struct Grouped {
    /// In order of first appearance.
    batches: Vec<TopicBatch>,
    /// Per record of the request: `(batch, position in it)`.
    places: Vec<(usize, usize)>,
}

impl Grouped {
    /// The answer in request order.
    fn answer(self, answer: silt_agent::ProduceAnswer) -> MultiProduceResponse {
        MultiProduceResponse {
            offsets: self
                .places
                .into_iter()
                .map(|(b, i)| {
                    let (partition, offset) = answer.offsets[b][i];
                    TopicOffsetOut {
                        topic: self.batches[b].topic.clone(),
                        partition,
                        offset,
                    }
                })
                .collect(),
            duplicate: answer.duplicate,
        }
    }

    /// Hands the records over, keeping the topic names for the answer.
    fn take(&mut self) -> Vec<TopicBatch> {
        self.batches
            .iter_mut()
            .map(|b| TopicBatch {
                topic: b.topic.clone(),
                records: std::mem::take(&mut b.records),
            })
            .collect()
    }
}

/// The list limits of produce bodies, enforced while they are parsed.
fn list_limits(s: &AppState) -> ListLimits {
    ListLimits {
        records: s.config.max_records_per_request,
        headers: s.config.max_headers,
    }
}

/// Checks records and groups them by topic.
fn group(
    s: &AppState,
    target: Target<'_>,
    enc: Encoding,
    body: &bytes::Bytes,
    records: Vec<RecordIn<'_>>,
) -> ApiResult<Grouped> {
    let c = &s.config;
    if records.is_empty() {
        return Err(Problem::bad_request(
            "no_records",
            "`records` must hold at least one record",
        ));
    }
    if records.len() > c.max_records_per_request {
        return Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_records",
            format!(
                "{} records in one request; the limit is {}",
                records.len(),
                c.max_records_per_request
            ),
        ));
    }
    let limits = ProduceLimits {
        max_record_bytes: c.max_record_bytes,
        max_headers: c.max_headers,
    };
    let mut out: Vec<TopicBatch> = Vec::new();
    let mut places = Vec::with_capacity(records.len());
    for (i, mut r) in records.into_iter().enumerate() {
        let topic = match (target, r.topic.take()) {
            (Target::Path(t, _), None) => t.to_owned(),
            (Target::Path(t, _), Some(named)) if named == t => named,
            (Target::Path(t, _), Some(_)) => {
                return Err(Problem::bad_request(
                    "topic_mismatch",
                    format!("records[{i}] names a topic other than {t:?}, the one in the path"),
                ));
            }
            (Target::PerRecord, Some(named)) => named,
            (Target::PerRecord, None) => {
                return Err(Problem::bad_request(
                    "invalid_request",
                    format!("records[{i}] needs a `topic`"),
                ));
            }
        };
        let mut record: ProduceRecord = r.into_record(enc, body, i, &limits)?;
        if let Target::Path(_, Some(p)) = target {
            if record.partition.is_some_and(|q| q != p) {
                return Err(Problem::bad_request(
                    "partition_mismatch",
                    format!("records[{i}] names a partition other than {p}, the one in the path"),
                ));
            }
            record.partition = Some(p);
        }
        let b = match out.iter().position(|b| b.topic == topic) {
            Some(b) => b,
            None => {
                out.push(TopicBatch {
                    topic,
                    records: Vec::new(),
                });
                out.len() - 1
            }
        };
        places.push((b, out[b].records.len()));
        out[b].records.push(record);
    }
    Ok(Grouped {
        batches: out,
        places,
    })
}

/// The request's idempotence: a producer sequence in the body, or an
/// `Idempotency-Key` header (fingerprinted with the route and body).
fn idempotence(
    headers: &HeaderMap,
    uri: &Uri,
    body: &bytes::Bytes,
    producer: Option<ProducerSeq>,
) -> ApiResult<Option<Idempotence>> {
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let ok = v
                .to_str()
                .ok()
                .filter(|k| (1..=silt_agent::MAX_IDEMPOTENCY_KEY).contains(&k.len()));
            Some(ok.ok_or_else(|| {
                Problem::bad_request(
                    "invalid_idempotency_key",
                    format!(
                        "Idempotency-Key must be 1 to {} visible ASCII characters",
                        silt_agent::MAX_IDEMPOTENCY_KEY
                    ),
                )
            })?)
        }
    };
    match (producer, key) {
        (Some(_), Some(_)) => Err(Problem::bad_request(
            "invalid_request",
            "use either an idempotent producer or an Idempotency-Key, not both",
        )),
        (Some(p), None) => Ok(Some(Idempotence::Producer {
            id: p.id,
            epoch: p.epoch,
            sequence: p.sequence,
        })),
        (None, Some(k)) => Ok(Some(Idempotence::Key {
            key: k.to_owned(),
            fingerprint: silt_agent::fingerprint(&[uri.path().as_bytes(), body]),
        })),
        (None, None) => Ok(None),
    }
}

async fn produce_to(
    s: &AppState,
    topic: &str,
    partition: Option<u32>,
    enc: Encoding,
    headers: &HeaderMap,
    uri: &Uri,
    raw: JsonBody,
) -> ApiResult<axum::Json<ProduceResponse>> {
    let body: ProduceBody<'_> = raw.parse_bounded(list_limits(s))?;
    let idempotence = idempotence(headers, uri, &raw.0, body.producer)?;
    let batches = group(
        s,
        Target::Path(topic, partition),
        enc,
        &raw.0,
        body.records.into_vec(),
    )?
    .batches;
    let answer = s
        .agent
        .produce_request(ProduceRequest {
            batches,
            idempotence,
            commit: None,
        })
        .await?;
    Ok(axum::Json(ProduceResponse {
        offsets: answer
            .offsets
            .into_iter()
            .flatten()
            .map(|(partition, offset)| OffsetOut { partition, offset })
            .collect(),
        duplicate: answer.duplicate,
    }))
}

/// `POST /v1/topics/{topic}/records`
pub async fn produce(
    State(s): State<AppState>,
    Path(topic): Path<String>,
    Query(q): Query<EncodingQuery>,
    headers: HeaderMap,
    uri: Uri,
    body: JsonBody,
) -> ApiResult<axum::Json<ProduceResponse>> {
    produce_to(&s, &topic, None, q.encoding, &headers, &uri, body).await
}

/// `POST /v1/topics/{topic}/partitions/{partition}/records`
pub async fn produce_to_partition(
    State(s): State<AppState>,
    Path((topic, partition)): Path<(String, u32)>,
    Query(q): Query<EncodingQuery>,
    headers: HeaderMap,
    uri: Uri,
    body: JsonBody,
) -> ApiResult<axum::Json<ProduceResponse>> {
    produce_to(
        &s,
        &topic,
        Some(partition),
        q.encoding,
        &headers,
        &uri,
        body,
    )
    .await
}

/// Produces records that name their topics, with input offsets if given;
/// answers in request order.
async fn produce_grouped(
    s: &AppState,
    enc: Encoding,
    body: &bytes::Bytes,
    records: Vec<RecordIn<'_>>,
    idempotence: Option<Idempotence>,
    commit: Option<silt_agent::groups::GroupCommit>,
) -> ApiResult<axum::Json<MultiProduceResponse>> {
    let mut grouped = group(s, Target::PerRecord, enc, body, records)?;
    let answer = s
        .agent
        .produce_request(ProduceRequest {
            batches: grouped.take(),
            idempotence,
            commit,
        })
        .await?;
    Ok(axum::Json(grouped.answer(answer)))
}

/// `POST /v1/records`: records naming their topics; all become visible
/// together or none does.
pub async fn produce_multi(
    State(s): State<AppState>,
    Query(q): Query<EncodingQuery>,
    headers: HeaderMap,
    uri: Uri,
    raw: JsonBody,
) -> ApiResult<axum::Json<MultiProduceResponse>> {
    let body: ProduceBody<'_> = raw.parse_bounded(list_limits(&s))?;
    let idempotence = idempotence(&headers, &uri, &raw.0, body.producer)?;
    produce_grouped(
        &s,
        q.encoding,
        &raw.0,
        body.records.into_vec(),
        idempotence,
        None,
    )
    .await
}

/// `POST /v1/transactions`: output records and the input offsets of one
/// consume-transform-produce step commit in one metadata transaction, or
/// neither does (a fenced member's step is refused whole).
pub async fn transaction(
    State(s): State<AppState>,
    Query(q): Query<EncodingQuery>,
    headers: HeaderMap,
    uri: Uri,
    raw: JsonBody,
) -> ApiResult<axum::Json<MultiProduceResponse>> {
    let body: TransactionBody<'_> = raw.parse_bounded(list_limits(&s))?;
    let idempotence = idempotence(&headers, &uri, &raw.0, body.producer)?;
    let commit = body.commit.into_commit()?;
    produce_grouped(
        &s,
        q.encoding,
        &raw.0,
        body.produce.into_vec(),
        idempotence,
        Some(commit),
    )
    .await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateProducer {
    /// A stable name: initialising it again bumps the epoch and fences the
    /// producer's earlier incarnations.
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ProducerOut {
    producer_id: u64,
    epoch: u32,
}

/// `POST /v1/producers`
pub async fn create_producer(
    State(s): State<AppState>,
    raw: JsonBody,
) -> ApiResult<(StatusCode, axum::Json<ProducerOut>)> {
    // The body is optional.
    let body: CreateProducer = if raw.0.is_empty() {
        CreateProducer::default()
    } else {
        raw.parse()?
    };
    let name = body.name;
    let p = s.agent.init_producer(name.as_deref()).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(ProducerOut {
            producer_id: p.id,
            epoch: p.epoch,
        }),
    ))
}
