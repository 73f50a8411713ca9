use crate::kv::{ErrorClass, KvError};

/// Everything that can go wrong in a metadata call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("topic {0:?} not found")]
    TopicNotFound(String),
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    #[error("group {0:?} not found")]
    GroupNotFound(String),
    #[error("group {0:?} already exists")]
    GroupExists(String),
    /// A conditional write was refused; nothing of it was applied.
    #[error(transparent)]
    Refused(#[from] crate::values::Refusal),
    #[error("{0}")]
    Invalid(String),
    /// The commit was refused for good, nothing of it applied: its segment
    /// was garbage-collected or is too old to commit. The records were never
    /// acknowledged; their producers must send them again.
    #[error("segment {segment}: {reason}")]
    CommitRefused {
        segment: String,
        reason: &'static str,
    },
    /// The segment must follow one that is not committed (yet): nothing of
    /// it was applied; commit it again once its predecessor is decided.
    #[error("segment {segment} waits for segment {after}")]
    PredecessorPending { segment: String, after: String },
    #[error("metadata store: {0}")]
    Kv(#[from] KvError),
    #[error("corrupt metadata: malformed {0}")]
    Corrupt(&'static str),
    #[error("invalid metadata URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
}

/// The small, stable classification callers branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    AlreadyExists,
    InvalidArgument,
    /// A precondition of a conditional write failed (fencing, sequence
    /// numbers, group membership); see [`crate::values::Refusal`].
    Refused,
    /// The store is unreachable, overloaded or contended past the retry
    /// budget; the caller may retry later. `MaybeCommitted` also lands here.
    Unavailable,
    /// A bug or corruption; retrying will not help.
    Internal,
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::TopicNotFound(_) | Error::GroupNotFound(_) => ErrorKind::NotFound,
            Error::Refused(_) => ErrorKind::Refused,
            Error::TopicExists(_) | Error::GroupExists(_) => ErrorKind::AlreadyExists,
            Error::Invalid(_) | Error::InvalidUrl { .. } => ErrorKind::InvalidArgument,
            Error::CommitRefused { .. } | Error::PredecessorPending { .. } => {
                ErrorKind::Unavailable
            }
            Error::Kv(e) if e.class == ErrorClass::Fatal => ErrorKind::Internal,
            Error::Kv(_) => ErrorKind::Unavailable,
            Error::Corrupt(_) => ErrorKind::Internal,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
