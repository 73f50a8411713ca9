//! Lists in request bodies are bounded while they are parsed, not after:
//! a body of millions of tiny records (or headers) is refused at the first
//! one past the limit, before it can cost memory many times its size.
//!
//! The limits in force are set per parse with [`parse_bounded`], which
//! keeps them, and which list (if any) went past its limit, in a
//! thread-local for the duration of one synchronous `serde_json` parse —
//! nothing else runs on the thread meanwhile. Outside such a parse the
//! lists are unbounded (as in tests of the types alone).

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;

use axum::http::StatusCode;
use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};

use crate::problem::Problem;

/// Which list went past its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    Records,
    Headers,
}

/// Limits on the lists of one body.
#[derive(Debug, Clone, Copy)]
pub struct ListLimits {
    pub records: usize,
    pub headers: usize,
}

#[derive(Debug, Clone, Copy)]
struct InForce {
    limits: ListLimits,
    exceeded: Option<Exceeded>,
}

thread_local! {
    static IN_FORCE: Cell<Option<InForce>> = const { Cell::new(None) };
}

/// Runs one synchronous parse with `limits` in force. A list past its
/// limit ends the parse with `too_many_records` (413) or
/// `too_many_headers` (400); other errors come from `parse` itself.
pub fn parse_bounded<T>(
    limits: ListLimits,
    parse: impl FnOnce() -> Result<T, Problem>,
) -> Result<T, Problem> {
    let before = IN_FORCE.replace(Some(InForce {
        limits,
        exceeded: None,
    }));
    let result = parse();
    let exceeded = IN_FORCE.replace(before).and_then(|f| f.exceeded);
    match exceeded {
        Some(Exceeded::Records) => Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_records",
            format!(
                "more records in one request than the limit of {}",
                limits.records
            ),
        )),
        Some(Exceeded::Headers) => Err(Problem::bad_request(
            "too_many_headers",
            format!("a record has more than {} headers", limits.headers),
        )),
        None => result,
    }
}

/// Which list a [`Bounded`] is.
pub trait ListKind {
    const KIND: Exceeded;
}

#[derive(Debug)]
pub struct RecordList;
impl ListKind for RecordList {
    const KIND: Exceeded = Exceeded::Records;
}

#[derive(Debug)]
pub struct HeaderList;
impl ListKind for HeaderList {
    const KIND: Exceeded = Exceeded::Headers;
}

/// A list that stops parsing past the limit of its kind.
#[derive(Debug)]
pub struct Bounded<T, K>(pub Vec<T>, PhantomData<K>);

impl<T, K> Default for Bounded<T, K> {
    fn default() -> Self {
        Self(Vec::new(), PhantomData)
    }
}

impl<T, K> Bounded<T, K> {
    pub fn into_vec(self) -> Vec<T> {
        self.0
    }
}

fn limit_of(kind: Exceeded) -> Option<usize> {
    IN_FORCE.get().map(|f| match kind {
        Exceeded::Records => f.limits.records,
        Exceeded::Headers => f.limits.headers,
    })
}

fn mark(kind: Exceeded) {
    if let Some(mut f) = IN_FORCE.get() {
        f.exceeded = Some(kind);
        IN_FORCE.set(Some(f));
    }
}

impl<'de, T: Deserialize<'de>, K: ListKind> Deserialize<'de> for Bounded<T, K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T, K>(PhantomData<(T, K)>);
        impl<'de, T: Deserialize<'de>, K: ListKind> Visitor<'de> for V<T, K> {
            type Value = Bounded<T, K>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let limit = limit_of(K::KIND).unwrap_or(usize::MAX);
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(limit).min(1024));
                while let Some(item) = seq.next_element()? {
                    if out.len() == limit {
                        mark(K::KIND);
                        return Err(de::Error::custom("list past its limit"));
                    }
                    out.push(item);
                }
                Ok(Bounded(out, PhantomData))
            }
        }
        d.deserialize_seq(V(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Body {
        records: Bounded<Item, RecordList>,
    }

    #[derive(Debug, serde::Deserialize)]
    struct Item {
        #[serde(default)]
        headers: Bounded<u8, HeaderList>,
    }

    fn parse(json: &str) -> Result<Body, Problem> {
        let limits = ListLimits {
            records: 3,
            headers: 2,
        };
        parse_bounded(limits, || {
            serde_json::from_str(json)
                .map_err(|e| Problem::bad_request("invalid_json", e.to_string()))
        })
    }

    #[test]
    fn lists_stop_at_their_limits() {
        assert_eq!(
            parse(r#"{"records":[{},{},{}]}"#).unwrap().records.0.len(),
            3
        );
        let many = format!("{{\"records\":[{}]}}", vec!["{}"; 1_000_000].join(","));
        assert_eq!(parse(&many).unwrap_err().code, "too_many_records");
        let heads = r#"{"records":[{"headers":[1,2,3]}]}"#;
        assert_eq!(parse(heads).unwrap_err().code, "too_many_headers");
        // Other errors stay what they are, and nothing leaks into the next parse.
        assert_eq!(parse("[").unwrap_err().code, "invalid_json");
        let ok = parse(r#"{"records":[{"headers":[1,2]}]}"#).unwrap();
        assert_eq!(ok.records.0[0].headers.0, [1, 2]);
    }
}
