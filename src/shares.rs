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
        #[arg(long, value_enum, default_value_t = Ordering::None)]
        ordering: Ordering,
        /// Start at the end of the topics instead of their beginning.
        #[arg(long)]
        from_latest: bool,
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
