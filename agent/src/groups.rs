//! Consumer groups as front ends see them: topic names instead of ids, lag,
//! and the group fetch. Membership, assignment and fencing are metadata
//! transactions (`silt_metadata::groups`), so any agent serves any member
//! and members of one group may talk to different agents.
//!
//! The group fetch reads a member's partitions from a *cursor*: an opaque
//! token holding the generation it was made in and, per partition, the
//! next offset to read. A client reads ahead without committing and may
//! send the cursor to any agent. A cursor from another generation is
//! ignored: after a rebalance every partition restarts at its committed
//! offset (else at the member's `offset_reset`), so records read but never
//! committed by a former owner are delivered again, never skipped.
//!
//! A fetch renews the member's lease once a third of its session has
//! passed, so a member that keeps fetching needs no separate heartbeats.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
pub use silt_metadata::groups::{GroupSummary, MAX_GROUPS_LISTED, MemberRef};
use silt_metadata::groups::{JoinRequest, Membership, OffsetCommit, OffsetUpdate};
pub use silt_metadata::values::GroupProtocol;
use silt_metadata::values::{OffsetReset, TopicAssignment};
use silt_metadata::{PartitionState, Refusal};
use tokio::time::Instant;

use crate::{Agent, Error, FetchRequest, Limits, Result, StoredRecord};

/// Most partitions a cursor describes (the most one member can own).
const MAX_CURSOR_PARTITIONS: usize = 1 << 16;

/// What a member asks for when it joins.
#[derive(Debug, Clone)]
pub struct JoinSpec {
    pub topics: Vec<String>,
    pub session_timeout: Duration,
    pub offset_reset: OffsetReset,
    /// A prefix for the member id (e.g. the client's name).
    pub client_id: Option<String>,
}

/// A member's current standing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberState {
    pub member_id: String,
    pub generation: u32,
    pub assignment: Vec<TopicAssignment>,
    pub session_timeout_ms: u32,
    pub expires_ms: i64,
}

impl From<Membership> for MemberState {
    fn from(m: Membership) -> Self {
        Self {
            member_id: m.member_id,
            generation: m.generation,
            assignment: m.member.assignment,
            session_timeout_ms: m.member.session_timeout_ms,
            expires_ms: m.member.expires_ms,
        }
    }
}

/// Offsets to commit for a group, by topic name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupCommit {
    pub group: String,
    /// `None`: a standalone reader (allowed while the group has no live member).
    pub member: Option<MemberRef>,
    pub offsets: Vec<OffsetSpec>,
}

/// One offset to commit: the next offset to consume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetSpec {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub metadata: String,
}

/// A group fetch.
#[derive(Debug, Clone)]
pub struct GroupFetch {
    pub generation: u32,
    pub cursor: Option<String>,
    pub limits: Limits,
    pub wait: Duration,
}

/// A record of a group fetch.
#[derive(Debug, Clone)]
pub struct GroupRecord {
    pub topic: Arc<str>,
    pub topic_id: u64,
    pub partition: u32,
    pub record: StoredRecord,
}

/// A group fetch's answer.
#[derive(Debug, Clone)]
pub struct GroupRecords {
    pub records: Vec<GroupRecord>,
    cursor: Cursor,
    pub member: MemberState,
}

impl GroupRecords {
    /// Where the next fetch continues (opaque to clients).
    pub fn next_cursor(&self) -> String {
        self.cursor.encode()
    }

    /// Ends the answer for the partition of `records[i]` just before that
    /// record: it and the partition's later records are left out, and the
    /// next fetch reads that partition from it again. For a record the
    /// caller cannot show (bytes that are not UTF-8, asked for as text);
    /// the other partitions' records are unaffected.
    pub fn cut_before(&mut self, i: usize) {
        let Some(r) = self.records.get(i) else {
            return;
        };
        let (topic_id, partition, offset) = (r.topic_id, r.partition, r.record.offset);
        self.records.retain(|r| {
            (r.topic_id, r.partition) != (topic_id, partition) || r.record.offset < offset
        });
        self.cursor.positions.insert((topic_id, partition), offset);
    }
}

/// A partition's committed offset and lag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: u32,
    pub committed: Option<u64>,
    pub metadata: Option<String>,
    pub high_watermark: u64,
    /// `high_watermark - committed`; `None` without a committed offset.
    pub lag: Option<u64>,
    /// The live member owning it, if any.
    pub owner: Option<String>,
}

