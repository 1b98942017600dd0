//! Access tokens (JWT, RFC 9068) and opaque refresh tokens.

use authstack_keyring::jwt::TokenSigner;
use authstack_protocol::AccessClaims;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use ring::{aead, hkdf};
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

const NONCE_LEN: usize = 12;

/// The key that seals the successor of `refresh_token`: derived from the token itself (HKDF),
/// so only whoever presents that token can open what is sealed for it.
fn successor_key(refresh_token: &str) -> Result<aead::LessSafeKey, ring::error::Unspecified> {
    let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"authstack refresh successor v1");
    let prk = salt.extract(refresh_token.as_bytes());
    let okm = prk.expand(&[b"seal"], &aead::CHACHA20_POLY1305)?;
    Ok(aead::LessSafeKey::new(aead::UnboundKey::from(okm)))
}

/// Encrypts the answer of a refresh (the successor pair) under a key derived from the refresh
/// token that was spent, so a retry with that token within the grace window can be answered
/// with the same successor. The database alone (it stores only token hashes) cannot open it.
pub fn seal_successor(refresh_token: &str, successor: &[u8]) -> Result<Vec<u8>, String> {
    let key = successor_key(refresh_token).map_err(|_| "key derivation failed".to_owned())?;
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let mut sealed = successor.to_vec();
    key.seal_in_place_append_tag(
        aead::Nonce::assume_unique_for_key(nonce),
        aead::Aad::empty(),
        &mut sealed,
    )
    .map_err(|_| "sealing failed".to_owned())?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Opens what [`seal_successor`] sealed for `refresh_token`; `None` if it does not open.
pub fn open_successor(refresh_token: &str, sealed: &[u8]) -> Option<Vec<u8>> {
    let key = successor_key(refresh_token).ok()?;
    let (nonce, body) = sealed.split_at_checked(NONCE_LEN)?;
    let nonce = aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut body = body.to_vec();
    let plain = key
        .open_in_place(nonce, aead::Aad::empty(), &mut body)
        .ok()?;
    Some(plain.to_vec())
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
    fn a_successor_opens_only_with_the_token_it_was_sealed_for() {
        let spent = new_refresh_token();
        let sealed = seal_successor(&spent, b"successor pair").unwrap();
        assert_eq!(
            open_successor(&spent, &sealed).as_deref(),
            Some(&b"successor pair"[..])
        );
        assert_eq!(open_successor(&new_refresh_token(), &sealed), None);
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(open_successor(&spent, &tampered), None);
        assert_eq!(open_successor(&spent, &sealed[..5]), None);
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
