//! The Parquet archive from a real `silt dev` directory: `silt compactor
//! --once --data-dir` writes Hive-layout files with the documented schema
//! and encodings, each offset exactly once across runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMicrosecondType};
use arrow_schema::{DataType, TimeUnit};
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::basic::{Compression, Encoding};
use serde_json::{Value, json};

use crate::common::{Silt, copy_dir, tempdir};

fn compact_once(data: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_silt"))
        .args(["compactor", "--once", "--data-dir"])
        .arg(data)
        .env("SILT_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "compactor --once failed: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn parquet_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// `(partition from the path, offset, value, header count)` of every row.
fn rows(file: &Path) -> Vec<(u32, u64, Option<String>, usize)> {
    let partition: u32 = file
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .strip_prefix("partition=")
        .unwrap()
        .parse()
        .unwrap();
    let f = std::fs::File::open(file).unwrap();
    let builder =
        ParquetRecordBatchReaderBuilder::try_new_with_options(f, ArrowReaderOptions::new())
            .unwrap();
    // Schema: no partition or topic column (they are in the path).
    let schema = builder.schema().clone();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["offset", "timestamp", "key", "value", "headers"]);
    assert_eq!(
        schema.field(1).data_type(),
        &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    );
    // Encodings: zstd, statistics and page indexes, no dictionary on key/value.
    let meta = builder.metadata().clone();
    for rg in meta.row_groups() {
        for (i, col) in rg.columns().iter().enumerate() {
            assert!(matches!(col.compression(), Compression::ZSTD(_)), "zstd");
            // Leaves: offset, timestamp, key, value, header key, header
            // value. The opaque values have no statistics (they prune
            // nothing); every other column has them and a page index.
            let opaque = i == 3 || i == 5;
            assert_eq!(
                col.statistics().is_some(),
                !opaque,
                "statistics of leaf {i}"
            );
            assert!(col.offset_index_offset().is_some(), "offset index");
            if !opaque {
                assert!(
                    col.column_index_offset().is_some(),
                    "column index of leaf {i}"
                );
            }
            if i == 2 || i == 3 {
                assert!(
                    !col.encodings().any(|e| matches!(
                        e,
                        Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY
                    )),
                    "no dictionary on key/value"
                );
            }
        }
    }
    let mut out = Vec::new();
    for batch in builder.build().unwrap() {
        let batch = batch.unwrap();
        let offsets = batch.column(0).as_primitive::<Int64Type>();
        let times = batch.column(1).as_primitive::<TimestampMicrosecondType>();
        let values = batch.column(3).as_binary::<i32>();
        let headers = batch.column(4).as_list::<i32>();
        for i in 0..batch.num_rows() {
            assert!(
                times.value(i) > 1_600_000_000_000_000,
                "microseconds since the epoch"
            );
            let value =
                (!values.is_null(i)).then(|| String::from_utf8(values.value(i).to_vec()).unwrap());
            out.push((
                partition,
                offsets.value(i) as u64,
                value,
                headers.value(i).len(),
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compactor_archives_each_offset_once_as_hive_parquet() {
    let dir = tempdir();
    let mut silt = Silt::dev(
        dir.path(),
        &["--compactor-interval-secs", "3600", "--archive", "false"],
    );
    let c = silt.client();
    c.create_topic("events", 3).await;
    let batch = |from: usize| -> Value {
        Value::Array(
            (from..from + 100)
                .map(|i| {
                    let value = if i % 10 == 0 {
                        Value::Null
                    } else {
                        json!(format!("v{i}"))
                    };
                    json!({"key": format!("k{i}"), "value": value,
                           "headers": [{"key": "h", "value": "1"}, {"key": "h", "value": null}]})
                })
                .collect(),
        )
    };
    for start in [0, 100, 200] {
        c.produce("events", &batch(start)).await;
    }
    // silt dev serves the in-process compactor's metrics beside the agent's.
    let text = metrics_text(&c).await;
    for name in [
        "silt_compactor_rounds_total",
        "silt_compactor_archive_lag_records",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
    silt.stop();
    let report = compact_once(dir.path());
    assert!(report.contains("records: 300"), "{report}");
    let root = dir
        .path()
        .join("objects")
        .join("archive")
        .join("topic=events");
    let first = parquet_files(&root);
    assert!(!first.is_empty());
    let mut by_partition: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    let mut values = Vec::new();
    for f in &first {
        for (p, offset, value, headers) in rows(f) {
            assert_eq!(headers, 2, "repeated header keys kept");
            by_partition.entry(p).or_default().push(offset);
            values.push(value);
        }
    }
    for offsets in by_partition.values() {
        let dense: Vec<u64> = (0..offsets.len() as u64).collect();
        assert_eq!(offsets, &dense, "offsets dense and sorted per partition");
    }
    assert_eq!(values.len(), 300);
    assert_eq!(
        values.iter().filter(|v| v.is_none()).count(),
        30,
        "tombstones"
    );

    // Again: nothing new, nothing twice.
    let again = compact_once(dir.path());
    assert!(again.contains("records: 0"), "{again}");
    assert_eq!(parquet_files(&root), first);

    // New records land in new files that start where the last ones ended.
    silt.restart();
    silt.client().produce("events", &batch(300)).await;
    silt.stop();
    compact_once(dir.path());
    let total: usize = parquet_files(&root).iter().map(|f| rows(f).len()).sum();
    assert_eq!(total, 400);
}

/// A compactor SIGKILLed at random points 20 times while archiving loses
/// and duplicates nothing: every offset ends up in exactly one file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archiver_killed_20_times_archives_each_offset_once() {
    use rand::RngExt;
    let dir = tempdir();
    let mut silt = Silt::dev(dir.path(), &["--archive", "false"]);
    let c = silt.client();
    c.create_topic("k", 3).await;
    for start in (0..6_000).step_by(500) {
        let batch: Vec<Value> = (start..start + 500)
            .map(|i| json!({"key": format!("k{i}"), "value": format!("v{i}")}))
            .collect();
        c.produce("k", &Value::Array(batch)).await;
    }
    silt.stop();
    let root = dir.path().join("objects").join("archive").join("topic=k");
    // One stable lease identity: a restarted compactor resumes at once.
    let compactor = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_silt"));
        cmd.args(["compactor", "--once", "--holder-id", "7"])
            .args(["--archive-file-records", "13", "--data-dir"])
            .arg(dir.path())
            .env("SILT_LOG", "error")
            .stdout(std::process::Stdio::null());
        cmd
    };
    let mut rng = rand::rng();
    let mut killed_mid_run = 0;
    for _ in 0..20 {
        let before = parquet_files(&root).len();
        let mut child = compactor().spawn().unwrap();
        // Kill it while it archives: once it has written a new file, after
        // a random further moment.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while parquet_files(&root).len() == before && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        std::thread::sleep(std::time::Duration::from_millis(rng.random_range(0..10)));
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        if !status.success() {
            killed_mid_run += 1;
        }
    }
    assert!(
        killed_mid_run >= 15,
        "kills landed mid-archive ({killed_mid_run} of 20)"
    );
    let done = compactor().status().unwrap();
    assert!(done.success());
    let mut seen: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for f in parquet_files(&root) {
        for (p, offset, _, _) in rows(&f) {
            seen.entry(p).or_default().push(offset);
        }
    }
    let mut total = 0;
    for offsets in seen.values_mut() {
        offsets.sort();
        let dense: Vec<u64> = (0..offsets.len() as u64).collect();
        assert_eq!(offsets, &dense, "each offset in exactly one file");
        total += offsets.len();
    }
    assert_eq!(total, 6_000);
}

/// Every record of a topic, read partition by partition from the start.
async fn read_everything(c: &crate::common::Client, topic: &str) -> Vec<Value> {
    let mut all = Vec::new();
    for (p, hwm) in c.high_watermarks(topic).await.into_iter().enumerate() {
        all.extend(c.read_all(topic, p as u32, 0, hwm).await);
    }
    all
}

/// The agent's `/metrics` text.
async fn metrics_text(c: &crate::common::Client) -> String {
    let res = c.http.get(format!("{}/metrics", c.base)).send().await;
    res.unwrap().text().await.unwrap()
}

/// One counter or gauge of the agent's `/metrics`.
async fn metric(c: &crate::common::Client, name: &str) -> u64 {
    let text = metrics_text(c).await;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from /metrics"))
}

/// Ranged GETs the agent made so far (its read-cache misses).
async fn gets(c: &crate::common::Client) -> u64 {
    metric(c, "silt_cache_misses_total").await
}

/// Merging replaces one small segment per flush by one per-partition
/// segment: a catch-up read sees exactly the same records and offsets, with
/// far fewer GETs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merged_segments_read_back_the_same_with_fewer_gets() {
    let dir = tempdir();
    let args = ["--archive", "false", "--merge-target-bytes", "0"];
    let mut silt = Silt::dev(dir.path(), &args);
    let c = silt.client();
    c.create_topic("m", 2).await;
    for i in 0..40 {
        let batch: Vec<Value> = (0..10)
            .map(|j| {
                json!({"key": format!("k{}", i * 10 + j), "value": format!("v{i}-{j}"),
                            "headers": [{"key": "n", "value": format!("{j}")}]})
            })
            .collect();
        c.produce("m", &Value::Array(batch)).await;
    }
    silt.restart(); // a cold cache
    let before = read_everything(&silt.client(), "m").await;
    let gets_before = gets(&silt.client()).await;
    silt.stop();
    let report = compact_once(dir.path());
    assert!(
        report.contains("segments: 2"),
        "one merged segment per partition: {report}"
    );
    silt.restart();
    let after = read_everything(&silt.client(), "m").await;
    let gets_after = gets(&silt.client()).await;
    eprintln!(
        "catch-up read of 400 records: {gets_before} GETs before the merge, {gets_after} after"
    );
    assert_eq!(
        after, before,
        "same records, offsets, keys, values, headers, timestamps"
    );
    assert_eq!(before.len(), 400);
    assert!(
        gets_before >= 40,
        "one GET per flush before ({gets_before})"
    );
    assert!(
        gets_after <= 2,
        "one GET per partition after ({gets_after})"
    );
}

/// Consumers reading while the in-process compactor merges and archives
/// see the same sequence on every read: before, during and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_read_the_same_sequence_through_merges() {
    let dir = tempdir();
    let mut silt = Silt::dev(
        dir.path(),
        &["--archive", "false", "--merge-target-bytes", "0"],
    );
    let c = silt.client();
    c.create_topic("live", 2).await;
    for i in 0..30 {
        let batch: Vec<Value> = (0..10)
            .map(|j| json!({"key": format!("k{}", i * 10 + j), "value": format!("v{i}-{j}")}))
            .collect();
        c.produce("live", &Value::Array(batch)).await;
    }
    silt.stop();
    // The same directory, now with a compactor merging every second.
    let mut silt = Silt::dev(dir.path(), &["--compactor-interval-secs", "1"]);
    let c = silt.client();
    let first = read_everything(&c, "live").await;
    assert_eq!(first.len(), 300);
    let start = std::time::Instant::now();
    let mut reads = 0;
    while start.elapsed() < std::time::Duration::from_secs(3) {
        assert_eq!(
            read_everything(&c, "live").await,
            first,
            "read {reads} differs"
        );
        reads += 1;
    }
    // The merge happened while the reads went on.
    let merged = metric(&c, "silt_compactor_merged_entries_total").await;
    assert!(
        merged >= 30,
        "the flushes were merged while reading ({merged})"
    );
    assert_eq!(read_everything(&c, "live").await, first);
    silt.stop();
}

/// After retention removed the raw segments, a topic with
/// `archive.serve_reads` serves the same records and offsets from the
/// Parquet archive; a topic without it answers offset_out_of_range.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_offsets_are_replayed_from_the_archive() {
    let dir = tempdir();
    let mut silt = Silt::dev(
        dir.path(),
        &["--archive", "false", "--merge-target-bytes", "0"],
    );
    let c = silt.client();
    for (name, serve) in [("replay", true), ("gone", false)] {
        let a = c
            .post(
                "/v1/topics",
                &json!({"name": name, "partitions": 2,
                        "config": {"retention_ms": 1000, "archive.serve_reads": serve}}),
            )
            .await;
        assert_eq!(a.status, 201, "{:?}", a.body);
        for i in 0..10 {
            let batch: Vec<Value> = (0..30)
                .map(|j| {
                    json!({"key": format!("k{j}"), "value": format!("{name}-{i}-{j}"),
                                "headers": [{"key": "i", "value": format!("{i}")}]})
                })
                .collect();
            c.produce(name, &Value::Array(batch)).await;
        }
    }
    let before = read_everything(&c, "replay").await;
    assert_eq!(before.len(), 300);
    silt.stop();
    std::thread::sleep(std::time::Duration::from_millis(1_100)); // older than retention
    let report = compact_once(dir.path());
    assert!(report.contains("failed_jobs: 0"), "{report}");
    silt.restart();
    let c = silt.client();
    let hwms = c.high_watermarks("replay").await;
    let mut after = Vec::new();
    for (p, hwm) in hwms.iter().enumerate() {
        let offsets = c
            .get(&format!("/v1/topics/replay/partitions/{p}/offsets"))
            .await;
        assert_eq!(
            offsets.body["earliest_offset"], *hwm,
            "the log start moved to the end"
        );
        after.extend(c.read_all("replay", p as u32, 0, *hwm).await);
    }
    assert_eq!(
        after, before,
        "the archive replays the same records and offsets"
    );
    let a = c.get("/v1/topics/gone/partitions/0/records?offset=0").await;
    assert_eq!(a.status, 416, "{:?}", a.body);
    assert_eq!(a.body["code"], "offset_out_of_range");
}

/// `archive.retention_ms` deletes archive files once their newest record
/// is older than it; the raw log is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_files_expire_by_their_own_retention() {
    let dir = tempdir();
    let mut silt = Silt::dev(dir.path(), &["--archive", "false"]);
    let c = silt.client();
    let a = c
        .post(
            "/v1/topics",
            &json!({"name": "short", "partitions": 1, "config": {"archive.retention_ms": 1000}}),
        )
        .await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    c.produce("short", &json!([{"value": "a"}, {"value": "b"}]))
        .await;
    silt.stop();
    compact_once(dir.path());
    let root = dir
        .path()
        .join("objects")
        .join("archive")
        .join("topic=short");
    assert_eq!(parquet_files(&root).len(), 1, "archived");
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    let report = compact_once(dir.path());
    assert!(report.contains("archive_files: 1"), "{report}");
    assert!(parquet_files(&root).is_empty(), "expired from the archive");
    silt.restart();
    assert_eq!(
        silt.client().read_all("short", 0, 0, 2).await.len(),
        2,
        "the raw log keeps its records"
    );
}

/// A segment whose bytes are damaged where Kafka's checksum does not look
/// (a batch's base offset) is never archived: the compactor's job fails
/// and writes nothing; once the bytes are right again, it archives them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_segments_are_never_archived() {
    let dir = tempdir();
    let data = dir.path().join("silt");
    let mut silt = Silt::dev(&data, &["--archive", "false", "--merge-target-bytes", "0"]);
    let c = silt.client();
    c.create_topic("fragile", 1).await;
    let records: Vec<Value> = (0..20).map(|i| json!({"value": format!("v{i}")})).collect();
    c.produce("fragile", &Value::Array(records)).await;
    silt.stop();

    let segments = data.join("objects/segments");
    let file = std::fs::read_dir(&segments)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let original = std::fs::read(&file).unwrap();
    let chunks = silt_segment::segment::read_footer(&original, original.len() as u64).unwrap();
    let mut damaged = original.clone();
    damaged[chunks[0].offset as usize + 7] ^= 0x04; // the first batch's base offset
    std::fs::write(&file, &damaged).unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_silt"))
        .args([
            "compactor",
            "--once",
            "--merge-target-bytes",
            "0",
            "--data-dir",
        ])
        .arg(&data)
        .env("SILT_LOG", "error")
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "the archive job must fail on damaged bytes"
    );
    assert!(parquet_files(&data.join("objects/archive")).is_empty());

    std::fs::write(&file, &original).unwrap();
    let report = compact_once(&data);
    assert!(report.contains("records: 20"), "{report}");
    assert_eq!(parquet_files(&data.join("objects/archive")).len(), 1);
}

