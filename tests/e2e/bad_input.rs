//! Bad input gets a clear problem+json answer, and stores nothing.

use serde_json::json;

use crate::common::{Answer, Silt, tempdir};

fn assert_problem(a: &Answer, status: u16, code: &str) {
    assert_eq!(a.status, status, "{:?}", a.body);
    assert_eq!(a.content_type, "application/problem+json");
    assert_eq!(a.body["code"], code, "{:?}", a.body);
    assert_eq!(a.body["status"], status);
    assert!(
        a.body["type"].is_string() && a.body["title"].is_string() && a.body["detail"].is_string()
    );
    assert!(a.body["retriable"].is_boolean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_nothing_is_stored() {
    let dir = tempdir();
    let silt = Silt::dev(dir.path(), &["--max-request-bytes", "65536"]);
    let c = silt.client();
    c.create_topic("t", 2).await;
    let url = |p: &str| format!("{}{p}", c.base);
    let raw = |body: &'static str| {
        c.http
            .post(url("/v1/topics/t/records"))
            .header("content-type", "application/json")
            .body(body)
    };

    assert_problem(&c.send(raw("{\"records\": [")).await, 400, "invalid_json");
    assert_problem(
        &c.send(raw("{\"records\": [{\"key\": \"k\"}]}")).await,
        400,
        "invalid_request",
    );
    assert_problem(
        &c.send(raw("{\"records\": [{\"value\": 5}]}")).await,
        400,
        "invalid_request",
    );
    assert_problem(&c.send(raw("{\"records\": []}")).await, 400, "no_records");
    let text = c
        .http
        .post(url("/v1/topics/t/records"))
        .header("content-type", "text/plain")
        .body("{}");
    assert_problem(&c.send(text).await, 415, "unsupported_media_type");
    let big = json!({"records": [{"value": "x".repeat(100_000)}]});
    assert_problem(
        &c.post("/v1/topics/t/records", &big).await,
        413,
        "payload_too_large",
    );
    assert_problem(
        &c.post(
            "/v1/topics/nope/records",
            &json!({"records": [{"value": "v"}]}),
        )
        .await,
        404,
        "topic_not_found",
    );
    assert_problem(
        &c.post(
            "/v1/topics/t/records",
            &json!({"records": [{"value": "v", "partition": 2}]}),
        )
        .await,
        404,
        "partition_not_found",
    );
    assert_problem(
        &c.post(
            "/v1/topics/t/partitions/9/records",
            &json!({"records": [{"value": "v"}]}),
        )
        .await,
        404,
        "partition_not_found",
    );
    assert_problem(
        &c.post(
            "/v1/topics/t/partitions/-1/records",
            &json!({"records": [{"value": "v"}]}),
        )
        .await,
        400,
        "invalid_path",
    );
    assert_problem(
        &c.post(
            "/v1/topics/t/records?encoding=base64",
            &json!({"records": [{"value": "%%%"}]}),
        )
        .await,
        400,
        "invalid_base64",
    );
    // A batch with one bad record stores none of them.
    let mixed = json!({"records": [{"value": "ok"}, {"value": "ok", "partition": 7}]});
    assert_problem(
        &c.post("/v1/topics/t/records", &mixed).await,
        404,
        "partition_not_found",
    );

    assert_problem(
        &c.get("/v1/topics/t/partitions/0/records?offset=-1").await,
        400,
        "invalid_offset",
    );
    assert_problem(
        &c.get("/v1/topics/t/partitions/0/records?offset=abc").await,
        400,
        "invalid_query",
    );
    assert_problem(
        &c.get("/v1/topics/t/partitions/0/records?offset=5").await,
        416,
        "offset_out_of_range",
    );
    assert_problem(
        &c.get("/v1/topics/t/partitions/0/records?max_records=0")
            .await,
        400,
        "invalid_max_records",
    );
    assert_problem(
        &c.get("/v1/topics/t/partitions/0/records?wait_ms=999999")
            .await,
        400,
        "invalid_wait",
    );
    assert_problem(
        &c.get("/v1/topics/t/partitions/5/records").await,
        404,
        "partition_not_found",
    );
    assert_problem(
        &c.get("/v1/topics/nope/partitions/0/offsets").await,
        404,
        "topic_not_found",
    );
    assert_problem(&c.get("/v1/nothing").await, 404, "route_not_found");
    assert_problem(
        &c.send(c.http.put(url("/v1/topics"))).await,
        405,
        "method_not_allowed",
    );

    assert_problem(
        &c.post("/v1/topics", &json!({"name": "bad name", "partitions": 1}))
            .await,
        400,
        "invalid_argument",
    );
    assert_problem(
        &c.post("/v1/topics", &json!({"name": "z", "partitions": 0}))
            .await,
        400,
        "invalid_argument",
    );
    assert_problem(
        &c.post("/v1/topics", &json!({"name": "t", "partitions": 1}))
            .await,
        409,
        "topic_exists",
    );
    assert_problem(
        &c.post(
            "/v1/topics",
            &json!({"name": "z", "partitions": 1, "config": {"compression": "gzip"}}),
        )
        .await,
        400,
        "invalid_request",
    );

    assert_eq!(c.high_watermarks("t").await, [0, 0], "nothing was stored");
    let topics = c.get("/v1/topics").await;
    assert_eq!(
        topics.body["topics"].as_array().unwrap().len(),
        1,
        "no topic was created by bad requests"
    );
}

/// Connections are bounded: idle ones (connected, nothing sent) are closed
/// after the idle timeout, so they can neither starve real clients of
/// connection slots nor hold up a SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cannot_hold_the_server() {
    use std::io::Read;
    let dir = tempdir();
    let mut silt = Silt::dev(
        dir.path(),
        &["--max-connections", "3", "--idle-timeout-secs", "1"],
    );
    let addr = silt.url.trim_start_matches("http://").to_owned();
    // Three silent clients take every slot...
    let mut idle: Vec<std::net::TcpStream> = (0..3)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    // ...yet a real request is served once the idle timeout frees a slot.
    let start = std::time::Instant::now();
    let a = silt.client().get("/healthz").await;
    assert_eq!(a.status, 200);
    let waited = start.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(500)
            && waited < std::time::Duration::from_secs(10),
        "served after the idle ones were closed ({waited:?})"
    );
    for s in &mut idle {
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(
            s.read(&mut buf).unwrap_or(0),
            0,
            "the idle connection was closed"
        );
    }
    // An idle connection does not hold up a SIGTERM.
    let _lingering = std::net::TcpStream::connect(&addr).unwrap();
    let start = std::time::Instant::now();
    silt.stop();
    assert!(
        start.elapsed() < std::time::Duration::from_secs(10),
        "stopped promptly ({:?})",
        start.elapsed()
    );
}

