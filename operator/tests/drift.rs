//! Drift repair on the real control plane: a deleted or edited object of any kind the operator
//! owns is put back at once (every owned kind is watched), not at the periodic requeue; and a
//! reconcile reads owned objects from the watches' stores, not with a GET each (judged by
//! kube-apiserver's audit log of the operator's ServiceAccount).

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

/// Far beyond the test: only a watch can trigger the repairs below.
const NO_PERIODIC_REQUEUE: (&str, &str) = ("RECONCILE_MAX_INTERVAL", "1h");
/// No reconcile for this long: the operator's own writes and the controllers' status updates
/// have been handled.
const QUIET: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_and_edited_objects_of_every_owned_kind_come_back() {
    let h = Harness::new("drift").await;
    let op = h.operator_with("op-0", &[NO_PERIODIC_REQUEUE]);
    h.apply_stack("demo", json!({})).await;
    h.ready("demo").await;

    // Deleted: one object of each kind whose deletion loses nothing (credential and key
    // Secrets hold generated values; their drift is checked below by an edit). Each time the
    // operator is idle first, so nothing but the deletion's watch event can start the repair.
    for (version, kind, name) in [
        ("v1", "ConfigMap", "demo-jwks"),
        ("v1", "ServiceAccount", "demo-gateway"),
        ("v1", "Service", "demo-gateway"),
        ("policy/v1", "PodDisruptionBudget", "demo-auth-svc"),
        ("networking.k8s.io/v1", "NetworkPolicy", "demo-postgres"),
        ("apps/v1", "Deployment", "demo-gateway"),
        ("apps/v1", "StatefulSet", "demo-rabbitmq"),
    ] {
        op.settled(QUIET).await;
        let before = h.get(version, kind, name).await.unwrap();
        h.request_delete(version, kind, name).await;
        eventually(&format!("{kind} {name} to be recreated"), SLOW, || async {
            h.get(version, kind, name)
                .await
                .filter(|now| now["metadata"]["uid"] != before["metadata"]["uid"])
        })
        .await;
    }

    // Edited by someone else (`kubectl edit`): the operator's values come back.
    op.settled(QUIET).await;
    h.merge_patch(
        "v1",
        "ConfigMap",
        "demo-jwks",
        "someone-else",
        json!({"data": {"jwks.json": "{\"keys\": []}"}}),
    )
    .await;
    eventually("the JWKS ConfigMap to be restored", SLOW, || async {
        let cm = h.get("v1", "ConfigMap", "demo-jwks").await?;
        (cm["data"]["jwks.json"].as_str()? != "{\"keys\": []}").then_some(())
    })
    .await;
    op.settled(QUIET).await;
    let secret = h.get("v1", "Secret", "demo-rabbitmq").await.unwrap();
    let url = secret_data(&secret)["url"].clone();
    h.merge_patch(
        "v1",
        "Secret",
        "demo-rabbitmq",
        "someone-else",
        json!({"stringData": {"url": "amqp://attacker@evil.example:5672/%2F"}}),
    )
    .await;
    eventually("the broker URL to be restored", SLOW, || async {
        let now = h.get("v1", "Secret", "demo-rabbitmq").await?;
        (secret_data(&now)["url"] == url).then_some(())
    })
    .await;
    h.ready("demo").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconcile_reads_owned_objects_from_the_watch_stores() {
    let h = Harness::new("stores").await;
    let op = h.operator_with("op-0", &[NO_PERIODIC_REQUEUE]);
    h.apply_stack("demo", json!({})).await;
    h.ready("demo").await;
    let settled = op.settled(QUIET).await;

    let mark = h.cp.audit_mark();
    h.merge_patch(
        "authstack.io/v1alpha1",
        "AuthStack",
        "demo",
        "someone-else",
        json!({"metadata": {"annotations": {"example.com/touched": "1"}}}),
    )
    .await;
    op.reconciled_after(settled).await;
    // kube-apiserver logs a request once it completed: give the last ones a moment.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let user = h.operator_user();
    let events = h.cp.audit_events_since(mark).unwrap();
    assert!(
        events.iter().any(|e| e.user.username == user),
        "the operator's requests are in the audit log"
    );
    let gets: Vec<String> = events
        .iter()
        .filter(|e| e.user.username == user && e.verb == "get")
        .filter_map(|e| {
            let object = e.object_ref.as_ref()?;
            // Leader election renews its Lease with a GET; that is not a reconcile's read.
            (object.namespace == h.ns() && object.resource != "leases")
                .then(|| e.request_uri.clone())
        })
        .collect();
    assert!(gets.is_empty(), "objects read with a GET: {gets:#?}");
}
