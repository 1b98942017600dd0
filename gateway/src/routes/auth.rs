//! `/api/v1/auth/*`: registration, login, refresh, logout and the session view.

use authstack_protocol::rpc::{Call, CallContext, LoginParams, RefreshTokenParams, RegisterParams};
use authstack_protocol::validate;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::{json_bytes, no_content, raw_json};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::middleware::RequestContext;
use crate::state::AppState;

fn anonymous(ctx: &RequestContext) -> CallContext {
    CallContext {
        request_id: ctx.request_id.to_string(),
        client_ip: ctx.client_ip.clone(),
        ..Default::default()
    }
}

/// `POST /api/v1/auth/register` → 201 with the account.
pub async fn register(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    JsonBody(p): JsonBody<RegisterParams>,
) -> Result<Response, ApiError> {
    validate::register(&p)?;
    let raw = state.call(&Call::Register(p), anonymous(&ctx)).await?;
    Ok(raw_json(StatusCode::CREATED, &raw))
}

/// `POST /api/v1/auth/login` → 200 with a token pair.
pub async fn login(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    JsonBody(p): JsonBody<LoginParams>,
) -> Result<Response, ApiError> {
    validate::login(&p)?;
    let raw = state.call(&Call::Login(p), anonymous(&ctx)).await?;
    Ok(raw_json(StatusCode::OK, &raw))
}

/// `POST /api/v1/auth/refresh` → 200 with a new pair; the old refresh token is dead.
pub async fn refresh(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    JsonBody(p): JsonBody<RefreshTokenParams>,
) -> Result<Response, ApiError> {
    validate::refresh_token(&p)?;
    let raw = state.call(&Call::Refresh(p), anonymous(&ctx)).await?;
    Ok(raw_json(StatusCode::OK, &raw))
}

/// `POST /api/v1/auth/logout` → 204; ends the session of that refresh token.
pub async fn logout(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(p): JsonBody<RefreshTokenParams>,
) -> Result<Response, ApiError> {
    validate::refresh_token(&p)?;
    state.call(&Call::Logout(p), caller.context()).await?;
    Ok(no_content())
}

/// `POST /api/v1/auth/logout-all` → 204; ends every session of the caller.
pub async fn logout_all(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    state.call(&Call::LogoutAll, caller.context()).await?;
    Ok(no_content())
}

/// `GET /api/v1/auth/session` → the verified claims and `kid`, answered by the gateway alone.
pub async fn session(caller: Caller) -> Response {
    json_bytes(StatusCode::OK, caller.token.session_json.clone())
}
