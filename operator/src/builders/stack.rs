//! The whole desired state of one AuthStack, and the objects that must not exist.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Resource;
use kube::core::ApiResource;
use serde::Serialize;
use serde_json::Value;

use authstack_protocol::broker::Component as BrokerComponent;

use super::auth_svc::UrlFingerprints;
use super::credentials::{PostgresCredentials, RabbitmqCredentials};
use super::database_role::{self, AuthSvcDatabaseCredentials};
use super::meta::{Component, short_hash};
use super::{auth_svc, credentials, gateway, policy, postgres, rabbitmq};
use crate::keys;
use crate::settings::{BackingService, Settings};

/// Annotation holding a digest of what the operator last applied to an object.
pub const APPLIED_HASH_ANNOTATION: &str = "authstack.io/applied-hash";

/// One object to server-side apply.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    /// Its kind.
    pub resource: ApiResource,
    /// Its name.
    pub name: String,
    /// The full object (apiVersion, kind, metadata with the applied-hash annotation, spec).
    pub object: Value,
}

impl Desired {
    /// Serializes a typed object and stamps the digest of its content on it.
    pub fn of<K>(obj: &K) -> Result<Self, serde_json::Error>
    where
        K: Resource<DynamicType = ()> + Serialize,
    {
        let mut object = serde_json::to_value(obj)?;
        let digest = short_hash(&[&serde_json::to_vec(&object)?]);
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            let annotations = meta
                .entry("annotations")
                .or_insert_with(|| Value::Object(Default::default()));
            if let Some(map) = annotations.as_object_mut() {
                map.insert(APPLIED_HASH_ANNOTATION.into(), Value::String(digest));
            }
        }
        Ok(Desired {
            resource: ApiResource::erase::<K>(&()),
            name: obj.meta().name.clone().unwrap_or_default(),
            object,
        })
    }

    /// The digest stamped on the object.
    pub fn applied_hash(&self) -> Option<&str> {
        self.object["metadata"]["annotations"][APPLIED_HASH_ANNOTATION].as_str()
    }
}

/// One object that must not exist (deleted if this AuthStack controls it).
#[derive(Clone, Debug, PartialEq)]
pub struct Obsolete {
    /// Its kind.
    pub resource: ApiResource,
    /// Its name.
    pub name: String,
}

impl Obsolete {
    fn of<K: Resource<DynamicType = ()>>(name: String) -> Self {
        Obsolete {
            resource: ApiResource::erase::<K>(&()),
            name,
        }
    }
}

/// What the builders need besides the settings.
#[derive(Clone, Debug)]
pub struct Inputs<'a> {
    /// Managed PostgreSQL credentials (`None` when external).
    pub postgres: Option<&'a PostgresCredentials>,
    /// auth-svc's role in the managed PostgreSQL (`None` when external).
    pub auth_svc_database: Option<&'a AuthSvcDatabaseCredentials>,
    /// Managed RabbitMQ credentials (`None` when external).
    pub rabbitmq: Option<&'a RabbitmqCredentials>,
    /// The key ring (for the public JWKS).
    pub ring: &'a authstack_keyring::KeyRing,
    /// Connection URL source fingerprints.
    pub urls: UrlFingerprints,
}

