//! What the router tests share: an agent on real SQLite metadata and an
//! in-memory object store, with an injected clock, and one way to send a
//! request through the router (`oneshot`: no sockets).
#![allow(clippy::unwrap_used, dead_code)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use prometheus_client::registry::Registry;
use serde_json::Value;
use silt_agent::{Agent, AgentConfig, Metrics, TestEnv};
use silt_api::{ApiConfig, AppState, HttpMetrics, app};
use silt_metadata::Metadata;
use silt_metadata::runner::RetryPolicy;
use silt_metadata::sqlite::SqliteKv;
use silt_segment::store::ObjectStorage;
use tower::ServiceExt;

/// A started agent and the router's state.
pub struct Harness {
    pub state: AppState,
    pub md: Arc<Metadata>,
    pub env: Arc<TestEnv>,
    _dir: tempfile::TempDir,
}

/// An agent with `config`, its clock starting at `now_ms`.
pub fn harness(config: AgentConfig, now_ms: i64) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let kv = Arc::new(SqliteKv::open(dir.path().join("meta.db")).unwrap());
    let md = Arc::new(Metadata::new(kv, RetryPolicy::default(), 5));
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let http = HttpMetrics::new(&mut registry);
    let env = Arc::new(TestEnv::new(now_ms, 2));
    let agent = Agent::start(
        config,
        md.clone(),
        ObjectStorage::memory(),
        env.clone(),
        metrics,
    );
    Harness {
        state: AppState::new(agent, ApiConfig::default(), registry, http),
        md,
        env,
        _dir: dir,
    }
}

/// A response, read whole.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as JSON (`null` when empty).
    pub fn json(&self) -> Value {
        if self.body.is_empty() {
            return Value::Null;
        }
        serde_json::from_slice(&self.body).unwrap()
    }

    pub fn content_type(&self) -> String {
        self.headers
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }
}

/// Sends a request with a JSON body (if any) and extra headers.
pub async fn send(
    state: &AppState,
    method: Method,
    uri: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> Answer {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let body = match body {
        Some(v) => {
            req = req.header("content-type", "application/json");
            Body::from(serde_json::to_vec(&v).unwrap())
        }
        None => Body::empty(),
    };
    let res = app(state.clone())
        .oneshot(req.body(body).unwrap())
        .await
        .unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    let body = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    Answer {
        status,
        headers,
        body,
    }
}
