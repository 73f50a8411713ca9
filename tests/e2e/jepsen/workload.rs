//! The clients: producers, partition tailers and group members, each
//! behaving as a careful application would — a timeout on every request,
//! another agent on every retry, `Idempotency-Key` on every produce — and
//! recording what it did in the [`History`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::cluster::Cluster;
use super::history::{Commit, History, Outcome, Poll, Send};
use crate::common::acked_offsets;

pub const TOPIC: &str = "jepsen";
pub const GROUP: &str = "jepsen-group";

/// What every client shares.
pub struct Ctx {
    pub cluster: Arc<Cluster>,
    pub history: Arc<History>,
    pub http: reqwest::Client,
    /// Per client, when it last succeeded (for "progress after healing").
    pub progress: Mutex<BTreeMap<String, Instant>>,
}

impl Ctx {
    pub fn new(cluster: Arc<Cluster>) -> Arc<Self> {
        Arc::new(Self {
            cluster,
            history: Arc::default(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(3))
                .connect_timeout(Duration::from_secs(1))
                .build()
                .unwrap(),
            progress: Mutex::default(),
        })
    }

    fn ok(&self, client: &str) {
        self.progress
            .lock()
            .insert(client.to_owned(), Instant::now());
    }
}

/// An answer, or `None` when the request failed in transit (timeout,
/// refused connection, agent killed mid-way): the outcome is unknown.
struct Answer {
    status: u16,
    body: Value,
}

async fn call(
    ctx: &Ctx,
    rng: &mut StdRng,
    req: impl Fn(&str) -> reqwest::RequestBuilder,
) -> Option<Answer> {
    let url = ctx.cluster.pick(rng);
    let res = req(&url).send().await.ok()?;
    let status = res.status().as_u16();
    let bytes = res.bytes().await.ok()?;
    Some(Answer {
        status,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    })
}

fn retriable(status: u16) -> bool {
    status == 429 || status >= 500
}

