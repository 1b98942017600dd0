//! The full user journey through the gateway, against real PostgreSQL and RabbitMQ.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn register_login_session_me_refresh_logout() {
    let app = TestApp::spawn().await;

    // Register; the same username again is a conflict, the same email is not revealed (a
    // look-alike answer, nothing created: see account_security.rs).
    let account = app.register("ann", "correct horse battery").await;
    assert_eq!(account["email"], "ann@example.com");
    assert_eq!(account["username"], "ann");
    assert_eq!(account["roles"], json!(["user"]));
    assert!(account.get("password").is_none() && account.get("password_hash").is_none());
    let dup = app
        .post("/api/v1/auth/register", json!({"email": "ANN@example.com", "username": "other", "password": "correct horse battery"}), None)
        .await;
    assert_eq!(dup.status, StatusCode::CREATED, "{}", dup.body);
    assert_ne!(dup.body["id"], account["id"]);
    let dup = app
        .post("/api/v1/auth/register", json!({"email": "x@example.com", "username": "Ann", "password": "correct horse battery"}), None)
        .await;
    dup.assert_error(409, "auth.user_exists");

    // Login by username and by email (case-insensitive).
    let pair = app.login("ann", "correct horse battery").await;
    assert_eq!(pair["token_type"], "Bearer");
    assert_eq!(pair["expires_in"], 900);
    app.login("Ann@Example.com", "correct horse battery").await;
    let access = pair["access_token"].as_str().unwrap();
    let refresh = pair["refresh_token"].as_str().unwrap();

    // Session is answered by the gateway from the verified token.
    let s = app.get("/api/v1/auth/session", Some(access)).await;
    assert_eq!(s.status, StatusCode::OK, "{}", s.body);
    assert_eq!(s.body["sub"], account["id"]);
    assert_eq!(s.body["roles"], json!(["user"]));
    assert_eq!(s.body["kid"], app.ring.keys[0].kid.as_str());
    assert_eq!(s.body["iss"], "http://authstack.test");
    assert_eq!(s.body["aud"], "authstack");
    for claim in ["exp", "iat", "nbf", "jti", "sid"] {
        assert!(
            !s.body[claim].is_null(),
            "claim {claim} missing: {}",
            s.body
        );
    }
    let header = jsonwebtoken::decode_header(access).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(header.alg, jsonwebtoken::Algorithm::EdDSA);

    // Own account: read and update.
    let me = app.get("/api/v1/users/me", Some(access)).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["id"], account["id"]);
    let patched = app
        .send(
            Method::PATCH,
            "/api/v1/users/me",
            Some(json!({"display_name": "Ann A.", "email": "ann.a@example.com", "current_password": "correct horse battery"})),
            Some(access),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(patched.body["display_name"], "Ann A.");
    assert_eq!(patched.body["email"], "ann.a@example.com");
    app.login("ann.a@example.com", "correct horse battery")
        .await;

    // Refresh rotates: a new pair, and the old refresh token is dead.
    let r1 = app
        .post(
            "/api/v1/auth/refresh",
            json!({"refresh_token": refresh}),
            None,
        )
        .await;
    assert_eq!(r1.status, StatusCode::OK, "{}", r1.body);
    let refresh2 = r1.body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(refresh2, refresh);
    let new_access = r1.body["access_token"].as_str().unwrap().to_owned();
    let s2 = app.get("/api/v1/auth/session", Some(&new_access)).await;
    assert_eq!(
        s2.body["sid"], s.body["sid"],
        "refresh stays in the same session"
    );

    // Re-using the replaced token revokes the whole family: the new one dies too.
    let reuse = app
        .post(
            "/api/v1/auth/refresh",
            json!({"refresh_token": refresh}),
            None,
        )
        .await;
    reuse.assert_error(401, "auth.invalid_token");
    let after = app
        .post(
            "/api/v1/auth/refresh",
            json!({"refresh_token": refresh2}),
            None,
        )
        .await;
    after.assert_error(401, "auth.invalid_token");

    // Logout ends exactly one session.
    let p1 = app.login("ann", "correct horse battery").await;
    let p2 = app.login("ann", "correct horse battery").await;
    let a1 = p1["access_token"].as_str().unwrap();
    let out = app
        .post(
            "/api/v1/auth/logout",
            json!({"refresh_token": p1["refresh_token"]}),
            Some(a1),
        )
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT, "{}", out.body);
    app.post(
        "/api/v1/auth/refresh",
        json!({"refresh_token": p1["refresh_token"]}),
        None,
    )
    .await
    .assert_error(401, "auth.invalid_token");
    let still = app
        .post(
            "/api/v1/auth/refresh",
            json!({"refresh_token": p2["refresh_token"]}),
            None,
        )
        .await;
    assert_eq!(still.status, StatusCode::OK);
    // The logged-out session's access token is dead too.
    app.get("/api/v1/users/me", Some(a1))
        .await
        .assert_error(401, "auth.invalid_token");

    // Logout-all ends every session.
    let p3 = app.login("ann", "correct horse battery").await;
    let a3 = p3["access_token"].as_str().unwrap();
    let all = app
        .send(Method::POST, "/api/v1/auth/logout-all", None, Some(a3))
        .await;
    assert_eq!(all.status, StatusCode::NO_CONTENT, "{}", all.body);
    for token in [&still.body["refresh_token"], &p3["refresh_token"]] {
        app.post(
            "/api/v1/auth/refresh",
            json!({"refresh_token": token}),
            None,
        )
        .await
        .assert_error(401, "auth.invalid_token");
    }

    // Delete the account (from a fresh session): login fails afterwards.
    let p4 = app.login("ann", "correct horse battery").await;
    let a4 = p4["access_token"].as_str().unwrap();
    let del = app
        .send(
            Method::DELETE,
            "/api/v1/users/me",
            Some(json!({"current_password": "correct horse battery"})),
            Some(a4),
        )
        .await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    app.post(
        "/api/v1/auth/login",
        json!({"login": "ann", "password": "correct horse battery"}),
        None,
    )
    .await
    .assert_error(401, "auth.invalid_credentials");
    app.get("/api/v1/users/me", Some(a4))
        .await
        .assert_error(401, "auth.invalid_token");
    app.teardown().await;
}

