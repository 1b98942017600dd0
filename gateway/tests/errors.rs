//! Every error a client can provoke, mapped to its HTTP status, in the API's JSON shape.

mod common;

use std::time::Duration;

use authstack_keyring::material::generate;
use authstack_keyring::{KeyRing, SigningAlgorithm};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Claims our auth-svc would issue (with an admin role, to make forgeries tempting).
fn claims(sub: &str, exp_offset: i64) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({
        "iss": "http://authstack.test", "aud": "authstack", "sub": sub,
        "exp": now + exp_offset, "iat": now - 5, "nbf": now - 5, "jti": "j",
        "roles": ["user", "admin"], "sid": uuid::Uuid::nil().to_string(),
    })
}

#[tokio::test]
async fn tokens_that_are_missing_malformed_forged_or_expired_are_rejected() {
    let app = TestApp::spawn_with(Options {
        replicas: 1,
        ..Options::default()
    })
    .await;
    let (account, access, _) = app.user("dan").await;
    let sub = account["id"].as_str().unwrap();

    app.get("/api/v1/auth/session", None)
        .await
        .assert_error(401, "auth.invalid_token");
    let r = app.get("/api/v1/auth/session", None).await;
    assert!(
        r.headers.get("www-authenticate").is_some(),
        "401 must carry WWW-Authenticate"
    );
    for header in ["Basic abc", "Bearer", "Bearer not.a.jwt", "Bearer a.b"] {
        let res = app
            .http
            .get(app.url("/api/v1/auth/session"))
            .header("authorization", header)
            .send()
            .await
            .unwrap();
        Reply::from(res)
            .await
            .assert_error(401, "auth.invalid_token");
    }

    // Expired, signed by our own key.
    let expired = sign_with(&app.ring, &claims(sub, -120));
    app.get("/api/v1/auth/session", Some(&expired))
        .await
        .assert_error(401, "auth.token_expired");

    // Signed by a key the stack does not know.
    let stranger = KeyRing::with_active_key(
        generate(SigningAlgorithm::EdDSA).unwrap(),
        chrono::Utc::now(),
    );
    let foreign = sign_with(&stranger, &claims(sub, 600));
    app.get("/api/v1/auth/session", Some(&foreign))
        .await
        .assert_error(401, "auth.invalid_token");

    // Wrong audience and wrong issuer.
    let mut c = claims(sub, 600);
    c["aud"] = json!("another-service");
    app.get("/api/v1/auth/session", Some(&sign_with(&app.ring, &c)))
        .await
        .assert_error(401, "auth.invalid_token");
    let mut c = claims(sub, 600);
    c["iss"] = json!("https://evil.example");
    app.get("/api/v1/auth/session", Some(&sign_with(&app.ring, &c)))
        .await
        .assert_error(401, "auth.invalid_token");

    // alg: none with our kid.
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "at+jwt", "kid": app.ring.keys[0].kid})),
        b64(&claims(sub, 600))
    );
    app.get("/api/v1/auth/session", Some(&none))
        .await
        .assert_error(401, "auth.invalid_token");

    // A real token with its payload swapped (privilege escalation attempt).
    let parts: Vec<&str> = access.split('.').collect();
    let forged = format!("{}.{}.{}", parts[0], b64(&claims(sub, 600)), parts[2]);
    app.get("/api/v1/users", Some(&forged))
        .await
        .assert_error(401, "auth.invalid_token");

    // The genuine token still works (the cache did not confuse anything).
    assert_eq!(
        app.get("/api/v1/auth/session", Some(&access)).await.status,
        StatusCode::OK
    );
    app.teardown().await;
}

