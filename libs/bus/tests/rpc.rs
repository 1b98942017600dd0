//! RPC client and server against the real RabbitMQ broker.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use authstack_bus::rpc_client::{Batching, DEFAULT_MAX_BATCH};
use authstack_bus::{
    CancellationToken, IncomingCall, Names, ReplyMode, RpcClient, RpcClientConfig, RpcHandler,
    RpcServer, RpcServerConfig,
};
use authstack_protocol::ErrorCode;
use authstack_protocol::rpc::{Call, CallContext, RpcReply, RpcRequest};
use authstack_testkit::tcp_proxy::TcpProxy;
use common::*;
use futures::StreamExt;
use serde_json::json;

/// Answers `{"server": id, "method": ..., "request_id": ...}` after an optional delay.
struct Echo {
    id: usize,
    delay: Duration,
    /// Calls that reached the handler.
    started: AtomicUsize,
    handled: AtomicUsize,
}

impl RpcHandler for Echo {
    type Batch = ();

    async fn handle(&self, call: IncomingCall, _: Option<&()>) -> RpcReply {
        self.started.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        self.handled.fetch_add(1, Ordering::SeqCst);
        RpcReply::ok(&serde_json::json!({
            "server": self.id,
            "method": call.request.method,
            "request_id": call.request.context.request_id,
            "message_id": call.request_id,
        }))
    }
}

fn echo(id: usize, delay_ms: u64) -> Arc<Echo> {
    Arc::new(Echo {
        id,
        delay: Duration::from_millis(delay_ms),
        started: AtomicUsize::new(0),
        handled: AtomicUsize::new(0),
    })
}

fn server<H: RpcHandler>(
    url: &str,
    queue: &Names,
    handler: Arc<H>,
    shutdown: &CancellationToken,
) -> RpcServer {
    server_with(url, queue, handler, 16, shutdown)
}

fn server_with<H: RpcHandler>(
    url: &str,
    queue: &Names,
    handler: Arc<H>,
    prefetch: u16,
    shutdown: &CancellationToken,
) -> RpcServer {
    let (server, run) = RpcServer::start(
        RpcServerConfig {
            url: url.into(),
            names: queue.clone(),
            max_message_bytes: 64 * 1024,
            connection_name: "test-server".into(),
            prefetch,
        },
        handler,
        shutdown.clone(),
    );
    tokio::spawn(run);
    server
}

/// Records when each call reached it and the size of each batch message; answers after `delay`,
/// or after `slow_delay` a call whose request id is `slow`.
struct Recorder {
    delay: Duration,
    slow_delay: Duration,
    arrivals: std::sync::Mutex<Vec<(String, Instant)>>,
    batches: std::sync::Mutex<Vec<usize>>,
}

impl Recorder {
    fn new(delay_ms: u64, slow_delay_ms: u64) -> Arc<Self> {
        Arc::new(Recorder {
            delay: Duration::from_millis(delay_ms),
            slow_delay: Duration::from_millis(slow_delay_ms),
            arrivals: Default::default(),
            batches: Default::default(),
        })
    }

    fn arrived(&self, request_id: &str) -> Option<Instant> {
        let arrivals = self.arrivals.lock().unwrap();
        arrivals
            .iter()
            .find(|(id, _)| id == request_id)
            .map(|a| a.1)
    }
}

impl RpcHandler for Recorder {
    type Batch = ();

    async fn prepare(&self, calls: &[&IncomingCall]) -> Option<()> {
        self.batches.lock().unwrap().push(calls.len());
        Some(())
    }

    /// Calls whose request id starts with `applied` count as applied by `prepare`.
    fn applied_in_prepare(&self, _: &(), call: &IncomingCall) -> bool {
        call.request.context.request_id.starts_with("applied")
    }

    async fn handle(&self, call: IncomingCall, _: Option<&()>) -> RpcReply {
        let id = call.request.context.request_id.clone();
        self.arrivals
            .lock()
            .unwrap()
            .push((id.clone(), Instant::now()));
        let delay = if id == "slow" {
            self.slow_delay
        } else {
            self.delay
        };
        tokio::time::sleep(delay).await;
        RpcReply::ok(&json!({ "request_id": id }))
    }
}

fn client(url: &str, queue: &Names, shutdown: &CancellationToken) -> RpcClient {
    client_with(
        url,
        queue,
        ReplyMode::Exclusive,
        DEFAULT_MAX_BATCH,
        shutdown,
    )
}

