//! Consumer groups, idempotent producers, atomic produce and transactions
//! through the router, with an injected clock (lease expiry without sleeping).
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use silt_agent::{AgentConfig, TestEnv};
use silt_api::AppState;

struct Harness {
    state: AppState,
    env: Arc<TestEnv>,
    _inner: common::Harness,
}

fn harness() -> Harness {
    let config = AgentConfig {
        flush_interval: std::time::Duration::from_millis(2),
        ..AgentConfig::default()
    };
    let inner = common::harness(config, 1_000_000);
    Harness {
        state: inner.state.clone(),
        env: inner.env.clone(),
        _inner: inner,
    }
}

impl Harness {
    async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call_with(method, uri, body, &[]).await
    }

    async fn call_with(
        &self,
        method: Method,
        uri: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let a = common::send(&self.state, method, uri, body, headers).await;
        (a.status, a.json())
    }

    async fn topic(&self, name: &str, partitions: u32) {
        let (st, _) = self
            .call(
                Method::POST,
                "/v1/topics",
                Some(json!({"name": name, "partitions": partitions})),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED);
    }

    async fn join(&self, group: &str, topic: &str) -> (String, u64) {
        let (st, v) = self
            .call(
                Method::POST,
                &format!("/v1/consumer-groups/{group}/members"),
                Some(json!({"topics": [topic], "session_timeout_ms": 3000, "auto_offset_reset": "earliest"})),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        (
            v["member_id"].as_str().unwrap().to_owned(),
            v["generation"].as_u64().unwrap(),
        )
    }

    /// Heartbeats until the member is at the current generation.
    async fn sync(&self, group: &str, member: &str) -> (u64, Vec<u64>) {
        let mut generation = 0;
        for _ in 0..5 {
            let (st, v) = self
                .call(
                    Method::PUT,
                    &format!("/v1/consumer-groups/{group}/members/{member}"),
                    Some(json!({"generation": generation})),
                )
                .await;
            match st {
                StatusCode::OK => {
                    let parts = v["assignments"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|a| a["partition"].as_u64().unwrap())
                        .collect();
                    return (generation, parts);
                }
                StatusCode::CONFLICT => {
                    assert_eq!(v["code"], "rebalance_in_progress", "{v}");
                    generation = v["generation"].as_u64().unwrap();
                }
                other => panic!("heartbeat answered {other}: {v}"),
            }
        }
        panic!("never synced");
    }
}