/// Every object of the stack except the signing-key Secret (written with a precondition by the
/// controller), in apply order.
pub fn desired(s: &Settings, inputs: &Inputs<'_>) -> Result<Vec<Desired>, serde_json::Error> {
    let mut out = Vec::new();
    for c in [Component::AuthSvc, Component::Gateway] {
        out.push(Desired::of(&policy::service_account(s, c))?);
    }
    out.push(Desired::of(&keys::jwks_config_map(s, inputs.ring))?);

    if let (BackingService::Managed(m), Some(creds), Some(role)) =
        (&s.postgres, inputs.postgres, inputs.auth_svc_database)
    {
        out.push(Desired::of(&policy::service_account(
            s,
            Component::Postgres,
        ))?);
        out.push(Desired::of(&credentials::postgres_secret(s, creds))?);
        out.push(Desired::of(&database_role::secret(s, role, creds))?);
        out.push(Desired::of(&postgres::service(s))?);
        // The role's password is in the hash: a new one restarts PostgreSQL, whose start-up
        // hook then sets it.
        let hash = short_hash(&[
            credentials::fingerprint_managed(&creds.password).as_bytes(),
            credentials::fingerprint_managed(&role.password).as_bytes(),
        ]);
        out.push(Desired::of(&postgres::stateful_set(s, m, &hash))?);
        if let Some(np) = policy::network_policy(s, Component::Postgres) {
            out.push(Desired::of(&np)?);
        }
    }
    if let (BackingService::Managed(m), Some(creds)) = (&s.rabbitmq, inputs.rabbitmq) {
        out.push(Desired::of(&policy::service_account(
            s,
            Component::Rabbitmq,
        ))?);
        out.push(Desired::of(&credentials::rabbitmq_secret(s, creds))?);
        for c in BrokerComponent::ALL {
            out.push(Desired::of(&credentials::rabbitmq_user_secret(
                s, creds, c,
            ))?);
        }
        out.push(Desired::of(&rabbitmq::service(s))?);
        let hash = short_hash(&[
            credentials::fingerprint_managed(&creds.password).as_bytes(),
            credentials::fingerprint_managed(&creds.erlang_cookie).as_bytes(),
        ]);
        out.push(Desired::of(&rabbitmq::stateful_set(s, m, &hash))?);
        if let Some(np) = policy::network_policy(s, Component::Rabbitmq) {
            out.push(Desired::of(&np)?);
        }
    }

    out.push(Desired::of(&auth_svc::deployment(s, &inputs.urls))?);
    out.push(Desired::of(&gateway::deployment(s, &inputs.urls))?);
    out.push(Desired::of(&gateway::service(s))?);
    for (c, replicas) in [
        (Component::AuthSvc, s.auth.replicas),
        (Component::Gateway, s.gateway.replicas),
    ] {
        if let Some(pdb) = policy::pod_disruption_budget(s, c, replicas) {
            out.push(Desired::of(&pdb)?);
        }
        if let Some(np) = policy::network_policy(s, c) {
            out.push(Desired::of(&np)?);
        }
    }
    Ok(out)
}

