//! Per-route request counts and latencies.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::AppState;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteOnly {
    method: String,
    route: String,
}

/// HTTP metrics.
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    requests: Family<RouteLabels, Counter>,
    seconds: Family<RouteOnly, Histogram>,
}

impl HttpMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self {
            requests: Family::default(),
            seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 18))
            }),
        };
        let r = registry.sub_registry_with_prefix("silt_http");
        r.register(
            "requests",
            "HTTP requests by route and status",
            m.requests.clone(),
        );
        r.register(
            "request_seconds",
            "HTTP request latency by route",
            m.seconds.clone(),
        );
        m
    }
}

pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    // Only the methods the API serves become label values: any other
    // (clients may send arbitrary tokens) is "other", so labels stay bounded.
    let method = match req.method().as_str() {
        m @ ("GET" | "POST" | "PUT" | "DELETE" | "HEAD") => m,
        _ => "other",
    }
    .to_owned();
    let start = Instant::now();
    let res = next.run(req).await;
    let m = &state.http;
    m.seconds
        .get_or_create(&RouteOnly {
            method: method.clone(),
            route: route.clone(),
        })
        .observe(start.elapsed().as_secs_f64());
    m.requests
        .get_or_create(&RouteLabels {
            method,
            route,
            status: res.status().as_u16(),
        })
        .inc();
    res
}
