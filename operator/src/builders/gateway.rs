//! The gateway Deployment and Service. The gateway never mounts the private key Secret: it
//! gets the public keys from auth-svc over RPC.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, PodSpec, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use authstack_protocol::broker::Component as BrokerComponent;

use super::auth_svc::{
    UID, UrlFingerprints, broker_environment, config_hash, http_probe, rolling_update, spread,
    tmp_volume,
};
use super::meta::{Component, object_meta, pod_selector, selector_labels};
use super::{container_security, env, pod_template, resources_or};
use crate::crd::ServiceType;
use crate::settings::Settings;

/// The gateway's container port (HTTP API, WebSocket, health).
pub const HTTP_PORT: i32 = 8080;
/// The gateway's metrics port (its own listener, off the public port).
pub const METRICS_PORT: i32 = 9090;

/// The environment of the gateway (the service configuration contract).
pub fn environment(s: &Settings) -> Vec<EnvVar> {
    let mut env_vars = vec![
        env("GATEWAY_LISTEN", format!("0.0.0.0:{HTTP_PORT}")),
        env("GATEWAY_METRICS_LISTEN", format!("0.0.0.0:{METRICS_PORT}")),
    ];
    env_vars.extend(broker_environment(s, BrokerComponent::Gateway));
    env_vars.extend([
        env("AUTH_ISSUER", s.tokens.issuer.clone()),
        env("AUTH_AUDIENCE", s.tokens.audience.clone()),
        env(
            "GATEWAY_RPC_TIMEOUT_MS",
            s.rpc_timeout.as_millis().to_string(),
        ),
        env(
            "GATEWAY_MAX_BODY_BYTES",
            s.gateway.max_body_bytes.to_string(),
        ),
        env(
            "GATEWAY_TRUSTED_PROXIES",
            s.gateway.trusted_proxies.join(","),
        ),
        env(
            "GATEWAY_TRUSTED_PROXY_HOPS",
            s.gateway.trusted_proxy_hops.to_string(),
        ),
        env(authstack_telemetry::LOG_FORMAT_ENV, "json"),
    ]);
    env_vars
}

