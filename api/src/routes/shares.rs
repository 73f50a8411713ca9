//! Share groups over HTTP: queue semantics for any number of workers (see
//! `silt_agent::shares`). A fetch leases records and names each delivery;
//! acks accept, release, reject (dead-letter) or extend deliveries.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use silt_agent::shares::{
    AckSummary, Backoff, DeliveryId, ShareAcks, ShareFetch, ShareGroupInfo, ShareGroupSpec,
    ShareOrdering, SharePartitionInfo, ShareStart,
};
use silt_agent::{Error, StoredRecord};

use crate::AppState;
use crate::extract::{Json, Path, Query};
use crate::problem::{ApiResult, Problem};
use crate::types::{EncodingQuery, RecordOut};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    topics: Vec<String>,
    #[serde(default)]
    lease_ms: Option<u64>,
    #[serde(default)]
    max_deliveries: Option<u16>,
    #[serde(default)]
    backoff: Option<Backoff>,
    #[serde(default)]
    dlq_topic: Option<String>,
    #[serde(default)]
    ordering: ShareOrdering,
    #[serde(default)]
    start: ShareStart,
    #[serde(default)]
    max_in_flight: Option<u32>,
}

/// `PUT /v1/share-groups/{group}`
pub async fn create(
    State(s): State<AppState>,
    Path(group): Path<String>,
    Json(b): Json<CreateBody>,
) -> ApiResult<(StatusCode, axum::Json<ShareGroupOut>)> {
    let spec = ShareGroupSpec {
        topics: b.topics,
        lease_ms: b.lease_ms,
        max_deliveries: b.max_deliveries,
        backoff: b.backoff,
        dlq_topic: b.dlq_topic,
        ordering: b.ordering,
        start: b.start,
        max_in_flight: b.max_in_flight,
    };
    s.agent.create_share_group(&group, spec).await?;
    let info = s.agent.describe_share_group(&group).await?;
    Ok((StatusCode::CREATED, axum::Json(info.into())))
}

#[derive(Debug, Serialize)]
pub struct ShareGroupOut {
    name: String,
    topics: Vec<String>,
    lease_ms: u64,
    max_deliveries: u16,
    backoff: Backoff,
    dlq_topic: String,
    ordering: ShareOrdering,
    start: ShareStart,
    max_in_flight: u32,
    totals: Totals,
    partitions: Vec<PartitionOut>,
}

