//! Serving: wire metadata, object storage, agent and API together; shut down
//! gracefully on SIGTERM or ctrl-c.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use prometheus_client::registry::Registry;
use silt_agent::{Agent, Metrics, SystemEnv};
use silt_api::{AppState, ConsoleConfig, HttpMetrics, ProbeInfo};
use silt_metadata::Metadata;
use silt_metadata::runner::RetryPolicy;
use silt_segment::store::{Bounds, ObjectStorage};
use tokio::net::TcpListener;

use crate::cli::{AgentArgs, CompactorArgs, ConsoleArgs, DevArgs, KafkaListen, Tuning};
use silt_agent::Env;
use silt_compactor::{Compactor, CompactorConfig, CompactorMetrics};

pub async fn dev(a: DevArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&a.data_dir)
        .with_context(|| format!("creating {}", a.data_dir.display()))?;
    let dir = std::fs::canonicalize(&a.data_dir)?;
    let objects = match a.object_store {
        Some(url) => url,
        None => url_for_dir(&dir.join("objects"))?,
    };
    let metadata = format!("sqlite://{}", dir.join("meta.db").display());
    let listeners = Listeners {
        http: a.listen,
        advertise: None,
        kafka: KafkaListen::parse(a.kafka_listen.as_deref(), Some(DEV_KAFKA))?,
        kafka_config: a.kafka.config()?,
    };
    serve(
        &objects,
        &metadata,
        listeners,
        &a.tuning,
        Extras::new(&a.console, true),
        Some(compactor_config(&a.compactor, &dir)?),
    )
    .await
}

/// `silt dev`'s Kafka address unless told otherwise.
const DEV_KAFKA: std::net::SocketAddr =
    std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9092);

pub async fn agent(a: AgentArgs) -> anyhow::Result<()> {
    let listeners = Listeners {
        http: a.listen,
        advertise: a.advertise_url,
        kafka: KafkaListen::parse(a.kafka_listen.as_deref(), None)?,
        kafka_config: a.kafka.config()?,
    };
    serve(
        &a.store.object_store,
        &a.store.metadata_url()?,
        listeners,
        &a.tuning,
        Extras::new(&a.console, false),
        None,
    )
    .await
}

/// What an agent serves beside the API: the console, the in-agent canary.
struct Extras {
    ui: bool,
    probe: Option<crate::probe::Canary>,
    history_interval: Duration,
}

impl Extras {
    fn new(a: &ConsoleArgs, ui_by_default: bool) -> Self {
        Self {
            ui: a.ui.unwrap_or(ui_by_default),
            probe: a.probe.then(|| {
                crate::probe::Canary::new(&a.probe_topic, a.probe_interval_ms, a.probe_timeout_ms)
            }),
            history_interval: Duration::from_millis(a.metrics_history_interval_ms),
        }
    }

    fn console(&self) -> ConsoleConfig {
        ConsoleConfig {
            ui: self.ui,
            probe: self.probe.as_ref().map(|c| ProbeInfo {
                topic: c.topic.clone(),
                interval_ms: c.interval.as_millis() as u64,
            }),
        }
    }
}

/// `--advertise-url` with `{ip}` replaced by this host's first
/// non-loopback IPv4 address.
fn advertised(url: &str) -> anyhow::Result<String> {
    if !url.contains("{ip}") {
        return Ok(url.to_owned());
    }
    let ip = nix::ifaddrs::getifaddrs()
        .context("listing network interfaces for {ip} in --advertise-url")?
        .filter_map(|i| i.address?.as_sockaddr_in().map(|a| a.ip()))
        .find(|ip| !ip.is_loopback() && !ip.is_link_local() && !ip.is_unspecified())
        .context("no non-loopback IPv4 address for {ip} in --advertise-url")?;
    Ok(url.replace("{ip}", &ip.to_string()))
}

