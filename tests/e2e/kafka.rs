//! The Kafka listener of `silt dev`, spoken to over TCP with an independent
//! encoder (the `kafka-protocol` crate's client side): version negotiation
//! as clients do it (KIP-511), Metadata as clients read it, and bad frames
//! closing only their own connection.

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, ListOffsetsRequest, ListOffsetsResponse,
    MetadataRequest, MetadataResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{Silt, tempdir};

/// A raw Kafka connection.
pub(crate) struct Conn {
    stream: TcpStream,
    correlation: i32,
}

impl Conn {
    pub(crate) async fn open(addr: &str) -> Self {
        Self {
            stream: TcpStream::connect(addr).await.unwrap(),
            correlation: 0,
        }
    }

    pub(crate) async fn send_frame(&mut self, body: &[u8]) {
        self.stream
            .write_all(&(body.len() as u32).to_be_bytes())
            .await
            .unwrap();
        self.stream.write_all(body).await.unwrap();
    }

    /// The next frame, or `None` if the server closed the connection.
    pub(crate) async fn recv_frame(&mut self) -> Option<Bytes> {
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).await.ok()?;
        let mut body = vec![0u8; u32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut body).await.ok()?;
        Some(body.into())
    }

    /// Sends `req` as `api` v`version`; returns the body after the header
    /// (decoded at `answer_version`'s header version).
    pub(crate) async fn call<R: Encodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        req: &R,
        answer_version: i16,
    ) -> Bytes {
        self.correlation += 1;
        let mut header = RequestHeader::default();
        header.request_api_key = api as i16;
        header.request_api_version = version;
        header.correlation_id = self.correlation;
        header.client_id = Some(StrBytes::from_static_str("silt-e2e"));
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, api.request_header_version(version))
            .unwrap();
        req.encode(&mut buf, version).unwrap();
        self.send_frame(&buf).await;
        let mut answer = self.recv_frame().await.expect("an answer");
        let h = ResponseHeader::decode(&mut answer, api.response_header_version(answer_version))
            .unwrap();
        assert_eq!(h.correlation_id, self.correlation);
        answer
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_metadata_and_bad_frames() {
    let dir = tempdir();
    let silt = Silt::dev(dir.path(), &[]);
    let addr = silt.kafka.clone().expect("silt dev listens for Kafka");
    silt.client().create_topic("orders", 3).await;
    let mut c = Conn::open(&addr).await;

    // ApiVersions v3: only what is handled is advertised.
    let mut req = ApiVersionsRequest::default();
    req.client_software_name = StrBytes::from_static_str("silt-e2e");
    req.client_software_version = StrBytes::from_static_str("1");
    let mut body = c.call(ApiKey::ApiVersions, 3, &req, 3).await;
    let r = ApiVersionsResponse::decode(&mut body, 3).unwrap();
    assert_eq!(r.error_code, 0);
    let keys: Vec<(i16, i16, i16)> = r
        .api_keys
        .iter()
        .map(|k| (k.api_key, k.min_version, k.max_version))
        .collect();
    assert!(
        keys.contains(&(ApiKey::ApiVersions as i16, 0, 3)),
        "{keys:?}"
    );
    assert!(keys.contains(&(ApiKey::Metadata as i16, 0, 12)), "{keys:?}");
    assert!(
        !keys.iter().any(|k| k.0 == ApiKey::EndTxn as i16),
        "transactions are not advertised"
    );

    // A version above the maximum: the v0 answer, UNSUPPORTED_VERSION and
    // the key list (KIP-511), so the client can retry lower.
    let mut body = c.call(ApiKey::ApiVersions, 4, &req, 0).await;
    let r = ApiVersionsResponse::decode(&mut body, 0).unwrap();
    assert_eq!(r.error_code, 35);
    assert!(!r.api_keys.is_empty());

    // Metadata v12, all topics (a null list): this agent leads every
    // partition.
    let mut all = MetadataRequest::default();
    all.topics = None;
    let mut body = c.call(ApiKey::Metadata, 12, &all, 12).await;
    let m = MetadataResponse::decode(&mut body, 12).unwrap();
    assert_eq!(m.brokers.len(), 1);
    let broker = &m.brokers[0];
    assert_eq!(format!("{}:{}", broker.host, broker.port), addr);
    let t = m
        .topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some("orders"))
        .expect("the topic is listed");
    assert_eq!(t.error_code, 0);
    assert!(!t.topic_id.is_nil());
    assert_eq!(t.partitions.len(), 3);
    assert!(t.partitions.iter().all(|p| p.leader_id == broker.node_id));

    // Metadata v1 for a missing topic: UNKNOWN_TOPIC_OR_PARTITION.
    let mut req = MetadataRequest::default();
    let mut wanted = MetadataRequestTopic::default();
    wanted.name = Some(TopicName(StrBytes::from_static_str("nope")));
    req.topics = Some(vec![wanted]);
    let mut body = c.call(ApiKey::Metadata, 1, &req, 1).await;
    let m = MetadataResponse::decode(&mut body, 1).unwrap();
    assert_eq!(m.topics[0].error_code, 3);

    // Garbage closes that connection only; an absurd frame size too.
    let mut bad = Conn::open(&addr).await;
    bad.send_frame(&[0xff; 12]).await;
    assert!(bad.recv_frame().await.is_none(), "closed");
    let mut huge = Conn::open(&addr).await;
    huge.stream.write_all(&[0x7f, 0, 0, 0]).await.unwrap();
    assert!(huge.recv_frame().await.is_none(), "closed");
    // 14 bytes claiming 2^31 topics: the decoder must not size anything
    // from that count (unpatched, the process aborts).
    let mut hostile = Conn::open(&addr).await;
    hostile
        .send_frame(&[0, 3, 0, 0, 0, 0, 0, 9, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff])
        .await;
    assert!(hostile.recv_frame().await.is_none(), "closed");
    let mut body = c.call(ApiKey::Metadata, 12, &all, 12).await;
    let m = MetadataResponse::decode(&mut body, 12).unwrap();
    assert_eq!(m.topics.len(), 1, "the first connection still works");
    assert_eq!(body.remaining(), 0);
}

