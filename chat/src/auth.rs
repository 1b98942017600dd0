//! The auth interceptor: every request carries an AuthStack access token, verified locally
//! against the gateway's JWKS; roles come from the token.

use authstack_protocol::model::ROLE_ADMIN;
use authstack_protocol::{AccessClaims, Account, ErrorBody, ErrorCode};
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;

/// An authenticated caller.
pub struct Caller {
    /// Account id (`sub`).
    pub account_id: Uuid,
    /// The verified claims.
    pub claims: AccessClaims,
    /// The token itself (forwarded to the gateway to read the caller's user name).
    pub token: String,
}

impl Caller {
    /// Whether the token carries the `admin` role (admins may read every chat).
    pub fn is_admin(&self) -> bool {
        self.claims.has_role(ROLE_ADMIN)
    }
}

/// The token of `Authorization: Bearer …`, or of the `access_token` query parameter (browsers
/// cannot set headers on a WebSocket).
fn presented_token(parts: &Parts) -> Result<String, ApiError> {
    let invalid = |m: &str| ApiError::new(ErrorCode::InvalidToken, m);
    if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| invalid("malformed Authorization header"))?;
        return match value.split_once(' ') {
            Some((scheme, token))
                if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
            {
                Ok(token.trim().to_owned())
            }
            _ => Err(invalid("expected `Authorization: Bearer <token>`")),
        };
    }
    parts
        .uri
        .query()
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("access_token="))
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| invalid("missing Authorization header"))
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = presented_token(parts)?;
        let claims = state.keys.verify(&token).await?;
        let account_id = claims.sub.parse().map_err(|_| {
            ApiError::new(
                ErrorCode::InvalidToken,
                "token subject is not an account id",
            )
        })?;
        Ok(Caller {
            account_id,
            claims,
            token,
        })
    }
}

/// The caller's user name, asked of the gateway with the caller's own token (once per create
/// or join, never per message).
pub async fn username(state: &AppState, caller: &Caller) -> Result<String, ApiError> {
    let url = format!(
        "{}/api/v1/users/me",
        state.config.authstack_url.trim_end_matches('/')
    );
    let unavailable = |e: String| {
        tracing::warn!(error = %e, "AuthStack gateway unreachable");
        ApiError::new(ErrorCode::RpcUnavailable, "AuthStack is unreachable")
    };
    let response = state
        .http
        .get(url)
        .bearer_auth(&caller.token)
        .timeout(state.config.gateway_timeout())
        .send()
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    if response.status().is_success() {
        let account: Account = response
            .json()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        return Ok(account.username);
    }
    #[derive(serde::Deserialize)]
    struct Envelope {
        error: ErrorBody,
    }
    // The platform's own verdict (e.g. a revoked session) is passed on as it is.
    match response.json::<Envelope>().await {
        Ok(Envelope { error }) => Err(ApiError(error)),
        Err(e) => Err(unavailable(e.to_string())),
    }
}
