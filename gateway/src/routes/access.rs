//! `POST /api/v1/access/check`.

use crate::openapi::{BadInput, Unauthenticated, Upstream};
use authstack_protocol::rpc::{AccessCheckParams, AccessDecision, Call};
use authstack_protocol::validate;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::raw_json;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::state::AppState;

/// Whether the caller's roles allow `{method, path}` → `{"allowed": bool}`.
#[utoipa::path(post, path = "/api/v1/access/check", tag = "access", request_body = AccessCheckParams, security(("bearer" = [])),
    responses((status = 200, description = "The role policy's verdict", body = AccessDecision), BadInput, Unauthenticated, Upstream))]
pub async fn check(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(p): JsonBody<AccessCheckParams>,
) -> Result<Response, ApiError> {
    validate::access_check(&p)?;
    let raw = state.call(&Call::CheckAccess(p), caller.context()).await?;
    Ok(raw_json(StatusCode::OK, &raw))
}
