//! Produce and Fetch over the Kafka wire, with an independent encoder: the
//! codes Kafka clients act on, whole batches out (a fetch from inside a
//! batch returns the batch), long-polls woken by HTTP produce, idempotent
//! sequences, and bad batches refused without closing the connection.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, InitProducerIdRequest, InitProducerIdResponse,
    MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use serde_json::json;
use silt_segment::{Compression, Record};

use crate::common::{Silt, tempdir};
use crate::kafka::Conn;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

/// A v2 batch of `n` records `{tag}-{i}`, optionally an idempotent producer's.
fn batch(tag: &str, n: usize, producer: Option<(i64, i16, i32)>) -> Bytes {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            timestamp: 1_700_000_000_000 + i as i64,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!("{tag}-{i}"))),
            headers: vec![],
        })
        .collect();
    let mut out = Vec::new();
    silt_segment::batch::encode(&mut out, 0, &records, Compression::Lz4).unwrap();
    if let Some((id, epoch, seq)) = producer {
        out[43..51].copy_from_slice(&id.to_be_bytes());
        out[51..53].copy_from_slice(&epoch.to_be_bytes());
        out[53..57].copy_from_slice(&seq.to_be_bytes());
        let crc = crc32c::crc32c(&out[21..]);
        out[17..21].copy_from_slice(&crc.to_be_bytes());
    }
    out.into()
}

fn produce_req(topic: &str, partition: i32, records: Bytes, acks: i16) -> ProduceRequest {
    let mut p = PartitionProduceData::default();
    p.index = partition;
    p.records = Some(records);
    let mut t = TopicProduceData::default();
    t.name = name(topic);
    t.partition_data = vec![p];
    let mut r = ProduceRequest::default();
    r.acks = acks;
    r.timeout_ms = 10_000;
    r.topic_data = vec![t];
    r
}

