//! The AuthStack operator binary: flags, logging, then [`authstack_operator::run`].

use authstack_telemetry::{LogFormat, init_tracing};
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_tracing(LogFormat::from_env(), "info");
    let config = authstack_operator::Config::parse();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        ?config,
        "starting authstack-operator"
    );
    authstack_operator::run(config).await?;
    tracing::info!("stopped");
    Ok(())
}