/// A group, its members and its lag.
#[derive(Debug, Clone)]
pub struct GroupInfo {
    pub name: String,
    pub generation: u32,
    pub protocol: Option<GroupProtocol>,
    /// Members of the current generation; see [`GroupInfo::live_members`].
    pub members: Vec<MemberState>,
    /// When the description was taken (the agent's clock).
    pub now_ms: i64,
    pub partitions: Vec<PartitionLag>,
}

impl GroupInfo {
    pub fn live_members(&self) -> impl Iterator<Item = &MemberState> {
        self.members.iter().filter(|m| m.expires_ms > self.now_ms)
    }
}

/// The decoded cursor: `v1 | generation u32 | rotation u32 | n u32 |
/// (topic u64, partition u32, next offset u64) * n`, base64url.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Cursor {
    generation: u32,
    /// Which partition the next fetch reads first (fairness).
    rotation: u32,
    positions: HashMap<(u64, u32), u64>,
}

impl Cursor {
    fn encode(&self) -> String {
        let mut v = Vec::with_capacity(13 + self.positions.len() * 20);
        v.push(1u8);
        v.extend_from_slice(&self.generation.to_be_bytes());
        v.extend_from_slice(&self.rotation.to_be_bytes());
        v.extend_from_slice(&(self.positions.len() as u32).to_be_bytes());
        let mut sorted: Vec<_> = self.positions.iter().collect();
        sorted.sort();
        for (&(t, p), &o) in sorted {
            v.extend_from_slice(&t.to_be_bytes());
            v.extend_from_slice(&p.to_be_bytes());
            v.extend_from_slice(&o.to_be_bytes());
        }
        URL_SAFE_NO_PAD.encode(v)
    }

    fn decode(token: &str) -> Result<Self> {
        let bad = || Error::InvalidArgument("malformed cursor; use a next_cursor as given".into());
        let b = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
        let take = |i: usize, n: usize| b.get(i..i + n).ok_or_else(bad);
        let u32_at = |i| take(i, 4).map(|s| u32::from_be_bytes(s.try_into().unwrap_or_default()));
        let u64_at = |i| take(i, 8).map(|s| u64::from_be_bytes(s.try_into().unwrap_or_default()));
        if take(0, 1)? != [1] {
            return Err(bad());
        }
        let n = u32_at(9)? as usize;
        if n > MAX_CURSOR_PARTITIONS || b.len() != 13 + n * 20 {
            return Err(bad());
        }
        let mut positions = HashMap::with_capacity(n);
        for i in 0..n {
            let at = 13 + i * 20;
            positions.insert((u64_at(at)?, u32_at(at + 8)?), u64_at(at + 12)?);
        }
        Ok(Self {
            generation: u32_at(1)?,
            rotation: u32_at(5)?,
            positions,
        })
    }
}

fn member_id(client_id: Option<&str>, random: u64) -> String {
    let prefix: String = client_id
        .unwrap_or("member")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(200)
        .collect();
    let prefix = if prefix.is_empty() { "member" } else { &prefix };
    format!("{prefix}-{random:016x}")
}

impl Agent {
    /// Joins `group`; the transaction that admits the member rebalances.
    pub async fn join_group(&self, group: &str, spec: JoinSpec) -> Result<MemberState> {
        let env = &self.inner.env;
        let req = JoinRequest {
            member_id: member_id(spec.client_id.as_deref(), env.random_u64()),
            topics: spec.topics,
            session_timeout_ms: u32::try_from(spec.session_timeout.as_millis()).unwrap_or(u32::MAX),
            offset_reset: spec.offset_reset,
        };
        let m = self.inner.md.join_group(group, &req, env.now_ms()).await?;
        self.inner.metrics.group_rebalances.inc();
        Ok(m.into())
    }

    /// Renews a member's lease; answers its assignment at `generation`.
    pub async fn heartbeat(
        &self,
        group: &str,
        member: &str,
        generation: u32,
    ) -> Result<MemberState> {
        let now = self.inner.env.now_ms();
        Ok(self
            .inner
            .md
            .heartbeat(group, member, generation, now)
            .await?
            .into())
    }

    pub async fn leave_group(&self, group: &str, member: &str) -> Result<()> {
        let now = self.inner.env.now_ms();
        self.inner.md.leave_group(group, member, now).await?;
        self.inner.metrics.group_rebalances.inc();
        Ok(())
    }

