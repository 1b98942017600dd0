//! What the fuzz targets share: the fixture key ring, the verifier's expectations, and checks
//! more than one target asserts.
//!
//! `fixtures/keyring.json` holds throw-away keys made for fuzzing only (one EdDSA, ES256 and
//! RS256 key), so committed seed tokens verify and every crash reproduces.

use std::sync::OnceLock;

use authstack_keyring::jwt::{Expectations, TokenVerifier};
use authstack_keyring::{KeyRing, RingKey, SigningAlgorithm};
use jsonwebtoken::EncodingKey;
use serde::de::{DeserializeOwned, Visitor};
use serde_json::Value;

/// The issuer every fixture token is checked against.
pub const ISSUER: &str = "https://auth.fuzz.example";
/// The audience every fixture token is checked against.
pub const AUDIENCE: &str = "authstack";
/// Clock skew allowed by the fixture verifier.
pub const LEEWAY_SECS: u64 = 30;

/// JSON member names whose values are `rpc::Secret`s (passwords, refresh and access tokens).
pub const SECRET_FIELDS: Secrets<'static> = Secrets::Members(&SECRET_MEMBERS);
const SECRET_MEMBERS: [&str; 5] = [
    "password",
    "current_password",
    "new_password",
    "refresh_token",
    "access_token",
];

/// The fixture ring (parsed once).
pub fn fixture_ring() -> &'static KeyRing {
    static RING: OnceLock<KeyRing> = OnceLock::new();
    RING.get_or_init(|| {
        KeyRing::from_json(include_bytes!("../fixtures/keyring.json"))
            .expect("fuzz/fixtures/keyring.json is a valid ring")
    })
}

/// What the fixture verifier requires of a token.
pub fn expectations() -> Expectations {
    Expectations {
        issuer: ISSUER.to_owned(),
        audience: AUDIENCE.to_owned(),
        leeway_secs: LEEWAY_SECS,
    }
}

/// A verifier for every key of the fixture ring, as the gateway builds it from a key set.
pub fn fixture_verifier() -> &'static TokenVerifier {
    static VERIFIER: OnceLock<TokenVerifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        let (verifier, warnings) =
            TokenVerifier::new(&fixture_ring().key_set().keys, &expectations());
        assert!(
            warnings.is_empty(),
            "fixture keys must all load: {warnings:?}"
        );
        verifier
    })
}

/// The jsonwebtoken signing key of a ring key (to sign headers the project never writes).
pub fn encoding_key(key: &RingKey) -> EncodingKey {
    let pem = key.private_key_pem.as_bytes();
    match key.algorithm {
        SigningAlgorithm::EdDSA => EncodingKey::from_ed_pem(pem),
        SigningAlgorithm::ES256 => EncodingKey::from_ec_pem(pem),
        SigningAlgorithm::RS256 => EncodingKey::from_rsa_pem(pem),
    }
    .expect("ring keys hold valid PEM")
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Characters no fixed error text of the project or of serde contains: a secret holding one can
/// only show up in a message by being echoed.
fn is_marker(c: char) -> bool {
    !c.is_ascii() || "!#$%&*+;<=>?^|~".contains(c)
}

/// Which strings of a document are secret.
#[derive(Clone, Copy)]
pub enum Secrets<'a> {
    /// Values (at any depth) under these member names.
    Members(&'a [&'a str]),
    /// Every member name and string value.
    Everything,
}

fn collect_strings<'a>(
    doc: &'a Value,
    secrets: Secrets<'_>,
    under_secret: bool,
    out: &mut Vec<(&'a str, bool)>,
) {
    match doc {
        Value::String(s) => out.push((s, under_secret)),
        Value::Array(items) => {
            for item in items {
                collect_strings(item, secrets, under_secret, out);
            }
        }
        Value::Object(map) => {
            for (key, value) in map {
                let secret = match secrets {
                    Secrets::Members(names) => names.contains(&key.as_str()),
                    Secrets::Everything => true,
                };
                out.push((key, matches!(secrets, Secrets::Everything)));
                collect_strings(value, secrets, secret, out);
            }
        }
        _ => {}
    }
}

/// Secret strings of `doc` that an error message could contain only by echoing them: at least 8
/// characters, one of them a marker character that no other string of the document holds.
/// Fixed texts hold no marker, so a message showing such a string must have copied at least the
/// part of it with that marker.
pub fn echo_candidates(doc: &Value, secrets: Secrets<'_>) -> Vec<String> {
    let mut strings = Vec::new();
    collect_strings(
        doc,
        secrets,
        matches!(secrets, Secrets::Everything),
        &mut strings,
    );
    let elsewhere = |c: char| {
        strings
            .iter()
            .any(|(other, secret)| !secret && other.contains(c))
    };
    strings
        .iter()
        .filter(|(s, secret)| {
            *secret && s.chars().count() >= 8 && s.chars().any(|c| is_marker(c) && !elsewhere(c))
        })
        .map(|(s, _)| (*s).to_owned())
        .collect()
}

/// Panics when `text` contains one of `secrets`.
pub fn assert_no_echo(text: &str, secrets: &[String], what: &str) {
    for secret in secrets {
        assert!(
            !text.contains(secret.as_str()),
            "{what} echoes a secret value {secret:?}: {text}"
        );
    }
}

/// The member names a struct type declares, read from its `Deserialize` implementation.
pub fn struct_fields<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut fields = None;
    let _ = T::deserialize(FieldRecorder(&mut fields));
    fields.unwrap_or(&[])
}

/// A deserializer that only records the field list a struct asks for.
struct FieldRecorder<'a>(&'a mut Option<&'static [&'static str]>);

impl<'de> serde::Deserializer<'de> for FieldRecorder<'_> {
    type Error = serde::de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(serde::de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = Some(fields);
        Err(serde::de::Error::custom("fields recorded"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}