/// A body that stalls is answered 408 once the body deadline passes, and
/// while it is being read its declared size counts against the budget: a
/// second large body that does not fit is refused at once (429), before a
/// byte of it is read; once the stalled one is gone, uploads fit again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_are_bounded_and_timed_out() {
    use std::io::{Read, Write};
    let dir = tempdir();
    let silt = Silt::dev(
        dir.path(),
        &[
            "--max-request-bytes",
            "1000000",
            "--max-inflight-bytes",
            "1500000",
            "--body-timeout-secs",
            "1",
        ],
    );
    let c = silt.client();
    c.create_topic("slow", 1).await;
    let addr = silt.url.trim_start_matches("http://").to_owned();
    let mut stalled = std::net::TcpStream::connect(&addr).unwrap();
    stalled
        .write_all(
            b"POST /v1/topics/slow/records HTTP/1.1\r\nHost: x\r\n\
              Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{\"records\"",
        )
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let big = vec![b' '; 900_000];
    let a = c
        .send(
            c.http
                .post(format!("{}/v1/topics/slow/records", c.base))
                .header("content-type", "application/json")
                .body(big.clone()),
        )
        .await;
    assert_eq!(a.status, 429, "{:?}", a.body);
    assert_eq!(a.body["code"], "overloaded");
    assert!(a.retry_after.is_some());

    let start = std::time::Instant::now();
    stalled
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut head = [0u8; 12];
    stalled.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 408", "the stalled body timed out");
    assert!(start.elapsed() < std::time::Duration::from_secs(5));

    let ok = c
        .post(
            "/v1/topics/slow/records",
            &json!({"records": [{"value": "fits again"}]}),
        )
        .await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
}

/// A client that sends a request's headers a byte at a time (so the idle
/// timeout never fires) is cut off by the header-read timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_trickled_byte_by_byte_are_cut_off() {
    use std::io::{Read, Write};
    let dir = tempdir();
    let silt = Silt::dev(
        dir.path(),
        &["--header-timeout-secs", "1", "--idle-timeout-secs", "60"],
    );
    let addr = silt.url.trim_start_matches("http://").to_owned();
    let mut slow = std::net::TcpStream::connect(&addr).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    slow.set_read_timeout(Some(std::time::Duration::from_millis(50)))
        .unwrap();
    let start = std::time::Instant::now();
    let closed = loop {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "the trickling client was never cut off"
        );
        if slow.write_all(b"a").is_err() {
            break start.elapsed();
        }
        let mut buf = [0u8; 64];
        match slow.read(&mut buf) {
            Ok(_) => break start.elapsed(), // closed (0) or answered 408
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break start.elapsed(),
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    };
    assert!(
        closed >= std::time::Duration::from_millis(800),
        "{closed:?}"
    );
    // The server still serves others.
    assert_eq!(silt.client().get("/healthz").await.status, 200);
}
