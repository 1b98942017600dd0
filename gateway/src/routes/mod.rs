//! HTTP routes of the gateway: the API of `docs/http-api.md`.

mod access;
mod auth;
mod health;
mod users;
mod wellknown;

use authstack_protocol::ErrorCode;
use axum::Router;
use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use tower::Layer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::openapi::ApiDoc;
use serde_json::value::RawValue;

use crate::error::ApiError;
use crate::middleware::{HttpMetricsLayer, RequestContextLayer, WithRequestContext};
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

/// The complete service: every request in its [`RequestContextLayer`], then the router, with the
/// OpenAPI description of every route it serves (`/openapi.json`, Swagger UI at `/docs`, ReDoc
/// at `/redoc`).
pub fn router(state: AppState) -> WithRequestContext<Router> {
    let (api, description) = documented_routes().split_for_parts();
    let router = api
        .merge(crate::openapi::docs_router(description))
        .route_layer(HttpMetricsLayer(state.clone()))
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such endpoint") })
        .with_state(state.clone());
    // Around the router, not `Router::layer`: that would box the layer around every route.
    RequestContextLayer(state).layer(router)
}

/// The OpenAPI description of every route [`router`] serves.
pub fn openapi() -> utoipa::openapi::OpenApi {
    documented_routes().split_for_parts().1
}

/// Every API route, registered with its description.
fn documented_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(auth::register))
        .routes(routes!(auth::login))
        .routes(routes!(auth::refresh))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::logout_all))
        .routes(routes!(auth::session))
        .routes(routes!(users::get_me, users::update_me, users::delete_me))
        .routes(routes!(users::change_password))
        .routes(routes!(users::list))
        .routes(routes!(users::get, users::update, users::delete))
        .routes(routes!(access::check))
        .routes(routes!(crate::ws::upgrade))
        .routes(routes!(wellknown::jwks))
        .routes(routes!(wellknown::openid_configuration))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
}

/// The metrics listener's router: Prometheus `/metrics` only, kept off the public port.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(health::metrics))
        .with_state(state)
}
