//! The managed PostgreSQL: a one-replica StatefulSet and its Service.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, ExecAction, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodSpec, Probe, Service, ServicePort, ServiceSpec, Volume,
    VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::meta::{Component, object_meta, pod_selector, selector_labels};
use super::{container_security, database_role, env, env_from_secret, pod_template, resources_or};
use crate::crd::ManagedSpec;
use crate::settings::Settings;

/// PostgreSQL's port.
pub const PORT: i32 = 5432;
/// uid/gid of the `postgres` user in the official image.
pub const UID: i64 = 999;
const DATA_DIR: &str = "/var/lib/postgresql/data";

fn exec_probe(initial_delay: i32, period: i32, failures: i32) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(vec![
                "sh".into(),
                "-c".into(),
                r#"exec pg_isready -h 127.0.0.1 -p 5432 -U "$POSTGRES_USER" -d "$POSTGRES_DB""#
                    .into(),
            ]),
        }),
        initial_delay_seconds: Some(initial_delay),
        period_seconds: Some(period),
        timeout_seconds: Some(5),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

/// The PersistentVolumeClaim template of a managed component's data directory.
pub(crate) fn data_claim(m: &ManagedSpec) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data".into()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: m.storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity(m.storage.size.clone()),
                )])),
                limits: None,
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

/// Claims outlive the StatefulSet: deleting the stack or switching to `external` keeps data.
pub(crate) fn retain_claims() -> StatefulSetPersistentVolumeClaimRetentionPolicy {
    StatefulSetPersistentVolumeClaimRetentionPolicy {
        when_deleted: Some("Retain".into()),
        when_scaled: Some("Retain".into()),
    }
}

/// StatefulSet `<name>-postgres`.
pub fn stateful_set(s: &Settings, m: &ManagedSpec, config_hash: &str) -> StatefulSet {
    let names = &s.names;
    let name = names.postgres();
    let secret = names.postgres();
    let container = Container {
        name: "postgres".into(),
        // Filled in by `settings::resolve` (the spec's, else the operator's default).
        image: m.image.clone(),
        ports: Some(vec![ContainerPort {
            name: Some("postgres".into()),
            container_port: PORT,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        env: Some(
            [
                env_from_secret("POSTGRES_USER", &secret, "username"),
                env_from_secret("POSTGRES_PASSWORD", &secret, "password"),
                env_from_secret("POSTGRES_DB", &secret, "database"),
                env("PGDATA", format!("{DATA_DIR}/pgdata")),
            ]
            .into_iter()
            .chain(database_role::container_env(s))
            .collect(),
        ),
        lifecycle: Some(database_role::lifecycle()),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "data".into(),
                mount_path: DATA_DIR.into(),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "run".into(),
                mount_path: "/var/run/postgresql".into(),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "tmp".into(),
                mount_path: "/tmp".into(),
                ..VolumeMount::default()
            },
        ]),
        readiness_probe: Some(exec_probe(5, 10, 3)),
        liveness_probe: Some(exec_probe(30, 20, 6)),
        resources: Some(resources_or(m.resources.as_ref(), "100m", "256Mi", "1Gi")),
        security_context: Some(container_security(UID, true)),
        ..Container::default()
    };
    let empty_dir = |n: &str| Volume {
        name: n.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    };
    StatefulSet {
        metadata: object_meta(names, name.clone(), Component::Postgres, &s.owner),
        spec: Some(StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(name.clone()),
            selector: pod_selector(names, Component::Postgres),
            persistent_volume_claim_retention_policy: Some(retain_claims()),
            template: pod_template(
                names,
                Component::Postgres,
                name,
                config_hash.to_owned(),
                UID,
                PodSpec {
                    termination_grace_period_seconds: Some(60),
                    containers: vec![container],
                    volumes: Some(vec![empty_dir("run"), empty_dir("tmp")]),
                    ..PodSpec::default()
                },
            ),
            volume_claim_templates: Some(vec![data_claim(m)]),
            ..StatefulSetSpec::default()
        }),
        status: None,
    }
}

/// Headless Service `<name>-postgres` (the StatefulSet's governing Service; port 5432).
pub fn service(s: &Settings) -> Service {
    headless_service(s, Component::Postgres, s.names.postgres(), "postgres", PORT)
}

