//! `silt share-groups`: create, inspect, replay and delete share groups
//! (queue semantics) over the HTTP API.

use clap::{Subcommand, ValueEnum};
use serde_json::{Value, json};

use crate::cli::ClientArgs;
use crate::client::{Client, print_json};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Ordering {
    /// Any available record to any worker.
    None,
    /// One record per key at a time, in offset order.
    Key,
}

#[derive(Debug, Subcommand)]
pub enum SharesCommand {
    /// Every share group's name.
    List,
    /// A share group's settings and, per partition, its in-flight window:
    /// available, leased, accepted, dead-lettered, redelivered, oldest
    /// unacked age.
    Describe { group: String },
    /// Create a share group over existing topics (and its dead-letter topic).
    Create {
        group: String,
        /// A topic to consume (repeat for several).
        #[arg(long = "topic", required = true)]
        topics: Vec<String>,
        /// How long a worker holds a record before it is offered again.
        #[arg(long)]
        lease_ms: Option<u64>,
        /// Deliveries before a record goes to the dead-letter topic.
        #[arg(long)]
        max_deliveries: Option<u16>,
        /// Where dead letters go (default: `<first topic>.dlq`).
        #[arg(long)]
        dlq_topic: Option<String>,
        /// `key`: one record per key at a time, in offset order.
        #[arg(long, value_enum, default_value_t = Ordering::None)]
        ordering: Ordering,
        /// Start at the end of the topics instead of their beginning.
        #[arg(long)]
        from_latest: bool,
    },
    /// Work the queue: lease records, print each as a JSON line (delivery id
    /// and count, topic, partition, offset, key, value), then accept them.
    /// A worker killed between printing and accepting loses its leases:
    /// those records are delivered again, with a higher count.
    Consume {
        group: String,
        /// Records leased per fetch.
        #[arg(long, default_value_t = 100)]
        max_records: usize,
        /// How long this worker holds what it fetched.
        #[arg(long)]
        lease_ms: Option<u64>,
        /// Stop after accepting this many records.
        #[arg(long)]
        count: Option<u64>,
        /// Stop when a fetch finds nothing within its wait.
        #[arg(long)]
        exit_when_idle: bool,
    },
    /// Move dead letters back to the partitions they came from.
    Replay {
        group: String,
        /// Most dead letters to move.
        #[arg(long, default_value_t = 1000)]
        max_records: usize,
    },
    /// Delete a share group and its delivery state.
    Delete { group: String },
}

pub async fn share_groups(c: &ClientArgs, cmd: SharesCommand) -> anyhow::Result<()> {
    let client = Client::new(&c.url);
    let v = match cmd {
        SharesCommand::List => client.get("/v1/share-groups").await?,
        SharesCommand::Describe { group } => {
            client.get(&format!("/v1/share-groups/{group}")).await?
        }
        SharesCommand::Create {
            group,
            topics,
            lease_ms,
            max_deliveries,
            dlq_topic,
            ordering,
            from_latest,
        } => {
            let mut spec = json!({
                "topics": topics,
                "ordering": match ordering { Ordering::None => "none", Ordering::Key => "key" },
                "start": if from_latest { "latest" } else { "earliest" },
            });
            for (k, v) in [
                ("lease_ms", lease_ms.map(Value::from)),
                ("max_deliveries", max_deliveries.map(Value::from)),
                ("dlq_topic", dlq_topic.map(Value::from)),
            ] {
                if let Some(v) = v {
                    spec[k] = v;
                }
            }
            let url = client.url(&format!("/v1/share-groups/{group}"));
            client.send(client.http().put(url).json(&spec)).await?
        }
        SharesCommand::Consume {
            group,
            max_records,
            lease_ms,
            count,
            exit_when_idle,
        } => {
            return consume(
                &client,
                &group,
                max_records,
                lease_ms,
                count,
                exit_when_idle,
            )
            .await;
        }
        SharesCommand::Replay { group, max_records } => {
            client
                .post(
                    &format!("/v1/share-groups/{group}/dlq/replay"),
                    &json!({ "max_records": max_records }),
                )
                .await?
        }
        SharesCommand::Delete { group } => {
            let url = client.url(&format!("/v1/share-groups/{group}"));
            client.send(client.http().delete(url)).await?;
            json!({ "deleted": group })
        }
    };
    print_json(&v)
}

/// A share-group worker printing what it leases, accepting each batch once
/// printed.
async fn consume(
    client: &Client,
    group: &str,
    max_records: usize,
    lease_ms: Option<u64>,
    count: Option<u64>,
    exit_when_idle: bool,
) -> anyhow::Result<()> {
    use std::io::Write;
    let mut accepted = 0u64;
    let mut fetch = json!({"max_records": max_records, "wait_ms": 1000});
    if let Some(l) = lease_ms {
        fetch["lease_ms"] = Value::from(l);
    }
    while count.is_none_or(|c| accepted < c) {
        let v = client
            .post(&format!("/v1/share-groups/{group}/fetch"), &fetch)
            .await?;
        let records = v["records"].as_array().cloned().unwrap_or_default();
        if records.is_empty() {
            if exit_when_idle {
                break;
            }
            continue;
        }
        let mut out = std::io::stdout().lock();
        let mut ids = Vec::with_capacity(records.len());
        for r in &records {
            let line = json!({
                "delivery_id": r["delivery_id"], "delivery_count": r["delivery_count"],
                "topic": r["topic"], "partition": r["partition"], "offset": r["offset"],
                "key": r["key"], "value": r["value"],
            });
            writeln!(out, "{line}")?;
            ids.push(r["delivery_id"].clone());
        }
        out.flush()?;
        drop(out);
        let a = client
            .post(
                &format!("/v1/share-groups/{group}/acks"),
                &json!({ "accept": ids }),
            )
            .await?;
        accepted += a["applied"].as_u64().unwrap_or(0);
    }
    Ok(())
}
