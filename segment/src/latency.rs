//! S3's latency, modelled in front of a real store, for benchmarks
//! (`silt bench --embedded --s3-model standard|express`): each request
//! first waits a time drawn from a log-normal distribution fitted to the
//! model's p50 and p99 first-byte latency, plus its bytes over the model's
//! per-request bandwidth, then runs against the store underneath.
//!
//! The figures are public ones for small objects in one region: S3
//! Standard PUT p50 ≈ 25 ms and p99 ≈ 150 ms, GET first byte p50 ≈ 15 ms
//! and p99 ≈ 80 ms, about 100 MB/s per request; S3 Express One Zone ≈ 5 ms
//! PUT and 3 ms GET at p50. What the model leaves out: throttling (503
//! SlowDown), correlated slow periods, and the latency of LIST and DELETE
//! (modelled like a GET).

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use parking_lot::Mutex;

/// Latency of one kind of request: log-normal through `p50` and `p99`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentiles {
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// A store's latency.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyModel {
    pub put: Percentiles,
    pub get: Percentiles,
    /// Bytes per second one request moves.
    pub bandwidth_bytes_per_sec: f64,
}

impl LatencyModel {
    /// S3 Standard, small objects.
    pub fn s3_standard() -> Self {
        Self {
            put: Percentiles {
                p50_ms: 25.0,
                p99_ms: 150.0,
            },
            get: Percentiles {
                p50_ms: 15.0,
                p99_ms: 80.0,
            },
            bandwidth_bytes_per_sec: 100e6,
        }
    }

    /// S3 Express One Zone.
    pub fn s3_express() -> Self {
        Self {
            put: Percentiles {
                p50_ms: 5.0,
                p99_ms: 15.0,
            },
            get: Percentiles {
                p50_ms: 3.0,
                p99_ms: 10.0,
            },
            bandwidth_bytes_per_sec: 200e6,
        }
    }
}

/// z of the 99th percentile of the standard normal distribution.
const Z99: f64 = 2.326_347_874;

/// Deterministic draws (splitmix64), seeded by the caller.
#[derive(Debug)]
struct Draws(u64);

impl Draws {
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// A draw of the log-normal distribution through `p`.
    fn latency(&mut self, p: Percentiles) -> Duration {
        let (u1, u2) = (self.unit(), self.unit());
        let normal = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        let mu = p.p50_ms.ln();
        let sigma = (p.p99_ms.ln() - mu) / Z99;
        Duration::from_secs_f64((mu + sigma * normal).exp() / 1e3)
    }
}

/// A store behind modelled latency.
pub struct LatencyStore {
    inner: Arc<dyn ObjectStore>,
    model: LatencyModel,
    draws: Mutex<Draws>,
}

impl LatencyStore {
    pub fn new(inner: Arc<dyn ObjectStore>, model: LatencyModel, seed: u64) -> Self {
        Self {
            inner,
            model,
            draws: Mutex::new(Draws(seed)),
        }
    }

    async fn wait(&self, p: Percentiles, bytes: u64) {
        let first_byte = self.draws.lock().latency(p);
        let transfer = Duration::from_secs_f64(bytes as f64 / self.model.bandwidth_bytes_per_sec);
        tokio::time::sleep(first_byte + transfer).await;
    }
}

impl fmt::Debug for LatencyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LatencyStore")
            .field("model", &self.model)
            .finish()
    }
}

impl fmt::Display for LatencyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LatencyStore({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for LatencyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.wait(self.model.put, payload.content_length() as u64)
            .await;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.wait(self.model.put, 0).await;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let bytes = match &options.range {
            Some(object_store::GetRange::Bounded(r)) => r.end.saturating_sub(r.start),
            _ => 0,
        };
        self.wait(self.model.get, bytes).await;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> Result<Vec<bytes::Bytes>> {
        let bytes = ranges.iter().map(|r| r.end.saturating_sub(r.start)).sum();
        self.wait(self.model.get, bytes).await;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.wait(self.model.get, 0).await;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.wait(self.model.put, 0).await;
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_follow_the_model_percentiles() {
        let mut d = Draws(42);
        let p = LatencyModel::s3_standard().put;
        let mut ms: Vec<f64> = (0..20_000)
            .map(|_| d.latency(p).as_secs_f64() * 1e3)
            .collect();
        ms.sort_by(f64::total_cmp);
        let (p50, p99) = (ms[10_000], ms[19_800]);
        assert!((p50 - 25.0).abs() < 2.0, "p50 {p50}");
        assert!((p99 - 150.0).abs() < 20.0, "p99 {p99}");
    }
}
