//! An in-process backend with FoundationDB's transaction semantics, so the
//! conflicts, retries and limits FoundationDB imposes show up in tests and
//! benchmarks on machines where it cannot be installed.
//!
//! What it models, as FoundationDB does it:
//! * **Versions.** A multi-version store; each transaction reads at the
//!   version current when it began (its read version) and sees its own
//!   writes on top (read-your-writes).
//! * **Conflict ranges.** A non-snapshot point read adds `[key, key\0)`; a
//!   non-snapshot range read adds the range it actually covered (up to the
//!   last key returned when a limit cut it short, the whole range
//!   otherwise); snapshot reads add none. Writes add their keys and cleared
//!   ranges as write conflict ranges.
//! * **Resolution.** A commit gets its version when it is sent, as
//!   FoundationDB's proxies assign one first, and is refused with
//!   `not_committed` (1020, [`ErrorClass::Conflict`]) when any transaction
//!   with a version after its read version wrote into one of its read
//!   conflict ranges. It becomes durable (readable, and answered) once its
//!   commit latency has passed and every earlier version is durable; read
//!   versions are the latest durable one. Read-only transactions always
//!   commit.
//! * **Limits.** A transaction older than 5 s gets `transaction_too_old`
//!   (1007) on its next read or at commit; more than 10,000,000 bytes of
//!   writes is `transaction_too_large` (2101); a key over 10,000 bytes is
//!   `key_too_large` (2102), a value over 100,000 bytes `value_too_large`
//!   (2103) — the last three fatal, as in FoundationDB.
//! * **Latency.** Configurable read and commit latency, with jitter drawn
//!   from the seeded generator ([`SimConfig`]); the simulator's own work
//!   on a commit counts toward its latency, as a real cluster's does.
//! * **Watches** resolve when the key's committed value differs from the
//!   one given.
//!
//! Where it differs: one process only (no network, no recovery, no
//! `commit_unknown_result` of its own — wrap it in [`crate::fault`] for
//! that); versions count commits rather than advancing a million per
//! second; the conflict history and old versions are kept by age (5 s),
//! not by the resolver's memory; and task scheduling, not the seed alone,
//! orders concurrent transactions, so a seeded run repeats its latencies,
//! not necessarily its interleaving.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::kv::{ErrorClass, KeyValue, Kv, KvError, Txn};

const BACKEND: &str = "sim";
/// FoundationDB's limits.
pub const MAX_TXN_AGE: Duration = Duration::from_secs(5);
pub const MAX_TXN_BYTES: usize = 10_000_000;
pub const MAX_KEY_BYTES: usize = 10_000;
pub const MAX_VALUE_BYTES: usize = 100_000;

/// Latencies of the simulated cluster.
#[derive(Debug, Clone, Copy)]
pub struct SimConfig {
    pub seed: u64,
    /// Getting a read version and each read.
    pub read_latency: Duration,
    /// From `commit` to its answer (FoundationDB: about 5 ms).
    pub commit_latency: Duration,
    /// Each latency is scaled by a factor in `[1 - jitter, 1 + jitter]`.
    pub jitter: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            read_latency: Duration::ZERO,
            commit_latency: Duration::ZERO,
            jitter: 0.0,
        }
    }
}

fn error(class: ErrorClass, code: u32, name: &str) -> KvError {
    KvError::new(class, BACKEND, format!("{name} ({code})"))
}

/// A half-open key range.
type Range = (Vec<u8>, Vec<u8>);
/// A key's values by version, ascending; `None` is a deletion.
type Versions = Vec<(u64, Option<Vec<u8>>)>;

fn after(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    k.push(0);
    k
}

/// Sorts ranges and merges those that overlap or touch: what a resolver
/// keeps of a commit's writes, so a read is checked by binary search.
fn merged(mut ranges: Vec<Range>) -> Vec<Range> {
    ranges.sort_unstable();
    let mut out: Vec<Range> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.0 <= last.1 => {
                if r.1 > last.1 {
                    last.1 = r.1;
                }
            }
            _ => out.push(r),
        }
    }
    out
}

