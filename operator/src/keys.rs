//! Signing keys: the key ring Secret, the public JWKS ConfigMap, rotation planning and the key
//! part of the status. Pure; the controller reads and writes the Secret.
//!
//! The ring lives only in the Secret `<name>-signing-keys` (`keyring.json`), so rotation state
//! survives operator restarts. [`authstack_keyring::rotation::reconcile`] advances it.

use std::collections::BTreeMap;

use authstack_keyring::rotation::{self, RotationAction, RotationPolicy, RotationRequest};
use authstack_keyring::{KEYRING_FILE, KeyMaterial, KeyRing, KeyState, KeyringError};
use chrono::{DateTime, Utc};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::builders::meta::{Component, object_meta};
use crate::crd::{EmergencyActivation, KeysStatus};
use crate::settings::Settings;

/// Data key of the public JWKS in the ConfigMap.
pub const JWKS_FILE: &str = authstack_keyring::ring::JWKS_FILE;
/// Clock skew allowed on top of the access-token lifetime before a retired key is removed.
pub const CLOCK_SKEW: std::time::Duration = std::time::Duration::from_secs(30);

/// Key ring problems that need a human.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// The Secret holds a `keyring.json` that does not parse or validate. The operator never
    /// overwrites it (that would drop keys that verify live tokens).
    #[error("Secret {secret} holds an invalid key ring ({source}); fix or delete it")]
    InvalidRing {
        /// The Secret.
        secret: String,
        /// Why.
        #[source]
        source: KeyringError,
    },
    /// Key generation or a rotation step failed.
    #[error("key rotation failed: {0}")]
    Rotation(#[from] KeyringError),
}

/// The rotation policy of a stack.
pub fn policy(s: &Settings) -> RotationPolicy {
    let chrono =
        |d: std::time::Duration| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
    RotationPolicy {
        rotation_interval: s.keys.rotation_interval.map(chrono),
        propagation_delay: chrono(s.keys.propagation_delay),
        token_lifetime: chrono(s.tokens.access_ttl + CLOCK_SKEW),
    }
}

/// What the spec asks of the ring.
pub fn request(s: &Settings) -> RotationRequest {
    RotationRequest {
        algorithm: s.keys.algorithm,
        rotation_counter: s.keys.rotation_counter,
        revoked_kids: s.keys.revoked_kids.clone(),
    }
}

/// The ring after this reconcile.
#[derive(Debug)]
pub struct KeyPlan {
    /// The ring to store and report.
    pub ring: KeyRing,
    /// What changed.
    pub actions: Vec<RotationAction>,
    /// Whether the Secret must be written.
    pub changed: bool,
    /// When the next rotation step is due.
    pub next_deadline: Option<DateTime<Utc>>,
}

/// Reads the ring from the existing Secret (empty when absent) and advances it to `now`.
pub fn plan(
    existing: Option<&Secret>,
    s: &Settings,
    now: DateTime<Utc>,
    generate: &mut dyn FnMut(
        authstack_keyring::SigningAlgorithm,
    ) -> Result<KeyMaterial, KeyringError>,
) -> Result<KeyPlan, KeysError> {
    let stored = existing
        .and_then(|secret| secret.data.as_ref())
        .and_then(|data| data.get(KEYRING_FILE));
    let mut ring = match stored {
        Some(bytes) => KeyRing::from_json(&bytes.0).map_err(|source| KeysError::InvalidRing {
            secret: s.names.signing_keys(),
            source,
        })?,
        None => KeyRing::empty(s.keys.algorithm),
    };
    let before = ring.clone();
    let policy = policy(s);
    let actions = rotation::reconcile(&mut ring, now, &policy, &request(s), generate)?;
    let changed = ring != before || stored.is_none();
    let next_deadline = rotation::next_deadline(&ring, &policy);
    Ok(KeyPlan {
        ring,
        actions,
        changed,
        next_deadline,
    })
}

/// Secret `<name>-signing-keys` with `keyring.json` (private keys: only auth-svc mounts it).
pub fn signing_secret(s: &Settings, ring: &KeyRing) -> Secret {
    Secret {
        metadata: object_meta(&s.names, s.names.signing_keys(), Component::Keys, &s.owner),
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            KEYRING_FILE.to_owned(),
            ByteString(ring.to_json()),
        )])),
        ..Secret::default()
    }
}

