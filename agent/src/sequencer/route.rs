//! Where an agent sends a segment's commit: to its own sequencer while it
//! holds the lease, to the holder's over HTTP otherwise, and directly to
//! the metadata store when there is no sequencer or the sequenced path
//! fails (see the invariant in [`super`]: the fallback is always safe).
//!
//! Every agent with an address others can reach stands for the lease; the
//! election job renews it (or learns the holder) every third of its time
//! to live, so a dead sequencer's place is taken within one lease time and
//! its followers commit directly meanwhile.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use silt_metadata::{CommitOutcome, Metadata, SegmentCommit};
use tokio_util::sync::CancellationToken;

use super::{
    COMMIT_PATH, LEASE, PENDING_CODE, Sequencer, SequencerLimits, TOKEN_HEADER, Unsequenced,
};
use crate::env::Env;
use crate::metrics::Metrics;
use crate::{Error, Result};

/// How long the sequencer's lease lasts unless renewed.
pub const LEASE_TTL: Duration = Duration::from_secs(3);
/// A sequencer that does not accept a connection this fast is taken for
/// dead (the commit goes direct).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(250);
/// Longest wait for a sequenced answer before committing directly.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Where commits go, as the last election round found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    /// No sequencer known (or sequencing is off).
    Direct,
    /// This agent holds the lease until `until_ms`.
    Local { until_ms: i64 },
    /// Another agent holds it until `until_ms`.
    Remote {
        url: String,
        token: u64,
        until_ms: i64,
    },
}

/// An agent's commit path.
#[derive(Debug)]
pub struct Commits {
    md: Arc<Metadata>,
    env: Arc<dyn Env>,
    metrics: Metrics,
    /// This agent's sequencer; serves only while the route is `Local`.
    local: Sequencer,
    route: RwLock<Route>,
    /// Our lease identity, and the token followers present.
    holder: u64,
    http: reqwest::Client,
    stop: CancellationToken,
}

impl Commits {
    pub fn new(
        md: Arc<Metadata>,
        env: Arc<dyn Env>,
        metrics: Metrics,
        stop: CancellationToken,
    ) -> Self {
        let local = Sequencer::start(
            md.clone(),
            SequencerLimits::default(),
            Some(metrics.clone()),
            stop.clone(),
        );
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(ANSWER_TIMEOUT)
            .build()
            .unwrap_or_else(|e| {
                // Only a broken TLS setup gets here; commits then go
                // without those timeouts rather than not at all.
                tracing::warn!(error = %e, "sequencer client: default settings");
                reqwest::Client::default()
            });
        Self {
            holder: env.random_u64(),
            md,
            env,
            metrics,
            local,
            route: RwLock::new(Route::Direct),
            http,
            stop,
        }
    }

    /// This agent's lease identity.
    pub fn holder(&self) -> u64 {
        self.holder
    }

    /// Whether commits go to a sequencer now (this agent's or another's).
    pub fn sequenced(&self) -> bool {
        let now = self.env.now_ms();
        match &*self.route.read() {
            Route::Local { until_ms } | Route::Remote { until_ms, .. } => now < *until_ms,
            Route::Direct => false,
        }
    }

