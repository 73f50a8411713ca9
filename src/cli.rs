//! Command-line interface. Every server flag can also be set from the
//! environment (`SILT_*`), which is how the container deployment passes it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use silt_agent::AgentConfig;
use silt_api::ApiConfig;

#[derive(Debug, Parser)]
#[command(
    name = "silt",
    version,
    about = "A Kafka-style log on object storage, with stateless agents"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log filter (tracing's EnvFilter syntax), e.g. `debug` or `info,silt_agent=trace`. Logs go to stderr.
    #[arg(
        long,
        env = "SILT_LOG",
        default_value = "info,tower_http=warn",
        global = true
    )]
    pub log: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run an agent on the embedded defaults: SQLite metadata and a local
    /// object directory under --data-dir. Zero set-up.
    Dev(DevArgs),
    /// Run a stateless agent against shared metadata and object storage.
    Agent(AgentArgs),
    /// Run the compactor (background jobs; one active instance at a time).
    Compactor(CompactorArgs),
    /// Manage topics.
    Topics {
        #[command(subcommand)]
        command: TopicsCommand,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Inspect and delete consumer groups.
    Groups {
        #[command(subcommand)]
        command: crate::groups::GroupsCommand,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Share groups: queues over topics (leases, acks, redelivery, dead letters).
    ShareGroups {
        #[command(subcommand)]
        command: crate::shares::SharesCommand,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Produce lines from stdin, one record per line.
    Produce(crate::client::ProduceArgs),
    /// Print records, one per line.
    Consume(crate::client::ConsumeArgs),
    /// Measure produce and consume throughput and latency.
    Bench(crate::bench::BenchArgs),
    /// A canary: produce a stamped record every interval, read it back, and
    /// export availability and end-to-end latency as Prometheus metrics.
    Probe(crate::probe::ProbeArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
}

#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Create a topic.
    Create {
        name: String,
        /// Number of partitions (1 to 4,096).
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        /// none, lz4 or zstd.
        #[arg(long)]
        compression: Option<String>,
        /// Delete records older than this (ms), once archived.
        #[arg(long)]
        retention_ms: Option<u64>,
        /// Keep at most this many stored bytes per partition.
        #[arg(long)]
        retention_bytes: Option<u64>,
    },
    /// Every topic, with its partitions and configuration.
    List,
    /// A topic's configuration and each partition's log start and high-watermark.
    Describe { name: String },
    /// Delete a topic (its storage is reclaimed in the background).
    Delete { name: String },
}

#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Agent base URL.
    #[arg(
        long,
        env = "SILT_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,
    /// Print JSON (as the API answers) instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Directory holding metadata (meta.db) and objects (objects/).
    #[arg(long, env = "SILT_DATA_DIR", default_value = "silt-data")]
    pub data_dir: PathBuf,
    /// Address to listen on (port 0 picks a free port; the chosen address is
    /// printed on stdout).
    #[arg(long, env = "SILT_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Keep segments elsewhere than <data-dir>/objects, e.g. s3://bucket/prefix.
    #[arg(long, env = "SILT_OBJECT_STORE")]
    pub object_store: Option<String>,
    /// Kafka protocol listener: an address, or `off`. By default
    /// 127.0.0.1:9092 if that port is free (a warning if it is not).
    #[arg(long, env = "SILT_KAFKA_LISTEN")]
    pub kafka_listen: Option<String>,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub tuning: Tuning,
    #[command(flatten)]
    pub console: ConsoleArgs,
    #[command(flatten)]
    pub compactor: CompactorTuning,
}

/// The Kafka front end's settings, shared by `silt dev` and `silt agent`.
#[derive(Debug, Args)]
pub struct KafkaArgs {
    /// The address Metadata answers give Kafka clients (host:port), e.g. a
    /// load balancer's; by default the Kafka listener's own.
    #[arg(long, env = "SILT_KAFKA_ADVERTISED")]
    pub kafka_advertised: Option<String>,
    /// Create a topic a Kafka client asks for and that does not exist
    /// (Kafka's `auto.create.topics.enable`), with this many partitions.
    /// Off unless given.
    #[arg(long, env = "SILT_KAFKA_AUTO_CREATE_PARTITIONS", value_parser = clap::value_parser!(u32).range(1..=i64::from(silt_agent::MAX_PARTITIONS)))]
    pub kafka_auto_create_partitions: Option<u32>,
    /// Largest batch a Kafka producer may send for one partition; larger
    /// ones get MESSAGE_TOO_LARGE.
    #[arg(long, env = "SILT_KAFKA_MAX_MESSAGE_BYTES", default_value_t = 16 << 20)]
    pub kafka_max_message_bytes: usize,
}

impl KafkaArgs {
    pub fn config(&self) -> anyhow::Result<silt_kafka::KafkaConfig> {
        let advertised = match &self.kafka_advertised {
            None => None,
            Some(a) => {
                let (host, port) = a
                    .rsplit_once(':')
                    .ok_or_else(|| anyhow::anyhow!("--kafka-advertised must be host:port"))?;
                Some((
                    host.to_owned(),
                    port.parse()
                        .map_err(|_| anyhow::anyhow!("--kafka-advertised: bad port {port:?}"))?,
                ))
            }
        };
        Ok(silt_kafka::KafkaConfig {
            advertised,
            auto_create_partitions: self.kafka_auto_create_partitions,
            max_message_bytes: self.kafka_max_message_bytes,
            ..silt_kafka::KafkaConfig::default()
        })
    }
}

/// Where a Kafka listener goes: nowhere, somewhere it must bind, or the
/// default that may be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaListen {
    Off,
    At(SocketAddr),
    DefaultIfFree(SocketAddr),
}

