//! The key ring as stored in the signing Secret under [`KEYRING_FILE`].

use std::collections::HashSet;

use authstack_protocol::model::{KeySet, PublicJwk};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{KeyMaterial, KeyringError, SigningAlgorithm};

/// The Secret data key (and file name in the mounted directory) holding the private ring.
pub const KEYRING_FILE: &str = "keyring.json";
/// The data key holding the public JWKS (ConfigMap for outside verifiers).
pub const JWKS_FILE: &str = "jwks.json";
/// Current format of `keyring.json`.
pub const FORMAT_VERSION: u32 = 1;
/// The highest ring generation a valid ring may carry: 2^53 - 1, exact in every JSON parser,
/// and far enough below `u64::MAX` that incrementing it can never overflow.
pub const MAX_GENERATION: u64 = (1 << 53) - 1;

/// Where a key is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// Published for verification, not yet signing (waiting out the propagation delay).
    Pending,
    /// The one key that signs new tokens.
    Active,
    /// No longer signing; verifies tokens it signed until they have all expired.
    Retiring,
}

/// One key of the ring, private half included.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingKey {
    /// Key id (also the JWT `kid` header).
    pub kid: String,
    /// The algorithm this key is bound to.
    pub algorithm: SigningAlgorithm,
    /// Current state.
    pub state: KeyState,
    /// When the key was created and first published.
    pub created_at: DateTime<Utc>,
    /// When it became active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activated_at: Option<DateTime<Utc>>,
    /// When it stopped signing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<DateTime<Utc>>,
    /// When a retiring key may be removed (every token it signed has expired).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove_after: Option<DateTime<Utc>>,
    /// The private key (PEM).
    pub private_key_pem: String,
    /// The public key (JWK).
    pub public_jwk: PublicJwk,
}

impl std::fmt::Debug for RingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("state", &self.state)
            .field("created_at", &self.created_at)
            .field("activated_at", &self.activated_at)
            .field("remove_after", &self.remove_after)
            .finish_non_exhaustive()
    }
}

impl RingKey {
    /// A ring entry for freshly generated material.
    pub fn new(material: KeyMaterial, state: KeyState, now: DateTime<Utc>) -> Self {
        RingKey {
            kid: material.kid,
            algorithm: material.algorithm,
            state,
            created_at: now,
            activated_at: (state == KeyState::Active).then_some(now),
            retired_at: None,
            remove_after: None,
            private_key_pem: material.private_key_pem,
            public_jwk: material.public_jwk,
        }
    }
}

/// A key that started signing before the propagation delay had passed (only after an
/// emergency revocation of the previous active key). Some verifiers may reject its tokens
/// until the ring reaches them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnpropagatedActivation {
    /// The key.
    pub kid: String,
    /// When it was activated.
    pub at: DateTime<Utc>,
}

/// Rotation bookkeeping, kept with the ring so it survives operator restarts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationRecord {
    /// When the last rotation began (a pending key was created), or the ring was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation_at: Option<DateTime<Utc>>,
    /// The manual rotation counter of the spec this ring has acted on.
    #[serde(default)]
    pub observed_rotation_counter: u64,
    /// Kids revoked by the spec (most recent last, bounded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revoked_kids: Vec<String>,
    /// Set while an emergency-activated key has not yet had the propagation delay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unpropagated_activation: Option<UnpropagatedActivation>,
}

/// The whole key ring.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRing {
    /// Format version of this document.
    pub format: u32,
    /// Incremented on every change; verifiers keep the highest generation they have seen.
    pub generation: u64,
    /// The algorithm new keys are generated for.
    pub algorithm: SigningAlgorithm,
    /// The keys, oldest first.
    pub keys: Vec<RingKey>,
    /// Rotation bookkeeping.
    #[serde(default)]
    pub rotation: RotationRecord,
}

impl KeyRing {
    /// An empty ring (no key yet); [`crate::rotation::reconcile`] bootstraps it.
    pub fn empty(algorithm: SigningAlgorithm) -> Self {
        KeyRing {
            format: FORMAT_VERSION,
            generation: 0,
            algorithm,
            keys: Vec::new(),
            rotation: RotationRecord::default(),
        }
    }

