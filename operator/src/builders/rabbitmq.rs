//! The managed RabbitMQ: a one-replica StatefulSet and its Service.

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, ExecAction, PodSpec, Probe, Service, Volume,
    VolumeMount,
};

use super::meta::{Component, object_meta, pod_selector};
use super::postgres::{data_claim, headless_service, retain_claims};
use super::{container_security, env_from_secret, pod_template, resources_or};
use crate::crd::ManagedSpec;
use crate::settings::{RABBITMQ_IMAGE, Settings};

/// AMQP port.
pub const PORT: i32 = 5672;
/// uid/gid of the `rabbitmq` user in the official image.
pub const UID: i64 = 999;

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
        image: Some(m.image.clone().unwrap_or_else(|| RABBITMQ_IMAGE.into())),
        ports: Some(vec![ContainerPort {
            name: Some("amqp".into()),
            container_port: PORT,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        env: Some(vec![
            env_from_secret("RABBITMQ_DEFAULT_USER", &secret, "username"),
            env_from_secret("RABBITMQ_DEFAULT_PASS", &secret, "password"),
            env_from_secret("RABBITMQ_ERLANG_COOKIE", &secret, "erlang-cookie"),
        ]),
        volume_mounts: Some(vec![
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
                    volumes: Some(vec![Volume {
                        name: "tmp".into(),
                        empty_dir: Some(EmptyDirVolumeSource::default()),
                        ..Volume::default()
                    }]),
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
        assert_eq!(
            env_secret(c, "RABBITMQ_DEFAULT_USER"),
            ("demo-rabbitmq".into(), "username".into())
        );
        assert_eq!(
            env_secret(c, "RABBITMQ_DEFAULT_PASS"),
            ("demo-rabbitmq".into(), "password".into())
        );
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
        assert_eq!(spec.volume_claim_templates.unwrap().len(), 1);
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
