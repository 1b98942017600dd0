//! The rotation proof: the operator binary on the real control plane (as the chart's
//! ServiceAccount) rotates the signing keys — on schedule, by a CR update through the kubectl plugin, and by emergency revocation —
//! while a kubelet stand-in copies the signing Secret into each auth-svc replica's key directory
//! (atomic `..data` swaps, different lags per replica), two auth-svc replicas and the gateway
//! run against real PostgreSQL and RabbitMQ, and clients keep sending traffic with tokens minted
//! before and during the rotations.
//!
//! Asserted: zero failed requests across the scheduled and the manual rotation; tokens of a
//! revoked key are rejected once the revocation reaches the services; tokens of a retired key
//! keep working until they expire.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authstack_bus::CancellationToken;
use authstack_dev::kubelet::{SecretVolume, sync_secret};
use authstack_keyring::{KeyRing, KeyState};
use authstack_protocol::broker::Component as BrokerComponent;
use authstack_testkit::broker::{broker_addr, component_url};
use authstack_testkit::cleanup::CleanupGuard;
use authstack_testkit::postgres::TestDatabase;
use common::*;
use serde_json::{Value, json};

const ISSUER: &str = "http://authstack.e2e";
const PASSWORD: &str = "correct horse battery";

async fn ring(h: &Harness) -> Option<KeyRing> {
    h.key_ring("demo").await
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .ok()
        .and_then(|h| h.kid)
        .unwrap_or_default()
}

fn plugin(h: &Harness, args: &[&str]) -> String {
    let (ok, out, err) = h.plugin(args);
    assert!(ok, "plugin {args:?}: {err}");
    out
}

/// Shared by the traffic workers.
#[derive(Default)]
struct Traffic {
    ok: AtomicU64,
    failures: Mutex<Vec<String>>,
    /// kid -> when a token signed with it was first seen.
    kids_seen: Mutex<BTreeMap<String, Instant>>,
    /// Tells the clients to stop.
    stop: AtomicBool,
}

impl Traffic {
    fn saw(&self, token: &str) {
        self.kids_seen
            .lock()
            .unwrap()
            .entry(kid_of(token))
            .or_insert_with(Instant::now);
    }

    fn failed(&self, what: String) {
        self.failures.lock().unwrap().push(what);
    }
}

async fn post(
    http: &reqwest::Client,
    url: String,
    body: Value,
    token: Option<&str>,
) -> Result<Value, String> {
    let mut req = http.post(url).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.map_err(|e| e.to_string())?;
    let status = res.status();
    let text = res.text().await.unwrap_or_default();
    if status.is_success() {
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    } else {
        Err(format!("{status} {text}"))
    }
}

async fn get(http: &reqwest::Client, url: String, token: &str) -> Result<(), String> {
    let res = http
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if res.status().is_success() {
        Ok(())
    } else {
        Err(format!(
            "{} {}",
            res.status(),
            res.text().await.unwrap_or_default()
        ))
    }
}

