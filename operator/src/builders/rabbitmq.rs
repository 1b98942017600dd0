//! The managed RabbitMQ: a one-replica StatefulSet and its Service.
//!
//! The broker boots with its users and permissions from a definitions file (RabbitMQ's
//! recommended way to pre-configure a node; it also means no default `guest` user): the
//! administrator, and each component's least-privilege user from `authstack_protocol::broker`.
//! A message size cap keeps a client with broker credentials from making the broker or
//! auth-svc buffer huge messages.

use authstack_protocol::broker::{self, Component as BrokerComponent};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, ExecAction, KeyToPath, PodSpec, Probe,
    SecretVolumeSource, Service, Volume, VolumeMount,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::credentials::RabbitmqCredentials;
use super::meta::{Component, object_meta, pod_selector};
use super::postgres::{data_claim, headless_service, retain_claims};
use super::{container_security, env_from_secret, pod_template, resources_or};
use crate::crd::ManagedSpec;
use crate::settings::Settings;

/// AMQP port.
pub const PORT: i32 = 5672;
/// uid/gid of the `rabbitmq` user in the official image.
pub const UID: i64 = 999;
/// Key of the definitions file in the broker's Secret.
pub const DEFINITIONS_KEY: &str = "definitions.json";
/// Key of the configuration snippet in the broker's Secret.
pub const CONFIG_KEY: &str = "authstack.conf";
/// Where the definitions file is mounted.
const DEFINITIONS_DIR: &str = "/etc/rabbitmq/authstack";
/// Where the configuration snippet is mounted (next to the image's own `conf.d` files).
const CONFIG_PATH: &str = "/etc/rabbitmq/conf.d/20-authstack.conf";
/// The configuration snippet: load the users at boot; refuse messages above 4 MiB (the
/// services themselves refuse anything above 1 MiB with a proper error).
pub const CONFIG: &str = "# Written by the AuthStack operator.\n\
load_definitions = /etc/rabbitmq/authstack/definitions.json\n\
max_message_size = 4194304\n";

/// RabbitMQ's `rabbit_password_hashing_sha256`: base64(salt ‖ SHA-256(salt ‖ password)). The
/// salt is derived from user and password, so the Secret does not change on every reconcile
/// (the passwords are random, 190 bits: a salt only has to keep equal passwords apart).
fn password_hash(user: &str, password: &str) -> String {
    let seed = Sha256::digest(
        [
            b"authstack-rabbitmq".as_slice(),
            user.as_bytes(),
            b"\0",
            password.as_bytes(),
        ]
        .concat(),
    );
    hash_with_salt(&seed[..4], password)
}

fn hash_with_salt(salt: &[u8], password: &str) -> String {
    let digest = Sha256::digest([salt, password.as_bytes()].concat());
    STANDARD.encode([salt, &digest[..]].concat())
}

fn user(name: &str, password: &str, tags: &[&str]) -> Value {
    json!({
        "name": name,
        "password_hash": password_hash(name, password),
        "hashing_algorithm": "rabbit_password_hashing_sha256",
        "tags": tags,
    })
}

/// The broker's definitions: the vhost, the administrator and each component's user with the
/// permissions of `libs/protocol/broker-acl.json`.
pub fn definitions(creds: &RabbitmqCredentials) -> Value {
    let acl = broker::acl();
    let mut users = vec![user(&creds.username, &creds.password, &["administrator"])];
    let mut permissions = vec![json!({
        "user": creds.username, "vhost": acl.vhost,
        "configure": ".*", "write": ".*", "read": ".*",
    })];
    for c in BrokerComponent::ALL {
        let u = acl.user(c);
        users.push(user(&u.user, creds.component_password(c), &[]));
        permissions.push(json!({
            "user": u.user, "vhost": acl.vhost,
            "configure": u.permissions.configure,
            "write": u.permissions.write,
            "read": u.permissions.read,
        }));
    }
    json!({
        "vhosts": [{ "name": acl.vhost }],
        "users": users,
        "permissions": permissions,
    })
}