/// Whether `read` overlaps any of `writes` (sorted, merged: their ends
/// ascend with their beginnings).
fn hits(writes: &[Range], read: &Range) -> bool {
    let i = writes.partition_point(|w| w.1 <= read.0);
    writes.get(i).is_some_and(|w| w.0 < read.1)
}

/// One committed transaction's writes, for resolving later commits.
#[derive(Debug)]
struct Committed {
    version: u64,
    at: Instant,
    /// Keys set or cleared, sorted.
    points: Vec<Vec<u8>>,
    /// Ranges cleared, sorted and merged.
    ranges: Vec<Range>,
}

impl Committed {
    /// Whether this commit wrote `key`.
    fn wrote(&self, key: &[u8]) -> bool {
        self.points
            .binary_search_by(|k| k.as_slice().cmp(key))
            .is_ok()
            || {
                let i = self.ranges.partition_point(|w| w.1.as_slice() <= key);
                self.ranges.get(i).is_some_and(|w| w.0.as_slice() <= key)
            }
    }

    /// Whether this commit wrote anything in `range`.
    fn wrote_in(&self, range: &Range) -> bool {
        let i = self.points.partition_point(|k| *k < range.0);
        self.points.get(i).is_some_and(|k| *k < range.1) || hits(&self.ranges, range)
    }
}

#[derive(Debug, Default)]
struct Store {
    version: u64,
    data: BTreeMap<Vec<u8>, Versions>,
    /// Commits of the last [`MAX_TXN_AGE`], oldest first.
    history: VecDeque<Committed>,
    /// Every version up to this one is durable: read versions are taken
    /// here, and commits are answered in version order.
    durable: u64,
    /// Versions past `durable` whose commit latency has passed.
    done: BTreeSet<u64>,
    rng: u64,
    /// Where the next bounded sweep of old versions starts.
    sweep: Vec<u8>,
}

/// Keys each commit sweeps for old versions.
const SWEEP_KEYS: usize = 64;

impl Store {
    fn value_at(&self, key: &[u8], version: u64) -> Option<&Vec<u8>> {
        let versions = self.data.get(key)?;
        versions
            .iter()
            .rev()
            .find(|(v, _)| *v <= version)
            .and_then(|(_, value)| value.as_ref())
    }

    /// The oldest version a live transaction may read at: every version
    /// of a key older than its newest one at or below this is unreadable.
    fn horizon(&self) -> u64 {
        self.history.front().map_or(self.version, |c| c.version - 1)
    }

    /// Drops the versions of `key` no live transaction can read, and the
    /// key itself once all that is left is an unreadable deletion.
    fn trim(&mut self, key: &[u8], horizon: u64) {
        let Some(v) = self.data.get_mut(key) else {
            return;
        };
        if let Some(newest_old) = v.iter().rposition(|(ver, _)| *ver <= horizon) {
            v.drain(..newest_old);
        }
        if matches!(v.as_slice(), [(ver, None)] if *ver <= horizon) {
            self.data.remove(key);
        }
    }

    /// Forgets what no live transaction can read, in bounded steps: commits
    /// older than [`MAX_TXN_AGE`] (and a margin) leave the conflict
    /// history, and [`SWEEP_KEYS`] keys from a cursor that goes round the
    /// keyspace are trimmed (keys written are trimmed as they are written),
    /// so a commit's cost does not grow with the store.
    fn prune(&mut self, now: Instant) {
        let keep = MAX_TXN_AGE + Duration::from_secs(1);
        while self
            .history
            .front()
            .is_some_and(|c| now.duration_since(c.at) > keep)
        {
            self.history.pop_front();
        }
        let horizon = self.horizon();
        let keys: Vec<Vec<u8>> = self
            .data
            .range::<[u8], _>((Bound::Included(&self.sweep[..]), Bound::Unbounded))
            .take(SWEEP_KEYS)
            .map(|(k, _)| k.clone())
            .collect();
        self.sweep = match keys.last() {
            Some(last) if keys.len() == SWEEP_KEYS => after(last),
            _ => Vec::new(),
        };
        for k in keys {
            self.trim(&k, horizon);
        }
    }

