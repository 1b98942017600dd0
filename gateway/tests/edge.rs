//! The public edge of the gateway: caching headers on token responses (L2), slow and idle
//! clients and the connection limit (L4, with a raw TCP client), metrics off the public port
//! (L5), the client address behind trusted proxies only (H2) and the RPC size limit (I5).

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicPublishOptions};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn host(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_owned()
}

/// Reads until the peer closes; returns what arrived and when the close happened, or `None`
/// when the connection is still open after `limit`.
async fn wait_for_close(stream: &mut TcpStream, limit: Duration) -> Option<(Vec<u8>, Duration)> {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(
            limit.saturating_sub(started.elapsed()),
            stream.read(&mut buf),
        )
        .await
        {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some((got, started.elapsed())),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn token_responses_are_never_cached() {
    let app = TestApp::spawn().await;
    app.register("cat", "correct horse battery").await;
    let login = app
        .post(
            "/api/v1/auth/login",
            json!({"login": "cat", "password": "correct horse battery"}),
            None,
        )
        .await;
    let refresh = app
        .post(
            "/api/v1/auth/refresh",
            json!({"refresh_token": login.body["refresh_token"]}),
            None,
        )
        .await;
    let token = refresh.body["access_token"].as_str().unwrap().to_owned();
    let session = app.get("/api/v1/auth/session", Some(&token)).await;
    let me = app.get("/api/v1/users/me", Some(&token)).await;
    let failed = app
        .post(
            "/api/v1/auth/login",
            json!({"login": "cat", "password": "wrong password!"}),
            None,
        )
        .await;
    for (what, r) in [
        ("login", &login),
        ("refresh", &refresh),
        ("session", &session),
        ("me", &me),
        ("error", &failed),
    ] {
        assert_eq!(r.headers["cache-control"], "no-store", "{what}");
        assert_eq!(r.headers["pragma"], "no-cache", "{what}");
    }
    // The public key set stays cacheable for a short while.
    let jwks = app.get("/.well-known/jwks.json", None).await;
    assert_eq!(jwks.headers["cache-control"], "public, max-age=30");
    app.teardown().await;
}

/// A platform whose gateway has short header (500 ms), idle (700 ms) and body (500 ms) timeouts.
async fn with_short_timeouts() -> TestApp {
    TestApp::spawn_with(Options {
        gateway_config: |c| {
            c.header_read_timeout_ms = 500;
            c.idle_timeout_ms = 700;
            c.body_read_timeout_ms = 500;
        },
        ..Options::default()
    })
    .await
}

/// Sends half a request head on `stream`, then nothing: the gateway must close the connection
/// within 2 s (its header timeout is 500 ms).
async fn half_a_head_is_cut_off(stream: &mut TcpStream) {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let (_, after) = wait_for_close(stream, Duration::from_secs(5))
        .await
        .expect("still open 5 s after a half-sent request head");
    assert!(
        after < Duration::from_millis(2000),
        "closed only after {after:?}"
    );
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    // A long idle timeout: the header deadline alone must close these connections.
    let app = TestApp::spawn_with(Options {
        gateway_config: |c| {
            c.header_read_timeout_ms = 500;
            c.idle_timeout_ms = 30_000;
        },
        ..Options::default()
    })
    .await;
    // Half a request head, then silence.
    let mut stream = TcpStream::connect(host(&app)).await.unwrap();
    half_a_head_is_cut_off(&mut stream).await;

    // Trickling one byte at a time does not extend the deadline.
    let mut stream = TcpStream::connect(host(&app)).await.unwrap();
    let started = Instant::now();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\n")
        .await
        .unwrap();
    let mut closed = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if stream.write_all(b"X").await.is_err() {
            closed = true;
            break;
        }
        let mut probe = [0u8; 1];
        if let Ok(Ok(0)) =
            tokio::time::timeout(Duration::from_millis(1), stream.read(&mut probe)).await
        {
            closed = true;
            break;
        }
    }
    assert!(closed, "a trickling client kept its connection for 4 s");
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );

    // On a kept-alive connection: one request answered, a pause, then half a head. The head's
    // own deadline applies, not the (long) idle one.
    let mut stream = TcpStream::connect(host(&app)).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    stream.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    tokio::time::sleep(Duration::from_millis(300)).await;
    half_a_head_is_cut_off(&mut stream).await;
    app.teardown().await;
}

