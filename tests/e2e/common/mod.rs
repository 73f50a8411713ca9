//! The end-to-end harness: real `silt` processes on loopback with ephemeral
//! ports, a real S3-compatible server (Garage) when one is available, and a
//! small HTTP client. Everything started here is stopped on drop.
#![allow(dead_code, clippy::unwrap_used)]

pub mod garage;
pub mod s3_proxy;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A running `silt` server process.
#[derive(Debug)]
pub struct Silt {
    child: Option<Child>,
    pub url: String,
    /// `host:port` of the Kafka listener, if this process has one.
    pub kafka: Option<String>,
    args: Vec<String>,
    envs: Vec<(String, String)>,
}

fn silt_bin() -> &'static str {
    env!("CARGO_BIN_EXE_silt")
}

impl Silt {
    /// `silt dev --data-dir DIR --listen 127.0.0.1:0 EXTRA…`
    pub fn dev(data_dir: &Path, extra: &[&str]) -> Self {
        let mut args = vec![
            "dev".into(),
            "--data-dir".into(),
            data_dir.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::spawn(args, Vec::new())
    }

    /// `silt agent --object-store URL --metadata URL`
    pub fn agent(objects: &str, metadata: &str) -> Self {
        let args = ["agent", "--object-store", objects, "--metadata", metadata]
            .map(String::from)
            .to_vec();
        Self::spawn(args, Vec::new())
    }

    pub fn spawn(mut args: Vec<String>, envs: Vec<(String, String)>) -> Self {
        if !args.iter().any(|a| a == "--listen") {
            args.extend(["--listen".into(), "127.0.0.1:0".into()]);
        }
        // `silt dev` listens for Kafka by default: on a free port in tests.
        if args[0] == "dev" && !args.iter().any(|a| a == "--kafka-listen") {
            args.extend(["--kafka-listen".into(), "127.0.0.1:0".into()]);
        }
        let kafka_on = args
            .windows(2)
            .any(|w| w[0] == "--kafka-listen" && w[1] != "off");
        let mut cmd = Command::new(silt_bin());
        cmd.args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .env("SILT_LOG", "warn");
        for (k, v) in &envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn silt");
        let stdout = child.stdout.take().unwrap();
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read silt's first line");
        let url = line
            .trim()
            .strip_prefix("silt listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        let kafka = kafka_on.then(|| {
            let mut line = String::new();
            stdout
                .read_line(&mut line)
                .expect("read silt's second line");
            line.trim()
                .strip_prefix("silt kafka listening on ")
                .unwrap_or_else(|| panic!("unexpected second line {line:?}"))
                .to_owned()
        });
        Self {
            child: Some(child),
            url,
            kafka,
            args,
            envs,
        }
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            let ok = Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(ok, "kill -TERM {pid}");
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    assert!(status.success(), "silt exited with {status}");
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "silt did not stop within 30 s of SIGTERM"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// SIGKILL, as a crash: nothing is flushed or released.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`): a process that freezes mid-way,
    /// as under a long GC pause or a VM migration.
    pub fn pause(&self, stop: bool) {
        if let Some(child) = &self.child {
            let sig = if stop { "-STOP" } else { "-CONT" };
            let _ = Command::new("kill")
                .args([sig, &child.id().to_string()])
                .status();
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts again with the same arguments (a new port) after a kill.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "already running");
        *self = Self::spawn(self.args.clone(), self.envs.clone());
    }

    /// Stops (SIGTERM) and starts again with the same arguments but these
    /// environment variables (a new port).
    pub fn restart_with_env(&mut self, envs: Vec<(String, String)>) {
        self.stop();
        *self = Self::spawn(self.args.clone(), envs);
    }

    /// Stops and starts again with the same arguments (a new port).
    pub fn restart(&mut self) {
        self.stop();
        let fresh = Self::spawn(self.args.clone(), self.envs.clone());
        *self = fresh;
    }

    pub fn client(&self) -> Client {
        Client::new(&self.url)
    }
}

impl Drop for Silt {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A JSON client for the API.
#[derive(Debug, Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
}

/// A response: status, content type, parsed body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub retry_after: Option<String>,
    pub body: Value,
}

impl Client {
    pub fn new(base: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: base.to_owned(),
        }
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Answer {
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        let header = |n: &str| res.headers().get(n).map(|v| v.to_str().unwrap().to_owned());
        let content_type = header("content-type").unwrap_or_default();
        let retry_after = header("retry-after");
        let bytes = res.bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            content_type,
            retry_after,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
            .await
    }

    pub async fn create_topic(&self, name: &str, partitions: u32) {
        let a = self
            .post(
                "/v1/topics",
                &json!({"name": name, "partitions": partitions}),
            )
            .await;
        assert_eq!(a.status, 201, "{:?}", a.body);
    }

    /// Produces, retrying on 429/503 as a well-behaved client would.
    pub async fn produce(&self, topic: &str, records: &Value) -> Vec<(u32, u64)> {
        loop {
            let a = self
                .post(
                    &format!("/v1/topics/{topic}/records"),
                    &json!({ "records": records }),
                )
                .await;
            match a.status {
                200 => return acked_offsets(&a.body),
                429 | 503 => tokio::time::sleep(Duration::from_millis(50)).await,
                s => panic!("produce failed: {s} {:?}", a.body),
            }
        }
    }

    pub async fn high_watermarks(&self, topic: &str) -> Vec<u64> {
        let a = self.get(&format!("/v1/topics/{topic}")).await;
        assert_eq!(a.status, 200, "{:?}", a.body);
        a.body["partition_states"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["high_watermark"].as_u64().unwrap())
            .collect()
    }

    /// Reads a partition from `from` up to `until`, returning every record.
    pub async fn read_all(&self, topic: &str, partition: u32, from: u64, until: u64) -> Vec<Value> {
        let mut out = Vec::new();
        let mut next = from;
        while next < until {
            let a = self.get(&format!("/v1/topics/{topic}/partitions/{partition}/records?offset={next}&max_records=5000")).await;
            assert_eq!(a.status, 200, "{:?}", a.body);
            let recs = a.body["records"].as_array().unwrap();
            assert!(!recs.is_empty(), "no records at {next} below {until}");
            out.extend(recs.iter().cloned());
            next = a.body["next_offset"].as_u64().unwrap();
        }
        out
    }
}

/// `(partition, offset)` of each record a produce answer acknowledged.
pub fn acked_offsets(body: &Value) -> Vec<(u32, u64)> {
    body["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["partition"].as_u64().unwrap() as u32,
                o["offset"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Copies a directory tree (a `silt dev` data directory, say).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A temporary directory that is removed on drop.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("silt-e2e-")
        .tempdir()
        .unwrap()
}

/// A `file://` URL for a directory.
pub fn file_url(dir: &Path) -> String {
    std::fs::create_dir_all(dir).unwrap();
    url::Url::from_directory_path(dir).unwrap().to_string()
}

pub fn sqlite_url(path: PathBuf) -> String {
    format!("sqlite://{}", path.display())
}

/// Two agents sharing metadata (SQLite) and objects (a directory).
pub struct Cluster {
    pub agents: Vec<Silt>,
    _dir: tempfile::TempDir,
}

pub fn cluster() -> Cluster {
    let dir = tempdir();
    let objects = file_url(&dir.path().join("objects"));
    let meta = sqlite_url(dir.path().join("meta.db"));
    let agents = (0..2).map(|_| Silt::agent(&objects, &meta)).collect();
    Cluster { agents, _dir: dir }
}
