//! `InitProducerId` for idempotent producers: the id and epoch come from
//! the same producer records Silt's HTTP idempotent producers use, and
//! sequences are checked per partition where offsets are assigned
//! (`silt_metadata::sequences`). A producer asking to bump its epoch
//! (KIP-360, after a sequence error) gets a fresh id, which starts every
//! partition's sequence at 0 again — what Kafka does when it no longer
//! knows the producer. A transactional id is refused: transactions are not
//! offered (they are not in ApiVersions).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProducerId, ResponseKind,
};

use crate::Broker;
use crate::conn::Answer;
use crate::errors::code;

pub(crate) async fn init(broker: &Broker, req: InitProducerIdRequest, version: i16) -> Answer {
    let mut r = InitProducerIdResponse::default();
    r.producer_id = ProducerId(-1);
    r.producer_epoch = -1;
    if req.transactional_id.is_some() {
        r.error_code = ResponseError::TransactionalIdAuthorizationFailed.code();
    } else {
        match broker.agent.init_producer(None).await {
            Ok(p) => match (i64::try_from(p.id), i16::try_from(p.epoch)) {
                (Ok(id), Ok(epoch)) => {
                    r.producer_id = ProducerId(id);
                    r.producer_epoch = epoch;
                }
                _ => r.error_code = ResponseError::UnknownServerError.code(),
            },
            Err(e) => r.error_code = code(&e).code(),
        }
    }
    Answer {
        body: ResponseKind::InitProducerId(r),
        version,
    }
}