#[tokio::test]
async fn idle_connections_are_closed_and_slow_bodies_get_408() {
    let app = with_short_timeouts().await;
    // A kept-alive connection after its request: closed once idle for the idle timeout.
    let mut stream = TcpStream::connect(host(&app)).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (got, after) = wait_for_close(&mut stream, Duration::from_secs(5))
        .await
        .expect("idle connection still open after 5 s");
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
    assert!(
        after >= Duration::from_millis(600) && after < Duration::from_millis(2500),
        "{after:?}"
    );

    // A connection that never sends anything.
    let mut silent = TcpStream::connect(host(&app)).await.unwrap();
    assert!(
        wait_for_close(&mut silent, Duration::from_secs(5))
            .await
            .is_some()
    );

    // A body that never arrives in full.
    let mut slow = TcpStream::connect(host(&app)).await.unwrap();
    slow.write_all(
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"login\":",
    )
    .await
    .unwrap();
    let (got, _) = wait_for_close(&mut slow, Duration::from_secs(5))
        .await
        .expect("slow body: connection still open after 5 s");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("common.request_timeout"), "{text}");
    app.teardown().await;
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_for_a_free_slot() {
    let app = TestApp::spawn_with(Options {
        gateway_config: |c| {
            c.max_connections = 2;
            c.idle_timeout_ms = 3000;
        },
        ..Options::default()
    })
    .await;
    // Let the idle connection the harness used for its readiness checks expire first.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let first = TcpStream::connect(host(&app)).await.unwrap();
    let _second = TcpStream::connect(host(&app)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = TcpStream::connect(host(&app)).await.unwrap();
    third.write_all(request).await.unwrap();
    let mut buf = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_millis(500), third.read(&mut buf))
            .await
            .is_err(),
        "a third connection was served beyond the limit of 2"
    );
    // A slot frees up: the waiting client is served at once (long before the other idle
    // connection would time out).
    drop(first);
    let freed = Instant::now();
    let (got, _) = wait_for_close(&mut third, Duration::from_secs(10))
        .await
        .expect("the waiting connection was never served");
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
    assert!(
        freed.elapsed() < Duration::from_millis(1500),
        "{:?}",
        freed.elapsed()
    );
    app.teardown().await;
}