/// A headless Service in front of a one-replica StatefulSet.
pub(crate) fn headless_service(
    s: &Settings,
    c: Component,
    name: String,
    port_name: &str,
    port: i32,
) -> Service {
    Service {
        metadata: object_meta(&s.names, name, c, &s.owner),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            cluster_ip: Some("None".into()),
            // Clients connect while the pod starts and retry; the URL resolves to the pod.
            publish_not_ready_addresses: Some(false),
            selector: Some(selector_labels(&s.names, c)),
            ports: Some(vec![ServicePort {
                name: Some(port_name.into()),
                port,
                target_port: Some(IntOrString::Int(port)),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::meta::CONFIG_HASH_ANNOTATION;
    use crate::builders::test_support::{container, env_secret, env_value, settings};
    use crate::settings::BackingService;

    fn managed(s: &Settings) -> ManagedSpec {
        match &s.postgres {
            BackingService::Managed(m) => m.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn stateful_set_is_wired_to_its_secret_and_claim() {
        let s = settings();
        let sts = stateful_set(&s, &managed(&s), "h1");
        assert_eq!(sts.metadata.name.as_deref(), Some("demo-postgres"));
        let spec = sts.spec.unwrap();
        assert_eq!(spec.replicas, Some(1));
        assert_eq!(spec.service_name.as_deref(), Some("demo-postgres"));
        let pod = spec.template.spec.unwrap();
        let c = container(&pod);
        assert_eq!(c.image.as_deref(), Some("docker.io/library/postgres:17"));
        assert_eq!(
            env_secret(c, "POSTGRES_PASSWORD"),
            ("demo-postgres".into(), "password".into())
        );
        assert_eq!(
            env_secret(c, "POSTGRES_USER"),
            ("demo-postgres".into(), "username".into())
        );
        assert_eq!(
            env_secret(c, "POSTGRES_DB"),
            ("demo-postgres".into(), "database".into())
        );
        assert_eq!(env_value(c, "PGDATA"), "/var/lib/postgresql/data/pgdata");
        assert_eq!(
            env_secret(c, "AUTH_SVC_DB_PASSWORD"),
            ("demo-auth-svc-db".into(), "password".into())
        );
        let hook = c.lifecycle.as_ref().unwrap().post_start.as_ref().unwrap();
        assert!(hook.exec.as_ref().unwrap().command.as_ref().unwrap()[2].contains("CREATE ROLE"));
        let mounts = c.volume_mounts.as_ref().unwrap();
        assert!(
            mounts
                .iter()
                .any(|m| m.name == "data" && m.mount_path == "/var/lib/postgresql/data")
        );
        let claim = &spec.volume_claim_templates.unwrap()[0];
        assert_eq!(claim.metadata.name.as_deref(), Some("data"));
        assert_eq!(
            claim
                .spec
                .as_ref()
                .unwrap()
                .resources
                .as_ref()
                .unwrap()
                .requests
                .as_ref()
                .unwrap()["storage"],
            Quantity("1Gi".into())
        );
        let probe = c.readiness_probe.as_ref().unwrap().exec.as_ref().unwrap();
        assert!(probe.command.as_ref().unwrap()[2].contains("pg_isready"));
        assert!(c.liveness_probe.is_some());
        let sec = pod.security_context.as_ref().unwrap();
        assert_eq!(sec.run_as_user, Some(999));
        assert_eq!(sec.fs_group, Some(999));
        assert_eq!(sec.run_as_non_root, Some(true));
        let csec = c.security_context.as_ref().unwrap();
        assert_eq!(csec.allow_privilege_escalation, Some(false));
        assert_eq!(
            csec.capabilities.as_ref().unwrap().drop.as_deref(),
            Some(&["ALL".to_owned()][..])
        );
        assert_eq!(
            csec.seccomp_profile.as_ref().unwrap().type_,
            "RuntimeDefault"
        );
        assert_eq!(pod.automount_service_account_token, Some(false));
        assert_eq!(pod.service_account_name.as_deref(), Some("demo-postgres"));
        assert_eq!(
            spec.template.metadata.unwrap().annotations.unwrap()[CONFIG_HASH_ANNOTATION],
            "h1"
        );
    }

    #[test]
    fn spec_storage_image_and_resources_are_used() {
        let s = crate::builders::test_support::settings_with(|st| {
            let m = st.spec.postgres.managed.as_mut().unwrap();
            m.image = Some("postgres:16".into());
            m.storage.size = "20Gi".into();
            m.storage.storage_class_name = Some("fast".into());
        });
        let sts = stateful_set(&s, &managed(&s), "h");
        let spec = sts.spec.unwrap();
        let claim = spec.volume_claim_templates.unwrap().remove(0).spec.unwrap();
        assert_eq!(claim.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(
            claim.resources.unwrap().requests.unwrap()["storage"],
            Quantity("20Gi".into())
        );
        let pod = spec.template.spec.unwrap();
        assert_eq!(container(&pod).image.as_deref(), Some("postgres:16"));
    }

    #[test]
    fn service_is_headless_on_5432() {
        let svc = service(&settings());
        let spec = svc.spec.unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.ports.unwrap()[0].port, 5432);
        assert_eq!(spec.selector.unwrap()["app.kubernetes.io/name"], "postgres");
    }
}
