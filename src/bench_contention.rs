//! `silt bench --contention`: how Silt's commit path scales on
//! FoundationDB's concurrency, simulated (`silt_metadata::sim`).
//!
//! N agents each produce one *flush* per flush interval (open loop): 10
//! records for each of K partitions drawn from P. An agent commits as the
//! real one does with group commit: a segment is cut whenever one of its
//! four upload slots is free, carrying every flush ready by then (one
//! chunk per partition), and segments commit in the order they were cut
//! (`silt_agent::sequencer::order`: overlapping when sequenced, one after
//! another when direct). So a slow commit makes segments larger, not
//! flushes fewer; what contention costs shows as flush latency (ready to
//! committed), and, once commits cannot keep up at all, as flushes left
//! uncommitted at the end.
//!
//! Each cell runs in two designs, in the same run: `direct`, every agent
//! committing its own segments (the design before the sequencer), and
//! `sequenced`, every agent sending its commits to one sequencer
//! (`silt_agent::sequencer`, the code agents run) over a modelled network
//! hop (`--sim-hop-us` each way; tokio's timer rounds it up to a
//! millisecond, so the hop is pessimistic), committing directly if that
//! fails, as agents do.
//!
//! Reported per cell: flushes committed per second and as a share of those
//! produced, commits (segments) per second, retries per commit
//! (conflicts), metadata transactions per second, p50/p99 commit latency
//! (a segment's cut to its answer, waiting for its predecessor included)
//! and p99 flush latency (a flush ready to committed). It leaves out the object-store PUT before each commit and the
//! agents' own CPU: it measures the metadata path alone.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Value, json};
use silt_agent::sequencer::order::{Predecessor, commit_in_order};
use silt_agent::sequencer::{Sequencer, SequencerLimits, Unsequenced};
use silt_metadata::kv::Kv;
use silt_metadata::runner::RetryPolicy;
use silt_metadata::sim::{SimConfig, SimKv};
use silt_metadata::sqlite::SqliteKv;
use silt_metadata::{ChunkCommit, CommitOutcome, Metadata, SegmentCommit, TopicConfig};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::bench::{BenchArgs, CommitDesign, ContentionBackend, histogram, now_ms};

/// One flush's worth of records, ready to commit.
#[derive(Debug)]
struct Flush {
    ready: Instant,
    partitions: Vec<u32>,
}

/// What one simulated agent got done.
#[derive(Debug, Default)]
struct AgentTally {
    flushes: u64,
    commits: u64,
    failed: u64,
}

/// Shared by the agents of one cell.
struct CellContext {
    /// Each agent's metadata client (its own connection on SQLite, as an
    /// agent process has; one shared simulated cluster on `sim`).
    mds: Vec<Arc<Metadata>>,
    sequencer: Option<Sequencer>,
    hop: Duration,
    topic_id: u64,
    /// Flush ready to committed, µs.
    latencies: Mutex<hdrhistogram::Histogram<u64>>,
    /// A segment's commit, from its cut to its answer (waiting for its
    /// predecessor included), µs.
    commits: Mutex<hdrhistogram::Histogram<u64>>,
}

/// The segment that carries `flushes`: one chunk per partition.
fn segment_of(agent: usize, n: u64, topic_id: u64, flushes: &[Flush]) -> SegmentCommit {
    let mut records: BTreeMap<u32, u32> = BTreeMap::new();
    for f in flushes {
        for &p in &f.partitions {
            *records.entry(p).or_default() += 10;
        }
    }
    let now = now_ms();
    SegmentCommit {
        segment_id: format!("{agent}-{n}"),
        object: format!("segments/{agent}-{n}.seg"),
        created_ms: now,
        committed_ms: now,
        chunks: records
            .into_iter()
            .enumerate()
            .map(|(i, (p, count))| ChunkCommit {
                topic_id,
                partition: p,
                byte_offset: 8 + 1000 * i as u64,
                byte_len: 10 * count,
                record_count: count,
                max_timestamp: now,
            })
            .collect(),
        units: Vec::new(),
        after: None,
    }
}

/// Segments an agent has in flight at once (`--max-concurrent-flushes`'s
/// default).
const SLOTS: usize = 4;

/// Sends one commit as an agent does: to the sequencer over the modelled
/// hop, directly if that fails (or with no sequencer).
async fn send(
    cx: &CellContext,
    agent: usize,
    commit: SegmentCommit,
) -> silt_metadata::Result<CommitOutcome> {
    if let Some(s) = &cx.sequencer {
        tokio::time::sleep(cx.hop).await;
        let answer = s.commit(commit.clone()).await;
        tokio::time::sleep(cx.hop).await;
        match answer {
            Ok(outcome) => return Ok(outcome),
            Err(Unsequenced::Pending { segment, after }) => {
                return Err(silt_metadata::Error::PredecessorPending { segment, after });
            }
            Err(_) => {}
        }
    }
    cx.mds[agent].commit_segment(&commit).await
}

