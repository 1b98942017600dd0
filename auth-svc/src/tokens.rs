//! Access tokens (JWT, RFC 9068) and opaque refresh tokens.

use authstack_keyring::jwt::TokenSigner;
use authstack_protocol::AccessClaims;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Issuer, audience and lifetime of access tokens.
#[derive(Debug, Clone)]
pub struct AccessTokenSettings {
    /// `iss`.
    pub issuer: String,
    /// `aud`.
    pub audience: String,
    /// Lifetime in seconds.
    pub ttl_secs: u64,
}

/// Builds the claims of a new access token.
pub fn access_claims(
    settings: &AccessTokenSettings,
    account_id: Uuid,
    roles: &[String],
    session_id: Uuid,
    now: i64,
) -> AccessClaims {
    AccessClaims {
        iss: settings.issuer.clone(),
        aud: settings.audience.clone(),
        sub: account_id.to_string(),
        exp: now + settings.ttl_secs as i64,
        iat: now,
        nbf: now,
        jti: Uuid::new_v4().to_string(),
        roles: roles.to_vec(),
        sid: session_id.to_string(),
    }
}

/// Signs claims with the active key.
pub fn sign(signer: &TokenSigner, claims: &AccessClaims) -> Result<String, String> {
    signer.sign(claims).map_err(|e| e.to_string())
}

/// A new refresh token: 256 random bits, base64url (43 characters).
pub fn new_refresh_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The stored form of a refresh token. A fast hash is right here: the token has 256 bits of
/// entropy, so there is nothing to brute-force.
pub fn hash_refresh_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_tokens_are_random_and_hashes_are_stable() {
        let a = new_refresh_token();
        let b = new_refresh_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(hash_refresh_token(&a), hash_refresh_token(&a));
        assert_ne!(hash_refresh_token(&a), hash_refresh_token(&b));
    }

    #[test]
    fn claims_carry_every_required_field() {
        let s = AccessTokenSettings {
            issuer: "iss".into(),
            audience: "aud".into(),
            ttl_secs: 900,
        };
        let c = access_claims(&s, Uuid::nil(), &["user".into()], Uuid::nil(), 1000);
        assert_eq!((c.iat, c.nbf, c.exp), (1000, 1000, 1900));
        assert_eq!(c.roles, ["user"]);
        assert!(!c.jti.is_empty());
    }
}
