//! `silt bench`: produce throughput and latency, end-to-end latency, and
//! consume catch-up throughput, over real HTTP. With `--embedded` it starts
//! its own agent on loopback (local directory + SQLite, as `silt dev`) and
//! measures the disk's fsynced sequential write speed in the same run, the
//! yardstick produce bandwidth is reported against.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::cli::Tuning;
use crate::client::Client;
use silt_segment::latency::LatencyModel;

/// The metadata backend `--contention` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ContentionBackend {
    Sim,
    Sqlite,
}

/// How agents commit, for `--contention`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CommitDesign {
    /// Every agent commits its own segments.
    Direct,
    /// Agents send their commits to one sequencer.
    Sequenced,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Benchmark an agent started in this process (on loopback).
    #[arg(long, conflicts_with = "url")]
    pub embedded: bool,
    /// Agent to benchmark.
    #[arg(long, env = "SILT_URL")]
    pub url: Option<String>,
    /// Data directory for --embedded (default: a temporary directory).
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
    /// Object store for --embedded instead of <data-dir>/objects, e.g.
    /// s3://bucket/prefix (AWS_* variables as for `silt agent`), to compare
    /// against the local disk in the same run.
    #[arg(long, requires = "embedded")]
    pub object_store: Option<String>,
    /// The topic to benchmark on (created if missing; phases add suffixes).
    #[arg(long, default_value = "bench")]
    pub topic: String,
    /// Partitions of the topics the benchmark creates.
    #[arg(long, default_value_t = 6)]
    pub partitions: u32,
    /// Value size in bytes.
    #[arg(long, default_value_t = 1024)]
    pub record_size: usize,
    /// Records per produce request.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Concurrent producers (each waits for its acknowledgement before sending again).
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// How long to produce.
    #[arg(long, default_value_t = 10)]
    pub duration_secs: u64,
    /// Bytes the disk yardstick writes (fsynced at the end, like `dd conv=fdatasync`).
    #[arg(long, default_value_t = 512 << 20)]
    pub yardstick_bytes: usize,
    /// Print the results as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Benchmark consumer groups and idempotent produce instead: group
    /// consumption with 1, 3 and 6 members against plain partition reads,
    /// commit latency, idempotent against plain produce, metadata
    /// transactions per batch.
    #[arg(long)]
    pub groups: bool,
    /// Compare the Kafka protocol with HTTP JSON in the same run: the
    /// same record size, batch and concurrency over both (needs --embedded).
    #[arg(long, requires = "embedded", conflicts_with = "groups")]
    pub kafka: bool,
    /// Benchmark share groups instead: acked records/s with 1, 8 and 32
    /// workers against a consumer group reading the same records in the
    /// same run, and metadata transactions per acked record.
    #[arg(long, conflicts_with_all = ["groups", "kafka"])]
    pub shares: bool,
    /// With --embedded: put modelled S3 latency (log-normal first byte plus
    /// bandwidth; see `silt_segment::latency`) in front of the store.
    #[arg(long, value_enum, requires = "embedded")]
    pub s3_model: Option<S3Model>,
    /// Time the compactor's archive job instead, over each of these `silt
    /// dev` data directories in turn, in this one process, as a
    /// long-running compactor runs it round after round: wall and CPU time,
    /// records and Parquet bytes per directory. Give copies of the same
    /// directory to see the job with its memory warm (after the first).
    #[arg(long, num_args = 1.., value_name = "DATA_DIR", conflicts_with_all = ["groups", "kafka", "shares", "embedded", "url"])]
    pub archive: Vec<std::path::PathBuf>,
    /// Measure commit contention instead: 1 to 128 simulated agents commit
    /// segments to 8, 256 and 4,096 partitions on the simulated
    /// FoundationDB (no object store, no HTTP), --duration-secs per cell.
    #[arg(long, conflicts_with_all = ["groups", "kafka", "embedded", "url"])]
    pub contention: bool,
    /// --contention: the agent counts to measure.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 4, 16, 64, 128])]
    pub contention_agents: Vec<usize>,
    /// --contention: the partition counts to measure.
    #[arg(long, value_delimiter = ',', default_values_t = [8, 256, 4096])]
    pub contention_partitions: Vec<u32>,
    /// --contention: the metadata backend: `sim` (FoundationDB's semantics
    /// and latency, in process) or `sqlite` (the embedded default: one
    /// file, one connection per agent as separate processes have, fsync
    /// per commit; try --contention-agents 1,2,4,8).
    #[arg(long, value_enum, default_value_t = ContentionBackend::Sim)]
    pub contention_backend: ContentionBackend,
    /// --contention: the commit designs to measure.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [CommitDesign::Direct, CommitDesign::Sequenced])]
    pub contention_modes: Vec<CommitDesign>,
    /// --contention: partitions each segment holds a chunk for.
    #[arg(long, default_value_t = 32)]
    pub contention_chunks: usize,
    /// --contention: the simulated commit latency (FoundationDB: ~5 ms).
    #[arg(long, default_value_t = 5)]
    pub sim_commit_ms: u64,
    /// --contention: the modelled network hop to the sequencer, each way.
    #[arg(long, default_value_t = 500)]
    pub sim_hop_us: u64,
    /// --contention: the simulated latency of a read version and a read.
    #[arg(long, default_value_t = 500)]
    pub sim_read_us: u64,
    #[command(flatten)]
    pub tuning: Tuning,
}