fn client_with(
    url: &str,
    queue: &Names,
    reply_mode: ReplyMode,
    max_batch: u16,
    shutdown: &CancellationToken,
) -> RpcClient {
    let batching = Batching {
        max_calls: max_batch,
        ..Default::default()
    };
    batching_client(url, queue, reply_mode, batching, shutdown)
}

fn batching_client(
    url: &str,
    queue: &Names,
    reply_mode: ReplyMode,
    batching: Batching,
    shutdown: &CancellationToken,
) -> RpcClient {
    RpcClient::start(
        RpcClientConfig {
            url: url.into(),
            names: queue.clone(),
            max_message_bytes: 64 * 1024,
            connection_name: "test-client".into(),
            consumer_check_interval: Duration::from_millis(100),
            reply_mode,
            batching,
        },
        shutdown.clone(),
    )
}

fn request(id: &str) -> RpcRequest {
    RpcRequest::new(
        &Call::GetMe,
        CallContext {
            request_id: id.into(),
            ..Default::default()
        },
    )
}

async fn ready(client: &RpcClient) {
    assert!(
        eventually(10, || client.is_connected() && client.has_consumers()).await,
        "client never became ready"
    );
}

#[tokio::test]
async fn calls_are_answered_and_spread_over_replicas() {
    let queue = unique_names();
    let shutdown = CancellationToken::new();
    let (a, b) = (echo(1, 2), echo(2, 2));
    server(&amqp_url(), &queue, a.clone(), &shutdown);
    server(&amqp_url(), &queue, b.clone(), &shutdown);
    let client = client(&amqp_url(), &queue, &shutdown);
    ready(&client).await;
    // Both replicas consume before the calls start: with one consumer seen, the window of
    // messages in flight is one (it follows the consumer count), and a replica still connecting
    // would get none of the calls.
    assert!(
        eventually(10, || client.consumers() >= 2).await,
        "the second replica never consumed"
    );

    let calls = (0..200).map(|i| {
        let client = client.clone();
        async move {
            client
                .call(&request(&format!("req-{i}")), Duration::from_secs(5))
                .await
        }
    });
    let results = futures::future::join_all(calls).await;
    for (i, r) in results.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(r.as_ref().unwrap().get()).unwrap();
        assert_eq!(v["method"], "users.get_me");
        assert_eq!(
            v["request_id"],
            format!("req-{i}"),
            "reply routed to the wrong caller"
        );
    }
    let (na, nb) = (
        a.handled.load(Ordering::SeqCst),
        b.handled.load(Ordering::SeqCst),
    );
    assert_eq!(na + nb, 200);
    assert!(
        na > 20 && nb > 20,
        "both replicas must share the queue: {na} / {nb}"
    );
    assert_eq!(client.in_flight(), 0);
    shutdown.cancel();
    delete_queue(&queue).await;
}

#[tokio::test]
async fn direct_reply_to_routes_replies_to_their_callers() {
    let queue = unique_names();
    let shutdown = CancellationToken::new();
    server(&amqp_url(), &queue, echo(1, 1), &shutdown);
    let client = client_with(
        &amqp_url(),
        &queue,
        ReplyMode::Direct,
        DEFAULT_MAX_BATCH,
        &shutdown,
    );
    ready(&client).await;
    let calls = (0..200).map(|i| {
        let client = client.clone();
        async move {
            client
                .call(&request(&format!("d-{i}")), Duration::from_secs(5))
                .await
        }
    });
    for (i, r) in futures::future::join_all(calls).await.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(r.as_ref().unwrap().get()).unwrap();
        assert_eq!(v["request_id"], format!("d-{i}"));
    }
    assert_eq!(client.in_flight(), 0);
    shutdown.cancel();
    delete_queue(&queue).await;
}

