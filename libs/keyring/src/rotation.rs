//! The rotation state machine: pure and deterministic, time is an input.
//!
//! A key moves pending -> active -> retiring -> removed:
//! - a rotation (scheduled, or requested by bumping the spec's counter) creates a **pending**
//!   key, published for verification only;
//! - once it has been published for the propagation delay (kubelet may take a minute or more
//!   to update a mounted Secret) it becomes **active**, and the previous active key **retiring**;
//! - a retiring key is removed once every token it may have signed has expired: the
//!   propagation delay (replicas that still sign with it) plus the token lifetime.
//!
//! An emergency revocation removes keys at once. If the active key is revoked, a pending key is
//! promoted (or a new key created) immediately; [`crate::ring::RotationRecord`] then records an
//! [`crate::ring::UnpropagatedActivation`] until the propagation delay has passed.

use chrono::{DateTime, Duration, Utc};

use crate::ring::{KeyRing, KeyState, RingKey, UnpropagatedActivation};
use crate::{KeyMaterial, KeyringError, SigningAlgorithm};

/// How many revoked kids the ring remembers.
const REVOKED_HISTORY: usize = 32;

/// Timing of the rotation protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RotationPolicy {
    /// Start a rotation this long after the previous one; `None` rotates only on request.
    pub rotation_interval: Option<Duration>,
    /// How long a new key is published before it signs (Secret propagation to every pod).
    pub propagation_delay: Duration,
    /// Access-token lifetime plus allowed clock skew.
    pub token_lifetime: Duration,
}

/// What the AuthStack spec asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RotationRequest {
    /// The algorithm for new keys.
    pub algorithm: SigningAlgorithm,
    /// Manual rotation counter; a value above the ring's observed counter starts a rotation.
    pub rotation_counter: u64,
    /// Kids to remove at once.
    pub revoked_kids: Vec<String>,
}

/// One change made by [`reconcile`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RotationAction {
    /// The first key of an empty ring, active at once.
    Bootstrapped {
        /// The new key.
        kid: String,
    },
    /// A rotation began: a new pending key.
    RotationStarted {
        /// The new pending key.
        kid: String,
        /// Why: `scheduled`, `manual` or `algorithm`.
        reason: &'static str,
    },
    /// A pending key became active; the previous one started retiring.
    Promoted {
        /// The new active key.
        kid: String,
        /// The key that stopped signing.
        previous: Option<String>,
    },
    /// A retiring key was removed after its tokens expired.
    Removed {
        /// The removed key.
        kid: String,
    },
    /// A key was revoked and removed at once.
    Revoked {
        /// The revoked key.
        kid: String,
        /// Whether it was the signing key.
        was_active: bool,
    },
    /// After revoking the active key, a key started signing before the propagation delay.
    EmergencyActivated {
        /// The new active key.
        kid: String,
    },
    /// A pending key of the old algorithm was dropped after an algorithm change.
    PendingReplaced {
        /// The dropped key.
        kid: String,
    },
}

/// Advances `ring` to what `request` and `policy` demand at `now`; returns what changed.
///
/// `generate` creates key material (injected so tests are deterministic). The ring's
/// generation is incremented when anything changed.
pub fn reconcile(
    ring: &mut KeyRing,
    now: DateTime<Utc>,
    policy: &RotationPolicy,
    request: &RotationRequest,
    generate: &mut dyn FnMut(SigningAlgorithm) -> Result<KeyMaterial, KeyringError>,
) -> Result<Vec<RotationAction>, KeyringError> {
    let mut actions = Vec::new();
    revoke(ring, now, policy, request, generate, &mut actions)?;

    if ring.active().is_none() {
        let material = generate(request.algorithm)?;
        let kid = material.kid.clone();
        ring.algorithm = request.algorithm;
        ring.keys
            .push(RingKey::new(material, KeyState::Active, now));
        ring.rotation.last_rotation_at = Some(now);
        ring.rotation.observed_rotation_counter = request.rotation_counter;
        actions.push(RotationAction::Bootstrapped { kid });
    }

    promote(ring, now, policy, &mut actions);

    let before = ring.keys.len();
    ring.keys.retain(|k| {
        let expired = k.state == KeyState::Retiring && k.remove_after.is_some_and(|t| now >= t);
        if expired {
            actions.push(RotationAction::Removed { kid: k.kid.clone() });
        }
        !expired
    });
    debug_assert!(ring.keys.len() <= before);

    if let Some(u) = &ring.rotation.unpropagated_activation
        && now >= u.at + policy.propagation_delay
    {
        ring.rotation.unpropagated_activation = None;
        // Clearing the flag is bookkeeping; it changes what the status reports.
        ring.generation += u64::from(actions.is_empty());
    }

    start_rotation(ring, now, policy, request, generate, &mut actions)?;

    if !actions.is_empty() {
        ring.generation += 1;
    }
    Ok(actions)
}