/// Which S3 latency `--s3-model` puts in front of the store.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum S3Model {
    /// S3 Standard: PUT p50 25 ms, p99 150 ms; GET p50 15 ms, p99 80 ms.
    Standard,
    /// S3 Express One Zone: PUT p50 5 ms, p99 15 ms; GET p50 3 ms, p99 10 ms.
    Express,
}

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

/// Sequential write of `bytes` in 1 MiB blocks, then fdatasync: MB/s.
fn disk_yardstick(dir: &std::path::Path, bytes: usize) -> anyhow::Result<f64> {
    let path = dir.join("yardstick.tmp");
    let block = vec![0x5au8; 1 << 20];
    let start = Instant::now();
    let mut f = std::fs::File::create(&path)?;
    let mut written = 0;
    while written < bytes {
        f.write_all(&block)?;
        written += block.len();
    }
    f.sync_data()?;
    let secs = start.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(&path)?;
    Ok(written as f64 / secs / 1e6)
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What the workers of one produce phase share.
pub struct Shared {
    pub records: AtomicU64,
    pub stop: AtomicBool,
    pub produce_us: Mutex<Histogram<u64>>,
    pub e2e_ms: Mutex<Histogram<u64>>,
    pub errors: AtomicU64,
}

impl Shared {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            records: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            produce_us: Mutex::new(histogram()),
            e2e_ms: Mutex::new(histogram()),
            errors: AtomicU64::new(0),
        })
    }

    /// Counts one request sent at `t` carrying `records`; after a failure,
    /// backs off briefly.
    pub async fn record(&self, ok: bool, t: Instant, records: u64) {
        if ok {
            let us = t.elapsed().as_micros() as u64;
            let _ = self.produce_us.lock().record_n(us.max(1), records);
            self.records.fetch_add(records, Ordering::Relaxed);
        } else {
            self.errors.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Runs `a.concurrency` closed-loop workers (`spawn(worker index)`) for
/// `a.duration_secs`, printing progress each second; returns the seconds
/// the phase took.
pub async fn drive(
    a: &BenchArgs,
    shared: &Arc<Shared>,
    spawn: impl Fn(usize) -> tokio::task::JoinHandle<()>,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let workers: Vec<_> = (0..a.concurrency).map(spawn).collect();
    let deadline = started + Duration::from_secs(a.duration_secs);
    let mut last = 0;
    while Instant::now() < deadline {
        tokio::time::sleep(
            Duration::from_secs(1).min(deadline.saturating_duration_since(Instant::now())),
        )
        .await;
        let n = shared.records.load(Ordering::Relaxed);
        let p99 = shared.produce_us.lock().value_at_quantile(0.99) as f64 / 1000.0;
        eprintln!(
            "[{:>4.1}s] produced {n} records, {:.0} rec/s, p99 {p99:.1} ms, errors {}",
            started.elapsed().as_secs_f64(),
            (n - last) as f64,
            shared.errors.load(Ordering::Relaxed)
        );
        last = n;
    }
    shared.stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await?;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// What a benchmark runs against: an agent at `url`, started in this
/// process with `--embedded` (on loopback, beside a disk yardstick).
pub struct Target {
    pub url: String,
    /// The disk's fsynced sequential write speed, MB/s (embedded only).
    pub yardstick: Option<f64>,
    /// The embedded agent's metadata, for transaction counts.
    pub metadata: Option<Arc<silt_metadata::Metadata>>,
    server: Option<(
        silt_agent::Agent,
        tokio::task::JoinHandle<std::io::Result<()>>,
    )>,
    _tmp: Option<tempfile::TempDir>,
}

impl Target {
    pub async fn start(a: &BenchArgs) -> anyhow::Result<Self> {
        if let Some(url) = &a.url {
            return Ok(Self {
                url: url.clone(),
                yardstick: None,
                metadata: None,
                server: None,
                _tmp: None,
            });
        }
        anyhow::ensure!(a.embedded, "give --url of an agent, or --embedded");
        let mut tmp = None;
        let dir = match &a.data_dir {
            Some(d) => d.clone(),
            None => {
                let t = tempfile::tempdir()?;
                let p = t.path().to_path_buf();
                tmp = Some(t);
                p
            }
        };
        std::fs::create_dir_all(&dir)?;
        eprintln!(
            "measuring the disk: 3 x {} MiB sequential write + fdatasync in {}",
            a.yardstick_bytes >> 20,
            dir.display()
        );
        // The median of three: virtual disks are noisy.
        let mut runs = [0.0; 3];
        for r in &mut runs {
            *r = disk_yardstick(&dir, a.yardstick_bytes)?;
        }
        runs.sort_by(f64::total_cmp);
        eprintln!(
            "disk: {:.0} / {:.0} / {:.0} MB/s",
            runs[0], runs[1], runs[2]
        );
        let objects = match &a.object_store {
            Some(url) => url.clone(),
            None => {
                std::fs::create_dir_all(dir.join("objects"))?;
                url::Url::from_directory_path(dir.join("objects"))
                    .map_err(|()| anyhow::anyhow!("bad dir"))?
                    .to_string()
            }
        };
        let meta = format!("sqlite://{}", dir.join("meta.db").display());
        let (storage, md) = crate::server::open(objects.as_str(), &meta, Default::default())?;
        let storage = match a.s3_model {
            Some(S3Model::Standard) => storage.with_latency(LatencyModel::s3_standard(), 7),
            Some(S3Model::Express) => storage.with_latency(LatencyModel::s3_express(), 7),
            None => storage,
        };
        let state = crate::server::build(storage, md.clone(), &a.tuning)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let agent = state.agent.clone();
        let task = tokio::spawn(async move { axum::serve(listener, silt_api::app(state)).await });
        Ok(Self {
            url: format!("http://{addr}"),
            yardstick: Some(runs[1]),
            metadata: Some(md),
            server: Some((agent, task)),
            _tmp: tmp,
        })
    }

    /// The embedded agent, if this process runs one.
    pub fn agent(&self) -> Option<silt_agent::Agent> {
        self.server.as_ref().map(|(agent, _)| agent.clone())
    }

    pub async fn stop(mut self) {
        if let Some((agent, task)) = self.server.take() {
            agent.shutdown().await;
            task.abort();
        }
    }
}

/// Creates the benchmark topic unless it exists.
pub async fn ensure_topic(client: &Client, topic: &str, partitions: u32) -> anyhow::Result<()> {
    let created = client
        .post(
            "/v1/topics",
            &json!({"name": topic, "partitions": partitions}),
        )
        .await;
    if let Err(e) = created {
        anyhow::ensure!(e.to_string().contains("topic_exists"), e);
    }
    Ok(())
}

pub async fn run(a: BenchArgs) -> anyhow::Result<()> {
    if !a.archive.is_empty() {
        return crate::bench_archive::run(&a).await;
    }
    if a.groups {
        return crate::bench_groups::run(a).await;
    }
    if a.shares {
        return crate::bench_shares::run(a).await;
    }
    if a.kafka {
        return crate::bench_kafka::run(a).await;
    }
    if a.contention {
        return crate::bench_contention::run(a).await;
    }
    let target = Target::start(&a).await?;
    let (url, yardstick) = (target.url.clone(), target.yardstick);
    let client = Client::new(&url);
    ensure_topic(&client, &a.topic, a.partitions).await?;
    let start_offsets = hwms(&client, &a.topic).await?;

    let shared = Shared::new();
    // End-to-end latency, sampled by one long-polling consumer on partition 0
    // (reading every partition here would take CPU from the agent under test).
    let mut consumers = Vec::new();
    for (p, &from) in start_offsets.iter().enumerate().take(1) {
        let (c, s, topic) = (client.clone(), shared.clone(), a.topic.clone());
        consumers.push(tokio::spawn(async move {
            let mut next = from;
            while !s.stop.load(Ordering::Relaxed) {
                let path = format!("/v1/topics/{topic}/partitions/{p}/records?offset={next}&wait_ms=500&max_records=10000");
                let Ok(v) = c.get(&path).await else { break };
                let now = now_ms();
                let mut h = s.e2e_ms.lock();
                for r in v["records"].as_array().into_iter().flatten() {
                    let _ = h.record((now - r["timestamp"].as_i64().unwrap_or(now)).max(0) as u64);
                }
                next = v["next_offset"].as_u64().unwrap_or(next);
            }
        }));
    }
    let pool = value_pool(a.record_size)?;
    let produce_secs = produce_http(&a, &client, &a.topic, &pool, &shared).await?;
    for c in consumers {
        c.await?;
    }
    let produced = shared.records.load(Ordering::Relaxed);

    // Catch-up: read everything produced, as fast as possible.
    let end_offsets = hwms(&client, &a.topic).await?;
    let t = Instant::now();
    let mut consumed = 0u64;
    let mut consumed_bytes = 0u64;
    for (p, (&from, &to)) in start_offsets.iter().zip(&end_offsets).enumerate() {
        let mut next = from;
        while next < to {
            let path = format!(
                "/v1/topics/{}/partitions/{p}/records?offset={next}&max_records=10000&max_bytes=16777216",
                a.topic
            );
            let v = client.get(&path).await.context("catch-up read")?;
            for r in v["records"].as_array().into_iter().flatten() {
                consumed += 1;
                consumed_bytes += r["value"].as_str().map_or(0, str::len) as u64;
            }
            next = v["next_offset"].as_u64().unwrap_or(to);
        }
    }
    let consume_secs = t.elapsed().as_secs_f64();
    target.stop().await;

    let ph = shared.produce_us.lock().clone();
    let eh = shared.e2e_ms.lock().clone();
    let mb = |records: u64, secs: f64| records as f64 * a.record_size as f64 / secs / 1e6;
    let result = json!({
        "config": {"record_size": a.record_size, "batch": a.batch, "concurrency": a.concurrency, "partitions": a.partitions,
                   "duration_secs": a.duration_secs, "flush_interval_ms": a.tuning.flush_interval_ms, "embedded": a.embedded},
        "produce": {"records": produced, "records_per_sec": produced as f64 / produce_secs, "mb_per_sec": mb(produced, produce_secs),
                    "latency_ms": {"p50": ph.value_at_quantile(0.5) as f64 / 1e3, "p99": ph.value_at_quantile(0.99) as f64 / 1e3,
                                   "p999": ph.value_at_quantile(0.999) as f64 / 1e3, "max": ph.max() as f64 / 1e3},
                    "errors": shared.errors.load(Ordering::Relaxed)},
        "end_to_end_latency_ms": {"p50": eh.value_at_quantile(0.5), "p99": eh.value_at_quantile(0.99), "p999": eh.value_at_quantile(0.999), "samples": eh.len()},
        "consume": {"records": consumed, "records_per_sec": consumed as f64 / consume_secs, "mb_per_sec": consumed_bytes as f64 / consume_secs / 1e6},
        "disk_yardstick_mb_per_sec": yardstick,
        "produce_vs_disk": yardstick.map(|y| mb(produced, produce_secs) / y),
    });
    report(&result, a.json)
}

/// The HTTP JSON produce phase: `a.concurrency` closed-loop producers
/// posting `a.batch` keyed records to `topic`; returns its seconds.
pub async fn produce_http(
    a: &BenchArgs,
    client: &Client,
    topic: &str,
    pool: &Arc<str>,
    shared: &Arc<Shared>,
) -> anyhow::Result<f64> {
    let http = reqwest::Client::new();
    let target_url = client.url(&format!("/v1/topics/{topic}/records"));
    drive(a, shared, |w| {
        let (http, s, pool, batch, size) = (
            http.clone(),
            shared.clone(),
            pool.clone(),
            a.batch,
            a.record_size,
        );
        let target = target_url.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            let mut body = String::with_capacity(batch * (size + 64));
            let mut cursor = (w * 7919) % (4 << 20);
            while !s.stop.load(Ordering::Relaxed) {
                // Rendered by hand: the load generator must stay cheap next to the agent.
                let ts = now_ms();
                body.clear();
                body.push_str("{\"records\":[");
                for i in 0..batch {
                    if i > 0 {
                        body.push(',');
                    }
                    let key = n + i as u64;
                    cursor = (cursor + 104_729) % (4 << 20);
                    let value = &pool[cursor..cursor + size];
                    body.push_str(&format!(
                        "{{\"key\":\"{w}-{key}\",\"timestamp\":{ts},\"value\":\"{value}\"}}"
                    ));
                }
                body.push_str("]}");
                let t = Instant::now();
                let sent = http
                    .post(&target)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                let ok = matches!(sent.map(|r| r.status().is_success()), Ok(true));
                if ok {
                    n += batch as u64;
                }
                s.record(ok, t, batch as u64).await;
            }
        })
    })
    .await
}

/// Incompressible values: distinct random alphanumeric slices of a 4 MiB
/// pool (plus one value's length), so compression cannot flatter a
/// bandwidth figure. Slice `[i..i + record_size]` for any `i < 4 MiB`.
pub fn value_pool(record_size: usize) -> anyhow::Result<Arc<str>> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut x: u64 = rand::random::<u64>() | 1;
    let bytes: Vec<u8> = (0..(4 << 20) + record_size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ALPHABET[(x % ALPHABET.len() as u64) as usize]
        })
        .collect();
    Ok(String::from_utf8(bytes)?.into())
}