/// ConfigMap `<name>-jwks` with the public `jwks.json`, for verifiers outside the stack.
pub fn jwks_config_map(s: &Settings, ring: &KeyRing) -> ConfigMap {
    ConfigMap {
        metadata: object_meta(&s.names, s.names.jwks(), Component::Keys, &s.owner),
        data: Some(BTreeMap::from([(
            JWKS_FILE.to_owned(),
            serde_json::to_string_pretty(&ring.jwks()).unwrap_or_default(),
        )])),
        ..ConfigMap::default()
    }
}

/// Converts a chrono time to a Kubernetes `Time` (whole seconds: what `Time` serializes, so a
/// status read back compares equal to the one computed).
pub fn to_time(t: DateTime<Utc>) -> Option<Time> {
    Timestamp::from_second(t.timestamp()).ok().map(Time)
}

/// The key part of the AuthStack status.
pub fn status(ring: &KeyRing, policy: &RotationPolicy) -> KeysStatus {
    KeysStatus {
        algorithm: ring.algorithm.as_str().to_owned(),
        active_kid: ring.active().map(|k| k.kid.clone()),
        pending_kids: ring.kids(KeyState::Pending),
        retiring_kids: ring.kids(KeyState::Retiring),
        generation: i64::try_from(ring.generation).unwrap_or(i64::MAX),
        last_rotation_time: ring.rotation.last_rotation_at.and_then(to_time),
        next_rotation_time: rotation::next_scheduled_rotation(ring, policy).and_then(to_time),
        observed_rotation_counter: i64::try_from(ring.rotation.observed_rotation_counter)
            .unwrap_or(i64::MAX),
        emergency_activation: ring
            .rotation
            .unpropagated_activation
            .as_ref()
            .and_then(|u| {
                Some(EmergencyActivation {
                    kid: u.kid.clone(),
                    time: to_time(u.at)?,
                })
            }),
    }
}

/// The metric label of a rotation step.
pub fn action_label(action: &RotationAction) -> &'static str {
    match action {
        RotationAction::Bootstrapped { .. } => "bootstrapped",
        RotationAction::RotationStarted { .. } => "rotation_started",
        RotationAction::Promoted { .. } => "promoted",
        RotationAction::Removed { .. } => "removed",
        RotationAction::Revoked { .. } => "revoked",
        RotationAction::EmergencyActivated { .. } => "emergency_activated",
        RotationAction::PendingReplaced { .. } => "pending_replaced",
    }
}

/// A Kubernetes Event for a rotation step: `(reason, warning, note)`.
pub fn event_for(action: &RotationAction) -> (&'static str, bool, String) {
    match action {
        RotationAction::Bootstrapped { kid } => (
            "KeyRotated",
            false,
            format!("Created the first signing key {kid}"),
        ),
        RotationAction::RotationStarted { kid, reason } => (
            "KeyRotated",
            false,
            format!(
                "Rotation started ({reason}): key {kid} published, pending until the propagation delay has passed"
            ),
        ),
        RotationAction::Promoted { kid, previous } => (
            "KeyRotated",
            false,
            match previous {
                Some(p) => format!("Key {kid} now signs tokens; {p} is retiring"),
                None => format!("Key {kid} now signs tokens"),
            },
        ),
        RotationAction::Removed { kid } => (
            "KeyRemoved",
            false,
            format!("Retired key {kid} removed: every token it signed has expired"),
        ),
        RotationAction::Revoked { kid, was_active } => (
            "KeyRevoked",
            true,
            if *was_active {
                format!(
                    "Signing key {kid} revoked and removed at once; tokens it signed no longer verify"
                )
            } else {
                format!("Key {kid} revoked and removed at once")
            },
        ),
        RotationAction::EmergencyActivated { kid } => (
            "KeyRotated",
            true,
            format!(
                "Key {kid} signs before the propagation delay (emergency after a revocation); some verifiers may reject its tokens briefly"
            ),
        ),
        RotationAction::PendingReplaced { kid } => (
            "KeyRotated",
            false,
            format!("Pending key {kid} dropped after an algorithm change"),
        ),
    }
}

