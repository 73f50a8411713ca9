//! Jepsen-style fault runs: producers, tailers and group members record a
//! history against three agents while a nemesis kills and pauses them; the
//! checker then counts every anomaly Jepsen's Kafka checker names, and each
//! must be zero. Clients must also all make progress again within 30 s of
//! the faults stopping.
//!
//! Short in CI; `SILT_JEPSEN_SECS=300` runs each fault phase for five
//! minutes, and `SILT_JEPSEN_SEED` replays a nemesis schedule.

pub mod checker;
mod cluster;
pub mod history;
mod workload;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::common::Client;
use crate::common::garage::Garage;
use crate::common::s3_proxy::{S3Faults, S3Proxy};
use checker::{FinalLog, Report, check};
use cluster::{Cluster, Faults, Store, nemesis};
use workload::{Ctx, TOPIC};

const PARTITIONS: u32 = 4;
const PRODUCERS: usize = 8;
const TAILERS: usize = 4;
const MEMBERS: usize = 4;

fn fault_secs() -> u64 {
    std::env::var("SILT_JEPSEN_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12)
}

fn seed() -> u64 {
    std::env::var("SILT_JEPSEN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random)
}

/// What breaks during the fault phase.
enum Nemesis {
    /// Agents SIGKILLed and SIGSTOPped at random.
    KillAndPause,
    /// The object store fails (through the cluster's S3 proxy).
    ObjectStore(S3Faults),
    /// Faults the cluster's agents were started with (metadata faults,
    /// clock jumps); they end when those agents restart without them.
    Started,
}

/// What a run did and found.
struct Run {
    report: Report,
    faults: Faults,
    /// What the S3 proxy injected, if there was one.
    store_faults: Option<String>,
    /// The slowest client's time from healing to its first success.
    slowest_recovery: Duration,
}

async fn run(store: Store, nemesis_kind: Nemesis) -> Run {
    run_on(Cluster::start(3, store), nemesis_kind).await
}

async fn run_on(cluster: Arc<Cluster>, nemesis_kind: Nemesis) -> Run {
    let seed = seed();
    eprintln!("jepsen: seed {seed} (SILT_JEPSEN_SEED replays the nemesis)");
    Client::new(&cluster.any_url())
        .create_topic(TOPIC, PARTITIONS)
        .await;
    let ctx = Ctx::new(cluster.clone());
    let producing = CancellationToken::new();
    let consuming = CancellationToken::new();
    let drain_to: Arc<Mutex<Option<Vec<u64>>>> = Arc::default();
    let committed: Arc<Mutex<BTreeMap<u32, u64>>> = Arc::default();

    let producers: Vec<_> = (0..PRODUCERS)
        .map(|n| tokio::spawn(workload::producer(ctx.clone(), n, 10, producing.clone())))
        .collect();
    let mut consumers: Vec<_> = (0..TAILERS)
        .map(|n| {
            tokio::spawn(workload::tailer(
                ctx.clone(),
                n,
                PARTITIONS,
                drain_to.clone(),
                consuming.clone(),
            ))
        })
        .collect();
    consumers.extend((0..MEMBERS).map(|n| {
        tokio::spawn(workload::member(
            ctx.clone(),
            n,
            drain_to.clone(),
            committed.clone(),
            consuming.clone(),
        ))
    }));

    // Faults, then a calm period in which every client must progress.
    let faults = match nemesis_kind {
        Nemesis::KillAndPause => {
            let faulting = CancellationToken::new();
            let nemesis = tokio::spawn(nemesis(cluster.clone(), seed, faulting.clone()));
            tokio::time::sleep(Duration::from_secs(fault_secs())).await;
            faulting.cancel();
            nemesis.await.unwrap()
        }
        Nemesis::ObjectStore(faults) => {
            let proxy = cluster
                .proxy()
                .expect("an object-store nemesis needs the S3 proxy");
            proxy.set_faults(faults);
            tokio::time::sleep(Duration::from_secs(fault_secs())).await;
            proxy.set_faults(S3Faults::default());
            Faults::default()
        }
        Nemesis::Started => {
            tokio::time::sleep(Duration::from_secs(fault_secs())).await;
            let metadata_retries = cluster
                .scrape_sum("silt_metadata_transaction_retries_total")
                .await;
            let metadata_transactions =
                cluster.scrape_sum("silt_metadata_transactions_total").await;
            cluster.calm().await;
            Faults {
                metadata_transactions,
                metadata_retries,
                ..Faults::default()
            }
        }
    };
    let healed = Instant::now();
    let deadline = healed + Duration::from_secs(30);
    let slowest_recovery = loop {
        let progress = ctx.progress.lock().clone();
        let recovered = progress.len() == PRODUCERS + TAILERS + MEMBERS
            && progress.values().all(|t| *t > healed);
        if recovered {
            break progress.values().max().unwrap().duration_since(healed);
        }
        let stuck: Vec<_> = progress
            .iter()
            .filter(|(_, t)| **t <= healed)
            .map(|(n, _)| n.clone())
            .collect();
        assert!(
            Instant::now() < deadline,
            "no progress 30 s after healing: {stuck:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Stop producing; consumers drain to the final high-watermarks.
    producing.cancel();
    for p in producers {
        p.await.unwrap();
    }
    let client = Client::new(&cluster.any_url());
    let hwm = client.high_watermarks(TOPIC).await;
    *drain_to.lock() = Some(hwm.clone());
    consuming.cancel();
    let drained = tokio::time::timeout(Duration::from_secs(60), async {
        for c in consumers {
            c.await.unwrap();
        }
    })
    .await;
    assert!(
        drained.is_ok(),
        "consumers did not drain to {hwm:?} within 60 s"
    );

    let mut log: FinalLog = Vec::new();
    for (p, &until) in hwm.iter().enumerate() {
        let records = client.read_all(TOPIC, p as u32, 0, until).await;
        log.push(
            records
                .iter()
                .map(|r| {
                    (
                        r["offset"].as_u64().unwrap(),
                        r["value"].as_str().unwrap().to_owned(),
                    )
                })
                .collect(),
        );
    }
    let report = check(&ctx.history, &log);
    Run {
        report,
        faults,
        store_faults: cluster.proxy().map(|p| p.injected.summary()),
        slowest_recovery,
    }
}

fn judge(name: &str, r: Run) {
    eprintln!(
        "jepsen {name}: {} kills, {} pauses, {} metadata retries in {} transactions; object store: {}; recovered within {:?}; {}",
        r.faults.kills,
        r.faults.pauses,
        r.faults.metadata_retries,
        r.faults.metadata_transactions,
        r.store_faults.as_deref().unwrap_or("no faults"),
        r.slowest_recovery,
        r.report
    );
    assert!(r.report.is_valid(), "anomalies: {}", r.report);
    assert!(r.report.acked_records > 0 && r.report.commits > 0);
    assert_eq!(
        (r.report.refused_records, r.report.unknown_records),
        (0, 0),
        "every send is acknowledged in the end"
    );
}

/// Three agents on local disk, killed and paused at random.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_killed_and_paused_on_local_disk() {
    let r = run(Store::Local, Nemesis::KillAndPause).await;
    assert!(
        r.faults.kills + r.faults.pauses >= 3,
        "the nemesis hardly ran"
    );
    judge("local disk", r);
}

/// The same on the S3 server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_killed_and_paused_on_s3() {
    let Some(garage) = Garage::start() else {
        return;
    };
    let r = run(Store::S3(garage), Nemesis::KillAndPause).await;
    assert!(
        r.faults.kills + r.faults.pauses >= 3,
        "the nemesis hardly ran"
    );
    judge("s3", r);
}

/// The S3 server failing under three agents: 503s, slow answers (PUTs
/// completing out of order), PUTs whose answer is lost after they were
/// stored, and GETs with a flipped bit or cut short — which checksums must
/// catch, never serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_object_store_fails_slows_and_corrupts() {
    let Some(garage) = Garage::start() else {
        return;
    };
    let proxy = S3Proxy::start(&garage.endpoint, S3Faults::default(), seed()).await;
    let injected = proxy.injected.clone();
    let faults = S3Faults {
        unavailable: 0.05,
        slow: 0.05,
        lost_reply: 0.03,
        corrupt: 0.05,
        truncate: 0.03,
        lost_reply_delay: Duration::from_millis(1500),
    };
    let r = run(
        Store::S3Proxied(garage, proxy),
        Nemesis::ObjectStore(faults),
    )
    .await;
    assert!(injected.total() >= 20, "few faults: {}", injected.summary());
    judge("s3 faults", r);
}

/// Every agent's metadata transactions fail about 10% of the time: errors
/// on begin and reads, conflicts, unknown results applied or not, commits
/// landing after the agent gave up on them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_transactions_fail() {
    let cluster = Cluster::start_with_faults(3, Store::Local, &[("SILT_FAULT_METADATA", "0.1")], 3);
    let r = run_on(cluster, Nemesis::Started).await;
    let f = r.faults;
    assert!(
        f.metadata_retries * 20 >= f.metadata_transactions && f.metadata_retries >= 100,
        "fewer than 5% of metadata transactions met a fault: {} of {}",
        f.metadata_retries,
        f.metadata_transactions
    );
    judge("metadata faults", r);
}

/// One agent's clock jumps 60 s back and forth every 3 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_clock_jumps() {
    let cluster =
        Cluster::start_with_faults(3, Store::Local, &[("SILT_FAULT_CLOCK_JUMP_MS", "60000")], 1);
    judge("clock jumps", run_on(cluster, Nemesis::Started).await);
}
