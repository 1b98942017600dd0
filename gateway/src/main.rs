//! gateway binary: configuration, telemetry, start-up and signals.

use anyhow::Context;
use authstack_bus::CancellationToken;
use clap::Parser;
use gateway::{Application, Config};

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
        wait_for_signal().await;
        tracing::info!("shutting down: finishing in-flight requests");
        shutdown.cancel();
    });
    app.run_until_stopped().await.context("serving")?;
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}