#[tokio::test]
async fn metrics_are_served_on_their_own_listener_only() {
    let app = TestApp::spawn().await;
    app.get("/metrics", None)
        .await
        .assert_error(404, "common.not_found");
    let healthz = app.get("/healthz", None).await;
    assert_eq!(healthz.status, StatusCode::OK);
    // Three HEAD requests (no other test sends HEAD): counted under their method, route
    // template and status, and timed under their route.
    for _ in 0..3 {
        let head = app
            .http
            .head(format!("{}/healthz", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(head.status(), StatusCode::OK);
    }
    // Invented methods (no other test sends one): refused, and counted under one label, not a
    // series each.
    for invented in ["ZZ1", "ZZ2", "ZZ3"] {
        let method = reqwest::Method::from_bytes(invented.as_bytes()).unwrap();
        let refused = app
            .http
            .request(method, format!("{}/healthz", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::METHOD_NOT_ALLOWED);
    }
    let metrics = app.http.get(&app.metrics).send().await.unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    let text = metrics.text().await.unwrap();
    let head_count = text
        .lines()
        .find(|l| {
            l.starts_with("authstack_http_requests_total{")
                && l.contains(r#"method="HEAD""#)
                && l.contains(r#"route="/healthz""#)
                && l.contains(r#"status="200""#)
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok());
    assert_eq!(head_count, Some(3.0), "{text}");
    assert!(!text.contains(r#"method="ZZ"#), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("authstack_http_requests_total{")
                && l.contains(r#"method="other""#)
                && l.contains(r#"route="/healthz""#)
                && l.contains(r#"status="405""#)
                && l.ends_with(" 3")),
        "{text}"
    );
    assert!(
        text.lines().any(
            |l| l.starts_with("authstack_http_request_duration_seconds_count{")
                && l.contains(r#"route="/healthz""#)
        ),
        "{text}"
    );
    app.teardown().await;
}

/// Replaces auth-svc with a consumer that records the `context.client_ip` of every login.
async fn record_client_ips(
    app: &mut TestApp,
) -> (
    lapin::Connection,
    tokio::sync::mpsc::UnboundedReceiver<Value>,
) {
    app.stop_replica(0).await;
    // Let the gateway notice that auth-svc is gone, so it notices the replacement below.
    for _ in 0..100 {
        if !app.gateway.rpc.has_consumers() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let conn = lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let mut consumer = ch
        .basic_consume(
            app.queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            Default::default(),
        )
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(d)) = consumer.next().await {
            let body: Value = serde_json::from_slice(&d.data).unwrap_or_default();
            // Only the logins (the gateway also asks for keys now and then).
            if body["method"] == "auth.login" {
                let _ = tx.send(body["context"]["client_ip"].clone());
            }
            if let Some(to) = d.properties.reply_to().clone() {
                let props = lapin::BasicProperties::default()
                    .with_correlation_id(d.properties.correlation_id().clone().unwrap_or_default());
                let reply = br#"{"error":{"code":"auth.invalid_credentials","message":"no"}}"#;
                let _ = ch
                    .basic_publish("".into(), to, BasicPublishOptions::default(), reply, props)
                    .await;
            }
            let _ = d.acker.ack(BasicAckOptions::default()).await;
        }
    });
    // Wait until the gateway sees the new consumer.
    for _ in 0..100 {
        if app.gateway.rpc.has_consumers() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (conn, rx)
}

async fn login_from(app: &TestApp, forwarded_for: &[&str]) {
    let mut req = app
        .http
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"login": "someone", "password": "whatever it is"}));
    for v in forwarded_for {
        req = req.header("x-forwarded-for", *v);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy() {
    // Default: no trusted proxies. A client cannot pick its own address.
    let mut app = TestApp::spawn_with(Options {
        replicas: 1,
        ..Options::default()
    })
    .await;
    let (conn, mut ips) = record_client_ips(&mut app).await;
    login_from(&app, &["203.0.113.50"]).await;
    assert_eq!(ips.recv().await.unwrap(), "127.0.0.1");
    conn.close(200, "bye".into()).await.unwrap();
    app.add_replica("back").await;
    app.teardown().await;

    // Behind a trusted proxy (the test client at 127.0.0.1), with two hops allowed.
    let mut app = TestApp::spawn_with(Options {
        replicas: 1,
        gateway_config: |c| {
            c.trusted_proxies =
                gateway::client_ip::parse_proxy_list("127.0.0.0/8,10.0.0.0/8").unwrap();
            c.trusted_proxy_hops = 2;
        },
        ..Options::default()
    })
    .await;
    let (conn, mut ips) = record_client_ips(&mut app).await;
    login_from(&app, &["198.51.100.7"]).await;
    assert_eq!(ips.recv().await.unwrap(), "198.51.100.7");
    // Forged entries to the left of what the proxies wrote are ignored.
    login_from(&app, &["6.6.6.6, 198.51.100.8, 10.1.2.3"]).await;
    assert_eq!(ips.recv().await.unwrap(), "198.51.100.8");
    conn.close(200, "bye".into()).await.unwrap();
    app.add_replica("back").await;
    app.teardown().await;
}

#[tokio::test]
async fn the_gateway_refuses_to_send_rpc_messages_above_the_limit() {
    let app = TestApp::spawn_with(Options {
        gateway_config: |c| c.broker.max_message_bytes = 2048,
        ..Options::default()
    })
    .await;
    let (_, token, _) = app.user("max").await;
    let r = app
        .post(
            "/api/v1/access/check",
            json!({"method": "GET", "path": format!("/{}", "a".repeat(2000))}),
            Some(&token),
        )
        .await;
    r.assert_error(413, "common.payload_too_large");
    app.teardown().await;
}

/// Many keep-alive clients at once, each sending several requests on its connection, against a
/// gateway whose connections live on 3 worker threads and against one serving them on the shared
/// runtime (`GATEWAY_HTTP_WORKERS=0`): every request is answered, on either server loop.
#[tokio::test]
async fn keep_alive_clients_are_served_by_worker_threads_and_by_the_shared_runtime() {
    for app in [
        TestApp::spawn_with(Options {
            gateway_config: |c| c.http_workers = Some(3),
            ..Options::default()
        })
        .await,
        TestApp::spawn_with(Options {
            gateway_config: |c| c.http_workers = Some(0),
            ..Options::default()
        })
        .await,
    ] {
        let clients = (0..9).map(|_| authstack_testkit::http::client());
        let answered = futures::future::join_all(clients.map(|client| {
            let url = format!("{}/healthz", app.base);
            async move {
                let mut statuses = Vec::new();
                for _ in 0..3 {
                    statuses.push(client.get(&url).send().await.unwrap().status());
                }
                statuses
            }
        }))
        .await;
        assert!(
            answered.iter().flatten().all(|s| *s == StatusCode::OK),
            "{answered:?}"
        );
        assert_eq!(answered.iter().flatten().count(), 27);
        app.teardown().await;
    }
}
