//! The history checker: the anomalies Jepsen's Kafka checker names, counted
//! over a [`History`] and one final read of every partition.
//!
//! - `lost-write`: acknowledged, but absent from the final log;
//! - `unseen`: in the final log, but never delivered to any consumer;
//! - `duplicate`: one value at more than one position;
//! - `inconsistent-offsets`: two values at one `(partition, offset)`, across
//!   acknowledgements, polls and the final log;
//! - `G1a`: a value whose send was refused is read (aborted read);
//! - `poll-skip`: a consumer's reads jump over offsets it should have
//!   delivered (a tailer's read not starting where it asked, a gap inside a
//!   read or between two reads of one group generation, or an offset below
//!   the group's committed offset that no member was ever given);
//! - `nonmonotonic-poll`: a consumer is given an offset not above the one
//!   before it (within one group generation);
//! - `nonmonotonic-send`: a producer's acknowledged offsets in a partition
//!   do not increase in the order it sent them;
//! - `reordered`: a producer's values sit in a partition of the final log in
//!   another order than sent (also catches sends whose ack was lost);
//! - `commit-regression`: a committed offset acknowledged after another
//!   commit of the same partition was acknowledged is lower than it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;

use super::history::{History, Outcome, Value};

/// The anomalies, named as Jepsen names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Anomaly {
    LostWrite,
    Unseen,
    Duplicate,
    InconsistentOffsets,
    G1a,
    PollSkip,
    NonmonotonicPoll,
    NonmonotonicSend,
    Reordered,
    CommitRegression,
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Anomaly::LostWrite => "lost-write",
            Anomaly::Unseen => "unseen",
            Anomaly::Duplicate => "duplicate",
            Anomaly::InconsistentOffsets => "inconsistent-offsets",
            Anomaly::G1a => "G1a",
            Anomaly::PollSkip => "poll-skip",
            Anomaly::NonmonotonicPoll => "nonmonotonic-poll",
            Anomaly::NonmonotonicSend => "nonmonotonic-send",
            Anomaly::Reordered => "reordered",
            Anomaly::CommitRegression => "commit-regression",
        })
    }
}

/// Every partition as read at the end: `log[p][i]` is `(offset, value)`.
pub type FinalLog = Vec<Vec<(u64, Value)>>;

/// What the checker found: counts, and a few examples of each anomaly.
#[derive(Debug, Default)]
pub struct Report {
    pub acked_records: usize,
    pub refused_records: usize,
    pub unknown_records: usize,
    pub polled_records: usize,
    pub commits: usize,
    pub anomalies: BTreeMap<Anomaly, usize>,
    pub examples: BTreeMap<Anomaly, Vec<String>>,
}

impl Report {
    fn found(&mut self, a: Anomaly, example: impl FnOnce() -> String) {
        *self.anomalies.entry(a).or_default() += 1;
        let ex = self.examples.entry(a).or_default();
        if ex.len() < 5 {
            ex.push(example());
        }
    }

    pub fn count(&self, a: Anomaly) -> usize {
        self.anomalies.get(&a).copied().unwrap_or(0)
    }

    pub fn is_valid(&self) -> bool {
        self.anomalies.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "acked {} refused {} unknown {} polled {} commits {}",
            self.acked_records,
            self.refused_records,
            self.unknown_records,
            self.polled_records,
            self.commits
        )?;
        for (a, n) in &self.anomalies {
            write!(f, "\n  {a}: {n} e.g. {:?}", self.examples[a])?;
        }
        Ok(())
    }
}

