//! `kubectl apply --server-side` and `kubectl delete` for multi-document YAML, on kube-rs
//! (types resolved through discovery, so any kind the server serves works).

use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{self, Scope};
use kube::{Api, Client, ResourceExt};
use serde::Deserialize;

use super::ClusterError;

/// The documents of a YAML stream that are objects (empty documents skipped).
fn documents(yaml: &str) -> Result<Vec<DynamicObject>, ClusterError> {
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let value = serde_yaml::Value::deserialize(doc)
            .map_err(|e| ClusterError::Manifest(e.to_string()))?;
        if value.is_null() {
            continue;
        }
        let obj: DynamicObject =
            serde_yaml::from_value(value).map_err(|e| ClusterError::Manifest(e.to_string()))?;
        out.push(obj);
    }
    Ok(out)
}

/// The API of an object's type, namespaced where the type is (the object's namespace, else
/// `default`).
async fn api_for(client: &Client, obj: &DynamicObject) -> Result<Api<DynamicObject>, ClusterError> {
    let types = obj.types.as_ref().ok_or_else(|| {
        ClusterError::Manifest(format!("{} has no apiVersion/kind", obj.name_any()))
    })?;
    let gvk =
        GroupVersionKind::try_from(types).map_err(|e| ClusterError::Manifest(e.to_string()))?;
    let (resource, caps) = discovery::pinned_kind(client, &gvk).await?;
    Ok(match caps.scope {
        Scope::Namespaced => Api::namespaced_with(
            client.clone(),
            obj.metadata.namespace.as_deref().unwrap_or("default"),
            &resource,
        ),
        Scope::Cluster => Api::all_with(client.clone(), &resource),
    })
}

/// Server-side applies every object of `yaml` as `field_manager` (forced), in order.
pub async fn apply_yaml(
    client: &Client,
    yaml: &str,
    field_manager: &str,
) -> Result<Vec<DynamicObject>, ClusterError> {
    let mut applied = Vec::new();
    for obj in documents(yaml)? {
        let api = api_for(client, &obj).await?;
        let params = PatchParams::apply(field_manager).force();
        applied.push(
            api.patch(&obj.name_any(), &params, &Patch::Apply(&obj))
                .await?,
        );
    }
    Ok(applied)
}

/// Deletes every object of `yaml` that exists (in reverse order).
pub async fn delete_yaml(client: &Client, yaml: &str) -> Result<(), ClusterError> {
    for obj in documents(yaml)?.iter().rev() {
        let api = api_for(client, obj).await?;
        match api.delete(&obj.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
