//! Kafka's classic group protocol on the agent: the calls that wait (a join
//! until its generation forms, a follower's sync until the leader assigns)
//! wait here, on changes to the group record that any agent may make, so a
//! group's members may be spread over agents. The state machine itself is
//! `silt_metadata::groups::classic`.
//!
//! Waits are bounded: a join by the group's rebalance deadline (the
//! barrier closes by then), a sync by the leader's session (a leader that
//! dies unassigned starts a new rebalance), both by `max_wait` and by
//! shutdown. The group is looked at again at least every
//! [`RECHECK`], so a barrier due by time alone closes without a write.

use std::time::Duration;

pub use silt_metadata::groups::classic::{
    ClassicAssignment, ClassicJoin, GroupVersion, JoinProgress, JoinedGeneration, SyncProgress,
};
pub use silt_metadata::groups::{GroupDescription, MAX_SESSION_TIMEOUT_MS, MIN_SESSION_TIMEOUT_MS};
pub use silt_metadata::values::{ClassicPhase, ClassicProtocol, Opaque};
use tokio::time::Instant;

use crate::{Agent, Error, Refusal, Result};

/// A committed offset, by topic name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedPartition {
    pub topic: String,
    pub partition: u32,
    /// The next offset to consume.
    pub offset: u64,
    pub metadata: String,
}

/// Longest a waiting call goes without looking at the group.
const RECHECK: Duration = Duration::from_millis(500);

impl Agent {
    /// Joins `group` and waits (up to `max_wait`) for the generation to
    /// form. `Refused(UnknownMember)` if the barrier closed without it.
    pub async fn classic_join(
        &self,
        group: &str,
        req: ClassicJoin,
        max_wait: Duration,
    ) -> Result<JoinedGeneration> {
        let md = &self.inner.md;
        let member = req.member_id.clone();
        md.classic_join(group, &req, self.inner.env.now_ms())
            .await?;
        let deadline = Instant::now() + max_wait;
        loop {
            let now = self.inner.env.now_ms();
            let (progress, version) = md.classic_join_progress(group, &member, now).await?;
            match progress {
                JoinProgress::Joined(g) => return Ok(g),
                JoinProgress::Dropped => return Err(Error::Refused(Refusal::UnknownMember)),
                JoinProgress::Waiting => {}
            }
            if !self.wait_for_group(group, &version, deadline).await {
                return Err(Error::Refused(Refusal::RebalanceInProgress {
                    generation: 0,
                }));
            }
        }
    }

    /// Syncs at `generation`: the leader passes `assignments`; everyone
    /// waits (up to `max_wait`) for its own.
    pub async fn classic_sync(
        &self,
        group: &str,
        member_id: &str,
        generation: u32,
        assignments: Option<Vec<ClassicAssignment>>,
        max_wait: Duration,
    ) -> Result<Opaque> {
        let md = &self.inner.md;
        let deadline = Instant::now() + max_wait;
        loop {
            let now = self.inner.env.now_ms();
            let (progress, version) = md
                .classic_sync(group, member_id, generation, assignments.as_deref(), now)
                .await?;
            if let SyncProgress::Assigned(a) = progress {
                return Ok(a);
            }
            if !self.wait_for_group(group, &version, deadline).await {
                return Err(Error::Refused(Refusal::RebalanceInProgress { generation }));
            }
        }
    }

    pub async fn classic_heartbeat(
        &self,
        group: &str,
        member_id: &str,
        generation: u32,
    ) -> Result<()> {
        let now = self.inner.env.now_ms();
        Ok(self
            .inner
            .md
            .classic_heartbeat(group, member_id, generation, now)
            .await?)
    }

    /// Members leave; per member, `UnknownMember` if it was not in the group.
    pub async fn classic_leave(
        &self,
        group: &str,
        member_ids: &[String],
    ) -> Result<Vec<std::result::Result<(), Refusal>>> {
        let now = self.inner.env.now_ms();
        Ok(self.inner.md.classic_leave(group, member_ids, now).await?)
    }

    /// A fresh member id: `prefix` (the client's id, reduced to what ids
    /// may hold, at most 64 characters) and 128 random bits.
    pub fn new_member_id(&self, prefix: &str) -> String {
        let env = &self.inner.env;
        let prefix: String = prefix
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            .take(64)
            .collect();
        let prefix = if prefix.is_empty() { "member" } else { &prefix };
        format!(
            "{prefix}-{:016x}{:016x}",
            env.random_u64(),
            env.random_u64()
        )
    }

    /// The group's record, members (with their Kafka protocol state) and
    /// offsets, as stored; `GroupNotFound` if it never existed.
    pub async fn group_description(&self, group: &str) -> Result<GroupDescription> {
        Ok(self.inner.md.describe_group(group).await?)
    }

    /// A group's committed offsets, of `topic` only if given (an unknown
    /// topic has none). Offsets of deleted topics are left out.
    pub async fn committed_offsets(
        &self,
        group: &str,
        topic: Option<&str>,
    ) -> Result<Vec<CommittedPartition>> {
        let md = &self.inner.md;
        let names: std::collections::HashMap<u64, String> = match topic {
            Some(name) => match self.inner.topics.get(name).await {
                Ok(t) => [(t.id, t.name.clone())].into(),
                Err(Error::TopicNotFound(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e),
            },
            None => md
                .list_topics()
                .await?
                .into_iter()
                .map(|t| (t.id, t.name))
                .collect(),
        };
        let only = topic.and_then(|_| names.keys().next().copied());
        let offsets = md.committed_offsets(group, only).await?;
        Ok(offsets
            .into_iter()
            .filter_map(|o| {
                Some(CommittedPartition {
                    topic: names.get(&o.topic_id)?.clone(),
                    partition: o.partition,
                    offset: o.committed.offset,
                    metadata: o.committed.metadata,
                })
            })
            .collect())
    }

    /// Waits until the group record changes, [`RECHECK`] passes, or the
    /// deadline or shutdown comes; false once the deadline or shutdown has.
    async fn wait_for_group(&self, group: &str, seen: &GroupVersion, deadline: Instant) -> bool {
        let until = deadline.min(Instant::now() + RECHECK);
        tokio::select! {
            r = self.inner.md.watch_group(group, seen) => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "group watch failed; looking again");
                    tokio::time::sleep_until(until).await;
                }
            }
            () = tokio::time::sleep_until(until) => {}
            () = self.inner.shutdown.cancelled() => return false,
        }
        Instant::now() < deadline
    }
}