fn revoke(
    ring: &mut KeyRing,
    now: DateTime<Utc>,
    policy: &RotationPolicy,
    request: &RotationRequest,
    generate: &mut dyn FnMut(SigningAlgorithm) -> Result<KeyMaterial, KeyringError>,
    actions: &mut Vec<RotationAction>,
) -> Result<(), KeyringError> {
    let mut active_revoked = false;
    ring.keys.retain(|k| {
        let revoked = request.revoked_kids.contains(&k.kid);
        if revoked {
            active_revoked |= k.state == KeyState::Active;
            actions.push(RotationAction::Revoked {
                kid: k.kid.clone(),
                was_active: k.state == KeyState::Active,
            });
        }
        !revoked
    });
    for action in actions.iter() {
        if let RotationAction::Revoked { kid, .. } = action {
            ring.rotation.revoked_kids.push(kid.clone());
        }
    }
    let excess = ring
        .rotation
        .revoked_kids
        .len()
        .saturating_sub(REVOKED_HISTORY);
    ring.rotation.revoked_kids.drain(..excess);

    if !active_revoked {
        return Ok(());
    }
    // The signing key is gone: sign with the pending key if there is one, else a new key.
    let newest_pending = ring
        .keys
        .iter()
        .rposition(|k| k.state == KeyState::Pending && k.algorithm == request.algorithm);
    let index = match newest_pending {
        Some(i) => i,
        None => {
            let material = generate(request.algorithm)?;
            ring.keys
                .push(RingKey::new(material, KeyState::Pending, now));
            ring.keys.len() - 1
        }
    };
    let key = &mut ring.keys[index];
    key.state = KeyState::Active;
    key.activated_at = Some(now);
    if now < key.created_at + policy.propagation_delay {
        ring.rotation.unpropagated_activation = Some(UnpropagatedActivation {
            kid: key.kid.clone(),
            at: now,
        });
        actions.push(RotationAction::EmergencyActivated {
            kid: key.kid.clone(),
        });
    } else {
        actions.push(RotationAction::Promoted {
            kid: key.kid.clone(),
            previous: None,
        });
    }
    ring.algorithm = request.algorithm;
    ring.rotation.last_rotation_at = Some(now);
    Ok(())
}

fn promote(
    ring: &mut KeyRing,
    now: DateTime<Utc>,
    policy: &RotationPolicy,
    actions: &mut Vec<RotationAction>,
) {
    let ready = ring.keys.iter().rposition(|k| {
        k.state == KeyState::Pending && now >= k.created_at + policy.propagation_delay
    });
    let Some(index) = ready else { return };
    let mut previous = None;
    for key in ring.keys.iter_mut() {
        if key.state == KeyState::Active {
            key.state = KeyState::Retiring;
            key.retired_at = Some(now);
            // Replicas that have not yet seen the new ring keep signing with this key for up to
            // the propagation delay; those tokens live for the token lifetime.
            key.remove_after = Some(now + policy.propagation_delay + policy.token_lifetime);
            previous = Some(key.kid.clone());
        }
    }
    let key = &mut ring.keys[index];
    key.state = KeyState::Active;
    key.activated_at = Some(now);
    actions.push(RotationAction::Promoted {
        kid: key.kid.clone(),
        previous,
    });
}

fn start_rotation(
    ring: &mut KeyRing,
    now: DateTime<Utc>,
    policy: &RotationPolicy,
    request: &RotationRequest,
    generate: &mut dyn FnMut(SigningAlgorithm) -> Result<KeyMaterial, KeyringError>,
    actions: &mut Vec<RotationAction>,
) -> Result<(), KeyringError> {
    // A pending key of an algorithm no longer wanted never signed anything: drop it.
    ring.keys.retain(|k| {
        let stale = k.state == KeyState::Pending && k.algorithm != request.algorithm;
        if stale {
            actions.push(RotationAction::PendingReplaced { kid: k.kid.clone() });
        }
        !stale
    });
    let manual = request.rotation_counter > ring.rotation.observed_rotation_counter;
    if manual {
        ring.rotation.observed_rotation_counter = request.rotation_counter;
    }
    if ring.keys.iter().any(|k| k.state == KeyState::Pending) {
        // A rotation is already under way; it satisfies any request.
        if manual {
            ring.generation += u64::from(actions.is_empty());
        }
        return Ok(());
    }
    let algorithm_changed = ring
        .active()
        .is_some_and(|k| k.algorithm != request.algorithm);
    let scheduled = match (policy.rotation_interval, ring.rotation.last_rotation_at) {
        (Some(interval), Some(last)) => now >= last + interval,
        _ => false,
    };
    let reason = if manual {
        "manual"
    } else if algorithm_changed {
        "algorithm"
    } else if scheduled {
        "scheduled"
    } else {
        return Ok(());
    };
    let material = generate(request.algorithm)?;
    let kid = material.kid.clone();
    ring.keys
        .push(RingKey::new(material, KeyState::Pending, now));
    ring.algorithm = request.algorithm;
    ring.rotation.last_rotation_at = Some(now);
    actions.push(RotationAction::RotationStarted { kid, reason });
    Ok(())
}

