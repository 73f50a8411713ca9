//! `silt probe`: a canary, as Kafka Monitor is for Kafka. Every interval it
//! produces a record stamped with its send time to a canary topic and reads
//! the topic back, exporting on its own `/metrics`:
//! * `silt_probe_produce_total{outcome}` (`ok`, `error`, `timeout`) and
//!   `silt_probe_available` (1 while the last produce succeeded in time);
//! * `silt_probe_e2e_seconds`, a histogram of send → read back, and
//!   `silt_probe_e2e_last_ms`, the latest of those.
//!
//! Produce and read run as separate loops, so a stalled read never stops
//! the availability signal, and records stored late (an agent paused
//! mid-request) show their whole delay when read.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::cli::ClientArgs;
use crate::client::Client;

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The canary topic (created with one partition if missing).
    #[arg(long, default_value = "silt-canary")]
    pub topic: String,
    /// Time between probe records.
    #[arg(long, default_value_t = 1000)]
    pub interval_ms: u64,
    /// A produce slower than this counts as unavailable.
    #[arg(long, default_value_t = 2000)]
    pub timeout_ms: u64,
    /// Serve the probe's metrics (`GET /metrics`) here; port 0 picks one
    /// (the address is printed on stdout).
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub metrics_listen: SocketAddr,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

/// What a canary does, wherever it runs (`silt probe`, or inside an agent).
#[derive(Debug, Clone)]
pub struct Canary {
    pub topic: String,
    pub interval: Duration,
    /// A produce slower than this counts as unavailable.
    pub timeout: Duration,
}

impl Canary {
    pub fn new(topic: &str, interval_ms: u64, timeout_ms: u64) -> Self {
        Self {
            topic: topic.to_owned(),
            interval: Duration::from_millis(interval_ms.max(10)),
            timeout: Duration::from_millis(timeout_ms),
        }
    }
}

impl ProbeArgs {
    fn canary(&self) -> Canary {
        Canary::new(&self.topic, self.interval_ms, self.timeout_ms)
    }
}

#[derive(Debug, Clone)]
pub struct Metrics {
    produce: Family<Outcome, Counter>,
    available: Gauge,
    e2e: Histogram,
    e2e_last_ms: Gauge,
}

