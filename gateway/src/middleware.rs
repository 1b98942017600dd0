//! Per-request plumbing: request ids, client addresses, error rendering and HTTP metrics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use authstack_protocol::{ErrorBody, ErrorCode};
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::client_ip::TrustedProxies;
use crate::error;
use crate::request_id::{REQUEST_ID_HEADER, RequestContext, incoming_request_id};
use crate::state::AppState;

fn client_ip(req: &Request, proxies: &TrustedProxies) -> Option<String> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| proxies.client_ip(c.0.ip(), req.headers()).to_string())
}

/// The outermost layer: assigns the request id, runs the request in a `request` span carrying
/// it (so every log line written while the request is handled names it), renders
/// [`ErrorBody`] responses as JSON and logs server-side failures (5xx).
pub async fn request_context(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let request_id: Arc<str> = incoming_request_id(&req)
        .unwrap_or_else(|| state.request_ids.next())
        .into();
    let client_ip = client_ip(&req, &state.proxies);
    // Only the id in the span: a subscriber formats span fields for every request, logged or
    // not. Method and path go into the lines that need them.
    let span = tracing::info_span!("request", request_id = %request_id);
    let (method, uri) = (req.method().clone(), req.uri().clone());
    req.extensions_mut().insert(RequestContext {
        request_id: request_id.clone(),
        client_ip,
    });
    let mut response = next.run(req).instrument(span.clone()).await;
    let body = response.extensions_mut().remove::<ErrorBody>();
    if let Some(body) = body {
        if response.status().is_server_error() {
            span.in_scope(|| {
                tracing::warn!(
                    %method,
                    path = uri.path(),
                    status = response.status().as_u16(),
                    code = body.code.as_str(),
                    error = %body.message,
                    "request failed"
                );
            });
        }
        response = error::render(&body, &request_id);
    } else if response.status() == StatusCode::METHOD_NOT_ALLOWED {
        let allow = response.headers().get(header::ALLOW).cloned();
        response = error::render(
            &ErrorBody::new(
                ErrorCode::MethodNotAllowed,
                "method not allowed on this path",
            ),
            &request_id,
        );
        if let Some(allow) = allow {
            response.headers_mut().insert(header::ALLOW, allow);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    response
}

/// The outermost layer: API responses carry tokens, claims or account data, so no cache —
/// browser, proxy or CDN — may store them (RFC 6749 section 5.1, RFC 9111). Responses that
/// chose their own caching (the public JWKS) keep it.
pub async fn no_store(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    }
    response
}

/// Route-level layer: request counts and latency per route template.
pub async fn http_metrics(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().to_string();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!("authstack_http_request_duration_seconds", "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("authstack_http_requests_total", "method" => method, "route" => route, "status" => status)
        .increment(1);
    response
}