impl KafkaListen {
    pub fn parse(arg: Option<&str>, default: Option<SocketAddr>) -> anyhow::Result<Self> {
        Ok(match (arg, default) {
            (Some("off"), _) | (None, None) => KafkaListen::Off,
            (None, Some(d)) => KafkaListen::DefaultIfFree(d),
            (Some(a), _) => KafkaListen::At(a.parse().map_err(|_| {
                anyhow::anyhow!("--kafka-listen: {a:?} is not an address or `off`")
            })?),
        })
    }
}

/// Where the shared state lives; the same for every process of a deployment.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Object store URL: file:///dir, s3://bucket/prefix or memory://.
    #[arg(long, env = "SILT_OBJECT_STORE")]
    pub object_store: String,
    /// Metadata URL: fdb:[//cluster-file] or sqlite:///path/meta.db.
    #[arg(long, env = "SILT_METADATA")]
    pub metadata: String,
    /// The FoundationDB cluster file's content (e.g. injected from SSM Parameter
    /// Store). Written to --state-dir/fdb.cluster, which `fdb:` then uses; the
    /// client rewrites that file itself when coordinators change.
    #[arg(long, env = "SILT_FDB_CLUSTER_FILE_CONTENT", hide_env_values = true)]
    pub fdb_cluster_file_content: Option<String>,
    /// A writable directory for files the process creates (the cluster file).
    #[arg(long, env = "SILT_STATE_DIR", default_value = "/tmp/silt")]
    pub state_dir: std::path::PathBuf,
}

impl StoreArgs {
    /// The metadata URL to open, writing the injected cluster file first.
    pub fn metadata_url(&self) -> anyhow::Result<String> {
        use anyhow::Context;
        let Some(content) = &self.fdb_cluster_file_content else {
            return Ok(self.metadata.clone());
        };
        anyhow::ensure!(
            self.metadata == "fdb:" || self.metadata == "fdb://",
            "--fdb-cluster-file-content needs --metadata fdb: (the file it writes is the cluster file)"
        );
        std::fs::create_dir_all(&self.state_dir)
            .with_context(|| format!("creating {}", self.state_dir.display()))?;
        let path = self.state_dir.join("fdb.cluster");
        std::fs::write(&path, content.trim().to_owned() + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(format!("fdb://{}", path.display()))
    }
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// HTTP address to listen on (port 0 picks a free port; the chosen
    /// address is printed on stdout).
    #[arg(long, env = "SILT_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Kafka protocol listener address (off unless given).
    #[arg(long, env = "SILT_KAFKA_LISTEN")]
    pub kafka_listen: Option<String>,
    /// The URL other agents reach this one's HTTP listener at, so it can
    /// serve as the commit sequencer: e.g. http://10.0.1.7:8080, or
    /// http://{ip}:8080 where `{ip}` stands for this host's first
    /// non-loopback IPv4 address (containers, VMs). By default the listen
    /// address unless it is a wildcard (then the agent only follows a
    /// sequencer elsewhere).
    #[arg(long, env = "SILT_ADVERTISE_URL")]
    pub advertise_url: Option<String>,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub tuning: Tuning,
    #[command(flatten)]
    pub console: ConsoleArgs,
}

/// The web console and the in-agent canary, shared by `silt dev` and
/// `silt agent`.
#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// Serve the web console at /ui (default: on for `silt dev`, off for
    /// `silt agent`).
    #[arg(long, env = "SILT_UI", action = clap::ArgAction::Set)]
    pub ui: Option<bool>,
    /// Run a canary inside the agent: a stamped record to --probe-topic
    /// every --probe-interval-ms, read back, with availability and
    /// end-to-end latency as silt_probe_* metrics (shown by the console).
    #[arg(long, env = "SILT_PROBE", default_value_t = false, action = clap::ArgAction::Set)]
    pub probe: bool,
    /// The in-agent canary's topic (created with one partition if missing).
    #[arg(long, env = "SILT_PROBE_TOPIC", default_value = "silt-canary")]
    pub probe_topic: String,
    /// Time between the in-agent canary's records.
    #[arg(long, env = "SILT_PROBE_INTERVAL_MS", default_value_t = 1000)]
    pub probe_interval_ms: u64,
    /// An in-agent canary produce slower than this counts as unavailable.
    #[arg(long, env = "SILT_PROBE_TIMEOUT_MS", default_value_t = 2000)]
    pub probe_timeout_ms: u64,
    /// How often the agent samples its own metrics for the console's
    /// charts (GET /v1/metrics/history keeps the last hour).
    #[arg(long, env = "SILT_METRICS_HISTORY_INTERVAL_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub metrics_history_interval_ms: u64,
}

