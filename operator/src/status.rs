//! The AuthStack status, built in one place ([`build`]): component readiness from the owned
//! workloads' real status, and the standard conditions (`Ready`, `Progressing`, `Degraded`).
//! Pure.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::crd::{AuthStack, AuthStackStatus, ComponentStatus, ComponentsStatus, KeysStatus};

/// Condition type: every component is ready.
pub const READY: &str = "Ready";
/// Condition type: a rollout is under way.
pub const PROGRESSING: &str = "Progressing";
/// Condition type: the spec is invalid or reconciling failed.
pub const DEGRADED: &str = "Degraded";

fn generation_observed(generation: Option<i64>, observed: Option<i64>) -> bool {
    match generation {
        Some(g) => observed.is_some_and(|o| o >= g),
        None => true,
    }
}

/// Readiness of a Deployment: the current generation observed, every replica updated, ready and
/// available, and no old replica left.
pub fn deployment(d: Option<&Deployment>) -> ComponentStatus {
    let Some(d) = d else {
        return not_created();
    };
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let st = d.status.clone().unwrap_or_default();
    let ready = st.ready_replicas.unwrap_or(0);
    let updated = st.updated_replicas.unwrap_or(0);
    let available = st.available_replicas.unwrap_or(0);
    let total = st.replicas.unwrap_or(0);
    let observed = generation_observed(d.metadata.generation, st.observed_generation);
    let done = observed
        && updated >= desired
        && ready >= desired
        && available >= desired
        && total <= desired;
    let message = if !observed {
        "waiting for the Deployment controller to observe the latest spec".to_owned()
    } else if done {
        format!("{ready}/{desired} ready")
    } else {
        format!(
            "rolling out: {updated}/{desired} updated, {ready}/{desired} ready, {available}/{desired} available"
        )
    };
    ComponentStatus {
        ready: done,
        ready_replicas: ready,
        replicas: desired,
        message: Some(message),
    }
}

/// Readiness of a StatefulSet: the current generation observed and every replica updated and
/// ready.
pub fn stateful_set(s: Option<&StatefulSet>) -> ComponentStatus {
    let Some(s) = s else {
        return not_created();
    };
    let desired = s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let st = s.status.clone().unwrap_or_default();
    let ready = st.ready_replicas.unwrap_or(0);
    let updated = st.updated_replicas.unwrap_or(0);
    let observed = generation_observed(s.metadata.generation, st.observed_generation);
    let done = observed && ready >= desired && updated >= desired;
    let message = if !observed {
        "waiting for the StatefulSet controller to observe the latest spec".to_owned()
    } else if done {
        format!("{ready}/{desired} ready")
    } else {
        format!("rolling out: {updated}/{desired} updated, {ready}/{desired} ready")
    };
    ComponentStatus {
        ready: done,
        ready_replicas: ready,
        replicas: desired,
        message: Some(message),
    }
}

/// Status of an external component: ready when its URL Secret and key exist (the operator
/// cannot probe the server itself).
pub fn external(secret: &str, key: &str, problem: Option<String>) -> ComponentStatus {
    match problem {
        None => ComponentStatus {
            ready: true,
            ready_replicas: 0,
            replicas: 0,
            message: Some(format!("external: URL from Secret {secret} key {key}")),
        },
        Some(p) => ComponentStatus {
            ready: false,
            ready_replicas: 0,
            replicas: 0,
            message: Some(p),
        },
    }
}

fn not_created() -> ComponentStatus {
    ComponentStatus {
        ready: false,
        ready_replicas: 0,
        replicas: 0,
        message: Some("not created yet".into()),
    }
}

/// Why the stack is degraded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Degradation {
    /// CamelCase reason (`InvalidSpec`, `ReconcileError`, `ExternalSecretMissing`, ...).
    pub reason: String,
    /// Human-readable detail.
    pub message: String,
}

fn not_ready(c: &ComponentsStatus) -> Vec<String> {
    [
        ("postgres", &c.postgres),
        ("rabbitmq", &c.rabbitmq),
        ("auth-svc", &c.auth_service),
        ("gateway", &c.gateway),
    ]
    .into_iter()
    .filter(|(_, s)| !s.ready)
    .map(|(n, s)| format!("{n} ({})", s.message.as_deref().unwrap_or("not ready")))
    .collect()
}

fn condition(type_: &str, status: bool, reason: &str, message: String) -> Condition {
    Condition {
        type_: type_.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: reason.into(),
        message,
        observed_generation: None,
        last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    }
}