/// Deployment `<name>-gateway`.
pub fn deployment(s: &Settings, urls: &UrlFingerprints) -> Deployment {
    let names = &s.names;
    let name = names.gateway();
    let env = environment(s);
    // The gateway reads no database URL: only the broker's source matters.
    let urls = UrlFingerprints {
        postgres: String::new(),
        rabbitmq: urls.rabbitmq.clone(),
    };
    let hash = config_hash(&env, &s.gateway_image, &urls);
    let (tmp, tmp_mount) = tmp_volume();
    let container = Container {
        name: "gateway".into(),
        image: Some(s.gateway_image.clone()),
        image_pull_policy: s.gateway.image_pull_policy.map(|p| p.as_str().to_owned()),
        ports: Some(vec![
            ContainerPort {
                name: Some("http".into()),
                container_port: HTTP_PORT,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("metrics".into()),
                container_port: METRICS_PORT,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
        ]),
        env: Some(env),
        volume_mounts: Some(vec![tmp_mount]),
        liveness_probe: Some(http_probe("/healthz", HTTP_PORT, 10, 3)),
        readiness_probe: Some(http_probe("/readyz", HTTP_PORT, 2, 2)),
        resources: Some(resources_or(
            s.gateway.resources.as_ref(),
            "100m",
            "64Mi",
            "256Mi",
        )),
        security_context: Some(container_security(UID, true)),
        ..Container::default()
    };
    Deployment {
        metadata: object_meta(names, name.clone(), Component::Gateway, &s.owner),
        spec: Some(DeploymentSpec {
            replicas: Some(s.gateway.replicas),
            selector: pod_selector(names, Component::Gateway),
            strategy: Some(rolling_update()),
            template: pod_template(
                names,
                Component::Gateway,
                name,
                hash,
                UID,
                PodSpec {
                    containers: vec![container],
                    volumes: Some(vec![tmp]),
                    topology_spread_constraints: Some(spread(names, Component::Gateway)),
                    ..PodSpec::default()
                },
            ),
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

/// Service `<name>-gateway`: the spec's type and port, forwarded to container port 8080.
pub fn service(s: &Settings) -> Service {
    Service {
        metadata: object_meta(&s.names, s.names.gateway(), Component::Gateway, &s.owner),
        spec: Some(ServiceSpec {
            type_: Some(s.gateway.service.type_.as_str().into()),
            selector: Some(selector_labels(&s.names, Component::Gateway)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: s.gateway.service.port,
                target_port: Some(IntOrString::Int(HTTP_PORT)),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// Where clients reach the gateway: the load balancer's address when there is one, else the
/// in-cluster URL.
pub fn endpoint(s: &Settings, live: Option<&Service>) -> String {
    let port = s.gateway.service.port;
    let port_suffix = if port == 80 {
        String::new()
    } else {
        format!(":{port}")
    };
    if s.gateway.service.type_ == ServiceType::LoadBalancer
        && let Some(ingress) = live
            .and_then(|svc| svc.status.as_ref())
            .and_then(|st| st.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .and_then(|i| i.first())
        && let Some(host) = ingress.hostname.clone().or_else(|| ingress.ip.clone())
    {
        return format!("http://{host}{port_suffix}");
    }
    format!(
        "http://{}{port_suffix}",
        s.names.service_host(&s.names.gateway())
    )
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, ServiceStatus};

    use super::*;
    use crate::builders::test_support::{
        container, env_secret, env_value, settings, settings_with,
    };

    #[test]
    fn environment_follows_the_service_contract() {
        let d = deployment(&settings(), &UrlFingerprints::default());
        let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let c = container(pod);
        assert_eq!(
            env_secret(c, "AMQP_URL"),
            ("demo-rabbitmq-gateway".into(), "url".into()),
            "the gateway's own broker user, never the administrator"
        );
        for (k, v) in [
            ("GATEWAY_LISTEN", "0.0.0.0:8080"),
            ("GATEWAY_METRICS_LISTEN", "0.0.0.0:9090"),
            ("AUTH_RPC_QUEUE", "auth.rpc"),
            ("AUTH_RPC_EXCHANGE", "auth.requests"),
            ("AUTH_EVENTS_EXCHANGE", "auth.events"),
            ("AUTH_ISSUER", "http://demo-gateway.ns.svc"),
            ("AUTH_AUDIENCE", "authstack"),
            ("GATEWAY_RPC_TIMEOUT_MS", "5000"),
            ("GATEWAY_MAX_BODY_BYTES", "65536"),
            ("GATEWAY_TRUSTED_PROXIES", ""),
            ("GATEWAY_TRUSTED_PROXY_HOPS", "1"),
            ("LOG_FORMAT", "json"),
        ] {
            assert_eq!(env_value(c, k), v, "{k}");
        }
        // No database, no private keys.
        assert!(!c.env.iter().flatten().any(|e| e.name == "DATABASE_URL"));
        assert!(
            !pod.volumes.iter().flatten().any(|v| v.secret.is_some()),
            "the gateway must not mount any Secret"
        );
        let ready = c
            .readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(
            (ready.path.as_deref(), &ready.port),
            (Some("/readyz"), &IntOrString::Int(8080))
        );
        let live = c
            .liveness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(live.path.as_deref(), Some("/healthz"));
        assert_eq!(
            c.security_context
                .as_ref()
                .unwrap()
                .read_only_root_filesystem,
            Some(true)
        );
        assert_eq!(c.image.as_deref().unwrap(), settings().gateway_image);
    }

    #[test]
    fn trusted_proxies_come_from_the_spec() {
        let s = settings_with(|st| {
            st.spec.gateway.trusted_proxies = vec!["10.0.0.0/8".into(), "192.0.2.7".into()];
            st.spec.gateway.trusted_proxy_hops = 2;
        });
        let d = deployment(&s, &UrlFingerprints::default());
        let c = container(d.spec.as_ref().unwrap().template.spec.as_ref().unwrap());
        assert_eq!(
            env_value(c, "GATEWAY_TRUSTED_PROXIES"),
            "10.0.0.0/8,192.0.2.7"
        );
        assert_eq!(env_value(c, "GATEWAY_TRUSTED_PROXY_HOPS"), "2");
    }

    #[test]
    fn service_follows_the_spec() {
        let s = settings_with(|st| {
            st.spec.gateway.service.type_ = ServiceType::LoadBalancer;
            st.spec.gateway.service.port = 8443;
        });
        let svc = service(&s);
        let spec = svc.spec.as_ref().unwrap();
        assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
        let port = &spec.ports.as_ref().unwrap()[0];
        assert_eq!(port.port, 8443);
        assert_eq!(port.target_port, Some(IntOrString::Int(8080)));
        assert_eq!(endpoint(&s, Some(&svc)), "http://demo-gateway.ns.svc:8443");
        let mut live = svc.clone();
        live.status = Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(vec![LoadBalancerIngress {
                    ip: Some("203.0.113.7".into()),
                    ..LoadBalancerIngress::default()
                }]),
            }),
            conditions: None,
        });
        assert_eq!(endpoint(&s, Some(&live)), "http://203.0.113.7:8443");
        assert_eq!(endpoint(&settings(), None), "http://demo-gateway.ns.svc");
    }
}