async fn backoff(attempt: u32) {
    let ms = (20u64 << attempt.min(5)).min(500);
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// Sends batches of `batch` records until `stop`, one request at a time,
/// each retried (same `Idempotency-Key`) until it is answered or
/// `give_up` passes.
pub async fn producer(ctx: Arc<Ctx>, n: usize, batch: usize, stop: CancellationToken) {
    let mut rng = StdRng::seed_from_u64(n as u64);
    let name = format!("producer-{n}");
    let give_up = Duration::from_secs(60);
    for seq in 0.. {
        if stop.is_cancelled() {
            return;
        }
        let values: Vec<String> = (0..batch).map(|i| format!("p{n}-{seq}-{i}")).collect();
        let records: Vec<Value> = values
            .iter()
            .enumerate()
            .map(|(i, v)| json!({"key": format!("k{n}-{}", i % 4), "value": v}))
            .collect();
        let body = json!({ "records": records });
        let key = format!("{name}-{seq}");
        let started = Instant::now();
        let mut attempt = 0;
        let outcome = loop {
            let answer = call(&ctx, &mut rng, |url| {
                ctx.http
                    .post(format!("{url}/v1/topics/{TOPIC}/records"))
                    .header("idempotency-key", &key)
                    .json(&body)
            })
            .await;
            match answer {
                Some(a) if a.status == 200 => break Outcome::Acked(acked_offsets(&a.body)),
                Some(a) if !retriable(a.status) => {
                    eprintln!("{name}: refused {} {}", a.status, a.body);
                    break Outcome::Refused;
                }
                _ if started.elapsed() > give_up => break Outcome::Unknown,
                _ => {}
            }
            attempt += 1;
            backoff(attempt).await;
        };
        if matches!(outcome, Outcome::Acked(_)) {
            ctx.ok(&name);
        }
        ctx.history.send(Send {
            producer: n,
            values,
            outcome,
        });
    }
}

fn records(body: &Value) -> Vec<(u32, u64, String)> {
    body["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["partition"].as_u64().unwrap_or(0) as u32,
                r["offset"].as_u64().unwrap(),
                r["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Reads every partition from offset 0 onwards, round robin, until `stop`
/// and then until it has read up to `drain_to` (set once producers stop).
pub async fn tailer(
    ctx: Arc<Ctx>,
    n: usize,
    partitions: u32,
    drain_to: Arc<Mutex<Option<Vec<u64>>>>,
    stop: CancellationToken,
) {
    let mut rng = StdRng::seed_from_u64(1000 + n as u64);
    let name = format!("tailer-{n}");
    let mut next = vec![0u64; partitions as usize];
    let mut attempt = 0;
    loop {
        if stop.is_cancelled() {
            let drained = drain_to.lock().clone();
            if drained.is_some_and(|to| next.iter().zip(&to).all(|(n, t)| n >= t)) {
                return;
            }
        }
        for p in 0..partitions {
            let from = next[p as usize];
            let answer = call(&ctx, &mut rng, |url| {
                ctx.http.get(format!(
                    "{url}/v1/topics/{TOPIC}/partitions/{p}/records?offset={from}&max_records=500&wait_ms=50"
                ))
            })
            .await;
            match answer {
                Some(a) if a.status == 200 => {
                    attempt = 0;
                    ctx.ok(&name);
                    let got = records(&a.body);
                    ctx.history.poll(Poll {
                        consumer: name.clone(),
                        partition: p,
                        from: Some(from),
                        generation: None,
                        records: got.into_iter().map(|(_, o, v)| (o, v)).collect(),
                    });
                    next[p as usize] = a.body["next_offset"].as_u64().unwrap();
                }
                Some(a) if !retriable(a.status) => panic!("{name}: {} {}", a.status, a.body),
                _ => {
                    attempt += 1;
                    backoff(attempt).await;
                }
            }
        }
    }
}

/// A member's view of its membership.
#[derive(Clone)]
struct Membership {
    id: String,
    generation: u64,
    cursor: Option<String>,
    /// Heartbeated at `generation` since the last rebalance notice.
    synced: bool,
}

/// A group member: join, fetch, commit what it fetched; sync on a
/// rebalance, rejoin when evicted. Stops once `stop` is set and the group's
/// commits reach `drain_to`.
pub async fn member(
    ctx: Arc<Ctx>,
    n: usize,
    drain_to: Arc<Mutex<Option<Vec<u64>>>>,
    committed: Arc<Mutex<BTreeMap<u32, u64>>>,
    stop: CancellationToken,
) {
    let mut rng = StdRng::seed_from_u64(2000 + n as u64);
    let name = format!("member-{n}");
    let mut attempt = 0;
    let mut state: Option<Membership> = None;
    loop {
        if stop.is_cancelled() {
            let drained = drain_to.lock().clone();
            let done = drained.is_some_and(|to| {
                let c = committed.lock();
                to.iter()
                    .enumerate()
                    .all(|(p, t)| c.get(&(p as u32)).copied().unwrap_or(0) >= *t)
            });
            if done {
                return;
            }
        }
        let Some(m) = state.clone() else {
            let a = call(&ctx, &mut rng, |url| {
                ctx.http
                    .post(format!("{url}/v1/consumer-groups/{GROUP}/members"))
                    .json(&json!({"topics": [TOPIC], "session_timeout_ms": 10_000,
                                  "auto_offset_reset": "earliest"}))
            })
            .await;
            match a {
                Some(a) if a.status == 201 => {
                    state = Some(Membership {
                        id: a.body["member_id"].as_str().unwrap().to_owned(),
                        generation: a.body["generation"].as_u64().unwrap(),
                        cursor: None,
                        synced: false,
                    });
                }
                Some(a) if !retriable(a.status) => panic!("{name} join: {} {}", a.status, a.body),
                _ => {
                    attempt += 1;
                    backoff(attempt).await;
                }
            }
            continue;
        };
        let Membership {
            id,
            generation,
            cursor,
            synced,
        } = m;
        if !synced {
            // Heartbeat until at the group's generation.
            let a = call(&ctx, &mut rng, |url| {
                ctx.http
                    .put(format!("{url}/v1/consumer-groups/{GROUP}/members/{id}"))
                    .json(&json!({ "generation": generation }))
            })
            .await;
            state = match a {
                Some(a) if a.status == 200 => Some(Membership {
                    id,
                    generation,
                    cursor: None,
                    synced: true,
                }),
                Some(a) if a.status == 409 => Some(Membership {
                    id,
                    generation: a.body["generation"].as_u64().unwrap(),
                    cursor: None,
                    synced: false,
                }),
                Some(a) if a.status == 404 => None,
                Some(a) if !retriable(a.status) => panic!("{name} sync: {} {}", a.status, a.body),
                _ => {
                    attempt += 1;
                    backoff(attempt).await;
                    Some(Membership {
                        id,
                        generation,
                        cursor,
                        synced,
                    })
                }
            };
            continue;
        }
        let mut path = format!(
            "/v1/consumer-groups/{GROUP}/members/{id}/records?generation={generation}&max_records=300&wait_ms=50"
        );
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let a = call(&ctx, &mut rng, |url| ctx.http.get(format!("{url}{path}"))).await;
        let fetched = match a {
            Some(a) if a.status == 200 => a,
            Some(a) if a.status == 404 => {
                state = None; // evicted: join again
                continue;
            }
            Some(a) if a.status == 409 => {
                state = Some(Membership {
                    id,
                    generation: a.body["generation"].as_u64().unwrap_or(generation),
                    cursor: None,
                    synced: false,
                });
                continue;
            }
            Some(a) if !retriable(a.status) => panic!("{name} fetch: {} {}", a.status, a.body),
            _ => {
                attempt += 1;
                backoff(attempt).await;
                continue;
            }
        };
        attempt = 0;
        ctx.ok(&name);
        let got = records(&fetched.body);
        let next_cursor = fetched.body["next_cursor"].as_str().map(str::to_owned);
        let mut next: BTreeMap<u32, u64> = BTreeMap::new();
        let mut by_partition: BTreeMap<u32, Vec<(u64, String)>> = BTreeMap::new();
        for (p, o, v) in got {
            next.insert(p, o + 1);
            by_partition.entry(p).or_default().push((o, v));
        }
        for (p, records) in by_partition {
            ctx.history.poll(Poll {
                consumer: format!("{name}/{id}"),
                partition: p,
                from: None,
                generation: Some(generation),
                records,
            });
        }
        state = Some(Membership {
            id: id.clone(),
            generation,
            cursor: next_cursor,
            synced: true,
        });
        if next.is_empty() {
            continue;
        }
        let offsets: Vec<Value> = next
            .iter()
            .map(|(p, o)| json!({"topic": TOPIC, "partition": p, "offset": o}))
            .collect();
        let body = json!({"member_id": id, "generation": generation, "offsets": offsets});
        let invoked = Instant::now();
        let a = call(&ctx, &mut rng, |url| {
            ctx.http
                .post(format!("{url}/v1/consumer-groups/{GROUP}/offsets"))
                .json(&body)
        })
        .await;
        if a.is_some_and(|a| a.status == 204) {
            let completed = Instant::now();
            let mut c = committed.lock();
            for (p, o) in next {
                ctx.history.commit(Commit {
                    partition: p,
                    offset: o,
                    invoked,
                    completed,
                });
                let e = c.entry(p).or_default();
                *e = (*e).max(o);
            }
        }
        // A refused or unknown commit: the next fetch and commit cover it,
        // or the next generation starts again from the last commit.
    }
}
