//! Idempotent producers: ids, epochs and the expiry of remembered answers.
//!
//! A producer id comes from a counter; a *named* producer keeps its id and
//! gets a new epoch each time it is initialised, which fences every request
//! its earlier incarnations still have in flight (Kafka's transactional id).
//! Sequences are checked where offsets are assigned ([`crate::commit`]).
//!
//! Retrying an initialisation after an unknown commit result may allocate
//! an unused id or skip an epoch; neither is visible to correctness.

use crate::keys::{Key, KeyRange, PRODUCER_ID_COUNTER};
use crate::values::{ProducerRecord, decode_u64, encode_u64};
use crate::{Error, Metadata, Result};

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
    pub async fn init_producer(&self, name: Option<&str>) -> Result<ProducerId> {
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
                let (id, epoch) = match existing {
                    Some(id) => {
                        let rec = txn
                            .get(&Key::Producer(id).encode(), false)
                            .await?
                            .ok_or(Error::Corrupt("named producer without a record"))?;
                        let epoch = ProducerRecord::decode(&rec)?
                            .epoch
                            .checked_add(1)
                            .ok_or_else(|| {
                                Error::Invalid("the producer's epochs are exhausted".into())
                            })?;
                        let answers = KeyRange::producer_answers(id);
                        txn.clear_range(&answers.begin, &answers.end);
                        (id, epoch)
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
                        (id, 0)
                    }
                };
                let rec = ProducerRecord {
                    epoch,
                    next_sequence: 0,
                };
                txn.set(&Key::Producer(id).encode(), &rec.encode());
                Ok(ProducerId { id, epoch })
            })
        })
        .await
    }

    /// Deletes up to `limit` keys whose time to live ended before `now_ms`
    /// (see `Expiry` in [`crate::keys`]); returns how many. Work is a range
    /// read by time: it never grows with what has not expired.
    pub async fn expire(&self, now_ms: i64, limit: usize) -> Result<usize> {
        self.run("expire", false, |txn, _| {
            Box::pin(async move {
                let r = KeyRange::expired_before(now_ms);
                let due = txn.get_range(&r.begin, &r.end, limit, false, false).await?;
                for (k, _) in &due {
                    let Ok(Key::Expiry(_, target)) = crate::keys::decode(k) else {
                        return Err(Error::Corrupt("expiry key"));
                    };
                    txn.clear(target);
                    txn.clear(k);
                }
                Ok(due.len())
            })
        })
        .await
    }
}
