//! `/healthz`, `/readyz` and `/metrics` for probes and Prometheus.

use std::time::Duration;

use authstack_bus::RpcServer;
use authstack_telemetry::Metrics;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use sqlx::PgPool;

#[derive(Clone)]
struct Probe {
    pool: PgPool,
    server: RpcServer,
    metrics: Metrics,
}

/// The probe router.
pub fn router(pool: PgPool, server: RpcServer, metrics: Metrics) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route(
            "/metrics",
            get(|State(p): State<Probe>| async move { p.metrics.render() }),
        )
        .with_state(Probe {
            pool,
            server,
            metrics,
        })
}

/// Ready when consuming RPC requests and the database answers (keys are loaded before the
/// server starts consuming).
async fn ready(State(p): State<Probe>) -> (StatusCode, String) {
    if !p.server.is_consuming() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not consuming RPC requests".into(),
        );
    }
    let db = tokio::time::timeout(
        Duration::from_secs(2),
        crate::repo::maintenance::ping(&p.pool),
    )
    .await;
    match db {
        Ok(Ok(_)) => (StatusCode::OK, "ready".into()),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            "database unavailable".into(),
        ),
    }
}
