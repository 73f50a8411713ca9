//! The batches inside a segment object are real Kafka v2 record batches: an
//! independent decoder (the `kafka-protocol` crate) reads them back.

use bytes::Bytes;
use kafka_protocol::records::RecordBatchDecoder;
use serde_json::json;

use crate::common::{Silt, tempdir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_hold_kafka_v2_batches() {
    let dir = tempdir();
    let silt = Silt::dev(dir.path(), &[]);
    let c = silt.client();
    for codec in ["none", "lz4", "zstd"] {
        let a = c
            .post(
                "/v1/topics",
                &json!({"name": codec, "partitions": 1, "config": {"compression": codec}}),
            )
            .await;
        assert_eq!(a.status, 201);
        let records: Vec<_> = (0..50)
            .map(|i| json!({"key": format!("key-{i}"), "value": format!("{codec} value {i}"), "timestamp": 1_700_000_000_000i64 + i,
                            "headers": [{"key": "n", "value": i.to_string()}]}))
            .collect();
        c.produce(codec, &serde_json::Value::Array(records)).await;
    }
    let mut decoded = 0;
    for entry in std::fs::read_dir(dir.path().join("objects/segments")).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        silt_segment::segment::check_magic(&bytes).unwrap();
        for chunk in silt_segment::segment::read_footer(&bytes, bytes.len() as u64).unwrap() {
            let mut buf = Bytes::copy_from_slice(
                &bytes[chunk.offset as usize..(chunk.offset + u64::from(chunk.len)) as usize],
            );
            let sets = RecordBatchDecoder::decode_all(&mut buf).unwrap();
            let records: Vec<_> = sets.into_iter().flat_map(|s| s.records).collect();
            assert_eq!(records.len(), 50);
            for (i, r) in records.iter().enumerate() {
                let value = String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap();
                let codec = value.split(' ').next().unwrap().to_owned();
                assert_eq!(value, format!("{codec} value {i}"));
                assert_eq!(r.key.as_deref(), Some(format!("key-{i}").as_bytes()));
                assert_eq!(r.offset, i as i64, "chunk-relative offsets");
                assert_eq!(r.timestamp, 1_700_000_000_000 + i as i64);
                assert_eq!(r.headers.len(), 1);
                decoded += 1;
            }
        }
    }
    assert_eq!(decoded, 150);
}