    fn draw(&mut self, base: Duration, jitter: f64) -> Duration {
        if base.is_zero() || jitter <= 0.0 {
            return base;
        }
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let unit = (self.rng >> 11) as f64 / (1u64 << 53) as f64;
        base.mul_f64((1.0 - jitter + 2.0 * jitter * unit).max(0.0))
    }
}

#[derive(Debug)]
struct Shared {
    config: SimConfig,
    store: Mutex<Store>,
    /// The durable version; watches and commits awaiting their turn wait
    /// on it.
    commits: watch::Sender<u64>,
}

/// The simulated cluster. Clone the `Arc` to share it between "agents".
#[derive(Debug, Clone)]
pub struct SimKv {
    shared: Arc<Shared>,
}

impl SimKv {
    pub fn new(config: SimConfig) -> Self {
        let store = Store {
            rng: config.seed | 1,
            ..Store::default()
        };
        Self {
            shared: Arc::new(Shared {
                config,
                store: Mutex::new(store),
                commits: watch::channel(0).0,
            }),
        }
    }

    async fn pause(&self, base: Duration) {
        let d = self
            .shared
            .store
            .lock()
            .draw(base, self.shared.config.jitter);
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }
}

#[async_trait]
impl Kv for SimKv {
    async fn begin(&self, read_only: bool) -> Result<Box<dyn Txn>, KvError> {
        self.pause(self.shared.config.read_latency).await;
        let read_version = self.shared.store.lock().durable;
        Ok(Box::new(SimTxn {
            kv: self.clone(),
            read_only,
            read_version,
            started: Instant::now(),
            writes: BTreeMap::new(),
            cleared: Vec::new(),
            point_reads: Vec::new(),
            range_reads: Vec::new(),
            bytes: 0,
            misuse: None,
        }))
    }

    async fn watch(&self, key: &[u8], seen: Option<&[u8]>) -> Result<(), KvError> {
        let mut commits = self.shared.commits.subscribe();
        loop {
            let now = {
                let s = self.shared.store.lock();
                s.value_at(key, s.durable).cloned()
            };
            if now.as_deref() != seen {
                return Ok(());
            }
            commits
                .changed()
                .await
                .map_err(|_| error(ErrorClass::Fatal, 1101, "operation_cancelled"))?;
        }
    }

    fn backend(&self) -> &'static str {
        BACKEND
    }
}

/// A simulated transaction: reads at its read version, writes buffered.
struct SimTxn {
    kv: SimKv,
    read_only: bool,
    read_version: u64,
    started: Instant,
    /// Own writes: `Some` set, `None` cleared (point clears and clears
    /// inside cleared ranges are recorded here as they happen).
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Ranges cleared, in order (applied before `writes` at commit).
    cleared: Vec<Range>,
    /// Conflict ranges of reads: single keys, and ranges.
    point_reads: Vec<Vec<u8>>,
    range_reads: Vec<Range>,
    bytes: usize,
    /// A limit broken by a write; reported at commit (writes cannot fail).
    misuse: Option<KvError>,
}

impl SimTxn {
    fn check_age(&self) -> Result<(), KvError> {
        if self.started.elapsed() > MAX_TXN_AGE {
            return Err(error(ErrorClass::Retryable, 1007, "transaction_too_old"));
        }
        Ok(())
    }

    /// The committed value at the read version, ignoring own writes.
    fn committed(&self, store: &Store, key: &[u8]) -> Option<Vec<u8>> {
        store.value_at(key, self.read_version).cloned()
    }

    /// One point read at the read version, own writes on top; a
    /// non-snapshot read adds its conflict range.
    fn read(&mut self, key: &[u8], snapshot: bool) -> Option<Vec<u8>> {
        if !snapshot {
            self.point_reads.push(key.to_vec());
        }
        match self.own(key) {
            Some(own) => own,
            None => self.committed(&self.kv.shared.store.lock(), key),
        }
    }

    fn own(&self, key: &[u8]) -> Option<Option<Vec<u8>>> {
        if let Some(w) = self.writes.get(key) {
            return Some(w.clone());
        }
        self.cleared
            .iter()
            .any(|(b, e)| b.as_slice() <= key && key < e.as_slice())
            .then_some(None)
    }
}