fn diagnostics_probe(check: &str, initial_delay: i32, period: i32) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(vec![
                "rabbitmq-diagnostics".into(),
                "-q".into(),
                check.into(),
            ]),
        }),
        initial_delay_seconds: Some(initial_delay),
        period_seconds: Some(period),
        // The diagnostics CLI boots an Erlang VM: seconds, not milliseconds.
        timeout_seconds: Some(15),
        failure_threshold: Some(3),
        ..Probe::default()
    }
}

/// StatefulSet `<name>-rabbitmq`.
pub fn stateful_set(s: &Settings, m: &ManagedSpec, config_hash: &str) -> StatefulSet {
    let names = &s.names;
    let name = names.rabbitmq();
    let secret = names.rabbitmq();
    let container = Container {
        name: "rabbitmq".into(),
        // Filled in by `settings::resolve` (the spec's, else the operator's default).
        image: m.image.clone(),
        ports: Some(vec![ContainerPort {
            name: Some("amqp".into()),
            container_port: PORT,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        env: Some(vec![env_from_secret(
            "RABBITMQ_ERLANG_COOKIE",
            &secret,
            "erlang-cookie",
        )]),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "broker-config".into(),
                mount_path: DEFINITIONS_DIR.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "broker-config".into(),
                mount_path: CONFIG_PATH.into(),
                sub_path: Some(CONFIG_KEY.into()),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "data".into(),
                mount_path: "/var/lib/rabbitmq".into(),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "tmp".into(),
                mount_path: "/tmp".into(),
                ..VolumeMount::default()
            },
        ]),
        readiness_probe: Some(diagnostics_probe("check_port_connectivity", 10, 15)),
        liveness_probe: Some(diagnostics_probe("ping", 60, 30)),
        resources: Some(resources_or(m.resources.as_ref(), "100m", "256Mi", "1Gi")),
        // The image's entrypoint writes below /etc/rabbitmq and $HOME: root stays writable.
        security_context: Some(container_security(UID, false)),
        ..Container::default()
    };
    StatefulSet {
        metadata: object_meta(names, name.clone(), Component::Rabbitmq, &s.owner),
        spec: Some(StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(name.clone()),
            selector: pod_selector(names, Component::Rabbitmq),
            persistent_volume_claim_retention_policy: Some(retain_claims()),
            template: pod_template(
                names,
                Component::Rabbitmq,
                name,
                config_hash.to_owned(),
                UID,
                PodSpec {
                    termination_grace_period_seconds: Some(60),
                    containers: vec![container],
                    volumes: Some(vec![
                        Volume {
                            name: "tmp".into(),
                            empty_dir: Some(EmptyDirVolumeSource::default()),
                            ..Volume::default()
                        },
                        Volume {
                            name: "broker-config".into(),
                            secret: Some(SecretVolumeSource {
                                secret_name: Some(secret.clone()),
                                // Password hashes: owner and group (fsGroup) read only.
                                default_mode: Some(0o440),
                                optional: Some(false),
                                items: Some(
                                    [DEFINITIONS_KEY, CONFIG_KEY]
                                        .map(|k| KeyToPath {
                                            key: k.into(),
                                            path: k.into(),
                                            mode: None,
                                        })
                                        .to_vec(),
                                ),
                            }),
                            ..Volume::default()
                        },
                    ]),
                    ..PodSpec::default()
                },
            ),
            volume_claim_templates: Some(vec![data_claim(m)]),
            ..StatefulSetSpec::default()
        }),
        status: None,
    }
}

