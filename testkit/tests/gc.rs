//! Finalizers, owner-reference garbage collection and namespace termination.

mod common;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

async fn cm_owned_by(cms: &Api<ConfigMap>, name: &str, owners: &[(&str, &str)]) -> ConfigMap {
    let refs: Vec<_> = owners
        .iter()
        .map(|(n, uid)| json!({"apiVersion": "v1", "kind": "Secret", "name": n, "uid": uid}))
        .collect();
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": name, "ownerReferences": refs}}))
            .unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap()
}

async fn secret(api: &Api<Secret>, name: &str, finalizers: &[&str]) -> Secret {
    let s: Secret =
        serde_json::from_value(json!({"metadata": {"name": name, "finalizers": finalizers}}))
            .unwrap();
    api.create(&PostParams::default(), &s).await.unwrap()
}

#[tokio::test]
async fn finalizers_block_deletion_until_removed() {
    let (server, client) = common::start().await;
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    let s = secret(&secrets, "s", &["example.com/cleanup"]).await;
    let res = secrets.delete("s", &DeleteParams::default()).await.unwrap();
    let pending = res.left().expect("object returned while finalizers pend");
    assert!(pending.metadata.deletion_timestamp.is_some());
    assert!(pending.resource_version() != s.resource_version());
    // still readable; new finalizers are rejected
    assert!(
        secrets
            .get("s")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );
    let err = common::status(
        secrets
            .patch(
                "s",
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"metadata": {"finalizers": ["example.com/cleanup", "x.io/new"]}}),
                ),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    assert!(
        err.message
            .contains("no new finalizers can be added if the object is being deleted"),
        "{}",
        err.message
    );
    // removing the last finalizer deletes it
    secrets
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    assert!(secrets.get_opt("s").await.unwrap().is_none());
    assert!(server.get("v1", "secrets", None, "s").is_none());
}

#[tokio::test]
async fn owner_cascade_background_orphan_and_multiple_owners() {
    let (server, client) = common::start().await;
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let o1 = secret(&secrets, "o1", &[]).await;
    let o2 = secret(&secrets, "o2", &[]).await;
    let u1 = o1.uid().unwrap();
    let u2 = o2.uid().unwrap();
    cm_owned_by(&cms, "only-o1", &[("o1", &u1)]).await;
    cm_owned_by(&cms, "both", &[("o1", &u1), ("o2", &u2)]).await;
    // grandchild owned by a child: recursive cascade
    let child = cms.get("only-o1").await.unwrap();
    let gc: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "grandchild", "ownerReferences": [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "only-o1", "uid": child.uid().unwrap()}
    ]}}))
    .unwrap();
    cms.create(&PostParams::default(), &gc).await.unwrap();

    secrets
        .delete("o1", &DeleteParams::background())
        .await
        .unwrap();
    assert!(cms.get_opt("only-o1").await.unwrap().is_none());
    assert!(cms.get_opt("grandchild").await.unwrap().is_none());
    let both = cms.get("both").await.unwrap();
    let refs = both.owner_references();
    assert_eq!(refs.len(), 1, "dangling reference dropped, object kept");
    assert_eq!(refs[0].uid, u2);

    // orphan keeps dependents and strips the reference
    secrets.delete("o2", &DeleteParams::orphan()).await.unwrap();
    let both = cms.get("both").await.unwrap();
    assert!(both.owner_references().is_empty());
    assert_eq!(server.list("v1", "ConfigMap", Some("default")).len(), 1);
}

#[tokio::test]
async fn cascade_respects_dependent_finalizers_and_foreground() {
    let (_server, client) = common::start().await;
    let deps: Api<Deployment> = Api::default_namespaced(client.clone());
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "owner"},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]}}}
    }))
    .unwrap();
    let d = deps.create(&PostParams::default(), &d).await.unwrap();
    let dep: Secret = serde_json::from_value(json!({"metadata": {"name": "dep", "finalizers": ["x.io/f"],
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "owner", "uid": d.uid().unwrap(),
            "controller": true, "blockOwnerDeletion": true}]}}))
    .unwrap();
    secrets.create(&PostParams::default(), &dep).await.unwrap();
    let res = deps
        .delete("owner", &DeleteParams::foreground())
        .await
        .unwrap();
    assert!(res.is_right(), "deployments answer with a Status");
    let dep = secrets.get("dep").await.unwrap();
    assert!(
        dep.metadata.deletion_timestamp.is_some(),
        "dependent marked for deletion"
    );
    secrets
        .patch(
            "dep",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": []}})),
        )
        .await
        .unwrap();
    assert!(secrets.get_opt("dep").await.unwrap().is_none());
}

#[tokio::test]
async fn namespace_deletion_removes_content() {
    let (_server, client) = common::start().await;
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "team"}})).unwrap(),
    )
    .await
    .unwrap();
    let ns = nss.get("team").await.unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Active"));
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "team");
    secret(&secrets, "plain", &[]).await;
    secret(&secrets, "held", &["x.io/hold"]).await;
    let res = nss.delete("team", &DeleteParams::default()).await.unwrap();
    let ns = res.left().expect("namespace object");
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Terminating"));
    assert!(secrets.get_opt("plain").await.unwrap().is_none());
    // new content is refused while terminating
    let s: Secret = serde_json::from_value(json!({"metadata": {"name": "late"}})).unwrap();
    let err = common::status(
        secrets
            .create(&PostParams::default(), &s)
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (403, "Forbidden"));
    // releasing the last finalizer lets the namespace go
    secrets
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    assert!(nss.get_opt("team").await.unwrap().is_none());
}
