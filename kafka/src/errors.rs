//! The one place agent errors become Kafka error codes — the codes Kafka
//! clients act on: retriable ones (`REQUEST_TIMED_OUT`,
//! `UNKNOWN_TOPIC_OR_PARTITION`, `KAFKA_STORAGE_ERROR`) make them retry,
//! group codes make members rejoin, sequence codes drive idempotent
//! producers. `NOT_LEADER_OR_FOLLOWER` is never answered: every agent
//! leads every partition.

use kafka_protocol::ResponseError;
use silt_agent::{BatchProblem, Error, Refusal};

/// The Kafka error code for an agent error.
pub(crate) fn code(e: &Error) -> ResponseError {
    match e {
        Error::TopicNotFound(_) | Error::PartitionNotFound { .. } | Error::TopicChanged(_) => {
            ResponseError::UnknownTopicOrPartition
        }
        Error::TopicExists(_) => ResponseError::TopicAlreadyExists,
        Error::GroupNotFound(_) => ResponseError::GroupIdNotFound,
        Error::GroupExists(_) => ResponseError::InvalidGroupId,
        Error::InvalidArgument(_) => ResponseError::InvalidRequest,
        Error::InvalidBatch(BatchProblem::Corrupt, _) => ResponseError::CorruptMessage,
        Error::InvalidBatch(BatchProblem::TooLarge, _) => ResponseError::MessageTooLarge,
        Error::InvalidBatch(BatchProblem::Unsupported, _) => ResponseError::InvalidRecord,
        Error::Refused(r) => refusal(*r),
        Error::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        // Retried by every client; the answer's throttle time says how
        // long to back off (KIP-219).
        Error::Overloaded { .. } | Error::ShuttingDown | Error::Storage(_) | Error::Metadata(_) => {
            ResponseError::RequestTimedOut
        }
        Error::Corrupt(_) => ResponseError::KafkaStorageError,
        Error::Internal(_) => ResponseError::UnknownServerError,
    }
}

/// The Kafka error code for a refused conditional write.
pub(crate) fn refusal(r: Refusal) -> ResponseError {
    match r {
        Refusal::TopicGone => ResponseError::UnknownTopicOrPartition,
        Refusal::UnknownProducer { .. } => ResponseError::UnknownProducerId,
        Refusal::ProducerFenced { .. } => ResponseError::InvalidProducerEpoch,
        Refusal::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        Refusal::SequenceTooOld { .. } => ResponseError::DuplicateSequenceNumber,
        Refusal::UnknownMember | Refusal::GroupHasMembers => ResponseError::UnknownMemberId,
        Refusal::StaleGeneration { .. } | Refusal::NotAssigned { .. } => {
            ResponseError::IllegalGeneration
        }
        Refusal::RebalanceInProgress { .. } => ResponseError::RebalanceInProgress,
        Refusal::InconsistentProtocol => ResponseError::InconsistentGroupProtocol,
        Refusal::IdempotencyKeyReused | Refusal::RequestMismatch => ResponseError::InvalidRequest,
    }
}

/// Clamps an offset to Kafka's signed 64 bits.
pub(crate) fn offset(o: u64) -> i64 {
    i64::try_from(o).unwrap_or(i64::MAX)
}
