//! The core workload, run on every object-store backend: concurrent
//! producers, then a consumer checks every acknowledged record.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

use crate::common::garage::Garage;
use crate::common::{Client, Silt, tempdir};

const PRODUCERS: usize = 8;
const RECORDS_PER_PRODUCER: usize = 5_000;
const BATCH: usize = 100;
const PARTITIONS: u32 = 6;

/// 8 producers × 5,000 records into 6 partitions, then read everything back:
/// every acknowledged offset present once with its own record, offsets dense
/// from 0, and per partition each producer's records in acknowledgement order.
async fn concurrent_producers(client: &Client) {
    client.create_topic("load", PARTITIONS).await;
    let mut tasks = Vec::new();
    for p in 0..PRODUCERS {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut acks = Vec::new(); // (partition, offset, seq) in ack order
            for start in (0..RECORDS_PER_PRODUCER).step_by(BATCH) {
                let batch: Vec<Value> = (start..start + BATCH)
                    .map(|seq| json!({"key": format!("p{p}-k{}", seq % 17), "value": format!("{p}:{seq}")}))
                    .collect();
                let offsets = c.produce("load", &Value::Array(batch)).await;
                assert_eq!(offsets.len(), BATCH);
                acks.extend(offsets.into_iter().zip(start..).map(|((part, off), seq)| (part, off, seq)));
            }
            acks
        }));
    }
    let mut acked: HashMap<(u32, u64), (usize, usize)> = HashMap::new();
    for (p, t) in tasks.into_iter().enumerate() {
        for (part, off, seq) in t.await.unwrap() {
            assert!(
                acked.insert((part, off), (p, seq)).is_none(),
                "offset {part}/{off} acknowledged twice"
            );
        }
    }
    assert_eq!(acked.len(), PRODUCERS * RECORDS_PER_PRODUCER);

    let hwms = client.high_watermarks("load").await;
    assert_eq!(
        hwms.iter().sum::<u64>(),
        (PRODUCERS * RECORDS_PER_PRODUCER) as u64,
        "nothing extra, nothing lost"
    );
    for (part, &hwm) in hwms.iter().enumerate() {
        let part = part as u32;
        let records = client.read_all("load", part, 0, hwm).await;
        let mut last_seq: BTreeMap<usize, usize> = BTreeMap::new();
        for (i, r) in records.iter().enumerate() {
            let off = r["offset"].as_u64().unwrap();
            assert_eq!(off, i as u64, "offsets are dense from 0");
            let (p, seq) = acked[&(part, off)];
            assert_eq!(
                r["value"],
                format!("{p}:{seq}"),
                "the record at an acknowledged offset is the acknowledged one"
            );
            assert_eq!(r["key"], format!("p{p}-k{}", seq % 17));
            if let Some(prev) = last_seq.insert(p, seq) {
                assert!(
                    seq > prev,
                    "producer {p}: partition {part} holds seq {seq} after {prev}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_producers_on_local_directory() {
    let dir = tempdir();
    let silt = Silt::dev(dir.path(), &[]);
    concurrent_producers(&silt.client()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_producers_on_s3() {
    let Some(garage) = Garage::start() else {
        return;
    };
    let dir = tempdir();
    let mut args: Vec<String> = ["dev", "--data-dir", &dir.path().display().to_string()]
        .map(String::from)
        .to_vec();
    args.extend([
        "--object-store".into(),
        format!("s3://{}/e2e", garage.bucket),
    ]);
    let silt = Silt::spawn(args, garage.env());
    concurrent_producers(&silt.client()).await;
    // The segments really are in the bucket, not on local disk.
    assert!(!dir.path().join("objects").exists());
}

/// Restart `silt dev` on the same directory: everything is still there, and
/// new records continue the offsets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_everything() {
    let dir = tempdir();
    let mut silt = Silt::dev(dir.path(), &[]);
    let c = silt.client();
    c.create_topic("durable", 2).await;
    let recs: Vec<Value> = (0..500)
        .map(|i| json!({"key": format!("k{i}"), "value": format!("v{i}")}))
        .collect();
    let first = c.produce("durable", &Value::Array(recs)).await;
    let before = c.high_watermarks("durable").await;
    silt.restart();
    let c = silt.client();
    assert_eq!(c.high_watermarks("durable").await, before);
    for (part, off) in &first {
        let a = c
            .get(&format!(
                "/v1/topics/durable/partitions/{part}/records?offset={off}&max_records=1"
            ))
            .await;
        assert_eq!(a.status, 200);
        let i = first.iter().position(|x| x == &(*part, *off)).unwrap();
        assert_eq!(a.body["records"][0]["value"], format!("v{i}"));
    }
    let more = c
        .produce("durable", &json!([{"key": "k0", "value": "after"}]))
        .await;
    let (part, off) = more[0];
    assert_eq!(
        off, before[part as usize],
        "offsets continue after a restart"
    );
}

/// Binary data travels base64-encoded; strings are stored as UTF-8.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base64_and_utf8_encodings() {
    let dir = tempdir();
    let silt = Silt::dev(dir.path(), &[]);
    let c = silt.client();
    c.create_topic("bin", 1).await;
    // 0xff 0x00 0xfe is not UTF-8.
    let a = c
        .post("/v1/topics/bin/records?encoding=base64", &json!({"records": [{"key": "AQI=", "value": "/wD+", "headers": [{"key": "h", "value": "AA=="}]}]}))
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    c.produce("bin", &json!([{"value": "héllo ✓"}])).await;
    let a = c
        .get("/v1/topics/bin/partitions/0/records?offset=0&encoding=base64")
        .await;
    assert_eq!(a.body["records"][0]["value"], "/wD+");
    assert_eq!(a.body["records"][0]["key"], "AQI=");
    assert_eq!(a.body["records"][0]["headers"][0]["value"], "AA==");
    // Escaped strings take the copying path, plain ones are sliced from the body.
    c.produce(
        "bin",
        &json!([{"key": "tab\there", "value": "line 1\nline \"2\" \u{e9}"}]),
    )
    .await;
    let a = c.get("/v1/topics/bin/partitions/0/records?offset=1").await;
    assert_eq!(a.body["records"][0]["value"], "héllo ✓");
    assert_eq!(a.body["records"][1]["key"], "tab\there");
    assert_eq!(a.body["records"][1]["value"], "line 1\nline \"2\" é");
    // Reading binary data as UTF-8 is a clear error, not mangled text.
    let a = c.get("/v1/topics/bin/partitions/0/records?offset=0").await;
    assert_eq!((a.status, a.body["code"].as_str()), (422, Some("not_utf8")));
}

/// `Accept: text/event-stream` streams records as Server-Sent Events, and
/// keeps streaming as new records arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sent_events() {
    use futures::StreamExt;
    let dir = tempdir();
    let silt = Silt::dev(dir.path(), &[]);
    let c = silt.client();
    c.create_topic("events", 1).await;
    c.produce("events", &json!([{"value": "a"}, {"value": "b"}]))
        .await;
    let res = c
        .http
        .get(format!(
            "{}/v1/topics/events/partitions/0/records?offset=0",
            c.base
        ))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let producer = c.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        producer.produce("events", &json!([{"value": "c"}])).await;
    });
    let mut body = res.bytes_stream();
    let mut text = String::new();
    let mut values = Vec::new();
    while values.len() < 3 {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(20), body.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = text.find("\n\n") {
            let event: String = text.drain(..end + 2).collect();
            if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) {
                let v: Value = serde_json::from_str(data).unwrap();
                let id = event.lines().find_map(|l| l.strip_prefix("id: ")).unwrap();
                assert_eq!(id, v["offset"].to_string());
                values.push(v["value"].as_str().unwrap().to_owned());
            }
        }
    }
    assert_eq!(values, ["a", "b", "c"]);
}