#[derive(Debug, Args)]
pub struct CompactorArgs {
    /// Work on a `silt dev` data directory (its meta.db and objects/)
    /// instead of --object-store and --metadata.
    #[arg(long, conflicts_with_all = ["object_store", "metadata"])]
    pub data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub store: OptionalStoreArgs,
    /// Run every job once over what is committed, print what was done, exit.
    #[arg(long)]
    pub once: bool,
    /// Serve Prometheus metrics (`GET /metrics`) on this address.
    #[arg(long, env = "SILT_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// A stable lease identity (default: random per process). A restarted
    /// compactor with the same identity resumes its lease at once instead of
    /// waiting for it to lapse; jobs stay correct either way.
    #[arg(long, env = "SILT_COMPACTOR_HOLDER_ID")]
    pub holder_id: Option<u64>,
    #[command(flatten)]
    pub tuning: CompactorTuning,
}

/// [`StoreArgs`] for commands that may take a data directory instead.
#[derive(Debug, Args)]
pub struct OptionalStoreArgs {
    /// Object store URL: file:///dir, s3://bucket/prefix or memory://.
    #[arg(long, env = "SILT_OBJECT_STORE")]
    pub object_store: Option<String>,
    /// Metadata URL: fdb:[//cluster-file] or sqlite:///path/meta.db.
    #[arg(long, env = "SILT_METADATA")]
    pub metadata: Option<String>,
    /// The FoundationDB cluster file's content (see `silt agent --help`).
    #[arg(long, env = "SILT_FDB_CLUSTER_FILE_CONTENT", hide_env_values = true)]
    pub fdb_cluster_file_content: Option<String>,
    /// A writable directory for files the process creates (the cluster file).
    #[arg(long, env = "SILT_STATE_DIR", default_value = "/tmp/silt")]
    pub state_dir: std::path::PathBuf,
}

impl CompactorArgs {
    /// The object store and metadata URLs to open.
    pub fn urls(&self) -> anyhow::Result<(String, String)> {
        if let Some(dir) = &self.data_dir {
            return data_dir_urls(dir);
        }
        let (Some(objects), Some(metadata)) = (&self.store.object_store, &self.store.metadata)
        else {
            anyhow::bail!("give --data-dir, or both --object-store and --metadata");
        };
        let store = StoreArgs {
            object_store: objects.clone(),
            metadata: metadata.clone(),
            fdb_cluster_file_content: self.store.fdb_cluster_file_content.clone(),
            state_dir: self.store.state_dir.clone(),
        };
        Ok((objects.clone(), store.metadata_url()?))
    }
}

/// The object store and metadata URLs of a `silt dev` data directory.
pub fn data_dir_urls(dir: &std::path::Path) -> anyhow::Result<(String, String)> {
    let dir = std::fs::canonicalize(dir)
        .map_err(|e| anyhow::anyhow!("--data-dir {}: {e}", dir.display()))?;
    let objects = crate::server::url_for_dir(&dir.join("objects"))?;
    Ok((
        objects,
        format!("sqlite://{}", dir.join("meta.db").display()),
    ))
}

