//! Consumer groups, idempotent producers and exactly-once transactions
//! across two real agent processes, with clients switching agents on every
//! request and members that leave, die and join mid-way.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::RngExt;
use serde_json::{Value, json};

use crate::common::{Answer, Client, Cluster, Silt, cluster};

/// A client that sends each request to the next agent in turn.
#[derive(Clone)]
struct Rotating {
    clients: Arc<Vec<Client>>,
    next: Arc<AtomicUsize>,
}

impl Rotating {
    fn new(c: &Cluster) -> Self {
        Self {
            clients: Arc::new(c.agents.iter().map(Silt::client).collect()),
            next: Arc::default(),
        }
    }

    fn pick(&self) -> &Client {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        &self.clients[i % self.clients.len()]
    }

    async fn get(&self, path: &str) -> Answer {
        self.pick().get(path).await
    }

    async fn post(&self, path: &str, body: &Value) -> Answer {
        self.pick().post(path, body).await
    }

    async fn put(&self, path: &str, body: &Value) -> Answer {
        let c = self.pick();
        c.send(c.http.put(format!("{}{path}", c.base)).json(body))
            .await
    }

    async fn delete(&self, path: &str) -> Answer {
        let c = self.pick();
        c.send(c.http.delete(format!("{}{path}", c.base))).await
    }
}

/// A group member as a client library would implement one.
struct Member {
    client: Rotating,
    group: String,
    id: String,
    generation: u64,
    cursor: Option<String>,
}

impl Member {
    async fn join(client: Rotating, group: &str, topic: &str, session_ms: u32) -> Self {
        let a = client
            .post(
                &format!("/v1/consumer-groups/{group}/members"),
                &json!({"topics": [topic], "session_timeout_ms": session_ms,
                        "auto_offset_reset": "earliest"}),
            )
            .await;
        assert_eq!(a.status, 201, "{:?}", a.body);
        Self {
            client,
            group: group.into(),
            id: a.body["member_id"].as_str().unwrap().into(),
            generation: a.body["generation"].as_u64().unwrap(),
            cursor: None,
        }
    }

    /// Heartbeats until at the group's generation; false if the member is gone.
    async fn sync(&mut self) -> bool {
        loop {
            let a = self
                .client
                .put(
                    &format!("/v1/consumer-groups/{}/members/{}", self.group, self.id),
                    &json!({"generation": self.generation}),
                )
                .await;
            match (a.status, a.body["code"].as_str()) {
                (200, _) => return true,
                (409, Some("rebalance_in_progress" | "stale_generation")) => {
                    self.generation = a.body["generation"].as_u64().unwrap();
                    self.cursor = None;
                }
                (404, Some("unknown_member")) => return false,
                (503, _) => tokio::time::sleep(Duration::from_millis(50)).await,
                (s, _) => panic!("heartbeat: {s} {:?}", a.body),
            }
        }
    }

    /// One group fetch; `None` when the member must sync (or rejoin).
    async fn fetch(&mut self, max: usize) -> Option<Vec<Value>> {
        let mut path = format!(
            "/v1/consumer-groups/{}/members/{}/records?generation={}&max_records={max}&wait_ms=300",
            self.group, self.id, self.generation
        );
        if let Some(c) = &self.cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let a = self.client.get(&path).await;
        match a.status {
            200 => {
                self.cursor = Some(a.body["next_cursor"].as_str().unwrap().into());
                Some(a.body["records"].as_array().unwrap().clone())
            }
            404 | 409 | 503 => None,
            s => panic!("group fetch: {s} {:?}", a.body),
        }
    }

    /// Commits the next offset after each partition's last record.
    async fn commit(&self, records: &[Value]) -> bool {
        let offsets = next_offsets(records);
        let a = self
            .client
            .post(
                &format!("/v1/consumer-groups/{}/offsets", self.group),
                &json!({"member_id": self.id, "generation": self.generation, "offsets": offsets}),
            )
            .await;
        a.status == 204
    }

