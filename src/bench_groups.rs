//! `silt bench --groups`: what consumer groups and idempotence cost, each
//! against its plain peer measured in the same run on the same data:
//! * group consumption with 1, 3 and 6 members against as many plain
//!   partition readers (records/s, MB/s), and group commit latency;
//! * idempotent produce against plain produce (the cost of deduplication);
//! * metadata transactions per committed batch (embedded agents only).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::bench::{BenchArgs, Target, ensure_topic, histogram, value_pool};
use crate::client::Client;

/// Records the consumption phases read (produced once, read five times).
const FILL_RECORDS: u64 = 200_000;

pub(crate) fn txn_runs(t: &Target) -> u64 {
    t.metadata.as_ref().map_or(0, |md| {
        md.transaction_stats().iter().map(|(_, s)| s.runs).sum()
    })
}

/// One request body: `batch` records of `size` bytes from the pool, with an
/// idempotent producer's sequence if given.
pub(crate) fn render(
    pool: &str,
    cursor: &mut usize,
    batch: usize,
    size: usize,
    producer: Option<(u64, u64, u64)>,
) -> String {
    let mut body = String::with_capacity(batch * (size + 32) + 96);
    body.push_str("{\"records\":[");
    for i in 0..batch {
        if i > 0 {
            body.push(',');
        }
        *cursor = (*cursor + 104_729) % (4 << 20);
        body.push_str("{\"value\":\"");
        body.push_str(&pool[*cursor..*cursor + size]);
        body.push_str("\"}");
    }
    body.push(']');
    if let Some((id, epoch, seq)) = producer {
        body.push_str(&format!(
            ",\"producer\":{{\"id\":{id},\"epoch\":{epoch},\"sequence\":{seq}}}"
        ));
    }
    body.push('}');
    body
}