#[tokio::test]
async fn password_change_revokes_other_sessions_but_keeps_this_one() {
    let app = TestApp::spawn().await;
    app.register("bob", "first password").await;
    let here = app.login("bob", "first password").await;
    let there = app.login("bob", "first password").await;
    let access = here["access_token"].as_str().unwrap();

    let wrong = app
        .post(
            "/api/v1/users/me/password",
            json!({"current_password": "nope nope", "new_password": "second password"}),
            Some(access),
        )
        .await;
    wrong.assert_error(401, "auth.invalid_credentials");
    let weak = app
        .post(
            "/api/v1/users/me/password",
            json!({"current_password": "first password", "new_password": "short"}),
            Some(access),
        )
        .await;
    weak.assert_error(400, "validation.failed");
    assert_eq!(weak.body["error"]["details"][0]["field"], "new_password");

    let ok = app
        .post(
            "/api/v1/users/me/password",
            json!({"current_password": "first password", "new_password": "second password"}),
            Some(access),
        )
        .await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT, "{}", ok.body);
    app.post(
        "/api/v1/auth/refresh",
        json!({"refresh_token": there["refresh_token"]}),
        None,
    )
    .await
    .assert_error(401, "auth.invalid_token");
    let kept = app
        .post(
            "/api/v1/auth/refresh",
            json!({"refresh_token": here["refresh_token"]}),
            None,
        )
        .await;
    assert_eq!(
        kept.status,
        StatusCode::OK,
        "the current session survives: {}",
        kept.body
    );
    app.post(
        "/api/v1/auth/login",
        json!({"login": "bob", "password": "first password"}),
        None,
    )
    .await
    .assert_error(401, "auth.invalid_credentials");
    app.login("bob", "second password").await;
    app.teardown().await;
}

#[tokio::test]
async fn concurrent_refreshes_within_the_grace_window_are_tolerated() {
    let app = TestApp::spawn_with(Options {
        reuse_grace: 5,
        ..Options::default()
    })
    .await;
    app.register("cat", "correct horse battery").await;
    let pair = app.login("cat", "correct horse battery").await;
    let token = pair["refresh_token"].clone();
    let (a, b) = tokio::join!(
        app.post(
            "/api/v1/auth/refresh",
            json!({"refresh_token": token}),
            None
        ),
        app.post(
            "/api/v1/auth/refresh",
            json!({"refresh_token": token}),
            None
        ),
    );
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(b.status, StatusCode::OK, "{}", b.body);
    assert_eq!(
        a.body["refresh_token"], b.body["refresh_token"],
        "a retry within the grace window gets the successor already issued"
    );
    // The successor works (twice, within its own grace window): nothing was revoked.
    for r in [a, b] {
        let next = app
            .post(
                "/api/v1/auth/refresh",
                json!({"refresh_token": r.body["refresh_token"]}),
                None,
            )
            .await;
        assert_eq!(next.status, StatusCode::OK, "{}", next.body);
    }
    app.teardown().await;
}