/// Compactor tuning; see `silt_compactor::CompactorConfig`.
#[derive(Debug, Clone, Args)]
pub struct CompactorTuning {
    /// Seconds between compactor job runs.
    #[arg(long, env = "SILT_COMPACTOR_INTERVAL_SECS", default_value_t = 60)]
    pub compactor_interval_secs: u64,
    /// Minimum age (seconds) of an uncommitted segment before it is deleted.
    #[arg(long, env = "SILT_GC_GRACE_SECS", default_value_t = 3600)]
    pub gc_grace_secs: u64,
    /// Rewrite committed records to Parquet under archive/ (Hive layout,
    /// readable by Spark and DuckDB as is).
    #[arg(long, env = "SILT_ARCHIVE", default_value_t = true, action = clap::ArgAction::Set)]
    pub archive: bool,
    /// Most records in one archive file (bigger files: fewer objects).
    #[arg(long, env = "SILT_ARCHIVE_FILE_RECORDS", default_value_t = 1_000_000)]
    pub archive_file_records: usize,
    /// Merge runs of small segments into per-partition segments of about
    /// this many bytes (0: never merge).
    #[arg(long, env = "SILT_MERGE_TARGET_BYTES", default_value_t = 64 << 20)]
    pub merge_target_bytes: usize,
    /// The SQLite file of the Iceberg SQL catalog that topics with
    /// `archive.iceberg` are committed to (pyiceberg's `SqlCatalog` and
    /// Iceberg's JDBC catalog read it). `silt dev`: <data-dir>/iceberg.db.
    #[arg(long, env = "SILT_ICEBERG_CATALOG")]
    pub iceberg_catalog: Option<PathBuf>,
}

impl CompactorTuning {
    pub fn config(&self) -> anyhow::Result<silt_compactor::CompactorConfig> {
        anyhow::ensure!(
            self.gc_grace_secs >= 60,
            "--gc-grace-secs must be at least 60: in-flight commits need time"
        );
        Ok(silt_compactor::CompactorConfig {
            interval: Duration::from_secs(self.compactor_interval_secs.max(1)),
            gc_grace: Duration::from_secs(self.gc_grace_secs),
            archive: self.archive,
            archive_file_records: self.archive_file_records.max(1),
            merge_target_bytes: self.merge_target_bytes,
            iceberg_catalog: self.iceberg_catalog.clone(),
            ..silt_compactor::CompactorConfig::default()
        })
    }
}

/// Tuning shared by every server command; see `AgentConfig` and `ApiConfig`
/// for what each trades off.
#[derive(Debug, Clone, Args)]
pub struct Tuning {
    /// Longest a record waits before its segment is flushed.
    #[arg(long, env = "SILT_FLUSH_INTERVAL_MS", default_value_t = 20)]
    pub flush_interval_ms: u64,
    /// Group commit: flush as soon as an upload slot is free (low latency
    /// at light load, big segments under heavy load). `false`: every
    /// segment waits for --flush-interval-ms or --flush-bytes (fewer,
    /// larger objects at light load, at the cost of latency).
    #[arg(long, env = "SILT_GROUP_COMMIT", default_value_t = true, action = clap::ArgAction::Set)]
    pub group_commit: bool,
    /// Commit segments through one elected agent, many per metadata
    /// transaction, so agents writing the same partitions do not conflict
    /// (see docs/architecture.md). `false`: every agent commits its own.
    #[arg(long, env = "SILT_SEQUENCER", default_value_t = true, action = clap::ArgAction::Set)]
    pub sequencer: bool,
    /// Flush once this many bytes are buffered.
    #[arg(long, env = "SILT_FLUSH_BYTES", default_value_t = 8 << 20)]
    pub flush_bytes: usize,
    /// Segments uploading at once.
    #[arg(long, env = "SILT_MAX_CONCURRENT_FLUSHES", default_value_t = 4)]
    pub max_concurrent_flushes: usize,
    /// Produced bytes held in memory before produce answers 429.
    #[arg(long, env = "SILT_MAX_INFLIGHT_BYTES", default_value_t = 256 << 20)]
    pub max_inflight_bytes: usize,
    /// Read-cache size in bytes.
    #[arg(long, env = "SILT_CACHE_BYTES", default_value_t = 256 << 20)]
    pub cache_bytes: usize,
    /// Largest request body in bytes.
    #[arg(long, env = "SILT_MAX_REQUEST_BYTES", default_value_t = 8 << 20)]
    pub max_request_bytes: usize,
    /// On SIGTERM/ctrl-c, how long to wait for in-flight work before exiting.
    #[arg(long, env = "SILT_SHUTDOWN_TIMEOUT_SECS", default_value_t = 30)]
    pub shutdown_timeout_secs: u64,
    /// Most client connections served at once; more wait to be accepted.
    /// Keep it below the process's file-descriptor limit.
    #[arg(long, env = "SILT_MAX_CONNECTIONS", default_value_t = 1000)]
    pub max_connections: usize,
    /// Close a connection on which nothing moved for this long. Must exceed
    /// the longest long-poll (`wait_ms`, at most 60 s).
    #[arg(long, env = "SILT_IDLE_TIMEOUT_SECS", default_value_t = 120)]
    pub idle_timeout_secs: u64,
    /// A request's headers must arrive within this many seconds of its
    /// first byte, or the connection is closed.
    #[arg(long, env = "SILT_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    pub header_timeout_secs: u64,
    /// A request body must arrive whole within this many seconds (408).
    /// Bodies being read also count against --max-inflight-bytes, so slow
    /// uploads cannot hold more memory than that.
    #[arg(long, env = "SILT_BODY_TIMEOUT_SECS", default_value_t = 30)]
    pub body_timeout_secs: u64,
    /// One object-store request attempt times out after this long, and is
    /// retried with exponential backoff and jitter.
    #[arg(
        long,
        env = "SILT_OBJECT_STORE_ATTEMPT_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub object_store_attempt_timeout_ms: u64,
    /// A whole object-store call, retries included, fails after this long;
    /// the request that needed it is answered 503 with Retry-After.
    #[arg(
        long,
        env = "SILT_OBJECT_STORE_CALL_TIMEOUT_MS",
        default_value_t = 30_000
    )]
    pub object_store_call_timeout_ms: u64,
    /// Hedge segment PUTs: one still running after this long is sent again,
    /// and the first to finish wins (segments are immutable). Cuts the tail
    /// S3 adds; costs a PUT per hedge. Off unless given; on S3 Standard
    /// about its p90 (~60 ms) is a good start.
    #[arg(long, env = "SILT_HEDGE_PUTS_AFTER_MS")]
    pub hedge_puts_after_ms: Option<u64>,
}