/// Headless Service `<name>-rabbitmq` on 5672.
pub fn service(s: &Settings) -> Service {
    headless_service(s, Component::Rabbitmq, s.names.rabbitmq(), "amqp", PORT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::test_support::{container, env_secret, settings};
    use crate::settings::BackingService;

    #[test]
    fn stateful_set_is_wired_to_its_secret_and_claim() {
        let s = settings();
        let BackingService::Managed(m) = &s.rabbitmq else {
            panic!()
        };
        let sts = stateful_set(&s, m, "h");
        assert_eq!(sts.metadata.name.as_deref(), Some("demo-rabbitmq"));
        let spec = sts.spec.unwrap();
        let pod = spec.template.spec.unwrap();
        let c = container(&pod);
        assert_eq!(c.image.as_deref(), Some("docker.io/library/rabbitmq:4.1"));
        // Users come from the definitions file, not from a default user.
        assert!(
            !c.env
                .iter()
                .flatten()
                .any(|e| e.name.starts_with("RABBITMQ_DEFAULT"))
        );
        let config = c
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.mount_path == "/etc/rabbitmq/conf.d/20-authstack.conf")
            .unwrap();
        assert_eq!(config.sub_path.as_deref(), Some("authstack.conf"));
        let volume = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == config.name)
            .unwrap();
        assert_eq!(
            volume.secret.as_ref().unwrap().secret_name.as_deref(),
            Some("demo-rabbitmq")
        );
        assert!(CONFIG.contains("load_definitions = /etc/rabbitmq/authstack/definitions.json"));
        assert_eq!(
            env_secret(c, "RABBITMQ_ERLANG_COOKIE"),
            ("demo-rabbitmq".into(), "erlang-cookie".into())
        );
        assert!(
            c.volume_mounts
                .iter()
                .flatten()
                .any(|m| m.name == "data" && m.mount_path == "/var/lib/rabbitmq")
        );
        let ready = c.readiness_probe.as_ref().unwrap().exec.as_ref().unwrap();
        assert_eq!(
            ready.command.as_deref().unwrap(),
            ["rabbitmq-diagnostics", "-q", "check_port_connectivity"]
        );
        let live = c.liveness_probe.as_ref().unwrap().exec.as_ref().unwrap();
        assert_eq!(live.command.as_deref().unwrap()[2], "ping");
        assert_eq!(
            pod.security_context.as_ref().unwrap().run_as_user,
            Some(999)
        );
        // A re-created pod must find its volume as it left it: Erlang refuses a cookie file
        // that the kubelet made group-readable (a real kubelet's recursive fsGroup chmod on
        // every mount; found by deleting the RabbitMQ pod on a real node).
        assert_eq!(
            pod.security_context
                .as_ref()
                .unwrap()
                .fs_group_change_policy
                .as_deref(),
            Some("OnRootMismatch")
        );
        assert_eq!(spec.volume_claim_templates.unwrap().len(), 1);
    }

    #[test]
    fn password_hashes_follow_rabbitmqs_sha256_scheme() {
        // Test vector computed with Python's hashlib: base64(salt + sha256(salt + b"secret")).
        assert_eq!(
            hash_with_salt(&[1, 2, 3, 4], "secret"),
            "AQIDBDB9kM21iEUzN1lZ+6VReCsdNqS0sERdAQTcY6Xs3PMz"
        );
        let h = password_hash("u", "p");
        assert_eq!(h, password_hash("u", "p"), "stable");
        assert_ne!(h, password_hash("v", "p"), "salted per user");
        let raw = STANDARD.decode(&h).unwrap();
        assert_eq!(hash_with_salt(&raw[..4], "p"), h);
    }

    #[test]
    fn definitions_carry_every_user_with_least_privileges() {
        let creds = RabbitmqCredentials::reuse_or_generate(None);
        let d = definitions(&creds);
        assert_eq!(d["vhosts"][0]["name"], "/");
        let users: Vec<&str> = d["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            users,
            ["authstack", "authstack-auth-svc", "authstack-gateway"]
        );
        assert_eq!(d["users"][0]["tags"][0], "administrator");
        assert_eq!(d["users"][2]["tags"].as_array().unwrap().len(), 0);
        let acl = broker::acl();
        let gw = &d["permissions"][2];
        assert_eq!(gw["user"], "authstack-gateway");
        assert_eq!(
            gw["write"],
            acl.user(BrokerComponent::Gateway).permissions.write
        );
        assert_eq!(
            gw["read"],
            acl.user(BrokerComponent::Gateway).permissions.read
        );
        assert!(
            !d.to_string().contains(&creds.gateway_password),
            "hashes only"
        );
    }

    #[test]
    fn service_exposes_amqp() {
        let svc = service(&settings());
        assert_eq!(svc.metadata.name.as_deref(), Some("demo-rabbitmq"));
        let ports = svc.spec.unwrap().ports.unwrap();
        assert_eq!(
            (ports[0].name.as_deref(), ports[0].port),
            (Some("amqp"), 5672)
        );
    }
}