#[tokio::test]
async fn slow_replies_time_out_and_expired_requests_are_not_processed() {
    let queue = unique_names();
    let shutdown = CancellationToken::new();
    let slow = echo(1, 400);
    server(&amqp_url(), &queue, slow.clone(), &shutdown);
    let client = client(&amqp_url(), &queue, &shutdown);
    ready(&client).await;

    let started = Instant::now();
    let err = client
        .call(&request("slow"), Duration::from_millis(150))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::RpcTimeout);
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "timeout must honour the deadline"
    );
    assert_eq!(client.in_flight(), 0, "timed-out calls must not leak");

    // While the single consumer is busy (prefetch 16, but each takes 400 ms), requests whose
    // deadline passes in the queue are dropped by the broker or skipped by the server.
    let burst = (0..40).map(|i| {
        let client = client.clone();
        async move {
            client
                .call(&request(&format!("b{i}")), Duration::from_millis(100))
                .await
        }
    });
    let results = futures::future::join_all(burst).await;
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().unwrap_err().code == ErrorCode::RpcTimeout)
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let handled = slow.handled.load(Ordering::SeqCst);
    assert!(
        handled < 41,
        "expired requests were processed anyway: {handled}"
    );
    shutdown.cancel();
    delete_queue(&queue).await;
}

#[tokio::test]
async fn no_consumer_and_no_broker_fail_fast_with_unavailable() {
    let queue = unique_names();
    let shutdown = CancellationToken::new();
    let client = client(&amqp_url(), &queue, &shutdown);
    assert!(eventually(10, || client.is_connected()).await);
    let started = Instant::now();
    let err = client
        .call(&request("x"), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::RpcUnavailable, "{err:?}");
    assert!(started.elapsed() < Duration::from_millis(100));

    let unreachable = RpcClient::start(
        RpcClientConfig {
            url: "amqp://guest:guest@127.0.0.1:1/%2f".into(),
            names: queue.clone(),
            max_message_bytes: 64 * 1024,
            connection_name: "nowhere".into(),
            consumer_check_interval: Duration::from_millis(100),
            reply_mode: Default::default(),
            batching: Default::default(),
        },
        shutdown.clone(),
    );
    let started = Instant::now();
    let err = unreachable
        .call(&request("y"), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::RpcUnavailable);
    assert!(started.elapsed() < Duration::from_millis(100));
    shutdown.cancel();
    delete_queue(&queue).await;
}

#[tokio::test]
async fn both_sides_recover_after_the_broker_connection_drops() {
    let queue = unique_names();
    let shutdown = CancellationToken::new();
    let proxy = TcpProxy::start(broker_addr()).await.unwrap();
    let handler = echo(1, 0);
    let srv = server(&proxy.amqp_url(), &queue, handler.clone(), &shutdown);
    let client = client(&proxy.amqp_url(), &queue, &shutdown);
    ready(&client).await;
    client
        .call(&request("before"), Duration::from_secs(5))
        .await
        .unwrap();

    proxy.set_down(true);
    assert!(eventually(5, || !client.is_connected() && !srv.is_consuming()).await);
    let started = Instant::now();
    let err = client
        .call(&request("during"), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::RpcUnavailable);
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "must fail fast while the broker is down"
    );

    proxy.set_down(false);
    ready(&client).await;
    assert!(eventually(10, || srv.is_consuming()).await);
    let v = client
        .call(&request("after"), Duration::from_secs(5))
        .await
        .unwrap();
    assert!(v.get().contains("after"));

    // A sudden cut (no graceful close) is survived as well.
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(200)).await;
    ready(&client).await;
    client
        .call(&request("after-cut"), Duration::from_secs(5))
        .await
        .unwrap();
    shutdown.cancel();
    delete_queue(&queue).await;
}

