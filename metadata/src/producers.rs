//! Idempotent producers: ids, epochs and the expiry of remembered answers.
//!
//! A producer id comes from a counter; a *named* producer keeps its id and
//! gets a new epoch each time it is initialised, which fences every request
//! its earlier incarnations still have in flight (Kafka's transactional id).
//! Sequences are checked where offsets are assigned ([`crate::commit`]).
//!
//! A producer that has not produced for [`PRODUCER_TTL_MS`] is forgotten
//! (its record and stored answers expire through the `Expiry` index); its
//! later requests are refused as from an unknown producer. Initialising a
//! forgotten name gives it a new id, so no zombie of the old one can pass.
//!
//! Retrying an initialisation after an unknown commit result may allocate
//! an unused id or skip an epoch; neither is visible to correctness.

use crate::keys::{Key, KeyRange, PRODUCER_ID_COUNTER};
use crate::kv::Txn;
use crate::values::{ProducerRecord, decode_u64, encode_u64};
use crate::{Error, Metadata, Result};

/// How long an idle producer is remembered (Kafka's default
/// `transactional.id.expiration.ms`).
pub const PRODUCER_TTL_MS: i64 = 7 * 24 * 3600 * 1000;

/// Writes a producer's record, moving its expiry (record, answers and
/// Kafka sequence windows) to `rec.expires_ms` from `previous` (if it had one).
pub(crate) fn put_producer(
    txn: &mut dyn Txn,
    id: u64,
    rec: &ProducerRecord,
    previous: Option<i64>,
) {
    let key = Key::Producer(id).encode();
    let ranges = [
        KeyRange::producer_answers(id),
        KeyRange::kafka_sequences(id),
    ];
    if previous != Some(rec.expires_ms) {
        if let Some(at) = previous {
            txn.clear(&Key::Expiry(at, &key).encode());
            for r in &ranges {
                txn.clear(&Key::Expiry(at, &r.begin).encode());
            }
        }
        txn.set(&Key::Expiry(rec.expires_ms, &key).encode(), &[]);
        for r in &ranges {
            txn.set(&Key::Expiry(rec.expires_ms, &r.begin).encode(), &r.end);
        }
    }
    txn.set(&key, &rec.encode());
}

/// A producer's identity for its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerId {
    pub id: u64,
    pub epoch: u32,
}

/// Longest producer name.
pub const MAX_PRODUCER_NAME: usize = 249;

impl Metadata {
    /// A new producer (epoch 0), or with `name`, the named producer's id at
    /// a new epoch. Sequences start at 0.
    pub async fn init_producer(&self, name: Option<&str>, now_ms: i64) -> Result<ProducerId> {
        if let Some(n) = name {
            crate::catalog::validate_name("producer", n)?;
        }
        self.run("init_producer", false, |txn, _| {
            let name = name.map(str::to_owned);
            Box::pin(async move {
                let name_key = name.as_deref().map(|n| Key::ProducerName(n).encode());
                let existing = match &name_key {
                    Some(k) => txn
                        .get(k, false)
                        .await?
                        .map(|b| decode_u64(&b))
                        .transpose()?,
                    None => None,
                };
                let current = match existing {
                    Some(id) => match txn.get(&Key::Producer(id).encode(), false).await? {
                        Some(b) => Some((id, ProducerRecord::decode(&b)?)),
                        None => None, // forgotten: the name gets a new id
                    },
                    None => None,
                };
                let (id, epoch, previous) = match current {
                    Some((id, rec)) => {
                        let epoch = rec.epoch.checked_add(1).ok_or_else(|| {
                            Error::Invalid("the producer's epochs are exhausted".into())
                        })?;
                        let answers = KeyRange::producer_answers(id);
                        txn.clear_range(&answers.begin, &answers.end);
                        (id, epoch, Some(rec.expires_ms))
                    }
                    None => {
                        let counter = Key::Counter(PRODUCER_ID_COUNTER).encode();
                        let id = match txn.get(&counter, false).await? {
                            Some(b) => decode_u64(&b)? + 1,
                            None => 1,
                        };
                        txn.set(&counter, &encode_u64(id));
                        if let Some(k) = &name_key {
                            txn.set(k, &encode_u64(id));
                        }
                        (id, 0, None)
                    }
                };
                let rec = ProducerRecord {
                    epoch,
                    next_sequence: 0,
                    expires_ms: now_ms.saturating_add(PRODUCER_TTL_MS),
                };
                put_producer(txn, id, &rec, previous);
                Ok(ProducerId { id, epoch })
            })
        })
        .await
    }

    /// Deletes up to `limit` keys whose time to live ended before `now_ms`
    /// (see `Expiry` in [`crate::keys`]); returns how many the committed
    /// attempt removed (after an unknown commit result the retry may find
    /// some already gone and report fewer). Work is a range read by time:
    /// it never grows with what has not expired.
    pub async fn expire(&self, now_ms: i64, limit: usize) -> Result<usize> {
        self.run("expire", false, |txn, _| {
            Box::pin(async move {
                let r = KeyRange::expired_before(now_ms);
                let due = txn.get_range(&r.begin, &r.end, limit, false, false).await?;
                for (k, end) in &due {
                    let Ok(Key::Expiry(_, target)) = crate::keys::decode(k) else {
                        return Err(Error::Corrupt("expiry key"));
                    };
                    if end.is_empty() {
                        txn.clear(target);
                    } else {
                        txn.clear_range(target, end);
                    }
                    txn.clear(k);
                }
                Ok(due.len())
            })
        })
        .await
    }
}