/// SIGTERM while a producer waits for its (slow) flush: the producer gets its
/// offsets, the process exits cleanly, and the records survive a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_and_answers_waiting_producers() {
    let dir = tempdir();
    // Without group commit, so the record waits for the interval.
    let mut silt = Silt::dev(
        dir.path(),
        &["--flush-interval-ms", "60000", "--group-commit", "false"],
    );
    let c = silt.client();
    c.create_topic("drain", 1).await;
    let producer = {
        let c = c.clone();
        tokio::spawn(async move {
            c.post(
                "/v1/topics/drain/records",
                &json!({"records": [{"value": "in flight"}]}),
            )
            .await
        })
    };
    // The request is buffered, waiting for a flush a minute away.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!producer.is_finished());
    tokio::task::block_in_place(|| silt.stop());
    let answer = producer.await.unwrap();
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(
        answer.body["offsets"],
        json!([{"partition": 0, "offset": 0}])
    );
    let silt = Silt::dev(dir.path(), &[]);
    let a = silt
        .client()
        .get("/v1/topics/drain/partitions/0/records?offset=0")
        .await;
    assert_eq!(a.body["records"][0]["value"], "in flight");
}

/// Group commit: with an upload slot free, a record is flushed at once,
/// without waiting out even a minute-long flush interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_does_not_wait_for_the_interval() {
    let dir = tempdir();
    let silt = Silt::dev(dir.path(), &["--flush-interval-ms", "60000"]);
    let c = silt.client();
    c.create_topic("eager", 1).await;
    for i in 0..3 {
        let answer = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            c.post(
                "/v1/topics/eager/records",
                &json!({"records": [{"value": format!("r{i}")}]}),
            ),
        )
        .await
        .expect("answered long before the flush interval");
        assert_eq!(answer.body["offsets"][0]["offset"], i);
    }
}
