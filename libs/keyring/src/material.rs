//! Key generation and encoding: PKCS#8 / PKCS#1 PEM private keys, public JWKs, RFC 7638 kids.

use authstack_protocol::model::PublicJwk;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};

use crate::{KeyringError, SigningAlgorithm};

/// A freshly generated key pair.
#[derive(Clone)]
pub struct KeyMaterial {
    /// Key id: the first 22 characters of the RFC 7638 SHA-256 thumbprint (132 bits).
    pub kid: String,
    /// The algorithm the key is bound to.
    pub algorithm: SigningAlgorithm,
    /// Private key as PEM (PKCS#8 for EdDSA/ES256, PKCS#1 for RS256).
    pub private_key_pem: String,
    /// The public half as a JWK.
    pub public_jwk: PublicJwk,
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyMaterial")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn err(e: impl std::fmt::Display) -> KeyringError {
    KeyringError::Material(e.to_string())
}

/// RFC 7638 JWK thumbprint (SHA-256, base64url) over the required public members.
pub fn thumbprint(jwk: &PublicJwk) -> String {
    let field = |v: &Option<String>| v.clone().unwrap_or_default();
    // Members in lexicographic order, no white space, as RFC 7638 section 3 requires.
    let canonical = match jwk.kty.as_str() {
        "RSA" => format!(
            r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
            field(&jwk.e),
            field(&jwk.n)
        ),
        "EC" => format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            field(&jwk.crv),
            field(&jwk.x),
            field(&jwk.y)
        ),
        _ => format!(
            r#"{{"crv":"{}","kty":"{}","x":"{}"}}"#,
            field(&jwk.crv),
            jwk.kty,
            field(&jwk.x)
        ),
    };
    b64(&Sha256::digest(canonical.as_bytes()))
}

fn jwk(kty: &str, algorithm: SigningAlgorithm) -> PublicJwk {
    PublicJwk {
        kty: kty.to_owned(),
        kid: String::new(),
        alg: algorithm.as_str().to_owned(),
        use_: "sig".to_owned(),
        crv: None,
        x: None,
        y: None,
        n: None,
        e: None,
    }
}

/// Generates a new key pair for `algorithm` from the operating system's CSPRNG.
pub fn generate(algorithm: SigningAlgorithm) -> Result<KeyMaterial, KeyringError> {
    let (private_key_pem, mut public_jwk) = match algorithm {
        SigningAlgorithm::EdDSA => {
            use ed25519_dalek::pkcs8::EncodePrivateKey;
            let key = ed25519_dalek::SigningKey::generate(&mut OsRng);
            let pem = key
                .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
                .map_err(err)?;
            let mut public = jwk("OKP", algorithm);
            public.crv = Some("Ed25519".into());
            public.x = Some(b64(key.verifying_key().as_bytes()));
            (pem.to_string(), public)
        }
        SigningAlgorithm::ES256 => {
            use p256::pkcs8::EncodePrivateKey;
            let key = p256::ecdsa::SigningKey::random(&mut OsRng);
            let pem = key.to_pkcs8_pem(p256::pkcs8::LineEnding::LF).map_err(err)?;
            let point = key.verifying_key().to_encoded_point(false);
            let (Some(x), Some(y)) = (point.x(), point.y()) else {
                return Err(err("P-256 public key has no affine coordinates"));
            };
            let mut public = jwk("EC", algorithm);
            public.crv = Some("P-256".into());
            public.x = Some(b64(x));
            public.y = Some(b64(y));
            (pem.to_string(), public)
        }
        SigningAlgorithm::RS256 => {
            use rsa::pkcs1::EncodeRsaPrivateKey;
            use rsa::traits::PublicKeyParts;
            let key = rsa::RsaPrivateKey::new(&mut OsRng, 2048).map_err(err)?;
            let pem = key.to_pkcs1_pem(rsa::pkcs1::LineEnding::LF).map_err(err)?;
            let mut public = jwk("RSA", algorithm);
            public.n = Some(b64(&key.n().to_bytes_be()));
            public.e = Some(b64(&key.e().to_bytes_be()));
            (pem.to_string(), public)
        }
    };
    let kid: String = thumbprint(&public_jwk).chars().take(22).collect();
    public_jwk.kid = kid.clone();
    Ok(KeyMaterial {
        kid,
        algorithm,
        private_key_pem,
        public_jwk,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprint_matches_rfc7638_example() {
        // RFC 7638 section 3.1.
        let jwk = PublicJwk {
            kty: "RSA".into(),
            kid: String::new(),
            alg: "RS256".into(),
            use_: "sig".into(),
            crv: None,
            x: None,
            y: None,
            n: Some("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw".into()),
            e: Some("AQAB".into()),
        };
        assert_eq!(
            thumbprint(&jwk),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn every_algorithm_generates_distinct_keys_with_thumbprint_kids() {
        for alg in [
            SigningAlgorithm::EdDSA,
            SigningAlgorithm::ES256,
            SigningAlgorithm::RS256,
        ] {
            let a = generate(alg).unwrap();
            let b = generate(alg).unwrap();
            assert_ne!(a.kid, b.kid);
            assert_eq!(a.kid.len(), 22);
            assert!(thumbprint(&a.public_jwk).starts_with(&a.kid));
            assert_eq!(a.public_jwk.alg, alg.as_str());
            assert!(a.private_key_pem.starts_with("-----BEGIN"));
            assert!(
                !format!("{a:?}").contains("BEGIN"),
                "Debug must not print the key"
            );
        }
    }
}
