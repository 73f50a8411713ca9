//! Consumer groups: membership, assignment and committed offsets, kept
//! entirely in metadata so that any agent answers any call and a client may
//! switch agents between any two requests.
//!
//! Keys: `Group(g)` (generation, protocol), `Member(g, m)` (lease,
//! subscription, assignment) and `Offset(g, topic, partition)`.
//!
//! Invariants, each kept by a single transaction:
//! * **One owner.** The transaction that admits, removes or expires a member
//!   bumps the generation and runs the sticky assignor ([`assign`]) over the
//!   live members: at every generation each partition of the subscribed
//!   topics belongs to exactly one live member.
//! * **Fencing.** An offset commit by a member checks, in its own
//!   transaction, that the group is at the member's generation, the member's
//!   lease is unexpired, and it owns the partition. A member that missed a
//!   rebalance or outlived its lease (a zombie) can never move offsets.
//! * **Standalone readers** commit without membership only while the group
//!   has no live member.
//! * **Heartbeats do not contend.** A heartbeat writes only its own member
//!   key; it reads the group record (so it conflicts with a rebalance, and
//!   learns the generation) and scans the other members with snapshot reads
//!   (so it does not conflict with their heartbeats), upgrading to
//!   conflicting reads only when it finds an expired member to remove.
//! * Committed offsets are shared by every membership protocol; a live
//!   group's members all joined with one protocol ([`GroupProtocol`]).
//!
//! Time comes from the caller (the agent's injected clock): a member is live
//! while `now < expires_ms`.

pub mod assign;
pub mod classic;

use std::collections::BTreeMap;

use crate::catalog::{partition_counts, read_topic, topic_id_by_name, validate_id, validate_name};
use crate::keys::{Key, KeyKind, KeyRange};
use crate::kv::Txn;
use crate::values::groups::{decode_json, encode_json};
use crate::values::{
    ClassicPhase, CommittedOffset, GroupProtocol, GroupRecord, MAX_OFFSET_METADATA, MemberRecord,
    OffsetReset, Refusal, TopicAssignment,
};
use crate::{Error, Metadata, Result};

/// Most live members in one group.
pub const MAX_MEMBERS: usize = 1000;
/// Bounds on a member's session timeout.
pub const MIN_SESSION_TIMEOUT_MS: u32 = 1_000;
pub const MAX_SESSION_TIMEOUT_MS: u32 = 300_000;
/// Longest member id.
pub const MAX_MEMBER_ID: usize = 255;
/// Most topics one member subscribes to.
pub const MAX_SUBSCRIPTIONS: usize = 100;
/// Most partitions a group's subscriptions may cover: a member owning all
/// of them keeps its record well under FoundationDB's 100 kB value limit,
/// and the assignor's work bounded.
pub const MAX_GROUP_PARTITIONS: u32 = 8192;
/// Most groups one listing returns (page with `after`).
pub const MAX_GROUPS_LISTED: usize = 1000;

/// A member asking to join.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// Chosen by the caller (unique: random); the idempotence key of the join.
    pub member_id: String,
    pub topics: Vec<String>,
    pub session_timeout_ms: u32,
    pub offset_reset: OffsetReset,
}

/// A member's view of its group after a join or heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub member_id: String,
    pub generation: u32,
    pub member: MemberRecord,
}

/// Who commits: a member at a generation, or nobody (a standalone reader).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MemberRef {
    pub member_id: String,
    pub generation: u32,
}

/// One offset to commit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OffsetUpdate {
    pub topic_id: u64,
    pub partition: u32,
    pub offset: u64,
    pub metadata: String,
}

/// An offset commit, alone or inside a segment commit (a transaction).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OffsetCommit {
    pub group: String,
    pub member: Option<MemberRef>,
    pub offsets: Vec<OffsetUpdate>,
}

/// A committed offset with its partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionOffset {
    pub topic_id: u64,
    pub partition: u32,
    pub committed: CommittedOffset,
}

