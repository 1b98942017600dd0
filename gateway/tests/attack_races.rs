//! Attack corpus: races an attacker can start from outside, through the gateway, against two
//! auth-svc replicas on real PostgreSQL and RabbitMQ.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

const PASSWORD: &str = "correct horse battery";

#[tokio::test]
async fn parallel_wrong_passwords_reach_the_password_check_at_most_threshold_times() {
    let app = TestApp::spawn_with(Options {
        lockout_threshold: 5,
        ..Options::default()
    })
    .await;
    app.register("ivy", PASSWORD).await;
    let guesses = (0..24).map(|i| {
        app.post(
            "/api/v1/auth/login",
            json!({"login": "ivy", "password": format!("wrong guess {i}")}),
            None,
        )
    });
    let replies = futures::future::join_all(guesses).await;
    let checked = replies
        .iter()
        .filter(|r| r.code() == "auth.invalid_credentials")
        .count();
    // Refused while checks are in flight (busy), or once their failures locked the pair.
    let refused = replies
        .iter()
        .filter(|r| matches!(r.code(), "auth.account_locked" | "common.rate_limited"))
        .count();
    assert_eq!(
        checked + refused,
        24,
        "every guess is either checked (401) or refused before the check (429)"
    );
    assert!(
        (1..=5).contains(&checked),
        "{checked} guesses reached the password check; the threshold is 5"
    );
    app.teardown().await;
}

/// A user whose correct logins overlap (tabs, devices, a script) is never told "too many failed
/// attempts" and never locked out: a check in flight is not a failure. Checks beyond the pair's
/// threshold wait for a place, and only after a while are refused with `common.rate_limited`
/// and a short `Retry-After`.
#[tokio::test]
async fn parallel_right_passwords_never_lock_the_account() {
    let app = TestApp::spawn_with(Options {
        lockout_threshold: 5,
        ..Options::default()
    })
    .await;
    app.register("isa", PASSWORD).await;
    let logins = (0..24).map(|_| {
        app.post(
            "/api/v1/auth/login",
            json!({"login": "isa", "password": PASSWORD}),
            None,
        )
    });
    let replies = futures::future::join_all(logins).await;
    let mut ok = 0;
    for r in &replies {
        if r.status == StatusCode::OK {
            ok += 1;
            continue;
        }
        r.assert_error(429, "common.rate_limited");
        let retry = r.headers["retry-after"].to_str().unwrap();
        assert_eq!(retry, "1", "a busy pair asks for a short wait: {}", r.body);
    }
    // They queue for a place (5 at once here) rather than fail: all 24 pass on the reference
    // machine, 7-8 when nothing waits.
    assert!(ok >= 16, "{ok} of 24 overlapping right logins passed");
    // Nothing is left locked: the next login from the same address succeeds at once.
    let next = app
        .post(
            "/api/v1/auth/login",
            json!({"login": "isa", "password": PASSWORD}),
            None,
        )
        .await;
    assert_eq!(next.status, StatusCode::OK, "{}", next.body);
    app.teardown().await;
}

