//! Per-request plumbing: request ids, client addresses, error rendering and HTTP metrics.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::RwLock;
use std::time::Instant;

use authstack_protocol::{ErrorBody, ErrorCode};
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::client_ip::TrustedProxies;
use crate::error;
use crate::request_id::{REQUEST_ID_HEADER, RequestContext, incoming_request_id};
use crate::state::AppState;

fn client_ip(req: &Request, proxies: &TrustedProxies) -> Option<IpAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| proxies.client_ip(c.0.ip(), req.headers()))
}

/// The outermost layer: assigns the request id, runs the request in a `request` span carrying
/// it (so every log line written while the request is handled names it), renders
/// [`ErrorBody`] responses as JSON, logs server-side failures (5xx) and marks responses
/// uncacheable ([`no_store`]).
pub async fn request_context(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let request_id = incoming_request_id(&req).unwrap_or_else(|| state.request_ids.next());
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
    no_store(&mut response);
    response
}

/// API responses carry tokens, claims or account data, so no cache — browser, proxy or CDN —
/// may store them (RFC 6749 section 5.1, RFC 9111). Responses that chose their own caching
/// (the public JWKS) keep it.
fn no_store(response: &mut Response) {
    let headers = response.headers_mut();
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    }
}

/// The handles of `authstack_http_requests_total` and `authstack_http_request_duration_seconds`,
/// registered once per route template, method and status: a request then costs two atomic
/// updates instead of building labels and looking them up in the registry.
#[derive(Default)]
pub struct HttpMetrics {
    routes: RwLock<HashMap<String, RouteMetrics>>,
}

struct RouteMetrics {
    duration: metrics::Histogram,
    requests: HashMap<(&'static str, u16), metrics::Counter>,
}

/// The `method` label: a standard method's name, `other` for any other (a client may send any
/// token as a method; each would otherwise add a series).
fn method_label(method: &Method) -> &'static str {
    const STANDARD: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
        Method::TRACE,
        Method::CONNECT,
    ];
    STANDARD
        .iter()
        .find(|m| *m == method)
        .map_or("other", |m| m.as_str())
}

impl HttpMetrics {
    fn record(&self, route: &str, method: &Method, status: u16, seconds: f64) {
        let method = method_label(method);
        if let Ok(routes) = self.routes.read()
            && let Some(r) = routes.get(route)
            && let Some(counter) = r.requests.get(&(method, status))
        {
            r.duration.record(seconds);
            counter.increment(1);
            return;
        }
        let Ok(mut routes) = self.routes.write() else {
            return;
        };
        let r = routes.entry(route.to_owned()).or_insert_with(|| RouteMetrics {
            duration: metrics::histogram!("authstack_http_request_duration_seconds", "route" => route.to_owned()),
            requests: HashMap::new(),
        });
        r.duration.record(seconds);
        r.requests
            .entry((method, status))
            .or_insert_with(|| {
                metrics::counter!("authstack_http_requests_total", "method" => method, "route" => route.to_owned(), "status" => status.to_string())
            })
            .increment(1);
    }
}

/// Route-level layer: request counts and latency per route template.
pub async fn http_metrics(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = req.method().clone();
    let response = next.run(req).await;
    state.http_metrics.record(
        route.as_ref().map_or("unmatched", |p| p.as_str()),
        &method,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invented_http_methods_share_one_series() {
        let metrics = HttpMetrics::default();
        for i in 0..100 {
            let invented = Method::from_bytes(format!("ZZ{i}").as_bytes()).unwrap();
            metrics.record("/healthz", &invented, 405, 0.001);
        }
        metrics.record("/healthz", &Method::GET, 200, 0.001);
        metrics.record("/healthz", &Method::DELETE, 405, 0.001);
        let routes = metrics.routes.read().unwrap();
        let series = routes["/healthz"].requests.len();
        assert_eq!(
            series, 3,
            "GET 200, DELETE 405 and one for every other method"
        );
    }
}
