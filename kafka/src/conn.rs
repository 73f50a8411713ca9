//! One client connection: frames in, requests decoded, answers out in
//! order. Anything malformed ends this connection only.
//!
//! Requests are pipelined, as Kafka clients expect (librdkafka keeps up to
//! five in flight): a reader task reads frames ahead (at most
//! `max_in_flight`), each request is *started* in arrival order — a
//! produce is submitted to the batcher there, so a connection's batches
//! commit in the order sent — and answers are written in request order as
//! they complete.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader};
use kafka_protocol::protocol::{Encodable, decode_request_header_from_buffer};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::frame::{Frame, read_frame, write_frame};
use crate::{
    Broker, api_versions, commits, configs, describe, fetch, groups, metadata, offsets, produce,
    producers, topics,
};

/// An answer to encode: the response and the version to encode it at.
pub(crate) struct Answer {
    pub body: kafka_protocol::messages::ResponseKind,
    pub version: i16,
}

/// An encoded answer, and the share of the response budget it holds until
/// it is written.
pub(crate) struct Reply {
    bytes: BytesMut,
    _held: Option<OwnedSemaphorePermit>,
}

impl From<BytesMut> for Reply {
    fn from(bytes: BytesMut) -> Self {
        Self { bytes, _held: None }
    }
}

/// A started request: resolves to its answer (`None`: no answer due).
type Started = BoxFuture<'static, anyhow::Result<Option<Reply>>>;

pub(crate) async fn serve(
    broker: Arc<Broker>,
    stream: TcpStream,
    addr: SocketAddr,
    stop: CancellationToken,
) {
    let span = tracing::info_span!("kafka_connection", %addr);
    async move {
        let (r, mut w) = stream.into_split();
        let depth = broker.config.max_in_flight.max(1);
        let (frames_tx, mut frames) = mpsc::channel(depth);
        let reader = tokio::spawn(read_frames(broker.clone(), r, frames_tx).in_current_span());
        let host = addr.ip().to_string();
        let mut in_flight: FuturesOrdered<Started> = FuturesOrdered::new();
        let mut reading = true;
        while reading || !in_flight.is_empty() {
            tokio::select! {
                frame = frames.recv(), if reading && in_flight.len() < depth => match frame {
                    Some(frame) => match start(&broker, frame, &host).await {
                        Ok(started) => in_flight.push_back(started),
                        Err(e) => {
                            tracing::warn!(error = %e, "closing the connection: malformed request");
                            break;
                        }
                    },
                    None => reading = false,
                },
                Some(done) = in_flight.next() => match done {
                    Ok(Some(reply)) => {
                        let write = write_frame(&mut w, &reply.bytes);
                        match tokio::time::timeout(broker.config.frame_timeout, write).await {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => {
                                tracing::debug!(error = %e, "client went away");
                                break;
                            }
                            Err(_) => {
                                tracing::warn!("closing the connection: the client stopped reading");
                                break;
                            }
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "closing the connection: request failed");
                        break;
                    }
                },
                () = stop.cancelled() => break,
            }
        }
        reader.abort();
    }
    .instrument(span)
    .await;
}

/// Reads frames until the client stops, idles out or sends a bad frame.
async fn read_frames(broker: Arc<Broker>, mut r: OwnedReadHalf, out: mpsc::Sender<Frame>) {
    let c = &broker.config;
    loop {
        // Idle until a frame starts; then it must arrive whole in time.
        let mut first = [0u8; 1];
        match tokio::time::timeout(c.idle_timeout, r.peek(&mut first)).await {
            Err(_) => {
                tracing::debug!("closing an idle connection");
                return;
            }
            Ok(Ok(0) | Err(_)) => return,
            Ok(Ok(_)) => {}
        }
        let read = tokio::time::timeout(
            c.frame_timeout,
            read_frame(&mut r, c.max_frame_bytes, &broker.frames),
        );
        match read.await {
            Err(_) => {
                tracing::warn!("closing the connection: a frame did not arrive in time");
                return;
            }
            Ok(Ok(Some(frame))) => {
                if out.send(frame).await.is_err() {
                    return;
                }
            }
            Ok(Ok(None)) => return,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "closing the connection: bad frame");
                return;
            }
        }
    }
}

