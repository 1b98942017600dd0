//! Signing access tokens with the active key, verifying them with a public key set.

use std::collections::HashMap;

use authstack_protocol::model::PublicJwk;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{DecodingKey, Header, Validation};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ring::{KeyRing, RingKey};
use crate::{KeyringError, SigningAlgorithm};

/// The `typ` header of access tokens (RFC 9068).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// Length of an Ed25519 public key (RFC 8032).
const ED25519_KEY_BYTES: usize = 32;

/// Signs JWTs with one private key.
///
/// The key is parsed once, here. (`jsonwebtoken::encode` parses the PEM's DER again for every
/// token, which for Ed25519 and P-256 also derives the public key: a second scalar
/// multiplication as costly as the signature.) The tokens are the ones `jsonwebtoken::encode`
/// writes, byte for byte: its `Header`, serialised once, and the same deterministic signatures.
pub struct TokenSigner {
    kid: String,
    /// `base64url(header JSON)`, the first part of every token.
    header_b64: String,
    key: PrivateKey,
}

/// A parsed private key.
enum PrivateKey {
    Ed25519(ed25519_dalek::SigningKey),
    P256(p256::ecdsa::SigningKey),
    Rsa(rsa::pkcs1v15::SigningKey<sha2::Sha256>),
}

impl PrivateKey {
    /// Parses a PEM private key of `algorithm`: PKCS#8 for every algorithm, PKCS#1 for RSA,
    /// SEC1 for P-256 (the formats `EncodingKey`'s PEM constructors take).
    fn from_pem(algorithm: SigningAlgorithm, pem: &str) -> Result<Self, String> {
        use ed25519_dalek::pkcs8::DecodePrivateKey;
        use rsa::pkcs1::DecodeRsaPrivateKey;
        let err = |e: &dyn std::fmt::Display| e.to_string();
        Ok(match algorithm {
            SigningAlgorithm::EdDSA => PrivateKey::Ed25519(
                ed25519_dalek::SigningKey::from_pkcs8_pem(pem).map_err(|e| err(&e))?,
            ),
            SigningAlgorithm::ES256 => PrivateKey::P256(
                p256::ecdsa::SigningKey::from_pkcs8_pem(pem)
                    .or_else(|_| p256::SecretKey::from_sec1_pem(pem).map(Into::into))
                    .map_err(|e| err(&e))?,
            ),
            SigningAlgorithm::RS256 => PrivateKey::Rsa(rsa::pkcs1v15::SigningKey::new(
                rsa::RsaPrivateKey::from_pkcs1_pem(pem)
                    .or_else(|_| rsa::RsaPrivateKey::from_pkcs8_pem(pem))
                    .map_err(|e| err(&e))?,
            )),
        })
    }

    /// The signature of `message` as it appears in a JWS (RFC 7518 §3).
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, signature::Error> {
        use signature::{RandomizedSigner, SignatureEncoding, Signer};
        Ok(match self {
            PrivateKey::Ed25519(key) => key.try_sign(message)?.to_bytes().to_vec(),
            PrivateKey::P256(key) => {
                let signature: p256::ecdsa::Signature = key.try_sign(message)?;
                signature.to_vec()
            }
            // Blinded with fresh randomness; PKCS #1 v1.5 signatures are deterministic anyway.
            PrivateKey::Rsa(key) => key
                .try_sign_with_rng(&mut rand::thread_rng(), message)?
                .to_vec(),
        })
    }
}

/// The JOSE header of an access token signed by `key`: its algorithm, `typ` and `kid`.
fn access_token_header(key: &RingKey) -> Header {
    let mut header = Header::new(key.algorithm.jwt());
    header.typ = Some(ACCESS_TOKEN_TYP.to_owned());
    header.kid = Some(key.kid.clone());
    header
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl TokenSigner {
    /// A signer for the ring's active key.
    pub fn for_active_key(ring: &KeyRing) -> Result<Self, KeyringError> {
        let key = ring
            .active()
            .ok_or_else(|| KeyringError::InvalidRing("no active key".into()))?;
        TokenSigner::new(key)
    }

    /// A signer for one ring key.
    pub fn new(key: &RingKey) -> Result<Self, KeyringError> {
        let private = PrivateKey::from_pem(key.algorithm, &key.private_key_pem)
            .map_err(|e| KeyringError::Material(format!("key {}: {e}", key.kid)))?;
        let header = serde_json::to_vec(&access_token_header(key))
            .map_err(|e| KeyringError::Signing(format!("header of key {}: {e}", key.kid)))?;
        Ok(TokenSigner {
            kid: key.kid.clone(),
            header_b64: URL_SAFE_NO_PAD.encode(header),
            key: private,
        })
    }

    /// The key id written into every token.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Signs `claims` into a compact JWS (RFC 7515 §7.1).
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, KeyringError> {
        let claims =
            serde_json::to_vec(claims).map_err(|e| KeyringError::Signing(e.to_string()))?;
        let mut token = String::with_capacity(self.header_b64.len() + 4 * claims.len() / 3 + 360);
        token.push_str(&self.header_b64);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&claims, &mut token);
        let signature = self
            .key
            .sign(token.as_bytes())
            .map_err(|e| KeyringError::Signing(e.to_string()))?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
        Ok(token)
    }
}

