//! Kafka's classic group protocol, with its state in metadata so that the
//! members of one group may talk to different agents.
//!
//! The group moves through [`ClassicPhase`]s exactly as a Kafka
//! coordinator's group does: a join (or a member's expiry or departure)
//! starts `Joining`; the join barrier closes when every live member has
//! rejoined or the largest rebalance timeout passes — members that did not
//! rejoin are dropped — and the new generation, its leader and its assignor
//! are fixed (`Syncing`); the leader's assignment makes it `Stable`.
//!
//! Nothing waits inside a transaction: an agent answering a join or a sync
//! polls [`Metadata::classic_join_progress`] / [`Metadata::classic_sync`]
//! (each one short transaction that also keeps the waiting member's lease
//! alive and closes the barrier when it is due), woken by changes to the
//! group record. Whichever agent notices first closes the barrier; the
//! transaction makes that happen once.
//!
//! Waiting members read the member records with snapshot reads, so that
//! members at a barrier do not conflict with each other's lease renewals:
//! every transaction that changes *another* member's record (a join,
//! closing a barrier, the leader's assignment, a leave, a heartbeat that
//! finds a member expired) also writes the group record, which every
//! classic transaction reads with a conflict.
//!
//! Invariants: a member's lease is only ever extended by its own calls; a
//! generation's members, leader and assignor change only in the
//! transaction that closes its barrier; offset commits are fenced by
//! generation and membership in [`super::check_offset_commit`].

use std::collections::BTreeMap;

use super::{
    MAX_MEMBERS, MAX_SESSION_TIMEOUT_MS, MIN_SESSION_TIMEOUT_MS, read_group, read_members,
    validate_group_name, validate_member_id, write_group, write_member,
};
use crate::catalog::{read_topic, topic_id_by_name};
use crate::keys::Key;
use crate::kv::Txn;
use crate::values::{
    ClassicGroup, ClassicMember, ClassicPhase, ClassicProtocol, GroupProtocol, GroupRecord,
    MemberRecord, Opaque, Refusal, TopicAssignment,
};
use crate::{Error, Metadata, Result};

/// Largest protocol metadata (all assignors together) and assignment kept
/// per member: base64 in JSON, they keep member records under
/// FoundationDB's 100 kB value limit. 40 KiB assigns a consumer 8,000
/// partitions of one topic.
pub const MAX_PROTOCOL_BYTES: usize = 24 << 10;
pub const MAX_ASSIGNMENT_BYTES: usize = 40 << 10;
/// Most assignors one member may offer.
pub const MAX_CLASSIC_PROTOCOLS: usize = 8;
/// Longest rebalance timeout (Kafka's `max.poll.interval.ms` upper range).
pub const MAX_REBALANCE_TIMEOUT_MS: u32 = 30 * 60 * 1000;

/// A member joining (or rejoining).
#[derive(Debug, Clone)]
pub struct ClassicJoin {
    pub member_id: String,
    pub client_id: String,
    pub client_host: String,
    pub protocol_type: String,
    pub protocols: Vec<ClassicProtocol>,
    pub session_timeout_ms: u32,
    pub rebalance_timeout_ms: u32,
    /// The topics its subscription names (for describing the group).
    pub topics: Vec<String>,
}

/// The group record as a call left it: wait for it to change with
/// [`Metadata::watch_group`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupVersion(Vec<u8>);

impl GroupVersion {
    fn of(g: &GroupRecord) -> Self {
        Self(crate::values::groups::encode_json(g))
    }
}

/// How a join stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinProgress {
    /// The barrier is still open.
    Waiting,
    /// The barrier closed without the member (it did not keep its lease).
    Dropped,
    /// The member is in `generation`.
    Joined(JoinedGeneration),
}

/// A formed generation, as a joined member learns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedGeneration {
    pub generation: u32,
    pub protocol_type: String,
    pub protocol: String,
    pub leader: String,
    /// For the leader only: every member and its metadata for `protocol`.
    pub members: Vec<(String, Opaque)>,
}

