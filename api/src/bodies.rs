//! Request bodies are admitted before they are read. Each one reserves its
//! bytes from one budget shared by every connection — all of its declared
//! `Content-Length` up front, or a chunked body frame by frame as it
//! arrives — and must arrive whole before a deadline. So slow or stalled
//! uploads can neither hold more memory than the budget (429 `overloaded`
//! at once when it is spent) nor hold it for long (408 `request_timeout`). The
//! reservation is released when the request has been answered.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, timeout_at};

use crate::AppState;
use crate::problem::Problem;

/// The bytes all request bodies being read or handled may hold at once.
#[derive(Debug, Clone)]
pub struct BodyBudget {
    permits: Arc<Semaphore>,
}

impl BodyBudget {
    pub fn new(bytes: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(bytes.min(Semaphore::MAX_PERMITS))),
        }
    }

    /// Reserves at once or refuses: a client told to come back later holds
    /// nothing meanwhile.
    fn reserve(&self, bytes: usize) -> Result<OwnedSemaphorePermit, Problem> {
        let n = u32::try_from(bytes).unwrap_or(u32::MAX);
        match self.permits.clone().try_acquire_many_owned(n) {
            Ok(permit) => Ok(permit),
            Err(_) => Err(Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "overloaded",
                "too many request bodies in flight; retry",
            )
            .retry_after(Duration::from_secs(1))),
        }
    }
}

/// The middleware: admits, reads and hands on the body, or answers.
pub async fn admit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if !matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH) {
        return next.run(req).await;
    }
    let http1 = req.version() < axum::http::Version::HTTP_2;
    match read(&state, req).await {
        Ok((req, _reservation)) => next.run(req).await,
        Err(problem) => {
            let mut res = problem.into_response();
            // The rest of the body is never read, so the connection cannot
            // carry another request: say so, or a client that reuses it
            // races the close. (HTTP/2 streams end on their own.)
            if http1 {
                res.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            res
        }
    }
}

async fn read(
    state: &AppState,
    req: Request,
) -> Result<(Request, Option<OwnedSemaphorePermit>), Problem> {
    let limit = state.config.max_request_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(Problem::payload_too_large());
    }
    let deadline = Instant::now() + state.config.body_timeout;
    let budget = &state.bodies;
    let mut reserved: Option<OwnedSemaphorePermit> = None;
    if let Some(n) = declared.filter(|n| *n > 0) {
        reserved = Some(budget.reserve(n)?);
    }
    let (parts, mut body) = req.into_parts();
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(0));
    loop {
        let frame = match timeout_at(deadline, body.frame()).await {
            Err(_) => {
                return Err(Problem::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    "the request body did not arrive in time (see --body-timeout-secs)",
                ));
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(Problem::bad_request("invalid_body", e.to_string())),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if data.is_empty() {
            continue;
        }
        if buf.len() + data.len() > limit {
            return Err(Problem::payload_too_large());
        }
        if declared.is_none() {
            // One reservation, grown as the body arrives.
            let more = budget.reserve(data.len())?;
            match &mut reserved {
                Some(r) => r.merge(more),
                None => reserved = Some(more),
            }
        }
        buf.extend_from_slice(&data);
    }
    Ok((
        Request::from_parts(parts, Body::from(buf.freeze())),
        reserved,
    ))
}