/// Where an agent listens.
struct Listeners {
    http: std::net::SocketAddr,
    /// How other agents reach this one's HTTP listener (for the commit
    /// sequencer); by default the bound address unless it is a wildcard.
    advertise: Option<String>,
    kafka: KafkaListen,
    kafka_config: silt_kafka::KafkaConfig,
}

/// Binds the Kafka listener, if there is to be one.
async fn bind_kafka(listen: KafkaListen) -> anyhow::Result<Option<TcpListener>> {
    match listen {
        KafkaListen::Off => Ok(None),
        KafkaListen::At(addr) => {
            Ok(Some(TcpListener::bind(addr).await.with_context(|| {
                format!("binding the Kafka listener {addr}")
            })?))
        }
        KafkaListen::DefaultIfFree(addr) => match TcpListener::bind(addr).await {
            Ok(l) => Ok(Some(l)),
            Err(e) => {
                tracing::warn!(%addr, error = %e, "no Kafka listener: its default address is taken (set --kafka-listen ADDR, or off)");
                Ok(None)
            }
        },
    }
}

/// The compactor's configuration for a data directory: its Iceberg
/// catalog is `<dir>/iceberg.db` unless told otherwise.
fn compactor_config(
    t: &crate::cli::CompactorTuning,
    dir: &std::path::Path,
) -> anyhow::Result<CompactorConfig> {
    let mut config = t.config()?;
    config
        .iceberg_catalog
        .get_or_insert_with(|| dir.join("iceberg.db"));
    Ok(config)
}

/// `silt compactor`: runs until SIGTERM/ctrl-c, then gives its lease up;
/// with `--once`, runs every job once and prints what it did.
pub async fn compactor(a: CompactorArgs) -> anyhow::Result<()> {
    let (objects, metadata) = a.urls()?;
    let (storage, md) = open(&objects, &metadata, Bounds::default())?;
    let mut registry = Registry::default();
    let metrics = CompactorMetrics::new(&mut registry);
    let config = match &a.data_dir {
        Some(dir) => compactor_config(&a.tuning, &std::fs::canonicalize(dir)?)?,
        None => a.tuning.config()?,
    };
    let compactor = new_compactor(config, md, storage, metrics, a.holder_id);
    if a.once {
        let report = compactor.run_once().await?;
        #[allow(clippy::print_stdout)]
        {
            println!("{report:#?}");
        }
        return Ok(());
    }
    if let Some(listen) = a.metrics_listen {
        tokio::spawn(async move {
            if let Err(e) = serve_metrics(listen, registry).await {
                tracing::error!(error = %e, "metrics endpoint failed");
            }
        });
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move { compactor.run(stop).await }
    });
    tracing::info!("compactor running");
    shutdown_signal().await;
    stop.cancel();
    task.await?;
    Ok(())
}

pub(crate) fn new_compactor(
    config: CompactorConfig,
    md: Arc<Metadata>,
    storage: ObjectStorage,
    metrics: CompactorMetrics,
    holder: Option<u64>,
) -> Compactor {
    let env = SystemEnv;
    Compactor::new(
        config,
        md,
        storage,
        holder.unwrap_or_else(|| env.random_u64()),
        Arc::new(move || env.now_ms()),
        metrics,
    )
}

/// Serves `GET /metrics` (Prometheus text) for a process without the API.
async fn serve_metrics(listen: std::net::SocketAddr, registry: Registry) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    tracing::info!(addr = %listener.local_addr()?, "metrics on /metrics");
    serve_metrics_on(listener, registry).await
}

/// Serves `GET /metrics` on a bound listener.
pub(crate) async fn serve_metrics_on(
    listener: TcpListener,
    registry: Registry,
) -> anyhow::Result<()> {
    let registry = Arc::new(registry);
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let registry = registry.clone();
            async move {
                let mut out = String::new();
                match prometheus_client::encoding::text::encode(&mut out, &registry) {
                    Ok(()) => (axum::http::StatusCode::OK, out),
                    Err(_) => (
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                        "metrics encoding failed\n".to_owned(),
                    ),
                }
            }
        }),
    );
    axum::serve(listener, app).await?;
    Ok(())
}

