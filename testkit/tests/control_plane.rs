//! The control plane the operator tests run on does what they rely on: workloads become
//! Ready through the real controllers and kwok, volume claims are provisioned and bound,
//! ServiceAccount tokens authenticate and RBAC refuses what is not granted, and a deleted
//! namespace goes away with everything in it.

use std::time::Duration;

use authstack_testkit::k8s::{ControlPlane, apply_yaml, client_from, delete_namespace};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use kube::Api;
use kube::api::PostParams;

async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A Deployment `web` of two replicas in `ns`.
fn web_deployment(ns: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {ns}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec: {{containers: [{{name: web, image: example.com/web:1}}]}}
"#
    )
}

#[tokio::test]
async fn workloads_become_ready_and_volumes_bind() {
    let cp = ControlPlane::shared().await;
    assert!(cp.version().starts_with("v1."), "{}", cp.version());
    let ns = cp.namespace("workloads").await.unwrap();
    let client = cp.client().await.unwrap();
    let manifest = web_deployment(ns.name())
        + &format!(
            r#"---
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: db, namespace: {ns}}}
spec:
  serviceName: db
  replicas: 1
  selector: {{matchLabels: {{app: db}}}}
  template:
    metadata: {{labels: {{app: db}}}}
    spec: {{containers: [{{name: db, image: example.com/db:1}}]}}
  volumeClaimTemplates:
    - metadata: {{name: data}}
      spec: {{accessModes: [ReadWriteOnce], resources: {{requests: {{storage: 1Gi}}}}}}
"#,
            ns = ns.name()
        );
    apply_yaml(&client, &manifest, "test").await.unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns.name());
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), ns.name());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns.name());
    eventually(
        "the Deployment to be available",
        Duration::from_secs(60),
        || async {
            let d = deployments.get("web").await.ok()?;
            (d.status?.available_replicas? == 2).then_some(())
        },
    )
    .await;
    eventually(
        "the StatefulSet to be ready",
        Duration::from_secs(60),
        || async {
            let s = statefulsets.get("db").await.ok()?;
            (s.status?.ready_replicas? == 1).then_some(())
        },
    )
    .await;
    let claim = claims.get("data-db-0").await.unwrap();
    assert_eq!(claim.status.unwrap().phase.as_deref(), Some("Bound"));
}

#[tokio::test]
async fn service_account_tokens_are_authorized_by_rbac() {
    let cp = ControlPlane::shared().await;
    let ns = cp.namespace("rbac").await.unwrap();
    let other = cp.namespace("rbac-other").await.unwrap();
    let admin = cp.client().await.unwrap();
    let manifest = format!(
        r#"
apiVersion: v1
kind: ServiceAccount
metadata: {{name: app, namespace: {ns}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: secrets, namespace: {ns}}}
rules: [{{apiGroups: [""], resources: [secrets], verbs: [create, get]}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: secrets, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: secrets}}
subjects: [{{kind: ServiceAccount, name: app, namespace: {ns}}}]
"#,
        ns = ns.name()
    );
    apply_yaml(&admin, &manifest, "test").await.unwrap();
    let dir = std::env::temp_dir().join(format!("authstack-testkit-rbac-{}", std::process::id()));
    let path = cp
        .service_account_kubeconfig(ns.name(), "app", &dir.join("kubeconfig"))
        .await
        .unwrap();
    let app = client_from(&path).await.unwrap();
    let secret = |name: &str| Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let mine: Api<Secret> = Api::namespaced(app.clone(), ns.name());
    mine.create(&PostParams::default(), &secret("allowed"))
        .await
        .unwrap();
    let theirs: Api<Secret> = Api::namespaced(app, other.name());
    match theirs
        .create(&PostParams::default(), &secret("refused"))
        .await
    {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 403, "{s:?}");
            assert!(
                s.message
                    .contains(&format!("system:serviceaccount:{}:app", ns.name())),
                "{}",
                s.message
            );
        }
        other => panic!("expected 403, got {other:?}"),
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn deleted_namespaces_go_away_with_their_pods() {
    let cp = ControlPlane::shared().await;
    let client = cp.client().await.unwrap();
    let ns = cp.namespace("doomed").await.unwrap();
    let name = ns.name().to_owned();
    apply_yaml(&client, &web_deployment(&name), "test")
        .await
        .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &name);
    eventually("pods to run", Duration::from_secs(60), || async {
        let d = deployments.get("web").await.ok()?;
        (d.status?.ready_replicas? == 2).then_some(())
    })
    .await;
    delete_namespace(&client, &name, Duration::from_secs(90))
        .await
        .unwrap();
    drop(ns);
}
