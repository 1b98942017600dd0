//! Request-body and parameter extraction with errors in the API's own format.

use authstack_protocol::{ErrorBody, ErrorCode, FieldError};
use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

/// A JSON body: `Content-Type: application/json`, at most the configured size, parsed into `T`
/// with field-level errors (`validation.failed`) or `common.payload_too_large`.
pub struct JsonBody<T>(pub T);

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!("request body exceeds {limit} bytes"),
    )
}

fn backticked(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
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
            let inner = message
                .split(" at line ")
                .next()
                .unwrap_or(&message)
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
                let field = backticked(&inner).unwrap_or("body");
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

impl<T: DeserializeOwned + Send> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let limit = state.config.max_body_bytes;
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                let v = v.trim();
                v.eq_ignore_ascii_case("application/json")
                    || v.to_ascii_lowercase().ends_with("+json")
            });
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(too_large(limit));
        }
        if !json {
            return Err(ApiError(ErrorBody::validation(vec![FieldError::new(
                "body",
                "unsupported_media_type",
                "Content-Type must be application/json",
            )])));
        }
        let bytes = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|_| too_large(limit))?;
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            ApiError(ErrorBody::validation(vec![field_error(&path, e.inner())]))
        })?;
        de.end()
            .map_err(|e| ApiError(ErrorBody::validation(vec![field_error(".", &e)])))?;
        Ok(JsonBody(value))
    }
}

/// Maps a rejected path or query parameter to `validation.failed`.
pub fn bad_parameter(field: &str, message: impl Into<String>) -> ApiError {
    ApiError(ErrorBody::validation(vec![FieldError::new(
        field, "invalid", message,
    )]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_errors_become_field_errors() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct P {
            email: String,
            n: u32,
        }
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
}
