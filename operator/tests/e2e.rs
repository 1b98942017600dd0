//! End-to-end tests: the real operator binary against the fake API server, driven with the real
//! kube client. Each test has its own server and operator process, so they run in parallel.

mod common;

use std::time::{Duration, Instant};

use authstack_keyring::KeyState;
use common::*;
use kube::api::{DeleteParams, PostParams};
use serde_json::{Value, json};

const NS: &str = "team-a";

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_stack_converges_with_full_wiring() {
    let h = Harness::new("converge").await;
    h.namespace(NS);
    let op = h.operator("op-0");
    op.wait_http_ready().await;
    let start = Instant::now();
    let stack = h.apply_stack(NS, "demo", json!({})).await;
    h.converged(NS, "demo").await;
    let converged = start.elapsed();
    let uid = stack.metadata.uid.clone().unwrap();

    for (v, k, n) in Harness::default_objects("demo") {
        let obj = h.get(v, k, NS, &n).unwrap();
        labels_and_owner(&obj, "demo", &uid);
    }

    // auth-svc: the configuration contract.
    let auth = h.get("apps/v1", "Deployment", NS, "demo-auth-svc").unwrap();
    assert_eq!(auth["spec"]["replicas"], 2);
    let c = first_container(&auth);
    assert_eq!(
        c["image"],
        format!("ghcr.io/authstack/auth-svc:{}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        env_secret(c, "DATABASE_URL"),
        ("demo-postgres".into(), "url".into())
    );
    assert_eq!(
        env_secret(c, "AMQP_URL"),
        ("demo-rabbitmq".into(), "url".into())
    );
    for (k, v) in [
        ("AUTH_RPC_QUEUE", "auth.rpc"),
        ("AUTH_EVENTS_EXCHANGE", "auth.events"),
        ("AUTH_KEY_DIR", "/var/run/authstack/keys"),
        ("AUTH_ISSUER", "http://demo-gateway.team-a.svc"),
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
    let gw = h.get("apps/v1", "Deployment", NS, "demo-gateway").unwrap();
    let g = first_container(&gw);
    assert_eq!(
        env_secret(g, "AMQP_URL"),
        ("demo-rabbitmq".into(), "url".into())
    );
    assert_eq!(env_value(g, "GATEWAY_LISTEN"), "0.0.0.0:8080");
    assert_eq!(env_value(g, "GATEWAY_RPC_TIMEOUT_MS"), "5000");
    assert_eq!(env_value(g, "GATEWAY_TRUST_FORWARDED_FOR"), "false");
    assert!(!gw.to_string().contains("signing-keys"));
    assert_eq!(g["readinessProbe"]["httpGet"]["port"], 8080);
    let svc = h.get("v1", "Service", NS, "demo-gateway").unwrap();
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert_eq!(svc["spec"]["ports"][0]["port"], 80);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);

    // Managed data stores.
    let pg = h
        .get("apps/v1", "StatefulSet", NS, "demo-postgres")
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
    let pg_secret = secret_data(&h.get("v1", "Secret", NS, "demo-postgres").unwrap());
    let password = String::from_utf8(pg_secret["password"].clone()).unwrap();
    assert_eq!(password.len(), 32);
    assert_eq!(
        String::from_utf8(pg_secret["url"].clone()).unwrap(),
        format!("postgres://authstack:{password}@demo-postgres.team-a.svc:5432/authstack")
    );
    let mq_secret = secret_data(&h.get("v1", "Secret", NS, "demo-rabbitmq").unwrap());
    assert!(mq_secret.contains_key("erlang-cookie") && mq_secret.contains_key("url"));
    let mq = h
        .get("apps/v1", "StatefulSet", NS, "demo-rabbitmq")
        .unwrap();
    assert_eq!(
        env_secret(first_container(&mq), "RABBITMQ_ERLANG_COOKIE"),
        ("demo-rabbitmq".into(), "erlang-cookie".into())
    );

    // Network policies and budgets.
    let np = h
        .get("networking.k8s.io/v1", "NetworkPolicy", NS, "demo-postgres")
        .unwrap();
    assert_eq!(
        np["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
        "auth-svc"
    );
    assert_eq!(np["spec"]["ingress"][0]["ports"][0]["port"], 5432);
    let pdb = h
        .get("policy/v1", "PodDisruptionBudget", NS, "demo-gateway")
        .unwrap();
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);

    // Status: keys reported, not ready yet (nothing runs on a fake server).
    let s = h.stack_json(NS, "demo").unwrap();
    assert_eq!(s["status"]["observedGeneration"], 1);
    assert_eq!(condition_status(&s, "Ready").as_deref(), Some("False"));
    assert_eq!(condition_status(&s, "Progressing").as_deref(), Some("True"));
    assert_eq!(condition_status(&s, "Degraded").as_deref(), Some("False"));
    assert_eq!(
        s["status"]["gatewayEndpoint"],
        "http://demo-gateway.team-a.svc"
    );
    let ring = key_ring(&h, NS, "demo").unwrap();
    assert_eq!(
        s["status"]["keys"]["activeKid"],
        ring.active().unwrap().kid.as_str()
    );
    let jwks = h.get("v1", "ConfigMap", NS, "demo-jwks").unwrap();
    assert!(
        jwks["data"]["jwks.json"]
            .as_str()
            .unwrap()
            .contains(&ring.active().unwrap().kid)
    );

    // Events and the operator's own endpoints.
    eventually(
        "Created and KeyRotated events",
        Duration::from_secs(5),
        || async {
            let reasons = h.event_reasons(NS);
            (reasons.iter().any(|r| r == "Created") && reasons.iter().any(|r| r == "KeyRotated"))
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        op.http_get("/readyz").await.unwrap(),
        (200, "leader".into())
    );
    eventually("the reconcile metrics", Duration::from_secs(5), || async {
        (op.metric("authstack_operator_reconciliations_total").await >= 1.0).then_some(())
    })
    .await;
    let (_, metrics) = op.http_get("/metrics").await.unwrap();
    assert!(metrics.contains("authstack_operator_reconcile_duration_seconds_bucket"));
    let rss = op.rss_kib();
    eprintln!(
        "MEASURE converge_one_stack_ms={} operator_rss_kib={rss}",
        converged.as_millis()
    );
    assert!(
        converged < Duration::from_secs(2),
        "converged in {converged:?}"
    );
    assert!(rss < 64 * 1024, "RSS {rss} KiB");
    let status = op.stop().await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_roll_out_while_credentials_stay_identical() {
    let h = Harness::new("update").await;
    h.namespace(NS);
    let _op = h.operator("op-0");
    h.apply_stack(NS, "demo", json!({})).await;
    h.converged(NS, "demo").await;
    let pg_before = h.get("v1", "Secret", NS, "demo-postgres").unwrap();
    let mq_before = h.get("v1", "Secret", NS, "demo-rabbitmq").unwrap();
    let keys_before = h.get("v1", "Secret", NS, "demo-signing-keys").unwrap();
    let auth_before = h.get("apps/v1", "Deployment", NS, "demo-auth-svc").unwrap();
    let hash_before =
        auth_before["spec"]["template"]["metadata"]["annotations"]["authstack.io/config-hash"]
            .clone();

    h.patch_spec(
        NS,
        "demo",
        json!({
            "gateway": {"replicas": 3, "image": "example.com/gateway:2"},
            "authService": {"replicas": 1, "image": "example.com/auth:2", "tokens": {"accessTokenTtl": "5m"}},
        }),
    )
    .await;
    eventually(
        "the changes to roll out",
        Duration::from_secs(10),
        || async {
            let gw = h.get("apps/v1", "Deployment", NS, "demo-gateway")?;
            let auth = h.get("apps/v1", "Deployment", NS, "demo-auth-svc")?;
            let done = gw["spec"]["replicas"] == 3
                && first_container(&gw)["image"] == "example.com/gateway:2"
                && auth["spec"]["replicas"] == 1
                && first_container(&auth)["image"] == "example.com/auth:2"
                && env_value(first_container(&auth), "AUTH_ACCESS_TOKEN_TTL") == "300"
                && h.get("policy/v1", "PodDisruptionBudget", NS, "demo-auth-svc")
                    .is_none()
                && h.stack_json(NS, "demo")?["status"]["observedGeneration"] == 2;
            done.then_some(())
        },
    )
    .await;
    let auth = h.get("apps/v1", "Deployment", NS, "demo-auth-svc").unwrap();
    assert_ne!(
        auth["spec"]["template"]["metadata"]["annotations"]["authstack.io/config-hash"],
        hash_before,
        "an env change rolls the pods"
    );
    assert!(
        h.get("policy/v1", "PodDisruptionBudget", NS, "demo-gateway")
            .is_some()
    );
    // Generated credentials: byte-identical, never rewritten.
    for (before, name) in [(&pg_before, "demo-postgres"), (&mq_before, "demo-rabbitmq")] {
        let now = h.get("v1", "Secret", NS, name).unwrap();
        assert_eq!(secret_data(&now), secret_data(before), "{name}");
        assert_eq!(
            now["metadata"]["resourceVersion"], before["metadata"]["resourceVersion"],
            "{name}"
        );
    }
    // The key ring is untouched by unrelated changes.
    let keys_now = h.get("v1", "Secret", NS, "demo-signing-keys").unwrap();
    assert_eq!(
        keys_now["metadata"]["resourceVersion"],
        keys_before["metadata"]["resourceVersion"]
    );
    assert!(h.event_reasons(NS).iter().any(|r| r == "Deleted"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_postgres_to_external_removes_the_managed_database() {
    let h = Harness::new("external").await;
    h.namespace(NS);
    let _op = h.operator("op-0");
    h.apply_stack(NS, "demo", json!({})).await;
    h.converged(NS, "demo").await;
    h.server
        .create(&json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "cloud-db", "namespace": NS},
            "stringData": {"uri": "postgres://app:secret@db.example.com:5432/app"},
        }))
        .unwrap();
    h.patch_spec(
        NS,
        "demo",
        json!({"postgres": {"managed": null, "external": {"secretRef": {"name": "cloud-db", "key": "uri"}}}}),
    )
    .await;
    eventually(
        "the managed PostgreSQL to go",
        Duration::from_secs(10),
        || async {
            let gone = [
                ("apps/v1", "StatefulSet"),
                ("v1", "Service"),
                ("v1", "Secret"),
                ("v1", "ServiceAccount"),
                ("networking.k8s.io/v1", "NetworkPolicy"),
            ]
            .iter()
            .all(|(v, k)| h.get(v, k, NS, "demo-postgres").is_none());
            let auth = h.get("apps/v1", "Deployment", NS, "demo-auth-svc")?;
            let rewired = env_secret(first_container(&auth), "DATABASE_URL")
                == ("cloud-db".into(), "uri".into());
            (gone && rewired).then_some(())
        },
    )
    .await;
    assert!(
        h.get("v1", "Secret", NS, "cloud-db").is_some(),
        "the user's Secret is not ours"
    );
    assert!(
        h.get("apps/v1", "StatefulSet", NS, "demo-rabbitmq")
            .is_some()
    );
    let s = eventually(
        "status for the external database",
        Duration::from_secs(5),
        || async {
            let s = h.stack_json(NS, "demo")?;
            (s["status"]["observedGeneration"] == 2).then_some(s)
        },
    )
    .await;
    let pg = &s["status"]["components"]["postgres"];
    assert_eq!(pg["ready"], true);
    assert!(pg["message"].as_str().unwrap().contains("cloud-db"));
    assert_eq!(condition_status(&s, "Degraded").as_deref(), Some("False"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_when_every_workload_reports_ready() {
    let h = Harness::new("ready").await;
    h.namespace(NS);
    let _op = h.operator("op-0");
    h.apply_stack(NS, "demo", json!({})).await;
    h.converged(NS, "demo").await;
    // Three of four is not enough.
    for (kind, obj) in [
        ("StatefulSet", "postgres"),
        ("StatefulSet", "rabbitmq"),
        ("Deployment", "auth-svc"),
    ] {
        h.server
            .mark_ready(kind, NS, &format!("demo-{obj}"))
            .unwrap();
    }
    let s = eventually(
        "auth-svc ready in status",
        Duration::from_secs(5),
        || async {
            let s = h.stack_json(NS, "demo")?;
            (s["status"]["components"]["authService"]["ready"] == true).then_some(s)
        },
    )
    .await;
    assert_eq!(condition_status(&s, "Ready").as_deref(), Some("False"));
    assert!(
        condition(&s, "Ready").unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("gateway")
    );

    h.server
        .mark_ready("Deployment", NS, "demo-gateway")
        .unwrap();
    let s = eventually("Ready=True", Duration::from_secs(5), || async {
        let s = h.stack_json(NS, "demo")?;
        (condition_status(&s, "Ready").as_deref() == Some("True")).then_some(s)
    })
    .await;
    assert_eq!(
        condition_status(&s, "Progressing").as_deref(),
        Some("False")
    );
    assert_eq!(condition_status(&s, "Degraded").as_deref(), Some("False"));
    assert_eq!(s["status"]["observedGeneration"], 1);
    for c in s["status"]["conditions"].as_array().unwrap() {
        assert_eq!(c["observedGeneration"], 1, "{c}");
    }
    let components = &s["status"]["components"];
    assert_eq!(components["gateway"]["readyReplicas"], 2);
    assert_eq!(components["postgres"]["ready"], true);
    let ready_since = condition(&s, "Ready").unwrap()["lastTransitionTime"].clone();

    // A reconcile that changes nothing keeps the transition time.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let touched = h
        .stacks(NS)
        .patch(
            "demo",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&json!({"metadata": {"annotations": {"touch": "1"}}})),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = h.stack_json(NS, "demo").unwrap();
    assert_eq!(
        condition(&s, "Ready").unwrap()["lastTransitionTime"],
        ready_since
    );
    assert_eq!(
        s["metadata"]["resourceVersion"].as_str(),
        touched.metadata.resource_version.as_deref(),
        "an unchanged status is not rewritten"
    );

    // A spec change makes the gateway roll out again: not ready until it reports so.
    h.patch_spec(NS, "demo", json!({"gateway": {"rpcTimeout": "3s"}}))
        .await;
    let s = eventually(
        "Ready=False during the rollout",
        Duration::from_secs(5),
        || async {
            let s = h.stack_json(NS, "demo")?;
            (s["status"]["observedGeneration"] == 2
                && condition_status(&s, "Progressing").as_deref() == Some("True"))
            .then_some(s)
        },
    )
    .await;
    assert_eq!(condition_status(&s, "Ready").as_deref(), Some("False"));
    assert_ne!(
        condition(&s, "Ready").unwrap()["lastTransitionTime"],
        ready_since
    );
    h.server
        .mark_ready("Deployment", NS, "demo-gateway")
        .unwrap();
    eventually("Ready=True again", Duration::from_secs(5), || async {
        let s = h.stack_json(NS, "demo")?;
        (condition_status(&s, "Ready").as_deref() == Some("True")).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_stack_removes_everything_it_owned() {
    let h = Harness::new("delete").await;
    h.namespace(NS);
    let _op = h.operator("op-0");
    h.apply_stack(NS, "demo", json!({})).await;
    h.converged(NS, "demo").await;
    h.server
        .create(&json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "unrelated", "namespace": NS}}))
        .unwrap();
    h.stacks(NS)
        .delete("demo", &DeleteParams::default())
        .await
        .unwrap();
    eventually(
        "every owned object to be collected",
        Duration::from_secs(10),
        || async {
            let left: Vec<_> = Harness::default_objects("demo")
                .into_iter()
                .filter(|(v, k, n)| h.get(v, k, NS, n).is_some())
                .collect();
            left.is_empty().then_some(())
        },
    )
    .await;
    assert!(h.stack_json(NS, "demo").is_none());
    assert!(h.get("v1", "Secret", NS, "unrelated").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_stacks_are_rejected_with_a_clear_message() {
    let h = Harness::new("invalid").await;
    h.namespace(NS);
    let api = h.stacks(NS);
    let cases = [
        (json!({"gateway": {"replicas": 0}}), "spec.gateway.replicas"),
        (
            json!({"keys": {"algorithm": "HS256"}}),
            "spec.keys.algorithm",
        ),
        (
            json!({"authService": {"tokens": {"accessTokenTtl": "15 minutes"}}}),
            "spec.authService.tokens.accessTokenTtl",
        ),
        (
            json!({"authService": {"argon2": {"memoryKib": 4096}}}),
            "spec.authService.argon2.memoryKib",
        ),
        (
            json!({"keys": {"rotationCounter": -1}}),
            "spec.keys.rotationCounter",
        ),
    ];
    let ar = kube::core::ApiResource::erase::<authstack_operator::crd::AuthStack>(&());
    let raw: kube::Api<kube::api::DynamicObject> =
        kube::Api::namespaced_with(h.client.clone(), NS, &ar);
    for (i, (spec, field)) in cases.into_iter().enumerate() {
        let obj: kube::api::DynamicObject = serde_json::from_value(json!({
            "apiVersion": "authstack.io/v1alpha1", "kind": "AuthStack",
            "metadata": {"name": format!("bad-{i}"), "namespace": NS},
            "spec": spec,
        }))
        .unwrap();
        let message = match raw.create(&PostParams::default(), &obj).await {
            Err(kube::Error::Api(s)) => {
                assert_eq!(s.code, 422, "{spec}: {s:?}");
                s.message
            }
            Ok(_) => panic!("{spec} was accepted"),
            Err(e) => panic!("{spec}: {e}"),
        };
        assert!(message.contains(field), "{spec}: {message}");
    }
    // Nothing invalid was stored; a valid one is accepted.
    assert!(
        api.list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    h.apply_stack(NS, "good", json!({"gateway": {"replicas": 1}}))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_managed_and_external_is_degraded() {
    let h = Harness::new("degraded").await;
    h.namespace(NS);
    let _op = h.operator("op-0");
    // The fake API server does not evaluate CEL, so the operator must catch this itself.
    h.apply_stack(
        NS,
        "demo",
        json!({"postgres": {"managed": {}, "external": {"secretRef": {"name": "db"}}}}),
    )
    .await;
    let s = eventually("Degraded=True", Duration::from_secs(10), || async {
        let s = h.stack_json(NS, "demo")?;
        (condition_status(&s, "Degraded").as_deref() == Some("True")).then_some(s)
    })
    .await;
    let degraded = condition(&s, "Degraded").unwrap();
    assert_eq!(degraded["reason"], "InvalidSpec");
    assert!(
        degraded["message"]
            .as_str()
            .unwrap()
            .contains("spec.postgres: exactly one of managed or external")
    );
    assert_eq!(condition_status(&s, "Ready").as_deref(), Some("False"));
    assert_eq!(s["status"]["observedGeneration"], 1);
    eventually("an InvalidSpec event", Duration::from_secs(5), || async {
        h.events(NS)
            .into_iter()
            .find(|e| e["reason"] == "InvalidSpec" && e["type"] == "Warning")
    })
    .await;
    assert!(
        h.get("apps/v1", "Deployment", NS, "demo-auth-svc")
            .is_none()
    );

    // Fixing the spec clears it.
    h.patch_spec(NS, "demo", json!({"postgres": {"external": null}}))
        .await;
    h.converged(NS, "demo").await;
    eventually("Degraded=False", Duration::from_secs(5), || async {
        let s = h.stack_json(NS, "demo")?;
        (condition_status(&s, "Degraded").as_deref() == Some("False")).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_takes_over_objects_it_does_not_own() {
    let h = Harness::new("not-owned").await;
    h.namespace(NS);
    let _op = h.operator("op-0");
    h.server
        .create(&json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "demo-postgres", "namespace": NS},
            "stringData": {"password": "somebody-elses"},
        }))
        .unwrap();
    h.apply_stack(NS, "demo", json!({})).await;
    let s = eventually("Degraded=True", Duration::from_secs(10), || async {
        let s = h.stack_json(NS, "demo")?;
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
    eventually("a ReconcileError event", Duration::from_secs(5), || async {
        h.events(NS)
            .into_iter()
            .find(|e| e["reason"] == "ReconcileError" && e["type"] == "Warning")
    })
    .await;
    let theirs = h.get("v1", "Secret", NS, "demo-postgres").unwrap();
    assert!(theirs["metadata"]["ownerReferences"].is_null());
    assert_eq!(secret_data(&theirs)["password"], b"somebody-elses");

    // Once the conflicting object is gone, the retry (with backoff) converges.
    h.server
        .delete("v1", "Secret", Some(NS), "demo-postgres")
        .unwrap();
    h.converged(NS, "demo").await;
    eventually("Degraded=False", Duration::from_secs(10), || async {
        let s = h.stack_json(NS, "demo")?;
        (condition_status(&s, "Degraded").as_deref() == Some("False")).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_replica_takes_over_when_the_leader_leaves() {
    let h = Harness::new("leader").await;
    h.namespace(NS);
    let a = h.operator("op-a");
    eventually("op-a to lead", Duration::from_secs(10), || async {
        (h.lease_holder().as_deref() == Some("op-a")).then_some(())
    })
    .await;
    let b = h.operator("op-b");
    b.wait_http_ready().await;
    eventually(
        "op-b to be ready as standby",
        Duration::from_secs(10),
        || async {
            b.http_get("/readyz")
                .await
                .filter(|r| *r == (200, "standby".to_owned()))
        },
    )
    .await;
    h.apply_stack(NS, "demo", json!({})).await;
    h.converged(NS, "demo").await;
    // Let op-b run a few retry rounds: it must stay passive.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(h.lease_holder().as_deref(), Some("op-a"));
    assert_eq!(
        b.metric("authstack_operator_reconciliations_total").await,
        0.0
    );
    assert!(a.metric("authstack_operator_reconciliations_total").await >= 1.0);

    let stopped = Instant::now();
    let status = a.stop().await;
    assert!(status.success(), "{status:?}");
    eventually("op-b to take over", Duration::from_secs(5), || async {
        (h.lease_holder().as_deref() == Some("op-b")).then_some(())
    })
    .await;
    let takeover = stopped.elapsed();
    h.patch_spec(NS, "demo", json!({"gateway": {"replicas": 4}}))
        .await;
    eventually("op-b to reconcile", Duration::from_secs(5), || async {
        let gw = h.get("apps/v1", "Deployment", NS, "demo-gateway")?;
        (gw["spec"]["replicas"] == 4).then_some(())
    })
    .await;
    assert_eq!(b.http_get("/readyz").await.unwrap(), (200, "leader".into()));
    let lease = h
        .get(
            "coordination.k8s.io/v1",
            "Lease",
            "default",
            "authstack-operator",
        )
        .unwrap();
    assert_eq!(lease["spec"]["leaseTransitions"], 1);
    eprintln!("MEASURE leader_takeover_ms={}", takeover.as_millis());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_revocation_and_restart() {
    let h = Harness::new("keys").await;
    h.namespace(NS);
    let op = h.operator("op-0");
    h.apply_stack(
        NS,
        "demo",
        json!({"keys": {"propagationDelay": "2s", "rotationInterval": "0s"}}),
    )
    .await;
    h.converged(NS, "demo").await;
    let ring = key_ring(&h, NS, "demo").unwrap();
    let first = ring.active().unwrap().kid.clone();
    assert_eq!(ring.keys.len(), 1);
    let s = h.stack_json(NS, "demo").unwrap();
    assert_eq!(s["status"]["keys"]["activeKid"], first.as_str());
    assert!(
        s["status"]["keys"]["nextRotationTime"].is_null(),
        "manual rotation only"
    );
    let hash = |h: &Harness| {
        h.get("apps/v1", "Deployment", NS, "demo-auth-svc").unwrap()["spec"]["template"]["metadata"]
            ["annotations"]["authstack.io/config-hash"]
            .clone()
    };
    let hash_before = hash(&h);

    // Manual rotation: a pending key first.
    h.patch_spec(NS, "demo", json!({"keys": {"rotationCounter": 1}}))
        .await;
    let pending = eventually("a pending key", Duration::from_secs(5), || async {
        let ring = key_ring(&h, NS, "demo")?;
        let s = h.stack_json(NS, "demo")?;
        let pending = ring.kids(KeyState::Pending);
        (pending.len() == 1
            && s["status"]["keys"]["pendingKids"] == json!(pending)
            && s["status"]["keys"]["observedRotationCounter"] == 1)
            .then(|| pending[0].clone())
    })
    .await;
    assert_eq!(
        key_ring(&h, NS, "demo").unwrap().active().unwrap().kid,
        first
    );
    let jwks = h.get("v1", "ConfigMap", NS, "demo-jwks").unwrap();
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
    let promoted_at = eventually(
        "the pending key to become active",
        Duration::from_secs(8),
        || async {
            let ring = key_ring(&h, NS, "demo")?;
            (ring.active()?.kid == pending).then_some(ring)
        },
    )
    .await;
    assert_eq!(promoted_at.keys.len(), 2, "no second rotation");
    assert_eq!(
        promoted_at.kids(KeyState::Retiring),
        std::slice::from_ref(&first)
    );
    assert_eq!(promoted_at.rotation.observed_rotation_counter, 1);
    eventually("status to follow", Duration::from_secs(5), || async {
        let s = h.stack_json(NS, "demo")?;
        (s["status"]["keys"]["activeKid"] == pending.as_str()
            && s["status"]["keys"]["retiringKids"] == json!([first]))
        .then_some(())
    })
    .await;
    assert_eq!(hash(&h), hash_before, "key changes never restart pods");

    // Emergency revocation of the retiring key: gone at once, with a Warning event.
    h.patch_spec(NS, "demo", json!({"keys": {"revokedKids": [first]}}))
        .await;
    eventually(
        "the revoked key to disappear",
        Duration::from_secs(5),
        || async {
            let ring = key_ring(&h, NS, "demo")?;
            (!ring.contains(&first) && ring.active()?.kid == pending).then_some(())
        },
    )
    .await;
    eventually("a KeyRevoked event", Duration::from_secs(5), || async {
        h.events(NS).into_iter().find(|e| {
            e["reason"] == "KeyRevoked" && e["note"].as_str().is_some_and(|n| n.contains(&first))
        })
    })
    .await;
    assert!(h.event_reasons(NS).iter().any(|r| r == "KeyRotated"));

    // Another restart changes nothing.
    let before = h.get("v1", "Secret", NS, "demo-signing-keys").unwrap();
    assert!(op.stop().await.success());
    let op = h.operator("op-2");
    eventually("op-2 to reconcile", Duration::from_secs(8), || async {
        (op.metric("authstack_operator_reconciliations_total").await >= 1.0).then_some(())
    })
    .await;
    let after = h.get("v1", "Secret", NS, "demo-signing-keys").unwrap();
    assert_eq!(
        after["metadata"]["resourceVersion"],
        before["metadata"]["resourceVersion"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_plugin_status_rotate_and_revoke() {
    let h = Harness::new("plugin").await;
    h.namespace(NS);
    let _op = h.operator("op-0");
    h.apply_stack(NS, "demo", json!({"keys": {"propagationDelay": "1h"}}))
        .await;
    h.converged(NS, "demo").await;
    let kid = key_ring(&h, NS, "demo")
        .unwrap()
        .active()
        .unwrap()
        .kid
        .clone();
    let plugin = |args: &[&str]| h.plugin(args);

    let (ok, out, err) = plugin(&["status", "demo", "-n", NS]);
    assert!(ok, "{err}");
    assert!(out.contains("AuthStack team-a/demo"), "{out}");
    assert!(out.contains(&format!("Active:            {kid}")), "{out}");
    assert!(
        out.contains("Ready") && out.contains("COMPONENTS") && out.contains("postgres"),
        "{out}"
    );

    let (ok, out, err) = plugin(&["-n", NS, "rotate", "demo"]);
    assert!(ok, "{err}");
    assert!(out.contains("rotationCounter is now 1"), "{out}");
    let pending = eventually("a pending key", Duration::from_secs(5), || async {
        let s = h.stack_json(NS, "demo")?;
        s["status"]["keys"]["pendingKids"][0]
            .as_str()
            .map(str::to_owned)
    })
    .await;
    let (_, out, _) = plugin(&["status", "demo", "-n", NS]);
    assert!(
        out.contains(&format!("Pending:           {pending}")),
        "{out}"
    );

    let (ok, _, err) = plugin(&["revoke", "demo", "no-such-kid", "-n", NS]);
    assert!(!ok);
    assert!(
        err.contains("no-such-kid") && err.contains("--force"),
        "{err}"
    );

    let (ok, out, err) = plugin(&["revoke", "demo", &kid, "-n", NS]);
    assert!(ok, "{err}");
    assert!(out.contains("revoked the signing key"), "{out}");
    let s = eventually(
        "the pending key to sign at once",
        Duration::from_secs(5),
        || async {
            let s = h.stack_json(NS, "demo")?;
            (s["status"]["keys"]["activeKid"] == pending.as_str()).then_some(s)
        },
    )
    .await;
    assert_eq!(
        s["status"]["keys"]["emergencyActivation"]["kid"],
        pending.as_str()
    );
    assert!(!key_ring(&h, NS, "demo").unwrap().contains(&kid));
    let (_, out, _) = plugin(&["status", "demo", "-n", NS]);
    assert!(out.contains("WARNING: key"), "{out}");
    let (ok, out, _) = plugin(&["revoke", "demo", &kid, "-n", NS]);
    assert!(ok && out.contains("already revoked"), "{out}");

    let (ok, _, err) = plugin(&["status", "nope", "-n", NS]);
    assert!(!ok && err.contains("not found"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installs_its_crd_and_watches_one_namespace_when_told() {
    let h = Harness::with_crd("install-crd", false).await;
    h.namespace(NS);
    h.namespace("team-b");
    let op = h.operator_with(
        "op-0",
        &[
            ("INSTALL_CRD", "true"),
            ("WATCH_NAMESPACE", NS),
            ("LEADER_ELECTION", "false"),
        ],
    );
    eventually(
        "the CRD to be installed",
        Duration::from_secs(10),
        || async {
            h.server.get(
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                None,
                "authstacks.authstack.io",
            )
        },
    )
    .await;
    op.wait_http_ready().await;
    eventually(
        "the operator to be ready",
        Duration::from_secs(10),
        || async {
            op.http_get("/readyz")
                .await
                .filter(|r| *r == (200, "leader".to_owned()))
        },
    )
    .await;
    assert!(
        h.lease_holder().is_none(),
        "no leader election when disabled"
    );
    h.apply_stack("team-b", "other", json!({})).await;
    h.apply_stack(NS, "demo", json!({})).await;
    h.converged(NS, "demo").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let other = h.stack_json("team-b", "other").unwrap();
    assert!(
        other["status"].is_null(),
        "stacks outside WATCH_NAMESPACE are not reconciled"
    );
    assert!(
        h.get("apps/v1", "Deployment", "team-b", "other-gateway")
            .is_none()
    );
    assert!(op.stop().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_clearly_without_the_crd() {
    let h = Harness::with_crd("no-crd", false).await;
    let mut op = h.operator_with("op-0", &[("LEADER_ELECTION", "false")]);
    let status = tokio::time::timeout(Duration::from_secs(10), op.child.wait())
        .await
        .expect("the operator exits")
        .unwrap();
    assert!(!status.success());
    let logs = op.logs();
    assert!(logs.contains("CRD is not installed"), "{logs}");
}

/// Scale check (DESIGN section 8: 100 AuthStacks converged in < 30 s, RSS < 64 MiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_stacks_converge() {
    let h = Harness::new("hundred").await;
    h.namespace(NS);
    let op = h.operator("op-0");
    op.wait_http_ready().await;
    let start = Instant::now();
    for i in 0..100 {
        h.apply_stack(NS, &format!("s{i:03}"), json!({})).await;
    }
    let applied = start.elapsed();
    eventually(
        "100 stacks to converge",
        Duration::from_secs(60),
        || async {
            let done = (0..100).all(|i| {
                let name = format!("s{i:03}");
                h.stack_json(NS, &name)
                    .is_some_and(|s| s["status"]["keys"]["activeKid"].is_string())
                    && h.get(
                        "networking.k8s.io/v1",
                        "NetworkPolicy",
                        NS,
                        &format!("{name}-rabbitmq"),
                    )
                    .is_some()
            });
            done.then_some(())
        },
    )
    .await;
    let converged = start.elapsed();
    let rss = op.rss_kib();
    let reconciles = op.metric("authstack_operator_reconciliations_total").await;
    eprintln!(
        "MEASURE hundred_stacks_applied_ms={} hundred_stacks_converged_ms={} operator_rss_kib={rss} reconciles={reconciles}",
        applied.as_millis(),
        converged.as_millis()
    );
    assert!(converged < Duration::from_secs(30), "{converged:?}");
    assert!(rss < 64 * 1024, "RSS {rss} KiB");
}

/// The Lease protocol itself, in-process against the fake API server: racing replicas, release
/// and expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_is_held_by_one_replica_at_a_time() {
    use authstack_operator::leader::{LeaderElector, LeaseConfig};
    let h = Harness::new("lease").await;
    let elector = |id: &str, secs: u64| {
        LeaderElector::new(
            h.client.clone(),
            LeaseConfig {
                name: "race".into(),
                namespace: "default".into(),
                identity: id.into(),
                lease_duration: Duration::from_secs(secs),
                renew_interval: Duration::from_millis(300),
                retry_interval: Duration::from_millis(100),
            },
        )
    };
    let holder = || {
        h.get("coordination.k8s.io/v1", "Lease", "default", "race")
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned))
    };
    // Many rounds of both replicas racing: never both true, and the holder never flips.
    let (a, b) = (elector("a", 1), elector("b", 1));
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
    assert_eq!(holder().as_deref(), Some(winner));
    let (leader, standby, standby_id) = if winner == "a" {
        (&a, &b, "b")
    } else {
        (&b, &a, "a")
    };

    // Release: the standby gets it at its next try.
    leader.release().await.unwrap();
    assert_eq!(holder(), None);
    assert!(standby.try_acquire_or_renew().await.unwrap());
    assert_eq!(holder().as_deref(), Some(standby_id));

    // Expiry: the old leader takes over only once the record stayed unchanged for the lease
    // duration (1 s) by its own clock.
    assert!(!leader.try_acquire_or_renew().await.unwrap());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!leader.try_acquire_or_renew().await.unwrap());
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(leader.try_acquire_or_renew().await.unwrap());
    assert_eq!(holder().as_deref(), Some(winner));
    let lease = h
        .get("coordination.k8s.io/v1", "Lease", "default", "race")
        .unwrap();
    assert_eq!(lease["spec"]["leaseTransitions"], 2);
    // The replica that lost it finds out at its next renewal.
    assert!(!standby.try_acquire_or_renew().await.unwrap());
}
