//! `silt dev` on a disk that fills up, and on a data directory that turns
//! unwritable: producers get clear, retriable errors (503 with Retry-After,
//! never 500), nothing acknowledged is lost, and produce works again
//! without a restart once space (or write access) returns.
//!
//! The disk is a small tmpfs mounted for the test, which needs root; the
//! test says SKIPPED when it cannot mount one.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{Client, Silt, tempdir};

/// A tmpfs mounted on a fresh directory; unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Self> {
        let dir = tempdir();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            eprintln!("SKIPPED: disk-full suite: cannot mount a tmpfs here (it needs root)");
            return None;
        }
        Some(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount(&self, mode: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(self.path())
            .status()
            .unwrap()
            .success();
        assert!(ok, "remount {mode}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

/// Sets or clears a file attribute; false if the file system cannot.
fn chattr(flag: &str, path: &Path) -> bool {
    Command::new("chattr")
        .arg(flag)
        .arg(path)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Fills the file system with one file until it is full.
fn fill(path: &Path) -> PathBuf {
    use std::io::Write;
    let filler = path.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let block = vec![0u8; 64 << 10];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
    filler
}

/// Produces one record; `Some(offset)` if acknowledged.
async fn produce(c: &Client, value: &str) -> (u16, Option<u64>, serde_json::Value) {
    let a = c
        .post(
            "/v1/topics/full/records",
            &json!({"records": [{"value": value}]}),
        )
        .await;
    let offset = (a.status == 200).then(|| a.body["offsets"][0]["offset"].as_u64().unwrap());
    (a.status, offset, a.body)
}

/// Produces until two refusals were seen, checking each refusal is a clear,
/// retriable 503; returns the acknowledged `(offset, value)`s.
async fn produce_until_refused(c: &Client, tag: &str, acked: &mut Vec<(u64, String)>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut refused = 0;
    let mut i = 0;
    while refused < 2 {
        assert!(Instant::now() < deadline, "{tag}: never refused");
        let value = format!("{tag}-{i}-{}", "x".repeat(1000));
        i += 1;
        match produce(c, &value).await {
            (200, Some(o), _) => acked.push((o, value)),
            (status, _, body) => {
                assert_eq!(status, 503, "{tag}: a clear, retriable answer: {body}");
                assert_eq!(body["retriable"], true, "{body}");
                refused += 1;
            }
        }
    }
}

/// Produces until acknowledged again (the store recovered by itself).
async fn produce_until_acked(c: &Client, tag: &str, acked: &mut Vec<(u64, String)>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let value = format!("{tag}-recovered");
        if let (200, Some(o), _) = produce(c, &value).await {
            acked.push((o, value));
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{tag}: produce did not recover without a restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The segment directory turns unwritable (immutable: even root cannot add
/// files), then writable again.
async fn unwritable_segments(c: &Client, data: &Path, acked: &mut Vec<(u64, String)>) {
    let segments = data.join("objects").join("segments");
    if !chattr("+i", &segments) {
        eprintln!("SKIPPED: unwritable-directory part: chattr +i is not supported here");
        return;
    }
    produce_until_refused(c, "unwritable", acked).await;
    assert!(chattr("-i", &segments));
    produce_until_acked(c, "unwritable", acked).await;
}

/// Segments and metadata on the disk that fills up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_or_unwritable_disk_fails_clearly_and_recovers() {
    full_disk(false).await;
}

/// Only the metadata (`meta.db`) on the disk that fills up: SQLite's "disk
/// full" must be as retriable as the object store's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_metadata_disk_fails_clearly_and_recovers() {
    full_disk(true).await;
}

async fn full_disk(objects_elsewhere: bool) {
    let Some(disk) = Tmpfs::mount("24m") else {
        return;
    };
    let data = disk.path().join("silt");
    let elsewhere = tempdir();
    let objects = crate::common::file_url(elsewhere.path());
    let mut args = vec!["--archive", "false"];
    if objects_elsewhere {
        args.extend(["--object-store", objects.as_str()]);
    }
    let silt = Silt::dev(&data, &args);
    let c = silt.client();
    c.create_topic("full", 1).await;
    let mut acked = Vec::new();
    for i in 0..20 {
        let (status, offset, body) = produce(&c, &format!("before-{i}")).await;
        assert_eq!(status, 200, "{body}");
        acked.push((offset.unwrap(), format!("before-{i}")));
    }

    // The disk fills up: refused clearly, then accepted again once freed.
    let filler = fill(disk.path());
    produce_until_refused(&c, "full", &mut acked).await;
    std::fs::remove_file(&filler).unwrap();
    produce_until_acked(&c, "full", &mut acked).await;

    // (SQLite keeps its files open, which an immutable flag does not stop;
    // its full disk was covered above.)
    if !objects_elsewhere {
        unwritable_segments(&c, &data, &mut acked).await;
    }

    // Nothing acknowledged was lost, and nothing else is there.
    let hwm = c.high_watermarks("full").await[0];
    let log = c.read_all("full", 0, 0, hwm).await;
    assert_eq!(
        log.len(),
        acked.len(),
        "only acknowledged records are stored"
    );
    for (offset, value) in &acked {
        assert_eq!(
            log[*offset as usize]["value"].as_str(),
            Some(value.as_str()),
            "acknowledged record at {offset}"
        );
    }
}

/// `silt dev` on a directory it cannot write exits with a message naming
/// it, instead of starting half-broken.
#[tokio::test]
async fn an_unwritable_data_directory_is_a_clear_startup_error() {
    let Some(disk) = Tmpfs::mount("1m") else {
        return;
    };
    disk.remount("ro");
    let data = disk.path().join("silt");
    let out = Command::new(env!("CARGO_BIN_EXE_silt"))
        .args(["dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("SILT_LOG", "warn")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&data.display().to_string()) && stderr.contains("Read-only"),
        "names the directory and the cause: {stderr}"
    );
}
