//! `/api/v1/auth/*`: registration, login, refresh, logout and the session view.

use authstack_protocol::rpc::{Call, LoginParams, RefreshTokenParams, RegisterParams};
use authstack_protocol::validate;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::{json_bytes, no_content, raw_json};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::openapi::{
    BadInput, Conflicting, ErrorResponse, KeysUnavailable, Throttled, Unauthenticated, Upstream,
};
use crate::request_id::RequestContext;
use crate::state::AppState;
use crate::token_cache::SessionView;
use authstack_protocol::{Account, TokenPair};

/// `POST /api/v1/auth/register` → 201 with the account.
#[utoipa::path(post, path = "/api/v1/auth/register", tag = "auth", request_body = RegisterParams,
    description = "Creates an account with the role `user`. A taken email answers like a new registration but creates nothing (the owner is told by an `account.registration_attempted` event); a taken user name is a 409.",
    responses((status = 201, description = "The account", body = Account), BadInput, Conflicting, Throttled, Upstream))]
pub async fn register(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    JsonBody(p): JsonBody<RegisterParams>,
) -> Result<Response, ApiError> {
    validate::register(&p)?;
    let raw = state
        .call(&Call::Register(p), ctx.call_context(None))
        .await?;
    Ok(raw_json(StatusCode::CREATED, &raw))
}

/// `POST /api/v1/auth/login` → 200 with a token pair.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginParams,
    description = "Logs in with an email or user name: a new session with an access token (JWT) and a single-use refresh token.",
    responses((status = 200, description = "A token pair", body = TokenPair), BadInput,
        (status = 401, description = "`auth.invalid_credentials`: wrong login or password, or a disabled account", body = ErrorResponse),
        Throttled, Upstream))]
pub async fn login(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    JsonBody(p): JsonBody<LoginParams>,
) -> Result<Response, ApiError> {
    validate::login(&p)?;
    let raw = state.call(&Call::Login(p), ctx.call_context(None)).await?;
    Ok(raw_json(StatusCode::OK, &raw))
}

/// `POST /api/v1/auth/refresh` → 200 with a new pair; the old refresh token is dead.
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshTokenParams,
    description = "Exchanges a refresh token for a new pair. Presenting a replaced token again (after the grace window) revokes the session.",
    responses((status = 200, description = "A new token pair", body = TokenPair), BadInput,
        (status = 401, description = "`auth.invalid_token`: unknown, expired, reused or revoked refresh token", body = ErrorResponse),
        Conflicting, Throttled, Upstream))]
pub async fn refresh(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    JsonBody(p): JsonBody<RefreshTokenParams>,
) -> Result<Response, ApiError> {
    validate::refresh_token(&p)?;
    let raw = state
        .call(&Call::Refresh(p), ctx.call_context(None))
        .await?;
    Ok(raw_json(StatusCode::OK, &raw))
}

/// `POST /api/v1/auth/logout` → 204; ends the session of that refresh token.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", request_body = RefreshTokenParams,
    security(("bearer" = [])),
    responses((status = 204, description = "The session has ended"), BadInput, Unauthenticated, Upstream))]
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
#[utoipa::path(post, path = "/api/v1/auth/logout-all", tag = "auth", security(("bearer" = [])),
    responses((status = 204, description = "Every session of the caller has ended"), Unauthenticated, Upstream))]
pub async fn logout_all(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    state.call(&Call::LogoutAll, caller.context()).await?;
    Ok(no_content())
}

/// `GET /api/v1/auth/session` → the verified claims and `kid`, answered by the gateway alone.
#[utoipa::path(get, path = "/api/v1/auth/session", tag = "auth", security(("bearer" = [])),
    responses((status = 200, description = "The verified claims of the access token and the `kid` that signed it", body = SessionView<'static>), Unauthenticated, KeysUnavailable))]
pub async fn session(caller: Caller) -> Response {
    json_bytes(StatusCode::OK, caller.token.session_json.clone())
}
