//! The caller's access token, verified by auth-svc itself.
//!
//! The gateway forwards the bearer token it received; nothing else in an RPC message is taken
//! as an identity, so a message injected on the broker gains nothing without a token this
//! replica's own key ring verifies (signature, `typ`, `iss`, `aud`, `exp`, `nbf`). Verified
//! tokens are cached (a hit is a hash lookup instead of a signature check) while they are
//! unexpired and their `kid` is still in the ring.

use std::sync::{Arc, Mutex};

use authstack_keyring::jwt::{Expectations, TokenVerifier, VerifyError};
use authstack_protocol::model::MAX_ACCESS_TOKEN_BYTES;
use authstack_protocol::{AccessClaims, ErrorBody, ErrorCode};
use uuid::Uuid;

use crate::keys::ActiveKeys;

/// The identity a verified access token carries.
#[derive(Debug)]
pub struct TokenIdentity {
    /// `sub`: the account.
    pub account_id: Uuid,
    /// `sid`: the session (refresh-token family).
    pub session_id: Uuid,
    /// `roles` at the time of issue (auth-svc re-reads the account's roles where they matter).
    pub roles: Vec<String>,
    /// `exp`.
    pub expires_at: i64,
    /// The key that signed the token.
    pub kid: String,
}

/// The verifier for one ring generation.
struct Generation {
    generation: u64,
    verifier: Arc<TokenVerifier>,
}

/// Verifies forwarded access tokens against the replica's key ring, with a bounded cache.
pub struct BearerVerifier {
    expect: Expectations,
    current: Mutex<Option<Generation>>,
    cache: Option<quick_cache::sync::Cache<String, Arc<TokenIdentity>>>,
}

fn invalid(message: &str) -> ErrorBody {
    ErrorBody::new(ErrorCode::InvalidToken, message)
}

impl BearerVerifier {
    /// A verifier expecting `expect`'s issuer and audience; `cache_capacity` 0 disables caching.
    pub fn new(expect: Expectations, cache_capacity: usize) -> Self {
        BearerVerifier {
            expect,
            current: Mutex::new(None),
            cache: (cache_capacity > 0).then(|| quick_cache::sync::Cache::new(cache_capacity)),
        }
    }

    /// The verifier of `keys`' ring, built once per generation.
    fn verifier(&self, keys: &ActiveKeys) -> Arc<TokenVerifier> {
        let Ok(mut current) = self.current.lock() else {
            return Arc::new(TokenVerifier::new(&keys.key_set.keys, &self.expect).0);
        };
        match current.as_ref() {
            Some(g) if g.generation == keys.generation => g.verifier.clone(),
            _ => {
                let (verifier, warnings) = TokenVerifier::new(&keys.key_set.keys, &self.expect);
                for w in warnings {
                    tracing::warn!(warning = %w, "key unusable for verifying access tokens");
                }
                let verifier = Arc::new(verifier);
                *current = Some(Generation {
                    generation: keys.generation,
                    verifier: verifier.clone(),
                });
                verifier
            }
        }
    }

    /// Verifies `token` with the keys in force; `auth.invalid_token` or `auth.token_expired`
    /// when it does not hold.
    pub fn verify(&self, keys: &ActiveKeys, token: &str) -> Result<Arc<TokenIdentity>, ErrorBody> {
        if token.len() > MAX_ACCESS_TOKEN_BYTES {
            return Err(invalid("access token too large"));
        }
        let verifier = self.verifier(keys);
        let now = chrono::Utc::now().timestamp();
        if let Some(hit) = self.cache.as_ref().and_then(|c| c.get(token))
            && now <= hit.expires_at + self.expect.leeway_secs as i64
            && verifier.contains(&hit.kid)
        {
            metrics::counter!("authstack_bearer_verifications_total", "outcome" => "cached")
                .increment(1);
            return Ok(hit);
        }
        let verified = verifier.verify::<AccessClaims>(token).map_err(|e| {
            metrics::counter!("authstack_bearer_verifications_total", "outcome" => "refused")
                .increment(1);
            match e {
                VerifyError::Expired => {
                    ErrorBody::new(ErrorCode::TokenExpired, "access token expired")
                }
                VerifyError::UnknownKey(_) => invalid("access token signed by an unknown key"),
                VerifyError::Malformed(_) => invalid("malformed access token"),
                VerifyError::Invalid(_) => invalid("invalid access token"),
            }
        })?;
        let claims = verified.claims;
        let (Ok(account_id), Ok(session_id)) = (claims.sub.parse(), claims.sid.parse()) else {
            return Err(invalid("access token without an account or session"));
        };
        let identity = Arc::new(TokenIdentity {
            account_id,
            session_id,
            roles: claims.roles,
            expires_at: claims.exp,
            kid: verified.kid,
        });
        if let Some(c) = &self.cache {
            c.insert(token.to_owned(), identity.clone());
        }
        metrics::counter!("authstack_bearer_verifications_total", "outcome" => "verified")
            .increment(1);
        Ok(identity)
    }
}

