//! `silt bench --archive DIR...`: the compactor's archive job, timed over
//! each `silt dev` data directory in turn, in this one process.
//!
//! A compactor is a long-running process that archives round after round;
//! `silt compactor --once` is a fresh process, whose first touches of
//! memory (the kernel zeroing pages, and on a virtual machine the host
//! backing them) can cost as much as the encoding. Given copies of the same
//! directory, the first round shows the job cold and the others warm, the
//! state a running compactor is in. Each round opens the directory's store
//! and metadata afresh and runs the whole job: reading the committed
//! segments, decoding, encoding and uploading Parquet, and moving the
//! archive progress in metadata.

use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::resource::{UsageWho, getrusage};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};

use crate::bench::BenchArgs;
use silt_compactor::{CompactorConfig, CompactorMetrics};

/// This process's CPU time so far: user, system.
fn cpu() -> anyhow::Result<(Duration, Duration)> {
    let usage = getrusage(UsageWho::RUSAGE_SELF).context("getrusage")?;
    let time = |t: nix::sys::time::TimeVal| {
        Duration::new(
            u64::try_from(t.tv_sec()).unwrap_or(0),
            u32::try_from(t.tv_usec()).unwrap_or(0) * 1000,
        )
    };
    Ok((time(usage.user_time()), time(usage.system_time())))
}

pub async fn run(a: &BenchArgs) -> anyhow::Result<()> {
    let mut rounds = Vec::new();
    for dir in &a.archive {
        let (objects, metadata) = crate::cli::data_dir_urls(dir)?;
        let (storage, md) = crate::server::open(&objects, &metadata, Default::default())?;
        let config = CompactorConfig {
            merge_target_bytes: 0,
            iceberg_catalog: None,
            ..CompactorConfig::default()
        };
        let metrics = CompactorMetrics::new(&mut Registry::default());
        let compactor = crate::server::new_compactor(config, md, storage, metrics, None);
        let (user, system) = cpu()?;
        let started = Instant::now();
        let report = compactor
            .archive()
            .await
            .with_context(|| format!("archiving {}", dir.display()))?;
        let secs = started.elapsed().as_secs_f64();
        let (user_after, system_after) = cpu()?;
        anyhow::ensure!(
            report.records > 0,
            "nothing to archive in {} (archived already?)",
            dir.display()
        );
        rounds.push(json!({
            "dir": dir.display().to_string(),
            "secs": secs,
            "user_cpu_secs": (user_after - user).as_secs_f64(),
            "system_cpu_secs": (system_after - system).as_secs_f64(),
            "files": report.files,
            "records": report.records,
            "parquet_bytes": report.bytes,
        }));
    }
    let best = rounds
        .iter()
        .filter_map(|r| r["secs"].as_f64())
        .fold(f64::INFINITY, f64::min);
    report(&json!({ "rounds": rounds, "best_secs": best }), a.json)
}

#[allow(clippy::print_stdout)]
fn report(r: &Value, as_json: bool) -> anyhow::Result<()> {
    if crate::bench::print_json(r, as_json)? {
        return Ok(());
    }
    let f = |v: &Value| crate::bench::number(v, 3);
    println!(
        "{:>6} {:>9} {:>9} {:>9} {:>10} {:>12}",
        "round", "secs", "user", "system", "records", "parquet MB"
    );
    for (i, row) in r["rounds"].as_array().into_iter().flatten().enumerate() {
        println!(
            "{:>6} {:>9} {:>9} {:>9} {:>10} {:>12}",
            i + 1,
            f(&row["secs"]),
            f(&row["user_cpu_secs"]),
            f(&row["system_cpu_secs"]),
            crate::bench::number(&row["records"], 0),
            row["parquet_bytes"]
                .as_f64()
                .map_or_else(|| "-".to_owned(), |b| format!("{:.1}", b / 1e6)),
        );
    }
    Ok(())
}
