use axum::extract::State;
use axum::http::StatusCode;

use crate::AppState;
use crate::extract::{Json, Path};
use crate::problem::ApiResult;
use crate::types::{CreateTopic, TopicList, TopicOut};

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

pub async fn list(State(s): State<AppState>) -> ApiResult<axum::Json<TopicList>> {
    let topics = s
        .agent
        .list_topics()
        .await?
        .into_iter()
        .map(|t| TopicOut::new(t, None))
        .collect();
    Ok(axum::Json(TopicList { topics }))
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