/// One member's assignment from the leader.
#[derive(Debug, Clone)]
pub struct ClassicAssignment {
    pub member_id: String,
    pub assignment: Opaque,
    /// The partitions it names, when its format is known (consumers).
    pub topics: Vec<(String, Vec<u32>)>,
}

/// How a sync stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncProgress {
    /// The leader has not assigned yet.
    Waiting,
    Assigned(Opaque),
}

fn refused<T>(r: Refusal) -> Result<T> {
    Err(Error::Refused(r))
}

/// A live Kafka member's record, or `UnknownMember`.
fn classic_of<'a>(
    members: &'a mut BTreeMap<String, MemberRecord>,
    id: &str,
    now_ms: i64,
) -> std::result::Result<&'a mut MemberRecord, Refusal> {
    match members.get_mut(id) {
        Some(m) if m.classic.is_some() && m.is_live(now_ms) => Ok(m),
        _ => Err(Refusal::UnknownMember),
    }
}

/// Opens the join barrier (if it is not open), asking every member to rejoin.
fn start_joining(g: &mut GroupRecord, members: &mut BTreeMap<String, MemberRecord>, now_ms: i64) {
    let Some(c) = g.classic.as_mut() else { return };
    if matches!(c.phase, ClassicPhase::Joining { .. }) {
        return;
    }
    let timeout = members
        .values()
        .filter_map(|m| m.classic.as_ref())
        .map(|c| c.rebalance_timeout_ms)
        .max()
        .unwrap_or(0);
    c.phase = ClassicPhase::Joining {
        deadline_ms: now_ms.saturating_add(i64::from(timeout)),
    };
    for m in members.values_mut().filter_map(|m| m.classic.as_mut()) {
        m.rejoined = false;
    }
}

/// Closes the barrier if it is due: drops members that did not rejoin (or
/// expired), forms the next generation, picks its leader and assignor.
/// Writes the group and every remaining member.
async fn close_barrier_if_due(
    txn: &mut dyn Txn,
    group: &str,
    g: &mut GroupRecord,
    members: &mut BTreeMap<String, MemberRecord>,
    now_ms: i64,
) -> Result<()> {
    let Some(c) = g.classic.as_mut() else {
        return Ok(());
    };
    let ClassicPhase::Joining { deadline_ms } = c.phase else {
        return Ok(());
    };
    let live = |m: &MemberRecord| m.is_live(now_ms) && m.classic.is_some();
    let all_in = members
        .values()
        .filter(|m| live(m))
        .all(|m| m.classic.as_ref().is_some_and(|c| c.rejoined));
    if !all_in && now_ms < deadline_ms {
        return Ok(());
    }
    members.retain(|id, m| {
        let keep = live(m) && m.classic.as_ref().is_some_and(|c| c.rejoined);
        if !keep {
            txn.clear(&Key::Member(group, id).encode());
        }
        keep
    });
    g.generation = g.generation.wrapping_add(1);
    if members.is_empty() {
        c.phase = ClassicPhase::Empty;
        c.leader = None;
        c.protocol = None;
        g.protocol = None;
        write_group(txn, group, g);
        return Ok(());
    }
    // The leader stays if it rejoined; else the longest-standing member.
    let leader = c
        .leader
        .clone()
        .filter(|l| members.contains_key(l))
        .or_else(|| {
            members
                .iter()
                .min_by_key(|(id, m)| (m.joined_ms, id.as_str()))
                .map(|(id, _)| id.clone())
        });
    c.protocol = choose_protocol(members);
    c.leader = leader;
    c.phase = ClassicPhase::Syncing;
    for (id, m) in members.iter_mut() {
        if let Some(mc) = m.classic.as_mut() {
            mc.rejoined = false;
            mc.assignment = Opaque::default();
        }
        m.assignment.clear();
        write_member(txn, group, id, m);
    }
    write_group(txn, group, g);
    Ok(())
}

