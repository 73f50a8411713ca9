//! `Fetch` v4 and later: whole stored batches, as producers sent them (a
//! fetch from inside a batch returns that batch; clients skip the records
//! before their offset), within `max_bytes` and each partition's limit —
//! but always at least one batch, so a big one cannot stall a consumer.
//!
//! Long-poll: with fewer than `min_bytes` ready, the request waits up to
//! `max_wait_ms` for a commit to any of its partitions, woken by the same
//! notifications as HTTP long-polls (this agent's commits at once, other
//! agents' through metadata watches). Every partition is subscribed to
//! before it is read, so no commit slips between the read and the wait.
//!
//! Fetch sessions (KIP-227) are not kept: every answer has session id 0,
//! which tells clients to send full requests; an incremental request for
//! a session gets `FETCH_SESSION_ID_NOT_FOUND`.

use std::time::Duration;

use futures::FutureExt;
use futures::future::select_all;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ResponseKind, TopicName};
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::time::Instant;

use crate::Broker;
use crate::conn::Answer;
use crate::errors::{code, offset};

/// One partition a request asks for.
struct Wanted {
    topic: usize,
    partition: i32,
    offset: i64,
    max_bytes: usize,
}

/// Answers a fetch, with the share of the response budget its records
/// hold until the answer is written.
pub(crate) async fn fetch(
    broker: &Broker,
    req: FetchRequest,
    version: i16,
) -> (Answer, Option<OwnedSemaphorePermit>) {
    let mut r = FetchResponse::default();
    if req.session_id != 0 || req.session_epoch > 0 {
        r.error_code = ResponseError::FetchSessionIdNotFound.code();
        return (answer(r, version), None);
    }
    let topics: Vec<TopicName> = req.topics.iter().map(|t| t.topic.clone()).collect();
    let wanted: Vec<Wanted> = req
        .topics
        .iter()
        .enumerate()
        .flat_map(|(i, t)| {
            t.partitions.iter().map(move |p| Wanted {
                topic: i,
                partition: p.partition,
                offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes.max(0) as usize,
            })
        })
        .collect();
    // A broker may answer less than asked: at most what it can hold.
    let max_bytes = (req.max_bytes.max(0) as usize)
        .min(wanted.iter().map(|w| w.max_bytes).sum())
        .min(broker.config.max_fetch_bytes);
    let min_bytes = req.min_bytes.max(0) as usize;
    let wait = Duration::from_millis(req.max_wait_ms.clamp(0, 300_000) as u64)
        .min(broker.config.max_fetch_wait);
    let deadline = Instant::now() + wait;
    let mut changes: Option<Vec<watch::Receiver<u64>>> = None;
    let (parts, held) = loop {
        // The response budget is held while records are read and until
        // the answer is written, never while waiting.
        let Ok(mut held) = broker
            .responses
            .clone()
            .acquire_many_owned(max_bytes.max(1) as u32)
            .await
        else {
            return (answer(r, version), None);
        };
        let parts = read_all(broker, &topics, &wanted, max_bytes).await;
        let bytes: usize = parts
            .iter()
            .map(|p| p.records.as_ref().map_or(0, |r| r.len()))
            .sum();
        let failed = parts.iter().any(|p| p.error_code != 0);
        if bytes >= min_bytes || failed || Instant::now() >= deadline {
            // A first batch larger than the limit is answered whole (KIP-74):
            // it holds its real size.
            if let Some(more) = bytes.checked_sub(held.num_permits()).filter(|&m| m > 0) {
                if let Ok(extra) = broker
                    .responses
                    .clone()
                    .acquire_many_owned(more as u32)
                    .await
                {
                    held.merge(extra);
                }
            }
            break (parts, held);
        }
        drop(held);
        match &mut changes {
            // Subscribe, then read again: no commit falls in between.
            None => changes = Some(subscribe(broker, &topics, &wanted).await),
            Some(rxs) if rxs.is_empty() => {
                tokio::time::sleep_until(deadline).await;
            }
            Some(rxs) => {
                let any = select_all(rxs.iter_mut().map(|rx| rx.changed().boxed()));
                let closed = tokio::select! {
                    (changed, i, _) = any => changed.is_err().then_some(i),
                    () = tokio::time::sleep_until(deadline) => None,
                };
                // A closed channel (its partition is gone) would wake at
                // once forever: stop listening to it.
                if let Some(i) = closed {
                    rxs.swap_remove(i);
                }
            }
        }
    };
    let mut responses: Vec<FetchableTopicResponse> = topics
        .iter()
        .map(|name| {
            let mut t = FetchableTopicResponse::default();
            t.topic = name.clone();
            t
        })
        .collect();
    for (w, p) in wanted.iter().zip(parts) {
        responses[w.topic].partitions.push(p);
    }
    r.responses = responses;
    (answer(r, version), Some(held))
}

