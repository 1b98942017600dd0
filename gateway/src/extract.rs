//! Request-body and parameter extraction with errors in the API's own format.

use authstack_http::{BodyLimits, Rejection};
use authstack_protocol::{ErrorBody, FieldError};
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

/// A JSON body: `Content-Type: application/json`, at most the configured size, received within
/// the body read timeout, parsed into `T` with field-level errors (`validation.failed`),
/// `common.payload_too_large` or `common.request_timeout` ([`authstack_http`]).
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let limits = BodyLimits {
            max_bytes: state.config.max_body_bytes,
            read_timeout: state.config.body_read_timeout(),
        };
        authstack_http::json_body(req, limits)
            .await
            .map(JsonBody)
            .map_err(|rejection| {
                if matches!(rejection, Rejection::TimedOut) {
                    metrics::counter!("authstack_gateway_body_read_timeouts_total").increment(1);
                }
                ApiError(rejection.into())
            })
    }
}

/// Parses a request body into `T` as every JSON endpoint does ([`authstack_http::decode_json`]),
/// a failure as the `validation.failed` answer.
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    authstack_http::decode_json(bytes).map_err(|e| ApiError(ErrorBody::validation(vec![e])))
}

/// Maps a rejected path or query parameter to `validation.failed`.
pub fn bad_parameter(field: &str, message: impl Into<String>) -> ApiError {
    ApiError(ErrorBody::validation(vec![FieldError::new(
        field, "invalid", message,
    )]))
}
