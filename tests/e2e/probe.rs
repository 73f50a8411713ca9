//! `silt probe` against a real agent: availability drops while the agent is
//! frozen (SIGSTOP) for 5 s and recovers after, and the end-to-end latency
//! histogram shows records delayed by the pause.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Silt, tempdir};

/// A metric's value from a Prometheus text exposition (first match).
fn value(text: &str, sample: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

async fn scrape(url: &str) -> String {
    match reqwest::get(url).await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Scrapes until `ok` holds or `secs` pass; the last text either way.
async fn until(url: &str, secs: u64, ok: impl Fn(&str) -> bool) -> (bool, String) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let text = scrape(url).await;
        if ok(&text) {
            return (true, text);
        }
        if Instant::now() > deadline {
            return (false, text);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The probe process, killed when the test ends (passed or not).
struct Probe(std::process::Child);

impl Drop for Probe {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_sees_a_frozen_agent_and_its_recovery() {
    let dir = tempdir();
    let server = Silt::dev(dir.path(), &[]);
    let mut probe = Probe(
        Command::new(env!("CARGO_BIN_EXE_silt"))
            .args(["probe", "--url", &server.url, "--interval-ms", "200"])
            .args(["--timeout-ms", "1000", "--metrics-listen", "127.0.0.1:0"])
            .env("SILT_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(probe.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let metrics = line
        .trim()
        .strip_prefix("silt probe metrics on ")
        .unwrap_or_else(|| panic!("probe said {line:?}"))
        .to_owned();
    let available = |t: &str| value(t, "silt_probe_available");
    let (up, text) = until(&metrics, 30, |t| {
        available(t) == Some(1.0)
            && value(t, "silt_probe_e2e_seconds_count").is_some_and(|n| n >= 3.0)
    })
    .await;
    assert!(up, "the probe never saw the agent work:\n{text}");

    server.pause(true);
    let frozen = Instant::now();
    let (down, text) = until(&metrics, 4, |t| available(t) == Some(0.0)).await;
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(frozen.elapsed())).await;
    server.pause(false);
    assert!(
        down,
        "availability did not drop while the agent was frozen:\n{text}"
    );
    assert!(value(&text, r#"silt_probe_produce_total{outcome="timeout"}"#) > Some(0.0));

    let (recovered, text) = until(&metrics, 30, |t| {
        let count = value(t, "silt_probe_e2e_seconds_count").unwrap_or(0.0);
        let fast = value(t, r#"silt_probe_e2e_seconds_bucket{le="2.0"}"#).unwrap_or(0.0);
        available(t) == Some(1.0) && count - fast >= 1.0
    })
    .await;
    assert!(
        recovered,
        "no recovery, or no record delayed past 2 s by the pause:\n{text}"
    );
}
