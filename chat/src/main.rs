//! authstack-chat binary: configuration, telemetry, start-up and signals.

use anyhow::Context;
use authstack_chat::{Application, Config};
use clap::Parser;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    authstack_telemetry::init_tracing(authstack_telemetry::LogFormat::from_env(), "info");
    let shutdown = CancellationToken::new();
    let app = Application::build(config, shutdown.clone())
        .await
        .context("starting the chat service")?;
    tokio::spawn(async move {
        authstack_telemetry::shutdown_signal().await;
        tracing::info!("shutting down");
        shutdown.cancel();
    });
    app.run_until_stopped().await.context("serving")?;
    Ok(())
}
