//! Request ids: the per-request context the outer middleware stores in each request, and the
//! generator of fresh ids.

use std::fmt::Write;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use authstack_protocol::rpc::{CallContext, Secret};
use axum::extract::Request;
use axum::http::request::Parts;

/// Response and request header carrying the request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Request id and client address of the current request.
#[derive(Clone, Debug, Default)]
pub struct RequestContext {
    /// The request id (from a sane incoming `X-Request-Id`, or generated).
    pub request_id: Arc<str>,
    /// The client's address (formatted only when a call to auth-svc carries it).
    pub client_ip: Option<IpAddr>,
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

    /// The context of a call to auth-svc made for this request, on behalf of the holder of
    /// `access_token` (none: an anonymous call).
    pub fn call_context(&self, access_token: Option<Secret>) -> CallContext {
        CallContext {
            request_id: self.request_id.to_string(),
            access_token,
            client_ip: self.client_ip.map(|ip| ip.to_string()),
        }
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
    /// A fresh request id: `<prefix>-<counter in hex>`, written into a string sized for the
    /// longest id, so it never grows (it runs for every request).
    pub fn next(&self) -> Arc<str> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut id = String::with_capacity(self.prefix.len() + 17);
        // Writing into a String cannot fail.
        let _ = write!(id, "{}-{n:x}", self.prefix);
        id.into()
    }
}

/// The incoming `X-Request-Id`, if it is sane: 1 to 128 characters of `[A-Za-z0-9-_.:]` (it is
/// echoed in responses and written to logs, so nothing else is accepted).
pub fn incoming_request_id(req: &Request) -> Option<Arc<str>> {
    let v = req.headers().get(REQUEST_ID_HEADER)?.to_str().ok()?;
    let sane = !v.is_empty()
        && v.len() <= 128
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    sane.then(|| v.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_the_prefix_and_the_counter_in_hex() {
        for n in [
            1,
            9,
            10,
            15,
            16,
            255,
            256,
            0xdead_beef,
            u64::MAX - 1,
            u64::MAX,
        ] {
            let ids = RequestIds {
                prefix: "abcd1234".to_owned(),
                next: AtomicU64::new(n),
            };
            assert_eq!(&*ids.next(), format!("abcd1234-{n:x}"));
        }
        let ids = RequestIds::default();
        assert_ne!(ids.next(), ids.next());
    }
}