/// The three conditions, keeping `lastTransitionTime` of any condition whose status did not
/// change.
pub fn conditions(
    previous: &[Condition],
    components: Option<&ComponentsStatus>,
    degraded: Option<&Degradation>,
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let waiting = components.map(not_ready);
    let ready = match (degraded, &waiting) {
        (None, Some(w)) if w.is_empty() => condition(
            READY,
            true,
            "AllComponentsReady",
            "All components are ready".into(),
        ),
        (Some(d), _) => condition(READY, false, &d.reason, d.message.clone()),
        (None, Some(w)) => condition(
            READY,
            false,
            "ComponentsNotReady",
            format!("Waiting for {}", w.join(", ")),
        ),
        (None, None) => condition(READY, false, "Unknown", "Not reconciled yet".into()),
    };
    let progressing = match &waiting {
        Some(w) if !w.is_empty() => condition(
            PROGRESSING,
            true,
            "RollingOut",
            format!("Waiting for {}", w.join(", ")),
        ),
        Some(_) => condition(
            PROGRESSING,
            false,
            "RolloutComplete",
            "Every component is rolled out".into(),
        ),
        None => condition(
            PROGRESSING,
            false,
            "NotReconciled",
            "Nothing is rolling out".into(),
        ),
    };
    let degraded = match degraded {
        Some(d) => condition(DEGRADED, true, &d.reason, d.message.clone()),
        None => condition(DEGRADED, false, "AsExpected", String::new()),
    };
    [ready, progressing, degraded]
        .into_iter()
        .map(|mut c| {
            c.observed_generation = generation;
            c.last_transition_time = previous
                .iter()
                .find(|p| p.type_ == c.type_ && p.status == c.status)
                .map(|p| p.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            c
        })
        .collect()
}

/// What a reconcile observed of the stack.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// Readiness of each component.
    pub components: ComponentsStatus,
    /// Where clients reach the gateway.
    pub gateway_endpoint: String,
    /// The key ring summary.
    pub keys: KeysStatus,
}

