//! The auth-svc Deployment.

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, EnvVar, HTTPGetAction, PodSpec, Probe,
    SecretVolumeSource, TopologySpreadConstraint, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use authstack_protocol::broker::{Component as BrokerComponent, Names};

use super::meta::{Component, Names as ObjectNames, object_meta, pod_selector, short_hash};
use super::{container_security, env, env_from_secret, pod_template, resources_or};
use crate::settings::{BackingService, Settings};

/// Port of auth-svc's health, readiness and metrics endpoints.
pub const HTTP_PORT: i32 = 8081;
/// uid/gid the service containers run as (distroless `nonroot`).
pub const UID: i64 = 65532;
/// Where the signing key Secret is mounted.
pub const KEY_DIR: &str = "/var/run/authstack/keys";

/// Fingerprints of the connection URLs' sources; a change rolls the pods (see
/// [`super::credentials::fingerprint_managed`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UrlFingerprints {
    /// PostgreSQL URL source.
    pub postgres: String,
    /// RabbitMQ URL source.
    pub rabbitmq: String,
}

/// `(secret, key)` holding a backing service's URL.
pub fn url_source(backing: &BackingService, managed_secret: String) -> (String, String) {
    match backing {
        BackingService::Managed(_) => (managed_secret, "url".into()),
        BackingService::External(r) => (r.name.clone(), r.key.clone()),
    }
}

/// The broker URL and names of a component: its own broker user's Secret when the broker is
/// managed (never the administrator's), the user's Secret when it is external.
pub(crate) fn broker_environment(s: &Settings, c: BrokerComponent) -> Vec<EnvVar> {
    let (mq_secret, mq_key) = url_source(&s.rabbitmq, s.names.rabbitmq_user(c));
    let names = Names::defaults();
    vec![
        env_from_secret("AMQP_URL", &mq_secret, &mq_key),
        env("AUTH_RPC_QUEUE", names.rpc_queue),
        env("AUTH_RPC_EXCHANGE", names.rpc_exchange),
        env("AUTH_EVENTS_EXCHANGE", names.events_exchange),
    ]
}

/// The environment of auth-svc (the service configuration contract).
pub fn environment(s: &Settings) -> Vec<EnvVar> {
    let (db_secret, db_key) = url_source(&s.postgres, s.names.auth_svc_database());
    let a = &s.auth;
    let t = &s.tokens;
    let mut env_vars = vec![env_from_secret("DATABASE_URL", &db_secret, &db_key)];
    env_vars.extend(broker_environment(s, BrokerComponent::AuthSvc));
    env_vars.extend([
        env("AUTH_KEY_DIR", KEY_DIR),
        env("AUTH_ISSUER", t.issuer.clone()),
        env("AUTH_AUDIENCE", t.audience.clone()),
        env("AUTH_ACCESS_TOKEN_TTL", t.access_ttl.as_secs().to_string()),
        env(
            "AUTH_REFRESH_TOKEN_TTL",
            t.refresh_ttl.as_secs().to_string(),
        ),
        env(
            "AUTH_REFRESH_REUSE_GRACE",
            t.reuse_grace.as_secs().to_string(),
        ),
        env("AUTH_ARGON2_MEMORY_KIB", a.argon2.memory_kib.to_string()),
        env("AUTH_ARGON2_ITERATIONS", a.argon2.iterations.to_string()),
        env("AUTH_ARGON2_PARALLELISM", a.argon2.parallelism.to_string()),
        env("AUTH_LOCKOUT_THRESHOLD", a.lockout.max_failures.to_string()),
        env(
            "AUTH_LOCKOUT_WINDOW",
            s.lockout_window.as_secs().to_string(),
        ),
        env(
            "AUTH_LOCKOUT_DURATION",
            s.lockout_duration.as_secs().to_string(),
        ),
        env(
            "AUTH_ADDRESS_LOCKOUT_THRESHOLD",
            a.lockout.address_max_failures.to_string(),
        ),
        env("AUTH_HTTP_LISTEN", format!("0.0.0.0:{HTTP_PORT}")),
        env(authstack_telemetry::LOG_FORMAT_ENV, "json"),
    ]);
    env_vars
}

