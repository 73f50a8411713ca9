//! Dead letters (copied to the group's dead-letter topic with headers
//! saying where they came from, how often they were tried and why, then
//! replayed on demand) and the share group's description.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use silt_metadata::shares::DeadLetter;
use silt_metadata::values::shares::ShareGroupRecord;
use silt_segment::Header;

use crate::produce::{Idempotence, ProduceRequest, TopicBatch, fingerprint};
use crate::reader::Limits;
use crate::{Agent, Error, ProduceRecord, Result, TopicInfo};

/// Headers a dead letter carries (replay removes them).
pub const DLQ_HEADERS: [&str; 6] = [
    "silt-dlq-group",
    "silt-dlq-topic",
    "silt-dlq-partition",
    "silt-dlq-offset",
    "silt-dlq-deliveries",
    "silt-dlq-reason",
];

/// Most dead letters one replay call moves.
pub const MAX_REPLAY: usize = 10_000;

/// A share group as described to operators.
#[derive(Debug, Clone)]
pub struct ShareGroupInfo {
    pub name: String,
    pub config: ShareGroupRecord,
    pub partitions: Vec<SharePartitionInfo>,
}

/// One partition of a share group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SharePartitionInfo {
    pub topic: String,
    pub partition: u32,
    /// Every offset below is finished.
    pub window_start: u64,
    /// No offset from here on was delivered yet.
    pub window_next: u64,
    pub high_watermark: u64,
    /// Records never delivered or waiting to be delivered again.
    pub available: u64,
    pub leased: u64,
    pub accepted: u64,
    pub dead_lettered: u64,
    /// Deliveries after the first.
    pub redelivered: u64,
    /// Age of the oldest delivered, unfinished record.
    pub oldest_unacked_ms: Option<i64>,
}

fn header(key: &str, value: impl ToString) -> Header {
    Header {
        key: key.to_owned(),
        value: Some(Bytes::from(value.to_string())),
    }
}

impl Agent {
    /// Produces each dead letter to the dead-letter topic (idempotently),
    /// then marks them finished.
    pub(super) async fn copy_dead_letters(
        &self,
        name: &str,
        g: &ShareGroupRecord,
        t: &Arc<TopicInfo>,
        p: u32,
        dead: &[DeadLetter],
    ) -> Result<()> {
        let mut offsets: Vec<u64> = dead.iter().map(|d| d.offset).collect();
        offsets.sort_unstable();
        let records = self.read_offsets(t, p, &offsets, HashMap::new()).await?;
        for d in dead {
            let Some(r) = records.get(&d.offset) else {
                tracing::warn!(group = name, topic = %t.name, partition = p, offset = d.offset,
                    "dead letter no longer in the log (retention); finished without a copy");
                continue;
            };
            let mut headers = r.headers.clone();
            headers.extend([
                header(DLQ_HEADERS[0], name),
                header(DLQ_HEADERS[1], &t.name),
                header(DLQ_HEADERS[2], p),
                header(DLQ_HEADERS[3], d.offset),
                header(DLQ_HEADERS[4], d.deliveries),
                header(DLQ_HEADERS[5], d.reason.as_str()),
            ]);
            let key = format!("silt-dlq.{name}.{}.{p}.{}", t.id, d.offset);
            let req = ProduceRequest {
                batches: vec![TopicBatch {
                    topic: g.dlq_topic.clone(),
                    records: vec![ProduceRecord {
                        partition: None,
                        key: r.key.clone(),
                        value: r.value.clone(),
                        headers,
                        timestamp: Some(r.timestamp),
                    }],
                }],
                idempotence: Some(Idempotence::Key {
                    fingerprint: fingerprint(&[key.as_bytes()]),
                    key,
                }),
                ..ProduceRequest::default()
            };
            self.produce_request(req).await?;
        }
        let view = self
            .inner
            .md
            .share_dead_lettered(name, t.id, p, &offsets)
            .await?;
        self.record_window(name, &t.name, &view, None);
        self.inner
            .metrics
            .share_dead_letters
            .inc_by(dead.len() as u64);
        Ok(())
    }