pub async fn hwms(client: &Client, topic: &str) -> anyhow::Result<Vec<u64>> {
    let t = client.get(&format!("/v1/topics/{topic}")).await?;
    Ok(t["partition_states"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| s["high_watermark"].as_u64().unwrap_or(0))
        .collect())
}

/// Prints `r` as JSON if asked to; true if it did.
#[allow(clippy::print_stdout)]
pub fn print_json(r: &Value, as_json: bool) -> anyhow::Result<bool> {
    if as_json {
        println!("{}", serde_json::to_string_pretty(r)?);
    }
    Ok(as_json)
}

/// A number for a table, with `decimals` places; `-` if absent.
pub fn number(v: &Value, decimals: usize) -> String {
    v.as_f64()
        .map_or_else(|| "-".to_owned(), |x| format!("{x:.decimals$}"))
}

#[allow(clippy::print_stdout)]
pub fn report(r: &Value, as_json: bool) -> anyhow::Result<()> {
    if print_json(r, as_json)? {
        return Ok(());
    }
    let f = |v: &Value| number(v, 1);
    let p = &r["produce"];
    let l = &p["latency_ms"];
    let e = &r["end_to_end_latency_ms"];
    let c = &r["consume"];
    println!("{:<34} {:>14}", "metric", "value");
    println!(
        "{:<34} {:>14}",
        "produce records/s",
        f(&p["records_per_sec"])
    );
    println!("{:<34} {:>14}", "produce MB/s", f(&p["mb_per_sec"]));
    println!(
        "{:<34} {:>14}",
        "produce latency p50 / p99 / p999 ms",
        format!("{} / {} / {}", f(&l["p50"]), f(&l["p99"]), f(&l["p999"]))
    );
    println!(
        "{:<34} {:>14}",
        "end-to-end p50 / p99 / p999 ms",
        format!("{} / {} / {}", f(&e["p50"]), f(&e["p99"]), f(&e["p999"]))
    );
    println!(
        "{:<34} {:>14}",
        "consume catch-up records/s",
        f(&c["records_per_sec"])
    );
    println!(
        "{:<34} {:>14}",
        "consume catch-up MB/s",
        f(&c["mb_per_sec"])
    );
    println!(
        "{:<34} {:>14}",
        "disk sequential write MB/s",
        f(&r["disk_yardstick_mb_per_sec"])
    );
    println!(
        "{:<34} {:>14}",
        "produce / disk bandwidth",
        f(&r["produce_vs_disk"].as_f64().map(|x| x * 100.0).into()) + " %"
    );
    Ok(())
}
