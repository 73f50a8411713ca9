//! Leases: at most one process runs a singleton job (the compactor) at a
//! time. A lease is held until `expires_ms`; its holder renews it well before
//! then, and anyone may take it over once it has lapsed. Time comes from the
//! caller (injected), so a holder must stop working once its own clock passes
//! the expiry it was granted, renewal or not.

use crate::keys::Key;
use crate::values::{JobStatus, LeaseRecord};
use crate::{Metadata, Result};

impl Metadata {
    /// Takes or renews the lease `name` for `holder` until `now_ms + ttl_ms`.
    /// Returns false (and changes nothing) while another holder's lease is
    /// still valid. Idempotent: retrying after an unknown commit result sees
    /// our own lease and renews it.
    pub async fn acquire_lease(
        &self,
        name: &str,
        holder: u64,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<bool> {
        let current = self.claim_lease(name, holder, "", now_ms, ttl_ms).await?;
        Ok(current.holder == holder)
    }

    /// [`Metadata::acquire_lease`], publishing how others reach the holder
    /// (`contact`), and answering with the lease as it now stands: ours, or
    /// the valid lease of another holder (whom `contact` reaches).
    pub async fn claim_lease(
        &self,
        name: &str,
        holder: u64,
        contact: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<LeaseRecord> {
        self.run("acquire_lease", false, |txn, _| {
            let (name, contact) = (name.to_owned(), contact.to_owned());
            Box::pin(async move {
                let key = Key::Lease(&name).encode();
                if let Some(b) = txn.get(&key, false).await? {
                    let current = LeaseRecord::decode(&b)?;
                    if current.holder != holder && current.expires_ms > now_ms {
                        return Ok(current);
                    }
                }
                let ours = LeaseRecord {
                    holder,
                    expires_ms: now_ms + ttl_ms,
                    contact,
                };
                txn.set(&key, &ours.encode());
                Ok(ours)
            })
        })
        .await
    }

    /// The lease `name` as stored (it may have lapsed), if any.
    pub async fn lease(&self, name: &str) -> Result<Option<LeaseRecord>> {
        self.run("get_lease", true, |txn, _| {
            let key = Key::Lease(name).encode();
            Box::pin(async move {
                txn.get(&key, true)
                    .await?
                    .map(|b| LeaseRecord::decode(&b))
                    .transpose()
            })
        })
        .await
    }

    /// Gives the lease up if `holder` has it, so a successor need not wait
    /// for it to lapse.
    pub async fn release_lease(&self, name: &str, holder: u64) -> Result<()> {
        self.run("release_lease", false, |txn, _| {
            let name = name.to_owned();
            Box::pin(async move {
                let key = Key::Lease(&name).encode();
                if let Some(b) = txn.get(&key, false).await? {
                    if LeaseRecord::decode(&b)?.holder == holder {
                        txn.clear(&key);
                    }
                }
                Ok(())
            })
        })
        .await
    }

    /// A named u64 (`Counter` key): a counter or a job's checkpoint.
    pub async fn counter(&self, name: &str) -> Result<Option<u64>> {
        self.run("get_counter", true, |txn, _| {
            let key = Key::Counter(name).encode();
            Box::pin(async move {
                txn.get(&key, true)
                    .await?
                    .map(|b| crate::values::decode_u64(&b))
                    .transpose()
            })
        })
        .await
    }

    /// Sets a named u64 (a job's checkpoint; only its lease holder writes it).
    pub async fn set_counter(&self, name: &str, value: u64) -> Result<()> {
        self.run("set_counter", false, |txn, _| {
            let key = Key::Counter(name).encode();
            Box::pin(async move {
                txn.set(&key, &crate::values::encode_u64(value));
                Ok(())
            })
        })
        .await
    }

    /// Publishes what a singleton job's last round did, if `status.holder`
    /// holds the job's lease at `now_ms` (read in the transaction, so a
    /// holder that lost the lease mid-round cannot overwrite its
    /// successor's status). Returns whether it was written.
    pub async fn put_job_status(&self, job: &str, status: &JobStatus, now_ms: i64) -> Result<bool> {
        let (lease, key, value) = (
            Key::Lease(job).encode(),
            Key::JobStatus(job).encode(),
            status.encode(),
        );
        let holder = status.holder;
        self.run("put_job_status", false, |txn, _| {
            let (lease, key, value) = (lease.clone(), key.clone(), value.clone());
            Box::pin(async move {
                let Some(b) = txn.get(&lease, false).await? else {
                    return Ok(false);
                };
                let l = LeaseRecord::decode(&b)?;
                if l.holder != holder || l.expires_ms <= now_ms {
                    return Ok(false);
                }
                txn.set(&key, &value);
                Ok(true)
            })
        })
        .await
    }

    /// What a singleton job's last round did, if it ever ran.
    pub async fn job_status(&self, job: &str) -> Result<Option<JobStatus>> {
        self.run("get_job_status", true, |txn, _| {
            let key = Key::JobStatus(job).encode();
            Box::pin(async move {
                txn.get(&key, true)
                    .await?
                    .map(|b| JobStatus::decode(&b))
                    .transpose()
            })
        })
        .await
    }

    /// Whether a segment's offsets were ever committed. A segment that was
    /// never committed is not indexed and, once older than any commit could
    /// take, is garbage.
    pub async fn segment_committed(&self, segment_id: &str) -> Result<bool> {
        self.run("segment_committed", true, |txn, _| {
            let key = Key::Segment(segment_id).encode();
            Box::pin(async move { Ok(txn.get(&key, true).await?.is_some()) })
        })
        .await
    }
}
