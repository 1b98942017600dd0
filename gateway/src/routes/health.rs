//! `/healthz`, `/readyz`, `/metrics`.

use axum::extract::State;
use axum::http::StatusCode;

use crate::state::AppState;

/// Liveness: the process answers.
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: connected to the broker and holding verification keys.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if !state.rpc.is_connected() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "message broker unreachable",
        );
    }
    if state.keys.current().is_none() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "verification keys not loaded",
        );
    }
    (StatusCode::OK, "ready")
}

/// Prometheus metrics.
pub async fn metrics(State(state): State<AppState>) -> String {
    state.metrics.render()
}