#[tokio::test]
async fn bad_input_is_a_400_with_field_details_never_a_500() {
    let app = TestApp::spawn_with(Options {
        replicas: 1,
        ..Options::default()
    })
    .await;
    let r = app
        .post(
            "/api/v1/auth/register",
            json!({"email": "nope", "username": "a", "password": "short"}),
            None,
        )
        .await;
    r.assert_error(400, "validation.failed");
    let fields: Vec<&str> = r.body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["email", "username", "password"]);

    let r = app
        .post(
            "/api/v1/auth/register",
            json!({"email": "a@b.co", "password": "long enough"}),
            None,
        )
        .await;
    r.assert_error(400, "validation.failed");
    assert_eq!(r.body["error"]["details"][0]["field"], "username");
    assert_eq!(r.body["error"]["details"][0]["reason"], "required");

    let r = app.post("/api/v1/auth/register", json!({"email": "a@b.co", "username": "abc", "password": "long enough", "roles": ["admin"]}), None).await;
    r.assert_error(400, "validation.failed");
    assert_eq!(
        r.body["error"]["details"][0]["field"], "roles",
        "unknown fields are refused, not ignored"
    );

    let r = app
        .post(
            "/api/v1/auth/login",
            json!({"login": 42, "password": "x"}),
            None,
        )
        .await;
    r.assert_error(400, "validation.failed");

    for body in [
        "{not json",
        "",
        "[]",
        "null",
        "{\"login\": \"a\", \"password\": \"b\"} trailing",
    ] {
        let res = app
            .http
            .post(app.url("/api/v1/auth/login"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        Reply::from(res)
            .await
            .assert_error(400, "validation.failed");
    }
    let res = app
        .http
        .post(app.url("/api/v1/auth/login"))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    Reply::from(res)
        .await
        .assert_error(400, "validation.failed");

    // Oversize bodies, declared or streamed (more in
    // `oversized_bodies_are_answered_413_while_the_client_is_still_sending`).
    let big = "x".repeat(app.options.max_body_bytes + 1);
    let declared = json!({"email": "a@b.co", "username": "abc", "password": big});
    record_secrets(&declared);
    let res = app
        .http
        .post(app.url("/api/v1/auth/register"))
        .json(&declared)
        .send()
        .await
        .unwrap();
    Reply::from(res)
        .await
        .assert_error(413, "common.payload_too_large");
    let chunks = futures::stream::iter((0..40).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1024])));
    let res = app
        .http
        .post(app.url("/api/v1/auth/login"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    Reply::from(res)
        .await
        .assert_error(413, "common.payload_too_large");

    // Unknown routes and methods.
    app.get("/api/v1/nothing-here", None)
        .await
        .assert_error(404, "common.not_found");
    app.send(Method::PUT, "/api/v1/auth/login", None, None)
        .await
        .assert_error(405, "common.method_not_allowed");

    // Path and query parameters.
    let (_, admin) = app.admin("root").await;
    app.get("/api/v1/users/not-a-uuid", Some(&admin))
        .await
        .assert_error(400, "validation.failed");
    app.get("/api/v1/users?limit=abc", Some(&admin))
        .await
        .assert_error(400, "validation.failed");
    app.get("/api/v1/users?limit=0", Some(&admin))
        .await
        .assert_error(400, "validation.failed");
    app.get(
        &format!("/api/v1/users/{}", uuid::Uuid::new_v4()),
        Some(&admin),
    )
    .await
    .assert_error(404, "common.not_found");
    app.teardown().await;
}

/// A client still sending an oversized body must read the 413, not a reset: the gateway reads and
/// discards the rest of a body up to a bound before answering (as nginx's lingering close does),
/// after which the connection serves the next request.
#[tokio::test]
async fn oversized_bodies_are_answered_413_while_the_client_is_still_sending() {
    let app = TestApp::spawn_with(Options {
        replicas: 1,
        ..Options::default()
    })
    .await;
    let client = authstack_testkit::http::client();
    for round in 0..8 {
        for (how, body) in authstack_testkit::http::oversized_bodies() {
            let res = client
                .post(app.url("/api/v1/auth/login"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap_or_else(|e| panic!("round {round}, {how} body: {e:?}"));
            Reply::from(res)
                .await
                .assert_error(413, "common.payload_too_large");
        }
        // The same client (and its kept-alive connection) goes on working.
        client
            .get(app.url("/healthz"))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .unwrap_or_else(|e| panic!("round {round}, after the 413s: {e:?}"));
    }
}

#[tokio::test]
async fn repeated_failed_logins_lock_the_account_with_retry_after() {
    let app = TestApp::spawn_with(Options {
        replicas: 1,
        lockout_threshold: 3,
        lockout_duration: 30,
        ..Options::default()
    })
    .await;
    app.register("eve", "correct horse battery").await;
    for _ in 0..3 {
        app.post(
            "/api/v1/auth/login",
            json!({"login": "eve", "password": "wrong password"}),
            None,
        )
        .await
        .assert_error(401, "auth.invalid_credentials");
    }
    // Locked now, even with the right password, under either login name.
    for login in ["eve", "eve@example.com"] {
        let r = app
            .post(
                "/api/v1/auth/login",
                json!({"login": login, "password": "correct horse battery"}),
                None,
            )
            .await;
        r.assert_error(429, "auth.account_locked");
        let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=30).contains(&retry), "Retry-After {retry}");
    }
    // Unknown accounts are throttled the same way (no enumeration through lockout behaviour).
    for _ in 0..3 {
        app.post(
            "/api/v1/auth/login",
            json!({"login": "ghost", "password": "wrong password"}),
            None,
        )
        .await
        .assert_error(401, "auth.invalid_credentials");
    }
    app.post(
        "/api/v1/auth/login",
        json!({"login": "ghost", "password": "x"}),
        None,
    )
    .await
    .assert_error(429, "auth.account_locked");
    app.teardown().await;
}

#[tokio::test]
async fn unknown_accounts_take_as_long_as_known_ones() {
    let app = TestApp::spawn_with(Options {
        replicas: 1,
        lockout_threshold: 1000,
        ..Options::default()
    })
    .await;
    app.register("fay", "correct horse battery").await;
    let time = |login: &'static str| {
        let app = &app;
        async move {
            let start = std::time::Instant::now();
            app.post(
                "/api/v1/auth/login",
                json!({"login": login, "password": "wrong password"}),
                None,
            )
            .await
            .assert_error(401, "auth.invalid_credentials");
            start.elapsed().as_secs_f64()
        }
    };
    time("fay").await; // warm-up
    // Alternate known and unknown so that load on the machine (other tests run in parallel)
    // affects both alike, then compare medians. Without the dummy hash an unknown login would
    // take ~1 ms against ~15+ ms for a known one.
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for _ in 0..9 {
        known.push(time("fay").await);
        unknown.push(time("nobody").await);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (k, u) = (median(&mut known), median(&mut unknown));
    assert!(
        (0.5..2.0).contains(&(u / k)),
        "known {k:.4}s vs unknown {u:.4}s"
    );
    app.teardown().await;
}

/// A fake auth-svc consuming the queue: `reply` decides what it answers (None = never).
async fn fake_consumer(queue: &str, reply: Option<&'static [u8]>) -> lapin::Connection {
    let conn = lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        queue.into(),
        QueueDeclareOptions::durable(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let mut consumer = ch
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    tokio::spawn(async move {
        while let Some(Ok(d)) = consumer.next().await {
            if let (Some(body), Some(to)) = (reply, d.properties.reply_to().clone()) {
                let props = lapin::BasicProperties::default()
                    .with_correlation_id(d.properties.correlation_id().clone().unwrap_or_default());
                let _ = ch
                    .basic_publish("".into(), to, BasicPublishOptions::default(), body, props)
                    .await;
            }
            let _ = d.acker.ack(BasicAckOptions::default()).await;
        }
    });
    conn
}

#[tokio::test]
async fn rpc_failures_map_to_504_502_and_503() {
    // No auth-svc at all, only the gateway: a short deadline for the timeout case.
    let mut app = TestApp::spawn_with(Options {
        replicas: 1,
        rpc_timeout_ms: 400,
        ..Options::default()
    })
    .await;
    let (_, access, _) = app.user("gus").await;
    app.stop_replica(0).await;
    tokio::time::sleep(Duration::from_millis(800)).await;

    // Nobody consumes: 503 at once, not a 5 s hang.
    let started = std::time::Instant::now();
    app.get("/api/v1/users/me", Some(&access))
        .await
        .assert_error(503, "rpc.unavailable");
    assert!(started.elapsed() < Duration::from_millis(300));
    // Verification needs no RPC: the session endpoint keeps working.
    assert_eq!(
        app.get("/api/v1/auth/session", Some(&access)).await.status,
        StatusCode::OK
    );

    // A consumer that never answers: 504 after the deadline.
    let silent = fake_consumer(&app.queue, None).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let started = std::time::Instant::now();
    app.get("/api/v1/users/me", Some(&access))
        .await
        .assert_error(504, "rpc.timeout");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(380) && waited < Duration::from_millis(1500),
        "{waited:?}"
    );
    silent.close(200, "bye".into()).await.unwrap();

    // A consumer that answers garbage: 502.
    let garbage = fake_consumer(&app.queue, Some(b"this is not json")).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    app.get("/api/v1/users/me", Some(&access))
        .await
        .assert_error(502, "rpc.bad_response");
    garbage.close(200, "bye".into()).await.unwrap();

    // An unknown error code from auth-svc becomes a 500 without leaking its message.
    let weird = fake_consumer(
        &app.queue,
        Some(br#"{"error":{"code":"db.exploded","message":"SELECT * FROM secrets"}}"#),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let r = app.get("/api/v1/users/me", Some(&access)).await;
    r.assert_error(500, "common.internal_error");
    assert!(
        !r.body.to_string().contains("SELECT"),
        "internal details leaked: {}",
        r.body
    );
    weird.close(200, "bye".into()).await.unwrap();
    app.add_replica("back").await;
    app.teardown().await;
}
