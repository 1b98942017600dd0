//! Request ids. Every log line written while a request is handled names its request id: the
//! gateway writes each request's lines inside a `request` span (`authstack_telemetry::
//! in_request`), auth-svc runs each RPC call in a `call` span, both
//! carrying the id the gateway assigned (a sane incoming `X-Request-Id`, or a fresh one). Judged
//! on the JSON log lines the services really wrote (`authstack_testkit::logs`). And the id,
//! which a client may choose, is never the idempotency key of a call.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery";

async fn post_with_id(app: &TestApp, path: &str, body: Value, request_id: &str) -> Reply {
    record_secrets(&body);
    let res = app
        .http
        .post(app.url(path))
        .header("x-request-id", request_id)
        .json(&body)
        .send()
        .await
        .expect("gateway reachable");
    assert_eq!(
        res.headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some(request_id),
        "the request id is echoed"
    );
    let reply = Reply::from(res).await;
    record_secrets(&reply.body);
    reply
}

/// This process's log lines so far.
fn log_lines() -> Vec<Value> {
    let text = std::fs::read_to_string(authstack_testkit::logs::file()).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The request ids of the spans a log line was written in.
fn request_ids(line: &Value) -> Vec<String> {
    line["spans"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["request_id"].as_str().map(str::to_owned))
        .collect()
}

/// Waits for a line with `message` and returns it.
async fn line_with(message: &str) -> Value {
    line_where(message, |_| true).await
}

/// Waits for a line with `message` that `also` accepts and returns it.
async fn line_where(message: &str, also: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(line) = log_lines()
            .into_iter()
            .find(|l| l["fields"]["message"].as_str() == Some(message) && also(l))
        {
            return line;
        }
        assert!(Instant::now() < deadline, "no log line `{message}`");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn log_lines_of_a_request_carry_its_request_id() {
    let mut app = TestApp::spawn().await;
    app.register("tracy", PASSWORD).await;
    let pair = app.login("tracy", PASSWORD).await;
    let spent = pair["refresh_token"].as_str().unwrap().to_owned();
    let first = post_with_id(
        &app,
        "/api/v1/auth/refresh",
        json!({"refresh_token": spent}),
        "rid-first-refresh",
    )
    .await;
    assert_eq!(first.status, 200, "{}", first.body);

    // auth-svc: reusing the spent refresh token (no grace here) revokes the session and says so.
    post_with_id(
        &app,
        "/api/v1/auth/refresh",
        json!({"refresh_token": spent}),
        "rid-reuse.42",
    )
    .await
    .assert_error(401, "auth.invalid_token");
    let reuse = line_with("refresh token reuse detected; session revoked").await;
    assert_eq!(request_ids(&reuse), ["rid-reuse.42"], "{reuse}");
    let call = reuse["spans"][0].clone();
    assert_eq!(call["name"], "call", "{reuse}");
    assert_eq!(call["method"], "auth.refresh", "{reuse}");

    // The gateway: with every auth-svc replica gone, a call fails server-side; the warning
    // names the request.
    while !app.replicas.is_empty() {
        app.stop_replica(0).await;
    }
    let down = post_with_id(
        &app,
        "/api/v1/auth/login",
        json!({"login": "tracy", "password": PASSWORD}),
        "rid-while-down",
    )
    .await;
    assert!(down.status.is_server_error(), "{}", down.body);
    let failed = log_lines()
        .into_iter()
        .filter(|l| l["fields"]["message"].as_str() == Some("request failed"))
        .find(|l| request_ids(l) == ["rid-while-down"])
        .expect("a `request failed` line for the request");
    assert_eq!(failed["spans"][0]["name"], "request", "{failed}");
    assert_eq!(failed["fields"]["path"], "/api/v1/auth/login", "{failed}");
    assert_eq!(failed["fields"]["method"], "POST", "{failed}");
    assert_eq!(
        failed["fields"]["status"].as_u64(),
        Some(u64::from(down.status.as_u16()))
    );

    // No line of auth-svc's request handling was written outside a call span.
    let outside: Vec<Value> = log_lines()
        .into_iter()
        .filter(|l| {
            l["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("auth_svc::service"))
        })
        .filter(|l| request_ids(l).is_empty())
        .collect();
    assert!(
        outside.is_empty(),
        "lines without a request id: {outside:?}"
    );
    app.teardown().await;
}

/// A WebSocket's lines are written by the socket's own tasks, long after the upgrade request's
/// handler returned; they are still inside that request's `request` span (the tasks are polled
/// `InRequest`).
#[tokio::test]
async fn log_lines_of_a_websocket_carry_its_upgrade_request_id() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let app = TestApp::spawn().await;
    app.register("sockeye", PASSWORD).await;
    let pair = app.login("sockeye", PASSWORD).await;
    let token = pair["access_token"].as_str().unwrap();
    let socket = |token: &str, request_id: &str| {
        let mut request = app
            .url("/api/v1/ws")
            .replace("http://", "ws://")
            .into_client_request()
            .unwrap();
        let headers = request.headers_mut();
        headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
        headers.insert("x-request-id", request_id.parse().unwrap());
        tokio_tungstenite::connect_async(request)
    };
    // The socket's own task: its read loop authenticates it.
    let (mut ws, _) = socket(token, "rid-socket-9").await.unwrap();
    let line = line_where("WebSocket authenticated", |l| {
        request_ids(l).contains(&"rid-socket-9".to_owned())
    })
    .await;
    assert_eq!(line["spans"][0]["name"], "request", "{line}");
    assert_eq!(line["spans"][0]["request_id"], "rid-socket-9", "{line}");
    assert_eq!(line["spans"].as_array().map(Vec::len), Some(1), "{line}");
    let _ = ws.close(None).await;

    // Its writer task, a task of its own: it closes a socket whose credential is refused.
    let (_refused, _) = socket("not-a-token", "rid-socket-10").await.unwrap();
    let line = line_where("closing WebSocket", |l| {
        request_ids(l).contains(&"rid-socket-10".to_owned())
    })
    .await;
    assert_eq!(line["spans"][0]["name"], "request", "{line}");
    assert_eq!(line["spans"][0]["request_id"], "rid-socket-10", "{line}");
    app.teardown().await;
}

/// The request id is the client's to choose, so it must never be the idempotency key: two
/// different registrations sent with the same `X-Request-Id` are both applied (a replay of the
/// first reply would hand the second client someone else's account).
#[tokio::test]
async fn a_repeated_client_request_id_is_not_an_idempotency_key() {
    let app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for name in ["same-id-a", "same-id-b"] {
        let r = post_with_id(
            &app,
            "/api/v1/auth/register",
            json!({"email": format!("{name}@example.com"), "username": name, "password": PASSWORD}),
            "rid-chosen-by-the-client",
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.body);
        assert_eq!(r.body["username"], name, "{}", r.body);
        ids.push(r.body["id"].as_str().unwrap_or_default().to_owned());
    }
    assert_ne!(ids[0], ids[1], "two accounts were created");
    app.teardown().await;
}