/// Checks a history against the final log.
pub fn check(history: &History, log: &FinalLog) -> Report {
    let sends = history.sends.lock();
    let polls = history.polls.lock();
    let commits = history.commits.lock();
    let mut r = Report {
        polled_records: polls.iter().map(|p| p.records.len()).sum(),
        commits: commits.len(),
        ..Report::default()
    };

    let mut seen = Observed::default();
    let mut in_log: HashMap<&str, (u32, u64)> = HashMap::new();
    for (p, records) in log.iter().enumerate() {
        for (o, v) in records {
            seen.observe(p as u32, *o, v);
            in_log.insert(v, (p as u32, *o));
        }
    }
    for s in sends.iter() {
        if let Outcome::Acked(offsets) = &s.outcome {
            for (v, &(p, o)) in s.values.iter().zip(offsets) {
                seen.observe(p, o, v);
            }
        }
    }
    let mut polled: HashSet<&str> = HashSet::new();
    for poll in polls.iter() {
        for (o, v) in &poll.records {
            seen.observe(poll.partition, *o, v);
            polled.insert(v);
        }
    }
    let Observed { at, positions } = seen;
    for (pos, values) in &at {
        if values.len() > 1 {
            r.found(Anomaly::InconsistentOffsets, || {
                format!("{pos:?}: {values:?}")
            });
        }
    }
    for (v, pos) in &positions {
        if pos.len() > 1 {
            r.found(Anomaly::Duplicate, || format!("{v} at {pos:?}"));
        }
    }

    // Sends: lost, unseen, G1a, per-producer order.
    let mut last_ack: HashMap<(usize, u32), u64> = HashMap::new();
    let mut last_in_log: HashMap<(usize, u32), u64> = HashMap::new();
    for s in sends.iter() {
        match &s.outcome {
            Outcome::Acked(offsets) => {
                r.acked_records += s.values.len();
                for (v, &(p, o)) in s.values.iter().zip(offsets) {
                    if !in_log.contains_key(v.as_str()) {
                        r.found(Anomaly::LostWrite, || format!("{v} acked at {p}/{o}"));
                    } else if !polled.contains(v.as_str()) {
                        r.found(Anomaly::Unseen, || format!("{v} at {p}/{o}"));
                    }
                    let prev = last_ack.insert((s.producer, p), o);
                    if prev.is_some_and(|prev| prev >= o) {
                        r.found(Anomaly::NonmonotonicSend, || {
                            format!("producer {} partition {p}: {prev:?} then {o}", s.producer)
                        });
                    }
                }
            }
            Outcome::Refused => {
                r.refused_records += s.values.len();
                for v in &s.values {
                    if positions.contains_key(v.as_str()) {
                        r.found(Anomaly::G1a, || format!("refused {v} was read"));
                    }
                }
            }
            Outcome::Unknown => r.unknown_records += s.values.len(),
        }
        for v in &s.values {
            if let Some(&(p, o)) = in_log.get(v.as_str()) {
                let prev = last_in_log.insert((s.producer, p), o);
                if prev.is_some_and(|prev| prev >= o) {
                    r.found(Anomaly::Reordered, || {
                        format!(
                            "producer {} partition {p}: {v} at {o} after {prev:?}",
                            s.producer
                        )
                    });
                }
            }
        }
    }

    check_polls(&polls, &commits, &mut r);
    check_commits(&commits, &mut r);
    r
}

/// Every observation of a value at a position.
#[derive(Default)]
struct Observed<'h> {
    at: HashMap<(u32, u64), BTreeSet<&'h str>>,
    positions: HashMap<&'h str, BTreeSet<(u32, u64)>>,
}

impl<'h> Observed<'h> {
    fn observe(&mut self, p: u32, o: u64, v: &'h str) {
        self.at.entry((p, o)).or_default().insert(v);
        self.positions.entry(v).or_default().insert((p, o));
    }
}

