//! The WebSocket `/api/v1/ws` across a broker outage (the black-box protocol tests are
//! `tests/ws/test_ws.py`, with Python `websockets`): sockets stay open while the broker is away,
//! and the process's one event subscription is back after the reconnect, so events resume.

mod common;

use std::time::{Duration, Instant};

use authstack_testkit::tcp_proxy::TcpProxy;
use common::*;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn socket(app: &TestApp, token: &str) -> Socket {
    let mut request = app
        .url("/api/v1/ws")
        .replace("http://", "ws://")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let ready = next_frame(&mut ws, Duration::from_secs(10)).await.unwrap();
    assert_eq!(ready["type"], "ready", "{ready}");
    ws
}

/// The next JSON frame within `within`, or `None`; a close frame fails the test.
async fn next_frame(ws: &mut Socket, within: Duration) -> Option<Value> {
    loop {
        match tokio::time::timeout(within, ws.next()).await {
            Err(_) => return None,
            Ok(Some(Ok(Message::Text(t)))) => return Some(serde_json::from_str(&t).unwrap()),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            Ok(other) => panic!("the socket ended: {other:?}"),
        }
    }
}

/// Changes the display name until the socket sees an `account.updated` (at most `within`).
async fn event_arrives(app: &TestApp, ws: &mut Socket, token: &str, within: Duration) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        let r = app
            .send(
                reqwest::Method::PATCH,
                "/api/v1/users/me",
                Some(json!({"display_name": "Ned"})),
                Some(token),
            )
            .await;
        if r.status != reqwest::StatusCode::OK {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        while let Some(frame) = next_frame(ws, Duration::from_millis(500)).await {
            if frame["type"] == "event" && frame["event"]["kind"] == "account.updated" {
                return true;
            }
        }
    }
    false
}

#[tokio::test]
async fn sockets_outlive_a_broker_outage_and_events_resume_after_the_reconnect() {
    let proxy = TcpProxy::start(broker_addr()).await.unwrap();
    let app = TestApp::behind(&proxy).await;
    let (_, token, _) = app.user("ned").await;
    let mut ws = socket(&app, &token).await;
    assert!(event_arrives(&app, &mut ws, &token, Duration::from_secs(10)).await);

    // Every broker connection is cut; the socket does not notice.
    proxy.set_down(true);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        next_frame(&mut ws, Duration::from_millis(500))
            .await
            .is_none()
    );
    proxy.set_down(false);
    app.wait_ready().await;
    let back = Instant::now();
    assert!(
        event_arrives(&app, &mut ws, &token, Duration::from_secs(15)).await,
        "no event on the socket within 15 s of the broker's return"
    );
    println!(
        "events resumed {:?} after the platform was ready again",
        back.elapsed()
    );
    app.teardown().await;
}