/// Now, in whole seconds (what `Time` serializes, so a status read back compares equal to the
/// one computed and is not rewritten).
pub fn now() -> Time {
    Time(Timestamp::from_second(Timestamp::now().as_second()).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// The status of `stack`: `observed` replaces the reported components, endpoint and keys (when
/// `None` — the spec is invalid or the reconcile failed — the previous ones are kept); the
/// conditions follow from them and from `degraded`; `observedGeneration` is the stack's.
pub fn build(
    stack: &AuthStack,
    observed: Option<Observed>,
    degraded: Option<&Degradation>,
    now: &Time,
) -> AuthStackStatus {
    let previous = stack.status.clone().unwrap_or_default();
    let (components, gateway_endpoint, keys) = match observed {
        Some(o) => (Some(o.components), Some(o.gateway_endpoint), Some(o.keys)),
        None => (
            previous.components,
            previous.gateway_endpoint,
            previous.keys,
        ),
    };
    let generation = stack.metadata.generation;
    AuthStackStatus {
        observed_generation: generation,
        conditions: conditions(
            &previous.conditions,
            components.as_ref(),
            degraded,
            generation,
            now,
        ),
        components,
        gateway_endpoint,
        keys,
    }
}

/// The status of a condition type, if present.
pub fn condition_status<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a str> {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.as_str())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::{
        DeploymentSpec, DeploymentStatus, StatefulSetSpec, StatefulSetStatus,
    };
    use k8s_openapi::jiff::Timestamp;
    use kube::api::ObjectMeta;

    use super::*;

    fn deploy(replicas: i32, ready: i32, generation: i64, observed: i64) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                generation: Some(generation),
                ..ObjectMeta::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                ..DeploymentSpec::default()
            }),
            status: Some(DeploymentStatus {
                replicas: Some(replicas),
                ready_replicas: Some(ready),
                available_replicas: Some(ready),
                updated_replicas: Some(replicas),
                observed_generation: Some(observed),
                ..DeploymentStatus::default()
            }),
        }
    }

    fn ready_components() -> ComponentsStatus {
        let ok = deployment(Some(&deploy(2, 2, 1, 1)));
        ComponentsStatus {
            postgres: ok.clone(),
            rabbitmq: ok.clone(),
            auth_service: ok.clone(),
            gateway: ok,
        }
    }

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn deployment_readiness() {
        assert!(deployment(Some(&deploy(2, 2, 3, 3))).ready);
        let partial = deployment(Some(&deploy(2, 1, 3, 3)));
        assert!(!partial.ready);
        assert_eq!(partial.ready_replicas, 1);
        assert!(partial.message.unwrap().contains("1/2 ready"));
        let stale = deployment(Some(&deploy(2, 2, 4, 3)));
        assert!(!stale.ready, "an unobserved generation is not ready");
        let mut surging = deploy(2, 2, 1, 1);
        surging.status.as_mut().unwrap().replicas = Some(3);
        assert!(!deployment(Some(&surging)).ready, "old pods still running");
        assert!(!deployment(None).ready);
    }

    #[test]
    fn stateful_set_readiness() {
        let mut s = StatefulSet {
            metadata: ObjectMeta {
                generation: Some(1),
                ..ObjectMeta::default()
            },
            spec: Some(StatefulSetSpec {
                replicas: Some(1),
                ..StatefulSetSpec::default()
            }),
            status: None,
        };
        assert!(!stateful_set(Some(&s)).ready);
        s.status = Some(StatefulSetStatus {
            replicas: 1,
            ready_replicas: Some(1),
            updated_replicas: Some(1),
            observed_generation: Some(1),
            ..StatefulSetStatus::default()
        });
        assert!(stateful_set(Some(&s)).ready);
    }

    #[test]
    fn ready_only_when_everything_is_ready_and_nothing_is_degraded() {
        let c = ready_components();
        let conds = conditions(&[], Some(&c), None, Some(4), &at(100));
        assert_eq!(condition_status(&conds, READY), Some("True"));
        assert_eq!(condition_status(&conds, PROGRESSING), Some("False"));
        assert_eq!(condition_status(&conds, DEGRADED), Some("False"));
        assert!(conds.iter().all(|c| c.observed_generation == Some(4)));

        let mut waiting = c.clone();
        waiting.gateway = deployment(Some(&deploy(2, 1, 1, 1)));
        let conds = conditions(&[], Some(&waiting), None, Some(4), &at(100));
        assert_eq!(condition_status(&conds, READY), Some("False"));
        assert_eq!(condition_status(&conds, PROGRESSING), Some("True"));
        assert!(conds[0].message.contains("gateway"), "{}", conds[0].message);

        let d = Degradation {
            reason: "InvalidSpec".into(),
            message: "bad".into(),
        };
        let conds = conditions(&[], Some(&c), Some(&d), Some(4), &at(100));
        assert_eq!(condition_status(&conds, READY), Some("False"));
        assert_eq!(conds[0].reason, "InvalidSpec");
        assert_eq!(condition_status(&conds, DEGRADED), Some("True"));
    }

    #[test]
    fn transition_time_is_kept_while_status_is_unchanged() {
        let c = ready_components();
        let first = conditions(&[], Some(&c), None, Some(1), &at(100));
        let second = conditions(&first, Some(&c), None, Some(2), &at(200));
        assert!(second.iter().all(|c| c.last_transition_time == at(100)));
        let mut waiting = c.clone();
        waiting.auth_service.ready = false;
        let third = conditions(&second, Some(&waiting), None, Some(3), &at(300));
        let ready = third.iter().find(|c| c.type_ == READY).unwrap();
        assert_eq!(ready.last_transition_time, at(300));
        let degraded = third.iter().find(|c| c.type_ == DEGRADED).unwrap();
        assert_eq!(degraded.last_transition_time, at(100));
    }

    #[test]
    fn build_keeps_what_it_did_not_observe() {
        let mut stack = crate::builders::test_support::stack("demo", "ns");
        let observed = Observed {
            components: ready_components(),
            gateway_endpoint: "http://gw".into(),
            keys: KeysStatus {
                active_kid: Some("k1".into()),
                ..KeysStatus::default()
            },
        };
        let first = build(&stack, Some(observed), None, &at(100));
        assert_eq!(first.observed_generation, Some(1));
        assert_eq!(condition_status(&first.conditions, READY), Some("True"));
        stack.status = Some(first.clone());
        stack.metadata.generation = Some(2);
        let d = Degradation {
            reason: "InvalidSpec".into(),
            message: "bad".into(),
        };
        let failed = build(&stack, None, Some(&d), &at(200));
        assert_eq!(failed.observed_generation, Some(2));
        assert_eq!(failed.components, first.components);
        assert_eq!(failed.keys, first.keys);
        assert_eq!(failed.gateway_endpoint.as_deref(), Some("http://gw"));
        assert_eq!(condition_status(&failed.conditions, DEGRADED), Some("True"));
        assert_eq!(condition_status(&failed.conditions, READY), Some("False"));
        // Never reconciled and invalid: no components, Ready unknown.
        let fresh = build(
            &crate::builders::test_support::stack("x", "ns"),
            None,
            Some(&d),
            &at(1),
        );
        assert!(fresh.components.is_none());
        assert_eq!(condition_status(&fresh.conditions, READY), Some("False"));
    }

    #[test]
    fn external_components() {
        assert!(external("db", "url", None).ready);
        let missing = external("db", "url", Some("Secret db not found".into()));
        assert!(!missing.ready);
    }
}
