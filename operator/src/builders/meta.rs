//! Names, labels, owner references and hashes shared by every builder.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};

use crate::crd::AuthStack;

/// Field manager of every server-side apply, and `app.kubernetes.io/managed-by` value.
pub const MANAGER: &str = "authstack-operator";
/// Value of `app.kubernetes.io/part-of`.
pub const PART_OF: &str = "authstack";
/// Pod template annotation carrying a hash of the configuration that is not in the template.
pub const CONFIG_HASH_ANNOTATION: &str = "authstack.io/config-hash";

/// The components of a stack, with their label values and object-name suffixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Component {
    /// PostgreSQL.
    Postgres,
    /// RabbitMQ.
    Rabbitmq,
    /// The auth service.
    AuthSvc,
    /// The gateway.
    Gateway,
    /// The signing keys (Secret and JWKS ConfigMap).
    Keys,
}

impl Component {
    /// `app.kubernetes.io/name`.
    pub fn app_name(self) -> &'static str {
        match self {
            Component::Postgres => "postgres",
            Component::Rabbitmq => "rabbitmq",
            Component::AuthSvc => "auth-svc",
            Component::Gateway => "gateway",
            Component::Keys => "signing-keys",
        }
    }

    /// `app.kubernetes.io/component`.
    pub fn component(self) -> &'static str {
        match self {
            Component::Postgres => "database",
            Component::Rabbitmq => "message-broker",
            Component::AuthSvc => "auth-service",
            Component::Gateway => "gateway",
            Component::Keys => "signing-keys",
        }
    }
}

/// Object names of one stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    /// The AuthStack's name.
    pub instance: String,
    /// The AuthStack's namespace.
    pub namespace: String,
}

impl Names {
    /// Names for an AuthStack (namespace `default` when unset).
    pub fn of(stack: &AuthStack) -> Self {
        Names {
            instance: stack.name_any(),
            namespace: stack.namespace().unwrap_or_else(|| "default".into()),
        }
    }

    /// `<instance>-postgres` (StatefulSet, Service, Secret, ServiceAccount, NetworkPolicy).
    pub fn postgres(&self) -> String {
        format!("{}-postgres", self.instance)
    }
    /// `<instance>-rabbitmq`.
    pub fn rabbitmq(&self) -> String {
        format!("{}-rabbitmq", self.instance)
    }
    /// `<instance>-rabbitmq-<component>`: a component's own broker credentials.
    pub fn rabbitmq_user(&self, c: authstack_protocol::broker::Component) -> String {
        format!("{}-rabbitmq-{}", self.instance, c.as_str())
    }
    /// `<instance>-auth-svc`.
    pub fn auth_svc(&self) -> String {
        format!("{}-auth-svc", self.instance)
    }
    /// `<instance>-gateway`.
    pub fn gateway(&self) -> String {
        format!("{}-gateway", self.instance)
    }
    /// `<instance>-auth-svc-db` (auth-svc's own database role: the only database Secret it
    /// sees).
    pub fn auth_svc_database(&self) -> String {
        format!("{}-auth-svc-db", self.instance)
    }
    /// `<instance>-signing-keys` (the private key ring Secret).
    pub fn signing_keys(&self) -> String {
        format!("{}-signing-keys", self.instance)
    }
    /// `<instance>-jwks` (public JWKS ConfigMap).
    pub fn jwks(&self) -> String {
        format!("{}-jwks", self.instance)
    }
    /// The name of a component's main objects.
    pub fn of_component(&self, c: Component) -> String {
        match c {
            Component::Postgres => self.postgres(),
            Component::Rabbitmq => self.rabbitmq(),
            Component::AuthSvc => self.auth_svc(),
            Component::Gateway => self.gateway(),
            Component::Keys => self.signing_keys(),
        }
    }
    /// In-cluster DNS name of a Service.
    pub fn service_host(&self, service: &str) -> String {
        format!("{service}.{}.svc", self.namespace)
    }
}

