//! Shared state of the gateway's handlers.

use std::ops::Deref;
use std::sync::Arc;

use authstack_bus::{CancellationToken, EventSubscriber, RpcClient};
use authstack_protocol::rpc::{Call, CallContext, RpcRequest};
use authstack_telemetry::Metrics;
use serde_json::value::RawValue;

use crate::client_ip::TrustedProxies;
use crate::config::Config;
use crate::error::ApiError;
use crate::keys::KeyManager;
use crate::middleware::HttpMetrics;
use crate::request_id::RequestIds;
use crate::revocations::DenyList;
use crate::token_cache::TokenCache;
use crate::ws_hub::Hub;
use tokio::sync::Semaphore;

/// Everything handlers need.
pub struct StateInner {
    /// Configuration.
    pub config: Config,
    /// RPC to auth-svc.
    pub rpc: RpcClient,
    /// Verification keys.
    pub keys: Arc<KeyManager>,
    /// Verified tokens.
    pub tokens: TokenCache,
    /// Revoked sessions and deleted accounts.
    pub revocations: Arc<DenyList>,
    /// The process's one subscription to domain events, fanned out in process (subscribe for
    /// a receiver of every event from now on; `sessions()` changes after each reconnect).
    pub events: EventSubscriber,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub proxies: TrustedProxies,
    /// Metrics renderer.
    pub metrics: Metrics,
    /// The HTTP request metrics' handles.
    pub http_metrics: HttpMetrics,
    /// Clock skew allowed on cached tokens.
    pub leeway_secs: i64,
    /// Request id generator.
    pub request_ids: RequestIds,
    /// The WebSockets' registry and event fan-out.
    pub ws: Arc<Hub>,
    /// Open WebSockets at most (`GATEWAY_WS_MAX_SOCKETS`).
    pub ws_slots: Arc<Semaphore>,
    /// Cancelled when the gateway shuts down (sockets close with 1001).
    pub shutdown: CancellationToken,
}

/// Cheaply clonable handle to [`StateInner`].
#[derive(Clone)]
pub struct AppState(pub Arc<StateInner>);

impl Deref for AppState {
    type Target = StateInner;

    fn deref(&self) -> &StateInner {
        &self.0
    }
}

impl AppState {
    /// Calls auth-svc with the configured deadline.
    pub async fn call(&self, call: &Call, context: CallContext) -> Result<Box<RawValue>, ApiError> {
        let request = RpcRequest::new(call, context);
        self.rpc
            .call(&request, self.config.rpc_timeout())
            .await
            .map_err(ApiError::from)
    }
}
