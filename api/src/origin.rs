//! Cross-site requests. A page from any other site can make its visitor's
//! browser send "simple" requests (no preflight) to an agent that browser
//! reaches — `silt dev` on localhost, an agent on the office network. So a
//! request that may change something and carries `Origin` (browsers add
//! it; other clients do not) must come from the agent's own origin: the
//! console works, other sites get 403 `cross_origin`.

use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::problem::Problem;

/// The middleware.
pub async fn same_origin(req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return next.run(req).await;
    };
    let origin = origin.to_str().unwrap_or_default();
    // HTTP/1.1 names the authority in Host, HTTP/2 in the URI.
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or_default();
    let authority = origin.split_once("://").map(|(_, a)| a);
    if authority.is_some_and(|a| !a.is_empty() && a.eq_ignore_ascii_case(host)) {
        return next.run(req).await;
    }
    Problem::new(
        StatusCode::FORBIDDEN,
        "cross_origin",
        format!(
            "a request from the page at {origin:?} may not change this agent ({host:?}): only pages it serves may"
        ),
    )
    .into_response()
}
