//! The router, driven in-process with `oneshot`: no sockets, real agent,
//! real SQLite metadata, in-memory object store.
#![allow(clippy::unwrap_used)]

mod common;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use silt_agent::AgentConfig;
use silt_api::AppState;

/// A fresh agent (the harness keeps its data directory: keep it alive).
fn harness() -> common::Harness {
    common::harness(AgentConfig::default(), 1_000)
}

/// Creates a one-partition topic.
async fn create_topic(s: &AppState, name: &str) {
    let (st, _, _) = call(
        s,
        Method::POST,
        "/v1/topics",
        Some(json!({"name": name, "partitions": 1})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
}

async fn call(
    s: &AppState,
    method: Method,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, String, Vec<u8>) {
    let a = common::send(s, method, uri, body, &[]).await;
    (a.status, a.content_type(), a.body)
}

#[tokio::test]
async fn produce_fetch_offsets_round_trip() {
    let h = harness();
    let s = h.state.clone();
    let (st, _, _) = call(
        &s,
        Method::POST,
        "/v1/topics",
        Some(json!({"name": "t", "partitions": 1})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, _, body) = call(
        &s,
        Method::POST,
        "/v1/topics/t/records",
        Some(json!({"records": [{"value": "a"}, {"value": null}]})),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        v["offsets"],
        json!([{"partition": 0, "offset": 0}, {"partition": 0, "offset": 1}])
    );
    let (_, _, body) = call(&s, Method::GET, "/v1/topics/t/partitions/0/records", None).await;
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["records"][0]["value"], "a");
    assert_eq!(
        v["records"][1]["value"],
        Value::Null,
        "a null value is a tombstone, read back as null"
    );
    assert_eq!(v["records"][0]["timestamp"], 1_000, "the injected clock");
    let (_, _, body) = call(&s, Method::GET, "/v1/topics/t/partitions/0/offsets", None).await;
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!({"earliest_offset": 0, "latest_offset": 2})
    );
}

#[tokio::test]
async fn health_and_metrics() {
    let h = harness();
    let s = h.state.clone();
    let (st, _, _) = call(&s, Method::GET, "/healthz", None).await;
    assert_eq!(st, StatusCode::OK);
    call(
        &s,
        Method::POST,
        "/v1/topics",
        Some(json!({"name": "m", "partitions": 1})),
    )
    .await;
    call(
        &s,
        Method::POST,
        "/v1/topics/m/records",
        Some(json!({"records": [{"value": "x"}]})),
    )
    .await;
    let (st, ct, body) = call(&s, Method::GET, "/metrics", None).await;
    assert_eq!(st, StatusCode::OK);
    assert!(ct.starts_with("application/openmetrics-text"));
    let text = String::from_utf8(body).unwrap();
    assert!(text.contains("silt_produce_records_total 1"), "{text}");
    assert!(text.contains("silt_http_requests_total{method=\"POST\",route=\"/v1/topics/{topic}/records\",status=\"200\"} 1"), "{text}");
    s.agent.shutdown().await;
    let (st, _, _) = call(&s, Method::GET, "/healthz", None).await;
    assert_eq!(
        st,
        StatusCode::SERVICE_UNAVAILABLE,
        "a draining agent reports itself unready"
    );
    let (st, ct, _) = call(
        &s,
        Method::POST,
        "/v1/topics/m/records",
        Some(json!({"records": [{"value": "x"}]})),
    )
    .await;
    assert_eq!(
        (st, ct.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "application/problem+json")
    );
}

/// Every operation the OpenAPI document declares is served by the router
/// (and answers something other than "no such route").
#[tokio::test]
async fn openapi_document_matches_the_router() {
    let h = harness();
    let s = h.state.clone();
    let (st, _, body) = call(&s, Method::GET, "/v1/openapi.json", None).await;
    assert_eq!(st, StatusCode::OK);
    let doc: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let uri = path
            .replace("{topic}", "nope")
            .replace("{partition}", "0")
            .replace("{group}", "g")
            .replace("{member}", "m");
        for method in ["get", "post", "put", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            let body = matches!(method, "post" | "put").then(|| json!({}));
            let (st, _, body) = call(
                &s,
                Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(),
                &uri,
                body,
            )
            .await;
            let code = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["code"].as_str().map(String::from));
            assert!(
                !matches!(
                    code.as_deref(),
                    Some("route_not_found" | "method_not_allowed")
                ),
                "{method} {path}: {st} {code:?}"
            );
            operations += 1;
        }
    }
    assert_eq!(operations, 33);
}

