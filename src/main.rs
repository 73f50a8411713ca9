//! `silt`: the one binary. Servers (`dev`, `agent`) and clients (`topics`,
//! `produce`, `consume`, `bench`). Wires the crates together; nothing else
//! depends on it.

mod bench;
mod bench_contention;
mod bench_groups;
mod bench_kafka;
mod bench_shares;
mod cli;
mod client;
mod faults;
mod format;
mod groups;
mod probe;
mod server;
mod shares;

use clap::Parser;

/// mimalloc: the produce path allocates per record; measured faster than the
/// system allocator under `silt bench` (see the README).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|e| {
                eprintln!("invalid --log filter {:?} ({e}); using `info`", cli.log);
                tracing_subscriber::EnvFilter::new("info")
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(cli::run(cli))
}
