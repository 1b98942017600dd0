//! The other resource types the operator writes (StatefulSet, PDB, NetworkPolicy,
//! ServiceAccount, Lease), simulated workload readiness, fixture helpers, Table output
//! and raw error shapes.

mod common;

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

fn sts(name: &str, storage: &str) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "serviceName": name,
            "replicas": 3,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "db", "image": "postgres:17"}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": storage}}}}]
        }
    })
}

#[tokio::test]
async fn statefulset_pdb_netpol_serviceaccount_lease() {
    let (server, client) = common::start().await;
    let pp = PatchParams::apply("authstack-operator").force();
    let stss: Api<StatefulSet> = Api::default_namespaced(client.clone());
    let s = stss
        .patch("db", &pp, &Patch::Apply(sts("db", "1Gi")))
        .await
        .unwrap();
    let spec = s.spec.as_ref().unwrap();
    assert_eq!(spec.pod_management_policy.as_deref(), Some("OrderedReady"));
    assert_eq!(
        spec.update_strategy.as_ref().unwrap().type_.as_deref(),
        Some("RollingUpdate")
    );
    assert!(s.status.as_ref().unwrap().ready_replicas.is_none());
    // forbidden StatefulSet spec update (volumeClaimTemplates), allowed replicas update
    let err = common::status(
        stss.patch("db", &pp, &Patch::Apply(sts("db", "2Gi")))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    assert!(
        err.message
            .contains("updates to statefulset spec for fields other than"),
        "{}",
        err.message
    );
    let mut scaled = sts("db", "1Gi");
    scaled["spec"]["replicas"] = json!(5);
    let s = stss.patch("db", &pp, &Patch::Apply(&scaled)).await.unwrap();
    assert_eq!(s.metadata.generation, Some(2));

    // readiness as the statefulset controller would report it
    let ready = server.mark_ready("StatefulSet", "default", "db").unwrap();
    assert_eq!(ready["status"]["readyReplicas"], 5);
    assert_eq!(ready["status"]["observedGeneration"], 2);
    let s = stss.get_status("db").await.unwrap();
    assert_eq!(s.status.unwrap().ready_replicas, Some(5));

    let pdbs: Api<PodDisruptionBudget> = Api::default_namespaced(client.clone());
    let pdb = pdbs
        .patch("db", &pp, &Patch::Apply(json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "db"}, "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "db"}}}})))
        .await
        .unwrap();
    assert_eq!(pdb.metadata.generation, Some(1));
    let err = common::status(
        pdbs.patch("db", &pp, &Patch::Apply(json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "db"}, "spec": {"maxUnavailable": 1, "minAvailable": 1, "selector": {"matchLabels": {"app": "db"}}}})))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422);

    let nps: Api<NetworkPolicy> = Api::default_namespaced(client.clone());
    let np = nps
        .patch("db", &pp, &Patch::Apply(json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "db"}, "spec": {"podSelector": {"matchLabels": {"app": "db"}},
            "ingress": [{"ports": [{"port": 5432}], "from": [{"podSelector": {"matchLabels": {"app": "auth"}}}]}]}})))
        .await
        .unwrap();
    let nspec = np.spec.unwrap();
    assert_eq!(nspec.policy_types.unwrap(), ["Ingress"]);
    assert_eq!(
        nspec.ingress.unwrap()[0].ports.as_ref().unwrap()[0]
            .protocol
            .as_deref(),
        Some("TCP")
    );

    let sas: Api<ServiceAccount> = Api::default_namespaced(client.clone());
    let sa = sas
        .patch("auth", &pp, &Patch::Apply(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "auth"}, "bogusField": 1})))
        .await
        .unwrap();
    assert_eq!(sa.name_any(), "auth");

    // leader election style: create + conditional replace of a Lease
    let leases: Api<Lease> = Api::default_namespaced(client.clone());
    let lease: Lease = serde_json::from_value(json!({"metadata": {"name": "authstack-operator"},
        "spec": {"holderIdentity": "pod-a", "leaseDurationSeconds": 15, "renewTime": "2025-01-01T00:00:00.000000Z"}}))
    .unwrap();
    let mut l = leases.create(&PostParams::default(), &lease).await.unwrap();
    let stale = l.clone();
    l.spec.as_mut().unwrap().holder_identity = Some("pod-b".into());
    leases
        .replace("authstack-operator", &PostParams::default(), &l)
        .await
        .unwrap();
    let err = common::status(
        leases
            .replace("authstack-operator", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 409);
    assert_eq!(
        server
            .get(
                "coordination.k8s.io/v1",
                "leases",
                None,
                "authstack-operator"
            )
            .unwrap()["spec"]["holderIdentity"],
        "pod-b"
    );
}

