//! Client commands: thin wrappers over the HTTP API.

use std::io::{BufRead, Write};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Value, json};

use crate::cli::{ClientArgs, TopicsCommand};
use crate::format::{RecordFormat, table};

/// A JSON HTTP client that turns problem answers into readable errors.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    pub fn new(base: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_owned(),
        }
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let (status, v) = self.exchange(req).await?;
        if !status.is_success() {
            bail!(
                "{status}: {} ({})",
                v["detail"].as_str().unwrap_or("no detail"),
                v["code"].as_str().unwrap_or("?")
            );
        }
        Ok(v)
    }

    /// Sends and returns the status with the parsed body (a problem on
    /// failure), for callers that act on problem codes.
    pub async fn exchange(
        &self,
        req: reqwest::RequestBuilder,
    ) -> anyhow::Result<(reqwest::StatusCode, Value)> {
        let res = req
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        let status = res.status();
        let body = res.bytes().await?;
        let v = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).unwrap_or(Value::Null)
        };
        Ok((status, v))
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(self.url(path))).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(self.http.post(self.url(path)).json(body)).await
    }
}

#[allow(clippy::print_stdout)]
pub fn print_json(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// A topic's configuration in one line: `key=value` pairs.
fn config_text(config: &Value) -> String {
    config
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                v.as_str().map_or_else(|| v.to_string(), str::to_owned)
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[allow(clippy::print_stdout)]
pub async fn topics(c: &ClientArgs, cmd: TopicsCommand) -> anyhow::Result<()> {
    let client = Client::new(&c.url);
    let v = match cmd {
        TopicsCommand::Create {
            name,
            partitions,
            compression,
            retention_ms,
            retention_bytes,
        } => {
            let mut config = serde_json::Map::new();
            if let Some(c) = compression {
                config.insert("compression".into(), json!(c));
            }
            if let Some(r) = retention_ms {
                config.insert("retention_ms".into(), json!(r));
            }
            if let Some(r) = retention_bytes {
                config.insert("retention_bytes".into(), json!(r));
            }
            client
                .post(
                    "/v1/topics",
                    &json!({"name": name, "partitions": partitions, "config": config}),
                )
                .await?
        }
        TopicsCommand::List => {
            let v = client.get("/v1/topics").await?;
            if !c.json {
                let rows: Vec<Vec<String>> = v["topics"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|t| {
                        vec![
                            t["name"].as_str().unwrap_or_default().to_owned(),
                            t["partitions"].to_string(),
                            config_text(&t["config"]),
                        ]
                    })
                    .collect();
                table(&["TOPIC", "PARTITIONS", "CONFIG"], &rows);
                return Ok(());
            }
            v
        }
        TopicsCommand::Describe { name } => {
            let v = client.get(&format!("/v1/topics/{name}")).await?;
            if !c.json {
                println!(
                    "topic {name}: {} partition(s); {}",
                    v["partitions"],
                    config_text(&v["config"])
                );
                let rows: Vec<Vec<String>> = v["partition_states"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| {
                        let (lo, hi) = (
                            p["log_start_offset"].as_u64().unwrap_or(0),
                            p["high_watermark"].as_u64().unwrap_or(0),
                        );
                        vec![
                            p["partition"].to_string(),
                            lo.to_string(),
                            hi.to_string(),
                            (hi - lo.min(hi)).to_string(),
                        ]
                    })
                    .collect();
                table(
                    &["PARTITION", "LOG START", "HIGH WATERMARK", "RECORDS"],
                    &rows,
                );
                return Ok(());
            }
            v
        }
        TopicsCommand::Delete { name } => {
            client
                .send(
                    client
                        .http
                        .delete(client.url(&format!("/v1/topics/{name}"))),
                )
                .await?;
            json!({"deleted": name})
        }
    };
    print_json(&v)
}

#[derive(Debug, Args)]
pub struct ProduceArgs {
    pub topic: String,
    /// Send every record to this partition (default: by key, else round-robin).
    #[arg(long)]
    pub partition: Option<u32>,
    /// Split each line at the first occurrence of this separator into key and value.
    #[arg(long)]
    pub key_separator: Option<String>,
    /// Lines per request.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// Requests in flight at once, at most one per partition (so each
    /// partition's records keep the order of the input).
    #[arg(long, default_value_t = 8)]
    pub in_flight: usize,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `silt produce`: lines from stdin, routed to partitions here (by key with
/// Kafka's murmur2, as the agent would; unkeyed lines round-robin by
/// batch) so that several requests are in flight at once while each
/// partition has at most one: every partition's records are appended in
/// input order.
pub async fn produce(a: ProduceArgs) -> anyhow::Result<()> {
    use silt_agent::partitioner::partition_for_key;
    let client = Client::new(&a.client.url);
    let partitions = match a.partition {
        Some(_) => 1,
        None => {
            let t = client.get(&format!("/v1/topics/{}", a.topic)).await?;
            u32::try_from(t["partitions"].as_u64().unwrap_or(1))
                .unwrap_or(1)
                .max(1)
        }
    };
    let batch_size = a.batch.clamp(1, 10_000);
    let permits = Arc::new(tokio::sync::Semaphore::new(a.in_flight.max(1)));
    // One sender task per partition, fed batches in input order.
    let mut senders = Vec::with_capacity(partitions as usize);
    let mut tasks = Vec::with_capacity(partitions as usize);
    for i in 0..partitions {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Value>>(2);
        let path = match a.partition {
            Some(p) => format!("/v1/topics/{}/partitions/{p}/records", a.topic),
            None => format!("/v1/topics/{}/partitions/{i}/records", a.topic),
        };
        let (client, permits) = (client.clone(), permits.clone());
        tasks.push(tokio::spawn(async move {
            let mut sent = 0usize;
            while let Some(records) = rx.recv().await {
                let _permit = permits.acquire().await?;
                sent += records.len();
                client.post(&path, &json!({ "records": records })).await?;
            }
            Ok::<_, anyhow::Error>(sent)
        }));
        senders.push(tx);
    }
    // Reading stdin blocks: on its own thread, handing batches over.
    let (key_separator, fixed) = (a.key_separator.clone(), a.partition.is_some());
    let reader = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut buffers: Vec<Vec<Value>> = vec![Vec::new(); partitions as usize];
        let mut round_robin = 0u32;
        for line in std::io::stdin().lock().lines() {
            let line = line?;
            let (p, rec) = match key_separator.as_deref().and_then(|s| line.split_once(s)) {
                Some((k, v)) if !fixed => (
                    partition_for_key(k.as_bytes(), partitions),
                    json!({"key": k, "value": v}),
                ),
                Some((k, v)) => (0, json!({"key": k, "value": v})),
                None => (round_robin, json!({ "value": line })),
            };
            let buf = &mut buffers[p as usize];
            buf.push(rec);
            if buf.len() >= batch_size {
                let full = std::mem::take(buf);
                if p == round_robin {
                    round_robin = (round_robin + 1) % partitions;
                }
                if senders[p as usize].blocking_send(full).is_err() {
                    return Ok(()); // that sender failed: its error is reported
                }
            }
        }
        for (p, buf) in buffers.into_iter().enumerate() {
            if !buf.is_empty() && senders[p].blocking_send(buf).is_err() {
                break;
            }
        }
        Ok(())
    });
    let read = reader.await?;
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    read?;
    tracing::info!(records = total, topic = %a.topic, "produced");
    Ok(())
}

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    pub topic: String,
    /// Consume as a member of this consumer group: partitions are shared
    /// with the group's other members, and offsets are committed after each
    /// batch is printed (at-least-once). New groups start at the end of the
    /// log unless --from-beginning.
    #[arg(long, conflicts_with_all = ["partition", "offset"])]
    pub group: Option<String>,
    /// Read only this partition (default: all).
    #[arg(long)]
    pub partition: Option<u32>,
    /// Start here (requires --partition).
    #[arg(long, requires = "partition", conflicts_with = "from_beginning")]
    pub offset: Option<u64>,
    /// Start at the earliest offset (default: only new records).
    #[arg(long)]
    pub from_beginning: bool,
    /// Stop once caught up instead of waiting for new records.
    #[arg(long)]
    pub exit_at_end: bool,
    /// Print `key<TAB>value` (the format `%k\t%s\n`).
    #[arg(long, conflicts_with = "format")]
    pub print_key: bool,
    /// Print each record by this kcat-style format: %t topic, %p partition,
    /// %o offset, %T timestamp (ms), %k key, %K key length, %s value, %S
    /// value length, %h headers (k=v,…), %%; escapes \n, \t, \\.
    /// Default: the value and a newline. `--json` prints JSON lines instead.
    #[arg(long, short = 'f')]
    pub format: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// How `silt consume` prints records, from its flags.
pub fn record_format(a: &ConsumeArgs) -> anyhow::Result<RecordFormat> {
    if a.client.json {
        return Ok(RecordFormat::Json);
    }
    let default = if a.print_key { "%k\t%s\n" } else { "%s\n" };
    RecordFormat::parse(a.format.as_deref().unwrap_or(default))
}

pub async fn consume(a: ConsumeArgs) -> anyhow::Result<()> {
    if let Some(group) = a.group.clone() {
        return crate::groups::consume(a, &group).await;
    }
    let client = Client::new(&a.client.url);
    let topic = client.get(&format!("/v1/topics/{}", a.topic)).await?;
    let states = topic["partition_states"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    // (partition, next offset, high-watermark when we started)
    let mut cursors: Vec<(u64, u64)> = Vec::new();
    for s in &states {
        let p = s["partition"].as_u64().unwrap_or(0);
        if a.partition.is_some_and(|want| u64::from(want) != p) {
            continue;
        }
        let start = match (a.offset, a.from_beginning) {
            (Some(o), _) => o,
            (None, true) => s["log_start_offset"].as_u64().unwrap_or(0),
            (None, false) => s["high_watermark"].as_u64().unwrap_or(0),
        };
        cursors.push((p, start));
    }
    if cursors.is_empty() {
        bail!("topic {} has no partition {:?}", a.topic, a.partition);
    }
    // Wait on a partition only when every partition is caught up.
    let wait = if cursors.len() == 1 && !a.exit_at_end {
        10_000
    } else {
        0
    };
    let format = record_format(&a)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    loop {
        let mut got = 0;
        for (p, next) in &mut cursors {
            let v = client
                .get(&format!(
                    "/v1/topics/{}/partitions/{p}/records?offset={next}&wait_ms={wait}",
                    a.topic
                ))
                .await?;
            for r in v["records"].as_array().into_iter().flatten() {
                format.print(&mut out, &a.topic, r)?;
                got += 1;
            }
            *next = v["next_offset"].as_u64().unwrap_or(*next);
        }
        out.flush()?;
        if got == 0 {
            if a.exit_at_end {
                return Ok(());
            }
            if wait == 0 {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    }
}
