//! Platform behaviour: replicas sharing the queue, broker outages, key reloads and JWKS.
//! (Redelivery and idempotency are tested in auth-svc/tests/service.rs.)

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use authstack_bus::CancellationToken;
use authstack_keyring::SigningAlgorithm;
use authstack_keyring::material::generate;
use authstack_keyring::rotation::{self, RotationPolicy, RotationRequest};
use authstack_protocol::EventKind;
use authstack_testkit::tcp_proxy::TcpProxy;
use common::*;
use reqwest::StatusCode;

#[tokio::test]
async fn two_replicas_share_the_queue_and_one_can_leave_without_failures() {
    let mut app = TestApp::spawn().await;
    let (_, token, _) = app.user("max").await;
    // Both replicas consume the same queue (the second may start consuming after the gateway's
    // first look at the queue).
    app.wait_for_every_replica().await;
    let conn = lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let q = ch
        .queue_declare(
            app.queue.as_str().into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(q.consumer_count(), 2);
    conn.close(200, "bye".into()).await.unwrap();

    // Continuous traffic while one replica shuts down gracefully.
    let stop = CancellationToken::new();
    let failures = Arc::new(AtomicUsize::new(0));
    let served = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (http, url, token, stop, failures, served) = (
            app.http.clone(),
            app.url("/api/v1/users/me"),
            token.clone(),
            stop.clone(),
            failures.clone(),
            served.clone(),
        );
        workers.push(tokio::spawn(async move {
            while !stop.is_cancelled() {
                match http.get(&url).bearer_auth(&token).send().await {
                    Ok(r) if r.status() == StatusCode::OK => served.fetch_add(1, Ordering::Relaxed),
                    _ => failures.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    app.stop_replica(0).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    for w in workers {
        w.await.unwrap();
    }
    assert!(
        served.load(Ordering::Relaxed) > 100,
        "served {}",
        served.load(Ordering::Relaxed)
    );
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "requests failed while a replica left"
    );
    app.teardown().await;
}

#[tokio::test]
async fn services_recover_after_the_broker_connection_drops() {
    let proxy = TcpProxy::start(broker_addr()).await.unwrap();
    let app = TestApp::behind(&proxy).await;
    let (_, token, _) = app.user("ned").await;
    assert_eq!(
        app.get("/api/v1/users/me", Some(&token)).await.status,
        StatusCode::OK
    );

    proxy.set_down(true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    app.get("/api/v1/users/me", Some(&token))
        .await
        .assert_error(503, "rpc.unavailable");
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "must fail fast while the broker is away"
    );
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    // Token verification does not need the broker.
    assert_eq!(
        app.get("/api/v1/auth/session", Some(&token)).await.status,
        StatusCode::OK
    );

    proxy.set_down(false);
    app.wait_ready().await;
    let r = app.get("/api/v1/users/me", Some(&token)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    // An abrupt cut of every connection is survived as well.
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.wait_ready().await;
    let after = app.login("ned", "correct horse battery").await;
    assert!(after["access_token"].is_string());
    app.teardown().await;
}

#[tokio::test]
async fn a_new_key_ring_is_picked_up_without_restart_and_old_tokens_keep_working() {
    let app = TestApp::spawn().await;
    let (_, old_token, _) = app.user("oli").await;
    let old_kid = app.ring.keys[0].kid.clone();

    // Rotate the ring on disk the way the operator + kubelet do: pending, then active.
    let policy = RotationPolicy {
        rotation_interval: None,
        propagation_delay: chrono::Duration::seconds(1),
        token_lifetime: chrono::Duration::seconds(930),
    };
    let mut ring = app.ring.clone();
    let mut generate_key = |alg| generate(alg);
    let request = RotationRequest {
        rotation_counter: 1,
        ..Default::default()
    };
    rotation::reconcile(
        &mut ring,
        chrono::Utc::now(),
        &policy,
        &request,
        &mut generate_key,
    )
    .unwrap();
    write_ring(app.key_dir.path(), &ring);
    let new_kid = ring.kids(authstack_keyring::KeyState::Pending)[0].clone();

    // The pending key is published (JWKS) before it signs.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let jwks = app.get("/.well-known/jwks.json", None).await;
        let kids: Vec<String> = jwks.body["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect();
        if kids.contains(&new_kid) {
            assert!(kids.contains(&old_kid));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "pending key never published: {kids:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let fresh = app.login("oli", "correct horse battery").await;
    let kid = jsonwebtoken::decode_header(fresh["access_token"].as_str().unwrap())
        .unwrap()
        .kid
        .unwrap();
    assert_eq!(kid, old_kid, "a pending key must not sign");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    rotation::reconcile(
        &mut ring,
        chrono::Utc::now(),
        &policy,
        &request,
        &mut generate_key,
    )
    .unwrap();
    write_ring(app.key_dir.path(), &ring);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let new_token = loop {
        let pair = app.login("oli", "correct horse battery").await;
        let token = pair["access_token"].as_str().unwrap().to_owned();
        if jsonwebtoken::decode_header(&token).unwrap().kid.unwrap() == new_kid {
            break token;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "auth-svc never switched to the new key"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        app.get("/api/v1/users/me", Some(&new_token)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.get("/api/v1/users/me", Some(&old_token)).await.status,
        StatusCode::OK,
        "retiring key still verifies"
    );
    app.teardown().await;
}

#[tokio::test]
async fn tokens_verify_with_the_published_jwks_and_discovery() {
    for algorithm in [SigningAlgorithm::ES256, SigningAlgorithm::RS256] {
        let app = TestApp::spawn_with(Options {
            replicas: 1,
            algorithm,
            ..Options::default()
        })
        .await;
        let (_, token, _) = app.user("pat").await;
        let conf = app.get("/.well-known/openid-configuration", None).await;
        assert_eq!(conf.body["issuer"], "http://authstack.test");
        assert_eq!(
            conf.body["jwks_uri"],
            "http://authstack.test/.well-known/jwks.json"
        );
        let jwks = app.get("/.well-known/jwks.json", None).await;
        let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks.body.clone()).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        let jwk = set
            .find(header.kid.as_deref().unwrap())
            .expect("kid published");
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
        let mut validation = jsonwebtoken::Validation::new(algorithm.jwt());
        validation.set_audience(&["authstack"]);
        validation.set_issuer(&["http://authstack.test"]);
        let data = jsonwebtoken::decode::<serde_json::Value>(&token, &key, &validation).unwrap();
        assert_eq!(data.claims["aud"], "authstack");
        assert_eq!(
            app.get("/api/v1/auth/session", Some(&token)).await.body["kid"],
            header.kid.unwrap().as_str()
        );
        app.teardown().await;
    }
}

#[tokio::test]
async fn every_state_change_is_published_as_an_event() {
    let app = TestApp::spawn_with(Options {
        replicas: 1,
        ..Options::default()
    })
    .await;
    let shutdown = CancellationToken::new();
    let events = authstack_bus::EventSubscriber::start(
        amqp_url(),
        app.exchange.clone(),
        vec!["#".into()],
        "event-test".into(),
        1 << 20,
        shutdown.clone(),
    );
    let mut rx = events.subscribe();
    let mut sessions = events.sessions();
    tokio::time::timeout(Duration::from_secs(10), sessions.wait_for(|n| *n > 0))
        .await
        .unwrap()
        .unwrap();

    let (account, token, refresh) = app.user("vic").await;
    let id = account["id"].as_str().unwrap().to_owned();
    app.send(
        reqwest::Method::PATCH,
        "/api/v1/users/me",
        Some(serde_json::json!({"display_name": "V"})),
        Some(&token),
    )
    .await;
    app.post(
        "/api/v1/auth/logout",
        serde_json::json!({"refresh_token": refresh}),
        Some(&token),
    )
    .await;
    // That session (and its access token) is over: continue in a new one.
    let pair = app.login("vic", "correct horse battery").await;
    let token = pair["access_token"].as_str().unwrap().to_owned();
    app.send(
        reqwest::Method::POST,
        "/api/v1/auth/logout-all",
        None,
        Some(&token),
    )
    .await;
    let pair = app.login("vic", "correct horse battery").await;
    let token = pair["access_token"].as_str().unwrap().to_owned();
    app.send(
        reqwest::Method::DELETE,
        "/api/v1/users/me",
        Some(serde_json::json!({"current_password": "correct horse battery"})),
        Some(&token),
    )
    .await;

    let expected = [
        EventKind::AccountRegistered,
        EventKind::AccountLoggedIn,
        EventKind::AccountUpdated,
        EventKind::AccountLoggedOut,
        EventKind::SessionRevoked,
        EventKind::AccountLoggedIn,
        EventKind::SessionRevoked,
        EventKind::AccountLoggedIn,
        EventKind::AccountDeleted,
    ];
    let mut seen = Vec::new();
    while seen.len() < expected.len() {
        let event = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("event")
            .unwrap();
        if event.kind == EventKind::KeysRotated {
            continue;
        }
        assert_eq!(
            event.account_id.map(|a| a.to_string()),
            Some(id.clone()),
            "{event:?}"
        );
        assert!(
            !event.data.to_string().contains("correct horse"),
            "events never carry secrets"
        );
        seen.push(event.kind);
    }
    assert_eq!(seen, expected);
    shutdown.cancel();
    app.teardown().await;
}
