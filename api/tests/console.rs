//! The console's routes and the operator views it reads: `/ui` (only when
//! enabled, self-contained by policy), `GET /v1/cluster`, `GET
//! /v1/metrics/history`, topic listing with detail and offsets by time.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::{Answer, send};
use serde_json::{Value, json};
use silt_agent::AgentConfig;
use silt_api::{AppState, ConsoleConfig, ProbeInfo, app};
use silt_metadata::Metadata;
use silt_metadata::values::JobStatus;
use tower::ServiceExt;

struct Fixture {
    state: AppState,
    md: Arc<Metadata>,
    _harness: common::Harness,
}

/// An agent serving `console`, sampling its metrics every 100 ms.
fn fixture(console: ConsoleConfig) -> Fixture {
    let h = common::harness(AgentConfig::default(), 1_000);
    Fixture {
        state: h
            .state
            .clone()
            .with_console(console, Duration::from_millis(100)),
        md: h.md.clone(),
        _harness: h,
    }
}

async fn call(s: &AppState, method: Method, uri: &str, body: Option<Value>) -> Answer {
    send(s, method, uri, body, &[]).await
}

async fn get(s: &AppState, uri: &str) -> Answer {
    call(s, Method::GET, uri, None).await
}

#[tokio::test]
async fn the_console_is_served_only_when_enabled_and_only_from_its_origin() {
    let off = fixture(ConsoleConfig::default());
    let a = get(&off.state, "/ui").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.json()["code"], "route_not_found");

    let on = fixture(ConsoleConfig {
        ui: true,
        probe: None,
    });
    for (path, kind) in [
        ("/ui", "text/html"),
        ("/ui/", "text/html"),
        ("/ui/topics/deep/link", "text/html"),
        ("/ui/lib.js", "text/javascript"),
        ("/ui/topics.js", "text/javascript"),
        ("/ui/groups.js", "text/javascript"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
    ] {
        let a = get(&on.state, path).await;
        assert_eq!(a.status, StatusCode::OK, "{path}");
        let ct = a.headers["content-type"].to_str().unwrap();
        assert!(ct.starts_with(kind), "{path}: {ct}");
        let csp = a.headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"));
        assert!(!a.body.is_empty(), "{path} is empty");
    }
    let page = String::from_utf8(get(&on.state, "/ui").await.body).unwrap();
    assert!(page.contains("/ui/app.js") && page.contains("/ui/app.css"));
    for asset in [
        "/ui",
        "/ui/lib.js",
        "/ui/topics.js",
        "/ui/groups.js",
        "/ui/app.js",
        "/ui/app.css",
    ] {
        let text = String::from_utf8(get(&on.state, asset).await.body).unwrap();
        assert!(
            !text.contains("http://") && !text.contains("https://"),
            "{asset} must not name another origin"
        );
    }
}