pub fn url_for_dir(dir: &std::path::Path) -> anyhow::Result<String> {
    std::fs::create_dir_all(dir)?;
    Ok(url::Url::from_directory_path(dir)
        .map_err(|()| anyhow::anyhow!("{} is not an absolute path", dir.display()))?
        .to_string())
}

/// Opens the object store and the metadata store that URLs name.
pub fn open(
    objects: &str,
    metadata: &str,
    bounds: Bounds,
) -> anyhow::Result<(ObjectStorage, Arc<Metadata>)> {
    let storage = ObjectStorage::from_url_bounded(objects, bounds)
        .with_context(|| format!("object store {objects}"))?;
    let kv = silt_metadata::open_kv(metadata).with_context(|| format!("metadata {metadata}"))?;
    let kv = crate::faults::metadata(kv);
    Ok((
        storage,
        Arc::new(Metadata::new(kv, RetryPolicy::default(), rand::random())),
    ))
}

/// Starts an agent and builds the API state around it (also used by
/// `silt bench --embedded`).
pub fn build(
    storage: ObjectStorage,
    md: Arc<Metadata>,
    tuning: &Tuning,
) -> anyhow::Result<AppState> {
    build_with(storage, md, tuning, Registry::default())
}

/// [`build`], registering into a registry that may hold other metrics.
fn build_with(
    storage: ObjectStorage,
    md: Arc<Metadata>,
    tuning: &Tuning,
    mut registry: Registry,
) -> anyhow::Result<AppState> {
    let storage = match tuning.hedge_puts_after_ms {
        Some(ms) => storage.with_hedged_puts(Duration::from_millis(ms.max(1))),
        None => storage,
    };
    let env = crate::faults::env();
    let metrics = Metrics::new(&mut registry);
    registry
        .sub_registry_with_prefix("silt")
        .register_collector(Box::new(silt_agent::metrics::MetadataTransactions(
            md.clone(),
        )));
    let http = HttpMetrics::new(&mut registry);
    let agent = Agent::start(tuning.agent_config()?, md, storage, env, metrics);
    Ok(AppState::new(agent, tuning.api_config(), registry, http))
}