fn answer(r: FetchResponse, version: i16) -> Answer {
    Answer {
        body: ResponseKind::Fetch(r),
        version,
    }
}

async fn subscribe(
    broker: &Broker,
    topics: &[TopicName],
    wanted: &[Wanted],
) -> Vec<watch::Receiver<u64>> {
    let mut rxs = Vec::with_capacity(wanted.len());
    for w in wanted {
        let Ok(p) = u32::try_from(w.partition) else {
            continue;
        };
        if let Ok(rx) = broker.agent.subscribe(&topics[w.topic].0, p).await {
            rxs.push(rx);
        }
    }
    rxs
}

/// Reads every partition in request order until `max_bytes` are taken.
async fn read_all(
    broker: &Broker,
    topics: &[TopicName],
    wanted: &[Wanted],
    max_bytes: usize,
) -> Vec<PartitionData> {
    let mut taken = 0;
    let mut out = Vec::with_capacity(wanted.len());
    for w in wanted {
        let mut p = PartitionData::default();
        p.partition_index = w.partition;
        p.high_watermark = -1;
        p.last_stable_offset = -1;
        p.log_start_offset = -1;
        p.preferred_read_replica = kafka_protocol::messages::BrokerId(-1);
        p.records = Some(Default::default());
        let room = w.max_bytes.min(max_bytes.saturating_sub(taken));
        // Once anything is taken, a partition gets only what room is left;
        // the first batch of a request is always allowed.
        let read = match (u32::try_from(w.partition), u64::try_from(w.offset)) {
            (Ok(partition), Ok(from)) if room > 0 || taken == 0 => broker
                .agent
                .read_batches(&topics[w.topic].0, partition, from, room.max(1))
                .await
                .map(Some)
                .map_err(|e| code(&e)),
            // No room left: only the partition's offsets.
            (Ok(partition), Ok(_)) => broker
                .agent
                .offsets(&topics[w.topic].0, partition)
                .await
                .map(|s| {
                    Some(silt_agent::BatchRead {
                        state: s,
                        batches: Default::default(),
                        next_offset: 0,
                    })
                })
                .map_err(|e| code(&e)),
            (Err(_), _) => Err(ResponseError::UnknownTopicOrPartition),
            (_, Err(_)) => Err(ResponseError::OffsetOutOfRange),
        };
        match read {
            // Only the request's first batch may exceed its room.
            Ok(Some(b)) if taken > 0 && b.batches.len() > room => {
                p.high_watermark = offset(b.state.high_watermark);
                p.last_stable_offset = p.high_watermark;
                p.log_start_offset = offset(b.state.log_start_offset);
            }
            Ok(Some(b)) => {
                p.high_watermark = offset(b.state.high_watermark);
                p.last_stable_offset = p.high_watermark;
                p.log_start_offset = offset(b.state.log_start_offset);
                taken += b.batches.len();
                p.records = Some(b.batches);
            }
            Ok(None) => {}
            Err(c) => p.error_code = c.code(),
        }
        out.push(p);
    }
    out
}
