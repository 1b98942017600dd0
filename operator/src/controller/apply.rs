//! Phase 4, apply: write the signing-key Secret (only when the ring changed, conditional on the
//! resourceVersion read), server-side apply every desired object that drifted, delete the ones
//! that must not exist (only if this AuthStack controls them).

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{
    Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams, Preconditions,
    PropagationPolicy,
};
use kube::core::ApiResource;
use kube::{Client, ResourceExt};
use serde_json::Value;

use super::dereference::NotOwned;
use super::stores::Stores;
use crate::builders::meta::{MANAGER, is_controlled_by};
use crate::builders::stack::{APPLIED_HASH_ANNOTATION, Desired, Obsolete};
use crate::crd::AuthStack;
use crate::keys::{self, KeyPlan};
use crate::metrics;
use crate::settings::Settings;

/// Errors of the apply phase.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A write to the API server failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// An object of a name the stack needs is not controlled by this AuthStack.
    #[error(transparent)]
    NotOwned(#[from] NotOwned),
    /// The signing-key Secret kept changing under the operator.
    #[error("Secret {0} changed concurrently while the key ring was being written")]
    KeyRingConflict(String),
}

/// What an apply did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The object did not exist.
    Created,
    /// The object changed.
    Updated,
    /// Nothing to do.
    Unchanged,
}

impl Outcome {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Updated => "updated",
            Outcome::Unchanged => "unchanged",
        }
    }
}

/// Whether every field of `desired` has the same value in `live` (objects: key by key; arrays:
/// same length, element by element; scalars: equal). Fields only in `live` (defaults, status,
/// other managers' fields) are ignored.
pub fn is_subset(desired: &Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => d
            .iter()
            .all(|(k, dv)| l.get(k).is_some_and(|lv| is_subset(dv, lv))),
        (Value::Array(d), Value::Array(l)) => {
            d.len() == l.len() && d.iter().zip(l).all(|(dv, lv)| is_subset(dv, lv))
        }
        (Value::Number(d), Value::Number(l)) => d.as_f64() == l.as_f64(),
        (d, l) => d == l,
    }
}

/// Whether the live object already matches what we would apply.
pub fn up_to_date(desired: &Desired, live: &DynamicObject) -> bool {
    let live_hash = live
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(APPLIED_HASH_ANNOTATION))
        .map(String::as_str);
    if live_hash != desired.applied_hash() {
        return false;
    }
    serde_json::to_value(live).is_ok_and(|l| is_subset(&desired.object, &l))
}

fn api(client: &Client, namespace: &str, kind: &ApiResource) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, kind)
}

/// Applies `desired` (field manager `authstack-operator`, forced) unless the live object is
/// already up to date. Refuses to touch an object this AuthStack does not control.
pub async fn apply(
    client: &Client,
    stores: &Stores,
    namespace: &str,
    owner_uid: &str,
    desired: &Desired,
) -> Result<(Outcome, DynamicObject), ApplyError> {
    let live = stores
        .live(client, &desired.resource, namespace, &desired.name)
        .await?;
    if let Some(live) = &live {
        if !is_controlled_by(&live.metadata, owner_uid) {
            return Err(NotOwned {
                kind: desired.resource.kind.clone(),
                name: desired.name.clone(),
            }
            .into());
        }
        if up_to_date(desired, live) {
            return Ok((Outcome::Unchanged, live.clone()));
        }
    }
    let params = PatchParams::apply(MANAGER).force();
    let applied = api(client, namespace, &desired.resource)
        .patch(&desired.name, &params, &Patch::Apply(&desired.object))
        .await?;
    let outcome = match &live {
        None => Outcome::Created,
        Some(l) if l.metadata.resource_version != applied.metadata.resource_version => {
            Outcome::Updated
        }
        Some(_) => Outcome::Unchanged,
    };
    Ok((outcome, applied))
}