    /// Moves up to `max` dead letters back to the partitions they came
    /// from (as new records, without the dead-letter headers), from where
    /// the last replay stopped. Returns how many moved.
    pub async fn share_dlq_replay(&self, name: &str, max: usize) -> Result<u64> {
        if !(1..=MAX_REPLAY).contains(&max) {
            return Err(Error::InvalidArgument(format!(
                "max_records is 1 to {MAX_REPLAY}"
            )));
        }
        let g = self.share_group(name).await?;
        let dlq = self.inner.topics.get(&g.dlq_topic).await?;
        let mut replayed = g.replayed.clone();
        replayed.resize(dlq.partitions as usize, 0);
        let mut moved = 0u64;
        for p in 0..dlq.partitions {
            let from = replayed[p as usize];
            let limits = Limits {
                max_records: max - moved as usize,
                max_bytes: 16 << 20,
            };
            let Some((state, records)) = self.inner.reader.read(dlq.id, p, from, limits).await?
            else {
                continue;
            };
            let mut next = from.max(state.log_start_offset);
            for r in records {
                let text = |k: &str| {
                    r.record
                        .headers
                        .iter()
                        .rev()
                        .find(|h| h.key == k)
                        .and_then(|h| h.value.as_ref())
                        .and_then(|v| std::str::from_utf8(v).ok().map(str::to_owned))
                };
                let (Some(topic), Some(partition)) = (
                    text(DLQ_HEADERS[1]),
                    text(DLQ_HEADERS[2]).and_then(|s| s.parse().ok()),
                ) else {
                    tracing::warn!(
                        group = name,
                        offset = r.offset,
                        "not a dead letter; skipped"
                    );
                    next = r.offset + 1;
                    continue;
                };
                let key = format!("silt-replay.{name}.{}.{p}.{}", dlq.id, r.offset);
                let req = ProduceRequest {
                    batches: vec![TopicBatch {
                        topic,
                        records: vec![ProduceRecord {
                            partition: Some(partition),
                            key: r.record.key.clone(),
                            value: r.record.value.clone(),
                            headers: r
                                .record
                                .headers
                                .iter()
                                .filter(|h| !DLQ_HEADERS.contains(&h.key.as_str()))
                                .cloned()
                                .collect(),
                            timestamp: Some(r.record.timestamp),
                        }],
                    }],
                    idempotence: Some(Idempotence::Key {
                        fingerprint: fingerprint(&[key.as_bytes()]),
                        key,
                    }),
                    ..ProduceRequest::default()
                };
                match self.produce_request(req).await {
                    // The origin is gone: nothing to bring back.
                    Ok(_) | Err(Error::TopicNotFound(_) | Error::PartitionNotFound { .. }) => {}
                    Err(e) => {
                        replayed[p as usize] = next;
                        self.inner.md.set_share_replayed(name, replayed).await?;
                        return Err(e);
                    }
                }
                next = r.offset + 1;
                moved += 1;
            }
            replayed[p as usize] = next;
        }
        self.inner.md.set_share_replayed(name, replayed).await?;
        Ok(moved)
    }

    /// The group's configuration and, per subscribed partition, its window,
    /// what is available, leased and finished.
    pub async fn describe_share_group(&self, name: &str) -> Result<ShareGroupInfo> {
        let inner = &self.inner;
        let g = self.share_group(name).await?;
        let windows: HashMap<(u64, u32), _> = inner
            .md
            .share_windows(name)
            .await?
            .into_iter()
            .map(|v| ((v.topic_id, v.partition), v))
            .collect();
        let now = inner.env.now_ms();
        let mut partitions = Vec::new();
        for st in &g.topics {
            for (p, state) in inner
                .md
                .partition_states(st.id)
                .await?
                .into_iter()
                .enumerate()
            {
                let p = p as u32;
                let hw = state.high_watermark;
                let info = match windows.get(&(st.id, p)) {
                    Some(v) => SharePartitionInfo {
                        topic: st.name.clone(),
                        partition: p,
                        window_start: v.window.start,
                        window_next: v.window.next,
                        high_watermark: hw,
                        available: v.waiting + hw.saturating_sub(v.window.next),
                        leased: v.leased,
                        accepted: v.window.accepted,
                        dead_lettered: v.window.dead_lettered,
                        redelivered: v.window.redelivered,
                        oldest_unacked_ms: v.oldest_unacked_ms.map(|t| (now - t).max(0)),
                    },
                    None => {
                        let start = match g.start {
                            silt_metadata::values::shares::ShareStart::Earliest => {
                                state.log_start_offset
                            }
                            silt_metadata::values::shares::ShareStart::Latest => hw,
                        };
                        SharePartitionInfo {
                            topic: st.name.clone(),
                            partition: p,
                            window_start: start,
                            window_next: start,
                            high_watermark: hw,
                            available: hw - start,
                            ..SharePartitionInfo::default()
                        }
                    }
                };
                partitions.push(info);
            }
        }
        Ok(ShareGroupInfo {
            name: name.to_owned(),
            config: g,
            partitions,
        })
    }
}
