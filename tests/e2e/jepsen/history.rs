//! What clients did and saw, recorded as it happens: every send with its
//! outcome, every poll with the records it returned, every offset commit.
//! The checker reads nothing else (plus one final read of the log).

use std::time::Instant;

use parking_lot::Mutex;

/// A record's value: unique per record in a run, so it identifies the send.
pub type Value = String;

/// How a send ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged at these `(partition, offset)`s, one per record.
    Acked(Vec<(u32, u64)>),
    /// Refused definitely (a 4xx that is not "try again"): must never be read.
    Refused,
    /// The client gave up without knowing (Jepsen's `info`).
    Unknown,
}

/// One produce request: its records' values, in order.
#[derive(Debug, Clone)]
pub struct Send {
    pub producer: usize,
    pub values: Vec<Value>,
    pub outcome: Outcome,
}

/// One successful read of one partition by one consumer.
#[derive(Debug, Clone)]
pub struct Poll {
    pub consumer: String,
    pub partition: u32,
    /// The offset asked for (tailers), or `None` for a group fetch, which
    /// starts wherever the group stands.
    pub from: Option<u64>,
    /// The group generation the records were fetched under (group members).
    pub generation: Option<u64>,
    pub records: Vec<(u64, Value)>,
}

/// One offset commit that the server acknowledged.
#[derive(Debug, Clone)]
pub struct Commit {
    pub partition: u32,
    pub offset: u64,
    pub invoked: Instant,
    pub completed: Instant,
}

/// The whole history of a run, appended to concurrently.
#[derive(Debug, Default)]
pub struct History {
    pub sends: Mutex<Vec<Send>>,
    pub polls: Mutex<Vec<Poll>>,
    pub commits: Mutex<Vec<Commit>>,
}

impl History {
    pub fn send(&self, s: Send) {
        self.sends.lock().push(s);
    }

    pub fn poll(&self, p: Poll) {
        if !p.records.is_empty() {
            self.polls.lock().push(p);
        }
    }

    pub fn commit(&self, c: Commit) {
        self.commits.lock().push(c);
    }
}