    /// Commits offsets, fenced by generation and ownership; then exports
    /// the group's lag on those partitions (`silt_group_lag_records`) in
    /// the background, so the commit's answer never waits for that read.
    pub async fn commit_offsets(&self, c: GroupCommit) -> Result<()> {
        let names: std::collections::BTreeSet<String> =
            c.offsets.iter().map(|o| o.topic.clone()).collect();
        let c = self.resolve_commit(c).await?;
        let now = self.inner.env.now_ms();
        self.inner.md.commit_offsets(&c, now).await?;
        self.inner.metrics.group_commits.inc();
        let agent = self.clone();
        tokio::spawn(async move { agent.export_lag(&c, names.into_iter()).await });
        Ok(())
    }

    /// Sets the lag gauges of the partitions a commit moved: high-watermark
    /// minus committed offset, as of now. Best effort: a failed read only
    /// leaves the gauge as it was.
    async fn export_lag(&self, c: &OffsetCommit, topics: impl Iterator<Item = String>) {
        for name in topics {
            let Ok(t) = self.inner.topics.get(&name).await else {
                continue;
            };
            let Ok(states) = self.inner.md.partition_states(t.id).await else {
                continue;
            };
            for o in c.offsets.iter().filter(|o| o.topic_id == t.id) {
                let Some(state) = states.get(o.partition as usize) else {
                    continue;
                };
                let labels = vec![
                    ("group".to_owned(), c.group.clone()),
                    ("topic".to_owned(), name.clone()),
                    ("partition".to_owned(), o.partition.to_string()),
                ];
                let lag = state.high_watermark.saturating_sub(o.offset);
                self.inner
                    .metrics
                    .group_lag_records
                    .get_or_create(&labels)
                    .set(i64::try_from(lag).unwrap_or(i64::MAX));
            }
        }
    }

    /// Topic names to ids, checking partitions exist.
    pub(crate) async fn resolve_commit(&self, c: GroupCommit) -> Result<OffsetCommit> {
        let mut offsets = Vec::with_capacity(c.offsets.len());
        for o in c.offsets {
            let t = self.partition_of(&o.topic, o.partition).await?;
            offsets.push(OffsetUpdate {
                topic_id: t.id,
                partition: o.partition,
                offset: o.offset,
                metadata: o.metadata,
            });
        }
        Ok(OffsetCommit {
            group: c.group,
            member: c.member,
            offsets,
        })
    }

    /// Groups in name order after `after` (a page), with live member counts.
    pub async fn list_groups(&self, after: Option<&str>) -> Result<Vec<GroupSummary>> {
        let now = self.inner.env.now_ms();
        Ok(self.inner.md.list_groups(after, now).await?)
    }

    pub async fn delete_group(&self, group: &str) -> Result<()> {
        Ok(self
            .inner
            .md
            .delete_group(group, self.inner.env.now_ms())
            .await?)
    }

    /// A group's members, and per partition its committed offset, lag and
    /// owner: every partition of the topics it subscribes to or has
    /// committed offsets for (optionally only `topic`'s). A member whose
    /// lease lapsed is listed (not live) until another member's call
    /// removes it and rebalances.
    pub async fn describe_group(&self, group: &str, topic: Option<&str>) -> Result<GroupInfo> {
        let md = &self.inner.md;
        let now_ms = self.inner.env.now_ms();
        let d = md.describe_group(group).await?;
        let topics: HashMap<u64, _> = md
            .list_topics()
            .await?
            .into_iter()
            .map(|t| (t.id, t))
            .collect();
        let mut owners: HashMap<(u64, u32), String> = HashMap::new();
        for (id, m) in &d.members {
            for a in &m.assignment {
                for &p in &a.partitions {
                    owners.insert((a.topic_id, p), id.clone());
                }
            }
        }
        let committed: HashMap<(u64, u32), _> = d
            .offsets
            .iter()
            .map(|o| ((o.topic_id, o.partition), &o.committed))
            .collect();
        let mut ids: Vec<u64> = owners
            .keys()
            .chain(committed.keys())
            .map(|&(t, _)| t)
            .filter(|t| topics.contains_key(t))
            .filter(|t| topic.is_none_or(|name| topics[t].name == name))
            .collect();
        ids.sort();
        ids.dedup();
        let mut partitions = Vec::new();
        for id in ids {
            let t = &topics[&id];
            let states: Vec<PartitionState> = md.partition_states(id).await?;
            for (p, s) in states.iter().enumerate() {
                let key = (id, p as u32);
                let c = committed.get(&key);
                partitions.push(PartitionLag {
                    topic: t.name.clone(),
                    partition: p as u32,
                    committed: c.map(|c| c.offset),
                    metadata: c.map(|c| c.metadata.clone()),
                    high_watermark: s.high_watermark,
                    lag: c.map(|c| s.high_watermark.saturating_sub(c.offset)),
                    owner: owners.get(&key).cloned(),
                });
            }
        }
        let members = d
            .members
            .into_iter()
            .map(|(id, m)| MemberState {
                member_id: id,
                generation: d.record.generation,
                assignment: m.assignment,
                session_timeout_ms: m.session_timeout_ms,
                expires_ms: m.expires_ms,
            })
            .collect();
        Ok(GroupInfo {
            name: d.name,
            generation: d.record.generation,
            protocol: d.record.protocol,
            members,
            now_ms,
            partitions,
        })
    }