/// Everything about a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub name: String,
    pub record: GroupRecord,
    /// Members of the current generation, by id; a member whose lease has
    /// expired stays (and keeps its partitions) until a heartbeat, join or
    /// leave of another member removes it.
    pub members: Vec<(String, MemberRecord)>,
    pub offsets: Vec<PartitionOffset>,
}

/// A group in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSummary {
    pub name: String,
    pub record: GroupRecord,
    pub live_members: usize,
}

pub(crate) fn validate_member_id(id: &str) -> Result<()> {
    validate_id("member id", id, MAX_MEMBER_ID)
}

/// Checks a group name (the topic-name rules).
pub fn validate_group_name(name: &str) -> Result<()> {
    validate_name("group", name)
}

impl GroupRecord {
    /// A group that never had a member.
    fn new(now_ms: i64) -> Self {
        Self {
            generation: 0,
            protocol: None,
            created_ms: now_ms,
            classic: None,
        }
    }
}

pub(crate) async fn read_group(
    txn: &mut dyn Txn,
    group: &str,
    snapshot: bool,
) -> Result<Option<GroupRecord>> {
    match txn.get(&Key::Group(group).encode(), snapshot).await? {
        Some(b) => decode_json(&b, "group record").map(Some),
        None => Ok(None),
    }
}

pub(crate) async fn read_member(
    txn: &mut dyn Txn,
    group: &str,
    member: &str,
    snapshot: bool,
) -> Result<Option<MemberRecord>> {
    match txn
        .get(&Key::Member(group, member).encode(), snapshot)
        .await?
    {
        Some(b) => decode_json(&b, "member record").map(Some),
        None => Ok(None),
    }
}

pub(crate) async fn read_members(
    txn: &mut dyn Txn,
    group: &str,
    snapshot: bool,
) -> Result<BTreeMap<String, MemberRecord>> {
    let r = KeyRange::members(group);
    let rows = txn
        .get_range(&r.begin, &r.end, usize::MAX, false, snapshot)
        .await?;
    rows.into_iter()
        .map(|(k, v)| match crate::keys::decode(&k) {
            Ok(Key::Member(_, m)) => Ok((m.to_owned(), decode_json(&v, "member record")?)),
            _ => Err(Error::Corrupt("member key")),
        })
        .collect()
}

pub(crate) fn write_group(txn: &mut dyn Txn, group: &str, g: &GroupRecord) {
    txn.set(&Key::Group(group).encode(), &encode_json(g));
}

pub(crate) fn write_member(txn: &mut dyn Txn, group: &str, id: &str, m: &MemberRecord) {
    txn.set(&Key::Member(group, id).encode(), &encode_json(m));
}

/// Removes expired members, then (if anything changed, or `force`) starts a
/// new generation with a fresh assignment over the live members. Returns
/// the live members as written.
async fn rebalance(
    txn: &mut dyn Txn,
    group: &str,
    g: &mut GroupRecord,
    mut members: BTreeMap<String, MemberRecord>,
    now_ms: i64,
    force: bool,
) -> Result<BTreeMap<String, MemberRecord>> {
    let before = members.len();
    members.retain(|id, m| {
        let live = m.is_live(now_ms);
        if !live {
            txn.clear(&Key::Member(group, id).encode());
        }
        live
    });
    if !force && members.len() == before {
        return Ok(members);
    }
    let mut names: Vec<&String> = members.values().flat_map(|m| &m.topics).collect();
    names.sort();
    names.dedup();
    let mut shapes = Vec::with_capacity(names.len());
    for name in names {
        if let Some(id) = topic_id_by_name(txn, name, false).await? {
            if let Some(t) = read_topic(txn, id, false).await? {
                shapes.push(assign::TopicShape {
                    name: name.clone(),
                    id,
                    partitions: t.partitions,
                });
            }
        }
    }
    let total: u32 = shapes.iter().map(|t| t.partitions).sum();
    if total > MAX_GROUP_PARTITIONS {
        return Err(Error::Invalid(format!(
            "the group's topics have {total} partitions; a group may cover at most {MAX_GROUP_PARTITIONS}"
        )));
    }
    let candidates: Vec<assign::Candidate<'_>> = members
        .iter()
        .map(|(id, m)| assign::Candidate {
            id,
            topics: &m.topics,
            owned: &m.assignment,
        })
        .collect();
    let mut shares = assign::assign(&candidates, &shapes);
    g.generation = g.generation.wrapping_add(1);
    g.protocol = (!members.is_empty()).then_some(GroupProtocol::Http);
    write_group(txn, group, g);
    for (id, m) in members.iter_mut() {
        m.assignment = shares.remove(id).unwrap_or_default();
        write_member(txn, group, id, m);
    }
    Ok(members)
}