/// Closed-loop produce for `secs` with `workers` producers; idempotent
/// producers each have their own id. Returns (records/s, p99 ms).
async fn produce_phase(
    client: &Client,
    topic: &str,
    a: &BenchArgs,
    pool: &Arc<str>,
    idempotent: bool,
) -> anyhow::Result<(f64, f64)> {
    let records = Arc::new(AtomicU64::new(0));
    let latency = Arc::new(Mutex::new(histogram()));
    let deadline = Instant::now() + Duration::from_secs(a.duration_secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..a.concurrency {
        let producer = if idempotent {
            let p = client.post("/v1/producers", &json!({})).await?;
            Some((
                p["producer_id"].as_u64().unwrap_or(0),
                p["epoch"].as_u64().unwrap_or(0),
            ))
        } else {
            None
        };
        let (http, url) = (
            reqwest::Client::new(),
            client.url(&format!("/v1/topics/{topic}/records")),
        );
        let (pool, records, latency) = (pool.clone(), records.clone(), latency.clone());
        let (batch, size) = (a.batch, a.record_size);
        tasks.push(tokio::spawn(async move {
            let mut cursor = w * 7919;
            let mut seq = 0;
            while Instant::now() < deadline {
                let body = render(
                    &pool,
                    &mut cursor,
                    batch,
                    size,
                    producer.map(|(id, e)| (id, e, seq)),
                );
                let t = Instant::now();
                let ok = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    let _ = latency.lock().record(t.elapsed().as_micros().max(1) as u64);
                    records.fetch_add(batch as u64, Ordering::Relaxed);
                    seq += 1;
                } else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let rate = records.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    let p99 = latency.lock().value_at_quantile(0.99) as f64 / 1e3;
    Ok((rate, p99))
}

/// `readers` plain readers, partitions dealt round-robin, each reading its
/// partitions to the end. Returns (records, bytes, seconds).
async fn plain_phase(
    client: &Client,
    topic: &str,
    ends: &[u64],
    readers: usize,
) -> anyhow::Result<(u64, u64, f64)> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for r in 0..readers {
        let (client, topic) = (client.clone(), topic.to_owned());
        let mine: Vec<(usize, u64)> = ends
            .iter()
            .copied()
            .enumerate()
            .skip(r)
            .step_by(readers)
            .collect();
        tasks.push(tokio::spawn(async move {
            let (mut n, mut bytes) = (0u64, 0u64);
            for (p, end) in mine {
                let mut next = 0;
                while next < end {
                    let v = client
                        .get(&format!("/v1/topics/{topic}/partitions/{p}/records?offset={next}&max_records=2000&max_bytes=4194304"))
                        .await?;
                    for rec in v["records"].as_array().into_iter().flatten() {
                        n += 1;
                        bytes += rec["value"].as_str().map_or(0, str::len) as u64;
                    }
                    next = v["next_offset"].as_u64().unwrap_or(end);
                }
            }
            Ok::<_, anyhow::Error>((n, bytes))
        }));
    }
    let (mut n, mut bytes) = (0, 0);
    for t in tasks {
        let (a, b) = t.await??;
        n += a;
        bytes += b;
    }
    Ok((n, bytes, started.elapsed().as_secs_f64()))
}

/// `members` group members consuming everything, committing after every
/// fetch. Returns (records, bytes, seconds, commit latency, commits).
pub(crate) async fn group_phase(
    client: &Client,
    topic: &str,
    total: u64,
    members: usize,
) -> anyhow::Result<(u64, u64, f64, Histogram<u64>, u64)> {
    let group = format!("bench-{members}-{:x}", rand::random::<u32>());
    let consumed = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let commits = Arc::new(Mutex::new(histogram()));
    let mut joined = Vec::new();
    for _ in 0..members {
        let v = client
            .post(
                &format!("/v1/consumer-groups/{group}/members"),
                &json!({"topics": [topic], "auto_offset_reset": "earliest", "session_timeout_ms": 30000}),
            )
            .await?;
        joined.push(v["member_id"].as_str().unwrap_or_default().to_owned());
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for id in joined {
        let (client, group) = (client.clone(), group.clone());
        let (consumed, bytes, commits) = (consumed.clone(), bytes.clone(), commits.clone());
        tasks.push(tokio::spawn(async move {
            let mut generation = 0u64;
            let mut cursor: Option<String> = None;
            while consumed.load(Ordering::Relaxed) < total {
                let mut path = format!(
                    "/v1/consumer-groups/{group}/members/{id}/records?generation={generation}&max_records=2000&max_bytes=4194304&wait_ms=100"
                );
                if let Some(c) = &cursor {
                    path.push_str(&format!("&cursor={c}"));
                }
                let (status, v) = client.exchange(client.http().get(client.url(&path))).await?;
                if status.as_u16() != 200 {
                    // Not yet at the current generation: heartbeat to learn it.
                    let url = client.url(&format!("/v1/consumer-groups/{group}/members/{id}"));
                    let (_, hb) = client.exchange(client.http().put(url).json(&json!({"generation": generation}))).await?;
                    generation = hb["generation"].as_u64().unwrap_or(generation);
                    cursor = None;
                    continue;
                }
                cursor = v["next_cursor"].as_str().map(str::to_owned);
                let records = v["records"].as_array().cloned().unwrap_or_default();
                if records.is_empty() {
                    continue;
                }
                let mut last = std::collections::BTreeMap::new();
                for r in &records {
                    bytes.fetch_add(r["value"].as_str().map_or(0, str::len) as u64, Ordering::Relaxed);
                    last.insert(r["partition"].as_u64().unwrap_or(0), r["offset"].as_u64().unwrap_or(0));
                }
                consumed.fetch_add(records.len() as u64, Ordering::Relaxed);
                let offsets: Vec<Value> = last
                    .into_iter()
                    .map(|(p, o)| json!({"topic": topic_of(&records), "partition": p, "offset": o + 1}))
                    .collect();
                let t = Instant::now();
                let url = client.url(&format!("/v1/consumer-groups/{group}/offsets"));
                let body = json!({"member_id": id, "generation": generation, "offsets": offsets});
                let (status, _) = client.exchange(client.http().post(url).json(&body)).await?;
                if status.is_success() {
                    let _ = commits.lock().record(t.elapsed().as_micros().max(1) as u64);
                }
            }
            let url = client.url(&format!("/v1/consumer-groups/{group}/members/{id}"));
            let _ = client.exchange(client.http().delete(url)).await;
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    let h = commits.lock().clone();
    let n = h.len();
    Ok((
        consumed.load(Ordering::Relaxed),
        bytes.load(Ordering::Relaxed),
        secs,
        h,
        n,
    ))
}

fn topic_of(records: &[Value]) -> String {
    records
        .first()
        .and_then(|r| r["topic"].as_str())
        .unwrap_or_default()
        .to_owned()
}

pub async fn run(a: BenchArgs) -> anyhow::Result<()> {
    let target = Target::start(&a).await?;
    let client = Client::new(&target.url);
    let topic = format!("{}-groups", a.topic);
    ensure_topic(&client, &topic, a.partitions).await?;
    let pool = value_pool(a.record_size)?;

    eprintln!(
        "produce: plain, then idempotent ({} s each)",
        a.duration_secs
    );
    let txns = txn_runs(&target);
    let (plain_rate, plain_p99) = produce_phase(&client, &topic, &a, &pool, false).await?;
    let plain_txns = txn_runs(&target) - txns;
    let txns = txn_runs(&target);
    let (idem_rate, idem_p99) = produce_phase(&client, &topic, &a, &pool, true).await?;
    let idem_txns = txn_runs(&target) - txns;

    // A fresh topic holding exactly FILL_RECORDS for the consumption phases.
    let read_topic = format!("{}-groups-read", a.topic);
    ensure_topic(&client, &read_topic, a.partitions).await?;
    let mut cursor = 0;
    let mut filled = 0;
    while filled < FILL_RECORDS {
        let n = (FILL_RECORDS - filled).min(1000) as usize;
        let body: Value =
            serde_json::from_str(&render(&pool, &mut cursor, n, a.record_size, None))?;
        client
            .post(&format!("/v1/topics/{read_topic}/records"), &body)
            .await
            .context("fill")?;
        filled += n as u64;
    }
    let ends = crate::bench::hwms(&client, &read_topic).await?;
    let mut rows = Vec::new();
    for members in [1usize, 3, 6] {
        eprintln!("consume: {members} plain reader(s), then a group of {members}");
        let (pn, pb, ps) = plain_phase(&client, &read_topic, &ends, members).await?;
        let txns = txn_runs(&target);
        let (gn, gb, gs, commit, commits) =
            group_phase(&client, &read_topic, FILL_RECORDS, members).await?;
        let group_txns = txn_runs(&target) - txns;
        rows.push(json!({
            "members": members,
            "plain": {"records_per_sec": pn as f64 / ps, "mb_per_sec": pb as f64 / ps / 1e6},
            "group": {"records_per_sec": gn as f64 / gs, "mb_per_sec": gb as f64 / gs / 1e6,
                      "commit_latency_ms": {"p50": commit.value_at_quantile(0.5) as f64 / 1e3,
                                            "p99": commit.value_at_quantile(0.99) as f64 / 1e3},
                      "commits": commits,
                      "metadata_txns_per_commit": target.metadata.as_ref().map(|_| group_txns as f64 / commits.max(1) as f64)},
            "group_vs_plain": (gn as f64 / gs) / (pn as f64 / ps),
        }));
    }
    let per_request = |txns: u64, rate: f64| {
        target
            .metadata
            .as_ref()
            .map(|_| txns as f64 / (rate * a.duration_secs as f64 / a.batch as f64).max(1.0))
    };
    let result = json!({
        "config": {"record_size": a.record_size, "batch": a.batch, "concurrency": a.concurrency,
                   "partitions": a.partitions, "duration_secs": a.duration_secs, "consumed_records": FILL_RECORDS},
        "produce": {
            "plain": {"records_per_sec": plain_rate, "p99_ms": plain_p99, "metadata_txns_per_request": per_request(plain_txns, plain_rate)},
            "idempotent": {"records_per_sec": idem_rate, "p99_ms": idem_p99, "metadata_txns_per_request": per_request(idem_txns, idem_rate)},
            "idempotent_vs_plain": idem_rate / plain_rate,
        },
        "consume": rows,
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
    let p = &r["produce"];
    println!(
        "{:<44} {:>12} {:>12} {:>8}",
        "produce", "plain", "idempotent", "ratio"
    );
    println!(
        "{:<44} {:>12} {:>12} {:>8}",
        "records/s",
        f(&p["plain"]["records_per_sec"]),
        f(&p["idempotent"]["records_per_sec"]),
        f(&p["idempotent_vs_plain"])
    );
    println!(
        "{:<44} {:>12} {:>12}",
        "p99 ms",
        f(&p["plain"]["p99_ms"]),
        f(&p["idempotent"]["p99_ms"])
    );
    println!(
        "{:<44} {:>12} {:>12}",
        "metadata transactions per request",
        f(&p["plain"]["metadata_txns_per_request"]),
        f(&p["idempotent"]["metadata_txns_per_request"])
    );
    println!();
    println!(
        "{:<8} {:>12} {:>12} {:>10} {:>10} {:>8} {:>16} {:>12}",
        "members",
        "plain rec/s",
        "group rec/s",
        "plain MB/s",
        "group MB/s",
        "ratio",
        "commit p50/p99",
        "txns/commit"
    );
    for row in r["consume"].as_array().into_iter().flatten() {
        let g = &row["group"];
        println!(
            "{:<8} {:>12} {:>12} {:>10} {:>10} {:>8} {:>16} {:>12}",
            row["members"],
            f(&row["plain"]["records_per_sec"]),
            f(&g["records_per_sec"]),
            f(&row["plain"]["mb_per_sec"]),
            f(&g["mb_per_sec"]),
            f(&row["group_vs_plain"]),
            format!(
                "{} / {}",
                f(&g["commit_latency_ms"]["p50"]),
                f(&g["commit_latency_ms"]["p99"])
            ),
            f(&g["metadata_txns_per_commit"])
        );
    }
    Ok(())
}
