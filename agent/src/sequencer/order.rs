//! An agent's segments get offsets in the order they were cut, while
//! their commits overlap: a segment is sent before its predecessor is
//! answered, marked to follow it (`SegmentCommit::after`), and the commit
//! transaction refuses it until the predecessor is committed. The rule
//! lives in the transaction, so it holds whichever way each commit goes
//! (the sequencer, another sequencer, directly) and whatever order they
//! arrive in.

use std::future::Future;

use silt_metadata::{CommitOutcome, Error, Result, SegmentCommit};
use tokio::sync::oneshot;

/// The segment cut before this one, and the signal that its commit has
/// finished (succeeded or not).
#[derive(Debug)]
pub struct Predecessor {
    pub segment_id: String,
    pub done: oneshot::Receiver<()>,
}

/// Commits `commit` (by `send`) after its predecessor. With `overlap`
/// (commits are sequenced, so one more in flight costs no conflicts) and
/// the predecessor still unanswered, it is sent at once, marked to follow
/// it; if the predecessor was not committed in time, or without
/// `overlap`, it waits for the predecessor to finish and is sent unmarked
/// (the predecessor is then committed, or failed for good).
pub async fn commit_in_order<F, Fut>(
    mut commit: SegmentCommit,
    prev: Option<Predecessor>,
    overlap: bool,
    mut send: F,
) -> Result<CommitOutcome>
where
    F: FnMut(SegmentCommit) -> Fut,
    Fut: Future<Output = Result<CommitOutcome>>,
{
    if let Some(mut prev) = prev {
        let unanswered = matches!(
            prev.done.try_recv(),
            Err(oneshot::error::TryRecvError::Empty)
        );
        if overlap && unanswered {
            commit.after = Some(prev.segment_id.clone());
            match send(commit.clone()).await {
                Err(Error::PredecessorPending { .. }) => {}
                answer => return answer,
            }
        }
        if unanswered {
            // (A receiver that has answered must not be polled again.)
            let _ = prev.done.await;
        }
        commit.after = None;
    }
    send(commit).await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use parking_lot::Mutex;

    use super::*;

    fn segment(id: &str) -> SegmentCommit {
        SegmentCommit {
            segment_id: id.into(),
            object: format!("segments/{id}"),
            created_ms: 0,
            committed_ms: 0,
            chunks: Vec::new(),
            units: Vec::new(),
            after: None,
        }
    }

    /// Runs `commit_in_order` for "b" after "a"; `pending_first` makes the
    /// first send answer `PredecessorPending`. Returns each send's `after`.
    async fn sends(overlap: bool, answered: bool, pending_first: bool) -> Vec<Option<String>> {
        let (done, rx) = oneshot::channel::<()>();
        if answered {
            drop(done);
        } else {
            // The predecessor finishes a little later.
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                drop(done);
            });
        }
        let seen = Arc::new(Mutex::new(Vec::new()));
        let prev = Predecessor {
            segment_id: "a".into(),
            done: rx,
        };
        let log = seen.clone();
        let answer = commit_in_order(segment("b"), Some(prev), overlap, move |c| {
            let log = log.clone();
            async move {
                let first = log.lock().is_empty();
                log.lock().push(c.after.clone());
                if first && pending_first && c.after.is_some() {
                    return Err(Error::PredecessorPending {
                        segment: c.segment_id,
                        after: "a".into(),
                    });
                }
                Ok(CommitOutcome {
                    bases: Vec::new(),
                    units: Vec::new(),
                })
            }
        })
        .await;
        assert!(answer.is_ok());
        seen.lock().clone()
    }

    #[tokio::test]
    async fn overlapping_commits_follow_their_predecessor() {
        let a = Some("a".to_owned());
        // Sequenced, predecessor unanswered: sent at once, marked.
        assert_eq!(sends(true, false, false).await, vec![a.clone()]);
        // Refused until the predecessor is decided: then again, unmarked.
        assert_eq!(sends(true, false, true).await, vec![a, None]);
        // Direct, or the predecessor already answered: sent once, unmarked.
        assert_eq!(sends(false, false, false).await, vec![None]);
        assert_eq!(sends(true, true, false).await, vec![None]);
    }
}
