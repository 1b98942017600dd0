//! Pure functions that build the desired objects of a stack. Nothing here talks to the API.
//!
//! - [`meta`]: names, labels, owner references, hashes.
//! - [`credentials`]: the generated PostgreSQL / RabbitMQ credentials and their Secrets.
//! - [`database_role`]: auth-svc's least-privilege PostgreSQL role and its Secret.
//! - [`postgres`], [`rabbitmq`]: the managed StatefulSets and Services.
//! - [`auth_svc`], [`gateway`]: the service Deployments (and the gateway Service).
//! - [`policy`]: ServiceAccounts, PodDisruptionBudgets and NetworkPolicies.
//! - [`stack`]: the whole desired state of one AuthStack, and what must not exist.

pub mod auth_svc;
#[cfg(test)]
mod contract;
pub mod credentials;
pub mod database_role;
pub mod gateway;
pub mod meta;
pub mod policy;
pub mod postgres;
pub mod rabbitmq;
pub mod stack;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, EnvVar, EnvVarSource, PodSecurityContext, ResourceRequirements, SeccompProfile,
    SecretKeySelector, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// An environment variable with a literal value.
pub(crate) fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

/// An environment variable read from a Secret key.
pub(crate) fn env_from_secret(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
    }
}

/// Pod security context: non-root with a fixed uid/gid and `fsGroup`, seccomp RuntimeDefault.
/// The pod template every workload shares: its component's labels, the config-hash annotation
/// (a change rolls the pods), its own ServiceAccount without an API token, and non-root pod
/// security. `spec` supplies the rest (containers, volumes, ...).
pub(crate) fn pod_template(
    names: &meta::Names,
    c: meta::Component,
    service_account: String,
    config_hash: String,
    uid: i64,
    spec: k8s_openapi::api::core::v1::PodSpec,
) -> k8s_openapi::api::core::v1::PodTemplateSpec {
    k8s_openapi::api::core::v1::PodTemplateSpec {
        metadata: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            labels: Some(meta::labels(names, c)),
            annotations: Some(std::collections::BTreeMap::from([(
                meta::CONFIG_HASH_ANNOTATION.to_owned(),
                config_hash,
            )])),
            ..Default::default()
        }),
        spec: Some(k8s_openapi::api::core::v1::PodSpec {
            service_account_name: Some(service_account),
            automount_service_account_token: Some(false),
            security_context: Some(pod_security(uid)),
            ..spec
        }),
    }
}

pub(crate) fn pod_security(uid: i64) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        fs_group: Some(uid),
        // The kubelet re-applies fsGroup (chown and g+rw on every file) on each mount unless
        // the volume's root already matches: a restarted RabbitMQ would find its 0400 Erlang
        // cookie group-readable and refuse to start.
        fs_group_change_policy: Some("OnRootMismatch".into()),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..PodSecurityContext::default()
    }
}

/// Container security context: non-root, no privilege escalation, every capability dropped,
/// seccomp RuntimeDefault; `read_only_root` for images that need no writable root filesystem.
pub(crate) fn container_security(uid: i64, read_only_root: bool) -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        read_only_root_filesystem: Some(read_only_root),
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..SecurityContext::default()
    }
}

/// The spec's resources, or defaults (`cpu` request, `memory` request and limit).
pub(crate) fn resources_or(
    spec: Option<&ResourceRequirements>,
    cpu: &str,
    memory: &str,
    memory_limit: &str,
) -> ResourceRequirements {
    spec.cloned().unwrap_or_else(|| ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.into())),
            ("memory".to_owned(), Quantity(memory.into())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_owned(),
            Quantity(memory_limit.into()),
        )])),
        claims: None,
    })
}

#[cfg(test)]
pub(crate) mod test_support {
    use authstack_keyring::KeyRing;
    use k8s_openapi::api::core::v1::{Container, EnvVar, PodSpec};
    use kube::api::ObjectMeta;

    use crate::builders::auth_svc::UrlFingerprints;
    use crate::builders::credentials::{PostgresCredentials, RabbitmqCredentials};
    use crate::builders::database_role::AuthSvcDatabaseCredentials;
    use crate::builders::stack::Inputs;

    use crate::crd::{AuthStack, AuthStackSpec};
    use crate::settings::{Images, Settings, resolve};

    /// An AuthStack as the API server would return it (uid set, defaults applied).
    pub fn stack(name: &str, ns: &str) -> AuthStack {
        let mut s = AuthStack::new(name, AuthStackSpec::default());
        s.metadata = ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            uid: Some(format!("uid-{name}")),
            generation: Some(1),
            ..ObjectMeta::default()
        };
        s
    }

    /// Resolved settings of a default stack `demo` in `ns`.
    pub fn settings() -> Settings {
        resolve(&stack("demo", "ns"), &Images::default()).unwrap()
    }

    /// Settings after editing the stack.
    pub fn settings_with(edit: impl FnOnce(&mut AuthStack)) -> Settings {
        let mut s = stack("demo", "ns");
        edit(&mut s);
        resolve(&s, &Images::default()).unwrap()
    }

    /// Freshly generated credentials of a fully managed stack, with a key ring.
    pub struct Generated {
        /// PostgreSQL superuser.
        pub postgres: PostgresCredentials,
        /// auth-svc's database role.
        pub auth_svc_database: AuthSvcDatabaseCredentials,
        /// RabbitMQ.
        pub rabbitmq: RabbitmqCredentials,
        /// The key ring.
        pub ring: KeyRing,
    }

    impl Generated {
        /// New credentials around `ring`.
        pub fn new(ring: KeyRing) -> Self {
            Generated {
                postgres: PostgresCredentials::reuse_or_generate(None),
                auth_svc_database: AuthSvcDatabaseCredentials::reuse_or_generate(None),
                rabbitmq: RabbitmqCredentials::reuse_or_generate(None),
                ring,
            }
        }

        /// The builders' inputs for a fully managed stack.
        pub fn inputs(&self) -> Inputs<'_> {
            Inputs {
                postgres: Some(&self.postgres),
                auth_svc_database: Some(&self.auth_svc_database),
                rabbitmq: Some(&self.rabbitmq),
                ring: &self.ring,
                urls: UrlFingerprints::default(),
            }
        }
    }

    /// The only container of a pod spec.
    pub fn container(pod: &PodSpec) -> &Container {
        assert_eq!(pod.containers.len(), 1);
        &pod.containers[0]
    }

    /// An env var by name.
    pub fn env<'a>(c: &'a Container, name: &str) -> &'a EnvVar {
        c.env
            .iter()
            .flatten()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("env {name} missing"))
    }

    /// The literal value of an env var.
    pub fn env_value<'a>(c: &'a Container, name: &str) -> &'a str {
        env(c, name)
            .value
            .as_deref()
            .unwrap_or_else(|| panic!("env {name} has no literal value"))
    }

    /// `(secret, key)` of an env var read from a Secret.
    pub fn env_secret(c: &Container, name: &str) -> (String, String) {
        let r = env(c, name)
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref())
            .unwrap_or_else(|| panic!("env {name} is not a secretKeyRef"));
        (r.name.clone(), r.key.clone())
    }
}
