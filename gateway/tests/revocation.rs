//! M1: an access token stops working when its session ends or its account goes — at once on
//! every call auth-svc answers (it checks the session and the account on each call), and within
//! the event propagation delay on `/api/v1/auth/session`, which the gateway answers alone (it
//! denies revoked sessions and deleted accounts announced by auth-svc until their tokens expire).

mod common;

use std::time::{Duration, Instant};

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

const PASSWORD: &str = "correct horse battery";

/// Asserts `token` is refused everywhere; returns how long the gateway took to learn it.
async fn refused_everywhere(app: &TestApp, token: &str) -> Duration {
    let started = Instant::now();
    app.get("/api/v1/users/me", Some(token))
        .await
        .assert_error(401, "auth.invalid_token");
    app.send(
        Method::DELETE,
        "/api/v1/users/me",
        Some(delete_body()),
        Some(token),
    )
    .await
    .assert_error(401, "auth.invalid_token");
    loop {
        let r = app.get("/api/v1/auth/session", Some(token)).await;
        if r.status == StatusCode::UNAUTHORIZED {
            r.assert_error(401, "auth.invalid_token");
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "/session still accepts a revoked token: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn works(app: &TestApp, token: &str) {
    assert_eq!(
        app.get("/api/v1/auth/session", Some(token)).await.status,
        StatusCode::OK
    );
    let me = app.get("/api/v1/users/me", Some(token)).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
}

/// `DELETE /api/v1/users/me` re-authenticates: the body carries the current password.
fn delete_body() -> serde_json::Value {
    json!({"current_password": PASSWORD})
}

fn access(pair: &serde_json::Value) -> String {
    pair["access_token"].as_str().unwrap().to_owned()
}

/// A new user's access token after that user logged out everywhere (from another session).
async fn revoked_token(app: &TestApp, name: &str) -> String {
    let (_, token, _) = app.user(name).await;
    let fresh = access(&app.login(name, PASSWORD).await);
    let r = app
        .send(Method::POST, "/api/v1/auth/logout-all", None, Some(&fresh))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    token
}

#[tokio::test]
async fn logout_and_logout_all_end_the_access_tokens_of_their_sessions() {
    let app = TestApp::spawn().await;
    app.register("lou", PASSWORD).await;
    let one = app.login("lou", PASSWORD).await;
    let two = app.login("lou", PASSWORD).await;
    works(&app, &access(&one)).await;
    let r = app
        .post(
            "/api/v1/auth/logout",
            json!({"refresh_token": one["refresh_token"]}),
            Some(&access(&one)),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let delay = refused_everywhere(&app, &access(&one)).await;
    println!("logout: /session refused after {delay:?}");
    works(&app, &access(&two)).await;

    let three = app.login("lou", PASSWORD).await;
    let r = app
        .send(
            Method::POST,
            "/api/v1/auth/logout-all",
            None,
            Some(&access(&three)),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    for pair in [&two, &three] {
        let delay = refused_everywhere(&app, &access(pair)).await;
        println!("logout-all: /session refused after {delay:?}");
    }
    // The account itself is untouched: a new login works.
    works(&app, &access(&app.login("lou", PASSWORD).await)).await;
    app.teardown().await;
}

#[tokio::test]
async fn a_password_change_ends_the_other_sessions_tokens() {
    let app = TestApp::spawn().await;
    app.register("pam", PASSWORD).await;
    let here = app.login("pam", PASSWORD).await;
    let elsewhere = app.login("pam", PASSWORD).await;
    let r = app
        .post(
            "/api/v1/users/me/password",
            json!({"current_password": PASSWORD, "new_password": "battery staple horse"}),
            Some(&access(&here)),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let delay = refused_everywhere(&app, &access(&elsewhere)).await;
    println!("password change: /session refused after {delay:?}");
    works(&app, &access(&here)).await;
    app.teardown().await;
}

#[tokio::test]
async fn disabling_or_deleting_an_account_ends_its_tokens() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.admin("boss").await;
    let (dan, dan_token, _) = app.user("dan").await;
    let (eve, eve_token, _) = app.user("eve").await;
    let r = app
        .send(
            Method::PATCH,
            &format!("/api/v1/users/{}", dan["id"].as_str().unwrap()),
            Some(json!({"disabled": true})),
            Some(&admin),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let delay = refused_everywhere(&app, &dan_token).await;
    println!("disable: /session refused after {delay:?}");

    let r = app
        .send(
            Method::DELETE,
            &format!("/api/v1/users/{}", eve["id"].as_str().unwrap()),
            None,
            Some(&admin),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let delay = refused_everywhere(&app, &eve_token).await;
    println!("admin delete: /session refused after {delay:?}");

    // Self-deletion: the token that deleted the account is dead too.
    let (_, fay_token, _) = app.user("fay").await;
    let r = app
        .send(
            Method::DELETE,
            "/api/v1/users/me",
            Some(delete_body()),
            Some(&fay_token),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let delay = refused_everywhere(&app, &fay_token).await;
    println!("self delete: /session refused after {delay:?}");
    app.teardown().await;
}

#[tokio::test]
async fn a_revoked_token_cannot_delete_the_account() {
    // The attacker's scenario from the review: after logout-all, the old token could still
    // DELETE /users/me. Now it is refused and the account survives.
    let app = TestApp::spawn().await;
    let token = revoked_token(&app, "gil").await;
    app.send(
        Method::DELETE,
        "/api/v1/users/me",
        Some(delete_body()),
        Some(&token),
    )
    .await
    .assert_error(401, "auth.invalid_token");
    works(&app, &access(&app.login("gil", PASSWORD).await)).await;
    app.teardown().await;
}

#[tokio::test]
async fn auth_svc_itself_refuses_revoked_sessions_whatever_the_gateway_knows() {
    // Straight to auth-svc (as a gateway that missed the event would call it): the session
    // check happens there, on every call.
    let app = TestApp::spawn().await;
    let token = revoked_token(&app, "hal").await;
    let conn = gateway_broker_connection().await;
    for (method, params) in [
        ("users.get_me", json!(null)),
        ("users.delete_me", delete_body()),
        ("auth.logout_all", json!(null)),
    ] {
        let reply = raw_rpc(
            &app,
            &conn,
            &json!({"method": method, "params": params, "context": {"request_id": "r", "access_token": token}}),
        )
        .await;
        assert_eq!(
            reply["error"]["code"], "auth.invalid_token",
            "{method}: {reply}"
        );
    }
    works(&app, &access(&app.login("hal", PASSWORD).await)).await;
    app.teardown().await;
}
