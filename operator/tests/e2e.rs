//! End-to-end tests: the real operator binary, running as the chart's ServiceAccount, against
//! this binary's real control plane (kube-apiserver, kube-controller-manager, kube-scheduler,
//! kwok), driven with the real kube client and kubectl. Each test has its own namespace and
//! operator process, so they run in parallel.

mod common;

use std::time::{Duration, Instant};

use authstack_keyring::KeyState;
use common::*;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};

fn labels_and_owner(obj: &Value, name: &str, uid: &str) {
    let meta = &obj["metadata"];
    let what = format!("{} {}", obj["kind"], meta["name"]);
    let labels = &meta["labels"];
    assert_eq!(labels["app.kubernetes.io/instance"], name, "{what}");
    assert_eq!(labels["app.kubernetes.io/part-of"], "authstack", "{what}");
    assert_eq!(
        labels["app.kubernetes.io/managed-by"], "authstack-operator",
        "{what}"
    );
    assert!(labels["app.kubernetes.io/name"].is_string(), "{what}");
    assert!(labels["app.kubernetes.io/component"].is_string(), "{what}");
    let owners = meta["ownerReferences"]
        .as_array()
        .unwrap_or_else(|| panic!("{what} has no owner"));
    assert_eq!(owners.len(), 1, "{what}");
    let o = &owners[0];
    assert_eq!(o["kind"], "AuthStack", "{what}");
    assert_eq!(o["apiVersion"], "authstack.io/v1alpha1", "{what}");
    assert_eq!(o["uid"], uid, "{what}");
    assert_eq!(o["controller"], true, "{what}");
    assert_eq!(o["blockOwnerDeletion"], true, "{what}");
}

/// A ResourceQuota that admits no Pod: the workloads' controllers cannot create any, so
/// nothing becomes ready until [`allow_pods`].
async fn forbid_pods(h: &Harness) {
    h.create(json!({
        "apiVersion": "v1", "kind": "ResourceQuota",
        "metadata": {"name": "no-pods"},
        "spec": {"hard": {"pods": "0"}},
    }))
    .await;
    // Admission enforces a quota once kube-controller-manager has computed its status.
    eventually("the quota to be in force", SLOW, || async {
        let q = h.get("v1", "ResourceQuota", "no-pods").await?;
        q["status"]["hard"]["pods"].is_string().then_some(())
    })
    .await;
}

