//! `DescribeConfigs` for topics (what `kafka-topics --describe` and admin
//! clients ask): the Kafka names of the topic settings Silt keeps. A
//! broker's configs are an empty list: agents have no per-broker settings
//! clients could act on.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use silt_agent::{CompressionName, ErrorKind, TopicConfig};

use crate::Broker;
use crate::conn::Answer;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
/// `config_source`: set on the topic.
const DYNAMIC_TOPIC_CONFIG: i8 = 1;
/// `config_type` values.
const STRING: i8 = 2;
const LONG: i8 = 5;

pub(crate) async fn describe(broker: &Broker, req: DescribeConfigsRequest, version: i16) -> Answer {
    let mut r = DescribeConfigsResponse::default();
    for res in req.resources {
        let mut out = DescribeConfigsResult::default();
        out.resource_type = res.resource_type;
        out.resource_name = res.resource_name.clone();
        match res.resource_type {
            TOPIC => match broker.agent.describe_topic(&res.resource_name).await {
                Ok(d) => {
                    let wanted = res.configuration_keys.as_ref();
                    out.configs = entries(&d.topic.config)
                        .into_iter()
                        .filter(|e| wanted.is_none_or(|keys| keys.contains(&e.name)))
                        .collect();
                }
                Err(e) => {
                    out.error_code = match e.kind() {
                        ErrorKind::NotFound => ResponseError::UnknownTopicOrPartition,
                        _ => ResponseError::RequestTimedOut,
                    }
                    .code();
                    out.error_message = Some(StrBytes::from_string(e.to_string()));
                }
            },
            BROKER => {}
            other => {
                out.error_code = ResponseError::InvalidRequest.code();
                out.error_message = Some(StrBytes::from_string(format!(
                    "resource type {other} has no configs here"
                )));
            }
        }
        r.results.push(out);
    }
    Answer {
        body: ResponseKind::DescribeConfigs(r),
        version,
    }
}

fn entries(c: &TopicConfig) -> Vec<DescribeConfigsResourceResult> {
    let millis = |v: Option<u64>| v.map_or_else(|| "-1".to_owned(), |v| v.to_string());
    let compression = match c.compression {
        CompressionName::None => "uncompressed",
        CompressionName::Lz4 => "lz4",
        CompressionName::Zstd => "zstd",
    };
    [
        ("retention.ms", millis(c.retention_ms), LONG),
        ("retention.bytes", millis(c.retention_bytes), LONG),
        ("compression.type", compression.to_owned(), STRING),
        ("cleanup.policy", "delete".to_owned(), STRING),
    ]
    .into_iter()
    .map(|(name, value, config_type)| {
        let mut e = DescribeConfigsResourceResult::default();
        e.name = StrBytes::from_static_str(name);
        e.value = Some(StrBytes::from_string(value));
        e.read_only = false;
        e.config_source = DYNAMIC_TOPIC_CONFIG;
        e.config_type = config_type;
        e
    })
    .collect()
}