/// Poll order: per consumer and partition (and generation, for groups).
fn check_polls(polls: &[super::history::Poll], commits: &[super::history::Commit], r: &mut Report) {
    let mut last: HashMap<(&str, u32, Option<u64>), u64> = HashMap::new();
    let mut delivered: HashMap<u32, HashSet<u64>> = HashMap::new();
    for poll in polls {
        let key = (poll.consumer.as_str(), poll.partition, poll.generation);
        let mut expected = match (poll.from, last.get(&key)) {
            (Some(from), _) => Some(from),
            (None, Some(&prev)) => Some(prev + 1),
            (None, None) => None,
        };
        for &(o, _) in &poll.records {
            if poll.generation.is_some() {
                delivered.entry(poll.partition).or_default().insert(o);
            }
            if let Some(want) = expected {
                if o < want {
                    r.found(Anomaly::NonmonotonicPoll, || {
                        format!("{key:?}: offset {o} after expecting {want}")
                    });
                } else if o > want {
                    r.found(Anomaly::PollSkip, || format!("{key:?}: {want} to {o}"));
                }
            }
            expected = Some(o + 1);
            last.insert(key, o);
        }
    }
    // Every offset below the group's highest commit was given to a member.
    let mut committed: BTreeMap<u32, u64> = BTreeMap::new();
    for c in commits {
        let e = committed.entry(c.partition).or_default();
        *e = (*e).max(c.offset);
    }
    for (p, upto) in committed {
        let seen = delivered.get(&p);
        for o in 0..upto {
            if !seen.is_some_and(|s| s.contains(&o)) {
                r.found(Anomaly::PollSkip, || {
                    format!("partition {p}: offset {o} committed but given to no member")
                });
            }
        }
    }
}

