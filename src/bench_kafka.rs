//! `silt bench --embedded --kafka`: the Kafka protocol against HTTP JSON in
//! one run, on one agent and one disk. Both produce phases use the same
//! record size, records per request and concurrency (closed loop: each
//! producer waits for its acknowledgement, `acks=-1`); then each side's
//! records are read back in full (HTTP JSON pages, Kafka Fetch of whole
//! batches decoded record by record). Reported as MB/s of values, and as
//! the Kafka/HTTP ratio.
//!
//! The Kafka producer sends one v2 batch per request, uncompressed, to the
//! partitions in turn — what a client with `linger.ms` batching sends —
//! and keeps [`IN_FLIGHT`] requests outstanding per connection, as Kafka
//! clients do; an HTTP/1.1 connection carries one request at a time.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::Context;
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, ProduceRequest, ProduceResponse, RequestHeader,
    ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use serde_json::{Value, json};
use silt_segment::{Compression, Record};
use tokio::net::TcpStream;

use crate::bench::{BenchArgs, Shared, Target, drive, ensure_topic, hwms, now_ms, value_pool};
use crate::client::Client;

const PRODUCE_VERSION: i16 = 8;
const FETCH_VERSION: i16 = 11;

/// Produce requests a worker keeps in flight on its connection, as Kafka
/// clients do (librdkafka's `max.in.flight` is 5 with idempotence).
const IN_FLIGHT: usize = 5;

/// One Kafka connection: requests out, answers back in order.
struct Conn {
    stream: TcpStream,
    correlation: i32,
    budget: Arc<tokio::sync::Semaphore>,
}

impl Conn {
    async fn open(addr: &str) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            correlation: 0,
            budget: Arc::new(tokio::sync::Semaphore::new(256 << 20)),
        })
    }

    async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        req: &Req,
    ) -> anyhow::Result<Resp> {
        let id = self.send(api, version, req).await?;
        self.receive(api, version, id).await
    }

    /// Sends a request; returns its correlation id.
    async fn send<Req: Encodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        req: &Req,
    ) -> anyhow::Result<i32> {
        self.correlation += 1;
        let mut header = RequestHeader::default();
        header.request_api_key = api as i16;
        header.request_api_version = version;
        header.correlation_id = self.correlation;
        header.client_id = Some(StrBytes::from_static_str("silt-bench"));
        let mut body = BytesMut::new();
        header.encode(&mut body, api.request_header_version(version))?;
        req.encode(&mut body, version)?;
        silt_kafka::write_frame(&mut self.stream, &body).await?;
        Ok(self.correlation)
    }

    /// Receives the answer to request `id` (the oldest outstanding one).
    async fn receive<Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        id: i32,
    ) -> anyhow::Result<Resp> {
        let frame = silt_kafka::read_frame(&mut self.stream, 256 << 20, &self.budget)
            .await?
            .context("the agent closed the connection")?;
        let mut answer = frame.body.clone();
        let rh = ResponseHeader::decode(&mut answer, api.response_header_version(version))?;
        anyhow::ensure!(rh.correlation_id == id, "answers out of order");
        Resp::decode(&mut answer, version)
    }
}

/// What every produce worker needs.
struct Load {
    addr: String,
    topic: String,
    batch: usize,
    size: usize,
    partitions: u32,
    pool: Arc<str>,
}

