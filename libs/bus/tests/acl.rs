//! The per-component broker users of `libs/protocol/broker-acl.json`, tried for real against the
//! local RabbitMQ: the platform works under them, and the gateway's user is refused everything
//! that would let an attacker holding it impersonate auth-svc.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use authstack_bus::{
    CancellationToken, EventPublisher, EventSubscriber, IncomingCall, Names, ReplyMode, RpcClient,
    RpcClientConfig, RpcHandler, RpcServer, RpcServerConfig,
};
use authstack_protocol::broker::Component;
use authstack_protocol::rpc::{Call, CallContext, RpcReply, RpcRequest};
use authstack_protocol::{Event, EventKind};
use authstack_testkit::broker::{broker_addr, component_url, publish_confirmed};
use common::*;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueDeclareOptions,
    QueuePurgeOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};

/// Answers every call with its method name and counts the calls it handled.
#[derive(Default)]
struct Answer {
    handled: AtomicUsize,
}

impl RpcHandler for Answer {
    type Batch = ();

    async fn handle(&self, call: IncomingCall, _: Option<&()>) -> RpcReply {
        self.handled.fetch_add(1, Ordering::SeqCst);
        RpcReply::ok(&serde_json::json!({ "method": call.request.method }))
    }
}

fn url(c: Component) -> String {
    component_url(c, broker_addr())
}

/// auth-svc's side of a stack (RPC server and event publisher) under its own user.
fn auth_svc(names: &Names, shutdown: &CancellationToken) -> (Arc<Answer>, EventPublisher) {
    let handler = Arc::new(Answer::default());
    let (_, run) = RpcServer::start(
        RpcServerConfig {
            url: url(Component::AuthSvc),
            names: names.clone(),
            max_message_bytes: 64 * 1024,
            connection_name: "acl-auth-svc".into(),
            prefetch: 8,
        },
        handler.clone(),
        shutdown.clone(),
    );
    tokio::spawn(run);
    let events = EventPublisher::start(
        url(Component::AuthSvc),
        names.events_exchange.clone(),
        "acl-events".into(),
        16,
        shutdown.clone(),
    );
    (handler, events)
}

fn gateway_client(names: &Names, mode: ReplyMode, shutdown: &CancellationToken) -> RpcClient {
    RpcClient::start(
        RpcClientConfig {
            url: url(Component::Gateway),
            names: names.clone(),
            max_message_bytes: 64 * 1024,
            connection_name: "acl-gateway".into(),
            consumer_check_interval: Duration::from_millis(100),
            reply_mode: mode,
            batching: Default::default(),
        },
        shutdown.clone(),
    )
}

async fn gateway_connection() -> Connection {
    Connection::connect(
        &url(Component::Gateway),
        ConnectionProperties::default().with_connection_name("acl-attacker".into()),
    )
    .await
    .expect("the gateway user can connect")
}

/// Asserts a broker refusal (403 ACCESS_REFUSED) naming `resource`.
fn assert_refused<T: std::fmt::Debug>(result: Result<T, lapin::Error>, resource: &str) {
    let e = result.expect_err("the broker must refuse this");
    let text = e.to_string();
    assert!(
        text.contains("ACCESS_REFUSED") && text.contains(resource),
        "expected ACCESS_REFUSED on {resource}, got: {text}"
    );
}

/// A stack of its own: auth-svc's side running, a ready gateway client, and an attacker's view.
async fn stack_with_gateway_client() -> (Names, CancellationToken, Arc<Answer>, RpcClient) {
    let names = unique_names();
    let shutdown = CancellationToken::new();
    let (handler, events) = auth_svc(&names, &shutdown);
    let client = gateway_client(&names, ReplyMode::Exclusive, &shutdown);
    ready(&client).await;
    // The publisher declared the events exchange; it may go now.
    drop(events);
    (names, shutdown, handler, client)
}

/// Makes one genuine call and checks it is the only call auth-svc's side ever handled.
async fn only_genuine_calls_were_handled(handler: &Answer, client: &RpcClient) {
    let request = RpcRequest::new(&Call::ListKeys, CallContext::default());
    client.call(&request, Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        handler.handled.load(Ordering::SeqCst),
        1,
        "a forged request was handled"
    );
}

async fn ready(client: &RpcClient) {
    assert!(
        eventually(15, || client.is_connected() && client.has_consumers()).await,
        "the gateway's client never saw auth-svc"
    );
}