    /// Reads records from a member's partitions (see the module docs),
    /// long-polling up to `wait` when none are ready.
    pub async fn group_fetch(
        &self,
        group: &str,
        member_id: &str,
        req: GroupFetch,
    ) -> Result<GroupRecords> {
        let inner = &self.inner;
        let now = inner.env.now_ms();
        let mut view = inner
            .md
            .member_view(group, member_id, req.generation, now)
            .await?;
        let third = i64::from(view.session_timeout_ms) / 3;
        if view.expires_ms - now < 2 * third {
            view = inner
                .md
                .heartbeat(group, member_id, req.generation, now)
                .await?
                .member;
        }
        let member = MemberState {
            member_id: member_id.to_owned(),
            generation: req.generation,
            assignment: view.assignment.clone(),
            session_timeout_ms: view.session_timeout_ms,
            expires_ms: view.expires_ms,
        };
        let mut cursor = match &req.cursor {
            Some(t) => Cursor::decode(t)?,
            None => Cursor::default(),
        };
        if cursor.generation != req.generation {
            cursor = Cursor {
                generation: req.generation,
                ..Cursor::default()
            };
        }
        let owned: Vec<(&TopicAssignment, u32)> =
            silt_metadata::groups::assigned_partitions(&view.assignment).collect();
        cursor
            .positions
            .retain(|k, _| owned.iter().any(|(a, p)| (a.topic_id, *p) == *k));
        self.start_positions(group, &owned, view.offset_reset, &mut cursor)
            .await?;
        // Wait at most a third of the session, so the next fetch renews the
        // lease in time.
        let wait = req.wait.min(Duration::from_millis(third.max(0) as u64));
        let deadline = Instant::now() + wait;
        let mut changes = Vec::new();
        loop {
            let records = self
                .read_round(&owned, &mut cursor, req.limits, view.offset_reset)
                .await?;
            let idle =
                records.is_empty() && Instant::now() < deadline && !inner.shutdown.is_cancelled();
            if !idle {
                if !owned.is_empty() {
                    let n = owned.len() as u32;
                    cursor.rotation = (cursor.rotation % n + 1) % n;
                }
                return Ok(GroupRecords {
                    records,
                    cursor,
                    member,
                });
            }
            if changes.is_empty() {
                // Subscribe, then read again: no commit can fall in between.
                changes = owned
                    .iter()
                    .map(|(a, p)| inner.notifier.subscribe(a.topic_id, *p))
                    .collect();
                if changes.is_empty() {
                    tokio::select! {
                        () = tokio::time::sleep_until(deadline) => {}
                        () = inner.shutdown.cancelled() => {}
                    }
                }
                continue;
            }
            let any_change =
                futures::future::select_all(changes.iter_mut().map(|rx| Box::pin(rx.changed())));
            let gone = tokio::select! {
                (changed, i, _) = any_change => changed.is_err().then_some(i),
                () = tokio::time::sleep_until(deadline) => None,
                () = inner.shutdown.cancelled() => None,
            };
            // A partition that is gone notifies no more: stop waiting on it.
            if let Some(i) = gone {
                changes.swap_remove(i);
            }
        }
    }

