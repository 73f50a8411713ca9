//! `ListOffsets`: a partition's earliest (`-2`) and latest (`-1`) offsets,
//! and the first offset at or after a timestamp. There are no transactions
//! yet, so the last stable offset is the high-watermark whatever the
//! isolation level.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse, ResponseKind};
use silt_agent::ErrorKind;

use crate::Broker;
use crate::conn::Answer;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;

pub(crate) async fn list(broker: &Broker, req: ListOffsetsRequest, version: i16) -> Answer {
    let mut r = ListOffsetsResponse::default();
    for topic in req.topics {
        let mut t = ListOffsetsTopicResponse::default();
        t.name = topic.name.clone();
        for p in topic.partitions {
            let mut out = ListOffsetsPartitionResponse::default();
            out.partition_index = p.partition_index;
            match one(broker, &topic.name.0, p.partition_index, p.timestamp).await {
                Ok((offset, timestamp)) => {
                    out.offset = offset;
                    out.timestamp = timestamp;
                }
                Err(code) => {
                    out.error_code = code.code();
                    out.offset = -1;
                    out.timestamp = -1;
                }
            }
            t.partitions.push(out);
        }
        r.topics.push(t);
    }
    Answer {
        body: ResponseKind::ListOffsets(r),
        version,
    }
}

/// `(offset, timestamp)` for one partition; `-1, -1` when no record is
/// as recent as a timestamp asked for.
async fn one(
    broker: &Broker,
    topic: &str,
    partition: i32,
    at: i64,
) -> Result<(i64, i64), ResponseError> {
    let partition = u32::try_from(partition).map_err(|_| ResponseError::UnknownTopicOrPartition)?;
    let to_code = |e: silt_agent::Error| match e.kind() {
        ErrorKind::NotFound => ResponseError::UnknownTopicOrPartition,
        _ => ResponseError::RequestTimedOut,
    };
    let as_i64 = |o: u64| i64::try_from(o).unwrap_or(i64::MAX);
    match at {
        LATEST | EARLIEST => {
            let s = broker
                .agent
                .offsets(topic, partition)
                .await
                .map_err(to_code)?;
            let offset = if at == LATEST {
                s.high_watermark
            } else {
                s.log_start_offset
            };
            Ok((as_i64(offset), -1))
        }
        ts if ts >= 0 => Ok(broker
            .agent
            .offset_for_timestamp(topic, partition, ts)
            .await
            .map_err(to_code)?
            .map_or((-1, -1), |(o, t)| (as_i64(o), t))),
        _ => Err(ResponseError::UnsupportedVersion),
    }
}
