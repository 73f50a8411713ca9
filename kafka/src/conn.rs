//! One client connection: frames in, requests decoded, answers out in
//! order. Anything malformed ends this connection only.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader};
use kafka_protocol::protocol::{Encodable, decode_request_header_from_buffer};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::frame::{read_frame, write_frame};
use crate::{Broker, api_versions, configs, metadata, offsets, topics};

/// An answer to encode: the response and the version to encode it at.
pub(crate) struct Answer {
    pub body: kafka_protocol::messages::ResponseKind,
    pub version: i16,
}

pub(crate) async fn serve(
    broker: Arc<Broker>,
    stream: TcpStream,
    addr: SocketAddr,
    stop: CancellationToken,
) {
    let span = tracing::info_span!("kafka_connection", %addr);
    async move {
        let (mut r, mut w) = stream.into_split();
        loop {
            let read = tokio::select! {
                f = tokio::time::timeout(broker.config.idle_timeout, read_frame(&mut r, broker.config.max_frame_bytes, &broker.frames)) => f,
                () = stop.cancelled() => return,
            };
            let frame = match read {
                Err(_) => {
                    tracing::debug!("closing an idle connection");
                    return;
                }
                Ok(Ok(Some(frame))) => frame,
                Ok(Ok(None)) => return,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "closing the connection: bad frame");
                    return;
                }
            };
            let answer = match handle(&broker, frame.body.clone()).await {
                Ok(Some(bytes)) => bytes,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "closing the connection: malformed request");
                    return;
                }
            };
            if let Err(e) = write_frame(&mut w, &answer).await {
                tracing::debug!(error = %e, "client went away");
                return;
            }
        }
    }
    .instrument(span)
    .await;
}

/// Decodes and answers one request frame; `None` if no answer is due.
async fn handle(broker: &Broker, mut frame: Bytes) -> anyhow::Result<Option<BytesMut>> {
    anyhow::ensure!(frame.len() >= 8, "a request of {} bytes", frame.len());
    let key = (&frame[0..2]).get_i16();
    let version = (&frame[2..4]).get_i16();
    let correlation_id = (&frame[4..8]).get_i32();
    if key == ApiKey::ApiVersions as i16 && !api_versions::supports(ApiKey::ApiVersions, version) {
        // KIP-511: answer v0, whatever the request's version and header.
        return encode(
            correlation_id,
            ApiKey::ApiVersions,
            Answer {
                body: api_versions::unsupported_version(),
                version: 0,
            },
        )
        .map(Some);
    }
    let api = ApiKey::try_from(key).map_err(|()| anyhow::anyhow!("unknown API key {key}"))?;
    anyhow::ensure!(
        api_versions::supports(api, version),
        "{api:?} v{version} is not supported (see ApiVersions)"
    );
    let header: RequestHeader = decode_request_header_from_buffer(&mut frame)?;
    let request = RequestKind::decode(api, &mut frame, version)?;
    let span = tracing::debug_span!("kafka_request", ?api, version, client = ?header.client_id);
    let answer = match request {
        RequestKind::ApiVersions(_) => api_versions::answer(version),
        RequestKind::Metadata(req) => {
            metadata::answer(broker, req, version)
                .instrument(span)
                .await?
        }
        RequestKind::ListOffsets(req) => offsets::list(broker, req, version).instrument(span).await,
        RequestKind::DescribeConfigs(req) => {
            configs::describe(broker, req, version)
                .instrument(span)
                .await
        }
        RequestKind::CreateTopics(req) => {
            topics::create(broker, req, version).instrument(span).await
        }
        RequestKind::DeleteTopics(req) => {
            topics::delete(broker, req, version).instrument(span).await
        }
        _ => anyhow::bail!("{api:?} is advertised but not handled"),
    };
    encode(correlation_id, api, answer).map(Some)
}

fn encode(correlation_id: i32, api: ApiKey, answer: Answer) -> anyhow::Result<BytesMut> {
    let mut out = BytesMut::new();
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    header.encode(&mut out, api.response_header_version(answer.version))?;
    answer.body.encode(&mut out, answer.version)?;
    Ok(out)
}