/// Labels selecting a component's pods (stable: used in immutable selectors).
pub fn selector_labels(names: &Names, c: Component) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), c.app_name().to_owned()),
        (
            "app.kubernetes.io/instance".to_owned(),
            names.instance.clone(),
        ),
    ])
}

/// Every standard label of a component's objects.
pub fn labels(names: &Names, c: Component) -> BTreeMap<String, String> {
    let mut l = selector_labels(names, c);
    l.insert("app.kubernetes.io/component".into(), c.component().into());
    l.insert("app.kubernetes.io/part-of".into(), PART_OF.into());
    l.insert("app.kubernetes.io/managed-by".into(), MANAGER.into());
    l
}

/// The label selector of every object the operator manages (used to scope its watches).
pub fn managed_by_selector() -> String {
    format!("app.kubernetes.io/managed-by={MANAGER}")
}

/// A `LabelSelector` matching a component's pods.
pub fn pod_selector(names: &Names, c: Component) -> LabelSelector {
    LabelSelector {
        match_labels: Some(selector_labels(names, c)),
        match_expressions: None,
    }
}

/// The controller owner reference to the AuthStack (`controller` and `blockOwnerDeletion` set).
pub fn owner_reference(stack: &AuthStack) -> Option<OwnerReference> {
    let mut owner = stack.controller_owner_ref(&())?;
    owner.controller = Some(true);
    owner.block_owner_deletion = Some(true);
    Some(owner)
}

/// Metadata of a managed object: name, namespace, labels and the owner reference.
pub fn object_meta(
    names: &Names,
    name: impl Into<String>,
    c: Component,
    owner: &OwnerReference,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(names.namespace.clone()),
        labels: Some(labels(names, c)),
        owner_references: Some(vec![owner.clone()]),
        ..ObjectMeta::default()
    }
}

/// Whether `meta` carries a controller owner reference to the object with `uid`.
pub fn is_controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|r| r.uid == uid && r.controller == Some(true))
}

/// Short, stable hex digest of some bytes (first 16 hex characters of SHA-256).
pub fn short_hash(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    hex::encode(&h.finalize()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::test_support::stack;

    #[test]
    fn names_and_labels() {
        let s = stack("demo", "team-a");
        let n = Names::of(&s);
        assert_eq!(n.postgres(), "demo-postgres");
        assert_eq!(n.auth_svc(), "demo-auth-svc");
        assert_eq!(n.service_host(&n.gateway()), "demo-gateway.team-a.svc");
        let l = labels(&n, Component::AuthSvc);
        assert_eq!(l["app.kubernetes.io/name"], "auth-svc");
        assert_eq!(l["app.kubernetes.io/instance"], "demo");
        assert_eq!(l["app.kubernetes.io/component"], "auth-service");
        assert_eq!(l["app.kubernetes.io/part-of"], "authstack");
        assert_eq!(l["app.kubernetes.io/managed-by"], "authstack-operator");
    }

    #[test]
    fn owner_reference_is_a_controller_reference() {
        let s = stack("demo", "team-a");
        let o = owner_reference(&s).unwrap();
        assert_eq!(o.kind, "AuthStack");
        assert_eq!(o.api_version, "authstack.io/v1alpha1");
        assert_eq!(o.controller, Some(true));
        assert_eq!(o.block_owner_deletion, Some(true));
        let meta = object_meta(&Names::of(&s), "x", Component::Gateway, &o);
        assert!(is_controlled_by(&meta, "uid-demo"));
        assert!(!is_controlled_by(&meta, "someone-else"));
    }

    #[test]
    fn hashes_are_stable_and_unambiguous() {
        assert_eq!(short_hash(&[b"a", b"bc"]), short_hash(&[b"a", b"bc"]));
        assert_ne!(short_hash(&[b"ab", b"c"]), short_hash(&[b"a", b"bc"]));
        assert_eq!(short_hash(&[b"x"]).len(), 16);
    }
}