impl Metadata {
    /// Admits a member and rebalances. Idempotent on `member_id`: a retry
    /// finds the member it already admitted.
    pub async fn join_group(
        &self,
        group: &str,
        req: &JoinRequest,
        now_ms: i64,
    ) -> Result<Membership> {
        validate_group_name(group)?;
        validate_member_id(&req.member_id)?;
        if req.topics.is_empty() || req.topics.len() > MAX_SUBSCRIPTIONS {
            return Err(Error::Invalid(format!(
                "subscribe to 1 to {MAX_SUBSCRIPTIONS} topics"
            )));
        }
        if !(MIN_SESSION_TIMEOUT_MS..=MAX_SESSION_TIMEOUT_MS).contains(&req.session_timeout_ms) {
            return Err(Error::Invalid(format!(
                "session_timeout_ms must be {MIN_SESSION_TIMEOUT_MS}..={MAX_SESSION_TIMEOUT_MS}"
            )));
        }
        self.run("join_group", false, |txn, _| {
            let (group, req) = (group.to_owned(), req.clone());
            Box::pin(async move {
                let mut g = read_group(txn, &group, false)
                    .await?
                    .unwrap_or_else(|| GroupRecord::new(now_ms));
                let mut members = read_members(txn, &group, false).await?;
                let kafka_live = members
                    .values()
                    .any(|m| m.classic.is_some() && m.is_live(now_ms));
                if kafka_live {
                    return Err(Refusal::InconsistentProtocol.into());
                }
                g.classic = None;
                if let Some(m) = members.get(&req.member_id).filter(|m| m.is_live(now_ms)) {
                    return Ok(Membership {
                        member_id: req.member_id.clone(),
                        generation: g.generation,
                        member: m.clone(),
                    });
                }
                for t in &req.topics {
                    if topic_id_by_name(txn, t, true).await?.is_none() {
                        return Err(Error::TopicNotFound(t.clone()));
                    }
                }
                let live = members.values().filter(|m| m.is_live(now_ms)).count();
                if live >= MAX_MEMBERS {
                    return Err(Error::Invalid(format!(
                        "group {group:?} already has {MAX_MEMBERS} members"
                    )));
                }
                let mut topics = req.topics.clone();
                topics.sort();
                topics.dedup();
                members.insert(
                    req.member_id.clone(),
                    MemberRecord {
                        session_timeout_ms: req.session_timeout_ms,
                        expires_ms: now_ms + i64::from(req.session_timeout_ms),
                        topics,
                        offset_reset: req.offset_reset,
                        assignment: Vec::new(),
                        joined_ms: now_ms,
                        classic: None,
                    },
                );
                let mut members = rebalance(txn, &group, &mut g, members, now_ms, true).await?;
                let member = members
                    .remove(&req.member_id)
                    .ok_or(Error::Corrupt("joined member"))?;
                Ok(Membership {
                    member_id: req.member_id,
                    generation: g.generation,
                    member,
                })
            })
        })
        .await
    }

