//! Shared state of the handlers.

use std::sync::Arc;

use authstack_telemetry::Metrics;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::keys::JwksKeys;
use crate::live::Hub;

/// Everything handlers need.
pub struct StateInner {
    /// Configuration.
    pub config: Config,
    /// The database.
    pub pool: PgPool,
    /// Verification keys from the JWKS.
    pub keys: Arc<JwksKeys>,
    /// Live fan-out of this replica.
    pub hub: Arc<Hub>,
    /// HTTP client for the gateway.
    pub http: reqwest::Client,
    /// Metrics renderer.
    pub metrics: Metrics,
    /// Cancelled at shutdown (live sockets close with 1001).
    pub shutdown: CancellationToken,
}

/// Cheaply clonable handle to [`StateInner`].
pub type AppState = Arc<StateInner>;
