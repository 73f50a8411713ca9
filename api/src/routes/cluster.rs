//! Operator views: `GET /v1/cluster` (this agent, the commit sequencer,
//! the compactor, the in-agent probe) and `GET /v1/metrics/history` (the
//! last hour of this agent's metrics).

use std::collections::BTreeMap;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use silt_agent::cluster::{ClusterView, SequencerRole};

use crate::AppState;
use crate::extract::Query;
use crate::problem::{ApiResult, Problem};

#[derive(Debug, Serialize)]
pub struct ClusterOut {
    agent: AgentOut,
    sequencer: SequencerOut,
    compactor: CompactorOut,
    probe: ProbeOut,
}

#[derive(Debug, Serialize)]
struct AgentOut {
    version: &'static str,
    started_ms: i64,
    now_ms: i64,
    shutting_down: bool,
    inflight_bytes: u64,
    max_inflight_bytes: u64,
}

#[derive(Debug, Serialize)]
struct SequencerOut {
    enabled: bool,
    /// `leader`, `follower`, or `none`: no holder, or sequencing is off
    /// here (`enabled` false); this agent's commits then go directly.
    role: &'static str,
    holder_url: Option<String>,
    lease_expires_ms: Option<i64>,
}

#[derive(Debug, Serialize)]
struct CompactorOut {
    lease: Option<LeaseOut>,
    /// The compactor's `JobStatus`: `holder`, `finished_ms`, then its
    /// report's fields (`duration_ms`, `rounds`, `last_merge_ms`,
    /// `last_collect_ms`, `report`).
    last_round: Option<serde_json::Value>,
}

#[derive(Debug, Serialize)]
struct LeaseOut {
    /// A string: lease ids are 64-bit and JSON numbers are not.
    holder: String,
    expires_ms: i64,
}

#[derive(Debug, Serialize)]
struct ProbeOut {
    enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    topic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interval_ms: Option<u64>,
}

/// `GET /v1/cluster`
pub async fn cluster(State(s): State<AppState>) -> ApiResult<axum::Json<ClusterOut>> {
    let ClusterView {
        agent,
        sequencer,
        compactor,
    } = s.agent.cluster().await?;
    let last_round = compactor.last_round.map(|st| {
        let mut out = match st.report {
            serde_json::Value::Object(report) => report,
            _ => serde_json::Map::new(),
        };
        out.insert("holder".into(), st.holder.to_string().into());
        out.insert("finished_ms".into(), st.finished_ms.into());
        serde_json::Value::Object(out)
    });
    let probe = s.console.probe.as_ref();
    Ok(axum::Json(ClusterOut {
        agent: AgentOut {
            version: env!("CARGO_PKG_VERSION"),
            started_ms: agent.started_ms,
            now_ms: agent.now_ms,
            shutting_down: agent.shutting_down,
            inflight_bytes: agent.inflight_bytes,
            max_inflight_bytes: agent.max_inflight_bytes,
        },
        sequencer: SequencerOut {
            enabled: sequencer.role != SequencerRole::Off,
            role: match sequencer.role {
                SequencerRole::Leader => "leader",
                SequencerRole::Follower => "follower",
                SequencerRole::Off | SequencerRole::Vacant => "none",
            },
            holder_url: sequencer.holder_url,
            lease_expires_ms: sequencer.lease_expires_ms,
        },
        compactor: CompactorOut {
            lease: compactor.lease.map(|l| LeaseOut {
                holder: l.holder.to_string(),
                expires_ms: l.expires_ms,
            }),
            last_round,
        },
        probe: ProbeOut {
            enabled: probe.is_some(),
            topic: probe.map(|p| p.topic.clone()),
            interval_ms: probe.map(|p| p.interval_ms),
        },
    }))
}

/// Most metric names one history request may ask for.
const MAX_HISTORY_NAMES: usize = 20;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Comma-separated metric names, as exposed on `/metrics`.
    names: Option<String>,
    /// Only the last this many samples (all by default).
    last: Option<usize>,
}

#[derive(Debug, Serialize)]
pub struct HistoryOut {
    interval_ms: u64,
    times: Vec<i64>,
    series: Vec<SeriesOut>,
    /// Values not kept because the history held its most series.
    dropped_values: u64,
}

#[derive(Debug, Serialize)]
struct SeriesOut {
    name: String,
    labels: BTreeMap<String, String>,
    values: Vec<Option<f64>>,
}

/// `GET /v1/metrics/history?names=a,b`
pub async fn history(
    State(s): State<AppState>,
    Query(q): Query<HistoryQuery>,
) -> ApiResult<axum::Json<HistoryOut>> {
    let names: Vec<&str> = q
        .names
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    let valid = |n: &&str| {
        n.len() <= 200
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
    };
    if names.is_empty() || names.len() > MAX_HISTORY_NAMES || !names.iter().all(valid) {
        return Err(Problem::bad_request(
            "invalid_metric_names",
            format!(
                "names must list 1 to {MAX_HISTORY_NAMES} metric names (letters, digits, '_', ':'), comma-separated"
            ),
        ));
    }
    let snap = s.history.select(&names, q.last);
    Ok(axum::Json(HistoryOut {
        interval_ms: snap.interval.as_millis() as u64,
        times: snap.times,
        series: snap
            .series
            .into_iter()
            .map(|sv| SeriesOut {
                name: sv.key.name,
                labels: sv.key.labels.into_iter().collect(),
                values: sv.values,
            })
            .collect(),
        dropped_values: snap.dropped_values,
    }))
}
