//! The commit sequencer across real agent processes: one agent takes the
//! lease and commits for both; when it is SIGKILLed mid-load, the other
//! commits directly, then takes the lease over, and nothing acked is lost,
//! duplicated or reordered.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{Client, acked_offsets, cluster};

/// `silt_segment_commits_total{route=…}` on one agent.
async fn commits_by_route(c: &Client, route: &str) -> u64 {
    let text = c
        .http
        .get(format!("{}/metrics", c.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = format!("silt_segment_commits_total{{route=\"{route}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// Produces one batch; `None` if the agent did not answer (it was killed).
async fn try_produce(c: &Client, values: &[String]) -> Option<Vec<(u32, u64)>> {
    let records: Vec<Value> = values
        .iter()
        .map(|v| json!({"key": v, "value": v}))
        .collect();
    let res = c
        .http
        .post(format!("{}/v1/topics/seq/records", c.base))
        .json(&json!({ "records": records }))
        .send()
        .await
        .ok()?;
    if res.status() != 200 {
        return None;
    }
    Some(acked_offsets(&res.json().await.ok()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sequencer_commits_for_all_and_its_death_loses_nothing() {
    let mut cl = cluster();
    let clients: Vec<Client> = cl.agents.iter().map(|a| a.client()).collect();
    clients[0].create_topic("seq", 4).await;
    let mut acked: HashMap<(u32, u64), String> = HashMap::new();
    let mut produce = |n: usize, batch: usize, acks: Option<Vec<(u32, u64)>>| {
        for (j, at) in acks.into_iter().flatten().enumerate() {
            let value = format!("{n}-{batch}-{j}");
            assert!(acked.insert(at, value).is_none(), "{at:?} acked twice");
        }
    };
    // Until one agent commits as the sequencer and the other through it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut batch = 0;
    let sequencer = loop {
        for (n, c) in clients.iter().enumerate() {
            let values: Vec<String> = (0..20).map(|j| format!("{n}-{batch}-{j}")).collect();
            produce(n, batch, try_produce(c, &values).await);
        }
        batch += 1;
        let local = [
            commits_by_route(&clients[0], "local").await,
            commits_by_route(&clients[1], "local").await,
        ];
        let remote = [
            commits_by_route(&clients[0], "remote").await,
            commits_by_route(&clients[1], "remote").await,
        ];
        if let Some(s) = (0..2).find(|&s| local[s] > 0 && remote[1 - s] > 0) {
            assert_eq!((local[1 - s], remote[s]), (0, 0), "one sequencer at a time");
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "no sequencer: local {local:?}, remote {remote:?}"
        );
    };
    let survivor = 1 - sequencer;
    // Load on both; kill the sequencer mid-way; keep producing to the
    // survivor past the lease time (3 s), so it falls back, then takes over.
    let kill_at = Instant::now() + Duration::from_secs(1);
    let stop_at = kill_at + Duration::from_secs(6);
    let mut killed = false;
    while Instant::now() < stop_at {
        if !killed && Instant::now() >= kill_at {
            cl.agents[sequencer].kill();
            killed = true;
        }
        let order = [sequencer, survivor];
        let answers = futures::future::join_all(order.iter().map(|&n| {
            let values: Vec<String> = (0..20).map(|j| format!("{n}-{batch}-{j}")).collect();
            let c = clients[n].clone();
            async move { try_produce(&c, &values).await }
        }))
        .await;
        for (&n, acks) in order.iter().zip(answers) {
            if n == survivor {
                assert!(acks.is_some(), "the survivor kept answering");
            }
            produce(n, batch, acks);
        }
        batch += 1;
    }
    let c = &clients[survivor];
    assert!(
        commits_by_route(c, "local").await > 0,
        "the survivor took the sequencer's lease over"
    );
    // Every acked record where it was acked; offsets dense; nothing twice.
    let hwms = c.high_watermarks("seq").await;
    let mut seen = HashSet::new();
    let mut total = 0;
    for (p, &hwm) in hwms.iter().enumerate() {
        let records = c.read_all("seq", p as u32, 0, hwm).await;
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r["offset"].as_u64(), Some(i as u64), "dense offsets");
            let value = r["value"].as_str().unwrap().to_owned();
            if let Some(want) = acked.get(&(p as u32, i as u64)) {
                assert_eq!(&value, want, "partition {p} offset {i}");
            }
            assert!(seen.insert(value), "a record committed twice");
        }
        total += records.len();
    }
    assert!(total >= acked.len());
    assert!(acked.len() > 500, "only {} records acked", acked.len());
}