    async fn leave(self) {
        let a = self
            .client
            .delete(&format!(
                "/v1/consumer-groups/{}/members/{}",
                self.group, self.id
            ))
            .await;
        assert_eq!(a.status, 204, "{:?}", a.body);
    }
}

/// `[{"topic","partition","offset": last + 1}]` for the records' partitions.
fn next_offsets(records: &[Value]) -> Vec<Value> {
    let mut last: BTreeMap<(String, u64), u64> = BTreeMap::new();
    for r in records {
        let key = (
            r["topic"].as_str().unwrap().to_owned(),
            r["partition"].as_u64().unwrap(),
        );
        let o = r["offset"].as_u64().unwrap();
        let e = last.entry(key).or_insert(o);
        *e = (*e).max(o);
    }
    last.into_iter()
        .map(|((t, p), o)| json!({"topic": t, "partition": p, "offset": o + 1}))
        .collect()
}

async fn produce_keyed(c: &Rotating, topic: &str, n: usize, batch: usize) {
    for start in (0..n).step_by(batch) {
        let records: Vec<Value> = (start..(start + batch).min(n))
            .map(|i| json!({"key": format!("k{i}"), "value": format!("v{i}")}))
            .collect();
        c.pick().produce(topic, &Value::Array(records)).await;
    }
}

