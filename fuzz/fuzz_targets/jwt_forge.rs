//! Structured tokens: the fuzzer picks the header and payload members (right, wrong, missing,
//! mistyped, duplicated, extra), the signer (a fixture key, an attacker's key carrying a real
//! kid, HS256 keyed with a public key, empty or random bytes) and the encoding; the target
//! signs and verifies them.
//!
//! Properties:
//! - the verdict equals an independent model of the rules (`at+jwt`, no `crit`, known kid,
//!   the key's own algorithm, a signature by that key, claims of the right types, `exp`/`nbf`
//!   within the leeway, issuer, audience), including which error the caller is told;
//! - a token that verifies carries exactly the claims that were signed;
//! - a duplicated claim never verifies, and a duplicated header member verifies only if the
//!   header it stands for (last member wins) would.
#![no_main]

use std::sync::OnceLock;

use authstack_fuzz::{
    AUDIENCE, ISSUER, LEEWAY_SECS, encoding_key, fixture_ring, fixture_verifier, now,
};
use authstack_keyring::jwt::VerifyError;
use authstack_keyring::material::generate;
use authstack_keyring::{KeyState, RingKey, SigningAlgorithm};
use authstack_protocol::AccessClaims;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};

const ALGS: [SigningAlgorithm; 3] = [
    SigningAlgorithm::EdDSA,
    SigningAlgorithm::ES256,
    SigningAlgorithm::RS256,
];

/// Keys the verifier does not know, one per algorithm (the attacker's).
fn attacker_keys() -> &'static [(RingKey, EncodingKey)] {
    static KEYS: OnceLock<Vec<(RingKey, EncodingKey)>> = OnceLock::new();
    KEYS.get_or_init(|| {
        ALGS.iter()
            .map(|alg| {
                let material = generate(*alg).expect("key generation");
                let key = RingKey::new(material, KeyState::Active, chrono::Utc::now());
                let encoding = encoding_key(&key);
                (key, encoding)
            })
            .collect()
    })
}

fn fixture_keys() -> &'static [(RingKey, EncodingKey)] {
    static KEYS: OnceLock<Vec<(RingKey, EncodingKey)>> = OnceLock::new();
    KEYS.get_or_init(|| {
        fixture_ring()
            .keys
            .iter()
            .map(|k| (k.clone(), encoding_key(k)))
            .collect()
    })
}

fn pick<T>(items: &[T], i: u8) -> &T {
    &items[usize::from(i) % items.len()]
}

/// A JSON leaf value.
#[derive(Arbitrary, Debug, Clone)]
enum Leaf {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    StrList(Vec<String>),
}

