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
//!
//! Then, as many times, encoding alone: the rows of the last directory's
//! archive, held in memory and written to Parquet again the way the job
//! writes them, the task DuckDB's `COPY` of rows in memory does; the
//! difference from a round of the job is what reading and decoding the
//! segments costs.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::resource::{UsageWho, getrusage};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};

use crate::bench::BenchArgs;
use bytes::Bytes;
use silt_compactor::{CompactorConfig, CompactorMetrics, Encoders};
use silt_segment::parquet::{ArchiveWriter, decode};

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
    // One pool of encoder threads for every round, as one compactor keeps.
    let encoders = Arc::new(Encoders::per_core());
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
        let compactor = crate::server::new_compactor(config, md, storage, metrics, None)
            .with_encoders(encoders.clone());
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
            "user_cpu_secs": user_after.saturating_sub(user).as_secs_f64(),
            "system_cpu_secs": system_after.saturating_sub(system).as_secs_f64(),
            "files": report.files,
            "records": report.records,
            "parquet_bytes": report.bytes,
        }));
    }
    let encode = match a.archive.last() {
        Some(dir) => encode_from_memory(dir, a.archive.len(), encoders.threads())?,
        None => Vec::new(),
    };
    report(
        &json!({ "rounds": rounds, "encode_from_memory": encode }),
        a.json,
    )
}

/// Encoding alone: the rows the job archived in `dir`, decoded into
/// memory, written again as the job writes them (a file per partition,
/// `threads` files at a time on threads that live through every round,
/// each file written to disk), `rounds` times. What DuckDB's `COPY` of
/// rows held in memory is to be compared with.
fn encode_from_memory(dir: &Path, rounds: usize, threads: usize) -> anyhow::Result<Vec<Value>> {
    let mut partitions = Vec::new();
    for file in parquet_files(&dir.join("objects").join("archive"))? {
        let mut rows = Vec::new();
        decode(Bytes::from(std::fs::read(&file)?), 0, |offset, r| {
            rows.push((offset, r));
            true
        })?;
        partitions.push(rows);
    }
    let out = dir.join("bench-encode");
    std::fs::create_dir_all(&out)?;
    let threads = threads.min(partitions.len()).max(1);
    // Each round starts and ends at a barrier of the encoders and this
    // thread, which takes the times.
    let barrier = Barrier::new(threads + 1);
    let next: Vec<AtomicUsize> = (0..rounds).map(|_| AtomicUsize::new(0)).collect();
    let written = AtomicU64::new(0);
    let encode_round = |round: usize| -> anyhow::Result<()> {
        loop {
            let i = next[round].fetch_add(1, Ordering::Relaxed);
            let Some(rows) = partitions.get(i) else {
                return Ok(());
            };
            let mut writer = ArchiveWriter::new()?;
            writer.write(rows.iter().cloned())?;
            let file = writer.finish()?;
            written.fetch_add(file.len() as u64, Ordering::Relaxed);
            std::fs::write(out.join(format!("{i}.parquet")), &file)?;
        }
    };
    std::thread::scope(|s| {
        let encoders: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut result = Ok(());
                    for round in 0..rounds {
                        barrier.wait();
                        if result.is_ok() {
                            // A panic must not skip the barrier below.
                            result =
                                std::panic::catch_unwind(AssertUnwindSafe(|| encode_round(round)))
                                    .unwrap_or_else(|_| {
                                        Err(anyhow::anyhow!("an encoder panicked"))
                                    });
                        }
                        barrier.wait();
                    }
                    result
                })
            })
            .collect();
        // Nothing here may return early: the encoders wait at the barrier.
        let mut samples = Vec::new();
        for _ in 0..rounds {
            written.store(0, Ordering::Relaxed);
            barrier.wait();
            let before = cpu();
            let started = Instant::now();
            barrier.wait();
            let secs = started.elapsed().as_secs_f64();
            samples.push((secs, before, cpu(), written.load(Ordering::Relaxed)));
        }
        for e in encoders {
            e.join()
                .map_err(|_| anyhow::anyhow!("an encoder panicked"))??;
        }
        let records: usize = partitions.iter().map(Vec::len).sum();
        samples
            .into_iter()
            .map(|(secs, before, after, bytes)| {
                let ((user, system), (user_after, system_after)) = (before?, after?);
                Ok(json!({
                    "secs": secs,
                    "user_cpu_secs": user_after.saturating_sub(user).as_secs_f64(),
                    "system_cpu_secs": system_after.saturating_sub(system).as_secs_f64(),
                    "records": records,
                    "parquet_bytes": bytes,
                }))
            })
            .collect()
    })
}

/// The Parquet files under `root`.
fn parquet_files(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("listing {}", d.display()))? {
            let path = e?.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|x| x == "parquet") {
                files.push(path);
            }
        }
    }
    Ok(files)
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
    let rows = r["rounds"].as_array().into_iter().flatten().enumerate();
    let encodes = r["encode_from_memory"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate();
    let labelled = rows
        .map(|(i, row)| (format!("{}", i + 1), row))
        .chain(encodes.map(|(i, row)| (format!("enc {}", i + 1), row)));
    for (label, row) in labelled {
        println!(
            "{:>6} {:>9} {:>9} {:>9} {:>10} {:>12}",
            label,
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
