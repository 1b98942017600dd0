//! Account protections seen from outside: throttling that cannot be turned against users, path
//! normalisation in access checks, re-authentication, the last administrator, registration
//! that does not reveal emails, disabled accounts that do not confirm passwords.

mod common;

use std::time::{Duration, Instant};

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

const PASSWORD: &str = "correct horse battery";

fn login_body(login: &str, password: &str) -> serde_json::Value {
    json!({"login": login, "password": password})
}

#[tokio::test]
async fn wrong_guesses_from_one_address_do_not_lock_the_account_for_others() {
    let app = TestApp::spawn_with(Options {
        replicas: 1,
        lockout_threshold: 5,
        trust_forwarded_for: true,
        ..Options::default()
    })
    .await;
    app.register("jay", PASSWORD).await;
    let attacker = "203.0.113.7";
    for _ in 0..5 {
        app.post_from(
            attacker,
            "/api/v1/auth/login",
            login_body("jay", "wrong password"),
        )
        .await
        .assert_error(401, "auth.invalid_credentials");
    }
    // The attacker's address is locked out of this account, even with the right password...
    let locked = app
        .post_from(attacker, "/api/v1/auth/login", login_body("jay", PASSWORD))
        .await;
    locked.assert_error(429, "auth.account_locked");
    assert!(locked.headers.contains_key("retry-after"));
    // ...but the owner, elsewhere, logs in.
    let owner = app
        .post_from(
            "198.51.100.9",
            "/api/v1/auth/login",
            login_body("jay", PASSWORD),
        )
        .await;
    assert_eq!(owner.status, StatusCode::OK, "{}", owner.body);
    app.teardown().await;
}

#[tokio::test]
async fn a_busy_shared_address_slows_down_but_never_refuses_a_right_password() {
    let app = TestApp::spawn_with(Options {
        replicas: 1,
        lockout_threshold: 100,
        address_lockout_threshold: 4,
        ..Options::default()
    })
    .await;
    app.register("kim", PASSWORD).await;
    // Everyone behind one proxy address: many failed logins for many names.
    for i in 0..8 {
        app.post(
            "/api/v1/auth/login",
            login_body(&format!("guess{i}"), "Summer2026!"),
            None,
        )
        .await
        .assert_error(401, "auth.invalid_credentials");
    }
    let started = Instant::now();
    let r = app
        .post("/api/v1/auth/login", login_body("kim", PASSWORD), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        started.elapsed() >= Duration::from_millis(100),
        "attempts from a busy address are delayed"
    );
    app.teardown().await;
}

#[tokio::test]
async fn access_checks_normalise_dot_segments_and_refuse_ambiguous_paths() {
    let app = TestApp::spawn_with(Options {
        replicas: 1,
        ..Options::default()
    })
    .await;
    let (_, token, _) = app.user("max").await;
    let check = |path: &'static str| {
        let token = token.clone();
        let app = &app;
        async move {
            app.post(
                "/api/v1/access/check",
                json!({"method": "GET", "path": path}),
                Some(&token),
            )
            .await
        }
    };
    for path in [
        "/api/v1/auth/../users",
        "/api/v1/auth/%2e%2e/users",
        "/api/v1/auth/%2E%2E/users",
        "/api/v1/auth/.%2e/users",
        "/api/v1/auth/./../users",
        "/api/v1/users/me/../../users",
        "/api/v1/users/me/%2e%2e/%2e%2e/users?limit=5",
        "/api/v1/auth/..%2fusers",
        "/api/v1/auth/..%5cusers",
        "/api/v1/auth/..\\users",
        "/api/v1/auth//../users",
        "/api/v1/auth/..;/users",
    ] {
        let r = check(path).await;
        let refused = (r.status == StatusCode::OK && r.body["allowed"] == false)
            || (r.status == StatusCode::BAD_REQUEST && r.code() == "validation.failed");
        assert!(refused, "{path}: {} {}", r.status, r.body);
    }
    for path in [
        "/api/v1/users/me",
        "/api/v1/auth/./session",
        "/api/v1/users/me/password/..",
        "/api/v1/%61uth/session",
    ] {
        let r = check(path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
        assert_eq!(r.body["allowed"], true, "{path}");
    }
    app.teardown().await;
}