/// `silt bench --archive` runs the archive job over each directory in
/// turn, in one process, and reports what each round archived, then times
/// encoding the same rows from memory; a directory with nothing left to
/// archive is an error, not a zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_archive_runs_the_job_over_each_directory() {
    let dir = tempdir();
    let data = dir.path().join("dev");
    let mut silt = Silt::dev(&data, &["--archive", "false"]);
    silt.client().create_topic("b", 2).await;
    let batch: Vec<Value> = (0..300)
        .map(|i| json!({"key": format!("k{i}"), "value": format!("v{i}")}))
        .collect();
    silt.client().produce("b", &Value::Array(batch)).await;
    silt.stop();
    let copies = [dir.path().join("one"), dir.path().join("two")];
    for c in &copies {
        copy_dir(&data, c);
    }
    let bench = |dirs: &[PathBuf]| {
        Command::new(env!("CARGO_BIN_EXE_silt"))
            .args(["bench", "--json", "--archive"])
            .args(dirs)
            .env("SILT_LOG", "warn")
            .output()
            .unwrap()
    };
    let out = bench(&copies);
    assert!(out.status.success(), "silt bench --archive failed: {out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rounds = report["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 2, "{report}");
    for (round, copy) in rounds.iter().zip(&copies) {
        assert_eq!(round["records"], 300, "{round}");
        assert_eq!(round["files"], 2, "a file per partition: {round}");
        assert!(round["secs"].as_f64().unwrap() > 0.0, "{round}");
        let files = parquet_files(&copy.join("objects").join("archive"));
        let written: u64 = files
            .iter()
            .map(|f| std::fs::metadata(f).unwrap().len())
            .sum();
        assert_eq!(round["parquet_bytes"].as_u64(), Some(written), "{round}");
        let offsets: usize = files.iter().map(|f| rows(f).len()).sum();
        assert_eq!(offsets, 300);
    }
    // Then the same rows, from memory, encoded once per directory given.
    let encodes = report["encode_from_memory"].as_array().unwrap();
    assert_eq!(encodes.len(), 2, "{report}");
    for e in encodes {
        assert_eq!(e["records"], 300, "{e}");
        assert!(e["parquet_bytes"].as_u64().unwrap() > 0, "{e}");
    }
    let again = bench(&copies[..1]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("nothing to archive"),
        "{again:?}"
    );
}