/// One produce worker: batches of `load.batch` records to each partition in turn.
async fn produce_worker(load: Arc<Load>, w: usize, s: Arc<Shared>) {
    let Load {
        addr,
        topic,
        batch: a_batch,
        size,
        partitions,
        pool,
    } = &*load;
    let (a_batch, size, partitions) = (*a_batch, *size, *partitions);
    let Ok(mut conn) = Conn::open(addr).await else {
        s.errors.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let mut n = 0u64;
    let mut cursor = (w * 7919) % (4 << 20);
    let mut batch = Vec::with_capacity(a_batch * (size + 64));
    let mut outstanding = std::collections::VecDeque::with_capacity(IN_FLIGHT);
    loop {
        let stopping = s.stop.load(Ordering::Relaxed);
        if stopping || outstanding.len() == IN_FLIGHT {
            let Some((id, sent)) = outstanding.pop_front() else {
                return;
            };
            let answer: anyhow::Result<ProduceResponse> =
                conn.receive(ApiKey::Produce, PRODUCE_VERSION, id).await;
            let ok = answer.is_ok_and(|r| {
                r.responses
                    .iter()
                    .flat_map(|t| &t.partition_responses)
                    .all(|p| p.error_code == 0)
            });
            s.record(ok, sent, a_batch as u64).await;
            continue;
        }
        let ts = now_ms();
        let records: Vec<Record> = (0..a_batch)
            .map(|i| {
                cursor = (cursor + 104_729) % (4 << 20);
                Record {
                    timestamp: ts,
                    key: Some(Bytes::from(format!("{w}-{}", n + i as u64))),
                    value: Some(Bytes::copy_from_slice(
                        &pool.as_bytes()[cursor..cursor + size],
                    )),
                    headers: Vec::new(),
                }
            })
            .collect();
        batch.clear();
        if silt_segment::batch::encode(&mut batch, 0, &records, Compression::None).is_err() {
            s.errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let partition = ((w as u64 + n / a_batch as u64) % u64::from(partitions)) as i32;
        let mut data = PartitionProduceData::default();
        data.index = partition;
        data.records = Some(Bytes::copy_from_slice(&batch));
        let mut t = TopicProduceData::default();
        t.name = TopicName(StrBytes::from_string(topic.clone()));
        t.partition_data = vec![data];
        let mut req = ProduceRequest::default();
        req.acks = -1;
        req.timeout_ms = 30_000;
        req.topic_data = vec![t];
        let sent = Instant::now();
        match conn.send(ApiKey::Produce, PRODUCE_VERSION, &req).await {
            Ok(id) => outstanding.push_back((id, sent)),
            Err(_) => {
                s.record(false, sent, 0).await;
                return;
            }
        }
        n += a_batch as u64;
    }
}

/// Reads `[from, to)` of every partition over Kafka Fetch, decoding each
/// record; returns (records, value bytes).
async fn kafka_catch_up(
    addr: &str,
    topic: &str,
    from: &[u64],
    to: &[u64],
) -> anyhow::Result<(u64, u64)> {
    let mut conn = Conn::open(addr).await?;
    let (mut records, mut bytes) = (0u64, 0u64);
    for (p, (&start, &end)) in from.iter().zip(to).enumerate() {
        let mut next = start;
        while next < end {
            let mut part = FetchPartition::default();
            part.partition = p as i32;
            part.fetch_offset = next as i64;
            part.partition_max_bytes = 16 << 20;
            let mut t = FetchTopic::default();
            t.topic = TopicName(StrBytes::from_string(topic.to_owned()));
            t.partitions = vec![part];
            let mut req = FetchRequest::default();
            req.max_bytes = 16 << 20;
            req.max_wait_ms = 0;
            req.min_bytes = 1;
            req.topics = vec![t];
            let r: FetchResponse = conn.call(ApiKey::Fetch, FETCH_VERSION, &req).await?;
            let data = &r.responses[0].partitions[0];
            anyhow::ensure!(data.error_code == 0, "fetch error {}", data.error_code);
            let chunk = data.records.clone().unwrap_or_default();
            let before = next;
            for batch in silt_segment::batch::Batches::new(&chunk) {
                let (header, b) = batch?;
                let b = chunk.slice_ref(b);
                silt_segment::batch::decode_records(&b, &header, 0, 64 << 20, |off, r| {
                    if off >= next as i64 && (off as u64) < end {
                        records += 1;
                        bytes += r.value.as_ref().map_or(0, Bytes::len) as u64;
                        next = off as u64 + 1;
                    }
                    Ok(())
                })?;
            }
            anyhow::ensure!(next > before, "no progress at offset {next}");
        }
    }
    Ok((records, bytes))
}

/// HTTP catch-up over the same range; returns (records, value bytes).
async fn http_catch_up(
    client: &Client,
    topic: &str,
    from: &[u64],
    to: &[u64],
) -> anyhow::Result<(u64, u64)> {
    let (mut records, mut bytes) = (0u64, 0u64);
    for (p, (&start, &end)) in from.iter().zip(to).enumerate() {
        let mut next = start;
        while next < end {
            let path = format!(
                "/v1/topics/{topic}/partitions/{p}/records?offset={next}&max_records=10000&max_bytes=16777216"
            );
            let v = client.get(&path).await.context("catch-up read")?;
            for r in v["records"].as_array().into_iter().flatten() {
                if r["offset"].as_u64().is_some_and(|o| o < end) {
                    records += 1;
                    bytes += r["value"].as_str().map_or(0, str::len) as u64;
                }
            }
            next = v["next_offset"].as_u64().unwrap_or(end);
        }
    }
    Ok((records, bytes))
}

fn phase(a: &BenchArgs, s: &Shared, secs: f64, read: (u64, u64), read_secs: f64) -> Value {
    let h = s.produce_us.lock();
    let produced = s.records.load(Ordering::Relaxed);
    json!({
        "produce": {
            "records": produced,
            "mb_per_sec": produced as f64 * a.record_size as f64 / secs / 1e6,
            "latency_ms": {"p50": h.value_at_quantile(0.5) as f64 / 1e3, "p99": h.value_at_quantile(0.99) as f64 / 1e3},
            "errors": s.errors.load(Ordering::Relaxed),
        },
        "consume": {"records": read.0, "mb_per_sec": read.1 as f64 / read_secs / 1e6},
    })
}

pub async fn run(a: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.embedded, "--kafka runs against an --embedded agent");
    let target = Target::start(&a).await?;
    let agent = target.agent().context("embedded agent")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let stop = tokio_util::sync::CancellationToken::new();
    let kafka = tokio::spawn(silt_kafka::serve(
        listener,
        agent,
        silt_kafka::KafkaConfig::default(),
        stop.clone(),
    ));
    let client = Client::new(&target.url);
    let pool = value_pool(a.record_size)?;
    let mut results = serde_json::Map::new();
    for side in ["http", "kafka"] {
        let topic = format!("{}-{side}", a.topic);
        ensure_topic(&client, &topic, a.partitions).await?;
        let start = hwms(&client, &topic).await?;
        let shared = Shared::new();
        eprintln!("{side}: producing for {} s", a.duration_secs);
        let secs = if side == "http" {
            crate::bench::produce_http(&a, &client, &topic, &pool, &shared).await?
        } else {
            let load = Arc::new(Load {
                addr: addr.clone(),
                topic: topic.clone(),
                batch: a.batch,
                size: a.record_size,
                partitions: a.partitions,
                pool: pool.clone(),
            });
            drive(&a, &shared, |w| {
                tokio::spawn(produce_worker(load.clone(), w, shared.clone()))
            })
            .await?
        };
        let end = hwms(&client, &topic).await?;
        let t = Instant::now();
        let read = if side == "http" {
            http_catch_up(&client, &topic, &start, &end).await?
        } else {
            kafka_catch_up(&addr, &topic, &start, &end).await?
        };
        results.insert(
            side.into(),
            phase(&a, &shared, secs, read, t.elapsed().as_secs_f64()),
        );
    }
    stop.cancel();
    let _ = kafka.await;
    let yardstick = target.yardstick;
    target.stop().await;
    let ratio = |what: &str| {
        let k = results["kafka"][what]["mb_per_sec"].as_f64()?;
        let h = results["http"][what]["mb_per_sec"].as_f64()?;
        Some(k / h)
    };
    let result = json!({
        "config": {"record_size": a.record_size, "batch": a.batch, "concurrency": a.concurrency,
                   "partitions": a.partitions, "duration_secs": a.duration_secs,
                   "flush_interval_ms": a.tuning.flush_interval_ms},
        "http": results["http"],
        "kafka": results["kafka"],
        "kafka_vs_http": {"produce": ratio("produce"), "consume": ratio("consume")},
        "disk_yardstick_mb_per_sec": yardstick,
    });
    report(&result, a.json)
}

#[allow(clippy::print_stdout)]
fn report(r: &Value, as_json: bool) -> anyhow::Result<()> {
    if crate::bench::print_json(r, as_json)? {
        return Ok(());
    }
    let f = |v: &Value| crate::bench::number(v, 2);
    println!(
        "{:<30} {:>12} {:>12} {:>10}",
        "metric", "HTTP JSON", "Kafka", "Kafka/HTTP"
    );
    for (name, what, field) in [
        ("produce MB/s", "produce", "mb_per_sec"),
        ("consume catch-up MB/s", "consume", "mb_per_sec"),
    ] {
        println!(
            "{name:<30} {:>12} {:>12} {:>10}",
            f(&r["http"][what][field]),
            f(&r["kafka"][what][field]),
            f(&r["kafka_vs_http"][what])
        );
    }
    for q in ["p50", "p99"] {
        println!(
            "{:<30} {:>12} {:>12}",
            format!("produce latency {q} ms"),
            f(&r["http"]["produce"]["latency_ms"][q]),
            f(&r["kafka"]["produce"]["latency_ms"][q])
        );
    }
    println!(
        "{:<30} {:>12}",
        "disk yardstick MB/s",
        f(&r["disk_yardstick_mb_per_sec"])
    );
    Ok(())
}