/// Commits flushes as an agent does (see the module docs) until
/// `deadline`: a segment is cut whenever one of [`SLOTS`] is free, taking
/// every flush queued by then, and commits in order after the one before
/// (overlapping it when sequenced).
async fn committer(
    cx: Arc<CellContext>,
    agent: usize,
    mut rx: mpsc::UnboundedReceiver<Flush>,
    deadline: tokio::time::Instant,
) -> AgentTally {
    let slots = Arc::new(Semaphore::new(SLOTS));
    let mut prev: Option<Predecessor> = None;
    let mut in_flight = JoinSet::new();
    let mut n = 0u64;
    loop {
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => s.ok(),
            () = tokio::time::sleep_until(deadline) => None,
        };
        let first = tokio::select! {
            f = rx.recv() => f,
            () = tokio::time::sleep_until(deadline) => None,
        };
        let (Some(slot), Some(first)) = (slot, first) else {
            break;
        };
        let mut flushes = vec![first];
        while let Ok(f) = rx.try_recv() {
            flushes.push(f);
        }
        let commit = segment_of(agent, n, cx.topic_id, &flushes);
        n += 1;
        let (done, done_rx) = oneshot::channel::<()>();
        let before = prev.replace(Predecessor {
            segment_id: commit.segment_id.clone(),
            done: done_rx,
        });
        let cx = cx.clone();
        in_flight.spawn(async move {
            let overlap = cx.sequencer.is_some();
            let started = Instant::now();
            let outcome = commit_in_order(commit, before, overlap, |c| {
                let cx = cx.clone();
                async move { send(&cx, agent, c).await }
            })
            .await;
            drop((done, slot));
            if outcome.is_err() {
                return AgentTally {
                    failed: 1,
                    ..AgentTally::default()
                };
            }
            let took = started.elapsed().as_micros() as u64;
            let _ = cx.commits.lock().record(took.max(1));
            let mut h = cx.latencies.lock();
            for f in &flushes {
                let _ = h.record((f.ready.elapsed().as_micros() as u64).max(1));
            }
            AgentTally {
                flushes: flushes.len() as u64,
                commits: 1,
                failed: 0,
            }
        });
    }
    let mut tally = AgentTally::default();
    while let Some(t) = in_flight.join_next().await {
        let t = t.unwrap_or(AgentTally {
            failed: 1,
            ..AgentTally::default()
        });
        tally.flushes += t.flushes;
        tally.commits += t.commits;
        tally.failed += t.failed;
    }
    tally
}

