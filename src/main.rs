//! `silt`: the one binary. Servers (`dev`, `agent`) and clients (`topics`,
//! `produce`, `consume`, `bench`). Wires the crates together; nothing else
//! depends on it.

mod bench;
mod bench_archive;
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
/// system allocator under `silt bench` (see the README). Its v2 line, not
/// v3: over warm `silt bench --archive` rounds v3 kept taking fresh memory
/// (median system time 0.10 s a round against 0.06 s, wall 0.21 s against
/// 0.19 s; one `compactor --once` over four topics peaked at 550–660 MB
/// against 240–370 MB), and produce and consume were no faster.
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
