//! Black-box tests of the chat service against the real platform (auth-svc, gateway, real
//! PostgreSQL and RabbitMQ), over real HTTP and WebSockets.

use std::process::Stdio;
use std::time::Duration;

use authstack_harness::{Options, Platform, kid_of};
use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A call to the chat service: status, body, and the request id header.
async fn chat(
    p: &Platform,
    method: Method,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> (u16, Value, String) {
    let mut request = p.http.request(method, format!("{}{path}", p.chat_url));
    if let Some(body) = body {
        request = request.json(&body);
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    reply(request.send().await.unwrap()).await
}

/// A response as status, body (`null` if not JSON), and the request id header.
async fn reply(response: reqwest::Response) -> (u16, Value, String) {
    let status = response.status().as_u16();
    let rid = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let bytes = response.bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        rid,
    )
}

/// `GET` on the chat service with a token.
async fn get(p: &Platform, path: &str, token: &str) -> (u16, Value, String) {
    chat(p, Method::GET, path, None, Some(token)).await
}

/// Joins chat `id`.
async fn join(p: &Platform, id: &str, token: &str) -> (u16, Value, String) {
    let path = format!("/api/v1/chats/{id}/join");
    chat(p, Method::POST, &path, None, Some(token)).await
}

/// Posts `text` to chat `id`.
async fn post_text(
    p: &Platform,
    id: &str,
    text: impl Into<String>,
    token: &str,
) -> (u16, Value, String) {
    let path = format!("/api/v1/chats/{id}/messages");
    chat(
        p,
        Method::POST,
        &path,
        Some(json!({"text": text.into()})),
        Some(token),
    )
    .await
}

/// Asserts the platform's error shape with `code` and the request id echoed.
fn assert_error(reply: &(u16, Value, String), status: u16, code: &str) {
    assert_eq!(reply.0, status, "{}", reply.1);
    assert_eq!(reply.1["error"]["code"], code, "{}", reply.1);
    assert!(!reply.2.is_empty(), "x-request-id missing");
    assert_eq!(reply.1["error"]["request_id"], reply.2.as_str());
    assert!(
        reply.1["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
}

async fn create_chat(p: &Platform, token: &str, name: &str) -> String {
    let reply = chat(
        p,
        Method::POST,
        "/api/v1/chats",
        Some(json!({"name": name})),
        Some(token),
    )
    .await;
    assert_eq!(reply.0, 201, "{}", reply.1);
    reply.1["id"].as_str().unwrap().to_owned()
}

fn ws_url(p: &Platform, chat_id: &str, query: &str) -> String {
    format!(
        "{}/api/v1/chats/{chat_id}/ws{query}",
        p.chat_url.replacen("http://", "ws://", 1)
    )
}

fn python() -> String {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = std::process::Command::new(format!("{root}/scripts/python-clients.sh"))
        .output()
        .expect("scripts/python-clients.sh runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!("{}/bin/python", String::from_utf8_lossy(&out.stdout).trim())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_receives_the_others_message_live_and_a_non_member_is_refused() {
    let p = Platform::start().await;
    let ann = p.user("ann").await;
    let bob = p.user("bob").await;
    let eve = p.user("eve").await;
    let id = create_chat(&p, &ann, "general").await;

    // Not a member: every read and write is refused with auth.forbidden.
    for (method, path, body) in [
        (Method::GET, format!("/api/v1/chats/{id}"), None),
        (Method::GET, format!("/api/v1/chats/{id}/messages"), None),
        (Method::GET, format!("/api/v1/chats/{id}/members"), None),
        (
            Method::POST,
            format!("/api/v1/chats/{id}/messages"),
            Some(json!({"text": "hi"})),
        ),
        (Method::POST, format!("/api/v1/chats/{id}/leave"), None),
    ] {
        let reply = chat(&p, method, &path, body, Some(&eve)).await;
        assert_error(&reply, 403, "auth.forbidden");
    }

    // Bob joins; his live socket is an independent client (Python `websockets`).
    let joined = join(&p, &id, &bob).await;
    assert_eq!(joined.0, 200, "{}", joined.1);
    assert_eq!(joined.1["members"], 2);
    let python = python();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/live_client.py");
    let mut client = tokio::process::Command::new(&python)
        .args([script, &ws_url(&p, &id, ""), &bob, "1"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(client.stdout.take().unwrap()).lines();
    assert_eq!(
        lines.next_line().await.unwrap().as_deref(),
        Some("connected")
    );

    // The same refusal for Eve's socket, before any upgrade.
    let refused = tokio::process::Command::new(&python)
        .args([script, &ws_url(&p, &id, ""), &eve, "1"])
        .output()
        .await
        .unwrap();
    let refused_text = String::from_utf8_lossy(&refused.stdout);
    assert_eq!(refused.status.code(), Some(2), "{refused_text}");
    assert!(refused_text.contains("refused 403") && refused_text.contains("auth.forbidden"));

    let sent = post_text(&p, &id, "hello bob", &ann).await;
    assert_eq!(sent.0, 201, "{}", sent.1);
    let frame: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(frame["type"], "message");
    assert_eq!(frame["message"]["text"], "hello bob");
    assert_eq!(frame["message"]["author"], "ann");
    assert_eq!(frame["message"]["id"], sent.1["id"]);
    assert!(client.wait().await.unwrap().success());

    // Eve's message never arrives anywhere; Bob's history has Ann's.
    let history = get(&p, &format!("/api/v1/chats/{id}/messages"), &bob).await;
    assert_eq!(history.1["items"].as_array().unwrap().len(), 1);

    // Each lists the chats they are a member of, newest first, with their member counts.
    let own = create_chat(&p, &bob, "bob's own").await;
    let listed = |reply: (u16, Value, String)| -> Vec<(String, i64)> {
        assert_eq!(reply.0, 200, "{}", reply.1);
        let chats = reply.1.as_array().unwrap().iter();
        chats
            .map(|c| {
                (
                    c["id"].as_str().unwrap().to_owned(),
                    c["members"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(
        listed(get(&p, "/api/v1/chats", &bob).await),
        [(own.clone(), 1), (id.clone(), 2)]
    );
    assert_eq!(listed(get(&p, "/api/v1/chats", &ann).await), [(id, 2)]);
    assert_eq!(listed(get(&p, "/api/v1/chats", &eve).await), []);
    p.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_of_a_rotated_key_are_accepted_without_restarting_the_chat_service() {
    // A periodic JWKS refresh an hour away: only the unknown-kid refresh can find the new key.
    let mut p = Platform::start_with(Options {
        chat_key_refresh_secs: 3600,
        ..Options::default()
    })
    .await;
    let old = p.user("ann").await;
    let old_kid = kid_of(&old);
    let id = create_chat(&p, &old, "before rotation").await;

    let new_kid = p.rotate_keys().await;
    assert_ne!(new_kid, old_kid);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let fresh = loop {
        let token = p.login("ann").await;
        if kid_of(&token) == new_kid {
            break token;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "auth-svc never signed with the new key"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let reply = get(&p, &format!("/api/v1/chats/{id}"), &fresh).await;
    assert_eq!(reply.0, 200, "new key refused: {}", reply.1);
    let sent = post_text(&p, &id, "after rotation", &fresh).await;
    assert_eq!(sent.0, 201, "{}", sent.1);
    // The retiring key still verifies the tokens it signed.
    let reply = get(&p, "/api/v1/chats", &old).await;
    assert_eq!(reply.0, 200, "old key refused: {}", reply.1);
    p.teardown().await;
}

/// Method, path, body, token; the expected status and code.
type ErrorCase<'a> = (Method, String, Option<Value>, Option<&'a str>, u16, &'a str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_follow_the_platform_model() {
    let p = Platform::start().await;
    let ann = p.user("ann").await;
    let id = create_chat(&p, &ann, "errors").await;
    let cases: Vec<ErrorCase> = vec![
        (
            Method::GET,
            "/api/v1/chats".into(),
            None,
            None,
            401,
            "auth.invalid_token",
        ),
        (
            Method::GET,
            "/api/v1/chats".into(),
            None,
            Some("not.a.jwt"),
            401,
            "auth.invalid_token",
        ),
        (
            Method::POST,
            "/api/v1/chats".into(),
            Some(json!({"name": "  "})),
            Some(&ann),
            400,
            "validation.failed",
        ),
        (
            Method::POST,
            "/api/v1/chats".into(),
            Some(json!({"title": "x"})),
            Some(&ann),
            400,
            "validation.failed",
        ),
        (
            Method::POST,
            format!("/api/v1/chats/{id}/messages"),
            Some(json!({"text": "x".repeat(2001)})),
            Some(&ann),
            400,
            "validation.failed",
        ),
        (
            Method::POST,
            format!("/api/v1/chats/{id}/messages"),
            Some(json!({"text": "x".repeat(20_000)})),
            Some(&ann),
            413,
            "common.payload_too_large",
        ),
        (
            Method::GET,
            format!("/api/v1/chats/{id}/messages?limit=0"),
            None,
            Some(&ann),
            400,
            "validation.failed",
        ),
        (
            Method::GET,
            format!("/api/v1/chats/{id}/messages?before=5&after=1"),
            None,
            Some(&ann),
            400,
            "validation.failed",
        ),
        (
            Method::GET,
            format!("/api/v1/chats/{id}/messages?limit=abc"),
            None,
            Some(&ann),
            400,
            "validation.failed",
        ),
        (
            Method::GET,
            "/api/v1/chats/not-a-uuid".into(),
            None,
            Some(&ann),
            400,
            "validation.failed",
        ),
        (
            Method::GET,
            format!("/api/v1/chats/{}", uuid::Uuid::new_v4()),
            None,
            Some(&ann),
            404,
            "common.not_found",
        ),
        (
            Method::POST,
            format!("/api/v1/chats/{}/join", uuid::Uuid::new_v4()),
            None,
            Some(&ann),
            404,
            "common.not_found",
        ),
        (
            Method::GET,
            "/api/v1/chats?all=true".into(),
            None,
            Some(&ann),
            403,
            "auth.forbidden",
        ),
        (
            Method::DELETE,
            "/api/v1/chats".into(),
            None,
            Some(&ann),
            405,
            "common.method_not_allowed",
        ),
        (
            Method::GET,
            "/nowhere".into(),
            None,
            Some(&ann),
            404,
            "common.not_found",
        ),
        (
            Method::GET,
            format!("/api/v1/chats/{id}/ws"),
            None,
            Some(&ann),
            400,
            "validation.failed",
        ),
    ];
    for (method, path, body, token, status, code) in cases {
        let reply = chat(&p, method.clone(), &path, body, token).await;
        assert_eq!(reply.0, status, "{method} {path}: {}", reply.1);
        assert_error(&reply, status, code);
    }
    let validation = chat(
        &p,
        Method::POST,
        "/api/v1/chats",
        Some(json!({"name": ""})),
        Some(&ann),
    )
    .await;
    assert_eq!(validation.1["error"]["details"][0]["field"], "name");

    // An admin (role from the token) may read any chat and list them all, but not post.
    p.user("root").await;
    p.grant_admin("root").await;
    let root = p.login("root").await;
    let all = get(&p, "/api/v1/chats?all=true", &root).await;
    assert_eq!(all.0, 200, "{}", all.1);
    assert!(
        all.1
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == id.as_str())
    );
    let read = get(&p, &format!("/api/v1/chats/{id}/messages"), &root).await;
    assert_eq!(read.0, 200, "{}", read.1);
    let post = post_text(&p, &id, "x", &root).await;
    assert_error(&post, 403, "auth.forbidden");
    p.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_and_the_socket_replays_what_a_client_missed() {
    let p = Platform::start().await;
    let ann = p.user("ann").await;
    let bob = p.user("bob").await;
    let id = create_chat(&p, &ann, "paging").await;
    let join = join(&p, &id, &bob).await;
    assert_eq!(join.0, 200);
    let mut ids = Vec::new();
    for i in 0..5 {
        let sent = post_text(&p, &id, format!("m{i}"), &ann).await;
        ids.push(sent.1["id"].as_i64().unwrap());
    }
    let texts = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["text"].as_str().unwrap().to_owned())
            .collect()
    };
    let page = get(&p, &format!("/api/v1/chats/{id}/messages?limit=2"), &bob).await;
    assert_eq!(texts(&page.1), ["m3", "m4"]);
    let before = page.1["next_before"].as_i64().unwrap();
    let older = get(
        &p,
        &format!("/api/v1/chats/{id}/messages?limit=10&before={before}"),
        &bob,
    )
    .await;
    assert_eq!(texts(&older.1), ["m0", "m1", "m2"]);
    assert!(older.1.get("next_before").is_none());
    let after = get(
        &p,
        &format!("/api/v1/chats/{id}/messages?after={}", ids[2]),
        &bob,
    )
    .await;
    assert_eq!(texts(&after.1), ["m3", "m4"]);

    // A reconnecting client asks for what came after the last message it saw, then goes live.
    let mut request = ws_url(&p, &id, &format!("?after={}", ids[3]))
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {bob}").parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let next_text = |frame: Option<Result<WsMessage, _>>| -> String {
        let WsMessage::Text(text) = frame.unwrap().unwrap() else {
            panic!("not text")
        };
        let v: Value = serde_json::from_str(&text).unwrap();
        v["message"]["text"].as_str().unwrap().to_owned()
    };
    assert_eq!(next_text(socket.next().await), "m4");
    post_text(&p, &id, "live", &ann).await;
    assert_eq!(next_text(socket.next().await), "live");

    // Leaving closes the member's socket with 4003.
    let left = chat(
        &p,
        Method::POST,
        &format!("/api/v1/chats/{id}/leave"),
        None,
        Some(&bob),
    )
    .await;
    assert_eq!(left.0, 204, "{}", left.1);
    let closed = tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .unwrap();
    match closed {
        Some(Ok(WsMessage::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 4003),
        other => panic!("expected a 4003 close, got {other:?}"),
    }
    let _ = socket.close(None).await;
    p.teardown().await;
}

/// A client still sending an oversized body reads the 413 in the platform's error shape, not a
/// connection reset, and its kept-alive connection goes on working (as the gateway does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_answered_413_while_the_client_is_still_sending() {
    let p = Platform::start().await;
    let ann = p.user("ann").await;
    let id = create_chat(&p, &ann, "big bodies").await;
    let url = format!("{}/api/v1/chats/{id}/messages", p.chat_url);
    let client = authstack_testkit::http::client();
    for round in 0..8 {
        for (how, body) in authstack_testkit::http::oversized_bodies() {
            let response = client
                .post(&url)
                .bearer_auth(&ann)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap_or_else(|e| panic!("round {round}, {how} body: {e:?}"));
            assert_error(&reply(response).await, 413, "common.payload_too_large");
        }
        client
            .get(format!("{}/healthz", p.chat_url))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .unwrap_or_else(|e| panic!("round {round}, after the 413s: {e:?}"));
    }
}

/// A client that never finishes its request head is disconnected after the header read timeout
/// (slowloris), while a well-behaved client is served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let p = Platform::start_with(Options {
        chat_header_read_timeout_ms: 500,
        ..Options::default()
    })
    .await;
    let addr = p.chat_url.trim_start_matches("http://").to_owned();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: chat\r\nX-Slow: ")
        .await
        .unwrap();
    let (status, _, _) = chat(&p, Method::GET, "/healthz", None, None).await;
    assert_eq!(status, 200, "others are served meanwhile");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut rest)).await;
    assert!(
        matches!(closed, Ok(Ok(_)) | Ok(Err(_))),
        "the connection was still open after 5 s"
    );
}
