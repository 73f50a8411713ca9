use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use crate::AppState;
use crate::problem::Problem;

/// Liveness and readiness: 200 while serving, 503 once shutdown began (so a
/// load balancer drains this agent).
pub async fn healthz(State(s): State<AppState>) -> impl IntoResponse {
    if s.agent.is_shutting_down() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else {
        (StatusCode::OK, "ok\n")
    }
}

pub async fn metrics(State(s): State<AppState>) -> Result<impl IntoResponse, Problem> {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &s.registry).map_err(|_| {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "metrics encoding failed",
        )
    })?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        out,
    ))
}

pub async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("../openapi.json"),
    )
}

pub async fn not_found() -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "route_not_found",
        "no such route; see /v1/openapi.json",
    )
}

pub async fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}
