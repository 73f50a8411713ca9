//! `OffsetCommit` and `OffsetFetch`: the offsets every protocol shares (a
//! Kafka consumer resumes where an HTTP consumer of the same group
//! committed). Commits are fenced exactly as Kafka fences them: a member
//! commits at its generation (`ILLEGAL_GENERATION`, `UNKNOWN_MEMBER_ID`,
//! `REBALANCE_IN_PROGRESS` while the generation's assignment is pending);
//! generation −1 with no member id commits only to a group with no live
//! members. Partitions are answered one by one, as Kafka does.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
    ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use silt_agent::groups::{GroupCommit, MemberRef, OffsetSpec};
use silt_agent::{Error, ErrorKind};

use crate::Broker;
use crate::conn::Answer;
use crate::errors::{code, offset};

/// Longest offset metadata kept (Kafka's `offset.metadata.max.bytes`).
const MAX_METADATA: usize = 4096;

pub(crate) async fn commit(broker: &Broker, req: OffsetCommitRequest, version: i16) -> Answer {
    let group = req.group_id.to_string();
    let member = || match (req.generation_id_or_member_epoch, req.member_id.as_str()) {
        (-1, "") => None,
        (generation, id) => Some(MemberRef {
            member_id: id.to_owned(),
            generation: u32::try_from(generation).unwrap_or(u32::MAX),
        }),
    };
    // Per partition, in request order: what to commit, or why not.
    let items: Vec<Result<OffsetSpec, ResponseError>> = req
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t, p)))
        .map(|(t, p)| {
            let metadata = p.committed_metadata.as_deref().unwrap_or_default();
            if metadata.len() > MAX_METADATA {
                return Err(ResponseError::OffsetMetadataTooLarge);
            }
            match (
                u32::try_from(p.partition_index),
                u64::try_from(p.committed_offset),
            ) {
                (Ok(partition), Ok(offset)) => Ok(OffsetSpec {
                    topic: t.name.to_string(),
                    partition,
                    offset,
                    metadata: metadata.to_owned(),
                }),
                (Err(_), _) => Err(ResponseError::UnknownTopicOrPartition),
                (_, Err(_)) => Err(ResponseError::InvalidRequest),
            }
        })
        .collect();
    let specs: Vec<OffsetSpec> = items
        .iter()
        .filter_map(|i| i.as_ref().ok().cloned())
        .collect();
    let codes: Vec<i16> = match commit_all(broker, &group, member(), specs.clone()).await {
        Ok(()) => vec![0; specs.len()],
        // One unknown partition fails the whole transaction: commit the
        // rest one by one, so each gets its own answer.
        Err(e) if e.kind() == ErrorKind::NotFound && specs.len() > 1 => {
            let mut out = Vec::with_capacity(specs.len());
            for s in specs {
                let r = commit_all(broker, &group, member(), vec![s]).await;
                out.push(r.map_or_else(|e| code(&e).code(), |()| 0));
            }
            out
        }
        Err(e) => {
            tracing::debug!(error = %e, "offset commit refused");
            vec![code(&e).code(); specs.len()]
        }
    };
    let mut codes = codes.into_iter();
    let mut items = items.into_iter();
    let mut r = OffsetCommitResponse::default();
    for t in req.topics {
        let mut out = OffsetCommitResponseTopic::default();
        out.name = t.name;
        for p in t.partitions {
            let mut part = OffsetCommitResponsePartition::default();
            part.partition_index = p.partition_index;
            part.error_code = match items.next() {
                Some(Err(c)) => c.code(),
                _ => codes.next().unwrap_or_default(),
            };
            out.partitions.push(part);
        }
        r.topics.push(out);
    }
    Answer {
        body: ResponseKind::OffsetCommit(r),
        version,
    }
}

/// Committed offsets of the partitions asked for (all, when none are named);
/// `-1` where nothing was committed.
pub(crate) async fn fetch(broker: &Broker, req: OffsetFetchRequest, version: i16) -> Answer {
    let mut r = OffsetFetchResponse::default();
    let group = req.group_id.to_string();
    let committed = match &req.topics {
        Some(topics) if topics.len() == 1 => {
            broker
                .agent
                .committed_offsets(&group, Some(&topics[0].name))
                .await
        }
        _ => broker.agent.committed_offsets(&group, None).await,
    };
    let committed = match committed {
        Ok(c) => c,
        Err(e) => {
            r.error_code = code(&e).code();
            return Answer {
                body: ResponseKind::OffsetFetch(r),
                version,
            };
        }
    };
    let entry = |partition: i32, found: Option<&silt_agent::classic::CommittedPartition>| {
        let mut p = OffsetFetchResponsePartition::default();
        p.partition_index = partition;
        p.committed_leader_epoch = -1;
        p.committed_offset = found.map_or(-1, |c| offset(c.offset));
        p.metadata = Some(StrBytes::from_string(
            found.map(|c| c.metadata.clone()).unwrap_or_default(),
        ));
        p
    };
    match req.topics {
        Some(topics) => {
            for t in topics {
                let mut out = OffsetFetchResponseTopic::default();
                for &p in &t.partition_indexes {
                    let found = committed.iter().find(|c| {
                        c.topic == t.name.as_str() && i64::from(c.partition) == i64::from(p)
                    });
                    out.partitions.push(entry(p, found));
                }
                out.name = t.name;
                r.topics.push(out);
            }
        }
        None => {
            let mut by_topic: std::collections::BTreeMap<&str, Vec<_>> = Default::default();
            for c in &committed {
                by_topic.entry(c.topic.as_str()).or_default().push(c);
            }
            for (name, parts) in by_topic {
                let mut out = OffsetFetchResponseTopic::default();
                out.name = TopicName(StrBytes::from_string(name.to_owned()));
                out.partitions = parts
                    .into_iter()
                    .map(|c| entry(c.partition as i32, Some(c)))
                    .collect();
                r.topics.push(out);
            }
        }
    }
    Answer {
        body: ResponseKind::OffsetFetch(r),
        version,
    }
}

async fn commit_all(
    broker: &Broker,
    group: &str,
    member: Option<MemberRef>,
    offsets: Vec<OffsetSpec>,
) -> Result<(), Error> {
    if offsets.is_empty() {
        return Ok(());
    }
    broker
        .agent
        .commit_offsets(GroupCommit {
            group: group.to_owned(),
            member,
            offsets,
        })
        .await
}
