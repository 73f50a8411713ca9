//! Time and randomness, injected so tests are deterministic.

use std::fmt::Debug;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Where the agent gets wall-clock time and random numbers.
pub trait Env: Send + Sync + Debug + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
    fn random_u64(&self) -> u64;
}

/// The real clock and the thread-local CSPRNG.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemEnv;

impl Env for SystemEnv {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }

    fn random_u64(&self) -> u64 {
        rand::random()
    }
}

/// A deterministic environment: a clock that moves only when told, and a
/// seeded generator.
#[derive(Debug)]
pub struct TestEnv {
    now: AtomicI64,
    state: AtomicU64,
}

impl TestEnv {
    pub fn new(start_ms: i64, seed: u64) -> Self {
        Self {
            now: AtomicI64::new(start_ms),
            state: AtomicU64::new(seed),
        }
    }

    pub fn advance(&self, ms: i64) {
        self.now.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Env for TestEnv {
    fn now_ms(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }

    fn random_u64(&self) -> u64 {
        // splitmix64
        let mut z = self
            .state
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::SeqCst)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// The real clock, jumping by `jump_ms` back and forth: for `period` it
/// reads `jump_ms` behind, then right, then `jump_ms` ahead, and again —
/// what an agent sees when NTP steps its clock. For fault runs only.
#[derive(Debug)]
pub struct JumpingClock {
    jump_ms: i64,
    period: std::time::Duration,
    start: std::time::Instant,
}

impl JumpingClock {
    pub fn new(jump_ms: i64, period: std::time::Duration) -> Self {
        Self {
            jump_ms,
            period,
            start: std::time::Instant::now(),
        }
    }

    /// Which way the clock is off now: -1 (behind), 0 or 1 (ahead).
    pub fn direction(&self) -> i64 {
        let phase = self.start.elapsed().as_millis() / self.period.as_millis().max(1);
        (phase % 3) as i64 - 1
    }
}

impl Env for JumpingClock {
    fn now_ms(&self) -> i64 {
        SystemEnv.now_ms() + self.direction() * self.jump_ms
    }

    fn random_u64(&self) -> u64 {
        SystemEnv.random_u64()
    }
}
