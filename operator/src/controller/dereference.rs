//! Phase 2, dereference: read what the build needs from the cluster — the generated
//! credentials (every value found is reused; only missing ones are generated), the users'
//! external URL Secrets, and the stored key ring.

use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, DynamicObject};
use kube::core::ApiResource;
use serde::de::DeserializeOwned;

use super::stores::Stores;
use crate::builders::auth_svc::UrlFingerprints;
use crate::builders::credentials::{
    PostgresCredentials, RabbitmqCredentials, fingerprint_external, fingerprint_managed,
    secret_value,
};
use crate::builders::database_role::AuthSvcDatabaseCredentials;
use crate::builders::meta::{Component, is_controlled_by};
use crate::crd::SecretKeyRef;
use crate::settings::{BackingService, Settings};

/// An object of a name the stack needs exists but is not controlled by this AuthStack: the
/// operator never takes over (or deletes) objects it does not own.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {name} already exists and is not controlled by this AuthStack")]
pub struct NotOwned {
    /// Its kind.
    pub kind: String,
    /// Its name.
    pub name: String,
}

/// An object read from the API server does not have the shape of its kind. The message names
/// the object only: its content may be secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {name} could not be decoded")]
pub struct Undecodable {
    /// Its kind.
    pub kind: String,
    /// Its name.
    pub name: String,
}

/// Errors of the dereference phase.
#[derive(Debug, thiserror::Error)]
pub enum DereferenceError {
    /// Reading from the API server failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A generated-credential Secret's name is taken.
    #[error(transparent)]
    NotOwned(#[from] NotOwned),
    /// An object could not be decoded.
    #[error(transparent)]
    Undecodable(#[from] Undecodable),
}

/// What is wrong with a user's URL Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalProblem {
    /// The backing service ([`Component::Postgres`] or [`Component::Rabbitmq`]).
    pub component: Component,
    /// A sentence naming the Secret and key (never their content).
    pub problem: String,
}

/// Everything read from the cluster.
#[derive(Debug, Default)]
pub struct Dereferenced {
    /// Managed PostgreSQL credentials (`None` when external).
    pub postgres: Option<PostgresCredentials>,
    /// auth-svc's role in the managed PostgreSQL (`None` when external).
    pub auth_svc_database: Option<AuthSvcDatabaseCredentials>,
    /// Managed RabbitMQ credentials (`None` when external).
    pub rabbitmq: Option<RabbitmqCredentials>,
    /// Fingerprints of the URL sources (a change rolls the pods).
    pub urls: UrlFingerprints,
    /// Problems with users' URL Secrets (the stack is then `Degraded`, and retried).
    pub external_problems: Vec<ExternalProblem>,
    /// The signing-key Secret as stored, if any.
    pub signing_secret: Option<Secret>,
}

/// Decodes a dynamic object into its typed form.
pub fn typed<K: DeserializeOwned>(obj: &DynamicObject, kind: &str) -> Result<K, Undecodable> {
    serde_json::to_value(obj)
        .and_then(serde_json::from_value)
        .map_err(|_| Undecodable {
            kind: kind.to_owned(),
            name: obj.metadata.name.clone().unwrap_or_default(),
        })
}

fn secret_kind() -> ApiResource {
    ApiResource::erase::<Secret>(&())
}

/// Where to read an object from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Read {
    /// The store (one GET when absent).
    Cached,
    /// A GET (after a conflict, when the store may lag).
    Fresh,
}

/// Reads a Secret the stack owns. An existing Secret of that name that it does not control is
/// an error (never adopted, never overwritten).
pub async fn owned_secret(
    client: &Client,
    stores: &Stores,
    namespace: &str,
    name: &str,
    uid: &str,
    read: Read,
) -> Result<Option<Secret>, DereferenceError> {
    let kind = secret_kind();
    let live = match read {
        Read::Cached => stores.live(client, &kind, namespace, name).await?,
        Read::Fresh => {
            Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &kind)
                .get_opt(name)
                .await?
        }
    };
    match live {
        None => Ok(None),
        Some(obj) if !is_controlled_by(&obj.metadata, uid) => Err(NotOwned {
            kind: kind.kind,
            name: name.into(),
        }
        .into()),
        Some(obj) => Ok(Some(typed(&obj, &kind.kind)?)),
    }
}