impl Metrics {
    /// Registers the `silt_probe_*` metrics.
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self {
            produce: Family::default(),
            available: Gauge::default(),
            e2e: Histogram::new([0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0]),
            e2e_last_ms: Gauge::default(),
        };
        let r = registry.sub_registry_with_prefix("silt_probe");
        r.register(
            "produce",
            "Probe produces by outcome (ok, error, timeout)",
            m.produce.clone(),
        );
        r.register(
            "available",
            "1 while the last probe produce succeeded in time",
            m.available.clone(),
        );
        r.register(
            "e2e_seconds",
            "Probe records from send to read back",
            m.e2e.clone(),
        );
        r.register(
            "e2e_last_ms",
            "The latest probe record's send-to-read time",
            m.e2e_last_ms.clone(),
        );
        m
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub async fn run(a: ProbeArgs) -> anyhow::Result<()> {
    let client = Client::new(&a.client.url);
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let listener = tokio::net::TcpListener::bind(a.metrics_listen).await?;
    #[allow(clippy::print_stdout)]
    {
        println!(
            "silt probe metrics on http://{}/metrics",
            listener.local_addr()?
        );
    }
    tokio::spawn(async move {
        if let Err(e) = crate::server::serve_metrics_on(listener, registry).await {
            tracing::error!(error = %e, "probe metrics endpoint failed");
        }
    });
    let stop = CancellationToken::new();
    run_canary(client, a.canary(), metrics, stop).await
}

/// Runs a canary against `client`'s agent until `stop`: creates its topic
/// if missing (retrying until the agent answers), then produces and reads
/// back. Its records carry this canary's random id as their key, and it
/// times only those: canaries sharing the topic (one per agent, and
/// `silt probe`) never measure each other.
pub async fn run_canary(
    client: Client,
    c: Canary,
    metrics: Metrics,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let id = format!("{:016x}", rand::random::<u64>());
    let start = loop {
        match prepare(&client, &c.topic).await {
            Ok(start) => break start,
            Err(e) => {
                tracing::warn!(error = %e, topic = c.topic, "canary: its topic is not reachable yet; retrying");
                metrics.available.set(0);
            }
        }
        tokio::select! {
            () = tokio::time::sleep(c.interval.max(Duration::from_secs(1))) => {}
            () = stop.cancelled() => return Ok(()),
        }
    };
    let reader = tokio::spawn(read_back(
        client.clone(),
        c.topic.clone(),
        id.clone(),
        start,
        metrics.clone(),
    ));
    let produced = tokio::select! {
        r = produce_every(&client, &c, &id, &metrics) => r,
        () = stop.cancelled() => Ok(()),
    };
    reader.abort();
    produced
}

/// Creates the canary topic if missing; returns its end offset as of now,
/// where reading starts (only this run's records are measured).
async fn prepare(client: &Client, topic: &str) -> anyhow::Result<u64> {
    let path = format!("/v1/topics/{topic}");
    if client.get(&path).await.is_err() {
        // Created by this canary or by another one at the same time.
        let _ = client
            .post("/v1/topics", &json!({"name": topic, "partitions": 1}))
            .await;
        client.get(&path).await?;
    }
    Ok(
        client.get(&format!("{path}/partitions/0/offsets")).await?["latest_offset"]
            .as_u64()
            .unwrap_or(0),
    )
}

/// How long a slow probe request may go on after it counted as a timeout.
const GIVE_UP: Duration = Duration::from_secs(30);

/// Produces one stamped record per interval, forever.
async fn produce_every(client: &Client, c: &Canary, id: &str, m: &Metrics) -> anyhow::Result<()> {
    let url = client.url(&format!("/v1/topics/{}/partitions/0/records", c.topic));
    let timeout = c.timeout;
    let mut tick = tokio::time::interval(c.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let in_flight = Arc::new(tokio::sync::Semaphore::new(64));
    loop {
        tick.tick().await;
        // Each produce runs on its own, so one stuck request never delays
        // the next probe; a bounded number may be outstanding.
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            m.produce
                .get_or_create(&Outcome { outcome: "timeout" })
                .inc();
            m.available.set(0);
            continue;
        };
        let (http, url, m) = (client.http().clone(), url.clone(), m.clone());
        let body = json!({"records": [{"key": id, "value": now_ms().to_string()}]});
        tokio::spawn(async move {
            let _permit = permit;
            let request = http.post(&url).json(&body).timeout(GIVE_UP).send();
            tokio::pin!(request);
            let outcome = match tokio::time::timeout(timeout, &mut request).await {
                Ok(Ok(res)) if res.status().is_success() => "ok",
                Ok(_) => "error",
                Err(_) => "timeout",
            };
            m.produce.get_or_create(&Outcome { outcome }).inc();
            m.available.set(i64::from(outcome == "ok"));
            if outcome == "timeout" {
                // The request goes on, so a record stored late still shows
                // its whole delay when read back.
                let _ = request.await;
            }
        });
    }
}

/// Reads the canary partition from `next` on, timing each of this
/// canary's records (key `id`).
async fn read_back(client: Client, topic: String, id: String, mut next: u64, m: Metrics) {
    loop {
        let path = format!(
            "/v1/topics/{topic}/partitions/0/records?offset={next}&max_records=1000&wait_ms=1000"
        );
        match client.get(&path).await {
            Ok(v) => {
                let ours = v["records"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|r| r["key"].as_str() == Some(id.as_str()));
                for r in ours {
                    if let Some(sent) = r["value"].as_str().and_then(|s| s.parse::<i64>().ok()) {
                        let ms = (now_ms() - sent).max(0);
                        m.e2e.observe(ms as f64 / 1e3);
                        m.e2e_last_ms.set(ms);
                    }
                }
                next = v["next_offset"].as_u64().unwrap_or(next);
            }
            Err(e) => {
                tracing::debug!(error = %e, "probe read failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