/// The next moment at which [`reconcile`] has something to do, if any.
pub fn next_deadline(ring: &KeyRing, policy: &RotationPolicy) -> Option<DateTime<Utc>> {
    let mut deadlines = Vec::new();
    let pending = ring.keys.iter().filter(|k| k.state == KeyState::Pending);
    deadlines.extend(
        pending
            .clone()
            .map(|k| k.created_at + policy.propagation_delay),
    );
    deadlines.extend(ring.keys.iter().filter_map(|k| k.remove_after));
    if let Some(u) = &ring.rotation.unpropagated_activation {
        deadlines.push(u.at + policy.propagation_delay);
    }
    if pending.count() == 0
        && let (Some(interval), Some(last)) =
            (policy.rotation_interval, ring.rotation.last_rotation_at)
    {
        deadlines.push(last + interval);
    }
    deadlines.into_iter().min()
}

/// The time the next scheduled rotation begins, if the schedule is on.
pub fn next_scheduled_rotation(ring: &KeyRing, policy: &RotationPolicy) -> Option<DateTime<Utc>> {
    let interval = policy.rotation_interval?;
    let last = ring.rotation.last_rotation_at?;
    Some(last + interval)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use authstack_protocol::model::PublicJwk;
    use proptest::prelude::*;

    use super::*;

    fn fake_generator() -> impl FnMut(SigningAlgorithm) -> Result<KeyMaterial, KeyringError> {
        let mut n = 0u32;
        move |algorithm| {
            n += 1;
            let kid = format!("k{n}");
            Ok(KeyMaterial {
                kid: kid.clone(),
                algorithm,
                private_key_pem: format!("private-{n}"),
                public_jwk: PublicJwk {
                    kty: "OKP".into(),
                    kid,
                    alg: algorithm.as_str().into(),
                    use_: "sig".into(),
                    crv: Some("Ed25519".into()),
                    x: Some(format!("x{n}")),
                    y: None,
                    n: None,
                    e: None,
                },
            })
        }
    }

    fn policy(interval_secs: Option<i64>) -> RotationPolicy {
        RotationPolicy {
            rotation_interval: interval_secs.map(Duration::seconds),
            propagation_delay: Duration::seconds(60),
            token_lifetime: Duration::seconds(900 + 30),
        }
    }

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    #[test]
    fn bootstrap_creates_one_active_key_and_is_idempotent() {
        let mut ring = KeyRing::empty(SigningAlgorithm::EdDSA);
        let mut generate = fake_generator();
        let req = RotationRequest::default();
        let actions = reconcile(&mut ring, t0(), &policy(None), &req, &mut generate).unwrap();
        assert_eq!(actions, [RotationAction::Bootstrapped { kid: "k1".into() }]);
        assert_eq!(ring.generation, 1);
        ring.validate().unwrap();
        let again = reconcile(&mut ring, t0(), &policy(None), &req, &mut generate).unwrap();
        assert!(again.is_empty());
        assert_eq!(ring.generation, 1);
        assert_eq!(next_deadline(&ring, &policy(None)), None);
    }

    #[test]
    fn scheduled_rotation_walks_through_every_state() {
        let p = policy(Some(3600));
        let mut ring = KeyRing::empty(SigningAlgorithm::EdDSA);
        let mut generate = fake_generator();
        let req = RotationRequest::default();
        reconcile(&mut ring, t0(), &p, &req, &mut generate).unwrap();
        assert_eq!(
            next_deadline(&ring, &p),
            Some(t0() + Duration::seconds(3600))
        );

        let t1 = t0() + Duration::seconds(3600);
        let a = reconcile(&mut ring, t1, &p, &req, &mut generate).unwrap();
        assert_eq!(
            a,
            [RotationAction::RotationStarted {
                kid: "k2".into(),
                reason: "scheduled"
            }]
        );
        assert_eq!(ring.kids(KeyState::Pending), ["k2"]);
        // Not yet promotable before the propagation delay.
        let early = reconcile(
            &mut ring,
            t1 + Duration::seconds(59),
            &p,
            &req,
            &mut generate,
        );
        assert!(early.unwrap().is_empty());

        let t2 = t1 + Duration::seconds(60);
        assert_eq!(next_deadline(&ring, &p), Some(t2));
        let a = reconcile(&mut ring, t2, &p, &req, &mut generate).unwrap();
        assert_eq!(
            a,
            [RotationAction::Promoted {
                kid: "k2".into(),
                previous: Some("k1".into())
            }]
        );
        assert_eq!(ring.kids(KeyState::Retiring), ["k1"]);
        let removal = t2 + Duration::seconds(60 + 930);
        assert_eq!(next_deadline(&ring, &p), Some(removal));
        let a = reconcile(&mut ring, removal, &p, &req, &mut generate).unwrap();
        assert_eq!(a, [RotationAction::Removed { kid: "k1".into() }]);
        assert_eq!(ring.kids(KeyState::Active), ["k2"]);
    }

    #[test]
    fn manual_counter_rotates_once_per_bump() {
        let p = policy(None);
        let mut ring = KeyRing::empty(SigningAlgorithm::EdDSA);
        let mut generate = fake_generator();
        reconcile(
            &mut ring,
            t0(),
            &p,
            &RotationRequest::default(),
            &mut generate,
        )
        .unwrap();
        let req = RotationRequest {
            rotation_counter: 1,
            ..Default::default()
        };
        let a = reconcile(&mut ring, t0(), &p, &req, &mut generate).unwrap();
        assert!(matches!(
            &a[..],
            [RotationAction::RotationStarted {
                reason: "manual",
                ..
            }]
        ));
        assert_eq!(ring.rotation.observed_rotation_counter, 1);
        let later = t0() + Duration::seconds(61);
        let a = reconcile(&mut ring, later, &p, &req, &mut generate).unwrap();
        assert!(matches!(&a[..], [RotationAction::Promoted { .. }]));
        // Same counter: nothing more.
        let a = reconcile(&mut ring, later, &p, &req, &mut generate).unwrap();
        assert!(a.is_empty());
    }

    #[test]
    fn revoking_the_active_key_promotes_at_once_and_says_so() {
        let p = policy(None);
        let mut ring = KeyRing::empty(SigningAlgorithm::EdDSA);
        let mut generate = fake_generator();
        reconcile(
            &mut ring,
            t0(),
            &p,
            &RotationRequest::default(),
            &mut generate,
        )
        .unwrap();
        let req = RotationRequest {
            revoked_kids: vec!["k1".into()],
            ..Default::default()
        };
        let now = t0() + Duration::seconds(5);
        let a = reconcile(&mut ring, now, &p, &req, &mut generate).unwrap();
        assert_eq!(
            a,
            [
                RotationAction::Revoked {
                    kid: "k1".into(),
                    was_active: true
                },
                RotationAction::EmergencyActivated { kid: "k2".into() }
            ]
        );
        assert!(!ring.contains("k1"));
        assert_eq!(
            ring.rotation.unpropagated_activation.as_ref().unwrap().kid,
            "k2"
        );
        assert_eq!(ring.rotation.revoked_kids, ["k1"]);
        // The flag clears after the propagation delay.
        reconcile(
            &mut ring,
            now + Duration::seconds(60),
            &p,
            &req,
            &mut generate,
        )
        .unwrap();
        assert!(ring.rotation.unpropagated_activation.is_none());
    }

    #[test]
    fn changing_the_algorithm_rotates_to_a_key_of_the_new_algorithm() {
        let p = policy(None);
        let mut ring = KeyRing::empty(SigningAlgorithm::EdDSA);
        let mut generate = fake_generator();
        reconcile(
            &mut ring,
            t0(),
            &p,
            &RotationRequest::default(),
            &mut generate,
        )
        .unwrap();
        let req = RotationRequest {
            algorithm: SigningAlgorithm::ES256,
            ..Default::default()
        };
        let a = reconcile(&mut ring, t0(), &p, &req, &mut generate).unwrap();
        assert!(matches!(
            &a[..],
            [RotationAction::RotationStarted {
                reason: "algorithm",
                ..
            }]
        ));
        reconcile(
            &mut ring,
            t0() + Duration::seconds(60),
            &p,
            &req,
            &mut generate,
        )
        .unwrap();
        assert_eq!(ring.active().unwrap().algorithm, SigningAlgorithm::ES256);
    }

    #[derive(Clone, Debug)]
    enum Step {
        Advance(i64),
        Rotate,
        RevokeActive,
        RevokeNewestOther,
        RevokeUnknown,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => (1i64..2000).prop_map(Step::Advance),
            2 => Just(Step::Rotate),
            1 => Just(Step::RevokeActive),
            1 => Just(Step::RevokeNewestOther),
            1 => Just(Step::RevokeUnknown),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// The invariants of `docs/keys.md` over random sequences of events and clock moves.
        #[test]
        fn rotation_invariants_hold(
            steps in proptest::collection::vec(step(), 1..60),
            interval in proptest::option::of(120i64..5000),
        ) {
            let p = policy(interval);
            let mut ring = KeyRing::empty(SigningAlgorithm::EdDSA);
            let mut generate = fake_generator();
            let mut req = RotationRequest::default();
            let mut now = t0();
            let mut revoked: BTreeSet<String> = BTreeSet::new();
            // kid -> when it stopped being active in the published ring.
            let mut deactivated: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
            let mut bootstrap_kid: Option<String> = None;
            let mut emergency_kids: BTreeSet<String> = BTreeSet::new();
            let mut last_generation = 0;

            for step in steps {
                match step {
                    Step::Advance(s) => now += Duration::seconds(s),
                    Step::Rotate => req.rotation_counter += 1,
                    Step::RevokeActive => {
                        if let Some(k) = ring.active() { req.revoked_kids.push(k.kid.clone()) }
                    }
                    Step::RevokeNewestOther => {
                        if let Some(k) = ring.keys.iter().rev().find(|k| k.state != KeyState::Active) {
                            req.revoked_kids.push(k.kid.clone());
                        }
                    }
                    Step::RevokeUnknown => req.revoked_kids.push("no-such-kid".into()),
                }
                let before = ring.clone();
                let actions = reconcile(&mut ring, now, &p, &req, &mut generate).unwrap();
                revoked.extend(req.revoked_kids.iter().cloned());

                // Exactly one active key, always.
                prop_assert!(ring.validate().is_ok(), "{:?}", ring.validate());
                // Generation moves forward exactly when the ring changes.
                prop_assert!(ring.generation >= last_generation);
                if ring != before { prop_assert!(ring.generation > last_generation); }
                last_generation = ring.generation;

                let active = ring.active().unwrap();
                if actions.iter().any(|a| matches!(a, RotationAction::Bootstrapped { .. })) {
                    bootstrap_kid = Some(active.kid.clone());
                }
                if let Some(u) = &ring.rotation.unpropagated_activation {
                    emergency_kids.insert(u.kid.clone());
                }
                // An emergency activation only ever follows the revocation of the signing key.
                if actions.iter().any(|a| matches!(a, RotationAction::EmergencyActivated { .. })) {
                    let revoked_active = actions.iter().any(|a| matches!(a, RotationAction::Revoked { was_active: true, .. }));
                    prop_assert!(revoked_active, "emergency activation without revoking the active key");
                }
                // The active key was published for the propagation delay before it signed,
                // unless it bootstrapped the ring or was activated in an emergency that the
                // ring records.
                let published_for = active.activated_at.unwrap() - active.created_at;
                prop_assert!(
                    published_for >= p.propagation_delay
                        || bootstrap_kid.as_ref() == Some(&active.kid)
                        || emergency_kids.contains(&active.kid),
                    "key {} signed after being published for only {:?}", active.kid, published_for
                );

                // Revoked keys are gone at once and never come back.
                for kid in &revoked { prop_assert!(!ring.contains(kid), "revoked {} still present", kid); }

                // Keys that stopped signing stay verifiable until their tokens expire.
                for old in &before.keys {
                    let still_here = ring.contains(&old.kid);
                    if old.state == KeyState::Active && ring.active().map(|a| &a.kid) != Some(&old.kid) && still_here {
                        deactivated.insert(old.kid.clone(), now);
                    }
                    if !still_here && !revoked.contains(&old.kid) {
                        let since = deactivated.get(&old.kid).copied();
                        prop_assert!(since.is_some(), "{} removed while never retired", old.kid);
                        prop_assert!(now >= since.unwrap() + p.propagation_delay + p.token_lifetime,
                            "{} removed too early", old.kid);
                    }
                }

                // The deadline is never in the past after a reconcile.
                if let Some(d) = next_deadline(&ring, &p) { prop_assert!(d > now); }
            }
        }
    }
}
