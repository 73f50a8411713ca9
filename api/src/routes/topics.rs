use axum::extract::State;
use axum::http::StatusCode;

use crate::AppState;
use crate::extract::{Json, Path, Query};
use crate::problem::ApiResult;
use crate::types::{CreateTopic, TopicList, TopicOut};
use serde::Deserialize;

pub async fn create(
    State(s): State<AppState>,
    Json(body): Json<CreateTopic>,
) -> ApiResult<(StatusCode, axum::Json<TopicOut>)> {
    let t = s
        .agent
        .create_topic(&body.name, body.partitions, body.config)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(TopicOut::new(t, None))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Include every topic's partition states.
    #[serde(default)]
    detail: bool,
}

/// Most topics `GET /v1/topics?detail=true` describes (one metadata read
/// each).
pub const MAX_DETAILED_TOPICS: usize = 1000;

/// `GET /v1/topics[?detail=true]`
pub async fn list(
    State(s): State<AppState>,
    Query(q): Query<ListQuery>,
) -> ApiResult<axum::Json<TopicList>> {
    if q.detail {
        let (described, truncated) = s.agent.describe_topics(MAX_DETAILED_TOPICS).await?;
        let topics = described
            .into_iter()
            .map(|d| TopicOut::new(d.topic, Some(d.partitions)))
            .collect();
        return Ok(axum::Json(TopicList { topics, truncated }));
    }
    let topics = s
        .agent
        .list_topics()
        .await?
        .into_iter()
        .map(|t| TopicOut::new(t, None))
        .collect();
    Ok(axum::Json(TopicList {
        topics,
        truncated: false,
    }))
}

pub async fn describe(
    State(s): State<AppState>,
    Path(topic): Path<String>,
) -> ApiResult<axum::Json<TopicOut>> {
    let d = s.agent.describe_topic(&topic).await?;
    Ok(axum::Json(TopicOut::new(d.topic, Some(d.partitions))))
}

pub async fn delete(State(s): State<AppState>, Path(topic): Path<String>) -> ApiResult<StatusCode> {
    s.agent.delete_topic(&topic).await?;
    Ok(StatusCode::NO_CONTENT)
}
