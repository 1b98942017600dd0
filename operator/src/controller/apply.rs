//! Server-side apply of desired objects, deletion of obsolete ones, and the drift check that
//! avoids needless writes.

use kube::Client;
use kube::api::{
    Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use serde_json::Value;

use crate::builders::meta::{MANAGER, is_controlled_by};
use crate::builders::stack::{APPLIED_HASH_ANNOTATION, Desired, Obsolete};
use crate::error::{Error, Result};

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

fn api(client: &Client, namespace: &str, d: &kube::core::ApiResource) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, d)
}

/// Applies `desired` (field manager `authstack-operator`, forced) unless the live object is
/// already up to date. Refuses to touch an object this AuthStack does not control.
pub async fn apply(
    client: &Client,
    namespace: &str,
    owner_uid: &str,
    desired: &Desired,
) -> Result<(Outcome, DynamicObject)> {
    let api = api(client, namespace, &desired.resource);
    let live = api.get_opt(&desired.name).await?;
    if let Some(live) = &live {
        if !is_controlled_by(&live.metadata, owner_uid) {
            return Err(Error::NotOwned {
                kind: desired.resource.kind.clone(),
                name: desired.name.clone(),
            });
        }
        if up_to_date(desired, live) {
            return Ok((Outcome::Unchanged, live.clone()));
        }
    }
    let params = PatchParams::apply(MANAGER).force();
    let applied = api
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
    namespace: &str,
    owner_uid: &str,
    obsolete: &Obsolete,
) -> Result<bool> {
    let api = api(client, namespace, &obsolete.resource);
    let Some(live) = api.get_opt(&obsolete.name).await? else {
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
    match api.delete(&obsolete.name, &params).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(false),
        Err(e) => Err(e.into()),
    }
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
