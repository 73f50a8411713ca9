//! The keyspace: every key Silt stores, its stable kind id, and its value.
//!
//! A key is `kind id (1 byte) ‖ elements`, elements encoded so that byte order
//! equals tuple order: integers big-endian fixed width, strings as UTF-8 with
//! `0x00` escaped to `0x00 0xFF` and terminated by `0x00` (the FoundationDB
//! tuple layer's rule). Kind ids are stable: never renumber, only add.
//!
//! | id   | key                                        | value ([`crate::values`])                  |
//! |------|--------------------------------------------|--------------------------------------------|
//! | 0x01 | `TopicName(name)`                          | topic id, u64 BE                           |
//! | 0x02 | `Topic(topic_id)`                          | `TopicRecord`, JSON                        |
//! | 0x03 | `Partition(topic_id, partition)`           | `PartitionState`, 17 bytes                 |
//! | 0x04 | `Index(topic_id, partition, base)`         | `IndexEntry`: where offsets `base..base+count` live |
//! | 0x05 | `Segment(segment_id)`                      | `SegmentRecord`: the commit's outcome (idempotence) |
//! | 0x06 | `Counter(name)`                            | u64 BE                                     |
//! | 0x07 | `Lease(name)`                              | `LeaseRecord`: who runs a singleton job, until when |
//! | 0x08 | `Group(group)`                             | `GroupRecord`, JSON: generation, protocol, reset policy |
//! | 0x09 | `Member(group, member_id)`                 | `MemberRecord`, JSON: lease, subscription, assignment |
//! | 0x0A | `Offset(group, topic_id, partition)`       | `CommittedOffset`: shared by every group protocol |
//! | 0x0B | `Producer(producer_id)`                    | `ProducerRecord`: epoch and next request sequence |
//! | 0x0C | `ProducerName(name)`                       | producer id, u64 BE                        |
//! | 0x0D | `ProducerAnswer(producer_id, sequence)`    | `Answer`: offsets a sequenced request got  |
//! | 0x0E | `Idempotency(key)`                         | `IdempotencyRecord`: request fingerprint and `Answer` |
//! | 0x0F | `Expiry(at_ms, key)`                       | empty: `key` is garbage from `at_ms` on; or the end of the range `[key, end)` that is |
//! | 0x10 | `KafkaSequence(producer_id, topic_id, partition)` | `SequenceWindow`: the last batches a Kafka idempotent producer wrote there |
//! | 0x11 | `Archive(topic_id, partition)`             | `ArchiveProgress`: next offset to archive, planned file end |
//! | 0x12 | `Collected(segment_id)`                    | collected_ms, u64 BE: GC's fence; a commit that finds it is refused |
//! | 0x13 | `ShareWindow(group, topic_id, partition)`  | `ShareWindow`: a share group's in-flight window on a partition |
//! | 0x14 | `ShareRecord(group, topic_id, partition, offset)` | `ShareRecordState`: one tracked record's delivery state |
//! | 0x15 | `ObjectRefs(object)`                       | u64 BE: index entries pointing into the object |
//! | 0x16 | `Garbage(at_ms, object)`                   | empty: nothing points into the object; delete it from `at_ms` on |
//! | 0x17 | `Reclaim(topic_id)`                        | the deleted topic's name: its index entries and archive files are still to reclaim |
//! | 0x18 | `ShareGroup(group)`                        | `ShareGroupRecord`, JSON: subscription, leases, backoff, dead letters |
//! | 0x19 | `LogChanged`                               | the id of the last change: written blind (never read in a transaction, so it conflicts with nothing) by every transaction that raises a high-watermark or removes partitions; each agent watches it, once, to wake its long-polls |
//! | 0x1A | `JobStatus(job)`                           | `JobStatus`, JSON: a singleton job's last round (holder, when, its report), for operators; written only by the job's lease holder |
//!
//! Invariants kept by [`crate::Metadata`]: for every partition, the `Index`
//! entries tile `[log_start_offset, high_watermark)` without gaps or overlap,
//! and every `Index` entry of a segment was written by the same transaction
//! that wrote its `Segment` record. Group invariants: see [`crate::groups`].
//! Every key with a time to live has an `Expiry` entry written in the same
//! transaction, so expiry work is a range read by time, never a scan of
//! everything.

