//! Phase 5, status: what the workloads report → the AuthStack status (built by
//! [`crate::status::build`]), written with server-side apply only when it changed.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};

use super::apply::Applied;
use super::dereference::{ExternalProblem, typed};
use crate::builders::gateway;
use crate::builders::meta::{Component, MANAGER};
use crate::crd::{AuthStack, AuthStackStatus, ComponentStatus, ComponentsStatus};
use crate::keys::{self, KeyPlan};
use crate::settings::{BackingService, Settings};
use crate::status::{self, Degradation, Observed};

/// Errors of the status phase.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// Writing the status failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

impl StatusError {
    /// Whether the AuthStack no longer exists.
    pub fn is_not_found(&self) -> bool {
        matches!(self, StatusError::Kube(kube::Error::Api(s)) if s.is_not_found())
    }
}

/// The `Degraded` reason while a user's URL Secret is missing or incomplete.
pub const EXTERNAL_SECRET_INVALID: &str = "ExternalSecretInvalid";

fn workload<K: serde::de::DeserializeOwned>(
    applied: &Applied,
    kind: &str,
    name: &str,
) -> Option<K> {
    applied
        .get(kind, name)
        .and_then(|obj| typed(obj, kind).ok())
}

fn backing(
    applied: &Applied,
    problems: &[ExternalProblem],
    backing: &BackingService,
    component: Component,
    name: String,
) -> ComponentStatus {
    match backing {
        BackingService::Managed(_) => {
            status::stateful_set(workload::<StatefulSet>(applied, "StatefulSet", &name).as_ref())
        }
        BackingService::External(r) => {
            let problem = problems
                .iter()
                .find(|p| p.component == component)
                .map(|p| p.problem.clone());
            status::external(&r.name, &r.key, problem)
        }
    }
}

/// What this reconcile observed: components from the live workloads, the gateway endpoint, the
/// key ring.
pub fn observe(
    settings: &Settings,
    applied: &Applied,
    problems: &[ExternalProblem],
    plan: &KeyPlan,
) -> Observed {
    let names = &settings.names;
    let components = ComponentsStatus {
        postgres: backing(
            applied,
            problems,
            &settings.postgres,
            Component::Postgres,
            names.postgres(),
        ),
        rabbitmq: backing(
            applied,
            problems,
            &settings.rabbitmq,
            Component::Rabbitmq,
            names.rabbitmq(),
        ),
        auth_service: status::deployment(
            workload::<Deployment>(applied, "Deployment", &names.auth_svc()).as_ref(),
        ),
        gateway: status::deployment(
            workload::<Deployment>(applied, "Deployment", &names.gateway()).as_ref(),
        ),
    };
    let service = workload::<Service>(applied, "Service", &names.gateway());
    Observed {
        components,
        gateway_endpoint: gateway::endpoint(settings, service.as_ref()),
        keys: keys::status(&plan.ring, &keys::policy(settings)),
    }
}

/// `Degraded` while a user's URL Secret is missing or incomplete.
pub fn external_degradation(problems: &[ExternalProblem]) -> Option<Degradation> {
    (!problems.is_empty()).then(|| Degradation {
        reason: EXTERNAL_SECRET_INVALID.into(),
        message: problems
            .iter()
            .map(|p| format!("{}: {}", p.component.app_name(), p.problem))
            .collect::<Vec<_>>()
            .join("; "),
    })
}

/// Writes `status` unless the stack already has it.
pub async fn write(
    client: &Client,
    stack: &AuthStack,
    status: &AuthStackStatus,
) -> Result<(), StatusError> {
    if stack.status.as_ref() == Some(status) {
        return Ok(());
    }
    let Some(ns) = stack.namespace() else {
        return Ok(());
    };
    let api: Api<AuthStack> = Api::namespaced(client.clone(), &ns);
    let body = serde_json::json!({
        "apiVersion": AuthStack::api_version(&()),
        "kind": AuthStack::kind(&()),
        "metadata": { "name": stack.name_any() },
        "status": status,
    });
    api.patch_status(
        &stack.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_problems_degrade_with_one_message() {
        assert!(external_degradation(&[]).is_none());
        let problem = |component, text: &str| ExternalProblem {
            component,
            problem: text.into(),
        };
        let d = external_degradation(&[
            problem(Component::Postgres, "Secret db not found"),
            problem(Component::Rabbitmq, "Secret mq has no key url"),
        ])
        .unwrap();
        assert_eq!(d.reason, "ExternalSecretInvalid");
        assert_eq!(
            d.message,
            "postgres: Secret db not found; rabbitmq: Secret mq has no key url"
        );
    }
}
