//! `silt bench --contention`: how Silt's commit path scales on
//! FoundationDB's concurrency, simulated (`silt_metadata::sim`): N agents
//! each commit one segment per flush interval, each segment holding one
//! chunk for each of K partitions drawn from P, with FoundationDB's commit
//! latency. Every cell of the table reports commits per second (and as a
//! share of what N uncontended agents would commit: N per interval), the
//! retries per commit (conflicts), and p50/p99 commit latency, retries
//! included.
//!
//! What it leaves out: the object-store PUT before each commit (it overlaps
//! the previous commit in an agent) and the agent's CPU; it measures the
//! metadata transactions alone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Value, json};
use silt_metadata::runner::RetryPolicy;
use silt_metadata::sim::{SimConfig, SimKv};
use silt_metadata::{ChunkCommit, Metadata, SegmentCommit, TopicConfig};

use crate::bench::{BenchArgs, histogram, now_ms};

const AGENTS: [usize; 5] = [1, 4, 16, 64, 128];
const PARTITIONS: [u32; 3] = [8, 256, 4096];

/// One cell: N agents on P partitions.
async fn cell(a: &BenchArgs, agents: usize, partitions: u32) -> anyhow::Result<Value> {
    let kv = Arc::new(SimKv::new(SimConfig {
        seed: 7,
        read_latency: Duration::from_micros(a.sim_read_us),
        commit_latency: Duration::from_millis(a.sim_commit_ms),
        jitter: 0.3,
    }));
    let policy = RetryPolicy {
        max_attempts: 1000,
        deadline: Duration::from_secs(30),
        ..RetryPolicy::default()
    };
    let md = Arc::new(Metadata::new(kv, policy, 7));
    let topic = md
        .create_topic("t", partitions, TopicConfig::default(), now_ms(), 1)
        .await?;
    let interval = Duration::from_millis(a.tuning.flush_interval_ms.max(1));
    let chunks = a.contention_chunks.min(partitions as usize).max(1);
    let latencies = Arc::new(Mutex::new(histogram()));
    let deadline = Instant::now() + Duration::from_secs(a.duration_secs);
    let mut tasks = Vec::new();
    for agent in 0..agents {
        let (md, latencies) = (md.clone(), latencies.clone());
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut x = (agent as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let mut n = 0u64;
            let mut failed = 0u64;
            while Instant::now() < deadline {
                tick.tick().await;
                // K distinct partitions, in order (a segment's chunk order).
                let mut picked: Vec<u32> = Vec::with_capacity(chunks);
                while picked.len() < chunks {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let p = (x % u64::from(partitions)) as u32;
                    if !picked.contains(&p) {
                        picked.push(p);
                    }
                }
                picked.sort_unstable();
                let now = now_ms();
                let commit = SegmentCommit {
                    segment_id: format!("{agent}-{n}"),
                    object: format!("segments/{agent}-{n}.seg"),
                    created_ms: now,
                    committed_ms: now,
                    chunks: picked
                        .iter()
                        .enumerate()
                        .map(|(i, &p)| ChunkCommit {
                            topic_id: topic.id,
                            partition: p,
                            byte_offset: 8 + 100 * i as u64,
                            byte_len: 100,
                            record_count: 10,
                            max_timestamp: now,
                        })
                        .collect(),
                    units: Vec::new(),
                };
                let t = Instant::now();
                match md.commit_segment(&commit).await {
                    Ok(_) => {
                        let us = t.elapsed().as_micros() as u64;
                        let _ = latencies.lock().record(us.max(1));
                        n += 1;
                    }
                    Err(_) => failed += 1,
                }
            }
            (n, failed)
        }));
    }
    let (mut commits, mut failed) = (0, 0);
    for t in tasks {
        let (n, f) = t.await?;
        commits += n;
        failed += f;
    }
    let stats = md
        .transaction_stats()
        .into_iter()
        .find(|(name, _)| *name == "commit_segment")
        .map(|(_, s)| s);
    let retries = stats.map_or(0, |s| s.retries);
    let secs = a.duration_secs as f64;
    let ideal = agents as f64 * secs / interval.as_secs_f64();
    let h = latencies.lock();
    let row = json!({
        "agents": agents, "partitions": partitions, "chunks_per_segment": chunks,
        "commits_per_sec": commits as f64 / secs,
        "of_uncontended": commits as f64 / ideal,
        "retries_per_commit": retries as f64 / (commits.max(1)) as f64,
        "failed": failed,
        "p50_ms": h.value_at_quantile(0.5) as f64 / 1e3,
        "p99_ms": h.value_at_quantile(0.99) as f64 / 1e3,
    });
    eprintln!("{row}");
    Ok(row)
}

pub async fn run(a: BenchArgs) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for &p in &PARTITIONS {
        for &n in &AGENTS {
            rows.push(cell(&a, n, p).await?);
        }
    }
    let result = json!({
        "config": {"commit_latency_ms": a.sim_commit_ms, "read_latency_us": a.sim_read_us,
                   "flush_interval_ms": a.tuning.flush_interval_ms, "chunks_per_segment": a.contention_chunks,
                   "seconds_per_cell": a.duration_secs},
        "cells": rows,
    });
    if crate::bench::print_json(&result, a.json)? {
        return Ok(());
    }
    report(&result);
    Ok(())
}

#[allow(clippy::print_stdout)]
fn report(r: &Value) {
    let f = |v: &Value, d| crate::bench::number(v, d);
    println!(
        "{:>6} {:>10} {:>12} {:>14} {:>10} {:>9} {:>9}",
        "agents", "partitions", "commits/s", "of uncontended", "retries", "p50 ms", "p99 ms"
    );
    for c in r["cells"].as_array().into_iter().flatten() {
        println!(
            "{:>6} {:>10} {:>12} {:>14} {:>10} {:>9} {:>9}",
            c["agents"].as_u64().unwrap_or(0),
            c["partitions"].as_u64().unwrap_or(0),
            f(&c["commits_per_sec"], 0),
            f(&c["of_uncontended"], 2),
            f(&c["retries_per_commit"], 2),
            f(&c["p50_ms"], 1),
            f(&c["p99_ms"], 1)
        );
    }
}