/// A partition that resets nothing (the broker's node crashed): the client's connection stays
/// open and silent. The client must notice by itself and reconnect once the broker is reachable
/// again, not wait for missed heartbeats (two minutes with RabbitMQ's default of 60 s).
#[tokio::test]
async fn the_client_notices_a_silent_partition_and_reconnects_within_seconds() {
    let queue = unique_names();
    let shutdown = CancellationToken::new();
    let proxy = TcpProxy::start(broker_addr()).await.unwrap();
    let _srv = server(&amqp_url(), &queue, echo(1, 0), &shutdown);
    let client = client(&proxy.amqp_url(), &queue, &shutdown);
    ready(&client).await;
    client
        .call(&request("before"), Duration::from_secs(5))
        .await
        .unwrap();

    proxy.partition();
    // A call into the silence ends at its deadline, not later.
    let started = Instant::now();
    let err = client
        .call(&request("during"), Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(
        [ErrorCode::RpcTimeout, ErrorCode::RpcUnavailable].contains(&err.code),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(700));
    tokio::time::sleep(Duration::from_secs(1)).await;

    proxy.set_down(false);
    let back = Instant::now();
    let recovered = loop {
        if client
            .call(&request("after"), Duration::from_millis(500))
            .await
            .is_ok()
        {
            break back.elapsed();
        }
        assert!(
            back.elapsed() < Duration::from_secs(15),
            "no call succeeded within 15 s of the broker being reachable again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        recovered < Duration::from_secs(5),
        "recovered {recovered:?} after the broker was reachable again"
    );
    shutdown.cancel();
    delete_queue(&queue).await;
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let queue = unique_names();
    let server_shutdown = CancellationToken::new();
    let client_shutdown = CancellationToken::new();
    let handler = echo(1, 300);
    let (_, run) = RpcServer::start(
        RpcServerConfig {
            url: amqp_url(),
            names: queue.clone(),
            max_message_bytes: 64 * 1024,
            connection_name: "graceful".into(),
            prefetch: 8,
        },
        handler.clone(),
        server_shutdown.clone(),
    );
    let server_task = tokio::spawn(run);
    let client = client(&amqp_url(), &queue, &client_shutdown);
    ready(&client).await;
    let calls: Vec<_> = (0..5)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .call(&request(&format!("g{i}")), Duration::from_secs(5))
                    .await
            })
        })
        .collect();
    // Shut down while all five are being handled (waiting, not sleeping: under load the calls
    // can take longer than any fixed pause to arrive).
    assert!(
        eventually(10, || handler.started.load(Ordering::SeqCst) == 5).await,
        "the calls reached the server"
    );
    server_shutdown.cancel();
    for call in calls {
        assert!(
            call.await.unwrap().is_ok(),
            "in-flight request lost during shutdown"
        );
    }
    server_task.await.unwrap();
    client_shutdown.cancel();
    delete_queue(&queue).await;
}

