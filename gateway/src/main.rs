//! gateway binary: configuration, telemetry, start-up and signals.

use anyhow::Context;
use authstack_bus::CancellationToken;
use clap::Parser;
use gateway::{Application, Config};

/// mimalloc instead of glibc's malloc: per-request allocations (headers, bodies, futures) cost
/// less, measured by `make bench` (docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    authstack_telemetry::init_tracing(
        authstack_telemetry::LogFormat::from_env(),
        "info,lapin=warn",
    );
    let shutdown = CancellationToken::new();
    let app = Application::build(config, shutdown.clone())
        .await
        .context("starting the gateway")?;
    tokio::spawn(async move {
        authstack_telemetry::shutdown_signal().await;
        tracing::info!("shutting down: finishing in-flight requests");
        shutdown.cancel();
    });
    app.run_until_stopped().await.context("serving")?;
    Ok(())
}