/// The assignor every member supports that the members rank highest in
/// total (Kafka's vote); ties go to the earlier name.
fn choose_protocol(members: &BTreeMap<String, MemberRecord>) -> Option<String> {
    let offers: Vec<&Vec<ClassicProtocol>> = members
        .values()
        .filter_map(|m| m.classic.as_ref().map(|c| &c.protocols))
        .collect();
    let first = offers.first()?;
    let common = first
        .iter()
        .map(|p| &p.name)
        .filter(|name| offers.iter().all(|o| o.iter().any(|p| &&p.name == name)));
    common
        .min_by_key(|name| {
            let rank: usize = offers
                .iter()
                .map(|o| {
                    o.iter()
                        .position(|p| &&p.name == name)
                        .unwrap_or(usize::MAX)
                })
                .sum();
            (rank, (*name).clone())
        })
        .cloned()
}

fn validate_join(req: &ClassicJoin) -> Result<()> {
    validate_member_id(&req.member_id)?;
    let bad = |m: String| Err(Error::Invalid(m));
    if !(MIN_SESSION_TIMEOUT_MS..=MAX_SESSION_TIMEOUT_MS).contains(&req.session_timeout_ms) {
        return bad(format!(
            "session timeout must be {MIN_SESSION_TIMEOUT_MS}..={MAX_SESSION_TIMEOUT_MS} ms"
        ));
    }
    if req.protocol_type.is_empty()
        || req.protocols.is_empty()
        || req.protocols.len() > MAX_CLASSIC_PROTOCOLS
    {
        return Err(Error::Refused(Refusal::InconsistentProtocol));
    }
    let metadata: usize = req.protocols.iter().map(|p| p.metadata.0.len()).sum();
    if metadata > MAX_PROTOCOL_BYTES {
        return bad(format!(
            "protocol metadata of {metadata} bytes; at most {MAX_PROTOCOL_BYTES}"
        ));
    }
    Ok(())
}

/// What a join keeps of its request: the rebalance timeout clamped, the
/// subscription (kept only to describe the group) and client strings cut.
fn trimmed(req: &ClassicJoin) -> ClassicJoin {
    let cut = |s: &str| s.chars().take(255).collect::<String>();
    let mut req = req.clone();
    req.rebalance_timeout_ms = req.rebalance_timeout_ms.min(MAX_REBALANCE_TIMEOUT_MS);
    req.topics.truncate(super::MAX_SUBSCRIPTIONS);
    req.client_id = cut(&req.client_id);
    req.client_host = cut(&req.client_host);
    req
}

impl Metadata {
    /// Admits (or re-admits) a Kafka member and opens the join barrier; the
    /// member then waits with [`Metadata::classic_join_progress`].
    /// `InconsistentProtocol` if the group's live members are HTTP members
    /// or speak another protocol type or share no assignor with it.
    pub async fn classic_join(&self, group: &str, req: &ClassicJoin, now_ms: i64) -> Result<()> {
        validate_group_name(group)?;
        validate_join(req)?;
        let req = trimmed(req);
        self.run("classic_join", false, |txn, attempt| {
            let (group, req) = (group.to_owned(), req.clone());
            let retry = attempt.after_unknown;
            Box::pin(async move { join_body(txn, &group, req, now_ms, retry).await })
        })
        .await
    }

