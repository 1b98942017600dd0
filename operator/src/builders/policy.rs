//! ServiceAccounts, PodDisruptionBudgets and NetworkPolicies.
//!
//! Network policy (ingress only; egress is not restricted):
//! - gateway: TCP 8080 from anywhere (it is the entry point);
//! - auth-svc: TCP 8081 (health and metrics, for Prometheus) from anywhere, nothing else: it
//!   takes no RPC ingress, it consumes from RabbitMQ (kubelet probes bypass policies anyway);
//! - PostgreSQL: TCP 5432 from auth-svc pods of the same stack only;
//! - RabbitMQ: TCP 5672 from auth-svc and gateway pods of the same stack only.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::meta::{Component, object_meta, pod_selector};
use super::{auth_svc, gateway, postgres, rabbitmq};
use crate::settings::Settings;

/// ServiceAccount of a component; none of them may talk to the Kubernetes API.
pub fn service_account(s: &Settings, c: Component) -> ServiceAccount {
    ServiceAccount {
        metadata: object_meta(&s.names, s.names.of_component(c), c, &s.owner),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}

/// PodDisruptionBudget (maxUnavailable 1) of a Deployment, only when it runs more than one pod.
pub fn pod_disruption_budget(
    s: &Settings,
    c: Component,
    replicas: i32,
) -> Option<PodDisruptionBudget> {
    (replicas > 1).then(|| PodDisruptionBudget {
        metadata: object_meta(&s.names, s.names.of_component(c), c, &s.owner),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(pod_selector(&s.names, c)),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    })
}

fn tcp(port: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".into()),
        end_port: None,
    }
}

fn policy(s: &Settings, c: Component, port: i32, from: &[Component]) -> NetworkPolicy {
    let from = (!from.is_empty()).then(|| {
        from.iter()
            .map(|peer| NetworkPolicyPeer {
                pod_selector: Some(pod_selector(&s.names, *peer)),
                ..NetworkPolicyPeer::default()
            })
            .collect()
    });
    NetworkPolicy {
        metadata: object_meta(&s.names, s.names.of_component(c), c, &s.owner),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(pod_selector(&s.names, c)),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from,
                ports: Some(vec![tcp(port)]),
            }]),
            egress: None,
        }),
    }
}

/// NetworkPolicy of a component (see the module documentation).
pub fn network_policy(s: &Settings, c: Component) -> Option<NetworkPolicy> {
    match c {
        Component::Gateway => Some(policy(s, c, gateway::HTTP_PORT, &[])),
        Component::AuthSvc => Some(policy(s, c, auth_svc::HTTP_PORT, &[])),
        Component::Postgres => Some(policy(s, c, postgres::PORT, &[Component::AuthSvc])),
        Component::Rabbitmq => Some(policy(
            s,
            c,
            rabbitmq::PORT,
            &[Component::AuthSvc, Component::Gateway],
        )),
        Component::Keys => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::test_support::settings;

    fn peers(np: &NetworkPolicy) -> Vec<String> {
        np.spec.as_ref().unwrap().ingress.as_ref().unwrap()[0]
            .from
            .iter()
            .flatten()
            .map(|p| {
                p.pod_selector
                    .as_ref()
                    .unwrap()
                    .match_labels
                    .as_ref()
                    .unwrap()["app.kubernetes.io/name"]
                    .clone()
            })
            .collect()
    }

    fn port(np: &NetworkPolicy) -> IntOrString {
        np.spec.as_ref().unwrap().ingress.as_ref().unwrap()[0]
            .ports
            .as_ref()
            .unwrap()[0]
            .port
            .clone()
            .unwrap()
    }

    #[test]
    fn databases_accept_only_their_clients() {
        let s = settings();
        let pg = network_policy(&s, Component::Postgres).unwrap();
        assert_eq!(peers(&pg), ["auth-svc"]);
        assert_eq!(port(&pg), IntOrString::Int(5432));
        let spec = pg.spec.as_ref().unwrap();
        assert_eq!(
            spec.pod_selector
                .as_ref()
                .unwrap()
                .match_labels
                .as_ref()
                .unwrap()["app.kubernetes.io/instance"],
            "demo"
        );
        assert_eq!(
            spec.policy_types.as_deref(),
            Some(&["Ingress".to_owned()][..])
        );
        let mq = network_policy(&s, Component::Rabbitmq).unwrap();
        assert_eq!(peers(&mq), ["auth-svc", "gateway"]);
        assert_eq!(port(&mq), IntOrString::Int(5672));
        // Peers are pods of this stack only.
        let from = &mq.spec.as_ref().unwrap().ingress.as_ref().unwrap()[0]
            .from
            .as_ref()
            .unwrap()[0];
        assert_eq!(
            from.pod_selector
                .as_ref()
                .unwrap()
                .match_labels
                .as_ref()
                .unwrap()["app.kubernetes.io/instance"],
            "demo"
        );
        assert!(from.namespace_selector.is_none());
    }

    #[test]
    fn services_accept_their_port_from_anywhere() {
        let s = settings();
        let gw = network_policy(&s, Component::Gateway).unwrap();
        assert!(peers(&gw).is_empty());
        assert_eq!(port(&gw), IntOrString::Int(8080));
        let auth = network_policy(&s, Component::AuthSvc).unwrap();
        assert_eq!(port(&auth), IntOrString::Int(8081));
    }

    #[test]
    fn budgets_only_for_several_replicas() {
        let s = settings();
        assert!(pod_disruption_budget(&s, Component::Gateway, 1).is_none());
        let pdb = pod_disruption_budget(&s, Component::Gateway, 3).unwrap();
        let spec = pdb.spec.unwrap();
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(
            spec.selector.unwrap().match_labels.unwrap()["app.kubernetes.io/name"],
            "gateway"
        );
    }

    #[test]
    fn service_accounts_have_no_token() {
        let sa = service_account(&settings(), Component::Gateway);
        assert_eq!(sa.metadata.name.as_deref(), Some("demo-gateway"));
        assert_eq!(sa.automount_service_account_token, Some(false));
    }
}
