//! The JSON shapes of the API and the key/value encodings.
//!
//! Keys, values and header values travel as JSON strings. With
//! `encoding=utf8` (the default) a string is stored as its UTF-8 bytes and
//! read back as the same string; with `encoding=base64` (standard alphabet,
//! padded) it carries arbitrary bytes. `null` is a null key, a tombstone
//! value, or a null header value.

use crate::bounded::{Bounded, HeaderList, RecordList};
use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde::de::{Error as _, Unexpected, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use silt_agent::{ProduceRecord, StoredRecord};
use silt_metadata::{PartitionState, TopicConfig, TopicInfo};
use silt_segment::Header;

use crate::problem::Problem;

/// How keys and values are written in JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Utf8,
    Base64,
}

impl Encoding {
    /// Decodes a produced string. UTF-8 text borrowed from the request body
    /// becomes a slice of it: no copy.
    fn decode(
        self,
        s: Option<Text<'_>>,
        body: &Bytes,
        what: &str,
        index: usize,
    ) -> Result<Option<Bytes>, Problem> {
        let Some(Text(s)) = s else { return Ok(None) };
        match (self, s) {
            (Encoding::Utf8, Cow::Borrowed(b)) => Ok(Some(body.slice_ref(b.as_bytes()))),
            (Encoding::Utf8, Cow::Owned(o)) => Ok(Some(Bytes::from(o))),
            (Encoding::Base64, s) => STANDARD
                .decode(s.as_bytes())
                .map(|b| Some(Bytes::from(b)))
                .map_err(|e| {
                    Problem::bad_request(
                        "invalid_base64",
                        format!("records[{index}].{what} is not valid base64: {e}"),
                    )
                }),
        }
    }

    fn encode(self, b: Option<&Bytes>, offset: u64) -> Result<Option<String>, Problem> {
        let Some(b) = b else { return Ok(None) };
        match self {
            Encoding::Base64 => Ok(Some(STANDARD.encode(b))),
            Encoding::Utf8 => match std::str::from_utf8(b) {
                Ok(s) => Ok(Some(s.to_owned())),
                Err(_) => Err(Problem::new(
                    http::StatusCode::UNPROCESSABLE_ENTITY,
                    "not_utf8",
                    format!(
                        "the record at offset {offset} holds bytes that are not UTF-8; fetch with ?encoding=base64"
                    ),
                )),
            },
        }
    }
}

/// `?encoding=` on produce.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncodingQuery {
    #[serde(default)]
    pub encoding: Encoding,
}

/// A JSON string, borrowed from the request body when it has no escapes.
#[derive(Debug)]
pub struct Text<'a>(pub Cow<'a, str>);

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Nullable<'de>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string or null")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Nullable(Some(Text(Cow::Borrowed(v)))))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Nullable(Some(Text(Cow::Owned(v.to_owned())))))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Nullable(Some(Text(Cow::Owned(v)))))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Nullable(None))
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Nullable(None))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match d.deserialize_str(TextVisitor)? {
            Nullable(Some(t)) => Ok(t),
            Nullable(None) => Err(D::Error::invalid_type(Unexpected::Unit, &"a string")),
        }
    }
}

/// A string field that must be present but may be `null`. (A plain
/// `Option` would silently accept a missing field.)
#[derive(Debug)]
pub struct Nullable<'a>(pub Option<Text<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for Nullable<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TextVisitor)
    }
}