/// Why a token was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Not a JWT, or a header we refuse (no `kid`, `alg: none`, wrong `typ`, `crit`).
    #[error("malformed token: {0}")]
    Malformed(String),
    /// Signed by a key this verifier does not know.
    #[error("unknown signing key {0}")]
    UnknownKey(String),
    /// Past its expiry.
    #[error("token expired")]
    Expired,
    /// Bad signature, issuer, audience, not-before or algorithm.
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// A verified token.
#[derive(Debug, Clone)]
pub struct Verified<T> {
    /// The key that signed it.
    pub kid: String,
    /// Its claims.
    pub claims: T,
}

struct VerifyKey {
    key: DecodingKey,
    validation: Validation,
}

/// Verifies tokens against a set of public keys; each key is pinned to its own algorithm.
pub struct TokenVerifier {
    keys: HashMap<String, VerifyKey>,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// What a token must carry to be accepted.
#[derive(Debug, Clone)]
pub struct Expectations {
    /// Required `iss`.
    pub issuer: String,
    /// Required `aud`.
    pub audience: String,
    /// Allowed clock skew in seconds for `exp` and `nbf`.
    pub leeway_secs: u64,
}

fn decoding_key(jwk: &PublicJwk) -> Result<(SigningAlgorithm, DecodingKey), String> {
    let algorithm: SigningAlgorithm = jwk.alg.parse()?;
    let need = |v: &Option<String>, name: &str| {
        v.clone()
            .ok_or_else(|| format!("key {} lacks `{name}`", jwk.kid))
    };
    let key = match (algorithm, jwk.kty.as_str()) {
        (SigningAlgorithm::EdDSA, "OKP") => {
            // jsonwebtoken takes the first 32 bytes of `x` without a length check: a shorter key
            // would panic on every token of its kid, a longer one would be silently truncated.
            let x = need(&jwk.x, "x")?;
            let len = URL_SAFE_NO_PAD
                .decode(&x)
                .map_err(|e| format!("key {}: `x`: {e}", jwk.kid))?
                .len();
            if len != ED25519_KEY_BYTES {
                return Err(format!(
                    "key {}: an Ed25519 key is {ED25519_KEY_BYTES} bytes, not {len}",
                    jwk.kid
                ));
            }
            DecodingKey::from_ed_components(&x)
        }
        (SigningAlgorithm::ES256, "EC") => {
            DecodingKey::from_ec_components(&need(&jwk.x, "x")?, &need(&jwk.y, "y")?)
        }
        (SigningAlgorithm::RS256, "RSA") => {
            DecodingKey::from_rsa_components(&need(&jwk.n, "n")?, &need(&jwk.e, "e")?)
        }
        (alg, kty) => return Err(format!("key {}: kty {kty} does not fit {alg}", jwk.kid)),
    }
    .map_err(|e| format!("key {}: {e}", jwk.kid))?;
    Ok((algorithm, key))
}

impl TokenVerifier {
    /// Builds a verifier from public JWKs; keys that cannot be used are returned as warnings.
    pub fn new(jwks: &[PublicJwk], expect: &Expectations) -> (Self, Vec<String>) {
        let mut keys = HashMap::new();
        let mut warnings = Vec::new();
        for jwk in jwks {
            match decoding_key(jwk) {
                Ok((algorithm, key)) => {
                    let mut validation = Validation::new(algorithm.jwt());
                    validation.set_issuer(&[&expect.issuer]);
                    validation.set_audience(&[&expect.audience]);
                    validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
                    validation.validate_nbf = true;
                    validation.leeway = expect.leeway_secs;
                    keys.insert(jwk.kid.clone(), VerifyKey { key, validation });
                }
                Err(e) => warnings.push(e),
            }
        }
        (TokenVerifier { keys }, warnings)
    }