impl Leaf {
    fn json(&self) -> Value {
        match self {
            Leaf::Null => Value::Null,
            Leaf::Bool(b) => json!(b),
            Leaf::Int(i) => json!(i),
            Leaf::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Leaf::Str(s) => json!(s),
            Leaf::StrList(v) => json!(v),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum AlgChoice {
    OfKey(u8),
    Named(u8),
    Lowercase(u8),
    None,
    Value(Leaf),
    Missing,
}

const ALG_NAMES: [&str; 12] = [
    "EdDSA", "ES256", "RS256", "HS256", "HS384", "HS512", "ES384", "RS384", "RS512", "PS256",
    "PS384", "PS512",
];

#[derive(Arbitrary, Debug)]
enum TypChoice {
    AtJwt,
    ApplicationAtJwt,
    Upper,
    Jwt,
    Value(Leaf),
    Missing,
}

#[derive(Arbitrary, Debug)]
enum KidChoice {
    Fixture(u8),
    Attacker(u8),
    Value(Leaf),
    Missing,
}

#[derive(Arbitrary, Debug)]
enum Signer {
    Fixture(u8),
    Attacker(u8),
    HmacWithPublicKey(u8),
    Empty,
    Bytes(Vec<u8>),
    Text(String),
}

#[derive(Arbitrary, Debug)]
enum Text {
    Good,
    Value(Leaf),
    Missing,
}

#[derive(Arbitrary, Debug)]
enum Time {
    /// Offsets from now that stay at least 10 s away from every leeway boundary.
    Relative(u8),
    Value(Leaf),
    Missing,
}

const OFFSETS: [i64; 6] = [-86_400, -150, -10, 10, 150, 86_400];

#[derive(Arbitrary, Debug)]
enum Form {
    Compact,
    PaddedHeader,
    PaddedPayload,
    ExtraSegment,
    Raw(String),
}

#[derive(Arbitrary, Debug)]
struct Duplicate {
    member: u8,
    value: Leaf,
    after: bool,
}

#[derive(Arbitrary, Debug)]
struct Forged {
    alg: AlgChoice,
    typ: TypChoice,
    kid: KidChoice,
    crit: Option<Vec<String>>,
    embed_attacker_jwk: Option<u8>,
    header_extras: Vec<(String, Leaf)>,
    header_duplicate: Option<Duplicate>,
    iss: Text,
    aud: Text,
    sub: Text,
    jti: Text,
    exp: Time,
    nbf: Time,
    iat: Time,
    roles: Option<Leaf>,
    sid: Option<Leaf>,
    claim_extras: Vec<(String, Leaf)>,
    claim_duplicate: Option<Duplicate>,
    signer: Signer,
    form: Form,
}

type Members = Vec<(String, Value)>;

fn text(choice: &Text, good: &str) -> Option<Value> {
    match choice {
        Text::Good => Some(json!(good)),
        Text::Value(v) => Some(v.json()),
        Text::Missing => None,
    }
}

fn time(choice: &Time, now: i64) -> Option<Value> {
    match choice {
        Time::Relative(i) => Some(json!(now + pick(&OFFSETS, *i))),
        Time::Value(v) => Some(v.json()),
        Time::Missing => None,
    }
}

fn push(members: &mut Members, name: &str, value: Option<Value>) {
    if let Some(v) = value {
        members.push((name.to_owned(), v));
    }
}

fn header_members(f: &Forged) -> Members {
    let mut m = Members::new();
    let alg = match &f.alg {
        AlgChoice::OfKey(i) => Some(json!(pick(&ALGS, *i).as_str())),
        AlgChoice::Named(i) => Some(json!(pick(&ALG_NAMES, *i))),
        AlgChoice::Lowercase(i) => Some(json!(pick(&ALG_NAMES, *i).to_lowercase())),
        AlgChoice::None => Some(json!("none")),
        AlgChoice::Value(v) => Some(v.json()),
        AlgChoice::Missing => None,
    };
    push(&mut m, "alg", alg);
    let typ = match &f.typ {
        TypChoice::AtJwt => Some(json!("at+jwt")),
        TypChoice::ApplicationAtJwt => Some(json!("application/at+jwt")),
        TypChoice::Upper => Some(json!("AT+JWT")),
        TypChoice::Jwt => Some(json!("JWT")),
        TypChoice::Value(v) => Some(v.json()),
        TypChoice::Missing => None,
    };
    push(&mut m, "typ", typ);
    let kid = match &f.kid {
        KidChoice::Fixture(i) => Some(json!(pick(fixture_keys(), *i).0.kid)),
        KidChoice::Attacker(i) => Some(json!(pick(attacker_keys(), *i).0.kid)),
        KidChoice::Value(v) => Some(v.json()),
        KidChoice::Missing => None,
    };
    push(&mut m, "kid", kid);
    push(&mut m, "crit", f.crit.as_ref().map(|c| json!(c)));
    if let Some(i) = f.embed_attacker_jwk {
        let jwk = &pick(attacker_keys(), i).0.public_jwk;
        m.push(("jwk".to_owned(), json!(jwk)));
    }
    for (name, value) in &f.header_extras {
        m.push((format!("x-{name}"), value.json()));
    }
    m
}

fn claim_members(f: &Forged, now: i64) -> Members {
    let mut m = Members::new();
    push(&mut m, "iss", text(&f.iss, ISSUER));
    push(&mut m, "aud", text(&f.aud, AUDIENCE));
    push(
        &mut m,
        "sub",
        text(&f.sub, "6f1c1f0e-8a43-4c57-9a43-2d1f6a0b7c11"),
    );
    push(
        &mut m,
        "jti",
        text(&f.jti, "3b9e0c9a-4a3e-4c7e-8f65-0d6b1b2f9a10"),
    );
    push(&mut m, "exp", time(&f.exp, now));
    push(&mut m, "nbf", time(&f.nbf, now));
    push(&mut m, "iat", time(&f.iat, now));
    push(&mut m, "roles", f.roles.as_ref().map(Leaf::json));
    push(&mut m, "sid", f.sid.as_ref().map(Leaf::json));
    for (name, value) in &f.claim_extras {
        m.push((format!("x-{name}"), value.json()));
    }
    m
}

/// Inserts a second member with the name of an existing one; returns that name.
fn duplicate(members: &mut Members, dup: &Option<Duplicate>) -> Option<String> {
    let dup = dup.as_ref()?;
    if members.is_empty() {
        return None;
    }
    let index = usize::from(dup.member) % members.len();
    let name = members[index].0.clone();
    let at = if dup.after { index + 1 } else { index };
    members.insert(at, (name.clone(), dup.value.json()));
    Some(name)
}

/// The JSON text of `members`, in order, duplicates kept.
fn object_text(members: &Members) -> String {
    let body: Vec<String> = members
        .iter()
        .map(|(k, v)| format!("{}:{v}", Value::String(k.clone())))
        .collect();
    format!("{{{}}}", body.join(","))
}

/// The object a last-member-wins parser sees.
fn last_wins(members: &Members) -> Map<String, Value> {
    members.iter().cloned().collect()
}

fn sign(signer: &Signer, message: &str) -> (String, Option<usize>) {
    let jws = |key: &RingKey, encoding: &EncodingKey| {
        jsonwebtoken::crypto::sign(message.as_bytes(), encoding, key.algorithm.jwt())
            .expect("signing with a valid key")
    };
    match signer {
        Signer::Fixture(i) => {
            let index = usize::from(*i) % fixture_keys().len();
            let (key, encoding) = &fixture_keys()[index];
            (jws(key, encoding), Some(index))
        }
        Signer::Attacker(i) => {
            let (key, encoding) = pick(attacker_keys(), *i);
            (jws(key, encoding), None)
        }
        Signer::HmacWithPublicKey(i) => {
            let public = serde_json::to_vec(&pick(fixture_keys(), *i).0.public_jwk)
                .expect("a JWK serializes");
            let sig = jsonwebtoken::crypto::sign(
                message.as_bytes(),
                &EncodingKey::from_secret(&public),
                Algorithm::HS256,
            )
            .expect("HMAC signing");
            (sig, None)
        }
        Signer::Empty => (String::new(), None),
        Signer::Bytes(b) => (URL_SAFE_NO_PAD.encode(b), None),
        Signer::Text(t) => (t.clone(), None),
    }
}

/// What the verifier answers.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Verdict {
    Ok,
    Malformed,
    UnknownKey,
    Expired,
    Invalid,
}

fn verdict_of(result: &Result<AccessClaims, VerifyError>) -> Verdict {
    match result {
        Ok(_) => Verdict::Ok,
        Err(VerifyError::Malformed(_)) => Verdict::Malformed,
        Err(VerifyError::UnknownKey(_)) => Verdict::UnknownKey,
        Err(VerifyError::Expired) => Verdict::Expired,
        Err(VerifyError::Invalid(_)) => Verdict::Invalid,
    }
}

/// The rules, checked in the order the verifier applies them, from the token text and which
/// fixture key (if any) signed which message.
fn model(token: &str, signed: Option<(usize, &str)>, now: i64) -> Verdict {
    let Some((message, signature)) = token.rsplit_once('.') else {
        return Verdict::Malformed;
    };
    let Some((header_b64, payload_b64)) = message.rsplit_once('.') else {
        return Verdict::Malformed;
    };
    let Ok(header_bytes) = URL_SAFE_NO_PAD.decode(header_b64) else {
        return Verdict::Malformed;
    };
    let Ok(header) = serde_json::from_slice::<jsonwebtoken::Header>(&header_bytes) else {
        return Verdict::Malformed;
    };
    let typ = header.typ.as_deref().map(str::to_ascii_lowercase);
    if !matches!(typ.as_deref(), Some("at+jwt" | "application/at+jwt")) {
        return Verdict::Malformed;
    }
    // RFC 7515 §4.1.11: no extension is understood, so a `crit` header invalidates the token.
    if header.crit.is_some() {
        return Verdict::Malformed;
    }
    let Some(kid) = header.kid else {
        return Verdict::Malformed;
    };
    let Some(index) = fixture_keys().iter().position(|(k, _)| k.kid == kid) else {
        return Verdict::UnknownKey;
    };
    if header.alg != fixture_keys()[index].0.algorithm.jwt() {
        return Verdict::Invalid;
    }
    if URL_SAFE_NO_PAD.decode(signature).is_err() {
        return Verdict::Malformed;
    }
    if signed != Some((index, message)) {
        return Verdict::Invalid;
    }
    let Ok(payload) = URL_SAFE_NO_PAD.decode(payload_b64) else {
        return Verdict::Malformed;
    };
    let Ok(claims) = serde_json::from_slice::<AccessClaims>(&payload) else {
        return Verdict::Malformed;
    };
    if claims.exp < 0 || claims.nbf < 0 {
        return Verdict::Invalid;
    }
    if claims.exp < now - LEEWAY_SECS as i64 {
        return Verdict::Expired;
    }
    if claims.nbf > now + LEEWAY_SECS as i64 || claims.iss != ISSUER || claims.aud != AUDIENCE {
        return Verdict::Invalid;
    }
    Verdict::Ok
}

fn b64(text: &str) -> String {
    URL_SAFE_NO_PAD.encode(text)
}

// Keys are made before the first input: RSA generation takes seconds on a loaded machine and
// would otherwise count against the first input that needs them (a libFuzzer timeout in
// `make fuzz-smoke`, not a finding).
fuzz_target!(
    init: {
        attacker_keys();
        fixture_keys();
    },
    |f: Forged| {
        let now = now();
        let mut header = header_members(&f);
        let mut claims = claim_members(&f, now);
        let header_dup = duplicate(&mut header, &f.header_duplicate);
        let claim_dup = duplicate(&mut claims, &f.claim_duplicate);

        let (header_part, payload_part) = (b64(&object_text(&header)), b64(&object_text(&claims)));
        let message = match &f.form {
            Form::PaddedHeader => format!("{header_part}=.{payload_part}"),
            Form::PaddedPayload => format!("{header_part}.{payload_part}="),
            _ => format!("{header_part}.{payload_part}"),
        };
        let (signature, signed_by) = sign(&f.signer, &message);
        let token = match &f.form {
            Form::ExtraSegment => format!("{message}.{signature}.{signature}"),
            Form::Raw(raw) => raw.clone(),
            _ => format!("{message}.{signature}"),
        };
        let signed = signed_by.map(|i| (i, message.as_str()));

        let before = model(&token, signed, now);
        let result = fixture_verifier()
            .verify::<AccessClaims>(&token)
            .map(|v| v.claims);
        let after = model(&token, signed, authstack_fuzz::now());
        let verdict = verdict_of(&result);
        // A boundary crossed while verifying would make either answer right.
        if before == after {
            assert_eq!(verdict, before, "token {token}\nresult {result:?}");
        }

        if let Ok(verified) = &result {
            let signed_claims: AccessClaims =
                serde_json::from_value(Value::Object(last_wins(&claims))).expect("verified claims");
            assert_eq!(verified, &signed_claims);
            if let Some(name) = claim_dup {
                assert!(
                    name.starts_with("x-"),
                    "a token with a duplicated `{name}` claim verified: {token}"
                );
            }
            if let Some(name) = header_dup {
                // What the header means if the last duplicate wins must verify on its own.
                let effective = b64(&Value::Object(last_wins(&header)).to_string());
                let message = format!("{effective}.{payload_part}");
                let (signature, signed_by) = sign(&f.signer, &message);
                let rebuilt = format!("{message}.{signature}");
                let expected = model(&rebuilt, signed_by.map(|i| (i, message.as_str())), now);
                assert_eq!(
                    expected,
                    Verdict::Ok,
                    "a duplicated header member `{name}` verified, but its last value does not: {token}"
                );
            }
        }
    }
);