#[tokio::test]
async fn parallel_refreshes_of_one_token_share_one_successor() {
    let app = TestApp::spawn_with(Options {
        reuse_grace: 5,
        ..Options::default()
    })
    .await;
    let (_, _, refresh) = app.user("kit").await;
    let attempts = (0..8).map(|_| {
        app.post(
            "/api/v1/auth/refresh",
            json!({"refresh_token": refresh}),
            None,
        )
    });
    let replies = futures::future::join_all(attempts).await;
    let mut successors = BTreeSet::new();
    for r in &replies {
        match r.status {
            StatusCode::OK => {
                successors.insert(r.body["refresh_token"].as_str().unwrap().to_owned());
            }
            _ => assert!(r.status.is_client_error(), "{} {}", r.status, r.body),
        }
    }
    assert_eq!(
        successors.len(),
        1,
        "every successful answer carries the same successor: {successors:?}"
    );
    // The one successor carries the session on.
    let successor = successors.into_iter().next().unwrap();
    let next = app
        .post(
            "/api/v1/auth/refresh",
            json!({"refresh_token": successor}),
            None,
        )
        .await;
    assert_eq!(next.status, StatusCode::OK, "{}", next.body);
    // Exactly one unused token is left in the session: the session did not fork.
    let pool = app.pool().await;
    let live: i64 =
        sqlx::query_scalar("SELECT count(*) FROM auth.refresh_tokens WHERE used_at IS NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(live, 1);
    pool.close().await;
    app.teardown().await;
}

/// Sends a refresh of `token` in a task of its own, so the test can act while it is blocked.
fn spawn_refresh(app: &TestApp, token: String) -> tokio::task::JoinHandle<Reply> {
    let (http, url) = (app.http.clone(), app.url("/api/v1/auth/refresh"));
    tokio::spawn(async move {
        let res = http
            .post(url)
            .json(&json!({"refresh_token": token}))
            .send()
            .await
            .unwrap();
        Reply::from(res).await
    })
}

/// Waits until `n` backends of the test database wait for a lock.
async fn wait_for_lock_waiters(pool: &sqlx::PgPool, n: i64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
              WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if waiting >= n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "expected {n} blocked statements, saw {waiting}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn logout_all_revokes_a_child_created_by_a_concurrent_refresh() {
    let app = TestApp::spawn().await;
    let (account, access, refresh) = app.user("lou").await;
    let id: uuid::Uuid = account["id"].as_str().unwrap().parse().unwrap();
    let pool = app.pool().await;

    // Hold the token's row so the refresh stops inside its statement, holding its session's
    // share lock and before spending the token and writing the child (its UPDATE checks the
    // session, then waits for this lock).
    let mut blocker = pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM auth.refresh_tokens WHERE account_id = $1 FOR UPDATE")
        .bind(id)
        .execute(&mut *blocker)
        .await
        .unwrap();
    let refreshing = spawn_refresh(&app, refresh);
    wait_for_lock_waiters(&pool, 1).await;
    let revoking = {
        let (http, url) = (app.http.clone(), app.url("/api/v1/auth/logout-all"));
        tokio::spawn(async move {
            let res = http.post(url).bearer_auth(access).send().await.unwrap();
            Reply::from(res).await
        })
    };
    wait_for_lock_waiters(&pool, 2).await;
    blocker.rollback().await.unwrap();

    let refreshed = refreshing.await.unwrap();
    let revoked = revoking.await.unwrap();
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{}", revoked.body);
    if refreshed.status == StatusCode::OK {
        app.post(
            "/api/v1/auth/refresh",
            json!({"refresh_token": refreshed.body["refresh_token"]}),
            None,
        )
        .await
        .assert_error(401, "auth.invalid_token");
    } else {
        refreshed.assert_error(401, "auth.invalid_token");
    }
    pool.close().await;
    app.teardown().await;
}

/// A refresh that reads its token while a revocation of its session is in flight (the fast
/// path reads without locks) must not spend it once the revocation commits.
#[tokio::test]
async fn a_refresh_racing_an_uncommitted_revocation_spends_nothing() {
    let app = TestApp::spawn().await;
    let (account, _, refresh) = app.user("rae").await;
    let id: uuid::Uuid = account["id"].as_str().unwrap().parse().unwrap();
    let pool = app.pool().await;

    // A revocation of the session, written and not yet committed.
    let mut revocation = pool.begin().await.unwrap();
    sqlx::query(
        "UPDATE auth.sessions SET revoked_at = now(), revoked_reason = 'logout'
          WHERE account_id = $1",
    )
    .bind(id)
    .execute(&mut *revocation)
    .await
    .unwrap();
    let refreshing = spawn_refresh(&app, refresh);
    wait_for_lock_waiters(&pool, 1).await;
    revocation.commit().await.unwrap();

    refreshing
        .await
        .unwrap()
        .assert_error(401, "auth.invalid_token");
    let (tokens, spent): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(used_at) FROM auth.refresh_tokens WHERE account_id = $1",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((tokens, spent), (1, 0), "no child, the token unspent");
    pool.close().await;
    app.teardown().await;
}

#[tokio::test]
async fn concurrent_demotions_never_leave_the_stack_without_an_admin() {
    let app = TestApp::spawn().await;
    let (a, a_token) = app.admin("ada").await;
    let (b, b_token) = app.admin("bea").await;
    let app_ref = &app;
    let demote = |target: &serde_json::Value, token: &str| {
        let path = format!("/api/v1/users/{}", target["id"].as_str().unwrap());
        let token = token.to_owned();
        async move {
            app_ref
                .send(
                    Method::PATCH,
                    &path,
                    Some(json!({"roles": ["user"]})),
                    Some(&token),
                )
                .await
        }
    };
    let (x, y) = tokio::join!(demote(&b, &a_token), demote(&a, &b_token));
    let ok = [&x, &y]
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .count();
    assert!(ok <= 1, "{} / {}", x.body, y.body);
    let pool = app.pool().await;
    let admins: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM auth.accounts WHERE 'admin' = ANY(roles) AND NOT disabled",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(admins >= 1, "no administrator left");
    pool.close().await;
    app.teardown().await;
}

#[tokio::test]
async fn parallel_right_and_wrong_passwords_never_fail_the_server() {
    let app = TestApp::spawn_with(Options {
        lockout_threshold: 1000,
        tweak_auth: Some(|c| c.account_backoff_threshold = 1000),
        ..Options::default()
    })
    .await;
    app.register("ula", PASSWORD).await;
    let attempts = (0..30).map(|i| {
        let password = if i % 2 == 0 {
            PASSWORD
        } else {
            "wrong password"
        };
        app.post(
            "/api/v1/auth/login",
            json!({"login": "ula", "password": password}),
            None,
        )
    });
    for (i, r) in futures::future::join_all(attempts)
        .await
        .into_iter()
        .enumerate()
    {
        if i % 2 == 0 {
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        } else {
            r.assert_error(401, "auth.invalid_credentials");
        }
    }
    app.teardown().await;
}
