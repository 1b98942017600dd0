//! HTTP routes of the gateway (DESIGN section 3).

mod access;
mod auth;
mod health;
mod users;
mod wellknown;

use authstack_protocol::ErrorCode;
use axum::Router;
use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::value::RawValue;

use crate::error::ApiError;
use crate::middleware::{http_metrics, request_context};
use crate::state::AppState;

/// A JSON response passing auth-svc's result through untouched.
pub(crate) fn raw_json(status: StatusCode, raw: &RawValue) -> Response {
    json_bytes(status, raw.get().as_bytes().to_vec())
}

pub(crate) fn json_bytes(status: StatusCode, body: impl Into<Body>) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

pub(crate) fn no_content() -> Response {
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(Body::empty())
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// The complete router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/auth/register", post(auth::register))
        .route("/api/v1/auth/login", post(auth::login))
        .route("/api/v1/auth/refresh", post(auth::refresh))
        .route("/api/v1/auth/logout", post(auth::logout))
        .route("/api/v1/auth/logout-all", post(auth::logout_all))
        .route("/api/v1/auth/session", get(auth::session))
        .route(
            "/api/v1/users/me",
            get(users::get_me)
                .patch(users::update_me)
                .delete(users::delete_me),
        )
        .route("/api/v1/users/me/password", post(users::change_password))
        .route("/api/v1/users", get(users::list))
        .route(
            "/api/v1/users/{id}",
            get(users::get).patch(users::update).delete(users::delete),
        )
        .route("/api/v1/access/check", post(access::check))
        .route("/.well-known/jwks.json", get(wellknown::jwks))
        .route(
            "/.well-known/openid-configuration",
            get(wellknown::openid_configuration),
        )
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route_layer(from_fn(http_metrics))
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such endpoint") })
        .layer(from_fn_with_state(state.clone(), request_context))
        .with_state(state)
}
