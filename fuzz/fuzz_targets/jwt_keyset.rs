//! Verification key sets as the gateway receives them from auth-svc (`keys.list` replies):
//! JSON → `KeySet` → `TokenVerifier::new`, then a genuine token of each fixture key is verified
//! against the set.
//!
//! Properties: no panic on any key material; the verifier knows only kids of the set; a
//! genuine token verifies only under a JWK of its kid holding that key's own algorithm and
//! public key (no substituted key, curve or algorithm ever accepts it), and does verify when
//! every JWK of its kid is the genuine one.
#![no_main]

use std::sync::OnceLock;

use authstack_fuzz::{AUDIENCE, ISSUER, expectations, fixture_ring};
use authstack_keyring::jwt::{TokenSigner, TokenVerifier};
use authstack_protocol::model::PublicJwk;
use authstack_protocol::{AccessClaims, KeySet};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;

/// A valid token of each fixture key: (the key's public JWK, token).
fn genuine_tokens() -> &'static [(PublicJwk, String)] {
    static TOKENS: OnceLock<Vec<(PublicJwk, String)>> = OnceLock::new();
    TOKENS.get_or_init(|| {
        let now = chrono::Utc::now().timestamp();
        let claims = AccessClaims {
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            sub: "6f1c1f0e-8a43-4c57-9a43-2d1f6a0b7c11".into(),
            exp: now + 7 * 86_400,
            iat: now,
            nbf: now,
            jti: "3b9e0c9a-4a3e-4c7e-8f65-0d6b1b2f9a10".into(),
            roles: vec!["user".into()],
            sid: "0e6d5b7a-61c2-4d0b-b6f0-9f1f3c2a5e44".into(),
        };
        fixture_ring()
            .keys
            .iter()
            .map(|key| {
                let signer = TokenSigner::new(key).expect("fixture keys load");
                let token = signer.sign(&claims).expect("fixture keys sign");
                (key.public_jwk.clone(), token)
            })
            .collect()
    })
}

/// A base64url member as the integer or point bytes it stands for.
fn material(member: &Option<String>, strip_leading_zeros: bool) -> Option<Vec<u8>> {
    let bytes = URL_SAFE_NO_PAD.decode(member.as_deref()?).ok()?;
    let skip = if strip_leading_zeros {
        bytes.iter().take_while(|b| **b == 0).count()
    } else {
        0
    };
    Some(bytes[skip..].to_vec())
}

/// Whether `jwk` holds the same algorithm and public key as `genuine`: the members that make
/// up a key of its type (RFC 7518 section 6: `n`, `e` for RSA; `x`, `y` for EC; `x` for OKP).
/// Other members are not part of the key (an EC key with an `e` member is still that EC key).
fn same_key(jwk: &PublicJwk, genuine: &PublicJwk) -> bool {
    if jwk.alg != genuine.alg || jwk.kty != genuine.kty {
        return false;
    }
    let same = |a: &Option<String>, b: &Option<String>, integer: bool| {
        material(a, integer) == material(b, integer)
    };
    match genuine.kty.as_str() {
        "RSA" => same(&jwk.n, &genuine.n, true) && same(&jwk.e, &genuine.e, true),
        "EC" => same(&jwk.x, &genuine.x, false) && same(&jwk.y, &genuine.y, false),
        "OKP" => same(&jwk.x, &genuine.x, false),
        _ => jwk == genuine,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(set) = serde_json::from_slice::<KeySet>(data) else {
        return;
    };
    let (verifier, _warnings) = TokenVerifier::new(&set.keys, &expectations());
    for kid in verifier.kids() {
        assert!(
            set.keys.iter().any(|k| k.kid == kid),
            "kid {kid} not in the set"
        );
    }
    for (genuine, token) in genuine_tokens() {
        let candidates: Vec<&PublicJwk> =
            set.keys.iter().filter(|k| k.kid == genuine.kid).collect();
        match verifier.verify::<AccessClaims>(token) {
            Ok(v) => {
                assert_eq!(v.kid, genuine.kid);
                assert!(
                    candidates.iter().any(|jwk| same_key(jwk, genuine)),
                    "a token of {} verified under a substituted key: {candidates:?}",
                    genuine.kid
                );
            }
            Err(e) => assert!(
                candidates.is_empty() || candidates.iter().any(|jwk| *jwk != genuine),
                "the genuine key set rejects a genuine token of {}: {e:?}",
                genuine.kid
            ),
        }
    }
});
