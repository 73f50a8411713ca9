//! The keyspace: every key Silt stores, its stable kind id, and its value.
//!
//! A key is `kind id (1 byte) ‖ elements`, elements encoded so that byte order
//! equals tuple order: integers big-endian fixed width, strings as UTF-8 with
//! `0x00` escaped to `0x00 0xFF` and terminated by `0x00` (the FoundationDB
//! tuple layer's rule). Kind ids are stable: never renumber, only add.
//!
//! | id   | key                                   | value ([`crate::values`])        |
//! |------|---------------------------------------|----------------------------------|
//! | 0x01 | `TopicName(name)`                     | topic id, u64 BE                 |
//! | 0x02 | `Topic(topic_id)`                     | `TopicRecord`, JSON              |
//! | 0x03 | `Partition(topic_id, partition)`      | `PartitionState`, 17 bytes       |
//! | 0x04 | `Index(topic_id, partition, base)`    | `IndexEntry`: where offsets `base..base+count` live |
//! | 0x05 | `Segment(segment_id)`                 | `SegmentRecord`: the commit's outcome (idempotence) |
//! | 0x06 | `Counter(name)`                       | u64 BE                           |
//! | 0x07 | `Lease(name)`                         | `LeaseRecord`: who runs a singleton job, until when |
//!
//! Invariants kept by [`crate::Metadata`]: for every partition, the `Index`
//! entries tile `[log_start_offset, high_watermark)` without gaps or overlap,
//! and every `Index` entry of a segment was written by the same transaction
//! that wrote its `Segment` record.

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
}

/// Counter names.
pub const TOPIC_ID_COUNTER: &str = "topic_id";

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
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut k = vec![self.kind() as u8];
        match *self {
            Key::TopicName(s) | Key::Segment(s) | Key::Counter(s) | Key::Lease(s) => {
                put_str(&mut k, s)
            }
            Key::Topic(t) => k.extend_from_slice(&t.to_be_bytes()),
            Key::Partition(t, p) => {
                k.extend_from_slice(&t.to_be_bytes());
                k.extend_from_slice(&p.to_be_bytes());
            }
            Key::Index(t, p, o) => {
                k.extend_from_slice(&t.to_be_bytes());
                k.extend_from_slice(&p.to_be_bytes());
                k.extend_from_slice(&o.to_be_bytes());
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
}

/// Why a stored key could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed key {0:02x?}")]
pub struct BadKey(pub Vec<u8>);

/// Decodes any key of the keyspace.
pub fn decode(key: &[u8]) -> Result<Key<'_>, BadKey> {
    let bad = || BadKey(key.to_vec());
    let (&kind, rest) = key.split_first().ok_or_else(bad)?;
    let u64_at = |i: usize| -> Result<u64, BadKey> {
        rest.get(i..i + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
            .ok_or_else(bad)
    };
    let u32_at = |i: usize| -> Result<u32, BadKey> {
        rest.get(i..i + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
            .ok_or_else(bad)
    };
    let exact = |n: usize| if rest.len() == n { Ok(()) } else { Err(bad()) };
    Ok(match kind {
        k if k == KeyKind::TopicName as u8 => Key::TopicName(get_str(rest).ok_or_else(bad)?),
        k if k == KeyKind::Segment as u8 => Key::Segment(get_str(rest).ok_or_else(bad)?),
        k if k == KeyKind::Counter as u8 => Key::Counter(get_str(rest).ok_or_else(bad)?),
        k if k == KeyKind::Lease as u8 => Key::Lease(get_str(rest).ok_or_else(bad)?),
        k if k == KeyKind::Topic as u8 => {
            exact(8)?;
            Key::Topic(u64_at(0)?)
        }
        k if k == KeyKind::Partition as u8 => {
            exact(12)?;
            Key::Partition(u64_at(0)?, u32_at(8)?)
        }
        k if k == KeyKind::Index as u8 => {
            exact(20)?;
            Key::Index(u64_at(0)?, u32_at(8)?, u64_at(12)?)
        }
        _ => return Err(bad()),
    })
}

/// Strings are stored escaped; keys holding a `0x00` byte decode only if
/// it is escaped. Returns a borrowed string when no escape occurs (the common
/// case); escaped names are rejected at creation, so this suffices.
fn get_str(rest: &[u8]) -> Option<&str> {
    let (body, term) = rest.split_at(rest.len().checked_sub(1)?);
    if term != [0] || body.contains(&0) {
        return None;
    }
    std::str::from_utf8(body).ok()
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
        }
        #[test]
        fn partition_round_trips(t in any::<u64>(), p in any::<u32>()) {
            prop_assert!(round_trips(Key::Partition(t, p)));
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
        fn segment_and_counter_round_trip(n in name()) {
            prop_assert!(round_trips(Key::Segment(&n)));
            prop_assert!(round_trips(Key::Counter(&n)));
            prop_assert!(round_trips(Key::Lease(&n)));
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
}
