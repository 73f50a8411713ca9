//! The client commands against a real server: `silt topics`, `silt produce`
//! (lines from stdin) and `silt consume`.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::common::{Silt, tempdir};

fn silt(url: &str, args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_silt"))
        .args(args)
        .env("SILT_URL", url)
        .env("SILT_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "silt {args:?} failed");
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_produce_consume_commands() {
    let dir = tempdir();
    let server = Silt::dev(dir.path(), &[]);
    let url = server.url.clone();
    let created = silt(
        &url,
        &[
            "topics",
            "create",
            "cli",
            "--partitions",
            "2",
            "--compression",
            "zstd",
        ],
        None,
    );
    assert!(created.contains("\"compression\": \"zstd\""), "{created}");
    // 200,000 keyed lines, several requests in flight (one per partition).
    const N: u32 = 200_000;
    let lines: String = (0..N)
        .map(|i| format!("user-{}:event {i}\n", i % 7))
        .collect();
    silt(
        &url,
        &["produce", "cli", "--key-separator", ":", "--in-flight", "4"],
        Some(&lines),
    );
    let described: serde_json::Value =
        serde_json::from_str(&silt(&url, &["topics", "describe", "cli", "--json"], None)).unwrap();
    let total: u64 = described["partition_states"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["high_watermark"].as_u64().unwrap())
        .sum();
    assert_eq!(total, u64::from(N));
    let out = silt(
        &url,
        &[
            "consume",
            "cli",
            "--from-beginning",
            "--exit-at-end",
            "--print-key",
        ],
        None,
    );
    let mut got: Vec<&str> = out.lines().collect();
    assert_eq!(got.len(), N as usize);
    // Per key, events keep the order they were produced in.
    for k in 0..7 {
        let key = format!("user-{k}\t");
        let events: Vec<u32> = got
            .iter()
            .filter_map(|l| l.strip_prefix(&key))
            .map(|e| e.trim_start_matches("event ").parse().unwrap())
            .collect();
        assert!(
            events.windows(2).all(|w| w[0] < w[1]),
            "key {k}: {events:?}"
        );
        assert_eq!(events.len(), (0..N).filter(|i| i % 7 == k).count());
    }
    got.sort();
    got.dedup();
    assert_eq!(got.len(), N as usize, "no duplicates");
    let one = silt(
        &url,
        &[
            "consume",
            "cli",
            "--partition",
            "0",
            "--offset",
            "0",
            "--exit-at-end",
        ],
        None,
    );
    assert_eq!(
        one.lines().count() as u64,
        described["partition_states"][0]["high_watermark"]
            .as_u64()
            .unwrap()
    );
    assert!(silt(&url, &["topics", "list", "--json"], None).contains("\"cli\""));
    // Tables by default: a header, then a row per topic or partition.
    let listed = silt(&url, &["topics", "list"], None);
    let mut rows = listed.lines();
    assert!(rows.next().unwrap().starts_with("TOPIC"), "{listed}");
    assert!(
        rows.any(|r| r.starts_with("cli ") && r.contains("compression=zstd")),
        "{listed}"
    );
    let described = silt(&url, &["topics", "describe", "cli"], None);
    assert_eq!(described.lines().count(), 2 + 2, "{described}");
    // kcat-style formats, and JSON lines.
    let formatted = silt(
        &url,
        &[
            "consume",
            "cli",
            "--partition",
            "0",
            "--offset",
            "0",
            "--exit-at-end",
            "-f",
            "%t %p %o %k=%s\\n",
        ],
        None,
    );
    let first = formatted.lines().next().unwrap();
    assert!(first.starts_with("cli 0 0 user-"), "{first}");
    let json = silt(
        &url,
        &[
            "consume",
            "cli",
            "--partition",
            "0",
            "--offset",
            "0",
            "--exit-at-end",
            "--json",
        ],
        None,
    );
    let record: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(
        (record["topic"].as_str(), record["offset"].as_u64()),
        (Some("cli"), Some(0))
    );
    let completions = silt(&url, &["completions", "bash"], None);
    assert!(completions.contains("share-groups"), "bash completions");
    silt(&url, &["topics", "delete", "cli"], None);
    assert!(!silt(&url, &["topics", "list", "--json"], None).contains("\"cli\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_with_a_group_commits_and_groups_shows_lag() {
    let dir = tempdir();
    let server = Silt::dev(dir.path(), &[]);
    let url = server.url.clone();
    silt(&url, &["topics", "create", "g", "--partitions", "3"], None);
    let lines: String = (0..120).map(|i| format!("k{i}:v{i}\n")).collect();
    silt(
        &url,
        &["produce", "g", "--key-separator", ":"],
        Some(&lines),
    );
    let args = [
        "consume",
        "g",
        "--group",
        "readers",
        "--from-beginning",
        "--exit-at-end",
    ];
    let first = silt(&url, &args, None);
    let mut got: Vec<&str> = first.lines().collect();
    got.sort();
    let mut want: Vec<String> = (0..120).map(|i| format!("v{i}")).collect();
    want.sort();
    assert_eq!(got, want, "every record once");
    // The group committed what it printed: a second run prints nothing.
    assert_eq!(silt(&url, &args, None), "");
    let described: serde_json::Value =
        serde_json::from_str(&silt(&url, &["groups", "describe", "readers"], None)).unwrap();
    let parts = described["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 3);
    assert!(parts.iter().all(|p| p["lag"] == 0), "{described}");
    assert_eq!(described["state"], "empty", "the consumer left");
    let listed = silt(&url, &["groups", "list"], None);
    assert!(listed.contains("\"readers\""), "{listed}");
}

/// `silt bench --kafka` runs both paths in one process and reports both:
/// everything produced is read back on each side, with no errors. (The
/// figures themselves belong to the benchmark, not to a test.)
#[test]
fn bench_compares_kafka_with_http() {
    let dir = tempdir();
    let data = dir.path().display().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_silt"))
        .args([
            "bench",
            "--embedded",
            "--kafka",
            "--data-dir",
            &data,
            "--duration-secs",
            "1",
            "--yardstick-bytes",
            "1048576",
            "--concurrency",
            "2",
            "--batch",
            "20",
            "--json",
        ])
        .env_remove("SILT_URL")
        .env("SILT_LOG", "warn")
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "silt bench --kafka failed");
    let out = String::from_utf8(out.stdout).unwrap();
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    for side in ["http", "kafka"] {
        let produced = r[side]["produce"]["records"].as_u64().unwrap();
        assert!(produced > 0, "{side} produced nothing: {r}");
        assert_eq!(r[side]["produce"]["errors"], 0, "{side}: {r}");
        assert_eq!(
            r[side]["consume"]["records"].as_u64(),
            Some(produced),
            "{side}: {r}"
        );
    }
    assert!(r["kafka_vs_http"]["produce"].as_f64().unwrap() > 0.0);
}

/// `silt bench --contention` runs its whole table on the simulated
/// FoundationDB, each cell with agents committing directly and through the
/// sequencer; a lone agent never retries, and sequenced commits never
/// conflict (one writer of partition states).
#[test]
fn bench_measures_commit_contention() {
    let out = Command::new(env!("CARGO_BIN_EXE_silt"))
        .args([
            "bench",
            "--contention",
            "--duration-secs",
            "1",
            "--contention-chunks",
            "4",
            "--sim-commit-ms",
            "1",
            "--sim-read-us",
            "50",
            "--json",
        ])
        .env_remove("SILT_URL")
        .env("SILT_LOG", "warn")
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "silt bench --contention failed");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cells = r["cells"].as_array().unwrap();
    assert_eq!(
        cells.len(),
        30,
        "5 agent counts x 3 partition counts x 2 modes"
    );
    for c in cells {
        assert_eq!(c["failed"], 0, "{c}");
        assert!(c["commits_per_sec"].as_f64().unwrap() > 0.0, "{c}");
    }
    let alone = &cells[0];
    assert_eq!(
        (
            alone["agents"].as_u64(),
            alone["retries_per_commit"].as_f64()
        ),
        (Some(1), Some(0.0))
    );
    for c in cells.iter().filter(|c| c["mode"] == "sequenced") {
        assert_eq!(c["retries_per_commit"].as_f64(), Some(0.0), "{c}");
    }
}
