//! What an agent knows of the cluster, for operators (`GET /v1/cluster`,
//! the console): itself, who sequences commits, and what the compactor
//! last did. Read-only and cheap: three point reads, run concurrently, at
//! snapshot isolation, whatever the size of the log.

use silt_metadata::keys::COMPACTOR_JOB;
use silt_metadata::values::{JobStatus, LeaseRecord};

use crate::sequencer::LEASE as SEQUENCER_LEASE;
use crate::{Agent, Result};

/// The whole view.
#[derive(Debug, Clone)]
pub struct ClusterView {
    pub agent: AgentView,
    pub sequencer: SequencerView,
    pub compactor: CompactorView,
}

/// This agent.
#[derive(Debug, Clone)]
pub struct AgentView {
    pub started_ms: i64,
    pub now_ms: i64,
    pub shutting_down: bool,
    /// Produced bytes held until their segment commits, and the bound.
    pub inflight_bytes: u64,
    pub max_inflight_bytes: u64,
}

/// This agent's part in commit sequencing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequencerRole {
    /// Sequencing is turned off here: this agent commits its own segments.
    Off,
    /// No agent holds the lease: commits go directly.
    Vacant,
    /// This agent sequences every agent's commits.
    Leader,
    /// Another agent does.
    Follower,
}

#[derive(Debug, Clone)]
pub struct SequencerView {
    pub role: SequencerRole,
    /// The holder's URL and lease, while someone holds it (also when
    /// sequencing is off here: other agents may still sequence theirs).
    pub holder_url: Option<String>,
    pub lease_expires_ms: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct CompactorView {
    /// The active compactor's lease, if one runs.
    pub lease: Option<LeaseRecord>,
    /// What a compactor's last round did, if one ever ran.
    pub last_round: Option<JobStatus>,
}

impl Agent {
    /// This agent, the sequencer and the compactor, as of now.
    pub async fn cluster(&self) -> Result<ClusterView> {
        let inner = &self.inner;
        let now_ms = inner.env.now_ms();
        let md = &inner.md;
        let (sequencer, compactor, last_round) = tokio::try_join!(
            md.lease(SEQUENCER_LEASE),
            md.lease(COMPACTOR_JOB),
            md.job_status(COMPACTOR_JOB),
        )?;
        let live = |l: Option<LeaseRecord>| l.filter(|l| l.expires_ms > now_ms);
        let sequencer = live(sequencer);
        let role = match &sequencer {
            _ if !inner.config.sequencer => SequencerRole::Off,
            None => SequencerRole::Vacant,
            Some(l) if l.holder == inner.commits.holder() => SequencerRole::Leader,
            Some(_) => SequencerRole::Follower,
        };
        let max = inner
            .config
            .max_inflight_bytes
            .min(tokio::sync::Semaphore::MAX_PERMITS);
        Ok(ClusterView {
            agent: AgentView {
                started_ms: inner.started_ms,
                now_ms,
                shutting_down: inner.shutdown.is_cancelled(),
                inflight_bytes: max.saturating_sub(inner.admission.available_permits()) as u64,
                max_inflight_bytes: max as u64,
            },
            sequencer: SequencerView {
                role,
                holder_url: sequencer
                    .as_ref()
                    .map(|l| l.contact.clone())
                    .filter(|c| !c.is_empty()),
                lease_expires_ms: sequencer.map(|l| l.expires_ms),
            },
            compactor: CompactorView {
                lease: live(compactor),
                last_round,
            },
        })
    }
}
