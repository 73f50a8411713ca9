//! Every transaction Silt runs on its metadata. Each body is idempotent (see
//! [`crate::runner`]): a retry after an unknown commit result finds the trace
//! of its earlier success and returns the same answer.

use std::sync::Arc;

use crate::keys::{Key, KeyKind, KeyRange, TOPIC_ID_COUNTER};
use crate::kv::{Kv, Txn};
use crate::runner::{Attempt, RetryPolicy, Runner};
use crate::values::{IndexEntry, PartitionState, TopicConfig, TopicRecord, decode_u64, encode_u64};
use crate::{Error, Result};

/// Most partitions a topic may have.
pub const MAX_PARTITIONS: u32 = 4096;
const MAX_TOPIC_NAME: usize = 249;

/// A topic as callers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub id: u64,
    pub name: String,
    pub partitions: u32,
    pub config: TopicConfig,
    pub created_ms: i64,
}

/// What a fetch needs: the partition's state and the index entries covering
/// the requested offset onwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadPlan {
    pub state: PartitionState,
    /// `(base_offset, entry)`, ascending; the first covers the requested offset.
    pub entries: Vec<(u64, IndexEntry)>,
}

/// The metadata API. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Metadata {
    runner: Runner,
}

/// Checks a topic name: 1–249 characters of `[A-Za-z0-9._-]`, not `.`/`..`.
pub fn validate_topic_name(name: &str) -> Result<()> {
    validate_name("topic", name)
}

/// The naming rule of topics, groups and producers.
pub(crate) fn validate_name(what: &str, name: &str) -> Result<()> {
    validate_id(&format!("{what} name"), name, MAX_TOPIC_NAME)
}

/// 1 to `max` characters of `[A-Za-z0-9._-]`, not `.` or `..`: safe in
/// keys, paths and URLs alike.
pub(crate) fn validate_id(what: &str, id: &str, max: usize) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= max
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "invalid {what} {id:?}: use 1 to {max} characters of [A-Za-z0-9._-]"
        )))
    }
}

fn topic_info(id: u64, r: TopicRecord) -> TopicInfo {
    TopicInfo {
        id,
        name: r.name,
        partitions: r.partitions,
        config: r.config,
        created_ms: r.created_ms,
    }
}

fn decode_topic(b: &[u8]) -> Result<TopicRecord> {
    serde_json::from_slice(b).map_err(|_| Error::Corrupt("topic record"))
}

pub(crate) async fn read_topic(
    txn: &mut dyn Txn,
    id: u64,
    snapshot: bool,
) -> Result<Option<TopicRecord>> {
    match txn.get(&Key::Topic(id).encode(), snapshot).await? {
        Some(b) => decode_topic(&b).map(Some),
        None => Ok(None),
    }
}

/// The partition count of each topic id (`None`: the topic is gone), in
/// one concurrent read.
pub(crate) async fn partition_counts(
    txn: &mut dyn Txn,
    mut topic_ids: Vec<u64>,
    snapshot: bool,
) -> Result<std::collections::HashMap<u64, Option<u32>>> {
    topic_ids.sort_unstable();
    topic_ids.dedup();
    let keys: Vec<Vec<u8>> = topic_ids
        .iter()
        .map(|&id| Key::Topic(id).encode())
        .collect();
    let values = txn.get_many(&keys, snapshot).await?;
    topic_ids
        .into_iter()
        .zip(values)
        .map(|(id, v)| {
            Ok((
                id,
                v.map(|b| decode_topic(&b))
                    .transpose()?
                    .map(|t| t.partitions),
            ))
        })
        .collect()
}

/// [`partition_counts`] from values already read (`Topic(id)` keys).
pub(crate) fn counts_from(
    ids: &[u64],
    values: &[Option<Vec<u8>>],
) -> Result<std::collections::HashMap<u64, Option<u32>>> {
    ids.iter()
        .zip(values)
        .map(|(&id, v)| {
            let n = v
                .as_deref()
                .map(decode_topic)
                .transpose()?
                .map(|t| t.partitions);
            Ok((id, n))
        })
        .collect()
}

/// The id a topic name maps to, if the topic exists.
pub(crate) async fn topic_id_by_name(
    txn: &mut dyn Txn,
    name: &str,
    snapshot: bool,
) -> Result<Option<u64>> {
    match txn.get(&Key::TopicName(name).encode(), snapshot).await? {
        Some(b) => decode_u64(&b).map(Some),
        None => Ok(None),
    }
}

pub(crate) async fn read_partition(
    txn: &mut dyn Txn,
    id: u64,
    p: u32,
    snapshot: bool,
) -> Result<Option<PartitionState>> {
    match txn.get(&Key::Partition(id, p).encode(), snapshot).await? {
        Some(b) => PartitionState::decode(&b).map(Some),
        None => Ok(None),
    }
}