    /// Renews a member's lease at `generation`, collecting expired members
    /// on the way. Refusals: `UnknownMember` (it left or expired: join
    /// again), `RebalanceInProgress` (a newer generation exists: heartbeat
    /// with it to learn the new assignment; the lease is renewed all the
    /// same), `StaleGeneration` (a generation the group never had).
    pub async fn heartbeat(
        &self,
        group: &str,
        member_id: &str,
        generation: u32,
        now_ms: i64,
    ) -> Result<Membership> {
        let outcome = self
            .run("heartbeat", false, |txn, _| {
                let (group, member_id) = (group.to_owned(), member_id.to_owned());
                Box::pin(async move {
                    heartbeat_body(txn, &group, &member_id, generation, now_ms).await
                })
            })
            .await?;
        outcome.map_err(Error::Refused)
    }

    /// Removes a member and rebalances the rest. Leaving twice is harmless.
    pub async fn leave_group(&self, group: &str, member_id: &str, now_ms: i64) -> Result<()> {
        self.run("leave_group", false, |txn, _| {
            let (group, member_id) = (group.to_owned(), member_id.to_owned());
            Box::pin(async move {
                let Some(mut g) = read_group(txn, &group, false).await? else {
                    return Ok(());
                };
                let mut members = read_members(txn, &group, false).await?;
                if members.remove(&member_id).is_none() {
                    return Ok(());
                }
                txn.clear(&Key::Member(&group, &member_id).encode());
                rebalance(txn, &group, &mut g, members, now_ms, true).await?;
                Ok(())
            })
        })
        .await
    }

    /// A member's record if it is live and at `generation` (read-only: what
    /// a group fetch checks before reading).
    pub async fn member_view(
        &self,
        group: &str,
        member_id: &str,
        generation: u32,
        now_ms: i64,
    ) -> Result<MemberRecord> {
        self.run("member_view", true, |txn, _| {
            let (group, member_id) = (group.to_owned(), member_id.to_owned());
            Box::pin(async move {
                let g = read_group(txn, &group, true)
                    .await?
                    .ok_or(Refusal::UnknownMember)?;
                let m = read_member(txn, &group, &member_id, true)
                    .await?
                    .filter(|m| m.is_live(now_ms))
                    .ok_or(Refusal::UnknownMember)?;
                if generation != g.generation {
                    return Err(Refusal::StaleGeneration {
                        generation: g.generation,
                    }
                    .into());
                }
                Ok(m)
            })
        })
        .await
    }

    /// Commits offsets, fenced as the module describes.
    pub async fn commit_offsets(&self, c: &OffsetCommit, now_ms: i64) -> Result<()> {
        validate_offset_commit(c)?;
        self.run("commit_offsets", false, |txn, _| {
            let c = c.clone();
            Box::pin(async move {
                check_offset_commit(txn, &c, now_ms).await??;
                write_offsets(txn, &c, now_ms).await
            })
        })
        .await
    }

    /// A group's committed offsets, optionally of one topic only.
    pub async fn committed_offsets(
        &self,
        group: &str,
        topic_id: Option<u64>,
    ) -> Result<Vec<PartitionOffset>> {
        self.run("committed_offsets", true, |txn, _| {
            let group = group.to_owned();
            Box::pin(async move { read_offsets(txn, &group, topic_id).await })
        })
        .await
    }