#[tokio::test]
async fn email_changes_and_account_deletion_need_the_current_password() {
    let app = TestApp::spawn_with(Options {
        replicas: 1,
        ..Options::default()
    })
    .await;
    let (_, token, _) = app.user("ned").await;
    let patch = |body: serde_json::Value| {
        let token = token.clone();
        let app = &app;
        async move {
            app.send(Method::PATCH, "/api/v1/users/me", Some(body), Some(&token))
                .await
        }
    };
    let missing = patch(json!({"email": "ned2@example.com"})).await;
    missing.assert_error(400, "validation.failed");
    assert_eq!(
        missing.body["error"]["details"][0]["field"],
        "current_password"
    );
    patch(json!({"email": "ned2@example.com", "current_password": "not my password"}))
        .await
        .assert_error(401, "auth.invalid_credentials");
    let ok = patch(json!({"email": "ned2@example.com", "current_password": PASSWORD})).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.body["email"], "ned2@example.com");
    // Other profile fields need no password.
    let name = patch(json!({"display_name": "Ned"})).await;
    assert_eq!(name.status, StatusCode::OK, "{}", name.body);

    let delete = |body: Option<serde_json::Value>| {
        let token = token.clone();
        let app = &app;
        async move {
            app.send(Method::DELETE, "/api/v1/users/me", body, Some(&token))
                .await
        }
    };
    delete(None).await.assert_error(400, "validation.failed");
    delete(Some(json!({"current_password": "not my password"})))
        .await
        .assert_error(401, "auth.invalid_credentials");
    let gone = delete(Some(json!({"current_password": PASSWORD}))).await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT, "{}", gone.body);
    app.post("/api/v1/auth/login", login_body("ned", PASSWORD), None)
        .await
        .assert_error(401, "auth.invalid_credentials");
    app.teardown().await;
}

#[tokio::test]
async fn the_last_administrator_cannot_delete_or_demote_themselves() {
    let app = TestApp::spawn_with(Options {
        replicas: 1,
        ..Options::default()
    })
    .await;
    let (root, root_token) = app.admin("root").await;
    let own = format!("/api/v1/users/{}", root["id"].as_str().unwrap());
    app.send(
        Method::DELETE,
        "/api/v1/users/me",
        Some(json!({"current_password": PASSWORD})),
        Some(&root_token),
    )
    .await
    .assert_error(403, "auth.forbidden");
    app.send(
        Method::PATCH,
        &own,
        Some(json!({"roles": ["user"]})),
        Some(&root_token),
    )
    .await
    .assert_error(403, "auth.forbidden");

    // With a second administrator, stepping down is fine.
    let (_, _) = app.admin("deputy").await;
    let demoted = app
        .send(
            Method::PATCH,
            &own,
            Some(json!({"roles": ["user"]})),
            Some(&root_token),
        )
        .await;
    assert_eq!(demoted.status, StatusCode::OK, "{}", demoted.body);
    assert_eq!(demoted.body["roles"], json!(["user"]));
    app.teardown().await;
}

#[tokio::test]
async fn registering_a_taken_email_looks_like_a_new_registration() {
    let app = TestApp::spawn_with(Options {
        replicas: 1,
        ..Options::default()
    })
    .await;
    let first = app.register("oli", PASSWORD).await;
    let again = app
        .post(
            "/api/v1/auth/register",
            json!({"email": "OLI@example.com", "username": "oli2", "password": "another password"}),
            None,
        )
        .await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.body);
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(&again.body),
        keys(&first),
        "same shape as a real account"
    );
    assert_eq!(again.body["email"], "oli@example.com");
    assert_eq!(again.body["username"], "oli2");
    assert_ne!(again.body["id"], first["id"]);
    // Nothing was created, and the owner's account is untouched.
    app.post(
        "/api/v1/auth/login",
        login_body("oli2", "another password"),
        None,
    )
    .await
    .assert_error(401, "auth.invalid_credentials");
    app.login("oli@example.com", PASSWORD).await;
    // User names are public handles: a taken one is still a conflict.
    app.post(
        "/api/v1/auth/register",
        json!({"email": "someone@example.com", "username": "OLI", "password": PASSWORD}),
        None,
    )
    .await
    .assert_error(409, "auth.user_exists");
    app.teardown().await;
}

#[tokio::test]
async fn a_disabled_account_does_not_confirm_its_password() {
    let app = TestApp::spawn_with(Options {
        replicas: 1,
        ..Options::default()
    })
    .await;
    let (_, admin) = app.admin("boss").await;
    let (pia, _, _) = app.user("pia").await;
    let path = format!("/api/v1/users/{}", pia["id"].as_str().unwrap());
    let dis = app
        .send(
            Method::PATCH,
            &path,
            Some(json!({"disabled": true})),
            Some(&admin),
        )
        .await;
    assert_eq!(dis.status, StatusCode::OK, "{}", dis.body);
    let right = app
        .post("/api/v1/auth/login", login_body("pia", PASSWORD), None)
        .await;
    let wrong = app
        .post(
            "/api/v1/auth/login",
            login_body("pia", "wrong password"),
            None,
        )
        .await;
    right.assert_error(401, "auth.invalid_credentials");
    wrong.assert_error(401, "auth.invalid_credentials");
    assert_eq!(
        right.body["error"]["message"],
        wrong.body["error"]["message"]
    );
    app.teardown().await;
}

