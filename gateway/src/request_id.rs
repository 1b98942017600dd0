//! Request ids: the per-request context the outer middleware stores in each request, and the
//! generator of fresh ids.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::Request;
use axum::http::request::Parts;

/// Response and request header carrying the request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Request id and client address of the current request.
#[derive(Clone, Debug, Default)]
pub struct RequestContext {
    /// The request id (from a sane incoming `X-Request-Id`, or generated).
    pub request_id: Arc<str>,
    /// The client's address.
    pub client_ip: Option<String>,
}

impl RequestContext {
    /// The context the outer middleware stored in the request.
    pub fn from_parts(parts: &Parts) -> Self {
        parts
            .extensions
            .get::<RequestContext>()
            .cloned()
            .unwrap_or_default()
    }
}

/// Generates request ids: a random per-process prefix and a counter (cheap, unique).
pub struct RequestIds {
    prefix: String,
    next: AtomicU64,
}

impl Default for RequestIds {
    fn default() -> Self {
        RequestIds {
            prefix: uuid::Uuid::new_v4().simple().to_string()[..8].to_owned(),
            next: AtomicU64::new(1),
        }
    }
}

impl RequestIds {
    /// A fresh request id.
    pub fn next(&self) -> String {
        format!(
            "{}-{:x}",
            self.prefix,
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }
}

/// The incoming `X-Request-Id`, if it is sane: 1 to 128 characters of `[A-Za-z0-9-_.:]` (it is
/// echoed in responses and written to logs, so nothing else is accepted).
pub fn incoming_request_id(req: &Request) -> Option<String> {
    let v = req.headers().get(REQUEST_ID_HEADER)?.to_str().ok()?;
    let sane = !v.is_empty()
        && v.len() <= 128
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    sane.then(|| v.to_owned())
}