/// Runs a member until `stop`: fetch, "process" (record the values), commit.
async fn consume(
    mut m: Member,
    seen: Arc<Mutex<HashSet<String>>>,
    stop: Arc<AtomicBool>,
) -> Member {
    while !stop.load(Ordering::Relaxed) {
        let Some(records) = m.fetch(500).await else {
            if !m.sync().await {
                let (client, group) = (m.client.clone(), m.group.clone());
                m = Member::join(client, &group, "events", 2_000).await;
            }
            continue;
        };
        if records.is_empty() {
            continue;
        }
        {
            let mut s = seen.lock();
            for r in &records {
                s.insert(r["value"].as_str().unwrap().to_owned());
            }
        }
        if !m.commit(&records).await {
            // Fenced: what it read is redelivered to the partition's owner.
            m.cursor = None;
            m.sync().await;
        }
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_pool_survives_leaves_deaths_and_joins() {
    const N: usize = 50_000;
    let c = cluster();
    let client = Rotating::new(&c);
    client.pick().create_topic("events", 12).await;
    produce_keyed(&client, "events", N, 2_500).await;

    let seen = Arc::new(Mutex::new(HashSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    // A monitor: at every generation each partition has one owner, and
    // committed offsets never move backwards.
    let monitor = {
        let (client, stop) = (client.clone(), stop.clone());
        tokio::spawn(async move {
            let mut committed: HashMap<u64, u64> = HashMap::new();
            let mut generations = HashSet::new();
            while !stop.load(Ordering::Relaxed) {
                let a = client.get("/v1/consumer-groups/pool").await;
                if a.status == 200 {
                    let mut owned = HashSet::new();
                    for m in a.body["members"].as_array().unwrap() {
                        for p in m["assignments"].as_array().unwrap() {
                            assert!(
                                owned.insert(p["partition"].as_u64().unwrap()),
                                "two owners in generation {}",
                                a.body["generation"]
                            );
                        }
                    }
                    if !owned.is_empty() {
                        assert_eq!(owned.len(), 12, "every partition owned: {:?}", a.body);
                        generations.insert(a.body["generation"].as_u64().unwrap());
                    }
                    for p in a.body["partitions"].as_array().unwrap() {
                        if let Some(o) = p["committed_offset"].as_u64() {
                            let part = p["partition"].as_u64().unwrap();
                            let prev = committed.insert(part, o).unwrap_or(0);
                            assert!(o >= prev, "commit of {part} moved back {prev} -> {o}");
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            generations.len()
        })
    };
    // Each member task with its own stop flag.
    let spawn = |m: Member| {
        let own = Arc::new(AtomicBool::new(false));
        (own.clone(), tokio::spawn(consume(m, seen.clone(), own)))
    };
    let mut members = Vec::new();
    for _ in 0..3 {
        members.push(spawn(
            Member::join(client.clone(), "pool", "events", 2_000).await,
        ));
    }
    let wait_for = |n: usize| {
        let seen = seen.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            while seen.lock().len() < n {
                assert!(
                    Instant::now() < deadline,
                    "stuck at {} records",
                    seen.lock().len()
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    wait_for(N / 5).await;
    // One member leaves cleanly...
    let (flag, leaver) = members.remove(0);
    flag.store(true, Ordering::Relaxed);
    leaver.await.unwrap().leave().await;
    wait_for(2 * N / 5).await;
    // ...one dies (no leave: its lease must expire)...
    members.remove(0).1.abort();
    wait_for(3 * N / 5).await;
    // ...and one joins.
    members.push(spawn(
        Member::join(client.clone(), "pool", "events", 2_000).await,
    ));
    wait_for(N).await;
    // Everything is committed eventually.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let a = client.get("/v1/consumer-groups/pool/offsets").await;
        let lag: u64 = a.body["offsets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["lag"].as_u64().unwrap())
            .sum();
        if a.body["offsets"].as_array().unwrap().len() == 12 && lag == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never fully committed: {:?}",
            a.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for (flag, m) in members {
        flag.store(true, Ordering::Relaxed);
        m.await.unwrap().leave().await;
    }
    let generations = monitor.await.unwrap();
    assert!(
        generations >= 3,
        "the monitor saw the rebalances ({generations})"
    );
    assert_eq!(seen.lock().len(), N, "every record processed at least once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_member_cannot_commit_after_the_rebalance() {
    let c = cluster();
    let client = Rotating::new(&c);
    client.pick().create_topic("events", 2).await;
    produce_keyed(&client, "events", 20, 20).await;
    let mut zombie = Member::join(client.clone(), "z", "events", 1_000).await;
    let mut live = Member::join(client.clone(), "z", "events", 1_000).await;
    assert!(zombie.sync().await && live.sync().await);
    let records = zombie.fetch(100).await.unwrap();
    // The zombie pauses past its lease while the other member heartbeats.
    let until = Instant::now() + Duration::from_millis(1_600);
    while Instant::now() < until {
        assert!(live.sync().await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        !zombie.commit(&records).await,
        "the zombie's commit is refused"
    );
    let a = client.get("/v1/consumer-groups/z/offsets").await;
    assert!(
        a.body["offsets"].as_array().unwrap().is_empty(),
        "{:?}",
        a.body
    );
    // The live member now owns both partitions and reads them from the start.
    assert!(live.sync().await);
    let mut got = 0;
    while got < 20 {
        got += live.fetch(100).await.unwrap().len();
    }
    assert!(!zombie.sync().await, "the zombie must join again");
}

/// Sends `body` up to three times: first with a deadline so short its answer
/// is usually lost (the request may still commit), then twice normally.
/// Returns the answers that arrived.
async fn send_thrice(client: &Rotating, path: &str, body: &Value, key: Option<&str>) -> Vec<Value> {
    let mut answers = Vec::new();
    for attempt in 0..3 {
        let c = client.pick();
        let mut req = c.http.post(format!("{}{path}", c.base)).json(body);
        if let Some(k) = key {
            req = req.header("idempotency-key", k);
        }
        if attempt == 0 {
            req = req.timeout(Duration::from_millis(rand::rng().random_range(1..15)));
        }
        if let Ok(res) = req.send().await {
            let status = res.status().as_u16();
            if let Ok(v) = res.json::<Value>().await {
                assert_eq!(status, 200, "{v:?}");
                answers.push(v);
            }
        }
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_idempotent_requests_write_each_record_once() {
    let c = cluster();
    let client = Rotating::new(&c);
    client.pick().create_topic("idem", 3).await;
    let p = client.post("/v1/producers", &json!({})).await;
    assert_eq!(p.status, 201);
    let (id, epoch) = (p.body["producer_id"].clone(), p.body["epoch"].clone());
    let mut duplicates = 0;
    for seq in 0..40u64 {
        let records: Vec<Value> = (0..25)
            .map(|i| json!({"value": format!("p{seq}-{i}")}))
            .collect();
        let body =
            json!({"records": records, "producer": {"id": id, "epoch": epoch, "sequence": seq}});
        let answers = send_thrice(&client, "/v1/topics/idem/records", &body, None).await;
        assert!(answers.len() >= 2);
        for a in &answers[1..] {
            assert_eq!(a["offsets"], answers[0]["offsets"], "every answer agrees");
        }
        duplicates += answers.iter().filter(|a| a["duplicate"] == true).count();
        // The same with an Idempotency-Key instead of a producer.
        let keyed = json!({"records": [{"value": format!("key{seq}")}]});
        let answers = send_thrice(
            &client,
            "/v1/topics/idem/records",
            &keyed,
            Some(&format!("req-{seq}")),
        )
        .await;
        for a in &answers[1..] {
            assert_eq!(a["offsets"], answers[0]["offsets"]);
        }
    }
    assert!(
        duplicates >= 40,
        "retries were answered as duplicates ({duplicates})"
    );
    let mut count: HashMap<String, usize> = HashMap::new();
    let any = client.pick().clone();
    for (p, hwm) in any.high_watermarks("idem").await.into_iter().enumerate() {
        for r in any.read_all("idem", p as u32, 0, hwm).await {
            *count
                .entry(r["value"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
    }
    assert_eq!(count.len(), 40 * 25 + 40);
    assert!(count.values().all(|&n| n == 1), "no record twice");
}

/// A consume-transform-produce worker: reads the input group, writes each
/// record transformed, and commits the input offsets in the same
/// transaction. Runs until aborted or the input is done.
async fn etl_worker(client: Rotating) {
    let mut m = Member::join(client.clone(), "etl", "input", 1_000).await;
    loop {
        let Some(records) = m.fetch(50).await else {
            if !m.sync().await {
                m = Member::join(client.clone(), "etl", "input", 1_000).await;
            }
            continue;
        };
        if records.is_empty() {
            continue;
        }
        let produce: Vec<Value> = records
            .iter()
            .map(|r| {
                let src = format!("{}/{}", r["partition"], r["offset"]);
                json!({"topic": "output", "key": r["key"],
                       "value": r["value"].as_str().unwrap().to_uppercase(),
                       "headers": [{"key": "src", "value": src}]})
            })
            .collect();
        let key = format!("etl-{:?}", next_offsets(&records));
        let body = json!({"produce": produce, "commit": {"group": "etl", "member_id": m.id,
                          "generation": m.generation, "offsets": next_offsets(&records)}});
        loop {
            let c = client.pick();
            let a = c
                .send(
                    c.http
                        .post(format!("{}/v1/transactions", c.base))
                        .header("idempotency-key", key.as_str())
                        .json(&body),
                )
                .await;
            match a.status {
                200 => break,
                503 | 429 => tokio::time::sleep(Duration::from_millis(20)).await,
                _ => {
                    // Fenced: the records were not written; start over.
                    m.cursor = None;
                    m.sync().await;
                    break;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_exactly_once_pipeline_survives_20_worker_kills() {
    const N: usize = 4_000;
    let c = cluster();
    let client = Rotating::new(&c);
    client.pick().create_topic("input", 4).await;
    client.pick().create_topic("output", 4).await;
    produce_keyed(&client, "input", N, 500).await;
    let mut rng = rand::rng();
    for _ in 0..20 {
        let w = tokio::spawn(etl_worker(client.clone()));
        tokio::time::sleep(Duration::from_millis(rng.random_range(20..400))).await;
        w.abort();
        let _ = w.await;
    }
    // A last worker finishes the job.
    let last = tokio::spawn(etl_worker(client.clone()));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let a = client.get("/v1/consumer-groups/etl/offsets").await;
        let offsets = a.body["offsets"].as_array().unwrap();
        if offsets.len() == 4 && offsets.iter().all(|p| p["lag"] == 0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the pipeline never finished: {:?}",
            a.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    last.abort();
    let any = client.pick().clone();
    let mut sources: HashMap<String, usize> = HashMap::new();
    for (p, hwm) in any.high_watermarks("output").await.into_iter().enumerate() {
        for r in any.read_all("output", p as u32, 0, hwm).await {
            let src = r["headers"][0]["value"].as_str().unwrap().to_owned();
            assert!(r["value"].as_str().unwrap().starts_with('V'), "transformed");
            *sources.entry(src).or_default() += 1;
        }
    }
    assert_eq!(sources.len(), N, "every input record transformed");
    let twice: Vec<_> = sources.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "transformed more than once: {twice:?}");
}

/// Reads Server-Sent Events until `until` says stop; returns `(event, data)`.
async fn sse_events(
    res: reqwest::Response,
    mut until: impl FnMut(&str, &Value) -> bool,
) -> Vec<(String, Value)> {
    use futures::StreamExt;
    let mut body = res.bytes_stream();
    let (mut text, mut events) = (String::new(), Vec::new());
    loop {
        let chunk = tokio::time::timeout(Duration::from_secs(20), body.next())
            .await
            .expect("an event within 20 s");
        let Some(chunk) = chunk else { return events };
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        while let Some(end) = text.find("\n\n") {
            let raw: String = text.drain(..end + 2).collect();
            let name = raw.lines().find_map(|l| l.strip_prefix("event: "));
            let data = raw.lines().find_map(|l| l.strip_prefix("data: "));
            if let (Some(name), Some(data)) = (name, data) {
                let v: Value = serde_json::from_str(data).unwrap();
                let stop = until(name, &v);
                events.push((name.to_owned(), v));
                if stop {
                    return events;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_streams_records_until_a_rebalance() {
    let c = cluster();
    let client = Rotating::new(&c);
    client.pick().create_topic("live", 2).await;
    let mut m = Member::join(client.clone(), "sse", "live", 10_000).await;
    assert!(m.sync().await);
    let agent = client.pick().clone();
    let res = agent
        .http
        .get(format!(
            "{}/v1/consumer-groups/sse/members/{}/records?generation={}",
            agent.base, m.id, m.generation
        ))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // Records produced through the other agent arrive as `records` events.
    let producer = client.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        produce_keyed(&producer, "live", 10, 5).await;
    });
    let mut got = 0;
    let events = sse_events(res, |name, v| {
        if name == "records" {
            got += v["records"].as_array().unwrap().len();
            assert!(v["next_cursor"].is_string());
        }
        got >= 10
    })
    .await;
    assert!(events.iter().any(|(n, _)| n == "records"));
    // Another member joins: the stream ends with a `rebalance` event.
    let res = agent
        .http
        .get(format!(
            "{}/v1/consumer-groups/sse/members/{}/records?generation={}",
            agent.base, m.id, m.generation
        ))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let joiner = client.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        Member::join(joiner, "sse", "live", 10_000).await;
    });
    let events = sse_events(res, |name, _| name == "rebalance").await;
    let (name, last) = events.last().unwrap();
    assert_eq!(name, "rebalance");
    assert!(
        matches!(
            last["code"].as_str(),
            Some("stale_generation" | "rebalance_in_progress")
        ),
        "{last}"
    );
    assert!(
        m.sync().await,
        "the member heartbeats into the new generation"
    );
}