#[async_trait]
impl Txn for SimTxn {
    async fn get(&mut self, key: &[u8], snapshot: bool) -> Result<Option<Vec<u8>>, KvError> {
        self.kv.pause(self.kv.shared.config.read_latency).await;
        self.check_age()?;
        Ok(self.read(key, snapshot))
    }

    async fn get_many(
        &mut self,
        keys: &[Vec<u8>],
        snapshot: bool,
    ) -> Result<Vec<Option<Vec<u8>>>, KvError> {
        // Concurrent reads: one read latency for all of them.
        self.kv.pause(self.kv.shared.config.read_latency).await;
        self.check_age()?;
        if !snapshot {
            self.point_reads.extend(keys.iter().cloned());
        }
        let kv = self.kv.clone();
        let store = kv.shared.store.lock();
        Ok(keys
            .iter()
            .map(|k| match self.own(k) {
                Some(own) => own,
                None => self.committed(&store, k),
            })
            .collect())
    }

    async fn get_range(
        &mut self,
        begin: &[u8],
        end: &[u8],
        limit: usize,
        reverse: bool,
        snapshot: bool,
    ) -> Result<Vec<KeyValue>, KvError> {
        self.kv.pause(self.kv.shared.config.read_latency).await;
        self.check_age()?;
        if begin >= end || limit == 0 {
            return Ok(Vec::new());
        }
        // Merge committed keys and own writes, in order.
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = {
            let store = self.kv.shared.store.lock();
            store
                .data
                .range::<[u8], _>((Bound::Included(begin), Bound::Excluded(end)))
                .filter_map(|(k, _)| Some((k.clone(), self.committed(&store, k)?)))
                .filter(|(k, _)| self.own(k).is_none())
                .collect()
        };
        for (k, v) in self
            .writes
            .range::<[u8], _>((Bound::Included(begin), Bound::Excluded(end)))
        {
            if let Some(v) = v {
                merged.insert(k.clone(), v.clone());
            }
        }
        let rows: Vec<KeyValue> = if reverse {
            merged.into_iter().rev().take(limit).collect()
        } else {
            merged.into_iter().take(limit).collect()
        };
        if !snapshot {
            // The range actually covered: cut at the last key when the
            // limit stopped the read.
            let covered = match (rows.len() == limit, rows.last(), reverse) {
                (true, Some((last, _)), false) => (begin.to_vec(), after(last)),
                (true, Some((last, _)), true) => (last.clone(), end.to_vec()),
                _ => (begin.to_vec(), end.to_vec()),
            };
            self.range_reads.push(covered);
        }
        Ok(rows)
    }

    fn set(&mut self, key: &[u8], value: &[u8]) {
        if key.len() > MAX_KEY_BYTES {
            self.misuse = Some(error(ErrorClass::Fatal, 2102, "key_too_large"));
        }
        if value.len() > MAX_VALUE_BYTES {
            self.misuse = Some(error(ErrorClass::Fatal, 2103, "value_too_large"));
        }
        self.bytes += key.len() + value.len();
        self.writes.insert(key.to_vec(), Some(value.to_vec()));
    }

    fn clear(&mut self, key: &[u8]) {
        self.bytes += key.len();
        self.writes.insert(key.to_vec(), None);
    }

    fn clear_range(&mut self, begin: &[u8], end: &[u8]) {
        if begin >= end {
            return;
        }
        self.bytes += begin.len() + end.len();
        // Own writes inside the range are cleared too.
        let inside: Vec<Vec<u8>> = self
            .writes
            .range::<[u8], _>((Bound::Included(begin), Bound::Excluded(end)))
            .map(|(k, _)| k.clone())
            .collect();
        for k in inside {
            self.writes.insert(k, None);
        }
        self.cleared.push((begin.to_vec(), end.to_vec()));
    }