/// A commit acknowledged after another was acknowledged (not concurrent
/// with it) must not be lower.
fn check_commits(commits: &[super::history::Commit], r: &mut Report) {
    let mut by_partition: HashMap<u32, Vec<&super::history::Commit>> = HashMap::new();
    for c in commits {
        by_partition.entry(c.partition).or_default().push(c);
    }
    for (p, mut cs) in by_partition {
        cs.sort_by_key(|c| c.completed);
        // prefix[i]: the highest offset among the first i + 1 completions.
        let prefix: Vec<u64> = cs
            .iter()
            .scan(0, |m, c| {
                *m = (*m).max(c.offset);
                Some(*m)
            })
            .collect();
        for c in &cs {
            let before = cs.partition_point(|a| a.completed < c.invoked);
            if before > 0 && prefix[before - 1] > c.offset {
                r.found(Anomaly::CommitRegression, || {
                    format!("partition {p}: {} after {}", c.offset, prefix[before - 1])
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::super::history::{Commit, Poll, Send};
    use super::*;

    fn acked(producer: usize, values: &[&str], at: &[(u32, u64)]) -> Send {
        Send {
            producer,
            values: values.iter().map(|v| v.to_string()).collect(),
            outcome: Outcome::Acked(at.to_vec()),
        }
    }

    fn tail(consumer: &str, partition: u32, from: u64, records: &[(u64, &str)]) -> Poll {
        Poll {
            consumer: consumer.into(),
            partition,
            from: Some(from),
            generation: None,
            records: records.iter().map(|(o, v)| (*o, v.to_string())).collect(),
        }
    }

    fn log(partitions: &[&[&str]]) -> FinalLog {
        partitions
            .iter()
            .map(|vs| {
                vs.iter()
                    .enumerate()
                    .map(|(o, v)| (o as u64, v.to_string()))
                    .collect()
            })
            .collect()
    }

    /// A valid history: two producers, one tailer that read everything.
    fn valid() -> (History, FinalLog) {
        let h = History::default();
        h.send(acked(0, &["a", "b"], &[(0, 0), (0, 1)]));
        h.send(acked(1, &["c"], &[(0, 2)]));
        h.send(acked(0, &["d"], &[(0, 3)]));
        h.poll(tail("t", 0, 0, &[(0, "a"), (1, "b")]));
        h.poll(tail("t", 0, 2, &[(2, "c"), (3, "d")]));
        (h, log(&[&["a", "b", "c", "d"]]))
    }

    #[test]
    fn a_valid_history_has_no_anomaly() {
        let (h, l) = valid();
        let r = check(&h, &l);
        assert!(r.is_valid(), "{r}");
        assert_eq!((r.acked_records, r.polled_records), (4, 4));
    }

    #[test]
    fn each_anomaly_is_found() {
        // Lost: "d" acked but missing from the log; "c" then unseen.
        let (h, _) = valid();
        let r = check(&h, &log(&[&["a", "b", "c"]]));
        assert_eq!(r.count(Anomaly::LostWrite), 1, "{r}");

        // Unseen: the tailer never read "d".
        let (h, l) = valid();
        h.polls.lock().pop();
        h.poll(tail("t", 0, 2, &[(2, "c")]));
        assert_eq!(check(&h, &l).count(Anomaly::Unseen), 1);

        // Duplicate and inconsistent: "b" also at offset 4.
        let (h, _) = valid();
        let r = check(&h, &log(&[&["a", "b", "c", "d", "b"]]));
        assert_eq!(r.count(Anomaly::Duplicate), 1, "{r}");
        let (h, l) = valid();
        h.poll(tail("u", 0, 1, &[(1, "x")]));
        let r = check(&h, &l);
        assert_eq!(r.count(Anomaly::InconsistentOffsets), 1, "{r}");

        // G1a: a refused send is read.
        let (h, _) = valid();
        h.send(Send {
            producer: 2,
            values: vec!["e".into()],
            outcome: Outcome::Refused,
        });
        let r = check(&h, &log(&[&["a", "b", "c", "d", "e"]]));
        assert_eq!(r.count(Anomaly::G1a), 1, "{r}");

        // Poll-skip and nonmonotonic poll.
        let (h, l) = valid();
        h.poll(tail("u", 0, 0, &[(1, "b")]));
        h.poll(tail("v", 0, 0, &[(0, "a"), (2, "c")]));
        h.poll(tail("w", 0, 2, &[(2, "c"), (1, "b")]));
        let r = check(&h, &l);
        assert_eq!(r.count(Anomaly::PollSkip), 2, "{r}");
        assert_eq!(r.count(Anomaly::NonmonotonicPoll), 1, "{r}");

        // Nonmonotonic send and reordering: producer 0's "d" acked at 3
        // but its second send "b" landed before its first.
        let h = History::default();
        h.send(acked(0, &["b"], &[(0, 1)]));
        h.send(acked(0, &["a"], &[(0, 0)]));
        h.poll(tail("t", 0, 0, &[(0, "a"), (1, "b")]));
        let r = check(&h, &log(&[&["a", "b"]]));
        assert_eq!(r.count(Anomaly::NonmonotonicSend), 1, "{r}");
        assert_eq!(r.count(Anomaly::Reordered), 1, "{r}");
    }

    #[test]
    fn group_polls_and_commits_are_checked() {
        let (h, l) = valid();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let member = |generation: u64, records: &[(u64, &str)]| Poll {
            consumer: "m1".into(),
            partition: 0,
            from: None,
            generation: Some(generation),
            records: records.iter().map(|(o, v)| (*o, v.to_string())).collect(),
        };
        h.poll(member(1, &[(0, "a")]));
        h.poll(member(1, &[(1, "b")]));
        // A new generation may start over from the committed offset.
        h.poll(member(2, &[(1, "b")]));
        let commit = |offset, invoked, completed| Commit {
            partition: 0,
            offset,
            invoked: at(invoked),
            completed: at(completed),
        };
        h.commit(commit(1, 0, 10));
        h.commit(commit(2, 20, 30));
        // Concurrent with the one before: not a regression.
        h.commit(commit(1, 25, 35));
        let r = check(&h, &l);
        assert!(r.is_valid(), "{r}");

        // A gap within a generation; a commit that went backwards; an
        // offset committed that no member was given.
        h.poll(member(2, &[(3, "d")]));
        h.commit(commit(1, 40, 50));
        h.commit(commit(3, 60, 70));
        let r = check(&h, &l);
        assert_eq!(r.count(Anomaly::PollSkip), 2, "{r}");
        assert_eq!(r.count(Anomaly::CommitRegression), 1, "{r}");
    }
}