#[tokio::test]
async fn the_platform_runs_under_its_least_privilege_users() {
    let names = unique_names();
    let shutdown = CancellationToken::new();
    let (_handler, events) = auth_svc(&names, &shutdown);
    for mode in [ReplyMode::Exclusive, ReplyMode::Direct] {
        let client = gateway_client(&names, mode, &shutdown);
        ready(&client).await;
        let request = RpcRequest::new(&Call::ListKeys, CallContext::default());
        let reply = client
            .call(&request, Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("{mode:?}: {e}"));
        assert!(reply.get().contains("keys.list"));
    }
    // Events: published by auth-svc's user, received by the gateway's.
    let subscriber = EventSubscriber::start(
        url(Component::Gateway),
        names.events_exchange.clone(),
        vec!["#".into()],
        "acl-subscriber".into(),
        64 * 1024,
        shutdown.clone(),
    );
    let mut rx = subscriber.subscribe();
    let mut sessions = subscriber.sessions();
    tokio::time::timeout(Duration::from_secs(15), sessions.wait_for(|n| *n > 0))
        .await
        .expect("subscribed")
        .unwrap();
    events.publish(Event::now(
        EventKind::AccountRegistered,
        None,
        serde_json::json!({}),
    ));
    let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("event delivered")
        .unwrap();
    assert_eq!(got.kind, EventKind::AccountRegistered);
    shutdown.cancel();
    delete_queue(&names).await;
}

#[tokio::test]
async fn the_gateway_user_cannot_consume_requests_publish_events_or_forge_replies() {
    let (names, shutdown, handler, client) = stack_with_gateway_client().await;
    let conn = gateway_connection().await;

    // Consume (or purge) the RPC queue: read requests meant for auth-svc.
    let channel = conn.create_channel().await.unwrap();
    let consume = channel
        .basic_consume(
            names.rpc_queue.as_str().into(),
            "spy".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await;
    assert_refused(consume, &names.rpc_queue);
    let channel = conn.create_channel().await.unwrap();
    let purge = channel
        .queue_purge(
            names.rpc_queue.as_str().into(),
            QueuePurgeOptions::default(),
        )
        .await;
    assert_refused(purge, &names.rpc_queue);

    // Publish a domain event (e.g. a forged keys.rotated).
    let forged = serde_json::to_vec(&Event::now(
        EventKind::KeysRotated,
        None,
        serde_json::json!({"generation": 999}),
    ))
    .unwrap();
    assert_refused(
        publish_confirmed(&conn, &names.events_exchange, "keys.rotated", &forged).await,
        &names.events_exchange,
    );
    // Write into any queue directly through the default exchange (a forged reply, or a
    // request that skips the request exchange).
    assert_refused(
        publish_confirmed(&conn, "", &names.rpc_queue, b"{}").await,
        "amq.default",
    );
    // Redeclare the topology (e.g. delete and recreate the queue with a binding of its own).
    let channel = conn.create_channel().await.unwrap();
    let declare = channel
        .queue_declare(
            names.rpc_queue.as_str().into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await;
    assert_refused(declare, &names.rpc_queue);
    let channel = conn.create_channel().await.unwrap();
    let declare = channel
        .exchange_declare(
            "auth.events.attacker".into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await;
    assert_refused(declare, "auth.events.attacker");

    // What it needs still works: a request through the request exchange.
    only_genuine_calls_were_handled(&handler, &client).await;
    shutdown.cancel();
    delete_queue(&names).await;
}

#[tokio::test]
async fn auth_svc_answers_only_private_reply_queues() {
    // A request whose reply_to names a shared queue (here: the RPC queue itself) is dropped, so
    // a forged request cannot make auth-svc write into a queue of the attacker's choosing.
    let (names, shutdown, handler, client) = stack_with_gateway_client().await;
    let conn = gateway_connection().await;
    let channel = conn.create_channel().await.unwrap();
    let body =
        serde_json::to_vec(&RpcRequest::new(&Call::ListKeys, CallContext::default())).unwrap();
    channel
        .basic_publish(
            names.rpc_exchange.as_str().into(),
            names.rpc_queue.as_str().into(),
            BasicPublishOptions::default(),
            &body,
            BasicProperties::default().with_reply_to(names.rpc_queue.as_str().into()),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    // Then a legitimate call: once it is answered, the forged request (queued before it) has
    // been seen, and was dropped without being handled.
    only_genuine_calls_were_handled(&handler, &client).await;
    shutdown.cancel();
    delete_queue(&names).await;
}