#[cfg(test)]
mod tests {
    use authstack_keyring::jwt::TokenSigner;
    use authstack_keyring::material::generate;
    use authstack_keyring::{KeyRing, SigningAlgorithm};
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    fn expect() -> Expectations {
        Expectations {
            issuer: "https://auth.test".into(),
            audience: "authstack".into(),
            leeway_secs: 0,
        }
    }

    fn keys(ring: &KeyRing) -> ActiveKeys {
        ActiveKeys {
            generation: ring.generation,
            signer: TokenSigner::for_active_key(ring).unwrap(),
            key_set: ring.key_set(),
        }
    }

    fn claims(exp_offset: i64) -> serde_json::Value {
        let now = chrono::Utc::now().timestamp();
        serde_json::json!({
            "iss": "https://auth.test", "aud": "authstack", "sub": Uuid::new_v4(),
            "exp": now + exp_offset, "iat": now, "nbf": now, "jti": "j",
            "roles": ["user"], "sid": Uuid::new_v4(),
        })
    }

    #[test]
    fn genuine_tokens_verify_and_are_cached() {
        let ring = KeyRing::with_active_key(
            generate(SigningAlgorithm::EdDSA).unwrap(),
            chrono::Utc::now(),
        );
        let keys = keys(&ring);
        let v = BearerVerifier::new(expect(), 16);
        let token = keys.signer.sign(&claims(60)).unwrap();
        let a = v.verify(&keys, &token).unwrap();
        let b = v.verify(&keys, &token).unwrap();
        assert!(
            Arc::ptr_eq(&a, &b),
            "the second verification is a cache hit"
        );
        assert_eq!(a.roles, ["user"]);
    }

    #[test]
    fn foreign_expired_and_forged_tokens_are_refused() {
        let ring = KeyRing::with_active_key(
            generate(SigningAlgorithm::EdDSA).unwrap(),
            chrono::Utc::now(),
        );
        let other = KeyRing::with_active_key(
            generate(SigningAlgorithm::EdDSA).unwrap(),
            chrono::Utc::now(),
        );
        let keys = keys(&ring);
        let v = BearerVerifier::new(expect(), 16);
        let foreign = TokenSigner::for_active_key(&other)
            .unwrap()
            .sign(&claims(60))
            .unwrap();
        assert_eq!(
            v.verify(&keys, &foreign).unwrap_err().code,
            ErrorCode::InvalidToken
        );
        let expired = keys.signer.sign(&claims(-60)).unwrap();
        assert_eq!(
            v.verify(&keys, &expired).unwrap_err().code,
            ErrorCode::TokenExpired
        );
        // alg none with the real kid, crafted by hand.
        let header = serde_json::json!({"alg": "none", "typ": "at+jwt", "kid": keys.signer.kid()});
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims(60).to_string())
        );
        assert_eq!(
            v.verify(&keys, &none).unwrap_err().code,
            ErrorCode::InvalidToken
        );
        // A token without an account id in `sub`.
        let mut c = claims(60);
        c["sub"] = "admin".into();
        let token = keys.signer.sign(&c).unwrap();
        assert_eq!(
            v.verify(&keys, &token).unwrap_err().code,
            ErrorCode::InvalidToken
        );
    }

    #[test]
    fn a_cached_token_dies_with_its_key() {
        let old = KeyRing::with_active_key(
            generate(SigningAlgorithm::EdDSA).unwrap(),
            chrono::Utc::now(),
        );
        let mut new = KeyRing::with_active_key(
            generate(SigningAlgorithm::EdDSA).unwrap(),
            chrono::Utc::now(),
        );
        new.generation = old.generation + 1;
        let v = BearerVerifier::new(expect(), 16);
        let old_keys = keys(&old);
        let token = old_keys.signer.sign(&claims(60)).unwrap();
        v.verify(&old_keys, &token).unwrap();
        assert_eq!(
            v.verify(&keys(&new), &token).unwrap_err().code,
            ErrorCode::InvalidToken
        );
    }
}