impl Metadata {
    /// `seed` drives retry jitter (inject a fixed one in tests).
    pub fn new(kv: Arc<dyn Kv>, policy: RetryPolicy, seed: u64) -> Self {
        Self {
            runner: Runner::new(kv, policy, seed),
        }
    }

    pub fn kv(&self) -> &Arc<dyn Kv> {
        &self.runner.kv
    }

    /// Per transaction name: calls, retries and failures so far.
    pub fn transaction_stats(&self) -> Vec<(&'static str, crate::runner::TxnStats)> {
        self.runner.stats()
    }

    /// Runs a transaction body with this store's retry policy.
    pub(crate) async fn run<T, F>(&self, name: &'static str, read_only: bool, body: F) -> Result<T>
    where
        T: Send,
        F: for<'t> FnMut(&'t mut dyn Txn, Attempt) -> crate::runner::TxnFuture<'t, T> + Send,
    {
        self.runner.run(name, read_only, body).await
    }

    /// Creates a topic. `nonce` must be random per call (idempotence).
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        config: TopicConfig,
        now_ms: i64,
        nonce: u64,
    ) -> Result<TopicInfo> {
        validate_topic_name(name)?;
        config.validate()?;
        if partitions == 0 || partitions > MAX_PARTITIONS {
            return Err(Error::Invalid(format!(
                "partitions must be between 1 and {MAX_PARTITIONS}"
            )));
        }
        let record = TopicRecord {
            name: name.to_owned(),
            partitions,
            config,
            created_ms: now_ms,
            nonce,
        };
        self.run("create_topic", false, |txn, _| {
            let record = record.clone();
            Box::pin(async move {
                let name_key = Key::TopicName(&record.name).encode();
                if let Some(id) = txn.get(&name_key, false).await? {
                    let id = decode_u64(&id)?;
                    let existing = read_topic(txn, id, false)
                        .await?
                        .ok_or(Error::Corrupt("topic name"))?;
                    return if existing.nonce == record.nonce {
                        Ok(topic_info(id, existing))
                    } else {
                        Err(Error::TopicExists(record.name))
                    };
                }
                let counter = Key::Counter(TOPIC_ID_COUNTER).encode();
                let id = match txn.get(&counter, false).await? {
                    Some(b) => decode_u64(&b)? + 1,
                    None => 1,
                };
                txn.set(&counter, &encode_u64(id));
                txn.set(&name_key, &encode_u64(id));
                let json =
                    serde_json::to_vec(&record).map_err(|_| Error::Corrupt("topic record"))?;
                txn.set(&Key::Topic(id).encode(), &json);
                let empty = PartitionState::default().encode();
                for p in 0..record.partitions {
                    txn.set(&Key::Partition(id, p).encode(), &empty);
                }
                Ok(topic_info(id, record))
            })
        })
        .await
    }

    /// Deletes a topic: at once its name, record and partitions (readers and
    /// writers see it gone); its index entries, objects and archive files are
    /// reclaimed later, in bounded batches (see [`crate::reclaim`]).
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        // The topic the first attempt set out to delete: a retry after an
        // unknown result that finds the name on another topic (created again
        // meanwhile) must not delete that one.
        let target = Arc::new(parking_lot::Mutex::new(None::<u64>));
        self.run("delete_topic", false, |txn, attempt: Attempt| {
            let (name, target) = (name.to_owned(), target.clone());
            Box::pin(async move {
                let name_key = Key::TopicName(&name).encode();
                let Some(id) = txn.get(&name_key, false).await? else {
                    // Our own earlier attempt may have deleted it.
                    return if attempt.after_unknown {
                        Ok(())
                    } else {
                        Err(Error::TopicNotFound(name))
                    };
                };
                let id = decode_u64(&id)?;
                let first = *target.lock().get_or_insert(id);
                if attempt.after_unknown && first != id {
                    return Ok(()); // ours is gone; this is a new topic
                }
                txn.clear(&name_key);
                txn.clear(&Key::Topic(id).encode());
                let parts = KeyRange::partitions(id);
                txn.clear_range(&parts.begin, &parts.end);
                txn.set(&Key::Reclaim(id).encode(), name.as_bytes());
                // Long-polls on its partitions wake and find them gone.
                txn.set(
                    &Key::LogChanged.encode(),
                    format!("deleted {id}").as_bytes(),
                );
                Ok(())
            })
        })
        .await
    }

    /// Looks a topic up by name.
    pub async fn topic(&self, name: &str) -> Result<Option<TopicInfo>> {
        self.run("get_topic", true, |txn, _| {
            let name = name.to_owned();
            Box::pin(async move {
                let Some(id) = txn.get(&Key::TopicName(&name).encode(), true).await? else {
                    return Ok(None);
                };
                let id = decode_u64(&id)?;
                Ok(read_topic(txn, id, true).await?.map(|r| topic_info(id, r)))
            })
        })
        .await
    }

    /// Every topic, by id.
    pub async fn list_topics(&self) -> Result<Vec<TopicInfo>> {
        self.run("list_topics", true, |txn, _| {
            Box::pin(async move {
                let r = KeyRange::kind(KeyKind::Topic);
                let rows = txn
                    .get_range(&r.begin, &r.end, usize::MAX, false, true)
                    .await?;
                rows.into_iter()
                    .map(|(k, v)| match crate::keys::decode(&k) {
                        Ok(Key::Topic(id)) => Ok(topic_info(id, decode_topic(&v)?)),
                        _ => Err(Error::Corrupt("topic key")),
                    })
                    .collect()
            })
        })
        .await
    }

    /// The state of every partition of a topic, in partition order.
    pub async fn partition_states(&self, topic_id: u64) -> Result<Vec<PartitionState>> {
        self.run("partition_states", true, |txn, _| {
            Box::pin(async move {
                let r = KeyRange::partitions(topic_id);
                let rows = txn
                    .get_range(&r.begin, &r.end, usize::MAX, false, true)
                    .await?;
                rows.iter()
                    .map(|(_, v)| PartitionState::decode(v))
                    .collect()
            })
        })
        .await
    }

    /// One partition's state; `None` if the topic or partition does not exist.
    pub async fn partition_state(
        &self,
        topic_id: u64,
        partition: u32,
    ) -> Result<Option<PartitionState>> {
        self.run("partition_state", true, |txn, _| {
            Box::pin(async move { read_partition(txn, topic_id, partition, true).await })
        })
        .await
    }

    /// Reads a partition's state and the index entries from `offset` on (at
    /// most `max_entries`). `None` if the partition does not exist.
    pub async fn read_plan(
        &self,
        topic_id: u64,
        partition: u32,
        offset: u64,
        max_entries: usize,
    ) -> Result<Option<ReadPlan>> {
        self.run("read_plan", true, |txn, _| {
            Box::pin(async move {
                let Some(state) = read_partition(txn, topic_id, partition, true).await? else {
                    return Ok(None);
                };
                let mut entries = Vec::new();
                if offset < state.log_start_offset
                    || offset >= state.high_watermark
                    || max_entries == 0
                {
                    return Ok(Some(ReadPlan { state, entries }));
                }
                let floor = KeyRange::index(topic_id, partition, 0, offset + 1);
                let after = KeyRange::index(topic_id, partition, offset + 1, u64::MAX);
                let mut rows = txn
                    .get_range(&floor.begin, &floor.end, 1, true, true)
                    .await?;
                rows.extend(
                    txn.get_range(&after.begin, &after.end, max_entries - 1, false, true)
                        .await?,
                );
                for (k, v) in rows {
                    let Ok(Key::Index(_, _, base)) = crate::keys::decode(&k) else {
                        return Err(Error::Corrupt("index key"));
                    };
                    entries.push((base, IndexEntry::decode(&v)?));
                }
                Ok(Some(ReadPlan { state, entries }))
            })
        })
        .await
    }

    /// Resolves once the partition's state differs from `seen`, whichever
    /// process changed it.
    /// The states of the given partitions (`None`: gone) and the current
    /// `LogChanged` mark, read at one version: a change after this read
    /// moves the mark ([`Metadata::watch_log`]).
    pub async fn log_states(
        &self,
        partitions: &[(u64, u32)],
    ) -> Result<(Option<Vec<u8>>, Vec<Option<PartitionState>>)> {
        let mut keys = vec![Key::LogChanged.encode()];
        keys.extend(
            partitions
                .iter()
                .map(|&(t, p)| Key::Partition(t, p).encode()),
        );
        self.run("log_states", true, |txn, _| {
            let keys = keys.clone();
            Box::pin(async move {
                let mut values = txn.get_many(&keys, true).await?.into_iter();
                let mark = values.next().flatten();
                let states = values
                    .map(|v| v.map(|b| PartitionState::decode(&b)).transpose())
                    .collect::<Result<_>>()?;
                Ok((mark, states))
            })
        })
        .await
    }

    /// Resolves once a high-watermark has risen or partitions were removed
    /// since the `LogChanged` mark `seen` was read (immediately if already).
    pub async fn watch_log(&self, seen: Option<&[u8]>) -> Result<()> {
        Ok(self
            .runner
            .kv
            .watch(&Key::LogChanged.encode(), seen)
            .await?)
    }
}
