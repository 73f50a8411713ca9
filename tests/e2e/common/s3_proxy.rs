//! A fault-injecting S3 proxy on loopback, in front of the real S3 server:
//! agents talk to it as to S3, and it forwards each request (the signature
//! stays valid: the Host header is kept) unless it decides to fail it:
//!
//! - `unavailable`: 503 SlowDown, not forwarded;
//! - `slow`: forwarded after a delay, so PUTs complete out of order;
//! - `lost_reply`: a PUT forwarded and stored, but its answer delayed past
//!   the client's attempt timeout (the PUT "timed out after succeeding");
//! - `corrupt`: a GET's body with one bit flipped;
//! - `truncate`: a GET's body cut short.
//!
//! Counters say how many of each it injected.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// Probabilities (0.0–1.0) per request.
#[derive(Debug, Clone, Copy, Default)]
pub struct S3Faults {
    pub unavailable: f64,
    pub slow: f64,
    pub lost_reply: f64,
    pub corrupt: f64,
    pub truncate: f64,
    /// How long a lost reply is held back (past the client's attempt bound).
    pub lost_reply_delay: Duration,
}

/// What the proxy injected.
#[derive(Debug, Default)]
pub struct Injected {
    pub unavailable: AtomicU64,
    pub slow: AtomicU64,
    pub lost_reply: AtomicU64,
    pub corrupt: AtomicU64,
    pub truncate: AtomicU64,
}

impl Injected {
    pub fn summary(&self) -> String {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "503s {} slow {} lost-replies {} corrupt {} truncated {}",
            n(&self.unavailable),
            n(&self.slow),
            n(&self.lost_reply),
            n(&self.corrupt),
            n(&self.truncate)
        )
    }

    pub fn total(&self) -> u64 {
        [
            &self.unavailable,
            &self.slow,
            &self.lost_reply,
            &self.corrupt,
            &self.truncate,
        ]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
    }
}

struct Proxy {
    upstream: String,
    http: reqwest::Client,
    faults: Mutex<S3Faults>,
    rng: Mutex<StdRng>,
    injected: Arc<Injected>,
}

/// A running proxy; stops when dropped.
pub struct S3Proxy {
    pub endpoint: String,
    pub injected: Arc<Injected>,
    proxy: Arc<Proxy>,
    task: tokio::task::JoinHandle<()>,
}

impl S3Proxy {
    pub async fn start(upstream: &str, faults: S3Faults, seed: u64) -> Self {
        let injected = Arc::new(Injected::default());
        let proxy = Arc::new(Proxy {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            faults: Mutex::new(faults),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            injected: injected.clone(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(proxy.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            endpoint,
            injected,
            proxy,
            task,
        }
    }

    /// Changes the faults from now on (e.g. none, to heal).
    pub fn set_faults(&self, faults: S3Faults) {
        *self.proxy.faults.lock() = faults;
    }
}

impl Drop for S3Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Which fault, if any, one request gets.
enum Fault {
    None,
    Unavailable,
    Slow(Duration),
    LostReply(Duration),
    Corrupt,
    Truncate,
}

impl Proxy {
    fn choose(&self, is_get: bool, is_put: bool) -> Fault {
        let f = *self.faults.lock();
        let mut rng = self.rng.lock();
        let r: f64 = rng.random();
        let mut at = 0.0;
        let mut hit = |p: f64| {
            at += p;
            r < at
        };
        if hit(f.unavailable) {
            Fault::Unavailable
        } else if hit(f.slow) {
            Fault::Slow(Duration::from_millis(rng.random_range(100..1200)))
        } else if is_put && hit(f.lost_reply) {
            Fault::LostReply(f.lost_reply_delay)
        } else if is_get && hit(f.corrupt) {
            Fault::Corrupt
        } else if is_get && hit(f.truncate) {
            Fault::Truncate
        } else {
            Fault::None
        }
    }
}

fn count(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

async fn forward(State(proxy): State<Arc<Proxy>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(body) = to_bytes(body, 64 << 20).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let method = parts.method.clone();
    let is_get = method == axum::http::Method::GET && parts.uri.query().is_none();
    let fault = proxy.choose(is_get, method == axum::http::Method::PUT);
    let injected = &proxy.injected;
    match fault {
        Fault::Unavailable => {
            count(&injected.unavailable);
            let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code>\
                       <Message>injected</Message></Error>";
            return (StatusCode::SERVICE_UNAVAILABLE, xml).into_response();
        }
        Fault::Slow(d) => {
            count(&injected.slow);
            tokio::time::sleep(d).await;
        }
        _ => {}
    }
    let url = format!(
        "{}{}",
        proxy.upstream,
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let mut headers = HeaderMap::new();
    for (k, v) in &parts.headers {
        if !matches!(
            k.as_str(),
            "connection" | "transfer-encoding" | "content-length"
        ) {
            headers.append(k, v.clone());
        }
    }
    let sent = proxy
        .http
        .request(method, url)
        .headers(headers)
        .body(body)
        .send()
        .await;
    let Ok(res) = sent else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let status = res.status();
    let mut out_headers = HeaderMap::new();
    for (k, v) in res.headers() {
        if !matches!(
            k.as_str(),
            "connection" | "transfer-encoding" | "content-length"
        ) {
            out_headers.append(k, v.clone());
        }
    }
    let Ok(bytes) = res.bytes().await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let mut bytes = bytes.to_vec();
    match fault {
        Fault::LostReply(d) => {
            count(&injected.lost_reply);
            tokio::time::sleep(d).await;
        }
        Fault::Corrupt if status.is_success() && !bytes.is_empty() => {
            count(&injected.corrupt);
            let bit = proxy.rng.lock().random_range(0..bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
        }
        Fault::Truncate if status.is_success() && bytes.len() > 1 => {
            count(&injected.truncate);
            bytes.truncate(bytes.len() / 2);
        }
        _ => {}
    }
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    *response.headers_mut() = out_headers;
    response
}
