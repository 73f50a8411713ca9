//! `Metadata`: this agent is the only broker, the leader of every
//! partition and the controller. Any agent answers the same way with its
//! own address, so a client stays on whichever agent it reached.
//!
//! Topic auto-creation is off unless `KafkaConfig::auto_create_partitions`
//! is set (`--kafka-auto-create-partitions N`): then a Metadata request
//! that allows it (v4 and later say so; older versions always do) creates
//! each missing topic it names with N partitions and the default config.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, MetadataRequest, MetadataResponse, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::Broker;
use crate::conn::Answer;

/// This broker's node id, in every answer of every agent.
pub(crate) const NODE_ID: i32 = 1;

/// The Kafka topic id of a Silt topic: stable, never all zeros.
pub(crate) fn topic_uuid(topic_id: u64) -> uuid::Uuid {
    uuid::Uuid::from_u64_pair(0x5117_0000_0000_0001, topic_id)
}

pub(crate) fn topic_id_of(uuid: uuid::Uuid) -> Option<u64> {
    let (high, low) = uuid.as_u64_pair();
    (high == 0x5117_0000_0000_0001).then_some(low)
}

/// Fails (closing the connection, which clients retry on another) when the
/// topics cannot be listed: an empty answer would tell clients their
/// topics do not exist.
pub(crate) async fn answer(
    broker: &Broker,
    req: MetadataRequest,
    version: i16,
) -> Result<Answer, silt_agent::Error> {
    let mut r = MetadataResponse::default();
    let mut b = MetadataResponseBroker::default();
    b.node_id = BrokerId(NODE_ID);
    b.host = StrBytes::from_string(broker.host.clone());
    b.port = i32::from(broker.port);
    r.brokers = vec![b];
    r.cluster_id = Some(StrBytes::from_static_str("silt"));
    r.controller_id = BrokerId(NODE_ID);
    r.topics = topics(broker, req, version).await?;
    Ok(Answer {
        body: ResponseKind::Metadata(r),
        version,
    })
}

async fn topics(
    broker: &Broker,
    req: MetadataRequest,
    version: i16,
) -> Result<Vec<MetadataResponseTopic>, silt_agent::Error> {
    let all = broker.agent.list_topics().await?;
    // v0: an empty list means every topic; v1 and later: a null list does.
    let wanted = match req.topics {
        None => None,
        Some(t) if t.is_empty() && version == 0 => None,
        Some(t) => Some(t),
    };
    let auto_create = broker
        .config
        .auto_create_partitions
        .filter(|_| version < 4 || req.allow_auto_topic_creation);
    let Some(wanted) = wanted else {
        return Ok(all
            .iter()
            .map(|t| described(&t.name, t.id, t.partitions))
            .collect());
    };
    let mut out = Vec::with_capacity(wanted.len());
    for w in wanted {
        let found = match (&w.name, topic_id_of(w.topic_id)) {
            (Some(name), _) => all.iter().find(|t| t.name.as_str() == &*name.0).cloned(),
            (None, Some(id)) => all.iter().find(|t| t.id == id).cloned(),
            (None, None) => None,
        };
        let found = match (found, &w.name, auto_create) {
            (Some(t), _, _) => Some(t),
            (None, Some(name), Some(partitions)) => create(broker, name, partitions).await,
            (None, _, _) => None,
        };
        out.push(match found {
            Some(t) => described(&t.name, t.id, t.partitions),
            None => {
                let mut missing = MetadataResponseTopic::default();
                missing.error_code = ResponseError::UnknownTopicOrPartition.code();
                missing.name = w.name;
                missing.topic_id = w.topic_id;
                missing
            }
        });
    }
    Ok(out)
}

/// Auto-creates a topic (or finds the one another client just created).
async fn create(
    broker: &Broker,
    name: &TopicName,
    partitions: u32,
) -> Option<silt_agent::TopicInfo> {
    let agent = &broker.agent;
    match agent
        .create_topic(name, partitions, Default::default())
        .await
    {
        Ok(t) => {
            tracing::info!(topic = %name.0, partitions, "topic auto-created for a Kafka client");
            Some(t)
        }
        Err(silt_agent::Error::TopicExists(_)) => {
            agent.describe_topic(name).await.ok().map(|d| d.topic)
        }
        Err(e) => {
            tracing::debug!(topic = %name.0, error = %e, "auto-creation refused");
            None
        }
    }
}

fn described(name: &str, id: u64, partitions: u32) -> MetadataResponseTopic {
    let mut t = MetadataResponseTopic::default();
    t.name = Some(TopicName(StrBytes::from_string(name.to_owned())));
    t.topic_id = topic_uuid(id);
    t.partitions = (0..partitions)
        .map(|p| {
            let mut part = MetadataResponsePartition::default();
            part.partition_index = p as i32;
            part.leader_id = BrokerId(NODE_ID);
            part.replica_nodes = vec![BrokerId(NODE_ID)];
            part.isr_nodes = vec![BrokerId(NODE_ID)];
            part
        })
        .collect();
    t
}
