use clap::Args;

#[derive(Debug, Args)]
pub struct BenchArgs {}

pub async fn run(_a: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("bench: not built yet")
}
