//! JSON request bodies read the same way by every AuthStack HTTP service (the gateway and the
//! chat service):
//!
//! - at most [`BodyLimits::max_bytes`], received within [`BodyLimits::read_timeout`];
//! - an oversized body is read and thrown away up to [`DISCARD_MAX_BYTES`] more before the
//!   answer, so a client still sending reads the 413 instead of a connection reset, and its
//!   connection stays usable (nginx's lingering close does the same);
//! - the media type is checked after reading, so a client still sending reads that answer too;
//! - exactly one JSON object, with one field-level error naming what is wrong.
//!
//! Every failure is a [`Rejection`], which becomes the platform's [`ErrorBody`].
//!
//! [`server`] is the server loop the services run on (connection limit, header and idle
//! timeouts, worker threads).

pub mod server;

use std::time::Duration;

use authstack_protocol::{ErrorBody, ErrorCode, FieldError};
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, header};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;

/// How much of an oversized body is read and thrown away before answering 413. Past it, or past
/// the read timeout, the connection is closed with the rest unread.
pub const DISCARD_MAX_BYTES: usize = 1024 * 1024;

/// The bounds of one request body.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Largest accepted body.
    pub max_bytes: usize,
    /// Time from the head until the whole body has arrived.
    pub read_timeout: Duration,
}

/// Why a request body was refused.
#[derive(Debug)]
pub enum Rejection {
    /// Longer than the limit (declared or streamed): `common.payload_too_large`.
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// Not complete within the read timeout: `common.request_timeout`.
    TimedOut,
    /// The transfer failed (malformed chunked encoding, a client gone): `validation.failed`.
    Broken,
    /// A Content-Type other than `application/json` or `…+json`: `validation.failed`.
    NotJson,
    /// Not the expected JSON object: `validation.failed` naming the field.
    Invalid(FieldError),
}

impl From<Rejection> for ErrorBody {
    fn from(rejection: Rejection) -> Self {
        let field = |reason: &str, message: &str| {
            ErrorBody::validation(vec![FieldError::new("body", reason, message)])
        };
        match rejection {
            Rejection::TooLarge { limit } => ErrorBody::new(
                ErrorCode::PayloadTooLarge,
                format!("request body exceeds {limit} bytes"),
            ),
            Rejection::TimedOut => ErrorBody::new(
                ErrorCode::RequestTimeout,
                "the request body did not arrive in time",
            ),
            Rejection::Broken => field("malformed_body", "the request body could not be read"),
            Rejection::NotJson => field(
                "unsupported_media_type",
                "Content-Type must be application/json",
            ),
            Rejection::Invalid(e) => ErrorBody::validation(vec![e]),
        }
    }
}

/// Reads `req`'s body within `limits` and parses it as a `T` (see the crate's documentation).
pub async fn json_body<T: DeserializeOwned>(
    req: Request,
    limits: BodyLimits,
) -> Result<T, Rejection> {
    let json = is_json(req.headers());
    let bytes = read_body(req, limits).await?;
    if !json {
        return Err(Rejection::NotJson);
    }
    decode_json(&bytes).map_err(Rejection::Invalid)
}

/// Whether the Content-Type is `application/json` or a `…+json` type.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            let v = v.trim();
            v.eq_ignore_ascii_case("application/json") || v.to_ascii_lowercase().ends_with("+json")
        })
}

/// The whole body of `req`, within `limits`; an oversized one is drained (up to
/// [`DISCARD_MAX_BYTES`]) before [`Rejection::TooLarge`].
pub async fn read_body(req: Request, limits: BodyLimits) -> Result<Bytes, Rejection> {
    let limit = limits.max_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let expects_continue = req
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let deadline = tokio::time::Instant::now() + limits.read_timeout;
    let mut body = req.into_body();
    if let Some(n) = declared.filter(|n| *n > limit) {
        // A client waiting for `100 Continue` has sent nothing; one that has not is sending.
        if !expects_continue && n <= limit.saturating_add(DISCARD_MAX_BYTES) {
            discard_until(&mut body, DISCARD_MAX_BYTES, deadline).await;
        }
        return Err(Rejection::TooLarge { limit });
    }
    match tokio::time::timeout_at(deadline, read_at_most(&mut body, limit)).await {
        Err(_) => Err(Rejection::TimedOut),
        Ok(Err(Rejection::TooLarge { limit })) => {
            discard_until(&mut body, DISCARD_MAX_BYTES, deadline).await;
            Err(Rejection::TooLarge { limit })
        }
        Ok(read) => read,
    }
}

/// The body's bytes, or [`Rejection::TooLarge`] as soon as more than `limit` have arrived (the
/// rest still unread).
async fn read_at_most(body: &mut Body, limit: usize) -> Result<Bytes, Rejection> {
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| Rejection::Broken)?;
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > limit {
                return Err(Rejection::TooLarge { limit });
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(bytes))
}