async fn allow_pods(h: &Harness) {
    h.delete("v1", "ResourceQuota", "no-pods").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_stack_converges_with_full_wiring_and_becomes_ready() {
    let h = Harness::new("converge").await;
    let ns = h.ns().to_owned();
    let op = h.operator("op-0");
    op.wait_role("leader").await;
    let start = Instant::now();
    let stack = h.apply_stack("demo", json!({})).await;
    h.converged("demo").await;
    let converged = start.elapsed();
    let uid = stack.metadata.uid.clone().unwrap();

    for (v, k, n) in Harness::default_objects("demo") {
        let obj = h.get(v, k, &n).await.unwrap();
        labels_and_owner(&obj, "demo", &uid);
    }

    // auth-svc: the configuration contract.
    let auth = h
        .get("apps/v1", "Deployment", "demo-auth-svc")
        .await
        .unwrap();
    assert_eq!(auth["spec"]["replicas"], 2);
    let c = first_container(&auth);
    assert_eq!(
        c["image"],
        format!("ghcr.io/authstack/auth-svc:{}", env!("CARGO_PKG_VERSION"))
    );
    // auth-svc's own least-privilege role; the superuser Secret stays with PostgreSQL.
    assert_eq!(
        env_secret(c, "DATABASE_URL"),
        ("demo-auth-svc-db".into(), "url".into())
    );
    assert!(
        !auth["spec"]["template"]
            .to_string()
            .contains("\"demo-postgres\"")
    );
    assert_eq!(
        env_secret(c, "AMQP_URL"),
        ("demo-rabbitmq-auth-svc".into(), "url".into())
    );
    let issuer = format!("http://demo-gateway.{ns}.svc");
    for (k, v) in [
        ("AUTH_RPC_QUEUE", "auth.rpc"),
        ("AUTH_RPC_EXCHANGE", "auth.requests"),
        ("AUTH_EVENTS_EXCHANGE", "auth.events"),
        ("AUTH_KEY_DIR", "/var/run/authstack/keys"),
        ("AUTH_ISSUER", issuer.as_str()),
        ("AUTH_AUDIENCE", "authstack"),
        ("AUTH_ACCESS_TOKEN_TTL", "900"),
        ("AUTH_REFRESH_TOKEN_TTL", "2592000"),
        ("AUTH_REFRESH_REUSE_GRACE", "2"),
        ("AUTH_ARGON2_MEMORY_KIB", "19456"),
        ("AUTH_ARGON2_ITERATIONS", "2"),
        ("AUTH_ARGON2_PARALLELISM", "1"),
        ("AUTH_LOCKOUT_THRESHOLD", "5"),
        ("AUTH_LOCKOUT_WINDOW", "900"),
        ("AUTH_LOCKOUT_DURATION", "900"),
        ("AUTH_ADDRESS_LOCKOUT_THRESHOLD", "50"),
        ("AUTH_HTTP_LISTEN", "0.0.0.0:8081"),
        ("LOG_FORMAT", "json"),
    ] {
        assert_eq!(env_value(c, k), v, "{k}");
    }
    let mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == "/var/run/authstack/keys")
        .unwrap();
    assert_eq!(mount["readOnly"], true);
    let pod = &auth["spec"]["template"]["spec"];
    let vol = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    assert_eq!(vol["secret"]["secretName"], "demo-signing-keys");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], 8081);
    let sec = &c["securityContext"];
    assert_eq!(sec["runAsNonRoot"], true);
    assert_eq!(sec["runAsUser"], 65532);
    assert_eq!(sec["readOnlyRootFilesystem"], true);
    assert_eq!(sec["allowPrivilegeEscalation"], false);
    assert_eq!(sec["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(sec["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(pod["serviceAccountName"], "demo-auth-svc");
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert!(
        auth["spec"]["template"]["metadata"]["annotations"]["authstack.io/config-hash"].is_string()
    );

    // Gateway: no private keys, its own env, Service 80 -> 8080.
    let gw = h
        .get("apps/v1", "Deployment", "demo-gateway")
        .await
        .unwrap();
    let g = first_container(&gw);
    assert_eq!(
        env_secret(g, "AMQP_URL"),
        ("demo-rabbitmq-gateway".into(), "url".into())
    );
    assert_eq!(env_value(g, "GATEWAY_LISTEN"), "0.0.0.0:8080");
    assert_eq!(env_value(g, "GATEWAY_METRICS_LISTEN"), "0.0.0.0:9090");
    assert_eq!(env_value(g, "GATEWAY_RPC_TIMEOUT_MS"), "5000");
    assert_eq!(env_value(g, "GATEWAY_TRUSTED_PROXIES"), "");
    // Neither service pod sees the broker administrator's Secret.
    for d in [&auth, &gw] {
        assert!(!d.to_string().contains("\"demo-rabbitmq\""), "{d}");
    }
    assert!(!gw.to_string().contains("signing-keys"));
    assert_eq!(g["readinessProbe"]["httpGet"]["port"], 8080);
    let svc = h.get("v1", "Service", "demo-gateway").await.unwrap();
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert_eq!(svc["spec"]["ports"][0]["port"], 80);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);
    assert!(
        svc["spec"]["clusterIP"]
            .as_str()
            .is_some_and(|ip| ip.starts_with("10.0.0.")),
        "the API server allocated a cluster IP: {svc}"
    );

    // Managed data stores.
    let pg = h
        .get("apps/v1", "StatefulSet", "demo-postgres")
        .await
        .unwrap();
    let p = first_container(&pg);
    assert_eq!(p["image"], "docker.io/library/postgres:17");
    assert_eq!(
        env_secret(p, "POSTGRES_PASSWORD"),
        ("demo-postgres".into(), "password".into())
    );
    assert_eq!(
        pg["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"],
        "1Gi"
    );
    assert_eq!(
        pg["spec"]["template"]["spec"]["securityContext"]["runAsUser"],
        999
    );
    assert!(
        p["readinessProbe"]["exec"]["command"]
            .to_string()
            .contains("pg_isready")
    );
    let pg_secret = secret_data(&h.get("v1", "Secret", "demo-postgres").await.unwrap());
    let password = String::from_utf8(pg_secret["password"].clone()).unwrap();
    assert_eq!(password.len(), 32);
    assert_eq!(
        String::from_utf8(pg_secret["url"].clone()).unwrap(),
        format!("postgres://authstack:{password}@demo-postgres.{ns}.svc:5432/authstack")
    );
    let mq_secret = secret_data(&h.get("v1", "Secret", "demo-rabbitmq").await.unwrap());
    assert!(mq_secret.contains_key("erlang-cookie") && mq_secret.contains_key("url"));
    assert!(mq_secret.contains_key("definitions.json"));
    for (name, user) in [
        ("demo-rabbitmq-auth-svc", "authstack-auth-svc"),
        ("demo-rabbitmq-gateway", "authstack-gateway"),
    ] {
        let secret = secret_data(&h.get("v1", "Secret", name).await.unwrap());
        let url = String::from_utf8(secret["url"].clone()).unwrap();
        assert!(url.starts_with(&format!("amqp://{user}:")), "{name}");
    }
    let mq = h
        .get("apps/v1", "StatefulSet", "demo-rabbitmq")
        .await
        .unwrap();
    assert_eq!(
        env_secret(first_container(&mq), "RABBITMQ_ERLANG_COOKIE"),
        ("demo-rabbitmq".into(), "erlang-cookie".into())
    );

    // Network policies and budgets.
    let np = h
        .get("networking.k8s.io/v1", "NetworkPolicy", "demo-postgres")
        .await
        .unwrap();
    assert_eq!(
        np["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
        "auth-svc"
    );
    assert_eq!(np["spec"]["ingress"][0]["ports"][0]["port"], 5432);
    let pdb = h
        .get("policy/v1", "PodDisruptionBudget", "demo-gateway")
        .await
        .unwrap();
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);

    // Keys and status.
    let ring = h.key_ring("demo").await.unwrap();
    let s = h.stack_json("demo").await.unwrap();
    assert_eq!(s["status"]["observedGeneration"], 1);
    assert_eq!(
        s["status"]["gatewayEndpoint"],
        format!("http://demo-gateway.{ns}.svc")
    );
    assert_eq!(
        s["status"]["keys"]["activeKid"],
        ring.active().unwrap().kid.as_str()
    );
    let jwks = h.get("v1", "ConfigMap", "demo-jwks").await.unwrap();
    assert!(
        jwks["data"]["jwks.json"]
            .as_str()
            .unwrap()
            .contains(&ring.active().unwrap().kid)
    );

    // The real controllers run the workloads (kwok plays the node): the stack becomes Ready,
    // the volume claims are bound, every pod is Running.
    let s = h.ready("demo").await;
    let ready_after = start.elapsed();
    assert_eq!(
        condition_status(&s, "Progressing").as_deref(),
        Some("False")
    );
    assert_eq!(condition_status(&s, "Degraded").as_deref(), Some("False"));
    let components = &s["status"]["components"];
    assert_eq!(components["gateway"]["readyReplicas"], 2);
    assert_eq!(components["authService"]["readyReplicas"], 2);
    assert_eq!(components["postgres"]["ready"], true);
    for claim in ["data-demo-postgres-0", "data-demo-rabbitmq-0"] {
        let pvc = h.get("v1", "PersistentVolumeClaim", claim).await.unwrap();
        assert_eq!(pvc["status"]["phase"], "Bound", "{claim}: {pvc}");
    }
    let pods = h.list("v1", "Pod").await;
    assert_eq!(
        pods.len(),
        6,
        "2 gateway, 2 auth-svc, postgres-0, rabbitmq-0"
    );
    assert!(pods.iter().all(|p| p["status"]["phase"] == "Running"));

    // Events and the operator's own endpoints.
    eventually("Created and KeyRotated events", SLOW, || async {
        let reasons = h.event_reasons().await;
        (reasons.iter().any(|r| r == "Created") && reasons.iter().any(|r| r == "KeyRotated"))
            .then_some(())
    })
    .await;
    assert_eq!(
        op.http_get("/readyz").await.unwrap(),
        (200, "leader".into())
    );
    let (_, metrics) = op.http_get("/metrics").await.unwrap();
    assert!(metrics.contains("authstack_operator_reconcile_duration_seconds_bucket"));
    let rss = op.rss_kib();
    eprintln!(
        "MEASURE converge_one_stack_ms={} ready_one_stack_ms={} operator_rss_kib={rss}",
        converged.as_millis(),
        ready_after.as_millis()
    );
    assert!(rss < 64 * 1024, "RSS {rss} KiB");
    let status = op.stop().await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_roll_out_while_credentials_stay_identical() {
    let h = Harness::new("update").await;
    let _op = h.operator("op-0");
    h.apply_stack("demo", json!({})).await;
    h.converged("demo").await;
    let pg_before = h.get("v1", "Secret", "demo-postgres").await.unwrap();
    let mq_before = h.get("v1", "Secret", "demo-rabbitmq").await.unwrap();
    let keys_before = h.get("v1", "Secret", "demo-signing-keys").await.unwrap();
    let auth_before = h
        .get("apps/v1", "Deployment", "demo-auth-svc")
        .await
        .unwrap();
    let hash_before =
        auth_before["spec"]["template"]["metadata"]["annotations"]["authstack.io/config-hash"]
            .clone();

    h.patch_spec(
        "demo",
        json!({
            "gateway": {"replicas": 3, "image": "example.com/gateway:2"},
            "authService": {"replicas": 1, "image": "example.com/auth:2", "tokens": {"accessTokenTtl": "5m"}},
        }),
    )
    .await;
    eventually("the changes to roll out", SLOW, || async {
        let gw = h.get("apps/v1", "Deployment", "demo-gateway").await?;
        let auth = h.get("apps/v1", "Deployment", "demo-auth-svc").await?;
        let done = gw["spec"]["replicas"] == 3
            && first_container(&gw)["image"] == "example.com/gateway:2"
            && auth["spec"]["replicas"] == 1
            && first_container(&auth)["image"] == "example.com/auth:2"
            && env_value(first_container(&auth), "AUTH_ACCESS_TOKEN_TTL") == "300"
            && h.get("policy/v1", "PodDisruptionBudget", "demo-auth-svc")
                .await
                .is_none()
            && h.stack_json("demo").await?["status"]["observedGeneration"] == 2;
        done.then_some(())
    })
    .await;
    let auth = h
        .get("apps/v1", "Deployment", "demo-auth-svc")
        .await
        .unwrap();
    assert_ne!(
        auth["spec"]["template"]["metadata"]["annotations"]["authstack.io/config-hash"],
        hash_before,
        "an env change rolls the pods"
    );
    assert!(
        h.get("policy/v1", "PodDisruptionBudget", "demo-gateway")
            .await
            .is_some()
    );
    // The Deployment controller rolled the pods: the new image runs.
    eventually("the new gateway pods", SLOW, || async {
        let pods = h.list("v1", "Pod").await;
        let gw: Vec<&Value> = pods
            .iter()
            .filter(|p| p["metadata"]["labels"]["app.kubernetes.io/name"] == "gateway")
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .collect();
        (gw.len() == 3
            && gw
                .iter()
                .all(|p| p["spec"]["containers"][0]["image"] == "example.com/gateway:2"))
        .then_some(())
    })
    .await;
    // Generated credentials: byte-identical, never rewritten.
    for (before, name) in [(&pg_before, "demo-postgres"), (&mq_before, "demo-rabbitmq")] {
        let now = h.get("v1", "Secret", name).await.unwrap();
        assert_eq!(secret_data(&now), secret_data(before), "{name}");
        assert_eq!(
            now["metadata"]["resourceVersion"], before["metadata"]["resourceVersion"],
            "{name}"
        );
    }
    // The key ring is untouched by unrelated changes.
    let keys_now = h.get("v1", "Secret", "demo-signing-keys").await.unwrap();
    assert_eq!(
        keys_now["metadata"]["resourceVersion"],
        keys_before["metadata"]["resourceVersion"]
    );
    assert!(h.event_reasons().await.iter().any(|r| r == "Deleted"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_postgres_to_external_removes_the_managed_database() {
    let h = Harness::new("external").await;
    let _op = h.operator("op-0");
    h.apply_stack("demo", json!({})).await;
    h.converged("demo").await;
    // The StatefulSet controller makes the claim on its own schedule (under load, after the
    // operator has converged): wait for it, or the switch below can remove the StatefulSet first.
    eventually("the data claim", SLOW, || async {
        h.get("v1", "PersistentVolumeClaim", "data-demo-postgres-0")
            .await
            .map(|_| ())
    })
    .await;
    h.create(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "cloud-db"},
        "stringData": {"uri": "postgres://app:secret@db.example.com:5432/app"},
    }))
    .await;
    h.patch_spec(
        "demo",
        json!({"postgres": {"managed": null, "external": {"secretRef": {"name": "cloud-db", "key": "uri"}}}}),
    )
    .await;
    eventually("the managed PostgreSQL to go", SLOW, || async {
        for (v, k) in [
            ("apps/v1", "StatefulSet"),
            ("v1", "Service"),
            ("v1", "Secret"),
            ("v1", "ServiceAccount"),
            ("networking.k8s.io/v1", "NetworkPolicy"),
        ] {
            if h.get(v, k, "demo-postgres").await.is_some() {
                return None;
            }
        }
        let auth = h.get("apps/v1", "Deployment", "demo-auth-svc").await?;
        (env_secret(first_container(&auth), "DATABASE_URL") == ("cloud-db".into(), "uri".into()))
            .then_some(())
    })
    .await;
    assert!(
        h.get("v1", "Secret", "cloud-db").await.is_some(),
        "the user's Secret is not ours"
    );
    assert!(
        h.get("apps/v1", "StatefulSet", "demo-rabbitmq")
            .await
            .is_some()
    );
    assert!(
        h.get("v1", "PersistentVolumeClaim", "data-demo-postgres-0")
            .await
            .is_some(),
        "the data claim outlives the StatefulSet (retention policy Retain)"
    );
    let s = eventually("status for the external database", SLOW, || async {
        let s = h.stack_json("demo").await?;
        (s["status"]["observedGeneration"] == 2).then_some(s)
    })
    .await;
    let pg = &s["status"]["components"]["postgres"];
    assert_eq!(pg["ready"], true);
    assert!(pg["message"].as_str().unwrap().contains("cloud-db"));
    assert_eq!(condition_status(&s, "Degraded").as_deref(), Some("False"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_follows_the_workloads_through_the_real_controllers() {
    let h = Harness::new("ready").await;
    forbid_pods(&h).await;
    let op = h.operator("op-0");
    h.apply_stack("demo", json!({})).await;
    h.converged("demo").await;
    // No pod may be created: every component waits.
    let s = eventually("the components to report waiting", SLOW, || async {
        let s = h.stack_json("demo").await?;
        (s["status"]["components"]["gateway"]["ready"] == false).then_some(s)
    })
    .await;
    assert_eq!(condition_status(&s, "Ready").as_deref(), Some("False"));
    assert_eq!(condition_status(&s, "Progressing").as_deref(), Some("True"));
    let message = condition(&s, "Ready").unwrap()["message"].as_str().unwrap();
    assert!(
        message.contains("gateway") && message.contains("postgres"),
        "{message}"
    );

    allow_pods(&h).await;
    let s = h.ready("demo").await;
    assert_eq!(
        condition_status(&s, "Progressing").as_deref(),
        Some("False")
    );
    assert_eq!(condition_status(&s, "Degraded").as_deref(), Some("False"));
    assert_eq!(s["status"]["observedGeneration"], 1);
    for c in s["status"]["conditions"].as_array().unwrap() {
        assert_eq!(c["observedGeneration"], 1, "{c}");
    }
    let ready_since = condition(&s, "Ready").unwrap()["lastTransitionTime"].clone();

    // A reconcile that changes nothing keeps the status as it is (not even rewritten).
    let before = op.metric(RECONCILIATIONS).await;
    let touched = h
        .stacks()
        .patch(
            "demo",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"annotations": {"touch": "1"}}})),
        )
        .await
        .unwrap();
    op.reconciled_after(before).await;
    let s = h.stack_json("demo").await.unwrap();
    assert_eq!(
        condition(&s, "Ready").unwrap()["lastTransitionTime"],
        ready_since
    );
    assert_eq!(
        s["metadata"]["resourceVersion"].as_str(),
        touched.metadata.resource_version.as_deref(),
        "an unchanged status is not rewritten"
    );

    // A spec change rolls the gateway out again: not ready until the new pods are.
    forbid_pods(&h).await;
    let changed_at = chrono::Utc::now().timestamp();
    h.patch_spec("demo", json!({"gateway": {"rpcTimeout": "3s"}}))
        .await;
    let s = eventually("Ready=False during the rollout", SLOW, || async {
        let s = h.stack_json("demo").await?;
        (s["status"]["observedGeneration"] == 2
            && condition_status(&s, "Progressing").as_deref() == Some("True"))
        .then_some(s)
    })
    .await;
    assert_eq!(condition_status(&s, "Ready").as_deref(), Some("False"));
    // The flip is dated (whole seconds, so compared as times, not for inequality).
    let flipped = condition(&s, "Ready").unwrap()["lastTransitionTime"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .unwrap()
        .timestamp();
    assert!(flipped >= changed_at, "{flipped} < {changed_at}");
    allow_pods(&h).await;
    h.ready("demo").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_garbage_collector_removes_what_a_deleted_stack_owned() {
    let h = Harness::new("delete").await;
    let op = h.operator("op-0");
    h.apply_stack("demo", json!({})).await;
    h.converged("demo").await;
    h.create(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "unrelated"}}))
        .await;
    // The operator is stopped: kube-controller-manager's garbage collector alone removes the
    // owned objects (and, through the workloads, their ReplicaSets and Pods).
    assert!(op.stop().await.success());
    h.stacks()
        .delete("demo", &DeleteParams::default())
        .await
        .unwrap();
    eventually("every owned object to be collected", SLOW, || async {
        h.missing_objects("demo")
            .await
            .len()
            .eq(&Harness::default_objects("demo").len())
            .then_some(())
    })
    .await;
    eventually("the pods to go", SLOW, || async {
        h.list("v1", "Pod").await.is_empty().then_some(())
    })
    .await;
    assert!(h.stack_json("demo").await.is_none());
    assert!(h.get("v1", "Secret", "unrelated").await.is_some());
    // Data claims are not owned by the stack: they stay (the documented retention).
    assert!(
        h.get("v1", "PersistentVolumeClaim", "data-demo-postgres-0")
            .await
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_namespace_while_the_operator_runs() {
    let cp = authstack_testkit::k8s::ControlPlane::shared().await;
    let doomed = cp.namespace("doomed").await.unwrap();
    let name = doomed.name().to_owned();
    let watch = format!("watchNamespaces={{{name}}}");
    let h = Harness::with("ns-delete", true, &[&watch]).await;
    let op = h.operator("op-0");
    op.wait_role("leader").await;
    h.try_apply_stack(&name, "demo", json!({})).await.unwrap();
    eventually("the stack to run", SLOW, || async {
        let s = h
            .get_in("authstack.io/v1alpha1", "AuthStack", &name, "demo")
            .await?;
        (condition_status(&s, "Ready").as_deref() == Some("True")).then_some(())
    })
    .await;
    authstack_testkit::k8s::delete_namespace(&h.client, &name, SLOW)
        .await
        .unwrap();
    // The operator neither crashed nor blocked the deletion, and still answers.
    assert_eq!(op.http_get("/healthz").await.map(|r| r.0), Some(200));
    assert!(!op.logs().contains("panicked"), "{}", op.logs());
    assert!(op.stop().await.success());
    drop(doomed);
}

/// The AuthStack validation only the real server runs — the structural schema with its
/// ranges and patterns, CEL rules (`x-kubernetes-validations`), strict field validation —
/// judged with the real kubectl (server-side dry run): every sample and edge case is
/// accepted, every invalid AuthStack refused with the message its annotation names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_validates_authstacks() {
    let h = Harness::new("validation").await;
    let root = authstack_testkit::k8s::binaries::repo_root();
    let docs = |path: std::path::PathBuf| -> Vec<Value> {
        let text = std::fs::read_to_string(&path).unwrap();
        serde_yaml::Deserializer::from_str(&text)
            .filter_map(|d| serde::Deserialize::deserialize(d).ok())
            .filter(|v: &Value| v["kind"] == "AuthStack")
            .map(|mut v: Value| {
                v["metadata"]["namespace"] = json!(h.ns());
                v
            })
            .collect()
    };
    let dry_run = |doc: &Value| {
        let yaml = serde_yaml::to_string(doc).unwrap();
        h.kubectl_stdin(
            &["create", "--dry-run=server", "--validate=strict", "-f", "-"],
            Some(&yaml),
        )
    };
    let mut valid: Vec<Value> = std::fs::read_dir(root.join("manifests/samples"))
        .unwrap()
        .flat_map(|e| docs(e.unwrap().path()))
        .collect();
    valid.extend(docs(
        root.join("operator/tests/testdata/valid-authstacks.yaml"),
    ));
    assert!(valid.len() >= 4, "{valid:?}");
    for doc in &valid {
        let out = dry_run(doc);
        assert!(
            out.success,
            "AuthStack {} was refused: {}",
            doc["metadata"]["name"], out.stderr
        );
    }
    let invalid = docs(root.join("operator/tests/testdata/invalid-authstacks.yaml"));
    assert!(invalid.len() >= 15, "{}", invalid.len());
    for doc in &invalid {
        let name = doc["metadata"]["name"].as_str().unwrap();
        let expected = doc["metadata"]["annotations"]["test.authstack.io/expected-error"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has no expected-error annotation"));
        let out = dry_run(doc);
        assert!(!out.success, "{name} was accepted");
        assert!(
            out.stderr.contains(expected),
            "{name}: expected {expected:?} in {:?}",
            out.stderr
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_explain_prints_the_crd_docs() {
    let h = Harness::new("explain").await;
    let out = h.kubectl(&["explain", "authstacks.spec.keys"]);
    assert!(out.success, "{}", out.stderr);
    for text in [
        "JWT signing keys: algorithm, rotation schedule, manual rotation and",
        "propagationDelay",
        "How long a new key is published for verification before it signs",
        "rotationCounter",
        "enum: EdDSA, ES256, RS256",
    ] {
        assert!(
            out.stdout.contains(text),
            "{text:?} missing in:\n{}",
            out.stdout
        );
    }
    let out = h.kubectl(&[
        "explain",
        "authstack.spec.authService.tokens.refreshTokenTtl",
    ]);
    assert!(out.success, "{}", out.stderr);
    assert!(
        out.stdout.contains("Lifetime of refresh tokens"),
        "{}",
        out.stdout
    );
    let out = h.kubectl(&["get", "authstacks", "-n", h.ns()]);
    assert!(out.success, "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_conflicts_with_another_field_manager() {
    let h = Harness::new("ssa").await;
    let op = h.operator("op-0");
    h.apply_stack("demo", json!({})).await;
    h.converged("demo").await;
    let deployments: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        kube::Api::namespaced(h.client.clone(), h.ns());
    let body = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "demo-gateway"},
        "spec": {"replicas": 5},
    });
    // Another manager may not take the operator's field without forcing.
    let status = api_error(
        deployments
            .patch(
                "demo-gateway",
                &PatchParams::apply("someone-else"),
                &Patch::Apply(&body),
            )
            .await,
    );
    assert_eq!(status.code, 409, "{status:?}");
    assert!(
        status.message.contains("authstack-operator") && status.message.contains(".spec.replicas"),
        "{}",
        status.message
    );
    // Forced, it wins the field for a moment; the operator sees the drift and takes it back.
    let before = op.metric("authstack_operator_applies_total").await;
    deployments
        .patch(
            "demo-gateway",
            &PatchParams::apply("someone-else").force(),
            &Patch::Apply(&body),
        )
        .await
        .unwrap();
    eventually("the operator to restore the replicas", SLOW, || async {
        let d = deployments.get("demo-gateway").await.ok()?;
        let owners: Vec<String> = d
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .filter(|m| {
                m.fields_v1
                    .as_ref()
                    .is_some_and(|f| !f.0["f:spec"]["f:replicas"].is_null())
            })
            .filter_map(|m| m.manager.clone())
            .collect();
        (d.spec?.replicas == Some(2) && owners == ["authstack-operator"]).then_some(())
    })
    .await;
    assert!(op.metric("authstack_operator_applies_total").await > before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_takes_over_objects_it_does_not_own() {
    let h = Harness::new("not-owned").await;
    let _op = h.operator("op-0");
    h.create(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "demo-postgres"},
        "stringData": {"password": "somebody-elses"},
    }))
    .await;
    h.apply_stack("demo", json!({})).await;
    let s = eventually("Degraded=True", SLOW, || async {
        let s = h.stack_json("demo").await?;
        (condition_status(&s, "Degraded").as_deref() == Some("True")).then_some(s)
    })
    .await;
    let degraded = condition(&s, "Degraded").unwrap();
    assert_eq!(degraded["reason"], "ObjectNotOwned");
    assert!(
        degraded["message"]
            .as_str()
            .unwrap()
            .contains("demo-postgres"),
        "{degraded}"
    );
    eventually("a ReconcileError event", SLOW, || async {
        h.events()
            .await
            .into_iter()
            .find(|e| e["reason"] == "ReconcileError" && e["type"] == "Warning")
    })
    .await;
    let theirs = h.get("v1", "Secret", "demo-postgres").await.unwrap();
    assert!(theirs["metadata"]["ownerReferences"].is_null());
    assert_eq!(secret_data(&theirs)["password"], b"somebody-elses");

    // Once the conflicting object is gone, the retry (with backoff) converges.
    h.delete("v1", "Secret", "demo-postgres").await;
    h.converged("demo").await;
    eventually("Degraded=False", SLOW, || async {
        let s = h.stack_json("demo").await?;
        (condition_status(&s, "Degraded").as_deref() == Some("False")).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_replica_takes_over_when_the_leader_leaves() {
    let h = Harness::new("leader").await;
    let a = h.operator("op-a");
    eventually("op-a to lead", SLOW, || async {
        (h.lease_holder().await.as_deref() == Some("op-a")).then_some(())
    })
    .await;
    let b = h.operator("op-b");
    b.wait_role("standby").await;
    h.apply_stack("demo", json!({})).await;
    h.converged("demo").await;
    assert_eq!(h.lease_holder().await.as_deref(), Some("op-a"));
    assert!(a.metric(RECONCILIATIONS).await >= 1.0);
    assert_eq!(
        b.metric(RECONCILIATIONS).await,
        0.0,
        "the standby stays passive"
    );

    let stopped = Instant::now();
    let status = a.stop().await;
    assert!(status.success(), "{status:?}");
    eventually("op-b to take over", SLOW, || async {
        (h.lease_holder().await.as_deref() == Some("op-b")).then_some(())
    })
    .await;
    let takeover = stopped.elapsed();
    h.patch_spec("demo", json!({"gateway": {"replicas": 4}}))
        .await;
    eventually("op-b to reconcile", SLOW, || async {
        let gw = h.get("apps/v1", "Deployment", "demo-gateway").await?;
        (gw["spec"]["replicas"] == 4).then_some(())
    })
    .await;
    assert_eq!(b.http_get("/readyz").await.unwrap(), (200, "leader".into()));
    let lease = h
        .get("coordination.k8s.io/v1", "Lease", &h.release.fullname)
        .await
        .unwrap();
    assert_eq!(lease["spec"]["leaseTransitions"], 1);
    eprintln!("MEASURE leader_takeover_ms={}", takeover.as_millis());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_revocation_and_restart() {
    let h = Harness::new("keys").await;
    let op = h.operator("op-0");
    h.apply_stack(
        "demo",
        json!({"keys": {"propagationDelay": "2s", "rotationInterval": "0s"}}),
    )
    .await;
    h.converged("demo").await;
    let ring = h.key_ring("demo").await.unwrap();
    let first = ring.active().unwrap().kid.clone();
    assert_eq!(ring.keys.len(), 1);
    let s = h.stack_json("demo").await.unwrap();
    assert_eq!(s["status"]["keys"]["activeKid"], first.as_str());
    assert!(
        s["status"]["keys"]["nextRotationTime"].is_null(),
        "manual rotation only"
    );
    let hash = || async {
        h.get("apps/v1", "Deployment", "demo-auth-svc")
            .await
            .unwrap()["spec"]["template"]["metadata"]["annotations"]["authstack.io/config-hash"]
            .clone()
    };
    let hash_before = hash().await;

    // Manual rotation: a pending key first.
    h.patch_spec("demo", json!({"keys": {"rotationCounter": 1}}))
        .await;
    let pending = eventually("a pending key", SLOW, || async {
        let ring = h.key_ring("demo").await?;
        let s = h.stack_json("demo").await?;
        let pending = ring.kids(KeyState::Pending);
        (pending.len() == 1
            && s["status"]["keys"]["pendingKids"] == json!(pending)
            && s["status"]["keys"]["observedRotationCounter"] == 1)
            .then(|| pending[0].clone())
    })
    .await;
    assert_eq!(
        h.key_ring("demo").await.unwrap().active().unwrap().kid,
        first
    );
    let jwks = h.get("v1", "ConfigMap", "demo-jwks").await.unwrap();
    assert!(
        jwks["data"]["jwks.json"]
            .as_str()
            .unwrap()
            .contains(&pending),
        "published for verification"
    );

    // Restart the operator while the rotation is under way: it continues, it does not redo it.
    assert!(op.stop().await.success());
    let op = h.operator("op-1");
    let promoted = eventually("the pending key to become active", SLOW, || async {
        let ring = h.key_ring("demo").await?;
        (ring.active()?.kid == pending).then_some(ring)
    })
    .await;
    assert_eq!(promoted.keys.len(), 2, "no second rotation");
    assert_eq!(
        promoted.kids(KeyState::Retiring),
        std::slice::from_ref(&first)
    );
    assert_eq!(promoted.rotation.observed_rotation_counter, 1);
    eventually("status to follow", SLOW, || async {
        let s = h.stack_json("demo").await?;
        (s["status"]["keys"]["activeKid"] == pending.as_str()
            && s["status"]["keys"]["retiringKids"] == json!([first]))
        .then_some(())
    })
    .await;
    assert_eq!(hash().await, hash_before, "key changes never restart pods");

    // Emergency revocation of the retiring key: gone at once, with a Warning event.
    h.patch_spec("demo", json!({"keys": {"revokedKids": [first]}}))
        .await;
    eventually("the revoked key to disappear", SLOW, || async {
        let ring = h.key_ring("demo").await?;
        (!ring.contains(&first) && ring.active()?.kid == pending).then_some(())
    })
    .await;
    eventually("a KeyRevoked event", SLOW, || async {
        h.events().await.into_iter().find(|e| {
            e["reason"] == "KeyRevoked" && e["note"].as_str().is_some_and(|n| n.contains(&first))
        })
    })
    .await;
    assert!(h.event_reasons().await.iter().any(|r| r == "KeyRotated"));

    // Another restart changes nothing.
    let before = h.get("v1", "Secret", "demo-signing-keys").await.unwrap();
    assert!(op.stop().await.success());
    let op = h.operator("op-2");
    eventually("op-2 to reconcile", SLOW, || async {
        (op.metric(RECONCILIATIONS).await >= 1.0).then_some(())
    })
    .await;
    let after = h.get("v1", "Secret", "demo-signing-keys").await.unwrap();
    assert_eq!(
        after["metadata"]["resourceVersion"],
        before["metadata"]["resourceVersion"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_plugin_status_rotate_and_revoke() {
    let h = Harness::new("plugin").await;
    let ns = h.ns().to_owned();
    let _op = h.operator("op-0");
    h.apply_stack("demo", json!({"keys": {"propagationDelay": "1h"}}))
        .await;
    h.converged("demo").await;
    let kid = h
        .key_ring("demo")
        .await
        .unwrap()
        .active()
        .unwrap()
        .kid
        .clone();
    // Through the real kubectl, which finds kubectl-authstack on its PATH.
    let plugin = |args: &[&str]| {
        let mut all = vec!["authstack"];
        all.extend_from_slice(args);
        let out = h.kubectl(&all);
        (out.success, out.stdout, out.stderr)
    };

    let (ok, out, err) = plugin(&["status", "demo", "-n", &ns]);
    assert!(ok, "{err}");
    assert!(out.contains(&format!("AuthStack {ns}/demo")), "{out}");
    assert!(out.contains(&format!("Active:            {kid}")), "{out}");
    assert!(
        out.contains("Ready") && out.contains("COMPONENTS") && out.contains("postgres"),
        "{out}"
    );

    let (ok, out, err) = plugin(&["-n", &ns, "rotate", "demo"]);
    assert!(ok, "{err}");
    assert!(out.contains("rotationCounter is now 1"), "{out}");
    let pending = eventually("a pending key", SLOW, || async {
        let s = h.stack_json("demo").await?;
        s["status"]["keys"]["pendingKids"][0]
            .as_str()
            .map(str::to_owned)
    })
    .await;
    let (_, out, _) = plugin(&["status", "demo", "-n", &ns]);
    assert!(
        out.contains(&format!("Pending:           {pending}")),
        "{out}"
    );

    let (ok, _, err) = plugin(&["revoke", "demo", "no-such-kid", "-n", &ns]);
    assert!(!ok);
    assert!(
        err.contains("no-such-kid") && err.contains("--force"),
        "{err}"
    );

    let (ok, out, err) = plugin(&["revoke", "demo", &kid, "-n", &ns]);
    assert!(ok, "{err}");
    assert!(out.contains("revoked the signing key"), "{out}");
    let s = eventually("the pending key to sign at once", SLOW, || async {
        let s = h.stack_json("demo").await?;
        (s["status"]["keys"]["activeKid"] == pending.as_str()).then_some(s)
    })
    .await;
    assert_eq!(
        s["status"]["keys"]["emergencyActivation"]["kid"],
        pending.as_str()
    );
    assert!(!h.key_ring("demo").await.unwrap().contains(&kid));
    let (_, out, _) = plugin(&["status", "demo", "-n", &ns]);
    assert!(out.contains("WARNING: key"), "{out}");
    let (ok, out, _) = plugin(&["revoke", "demo", &kid, "-n", &ns]);
    assert!(ok && out.contains("already revoked"), "{out}");

    let (ok, _, err) = plugin(&["status", "nope", "-n", &ns]);
    assert!(!ok && err.contains("not found"), "{err}");
}

/// The Lease protocol itself, in-process against the real API server: racing replicas,
/// release and expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_is_held_by_one_replica_at_a_time() {
    use authstack_operator::leader::{LeaderElector, LeaseConfig};
    let h = Harness::new("lease").await;
    let elector = |id: &str, secs: u64| {
        LeaderElector::new(
            h.client.clone(),
            LeaseConfig {
                name: "race".into(),
                namespace: h.ns().to_owned(),
                identity: id.into(),
                lease_duration: Duration::from_secs(secs),
                renew_interval: Duration::from_millis(300),
                retry_interval: Duration::from_millis(100),
            },
        )
    };
    let holder = || async {
        h.get("coordination.k8s.io/v1", "Lease", "race")
            .await
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned))
    };
    // Many rounds of both replicas racing: never both true, and the holder never flips.
    let (a, b) = (elector("a", 2), elector("b", 2));
    let mut first = None;
    for _ in 0..20 {
        let (ra, rb) = tokio::join!(a.try_acquire_or_renew(), b.try_acquire_or_renew());
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        assert!(!(ra && rb), "both replicas hold the lease");
        if ra || rb {
            let winner = if ra { "a" } else { "b" };
            assert_eq!(
                *first.get_or_insert(winner),
                winner,
                "leadership flipped while renewed"
            );
        }
    }
    let winner = first.expect("someone acquired the lease");
    assert_eq!(holder().await.as_deref(), Some(winner));
    let (leader, standby, standby_id) = if winner == "a" {
        (&a, &b, "b")
    } else {
        (&b, &a, "a")
    };

    // Release: the standby gets it at its next try.
    leader.release().await.unwrap();
    assert_eq!(holder().await, None);
    assert!(standby.try_acquire_or_renew().await.unwrap());
    assert_eq!(holder().await.as_deref(), Some(standby_id));

    // Expiry: the old leader takes over only once the record stayed unchanged for the lease
    // duration (2 s) by its own clock.
    assert!(!leader.try_acquire_or_renew().await.unwrap());
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(!leader.try_acquire_or_renew().await.unwrap());
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(leader.try_acquire_or_renew().await.unwrap());
    assert_eq!(holder().await.as_deref(), Some(winner));
    let lease = h
        .get("coordination.k8s.io/v1", "Lease", "race")
        .await
        .unwrap();
    assert_eq!(lease["spec"]["leaseTransitions"], 2);
    // The replica that lost it finds out at its next renewal.
    assert!(!standby.try_acquire_or_renew().await.unwrap());
}
