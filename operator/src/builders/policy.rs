//! ServiceAccounts, PodDisruptionBudgets and NetworkPolicies.
//!
//! Network policy (ingress only; egress is not restricted), each port open to what needs it:
//! - gateway: TCP 8080 (the API) from anywhere (it is the entry point); TCP 9090 (metrics)
//!   from `spec.networkPolicy.metricsFrom` only;
//! - auth-svc: TCP 8081 (health and metrics) from `metricsFrom` only: it takes no RPC ingress,
//!   it consumes from RabbitMQ (kubelet probes come from the node, which policies always admit);
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

/// Pods of the same stack's components.
fn pods_of(s: &Settings, components: &[Component]) -> Vec<NetworkPolicyPeer> {
    components
        .iter()
        .map(|peer| NetworkPolicyPeer {
            pod_selector: Some(pod_selector(&s.names, *peer)),
            ..NetworkPolicyPeer::default()
        })
        .collect()
}

/// A rule admitting `from` (`None`: anywhere) to `port`.
fn rule(port: i32, from: Option<Vec<NetworkPolicyPeer>>) -> NetworkPolicyIngressRule {
    NetworkPolicyIngressRule {
        from,
        ports: Some(vec![tcp(port)]),
    }
}

/// The metrics rule, when someone may scrape (an empty `from` would mean anywhere).
fn metrics_rule(s: &Settings, port: i32) -> Option<NetworkPolicyIngressRule> {
    (!s.metrics_from.is_empty()).then(|| rule(port, Some(s.metrics_from.clone())))
}

fn policy(s: &Settings, c: Component, ingress: Vec<NetworkPolicyIngressRule>) -> NetworkPolicy {
    NetworkPolicy {
        metadata: object_meta(&s.names, s.names.of_component(c), c, &s.owner),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(pod_selector(&s.names, c)),
            policy_types: Some(vec!["Ingress".into()]),
            // No rule at all (auth-svc without metricsFrom) admits nothing. Left out rather
            // than `[]`, which the API server drops, so the stored object matches the desired.
            ingress: (!ingress.is_empty()).then_some(ingress),
            egress: None,
        }),
    }
}

/// NetworkPolicy of a component (see the module documentation).
pub fn network_policy(s: &Settings, c: Component) -> Option<NetworkPolicy> {
    let ingress = match c {
        Component::Gateway => std::iter::once(rule(gateway::HTTP_PORT, None))
            .chain(metrics_rule(s, gateway::METRICS_PORT))
            .collect(),
        Component::AuthSvc => metrics_rule(s, auth_svc::HTTP_PORT).into_iter().collect(),
        Component::Postgres => vec![rule(
            postgres::PORT,
            Some(pods_of(s, &[Component::AuthSvc])),
        )],
        Component::Rabbitmq => vec![rule(
            rabbitmq::PORT,
            Some(pods_of(s, &[Component::AuthSvc, Component::Gateway])),
        )],
        Component::Keys => return None,
    };
    Some(policy(s, c, ingress))
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

    fn rules(np: &NetworkPolicy) -> &[NetworkPolicyIngressRule] {
        np.spec
            .as_ref()
            .unwrap()
            .ingress
            .as_deref()
            .unwrap_or_default()
    }

    #[test]
    fn the_api_is_open_and_metrics_are_closed_by_default() {
        let s = settings();
        let gw = network_policy(&s, Component::Gateway).unwrap();
        assert_eq!(rules(&gw).len(), 1, "only the API port");
        assert!(peers(&gw).is_empty());
        assert_eq!(port(&gw), IntOrString::Int(8080));
        // auth-svc: no ingress at all (kubelet probes come from the node).
        let auth = network_policy(&s, Component::AuthSvc).unwrap();
        assert!(rules(&auth).is_empty());
        let json = serde_json::to_value(&auth).unwrap();
        // Policy type Ingress without rules denies all ingress; an empty list would be dropped
        // by the API server and look like drift on every reconcile.
        assert_eq!(json["spec"]["policyTypes"], serde_json::json!(["Ingress"]));
        assert!(json["spec"].get("ingress").is_none(), "{json}");
    }

    #[test]
    fn metrics_ports_admit_only_the_configured_scrapers() {
        let s = crate::builders::test_support::settings_with(|st| {
            st.spec.network_policy.metrics_from = vec![NetworkPolicyPeer {
                namespace_selector: Some(
                    k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
                        match_labels: Some(
                            [(
                                "kubernetes.io/metadata.name".to_owned(),
                                "monitoring".to_owned(),
                            )]
                            .into(),
                        ),
                        ..Default::default()
                    },
                ),
                ..NetworkPolicyPeer::default()
            }];
        });
        for (c, metrics_port) in [(Component::Gateway, 9090), (Component::AuthSvc, 8081)] {
            let np = network_policy(&s, c).unwrap();
            let metrics = rules(&np)
                .iter()
                .find(|r| r.ports.as_ref().unwrap()[0].port == Some(IntOrString::Int(metrics_port)))
                .unwrap();
            let from = metrics.from.as_ref().unwrap();
            assert_eq!(from.len(), 1);
            assert!(from[0].namespace_selector.is_some());
        }
        // The gateway's API port stays open to all.
        let gw = network_policy(&s, Component::Gateway).unwrap();
        assert!(rules(&gw)[0].from.is_none());
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