    /// Keeps a joining member alive and reports whether its generation has
    /// formed (closing the barrier if it is due).
    pub async fn classic_join_progress(
        &self,
        group: &str,
        member_id: &str,
        now_ms: i64,
    ) -> Result<(JoinProgress, GroupVersion)> {
        self.run("classic_join_progress", false, |txn, _| {
            let (group, member_id) = (group.to_owned(), member_id.to_owned());
            Box::pin(async move {
                // Refusals here write nothing: returning them as errors is fine.
                let mut g = read_group(txn, &group, false)
                    .await?
                    .ok_or(Error::Refused(Refusal::UnknownMember))?;
                // Members by snapshot: see the module docs.
                let mut members = read_members(txn, &group, true).await?;
                let me = classic_of(&mut members, &member_id, now_ms).map_err(Error::Refused)?;
                me.expires_ms = now_ms.saturating_add(i64::from(me.session_timeout_ms));
                let me = me.clone();
                write_member(txn, &group, &member_id, &me);
                close_barrier_if_due(txn, &group, &mut g, &mut members, now_ms).await?;
                if !members.contains_key(&member_id) {
                    // Dropped by the barrier it just closed: that must commit.
                    return Ok((JoinProgress::Dropped, GroupVersion::of(&g)));
                }
                let c = g
                    .classic
                    .as_ref()
                    .ok_or(Error::Refused(Refusal::UnknownMember))?;
                let version = GroupVersion::of(&g);
                let rejoined = me.classic.as_ref().is_some_and(|c| c.rejoined);
                if matches!(c.phase, ClassicPhase::Joining { .. }) && rejoined {
                    return Ok((JoinProgress::Waiting, version));
                }
                let leader = c.leader.clone().unwrap_or_default();
                let protocol = c.protocol.clone().unwrap_or_default();
                let members = if leader == member_id {
                    members
                        .iter()
                        .filter_map(|(id, m)| {
                            let p = m
                                .classic
                                .as_ref()?
                                .protocols
                                .iter()
                                .find(|p| p.name == protocol)?;
                            Some((id.clone(), p.metadata.clone()))
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                let joined = JoinedGeneration {
                    generation: g.generation,
                    protocol_type: c.protocol_type.clone(),
                    protocol,
                    leader,
                    members,
                };
                Ok((JoinProgress::Joined(joined), version))
            })
        })
        .await
    }

    /// A member's sync at `generation`: the leader hands out `assignments`
    /// (making the group stable); everyone learns its own assignment once
    /// it exists. Renews the member's lease.
    pub async fn classic_sync(
        &self,
        group: &str,
        member_id: &str,
        generation: u32,
        assignments: Option<&[ClassicAssignment]>,
        now_ms: i64,
    ) -> Result<(SyncProgress, GroupVersion)> {
        if let Some(a) = assignments {
            if a.len() > MAX_MEMBERS
                || a.iter()
                    .any(|a| a.assignment.0.len() > MAX_ASSIGNMENT_BYTES)
            {
                return Err(Error::Invalid("assignment too large".into()));
            }
        }
        self.run("classic_sync", false, |txn, _| {
            let (group, member_id) = (group.to_owned(), member_id.to_owned());
            let assignments = assignments.map(<[_]>::to_vec);
            Box::pin(async move {
                sync_body(txn, &group, &member_id, generation, assignments, now_ms).await
            })
        })
        .await?
        .map_err(Error::Refused)
    }

    /// Returns once the group record differs from `seen` (or the store's
    /// watch gives up; callers bound the wait and look again).
    pub async fn watch_group(&self, group: &str, seen: &GroupVersion) -> Result<()> {
        let key = Key::Group(group).encode();
        Ok(self.kv().watch(&key, Some(&seen.0)).await?)
    }

    /// A member's heartbeat: renews its lease; starts a rebalance if a
    /// member expired. `RebalanceInProgress` tells it to rejoin.
    pub async fn classic_heartbeat(
        &self,
        group: &str,
        member_id: &str,
        generation: u32,
        now_ms: i64,
    ) -> Result<()> {
        let outcome = self
            .run("classic_heartbeat", false, |txn, _| {
                let (group, member_id) = (group.to_owned(), member_id.to_owned());
                Box::pin(async move {
                    let Some(mut g) = read_group(txn, &group, false).await? else {
                        return Ok(Err(Refusal::UnknownMember));
                    };
                    // Others by snapshot: heartbeats of different members do not conflict.
                    let mut members = read_members(txn, &group, true).await?;
                    let me = match classic_of(&mut members, &member_id, now_ms) {
                        Ok(me) => me,
                        Err(r) => return Ok(Err(r)),
                    };
                    me.expires_ms = now_ms.saturating_add(i64::from(me.session_timeout_ms));
                    let me = me.clone();
                    write_member(txn, &group, &member_id, &me);
                    let expired = members.values().any(|m| !m.is_live(now_ms));
                    let Some(phase) = g.classic.as_ref().map(|c| c.phase) else {
                        return Ok(Err(Refusal::UnknownMember));
                    };
                    if expired && matches!(phase, ClassicPhase::Stable | ClassicPhase::Syncing) {
                        let mut members = read_members(txn, &group, false).await?;
                        members.insert(member_id.clone(), me);
                        start_joining(&mut g, &mut members, now_ms);
                        for (id, m) in &members {
                            write_member(txn, &group, id, m);
                        }
                        write_group(txn, &group, &g);
                    }
                    let joining = g
                        .classic
                        .as_ref()
                        .is_some_and(|c| matches!(c.phase, ClassicPhase::Joining { .. }));
                    Ok(if generation != g.generation {
                        Err(Refusal::StaleGeneration {
                            generation: g.generation,
                        })
                    } else if joining {
                        Err(Refusal::RebalanceInProgress {
                            generation: g.generation,
                        })
                    } else {
                        Ok(())
                    })
                })
            })
            .await?;
        outcome.map_err(Error::Refused)
    }

    /// Members leave; the rest rebalance. `UnknownMember` per member not
    /// in the group (the others still leave).
    pub async fn classic_leave(
        &self,
        group: &str,
        member_ids: &[String],
        now_ms: i64,
    ) -> Result<Vec<Result<(), Refusal>>> {
        self.run("classic_leave", false, |txn, attempt| {
            let (group, ids) = (group.to_owned(), member_ids.to_vec());
            // After an unknown result, a member already gone left in it.
            let gone = if attempt.after_unknown {
                Ok(())
            } else {
                Err(Refusal::UnknownMember)
            };
            Box::pin(async move {
                let Some(mut g) = read_group(txn, &group, false).await? else {
                    return Ok(vec![gone; ids.len()]);
                };
                let mut members = read_members(txn, &group, false).await?;
                let mut out = Vec::with_capacity(ids.len());
                for id in &ids {
                    match members.remove(id).filter(|m| m.classic.is_some()) {
                        Some(_) => {
                            txn.clear(&Key::Member(&group, id).encode());
                            out.push(Ok(()));
                        }
                        None => out.push(gone),
                    }
                }
                if out.iter().any(Result::is_ok) && g.classic.is_some() {
                    start_joining(&mut g, &mut members, now_ms);
                    for (id, m) in &members {
                        write_member(txn, &group, id, m);
                    }
                    close_barrier_if_due(txn, &group, &mut g, &mut members, now_ms).await?;
                    write_group(txn, &group, &g);
                }
                Ok(out)
            })
        })
        .await
    }
}

/// `retry`: an earlier attempt's commit may have landed (then a member
/// already in the generation is this very join, done).
async fn join_body(
    txn: &mut dyn Txn,
    group: &str,
    req: ClassicJoin,
    now_ms: i64,
    retry: bool,
) -> Result<()> {
    let mut g = read_group(txn, group, false)
        .await?
        .unwrap_or_else(|| GroupRecord::new(now_ms));
    let mut members = read_members(txn, group, false).await?;
    let others_live = members
        .iter()
        .filter(|(id, m)| **id != req.member_id && m.is_live(now_ms))
        .map(|(_, m)| m)
        .collect::<Vec<_>>();
    if others_live.iter().any(|m| m.classic.is_none()) {
        return refused(Refusal::InconsistentProtocol);
    }
    let same_type = g
        .classic
        .as_ref()
        .is_none_or(|c| c.protocol_type == req.protocol_type);
    // Some assignor every live member, this one included, supports.
    let shared = req.protocols.iter().any(|p| {
        others_live.iter().all(|m| {
            m.classic
                .as_ref()
                .is_some_and(|c| c.protocols.iter().any(|q| q.name == p.name))
        })
    });
    let compatible = others_live.is_empty() || (same_type && shared);
    if !compatible {
        return refused(Refusal::InconsistentProtocol);
    }
    let anyone_live = members.values().any(|m| m.is_live(now_ms));
    if !anyone_live || g.classic.is_none() {
        g.classic = Some(ClassicGroup {
            protocol_type: req.protocol_type.clone(),
            protocol: None,
            leader: None,
            phase: ClassicPhase::Empty,
        });
    }
    if !members.contains_key(&req.member_id) && others_live.len() >= MAX_MEMBERS {
        return Err(Error::Invalid(format!(
            "group {group:?} already has {MAX_MEMBERS} members"
        )));
    }
    let current = members.get(&req.member_id).filter(|m| m.is_live(now_ms));
    if let (Some(m), Some(c)) = (current, g.classic.as_ref()) {
        // Kafka's rule, which also makes a retried join harmless: a member
        // already in the generation being formed, or a follower of a stable
        // one, joining with what it joined with before, changes nothing.
        let same = m.classic.as_ref().is_some_and(|mc| {
            mc.protocols == req.protocols && c.protocol_type == req.protocol_type
        });
        let leads = c.leader.as_deref() == Some(req.member_id.as_str());
        // A leader rejoining rebalances (as in Kafka): a leader whose sync
        // failed must be able to start over. Unless this is the retry of
        // the join that formed the generation.
        let nothing_to_do = match c.phase {
            ClassicPhase::Syncing => !leads || retry,
            ClassicPhase::Stable => !leads,
            ClassicPhase::Joining { .. } | ClassicPhase::Empty => false,
        };
        if same && nothing_to_do {
            let mut m = m.clone();
            m.expires_ms = now_ms.saturating_add(i64::from(m.session_timeout_ms));
            write_member(txn, group, &req.member_id, &m);
            return Ok(());
        }
    }
    let joined_ms = current.map_or(now_ms, |m| m.joined_ms);
    let mut topics = req.topics;
    topics.sort();
    topics.dedup();
    g.protocol = Some(GroupProtocol::Kafka);
    start_joining(&mut g, &mut members, now_ms);
    members.insert(
        req.member_id.clone(),
        MemberRecord {
            session_timeout_ms: req.session_timeout_ms,
            expires_ms: now_ms.saturating_add(i64::from(req.session_timeout_ms)),
            topics,
            offset_reset: Default::default(),
            assignment: Vec::new(),
            joined_ms,
            classic: Some(ClassicMember {
                client_id: req.client_id,
                client_host: req.client_host,
                rebalance_timeout_ms: req.rebalance_timeout_ms,
                protocols: req.protocols,
                rejoined: true,
                assignment: Opaque::default(),
            }),
        },
    );
    // A longer rebalance timeout than the barrier's extends it.
    if let Some(ClassicGroup {
        phase: ClassicPhase::Joining { deadline_ms },
        ..
    }) = g.classic.as_mut()
    {
        let mine = now_ms.saturating_add(i64::from(req.rebalance_timeout_ms));
        *deadline_ms = (*deadline_ms).max(mine);
    }
    for (id, m) in &members {
        write_member(txn, group, id, m);
    }
    close_barrier_if_due(txn, group, &mut g, &mut members, now_ms).await?;
    write_group(txn, group, &g);
    Ok(())
}

async fn sync_body(
    txn: &mut dyn Txn,
    group: &str,
    member_id: &str,
    generation: u32,
    assignments: Option<Vec<ClassicAssignment>>,
    now_ms: i64,
) -> Result<Result<(SyncProgress, GroupVersion), Refusal>> {
    let Some(mut g) = read_group(txn, group, false).await? else {
        return Ok(Err(Refusal::UnknownMember));
    };
    // Members by snapshot: see the module docs.
    let mut members = read_members(txn, group, true).await?;
    let me = match classic_of(&mut members, member_id, now_ms) {
        Ok(me) => me,
        Err(r) => return Ok(Err(r)),
    };
    me.expires_ms = now_ms.saturating_add(i64::from(me.session_timeout_ms));
    let me = me.clone();
    write_member(txn, group, member_id, &me);
    let Some(c) = g.classic.clone() else {
        return Ok(Err(Refusal::UnknownMember));
    };
    if generation != g.generation {
        return Ok(Err(Refusal::StaleGeneration {
            generation: g.generation,
        }));
    }
    match c.phase {
        ClassicPhase::Joining { .. } | ClassicPhase::Empty => {
            Ok(Err(Refusal::RebalanceInProgress {
                generation: g.generation,
            }))
        }
        ClassicPhase::Stable => Ok(Ok((
            SyncProgress::Assigned(me.classic.map(|c| c.assignment).unwrap_or_default()),
            GroupVersion::of(&g),
        ))),
        ClassicPhase::Syncing => {
            let leader_live = c
                .leader
                .as_ref()
                .and_then(|l| members.get(l))
                .is_some_and(|m| m.is_live(now_ms));
            if !leader_live {
                // The leader died before assigning: rebalance without it.
                start_joining(&mut g, &mut members, now_ms);
                for (id, m) in &members {
                    write_member(txn, group, id, m);
                }
                write_group(txn, group, &g);
                return Ok(Err(Refusal::RebalanceInProgress {
                    generation: g.generation,
                }));
            }
            let leads = c.leader.as_deref() == Some(member_id);
            let Some(assignments) = assignments.filter(|_| leads) else {
                return Ok(Ok((SyncProgress::Waiting, GroupVersion::of(&g))));
            };
            let mut mine = Opaque::default();
            for (id, m) in members.iter_mut() {
                let given = assignments.iter().find(|a| &a.member_id == id);
                let bytes = given.map(|a| a.assignment.clone()).unwrap_or_default();
                m.assignment = match given {
                    Some(a) => resolve(txn, &a.topics).await?,
                    None => Vec::new(),
                };
                if id == member_id {
                    mine = bytes.clone();
                }
                if let Some(mc) = m.classic.as_mut() {
                    mc.assignment = bytes;
                }
                write_member(txn, group, id, m);
            }
            if let Some(c) = g.classic.as_mut() {
                c.phase = ClassicPhase::Stable;
            }
            write_group(txn, group, &g);
            Ok(Ok((SyncProgress::Assigned(mine), GroupVersion::of(&g))))
        }
    }
}

/// Topic names and partitions as [`TopicAssignment`]s (unknown topics and
/// partitions left out: describing the group shows what really exists).
async fn resolve(txn: &mut dyn Txn, topics: &[(String, Vec<u32>)]) -> Result<Vec<TopicAssignment>> {
    let mut out = Vec::with_capacity(topics.len());
    for (name, partitions) in topics {
        let Some(id) = topic_id_by_name(txn, name, true).await? else {
            continue;
        };
        let Some(t) = read_topic(txn, id, true).await? else {
            continue;
        };
        let mut partitions: Vec<u32> = partitions
            .iter()
            .copied()
            .filter(|&p| p < t.partitions)
            .collect();
        partitions.sort_unstable();
        partitions.dedup();
        out.push(TopicAssignment {
            topic: name.clone(),
            topic_id: id,
            partitions,
        });
    }
    Ok(out)
}
