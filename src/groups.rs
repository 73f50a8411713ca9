//! `silt consume --group` and `silt groups`: a group member as a client
//! library implements one, over the HTTP group API.

use std::io::Write;
use std::time::Duration;

use anyhow::bail;
use clap::Subcommand;
use serde_json::{Value, json};

use crate::cli::ClientArgs;
use crate::client::{Client, ConsumeArgs, print_json, record_format};

#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    /// Every group, with its generation and live members.
    List,
    /// A group's members, assignments and, per partition, committed offset and lag.
    Describe { group: String },
    /// Delete a group with no live members (its committed offsets too).
    Delete { group: String },
}

pub async fn groups(c: &ClientArgs, cmd: GroupsCommand) -> anyhow::Result<()> {
    let client = Client::new(&c.url);
    let v = match cmd {
        GroupsCommand::List => client.get("/v1/consumer-groups").await?,
        GroupsCommand::Describe { group } => {
            client.get(&format!("/v1/consumer-groups/{group}")).await?
        }
        GroupsCommand::Delete { group } => {
            let url = client.url(&format!("/v1/consumer-groups/{group}"));
            client.send(client.http().delete(url)).await?;
            json!({"deleted": group})
        }
    };
    print_json(&v)
}

/// A member's standing.
struct Member {
    id: String,
    generation: u64,
    cursor: Option<String>,
}

async fn join(client: &Client, group: &str, a: &ConsumeArgs) -> anyhow::Result<Member> {
    let reset = if a.from_beginning {
        "earliest"
    } else {
        "latest"
    };
    let v = client
        .post(
            &format!("/v1/consumer-groups/{group}/members"),
            &json!({"topics": [a.topic], "auto_offset_reset": reset, "client_id": "silt-consume"}),
        )
        .await?;
    Ok(Member {
        id: v["member_id"].as_str().unwrap_or_default().to_owned(),
        generation: v["generation"].as_u64().unwrap_or(0),
        cursor: None,
    })
}

/// Heartbeats until the member is at the group's generation; joins again if
/// the group forgot it.
async fn sync(client: &Client, group: &str, a: &ConsumeArgs, m: &mut Member) -> anyhow::Result<()> {
    loop {
        let url = client.url(&format!("/v1/consumer-groups/{group}/members/{}", m.id));
        let req = client
            .http()
            .put(url)
            .json(&json!({"generation": m.generation}));
        let (status, v) = client.exchange(req).await?;
        match (status.as_u16(), v["code"].as_str()) {
            (200, _) => return Ok(()),
            (409, Some("rebalance_in_progress" | "stale_generation")) => {
                m.generation = v["generation"].as_u64().unwrap_or(m.generation + 1);
                m.cursor = None;
            }
            (404, Some("unknown_member")) => *m = join(client, group, a).await?,
            (429 | 503, _) => tokio::time::sleep(Duration::from_millis(200)).await,
            (s, _) => bail!("heartbeat: {s}: {}", v["detail"].as_str().unwrap_or("?")),
        }
    }
}

/// `[{"topic","partition","offset": last + 1}]` per partition read.
fn next_offsets(records: &[Value]) -> Vec<Value> {
    let mut last = std::collections::BTreeMap::new();
    for r in records {
        let key = (
            r["topic"].as_str().unwrap_or("").to_owned(),
            r["partition"].as_u64(),
        );
        let o = r["offset"].as_u64().unwrap_or(0);
        let e = last.entry(key).or_insert(o);
        *e = (*e).max(o);
    }
    last.into_iter()
        .map(|((t, p), o)| json!({"topic": t, "partition": p, "offset": o + 1}))
        .collect()
}

/// Consumes as a group member until ctrl-c (or caught up, with
/// --exit-at-end): fetch, print, then commit — at-least-once. Leaves the
/// group on the way out so its partitions move at once.
pub async fn consume(a: ConsumeArgs, group: &str) -> anyhow::Result<()> {
    let client = Client::new(&a.client.url);
    let format = record_format(&a)?;
    let mut m = join(&client, group, &a).await?;
    sync(&client, group, &a, &mut m).await?;
    let run = async {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let wait = if a.exit_at_end { 0 } else { 5_000 };
        loop {
            let mut path = format!(
                "/v1/consumer-groups/{group}/members/{}/records?generation={}&wait_ms={wait}",
                m.id, m.generation
            );
            if let Some(c) = &m.cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let (status, v) = client
                .exchange(client.http().get(client.url(&path)))
                .await?;
            if status.as_u16() != 200 {
                sync(&client, group, &a, &mut m).await?;
                continue;
            }
            m.cursor = v["next_cursor"].as_str().map(str::to_owned);
            let records = v["records"].as_array().cloned().unwrap_or_default();
            if records.is_empty() {
                if a.exit_at_end {
                    return Ok::<_, anyhow::Error>(());
                }
                continue;
            }
            for r in &records {
                format.print(&mut out, &a.topic, r)?;
            }
            out.flush()?;
            let body = json!({"member_id": m.id, "generation": m.generation,
                              "offsets": next_offsets(&records)});
            let url = client.url(&format!("/v1/consumer-groups/{group}/offsets"));
            let (status, _) = client.exchange(client.http().post(url).json(&body)).await?;
            if !status.is_success() {
                // Fenced by a rebalance: the new owner reads these again.
                sync(&client, group, &a, &mut m).await?;
            }
        }
    };
    let result = tokio::select! {
        r = run => r,
        _ = tokio::signal::ctrl_c() => Ok(()),
    };
    let url = client.url(&format!("/v1/consumer-groups/{group}/members/{}", m.id));
    if let Err(e) = client.send(client.http().delete(url)).await {
        tracing::warn!(error = %e, "could not leave the group; its lease will lapse");
    }
    result
}
