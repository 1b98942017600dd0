//! Shared state of the gateway's handlers.

use std::ops::Deref;
use std::sync::Arc;

use authstack_bus::RpcClient;
use authstack_protocol::rpc::{Call, CallContext, RpcRequest};
use authstack_telemetry::Metrics;
use serde_json::value::RawValue;

use crate::auth::TokenCache;
use crate::config::Config;
use crate::error::ApiError;
use crate::keys::KeyManager;
use crate::middleware::RequestIds;

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
    /// Metrics renderer.
    pub metrics: Metrics,
    /// Clock skew allowed on cached tokens.
    pub leeway_secs: i64,
    /// Request id generator.
    pub request_ids: RequestIds,
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
