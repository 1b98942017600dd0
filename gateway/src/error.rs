//! Errors as HTTP responses: `{"error": {"code", "message", "request_id", "details"?}}`.
//!
//! Handlers and extractors return [`ApiError`]; it becomes a bare response carrying the
//! [`ErrorBody`] as an extension, and the outermost middleware ([`crate::middleware`]) renders
//! the JSON with the request id. So every error — including 404s, 405s and body rejections —
//! has the same shape.

use authstack_protocol::ws::FrameError;
use authstack_protocol::{ErrorBody, ErrorCode};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error answered to the client.
#[derive(Debug)]
pub struct ApiError(pub ErrorBody);

impl ApiError {
    /// An error with a code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError(ErrorBody::new(code, message))
    }
}

impl From<ErrorBody> for ApiError {
    fn from(body: ErrorBody) -> Self {
        ApiError(body)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = status.into_response();
        response.extensions_mut().insert(self.0);
        response
    }
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Rendered<'a>,
}

#[derive(Serialize)]
struct Rendered<'a> {
    code: ErrorCode,
    message: &'a str,
    request_id: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    details: &'a [authstack_protocol::FieldError],
}

/// The message a client sees: internal errors never echo details from further down.
fn public_message(body: &ErrorBody) -> &str {
    if body.code == ErrorCode::Internal {
        "internal error"
    } else {
        body.message.as_str()
    }
}

/// The same error object for a WebSocket frame.
pub fn frame_error(body: &ErrorBody, request_id: &str) -> FrameError {
    FrameError {
        code: body.code.as_str().to_owned(),
        message: public_message(body).to_owned(),
        request_id: request_id.to_owned(),
        details: body.details.clone(),
    }
}

/// Renders an error body into a full response (status, JSON, `Retry-After`,
/// `WWW-Authenticate`).
pub fn render(body: &ErrorBody, request_id: &str) -> Response {
    let status =
        StatusCode::from_u16(body.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = public_message(body);
    let json = serde_json::to_vec(&Envelope {
        error: Rendered {
            code: body.code,
            message,
            request_id,
            details: &body.details,
        },
    })
    .unwrap_or_default();
    let mut response = (status, json).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(secs) = body.retry_after_secs
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        headers.insert(header::RETRY_AFTER, v);
    }
    if status == StatusCode::UNAUTHORIZED {
        let challenge = match body.code {
            ErrorCode::InvalidCredentials => None,
            ErrorCode::TokenExpired => {
                Some(r#"Bearer error="invalid_token", error_description="token expired""#)
            }
            _ => Some(r#"Bearer error="invalid_token""#),
        };
        if let Some(c) = challenge {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
        }
    }
    response
}
