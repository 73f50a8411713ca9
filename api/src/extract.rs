//! Extractors whose rejections are problems, so that malformed input never
//! gets a plain-text answer or leaks parser internals beyond a short detail.

use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{StatusCode, header, request::Parts};
use bytes::Bytes;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::problem::Problem;

/// A JSON request body, not yet parsed: `Content-Type` must be JSON (or
/// absent) and the size is bounded by the router's body limit (413). Parse
/// it with [`JsonBody::parse`], which may borrow from the bytes.
#[derive(Debug)]
pub struct JsonBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or_default().to_ascii_lowercase();
            let essence = ct.split(';').next().unwrap_or_default().trim();
            if essence != "application/json" && !essence.ends_with("+json") {
                return Err(Problem::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    format!("expected Content-Type application/json, got {essence:?}"),
                ));
            }
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| match e {
            BytesRejection::FailedToBufferBody(f)
                if f.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Problem::payload_too_large()
            }
            other => Problem::bad_request("invalid_body", other.body_text()),
        })?;
        Ok(JsonBody(bytes))
    }
}

impl JsonBody {
    /// [`JsonBody::parse`] with its lists bounded while parsing.
    pub fn parse_bounded<'a, T: Deserialize<'a>>(
        &'a self,
        limits: crate::bounded::ListLimits,
    ) -> Result<T, Problem> {
        crate::bounded::parse_bounded(limits, || self.parse())
    }

    /// Syntax errors are `invalid_json`, shape errors `invalid_request`.
    pub fn parse<'a, T: Deserialize<'a>>(&'a self) -> Result<T, Problem> {
        let mut de = serde_json::Deserializer::from_slice(&self.0);
        let parsed = T::deserialize(&mut de).and_then(|v| de.end().map(|()| v));
        parsed.map_err(|e| {
            if e.is_syntax() || e.is_eof() {
                Problem::bad_request("invalid_json", e.to_string())
            } else {
                Problem::bad_request("invalid_request", e.to_string())
            }
        })
    }
}

/// A parsed JSON body (see [`JsonBody`] for the checks and error codes).
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        JsonBody::from_request(req, state).await?.parse().map(Json)
    }
}

/// Query string, rejections as `invalid_query`.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e: QueryRejection| Problem::bad_request("invalid_query", e.body_text()))
    }
}

/// Path parameters, rejections as `invalid_path` (e.g. a partition that is
/// not a non-negative integer).
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e: PathRejection| Problem::bad_request("invalid_path", e.body_text()))
    }
}