/// The config hash of a pod template: its environment, image, and the URL sources.
pub fn config_hash(env: &[EnvVar], image: &str, urls: &UrlFingerprints) -> String {
    let env = serde_json::to_vec(env).unwrap_or_default();
    short_hash(&[
        &env,
        image.as_bytes(),
        urls.postgres.as_bytes(),
        urls.rabbitmq.as_bytes(),
    ])
}

/// An HTTP GET probe on a port.
pub(crate) fn http_probe(path: &str, port: i32, initial_delay: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(port),
            scheme: Some("HTTP".into()),
            ..HTTPGetAction::default()
        }),
        initial_delay_seconds: Some(initial_delay),
        period_seconds: Some(10),
        timeout_seconds: Some(2),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

/// Zero-downtime rollouts: a new pod must be ready before an old one goes.
pub(crate) fn rolling_update() -> DeploymentStrategy {
    DeploymentStrategy {
        type_: Some("RollingUpdate".into()),
        rolling_update: Some(RollingUpdateDeployment {
            max_surge: Some(IntOrString::Int(1)),
            max_unavailable: Some(IntOrString::Int(0)),
        }),
    }
}

/// Spread replicas over nodes when possible.
pub(crate) fn spread(names: &ObjectNames, c: Component) -> Vec<TopologySpreadConstraint> {
    vec![TopologySpreadConstraint {
        max_skew: 1,
        topology_key: "kubernetes.io/hostname".into(),
        when_unsatisfiable: "ScheduleAnyway".into(),
        label_selector: Some(pod_selector(names, c)),
        ..TopologySpreadConstraint::default()
    }]
}

/// A writable `/tmp` for a read-only root filesystem.
pub(crate) fn tmp_volume() -> (Volume, VolumeMount) {
    (
        Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: None,
                size_limit: Some(Quantity("64Mi".into())),
            }),
            ..Volume::default()
        },
        VolumeMount {
            name: "tmp".into(),
            mount_path: "/tmp".into(),
            ..VolumeMount::default()
        },
    )
}