    /// The group, its members and its offsets; `GroupNotFound` if no group
    /// of that name ever had members or offsets.
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        self.run("describe_group", true, |txn, _| {
            let group = group.to_owned();
            Box::pin(async move {
                let record = read_group(txn, &group, true)
                    .await?
                    .ok_or_else(|| Error::GroupNotFound(group.clone()))?;
                let members = read_members(txn, &group, true).await?.into_iter().collect();
                let offsets = read_offsets(txn, &group, None).await?;
                Ok(GroupDescription {
                    name: group,
                    record,
                    members,
                    offsets,
                })
            })
        })
        .await
    }

    /// Groups in name order after `after` (at most [`MAX_GROUPS_LISTED`]),
    /// each with its count of live members.
    pub async fn list_groups(&self, after: Option<&str>, now_ms: i64) -> Result<Vec<GroupSummary>> {
        self.run("list_groups", true, |txn, _| {
            let after = after.map(str::to_owned);
            Box::pin(async move {
                let mut r = KeyRange::kind(KeyKind::Group);
                if let Some(a) = &after {
                    // Just past `a`: its key followed by a zero byte.
                    let mut k = Key::Group(a).encode();
                    k.push(0);
                    r.begin = k;
                }
                let rows = txn
                    .get_range(&r.begin, &r.end, MAX_GROUPS_LISTED, false, true)
                    .await?;
                let mut out = Vec::with_capacity(rows.len());
                for (k, v) in rows {
                    let Ok(Key::Group(name)) = crate::keys::decode(&k) else {
                        return Err(Error::Corrupt("group key"));
                    };
                    let live_members = read_members(txn, name, true)
                        .await?
                        .values()
                        .filter(|m| m.is_live(now_ms))
                        .count();
                    out.push(GroupSummary {
                        name: name.to_owned(),
                        record: decode_json(&v, "group record")?,
                        live_members,
                    });
                }
                Ok(out)
            })
        })
        .await
    }

    /// Deletes a group with no live members: its record, members and
    /// offsets. Refused (`GroupHasMembers`) while anyone is live.
    pub async fn delete_group(&self, group: &str, now_ms: i64) -> Result<()> {
        self.run("delete_group", false, |txn, attempt| {
            let group = group.to_owned();
            Box::pin(async move {
                if read_group(txn, &group, false).await?.is_none() {
                    return if attempt.after_unknown {
                        Ok(())
                    } else {
                        Err(Error::GroupNotFound(group))
                    };
                }
                let members = read_members(txn, &group, false).await?;
                if members.values().any(|m| m.is_live(now_ms)) {
                    return Err(Refusal::GroupHasMembers.into());
                }
                txn.clear(&Key::Group(&group).encode());
                for r in [KeyRange::members(&group), KeyRange::offsets(&group)] {
                    txn.clear_range(&r.begin, &r.end);
                }
                Ok(())
            })
        })
        .await
    }
}

async fn heartbeat_body(
    txn: &mut dyn Txn,
    group: &str,
    member_id: &str,
    generation: u32,
    now_ms: i64,
) -> Result<Result<Membership, Refusal>> {
    let Some(mut g) = read_group(txn, group, false).await? else {
        return Ok(Err(Refusal::UnknownMember));
    };
    let Some(mut me) = read_member(txn, group, member_id, false).await? else {
        return Ok(Err(Refusal::UnknownMember));
    };
    let others = read_members(txn, group, true).await?;
    if others.values().any(|m| !m.is_live(now_ms)) {
        // Someone expired (perhaps this very member): remove and rebalance,
        // now with conflicting reads so concurrent removals serialize.
        let members = read_members(txn, group, false).await?;
        let live = rebalance(txn, group, &mut g, members, now_ms, false).await?;
        match live.get(member_id) {
            Some(m) => me = m.clone(),
            None => return Ok(Err(Refusal::UnknownMember)),
        }
    }
    me.expires_ms = now_ms + i64::from(me.session_timeout_ms);
    write_member(txn, group, member_id, &me);
    if generation == g.generation {
        Ok(Ok(Membership {
            member_id: member_id.to_owned(),
            generation,
            member: me,
        }))
    } else if generation < g.generation {
        Ok(Err(Refusal::RebalanceInProgress {
            generation: g.generation,
        }))
    } else {
        Ok(Err(Refusal::StaleGeneration {
            generation: g.generation,
        }))
    }
}

pub(crate) fn validate_offset_commit(c: &OffsetCommit) -> Result<()> {
    validate_group_name(&c.group)?;
    if let Some(m) = &c.member {
        validate_member_id(&m.member_id)?;
    }
    if c.offsets.is_empty() || c.offsets.len() > crate::MAX_PARTITIONS as usize {
        return Err(Error::Invalid(format!(
            "commit 1 to {} offsets at a time",
            crate::MAX_PARTITIONS
        )));
    }
    if c.offsets
        .iter()
        .any(|o| o.metadata.len() > MAX_OFFSET_METADATA)
    {
        return Err(Error::Invalid(format!(
            "offset metadata is limited to {MAX_OFFSET_METADATA} bytes"
        )));
    }
    Ok(())
}

