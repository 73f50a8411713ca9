//! `ApiVersions`: what this broker speaks. One table, [`SUPPORTED`], is
//! both what is advertised and what requests are checked against.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, ResponseKind};

use crate::conn::Answer;

/// `(api, min version, max version)` of every API handled.
const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::Metadata, 0, 12),
    // Produce v0-2 are advertised and refused (see `produce`); v13 names
    // topics by id only.
    (ApiKey::Produce, 0, 12),
    // v13 and later name topics by id only.
    (ApiKey::Fetch, 4, 12),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::FindCoordinator, 0, 5),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    // v8 and later batch groups; v9 is the new protocol's member epoch.
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 7),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::ListOffsets, 1, 6),
    (ApiKey::DescribeConfigs, 1, 4),
];

pub(crate) fn supports(api: ApiKey, version: i16) -> bool {
    SUPPORTED
        .iter()
        .any(|&(a, min, max)| a == api && (min..=max).contains(&version))
}

fn keys() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .map(|&(api, min, max)| {
            let mut v = ApiVersion::default();
            v.api_key = api as i16;
            v.min_version = min;
            v.max_version = max;
            v
        })
        .collect()
}

pub(crate) fn answer(version: i16) -> Answer {
    let mut r = ApiVersionsResponse::default();
    r.api_keys = keys();
    Answer {
        body: ResponseKind::ApiVersions(r),
        version,
    }
}

/// The v0 answer to a version above the maximum (KIP-511): the client
/// retries with the highest version both sides know.
pub(crate) fn unsupported_version() -> ResponseKind {
    let mut r = ApiVersionsResponse::default();
    r.error_code = ResponseError::UnsupportedVersion.code();
    r.api_keys = keys();
    ResponseKind::ApiVersions(r)
}
