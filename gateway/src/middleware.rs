//! Per-request plumbing: request ids, client addresses, error rendering and HTTP metrics.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use authstack_protocol::{ErrorBody, ErrorCode};
use authstack_telemetry::in_request;
use axum::extract::{ConnectInfo, MatchedPath, Request};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::client_ip::TrustedProxies;
use crate::error;
use crate::request_id::{REQUEST_ID_HEADER, RequestContext, incoming_request_id};
use crate::state::AppState;

fn client_ip(req: &Request, proxies: &TrustedProxies) -> Option<IpAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| proxies.client_ip(c.0.ip(), req.headers()))
}

/// The outermost layer: assigns the request id, runs every poll of the request
/// [`in_request`](authstack_telemetry::in_request) (so every log line written while the request
/// is handled names it, as a `request` span carrying it would, without a span's cost), renders
/// [`ErrorBody`] responses as JSON, logs server-side failures (5xx) and marks responses
/// uncacheable ([`no_store`]).
///
/// A tower layer rather than `axum::middleware::from_fn`: its future is a plain struct around
/// the inner one, where `from_fn` boxes the inner service and the middleware's future for
/// every request (measured on `/api/v1/auth/session`: docs/performance.md).
#[derive(Clone)]
pub struct RequestContextLayer(pub AppState);

impl<S> Layer<S> for RequestContextLayer {
    type Service = WithRequestContext<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WithRequestContext {
            state: self.0.clone(),
            inner,
        }
    }
}

/// The service of [`RequestContextLayer`].
#[derive(Clone)]
pub struct WithRequestContext<S> {
    state: AppState,
    inner: S,
}

impl<S> Service<Request> for WithRequestContext<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = RequestContextFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let request_id = incoming_request_id(&req).unwrap_or_else(|| self.state.request_ids.next());
        let client_ip = client_ip(&req, &self.state.proxies);
        let (method, uri) = (req.method().clone(), req.uri().clone());
        req.extensions_mut().insert(RequestContext {
            request_id: request_id.clone(),
            client_ip,
        });
        let inner = in_request(&request_id, || self.inner.call(req));
        RequestContextFuture {
            inner,
            request_id,
            method,
            uri,
        }
    }
}

pin_project! {
    /// The future of [`WithRequestContext`]: the inner response, finished by [`finish`].
    pub struct RequestContextFuture<F> {
        #[pin]
        inner: F,
        request_id: Arc<str>,
        method: Method,
        uri: Uri,
    }
}

impl<F> Future for RequestContextFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let (inner, request_id) = (this.inner, &*this.request_id);
        in_request(request_id, || {
            let Ok(response) = ready!(inner.poll(cx));
            Poll::Ready(Ok(finish(response, request_id, this.method, this.uri)))
        })
    }
}

/// What [`RequestContextLayer`] does to a response: the error envelope, the 5xx log line, the
/// request id header and [`no_store`].
fn finish(mut response: Response, request_id: &str, method: &Method, uri: &Uri) -> Response {
    let body = response.extensions_mut().remove::<ErrorBody>();
    if let Some(body) = body {
        if response.status().is_server_error() {
            tracing::warn!(
                %method,
                path = uri.path(),
                status = response.status().as_u16(),
                code = body.code.as_str(),
                error = %body.message,
                "request failed"
            );
        }
        response = error::render(&body, request_id);
    } else if response.status() == StatusCode::METHOD_NOT_ALLOWED {
        let allow = response.headers().get(header::ALLOW).cloned();
        response = error::render(
            &ErrorBody::new(
                ErrorCode::MethodNotAllowed,
                "method not allowed on this path",
            ),
            request_id,
        );
        if let Some(allow) = allow {
            response.headers_mut().insert(header::ALLOW, allow);
        }
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
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

/// Route-level layer: request counts and latency per route template (a tower layer, for the
/// reason given at [`RequestContextLayer`]).
#[derive(Clone)]
pub struct HttpMetricsLayer(pub AppState);

impl<S> Layer<S> for HttpMetricsLayer {
    type Service = WithHttpMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WithHttpMetrics {
            state: self.0.clone(),
            inner,
        }
    }
}

/// The service of [`HttpMetricsLayer`].
#[derive(Clone)]
pub struct WithHttpMetrics<S> {
    state: AppState,
    inner: S,
}

impl<S> Service<Request> for WithHttpMetrics<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = HttpMetricsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let started = Instant::now();
        let route = req.extensions().get::<MatchedPath>().cloned();
        let method = req.method().clone();
        HttpMetricsFuture {
            inner: self.inner.call(req),
            state: self.state.clone(),
            started,
            route,
            method,
        }
    }
}

pin_project! {
    /// The future of [`WithHttpMetrics`]: records the answer's status and latency.
    pub struct HttpMetricsFuture<F> {
        #[pin]
        inner: F,
        state: AppState,
        started: Instant,
        route: Option<MatchedPath>,
        method: Method,
    }
}

impl<F> Future for HttpMetricsFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(response) = ready!(this.inner.poll(cx));
        this.state.http_metrics.record(
            this.route.as_ref().map_or("unmatched", |p| p.as_str()),
            this.method,
            response.status().as_u16(),
            this.started.elapsed().as_secs_f64(),
        );
        Poll::Ready(Ok(response))
    }
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
