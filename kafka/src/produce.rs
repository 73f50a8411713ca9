//! `Produce` v3 and later: each partition's batch is handed to the agent
//! as the client sent it (CRC checked, compression kept, base offset
//! rewritten) — see `silt_agent::Agent::append_batch`.
//!
//! A request is *submitted* in the order it arrived on its connection and
//! answered once every partition's commit is known, so a client pipelining
//! requests (librdkafka keeps up to five in flight) gets its batches
//! committed in order. Partitions are independent, as in Kafka: each gets
//! its own error code. `acks=0` gets no answer. Versions 0–2 (message
//! formats before v2 batches) are advertised, because librdkafka before
//! 2.11.1 turns compression off otherwise, and refused with
//! `UNSUPPORTED_VERSION` ([`refuse_legacy`]).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::future::BoxFuture;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, ResponseKind};
use silt_agent::PendingBatch;

use crate::conn::Answer;

/// The first version this codec decodes (v2 batches); older ones are refused.
pub(crate) const MIN_VERSION: i16 = 3;
use crate::Broker;
use crate::errors::{code, offset};

/// One partition's submission: its batch on the way, or why not.
enum Submitted {
    Pending(PendingBatch),
    Failed(ResponseError),
    /// The agent is at its memory bound: `REQUEST_TIMED_OUT`, and the
    /// answer's throttle time asks the client to back off (KIP-219).
    Throttled(std::time::Duration),
}

/// Submits every partition's batch; the future answers once all commits
/// are known (`None` for `acks=0`).
pub(crate) async fn submit(
    broker: &Broker,
    req: ProduceRequest,
    version: i16,
) -> BoxFuture<'static, Option<Answer>> {
    let mut topics = Vec::with_capacity(req.topic_data.len());
    for topic in req.topic_data {
        let mut parts = Vec::with_capacity(topic.partition_data.len());
        for p in topic.partition_data {
            let outcome = if req.transactional_id.is_some() {
                // Transactions are not offered (not in ApiVersions).
                Submitted::Failed(ResponseError::TransactionalIdAuthorizationFailed)
            } else {
                submit_one(broker, &topic.name.0, p.index, p.records).await
            };
            parts.push((p.index, outcome));
        }
        topics.push((topic.name, parts));
    }
    let acks = req.acks;
    Box::pin(async move {
        let mut r = ProduceResponse::default();
        for (name, parts) in topics {
            let mut t = TopicProduceResponse::default();
            t.name = name;
            for (index, outcome) in parts {
                let mut out = PartitionProduceResponse::default();
                out.index = index;
                out.log_append_time_ms = -1;
                out.log_start_offset = -1;
                out.base_offset = -1;
                match outcome {
                    Submitted::Pending(p) => match p.wait().await {
                        Ok(a) => out.base_offset = offset(a.base_offset),
                        Err(e) => {
                            tracing::debug!(error = %e, "produce failed");
                            out.error_code = code(&e).code();
                            out.error_message = Some(e.to_string().into());
                        }
                    },
                    Submitted::Failed(c) => out.error_code = c.code(),
                    Submitted::Throttled(d) => {
                        out.error_code = ResponseError::RequestTimedOut.code();
                        let ms = i32::try_from(d.as_millis()).unwrap_or(i32::MAX);
                        r.throttle_time_ms = r.throttle_time_ms.max(ms);
                    }
                }
                t.partition_responses.push(out);
            }
            r.responses.push(t);
        }
        (acks != 0).then_some(Answer {
            body: ResponseKind::Produce(r),
            version,
        })
    })
}

async fn submit_one(broker: &Broker, topic: &str, index: i32, records: Option<Bytes>) -> Submitted {
    let Ok(partition) = u32::try_from(index) else {
        return Submitted::Failed(ResponseError::UnknownTopicOrPartition);
    };
    let Some(records) = records else {
        return Submitted::Failed(ResponseError::CorruptMessage);
    };
    if records.len() > broker.config.max_message_bytes {
        return Submitted::Failed(ResponseError::MessageTooLarge);
    }
    // At the memory bound, hold the request (its frame is already
    // counted) while earlier ones drain, rather than fail it at once.
    let appended = broker
        .agent
        .append_batch(topic, partition, records, broker.config.admission_wait)
        .await;
    match appended {
        Ok(p) => Submitted::Pending(p),
        Err(silt_agent::Error::Overloaded { retry_after }) => Submitted::Throttled(retry_after),
        Err(e) => {
            tracing::debug!(topic, partition, error = %e, "batch refused");
            Submitted::Failed(code(&e))
        }
    }
}

/// Answers a v0–2 request with `UNSUPPORTED_VERSION` for every partition
/// it names (encoded by hand: the codec starts at v3). `None` if the body
/// does not parse.
pub(crate) fn refuse_legacy(
    version: i16,
    correlation_id: i32,
    mut body: Bytes,
) -> Option<BytesMut> {
    let mut out = BytesMut::new();
    out.put_i32(correlation_id);
    let _acks = take(&mut body, 2)?;
    let _timeout = take(&mut body, 4)?;
    let topics = count(&mut body)?;
    out.put_i32(topics);
    for _ in 0..topics {
        let name_len =
            usize::try_from(i16::from_be_bytes(take(&mut body, 2)?[..].try_into().ok()?)).ok()?;
        let name = take(&mut body, name_len)?;
        out.put_i16(name_len as i16);
        out.put_slice(&name);
        let partitions = count(&mut body)?;
        out.put_i32(partitions);
        for _ in 0..partitions {
            let index = take(&mut body, 4)?;
            let len = i32::from_be_bytes(take(&mut body, 4)?[..].try_into().ok()?);
            if len > 0 {
                take(&mut body, len as usize)?;
            }
            out.put_slice(&index);
            out.put_i16(ResponseError::UnsupportedVersion.code());
            out.put_i64(-1); // base offset
            if version >= 2 {
                out.put_i64(-1); // log append time
            }
        }
    }
    if version >= 1 {
        out.put_i32(0); // throttle time
    }
    Some(out)
}

fn take(b: &mut Bytes, n: usize) -> Option<Bytes> {
    (b.remaining() >= n).then(|| b.split_to(n))
}

/// An array length, bounded by the bytes left (each element takes ≥ 4).
fn count(b: &mut Bytes) -> Option<i32> {
    let n = i32::from_be_bytes(take(b, 4)?[..].try_into().ok()?);
    (0..=b.remaining() as i32 / 4).contains(&n).then_some(n)
}