/// Longest `action` of an events.k8s.io Event (the API server refuses longer ones).
const EVENT_ACTION_MAX: usize = 128;

/// The Event `action` of a rotation step: the step and the key it concerns. kube-rs' event
/// recorder merges events of one object with the same type, reason and action within six
/// minutes into a series that keeps the first note, so every step of every key needs an action
/// of its own (with a single action, a promotion two minutes after its rotation started, or a
/// scheduled rotation soon after a requested one, never showed).
pub fn event_action(action: &RotationAction) -> String {
    let (step, kid) = match action {
        RotationAction::Bootstrapped { kid } => ("Bootstrap", kid),
        RotationAction::RotationStarted { kid, .. } => ("StartRotation", kid),
        RotationAction::Promoted { kid, .. } => ("Promote", kid),
        RotationAction::Removed { kid } => ("Remove", kid),
        RotationAction::Revoked { kid, .. } => ("Revoke", kid),
        RotationAction::EmergencyActivated { kid } => ("ActivateEarly", kid),
        RotationAction::PendingReplaced { kid } => ("DropPending", kid),
    };
    format!("{step} {kid}")
        .chars()
        .take(EVENT_ACTION_MAX)
        .collect()
}

#[cfg(test)]
mod tests {
    use authstack_keyring::material::generate;
    use chrono::Duration;

    use super::*;
    use crate::builders::test_support::{settings, settings_with};

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn stored(s: &Settings, ring: &KeyRing) -> Secret {
        signing_secret(s, ring)
    }

    #[test]
    fn first_plan_bootstraps_an_active_key() {
        let s = settings();
        let p = plan(None, &s, t0(), &mut generate).unwrap();
        assert!(p.changed);
        assert_eq!(p.ring.keys.len(), 1);
        assert!(matches!(
            p.actions[..],
            [RotationAction::Bootstrapped { .. }]
        ));
        assert_eq!(p.next_deadline, Some(t0() + Duration::hours(720)));
        let st = status(&p.ring, &policy(&s));
        assert_eq!(st.active_kid.as_deref(), Some(p.ring.keys[0].kid.as_str()));
        assert_eq!(st.algorithm, "EdDSA");
        assert_eq!(st.generation, 1);
        assert!(st.next_rotation_time.is_some());
    }

    #[test]
    fn unchanged_ring_is_not_rewritten() {
        let s = settings();
        let p = plan(None, &s, t0(), &mut generate).unwrap();
        let secret = stored(&s, &p.ring);
        let again = plan(
            Some(&secret),
            &s,
            t0() + Duration::minutes(1),
            &mut generate,
        )
        .unwrap();
        assert!(!again.changed);
        assert!(again.actions.is_empty());
        assert_eq!(again.ring, p.ring);
    }

    #[test]
    fn counter_bump_rotates_through_pending_to_active() {
        let s = settings();
        let first = plan(None, &s, t0(), &mut generate).unwrap();
        let old_kid = first.ring.keys[0].kid.clone();
        let bumped = settings_with(|st| st.spec.keys.rotation_counter = 1);
        let p = plan(Some(&stored(&s, &first.ring)), &bumped, t0(), &mut generate).unwrap();
        assert!(p.changed);
        let pending = p.ring.kids(KeyState::Pending);
        assert_eq!(pending.len(), 1);
        assert_eq!(p.next_deadline, Some(t0() + Duration::minutes(2)));
        let st = status(&p.ring, &policy(&bumped));
        assert_eq!(st.pending_kids, pending);
        assert_eq!(st.observed_rotation_counter, 1);
        let jwks = jwks_config_map(&bumped, &p.ring);
        assert!(jwks.data.as_ref().unwrap()[JWKS_FILE].contains(&pending[0]));

        let later = t0() + Duration::minutes(2);
        let q = plan(Some(&stored(&s, &p.ring)), &bumped, later, &mut generate).unwrap();
        assert_eq!(q.ring.active().unwrap().kid, pending[0]);
        assert_eq!(q.ring.kids(KeyState::Retiring), [old_kid]);
        let (reason, warning, note) = event_for(&q.actions[0]);
        assert_eq!((reason, warning), ("KeyRotated", false));
        assert!(note.contains(&pending[0]), "{note}");
        // The start and the promotion, two minutes apart, are two events, not one series.
        assert_eq!(event_for(&p.actions[0]).0, reason);
        assert_eq!(
            event_action(&p.actions[0]),
            format!("StartRotation {}", pending[0])
        );
        assert_eq!(
            event_action(&q.actions[0]),
            format!("Promote {}", pending[0])
        );
        // Retiring key removed after propagation delay + access TTL + skew.
        let removal = later + Duration::minutes(2) + Duration::minutes(15) + Duration::seconds(30);
        assert_eq!(q.next_deadline, Some(removal));
    }