#[derive(Debug, Default, Serialize)]
pub struct Totals {
    available: u64,
    leased: u64,
    accepted: u64,
    dead_lettered: u64,
    redelivered: u64,
    oldest_unacked_ms: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct PartitionOut {
    topic: String,
    partition: u32,
    window_start: u64,
    window_next: u64,
    high_watermark: u64,
    available: u64,
    leased: u64,
    accepted: u64,
    dead_lettered: u64,
    redelivered: u64,
    oldest_unacked_ms: Option<i64>,
}

impl From<SharePartitionInfo> for PartitionOut {
    fn from(p: SharePartitionInfo) -> Self {
        Self {
            topic: p.topic,
            partition: p.partition,
            window_start: p.window_start,
            window_next: p.window_next,
            high_watermark: p.high_watermark,
            available: p.available,
            leased: p.leased,
            accepted: p.accepted,
            dead_lettered: p.dead_lettered,
            redelivered: p.redelivered,
            oldest_unacked_ms: p.oldest_unacked_ms,
        }
    }
}

impl From<ShareGroupInfo> for ShareGroupOut {
    fn from(g: ShareGroupInfo) -> Self {
        let mut totals = Totals::default();
        for p in &g.partitions {
            totals.available += p.available;
            totals.leased += p.leased;
            totals.accepted += p.accepted;
            totals.dead_lettered += p.dead_lettered;
            totals.redelivered += p.redelivered;
            totals.oldest_unacked_ms = totals.oldest_unacked_ms.max(p.oldest_unacked_ms);
        }
        let c = g.config;
        Self {
            name: g.name,
            topics: c.topics.into_iter().map(|t| t.name).collect(),
            lease_ms: c.lease_ms,
            max_deliveries: c.max_deliveries,
            backoff: c.backoff,
            dlq_topic: c.dlq_topic,
            ordering: c.ordering,
            start: c.start,
            max_in_flight: c.max_in_flight,
            totals,
            partitions: g.partitions.into_iter().map(Into::into).collect(),
        }
    }
}

/// `GET /v1/share-groups/{group}`
pub async fn describe(
    State(s): State<AppState>,
    Path(group): Path<String>,
) -> ApiResult<axum::Json<ShareGroupOut>> {
    Ok(axum::Json(
        s.agent.describe_share_group(&group).await?.into(),
    ))
}

/// `DELETE /v1/share-groups/{group}`
pub async fn delete(State(s): State<AppState>, Path(group): Path<String>) -> ApiResult<StatusCode> {
    s.agent.delete_share_group(&group).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    after: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ListOut {
    share_groups: Vec<String>,
}

/// `GET /v1/share-groups`
pub async fn list(
    State(s): State<AppState>,
    Query(q): Query<ListQuery>,
) -> ApiResult<axum::Json<ListOut>> {
    let share_groups = s.agent.list_share_groups(q.after.as_deref()).await?;
    Ok(axum::Json(ListOut { share_groups }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchBody {
    max_records: usize,
    #[serde(default)]
    lease_ms: Option<u64>,
    #[serde(default)]
    wait_ms: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct DeliveryOut {
    delivery_id: String,
    delivery_count: u16,
    lease_until_ms: i64,
    topic: String,
    #[serde(flatten)]
    record: RecordOut,
}

#[derive(Debug, Serialize)]
pub struct FetchOut {
    records: Vec<DeliveryOut>,
}

/// `POST /v1/share-groups/{group}/fetch`
pub async fn fetch(
    State(s): State<AppState>,
    Path(group): Path<String>,
    Query(q): Query<EncodingQuery>,
    Json(b): Json<FetchBody>,
) -> ApiResult<axum::Json<FetchOut>> {
    let wait = Duration::from_millis(b.wait_ms.unwrap_or(0)).min(s.config.max_wait);
    let deliveries = s
        .agent
        .share_fetch(
            &group,
            ShareFetch {
                max_records: b.max_records,
                lease_ms: b.lease_ms,
                wait,
            },
        )
        .await?;
    let ids: Vec<DeliveryId> = deliveries.iter().map(|d| d.id).collect();
    let shown: Result<Vec<DeliveryOut>, Problem> = deliveries
        .into_iter()
        .map(|d| {
            Ok(DeliveryOut {
                delivery_id: d.id.to_string(),
                delivery_count: d.id.deliveries,
                lease_until_ms: d.lease_until_ms,
                topic: d.topic,
                record: RecordOut::new(
                    d.id.partition,
                    StoredRecord {
                        offset: d.id.offset,
                        record: d.record,
                    },
                    q.encoding,
                )?,
            })
        })
        .collect();
    match shown {
        Ok(records) => Ok(axum::Json(FetchOut { records })),
        Err(problem) => {
            // Nobody will see these deliveries: give them back at once.
            let release = ShareAcks {
                release: ids,
                ..ShareAcks::default()
            };
            if let Err(e) = s.agent.share_ack(&group, release).await {
                tracing::warn!(group, error = %e, "could not release unshown deliveries");
            }
            Err(problem)
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcksBody {
    #[serde(default)]
    accept: Vec<String>,
    #[serde(default)]
    release: Vec<String>,
    #[serde(default)]
    reject: Vec<String>,
    #[serde(default)]
    extend: Vec<String>,
    #[serde(default)]
    lease_ms: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct AcksOut {
    applied: usize,
    /// Deliveries not applied: their lease passed to another delivery, or
    /// the record was already finished.
    stale: Vec<String>,
}

fn ids(list: Vec<String>) -> Result<Vec<DeliveryId>, Error> {
    list.iter().map(|s| s.parse()).collect()
}

/// `POST /v1/share-groups/{group}/acks`
pub async fn acks(
    State(s): State<AppState>,
    Path(group): Path<String>,
    Json(b): Json<AcksBody>,
) -> ApiResult<axum::Json<AcksOut>> {
    let acks = ShareAcks {
        accept: ids(b.accept)?,
        release: ids(b.release)?,
        reject: ids(b.reject)?,
        extend: ids(b.extend)?,
        lease_ms: b.lease_ms,
    };
    let AckSummary { applied, stale } = s.agent.share_ack(&group, acks).await?;
    Ok(axum::Json(AcksOut {
        applied,
        stale: stale.iter().map(ToString::to_string).collect(),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    #[serde(default)]
    max_records: Option<usize>,
}

#[derive(Debug, Serialize)]
pub struct ReplayOut {
    replayed: u64,
}

/// `POST /v1/share-groups/{group}/dlq/replay`
pub async fn replay(
    State(s): State<AppState>,
    Path(group): Path<String>,
    Json(b): Json<ReplayBody>,
) -> ApiResult<axum::Json<ReplayOut>> {
    let replayed = s
        .agent
        .share_dlq_replay(&group, b.max_records.unwrap_or(1_000))
        .await?;
    Ok(axum::Json(ReplayOut { replayed }))
}