async fn serve(
    objects: &str,
    metadata: &str,
    listeners: Listeners,
    tuning: &Tuning,
    extras: Extras,
    compactor: Option<CompactorConfig>,
) -> anyhow::Result<()> {
    let (storage, md) = open(objects, metadata, tuning.store_bounds())?;
    let mut registry = Registry::default();
    // `silt dev` runs the compactor in the same process, its metrics beside the agent's.
    let compactor = compactor.map(|c| (c, CompactorMetrics::new(&mut registry)));
    let probe = extras
        .probe
        .clone()
        .map(|c| (c, crate::probe::Metrics::new(&mut registry)));
    let state = build_with(storage.clone(), md.clone(), tuning, registry)?
        .with_console(extras.console(), extras.history_interval);
    let agent = state.agent.clone();
    let stop = tokio_util::sync::CancellationToken::new();
    let history = state.sample_history(stop.clone());
    let stop_compactor = tokio_util::sync::CancellationToken::new();
    let compactor = compactor.map(|(config, metrics)| {
        let c = new_compactor(config, md, storage, metrics, None);
        let stop = stop_compactor.clone();
        tokio::spawn(async move { c.run(stop).await })
    });
    let listen = listeners.http;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;
    let kafka = bind_kafka(listeners.kafka).await?;
    if let Some(k) = &kafka {
        anyhow::ensure!(
            !k.local_addr()?.ip().is_unspecified() || listeners.kafka_config.advertised.is_some(),
            "the Kafka listener {} is a wildcard address, which clients cannot connect to: \
             give --kafka-advertised host:port",
            k.local_addr()?
        );
    }
    // The first lines on stdout: scripts and tests read the bound addresses here.
    #[allow(clippy::print_stdout)]
    {
        println!("silt listening on http://{addr}");
        if let Some(k) = &kafka {
            println!("silt kafka listening on {}", k.local_addr()?);
        }
    }
    tracing::info!(%addr, objects, metadata, "serving");
    let reachable = match &listeners.advertise {
        Some(url) => Some(advertised(url)?),
        None => (!addr.ip().is_unspecified()).then(|| format!("http://{addr}")),
    };
    if reachable.is_none() && tuning.sequencer {
        tracing::info!(
            "not standing for commit sequencer: the listener is a wildcard address (give --advertise-url)"
        );
    }
    agent.join_sequencing(reachable);
    let kafka = kafka.map(|l| {
        tokio::spawn(silt_kafka::serve(
            l,
            agent.clone(),
            listeners.kafka_config,
            stop.clone(),
        ))
    });
    let listener = silt_api::listener::BoundedListener::new(
        listener,
        tuning.max_connections,
        Duration::from_secs(tuning.idle_timeout_secs.max(1)),
    );
    let server = tokio::spawn(silt_api::server::serve(
        listener,
        silt_api::app(state),
        Duration::from_secs(tuning.header_timeout_secs.max(1)),
        stop.clone(),
    ));
    let stop_probe = tokio_util::sync::CancellationToken::new();
    let probe = probe.map(|(canary, metrics)| {
        // The canary goes through this agent's own listener, as a client would.
        let port = addr.port();
        let host = if addr.ip().is_unspecified() {
            format!("127.0.0.1:{port}")
        } else {
            addr.to_string()
        };
        let client = crate::client::Client::new(&format!("http://{host}"));
        let stop = stop_probe.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::probe::run_canary(client, canary, metrics, stop).await {
                tracing::error!(error = %e, "the in-agent canary stopped");
            }
        })
    });
    if extras.ui {
        tracing::info!("web console on http://{addr}/ui");
    }
    shutdown_signal().await;
    // The canary stops first: its produces would only meet a draining agent.
    stop_probe.cancel();
    if let Some(p) = probe {
        let _ = p.await;
    }
    tracing::info!("shutting down: flushing buffered records and answering producers");
    let grace = Duration::from_secs(tuning.shutdown_timeout_secs);
    let drained = tokio::time::timeout(grace, async {
        agent.shutdown().await; // no new produce; flush and answer the accepted ones
        stop.cancel(); // stop accepting connections; finish in-flight requests
        server.await
    })
    .await;
    stop.cancel();
    let _ = history.await;
    if let Some(task) = kafka {
        let _ = task.await;
    }
    stop_compactor.cancel();
    if let Some(task) = compactor {
        let _ = task.await;
    }
    match drained {
        Ok(Ok(())) => tracing::info!("stopped cleanly"),
        Ok(Err(e)) => tracing::error!(error = %e, "server task failed"),
        Err(_) => tracing::warn!(
            ?grace,
            "shutdown timed out; exiting with requests in flight"
        ),
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::advertised;

    #[test]
    fn advertise_urls_name_this_host() {
        assert_eq!(
            advertised("http://10.0.0.9:8080").ok().as_deref(),
            Some("http://10.0.0.9:8080")
        );
        match advertised("http://{ip}:8080") {
            Ok(url) => {
                let host = url.trim_start_matches("http://").trim_end_matches(":8080");
                let ip: std::net::Ipv4Addr = host.parse().unwrap_or_else(|_| panic!("{url}"));
                assert!(!ip.is_loopback(), "{url}");
            }
            // A host with loopback only: said plainly.
            Err(e) => assert!(e.to_string().contains("no non-loopback IPv4"), "{e}"),
        }
    }
}