fn creatable(
    name: &'static str,
    partitions: i32,
    configs: &[(&'static str, &'static str)],
) -> CreatableTopic {
    let mut t = CreatableTopic::default();
    t.name = TopicName(StrBytes::from_static_str(name));
    t.num_partitions = partitions;
    t.replication_factor = 3;
    t.configs = configs
        .iter()
        .map(|(k, v)| {
            let mut c = CreatableTopicConfig::default();
            c.name = StrBytes::from_static_str(k);
            c.value = Some(StrBytes::from_static_str(v));
            c
        })
        .collect();
    t
}

/// Topics created and deleted over Kafka are the same topics HTTP sees,
/// with Kafka's error codes for what cannot be done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_are_created_and_deleted_over_kafka() {
    let dir = tempdir();
    let silt = Silt::dev(dir.path(), &[]);
    let mut c = Conn::open(&silt.kafka.clone().unwrap()).await;
    let http = silt.client();

    let mut req = CreateTopicsRequest::default();
    req.timeout_ms = 5000;
    req.topics = vec![
        creatable(
            "clicks",
            4,
            &[("retention.ms", "86400000"), ("compression.type", "zstd")],
        ),
        creatable("zero", 0, &[]),
        creatable("odd-config", 1, &[("segment.bytes", "1")]),
        creatable("bad name!", 1, &[]),
    ];
    let mut body = c.call(ApiKey::CreateTopics, 7, &req, 7).await;
    let r = CreateTopicsResponse::decode(&mut body, 7).unwrap();
    let codes: Vec<i16> = r.topics.iter().map(|t| t.error_code).collect();
    assert_eq!(codes, [0, 37, 40, 17], "{r:?}"); // ok, INVALID_PARTITIONS, INVALID_CONFIG, INVALID_TOPIC
    assert_eq!(r.topics[0].num_partitions, 4);
    assert!(!r.topics[0].topic_id.is_nil());
    let described = http.get("/v1/topics/clicks").await;
    assert_eq!(described.status, 200);
    assert_eq!(described.body["partitions"], 4, "{:?}", described.body);
    assert_eq!(described.body["config"]["compression"], "zstd");
    assert_eq!(http.get("/v1/topics/zero").await.status, 404);

    // Again: TOPIC_ALREADY_EXISTS. Validate-only creates nothing.
    req.topics = vec![creatable("clicks", 4, &[])];
    let mut body = c.call(ApiKey::CreateTopics, 5, &req, 5).await;
    assert_eq!(
        CreateTopicsResponse::decode(&mut body, 5).unwrap().topics[0].error_code,
        36
    );
    req.topics = vec![creatable("dry", 2, &[])];
    req.validate_only = true;
    let mut body = c.call(ApiKey::CreateTopics, 2, &req, 2).await;
    assert_eq!(
        CreateTopicsResponse::decode(&mut body, 2).unwrap().topics[0].error_code,
        0
    );
    assert_eq!(http.get("/v1/topics/dry").await.status, 404);

    // Its configs, under Kafka's names; a filter; a missing topic.
    let describe = |name: &'static str, keys: Option<Vec<&'static str>>| {
        let mut res = DescribeConfigsResource::default();
        res.resource_type = 2;
        res.resource_name = StrBytes::from_static_str(name);
        res.configuration_keys =
            keys.map(|k| k.into_iter().map(StrBytes::from_static_str).collect());
        let mut req = DescribeConfigsRequest::default();
        req.resources = vec![res];
        req
    };
    let mut body = c
        .call(ApiKey::DescribeConfigs, 4, &describe("clicks", None), 4)
        .await;
    let r = DescribeConfigsResponse::decode(&mut body, 4).unwrap();
    let configs: Vec<(String, Option<String>)> = r.results[0]
        .configs
        .iter()
        .map(|e| (e.name.to_string(), e.value.as_ref().map(|v| v.to_string())))
        .collect();
    assert!(
        configs.contains(&("retention.ms".into(), Some("86400000".into()))),
        "{configs:?}"
    );
    assert!(
        configs.contains(&("compression.type".into(), Some("zstd".into()))),
        "{configs:?}"
    );
    let mut body = c
        .call(
            ApiKey::DescribeConfigs,
            1,
            &describe("clicks", Some(vec!["retention.ms"])),
            1,
        )
        .await;
    let r = DescribeConfigsResponse::decode(&mut body, 1).unwrap();
    assert_eq!(r.results[0].configs.len(), 1);
    let mut body = c
        .call(ApiKey::DescribeConfigs, 4, &describe("missing", None), 4)
        .await;
    let r = DescribeConfigsResponse::decode(&mut body, 4).unwrap();
    assert_eq!(r.results[0].error_code, 3);

    // Delete by name (v1) and a missing one.
    let mut del = DeleteTopicsRequest::default();
    del.timeout_ms = 5000;
    del.topic_names = vec![
        TopicName(StrBytes::from_static_str("clicks")),
        TopicName(StrBytes::from_static_str("missing")),
    ];
    let mut body = c.call(ApiKey::DeleteTopics, 1, &del, 1).await;
    let r = DeleteTopicsResponse::decode(&mut body, 1).unwrap();
    let codes: Vec<i16> = r.responses.iter().map(|t| t.error_code).collect();
    assert_eq!(codes, [0, 3]);
    assert_eq!(http.get("/v1/topics/clicks").await.status, 404);

    // Delete by topic id (v6), the id Metadata and CreateTopics gave.
    req.validate_only = false;
    req.topics = vec![creatable("by-id", 1, &[])];
    let mut body = c.call(ApiKey::CreateTopics, 7, &req, 7).await;
    let id = CreateTopicsResponse::decode(&mut body, 7).unwrap().topics[0].topic_id;
    let mut state = DeleteTopicState::default();
    state.topic_id = id;
    let mut del = DeleteTopicsRequest::default();
    del.topics = vec![state];
    let mut body = c.call(ApiKey::DeleteTopics, 6, &del, 6).await;
    let r = DeleteTopicsResponse::decode(&mut body, 6).unwrap();
    assert_eq!(r.responses[0].error_code, 0, "{r:?}");
    assert_eq!(
        r.responses[0].name.as_ref().map(|n| n.0.as_str()),
        Some("by-id")
    );
    assert_eq!(http.get("/v1/topics/by-id").await.status, 404);
}

