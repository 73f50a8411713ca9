//! `CreateTopics` and `DeleteTopics`, as tools (kafka-topics, kcat, admin
//! clients) call them. Storage is the object store's, so a replication
//! factor is accepted and ignored; configs Silt understands are applied,
//! others refused with `INVALID_CONFIG` rather than silently dropped.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use silt_agent::{CompressionName, ErrorKind, MAX_PARTITIONS, TopicConfig};

use crate::Broker;
use crate::conn::Answer;
use crate::metadata::{topic_id_of, topic_uuid};

/// Partitions of a topic created with `num_partitions = -1`.
const DEFAULT_PARTITIONS: i32 = 1;

/// An error code and its message.
type Failure = (ResponseError, String);

pub(crate) async fn create(broker: &Broker, req: CreateTopicsRequest, version: i16) -> Answer {
    let mut r = CreateTopicsResponse::default();
    for topic in req.topics {
        let name = topic.name.0.to_string();
        let mut result = CreatableTopicResult::default();
        result.name = topic.name.clone();
        match create_one(broker, &topic, req.validate_only).await {
            Ok((id, partitions)) => {
                result.topic_id = id.map_or_else(uuid::Uuid::nil, topic_uuid);
                result.num_partitions = partitions;
                result.replication_factor = topic.replication_factor.max(1);
            }
            Err((code, message)) => {
                tracing::debug!(topic = %name, ?code, %message, "create topic refused");
                result.error_code = code.code();
                result.error_message = Some(StrBytes::from_string(message));
            }
        }
        r.topics.push(result);
    }
    Answer {
        body: ResponseKind::CreateTopics(r),
        version,
    }
}

/// Creates (or, validating only, checks) one topic: its id (none when
/// only validated) and partition count.
async fn create_one(
    broker: &Broker,
    topic: &CreatableTopic,
    validate_only: bool,
) -> Result<(Option<u64>, i32), Failure> {
    if !topic.assignments.is_empty() {
        return Err((
            ResponseError::InvalidReplicaAssignment,
            "replica assignments do not apply: every agent serves every partition".into(),
        ));
    }
    let partitions = match topic.num_partitions {
        -1 => DEFAULT_PARTITIONS,
        n if n > 0 && n.unsigned_abs() <= MAX_PARTITIONS => n,
        n => {
            return Err((
                ResponseError::InvalidPartitions,
                format!("{n} partitions; give 1 to {MAX_PARTITIONS}"),
            ));
        }
    };
    let config = config(topic)?;
    if validate_only {
        return Ok((None, partitions));
    }
    let created = broker
        .agent
        .create_topic(&topic.name.0, partitions as u32, config)
        .await;
    match created {
        Ok(t) => Ok((Some(t.id), t.partitions as i32)),
        Err(e) => Err(match e.kind() {
            ErrorKind::AlreadyExists => (ResponseError::TopicAlreadyExists, e.to_string()),
            ErrorKind::InvalidArgument => (ResponseError::InvalidTopicException, e.to_string()),
            _ => (ResponseError::RequestTimedOut, e.to_string()),
        }),
    }
}

/// The topic configuration from Kafka's config names.
fn config(topic: &CreatableTopic) -> Result<TopicConfig, Failure> {
    let mut c = TopicConfig::default();
    for kv in &topic.configs {
        let name = kv.name.as_str();
        let value = kv.value.as_deref().unwrap_or_default();
        let bad = || {
            (
                ResponseError::InvalidConfig,
                format!("{name}={value:?} is not a valid value"),
            )
        };
        let millis = |v: &str| match v.parse::<i64>() {
            Ok(-1) => Ok(None),
            Ok(n) if n > 0 => Ok(Some(n as u64)),
            _ => Err(bad()),
        };
        match name {
            "retention.ms" => c.retention_ms = millis(value)?,
            "retention.bytes" => c.retention_bytes = millis(value)?,
            "compression.type" => {
                c.compression = match value {
                    "lz4" | "producer" => CompressionName::Lz4,
                    "zstd" => CompressionName::Zstd,
                    "uncompressed" => CompressionName::None,
                    _ => return Err(bad()),
                }
            }
            // Kafka defaults that describe what Silt does anyway.
            "cleanup.policy" if value == "delete" => {}
            "min.insync.replicas" | "unclean.leader.election.enable" => {}
            _ => {
                return Err((
                    ResponseError::InvalidConfig,
                    format!("config {name} is not supported"),
                ));
            }
        }
    }
    Ok(c)
}

pub(crate) async fn delete(broker: &Broker, req: DeleteTopicsRequest, version: i16) -> Answer {
    // v0-5 name topics in `topic_names`; v6 in `topics`, by name or id.
    let mut wanted: Vec<(Option<TopicName>, uuid::Uuid)> = req
        .topic_names
        .into_iter()
        .map(|n| (Some(n), uuid::Uuid::nil()))
        .collect();
    wanted.extend(req.topics.into_iter().map(|t| (t.name, t.topic_id)));
    let mut r = DeleteTopicsResponse::default();
    for (name, id) in wanted {
        let mut result = DeletableTopicResult::default();
        result.topic_id = id;
        let name: Result<Option<TopicName>, Failure> = match (name, topic_id_of(id)) {
            (Some(n), _) => Ok(Some(n)),
            (None, Some(id)) => broker
                .agent
                .list_topics()
                .await
                .map(|all| {
                    all.into_iter()
                        .find(|t| t.id == id)
                        .map(|t| TopicName(StrBytes::from_string(t.name)))
                })
                .map_err(|e| (ResponseError::RequestTimedOut, e.to_string())),
            (None, None) => Ok(None),
        };
        result.name = name.as_ref().ok().cloned().flatten();
        let outcome = match name {
            Err(failure) => Err(failure),
            Ok(None) => Err((
                ResponseError::UnknownTopicId,
                "no topic has this id".to_owned(),
            )),
            Ok(Some(n)) => broker
                .agent
                .delete_topic(&n.0)
                .await
                .map_err(|e| match e.kind() {
                    ErrorKind::NotFound => (ResponseError::UnknownTopicOrPartition, e.to_string()),
                    _ => (ResponseError::RequestTimedOut, e.to_string()),
                }),
        };
        if let Err((code, message)) = outcome {
            result.error_code = code.code();
            result.error_message = Some(StrBytes::from_string(message));
        }
        r.responses.push(result);
    }
    Answer {
        body: ResponseKind::DeleteTopics(r),
        version,
    }
}
