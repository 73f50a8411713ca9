//! `silt bench --shares`: what queue semantics cost. One topic is filled
//! once; then, for 1, 8 and 32 workers, a share group accepts every record
//! (fetch, then accept what was fetched) and a consumer group of as many
//! members (at most one per partition) reads and commits the same records,
//! in the same run: acked records/s against consumed records/s, and the
//! metadata transactions per acked record (embedded agents only).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Context;
use serde_json::{Value, json};

use crate::bench::{BenchArgs, Target, ensure_topic, value_pool};
use crate::bench_groups::{group_phase, render, txn_runs};
use crate::client::Client;

/// Records each phase consumes.
const FILL_RECORDS: u64 = 50_000;

/// `workers` share-group workers accepting everything. Returns
/// (accepted, seconds).
async fn share_phase(client: &Client, topic: &str, workers: usize) -> anyhow::Result<(u64, f64)> {
    let group = format!("bench-share-{workers}-{:x}", rand::random::<u32>());
    let url = client.url(&format!("/v1/share-groups/{group}"));
    let spec = json!({"topics": [topic], "lease_ms": 60000, "max_in_flight": 10000,
                      "dlq_topic": format!("{topic}.dlq")});
    client.send(client.http().put(url).json(&spec)).await?;
    let accepted = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (client, group, accepted) = (client.clone(), group.clone(), accepted.clone());
        tasks.push(tokio::spawn(async move {
            while accepted.load(Ordering::Relaxed) < FILL_RECORDS {
                let v = client
                    .post(
                        &format!("/v1/share-groups/{group}/fetch"),
                        &json!({"max_records": 500, "wait_ms": 100}),
                    )
                    .await?;
                let ids: Vec<Value> = v["records"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| r["delivery_id"].clone())
                    .collect();
                if ids.is_empty() {
                    continue;
                }
                let out = client
                    .post(
                        &format!("/v1/share-groups/{group}/acks"),
                        &json!({ "accept": ids }),
                    )
                    .await?;
                accepted.fetch_add(out["applied"].as_u64().unwrap_or(0), Ordering::Relaxed);
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    let url = client.url(&format!("/v1/share-groups/{group}"));
    client.send(client.http().delete(url)).await?;
    Ok((accepted.load(Ordering::Relaxed), secs))
}

pub async fn run(a: BenchArgs) -> anyhow::Result<()> {
    let target = Target::start(&a).await?;
    let client = Client::new(&target.url);
    let topic = format!("{}-shares", a.topic);
    ensure_topic(&client, &topic, a.partitions).await?;
    let pool = value_pool(a.record_size)?;
    let (mut cursor, mut filled) = (0, 0);
    while filled < FILL_RECORDS {
        let n = (FILL_RECORDS - filled).min(1000) as usize;
        let body: Value =
            serde_json::from_str(&render(&pool, &mut cursor, n, a.record_size, None))?;
        client
            .post(&format!("/v1/topics/{topic}/records"), &body)
            .await
            .context("fill")?;
        filled += n as u64;
    }
    let mut rows = Vec::new();
    for workers in [1usize, 8, 32] {
        let members = workers.min(a.partitions as usize);
        eprintln!("{workers} share-group worker(s), then a consumer group of {members}");
        let txns = txn_runs(&target);
        let (acked, ss) = share_phase(&client, &topic, workers).await?;
        let share_txns = txn_runs(&target) - txns;
        let (gn, _, gs, _, _) = group_phase(&client, &topic, FILL_RECORDS, members).await?;
        let share_rate = acked as f64 / ss;
        let group_rate = gn as f64 / gs;
        rows.push(json!({
            "workers": workers,
            "share_acked_per_sec": share_rate,
            "group_members": members,
            "group_consumed_per_sec": group_rate,
            "share_vs_group": share_rate / group_rate,
            "metadata_txns_per_acked_record": target.metadata.as_ref().map(|_| share_txns as f64 / acked.max(1) as f64),
        }));
    }
    let result = json!({
        "config": {"record_size": a.record_size, "partitions": a.partitions, "records": FILL_RECORDS},
        "rows": rows,
    });
    target.stop().await;
    report(&result, a.json)
}

#[allow(clippy::print_stdout)]
fn report(r: &Value, as_json: bool) -> anyhow::Result<()> {
    if crate::bench::print_json(r, as_json)? {
        return Ok(());
    }
    let f = |v: &Value| crate::bench::number(v, 2);
    println!(
        "{:>8} {:>16} {:>8} {:>16} {:>8} {:>16}",
        "workers", "share acked/s", "members", "group records/s", "ratio", "txns/acked"
    );
    for row in r["rows"].as_array().into_iter().flatten() {
        println!(
            "{:>8} {:>16} {:>8} {:>16} {:>8} {:>16}",
            crate::bench::number(&row["workers"], 0),
            f(&row["share_acked_per_sec"]),
            crate::bench::number(&row["group_members"], 0),
            f(&row["group_consumed_per_sec"]),
            f(&row["share_vs_group"]),
            f(&row["metadata_txns_per_acked_record"])
        );
    }
    Ok(())
}
