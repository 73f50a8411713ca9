//! End-to-end suites: real `silt` processes, real HTTP on loopback, real
//! SQLite metadata shared between processes, and a real S3 server (Garage).
#![allow(clippy::unwrap_used)]

mod archive;
mod bad_input;
mod cli;
mod common;
mod disk_full;
mod groups;
mod jepsen;
mod kafka;
mod kafka_compat;
mod kafka_data;
mod kafka_groups;
mod multi_agent;
mod observability;
mod probe;
mod produce_consume;
mod sequencer;
mod shares;
