//! Secret content never reaches what the operator writes for humans: Events, the status, its
//! logs (on the real control plane).

mod common;

use common::*;
use serde_json::json;

/// Looks like the body of a private key; must appear nowhere but in the Secret.
const SECRET: &str = "MC4CAQAwBQYDK2VwBCIEIRecognisablePrivateValue42";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_key_ring_is_reported_without_its_content() {
    let h = Harness::new("redaction").await;
    let op = h.operator("op-0");
    h.apply_stack("demo", json!({})).await;
    h.converged("demo").await;

    // Someone breaks the ring: a value where the key state belongs.
    let secret = h.get("v1", "Secret", "demo-signing-keys").await.unwrap();
    let mut ring: serde_json::Value =
        serde_json::from_slice(&secret_data(&secret)["keyring.json"]).unwrap();
    ring["keys"][0]["state"] = format!("-----BEGIN PRIVATE KEY-----{SECRET}").into();
    h.merge_patch(
        "v1",
        "Secret",
        "demo-signing-keys",
        "someone-else",
        json!({"stringData": {"keyring.json": ring.to_string()}}),
    )
    .await;

    let stack = eventually("Degraded=True", SLOW, || async {
        let s = h.stack_json("demo").await?;
        (condition(&s, "Degraded")?["reason"] == "KeyRingInvalid").then_some(s)
    })
    .await;
    let message = condition(&stack, "Degraded").unwrap()["message"].to_string();
    assert!(message.contains("demo-signing-keys"), "{message}");
    let event = eventually("a ReconcileError event", SLOW, || async {
        h.events()
            .await
            .into_iter()
            .find(|e| e["reason"] == "ReconcileError")
    })
    .await;
    assert!(
        event["note"].to_string().contains("invalid key ring"),
        "{event}"
    );

    assert!(!stack.to_string().contains(SECRET), "status: {stack}");
    for e in h.events().await {
        assert!(!e.to_string().contains(SECRET), "event: {e}");
    }
    assert!(!op.logs().contains(SECRET), "the operator logged it");
    // The operator never overwrites a ring it cannot read (that would drop live keys).
    let after = h.get("v1", "Secret", "demo-signing-keys").await.unwrap();
    assert!(String::from_utf8_lossy(&secret_data(&after)["keyring.json"]).contains(SECRET));
}