#[tokio::test]
async fn a_client_without_auth_svc_keeps_one_steady_connection() {
    // Before auth-svc declares its queue, the consumer check's passive declare is refused
    // (404, channel closed). That must not end the client's session: the connection stays
    // up, so it is seen connected at every look, not in brief flashes between reconnects.
    let queue = unique_names();
    let shutdown = CancellationToken::new();
    let client = client(&amqp_url(), &queue, &shutdown);
    assert!(eventually(10, || client.is_connected()).await);
    let mut down = 0;
    for _ in 0..300 {
        if !client.is_connected() {
            down += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(down, 0, "the connection dropped at {down} of 300 looks");
    assert!(!client.has_consumers());
    shutdown.cancel();
}

/// Declares the RPC queue and exchange as auth-svc does (docs/rabbitmq.md), with lapin alone.
async fn declare_rpc(channel: &lapin::Channel, names: &Names) {
    use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;
    channel
        .queue_declare(
            names.rpc_queue.as_str().into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .exchange_declare(
            names.rpc_exchange.as_str().into(),
            lapin::ExchangeKind::Direct,
            durable,
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            names.rpc_queue.as_str().into(),
            names.rpc_exchange.as_str().into(),
            names.rpc_queue.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
}

/// A replica written from the protocol description with lapin alone: answers single requests
/// with one reply and `batch` requests with one `batch` reply, echoing each call's request id,
/// and counts the calls it saw in batches and alone.
async fn protocol_replica(names: &Names, batched: Arc<AtomicUsize>, alone: Arc<AtomicUsize>) {
    use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicPublishOptions};
    let conn = lapin::Connection::connect(&amqp_url(), Default::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    declare_rpc(&channel, names).await;
    let mut deliveries = channel
        .basic_consume(
            names.rpc_queue.as_str().into(),
            "protocol-replica".into(),
            BasicConsumeOptions::default(),
            Default::default(),
        )
        .await
        .unwrap();
    tokio::spawn(async move {
        let _conn = conn;
        while let Some(Ok(d)) = deliveries.next().await {
            let reply_to = d.properties.reply_to().clone().unwrap();
            let is_batch = d.properties.kind().as_ref().map(|k| k.as_str()) == Some("batch");
            let echo = |request: &serde_json::Value| json!({"result": {"request_id": request["context"]["request_id"]}});
            let (body, props) = if is_batch {
                let batch: serde_json::Value = serde_json::from_slice(&d.data).unwrap();
                let calls = batch["calls"].as_array().unwrap();
                batched.fetch_add(calls.len(), Ordering::SeqCst);
                let replies: Vec<_> = calls
                    .iter()
                    .map(|c| json!({"correlation_id": c["correlation_id"], "reply": echo(&c["request"])}))
                    .collect();
                let props = lapin::BasicProperties::default().with_type("batch".into());
                (json!({ "replies": replies }), props)
            } else {
                alone.fetch_add(1, Ordering::SeqCst);
                let request: serde_json::Value = serde_json::from_slice(&d.data).unwrap();
                let props = lapin::BasicProperties::default()
                    .with_correlation_id(d.properties.correlation_id().clone().unwrap());
                (echo(&request), props)
            };
            let body = serde_json::to_vec(&body).unwrap();
            channel
                .basic_publish(
                    "".into(),
                    reply_to,
                    BasicPublishOptions::default(),
                    &body,
                    props,
                )
                .await
                .unwrap();
            d.ack(BasicAckOptions::default()).await.unwrap();
        }
    });
}

#[tokio::test]
async fn calls_waiting_together_travel_in_one_message_and_find_their_callers() {
    for max_batch in [DEFAULT_MAX_BATCH, 1] {
        let queue = unique_names();
        let shutdown = CancellationToken::new();
        let (batched, alone) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        protocol_replica(&queue, batched.clone(), alone.clone()).await;
        let client = client_with(
            &amqp_url(),
            &queue,
            ReplyMode::Exclusive,
            max_batch,
            &shutdown,
        );
        ready(&client).await;
        let calls = (0..300).map(|i| {
            let client = client.clone();
            async move {
                client
                    .call(&request(&format!("req-{i}")), Duration::from_secs(5))
                    .await
            }
        });
        let results = futures::future::join_all(calls).await;
        for (i, r) in results.iter().enumerate() {
            let v: serde_json::Value = serde_json::from_str(r.as_ref().unwrap().get()).unwrap();
            assert_eq!(
                v["request_id"],
                format!("req-{i}"),
                "reply routed to the wrong caller"
            );
        }
        let (batched, alone) = (batched.load(Ordering::SeqCst), alone.load(Ordering::SeqCst));
        assert_eq!(batched + alone, 300);
        if max_batch == 1 {
            assert_eq!(batched, 0, "GATEWAY_RPC_MAX_BATCH=1 sends every call alone");
        } else {
            assert!(
                batched > 150,
                "300 calls made at once mostly travel in batches: {batched} batched, {alone} alone"
            );
        }
        assert_eq!(client.in_flight(), 0);
        shutdown.cancel();
        delete_queue(&queue).await;
    }
}

#[tokio::test]
async fn calls_made_while_the_window_is_full_wait_and_travel_together() {
    // Window of one message: while "first" is being answered (300 ms), ten calls made 10 ms
    // apart wait for it and then leave in one message. Without a window each leaves at once,
    // alone or nearly so.
    for max_messages_in_flight in [1, u16::MAX] {
        let queue = unique_names();
        let shutdown = CancellationToken::new();
        let replica = Recorder::new(300, 300);
        server(&amqp_url(), &queue, replica.clone(), &shutdown);
        let batching = Batching {
            max_messages_in_flight,
            max_linger: Duration::from_secs(10),
            ..Default::default()
        };
        let client = batching_client(
            &amqp_url(),
            &queue,
            ReplyMode::Exclusive,
            batching,
            &shutdown,
        );
        ready(&client).await;
        let started = Instant::now();
        let first = tokio::spawn({
            let client = client.clone();
            async move {
                client
                    .call(&request("first"), Duration::from_secs(20))
                    .await
            }
        });
        assert!(eventually(5, || replica.arrived("first").is_some()).await);
        let mut later = Vec::new();
        for i in 0..10 {
            let client = client.clone();
            later.push(tokio::spawn(async move {
                client
                    .call(&request(&format!("later-{i}")), Duration::from_secs(20))
                    .await
            }));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        first.await.unwrap().unwrap();
        let first_answered = started.elapsed();
        for call in later {
            call.await.unwrap().unwrap();
        }
        assert!(
            first_answered < Duration::from_secs(2),
            "a call on an idle client leaves at once: answered after {first_answered:?}"
        );
        let batches = replica.batches.lock().unwrap().clone();
        if max_messages_in_flight == 1 {
            assert_eq!(batches, [10], "the ten waited and travelled together");
            let first_at = replica.arrived("first").unwrap();
            let later_at = replica.arrived("later-0").unwrap();
            assert!(
                later_at - first_at >= Duration::from_millis(300),
                "the later calls left after the first was answered"
            );
        } else {
            let together = batches.iter().max().copied().unwrap_or(1);
            assert!(
                together <= 3,
                "without a window calls leave as they come: batches {batches:?}"
            );
        }
        assert_eq!(client.in_flight(), 0);
        shutdown.cancel();
        delete_queue(&queue).await;
    }
}

#[tokio::test]
async fn a_slow_call_holds_others_back_no_longer_than_the_linger() {
    let queue = unique_names();
    let shutdown = CancellationToken::new();
    let replica = Recorder::new(0, 3_000);
    server(&amqp_url(), &queue, replica.clone(), &shutdown);
    let linger = Duration::from_millis(150);
    let batching = Batching {
        max_messages_in_flight: 1,
        max_linger: linger,
        ..Default::default()
    };
    let client = batching_client(
        &amqp_url(),
        &queue,
        ReplyMode::Exclusive,
        batching,
        &shutdown,
    );
    ready(&client).await;
    let slow = tokio::spawn({
        let client = client.clone();
        async move { client.call(&request("slow"), Duration::from_secs(20)).await }
    });
    assert!(eventually(5, || replica.arrived("slow").is_some()).await);
    let started = Instant::now();
    client
        .call(&request("fast"), Duration::from_secs(20))
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(
        took >= linger && took < Duration::from_millis(1_500),
        "held back for the linger time (150 ms), not for the slow call (3 s): {took:?}"
    );
    slow.await.unwrap().unwrap();
    assert_eq!(client.in_flight(), 0);
    shutdown.cancel();
    delete_queue(&queue).await;
}

#[tokio::test]
async fn a_caller_that_stops_waiting_leaves_nothing_behind() {
    let queue = unique_names();
    let shutdown = CancellationToken::new();
    server(&amqp_url(), &queue, echo(1, 500), &shutdown);
    let client = client(&amqp_url(), &queue, &shutdown);
    ready(&client).await;
    let given_up = request("given-up");
    let call = client.call(&given_up, Duration::from_secs(5));
    let gave_up = tokio::time::timeout(Duration::from_millis(100), call).await;
    assert!(gave_up.is_err(), "the call was still waiting when dropped");
    assert_eq!(
        client.in_flight(),
        0,
        "its entry, and its message's place in the window, went with it"
    );
    shutdown.cancel();
    delete_queue(&queue).await;
}

/// A call the batch's `prepare` applied is answered even when its deadline passes while the
/// replica's permits are taken: what was applied reaches its caller. Another call of the same
/// batch, not applied, is dropped as before.
#[tokio::test]
async fn a_call_applied_in_prepare_is_answered_past_its_deadline() {
    let queue = unique_names();
    let shutdown = CancellationToken::new();
    // One permit, held 1.5 s by the slow call.
    let replica = Recorder::new(0, 1_500);
    let server = server_with(&amqp_url(), &queue, replica.clone(), 1, &shutdown);
    assert!(eventually(10, || server.is_consuming()).await);
    let mut requester = RawRequester::connect().await;
    let now = now_ms();
    let get_me = |id: &str| json!({"method": "users.get_me", "context": {"request_id": id}});
    let calls = [
        batched_call("slow", now + 10_000, get_me("slow")),
        batched_call("applied", now + 400, get_me("applied")),
        batched_call("plain", now + 400, get_me("plain")),
    ];
    requester.publish_batch(&queue, &calls, now + 10_000).await;
    let got: Vec<String> = requester
        .replies(2)
        .await
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(
        got,
        ["applied", "slow"],
        "the applied call did not wait for the permit"
    );
    assert!(
        replica.arrived("plain").is_none(),
        "the plain call expired waiting"
    );
    shutdown.cancel();
    delete_queue(&queue).await;
}

/// Publishes batch messages to the RPC exchange as a gateway would, with a reply queue of its
/// own, and reads the replies.
struct RawRequester {
    _conn: lapin::Connection,
    channel: lapin::Channel,
    reply_queue: String,
    replies: lapin::Consumer,
}

impl RawRequester {
    async fn connect() -> Self {
        use lapin::options::{BasicConsumeOptions, QueueDeclareOptions};
        use lapin::types::FieldTable;
        let conn = lapin::Connection::connect(&amqp_url(), Default::default())
            .await
            .unwrap();
        let channel = conn.create_channel().await.unwrap();
        let exclusive = QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..Default::default()
        };
        let reply_queue = channel
            .queue_declare("".into(), exclusive, FieldTable::default())
            .await
            .unwrap();
        let no_ack = BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        };
        let replies = channel
            .basic_consume(
                reply_queue.name().clone(),
                "".into(),
                no_ack,
                FieldTable::default(),
            )
            .await
            .unwrap();
        RawRequester {
            _conn: conn,
            channel,
            reply_queue: reply_queue.name().to_string(),
            replies,
        }
    }

    /// One message of type `batch` carrying `calls`, expiring at `deadline_ms`.
    async fn publish_batch(&self, names: &Names, calls: &[serde_json::Value], deadline_ms: i64) {
        use lapin::options::BasicPublishOptions;
        use lapin::types::{AMQPValue, FieldTable};
        let mut headers = FieldTable::default();
        headers.insert("x-deadline-ms".into(), AMQPValue::LongLongInt(deadline_ms));
        let props = lapin::BasicProperties::default()
            .with_type("batch".into())
            .with_reply_to(self.reply_queue.as_str().into())
            .with_headers(headers);
        self.channel
            .basic_publish(
                names.rpc_exchange.as_str().into(),
                names.rpc_queue.as_str().into(),
                BasicPublishOptions::default(),
                &serde_json::to_vec(&json!({ "calls": calls })).unwrap(),
                props,
            )
            .await
            .unwrap();
    }

    /// The next `n` replies, alone or in `batch` messages, as (correlation id, reply) in the
    /// order they came.
    async fn replies(&mut self, n: usize) -> Vec<(String, serde_json::Value)> {
        let mut got = Vec::new();
        while got.len() < n {
            let d = tokio::time::timeout(Duration::from_secs(5), self.replies.next())
                .await
                .expect("replies within 5 s")
                .unwrap()
                .unwrap();
            let body: serde_json::Value = serde_json::from_slice(&d.data).unwrap();
            if d.properties.kind().as_ref().map(|k| k.as_str()) == Some("batch") {
                for r in body["replies"].as_array().unwrap() {
                    let id = r["correlation_id"].as_str().unwrap().to_owned();
                    got.push((id, r["reply"].clone()));
                }
            } else {
                let id = d.properties.correlation_id().clone().unwrap();
                got.push((id.to_string(), body));
            }
        }
        got
    }

    /// Whether no reply comes within `wait`.
    async fn silent_for(&mut self, wait: Duration) -> bool {
        tokio::time::timeout(wait, self.replies.next())
            .await
            .is_err()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// One call of a batch message.
fn batched_call(id: &str, deadline_ms: i64, request: serde_json::Value) -> serde_json::Value {
    json!({"correlation_id": id, "message_id": format!("m-{id}"), "deadline_ms": deadline_ms, "request": request})
}

#[tokio::test]
async fn a_batch_is_answered_call_by_call_skipping_expired_ones() {
    let queue = unique_names();
    let shutdown = CancellationToken::new();
    let handler = echo(1, 0);
    let replica = server(&amqp_url(), &queue, handler.clone(), &shutdown);
    assert!(eventually(10, || replica.is_consuming()).await);
    let mut requester = RawRequester::connect().await;
    let now = now_ms();
    let later = now + 10_000;
    let get_me = |id: &str| json!({"method": "users.get_me", "context": {"request_id": id}});
    let calls = [
        batched_call("live", later, get_me("r-live")),
        batched_call("expired", now - 1000, get_me("r-expired")),
        batched_call("malformed", later, json!({"method": 5})),
        batched_call("second", later, get_me("r-second")),
    ];
    requester.publish_batch(&queue, &calls, later).await;
    // Replies come alone or in `batch` messages; collect them by correlation id.
    let got: std::collections::HashMap<String, serde_json::Value> =
        requester.replies(3).await.into_iter().collect();
    assert_eq!(got["live"]["result"]["request_id"], "r-live");
    assert_eq!(got["live"]["result"]["message_id"], "m-live");
    assert_eq!(got["second"]["result"]["request_id"], "r-second");
    assert_eq!(got["malformed"]["error"]["code"], "validation.failed");
    // The expired call is neither processed nor answered.
    assert!(
        requester.silent_for(Duration::from_millis(500)).await,
        "no reply to the expired call"
    );
    assert!(!got.contains_key("expired"));
    assert_eq!(handler.started.load(Ordering::SeqCst), 2);
    shutdown.cancel();
    delete_queue(&queue).await;
}
