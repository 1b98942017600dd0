//! Raw bearer strings through `TokenVerifier::verify`, the call the gateway makes on every
//! `Authorization: Bearer` value. Seeds are real tokens of the fixture keys.
//!
//! Properties: no panic; a token that verifies carries the issuer and audience it was checked
//! for, is inside its validity window, names a known kid in an `at+jwt` header whose `alg` is
//! that key's own; and verifying the same string for untyped claims agrees (same kid, same
//! unknown-key verdict), so the outcome never depends on the claims type.
#![no_main]

use authstack_fuzz::{AUDIENCE, ISSUER, LEEWAY_SECS, fixture_ring, fixture_verifier, now};
use authstack_keyring::jwt::VerifyError;
use authstack_protocol::AccessClaims;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let token = String::from_utf8_lossy(data);
    let verifier = fixture_verifier();
    let started = now();
    let typed = verifier.verify::<AccessClaims>(&token);
    let untyped = verifier.verify::<serde_json::Value>(&token);
    let finished = now();

    match (&typed, &untyped) {
        (Ok(t), Ok(u)) => {
            let c = &t.claims;
            assert_eq!(c.iss, ISSUER);
            assert_eq!(c.aud, AUDIENCE);
            let leeway = LEEWAY_SECS as i64;
            assert!(c.exp >= started - leeway, "expired token accepted: {c:?}");
            assert!(c.nbf <= finished + leeway, "immature token accepted: {c:?}");
            assert_eq!(t.kid, u.kid);
            assert_eq!(u.claims["sub"].as_str(), Some(c.sub.as_str()));

            let header = jsonwebtoken::decode_header(token.as_bytes())
                .expect("a verified token has a header");
            assert_eq!(header.kid.as_deref(), Some(t.kid.as_str()));
            let typ = header.typ.unwrap_or_default().to_ascii_lowercase();
            assert!(typ == "at+jwt" || typ == "application/at+jwt", "typ {typ}");
            let key = fixture_ring()
                .keys
                .iter()
                .find(|k| k.kid == t.kid)
                .expect("the kid of a verified token is in the ring");
            assert_eq!(header.alg, key.algorithm.jwt());
        }
        (Ok(t), Err(e)) => panic!(
            "verifies as AccessClaims ({}) but not as JSON: {e:?}",
            t.kid
        ),
        (Err(VerifyError::UnknownKey(a)), other) => assert!(
            matches!(other, Err(VerifyError::UnknownKey(b)) if a == b),
            "unknown kid {a} for AccessClaims only: {other:?}"
        ),
        (other, Err(VerifyError::UnknownKey(b))) => {
            panic!("unknown kid {b} for JSON only: {other:?}")
        }
        _ => {}
    }
});