/// One cell: N agents on P partitions.
async fn cell(
    a: &BenchArgs,
    mode: CommitDesign,
    agents: usize,
    partitions: u32,
) -> anyhow::Result<Value> {
    let policy = RetryPolicy {
        max_attempts: 1000,
        deadline: Duration::from_secs(30),
        ..RetryPolicy::default()
    };
    let dir = tempfile::tempdir()?;
    let sim: Arc<dyn Kv> = Arc::new(SimKv::new(SimConfig {
        seed: 7,
        read_latency: Duration::from_micros(a.sim_read_us),
        commit_latency: Duration::from_millis(a.sim_commit_ms),
        jitter: 0.3,
    }));
    // One client per agent, and one more for the sequencer.
    let mut mds = Vec::with_capacity(agents + 1);
    for i in 0..=agents {
        let kv: Arc<dyn Kv> = match a.contention_backend {
            ContentionBackend::Sim => sim.clone(),
            ContentionBackend::Sqlite => Arc::new(SqliteKv::open(dir.path().join("meta.db"))?),
        };
        mds.push(Arc::new(Metadata::new(kv, policy.clone(), 7 + i as u64)));
    }
    let md = mds[agents].clone();
    let topic = md
        .create_topic("t", partitions, TopicConfig::default(), now_ms(), 1)
        .await?;
    let stop = CancellationToken::new();
    let sequencer = (mode == CommitDesign::Sequenced)
        .then(|| Sequencer::start(md.clone(), SequencerLimits::default(), None, stop.clone()));
    let cx = Arc::new(CellContext {
        mds: mds.clone(),
        sequencer,
        hop: Duration::from_micros(a.sim_hop_us),
        topic_id: topic.id,
        latencies: Mutex::new(histogram()),
        commits: Mutex::new(histogram()),
    });
    let interval = Duration::from_millis(a.tuning.flush_interval_ms.max(1));
    let k = a.contention_chunks.min(partitions as usize).max(1);
    let run_for = Duration::from_secs(a.duration_secs);
    let mut committers = Vec::new();
    let mut producers = Vec::new();
    // Flushes still queued one interval after the last is produced were
    // not kept up with.
    let deadline = tokio::time::Instant::now() + run_for + interval;
    for agent in 0..agents {
        let (tx, rx) = mpsc::unbounded_channel();
        committers.push(tokio::spawn(committer(cx.clone(), agent, rx, deadline)));
        producers.push(tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            let mut x = (agent as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let mut produced = 0u64;
            // Open loop: flush n is ready at n intervals, however commits go.
            while start.elapsed() < run_for {
                tokio::time::sleep_until(start + interval * produced as u32).await;
                let mut picked: Vec<u32> = Vec::with_capacity(k);
                while picked.len() < k {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let p = (x % u64::from(partitions)) as u32;
                    if !picked.contains(&p) {
                        picked.push(p);
                    }
                }
                let ready = Instant::now();
                if tx
                    .send(Flush {
                        ready,
                        partitions: picked,
                    })
                    .is_err()
                {
                    break;
                }
                produced += 1;
            }
            produced
        }));
    }
    let mut produced = 0;
    for p in producers {
        produced += p.await?;
    }
    let mut tally = AgentTally::default();
    for c in committers {
        let t = c.await?;
        tally.flushes += t.flushes;
        tally.commits += t.commits;
        tally.failed += t.failed;
    }
    stop.cancel();
    let (runs, retries) = mds
        .iter()
        .flat_map(|md| md.transaction_stats())
        .filter(|(name, _)| *name == "commit_segment")
        .fold((0, 0), |(r, t), (_, s)| (r + s.runs, t + s.retries));
    let secs = a.duration_secs as f64;
    let h = cx.latencies.lock();
    let c = cx.commits.lock();
    let row = json!({
        "mode": match mode { CommitDesign::Direct => "direct", CommitDesign::Sequenced => "sequenced" },
        "agents": agents, "partitions": partitions, "chunks_per_flush": k,
        "flushes_per_sec": tally.flushes as f64 / secs,
        "of_produced": tally.flushes as f64 / produced.max(1) as f64,
        "commits_per_sec": tally.commits as f64 / secs,
        "retries_per_commit": retries as f64 / tally.commits.max(1) as f64,
        "transactions_per_sec": runs as f64 / secs,
        "failed": tally.failed,
        "commit_p50_ms": c.value_at_quantile(0.5) as f64 / 1e3,
        "commit_p99_ms": c.value_at_quantile(0.99) as f64 / 1e3,
        "flush_p50_ms": h.value_at_quantile(0.5) as f64 / 1e3,
        "flush_p99_ms": h.value_at_quantile(0.99) as f64 / 1e3,
    });
    eprintln!("{row}");
    Ok(row)
}

pub async fn run(a: BenchArgs) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for &p in &a.contention_partitions {
        for &n in &a.contention_agents {
            for &mode in &a.contention_modes {
                rows.push(cell(&a, mode, n, p).await?);
            }
        }
    }
    let result = json!({
        "config": {"backend": format!("{:?}", a.contention_backend).to_lowercase(), "chunks_per_flush": a.contention_chunks, "commit_latency_ms": a.sim_commit_ms, "read_latency_us": a.sim_read_us, "hop_us": a.sim_hop_us,
                   "flush_interval_ms": a.tuning.flush_interval_ms,
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
        "{:>10} {:>6} {:>10} {:>10} {:>8} {:>10} {:>8} {:>7} {:>10} {:>10} {:>10}",
        "mode",
        "agents",
        "partitions",
        "flushes/s",
        "of prod",
        "commits/s",
        "retries",
        "txns/s",
        "commit p50",
        "commit p99",
        "flush p99"
    );
    for c in r["cells"].as_array().into_iter().flatten() {
        println!(
            "{:>10} {:>6} {:>10} {:>10} {:>8} {:>10} {:>8} {:>7} {:>10} {:>10} {:>10}",
            c["mode"].as_str().unwrap_or("?"),
            c["agents"].as_u64().unwrap_or(0),
            c["partitions"].as_u64().unwrap_or(0),
            f(&c["flushes_per_sec"], 0),
            f(&c["of_produced"], 2),
            f(&c["commits_per_sec"], 0),
            f(&c["retries_per_commit"], 2),
            f(&c["transactions_per_sec"], 0),
            f(&c["commit_p50_ms"], 1),
            f(&c["commit_p99_ms"], 1),
            f(&c["flush_p99_ms"], 1)
        );
    }
}