    #[test]
    fn revocation_removes_the_key_at_once() {
        let s = settings();
        let first = plan(None, &s, t0(), &mut generate).unwrap();
        let kid = first.ring.keys[0].kid.clone();
        let revoking = settings_with(|st| st.spec.keys.revoked_kids = vec![kid.clone()]);
        let p = plan(
            Some(&stored(&s, &first.ring)),
            &revoking,
            t0(),
            &mut generate,
        )
        .unwrap();
        assert!(!p.ring.contains(&kid));
        let (reason, warning, _) = event_for(&p.actions[0]);
        assert_eq!((reason, warning), ("KeyRevoked", true));
        let st = status(&p.ring, &policy(&revoking));
        assert_eq!(
            st.emergency_activation.as_ref().map(|e| e.kid.as_str()),
            st.active_kid.as_deref()
        );
    }

    #[test]
    fn invalid_stored_ring_is_an_error_not_an_overwrite() {
        let s = settings();
        let mut secret = signing_secret(&s, &KeyRing::empty(Default::default()));
        secret
            .data
            .as_mut()
            .unwrap()
            .insert(KEYRING_FILE.into(), ByteString(b"{garbage".to_vec()));
        let err = plan(Some(&secret), &s, t0(), &mut generate).unwrap_err();
        assert!(err.to_string().contains("demo-signing-keys"), "{err}");
    }

    /// A corrupt key ring's content never reaches the error that becomes the Event note and
    /// the `Degraded` message.
    #[test]
    fn invalid_ring_errors_never_echo_the_secret() {
        const SECRET: &str = "-----BEGIN PRIVATE KEY-----MC4CAQAwBQYDK2VwBCIEIRecognisable";
        let s = settings();
        let p = plan(None, &s, t0(), &mut generate).unwrap();
        let mut doc: serde_json::Value = serde_json::from_slice(&p.ring.to_json()).unwrap();
        doc["keys"][0]["state"] = SECRET.into();
        let mut secret = signing_secret(&s, &p.ring);
        secret.data.as_mut().unwrap().insert(
            KEYRING_FILE.into(),
            ByteString(serde_json::to_vec(&doc).unwrap()),
        );
        let err = plan(Some(&secret), &s, t0(), &mut generate).unwrap_err();
        let reported = crate::Error::from(crate::controller::build::BuildError::from(err));
        let text = format!("{reported} {reported:?}");
        assert!(text.contains("demo-signing-keys"), "{text}");
        assert!(!text.contains("Recognisable"), "{text}");
        assert_eq!(reported.reason(), "KeyRingInvalid");
    }

    #[test]
    fn policy_uses_the_access_ttl_plus_skew() {
        let p = policy(&settings_with(|st| {
            st.spec.keys.rotation_interval = "0s".into()
        }));
        assert_eq!(p.rotation_interval, None);
        assert_eq!(p.token_lifetime, Duration::seconds(930));
        assert_eq!(p.propagation_delay, Duration::seconds(120));
    }

    #[test]
    fn status_round_trips_through_json() {
        // Times are whole seconds, so a status read back equals the one computed (no
        // needless status writes).
        let s = settings();
        let p = plan(None, &s, t0() + Duration::milliseconds(1234), &mut generate).unwrap();
        let st = status(&p.ring, &policy(&s));
        let back: KeysStatus = serde_json::from_value(serde_json::to_value(&st).unwrap()).unwrap();
        assert_eq!(back, st);
    }

    #[test]
    fn times_convert() {
        let t = to_time(t0()).unwrap();
        assert_eq!(t.0.as_second(), 1_800_000_000);
    }
}
