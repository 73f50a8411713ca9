//! Share groups (queue semantics) across two real agent processes: workers
//! that lose and release leases, poison records that end in the dead-letter
//! topic and come back on replay, key ordering, and workers and agents
//! killed mid-way. Workers send each request to the next agent in turn.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};

use crate::common::{Answer, Client, Cluster, Silt, cluster};

/// Clients of the live agents; requests go to each in turn, and a request
/// that finds an agent dead (or overloaded) is tried on the next.
#[derive(Clone)]
struct Agents {
    clients: Arc<RwLock<Vec<Client>>>,
    next: Arc<AtomicUsize>,
}

impl Agents {
    fn new(c: &Cluster) -> Self {
        Self {
            clients: Arc::new(RwLock::new(c.agents.iter().map(Silt::client).collect())),
            next: Arc::default(),
        }
    }

    fn set(&self, i: usize, c: Client) {
        self.clients.write()[i] = c;
    }

    async fn get_json(&self, path: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (http, base) = {
                let clients = self.clients.read();
                let c = &clients[self.next.fetch_add(1, Ordering::Relaxed) % clients.len()];
                (c.http.clone(), c.base.clone())
            };
            if let Ok(res) = http.get(format!("{base}{path}")).send().await {
                if res.status().as_u16() == 200 {
                    return res.json().await.unwrap();
                }
            }
            assert!(Instant::now() < deadline, "no agent answered {path}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn post(&self, path: &str, body: &Value) -> Answer {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (http, base) = {
                let clients = self.clients.read();
                let c = &clients[self.next.fetch_add(1, Ordering::Relaxed) % clients.len()];
                (c.http.clone(), c.base.clone())
            };
            let sent = http
                .post(format!("{base}{path}"))
                .json(body)
                .timeout(Duration::from_secs(20))
                .send()
                .await;
            if let Ok(res) = sent {
                let status = res.status().as_u16();
                let body = res.json::<Value>().await.unwrap_or(Value::Null);
                if !matches!(status, 429 | 503) {
                    return Answer {
                        status,
                        content_type: String::new(),
                        retry_after: None,
                        body,
                    };
                }
            }
            assert!(Instant::now() < deadline, "no agent answered {path}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn create_group(a: &Agents, group: &str, spec: Value) {
    let c = a.clients.read()[0].http.clone();
    let base = a.clients.read()[0].base.clone();
    let res = c
        .put(format!("{base}/v1/share-groups/{group}"))
        .json(&spec)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    assert_eq!(status, 201, "{:?}", res.text().await);
}

/// One delivery as a worker sees it.
#[derive(Debug, Clone)]
struct Got {
    id: String,
    partition: u64,
    offset: u64,
    count: u64,
    until_ms: i64,
    key: String,
    value: String,
}

async fn fetch(a: &Agents, group: &str, max: usize, lease_ms: u64) -> Vec<Got> {
    let r = a
        .post(
            &format!("/v1/share-groups/{group}/fetch"),
            &json!({"max_records": max, "lease_ms": lease_ms, "wait_ms": 200}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| Got {
            id: d["delivery_id"].as_str().unwrap().into(),
            partition: d["partition"].as_u64().unwrap(),
            offset: d["offset"].as_u64().unwrap(),
            count: d["delivery_count"].as_u64().unwrap(),
            until_ms: d["lease_until_ms"].as_i64().unwrap(),
            key: d["key"].as_str().unwrap_or_default().into(),
            value: d["value"].as_str().unwrap_or_default().into(),
        })
        .collect()
}

async fn ack(a: &Agents, group: &str, body: Value) -> Value {
    let r = a
        .post(&format!("/v1/share-groups/{group}/acks"), &body)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body
}

async fn produce_numbered(c: &Client, topic: &str, n: usize, key: impl Fn(usize) -> String) {
    for start in (0..n).step_by(1000) {
        let records: Vec<Value> = (start..(start + 1000).min(n))
            .map(|i| json!({"key": key(i), "value": format!("v{i}")}))
            .collect();
        c.produce(topic, &json!(records)).await;
    }
}

async fn describe(c: &Client, group: &str) -> Value {
    let r = c.get(&format!("/v1/share-groups/{group}")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body
}

/// Every delivery of every record, by `(partition, offset)`.
type Log = Arc<Mutex<HashMap<(u64, u64), Vec<Got>>>>;
/// The delivery counts a record was seen with, by `(partition, offset)`.
type Counts = Arc<Mutex<HashMap<(u64, u64), Vec<u64>>>>;

/// 50,000 records, 6 workers on 2 agents; 10% of deliveries are never
/// acked and 5% released. In the end every record is accepted exactly
/// once, no record was leased to two deliveries at once, delivery counts
/// grow one by one, and a lost lease's redelivery waits out the backoff.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_record_is_accepted_once_despite_lost_and_released_leases() {
    const N: usize = 50_000;
    const LEASE_MS: u64 = 1_000;
    let c = cluster();
    let agents = Agents::new(&c);
    let admin = c.agents[0].client();
    admin.create_topic("jobs", 4).await;
    produce_numbered(&admin, "jobs", N, |i| format!("k{}", i % 97)).await;
    create_group(
        &agents,
        "workers",
        json!({"topics": ["jobs"], "max_deliveries": 100, "max_in_flight": 2000,
               "backoff": {"base_ms": 200, "factor": 2.0, "cap_ms": 800, "jitter": 0.1}}),
    )
    .await;

    let log: Log = Arc::default();
    let released: Arc<Mutex<std::collections::HashSet<String>>> = Arc::default();
    let accepted = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for w in 0..6u64 {
        let (agents, log, accepted, released) = (
            agents.clone(),
            log.clone(),
            accepted.clone(),
            released.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(w);
            let deadline = Instant::now() + Duration::from_secs(240);
            while accepted.load(Ordering::Relaxed) < N {
                assert!(Instant::now() < deadline, "worker {w}: not done in time");
                let got = fetch(&agents, "workers", 200, LEASE_MS).await;
                let (mut accept, mut release) = (Vec::new(), Vec::new());
                for g in got {
                    log.lock()
                        .entry((g.partition, g.offset))
                        .or_default()
                        .push(g.clone());
                    match rng.random_range(0..100) {
                        0..10 => {}
                        10..15 => {
                            released.lock().insert(g.id.clone());
                            release.push(g.id);
                        }
                        _ => accept.push(g.id),
                    }
                }
                if accept.is_empty() && release.is_empty() {
                    continue;
                }
                let out = ack(
                    &agents,
                    "workers",
                    json!({"accept": accept, "release": release}),
                )
                .await;
                let stale: Vec<&Value> = out["stale"].as_array().unwrap().iter().collect();
                let fresh = accept
                    .iter()
                    .filter(|id| !stale.contains(&&json!(id)))
                    .count();
                accepted.fetch_add(fresh, Ordering::Relaxed);
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }

    let (log, released) = (log.lock().clone(), released.lock().clone());
    assert_eq!(log.len(), N, "every record was delivered");
    let mut redelivered_after_loss = 0;
    for ((p, o), deliveries) in log.iter() {
        let counts: Vec<u64> = deliveries.iter().map(|d| d.count).collect();
        let expected: Vec<u64> = (1..=counts.len() as u64).collect();
        assert_eq!(counts, expected, "{p}/{o}: counts grow one by one");
        for pair in deliveries.windows(2) {
            let started = pair[1].until_ms - LEASE_MS as i64;
            if released.contains(&pair[0].id) {
                assert!(started >= pair[0].until_ms - LEASE_MS as i64, "{p}/{o}");
            } else {
                // A lease that ran out waits out its backoff before the
                // next delivery: 200 ms · 2^(n-1), capped at 800, less
                // the 10% jitter. So no two leases overlap.
                let n = pair[0].count as i32;
                let floor = (200.0 * 2f64.powi(n - 1)).min(800.0) * 0.9;
                assert!(
                    (started - pair[0].until_ms) as f64 >= floor - 5.0,
                    "{p}/{o}: redelivered {} ms after the lease ended, before the {floor} ms backoff",
                    started - pair[0].until_ms
                );
                redelivered_after_loss += 1;
            }
        }
    }
    assert!(
        redelivered_after_loss > N / 20,
        "lost leases were redelivered"
    );
    let g = describe(&admin, "workers").await;
    assert_eq!(g["totals"]["accepted"], N as u64, "{g}");
    assert_eq!(g["totals"]["leased"], 0, "{g}");
    assert_eq!(g["totals"]["available"], 0, "{g}");
    assert!(g["totals"]["redelivered"].as_u64().unwrap() > (N / 10) as u64);
}

/// Poison records (released by the worker every time) reach the
/// dead-letter topic after exactly `max_deliveries` deliveries without
/// holding up the others; a rejected record goes at once; replay brings
/// them back and they are delivered afresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_are_dead_lettered_and_replayed() {
    let c = cluster();
    let agents = Agents::new(&c);
    let admin = c.agents[1].client();
    admin.create_topic("orders", 2).await;
    produce_numbered(&admin, "orders", 300, |i| format!("k{i}")).await;
    create_group(
        &agents,
        "billing",
        json!({"topics": ["orders"], "max_deliveries": 3, "lease_ms": 5000,
               "backoff": {"base_ms": 100, "factor": 2.0, "cap_ms": 400, "jitter": 0.0}}),
    )
    .await;
    let poison = |v: &str| v.ends_with('7');
    let mut accepted = BTreeMap::new();
    let mut poison_seen: HashMap<String, u64> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while accepted.len() < 269 || poison_seen.len() < 30 || poison_seen.values().any(|&n| n < 3) {
        assert!(Instant::now() < deadline, "accepted {}", accepted.len());
        let got = fetch(&agents, "billing", 50, 5_000).await;
        let (mut accept, mut release, mut reject) = (Vec::new(), Vec::new(), Vec::new());
        for g in got {
            if g.value == "v13" {
                reject.push(g.id);
            } else if poison(&g.value) {
                *poison_seen.entry(g.value.clone()).or_default() += 1;
                assert!(g.count <= 3, "{} delivered {} times", g.value, g.count);
                release.push(g.id);
            } else {
                assert!(accepted.insert(g.value.clone(), g.count).is_none());
                accept.push(g.id);
            }
        }
        ack(
            &agents,
            "billing",
            json!({"accept": accept, "release": release, "reject": reject}),
        )
        .await;
    }
    assert_eq!(accepted.len(), 269, "every other record was accepted");
    assert_eq!(poison_seen.len(), 30);
    // The dead letters: 30 poison records after 3 deliveries, v13 rejected.
    // Copies are made before the acks answer.
    assert_eq!(
        admin.high_watermarks("orders.dlq").await,
        [31],
        "each copied once"
    );
    let dead = admin.read_all("orders.dlq", 0, 0, 31).await;
    for d in &dead {
        let h: HashMap<&str, &str> = d["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| (h["key"].as_str().unwrap(), h["value"].as_str().unwrap()))
            .collect();
        let value = d["value"].as_str().unwrap();
        assert_eq!(h["silt-dlq-topic"], "orders");
        assert_eq!(h["silt-dlq-group"], "billing");
        if value == "v13" {
            assert_eq!(
                (h["silt-dlq-reason"], h["silt-dlq-deliveries"]),
                ("rejected", "1")
            );
        } else {
            assert!(poison(value));
            assert_eq!(
                (h["silt-dlq-reason"], h["silt-dlq-deliveries"]),
                ("max_deliveries", "3")
            );
        }
    }
    let g = describe(&admin, "billing").await;
    assert_eq!(g["totals"]["dead_lettered"], 31, "{g}");
    assert_eq!(g["totals"]["accepted"], 269, "{g}");
    // The same figures from the CLI, and per partition in /metrics.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_silt"))
        .args(["share-groups", "describe", "billing", "--url", &admin.base])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli["totals"], g["totals"]);
    let mut dead_per_partition = [0u64; 2];
    for a in &c.agents {
        let text = reqwest::get(format!("{}/metrics", a.client().base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for line in text
            .lines()
            .filter(|l| l.starts_with("silt_share_dead_lettered{"))
        {
            if line.contains(r#"group="billing""#) {
                let p = usize::from(line.contains(r#"partition="1""#));
                let n: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
                dead_per_partition[p] = dead_per_partition[p].max(n);
            }
        }
    }
    assert_eq!(
        dead_per_partition.iter().sum::<u64>(),
        31,
        "{dead_per_partition:?}"
    );

    // Replay: the dead letters come back as new records, delivered afresh.
    let r = agents
        .post("/v1/share-groups/billing/dlq/replay", &json!({}))
        .await;
    assert_eq!(r.body["replayed"], 31, "{:?}", r.body);
    let again = agents
        .post("/v1/share-groups/billing/dlq/replay", &json!({}))
        .await;
    assert_eq!(again.body["replayed"], 0, "replay moves each once");
    let mut back = Vec::new();
    let wait = Instant::now() + Duration::from_secs(20);
    while back.len() < 31 {
        assert!(Instant::now() < wait, "replayed back: {}", back.len());
        let got = fetch(&agents, "billing", 50, 5_000).await;
        let ids: Vec<String> = got.iter().map(|g| g.id.clone()).collect();
        for g in got {
            assert_eq!(g.count, 1, "a replayed record is a new record");
            back.push(g.value);
        }
        ack(&agents, "billing", json!({"accept": ids})).await;
    }
    back.sort();
    let mut expected: Vec<String> = dead
        .iter()
        .map(|d| d["value"].as_str().unwrap().to_owned())
        .collect();
    expected.sort();
    assert_eq!(back, expected);
}

/// With `ordering: key`, no two records of one key are leased at once and
/// each key's records are accepted in offset order, with 3 workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_ordering_leases_one_record_per_key() {
    let c = cluster();
    let agents = Agents::new(&c);
    let admin = c.agents[0].client();
    admin.create_topic("events", 2).await;
    produce_numbered(&admin, "events", 2_000, |i| format!("user{}", i % 10)).await;
    create_group(
        &agents,
        "ordered",
        json!({"topics": ["events"], "ordering": "key", "lease_ms": 30000}),
    )
    .await;
    let holding: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let order: Arc<Mutex<HashMap<String, Vec<u64>>>> = Arc::default();
    let done = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..3 {
        let (agents, holding, order, done) =
            (agents.clone(), holding.clone(), order.clone(), done.clone());
        workers.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(120);
            while done.load(Ordering::Relaxed) < 2_000 {
                assert!(Instant::now() < deadline, "not done in time");
                let got = fetch(&agents, "ordered", 20, 30_000).await;
                for g in &got {
                    let prev = holding.lock().insert(g.key.clone(), g.offset);
                    assert!(prev.is_none(), "{} leased twice at once", g.key);
                }
                for g in &got {
                    // Let go of the key before the ack can let another
                    // worker lease its next record.
                    holding.lock().remove(&g.key);
                    order
                        .lock()
                        .entry(g.key.clone())
                        .or_default()
                        .push(g.offset);
                }
                let ids: Vec<String> = got.iter().map(|g| g.id.clone()).collect();
                if !ids.is_empty() {
                    let out = ack(&agents, "ordered", json!({"accept": ids})).await;
                    assert_eq!(out["stale"], json!([]));
                    done.fetch_add(got.len(), Ordering::Relaxed);
                }
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let order = order.lock();
    assert_eq!(order.values().map(Vec::len).sum::<usize>(), 2_000);
    for (key, offsets) in order.iter() {
        assert!(
            offsets.windows(2).all(|w| w[0] < w[1]),
            "{key}: {offsets:?}"
        );
    }
}

/// Worker processes (`silt share-groups consume`) are SIGKILLed 20 times
/// and an agent is SIGKILLed and restarted twice: nothing is lost, and
/// only records whose lease was lost are delivered again, each time with a
/// higher count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_and_agents_killed_lose_nothing() {
    const N: usize = 20_000;
    let mut c = cluster();
    let agents = Agents::new(&c);
    let admin = c.agents[0].client();
    admin.create_topic("tasks", 3).await;
    produce_numbered(&admin, "tasks", N, |i| format!("k{i}")).await;
    create_group(
        &agents,
        "crew",
        json!({"topics": ["tasks"], "lease_ms": 800, "max_deliveries": 100,
               "backoff": {"base_ms": 50, "factor": 2.0, "cap_ms": 200, "jitter": 0.1}}),
    )
    .await;
    // Delivery counts seen per record, from the workers' output.
    let seen: Counts = Arc::default();
    let spawn = |url: &str| {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_silt"))
            .args(["share-groups", "consume", "crew", "--max-records", "10"])
            .args(["--lease-ms", "800", "--url", url])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let seen = seen.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    break; // cut off mid-line by the kill
                };
                let key = (
                    v["partition"].as_u64().unwrap(),
                    v["offset"].as_u64().unwrap(),
                );
                seen.lock()
                    .entry(key)
                    .or_default()
                    .push(v["delivery_count"].as_u64().unwrap());
            }
        });
        child
    };
    let url = |c: &Cluster, i: usize| c.agents[i % 2].client().base;
    let mut workers: Vec<_> = (0..4).map(|i| spawn(&url(&c, i))).collect();
    let mut rng = rand::rng();
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut kills = 0;
    loop {
        let g = agents.get_json("/v1/share-groups/crew").await;
        if g["totals"]["accepted"] == N as u64 {
            break;
        }
        assert!(Instant::now() < deadline, "{g}");
        tokio::time::sleep(Duration::from_millis(rng.random_range(30..120))).await;
        if kills < 20 {
            let i = rng.random_range(0..workers.len());
            let _ = workers[i].kill();
            let _ = workers[i].wait();
            workers[i] = spawn(&url(&c, i));
            kills += 1;
            if kills == 7 || kills == 14 {
                let a = kills / 7 % 2;
                c.agents[a].kill();
                tokio::time::sleep(Duration::from_millis(300)).await;
                c.agents[a].start_again();
                agents.set(a, c.agents[a].client());
            }
        }
        // Workers whose agent died exit: start them again.
        for (i, w) in workers.iter_mut().enumerate() {
            if w.try_wait().unwrap().is_some() {
                *w = spawn(&url(&c, i));
            }
        }
    }
    for w in &mut workers {
        let _ = w.kill();
        let _ = w.wait();
    }
    assert_eq!(kills, 20, "the work outlasted the kills");
    // The group's totals are the truth: each record finished exactly once.
    let g = agents.get_json("/v1/share-groups/crew").await;
    let totals = &g["totals"];
    assert_eq!(
        (totals["available"].as_u64(), totals["leased"].as_u64()),
        (Some(0), Some(0)),
        "{g}"
    );
    for p in g["partitions"].as_array().unwrap() {
        assert_eq!(p["window_start"], p["high_watermark"], "nothing lost: {p}");
    }
    assert!(
        totals["redelivered"].as_u64() > Some(0),
        "kills lost leases: {g}"
    );
    let seen = seen.lock();
    assert_eq!(seen.len(), N, "every record was delivered");
    for ((p, o), counts) in seen.iter() {
        assert!(
            counts.windows(2).all(|w| w[0] < w[1]),
            "{p}/{o}: a redelivery has a higher count: {counts:?}"
        );
    }
}
