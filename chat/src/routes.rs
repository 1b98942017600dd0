//! The REST API under `/api/v1/chats` and the probes.

use authstack_protocol::ErrorCode;
use authstack_protocol::chat::{
    CHAT_NAME_MAX, Chat, MESSAGE_MAX, MESSAGE_PAGE_MAX, MessagePage, NewChat, NewMessage,
};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::middleware::from_fn;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use uuid::Uuid;

use crate::auth::{Caller, username};
use crate::db::{self, Window};
use crate::error::{ApiError, request_context};
use crate::extract::JsonBody;
use crate::state::AppState;
use crate::ws;

/// The complete router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/chats", post(create).get(list))
        .route("/api/v1/chats/{id}", get(show))
        .route("/api/v1/chats/{id}/join", post(join))
        .route("/api/v1/chats/{id}/leave", post(leave))
        .route("/api/v1/chats/{id}/members", get(members))
        .route("/api/v1/chats/{id}/messages", post(send).get(history))
        .route("/api/v1/chats/{id}/ws", get(ws::live))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route(
            "/metrics",
            get(|State(s): State<AppState>| async move { s.metrics.render() }),
        )
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such endpoint") })
        .layer(from_fn(request_context))
        .with_state(state)
}

/// Checks a trimmed text field: required and at most `max` characters.
fn text_field(field: &str, value: &str, max: usize) -> Result<String, ApiError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(ApiError::field(
            field,
            "required",
            format!("{field} is required"),
        ));
    }
    if value.chars().count() > max {
        return Err(ApiError::field(
            field,
            "too_long",
            format!("{field} must be at most {max} characters"),
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(ApiError::field(
            field,
            "invalid_format",
            format!("{field} must not contain control characters"),
        ));
    }
    Ok(value.to_owned())
}

fn chat_id(path: Result<Path<String>, PathRejection>) -> Result<Uuid, ApiError> {
    let Path(raw) = path?;
    raw.parse()
        .map_err(|_| ApiError::field("id", "invalid_format", "chat id must be a UUID"))
}

/// What a caller may do with a chat.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read and write: members only.
    Member,
    /// Read: members, and administrators (role `admin` in the token).
    Read,
}

/// The chat, if it exists and `caller` has `access` (`auth.forbidden` otherwise).
pub async fn authorize(
    state: &AppState,
    caller: &Caller,
    chat: Uuid,
    access: Access,
) -> Result<Chat, ApiError> {
    let found = db::get_chat(&state.pool, chat)
        .await?
        .ok_or_else(|| ApiError::not_found("chat"))?;
    let admin_read = access == Access::Read && caller.is_admin();
    if !admin_read && !db::is_member(&state.pool, chat, caller.account_id).await? {
        return Err(ApiError::forbidden("you are not a member of this chat"));
    }
    Ok(found)
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(new): JsonBody<NewChat>,
) -> Result<impl IntoResponse, ApiError> {
    let name = text_field("name", &new.name, CHAT_NAME_MAX)?;
    let username = username(&state, &caller).await?;
    let chat = db::create_chat(&state.pool, &name, caller.account_id, &username).await?;
    tracing::info!(chat = %chat.id, account = %caller.account_id, "chat created");
    Ok((StatusCode::CREATED, Json(chat)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    all: bool,
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(q) = query?;
    if q.all && !caller.is_admin() {
        return Err(ApiError::forbidden(
            "listing every chat needs the admin role",
        ));
    }
    let scope = (!q.all).then_some(caller.account_id);
    Ok(Json(db::list_chats(&state.pool, scope).await?))
}

async fn show(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let chat = authorize(&state, &caller, chat_id(path)?, Access::Read).await?;
    Ok(Json(chat))
}

async fn join(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let id = chat_id(path)?;
    if db::get_chat(&state.pool, id).await?.is_none() {
        return Err(ApiError::not_found("chat"));
    }
    let username = username(&state, &caller).await?;
    if !db::join(&state.pool, id, caller.account_id, &username).await? {
        return Err(ApiError::not_found("chat"));
    }
    tracing::info!(chat = %id, account = %caller.account_id, "member joined");
    let chat = db::get_chat(&state.pool, id)
        .await?
        .ok_or_else(|| ApiError::not_found("chat"))?;
    Ok(Json(chat))
}

async fn leave(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let id = authorize(&state, &caller, chat_id(path)?, Access::Member)
        .await?
        .id;
    db::leave(&state.pool, id, caller.account_id).await?;
    tracing::info!(chat = %id, account = %caller.account_id, "member left");
    Ok(StatusCode::NO_CONTENT)
}

async fn members(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let id = authorize(&state, &caller, chat_id(path)?, Access::Read)
        .await?
        .id;
    Ok(Json(db::members(&state.pool, id).await?))
}

async fn send(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    JsonBody(new): JsonBody<NewMessage>,
) -> Result<impl IntoResponse, ApiError> {
    let id = chat_id(path)?;
    let text = text_field("text", &new.text, MESSAGE_MAX)?;
    let Some(message) = db::post_message(&state.pool, id, caller.account_id, &text).await? else {
        // Not stored: tell a missing chat from a chat the caller is not in.
        authorize(&state, &caller, id, Access::Member).await?;
        return Err(ApiError::forbidden("you are not a member of this chat"));
    };
    metrics::counter!("authstack_chat_messages_total").increment(1);
    Ok((StatusCode::CREATED, Json(message)))
}

/// `GET …/messages?limit=&before=` (older pages) or `?after=` (what came since).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Page size, 1 to [`MESSAGE_PAGE_MAX`] (default 50).
    pub limit: Option<i64>,
    /// Only messages older than this id.
    pub before: Option<i64>,
    /// Only messages newer than this id.
    pub after: Option<i64>,
}

impl HistoryQuery {
    /// The window and page size asked for.
    pub fn window(&self) -> Result<(Window, i64), ApiError> {
        let limit = self.limit.unwrap_or(50);
        if !(1..=MESSAGE_PAGE_MAX).contains(&limit) {
            return Err(ApiError::field(
                "limit",
                "out_of_range",
                format!("limit must be 1 to {MESSAGE_PAGE_MAX}"),
            ));
        }
        let window = match (self.before, self.after) {
            (Some(_), Some(_)) => {
                return Err(ApiError::field(
                    "after",
                    "conflict",
                    "give either before or after, not both",
                ));
            }
            (before, None) => Window::Before(before),
            (None, Some(after)) => Window::After(after),
        };
        Ok((window, limit))
    }
}

async fn history(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let id = chat_id(path)?;
    let Query(q) = query?;
    let (window, limit) = q.window()?;
    authorize(&state, &caller, id, Access::Read).await?;
    let (items, more) = db::messages(&state.pool, id, window, limit).await?;
    let next_before = match window {
        Window::Before(_) if more => items.first().map(|m| m.id),
        _ => None,
    };
    Ok(Json(MessagePage { items, next_before }))
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if !state.keys.is_loaded() {
        return (StatusCode::SERVICE_UNAVAILABLE, "JWKS not loaded");
    }
    if !db::ping(&state.pool).await {
        return (StatusCode::SERVICE_UNAVAILABLE, "database unreachable");
    }
    (StatusCode::OK, "ready")
}
