//! `/.well-known/jwks.json` and `/.well-known/openid-configuration`.

use authstack_protocol::ErrorCode;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;

use super::json_bytes;
use crate::error::ApiError;
use crate::openapi::{Jwks, KeysUnavailable, OpenIdConfiguration};
use crate::state::AppState;

/// The RFC 7517 JWKS of every key that may verify a live token (pending, active, retiring).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "keys",
    responses((status = 200, description = "The public keys", body = Jwks<'static>), KeysUnavailable))]
pub async fn jwks(State(state): State<AppState>) -> Result<Response, ApiError> {
    let keys = state.keys.current().ok_or_else(|| {
        ApiError::new(
            ErrorCode::RpcUnavailable,
            "verification keys are not loaded yet",
        )
    })?;
    let mut response = json_bytes(StatusCode::OK, keys.jwks.clone());
    // New keys are published a propagation delay (minutes) before they sign; a short cache
    // lifetime keeps outside verifiers current.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=30"),
    );
    Ok(response)
}

/// Discovery document: issuer and JWKS location, so standard JWT libraries can verify tokens.
#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "keys",
    responses((status = 200, description = "Issuer, JWKS location, algorithms", body = OpenIdConfiguration)))]
pub async fn openid_configuration(State(state): State<AppState>) -> Response {
    let issuer = state.config.issuer.trim_end_matches('/');
    let algorithms: Vec<String> = state
        .keys
        .current()
        .map(|k| {
            let mut algs: Vec<String> = k.key_set.keys.iter().map(|j| j.alg.clone()).collect();
            algs.sort();
            algs.dedup();
            algs
        })
        .unwrap_or_default();
    let body = OpenIdConfiguration {
        issuer: issuer.to_owned(),
        jwks_uri: format!("{issuer}/.well-known/jwks.json"),
        token_endpoint: format!("{issuer}/api/v1/auth/login"),
        grant_types_supported: vec!["password", "refresh_token"],
        response_types_supported: vec!["token"],
        subject_types_supported: vec!["public"],
        id_token_signing_alg_values_supported: algorithms,
        claims_supported: vec![
            "iss", "aud", "sub", "exp", "iat", "nbf", "jti", "roles", "sid",
        ],
    };
    json_bytes(
        StatusCode::OK,
        serde_json::to_vec(&body).unwrap_or_default(),
    )
}
