//! Fault injection for fault runs, switched on by environment variables a
//! test sets on the processes it starts — never by a flag an operator
//! would find in `--help`. A process with any of them set says so loudly.
//!
//! - `SILT_FAULT_METADATA=<rate>`: about `rate` of metadata transactions
//!   fail (errors on begin and on reads, conflicts, unknown results applied
//!   or not, commits that land after the caller gave up), through
//!   [`silt_metadata::fault::FaultyKv`].
//! - `SILT_FAULT_CLOCK_JUMP_MS=<ms>`: the agent's clock jumps `ms` back and
//!   forth every few seconds ([`silt_agent::JumpingClock`]).

use std::sync::Arc;
use std::time::Duration;

use silt_agent::{Env, JumpingClock, SystemEnv};
use silt_metadata::fault::{FaultPlan, FaultyKv};
use silt_metadata::kv::Kv;

fn var(name: &str) -> Option<f64> {
    let value = std::env::var(name).ok()?;
    match value.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => {
            tracing::warn!(
                name,
                value,
                "FAULT INJECTION IS ON: this process fails on purpose"
            );
            Some(v)
        }
        _ => {
            tracing::warn!(name, value, "ignoring an unparsable fault setting");
            None
        }
    }
}

/// The metadata store, behind the fault wrapper if asked.
pub fn metadata(kv: Arc<dyn Kv>) -> Arc<dyn Kv> {
    let Some(rate) = var("SILT_FAULT_METADATA") else {
        return kv;
    };
    let rate = rate.min(0.5);
    let plan = FaultPlan {
        seed: rand::random(),
        begin_error: rate / 2.0,
        read_error: rate / 50.0,
        conflict: rate / 4.0,
        unknown_not_applied: rate / 8.0,
        unknown_applied: rate / 8.0,
        late_commit: rate / 8.0,
    };
    Arc::new(FaultyKv::new(kv, plan))
}

/// The agent's clock and randomness, with clock jumps if asked.
pub fn env() -> Arc<dyn Env> {
    match var("SILT_FAULT_CLOCK_JUMP_MS") {
        Some(ms) => Arc::new(JumpingClock::new(ms as i64, Duration::from_secs(3))),
        None => Arc::new(SystemEnv),
    }
}