    async fn commit(self: Box<Self>) -> Result<(), KvError> {
        if let Some(e) = self.misuse {
            return Err(e);
        }
        if self.bytes > MAX_TXN_BYTES {
            return Err(error(ErrorClass::Fatal, 2101, "transaction_too_large"));
        }
        if self.read_only || (self.writes.is_empty() && self.cleared.is_empty()) {
            return self.check_age();
        }
        self.check_age()?;
        let shared = self.kv.shared.clone();
        let config = shared.config;
        let started = Instant::now();
        let (latency, version) = {
            let mut store = shared.store.lock();
            let latency = store.draw(config.commit_latency, config.jitter);
            let conflict = store
                .history
                .iter()
                .filter(|c| c.version > self.read_version)
                .any(|c| {
                    self.point_reads.iter().any(|k| c.wrote(k))
                        || self.range_reads.iter().any(|r| c.wrote_in(r))
                });
            if conflict {
                return Err(error(ErrorClass::Conflict, 1020, "not_committed"));
            }
            store.version += 1;
            let version = store.version;
            for (begin, end) in &self.cleared {
                let keys: Vec<Vec<u8>> = store
                    .data
                    .range::<[u8], _>((Bound::Included(&begin[..]), Bound::Excluded(&end[..])))
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in keys {
                    store.data.entry(k).or_default().push((version, None));
                }
            }
            let horizon = store.horizon();
            let points: Vec<Vec<u8>> = self.writes.keys().cloned().collect();
            for (k, v) in self.writes {
                // Most keys only ever get one version: no room for more.
                let versions = store.data.entry(k).or_insert_with(|| Vec::with_capacity(1));
                match versions.last_mut() {
                    Some(last) if last.0 == version => last.1 = v,
                    _ => versions.push((version, v)),
                }
                // What no live transaction can read (the new version is above
                // the horizon, so the key itself stays).
                if let Some(newest_old) = versions.iter().rposition(|(ver, _)| *ver <= horizon) {
                    versions.drain(..newest_old);
                }
            }
            let now = Instant::now();
            store.history.push_back(Committed {
                version,
                at: now,
                points,
                ranges: merged(self.cleared),
            });
            store.prune(now);
            (latency, version)
        };
        // Durable once its latency has passed (the simulator's own work
        // above counting toward it), and answered once every earlier
        // version is durable too, as FoundationDB answers commits.
        let pending = PendingVersion {
            shared: shared.clone(),
            version,
        };
        tokio::time::sleep(latency.saturating_sub(started.elapsed())).await;
        drop(pending);
        let mut durable = shared.commits.subscribe();
        while *durable.borrow_and_update() < version {
            if durable.changed().await.is_err() {
                break;
            }
        }
        Ok(())
    }
}

/// A decided commit not yet durable; marks its version durable when
/// dropped (answered, or abandoned by a caller's timeout), so the durable
/// version never stalls behind it.
struct PendingVersion {
    shared: Arc<Shared>,
    version: u64,
}