#[tokio::test]
async fn topics_list_with_partition_detail_and_offsets_by_time() {
    let f = fixture(ConsoleConfig::default());
    let s = &f.state;
    let a = call(
        s,
        Method::POST,
        "/v1/topics",
        Some(json!({"name": "t", "partitions": 2})),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let records: Vec<Value> = (0..3)
        .map(|i| json!({"value": format!("v{i}"), "timestamp": 10_000 + i * 1_000}))
        .collect();
    let a = call(
        s,
        Method::POST,
        "/v1/topics/t/partitions/1/records",
        Some(json!({ "records": records })),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);

    let plain = get(s, "/v1/topics").await.json();
    assert!(plain["topics"][0].get("partition_states").is_none());
    let detail = get(s, "/v1/topics?detail=true").await.json();
    let states = &detail["topics"][0]["partition_states"];
    assert_eq!(states[1]["high_watermark"], 3);
    assert_eq!(states[0]["retained_bytes"], 0);
    assert!(states[1]["retained_bytes"].as_u64().unwrap() > 0);

    let at = |ts: i64| format!("/v1/topics/t/partitions/1/offsets?timestamp={ts}");
    assert_eq!(get(s, &at(0)).await.json()["timestamp_offset"], 0);
    assert_eq!(get(s, &at(11_000)).await.json()["timestamp_offset"], 1);
    assert_eq!(get(s, &at(11_001)).await.json()["timestamp_offset"], 2);
    assert_eq!(
        get(s, &at(99_000)).await.json()["timestamp_offset"],
        Value::Null
    );
    let plain = get(s, "/v1/topics/t/partitions/1/offsets").await.json();
    assert!(plain.get("timestamp_offset").is_none());
    assert_eq!(plain["latest_offset"], 3);
}

#[tokio::test]
async fn the_cluster_view_shows_the_compactor_and_probe() {
    let f = fixture(ConsoleConfig {
        ui: false,
        probe: Some(ProbeInfo {
            topic: "canary".into(),
            interval_ms: 1_000,
        }),
    });
    let v = get(&f.state, "/v1/cluster").await.json();
    assert_eq!(v["agent"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["agent"]["shutting_down"], false);
    assert_eq!(v["agent"]["inflight_bytes"], 0);
    assert_eq!(v["compactor"]["lease"], Value::Null);
    assert_eq!(v["compactor"]["last_round"], Value::Null);
    assert_eq!(
        v["probe"],
        json!({"enabled": true, "topic": "canary", "interval_ms": 1000})
    );
    // Sequencing never joined here: nobody holds the lease.
    assert_eq!(v["sequencer"]["role"], "none");

    // A compactor holds its lease and published a round (at the test
    // clock's time, so the lease is live).
    assert!(
        f.md.acquire_lease("compactor", 42, 1_000, 60_000)
            .await
            .unwrap()
    );
    let status = JobStatus {
        holder: 42,
        finished_ms: 1_500,
        report: json!({"duration_ms": 7, "rounds": 3, "report": {"archive": {"lag_records": 5}}}),
    };
    assert!(
        f.md.put_job_status("compactor", &status, 1_000)
            .await
            .unwrap()
    );
    let v = get(&f.state, "/v1/cluster").await.json();
    assert_eq!(v["compactor"]["lease"]["holder"], "42");
    let round = &v["compactor"]["last_round"];
    assert_eq!(
        (
            round["holder"].as_str(),
            round["finished_ms"].as_i64(),
            round["rounds"].as_i64()
        ),
        (Some("42"), Some(1_500), Some(3))
    );
    assert_eq!(round["report"]["archive"]["lag_records"], 5);
}

#[tokio::test]
async fn metrics_history_samples_this_agents_metrics() {
    let f = fixture(ConsoleConfig::default());
    let s = &f.state;
    for bad in ["", "?names=", "?names=a%20b", "?other=x"] {
        let a = get(s, &format!("/v1/metrics/history{bad}")).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let many: Vec<String> = (0..21).map(|i| format!("m{i}")).collect();
    let a = get(s, &format!("/v1/metrics/history?names={}", many.join(","))).await;
    assert_eq!(a.json()["code"], "invalid_metric_names");

    let stop = tokio_util::sync::CancellationToken::new();
    let sampler = s.sample_history(stop.clone());
    let a = call(
        s,
        Method::POST,
        "/v1/topics",
        Some(json!({"name": "h", "partitions": 1})),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let a = call(
        s,
        Method::POST,
        "/v1/topics/h/records",
        Some(json!({"records": [{"value": "a"}, {"value": "b"}]})),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let uri = "/v1/metrics/history?names=silt_topic_records_total,silt_produce_records_total";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let v = loop {
        let v = get(s, uri).await.json();
        let produced = v["series"].as_array().unwrap().iter().find(|s| {
            s["name"] == "silt_topic_records_total"
                && s["labels"] == json!({"topic": "h", "op": "produce"})
        });
        if produced.is_some_and(|p| p["values"].as_array().unwrap().last() == Some(&json!(2.0))) {
            break v;
        }
        assert!(tokio::time::Instant::now() < deadline, "never sampled: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(v["interval_ms"], 100);
    let times = v["times"].as_array().unwrap();
    for series in v["series"].as_array().unwrap() {
        assert_eq!(series["values"].as_array().unwrap().len(), times.len());
    }
    stop.cancel();
    sampler.await.unwrap();
}

#[tokio::test]
async fn other_sites_cannot_change_anything_through_a_browser() {
    let f = fixture(ConsoleConfig::default());
    let post = |origin: Option<&'static str>, name: &'static str| {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri("/v1/topics")
            .header("host", "127.0.0.1:8080");
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        // No Content-Type: what a cross-site "simple" request can send.
        let body = serde_json::to_vec(&json!({"name": name, "partitions": 1})).unwrap();
        let app = app(f.state.clone());
        async move {
            let res = app
                .oneshot(req.body(Body::from(body)).unwrap())
                .await
                .unwrap();
            res.status()
        }
    };
    assert_eq!(
        post(Some("https://evil.example"), "a").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(post(Some("null"), "a").await, StatusCode::FORBIDDEN);
    assert_eq!(
        post(Some("http://127.0.0.1:9999"), "a").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get(&f.state, "/v1/topics/a").await.status,
        StatusCode::NOT_FOUND
    );
    // The console's own page, and clients that send no Origin.
    assert_eq!(
        post(Some("http://127.0.0.1:8080"), "b").await,
        StatusCode::CREATED
    );
    assert_eq!(post(None, "c").await, StatusCode::CREATED);
    // Reading is not refused: the answer is the browser's to withhold.
    let mut req = Request::builder().uri("/v1/topics");
    req = req.header("origin", "https://evil.example");
    let res = app(f.state.clone())
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}