/// Every problem code the API can answer is listed in the OpenAPI
/// document's enum, and the enum lists no code the API never answers.
#[test]
fn every_problem_code_is_documented() {
    let doc: Value = serde_json::from_str(include_str!("../src/openapi.json")).unwrap();
    let documented: std::collections::BTreeSet<String> =
        doc["components"]["schemas"]["Problem"]["properties"]["code"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
    let mut used = std::collections::BTreeSet::new();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
    let mut stack = vec![std::path::PathBuf::from(dir)];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                let src = std::fs::read_to_string(&path).unwrap();
                // The first string literal after a problem constructor is its code.
                for marker in ["Problem::new(", "bad_request(", "conflict("] {
                    for (at, _) in src.match_indices(marker) {
                        let rest = &src[at + marker.len()..];
                        if let Some(code) = rest.split('"').nth(1) {
                            if code
                                .chars()
                                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                            {
                                used.insert(code.to_owned());
                            }
                        }
                    }
                }
            }
        }
    }
    let undocumented: Vec<_> = used.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "answered but not documented: {undocumented:?}"
    );
    let unused: Vec<_> = documented.difference(&used).collect();
    assert!(
        unused.is_empty(),
        "documented but never answered: {unused:?}"
    );
}

/// `Last-Event-ID` must name a record's offset: garbage or the last
/// possible offset is a 400, never an overflow or a silent replay.
#[tokio::test]
async fn bad_last_event_ids_are_refused() {
    let h = harness();
    let s = h.state.clone();
    create_topic(&s, "t").await;
    for id in ["abc", "-1", "18446744073709551615"] {
        let a = common::send(
            &s,
            Method::GET,
            "/v1/topics/t/partitions/0/records",
            None,
            &[("accept", "text/event-stream"), ("last-event-id", id)],
        )
        .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{id}");
        assert_eq!(a.json()["code"], "invalid_last_event_id", "{id}");
    }
}

/// A non-UTF-8 record in a default (utf8) fetch: the records before it
/// arrive; fetched first, it is a 422 naming its offset, and a base64 fetch
/// gets the consumer past it.
#[tokio::test]
async fn a_binary_record_does_not_block_a_utf8_consumer() {
    let h = harness();
    let s = h.state.clone();
    create_topic(&s, "b").await;
    // "YQ==" is "a"; "/w==" is the byte 0xFF, never valid UTF-8.
    let (st, _, _) = call(
        &s,
        Method::POST,
        "/v1/topics/b/records?encoding=base64",
        Some(json!({"records": [{"value": "YQ=="}, {"value": "/w=="}, {"value": "YQ=="}]})),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _, body) = call(
        &s,
        Method::GET,
        "/v1/topics/b/partitions/0/records?offset=0",
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        v["records"].as_array().unwrap().len(),
        1,
        "the record before it"
    );
    assert_eq!(v["next_offset"], 1);
    let (st, _, body) = call(
        &s,
        Method::GET,
        "/v1/topics/b/partitions/0/records?offset=1",
        None,
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let p: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (p["code"].as_str(), p["offset"].as_u64()),
        (Some("not_utf8"), Some(1))
    );
    let (st, _, body) = call(
        &s,
        Method::GET,
        "/v1/topics/b/partitions/0/records?offset=1&max_records=1&encoding=base64",
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["records"][0]["value"], "/w==");
    assert_eq!(v["next_offset"], 2, "past it");
}

/// Arbitrary HTTP methods never become metric label values.
#[tokio::test]
async fn unknown_methods_share_one_metrics_label() {
    let h = harness();
    let s = h.state.clone();
    for m in ["FOO", "BAR1", "PATCH"] {
        let (st, _, _) = call(
            &s,
            Method::from_bytes(m.as_bytes()).unwrap(),
            "/v1/topics",
            None,
        )
        .await;
        assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED, "{m}");
    }
    let (_, _, body) = call(&s, Method::GET, "/metrics", None).await;
    let text = String::from_utf8(body).unwrap();
    for m in ["FOO", "BAR1", "PATCH"] {
        assert!(
            !text.contains(&format!("method=\"{m}\"")),
            "{m} became a label"
        );
    }
    assert!(text.contains("method=\"other\""), "{text}");
}

/// A body refused before it was read whole leaves the rest unread on the
/// connection: the answer says `Connection: close`, so a client does not
/// send its next request down a connection that is closing.
#[tokio::test]
async fn a_refused_body_closes_the_connection() {
    let h = harness();
    let s = h.state.clone();
    create_topic(&s, "t").await;
    let big = json!({"records": [{"value": "x".repeat(9 << 20)}]});
    let a = common::send(&s, Method::POST, "/v1/topics/t/records", Some(big), &[]).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(a.json()["code"], "payload_too_large");
    assert_eq!(a.headers["connection"], "close");
    // An accepted request keeps its connection.
    let ok = json!({"records": [{"value": "x"}]});
    let a = common::send(&s, Method::POST, "/v1/topics/t/records", Some(ok), &[]).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.headers.get("connection").is_none());
}
