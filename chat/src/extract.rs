//! JSON request bodies, read as every AuthStack service reads them ([`authstack_http`]): at most
//! `CHAT_MAX_BODY_BYTES`, within `CHAT_BODY_READ_TIMEOUT_MS`, an oversized one drained before
//! the 413 so that a client still sending reads it.

use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

/// A JSON request body parsed into `T`, or the platform's error for it.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        authstack_http::json_body(req, state.config.body_limits())
            .await
            .map(JsonBody)
            .map_err(|rejection| ApiError(rejection.into()))
    }
}