/// Objects of the stack that must not exist under the current spec.
pub fn obsolete(s: &Settings) -> Vec<Obsolete> {
    let mut out = Vec::new();
    for (backing, name) in [
        (&s.postgres, s.names.postgres()),
        (&s.rabbitmq, s.names.rabbitmq()),
    ] {
        if !backing.is_managed() {
            if name == s.names.postgres() {
                out.push(Obsolete::of::<Secret>(s.names.auth_svc_database()));
            }
            out.push(Obsolete::of::<StatefulSet>(name.clone()));
            out.push(Obsolete::of::<Service>(name.clone()));
            out.push(Obsolete::of::<Secret>(name.clone()));
            out.push(Obsolete::of::<ServiceAccount>(name.clone()));
            out.push(Obsolete::of::<NetworkPolicy>(name));
        }
    }
    if !s.rabbitmq.is_managed() {
        for c in BrokerComponent::ALL {
            out.push(Obsolete::of::<Secret>(s.names.rabbitmq_user(c)));
        }
    }
    for (name, replicas) in [
        (s.names.auth_svc(), s.auth.replicas),
        (s.names.gateway(), s.gateway.replicas),
    ] {
        if replicas <= 1 {
            out.push(Obsolete::of::<PodDisruptionBudget>(name));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use authstack_keyring::material::generate;

    use super::*;
    use crate::builders::test_support::{Generated, settings, settings_with};
    use crate::crd::{ExternalSpec, PostgresSpec, SecretKeyRef};

    fn ring() -> authstack_keyring::KeyRing {
        authstack_keyring::KeyRing::with_active_key(
            generate(Default::default()).unwrap(),
            chrono::Utc::now(),
        )
    }

    fn kinds_and_names(objs: &[Desired]) -> Vec<(String, String)> {
        objs.iter()
            .map(|d| (d.resource.kind.clone(), d.name.clone()))
            .collect()
    }

    #[test]
    fn default_stack_has_every_object() {
        let s = settings();
        let objs = desired(&s, &Generated::new(ring()).inputs()).unwrap();
        let mut got = kinds_and_names(&objs);
        got.sort();
        let mut want: Vec<(String, String)> = [
            ("ConfigMap", "demo-jwks"),
            ("Deployment", "demo-auth-svc"),
            ("Deployment", "demo-gateway"),
            ("NetworkPolicy", "demo-auth-svc"),
            ("NetworkPolicy", "demo-gateway"),
            ("NetworkPolicy", "demo-postgres"),
            ("NetworkPolicy", "demo-rabbitmq"),
            ("PodDisruptionBudget", "demo-auth-svc"),
            ("PodDisruptionBudget", "demo-gateway"),
            ("Secret", "demo-auth-svc-db"),
            ("Secret", "demo-postgres"),
            ("Secret", "demo-rabbitmq"),
            ("Secret", "demo-rabbitmq-auth-svc"),
            ("Secret", "demo-rabbitmq-gateway"),
            ("Service", "demo-gateway"),
            ("Service", "demo-postgres"),
            ("Service", "demo-rabbitmq"),
            ("ServiceAccount", "demo-auth-svc"),
            ("ServiceAccount", "demo-gateway"),
            ("ServiceAccount", "demo-postgres"),
            ("ServiceAccount", "demo-rabbitmq"),
            ("StatefulSet", "demo-postgres"),
            ("StatefulSet", "demo-rabbitmq"),
        ]
        .into_iter()
        .map(|(k, n)| (k.to_owned(), n.to_owned()))
        .collect();
        want.sort();
        assert_eq!(got, want);
        for d in &objs {
            assert!(d.applied_hash().is_some());
            assert_eq!(d.object["metadata"]["namespace"], "ns");
            assert_eq!(
                d.object["metadata"]["ownerReferences"][0]["uid"],
                "uid-demo"
            );
            assert_eq!(
                d.object["metadata"]["labels"]["app.kubernetes.io/managed-by"],
                "authstack-operator"
            );
            assert!(d.object["apiVersion"].is_string() && d.object["kind"].is_string());
        }
        assert!(obsolete(&s).is_empty());
    }

    #[test]
    fn external_database_and_single_replicas_drop_objects() {
        let s = settings_with(|st| {
            st.spec.postgres = PostgresSpec {
                managed: None,
                external: Some(ExternalSpec {
                    secret_ref: SecretKeyRef {
                        name: "db".into(),
                        key: "url".into(),
                    },
                }),
            };
            st.spec.gateway.replicas = 1;
        });
        let mq = RabbitmqCredentials::reuse_or_generate(None);
        let ring = ring();
        let inputs = Inputs {
            postgres: None,
            auth_svc_database: None,
            rabbitmq: Some(&mq),
            ring: &ring,
            urls: UrlFingerprints::default(),
        };
        let names = kinds_and_names(&desired(&s, &inputs).unwrap());
        assert!(!names.iter().any(|(_, n)| n == "demo-postgres"));
        assert!(!names.iter().any(|(_, n)| n == "demo-auth-svc-db"));
        assert!(!names.contains(&("PodDisruptionBudget".into(), "demo-gateway".into())));
        let gone: Vec<_> = obsolete(&s)
            .into_iter()
            .map(|o| (o.resource.kind, o.name))
            .collect();
        for kind in [
            "StatefulSet",
            "Service",
            "Secret",
            "ServiceAccount",
            "NetworkPolicy",
        ] {
            assert!(
                gone.contains(&(kind.into(), "demo-postgres".into())),
                "{kind}"
            );
        }
        assert!(gone.contains(&("PodDisruptionBudget".into(), "demo-gateway".into())));
        assert!(gone.contains(&("Secret".into(), "demo-auth-svc-db".into())));
        assert!(!gone.iter().any(|(_, n)| n == "demo-rabbitmq"));
    }

    #[test]
    fn applied_hash_tracks_content() {
        let s = settings();
        let a = Desired::of(&gateway::service(&s)).unwrap();
        let b = Desired::of(&gateway::service(&s)).unwrap();
        assert_eq!(a.applied_hash(), b.applied_hash());
        let s2 = settings_with(|st| st.spec.gateway.service.port = 81);
        let c = Desired::of(&gateway::service(&s2)).unwrap();
        assert_ne!(a.applied_hash(), c.applied_hash());
    }
}