/// Reads and drops up to `max` more bytes of `body`, stopping early at its end, an error or
/// `deadline`.
async fn discard_until(body: &mut Body, max: usize, deadline: tokio::time::Instant) {
    let discard = async {
        let mut left = max;
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                let Some(rest) = left.checked_sub(data.len()) else {
                    return;
                };
                left = rest;
            }
        }
    };
    let _ = tokio::time::timeout_at(deadline, discard).await;
}

/// Parses a request body into `T` as every JSON endpoint does: exactly one JSON object, or the
/// one field error (the offending field, or `body`) of a `validation.failed` answer.
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, FieldError> {
    let first = bytes.trim_ascii_start().first();
    if first.is_some_and(|b| *b != b'{') {
        // serde would also read a struct from a JSON array of its fields in order.
        let error = match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
            Ok(_) => FieldError::new("body", "invalid_type", "body must be a JSON object"),
            Err(e) => field_error(".", &e),
        };
        return Err(error);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| field_error(&e.path().to_string(), e.inner()))?;
    de.end().map_err(|e| field_error(".", &e))?;
    Ok(value)
}

fn backticked(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

/// The name in serde's "unknown field `NAME`, expected …" (or "…, there are no fields"). The name
/// may itself hold backticks; what follows it is the last "`, expected" or the fixed tail.
fn unknown_field_name(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.strip_suffix("`, there are no fields")
        .or_else(|| rest.rfind("`, expected").map(|end| &rest[..end]))
}

/// Turns a serde error at `path` into a field error.
fn field_error(path: &str, e: &serde_json::Error) -> FieldError {
    use serde_json::error::Category;
    let message = e.to_string();
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => FieldError::new(
            "body",
            "malformed_json",
            format!("body is not valid JSON: {message}"),
        ),
        Category::Data => {
            // serde_json appends " at line L column C"; a field name may contain that text too.
            let inner = message
                .rsplit_once(" at line ")
                .map_or(message.as_str(), |(head, _)| head)
                .to_owned();
            if inner.starts_with("missing field") {
                let field = backticked(&inner).unwrap_or("body");
                let field = if path == "." || path.is_empty() {
                    field.to_owned()
                } else {
                    format!("{path}.{field}")
                };
                FieldError::new(&field, "required", format!("{field} is required"))
            } else if inner.starts_with("unknown field") {
                let field = unknown_field_name(&inner).unwrap_or("body");
                FieldError::new(field, "unknown_field", format!("unknown field `{field}`"))
            } else {
                let field = if path == "." || path.is_empty() {
                    "body"
                } else {
                    path
                };
                FieldError::new(field, "invalid_type", inner)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct P {
        email: String,
        n: u32,
    }

    #[test]
    fn serde_errors_become_field_errors() {
        let parse = |s: &str| {
            let mut de = serde_json::Deserializer::from_str(s);
            let e = serde_path_to_error::deserialize::<_, P>(&mut de).unwrap_err();
            field_error(&e.path().to_string(), e.inner())
        };
        let e = parse(r#"{"n": 1}"#);
        assert_eq!((e.field.as_str(), e.reason.as_str()), ("email", "required"));
        let e = parse(r#"{"email": "x", "n": 1, "admin": true}"#);
        assert_eq!(
            (e.field.as_str(), e.reason.as_str()),
            ("admin", "unknown_field")
        );
        let e = parse(r#"{"email": 5, "n": 1}"#);
        assert_eq!(
            (e.field.as_str(), e.reason.as_str()),
            ("email", "invalid_type")
        );
        let e = parse(r#"{"email": "#);
        assert_eq!(e.reason, "malformed_json");
    }

    #[test]
    fn unknown_field_names_are_reported_whole() {
        // Found by fuzzing (fuzz/seeds/request_body/backtick-in-field-name): the name was cut
        // at its first backtick or " at line ", so `current_password`` was reported as the
        // unknown field `current_password`.
        for name in ["email`", "a`, expected `b", "x at line 1 column 2", "`"] {
            let body = serde_json::json!({ name: 1 }).to_string();
            let e = decode_json::<P>(body.as_bytes()).unwrap_err();
            assert_eq!(e.field, name);
            assert_eq!(e.reason, "unknown_field");
        }
    }

    #[test]
    fn bodies_must_be_json_objects() {
        // Found by fuzzing (fuzz/seeds/request_body/array-body): serde also reads a struct from
        // a JSON array of its fields in order, so `["a@b.co","ann","password"]` registered an
        // account and a bad element was reported as field `[0]`.
        let bodies: [&[u8]; 6] = [br#"["x@y.z", 1]"#, b"[5]", b" [] ", b"null", b"\"x\"", b"7"];
        for body in bodies {
            let e = decode_json::<P>(body).unwrap_err();
            assert_eq!(e.field, "body", "{}", String::from_utf8_lossy(body));
        }
        assert_eq!(decode_json::<P>(br#"{"email": "x", "n": 1}"#).unwrap().n, 1);
    }
}
