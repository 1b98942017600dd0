//! `GET /api/v1/ws`: live events and RPC over a WebSocket (`docs/websocket.md`).
//!
//! The upgrade is accepted whenever the request is a WebSocket handshake; everything after it,
//! authentication failures included, is reported with a close code
//! ([`authstack_protocol::ws::CloseCode`]), because browsers cannot read the status of a
//! refused handshake. [`crate::ws_hub`] fans the process's one event subscription out to the sockets;
//! [`session`] runs one socket.

mod session;

use authstack_protocol::ErrorBody;
use authstack_protocol::FieldError;
use authstack_telemetry::InRequest;
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;

pub use crate::ws_hub::Hub;

use crate::auth;
use crate::error::ApiError;
use crate::extract::bad_parameter;
use crate::openapi::ErrorResponse;
use crate::request_id::RequestContext;
use crate::state::AppState;

/// tungstenite's read buffer, allocated per socket up front (its default, 128 KiB, made an idle
/// socket cost ~140 KiB of RSS; clients send little, and larger frames still arrive in pieces).
const READ_BUFFER_BYTES: usize = 4096;

/// Query parameters of the upgrade.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WsQuery {
    /// The access token, for clients that cannot set headers (browsers). It lands in access
    /// logs of proxies in front of the gateway: prefer the header or an `auth` frame.
    access_token: Option<String>,
}

/// Upgrades to a socket; the token may come from `Authorization`, `?access_token=` or the
/// first frame.
#[utoipa::path(get, path = "/api/v1/ws", tag = "websocket",
    params(("access_token" = Option<String>, Query, description = "The access token, for browsers (which cannot set headers). It lands in access logs of proxies: prefer the header or an `auth` frame.")),
    security((), ("bearer" = [])),
    description = "A WebSocket (RFC 6455; `docs/websocket.md`). Authenticate with `Authorization: Bearer`, `?access_token=`, or a first text frame `{\"type\":\"auth\",\"access_token\":\"…\"}` within `GATEWAY_WS_AUTH_TIMEOUT_MS`. Every frame is JSON text.\n\n**Client frames** (`ClientFrame`, `CallFrame`): `auth` (also to refresh the token in band, same account), `subscribe` `{topics, all_accounts?}` (routing-key patterns, `*` one word, `#` any; `all_accounts` for admins), `unsubscribe` `{topics}`, and RPC calls `{\"id\", \"method\", \"params\"}` with the REST operations' methods (`users.get_me`, `users.update_me`, `users.change_password`, `users.delete_me`, `auth.logout`, `auth.logout_all`, `access.check`, and for admins `users.list`, `users.get`, `users.update`, `users.delete`).\n\n**Server frames** (`ServerFrame`): `ready` (after each successful `auth`), `subscribed`, `event` (`Event`: the caller's `account.*` and `session.revoked`, `keys.rotated`; every account's for admins with `all_accounts`), `reply` `{id, result | error}`, `error` (a frame that could not be accepted). The gateway pings every `GATEWAY_WS_PING_INTERVAL_SECS`.",
    responses(
        (status = 101, description = "Switching to the WebSocket protocol; then frames as described, and a close code from the table"),
        (status = 400, description = "`validation.failed`: not a WebSocket handshake, or an unknown query parameter", body = ErrorResponse),
    ))]
pub async fn upgrade(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    headers: HeaderMap,
    query: Result<Query<WsQuery>, QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = upgrade.map_err(|e| {
        ApiError(ErrorBody::validation(vec![FieldError::new(
            "upgrade",
            "required",
            format!(
                "this endpoint speaks WebSocket only (GET with `Connection: Upgrade`, \
                 `Upgrade: websocket`): {}",
                e.body_text()
            ),
        )]))
    })?;
    let Query(query) = query.map_err(|e| bad_parameter("query", e.body_text()))?;
    // A malformed credential is reported after the upgrade, like a wrong one.
    let presented = match auth::bearer_token(&headers) {
        Ok(Some(t)) => Some(Ok(t.to_owned())),
        Ok(None) => query.access_token.map(Ok),
        Err(ApiError(e)) => Some(Err(e)),
    };
    let config = &state.config;
    let max = config.ws_max_message_bytes as usize;
    // The socket's lines are logged by its own tasks, after the upgrade request's polls: each of
    // their polls is marked with the request (`InRequest`), as the request's were. (Two real
    // spans per socket cost ~3 KiB of RSS per idle socket at `info`: docs/performance.md.)
    let request_id = ctx.request_id.clone();
    Ok(upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| {
            InRequest::new(request_id, session::run(state, socket, ctx, presented))
        }))
}
