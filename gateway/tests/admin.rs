//! Account administration, role checks and the access-check endpoint.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn admins_manage_accounts_and_users_get_403() {
    let app = TestApp::spawn().await;
    let (admin_account, admin) = app.admin("root").await;
    let (ivy, ivy_token, ivy_refresh) = app.user("ivy").await;
    app.user("jay").await;
    let ivy_id = ivy["id"].as_str().unwrap();

    // Non-admins are refused before any RPC, for every admin endpoint.
    for (method, path) in [
        (Method::GET, "/api/v1/users".to_string()),
        (Method::GET, format!("/api/v1/users/{ivy_id}")),
        (Method::PATCH, format!("/api/v1/users/{ivy_id}")),
        (Method::DELETE, format!("/api/v1/users/{ivy_id}")),
    ] {
        let body = (method == Method::PATCH).then(|| json!({"roles": ["admin"]}));
        app.send(method, &path, body, Some(&ivy_token))
            .await
            .assert_error(403, "auth.forbidden");
    }

    // Listing with paging.
    let page = app
        .get("/api/v1/users?limit=2&offset=0", Some(&admin))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.body["total"], 3);
    assert_eq!(page.body["items"].as_array().unwrap().len(), 2);
    assert_eq!(page.body["items"][0]["username"], "root");
    let rest = app
        .get("/api/v1/users?limit=2&offset=2", Some(&admin))
        .await;
    assert_eq!(rest.body["items"][0]["username"], "jay");

    let got = app
        .get(&format!("/api/v1/users/{ivy_id}"), Some(&admin))
        .await;
    assert_eq!(got.body["email"], "ivy@example.com");

    // Grant a role: it shows in the next token.
    let upd = app
        .send(
            Method::PATCH,
            &format!("/api/v1/users/{ivy_id}"),
            Some(json!({"roles": ["user", "auditor"]})),
            Some(&admin),
        )
        .await;
    assert_eq!(upd.status, StatusCode::OK, "{}", upd.body);
    assert_eq!(upd.body["roles"], json!(["auditor", "user"]));
    let fresh = app.login("ivy", "correct horse battery").await;
    let s = app
        .get("/api/v1/auth/session", fresh["access_token"].as_str())
        .await;
    assert_eq!(s.body["roles"], json!(["auditor", "user"]));

    let bad = app
        .send(
            Method::PATCH,
            &format!("/api/v1/users/{ivy_id}"),
            Some(json!({"roles": ["Not Valid"]})),
            Some(&admin),
        )
        .await;
    bad.assert_error(400, "validation.failed");

    // Disable: sessions revoked, login refused.
    let dis = app
        .send(
            Method::PATCH,
            &format!("/api/v1/users/{ivy_id}"),
            Some(json!({"disabled": true})),
            Some(&admin),
        )
        .await;
    assert_eq!(dis.body["disabled"], true);
    app.post(
        "/api/v1/auth/refresh",
        json!({"refresh_token": ivy_refresh}),
        None,
    )
    .await
    .assert_error(401, "auth.invalid_token");
    // A disabled account answers like a wrong password: the password is not confirmed.
    app.post(
        "/api/v1/auth/login",
        json!({"login": "ivy", "password": "correct horse battery"}),
        None,
    )
    .await
    .assert_error(401, "auth.invalid_credentials");
    // Disabling revoked the sessions: the old access token is dead (401), not merely forbidden.
    app.get("/api/v1/users/me", Some(&ivy_token))
        .await
        .assert_error(401, "auth.invalid_token");
    app.send(
        Method::PATCH,
        &format!("/api/v1/users/{ivy_id}"),
        Some(json!({"disabled": false})),
        Some(&admin),
    )
    .await;
    app.login("ivy", "correct horse battery").await;

    // Admins cannot lock themselves out, and the last one cannot step down.
    let own = admin_account["id"].as_str().unwrap();
    app.send(
        Method::PATCH,
        &format!("/api/v1/users/{own}"),
        Some(json!({"disabled": true})),
        Some(&admin),
    )
    .await
    .assert_error(403, "auth.forbidden");
    app.send(
        Method::PATCH,
        &format!("/api/v1/users/{own}"),
        Some(json!({"roles": ["user"]})),
        Some(&admin),
    )
    .await
    .assert_error(403, "auth.forbidden");
    app.send(
        Method::DELETE,
        &format!("/api/v1/users/{own}"),
        None,
        Some(&admin),
    )
    .await
    .assert_error(403, "auth.forbidden");

    // Delete.
    let del = app
        .send(
            Method::DELETE,
            &format!("/api/v1/users/{ivy_id}"),
            None,
            Some(&admin),
        )
        .await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    app.get(&format!("/api/v1/users/{ivy_id}"), Some(&admin))
        .await
        .assert_error(404, "common.not_found");
    app.send(
        Method::DELETE,
        &format!("/api/v1/users/{ivy_id}"),
        None,
        Some(&admin),
    )
    .await
    .assert_error(404, "common.not_found");
    app.teardown().await;
}

#[tokio::test]
async fn revoked_admin_role_stops_working_at_once_even_with_an_old_token() {
    let app = TestApp::spawn_with(Options {
        replicas: 1,
        ..Options::default()
    })
    .await;
    let (_, root) = app.admin("root").await;
    let (kim, kim_old_admin_token) = app.admin("kim").await;
    let kim_id = kim["id"].as_str().unwrap();
    app.send(
        Method::PATCH,
        &format!("/api/v1/users/{kim_id}"),
        Some(json!({"roles": ["user"]})),
        Some(&root),
    )
    .await;
    // Kim's token still says admin, but auth-svc checks the database.
    app.get("/api/v1/users", Some(&kim_old_admin_token))
        .await
        .assert_error(403, "auth.forbidden");
    app.teardown().await;
}

#[tokio::test]
async fn access_check_follows_the_role_policy() {
    let app = TestApp::spawn_with(Options {
        replicas: 1,
        ..Options::default()
    })
    .await;
    let (_, user, _) = app.user("lee").await;
    let (_, admin) = app.admin("root").await;
    let check = |token: String, method: &'static str, path: &'static str| {
        let app = &app;
        async move {
            let r = app
                .post(
                    "/api/v1/access/check",
                    json!({"method": method, "path": path}),
                    Some(&token),
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            r.body["allowed"].as_bool().unwrap()
        }
    };
    assert!(check(user.clone(), "GET", "/api/v1/users/me").await);
    assert!(!check(user.clone(), "GET", "/api/v1/users").await);
    assert!(!check(user.clone(), "DELETE", "/api/v1/users/123").await);
    assert!(check(admin.clone(), "DELETE", "/api/v1/users/123").await);
    let bad = app
        .post(
            "/api/v1/access/check",
            json!({"method": "FLY", "path": "nowhere"}),
            Some(&user),
        )
        .await;
    bad.assert_error(400, "validation.failed");
    assert_eq!(bad.body["error"]["details"].as_array().unwrap().len(), 2);
    app.post(
        "/api/v1/access/check",
        json!({"method": "GET", "path": "/"}),
        None,
    )
    .await
    .assert_error(401, "auth.invalid_token");
    app.teardown().await;
}