/// Fingerprint of a user's URL Secret; what is wrong with it goes to `problems`. These Secrets
/// carry no operator label, so they are not watched: a GET, and a retry while something is
/// wrong.
async fn check_external(
    client: &Client,
    namespace: &str,
    component: Component,
    r: &SecretKeyRef,
    problems: &mut Vec<ExternalProblem>,
) -> Result<String, DereferenceError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let (fingerprint, problem) = match secrets.get_opt(&r.name).await? {
        None => (
            "absent".into(),
            Some(format!("Secret {} not found", r.name)),
        ),
        Some(s) if secret_value(Some(&s), &r.key).is_none() => (
            fingerprint_external(&s),
            Some(format!("Secret {} has no key {}", r.name, r.key)),
        ),
        Some(s) => (fingerprint_external(&s), None),
    };
    problems.extend(problem.map(|problem| ExternalProblem { component, problem }));
    Ok(fingerprint)
}

/// Reads everything the build of `settings` needs.
pub async fn dereference(
    client: &Client,
    stores: &Stores,
    settings: &Settings,
    uid: &str,
) -> Result<Dereferenced, DereferenceError> {
    let names = &settings.names;
    let ns = names.namespace.as_str();
    let mut out = Dereferenced::default();
    match &settings.postgres {
        BackingService::Managed(_) => {
            let existing =
                owned_secret(client, stores, ns, &names.postgres(), uid, Read::Cached).await?;
            out.postgres = Some(PostgresCredentials::reuse_or_generate(existing.as_ref()));
            let existing = owned_secret(
                client,
                stores,
                ns,
                &names.auth_svc_database(),
                uid,
                Read::Cached,
            )
            .await?;
            let role = AuthSvcDatabaseCredentials::reuse_or_generate(existing.as_ref());
            // auth-svc's URL is its role's: a new password rolls its pods.
            out.urls.postgres = fingerprint_managed(&role.password);
            out.auth_svc_database = Some(role);
        }
        BackingService::External(r) => {
            out.urls.postgres = check_external(
                client,
                ns,
                Component::Postgres,
                r,
                &mut out.external_problems,
            )
            .await?;
        }
    }
    match &settings.rabbitmq {
        BackingService::Managed(_) => {
            let existing =
                owned_secret(client, stores, ns, &names.rabbitmq(), uid, Read::Cached).await?;
            let creds = RabbitmqCredentials::reuse_or_generate(existing.as_ref());
            out.urls.rabbitmq = fingerprint_managed(&creds.password);
            out.rabbitmq = Some(creds);
        }
        BackingService::External(r) => {
            out.urls.rabbitmq = check_external(
                client,
                ns,
                Component::Rabbitmq,
                r,
                &mut out.external_problems,
            )
            .await?;
        }
    }
    out.signing_secret =
        owned_secret(client, stores, ns, &names.signing_keys(), uid, Read::Cached).await?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::ByteString;
    use serde_json::json;

    use super::*;

    #[test]
    fn decoding_errors_never_echo_content() {
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s"},
            "data": {"k": 12345678},
            "type": "Opaque-PRIVATE-VALUE",
        }))
        .unwrap();
        let err = typed::<Secret>(&obj, "Secret").unwrap_err().to_string();
        assert_eq!(err, "Secret s could not be decoded");
        let ok: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s"},
            "data": {"k": "dg=="},
        }))
        .unwrap();
        let secret: Secret = typed(&ok, "Secret").unwrap();
        assert_eq!(secret.data.unwrap()["k"], ByteString(b"v".to_vec()));
    }
}
