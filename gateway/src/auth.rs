//! Bearer-token authentication in the gateway, with a bounded cache of verified tokens.
//!
//! Verifying an Ed25519 signature costs ~50 µs; a cache hit costs a hash lookup. A cached token
//! is used only while it has not expired and its `kid` is still in the verification set, so a
//! revoked key stops its tokens as soon as the new set arrives; and never when its session was
//! revoked or its account deleted ([`crate::revocations`]). Calls to auth-svc carry the token
//! itself: auth-svc verifies it again and takes the caller's identity from it, never from us.

use std::sync::Arc;

use authstack_keyring::jwt::VerifyError;
use authstack_protocol::model::{MAX_ACCESS_TOKEN_BYTES, ROLE_ADMIN};
use authstack_protocol::rpc::{CallContext, Secret};
use authstack_protocol::{AccessClaims, ErrorCode};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};

use crate::error::ApiError;
use crate::request_id::RequestContext;
use crate::state::AppState;
use crate::token_cache::VerifiedToken;

fn map_verify_error(e: VerifyError) -> ApiError {
    match e {
        VerifyError::Expired => ApiError::new(ErrorCode::TokenExpired, "access token expired"),
        VerifyError::UnknownKey(_) => ApiError::new(
            ErrorCode::InvalidToken,
            "access token signed by an unknown key",
        ),
        VerifyError::Malformed(_) => {
            ApiError::new(ErrorCode::InvalidToken, "malformed access token")
        }
        VerifyError::Invalid(_) => ApiError::new(ErrorCode::InvalidToken, "invalid access token"),
    }
}

/// Verifies `token` (cache first); for an unknown `kid`, waits for the key set's refreshes
/// first ([`crate::keys::KeyManager::refresh_for_unknown_kid`]).
pub async fn authenticate(state: &AppState, token: &str) -> Result<Arc<VerifiedToken>, ApiError> {
    let Some(keys) = state.keys.current() else {
        return Err(ApiError::new(
            ErrorCode::RpcUnavailable,
            "verification keys are not loaded yet",
        ));
    };
    // Seconds since the epoch straight from the clock (chrono's `Utc::now` also computes a
    // calendar date, on every request). A clock before 1970 expires every cached token.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(i64::MAX, |d| d.as_secs() as i64);
    if let Some(hit) = state.tokens.get(token)
        && now <= hit.claims.exp + state.leeway_secs
        && keys.verifier.contains(&hit.kid)
    {
        return not_revoked(state, hit);
    }
    let result = match keys.verifier.verify::<AccessClaims>(token) {
        Err(VerifyError::UnknownKey(kid)) => {
            if state.keys.refresh_for_unknown_kid(&kid).await {
                match state.keys.current() {
                    Some(fresh) => fresh.verifier.verify::<AccessClaims>(token),
                    None => Err(VerifyError::UnknownKey(kid)),
                }
            } else {
                Err(VerifyError::UnknownKey(kid))
            }
        }
        other => other,
    };
    let v = result.map_err(map_verify_error)?;
    let value = VerifiedToken::new(v.claims, v.kid);
    state.tokens.insert(token, value.clone());
    not_revoked(state, value)
}

/// Refuses a token whose session was revoked or whose account was deleted.
fn not_revoked(
    state: &AppState,
    token: Arc<VerifiedToken>,
) -> Result<Arc<VerifiedToken>, ApiError> {
    if state.revocations.denies(token.account_id, token.session_id) {
        metrics::counter!("authstack_gateway_revoked_tokens_refused_total").increment(1);
        return Err(ApiError::new(
            ErrorCode::InvalidToken,
            "this session has been revoked",
        ));
    }
    Ok(token)
}

/// The bearer token of `Authorization`, if the header is present (a malformed one is an error).
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    headers.get(header::AUTHORIZATION).map(token_of).transpose()
}

/// The token of an `Authorization: Bearer <token>` value.
fn token_of(header: &HeaderValue) -> Result<&str, ApiError> {
    let value = header
        .to_str()
        .map_err(|_| ApiError::new(ErrorCode::InvalidToken, "malformed Authorization header"))?;
    let (scheme, token) = value.split_once(' ').ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidToken,
            "expected `Authorization: Bearer <token>`",
        )
    })?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidToken,
            "expected `Authorization: Bearer <token>`",
        ));
    }
    sized(token)
}

/// Refuses tokens longer than any token auth-svc issues, before parsing them.
pub fn sized(token: &str) -> Result<&str, ApiError> {
    if token.len() > MAX_ACCESS_TOKEN_BYTES {
        return Err(ApiError::new(
            ErrorCode::InvalidToken,
            "access token too large",
        ));
    }
    Ok(token)
}

/// An authenticated caller (any role).
pub struct Caller {
    /// The verified token.
    pub token: Arc<VerifiedToken>,
    /// The `Authorization` value as presented (a shared view of the request's bytes; its token
    /// is copied only when a call forwards it to auth-svc, which verifies it itself).
    authorization: HeaderValue,
    /// Request id and client address.
    pub request: RequestContext,
}

impl Caller {
    /// The RPC context for calls on behalf of this caller.
    pub fn context(&self) -> CallContext {
        let token = token_of(&self.authorization).ok().map(Secret::from);
        self.request.call_context(token)
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let request = RequestContext::from_parts(parts);
        let Some(authorization) = parts.headers.get(header::AUTHORIZATION).cloned() else {
            return Err(ApiError::new(
                ErrorCode::InvalidToken,
                "missing Authorization header",
            ));
        };
        let token = authenticate(state, token_of(&authorization)?).await?;
        if token.account_id.is_none() {
            return Err(ApiError::new(
                ErrorCode::InvalidToken,
                "token subject is not an account id",
            ));
        }
        Ok(Caller {
            token,
            authorization,
            request,
        })
    }
}

/// An authenticated caller whose token carries the `admin` role (auth-svc re-checks the role
/// against the database).
pub struct Admin(pub Caller);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if !caller.token.claims.has_role(ROLE_ADMIN) {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "administrator role required",
            ));
        }
        Ok(Admin(caller))
    }
}