    /// Whether `kid` is known.
    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// The known kids.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// Verifies signature, algorithm, `typ`, issuer, audience, expiry and not-before.
    pub fn verify<T: DeserializeOwned>(&self, token: &str) -> Result<Verified<T>, VerifyError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| VerifyError::Malformed(e.to_string()))?;
        let typ_ok = header.typ.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case(ACCESS_TOKEN_TYP) || t.eq_ignore_ascii_case("application/at+jwt")
        });
        if !typ_ok {
            return Err(VerifyError::Malformed("`typ` must be at+jwt".into()));
        }
        // RFC 7515 §4.1.11: extensions listed in `crit` must be understood; none are.
        if header.crit.is_some() {
            return Err(VerifyError::Malformed(
                "`crit` header extensions are not supported".into(),
            ));
        }
        let kid = header
            .kid
            .ok_or_else(|| VerifyError::Malformed("no `kid` header".into()))?;
        let key = self
            .keys
            .get(&kid)
            .ok_or_else(|| VerifyError::UnknownKey(kid.clone()))?;
        let data =
            jsonwebtoken::decode::<T>(token, &key.key, &key.validation).map_err(|e| {
                match e.kind() {
                    ErrorKind::ExpiredSignature => VerifyError::Expired,
                    ErrorKind::InvalidToken
                    | ErrorKind::Base64(_)
                    | ErrorKind::Json(_)
                    | ErrorKind::Utf8(_) => VerifyError::Malformed(e.to_string()),
                    _ => VerifyError::Invalid(e.to_string()),
                }
            })?;
        Ok(Verified {
            kid,
            claims: data.claims,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::material::generate;
    use authstack_protocol::AccessClaims;
    use chrono::Utc;

    fn expect() -> Expectations {
        Expectations {
            issuer: "https://auth.example".into(),
            audience: "authstack".into(),
            leeway_secs: 5,
        }
    }

    fn claims(exp_offset: i64) -> AccessClaims {
        let now = Utc::now().timestamp();
        AccessClaims {
            iss: "https://auth.example".into(),
            aud: "authstack".into(),
            sub: "user-1".into(),
            exp: now + exp_offset,
            iat: now,
            nbf: now,
            jti: "j1".into(),
            roles: vec!["user".into()],
            sid: "s1".into(),
        }
    }

    const EVERY_ALGORITHM: [SigningAlgorithm; 3] = [
        SigningAlgorithm::EdDSA,
        SigningAlgorithm::ES256,
        SigningAlgorithm::RS256,
    ];

    fn ring(alg: SigningAlgorithm) -> KeyRing {
        KeyRing::with_active_key(generate(alg).unwrap(), Utc::now())
    }

    #[test]
    fn every_algorithm_signs_and_verifies() {
        for alg in EVERY_ALGORITHM {
            let ring = ring(alg);
            let signer = TokenSigner::for_active_key(&ring).unwrap();
            let token = signer.sign(&claims(60)).unwrap();
            let (verifier, warnings) = TokenVerifier::new(&ring.key_set().keys, &expect());
            assert!(warnings.is_empty(), "{warnings:?}");
            let v = verifier.verify::<AccessClaims>(&token).unwrap();
            assert_eq!(v.kid, signer.kid());
            assert_eq!(v.claims.sub, "user-1");
            let header = jsonwebtoken::decode_header(&token).unwrap();
            assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        }
    }

    #[test]
    fn unknown_key_expired_wrong_audience_and_tampering_are_rejected() {
        let ring_a = ring(SigningAlgorithm::EdDSA);
        let ring_b = ring(SigningAlgorithm::EdDSA);
        let signer_b = TokenSigner::for_active_key(&ring_b).unwrap();
        let (verifier, _) = TokenVerifier::new(&ring_a.key_set().keys, &expect());
        let foreign = signer_b.sign(&claims(60)).unwrap();
        assert!(matches!(
            verifier.verify::<AccessClaims>(&foreign),
            Err(VerifyError::UnknownKey(_))
        ));

        let signer_a = TokenSigner::for_active_key(&ring_a).unwrap();
        let expired = signer_a.sign(&claims(-60)).unwrap();
        assert_eq!(
            verifier.verify::<AccessClaims>(&expired).unwrap_err(),
            VerifyError::Expired
        );

        let mut wrong_aud = claims(60);
        wrong_aud.aud = "someone-else".into();
        let token = signer_a.sign(&wrong_aud).unwrap();
        assert!(matches!(
            verifier.verify::<AccessClaims>(&token),
            Err(VerifyError::Invalid(_))
        ));

        let good = signer_a.sign(&claims(60)).unwrap();
        let mut parts: Vec<&str> = good.split('.').collect();
        let forged_payload = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            serde_json::to_vec(&{
                let mut c = claims(60);
                c.roles = vec!["admin".into()];
                c
            })
            .unwrap(),
        );
        parts[1] = &forged_payload;
        let forged = parts.join(".");
        assert!(matches!(
            verifier.verify::<AccessClaims>(&forged),
            Err(VerifyError::Invalid(_))
        ));
    }

    #[test]
    fn alg_none_and_missing_typ_are_rejected() {
        let ring = ring(SigningAlgorithm::EdDSA);
        let (verifier, _) = TokenVerifier::new(&ring.key_set().keys, &expect());
        let b64 = |v: &serde_json::Value| {
            base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                serde_json::to_vec(v).unwrap(),
            )
        };
        let kid = &ring.keys[0].kid;
        let none = format!(
            "{}.{}.",
            b64(&serde_json::json!({"alg": "none", "typ": "at+jwt", "kid": kid})),
            b64(&serde_json::to_value(claims(60)).unwrap())
        );
        assert!(matches!(
            verifier.verify::<AccessClaims>(&none),
            Err(VerifyError::Malformed(_))
        ));
        assert!(matches!(
            verifier.verify::<AccessClaims>("garbage"),
            Err(VerifyError::Malformed(_))
        ));
    }

    #[test]
    fn tokens_are_the_ones_jsonwebtoken_writes_byte_for_byte() {
        // The signer parses its key once instead of per token; the judge is jsonwebtoken's own
        // encoder (deterministic signatures: Ed25519, RFC 6979 ECDSA, PKCS #1 v1.5).
        for alg in EVERY_ALGORITHM {
            let ring = ring(alg);
            let key = ring.active().unwrap();
            let pem = key.private_key_pem.as_bytes();
            let encoding = match alg {
                SigningAlgorithm::EdDSA => jsonwebtoken::EncodingKey::from_ed_pem(pem),
                SigningAlgorithm::ES256 => jsonwebtoken::EncodingKey::from_ec_pem(pem),
                SigningAlgorithm::RS256 => jsonwebtoken::EncodingKey::from_rsa_pem(pem),
            }
            .unwrap();
            let header = access_token_header(key);
            let signer = TokenSigner::new(key).unwrap();
            for _ in 0..3 {
                let claims = claims(60);
                let expected = jsonwebtoken::encode(&header, &claims, &encoding).unwrap();
                assert_eq!(signer.sign(&claims).unwrap(), expected, "{alg:?}");
            }
        }
    }

    #[test]
    fn tokens_with_critical_header_extensions_are_rejected() {
        // RFC 7515 §4.1.11: a recipient that does not understand a `crit` extension must
        // reject the token; this verifier understands none.
        let ring = ring(SigningAlgorithm::EdDSA);
        let key = ring.active().unwrap();
        let mut header = access_token_header(key);
        header.crit = Some(vec!["urn:example:must-understand".into()]);
        header.extras.insert("urn:example:must-understand", true);
        let pem = jsonwebtoken::EncodingKey::from_ed_pem(key.private_key_pem.as_bytes()).unwrap();
        let token = jsonwebtoken::encode(&header, &claims(60), &pem).unwrap();
        let (verifier, _) = TokenVerifier::new(&ring.key_set().keys, &expect());
        assert!(matches!(
            verifier.verify::<AccessClaims>(&token),
            Err(VerifyError::Malformed(_))
        ));
    }

    #[test]
    fn ed25519_keys_of_the_wrong_length_are_refused_not_a_panic() {
        // Found by fuzzing (fuzz/seeds/jwt_keyset/short-ed25519-x): jsonwebtoken slices the
        // first 32 bytes of `x` unchecked, so a shorter key panicked on every token of its kid.
        let ring = ring(SigningAlgorithm::EdDSA);
        let token = TokenSigner::for_active_key(&ring)
            .unwrap()
            .sign(&claims(60))
            .unwrap();
        for len in [13, 31, 33] {
            let mut keys = ring.key_set().keys;
            keys[0].x = Some(base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                vec![7u8; len],
            ));
            let (verifier, warnings) = TokenVerifier::new(&keys, &expect());
            assert_eq!(warnings.len(), 1, "{len} bytes: {warnings:?}");
            assert!(!verifier.contains(&keys[0].kid));
            assert!(matches!(
                verifier.verify::<AccessClaims>(&token),
                Err(VerifyError::UnknownKey(_))
            ));
        }
    }

    #[test]
    fn a_key_only_verifies_with_its_own_algorithm() {
        // An ES256 token whose header claims the kid of an EdDSA key must not verify.
        let ed = ring(SigningAlgorithm::EdDSA);
        let es = ring(SigningAlgorithm::ES256);
        let mut key = es.keys[0].clone();
        key.kid = ed.keys[0].kid.clone();
        let token = TokenSigner::new(&key).unwrap().sign(&claims(60)).unwrap();
        let (verifier, _) = TokenVerifier::new(&ed.key_set().keys, &expect());
        assert!(matches!(
            verifier.verify::<AccessClaims>(&token),
            Err(VerifyError::Invalid(_))
        ));
    }
}