/// Stable kind ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum KeyKind {
    TopicName = 0x01,
    Topic = 0x02,
    Partition = 0x03,
    Index = 0x04,
    Segment = 0x05,
    Counter = 0x06,
    Lease = 0x07,
    Group = 0x08,
    Member = 0x09,
    Offset = 0x0A,
    Producer = 0x0B,
    ProducerName = 0x0C,
    ProducerAnswer = 0x0D,
    Idempotency = 0x0E,
    Expiry = 0x0F,
    KafkaSequence = 0x10,
    Archive = 0x11,
    Collected = 0x12,
    ShareWindow = 0x13,
    ShareRecord = 0x14,
    ObjectRefs = 0x15,
    Garbage = 0x16,
    Reclaim = 0x17,
    ShareGroup = 0x18,
    LogChanged = 0x19,
    JobStatus = 0x1A,
}

/// A key of the keyspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key<'a> {
    TopicName(&'a str),
    Topic(u64),
    Partition(u64, u32),
    Index(u64, u32, u64),
    Segment(&'a str),
    Counter(&'a str),
    Lease(&'a str),
    Group(&'a str),
    Member(&'a str, &'a str),
    Offset(&'a str, u64, u32),
    Producer(u64),
    ProducerName(&'a str),
    ProducerAnswer(u64, u64),
    Idempotency(&'a str),
    /// `(at_ms, encoded key)`: the key is garbage from `at_ms` on.
    Expiry(i64, &'a [u8]),
    KafkaSequence(u64, u64, u32),
    Archive(u64, u32),
    Collected(&'a str),
    ObjectRefs(&'a str),
    Garbage(i64, &'a str),
    Reclaim(u64),
    ShareWindow(&'a str, u64, u32),
    ShareRecord(&'a str, u64, u32, u64),
    ShareGroup(&'a str),
    LogChanged,
    JobStatus(&'a str),
}

/// Counter names (`Counter` holds named u64 values: counters and job
/// checkpoints).
pub const TOPIC_ID_COUNTER: &str = "topic_id";
pub const PRODUCER_ID_COUNTER: &str = "producer_id";
/// The compactor's lease and `JobStatus` name.
pub const COMPACTOR_JOB: &str = "compactor";
/// Segments named before this time (ms) have been examined by GC.
pub const GC_CHECKPOINT: &str = "gc.segments_checkpoint_ms";

impl Key<'_> {
    pub fn kind(&self) -> KeyKind {
        match self {
            Key::TopicName(_) => KeyKind::TopicName,
            Key::Topic(_) => KeyKind::Topic,
            Key::Partition(..) => KeyKind::Partition,
            Key::Index(..) => KeyKind::Index,
            Key::Segment(_) => KeyKind::Segment,
            Key::Counter(_) => KeyKind::Counter,
            Key::Lease(_) => KeyKind::Lease,
            Key::Group(_) => KeyKind::Group,
            Key::Member(..) => KeyKind::Member,
            Key::Offset(..) => KeyKind::Offset,
            Key::Producer(_) => KeyKind::Producer,
            Key::ProducerName(_) => KeyKind::ProducerName,
            Key::ProducerAnswer(..) => KeyKind::ProducerAnswer,
            Key::Idempotency(_) => KeyKind::Idempotency,
            Key::Expiry(..) => KeyKind::Expiry,
            Key::KafkaSequence(..) => KeyKind::KafkaSequence,
            Key::Archive(..) => KeyKind::Archive,
            Key::Collected(_) => KeyKind::Collected,
            Key::ObjectRefs(_) => KeyKind::ObjectRefs,
            Key::Garbage(..) => KeyKind::Garbage,
            Key::Reclaim(_) => KeyKind::Reclaim,
            Key::ShareWindow(..) => KeyKind::ShareWindow,
            Key::ShareRecord(..) => KeyKind::ShareRecord,
            Key::ShareGroup(_) => KeyKind::ShareGroup,
            Key::LogChanged => KeyKind::LogChanged,
            Key::JobStatus(_) => KeyKind::JobStatus,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut k = vec![self.kind() as u8];
        match *self {
            Key::TopicName(s)
            | Key::Segment(s)
            | Key::Counter(s)
            | Key::Lease(s)
            | Key::Group(s)
            | Key::ProducerName(s)
            | Key::Idempotency(s)
            | Key::Collected(s)
            | Key::ObjectRefs(s)
            | Key::ShareGroup(s)
            | Key::JobStatus(s) => put_str(&mut k, s),
            Key::Topic(n) | Key::Producer(n) | Key::Reclaim(n) => {
                k.extend_from_slice(&n.to_be_bytes())
            }
            Key::Garbage(at, object) => {
                k.extend_from_slice(&(at.max(0) as u64).to_be_bytes());
                put_str(&mut k, object);
            }
            Key::Partition(t, p) | Key::Archive(t, p) => {
                k.extend_from_slice(&t.to_be_bytes());
                k.extend_from_slice(&p.to_be_bytes());
            }
            Key::Index(t, p, o) => {
                k.extend_from_slice(&t.to_be_bytes());
                k.extend_from_slice(&p.to_be_bytes());
                k.extend_from_slice(&o.to_be_bytes());
            }
            Key::Member(g, m) => {
                put_str(&mut k, g);
                put_str(&mut k, m);
            }
            Key::Offset(g, t, p) | Key::ShareWindow(g, t, p) => {
                put_str(&mut k, g);
                k.extend_from_slice(&t.to_be_bytes());
                k.extend_from_slice(&p.to_be_bytes());
            }
            Key::ShareRecord(g, t, p, o) => {
                put_str(&mut k, g);
                k.extend_from_slice(&t.to_be_bytes());
                k.extend_from_slice(&p.to_be_bytes());
                k.extend_from_slice(&o.to_be_bytes());
            }
            Key::KafkaSequence(id, t, p) => {
                k.extend_from_slice(&id.to_be_bytes());
                k.extend_from_slice(&t.to_be_bytes());
                k.extend_from_slice(&p.to_be_bytes());
            }
            Key::ProducerAnswer(id, seq) => {
                k.extend_from_slice(&id.to_be_bytes());
                k.extend_from_slice(&seq.to_be_bytes());
            }
            Key::LogChanged => {}
            Key::Expiry(at, key) => {
                // Times before the epoch sort first (clamped to 0).
                k.extend_from_slice(&(at.max(0) as u64).to_be_bytes());
                k.extend_from_slice(key);
            }
        }
        k
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.push(0);
}

/// A half-open key range `[begin, end)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRange {
    pub begin: Vec<u8>,
    pub end: Vec<u8>,
}

impl KeyRange {
    /// Every key starting with `prefix`.
    pub fn prefix(prefix: Vec<u8>) -> Self {
        let mut end = prefix.clone();
        // The prefixes used here never end in 0xFF runs that reach the kind byte.
        while let Some(last) = end.pop() {
            if last != 0xFF {
                end.push(last + 1);
                break;
            }
        }
        Self { begin: prefix, end }
    }

    /// All keys of one kind.
    pub fn kind(kind: KeyKind) -> Self {
        Self::prefix(vec![kind as u8])
    }

    /// All `Partition` keys of a topic.
    pub fn partitions(topic_id: u64) -> Self {
        let mut p = vec![KeyKind::Partition as u8];
        p.extend_from_slice(&topic_id.to_be_bytes());
        Self::prefix(p)
    }

    /// All `Index` keys of a topic.
    pub fn topic_index(topic_id: u64) -> Self {
        let mut p = vec![KeyKind::Index as u8];
        p.extend_from_slice(&topic_id.to_be_bytes());
        Self::prefix(p)
    }

    /// `Index` keys of one partition with base offset in `[from, to)`.
    pub fn index(topic_id: u64, partition: u32, from: u64, to: u64) -> Self {
        Self {
            begin: Key::Index(topic_id, partition, from).encode(),
            end: if to == u64::MAX {
                let mut p = vec![KeyKind::Index as u8];
                p.extend_from_slice(&topic_id.to_be_bytes());
                p.extend_from_slice(&partition.to_be_bytes());
                KeyRange::prefix(p).end
            } else {
                Key::Index(topic_id, partition, to).encode()
            },
        }
    }

    /// All `Member` keys of a group.
    pub fn members(group: &str) -> Self {
        let mut p = vec![KeyKind::Member as u8];
        put_str(&mut p, group);
        Self::prefix(p)
    }

    /// All `Offset` keys of a group.
    pub fn offsets(group: &str) -> Self {
        let mut p = vec![KeyKind::Offset as u8];
        put_str(&mut p, group);
        Self::prefix(p)
    }

    /// All `ShareWindow` keys of a share group.
    pub fn share_windows(group: &str) -> Self {
        let mut p = vec![KeyKind::ShareWindow as u8];
        put_str(&mut p, group);
        Self::prefix(p)
    }

    /// All `ShareRecord` keys of a share group.
    pub fn share_records(group: &str) -> Self {
        let mut p = vec![KeyKind::ShareRecord as u8];
        put_str(&mut p, group);
        Self::prefix(p)
    }

    /// `ShareRecord` keys of one partition with offsets in `[from, to)`.
    pub fn share_window_records(
        group: &str,
        topic_id: u64,
        partition: u32,
        from: u64,
        to: u64,
    ) -> Self {
        Self {
            begin: Key::ShareRecord(group, topic_id, partition, from).encode(),
            end: Key::ShareRecord(group, topic_id, partition, to).encode(),
        }
    }

    /// All `ProducerAnswer` keys of a producer.
    pub fn producer_answers(producer_id: u64) -> Self {
        let mut p = vec![KeyKind::ProducerAnswer as u8];
        p.extend_from_slice(&producer_id.to_be_bytes());
        Self::prefix(p)
    }

    /// All `KafkaSequence` keys of a producer.
    pub fn kafka_sequences(producer_id: u64) -> Self {
        let mut p = vec![KeyKind::KafkaSequence as u8];
        p.extend_from_slice(&producer_id.to_be_bytes());
        Self::prefix(p)
    }

    /// `Garbage` keys due before `at_ms`.
    pub fn garbage_before(at_ms: i64) -> Self {
        Self {
            begin: vec![KeyKind::Garbage as u8],
            end: {
                let mut k = vec![KeyKind::Garbage as u8];
                k.extend_from_slice(&(at_ms.max(0) as u64).to_be_bytes());
                k
            },
        }
    }

    /// `Expiry` keys due before `at_ms`.
    pub fn expired_before(at_ms: i64) -> Self {
        Self {
            begin: vec![KeyKind::Expiry as u8],
            end: Key::Expiry(at_ms, &[]).encode(),
        }
    }
}

/// Why a stored key could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed key {0:02x?}")]
pub struct BadKey(pub Vec<u8>);

/// Reads key elements front to back.
struct Elements<'a>(&'a [u8]);

impl<'a> Elements<'a> {
    fn fixed<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_at_checked(N)?;
        self.0 = rest;
        head.try_into().ok()
    }
    fn u64(&mut self) -> Option<u64> {
        self.fixed().map(u64::from_be_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.fixed().map(u32::from_be_bytes)
    }
    /// A terminated string: up to the first `0x00`. Names holding `0x00`
    /// are rejected at creation, so no valid key holds an escape (and the
    /// byte after the terminator belongs to the next element).
    fn str(&mut self) -> Option<&'a str> {
        let end = self.0.iter().position(|&b| b == 0)?;
        let s = std::str::from_utf8(&self.0[..end]).ok()?;
        self.0 = &self.0[end + 1..];
        Some(s)
    }
    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }
    fn done(&self) -> Option<()> {
        self.0.is_empty().then_some(())
    }
}

/// Decodes any key of the keyspace.
pub fn decode(key: &[u8]) -> Result<Key<'_>, BadKey> {
    let (&kind, rest) = key.split_first().ok_or_else(|| BadKey(key.to_vec()))?;
    let mut e = Elements(rest);
    let k = (|| {
        let k = match kind {
            k if k == KeyKind::TopicName as u8 => Key::TopicName(e.str()?),
            k if k == KeyKind::Topic as u8 => Key::Topic(e.u64()?),
            k if k == KeyKind::Partition as u8 => Key::Partition(e.u64()?, e.u32()?),
            k if k == KeyKind::Index as u8 => Key::Index(e.u64()?, e.u32()?, e.u64()?),
            k if k == KeyKind::Segment as u8 => Key::Segment(e.str()?),
            k if k == KeyKind::Counter as u8 => Key::Counter(e.str()?),
            k if k == KeyKind::Lease as u8 => Key::Lease(e.str()?),
            k if k == KeyKind::Group as u8 => Key::Group(e.str()?),
            k if k == KeyKind::Member as u8 => Key::Member(e.str()?, e.str()?),
            k if k == KeyKind::Offset as u8 => Key::Offset(e.str()?, e.u64()?, e.u32()?),
            k if k == KeyKind::Producer as u8 => Key::Producer(e.u64()?),
            k if k == KeyKind::ProducerName as u8 => Key::ProducerName(e.str()?),
            k if k == KeyKind::ProducerAnswer as u8 => Key::ProducerAnswer(e.u64()?, e.u64()?),
            k if k == KeyKind::Idempotency as u8 => Key::Idempotency(e.str()?),
            k if k == KeyKind::Expiry as u8 => Key::Expiry(e.u64()? as i64, e.rest()),
            k if k == KeyKind::KafkaSequence as u8 => {
                Key::KafkaSequence(e.u64()?, e.u64()?, e.u32()?)
            }
            k if k == KeyKind::Archive as u8 => Key::Archive(e.u64()?, e.u32()?),
            k if k == KeyKind::Collected as u8 => Key::Collected(e.str()?),
            k if k == KeyKind::ObjectRefs as u8 => Key::ObjectRefs(e.str()?),
            k if k == KeyKind::Garbage as u8 => Key::Garbage(e.u64()? as i64, e.str()?),
            k if k == KeyKind::Reclaim as u8 => Key::Reclaim(e.u64()?),
            k if k == KeyKind::ShareWindow as u8 => Key::ShareWindow(e.str()?, e.u64()?, e.u32()?),
            k if k == KeyKind::ShareRecord as u8 => {
                Key::ShareRecord(e.str()?, e.u64()?, e.u32()?, e.u64()?)
            }
            k if k == KeyKind::ShareGroup as u8 => Key::ShareGroup(e.str()?),
            k if k == KeyKind::LogChanged as u8 => Key::LogChanged,
            k if k == KeyKind::JobStatus as u8 => Key::JobStatus(e.str()?),
            _ => return None,
        };
        e.done()?;
        Some(k)
    })();
    k.ok_or_else(|| BadKey(key.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trips(k: Key<'_>) -> bool {
        let bytes = k.encode();
        decode(&bytes).as_ref() == Ok(&k)
    }

    fn name() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9._-]{1,40}"
    }

    proptest! {
        #[test]
        fn topic_name_round_trips(n in name()) {
            prop_assert!(round_trips(Key::TopicName(&n)));
        }
        #[test]
        fn topic_round_trips(t in any::<u64>()) {
            prop_assert!(round_trips(Key::Topic(t)));
            prop_assert!(round_trips(Key::Producer(t)));
        }
        #[test]
        fn partition_round_trips(t in any::<u64>(), p in any::<u32>()) {
            prop_assert!(round_trips(Key::Partition(t, p)));
            prop_assert!(round_trips(Key::Archive(t, p)));
            prop_assert!(round_trips(Key::Reclaim(t)));
        }
        #[test]
        fn index_round_trips_and_orders(t in any::<u64>(), p in any::<u32>(), a in any::<u64>(), b in any::<u64>()) {
            let (ka, kb) = (Key::Index(t, p, a).encode(), Key::Index(t, p, b).encode());
            prop_assert_eq!(decode(&ka).unwrap(), Key::Index(t, p, a));
            prop_assert_eq!(a.cmp(&b), ka.cmp(&kb));
            let r = KeyRange::index(t, p, 0, u64::MAX);
            prop_assert!(r.begin <= ka && ka < r.end);
        }
        #[test]
        fn string_keys_round_trip(n in name()) {
            for k in [Key::Segment(&n), Key::Counter(&n), Key::Lease(&n), Key::Group(&n),
                      Key::ProducerName(&n), Key::Idempotency(&n), Key::Collected(&n),
                      Key::ObjectRefs(&n), Key::Garbage(7, &n), Key::ShareGroup(&n),
                      Key::ShareWindow(&n, 3, 4), Key::ShareRecord(&n, 3, 4, 5), Key::LogChanged,
                      Key::JobStatus(&n)] {
                prop_assert!(round_trips(k));
            }
        }
        #[test]
        fn group_keys_round_trip_and_stay_in_their_group(g in name(), m in name(), t in any::<u64>(), p in any::<u32>()) {
            prop_assert!(round_trips(Key::Member(&g, &m)));
            prop_assert!(round_trips(Key::Offset(&g, t, p)));
            let members = KeyRange::members(&g);
            let k = Key::Member(&g, &m).encode();
            prop_assert!(members.begin <= k && k < members.end);
            let offsets = KeyRange::offsets(&g);
            let k = Key::Offset(&g, t, p).encode();
            prop_assert!(offsets.begin <= k && k < offsets.end);
            // A group whose name extends this one's is outside its ranges.
            let longer = format!("{g}x");
            let k = Key::Member(&longer, &m).encode();
            prop_assert!(!(members.begin <= k && k < members.end));
        }
        #[test]
        fn answers_and_expiries_round_trip(id in any::<u64>(), seq in any::<u64>(), at in 0i64..i64::MAX, n in name()) {
            prop_assert!(round_trips(Key::ProducerAnswer(id, seq)));
            prop_assert!(round_trips(Key::KafkaSequence(id, seq, at as u32)));
            let own = KeyRange::kafka_sequences(id);
            let k = Key::KafkaSequence(id, seq, at as u32).encode();
            prop_assert!(own.begin <= k && k < own.end);
            let target = Key::Idempotency(&n).encode();
            prop_assert!(round_trips(Key::Expiry(at, &target)));
            let due = KeyRange::expired_before(at.saturating_add(1));
            let k = Key::Expiry(at, &target).encode();
            prop_assert!(due.begin <= k && k < due.end);
            let not_yet = KeyRange::expired_before(at);
            prop_assert!(k >= not_yet.end);
        }
        #[test]
        fn string_order_is_preserved(a in name(), b in name()) {
            prop_assert_eq!(a.cmp(&b), Key::TopicName(&a).encode().cmp(&Key::TopicName(&b).encode()));
        }
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..32)) {
            let _ = decode(&bytes);
        }
    }

    #[test]
    fn ranges_do_not_leak_into_neighbours() {
        let r = KeyRange::partitions(7);
        assert!(Key::Partition(7, u32::MAX).encode() < r.end);
        assert!(Key::Partition(8, 0).encode() >= r.end);
        let i = KeyRange::index(7, 3, 0, u64::MAX);
        assert!(Key::Index(7, 3, u64::MAX).encode() < i.end);
        assert!(Key::Index(7, 4, 0).encode() >= i.end);
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut k = Key::Topic(1).encode();
        k.push(0);
        assert!(decode(&k).is_err());
        let mut k = Key::Group("g").encode();
        k.push(b'x');
        assert!(decode(&k).is_err());
    }
}