    /// A ring with one active key, for development and tests.
    pub fn with_active_key(material: KeyMaterial, now: DateTime<Utc>) -> Self {
        let algorithm = material.algorithm;
        KeyRing {
            format: FORMAT_VERSION,
            generation: 1,
            algorithm,
            keys: vec![RingKey::new(material, KeyState::Active, now)],
            rotation: RotationRecord {
                last_rotation_at: Some(now),
                ..RotationRecord::default()
            },
        }
    }

    /// Parses and validates `keyring.json`.
    pub fn from_json(bytes: &[u8]) -> Result<Self, KeyringError> {
        let ring: KeyRing = serde_json::from_slice(bytes).map_err(|e| {
            // Never serde's own message: it quotes the offending value, and the document holds
            // private keys. Where and what kind of problem is enough to find it.
            let kind = match e.classify() {
                serde_json::error::Category::Io => "unreadable",
                serde_json::error::Category::Syntax => "malformed JSON",
                serde_json::error::Category::Data => "a field has the wrong type or value",
                serde_json::error::Category::Eof => "truncated",
            };
            KeyringError::InvalidRing(format!(
                "not a key ring document: {kind} at line {} column {}",
                e.line(),
                e.column()
            ))
        })?;
        ring.validate()?;
        Ok(ring)
    }

    /// Serializes the ring (pretty, stable field order).
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain data with string keys cannot fail.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Checks the invariants every consumer relies on.
    pub fn validate(&self) -> Result<(), KeyringError> {
        if self.format != FORMAT_VERSION {
            return Err(KeyringError::InvalidRing(format!(
                "unsupported format {} (expected {FORMAT_VERSION})",
                self.format
            )));
        }
        if self.generation > MAX_GENERATION {
            return Err(KeyringError::InvalidRing(format!(
                "generation above {MAX_GENERATION}"
            )));
        }
        let active = self
            .keys
            .iter()
            .filter(|k| k.state == KeyState::Active)
            .count();
        if active != 1 {
            return Err(KeyringError::InvalidRing(format!(
                "expected exactly one active key, found {active}"
            )));
        }
        // Keys are named by position: a corrupt document's kid may be anything, even a secret.
        let mut seen = HashSet::new();
        for (i, key) in self.keys.iter().enumerate() {
            if !seen.insert(key.kid.as_str()) {
                return Err(KeyringError::InvalidRing(format!(
                    "keys[{i}] repeats the kid of an earlier key"
                )));
            }
            if key.public_jwk.kid != key.kid || key.public_jwk.alg != key.algorithm.as_str() {
                return Err(KeyringError::InvalidRing(format!(
                    "keys[{i}] has a public JWK that does not match it"
                )));
            }
        }
        Ok(())
    }

    /// The signing key.
    pub fn active(&self) -> Option<&RingKey> {
        self.keys.iter().find(|k| k.state == KeyState::Active)
    }

    /// Kids in a given state, oldest first.
    pub fn kids(&self, state: KeyState) -> Vec<String> {
        self.keys
            .iter()
            .filter(|k| k.state == state)
            .map(|k| k.kid.clone())
            .collect()
    }