#[derive(Debug, Serialize)]
pub struct HeaderJson {
    pub key: String,
    pub value: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderIn<'a> {
    pub key: String,
    #[serde(borrow)]
    pub value: Nullable<'a>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordIn<'a> {
    /// Required by `POST /v1/records` and transactions; elsewhere the topic
    /// is the path's (and, if given, must be the same).
    #[serde(default)]
    pub topic: Option<String>,
    #[serde(default, borrow)]
    pub key: Option<Text<'a>>,
    #[serde(borrow)]
    pub value: Nullable<'a>,
    #[serde(default)]
    pub partition: Option<u32>,
    #[serde(default, borrow)]
    pub headers: Bounded<HeaderIn<'a>, HeaderList>,
    #[serde(default)]
    pub timestamp: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProduceBody<'a> {
    #[serde(borrow)]
    pub records: Bounded<RecordIn<'a>, RecordList>,
    /// An idempotent producer's identity and this request's sequence.
    #[serde(default)]
    pub producer: Option<ProducerSeq>,
}

/// `{"id","epoch","sequence"}` of an idempotent producer's request.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProducerSeq {
    pub id: u64,
    pub epoch: u32,
    pub sequence: u64,
}

/// Per-request limits on produce bodies.
#[derive(Debug, Clone, Copy)]
pub struct ProduceLimits {
    pub max_record_bytes: usize,
    pub max_headers: usize,
}

