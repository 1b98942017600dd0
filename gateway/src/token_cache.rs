//! The gateway's cache of verified access tokens (a hit costs a hash lookup instead of a
//! signature check). Whether a cached token may still be used is [`crate::auth`]'s decision.

use std::sync::Arc;

use authstack_protocol::AccessClaims;
use axum::body::Bytes;
use serde::Serialize;
use uuid::Uuid;

/// A verified access token.
pub struct VerifiedToken {
    /// Its claims.
    pub claims: AccessClaims,
    /// The key that signed it.
    pub kid: String,
    /// `sub` as an account id.
    pub account_id: Option<Uuid>,
    /// `sid` as a session id.
    pub session_id: Option<Uuid>,
    /// The `GET /api/v1/auth/session` body, rendered once.
    pub session_json: Bytes,
}

/// The body of `GET /api/v1/auth/session`: the verified claims and the key that signed them.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionView<'a> {
    #[serde(flatten)]
    claims: &'a AccessClaims,
    /// The key that signed the token.
    kid: &'a str,
}

/// The cache of verified tokens.
pub struct TokenCache {
    cache: Option<quick_cache::sync::Cache<String, Arc<VerifiedToken>>>,
}

impl TokenCache {
    /// A cache holding at most `capacity` tokens (0 disables it).
    pub fn new(capacity: usize) -> Self {
        TokenCache {
            cache: (capacity > 0).then(|| quick_cache::sync::Cache::new(capacity)),
        }
    }

    /// The verified token cached under `token`, if any.
    pub fn get(&self, token: &str) -> Option<Arc<VerifiedToken>> {
        self.cache.as_ref()?.get(token)
    }

    /// Caches a verified token.
    pub fn insert(&self, token: &str, value: Arc<VerifiedToken>) {
        if let Some(c) = &self.cache {
            c.insert(token.to_owned(), value);
        }
    }
}

impl VerifiedToken {
    /// The verified claims of `kid`'s token, with the `/session` body rendered once.
    pub fn new(claims: AccessClaims, kid: String) -> Arc<VerifiedToken> {
        let session_json = serde_json::to_vec(&SessionView {
            claims: &claims,
            kid: &kid,
        })
        .unwrap_or_default();
        Arc::new(VerifiedToken {
            account_id: claims.sub.parse().ok(),
            session_id: claims.sid.parse().ok(),
            claims,
            kid,
            session_json: Bytes::from(session_json),
        })
    }
}