/// Deployment `<name>-auth-svc`.
pub fn deployment(s: &Settings, urls: &UrlFingerprints) -> Deployment {
    let names = &s.names;
    let name = names.auth_svc();
    let env = environment(s);
    let hash = config_hash(&env, &s.auth_image, urls);
    let (tmp, tmp_mount) = tmp_volume();
    let keys = Volume {
        name: "signing-keys".into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(names.signing_keys()),
            // Private keys: owner and group (fsGroup) read only.
            default_mode: Some(0o440),
            optional: Some(false),
            items: None,
        }),
        ..Volume::default()
    };
    let container = Container {
        name: "auth-svc".into(),
        image: Some(s.auth_image.clone()),
        image_pull_policy: s.auth.image_pull_policy.map(|p| p.as_str().to_owned()),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: HTTP_PORT,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        env: Some(env),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "signing-keys".into(),
                mount_path: KEY_DIR.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            tmp_mount,
        ]),
        liveness_probe: Some(http_probe("/healthz", HTTP_PORT, 10, 3)),
        readiness_probe: Some(http_probe("/readyz", HTTP_PORT, 2, 2)),
        resources: Some(resources_or(
            s.auth.resources.as_ref(),
            "250m",
            "128Mi",
            "512Mi",
        )),
        security_context: Some(container_security(UID, true)),
        ..Container::default()
    };
    Deployment {
        metadata: object_meta(names, name.clone(), Component::AuthSvc, &s.owner),
        spec: Some(DeploymentSpec {
            replicas: Some(s.auth.replicas),
            selector: pod_selector(names, Component::AuthSvc),
            strategy: Some(rolling_update()),
            template: pod_template(
                names,
                Component::AuthSvc,
                name,
                hash,
                UID,
                PodSpec {
                    containers: vec![container],
                    volumes: Some(vec![keys, tmp]),
                    topology_spread_constraints: Some(spread(names, Component::AuthSvc)),
                    ..PodSpec::default()
                },
            ),
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::meta::CONFIG_HASH_ANNOTATION;
    use crate::builders::test_support::{container, env_secret, settings, settings_with};
    use crate::crd::{ExternalSpec, PostgresSpec, SecretKeyRef};

    fn pod(d: &Deployment) -> &PodSpec {
        d.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
    }

    fn hash(d: &Deployment) -> String {
        d.spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap()[CONFIG_HASH_ANNOTATION]
            .clone()
    }

    /// Names and values are checked against auth-svc's own `Config` in `builders::contract`;
    /// here: where the connection URLs come from. The database URL is auth-svc's own
    /// least-privilege role's; nothing of the superuser Secret reaches the pod.
    #[test]
    fn urls_come_from_the_managed_secrets() {
        let d = deployment(&settings(), &UrlFingerprints::default());
        let c = container(pod(&d));
        assert_eq!(
            env_secret(c, "DATABASE_URL"),
            ("demo-auth-svc-db".into(), "url".into())
        );
        let pod_json = serde_json::to_string(pod(&d)).unwrap();
        assert!(
            !pod_json.contains("\"demo-postgres\""),
            "the superuser Secret is referenced: {pod_json}"
        );
        assert_eq!(
            env_secret(c, "AMQP_URL"),
            ("demo-rabbitmq-auth-svc".into(), "url".into()),
            "auth-svc's own broker user, never the administrator"
        );
    }

    #[test]
    fn keys_are_mounted_read_only_and_root_is_read_only() {
        let d = deployment(&settings(), &UrlFingerprints::default());
        let p = pod(&d);
        let c = container(p);
        let mount = c
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.mount_path == KEY_DIR)
            .unwrap();
        assert_eq!(mount.read_only, Some(true));
        let vol = p
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == mount.name)
            .unwrap();
        assert_eq!(
            vol.secret.as_ref().unwrap().secret_name.as_deref(),
            Some("demo-signing-keys")
        );
        assert!(
            c.volume_mounts
                .iter()
                .flatten()
                .any(|m| m.mount_path == "/tmp")
        );
        let sec = c.security_context.as_ref().unwrap();
        assert_eq!(sec.read_only_root_filesystem, Some(true));
        assert_eq!(sec.run_as_user, Some(65532));
        assert_eq!(sec.run_as_non_root, Some(true));
        assert_eq!(sec.allow_privilege_escalation, Some(false));
        assert_eq!(
            sec.capabilities.as_ref().unwrap().drop.as_deref(),
            Some(&["ALL".to_owned()][..])
        );
        assert_eq!(
            sec.seccomp_profile.as_ref().unwrap().type_,
            "RuntimeDefault"
        );
        let live = c
            .liveness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(
            (live.path.as_deref(), &live.port),
            (Some("/healthz"), &IntOrString::Int(8081))
        );
        let ready = c
            .readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(ready.path.as_deref(), Some("/readyz"));
        assert_eq!(p.automount_service_account_token, Some(false));
        assert_eq!(p.service_account_name.as_deref(), Some("demo-auth-svc"));
        assert_eq!(d.spec.as_ref().unwrap().replicas, Some(2));
        let res = c.resources.as_ref().unwrap();
        assert_eq!(
            res.limits.as_ref().unwrap()["memory"],
            Quantity("512Mi".into())
        );
    }

    #[test]
    fn external_database_reads_the_users_secret() {
        let s = settings_with(|st| {
            st.spec.postgres = PostgresSpec {
                managed: None,
                external: Some(ExternalSpec {
                    secret_ref: SecretKeyRef {
                        name: "cnpg-app".into(),
                        key: "uri".into(),
                    },
                }),
            };
        });
        let d = deployment(&s, &UrlFingerprints::default());
        assert_eq!(
            env_secret(container(pod(&d)), "DATABASE_URL"),
            ("cnpg-app".into(), "uri".into())
        );
    }

    #[test]
    fn config_hash_changes_with_env_and_url_sources_only() {
        let base = deployment(&settings(), &UrlFingerprints::default());
        let same = deployment(&settings(), &UrlFingerprints::default());
        assert_eq!(hash(&base), hash(&same));
        let ttl = deployment(
            &settings_with(|st| st.spec.auth_service.tokens.access_token_ttl = "5m".into()),
            &UrlFingerprints::default(),
        );
        assert_ne!(hash(&base), hash(&ttl));
        let rotated_db = deployment(
            &settings(),
            &UrlFingerprints {
                postgres: "new".into(),
                rabbitmq: String::new(),
            },
        );
        assert_ne!(hash(&base), hash(&rotated_db));
        // Replicas do not roll pods.
        let scaled = deployment(
            &settings_with(|st| st.spec.auth_service.replicas = 5),
            &UrlFingerprints::default(),
        );
        assert_eq!(hash(&base), hash(&scaled));
    }
}
