//! `keyring.json` as its consumers read it: `KeyRing::from_json` (the operator reading the
//! signing Secret), `watch::load` from a directory in kubelet's `..data` layout (auth-svc), the
//! signer for the active key, the public key set, and one rotation step of the operator.
//!
//! Properties:
//! - no panic anywhere on that path;
//! - an accepted ring satisfies the invariants (`validate`), and decode ∘ encode is the identity;
//! - the mounted-directory loader agrees with `from_json` on the same bytes;
//! - the key set names the active key and every key; a signer exists only for an active key;
//! - a rotation step keeps the invariants, never lowers the generation and raises it on change;
//! - no error quotes the document (a private key, or any string of it that holds a character
//!   no fixed text has).
#![no_main]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use authstack_fuzz::{Secrets, assert_no_echo, echo_candidates, fixture_ring};
use authstack_keyring::jwt::TokenSigner;
use authstack_keyring::layout::write_atomic;
use authstack_keyring::rotation::{self, RotationPolicy, RotationRequest};
use authstack_keyring::{KEYRING_FILE, KeyMaterial, KeyRing, KeyState, KeyringError, watch};
use chrono::{Duration, TimeZone, Utc};
use libfuzzer_sys::fuzz_target;

/// A directory in kubelet's layout, private to this process.
fn mount_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("authstack-fuzz-keyring-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    })
}

/// Every 64th input also goes through the mounted directory (file system work is slow).
fn through_directory(data: &[u8]) {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    if !COUNT.fetch_add(1, Ordering::Relaxed).is_multiple_of(64) {
        return;
    }
    let dir = mount_dir();
    let files = BTreeMap::from([(KEYRING_FILE.to_owned(), data.to_vec())]);
    write_atomic(dir, &files).expect("writing the mounted directory");
    let direct = KeyRing::from_json(data);
    match (watch::load(dir), direct) {
        (Ok((ring, bytes)), Ok(same)) => {
            assert_eq!(ring, same);
            assert_eq!(bytes, data);
        }
        (Err(KeyringError::InvalidRing(a)), Err(KeyringError::InvalidRing(b))) => assert_eq!(a, b),
        (loaded, direct) => panic!("directory {loaded:?} vs bytes {direct:?}"),
    }
}

/// Error texts end up in logs, Kubernetes Events and the AuthStack status: they never quote the
/// document (which holds private keys).
fn assert_no_echo_of(message: &str, data: &[u8]) {
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let mut quoted = echo_candidates(&doc, Secrets::Everything);
    if let Some(pem) = doc["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|k| k["private_key_pem"].as_str())
    {
        quoted.push(pem.to_owned());
    }
    assert_no_echo(message, &quoted, "a keyring.json error");
}

/// Key material for rotations: fixture keys under kids the ring does not hold.
fn generator(
    ring: &KeyRing,
) -> impl FnMut(authstack_keyring::SigningAlgorithm) -> Result<KeyMaterial, KeyringError> {
    let taken: Vec<String> = ring.keys.iter().map(|k| k.kid.clone()).collect();
    let mut serial = 0u32;
    move |algorithm| {
        let key = fixture_ring()
            .keys
            .iter()
            .find(|k| k.algorithm == algorithm)
            .expect("the fixture has a key of every algorithm");
        let kid = loop {
            serial += 1;
            let kid = format!("rotated-{serial}");
            if !taken.contains(&kid) {
                break kid;
            }
        };
        let mut public_jwk = key.public_jwk.clone();
        public_jwk.kid = kid.clone();
        Ok(KeyMaterial {
            kid,
            algorithm,
            private_key_pem: key.private_key_pem.clone(),
            public_jwk,
        })
    }
}

fn rotate(ring: &KeyRing) {
    let policy = RotationPolicy {
        rotation_interval: Some(Duration::hours(720)),
        propagation_delay: Duration::seconds(60),
        token_lifetime: Duration::seconds(930),
    };
    let request = RotationRequest {
        algorithm: ring.algorithm,
        rotation_counter: ring.rotation.observed_rotation_counter,
        revoked_kids: Vec::new(),
    };
    let now = Utc
        .with_ymd_and_hms(2030, 6, 1, 0, 0, 0)
        .single()
        .expect("a valid date");
    let mut next = ring.clone();
    let mut generate = generator(ring);
    let actions = rotation::reconcile(&mut next, now, &policy, &request, &mut generate)
        .expect("fixture material never fails");
    next.validate()
        .expect("a rotation step keeps the ring valid");
    assert!(next.generation >= ring.generation);
    if !actions.is_empty() {
        assert!(next.generation > ring.generation, "{actions:?}");
    }
    let _ = rotation::next_deadline(&next, &policy);
}

fuzz_target!(|data: &[u8]| {
    through_directory(data);
    let ring = match KeyRing::from_json(data) {
        Ok(ring) => ring,
        Err(e) => {
            assert!(matches!(e, KeyringError::InvalidRing(_)), "{e:?}");
            assert_no_echo_of(&format!("{e} {e:?}"), data);
            return;
        }
    };
    ring.validate().expect("an accepted ring is valid");
    assert_eq!(
        KeyRing::from_json(&ring.to_json()).expect("re-encoded ring parses"),
        ring
    );

    let active = ring.active().expect("a valid ring has an active key");
    let set = ring.key_set();
    assert_eq!(set.active_kid, active.kid);
    assert_eq!(set.generation, ring.generation);
    assert_eq!(set.keys.len(), ring.keys.len());
    assert_eq!(ring.kids(KeyState::Active), vec![active.kid.clone()]);
    assert_eq!(
        ring.jwks()["keys"].as_array().map(Vec::len),
        Some(ring.keys.len())
    );
    if let Ok(signer) = TokenSigner::for_active_key(&ring) {
        assert_eq!(signer.kid(), active.kid);
    }

    rotate(&ring);
});
