//! Silt's HTTP API. [`app`] builds the whole router; the binary serves it and
//! tests drive it with `tower::ServiceExt::oneshot`.
//!
//! Every error is an RFC 9457 problem with a stable `code` ([`problem`]);
//! every body, batch and wait has a documented bound ([`ApiConfig`]).

pub mod bodies;
pub mod bounded;
pub mod console;
pub mod extract;
pub mod listener;
mod metrics;
mod origin;
pub mod problem;
mod routes;
pub mod server;
pub mod types;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use prometheus_client::registry::Registry;
use silt_agent::Agent;

pub use console::{ConsoleConfig, ProbeInfo};
pub use metrics::HttpMetrics;

use console::history::MetricsHistory;
use tokio_util::sync::CancellationToken;

/// Bounds on requests. Each limit is enforced with a clear problem answer.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Largest request body (413 `payload_too_large` beyond).
    pub max_request_bytes: usize,
    /// Most records in one produce request (413 `too_many_records`).
    pub max_records_per_request: usize,
    /// Largest record: key + value + headers (413 `record_too_large`).
    pub max_record_bytes: usize,
    /// Most headers on one record.
    pub max_headers: usize,
    /// Default and maximum `max_records` of a fetch.
    pub default_fetch_records: usize,
    pub max_fetch_records: usize,
    /// Default and maximum `max_bytes` of a fetch.
    pub default_fetch_bytes: usize,
    pub max_fetch_bytes: usize,
    /// Maximum `wait_ms` of a long-poll.
    pub max_wait: Duration,
    /// A request body must arrive whole within this (408 `request_timeout`).
    pub body_timeout: Duration,
    /// Bytes of request bodies all connections may hold at once (429
    /// `overloaded` once spent); see [`bodies`].
    pub body_budget_bytes: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            max_request_bytes: 8 << 20,
            max_records_per_request: 10_000,
            max_record_bytes: 1 << 20,
            max_headers: 64,
            default_fetch_records: 500,
            max_fetch_records: 10_000,
            default_fetch_bytes: 1 << 20,
            max_fetch_bytes: 16 << 20,
            max_wait: Duration::from_secs(60),
            body_timeout: Duration::from_secs(30),
            body_budget_bytes: 256 << 20,
        }
    }
}

/// Everything the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    pub agent: Agent,
    pub config: Arc<ApiConfig>,
    pub registry: Arc<Registry>,
    pub http: HttpMetrics,
    pub bodies: bodies::BodyBudget,
    pub console: Arc<ConsoleConfig>,
    /// Filled only once [`AppState::sample_history`] runs.
    pub history: Arc<MetricsHistory>,
}

/// How often the metrics history samples, and how far back it keeps.
pub const HISTORY_INTERVAL: Duration = Duration::from_secs(10);
pub const HISTORY_WINDOW: Duration = Duration::from_secs(3600);

impl AppState {
    pub fn new(agent: Agent, config: ApiConfig, registry: Registry, http: HttpMetrics) -> Self {
        Self {
            agent,
            bodies: bodies::BodyBudget::new(config.body_budget_bytes),
            config: Arc::new(config),
            registry: Arc::new(registry),
            http,
            console: Arc::default(),
            history: Arc::new(MetricsHistory::new(HISTORY_INTERVAL, HISTORY_WINDOW)),
        }
    }

    /// Serves the console as `console` says, sampling the metrics history
    /// every `interval` (for the last [`HISTORY_WINDOW`]).
    pub fn with_console(mut self, console: ConsoleConfig, interval: Duration) -> Self {
        self.console = Arc::new(console);
        self.history = Arc::new(MetricsHistory::new(interval, HISTORY_WINDOW));
        self
    }

    /// Samples this process's metrics into the history until `stop`.
    pub fn sample_history(&self, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        let agent = self.agent.clone();
        self.history
            .spawn(self.registry.clone(), move || agent.now_ms(), stop)
    }
}

/// The whole API.
pub fn app(state: AppState) -> Router {
    let body_limit = state.config.max_request_bytes;
    let console = if state.console.ui {
        console::routes()
    } else {
        Router::new()
    };
    Router::new()
        .merge(console)
        .route("/healthz", get(routes::meta::healthz))
        .route("/metrics", get(routes::meta::metrics))
        .route("/v1/openapi.json", get(routes::meta::openapi))
        .route("/v1/cluster", get(routes::cluster::cluster))
        .route("/v1/metrics/history", get(routes::cluster::history))
        .route(
            "/v1/topics",
            post(routes::topics::create).get(routes::topics::list),
        )
        .route(
            "/v1/topics/{topic}",
            get(routes::topics::describe).delete(routes::topics::delete),
        )
        .route("/v1/topics/{topic}/records", post(routes::produce::produce))
        .route(
            "/v1/topics/{topic}/partitions/{partition}/records",
            post(routes::produce::produce_to_partition).get(routes::records::fetch),
        )
        .route("/v1/records", post(routes::produce::produce_multi))
        .route("/v1/transactions", post(routes::produce::transaction))
        .route("/v1/producers", post(routes::produce::create_producer))
        .route("/v1/consumer-groups", get(routes::groups::list))
        .route(
            "/v1/consumer-groups/{group}",
            get(routes::groups::describe).delete(routes::groups::delete),
        )
        .route(
            "/v1/consumer-groups/{group}/members",
            post(routes::groups::join),
        )
        .route(
            "/v1/consumer-groups/{group}/members/{member}",
            put(routes::groups::heartbeat).delete(routes::groups::leave),
        )
        .route(
            "/v1/consumer-groups/{group}/members/{member}/records",
            get(routes::groups::fetch),
        )
        .route(
            "/v1/consumer-groups/{group}/offsets",
            post(routes::groups::commit).get(routes::groups::offsets),
        )
        .route("/v1/share-groups", get(routes::shares::list))
        .route(
            "/v1/share-groups/{group}",
            put(routes::shares::create)
                .get(routes::shares::describe)
                .delete(routes::shares::delete),
        )
        .route(
            "/v1/share-groups/{group}/fetch",
            post(routes::shares::fetch),
        )
        .route("/v1/share-groups/{group}/acks", post(routes::shares::acks))
        .route(
            "/v1/share-groups/{group}/dlq/replay",
            post(routes::shares::replay),
        )
        .route(
            "/v1/topics/{topic}/partitions/{partition}/offsets",
            get(routes::records::offsets),
        )
        .route(
            silt_agent::sequencer::COMMIT_PATH,
            post(routes::internal::commit),
        )
        .fallback(routes::meta::not_found)
        .method_not_allowed_fallback(routes::meta::method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            bodies::admit,
        ))
        .layer(axum::middleware::from_fn(origin::same_origin))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}
