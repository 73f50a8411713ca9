//! Values of the group keys: `Group`, `Member` (JSON: written on membership
//! changes and lease renewals, never per record) and `Offset` (binary).

use serde::{Deserialize, Serialize};

use super::{Reader, V1, corrupt, put_short_str};
use crate::Error;

/// Longest metadata string stored with a committed offset (Kafka's default
/// `offset.metadata.max.bytes`).
pub const MAX_OFFSET_METADATA: usize = 4096;

/// Value of `Group(name)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    /// Bumped by every rebalance. Fetches and offset commits must name the
    /// current generation, so a member that missed a rebalance is fenced.
    pub generation: u32,
    /// How the live members joined; `None` while the group has no members
    /// (offsets only). A live group has one protocol at a time.
    pub protocol: Option<GroupProtocol>,
    pub created_ms: i64,
    /// The Kafka classic protocol's state, once a Kafka member has joined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classic: Option<ClassicGroup>,
}

/// A group's state under Kafka's classic protocol (see
/// `crate::groups::classic`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassicGroup {
    /// What the members speak ("consumer" for consumers); all agree.
    pub protocol_type: String,
    /// The assignor chosen when the generation formed.
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub phase: ClassicPhase,
}

/// Where a classic group is in its rebalance cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "phase")]
pub enum ClassicPhase {
    /// No members; offsets only.
    Empty,
    /// Kafka's PreparingRebalance: members (re)join until every live one
    /// has, or until `deadline_ms`.
    Joining {
        deadline_ms: i64,
    },
    /// Kafka's CompletingRebalance: the generation is formed; the leader's
    /// assignment is awaited.
    Syncing,
    Stable,
}

impl ClassicPhase {
    /// Kafka's name for the state (DescribeGroups, ListGroups).
    pub fn kafka_name(self) -> &'static str {
        match self {
            ClassicPhase::Empty => "Empty",
            ClassicPhase::Joining { .. } => "PreparingRebalance",
            ClassicPhase::Syncing => "CompletingRebalance",
            ClassicPhase::Stable => "Stable",
        }
    }
}

/// A classic member's protocol metadata or assignment: opaque bytes,
/// base64 in the record's JSON.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Opaque(#[serde(with = "base64_bytes")] pub Vec<u8>);

/// One assignor a classic member supports, with its metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassicProtocol {
    pub name: String,
    pub metadata: Opaque,
}

/// A member's part in the Kafka classic protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassicMember {
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: u32,
    /// In the member's order of preference.
    pub protocols: Vec<ClassicProtocol>,
    /// It has joined the generation now being formed.
    pub rejoined: bool,
    /// What the leader assigned it, as the leader encoded it.
    pub assignment: Opaque,
}

mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}

/// A group membership protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupProtocol {
    /// Members join over HTTP; the metadata transaction that admits or
    /// removes a member also computes the assignment.
    Http,
    /// Kafka's classic protocol: the group's leader assigns.
    Kafka,
}

/// Where to start without a committed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OffsetReset {
    Earliest,
    /// Kafka's default: only records produced from now on.
    #[default]
    Latest,
}

/// Value of `Member(group, member_id)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    pub session_timeout_ms: u32,
    /// The member is dead from this time on unless it renews its lease.
    pub expires_ms: i64,
    /// Topic names the member subscribed to.
    pub topics: Vec<String>,
    /// Where it starts on a partition with no committed offset.
    pub offset_reset: OffsetReset,
    /// What it owns in the group's current generation.
    pub assignment: Vec<TopicAssignment>,
    pub joined_ms: i64,
    /// Set for members that joined over the Kafka protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classic: Option<ClassicMember>,
}

impl MemberRecord {
    pub fn owns(&self, topic_id: u64, partition: u32) -> bool {
        self.assignment
            .iter()
            .any(|a| a.topic_id == topic_id && a.partitions.contains(&partition))
    }

    pub fn is_live(&self, now_ms: i64) -> bool {
        self.expires_ms > now_ms
    }
}

/// Partitions of one topic owned by a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicAssignment {
    pub topic: String,
    pub topic_id: u64,
    /// Ascending.
    pub partitions: Vec<u32>,
}

/// Value of `Offset(group, topic, partition)`:
/// `v1 | offset u64 | committed_ms i64 | metadata_len u16 | metadata`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The next offset to consume (Kafka's convention).
    pub offset: u64,
    pub committed_ms: i64,
    /// Free text from the committer, at most [`MAX_OFFSET_METADATA`] bytes.
    pub metadata: String,
}

impl CommittedOffset {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(19 + self.metadata.len());
        v.push(V1);
        v.extend_from_slice(&self.offset.to_be_bytes());
        v.extend_from_slice(&self.committed_ms.to_be_bytes());
        put_short_str(&mut v, &self.metadata);
        v
    }

    pub fn decode(b: &[u8]) -> Result<Self, Error> {
        let mut r = Reader(b);
        (|| {
            r.version()?;
            let c = Self {
                offset: r.u64()?,
                committed_ms: r.i64()?,
                metadata: r.short_str()?,
            };
            r.end()?;
            Some(c)
        })()
        .ok_or(corrupt("committed offset"))
    }
}

pub fn decode_json<T: for<'de> Deserialize<'de>>(b: &[u8], what: &'static str) -> Result<T, Error> {
    serde_json::from_slice(b).map_err(|_| corrupt(what))
}

pub(crate) fn encode_json<T: Serialize>(v: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail (no maps with non-string
    // keys, no custom serializers).
    serde_json::to_vec(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn committed_offset_round_trips(offset in any::<u64>(), ms in any::<i64>(), metadata in ".{0,64}") {
            let c = CommittedOffset { offset, committed_ms: ms, metadata };
            prop_assert_eq!(CommittedOffset::decode(&c.encode()).unwrap(), c);
        }
        #[test]
        fn garbage_is_an_error_not_a_panic(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = CommittedOffset::decode(&b);
            let _ = decode_json::<GroupRecord>(&b, "group");
            let _ = decode_json::<MemberRecord>(&b, "member");
        }
    }

    #[test]
    fn group_records_round_trip_as_json() {
        let g = GroupRecord {
            generation: 7,
            protocol: Some(GroupProtocol::Http),
            created_ms: 1,
            classic: Some(ClassicGroup {
                protocol_type: "consumer".into(),
                protocol: Some("range".into()),
                leader: None,
                phase: ClassicPhase::Joining { deadline_ms: 9 },
            }),
        };
        let back: GroupRecord = decode_json(&encode_json(&g), "group").unwrap();
        assert_eq!(back, g);
    }
}
