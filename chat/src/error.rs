//! The platform's error model over HTTP: `{"error": {"code", "message", "request_id",
//! "details"?}}`, the status from the code, and the request id in `X-Request-Id`.
//!
//! Handlers return [`ApiError`]; it travels as a response extension to the outermost layer
//! ([`request_context`]), which knows the request id and renders the JSON. Every log line of a
//! request is emitted inside a span carrying that id.

use authstack_protocol::{ErrorBody, ErrorCode, FieldError};
use axum::Json;
use axum::extract::Request;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tracing::Instrument;

/// Response header carrying the request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// An error answered to the client.
#[derive(Debug)]
pub struct ApiError(pub ErrorBody);

impl ApiError {
    /// An error with a code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError(ErrorBody::new(code, message))
    }

    /// `validation.failed` for one field.
    pub fn field(field: &str, reason: &str, message: impl Into<String>) -> Self {
        ApiError(ErrorBody::validation(vec![FieldError::new(
            field, reason, message,
        )]))
    }

    /// `auth.forbidden`.
    pub fn forbidden(message: &str) -> Self {
        ApiError::new(ErrorCode::Forbidden, message)
    }

    /// `common.not_found`.
    pub fn not_found(what: &str) -> Self {
        ApiError::new(ErrorCode::NotFound, format!("no such {what}"))
    }
}

impl From<ErrorBody> for ApiError {
    fn from(body: ErrorBody) -> Self {
        ApiError(body)
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        tracing::error!(error = %e, "database error");
        let code = match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                ErrorCode::RpcUnavailable
            }
            _ => ErrorCode::Internal,
        };
        ApiError::new(code, "the chat database is unavailable")
    }
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        ApiError::field("id", "invalid", e.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::field("query", "invalid", e.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = status_of(self.0.code).into_response();
        response.extensions_mut().insert(self.0);
        response
    }
}

fn status_of(code: ErrorCode) -> StatusCode {
    StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// The JSON error response for `body`.
fn render(body: &ErrorBody, request_id: &str) -> Response {
    let message = match body.code {
        ErrorCode::Internal => "internal error",
        _ => body.message.as_str(),
    };
    let mut error = json!({"code": body.code, "message": message, "request_id": request_id});
    if !body.details.is_empty() {
        error["details"] = json!(body.details);
    }
    let mut response = (status_of(body.code), Json(json!({ "error": error }))).into_response();
    if response.status() == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer error="invalid_token""#),
        );
    }
    response
}

/// The request id: a sane incoming `X-Request-Id` is kept, otherwise a fresh UUID.
fn request_id(req: &Request) -> String {
    req.headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_owned)
}

/// Outermost layer: request id, a span carrying it, one access log line, error rendering.
pub async fn request_context(req: Request, next: Next) -> Response {
    let id = request_id(&req);
    let span = tracing::info_span!("request", request_id = %id);
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    async move {
        let started = std::time::Instant::now();
        let mut response = next.run(req).await;
        if let Some(body) = response.extensions_mut().remove::<ErrorBody>() {
            response = render(&body, &id);
        } else if response.status() == StatusCode::METHOD_NOT_ALLOWED {
            let body = ErrorBody::new(ErrorCode::MethodNotAllowed, "method not allowed here");
            response = render(&body, &id);
        }
        if let Ok(v) = HeaderValue::from_str(&id) {
            response.headers_mut().insert(REQUEST_ID_HEADER, v);
        }
        tracing::info!(%method, path, status = response.status().as_u16(),
            ms = started.elapsed().as_millis() as u64, "request");
        response
    }
    .instrument(span)
    .await
}