    /// Commits a segment: sequenced when a sequencer is known, directly
    /// otherwise or when the sequenced path fails.
    pub async fn commit(&self, commit: &SegmentCommit) -> silt_metadata::Result<CommitOutcome> {
        let now = self.env.now_ms();
        let route = self.route.read().clone();
        let (label, sequenced) = match route {
            Route::Local { until_ms } if now < until_ms => {
                ("local", Some(self.local.commit(commit.clone()).await))
            }
            Route::Remote {
                url,
                token,
                until_ms,
            } if now < until_ms => ("remote", Some(self.send(&url, token, commit).await)),
            _ => ("direct", None),
        };
        let label = match sequenced {
            Some(Ok(outcome)) => {
                self.count(label);
                return Ok(outcome);
            }
            Some(Err(Unsequenced::Pending { segment, after })) => {
                return Err(silt_metadata::Error::PredecessorPending { segment, after });
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, segment = %commit.segment_id, "sequenced commit failed; committing directly");
                "fallback"
            }
            None => label,
        };
        self.count(label);
        self.md.commit_segment(commit).await
    }

    /// Another agent's commit, presented with `token` (the internal
    /// endpoint): taken only while this agent holds the lease.
    pub async fn serve(
        &self,
        token: u64,
        commit: SegmentCommit,
    ) -> std::result::Result<CommitOutcome, Unsequenced> {
        let serving =
            matches!(*self.route.read(), Route::Local { until_ms } if self.env.now_ms() < until_ms);
        if !serving || token != self.holder {
            return Err(Unsequenced::NotSequencer);
        }
        self.local.commit(commit).await
    }

    fn count(&self, route: &str) {
        self.metrics
            .segment_commits
            .get_or_create(&vec![("route".to_owned(), route.to_owned())])
            .inc();
    }

    async fn send(
        &self,
        url: &str,
        token: u64,
        commit: &SegmentCommit,
    ) -> std::result::Result<CommitOutcome, Unsequenced> {
        let failed = |e: reqwest::Error| Unsequenced::Failed(e.to_string());
        let response = self
            .http
            .post(format!("{}{COMMIT_PATH}", url.trim_end_matches('/')))
            .header(TOKEN_HEADER, format!("{token:016x}"))
            .json(commit)
            .send()
            .await
            .map_err(failed)?;
        if !response.status().is_success() {
            let status = response.status();
            let problem: serde_json::Value = response.json().await.unwrap_or_default();
            return Err(match (problem["code"].as_str(), commit.after.as_ref()) {
                (Some(PENDING_CODE), Some(after)) => Unsequenced::Pending {
                    segment: commit.segment_id.clone(),
                    after: after.clone(),
                },
                _ => Unsequenced::Failed(format!("the sequencer answered {status}")),
            });
        }
        response.json().await.map_err(failed)
    }

    /// Stands for the lease with `url` (how other agents reach this one),
    /// or, with none, only follows whoever holds it; renews or re-learns
    /// the route every third of the lease time until the agent stops, then
    /// gives the lease up.
    pub fn elect(self: &Arc<Self>, url: Option<String>) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(LEASE_TTL / 3);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = this.stop.cancelled() => break,
                }
                let route = this.round(url.as_deref()).await;
                *this.route.write() = route;
            }
            *this.route.write() = Route::Direct;
            if url.is_some() {
                if let Err(e) = this.md.release_lease(LEASE, this.holder).await {
                    tracing::debug!(error = %e, "sequencer lease not released; it lapses");
                }
            }
        });
    }

    /// One election round: the route it finds.
    async fn round(&self, url: Option<&str>) -> Route {
        let now = self.env.now_ms();
        let ttl = LEASE_TTL.as_millis() as i64;
        let lease = match url {
            Some(url) => self.md.claim_lease(LEASE, self.holder, url, now, ttl).await,
            None => self.md.lease(LEASE).await.map(Option::unwrap_or_default),
        };
        match lease {
            Ok(l) if l.holder == self.holder => {
                if !matches!(*self.route.read(), Route::Local { .. }) {
                    tracing::info!("this agent is now the commit sequencer");
                }
                Route::Local {
                    until_ms: l.expires_ms,
                }
            }
            Ok(l) if l.expires_ms > now && !l.contact.is_empty() => Route::Remote {
                url: l.contact,
                token: l.holder,
                until_ms: l.expires_ms,
            },
            Ok(_) => Route::Direct,
            Err(e) => {
                tracing::warn!(error = %e, "sequencer election failed; committing directly");
                Route::Direct
            }
        }
    }
}

/// Parses a presented token.
pub fn parse_token(s: &str) -> Result<u64> {
    u64::from_str_radix(s, 16)
        .map_err(|_| Error::InvalidArgument("a malformed sequencer token".into()))
}
