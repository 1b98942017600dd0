//! `/healthz`, `/readyz` (public port) and `/metrics` (metrics listener).

use axum::extract::State;
use axum::http::StatusCode;

use crate::state::AppState;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "`ok`", body = String, content_type = "text/plain")))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: connected to the broker and holding verification keys.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "`ready`", body = String, content_type = "text/plain"),
    (status = 503, description = "Not connected to the broker, or no verification keys yet", body = String, content_type = "text/plain")))]
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
