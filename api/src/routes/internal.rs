//! Endpoints agents call on each other, not part of the public API: the
//! commit sequencer's intake (`silt_agent::sequencer`). A caller presents
//! the sequencer's token, which only readers of the metadata store know.

use axum::extract::State;
use axum::http::HeaderMap;
use silt_agent::sequencer::{CommitOutcome, SegmentCommit, TOKEN_HEADER};

use crate::AppState;
use crate::extract::Json;
use crate::problem::Problem;

/// `POST /internal/v1/commit`: another agent's segment commit, committed in
/// the next batch, if this agent is the sequencer.
pub async fn commit(
    State(s): State<AppState>,
    headers: HeaderMap,
    Json(commit): Json<SegmentCommit>,
) -> Result<axum::Json<CommitOutcome>, Problem> {
    let token = headers
        .get(TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    Ok(axum::Json(s.agent.sequence_commit(token, commit).await?))
}
