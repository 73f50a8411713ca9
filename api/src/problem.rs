//! Errors as RFC 9457 problems (`application/problem+json`), plus a stable
//! machine `code` and `retriable`. This is the ONE place where errors become
//! HTTP answers; handlers only return [`Problem`] or `silt_agent::Error`.
//! Internal details (store paths, backend messages) are logged, never sent.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use silt_agent::sequencer::Unsequenced;
use silt_agent::{Error, ErrorKind, Refusal};

/// A problem answer.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    pub code: &'static str,
    pub retriable: bool,
    /// Machine-readable details of some problems (e.g. the group's current
    /// `generation` with `stale_generation`).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Box<serde_json::Map<String, serde_json::Value>>>,
    #[serde(skip)]
    pub retry_after: Option<Duration>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            type_uri: format!("urn:silt:problem:{code}"),
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: detail.into(),
            code,
            retriable: matches!(status.as_u16(), 429 | 503),
            extensions: None,
            retry_after: None,
        }
    }

    /// Adds a machine-readable detail.
    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.extensions
            .get_or_insert_default()
            .insert(key.to_owned(), value.into());
        self
    }

    /// A request body past `--max-request-bytes`.
    pub fn payload_too_large() -> Self {
        // `Problem::new`, not `Self::new`: the test that every code is
        // documented finds codes by this constructor's name.
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body exceeds the limit (see --max-request-bytes)",
        )
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn retry_after(mut self, d: Duration) -> Self {
        self.retry_after = Some(d);
        self
    }
}

impl From<Unsequenced> for Problem {
    fn from(e: Unsequenced) -> Self {
        let detail = e.to_string();
        match e {
            Unsequenced::NotSequencer => {
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, "not_sequencer", detail)
            }
            Unsequenced::Pending { .. } => {
                Problem::new(StatusCode::CONFLICT, "predecessor_pending", detail)
            }
            Unsequenced::Busy | Unsequenced::Stopped | Unsequenced::Failed(_) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "sequencer_unavailable",
                "the sequencer could not take the commit; commit directly",
            ),
        }
    }
}

impl From<Error> for Problem {
    fn from(e: Error) -> Self {
        let detail = e.to_string();
        match (&e, e.kind()) {
            (Error::TopicNotFound(_), _) => {
                Problem::new(StatusCode::NOT_FOUND, "topic_not_found", detail)
            }
            (Error::PartitionNotFound { .. }, _) => {
                Problem::new(StatusCode::NOT_FOUND, "partition_not_found", detail)
            }
            (Error::TopicExists(_), _) => {
                Problem::new(StatusCode::CONFLICT, "topic_exists", detail)
            }
            (Error::TopicChanged(_), _) => {
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, "topic_changed", detail)
                    .retry_after(Duration::from_secs(1))
            }
            (Error::GroupNotFound(_), _) => {
                Problem::new(StatusCode::NOT_FOUND, "group_not_found", detail)
            }
            (Error::GroupExists(_), _) => {
                Problem::new(StatusCode::CONFLICT, "group_exists", detail)
            }
            (Error::Refused(r), _) => refusal(*r, detail),
            (Error::OffsetOutOfRange { .. }, _) => Problem::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "offset_out_of_range",
                detail,
            ),
            (Error::Overloaded { retry_after }, _) => {
                Problem::new(StatusCode::TOO_MANY_REQUESTS, "overloaded", detail)
                    .retry_after(*retry_after)
            }
            (Error::ShuttingDown, _) => {
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", detail)
                    .retry_after(Duration::from_secs(1))
            }
            (_, ErrorKind::InvalidArgument) => Problem::bad_request("invalid_argument", detail),
            (_, ErrorKind::NotFound) => Problem::new(StatusCode::NOT_FOUND, "not_found", detail),
            (_, ErrorKind::AlreadyExists) => {
                Problem::new(StatusCode::CONFLICT, "already_exists", detail)
            }
            (
                _,
                ErrorKind::Unavailable
                | ErrorKind::Overloaded
                | ErrorKind::OffsetOutOfRange
                | ErrorKind::Refused,
            ) => {
                tracing::warn!(error = %e, "dependency unavailable");
                let what = match e {
                    Error::Storage(_) => "object storage",
                    _ => "metadata store",
                };
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    format!("the {what} is unavailable; retry"),
                )
                .retry_after(Duration::from_secs(1))
            }
            (_, ErrorKind::Internal) => {
                tracing::error!(error = %e, "internal error");
                Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; see the agent's logs",
                )
            }
        }
    }
}

/// Refused conditional writes: 409 unless the request itself is wrong.
fn refusal(r: Refusal, detail: String) -> Problem {
    let conflict = |code| Problem::new(StatusCode::CONFLICT, code, detail.clone());
    match r {
        Refusal::TopicGone => Problem::new(StatusCode::NOT_FOUND, "topic_not_found", detail),
        Refusal::UnknownProducer { .. } => conflict("unknown_producer"),
        Refusal::ProducerFenced { epoch } => conflict("producer_fenced").with("epoch", epoch),
        Refusal::OutOfOrderSequence { expected } => {
            conflict("out_of_order_sequence").with("expected_sequence", expected)
        }
        Refusal::SequenceTooOld { .. } => conflict("sequence_too_old"),
        Refusal::IdempotencyKeyReused => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            detail,
        ),
        Refusal::RequestMismatch => {
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "request_mismatch", detail)
        }
        Refusal::UnknownMember => Problem::new(StatusCode::NOT_FOUND, "unknown_member", detail),
        Refusal::StaleGeneration { generation } => {
            conflict("stale_generation").with("generation", generation)
        }
        Refusal::RebalanceInProgress { generation } => {
            conflict("rebalance_in_progress").with("generation", generation)
        }
        Refusal::NotAssigned { partition, .. } => {
            conflict("not_assigned").with("partition", partition)
        }
        Refusal::GroupHasMembers => conflict("group_has_members"),
        Refusal::InconsistentProtocol => conflict("inconsistent_group_protocol"),
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut res = (status, body).into_response();
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(d) = self.retry_after {
            let secs = d.as_secs_f64().ceil().max(1.0) as u64;
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

/// Handlers return this; `?` converts agent errors.
pub type ApiResult<T> = Result<T, Problem>;
