//! The Grafana dashboard and the Prometheus alert rules in `deploy/` parse,
//! and every query in them names a metric a live agent really exports (a
//! renamed metric must not silently blank a panel or mute an alert).

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Silt, tempdir};

const DASHBOARD: &str = include_str!("../../deploy/grafana/silt.json");
const ALERTS: &str = include_str!("../../deploy/prometheus/silt-alerts.yml");

/// Every `silt_…` metric name a PromQL expression mentions.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("silt_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        out.push(name);
    }
    out
}

/// The sample names of a Prometheus text exposition.
fn exported(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_and_alerts_name_only_exported_metrics() {
    // The queries, from both files.
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("dashboard JSON");
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for t in panel["targets"].as_array().expect("targets") {
            exprs.push(("dashboard", t["expr"].as_str().expect("expr").to_owned()));
        }
    }
    let mut alerts = 0;
    for line in ALERTS.lines().map(str::trim) {
        if line.starts_with("- alert:") {
            alerts += 1;
        }
        if let Some(e) = line.strip_prefix("expr:") {
            exprs.push(("alerts", e.trim().to_owned()));
        }
    }
    assert!(ALERTS.contains("groups:") && ALERTS.contains("rules:"));
    assert_eq!(
        alerts,
        exprs.iter().filter(|(f, _)| *f == "alerts").count(),
        "one expression per alert"
    );
    assert!(alerts >= 10 && exprs.len() > alerts + 10);

    // A live agent (with its compactor) that has done a bit of everything.
    let dir = tempdir();
    // With the in-agent canary, whose metrics the dashboard charts too.
    let server = Silt::dev(
        dir.path(),
        &[
            "--compactor-interval-secs",
            "1",
            "--probe",
            "true",
            "--probe-interval-ms",
            "200",
        ],
    );
    let c = server.client();
    c.create_topic("obs", 2).await;
    c.produce("obs", &json!([{"key": "a", "value": "1"}, {"value": "2"}]))
        .await;
    let joined = c
        .post(
            "/v1/consumer-groups/g/members",
            &json!({"topics": ["obs"], "auto_offset_reset": "earliest"}),
        )
        .await;
    assert_eq!(joined.status, 201, "{:?}", joined.body);
    let member = joined.body["member_id"].as_str().unwrap();
    let committed = c
        .post(
            "/v1/consumer-groups/g/offsets",
            &json!({"member_id": member, "generation": joined.body["generation"],
                    "offsets": [{"topic": "obs", "partition": 0, "offset": 0}]}),
        )
        .await;
    assert_eq!(committed.status, 204, "{:?}", committed.body);
    let created = c
        .send(
            c.http
                .put(format!("{}/v1/share-groups/q", c.base))
                .json(&json!({"topics": ["obs"]})),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let got = c
        .post("/v1/share-groups/q/fetch", &json!({"max_records": 2}))
        .await;
    let ids: Vec<Value> = got.body["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["delivery_id"].clone())
        .collect();
    assert_eq!(ids.len(), 2, "{:?}", got.body);
    c.post(
        "/v1/share-groups/q/acks",
        &json!({"accept": [ids[0]], "reject": [ids[1]]}),
    )
    .await;
    // Wait for a compactor round (its lease and lag gauges).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let names = loop {
        let text = reqwest::get(format!("{}/metrics", c.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let rounds = text
            .lines()
            .find_map(|l| l.strip_prefix("silt_compactor_rounds_total "))
            .and_then(|n| n.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        let probed = text.contains("silt_probe_e2e_seconds_bucket");
        if rounds > 0.0 && probed {
            break exported(&text);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no compactor round or canary record yet"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut missing = Vec::new();
    for (file, e) in &exprs {
        for name in metric_names(e) {
            if !names.contains(&name) {
                missing.push(format!("{file}: {name} in {e}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "not exported: {missing:#?}\nexported: {names:#?}"
    );
}