impl Tuning {
    /// Time bounds on object-store calls.
    pub fn store_bounds(&self) -> silt_segment::store::Bounds {
        silt_segment::store::Bounds {
            attempt: Duration::from_millis(self.object_store_attempt_timeout_ms.max(1)),
            call: Duration::from_millis(self.object_store_call_timeout_ms.max(1)),
        }
    }

    pub fn agent_config(&self) -> anyhow::Result<AgentConfig> {
        anyhow::ensure!(self.flush_bytes > 0, "--flush-bytes must be positive");
        anyhow::ensure!(
            self.max_inflight_bytes >= self.max_request_bytes,
            "--max-inflight-bytes must be at least --max-request-bytes, or large requests could never be admitted"
        );
        Ok(AgentConfig {
            flush_interval: Duration::from_millis(self.flush_interval_ms),
            group_commit: self.group_commit,
            sequencer: self.sequencer,
            flush_bytes: self.flush_bytes,
            max_concurrent_flushes: self.max_concurrent_flushes.max(1),
            max_inflight_bytes: self.max_inflight_bytes,
            cache_bytes: self.cache_bytes,
            ..AgentConfig::default()
        })
    }

    pub fn api_config(&self) -> ApiConfig {
        ApiConfig {
            max_request_bytes: self.max_request_bytes,
            body_timeout: Duration::from_secs(self.body_timeout_secs.max(1)),
            body_budget_bytes: self.max_inflight_bytes,
            ..ApiConfig::default()
        }
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Dev(a) => crate::server::dev(a).await,
        Command::Agent(a) => crate::server::agent(a).await,
        Command::Compactor(a) => crate::server::compactor(a).await,
        Command::Topics { command, client } => crate::client::topics(&client, command).await,
        Command::Groups { command, client } => crate::groups::groups(&client, command).await,
        Command::ShareGroups { command, client } => {
            crate::shares::share_groups(&client, command).await
        }
        Command::Produce(a) => crate::client::produce(a).await,
        Command::Consume(a) => crate::client::consume(a).await,
        Command::Bench(a) => crate::bench::run(a).await,
        Command::Probe(a) => crate::probe::run(a).await,
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "silt", &mut std::io::stdout());
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every subcommand says what it does, and every flag what it sets.
    #[test]
    fn every_subcommand_and_flag_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for sub in cmd.get_subcommands() {
                let here = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() && sub.get_name() != "help" {
                    missing.push(format!("{here}: no about"));
                }
                walk(sub, &here, missing);
            }
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if arg.get_long().is_some()
                    && arg.get_help().is_none()
                    && !["help", "version"].contains(&id)
                {
                    missing.push(format!("{path} --{id}: no help"));
                }
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "silt", &mut missing);
        assert!(missing.is_empty(), "{missing:#?}");
    }
}