#[tokio::test]
async fn members_share_partitions_and_zombies_are_fenced() {
    let h = harness();
    h.topic("events", 4).await;
    let values: Vec<Value> = (0..40)
        .map(|i| json!({"key": format!("k{i}"), "value": format!("v{i}")}))
        .collect();
    let (st, _) = h
        .call(
            Method::POST,
            "/v1/topics/events/records",
            Some(json!({ "records": values })),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (a, _) = h.join("g", "events").await;
    let (b, _) = h.join("g", "events").await;
    let (gen_a, parts_a) = h.sync("g", &a).await;
    let (gen_b, parts_b) = h.sync("g", &b).await;
    assert_eq!(gen_a, gen_b);
    assert_eq!(parts_a.len() + parts_b.len(), 4);
    assert!(parts_a.iter().all(|p| !parts_b.contains(p)));

    // a reads its partitions through a cursor, and commits what it read.
    let uri =
        format!("/v1/consumer-groups/g/members/{a}/records?generation={gen_a}&max_records=1000");
    let (st, v) = h.call(Method::GET, &uri, None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let recs = v["records"].as_array().unwrap();
    assert!(!recs.is_empty());
    assert!(
        recs.iter()
            .all(|r| parts_a.contains(&r["partition"].as_u64().unwrap()))
    );
    let (st, again) = h
        .call(
            Method::GET,
            &format!("{uri}&cursor={}", v["next_cursor"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        again["records"].as_array().unwrap().is_empty(),
        "the cursor moved past them"
    );
    let offsets: Vec<Value> = parts_a
        .iter()
        .map(|&p| {
            let last = recs
                .iter()
                .filter(|r| r["partition"] == p)
                .map(|r| r["offset"].as_u64().unwrap())
                .max()
                .unwrap();
            json!({"topic": "events", "partition": p, "offset": last + 1})
        })
        .collect();
    let (st, v) = h
        .call(
            Method::POST,
            "/v1/consumer-groups/g/offsets",
            Some(json!({"member_id": a, "generation": gen_a, "offsets": offsets})),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{v}");
    // Committing b's partition as a is refused.
    let (st, v) = h
        .call(
            Method::POST,
            "/v1/consumer-groups/g/offsets",
            Some(json!({"member_id": a, "generation": gen_a,
                        "offsets": [{"topic": "events", "partition": parts_b[0], "offset": 1}]})),
        )
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::CONFLICT, Some("not_assigned"))
    );

    // a pauses past its lease; b keeps heartbeating and takes everything.
    h.env.advance(2_000);
    h.sync("g", &b).await;
    h.env.advance(2_000);
    let (gen_b2, parts_b2) = h.sync("g", &b).await;
    assert!(gen_b2 > gen_b);
    assert_eq!(parts_b2.len(), 4);
    // The zombie can neither commit nor fetch.
    let (st, v) = h
        .call(
            Method::POST,
            "/v1/consumer-groups/g/offsets",
            Some(json!({"member_id": a, "generation": gen_a, "offsets": offsets})),
        )
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown_member"))
    );
    let (st, _) = h.call(Method::GET, &uri, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // b starts a's former partitions at a's committed offsets: nothing twice.
    let uri_b =
        format!("/v1/consumer-groups/g/members/{b}/records?generation={gen_b2}&max_records=1000");
    let (_, v) = h.call(Method::GET, &uri_b, None).await;
    let n = v["records"].as_array().unwrap().len();
    assert_eq!(n, 40 - recs.len());
    let (st, v) = h.call(Method::GET, "/v1/consumer-groups/g", None).await;
    assert_eq!(st, StatusCode::OK);
    let live: Vec<_> = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["live"] == true)
        .collect();
    assert_eq!(live.len(), 1, "{v}");
    assert_eq!(v["state"], "stable");
    let lagging: u64 = v["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["lag"].as_u64())
        .sum();
    assert_eq!(lagging, 0, "a's partitions were fully committed: {v}");
    let (_, list) = h.call(Method::GET, "/v1/consumer-groups", None).await;
    assert_eq!(list["groups"][0]["members"], 1);
}

#[tokio::test]
async fn idempotent_producers_and_keys_deduplicate() {
    let h = harness();
    h.topic("t", 3).await;
    let (st, p) = h.call(Method::POST, "/v1/producers", None).await;
    assert_eq!(st, StatusCode::CREATED);
    let (id, epoch) = (p["producer_id"].clone(), p["epoch"].clone());
    let body = |seq: u64| {
        json!({"records": [{"value": "a"}, {"key": "k", "value": "b"}],
               "producer": {"id": id, "epoch": epoch, "sequence": seq}})
    };
    let (st, first) = h
        .call(Method::POST, "/v1/topics/t/records", Some(body(0)))
        .await;
    assert_eq!(st, StatusCode::OK, "{first}");
    assert!(first.get("duplicate").is_none());
    let (_, retry) = h
        .call(Method::POST, "/v1/topics/t/records", Some(body(0)))
        .await;
    assert_eq!(retry["duplicate"], true);
    assert_eq!(retry["offsets"], first["offsets"]);
    let (st, gap) = h
        .call(Method::POST, "/v1/topics/t/records", Some(body(5)))
        .await;
    assert_eq!(
        (st, gap["code"].as_str()),
        (StatusCode::CONFLICT, Some("out_of_order_sequence"))
    );
    assert_eq!(gap["expected_sequence"], 1);
    let total: u64 = {
        let (_, d) = h.call(Method::GET, "/v1/topics/t", None).await;
        d["partition_states"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["high_watermark"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(total, 2, "the retry wrote nothing");
    // Named producers fence their earlier incarnations.
    let (_, a) = h
        .call(Method::POST, "/v1/producers", Some(json!({"name": "etl"})))
        .await;
    let (_, b) = h
        .call(Method::POST, "/v1/producers", Some(json!({"name": "etl"})))
        .await;
    assert_eq!(a["producer_id"], b["producer_id"]);
    let (st, v) = h
        .call(
            Method::POST,
            "/v1/topics/t/records",
            Some(json!({"records": [{"value": "z"}],
                        "producer": {"id": a["producer_id"], "epoch": a["epoch"], "sequence": 0}})),
        )
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::CONFLICT, Some("producer_fenced"))
    );

    // Idempotency-Key: same body, same answer; another body, refused.
    let key = [("idempotency-key", "order-1")];
    let rec = json!({"records": [{"value": "once"}]});
    let (_, k1) = h
        .call_with(
            Method::POST,
            "/v1/topics/t/records",
            Some(rec.clone()),
            &key,
        )
        .await;
    let (_, k2) = h
        .call_with(Method::POST, "/v1/topics/t/records", Some(rec), &key)
        .await;
    assert_eq!(k2["duplicate"], true);
    assert_eq!(k1["offsets"], k2["offsets"]);
    let (st, v) = h
        .call_with(
            Method::POST,
            "/v1/topics/t/records",
            Some(json!({"records": [{"value": "other"}]})),
            &key,
        )
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("idempotency_key_reused")
        )
    );
}

#[tokio::test]
async fn multi_topic_produce_is_atomic_and_transactions_fence() {
    let h = harness();
    h.topic("a", 1).await;
    h.topic("b", 2).await;
    let (st, v) = h
        .call(
            Method::POST,
            "/v1/records",
            Some(json!({"records": [
                {"topic": "a", "value": "1"}, {"topic": "b", "key": "x", "value": "2"},
                {"topic": "a", "value": "3"}]})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let offs = v["offsets"].as_array().unwrap();
    assert_eq!(offs[0], json!({"topic": "a", "partition": 0, "offset": 0}));
    assert_eq!(offs[2], json!({"topic": "a", "partition": 0, "offset": 1}));
    assert_eq!(offs[1]["topic"], "b");
    // One unknown topic: nothing of the request is written.
    let (st, v) = h
        .call(
            Method::POST,
            "/v1/records",
            Some(
                json!({"records": [{"topic": "a", "value": "4"}, {"topic": "nope", "value": "5"}]}),
            ),
        )
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("topic_not_found"))
    );
    let (_, d) = h.call(Method::GET, "/v1/topics/a", None).await;
    assert_eq!(d["partition_states"][0]["high_watermark"], 2);

    // A transaction: output records and input offsets together.
    let (m, _) = h.join("etl", "a").await;
    let (generation, _) = h.sync("etl", &m).await;
    let txn = |generation: u64, offset: u64| {
        json!({"produce": [{"topic": "b", "value": "out"}],
               "commit": {"group": "etl", "member_id": m, "generation": generation,
                          "offsets": [{"topic": "a", "partition": 0, "offset": offset}]}})
    };
    let (st, v) = h
        .call(Method::POST, "/v1/transactions", Some(txn(generation, 2)))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = h
        .call(
            Method::POST,
            "/v1/transactions",
            Some(txn(generation + 3, 9)),
        )
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::CONFLICT, Some("stale_generation"))
    );
    let (_, o) = h
        .call(Method::GET, "/v1/consumer-groups/etl/offsets?topic=a", None)
        .await;
    assert_eq!(o["offsets"][0]["committed_offset"], 2);
    let (_, d) = h.call(Method::GET, "/v1/topics/b", None).await;
    let total: u64 = d["partition_states"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["high_watermark"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 2, "the fenced transaction's record is invisible");
}

/// A record that is not UTF-8 stops only its own partition in a text
/// (default) group fetch: the records before it, and the other partitions',
/// are delivered, `stopped_at` names it, and the next fetch starts at it
/// (an empty answer naming it again, with a cursor that moves on to the
/// other partitions); base64 reads it.
#[tokio::test]
async fn a_record_that_is_not_utf8_stops_only_its_partition() {
    let h = harness();
    h.topic("mixed", 2).await;
    let produce = |p: u32, value: &str, enc: &str| {
        let uri = format!("/v1/topics/mixed/partitions/{p}/records?encoding={enc}");
        let body = json!({"records": [{"value": value}]});
        (uri, body)
    };
    for (p, value, enc) in [
        (0, "a0", "utf8"),
        (0, "/w==", "base64"), // 0xff: not UTF-8
        (0, "a2", "utf8"),
        (1, "b0", "utf8"),
        (1, "b1", "utf8"),
    ] {
        let (uri, body) = produce(p, value, enc);
        let (st, v) = h.call(Method::POST, &uri, Some(body)).await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    let (m, _) = h.join("u", "mixed").await;
    let (generation, _) = h.sync("u", &m).await;
    let uri = format!("/v1/consumer-groups/u/members/{m}/records?generation={generation}");
    let (st, v) = h.call(Method::GET, &uri, None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let mut got: Vec<(u64, u64)> = v["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["partition"].as_u64().unwrap(),
                r["offset"].as_u64().unwrap(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(got, [(0, 0), (1, 0), (1, 1)]);
    assert_eq!(
        v["stopped_at"],
        json!([{"topic": "mixed", "partition": 0, "offset": 1, "code": "not_utf8"}])
    );
    let next = format!("{uri}&cursor={}", v["next_cursor"].as_str().unwrap());
    let (st, v) = h.call(Method::GET, &next, None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v["records"].as_array().unwrap().is_empty());
    assert_eq!(v["stopped_at"][0]["offset"], 1);
    assert!(v["next_cursor"].is_string());
    let (st, v) = h
        .call(Method::GET, &format!("{next}&encoding=base64"), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["records"][0]["value"], "/w==");
    assert_eq!(v["records"].as_array().unwrap().len(), 2, "then a2: {v}");
}