/// ListOffsets: earliest and latest, and by timestamp the first offset at
/// or after it — records produced over HTTP, offsets asked over Kafka.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_are_listed_by_position_and_timestamp() {
    let dir = tempdir();
    let silt = Silt::dev(dir.path(), &[]);
    let http = silt.client();
    http.create_topic("times", 1).await;
    // Timestamps need not grow with offsets: 1000, 3000, 2000, 4000, ...
    let stamps = [1000i64, 3000, 2000, 4000, 5000];
    for (i, ts) in stamps.iter().enumerate() {
        let a = http
            .post(
                "/v1/topics/times/partitions/0/records",
                &serde_json::json!({"records": [{"value": format!("r{i}"), "timestamp": ts}]}),
            )
            .await;
        assert_eq!(a.status, 200, "{:?}", a.body);
    }
    let mut c = Conn::open(&silt.kafka.clone().unwrap()).await;
    let ask = |topic: &'static str, at: &[i64]| {
        let mut t = ListOffsetsTopic::default();
        t.name = TopicName(StrBytes::from_static_str(topic));
        t.partitions = at
            .iter()
            .map(|&ts| {
                let mut p = ListOffsetsPartition::default();
                p.timestamp = ts;
                p
            })
            .collect();
        let mut req = ListOffsetsRequest::default();
        req.topics = vec![t];
        req
    };
    let req = ask("times", &[-2, -1, 2500, 2000, 6000]);
    let mut body = c.call(ApiKey::ListOffsets, 6, &req, 6).await;
    let r = ListOffsetsResponse::decode(&mut body, 6).unwrap();
    let got: Vec<(i16, i64, i64)> = r.topics[0]
        .partitions
        .iter()
        .map(|p| (p.error_code, p.offset, p.timestamp))
        .collect();
    assert_eq!(
        got,
        [
            (0, 0, -1),
            (0, 5, -1),
            (0, 1, 3000),
            (0, 1, 3000),
            (0, -1, -1)
        ],
        "first record at or after each time, in offset order"
    );
    let req = ask("nope", &[-1]);
    let mut body = c.call(ApiKey::ListOffsets, 1, &req, 1).await;
    let r = ListOffsetsResponse::decode(&mut body, 1).unwrap();
    assert_eq!(r.topics[0].partitions[0].error_code, 3);
}
