//! `/api/v1/users/*`: the caller's own account and account administration.

use authstack_protocol::rpc::{
    AdminUpdate, AdminUpdateParams, Call, ChangePasswordParams, DeleteMeParams, ListUsersParams,
    UpdateMeParams, UserIdParams,
};
use authstack_protocol::validate;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use uuid::Uuid;

use super::{no_content, raw_json};
use crate::auth::{Admin, Caller};
use crate::error::ApiError;
use crate::extract::{JsonBody, bad_parameter};
use crate::openapi::{
    AdminOnly, BadInput, Conflicting, Missing, Throttled, Unauthenticated, Upstream,
};
use crate::state::AppState;
use authstack_protocol::{Account, AccountPage};

/// `GET /api/v1/users/me`.
#[utoipa::path(get, path = "/api/v1/users/me", tag = "users", security(("bearer" = [])),
    responses((status = 200, description = "The caller's account", body = Account), Unauthenticated, Upstream))]
pub async fn get_me(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    let raw = state.call(&Call::GetMe, caller.context()).await?;
    Ok(raw_json(StatusCode::OK, &raw))
}

/// `PATCH /api/v1/users/me` with any of `email`, `username`, `display_name` (a new `email`
/// needs `current_password`).
#[utoipa::path(patch, path = "/api/v1/users/me", tag = "users", request_body = UpdateMeParams, security(("bearer" = [])),
    responses((status = 200, description = "The updated account", body = Account), BadInput, Unauthenticated, Conflicting, Throttled, Upstream))]
pub async fn update_me(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(p): JsonBody<UpdateMeParams>,
) -> Result<Response, ApiError> {
    validate::update_me(&p)?;
    let raw = state.call(&Call::UpdateMe(p), caller.context()).await?;
    Ok(raw_json(StatusCode::OK, &raw))
}

/// `DELETE /api/v1/users/me` with `{current_password}` → 204.
#[utoipa::path(delete, path = "/api/v1/users/me", tag = "users", request_body = DeleteMeParams, security(("bearer" = [])),
    responses((status = 204, description = "The account is deleted; its tokens are dead"), BadInput, Unauthenticated, AdminOnly, Throttled, Upstream))]
pub async fn delete_me(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(p): JsonBody<DeleteMeParams>,
) -> Result<Response, ApiError> {
    validate::delete_me(&p)?;
    state.call(&Call::DeleteMe(p), caller.context()).await?;
    Ok(no_content())
}

/// `POST /api/v1/users/me/password` → 204; other sessions are revoked.
#[utoipa::path(post, path = "/api/v1/users/me/password", tag = "users", request_body = ChangePasswordParams, security(("bearer" = [])),
    responses((status = 204, description = "Changed; every other session is revoked"), BadInput, Unauthenticated, Throttled, Upstream))]
pub async fn change_password(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(p): JsonBody<ChangePasswordParams>,
) -> Result<Response, ApiError> {
    validate::change_password(&p)?;
    state
        .call(&Call::ChangePassword(p), caller.context())
        .await?;
    Ok(no_content())
}

/// `GET /api/v1/users?limit=&offset=` (admin).
#[utoipa::path(get, path = "/api/v1/users", tag = "users", params(ListUsersParams), security(("bearer" = [])),
    responses((status = 200, description = "One page of accounts, oldest first", body = AccountPage), BadInput, Unauthenticated, AdminOnly, Upstream))]
pub async fn list(
    State(state): State<AppState>,
    Admin(caller): Admin,
    query: Result<Query<ListUsersParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = query.map_err(|e| bad_parameter("query", e.body_text()))?;
    validate::list_users(&p)?;
    let raw = state.call(&Call::ListUsers(p), caller.context()).await?;
    Ok(raw_json(StatusCode::OK, &raw))
}

fn account_id(path: Result<Path<String>, PathRejection>) -> Result<Uuid, ApiError> {
    let Path(raw) = path.map_err(|e| bad_parameter("id", e.body_text()))?;
    raw.parse()
        .map_err(|_| bad_parameter("id", "account id must be a UUID"))
}

/// `GET /api/v1/users/{id}` (admin).
#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users", params(("id" = Uuid, Path, description = "Account id")), security(("bearer" = [])),
    responses((status = 200, description = "The account", body = Account), BadInput, Unauthenticated, AdminOnly, Missing, Upstream))]
pub async fn get(
    State(state): State<AppState>,
    Admin(caller): Admin,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = account_id(path)?;
    let raw = state
        .call(&Call::GetUser(UserIdParams { id }), caller.context())
        .await?;
    Ok(raw_json(StatusCode::OK, &raw))
}

/// `PATCH /api/v1/users/{id}` with any of `roles`, `disabled`, `display_name` (admin).
#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "users", request_body = AdminUpdate, params(("id" = Uuid, Path, description = "Account id")), security(("bearer" = [])),
    description = "Disabling an account revokes its sessions (its sockets close with 4004). The last active admin cannot be demoted or disabled.",
    responses((status = 200, description = "The updated account", body = Account), BadInput, Unauthenticated, AdminOnly, Missing, Conflicting, Upstream))]
pub async fn update(
    State(state): State<AppState>,
    Admin(caller): Admin,
    path: Result<Path<String>, PathRejection>,
    JsonBody(update): JsonBody<AdminUpdate>,
) -> Result<Response, ApiError> {
    let id = account_id(path)?;
    validate::admin_update(&update)?;
    let call = Call::UpdateUser(AdminUpdateParams { id, update });
    let raw = state.call(&call, caller.context()).await?;
    Ok(raw_json(StatusCode::OK, &raw))
}

/// `DELETE /api/v1/users/{id}` → 204 (admin).
#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "users", params(("id" = Uuid, Path, description = "Account id")), security(("bearer" = [])),
    responses((status = 204, description = "The account is deleted"), BadInput, Unauthenticated, AdminOnly, Missing, Upstream))]
pub async fn delete(
    State(state): State<AppState>,
    Admin(caller): Admin,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = account_id(path)?;
    state
        .call(&Call::DeleteUser(UserIdParams { id }), caller.context())
        .await?;
    Ok(no_content())
}