#[tokio::test]
async fn auto_ready_workloads_and_fixture_helpers() {
    let (server, client) =
        common::start_with(authstack_testkit::FakeApiServer::builder().auto_ready_workloads(true))
            .await;
    server.create_namespace("auth").unwrap();
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "auth");
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "gw", "namespace": "auth"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "gw"}},
            "template": {"metadata": {"labels": {"app": "gw"}}, "spec": {"containers": [{"name": "gw", "image": "gw:1"}]}}}});
    server.create(&d).unwrap();
    let got = deps.get("gw").await.unwrap();
    let st = got.status.unwrap();
    assert_eq!(
        (st.ready_replicas, st.observed_generation),
        (Some(2), Some(1))
    );
    assert!(
        st.conditions
            .unwrap()
            .iter()
            .any(|c| c.type_ == "Available" && c.status == "True")
    );
    deps.patch(
        "gw",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 4}})),
    )
    .await
    .unwrap();
    let st = deps.get("gw").await.unwrap().status.unwrap();
    assert_eq!(
        (st.ready_replicas, st.observed_generation),
        (Some(4), Some(2))
    );

    // fixture helpers
    let patched = server
        .patch_status(
            "apps/v1",
            "Deployment",
            Some("auth"),
            "gw",
            &json!({"readyReplicas": 1}),
        )
        .unwrap();
    assert_eq!(patched["status"]["readyReplicas"], 1);
    let applied = server
        .apply(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "auth"}, "data": {"k": "v"}}), "test")
        .unwrap();
    assert_eq!(applied["data"]["k"], "v");
    let yaml = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n  namespace: auth\nstringData:\n  k: v\n";
    let s = server.create(yaml).unwrap();
    assert_eq!(s["data"]["k"], "dg==");
    assert_eq!(server.list("v1", "secrets", Some("auth")).len(), 1);
    server.delete("v1", "Secret", Some("auth"), "s").unwrap();
    assert!(server.get("v1", "Secret", Some("auth"), "s").is_none());
    let err = server.create(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "auth"}}));
    assert!(
        matches!(err, Err(authstack_testkit::Error::Api { code: 409, .. })),
        "{err:?}"
    );
    assert!(server.resource_version() > 5);
    let _ = Duration::from_secs(0);
}

#[tokio::test]
async fn raw_http_shapes_table_and_unknown_paths() {
    let (server, client) = common::start().await;
    let req = |uri: &str, accept: Option<&str>| {
        let mut b = http::Request::get(uri);
        if let Some(a) = accept {
            b = b.header("Accept", a);
        }
        b.body(Vec::new()).unwrap()
    };
    let table: serde_json::Value = client
        .request(req(
            "/api/v1/namespaces",
            Some("application/json;as=Table;v=v1;g=meta.k8s.io,application/json"),
        ))
        .await
        .unwrap();
    assert_eq!(table["kind"], "Table");
    assert_eq!(table["columnDefinitions"][0]["name"], "Name");
    assert_eq!(table["rows"][0]["cells"][0], "default");

    let err = common::status(
        client
            .request::<serde_json::Value>(req("/apis/nope.io/v1/things", None))
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (404, "NotFound"));
    let err = common::status(
        client
            .request::<serde_json::Value>(req(
                "/api/v1/namespaces/default/configmaps?labelSelector=a%20in%20b",
                None,
            ))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 400);
    let openapi: serde_json::Value = client.request(req("/openapi/v3", None)).await.unwrap();
    assert!(
        openapi["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap()
            .starts_with("/openapi/v3/apis/apps/v1")
    );
    assert!(server.requests().iter().any(|r| r.path == "/openapi/v3"));
}