/// One client: refreshes its session, calls /users/me with the fresh token, checks an old
/// token minted before any rotation, and logs in again now and then.
async fn client(base: String, user: String, old_token: String, traffic: Arc<Traffic>) {
    let http = authstack_testkit::http::client();
    let mut pair = match post(
        &http,
        format!("{base}/api/v1/auth/login"),
        json!({"login": user, "password": PASSWORD}),
        None,
    )
    .await
    {
        Ok(p) => p,
        Err(e) => return traffic.failed(format!("initial login: {e}")),
    };
    let mut n = 0u64;
    while !traffic.stop.load(Ordering::Relaxed) {
        n += 1;
        let access = pair["access_token"].as_str().unwrap_or_default().to_owned();
        traffic.saw(&access);
        let step = match n % 4 {
            0 => post(
                &http,
                format!("{base}/api/v1/auth/refresh"),
                json!({"refresh_token": pair["refresh_token"]}),
                None,
            )
            .await
            .map(|p| pair = p),
            1 => get(&http, format!("{base}/api/v1/users/me"), &access).await,
            2 => get(&http, format!("{base}/api/v1/auth/session"), &old_token).await,
            _ if n % 20 == 3 => post(
                &http,
                format!("{base}/api/v1/auth/login"),
                json!({"login": user, "password": PASSWORD}),
                None,
            )
            .await
            .map(|p| pair = p),
            _ => get(&http, format!("{base}/api/v1/auth/session"), &access).await,
        };
        match step {
            Ok(()) => traffic.ok.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                traffic.failed(format!(
                    "step {} (token kid {}): {e}",
                    n % 4,
                    kid_of(&access)
                ));
                0
            }
        };
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_rotate_on_schedule_and_on_request_with_zero_failed_requests() {
    authstack_testkit::logs::capture();
    let h = Harness::new("rotation").await;
    let ns = h.ns().to_owned();
    let _operator = h.operator("op-0");

    // Real PostgreSQL and RabbitMQ, referenced as external backing services of the stack.
    let db = TestDatabase::create().await.unwrap();
    let db_url = db.url.clone();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let amqp = authstack_testkit::broker::admin_url();
    let names = authstack_bus::Names::scoped(&format!("e2e-{id}"));
    let cleanup = {
        let (names, amqp) = (names.clone(), amqp.clone());
        CleanupGuard::new(async move {
            db.drop_database().await.ok();
            authstack_bus::delete_names(&amqp, &names).await.ok();
        })
    };
    for (name, url) in [("pg-url", db_url.as_str()), ("amqp-url", amqp.as_str())] {
        h.create(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": {"url": url}}))
            .await;
    }
    let propagation = Duration::from_secs(3);
    h.apply_stack(
        "demo",
        json!({
            "postgres": {"external": {"secretRef": {"name": "pg-url"}}},
            "rabbitmq": {"external": {"secretRef": {"name": "amqp-url"}}},
            "authService": {"tokens": {"accessTokenTtl": "60s", "issuer": ISSUER}},
            "keys": {"propagationDelay": "3s", "rotationInterval": "16s"},
        }),
    )
    .await;
    let first = eventually("the first key ring", SLOW, || async {
        ring(&h).await?.active().map(|k| k.kid.clone())
    })
    .await;
    // The key ring is written before the workloads: wait for them too.
    let deployment = eventually("the auth-svc Deployment", SLOW, || async {
        h.get("apps/v1", "Deployment", "demo-auth-svc").await
    })
    .await;
    let container = first_container(&deployment);
    assert_eq!(env_value(container, "AUTH_ISSUER"), ISSUER);
    assert_eq!(env_value(container, "AUTH_ACCESS_TOKEN_TTL"), "60");

    // kubelet: each replica's volume follows the Secret with its own lag (both below the
    // propagation delay, as the protocol requires).
    let (stop_kubelet, kubelet_stop) = tokio::sync::watch::channel(false);
    let dirs: Vec<PathBuf> = (0..2).map(|i| h.dir.join(format!("keys-{i}"))).collect();
    for (dir, lag_ms) in dirs.iter().zip([600u64, 1500]) {
        let volume = SecretVolume {
            namespace: ns.clone(),
            name: "demo-signing-keys".into(),
            dir: dir.clone(),
            delay: Duration::from_millis(lag_ms),
            poll: Duration::from_millis(100),
        };
        tokio::spawn(sync_secret(h.client.clone(), volume, kubelet_stop.clone()));
    }

    // The two auth-svc "pods" and the gateway, configured as the operator's Deployments say.
    let shutdown = CancellationToken::new();
    for (i, dir) in dirs.iter().enumerate() {
        let mut c = auth_svc::Config::with_defaults(&db_url, dir.clone());
        c.broker.amqp_url = component_url(BrokerComponent::AuthSvc, broker_addr());
        c.broker.set_names(names.clone());
        c.issuer = ISSUER.into();
        c.access_token_ttl = 60;
        c.http_listen = "127.0.0.1:0".parse().unwrap();
        c.key_poll_ms = 250;
        c.instance_name = format!("auth-svc-{i}");
        c.db_max_connections = 8;
        // Every simulated client shares 127.0.0.1: no per-address login limit.
        c.login_rate_per_address = 0;
        let app = auth_svc::Application::build(c, shutdown.clone())
            .await
            .unwrap();
        tokio::spawn(app.run_until_stopped());
    }
    let mut g = gateway::Config::with_defaults();
    g.listen = "127.0.0.1:0".parse().unwrap();
    g.metrics_listen = "127.0.0.1:0".parse().unwrap();
    g.broker.amqp_url = component_url(BrokerComponent::Gateway, broker_addr());
    g.broker.set_names(names.clone());
    g.issuer = ISSUER.into();
    let gw = gateway::Application::build(g, shutdown.clone())
        .await
        .unwrap();
    let base = format!("http://{}", gw.addr());
    let gw_state = gw.state();
    tokio::spawn(gw.run_until_stopped());
    eventually("the gateway to be ready", SLOW, || async {
        (gw_state.keys.current().is_some() && gw_state.rpc.has_consumers()).then_some(())
    })
    .await;

    // Users, and tokens minted before any rotation (signed by the first key).
    let http = authstack_testkit::http::client();
    let mut old_tokens = Vec::new();
    for i in 0..8 {
        let user = format!("user{i}");
        post(
            &http,
            format!("{base}/api/v1/auth/register"),
            json!({"email": format!("{user}@example.com"), "username": user, "password": PASSWORD}),
            None,
        )
        .await
        .unwrap();
        let pair = post(
            &http,
            format!("{base}/api/v1/auth/login"),
            json!({"login": user, "password": PASSWORD}),
            None,
        )
        .await
        .unwrap();
        let token = pair["access_token"].as_str().unwrap().to_owned();
        assert_eq!(kid_of(&token), first);
        old_tokens.push((user, token));
    }

    let traffic = Arc::new(Traffic::default());
    let mut workers = Vec::new();
    for (user, token) in &old_tokens {
        workers.push(tokio::spawn(client(
            base.clone(),
            user.clone(),
            token.clone(),
            traffic.clone(),
        )));
    }
    let started = Instant::now();

    // 1. The scheduled rotation (interval 16 s after the first key).
    let scheduled = eventually(
        "the scheduled rotation to promote a new key",
        SLOW,
        || async {
            let r = ring(&h).await?;
            let active = r.active()?.kid.clone();
            (active != first).then_some(active)
        },
    )
    .await;
    let kid_seen = |kid: String| {
        let traffic = traffic.clone();
        async move { traffic.kids_seen.lock().unwrap().get(&kid).copied() }
    };
    eventually("tokens signed by the scheduled key", SLOW, || {
        kid_seen(scheduled.clone())
    })
    .await;
    let r = ring(&h).await.unwrap();
    assert_eq!(
        r.kids(KeyState::Retiring),
        std::slice::from_ref(&first),
        "the first key retires, it is not removed"
    );

    // 2. A manual rotation through the plugin (a CR update).
    let before_manual = ring(&h).await.unwrap().generation;
    let out = plugin(&h, &["-n", &ns, "rotate", "demo"]);
    assert!(out.contains("rotationCounter is now 1"), "{out}");
    let requested = Instant::now();
    let manual = eventually(
        "the manually requested key to become active",
        SLOW,
        || async {
            let r = ring(&h).await?;
            let active = r.active()?.kid.clone();
            (r.generation > before_manual && active != scheduled && active != first)
                .then_some(active)
        },
    )
    .await;
    let first_signed = eventually("tokens signed by the manual key", SLOW, || {
        kid_seen(manual.clone())
    })
    .await;
    let cr_to_signing = first_signed.duration_since(requested);
    assert!(
        cr_to_signing >= propagation,
        "a key must not sign before the propagation delay ({cr_to_signing:?})"
    );

    // Give every replica time to settle on the newest ring, then judge the rotation phases.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let steady_ok = traffic.ok.load(Ordering::Relaxed);
    let steady_failures = traffic.failures.lock().unwrap().clone();
    let steady_elapsed = started.elapsed();
    println!(
        "rotation phase: {steady_ok} requests served, {} failed, in {:.1}s; CR update -> new key signing: {:.2}s (propagation delay {}s)",
        steady_failures.len(),
        steady_elapsed.as_secs_f64(),
        cr_to_signing.as_secs_f64(),
        propagation.as_secs()
    );
    assert!(
        steady_failures.is_empty(),
        "failed requests during rotations: {steady_failures:#?}"
    );
    assert!(
        steady_ok > 200,
        "too little traffic to prove anything: {steady_ok}"
    );
    let kids: BTreeSet<String> = traffic.kids_seen.lock().unwrap().keys().cloned().collect();
    assert!(
        kids.contains(&first) && kids.contains(&scheduled) && kids.contains(&manual),
        "{kids:?}"
    );

    // 3. Emergency revocation of the active key: its tokens are rejected once the new ring
    //    reaches the services (failures are expected here, so traffic stops first).
    traffic.stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let victim = post(
        &http,
        format!("{base}/api/v1/auth/login"),
        json!({"login": "user0", "password": PASSWORD}),
        None,
    )
    .await
    .unwrap();
    let victim_token = victim["access_token"].as_str().unwrap().to_owned();
    assert_eq!(kid_of(&victim_token), manual);
    get(&http, format!("{base}/api/v1/auth/session"), &victim_token)
        .await
        .unwrap();
    let revoked_at = Instant::now();
    plugin(&h, &["-n", &ns, "revoke", "demo", &manual]);
    eventually("tokens of the revoked key to be rejected", SLOW, || {
        let (http, url, token) = (
            http.clone(),
            format!("{base}/api/v1/auth/session"),
            victim_token.clone(),
        );
        async move {
            get(&http, url, &token)
                .await
                .err()
                .filter(|e| e.starts_with("401"))
        }
    })
    .await;
    println!(
        "revocation: tokens of {manual} rejected {:.2}s after the CR update",
        revoked_at.elapsed().as_secs_f64()
    );
    let r = ring(&h).await.unwrap();
    assert!(!r.contains(&manual));
    let stack = h.stack_json("demo").await.unwrap();
    assert!(
        !stack["status"]["keys"]["emergencyActivation"].is_null(),
        "the status must say a key signed early: {}",
        stack["status"]["keys"]
    );

    // After the revocation has reached every replica, new logins work and verify again.
    eventually("a fresh login to verify after the revocation", SLOW, || {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let pair = post(
                &http,
                format!("{base}/api/v1/auth/login"),
                json!({"login": "user1", "password": PASSWORD}),
                None,
            )
            .await
            .ok()?;
            let token = pair["access_token"].as_str()?.to_owned();
            get(&http, format!("{base}/api/v1/users/me"), &token)
                .await
                .ok()
        }
    })
    .await;

    // 4. Tokens of the retired (not revoked) first key still work until they expire.
    for (_, token) in &old_tokens {
        get(&http, format!("{base}/api/v1/auth/session"), token)
            .await
            .expect("a retired key's token must verify until expiry");
    }

    let _ = stop_kubelet.send(true);
    shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(300)).await;
    cleanup.run().await;
}
