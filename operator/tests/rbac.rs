//! The chart's RBAC, enforced by the real RBAC authorizer: by default the operator, running as
//! the chart's ServiceAccount, works in the namespaces it watches (the release namespace, or
//! `watchNamespaces`) and is refused everywhere else; cluster-wide permissions only with
//! `clusterWide=true`.

mod common;

use authstack_testkit::k8s;
use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

fn secret(name: &str) -> Secret {
    serde_json::from_value(json!({"metadata": {"name": name}})).unwrap()
}

/// What the operator's ServiceAccount may do in `ns`: (list Secrets, create a Secret, list
/// Deployments), each Ok or the HTTP status of the refusal.
async fn permissions(sa: &Client, ns: &str) -> [Result<(), u16>; 3] {
    let code = |e: kube::Error| match e {
        kube::Error::Api(s) => s.code,
        other => panic!("{other}"),
    };
    let secrets: Api<Secret> = Api::namespaced(sa.clone(), ns);
    let deployments: Api<Deployment> = Api::namespaced(sa.clone(), ns);
    [
        secrets
            .list(&ListParams::default())
            .await
            .map(drop)
            .map_err(code),
        secrets
            .create(&PostParams::default(), &secret("probe"))
            .await
            .map(drop)
            .map_err(code),
        deployments
            .list(&ListParams::default())
            .await
            .map(drop)
            .map_err(code),
    ]
}

/// A cluster-wide operator reconciles the AuthStacks of every test in this binary: its test
/// runs alone (write), the others together (read).
static CLUSTER_WIDE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

const REFUSED: [Result<(), u16>; 3] = [Err(403), Err(403), Err(403)];
const ALLOWED: [Result<(), u16>; 3] = [Ok(()), Ok(()), Ok(())];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_the_operator_works_in_its_namespace_and_is_refused_outside_it() {
    let _alone = CLUSTER_WIDE.read().await;
    let h = Harness::new("rbac-default").await;
    let elsewhere = h.other_namespace("rbac-elsewhere").await;
    let op = h.operator("op-0");
    op.wait_role("leader").await;
    // Applied first: a cluster-wide operator would reconcile it alongside the other.
    h.try_apply_stack(&elsewhere, "outside", json!({}))
        .await
        .unwrap();
    h.apply_stack("inside", json!({})).await;
    h.converged("inside").await;

    let sa = k8s::client_from(&h.operator_kubeconfig).await.unwrap();
    assert_eq!(permissions(&sa, &elsewhere).await, REFUSED);
    let all_secrets: Api<Secret> = Api::all(sa.clone());
    let status = api_error(all_secrets.list(&ListParams::default()).await);
    assert_eq!(status.code, 403, "{status:?}");
    assert_eq!(permissions(&sa, h.ns()).await, ALLOWED);

    let outside = h
        .get_in("authstack.io/v1alpha1", "AuthStack", &elsewhere, "outside")
        .await
        .unwrap();
    assert!(
        outside["status"].is_null(),
        "reconciled outside its namespace: {outside}"
    );
    assert!(
        h.get_in("apps/v1", "Deployment", &elsewhere, "outside-gateway")
            .await
            .is_none()
    );
    let logs = op.logs();
    assert!(
        !logs.contains("forbidden"),
        "the operator hit a refusal:\n{logs}"
    );
    assert!(op.stop().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_namespaces_get_a_role_each_and_nothing_else() {
    let _alone = CLUSTER_WIDE.read().await;
    let cp = authstack_testkit::k8s::ControlPlane::shared().await;
    let (a, b) = (
        cp.namespace("rbac-team-a").await.unwrap(),
        cp.namespace("rbac-team-b").await.unwrap(),
    );
    let list = format!("watchNamespaces={{{},{}}}", a.name(), b.name());
    let h = Harness::with("rbac-list", true, &[&list]).await;
    let op = h.operator("op-0");
    op.wait_role("leader").await;
    h.try_apply_stack(h.ns(), "release-ns", json!({}))
        .await
        .unwrap();
    for ns in [a.name(), b.name()] {
        h.try_apply_stack(ns, "demo", json!({})).await.unwrap();
    }
    for ns in [a.name(), b.name()] {
        eventually(&format!("the stack in {ns} to converge"), SLOW, || async {
            let s = h
                .get_in("authstack.io/v1alpha1", "AuthStack", ns, "demo")
                .await?;
            let gw = h.get_in("apps/v1", "Deployment", ns, "demo-gateway").await;
            (s["status"]["keys"]["activeKid"].is_string() && gw.is_some()).then_some(())
        })
        .await;
    }
    let sa = k8s::client_from(&h.operator_kubeconfig).await.unwrap();
    assert_eq!(permissions(&sa, a.name()).await, ALLOWED);
    assert_eq!(permissions(&sa, b.name()).await, ALLOWED);
    // The release namespace holds only the Lease: nothing of a stack there.
    assert_eq!(permissions(&sa, h.ns()).await, REFUSED);
    let unwatched = h.stack_json("release-ns").await.unwrap();
    assert!(unwatched["status"].is_null(), "{unwatched}");
    assert!(op.stop().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_wide_only_when_asked() {
    let _alone = CLUSTER_WIDE.write().await;
    let h = Harness::with("rbac-cluster", true, &["clusterWide=true"]).await;
    let elsewhere = h.other_namespace("rbac-anywhere").await;
    let op = h.operator("op-0");
    op.wait_role("leader").await;
    h.try_apply_stack(&elsewhere, "anywhere", json!({}))
        .await
        .unwrap();
    eventually(
        "the stack in another namespace to converge",
        SLOW,
        || async {
            let s = h
                .get_in("authstack.io/v1alpha1", "AuthStack", &elsewhere, "anywhere")
                .await?;
            let gw = h
                .get_in("apps/v1", "Deployment", &elsewhere, "anywhere-gateway")
                .await;
            (s["status"]["keys"]["activeKid"].is_string() && gw.is_some()).then_some(())
        },
    )
    .await;
    let sa = k8s::client_from(&h.operator_kubeconfig).await.unwrap();
    assert_eq!(permissions(&sa, &elsewhere).await, ALLOWED);
    assert!(op.stop().await.success());
}