    /// Fills in a position for every owned partition the cursor lacks: the
    /// committed offset, else the reset policy.
    async fn start_positions(
        &self,
        group: &str,
        owned: &[(&TopicAssignment, u32)],
        reset: OffsetReset,
        cursor: &mut Cursor,
    ) -> Result<()> {
        if owned
            .iter()
            .all(|(a, p)| cursor.positions.contains_key(&(a.topic_id, *p)))
        {
            return Ok(());
        }
        let committed: HashMap<(u64, u32), u64> = self
            .inner
            .md
            .committed_offsets(group, None)
            .await?
            .into_iter()
            .map(|o| ((o.topic_id, o.partition), o.committed.offset))
            .collect();
        for (a, p) in owned {
            let key = (a.topic_id, *p);
            if cursor.positions.contains_key(&key) {
                continue;
            }
            let start = match committed.get(&key) {
                Some(&o) => o,
                None => self.reset_position(&a.topic, *p, reset).await?,
            };
            cursor.positions.insert(key, start);
        }
        Ok(())
    }

    async fn reset_position(&self, topic: &str, partition: u32, reset: OffsetReset) -> Result<u64> {
        let s = self.offsets(topic, partition).await?;
        Ok(match reset {
            OffsetReset::Earliest => s.log_start_offset,
            OffsetReset::Latest => s.high_watermark,
        })
    }

    /// One pass over the owned partitions from the cursor's rotation, within
    /// the limits; advances the cursor.
    async fn read_round(
        &self,
        owned: &[(&TopicAssignment, u32)],
        cursor: &mut Cursor,
        limits: Limits,
        reset: OffsetReset,
    ) -> Result<Vec<GroupRecord>> {
        let mut out = Vec::new();
        let mut bytes = 0;
        let n = owned.len();
        for i in 0..n {
            if out.len() >= limits.max_records || (bytes >= limits.max_bytes && !out.is_empty()) {
                break;
            }
            let (a, p) = owned[(cursor.rotation as usize + i) % n];
            let key = (a.topic_id, p);
            let pos = cursor.positions[&key];
            let req = FetchRequest {
                offset: pos,
                limits: Limits {
                    max_records: limits.max_records - out.len(),
                    max_bytes: limits.max_bytes.saturating_sub(bytes).max(1),
                },
                wait: Duration::ZERO,
            };
            let r = match self.fetch(&a.topic, p, req).await {
                Ok(r) => r,
                // Retention moved the log start past the position (or a
                // cursor was forged): start again by the reset policy.
                Err(Error::OffsetOutOfRange {
                    earliest, latest, ..
                }) => {
                    let to = match reset {
                        OffsetReset::Earliest => earliest,
                        OffsetReset::Latest => latest,
                    };
                    cursor.positions.insert(key, to);
                    continue;
                }
                // Deleted under us: the next rebalance drops it.
                Err(Error::TopicNotFound(_) | Error::PartitionNotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            cursor.positions.insert(key, r.next_offset);
            let topic: Arc<str> = a.topic.as_str().into();
            for record in r.records {
                bytes += record.record.weight();
                out.push(GroupRecord {
                    topic: topic.clone(),
                    topic_id: a.topic_id,
                    partition: p,
                    record,
                });
            }
        }
        Ok(out)
    }

    /// A new idempotent producer, or a named producer at a new epoch (which
    /// fences its earlier incarnations).
    pub async fn init_producer(&self, name: Option<&str>) -> Result<silt_metadata::ProducerId> {
        let now = self.inner.env.now_ms();
        Ok(self.inner.md.init_producer(name, now).await?)
    }
}

/// A refusal, for callers that match on it.
pub fn refusal(e: &Error) -> Option<Refusal> {
    match e {
        Error::Refused(r) => Some(*r),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = Cursor {
            generation: 7,
            rotation: 2,
            positions: [((1, 0), 5), ((1, 3), 9), ((4, 1), u64::MAX)].into(),
        };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        for bad in ["", "!!", "AAAA", &c.encode()[..10]] {
            assert!(Cursor::decode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn member_ids_are_valid_whatever_the_client_says() {
        assert_eq!(
            member_id(Some("worker 1/ä"), 255),
            "worker1-00000000000000ff"
        );
        assert_eq!(member_id(Some("///"), 1), "member-0000000000000001");
        assert_eq!(member_id(None, 1), "member-0000000000000001");
    }
}