/// Decodes one request and starts it; the frame (and its share of the
/// byte budget) is held until the answer is ready.
async fn start(broker: &Arc<Broker>, frame: Frame, host: &str) -> anyhow::Result<Started> {
    let mut body = frame.body.clone();
    anyhow::ensure!(body.len() >= 8, "a request of {} bytes", body.len());
    let key = (&body[0..2]).get_i16();
    let version = (&body[2..4]).get_i16();
    let correlation_id = (&body[4..8]).get_i32();
    let ready = |bytes: anyhow::Result<BytesMut>| -> Started {
        Box::pin(async { bytes.map(|b| Some(b.into())) })
    };
    if key == ApiKey::ApiVersions as i16 && !api_versions::supports(ApiKey::ApiVersions, version) {
        // KIP-511: answer v0, whatever the request's version and header.
        let answer = Answer {
            body: api_versions::unsupported_version(),
            version: 0,
        };
        return Ok(ready(encode(correlation_id, ApiKey::ApiVersions, answer)));
    }
    let api = ApiKey::try_from(key).map_err(|()| anyhow::anyhow!("unknown API key {key}"))?;
    anyhow::ensure!(
        api_versions::supports(api, version),
        "{api:?} v{version} is not supported (see ApiVersions)"
    );
    let header: RequestHeader = decode_request_header_from_buffer(&mut body)?;
    if api == ApiKey::Produce && version < produce::MIN_VERSION {
        let refused = produce::refuse_legacy(version, correlation_id, body)
            .ok_or_else(|| anyhow::anyhow!("malformed Produce v{version}"));
        return Ok(ready(refused));
    }
    let request = RequestKind::decode(api, &mut body, version)?;
    let span = tracing::debug_span!("kafka_request", ?api, version, client = ?header.client_id);
    if let RequestKind::Produce(req) = request {
        let answer = produce::submit(broker, req, version)
            .instrument(span.clone())
            .await;
        return Ok(Box::pin(
            async move {
                let answer = answer.await;
                drop(frame);
                answer
                    .map(|a| encode(correlation_id, api, a).map(Reply::from))
                    .transpose()
            }
            .instrument(span),
        ));
    }
    let broker = broker.clone();
    let client = Client {
        id: header.client_id.as_deref().unwrap_or_default().to_owned(),
        host: host.to_owned(),
    };
    Ok(Box::pin(
        async move {
            let (answer, held) = match request {
                RequestKind::Fetch(req) => fetch::fetch(&broker, req, version).await,
                request => (answer(&broker, &client, api, request, version).await?, None),
            };
            drop(frame);
            let bytes = encode(correlation_id, api, answer)?;
            Ok(Some(Reply { bytes, _held: held }))
        }
        .instrument(span),
    ))
}

/// Who sent a request.
pub(crate) struct Client {
    pub id: String,
    pub host: String,
}

async fn answer(
    broker: &Broker,
    client: &Client,
    api: ApiKey,
    request: RequestKind,
    version: i16,
) -> anyhow::Result<Answer> {
    Ok(match request {
        RequestKind::ApiVersions(_) => api_versions::answer(version),
        RequestKind::Metadata(req) => metadata::answer(broker, req, version).await?,
        RequestKind::ListOffsets(req) => offsets::list(broker, req, version).await,
        RequestKind::DescribeConfigs(req) => configs::describe(broker, req, version).await,
        RequestKind::CreateTopics(req) => topics::create(broker, req, version).await,
        RequestKind::DeleteTopics(req) => topics::delete(broker, req, version).await,
        RequestKind::InitProducerId(req) => producers::init(broker, req, version).await,
        RequestKind::FindCoordinator(req) => groups::find_coordinator(broker, req, version),
        RequestKind::JoinGroup(req) => groups::join(broker, req, version, client).await,
        RequestKind::SyncGroup(req) => groups::sync(broker, req, version).await,
        RequestKind::Heartbeat(req) => groups::heartbeat(broker, req, version).await,
        RequestKind::LeaveGroup(req) => groups::leave(broker, req, version).await,
        RequestKind::OffsetCommit(req) => commits::commit(broker, req, version).await,
        RequestKind::OffsetFetch(req) => commits::fetch(broker, req, version).await,
        RequestKind::DescribeGroups(req) => describe::describe(broker, req, version).await,
        RequestKind::ListGroups(req) => describe::list(broker, req, version).await,
        _ => anyhow::bail!("{api:?} is advertised but not handled"),
    })
}

fn encode(correlation_id: i32, api: ApiKey, answer: Answer) -> anyhow::Result<BytesMut> {
    let mut out = BytesMut::new();
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    header.encode(&mut out, api.response_header_version(answer.version))?;
    answer.body.encode(&mut out, answer.version)?;
    Ok(out)
}
