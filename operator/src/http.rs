//! `/healthz`, `/readyz` and `/metrics` on `--metrics-listen`.
//!
//! - `/healthz`: 200 while the process runs.
//! - `/readyz`: 200 once the operator reached the API server and can serve its role, leader or
//!   standby (a standby is ready: it is a healthy replica waiting for the Lease; reporting it
//!   unready would stall rollouts of the operator's own Deployment). 503 before that and
//!   while shutting down. The body says `leader` or `standby`.
//! - `/metrics`: Prometheus text format.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use authstack_telemetry::Metrics;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::error::{Error, Result};

/// Shared health state.
#[derive(Clone, Default)]
pub struct Health {
    ready: Arc<AtomicBool>,
    leader: Arc<AtomicBool>,
}

impl Health {
    /// Marks the process ready (or not).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Records whether this replica leads.
    pub fn set_leader(&self, leader: bool) {
        self.leader.store(leader, Ordering::SeqCst);
        metrics::gauge!(crate::metrics::LEADER).set(if leader { 1.0 } else { 0.0 });
    }

    /// Whether this replica leads.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::SeqCst)
    }

    /// Whether the process is ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

#[derive(Clone)]
struct AppState {
    health: Health,
    metrics: Metrics,
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    let role = if s.health.is_leader() {
        "leader"
    } else {
        "standby"
    };
    if s.health.is_ready() {
        (StatusCode::OK, role)
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

async fn metrics_text(State(s): State<AppState>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}

/// The router (exposed for tests).
pub fn router(health: Health, metrics: Metrics) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(AppState { health, metrics })
}

/// Binds the listener (errors surface at start-up) and returns the serving future and the
/// bound address.
pub async fn bind(
    addr: SocketAddr,
    health: Health,
    metrics: Metrics,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, impl std::future::Future<Output = ()>)> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Listen { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| Error::Listen { addr, source })?;
    let app = router(health, metrics);
    let serve = async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::warn!(error = %e, "metrics listener stopped");
        }
    };
    Ok((local, serve))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn endpoints_answer() {
        let health = Health::default();
        let (addr, serve) = bind(
            "127.0.0.1:0".parse().unwrap(),
            health.clone(),
            authstack_telemetry::metrics(),
            std::future::pending(),
        )
        .await
        .unwrap();
        let server = tokio::spawn(serve);
        let get = |path: &'static str| async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            stream
                .write_all(
                    format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                        .as_bytes(),
                )
                .await
                .unwrap();
            let mut out = String::new();
            stream.read_to_string(&mut out).await.unwrap();
            out
        };
        assert!(get("/healthz").await.starts_with("HTTP/1.1 200"));
        assert!(get("/readyz").await.starts_with("HTTP/1.1 503"));
        health.set_ready(true);
        let r = get("/readyz").await;
        assert!(
            r.starts_with("HTTP/1.1 200") && r.ends_with("standby"),
            "{r}"
        );
        health.set_leader(true);
        assert!(get("/readyz").await.ends_with("leader"));
        metrics::counter!("authstack_operator_http_test_total").increment(1);
        assert!(
            get("/metrics")
                .await
                .contains("authstack_operator_http_test_total")
        );
        server.abort();
    }
}
