//! Event publisher and subscriber against the real broker.

mod common;

use std::time::Duration;

use authstack_bus::{CancellationToken, EventPublisher, EventSubscriber};
use authstack_protocol::{Event, EventKind};
use authstack_testkit::tcp_proxy::TcpProxy;
use common::*;

#[tokio::test]
async fn events_reach_subscribers_by_topic_and_survive_reconnects() {
    let names = unique_names();
    let exchange = names.events_exchange.clone();
    let shutdown = CancellationToken::new();
    let proxy = TcpProxy::start(broker_addr()).await.unwrap();
    // The publisher declares the exchange; subscribers only check that it exists.
    let publisher = EventPublisher::start(
        proxy.amqp_url(),
        exchange.clone(),
        "pub".into(),
        100,
        shutdown.clone(),
    );
    let all = EventSubscriber::start(
        amqp_url(),
        exchange.clone(),
        vec!["#".into()],
        "all".into(),
        64 * 1024,
        shutdown.clone(),
    );
    let keys = EventSubscriber::start(
        amqp_url(),
        exchange.clone(),
        vec!["keys.*".into()],
        "keys".into(),
        64 * 1024,
        shutdown.clone(),
    );
    let mut all_rx = all.subscribe();
    let mut keys_rx = keys.subscribe();
    let mut sessions = all.sessions();
    let mut keys_sessions = keys.sessions();
    tokio::time::timeout(Duration::from_secs(10), sessions.wait_for(|n| *n > 0))
        .await
        .unwrap()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), keys_sessions.wait_for(|n| *n > 0))
        .await
        .unwrap()
        .unwrap();

    let account = uuid::Uuid::new_v4();
    publisher.publish(Event::now(
        EventKind::AccountRegistered,
        Some(account),
        serde_json::json!({}),
    ));
    publisher.publish(Event::now(
        EventKind::KeysRotated,
        None,
        serde_json::json!({"generation": 2}),
    ));

    let first = tokio::time::timeout(Duration::from_secs(10), all_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.kind, EventKind::AccountRegistered);
    assert_eq!(first.account_id, Some(account));
    let second = tokio::time::timeout(Duration::from_secs(10), all_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.kind, EventKind::KeysRotated);
    let only_keys = tokio::time::timeout(Duration::from_secs(10), keys_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        only_keys.kind,
        EventKind::KeysRotated,
        "topic binding must filter"
    );

    // Events published while the broker is unreachable are delivered after reconnecting.
    proxy.set_down(true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    publisher.publish(Event::now(
        EventKind::AccountDeleted,
        Some(account),
        serde_json::json!({}),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.set_down(false);
    let late = tokio::time::timeout(Duration::from_secs(10), all_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(late.kind, EventKind::AccountDeleted);
    assert_eq!(publisher.dropped(), 0);
    shutdown.cancel();
    delete_queue(&names).await;
}