/// Checks the fencing rules of an offset commit; reads only.
pub(crate) async fn check_offset_commit(
    txn: &mut dyn Txn,
    c: &OffsetCommit,
    now_ms: i64,
) -> Result<Result<(), Refusal>> {
    let ids = c.offsets.iter().map(|o| o.topic_id).collect();
    let partitions = partition_counts(txn, ids, true).await?;
    if c.offsets
        .iter()
        .any(|o| partitions[&o.topic_id].is_none_or(|n| o.partition >= n))
    {
        return Ok(Err(Refusal::TopicGone));
    }
    let Some(who) = &c.member else {
        let members = read_members(txn, &c.group, false).await?;
        return Ok(if members.values().any(|m| m.is_live(now_ms)) {
            Err(Refusal::GroupHasMembers)
        } else {
            Ok(())
        });
    };
    let Some(g) = read_group(txn, &c.group, false).await? else {
        return Ok(Err(Refusal::UnknownMember));
    };
    // A snapshot read: every change of membership or assignment also writes
    // the group record read above, so this adds no needed conflict, and a
    // lease renewal does not abort the commit (nor the segment carrying it).
    let Some(m) = read_member(txn, &c.group, &who.member_id, true)
        .await?
        .filter(|m| m.is_live(now_ms))
    else {
        return Ok(Err(Refusal::UnknownMember));
    };
    if who.generation != g.generation {
        return Ok(Err(Refusal::StaleGeneration {
            generation: g.generation,
        }));
    }
    if let Some(classic) = &g.classic {
        // Kafka's rules: any partition, but not while the generation's
        // assignment is still being handed out.
        return Ok(match classic.phase {
            ClassicPhase::Syncing => Err(Refusal::RebalanceInProgress {
                generation: g.generation,
            }),
            _ => Ok(()),
        });
    }
    for o in &c.offsets {
        if !m.owns(o.topic_id, o.partition) {
            return Ok(Err(Refusal::NotAssigned {
                topic_id: o.topic_id,
                partition: o.partition,
            }));
        }
    }
    Ok(Ok(()))
}

/// Writes checked offsets (creating the group record of a standalone reader).
pub(crate) async fn write_offsets(txn: &mut dyn Txn, c: &OffsetCommit, now_ms: i64) -> Result<()> {
    if read_group(txn, &c.group, false).await?.is_none() {
        write_group(txn, &c.group, &GroupRecord::new(now_ms));
    }
    for o in &c.offsets {
        let v = CommittedOffset {
            offset: o.offset,
            committed_ms: now_ms,
            metadata: o.metadata.clone(),
        };
        txn.set(
            &Key::Offset(&c.group, o.topic_id, o.partition).encode(),
            &v.encode(),
        );
    }
    Ok(())
}

async fn read_offsets(
    txn: &mut dyn Txn,
    group: &str,
    topic_id: Option<u64>,
) -> Result<Vec<PartitionOffset>> {
    let r = KeyRange::offsets(group);
    let rows = txn
        .get_range(&r.begin, &r.end, usize::MAX, false, true)
        .await?;
    let mut out = Vec::new();
    for (k, v) in rows {
        let Ok(Key::Offset(_, t, p)) = crate::keys::decode(&k) else {
            return Err(Error::Corrupt("offset key"));
        };
        if topic_id.is_none_or(|id| id == t) {
            out.push(PartitionOffset {
                topic_id: t,
                partition: p,
                committed: CommittedOffset::decode(&v)?,
            });
        }
    }
    Ok(out)
}

/// Assignments as `(topic, partition)` pairs, for callers that iterate.
pub fn assigned_partitions(a: &[TopicAssignment]) -> impl Iterator<Item = (&TopicAssignment, u32)> {
    a.iter()
        .flat_map(|t| t.partitions.iter().map(move |&p| (t, p)))
}