impl RecordIn<'_> {
    /// `body` is the request body the strings borrow from.
    pub fn into_record(
        self,
        enc: Encoding,
        body: &Bytes,
        i: usize,
        limits: &ProduceLimits,
    ) -> Result<ProduceRecord, Problem> {
        if self.headers.0.len() > limits.max_headers {
            return Err(Problem::bad_request(
                "too_many_headers",
                format!(
                    "records[{i}] has {} headers; the limit is {}",
                    self.headers.0.len(),
                    limits.max_headers
                ),
            ));
        }
        let headers = self
            .headers
            .into_vec()
            .into_iter()
            .map(|h| {
                Ok(Header {
                    key: h.key,
                    value: enc.decode(h.value.0, body, "headers.value", i)?,
                })
            })
            .collect::<Result<Vec<_>, Problem>>()?;
        let r = ProduceRecord {
            partition: self.partition,
            key: enc.decode(self.key, body, "key", i)?,
            value: enc.decode(self.value.0, body, "value", i)?,
            headers,
            timestamp: self.timestamp,
        };
        let size = r.key.as_ref().map_or(0, Bytes::len)
            + r.value.as_ref().map_or(0, Bytes::len)
            + r.headers
                .iter()
                .map(|h| h.key.len() + h.value.as_ref().map_or(0, Bytes::len))
                .sum::<usize>();
        if size > limits.max_record_bytes {
            return Err(Problem::new(
                http::StatusCode::PAYLOAD_TOO_LARGE,
                "record_too_large",
                format!(
                    "records[{i}] is {size} bytes; the limit is {}",
                    limits.max_record_bytes
                ),
            ));
        }
        Ok(r)
    }
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct OffsetOut {
    pub partition: u32,
    pub offset: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ProduceResponse {
    pub offsets: Vec<OffsetOut>,
    /// Present (true) when this request repeated one already committed: the
    /// offsets are the original ones and nothing was written again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

/// A record's place in a multi-topic answer.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TopicOffsetOut {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct MultiProduceResponse {
    pub offsets: Vec<TopicOffsetOut>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

#[derive(Debug, Serialize)]
pub struct RecordOut {
    pub partition: u32,
    pub offset: u64,
    pub timestamp: i64,
    pub key: Option<String>,
    pub value: Option<String>,
    pub headers: Vec<HeaderJson>,
}

impl RecordOut {
    pub fn new(partition: u32, r: StoredRecord, enc: Encoding) -> Result<Self, Problem> {
        let off = r.offset;
        Ok(Self {
            partition,
            offset: off,
            timestamp: r.record.timestamp,
            key: enc.encode(r.record.key.as_ref(), off)?,
            value: enc.encode(r.record.value.as_ref(), off)?,
            headers: r
                .record
                .headers
                .into_iter()
                .map(|h| {
                    Ok(HeaderJson {
                        key: h.key,
                        value: enc.encode(h.value.as_ref(), off)?,
                    })
                })
                .collect::<Result<_, Problem>>()?,
        })
    }
}

#[derive(Debug, Serialize)]
pub struct FetchResponse {
    pub records: Vec<RecordOut>,
    pub next_offset: u64,
    pub high_watermark: u64,
    pub log_start_offset: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTopic {
    pub name: String,
    pub partitions: u32,
    #[serde(default)]
    pub config: TopicConfig,
}

#[derive(Debug, Serialize)]
pub struct PartitionOut {
    pub partition: u32,
    pub log_start_offset: u64,
    pub high_watermark: u64,
    /// Stored (compressed) bytes of the readable records.
    pub retained_bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct TopicOut {
    pub name: String,
    pub partitions: u32,
    pub config: TopicConfig,
    pub created_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition_states: Option<Vec<PartitionOut>>,
}

impl TopicOut {
    pub fn new(t: TopicInfo, states: Option<Vec<PartitionState>>) -> Self {
        Self {
            name: t.name,
            partitions: t.partitions,
            config: t.config,
            created_ms: t.created_ms,
            partition_states: states.map(|s| {
                s.into_iter()
                    .enumerate()
                    .map(|(p, s)| PartitionOut {
                        partition: p as u32,
                        log_start_offset: s.log_start_offset,
                        high_watermark: s.high_watermark,
                        retained_bytes: s.retained_bytes,
                    })
                    .collect()
            }),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct TopicList {
    pub topics: Vec<TopicOut>,
    /// With `detail`: more topics exist than the first 1,000, which alone
    /// were described.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

#[derive(Debug, Serialize)]
pub struct OffsetsOut {
    pub earliest_offset: u64,
    pub latest_offset: u64,
    /// With `?timestamp=`: the first offset whose record's timestamp is at
    /// least that (null if no record is that recent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp_offset: Option<Option<u64>>,
}

/// `{"topic","partition","offset","metadata"?}`: the next offset to consume.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffsetIn {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    #[serde(default)]
    pub metadata: String,
}

/// Offsets to commit, as a member (`member_id` and `generation`) or as a
/// standalone reader (neither).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffsetsIn {
    #[serde(default)]
    pub member_id: Option<String>,
    #[serde(default)]
    pub generation: Option<u32>,
    pub offsets: Vec<OffsetIn>,
}

impl OffsetsIn {
    pub fn into_commit(self, group: String) -> Result<silt_agent::groups::GroupCommit, Problem> {
        use silt_agent::groups::{GroupCommit, OffsetSpec};
        let member = match (self.member_id, self.generation) {
            (Some(member_id), Some(generation)) => Some(silt_agent::groups::MemberRef {
                member_id,
                generation,
            }),
            (None, None) => None,
            _ => {
                return Err(Problem::bad_request(
                    "invalid_request",
                    "give both member_id and generation, or neither (a standalone commit)",
                ));
            }
        };
        Ok(GroupCommit {
            group,
            member,
            offsets: self
                .offsets
                .into_iter()
                .map(|o| OffsetSpec {
                    topic: o.topic,
                    partition: o.partition,
                    offset: o.offset,
                    metadata: o.metadata,
                })
                .collect(),
        })
    }
}

/// `POST /v1/transactions`: records and the input offsets, together.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransactionBody<'a> {
    #[serde(borrow)]
    pub produce: Bounded<RecordIn<'a>, RecordList>,
    pub commit: TransactionCommit,
    #[serde(default)]
    pub producer: Option<ProducerSeq>,
}

/// The offsets part of a transaction: [`OffsetsIn`] plus the group.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransactionCommit {
    pub group: String,
    #[serde(default)]
    pub member_id: Option<String>,
    #[serde(default)]
    pub generation: Option<u32>,
    pub offsets: Vec<OffsetIn>,
}

impl TransactionCommit {
    pub fn into_commit(self) -> Result<silt_agent::groups::GroupCommit, Problem> {
        OffsetsIn {
            member_id: self.member_id,
            generation: self.generation,
            offsets: self.offsets,
        }
        .into_commit(self.group)
    }
}
