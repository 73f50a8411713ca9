//! The Kafka wire protocol, spoken by every agent: real Kafka clients
//! produce, fetch and join groups on any agent, and see this agent as the
//! leader of every partition and the coordinator of every group — the
//! stateless design carries over unchanged, because all state is in the
//! metadata store behind [`silt_agent::Agent`].
//!
//! Invariant: this front end reaches nothing past the agent. It decodes a
//! request (with the `kafka-protocol` crate), calls the agent, and encodes
//! the answer; what the HTTP API and the Kafka protocol store and read is
//! therefore the same records, offsets and groups.
//!
//! Bounds: frames have a size limit (checked before anything is allocated),
//! connections are capped and closed when idle, and a malformed frame or
//! request closes that connection only, with a log line. Requests on one
//! connection are pipelined (read ahead, started in order, answered in
//! order; see `conn`).
//!
//! Supported (the table in `api_versions` is both what is advertised and
//! what requests are checked against): `ApiVersions` v0–3 (KIP-511),
//! `Metadata` v0–12, `Produce` v3–12 (v0–2 refused per partition),
//! `Fetch` v4–12, `ListOffsets` v1–6, `InitProducerId` v0–4,
//! `FindCoordinator` v0–5, `JoinGroup` v0–9, `SyncGroup` v0–5,
//! `Heartbeat` v0–4, `LeaveGroup` v0–5, `OffsetCommit` v2–8,
//! `OffsetFetch` v1–7, `DescribeGroups` v0–5, `ListGroups` v0–5,
//! `CreateTopics` v2–7, `DeleteTopics` v1–6, `DescribeConfigs` v1–4.
//! Transactions are not offered.

mod api_versions;
mod commits;
mod configs;
mod conn;
mod describe;
mod errors;
mod fetch;
mod frame;
mod groups;
mod metadata;
mod offsets;
mod produce;
mod producers;
mod topics;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use silt_agent::Agent;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub use frame::{Frame, FrameError, read_frame, write_frame};

/// How the Kafka listener behaves.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// What Metadata answers as this broker's address (behind a load
    /// balancer, the balancer's); by default the listener's own address.
    pub advertised: Option<(String, u16)>,
    /// Largest request frame accepted.
    pub max_frame_bytes: usize,
    /// Most client connections at once.
    pub max_connections: usize,
    /// A connection with no request for this long is closed.
    pub idle_timeout: Duration,
    /// A request frame must arrive whole, and an answer be taken, within
    /// this long once it has started, or the connection is closed.
    pub frame_timeout: Duration,
    /// Bytes of request frames all connections may hold at once, and
    /// likewise of fetched records in answers.
    pub max_inflight_bytes: usize,
    /// Requests one connection may have in flight (read ahead, answered in order).
    pub max_in_flight: usize,
    /// Largest batch a producer may send for one partition
    /// (`MESSAGE_TOO_LARGE` above it).
    pub max_message_bytes: usize,
    /// How long a produce waits for the agent's memory bound before it is
    /// answered `THROTTLING_QUOTA_EXCEEDED`.
    pub admission_wait: Duration,
    /// Partitions of a topic a Metadata request auto-creates; `None`: no
    /// auto-creation (the default).
    pub auto_create_partitions: Option<u32>,
    /// Caps a fetch's `max_bytes` and `max_wait_ms`.
    pub max_fetch_bytes: usize,
    pub max_fetch_wait: Duration,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            advertised: None,
            max_frame_bytes: 64 << 20,
            max_connections: 1000,
            idle_timeout: Duration::from_secs(600),
            frame_timeout: Duration::from_secs(30),
            max_inflight_bytes: 256 << 20,
            max_in_flight: 16,
            max_message_bytes: 16 << 20,
            admission_wait: Duration::from_secs(5),
            auto_create_partitions: None,
            max_fetch_bytes: 64 << 20,
            max_fetch_wait: Duration::from_secs(30),
        }
    }
}

/// What every connection shares.
#[derive(Debug)]
struct Broker {
    agent: Agent,
    config: KafkaConfig,
    /// The request bytes all connections hold (see `frame`).
    frames: Arc<Semaphore>,
    /// The fetched bytes all answers being built or written hold.
    responses: Arc<Semaphore>,
    /// The address Metadata gives clients.
    host: String,
    port: u16,
}

/// Serves the Kafka protocol on `listener` until `stop`.
pub async fn serve(
    listener: TcpListener,
    agent: Agent,
    config: KafkaConfig,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let local: SocketAddr = listener.local_addr()?;
    let (host, port) = config
        .advertised
        .clone()
        .unwrap_or_else(|| (local.ip().to_string(), local.port()));
    let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let frames = Arc::new(Semaphore::new(
        config
            .max_inflight_bytes
            .max(config.max_frame_bytes)
            .min(Semaphore::MAX_PERMITS),
    ));
    let responses = Arc::new(Semaphore::new(
        config
            .max_inflight_bytes
            .max(config.max_fetch_bytes + config.max_message_bytes)
            .min(Semaphore::MAX_PERMITS),
    ));
    let broker = Arc::new(Broker {
        agent,
        config,
        frames,
        responses,
        host,
        port,
    });
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.map_err(std::io::Error::other)?,
            () = stop.cancelled() => return Ok(()),
        };
        let (stream, addr) = tokio::select! {
            s = listener.accept() => match s {
                Ok(s) => s,
                Err(e) => {
                    // Out of descriptors, a connection reset before accept:
                    // the listener itself is fine; try again shortly.
                    tracing::warn!(error = %e, "Kafka accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = stop.cancelled() => return Ok(()),
        };
        let _ = stream.set_nodelay(true);
        let broker = broker.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            conn::serve(broker, stream, addr, stop).await;
            drop(permit);
        });
    }
}