/// `(error code, base offset)` of a one-partition produce.
async fn produce(c: &mut Conn, topic: &str, partition: i32, records: Bytes) -> (i16, i64) {
    let req = produce_req(topic, partition, records, -1);
    let mut body = c.call(ApiKey::Produce, 9, &req, 9).await;
    let r = ProduceResponse::decode(&mut body, 9).unwrap();
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

fn fetch_req(topic: &str, partition: i32, offset: i64, wait_ms: i32) -> FetchRequest {
    let mut p = FetchPartition::default();
    p.partition = partition;
    p.fetch_offset = offset;
    p.partition_max_bytes = 1 << 20;
    let mut t = FetchTopic::default();
    t.topic = name(topic);
    t.partitions = vec![p];
    let mut r = FetchRequest::default();
    r.max_wait_ms = wait_ms;
    r.min_bytes = 1;
    r.max_bytes = 1 << 20;
    r.topics = vec![t];
    r
}

/// Error code, high watermark and the records section of a one-partition fetch.
async fn fetch(
    c: &mut Conn,
    topic: &str,
    partition: i32,
    offset: i64,
    wait_ms: i32,
) -> (i16, i64, Bytes) {
    let req = fetch_req(topic, partition, offset, wait_ms);
    let mut body = c.call(ApiKey::Fetch, 11, &req, 11).await;
    let r = FetchResponse::decode(&mut body, 11).unwrap();
    let p = &r.responses[0].partitions[0];
    (
        p.error_code,
        p.high_watermark,
        p.records.clone().unwrap_or_default(),
    )
}

/// `(base offset, values)` of each batch in a records section.
fn batches(records: &Bytes) -> Vec<(i64, Vec<String>)> {
    let mut out = Vec::new();
    for b in silt_segment::batch::Batches::new(records) {
        let (h, bytes) = b.unwrap();
        let mut values = Vec::new();
        silt_segment::batch::decode_records(&records.slice_ref(bytes), &h, 0, 1 << 20, |_, r| {
            values.push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
            Ok(())
        })
        .unwrap();
        out.push((h.base_offset, values));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_in_batches_out() {
    let dir = tempdir();
    let silt = Silt::dev(dir.path(), &["--kafka-max-message-bytes", "100000"]);
    let client = silt.client();
    client.create_topic("w", 2).await;
    let mut c = Conn::open(silt.kafka.as_deref().unwrap()).await;

    assert_eq!(produce(&mut c, "w", 0, batch("a", 5, None)).await, (0, 0));
    assert_eq!(produce(&mut c, "w", 0, batch("b", 3, None)).await, (0, 5));
    // From inside the second batch: that whole batch, at its own offset.
    let (code, hwm, records) = fetch(&mut c, "w", 0, 6, 0).await;
    assert_eq!((code, hwm), (0, 8));
    let got = batches(&records);
    assert_eq!(
        got,
        vec![(5, vec!["b-0".into(), "b-1".into(), "b-2".into()])]
    );
    // HTTP reads the same records at the same offsets.
    let http = client.read_all("w", 0, 0, 8).await;
    assert_eq!(http[6]["value"], "b-1");
    assert_eq!(http[6]["offset"], 6);

    // Out of range, unknown topic and partition.
    assert_eq!(
        fetch(&mut c, "w", 0, 100, 0).await.0,
        1,
        "OFFSET_OUT_OF_RANGE"
    );
    assert_eq!(produce(&mut c, "nope", 0, batch("x", 1, None)).await.0, 3);
    assert_eq!(produce(&mut c, "w", 9, batch("x", 1, None)).await.0, 3);
    // A damaged batch and an oversized one are refused; the connection stays.
    let mut bad = batch("c", 2, None).to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0x40;
    assert_eq!(
        produce(&mut c, "w", 0, bad.into()).await.0,
        2,
        "CORRUPT_MESSAGE"
    );
    let big: Vec<Record> = vec![Record {
        value: Some(Bytes::from(vec![b'x'; 200_000])),
        ..Record::default()
    }];
    let mut out = Vec::new();
    silt_segment::batch::encode(&mut out, 0, &big, Compression::None).unwrap();
    assert_eq!(
        produce(&mut c, "w", 0, out.into()).await.0,
        10,
        "MESSAGE_TOO_LARGE"
    );
    assert_eq!(
        fetch(&mut c, "w", 0, 8, 0).await.1,
        8,
        "nothing of them was written"
    );

    // acks=0: no answer at all; the next request's answer comes next.
    let req = produce_req("w", 1, batch("quiet", 1, None), 0);
    let mut buf = BytesMut::new();
    use kafka_protocol::protocol::Encodable;
    let mut h = kafka_protocol::messages::RequestHeader::default();
    h.request_api_key = ApiKey::Produce as i16;
    h.request_api_version = 9;
    h.correlation_id = 999;
    h.encode(&mut buf, ApiKey::Produce.request_header_version(9))
        .unwrap();
    req.encode(&mut buf, 9).unwrap();
    c.send_frame(&buf).await;
    let (_, hwm, _) = fetch(&mut c, "w", 1, 0, 2_000).await;
    assert_eq!(hwm, 1, "the acks=0 batch was written, and answered nothing");

    // Long-poll at the high watermark, woken by an HTTP produce.
    let poll = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let (code, _, records) = fetch(&mut c, "w", 0, 8, 10_000).await;
        (code, batches(&records), started.elapsed())
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    client
        .produce("w", &json!([{"partition": 0, "value": "woke"}]))
        .await;
    let (code, got, took) = poll.await.unwrap();
    assert_eq!(code, 0);
    assert_eq!(got, vec![(8, vec!["woke".into()])]);
    assert!(
        took.as_millis() < 9_000,
        "the long-poll waited out its timeout: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_sequences_and_legacy_versions() {
    let dir = tempdir();
    let silt = Silt::dev(dir.path(), &[]);
    silt.client().create_topic("s", 1).await;
    let mut c = Conn::open(silt.kafka.as_deref().unwrap()).await;
    let mut init = InitProducerIdRequest::default();
    init.transactional_id = None;
    init.transaction_timeout_ms = 60_000;
    let mut body = c.call(ApiKey::InitProducerId, 4, &init, 4).await;
    let pid = InitProducerIdResponse::decode(&mut body, 4).unwrap();
    assert_eq!(pid.error_code, 0);
    let (id, epoch) = (pid.producer_id.0, pid.producer_epoch);

    assert_eq!(
        produce(&mut c, "s", 0, batch("p", 4, Some((id, epoch, 0)))).await,
        (0, 0)
    );
    assert_eq!(
        produce(&mut c, "s", 0, batch("q", 2, Some((id, epoch, 4)))).await,
        (0, 4)
    );
    // A retry is answered with its original offset and written once.
    assert_eq!(
        produce(&mut c, "s", 0, batch("p", 4, Some((id, epoch, 0)))).await,
        (0, 0)
    );
    // A gap, a stale epoch, an unknown producer.
    assert_eq!(
        produce(&mut c, "s", 0, batch("r", 1, Some((id, epoch, 9))))
            .await
            .0,
        45
    );
    assert_eq!(
        produce(&mut c, "s", 0, batch("r", 1, Some((id + 1000, 0, 0))))
            .await
            .0,
        59
    );
    assert_eq!(
        fetch(&mut c, "s", 0, 0, 0).await.1,
        6,
        "six records, each once"
    );

    // Produce v2 is advertised (librdkafka before 2.11.1 needs it) and
    // refused per partition with UNSUPPORTED_VERSION.
    let mut legacy = BytesMut::new();
    legacy.extend_from_slice(&(ApiKey::Produce as i16).to_be_bytes());
    legacy.extend_from_slice(&2i16.to_be_bytes());
    legacy.extend_from_slice(&77i32.to_be_bytes());
    legacy.extend_from_slice(&(-1i16).to_be_bytes()); // client id: null
    legacy.extend_from_slice(&1i16.to_be_bytes()); // acks
    legacy.extend_from_slice(&1000i32.to_be_bytes()); // timeout
    legacy.extend_from_slice(&1i32.to_be_bytes()); // one topic
    legacy.extend_from_slice(&1i16.to_be_bytes());
    legacy.extend_from_slice(b"s");
    legacy.extend_from_slice(&1i32.to_be_bytes()); // one partition
    legacy.extend_from_slice(&0i32.to_be_bytes());
    legacy.extend_from_slice(&3i32.to_be_bytes());
    legacy.extend_from_slice(b"old");
    c.send_frame(&legacy).await;
    let answer = c.recv_frame().await.expect("an answer");
    let mut want = Vec::new();
    want.extend_from_slice(&77i32.to_be_bytes());
    want.extend_from_slice(&1i32.to_be_bytes());
    want.extend_from_slice(&1i16.to_be_bytes());
    want.extend_from_slice(b"s");
    want.extend_from_slice(&1i32.to_be_bytes());
    want.extend_from_slice(&0i32.to_be_bytes());
    want.extend_from_slice(&35i16.to_be_bytes());
    want.extend_from_slice(&(-1i64).to_be_bytes());
    want.extend_from_slice(&(-1i64).to_be_bytes());
    want.extend_from_slice(&0i32.to_be_bytes());
    assert_eq!(&answer[..], &want[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_are_auto_created_only_when_enabled() {
    let dir = tempdir();
    let silt = Silt::dev(dir.path(), &["--kafka-auto-create-partitions", "3"]);
    let mut c = Conn::open(silt.kafka.as_deref().unwrap()).await;
    let mut req = MetadataRequest::default();
    let mut t = MetadataRequestTopic::default();
    t.name = Some(name("fresh"));
    req.topics = Some(vec![t]);
    req.allow_auto_topic_creation = false;
    let mut body = c.call(ApiKey::Metadata, 9, &req, 9).await;
    let m = MetadataResponse::decode(&mut body, 9).unwrap();
    assert_eq!(m.topics[0].error_code, 3, "not asked to create");
    req.allow_auto_topic_creation = true;
    let mut body = c.call(ApiKey::Metadata, 9, &req, 9).await;
    let m = MetadataResponse::decode(&mut body, 9).unwrap();
    assert_eq!(
        (m.topics[0].error_code, m.topics[0].partitions.len()),
        (0, 3)
    );

    let dir = tempdir();
    let off = Silt::dev(dir.path(), &[]);
    let mut c = Conn::open(off.kafka.as_deref().unwrap()).await;
    let mut body = c.call(ApiKey::Metadata, 9, &req, 9).await;
    let m = MetadataResponse::decode(&mut body, 9).unwrap();
    assert_eq!(m.topics[0].error_code, 3, "auto-creation is off by default");
}