impl Drop for PendingVersion {
    fn drop(&mut self) {
        let mut store = self.shared.store.lock();
        store.done.insert(self.version);
        loop {
            let next = store.durable + 1;
            if !store.done.remove(&next) {
                break;
            }
            store.durable = next;
        }
        // Under the lock, so the channel only ever moves forward.
        self.shared.commits.send_replace(store.durable);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_ranges_merge_and_reads_find_them() {
        let r = |a: &str, b: &str| (a.as_bytes().to_vec(), b.as_bytes().to_vec());
        let w = merged(vec![r("m", "p"), r("a", "c"), r("c", "d"), r("n", "o")]);
        assert_eq!(w, vec![r("a", "d"), r("m", "p")]);
        for (read, hit) in [
            (r("b", "b\0"), true),
            (r("d", "m"), false),
            (r("0", "a"), false),
            (r("0", "a\0"), true),
            (r("o", "z"), true),
            (r("p", "z"), false),
            (r("c", "n"), true),
        ] {
            assert_eq!(hits(&w, &read), hit, "{read:?}");
        }
    }

    async fn put(kv: &SimKv, k: &[u8], v: &[u8]) {
        let mut t = kv.begin(false).await.unwrap();
        t.set(k, v);
        t.commit().await.unwrap();
    }

    #[tokio::test]
    async fn a_write_after_the_read_version_conflicts_only_with_real_reads() {
        let kv = SimKv::new(SimConfig::default());
        put(&kv, b"a", b"1").await;
        let mut reader = kv.begin(false).await.unwrap();
        let mut snap = kv.begin(false).await.unwrap();
        assert_eq!(reader.get(b"a", false).await.unwrap(), Some(b"1".to_vec()));
        assert_eq!(snap.get(b"a", true).await.unwrap(), Some(b"1".to_vec()));
        put(&kv, b"a", b"2").await;
        // Both still read their version.
        assert_eq!(reader.get(b"a", true).await.unwrap(), Some(b"1".to_vec()));
        reader.set(b"b", b"x");
        snap.set(b"c", b"x");
        let e = reader.commit().await.unwrap_err();
        assert_eq!(e.class, ErrorClass::Conflict);
        snap.commit().await.unwrap();
    }

    #[tokio::test]
    async fn range_reads_conflict_on_what_they_covered() {
        let kv = SimKv::new(SimConfig::default());
        for k in [b"k1", b"k2", b"k3"] {
            put(&kv, k, b"v").await;
        }
        // Limit 1 covers [k0, k1\0): a write to k3 does not conflict...
        let mut t = kv.begin(false).await.unwrap();
        let rows = t.get_range(b"k0", b"k9", 1, false, false).await.unwrap();
        assert_eq!(rows.len(), 1);
        put(&kv, b"k3", b"w").await;
        t.set(b"z", b"1");
        t.commit().await.unwrap();
        // ...but one to k1 does.
        let mut t = kv.begin(false).await.unwrap();
        t.get_range(b"k0", b"k9", 1, false, false).await.unwrap();
        put(&kv, b"k1", b"w").await;
        t.set(b"z", b"2");
        assert_eq!(t.commit().await.unwrap_err().class, ErrorClass::Conflict);
    }

    #[tokio::test]
    async fn own_writes_and_clears_are_read_back() {
        let kv = SimKv::new(SimConfig::default());
        put(&kv, b"a1", b"x").await;
        put(&kv, b"a2", b"y").await;
        let mut t = kv.begin(false).await.unwrap();
        t.clear_range(b"a", b"b");
        t.set(b"a3", b"z");
        assert_eq!(t.get(b"a1", false).await.unwrap(), None);
        let rows = t.get_range(b"a", b"b", 10, false, false).await.unwrap();
        assert_eq!(rows, vec![(b"a3".to_vec(), b"z".to_vec())]);
        t.commit().await.unwrap();
        let mut r = kv.begin(true).await.unwrap();
        let rows = r.get_range(b"a", b"b", 10, true, true).await.unwrap();
        assert_eq!(rows, vec![(b"a3".to_vec(), b"z".to_vec())]);
    }

    #[tokio::test]
    async fn limits_are_foundationdbs() {
        let kv = SimKv::new(SimConfig::default());
        let mut t = kv.begin(false).await.unwrap();
        t.set(b"v", &vec![0; MAX_VALUE_BYTES + 1]);
        assert_eq!(t.commit().await.unwrap_err().class, ErrorClass::Fatal);
        let mut t = kv.begin(false).await.unwrap();
        for i in 0..120u32 {
            t.set(&i.to_be_bytes(), &vec![0; 90_000]);
        }
        let e = t.commit().await.unwrap_err();
        assert!(e.message.contains("2101"), "{e}");
    }

    #[tokio::test(start_paused = true)]
    async fn old_transactions_are_too_old() {
        let kv = SimKv::new(SimConfig::default());
        let mut t = kv.begin(false).await.unwrap();
        tokio::time::advance(MAX_TXN_AGE + Duration::from_millis(1)).await;
        let e = t.get(b"a", false).await.unwrap_err();
        assert_eq!(e.class, ErrorClass::Retryable);
        assert!(e.message.contains("1007"));
    }

    #[tokio::test]
    async fn watches_wake_on_change() {
        let kv = SimKv::new(SimConfig::default());
        put(&kv, b"w", b"1").await;
        let waiter = {
            let kv = kv.clone();
            tokio::spawn(async move { kv.watch(b"w", Some(b"1")).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        put(&kv, b"w", b"2").await;
        waiter.await.unwrap().unwrap();
    }
}