    /// Whether the ring holds `kid`.
    pub fn contains(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid == kid)
    }

    /// The public verification set: pending, active and retiring keys.
    pub fn key_set(&self) -> KeySet {
        KeySet {
            generation: self.generation,
            algorithm: self.algorithm.as_str().to_owned(),
            active_kid: self.active().map(|k| k.kid.clone()).unwrap_or_default(),
            keys: self.keys.iter().map(|k| k.public_jwk.clone()).collect(),
        }
    }

    /// The RFC 7517 JWKS document (`{"keys": [...]}`).
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": self.keys.iter().map(|k| &k.public_jwk).collect::<Vec<_>>() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::material::generate;

    #[test]
    fn ring_round_trips_and_validates() {
        let ring = KeyRing::with_active_key(generate(SigningAlgorithm::EdDSA).unwrap(), Utc::now());
        let back = KeyRing::from_json(&ring.to_json()).unwrap();
        assert_eq!(back, ring);
        assert_eq!(back.key_set().active_kid, ring.keys[0].kid);
        assert_eq!(back.jwks()["keys"][0]["kid"], ring.keys[0].kid.as_str());
    }

    #[test]
    fn rings_without_exactly_one_active_key_are_rejected() {
        let mut ring =
            KeyRing::with_active_key(generate(SigningAlgorithm::EdDSA).unwrap(), Utc::now());
        ring.keys[0].state = KeyState::Retiring;
        let err = KeyRing::from_json(&ring.to_json()).unwrap_err();
        assert!(err.to_string().contains("exactly one active"), "{err}");
        assert!(KeyRing::from_json(b"{not json").is_err());
    }

    /// What a corrupt `keyring.json` holds must never reach an error message (they end up in
    /// logs, Kubernetes Events and the AuthStack status).
    #[test]
    fn errors_never_echo_the_document() {
        const SECRET: &str = "MC4CAQAwBQYDK2VwBCIEIPrivateLookingValue0123456789";
        let ring = KeyRing::with_active_key(generate(SigningAlgorithm::EdDSA).unwrap(), Utc::now());
        let good: serde_json::Value = serde_json::from_slice(&ring.to_json()).unwrap();
        let edit = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut v = good.clone();
            f(&mut v);
            serde_json::to_vec(&v).unwrap()
        };
        let truncated = {
            let mut v = good.clone();
            v["keys"][0]["private_key_pem"] = SECRET.into();
            let text = serde_json::to_string(&v).unwrap();
            let end = text.find(SECRET).unwrap() + SECRET.len() / 2;
            text.as_bytes()[..end].to_vec()
        };
        let documents = [
            edit(&|v| v["format"] = SECRET.into()),
            edit(&|v| v["keys"][0]["state"] = SECRET.into()),
            edit(&|v| v["keys"][0]["created_at"] = SECRET.into()),
            edit(&|v| v["algorithm"] = SECRET.into()),
            edit(&|v| {
                v["keys"][0]["kid"] = SECRET.into();
                v["keys"][0]["public_jwk"]["kid"] = SECRET.into();
                let twin = v["keys"][0].clone();
                v["keys"].as_array_mut().unwrap().push(twin);
            }),
            edit(&|v| v["keys"][0]["kid"] = SECRET.into()),
            truncated,
            format!("{{\"{SECRET}").into_bytes(),
        ];
        for doc in documents {
            let err = KeyRing::from_json(&doc).unwrap_err();
            let text = format!("{err} {err:?}");
            assert!(!text.contains(SECRET), "{text}");
            assert!(!text.contains("PrivateLooking"), "{text}");
        }
    }

    #[test]
    fn rings_whose_generation_cannot_advance_are_rejected() {
        // Found with the keyring fuzz target (fuzz/seeds/keyring/generation-u64-max): a ring at
        // u64::MAX parsed, and the next rotation step overflowed (a panic in debug builds, a
        // wrap to 0 in release, which gateways would take for an older ring).
        let mut ring =
            KeyRing::with_active_key(generate(SigningAlgorithm::EdDSA).unwrap(), Utc::now());
        ring.generation = u64::MAX;
        assert!(KeyRing::from_json(&ring.to_json()).is_err());
        ring.generation = MAX_GENERATION;
        assert!(KeyRing::from_json(&ring.to_json()).is_ok());
        ring.generation = MAX_GENERATION + 1;
        let err = KeyRing::from_json(&ring.to_json()).unwrap_err();
        assert!(err.to_string().contains("generation"), "{err}");
    }

    #[test]
    fn debug_output_hides_private_keys() {
        let ring = KeyRing::with_active_key(generate(SigningAlgorithm::EdDSA).unwrap(), Utc::now());
        assert!(!format!("{ring:?}").contains("PRIVATE KEY"));
    }
}
