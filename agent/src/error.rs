//! Agent errors: a rich internal enum, and the small [`ErrorKind`] the HTTP
//! layer maps to problems (in exactly one place, `silt_api::problem`).

use std::time::Duration;

/// Everything a produce, fetch or admin call can fail with. Cloneable (causes
/// are shared), so one flush failure can answer every producer in it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("topic {0:?} not found")]
    TopicNotFound(String),
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    #[error("topic {topic:?} has no partition {partition} (it has {partitions})")]
    PartitionNotFound {
        topic: String,
        partition: u32,
        partitions: u32,
    },
    #[error("group {0:?} not found")]
    GroupNotFound(String),
    #[error("group {0:?} already exists")]
    GroupExists(String),
    /// The topic was deleted and created again while the request was in
    /// flight; nothing was written, and a retry reaches the new topic.
    #[error("topic {0:?} was re-created while the request was in flight; retry")]
    TopicChanged(String),
    #[error("{0}")]
    InvalidArgument(String),
    /// A producer's batch failed its checks; nothing was stored.
    #[error("invalid batch ({0:?}): {1}")]
    InvalidBatch(BatchProblem, String),
    /// A conditional write was refused (fencing, sequences, membership).
    #[error(transparent)]
    Refused(silt_metadata::Refusal),
    #[error("offset {offset} is outside the log [{earliest}, {latest}]")]
    OffsetOutOfRange {
        offset: u64,
        earliest: u64,
        latest: u64,
    },
    #[error("too many bytes in flight; retry after {retry_after:?}")]
    Overloaded { retry_after: Duration },
    #[error("the agent is shutting down")]
    ShuttingDown,
    #[error("object storage: {0}")]
    Storage(#[source] std::sync::Arc<silt_segment::Error>),
    /// Stored bytes failed their checks (CRC, framing): a bug or corruption,
    /// not an outage.
    #[error("corrupt data: {0}")]
    Corrupt(#[source] std::sync::Arc<silt_segment::Error>),
    #[error("metadata: {0}")]
    Metadata(#[source] std::sync::Arc<silt_metadata::Error>),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Why a producer's batch was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchProblem {
    /// Checksum, framing, lengths or offsets are wrong.
    Corrupt,
    /// It decompresses to more than the agent accepts.
    TooLarge,
    /// Well formed, but not accepted (transactional or control batches).
    Unsupported,
}

impl From<&silt_segment::Error> for BatchProblem {
    fn from(e: &silt_segment::Error) -> Self {
        use silt_segment::{Error as S, Reason};
        match e {
            S::TooLarge { .. } => BatchProblem::TooLarge,
            S::Corrupt {
                reason: Reason::Unsupported(_),
                ..
            } => BatchProblem::Unsupported,
            _ => BatchProblem::Corrupt,
        }
    }
}

/// The stable classification of [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    AlreadyExists,
    InvalidArgument,
    /// A precondition failed; the refusal says which.
    Refused,
    OffsetOutOfRange,
    /// Back off and retry: the agent is at its memory bound.
    Overloaded,
    /// A dependency (object store, metadata) failed or the agent is stopping;
    /// retry, possibly on another agent.
    Unavailable,
    Internal,
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        use silt_metadata::ErrorKind as M;
        match self {
            Error::TopicNotFound(_) | Error::PartitionNotFound { .. } | Error::GroupNotFound(_) => {
                ErrorKind::NotFound
            }
            Error::Refused(_) => ErrorKind::Refused,
            Error::TopicExists(_) | Error::GroupExists(_) => ErrorKind::AlreadyExists,
            Error::InvalidArgument(_) | Error::InvalidBatch(..) => ErrorKind::InvalidArgument,
            Error::OffsetOutOfRange { .. } => ErrorKind::OffsetOutOfRange,
            Error::Overloaded { .. } => ErrorKind::Overloaded,
            Error::ShuttingDown | Error::Storage(_) | Error::TopicChanged(_) => {
                ErrorKind::Unavailable
            }
            Error::Metadata(e) => match e.kind() {
                M::NotFound => ErrorKind::NotFound,
                M::AlreadyExists => ErrorKind::AlreadyExists,
                M::InvalidArgument => ErrorKind::InvalidArgument,
                M::Refused => ErrorKind::Refused,
                M::Unavailable => ErrorKind::Unavailable,
                M::Internal => ErrorKind::Internal,
            },
            Error::Internal(_) | Error::Corrupt(_) => ErrorKind::Internal,
        }
    }
}

impl From<silt_metadata::Error> for Error {
    fn from(e: silt_metadata::Error) -> Self {
        match e {
            silt_metadata::Error::TopicNotFound(t) => Error::TopicNotFound(t),
            silt_metadata::Error::TopicExists(t) => Error::TopicExists(t),
            silt_metadata::Error::Invalid(m) => Error::InvalidArgument(m),
            silt_metadata::Error::GroupNotFound(g) => Error::GroupNotFound(g),
            silt_metadata::Error::GroupExists(g) => Error::GroupExists(g),
            silt_metadata::Error::Refused(r) => Error::Refused(r),
            e => Error::Metadata(std::sync::Arc::new(e)),
        }
    }
}

impl From<silt_segment::Error> for Error {
    fn from(e: silt_segment::Error) -> Self {
        use silt_segment::Error as S;
        match e {
            S::Store(_) | S::Io(_) | S::InvalidUrl { .. } | S::Timeout { .. } => {
                Error::Storage(std::sync::Arc::new(e))
            }
            S::Corrupt { .. } | S::TooLarge { .. } | S::Encode(_) => {
                Error::Corrupt(std::sync::Arc::new(e))
            }
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
