//! Two agent processes sharing one SQLite metadata file and one object
//! directory: both produce, either serves reads, and a long-poll on one wakes
//! for a commit made through the other.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{Silt, file_url, sqlite_url, tempdir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_share_one_log() {
    let dir = tempdir();
    let objects = file_url(&dir.path().join("objects"));
    let meta = sqlite_url(dir.path().join("meta.db"));
    let a = Silt::agent(&objects, &meta);
    let b = Silt::agent(&objects, &meta);
    let (ca, cb) = (a.client(), b.client());
    ca.create_topic("shared", 3).await;

    let mut tasks = Vec::new();
    for (n, c) in [ca.clone(), cb.clone(), ca.clone(), cb.clone()]
        .into_iter()
        .enumerate()
    {
        tasks.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            for i in 0..20 {
                let batch: Vec<Value> = (0..50)
                    .map(
                        |j| json!({"key": format!("k{j}"), "value": format!("{n}:{}", i * 50 + j)}),
                    )
                    .collect();
                acks.extend(
                    c.produce("shared", &Value::Array(batch))
                        .await
                        .into_iter()
                        .zip(i * 50..),
                );
            }
            (n, acks)
        }));
    }
    let mut acked = std::collections::HashMap::new();
    for t in tasks {
        let (n, acks) = t.await.unwrap();
        for ((part, off), seq) in acks {
            assert!(
                acked.insert((part, off), format!("{n}:{seq}")).is_none(),
                "offset {part}/{off} given twice"
            );
        }
    }
    assert_eq!(acked.len(), 4 * 1000);
    let hwm_a = ca.high_watermarks("shared").await;
    assert_eq!(
        hwm_a,
        cb.high_watermarks("shared").await,
        "both agents see the same log"
    );
    for (part, &hwm) in hwm_a.iter().enumerate() {
        let from_a = ca.read_all("shared", part as u32, 0, hwm).await;
        let from_b = cb.read_all("shared", part as u32, 0, hwm).await;
        assert_eq!(from_a, from_b);
        for (i, r) in from_a.iter().enumerate() {
            assert_eq!(r["offset"].as_u64(), Some(i as u64), "dense offsets");
            assert_eq!(
                r["value"].as_str(),
                Some(acked[&(part as u32, i as u64)].as_str())
            );
        }
    }

    // Long-poll on A at the high-watermark; produce through B.
    let hwm = ca.high_watermarks("shared").await[0];
    let poll = {
        let ca = ca.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            let a = ca
                .get(&format!(
                    "/v1/topics/shared/partitions/0/records?offset={hwm}&wait_ms=20000"
                ))
                .await;
            (a, start.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !poll.is_finished(),
        "the long-poll waits while there is nothing to read"
    );
    let res = cb
        .post(
            "/v1/topics/shared/partitions/0/records",
            &json!({"records": [{"value": "wake"}]}),
        )
        .await;
    assert_eq!(res.status, 200);
    let (answer, waited) = poll.await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.body["records"][0]["value"], "wake",
        "the poll returned the record committed by the other agent"
    );
    assert!(
        waited < Duration::from_secs(20),
        "woken by the commit, not by the timeout ({waited:?})"
    );
}