#[tokio::test]
async fn failures_from_many_addresses_space_out_attempts_on_the_account() {
    let app = TestApp::spawn_with(Options {
        replicas: 1,
        trust_forwarded_for: true,
        tweak_auth: Some(|c| c.account_backoff_threshold = 3),
        ..Options::default()
    })
    .await;
    app.register("quinn", PASSWORD).await;
    for i in 1..=3 {
        app.post_from(
            &format!("203.0.113.{i}"),
            "/api/v1/auth/login",
            login_body("quinn", "wrong password"),
        )
        .await
        .assert_error(401, "auth.invalid_credentials");
    }
    // A distributed guesser now waits between attempts on this account, wherever it is...
    let spaced = app
        .post_from(
            "198.51.100.4",
            "/api/v1/auth/login",
            login_body("quinn", PASSWORD),
        )
        .await;
    spaced.assert_error(429, "auth.account_locked");
    let retry: u64 = spaced.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    // ...for a short, growing while: not a lock.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    let owner = app
        .post_from(
            "198.51.100.4",
            "/api/v1/auth/login",
            login_body("quinn", PASSWORD),
        )
        .await;
    assert_eq!(owner.status, StatusCode::OK, "{}", owner.body);
    app.teardown().await;
}

#[tokio::test]
async fn logins_and_registrations_are_rate_limited_per_address() {
    let app = TestApp::spawn_with(Options {
        replicas: 1,
        trust_forwarded_for: true,
        tweak_auth: Some(|c| {
            c.login_rate_per_address = 4;
            c.register_rate_per_address = 2;
        }),
        ..Options::default()
    })
    .await;
    let register = |addr: &'static str, name: &'static str| {
        let app = &app;
        async move {
            app.post_from(
                addr,
                "/api/v1/auth/register",
                json!({"email": format!("{name}@example.com"), "username": name, "password": PASSWORD}),
            )
            .await
        }
    };
    for name in ["rae", "rio"] {
        let r = register("203.0.113.9", name).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
    let limited = register("203.0.113.9", "roy").await;
    limited.assert_error(429, "common.rate_limited");
    assert!(limited.headers.contains_key("retry-after"));
    let elsewhere = register("198.51.100.9", "roy").await;
    assert_eq!(elsewhere.status, StatusCode::CREATED, "{}", elsewhere.body);

    // Correct passwords count too: the budget is on attempts, not failures.
    for _ in 0..4 {
        let r = app
            .post_from(
                "203.0.113.9",
                "/api/v1/auth/login",
                login_body("rae", PASSWORD),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let limited = app
        .post_from(
            "203.0.113.9",
            "/api/v1/auth/login",
            login_body("rae", PASSWORD),
        )
        .await;
    limited.assert_error(429, "common.rate_limited");
    assert!(limited.headers.contains_key("retry-after"));
    app.teardown().await;
}

#[tokio::test]
async fn a_full_hashing_queue_answers_503_with_retry_after_at_once() {
    let app = TestApp::spawn_with(Options {
        replicas: 1,
        tweak_auth: Some(|c| {
            c.hashing_threads = 1;
            c.hashing_queue = 0;
            c.lockout_threshold = 1000;
        }),
        ..Options::default()
    })
    .await;
    app.register("sid", PASSWORD).await;
    let logins = (0..16).map(|_| app.post("/api/v1/auth/login", login_body("sid", PASSWORD), None));
    let replies = futures::future::join_all(logins).await;
    let mut busy = 0;
    for r in &replies {
        if r.status == StatusCode::OK {
            continue;
        }
        r.assert_error(503, "rpc.unavailable");
        assert!(r.headers.contains_key("retry-after"), "{:?}", r.headers);
        busy += 1;
    }
    assert!(
        busy > 0,
        "16 parallel logins on one hashing thread without a queue"
    );
    assert!(busy < 16, "the admitted ones are served");
    app.teardown().await;
}

#[tokio::test]
async fn a_session_ends_at_its_absolute_lifetime_however_often_it_is_refreshed() {
    let app = TestApp::spawn_with(Options {
        replicas: 1,
        ..Options::default()
    })
    .await;
    let (_, _, refresh) = app.user("tia").await;
    let next = app
        .post(
            "/api/v1/auth/refresh",
            json!({"refresh_token": refresh}),
            None,
        )
        .await;
    assert_eq!(next.status, StatusCode::OK, "{}", next.body);
    let pool = app.pool().await;
    // No successor outlives its session.
    let beyond: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM auth.refresh_tokens t JOIN auth.sessions s ON s.id = t.family_id
          WHERE t.expires_at > s.created_at + interval '30 days'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(beyond, 0);
    // The login was 30 days ago: the session is over even though its token is fresh.
    sqlx::query("UPDATE auth.sessions SET created_at = now() - interval '30 days 1 second'")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    app.post(
        "/api/v1/auth/refresh",
        json!({"refresh_token": next.body["refresh_token"]}),
        None,
    )
    .await
    .assert_error(401, "auth.token_expired");
    app.teardown().await;
}