/// Deletes an object that must not exist, if this AuthStack controls it. Returns whether a
/// deletion was issued.
pub async fn delete_if_owned(
    client: &Client,
    stores: &Stores,
    namespace: &str,
    owner_uid: &str,
    obsolete: &Obsolete,
) -> Result<bool, ApplyError> {
    let Some(live) = stores
        .live(client, &obsolete.resource, namespace, &obsolete.name)
        .await?
    else {
        return Ok(false);
    };
    if !is_controlled_by(&live.metadata, owner_uid) {
        tracing::debug!(kind = %obsolete.resource.kind, name = %obsolete.name, "not ours; leaving it");
        return Ok(false);
    }
    if live.metadata.deletion_timestamp.is_some() {
        return Ok(false);
    }
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        preconditions: Some(Preconditions {
            uid: live.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api(client, namespace, &obsolete.resource)
        .delete(&obsolete.name, &params)
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Whether the AuthStack was deleted (or replaced by a new one of the same name). A GET, not
/// the store: this decides whether to remove what the reconcile just wrote.
pub async fn owner_gone(client: &Client, stack: &AuthStack) -> Result<bool, ApplyError> {
    let Some(ns) = stack.namespace() else {
        return Ok(false);
    };
    let api: Api<AuthStack> = Api::namespaced(client.clone(), &ns);
    Ok(match api.get_opt(&stack.name_any()).await? {
        None => true,
        Some(live) => {
            live.metadata.uid != stack.metadata.uid || live.metadata.deletion_timestamp.is_some()
        }
    })
}

/// What writing the key ring did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyRingWrite {
    /// The ring did not change: nothing written.
    Unchanged,
    /// The Secret was created or replaced.
    Written,
    /// Someone else wrote the Secret since it was read: read again and re-plan.
    Conflict,
}

/// Writes the signing-key Secret when `plan` changed the ring: create if `stored` is absent,
/// else replace conditional on its resourceVersion.
pub async fn write_key_ring(
    client: &Client,
    settings: &Settings,
    stored: Option<&Secret>,
    plan: &KeyPlan,
) -> Result<KeyRingWrite, ApplyError> {
    if !plan.changed {
        return Ok(KeyRingWrite::Unchanged);
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &settings.names.namespace);
    let pp = PostParams {
        field_manager: Some(MANAGER.into()),
        ..PostParams::default()
    };
    let mut secret = keys::signing_secret(settings, &plan.ring);
    let written = match stored {
        None => secrets.create(&pp, &secret).await,
        Some(e) => {
            secret.metadata.resource_version = e.metadata.resource_version.clone();
            secrets
                .replace(&settings.names.signing_keys(), &pp, &secret)
                .await
        }
    };
    match written {
        Ok(_) => Ok(KeyRingWrite::Written),
        Err(kube::Error::Api(s)) if s.is_conflict() || s.is_already_exists() => {
            Ok(KeyRingWrite::Conflict)
        }
        Err(e) => Err(e.into()),
    }
}

/// What applying the objects did.
#[derive(Debug, Default)]
pub struct Applied {
    /// `Created` / `Updated` / `Deleted` → `"<Kind> <name>"` of each object changed.
    pub changes: BTreeMap<&'static str, Vec<String>>,
    /// The live state of every desired object after the apply, by (kind, name).
    pub live: HashMap<(String, String), DynamicObject>,
}

impl Applied {
    /// The live object of `kind` named `name`.
    pub fn get(&self, kind: &str, name: &str) -> Option<&DynamicObject> {
        self.live.get(&(kind.to_owned(), name.to_owned()))
    }
}

/// Applies every desired object and deletes every obsolete one the stack controls.
pub async fn apply_all(
    client: &Client,
    stores: &Stores,
    namespace: &str,
    owner_uid: &str,
    desired: &[Desired],
    obsolete: &[Obsolete],
) -> Result<Applied, ApplyError> {
    let mut out = Applied::default();
    for d in desired {
        let (outcome, obj) = apply(client, stores, namespace, owner_uid, d).await?;
        let what = format!("{} {}", d.resource.kind, d.name);
        match outcome {
            Outcome::Created => out.changes.entry("Created").or_default().push(what),
            Outcome::Updated => out.changes.entry("Updated").or_default().push(what),
            Outcome::Unchanged => {}
        }
        ::metrics::counter!(
            metrics::APPLIES,
            "kind" => d.resource.kind.clone(),
            "outcome" => outcome.label()
        )
        .increment(1);
        out.live
            .insert((d.resource.kind.clone(), d.name.clone()), obj);
    }
    for gone in obsolete {
        if delete_if_owned(client, stores, namespace, owner_uid, gone).await? {
            out.changes
                .entry("Deleted")
                .or_default()
                .push(format!("{} {}", gone.resource.kind, gone.name));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn subset_ignores_extra_live_fields_only() {
        let desired = json!({"spec": {"replicas": 2, "ports": [{"port": 80}]}});
        let live = json!({"spec": {"replicas": 2, "ports": [{"port": 80, "protocol": "TCP"}], "x": 1}, "status": {}});
        assert!(is_subset(&desired, &live));
        assert!(!is_subset(&json!({"spec": {"replicas": 3}}), &live));
        assert!(!is_subset(&json!({"spec": {"ports": []}}), &live));
        assert!(!is_subset(&json!({"spec": {"missing": null}}), &live));
        assert!(is_subset(&json!({"n": 1.0}), &json!({"n": 1})));
    }

    #[test]
    fn up_to_date_needs_the_same_hash_and_content() {
        let secret = k8s_openapi::api::core::v1::Secret {
            metadata: kube::api::ObjectMeta {
                name: Some("s".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let desired = Desired::of(&secret).unwrap();
        let live: DynamicObject = serde_json::from_value(desired.object.clone()).unwrap();
        assert!(up_to_date(&desired, &live));
        let mut drifted = live.clone();
        drifted.data["type"] = json!("kubernetes.io/tls");
        let mut desired_typed = desired.clone();
        desired_typed.object["type"] = json!("Opaque");
        assert!(!up_to_date(&desired_typed, &drifted));
        let mut old = live;
        old.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(APPLIED_HASH_ANNOTATION.into(), "old".into());
        assert!(!up_to_date(&desired, &old));
    }
}
