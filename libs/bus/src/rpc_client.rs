//! The RPC client used by the gateway.
//!
//! Requests are published to the request exchange (routed to the durable RPC queue; the
//! gateway's broker user may not write to the default exchange) with `reply_to` = an exclusive,
//! server-named queue of
//! this process (RabbitMQ's advice for long-lived, high-rate requesters), a `correlation_id`,
//! a `message_id` unique to the call (auth-svc uses it to apply a redelivered request only
//! once) and a
//! per-message `expiration` equal to the caller's deadline, so a request nobody picked up in
//! time is dropped by the broker instead of being processed late.
//!
//! Calls are handed to the session's publisher, which sends every call waiting at that moment
//! (up to [`Batching::max_calls`]) as one message of type `batch`, and under load holds the next
//! call back briefly so that more join it ([`Batching`]): the broker, the AMQP clients and
//! auth-svc then handle one message for many calls. A lone call goes out as a message of its
//! own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use authstack_protocol::broker::Names;
use authstack_protocol::rpc::{
    BATCH_MESSAGE_TYPE, BatchedCall, CallBatch, ReplyBatch, RpcReply, RpcRequest,
};
use authstack_protocol::{ErrorBody, ErrorCode};
use futures::StreamExt;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection};
use serde_json::value::RawValue;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::BusError;
use crate::supervise::{connection_failed, supervise};
use crate::topology;

/// Header carrying the caller's deadline (milliseconds since the Unix epoch).
pub const DEADLINE_HEADER: &str = "x-deadline-ms";

/// Where replies come back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ReplyMode {
    /// An exclusive, server-named queue per process (RabbitMQ's advice for long-lived,
    /// high-rate requesters).
    #[default]
    Exclusive,
    /// RabbitMQ's direct reply-to pseudo-queue (`amq.rabbitmq.reply-to`): no queue at all.
    Direct,
}

/// Most calls in one message unless configured otherwise (`GATEWAY_RPC_MAX_BATCH`).
pub const DEFAULT_MAX_BATCH: u16 = 32;

/// Request messages in flight before calls wait to be batched, unless configured otherwise
/// (`GATEWAY_RPC_MAX_MESSAGES_IN_FLIGHT`): 0, as many as auth-svc replicas consume the queue.
pub const DEFAULT_MAX_MESSAGES_IN_FLIGHT: u16 = 0;

/// Longest a call is held back for batching, unless configured otherwise
/// (`GATEWAY_RPC_BATCH_LINGER_MS`).
pub const DEFAULT_MAX_LINGER: Duration = Duration::from_millis(1);

/// How an [`RpcClient`] gathers calls into messages.
///
/// Every call waiting when the publisher runs goes out in one message, up to `max_calls`.
/// While `max_messages_in_flight` messages are unanswered, the publisher holds the next call
/// back until one of them is answered or `max_linger` passed (up to `max_calls` then leave):
/// under load calls then travel in fewer, fuller messages (the broker's, the AMQP clients' and
/// auth-svc's costs are per message), while a call on an idle client leaves at once.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    /// Most calls in one message (1: every call in a message of its own).
    pub max_calls: u16,
    /// Messages in flight from which calls wait to be batched; 0: one per auth-svc replica
    /// consuming the queue (as counted by the periodic consumer check).
    pub max_messages_in_flight: u16,
    /// Longest a call is held back.
    pub max_linger: Duration,
}

impl Default for Batching {
    fn default() -> Self {
        Batching {
            max_calls: DEFAULT_MAX_BATCH,
            max_messages_in_flight: DEFAULT_MAX_MESSAGES_IN_FLIGHT,
            max_linger: DEFAULT_MAX_LINGER,
        }
    }
}

/// The pseudo-queue of direct reply-to.
const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// How long the broker may take to answer the periodic consumer check. A connection that stays
/// silent longer is dead (a partition without a reset: the broker's node crashed) and is
/// replaced, instead of waiting for missed heartbeats (2 × 60 s with RabbitMQ's default).
const CONSUMER_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Settings of an [`RpcClient`].
#[derive(Debug, Clone)]
pub struct RpcClientConfig {
    /// AMQP URL, e.g. `amqp://guest:guest@127.0.0.1:5672/%2f`.
    pub url: String,
    /// The RPC queue (checked for consumers) and the request exchange (published to).
    pub names: Names,
    /// Largest request sent and reply accepted, in bytes.
    pub max_message_bytes: usize,
    /// Connection name shown in the broker's management UI.
    pub connection_name: String,
    /// How often to check that at least one auth-svc replica consumes the queue.
    pub consumer_check_interval: Duration,
    /// Where replies come back.
    pub reply_mode: ReplyMode,
    /// How calls are gathered into messages.
    pub batching: Batching,
}

/// A call waiting for the session's publisher.
struct Outgoing {
    id: u64,
    request: Box<RawValue>,
    deadline_ms: i64,
    timeout: Duration,
}

/// A call waiting for its reply.
struct Waiting {
    reply: oneshot::Sender<Vec<u8>>,
    /// The message that carried the call, once published (see [`InFlight`]).
    message: Option<Arc<InFlight>>,
}

/// Counts the request messages in flight and wakes the publisher when one is answered.
#[derive(Default)]
struct Window {
    messages: AtomicUsize,
    freed: Notify,
}

/// One request message in flight, until the first reply to one of its calls arrives (auth-svc
/// answers a message's calls together, a slow one alone later) or, failing that, until the
/// last of its calls' [`Waiting`] entries is gone (timed out, or lost with the connection).
struct InFlight {
    window: Arc<Window>,
    answered: AtomicBool,
}

impl InFlight {
    fn new(window: &Arc<Window>) -> Arc<Self> {
        window.messages.fetch_add(1, Ordering::Relaxed);
        Arc::new(InFlight {
            window: window.clone(),
            answered: AtomicBool::new(false),
        })
    }

    /// Frees the message's place in the window (once).
    fn answer(&self) {
        if !self.answered.swap(true, Ordering::AcqRel) {
            self.window.messages.fetch_sub(1, Ordering::Relaxed);
            self.window.freed.notify_one();
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.answer();
    }
}

struct Live {
    outbox: mpsc::UnboundedSender<Outgoing>,
}

struct Inner {
    config: RpcClientConfig,
    live: RwLock<Option<Live>>,
    pending: Mutex<HashMap<u64, Waiting>>,
    /// Request messages published and not yet answered.
    window: Arc<Window>,
    next_id: AtomicU64,
    /// Random per-process prefix of message ids, so ids are unique across gateways.
    id_prefix: String,
    /// auth-svc replicas consuming the RPC queue at the last check.
    consumers: AtomicU32,
    shutdown: CancellationToken,
}

/// A cheaply clonable RPC client; reconnects by itself.
#[derive(Clone)]
pub struct RpcClient {
    inner: Arc<Inner>,
}

fn unavailable(message: &str) -> ErrorBody {
    ErrorBody::new(ErrorCode::RpcUnavailable, message)
}

impl RpcClient {
    /// Starts the client's connection supervisor. Calls fail with `rpc.unavailable` until the
    /// first connection is up.
    pub fn start(config: RpcClientConfig, shutdown: CancellationToken) -> Self {
        let inner = Arc::new(Inner {
            config,
            live: RwLock::new(None),
            pending: Mutex::new(HashMap::new()),
            window: Arc::new(Window::default()),
            next_id: AtomicU64::new(1),
            id_prefix: uuid::Uuid::new_v4().simple().to_string(),
            consumers: AtomicU32::new(0),
            shutdown,
        });
        let client = RpcClient { inner };
        let supervisor = client.clone();
        tokio::spawn(async move {
            let inner = supervisor.inner.clone();
            supervise(
                inner.config.url.clone(),
                inner.config.connection_name.clone(),
                inner.shutdown.clone(),
                |conn| supervisor.clone().session(conn),
            )
            .await;
        });
        client
    }

    /// Whether the broker connection is up.
    pub fn is_connected(&self) -> bool {
        self.inner.live.read().map(|l| l.is_some()).unwrap_or(false)
    }

    /// Whether at least one consumer (auth-svc replica) was seen on the request queue.
    pub fn has_consumers(&self) -> bool {
        self.consumers() > 0
    }

    /// The request queue's consumer count as the broker reported it at the last check (every
    /// `consumer_check_interval`); 0 while disconnected or before the queue exists. Each auth-svc
    /// replica holds one consumer.
    pub fn consumers(&self) -> u32 {
        self.inner.consumers.load(Ordering::Relaxed)
    }

    /// Number of calls waiting for a reply.
    pub fn in_flight(&self) -> usize {
        self.inner.pending.lock().map(|p| p.len()).unwrap_or(0)
    }

    async fn session(self, conn: Arc<Connection>) -> Result<(), BusError> {
        let inner = &self.inner;
        let channel = conn.create_channel().await?;
        let (reply_queue, mut replies) = match inner.config.reply_mode {
            ReplyMode::Exclusive => topology::private_queue(&channel).await?,
            // Direct reply-to: consume the pseudo-queue (no ack) on the channel that publishes.
            ReplyMode::Direct => (
                DIRECT_REPLY_TO.into(),
                topology::consume_without_ack(&channel, DIRECT_REPLY_TO.into()).await?,
            ),
        };
        let (outbox, mut calls) = mpsc::unbounded_channel();
        if let Ok(mut live) = inner.live.write() {
            *live = Some(Live { outbox });
        }
        let result = tokio::select! {
            _ = inner.shutdown.cancelled() => Ok(()),
            e = connection_failed(&conn) => Err(e),
            e = self.check_consumers(&conn) => Err(e),
            e = self.publish_calls(&channel, &reply_queue, &mut calls) => Err(e),
            e = async {
                while let Some(delivery) = replies.next().await {
                    match delivery {
                        Ok(d) => self.route_reply(&d.properties, d.data),
                        Err(e) => return BusError::Amqp(e),
                    }
                }
                BusError::Lost("reply consumer cancelled".into())
            } => Err(e),
        };
        if let Ok(mut live) = inner.live.write() {
            *live = None;
        }
        // Every waiting call learns at once that its reply can no longer arrive.
        if let Ok(mut pending) = inner.pending.lock() {
            pending.clear();
        }
        inner.consumers.store(0, Ordering::Relaxed);
        result
    }

    /// Watches the consumer count of the RPC queue. A passive declare of a queue that does not
    /// exist yet (auth-svc never started) closes its channel: that means "no consumer", and a
    /// fresh channel tries again. A broker that answers neither within
    /// [`CONSUMER_CHECK_TIMEOUT`] ends the session, so the silent connection is replaced.
    async fn check_consumers(&self, conn: &Connection) -> BusError {
        let silent = || BusError::Timeout("the broker did not answer the consumer check");
        let queue = &self.inner.config.names.rpc_queue;
        let mut channel: Option<Channel> = None;
        loop {
            let ch = match channel.take() {
                Some(c) => c,
                None => match tokio::time::timeout(CONSUMER_CHECK_TIMEOUT, conn.create_channel())
                    .await
                {
                    Ok(Ok(c)) => c,
                    Ok(Err(e)) => return BusError::Amqp(e),
                    Err(_) => return silent(),
                },
            };
            let check = tokio::time::timeout(
                CONSUMER_CHECK_TIMEOUT,
                topology::inspect_rpc_queue(&ch, queue),
            );
            let Ok(checked) = check.await else {
                return silent();
            };
            let consumers = match checked {
                Ok(q) => {
                    channel = Some(ch);
                    q.consumer_count()
                }
                Err(e) => {
                    tracing::debug!(error = %e, "RPC queue not declared yet");
                    0
                }
            };
            let was = self.inner.consumers.swap(consumers, Ordering::Relaxed);
            if (was > 0) != (consumers > 0) {
                tracing::info!(consumers, "auth-svc availability changed");
            }
            tokio::time::sleep(self.inner.config.consumer_check_interval).await;
        }
    }

    /// Publishes the calls handed over by [`RpcClient::call`]: every call waiting when the
    /// publisher runs goes out in one message, up to `max_calls` calls and the message size
    /// limit. Returns when the channel can no longer publish.
    async fn publish_calls(
        &self,
        channel: &Channel,
        reply_queue: &ShortString,
        calls: &mut mpsc::UnboundedReceiver<Outgoing>,
    ) -> BusError {
        let config = &self.inner.config;
        let mut carried: Option<Outgoing> = None;
        loop {
            let first = match carried.take() {
                Some(c) => c,
                None => match calls.recv().await {
                    Some(c) => c,
                    None => return BusError::Lost("the call queue closed".into()),
                },
            };
            self.await_window(calls).await;
            let mut bytes = first.request.get().len();
            let mut batch = vec![first];
            while batch.len() < usize::from(config.batching.max_calls) {
                let Ok(next) = calls.try_recv() else { break };
                // Room for the call and its envelope (ids, deadline, field names).
                bytes += next.request.get().len() + 160;
                if bytes > config.max_message_bytes {
                    carried = Some(next);
                    break;
                }
                batch.push(next);
            }
            metrics::histogram!("authstack_rpc_client_batch_calls").record(batch.len() as f64);
            self.mark_in_flight(&batch);
            if let Err(e) = self.publish(channel, reply_queue, &batch) {
                for call in &batch {
                    self.forget(call.id);
                }
                if !channel.status().connected() {
                    return e;
                }
            }
        }
    }

    /// Under load, holds a call back while the window of messages in flight is full: calls
    /// arriving meanwhile join its message. Waits until a message is answered or the linger
    /// time passed, whichever comes first; a batch found full when the publisher wakes leaves
    /// then.
    async fn await_window(&self, calls: &mut mpsc::UnboundedReceiver<Outgoing>) {
        let config = &self.inner.config;
        let window = &self.inner.window;
        let limit = match config.batching.max_messages_in_flight {
            0 => self.inner.consumers.load(Ordering::Relaxed).max(1) as usize,
            n => usize::from(n),
        };
        let full = || window.messages.load(Ordering::Relaxed) >= limit;
        if !full() {
            return;
        }
        let linger = tokio::time::sleep(config.batching.max_linger);
        tokio::pin!(linger);
        while full() && calls.len() + 1 < usize::from(config.batching.max_calls) {
            tokio::select! {
                _ = window.freed.notified() => {}
                _ = &mut linger => return,
            }
        }
    }

    /// Counts the batch as one message in flight (see [`InFlight`]).
    fn mark_in_flight(&self, batch: &[Outgoing]) {
        let message = InFlight::new(&self.inner.window);
        if let Ok(mut pending) = self.inner.pending.lock() {
            for call in batch {
                if let Some(waiting) = pending.get_mut(&call.id) {
                    waiting.message = Some(message.clone());
                }
            }
        }
    }

    /// Publishes one call as its own message, or several as one message of type `batch`.
    fn publish(
        &self,
        channel: &Channel,
        reply_queue: &ShortString,
        batch: &[Outgoing],
    ) -> Result<(), BusError> {
        let inner = &self.inner;
        let message_id = |id: u64| format!("{}-{id}", inner.id_prefix);
        // The broker keeps the message while any of its calls may still be waited for.
        let (Some(deadline_ms), Some(timeout)) = (
            batch.iter().map(|c| c.deadline_ms).max(),
            batch.iter().map(|c| c.timeout).max(),
        ) else {
            return Ok(());
        };
        let mut headers = FieldTable::default();
        headers.insert(DEADLINE_HEADER.into(), AMQPValue::LongLongInt(deadline_ms));
        let props = BasicProperties::default()
            .with_reply_to(reply_queue.clone())
            .with_expiration(timeout.as_millis().max(1).to_string().into())
            .with_content_type("application/json".into())
            .with_delivery_mode(1)
            .with_headers(headers);
        let (props, body) = match batch {
            // The idempotency key of a call: unique per call and never client-controlled (the
            // client's X-Request-Id travels in the context, for tracing only).
            [call] => (
                props
                    .with_correlation_id(call.id.to_string().into())
                    .with_message_id(message_id(call.id).into()),
                call.request.get().as_bytes().to_vec(),
            ),
            calls => {
                let batch = CallBatch {
                    calls: calls
                        .iter()
                        .map(|c| BatchedCall {
                            correlation_id: c.id.to_string(),
                            message_id: message_id(c.id),
                            deadline_ms: c.deadline_ms,
                            request: c.request.clone(),
                        })
                        .collect(),
                };
                let body = serde_json::to_vec(&batch)
                    .map_err(|e| BusError::Lost(format!("encoding a batch: {e}")))?;
                (props.with_type(BATCH_MESSAGE_TYPE.into()), body)
            }
        };
        crate::enqueue_publish(
            channel,
            &inner.config.names.rpc_exchange,
            inner.config.names.rpc_queue.as_str().into(),
            &body,
            props,
        )
    }

    fn route_reply(&self, props: &BasicProperties, data: Vec<u8>) {
        if data.len() > self.inner.config.max_message_bytes {
            metrics::counter!("authstack_rpc_client_oversized_replies_total").increment(1);
            tracing::warn!(bytes = data.len(), "oversized reply dropped");
            return;
        }
        if props
            .kind()
            .as_ref()
            .is_some_and(|k| k.as_str() == BATCH_MESSAGE_TYPE)
        {
            match serde_json::from_slice::<ReplyBatch>(&data) {
                Ok(batch) => {
                    for r in batch.replies {
                        self.deliver(Some(r.correlation_id.as_str()), r.reply.get().into());
                    }
                }
                Err(e) => tracing::warn!(error = %e, "unreadable reply batch dropped"),
            }
            return;
        }
        let correlation_id = props.correlation_id().as_ref().map(|c| c.as_str());
        self.deliver(correlation_id, data);
    }

    /// Hands a reply to the call waiting for it.
    fn deliver(&self, correlation_id: Option<&str>, data: Vec<u8>) {
        let id = correlation_id.and_then(|c| c.parse::<u64>().ok());
        let Some(id) = id else {
            tracing::warn!("reply without a usable correlation id dropped");
            return;
        };
        let sender = self
            .inner
            .pending
            .lock()
            .ok()
            .and_then(|mut p| p.remove(&id));
        match sender {
            Some(waiting) => {
                if let Some(message) = &waiting.message {
                    message.answer();
                }
                let _ = waiting.reply.send(data);
            }
            // The caller gave up (deadline) or this is a duplicate reply.
            None => metrics::counter!("authstack_rpc_client_late_replies_total").increment(1),
        }
    }

    /// Calls a method and waits at most `timeout` for the reply.
    ///
    /// Errors: `rpc.unavailable` when the broker or every auth-svc replica is down (at once,
    /// no waiting), `rpc.timeout` after the deadline, `rpc.bad_response` for an unreadable
    /// reply, or the method's own error.
    pub async fn call(
        &self,
        request: &RpcRequest,
        timeout: Duration,
    ) -> Result<Box<RawValue>, ErrorBody> {
        let started = Instant::now();
        let result = self.call_inner(request, timeout).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.code.as_str(),
        };
        metrics::histogram!("authstack_rpc_client_duration_seconds", "method" => request.method.clone())
            .record(started.elapsed().as_secs_f64());
        metrics::counter!("authstack_rpc_client_calls_total", "method" => request.method.clone(), "outcome" => outcome)
            .increment(1);
        result
    }

    async fn call_inner(
        &self,
        request: &RpcRequest,
        timeout: Duration,
    ) -> Result<Box<RawValue>, ErrorBody> {
        let start = Instant::now();
        let inner = &self.inner;
        let outbox = {
            let live = inner
                .live
                .read()
                .map_err(|_| unavailable("RPC client state poisoned"))?;
            match live.as_ref() {
                Some(l) => l.outbox.clone(),
                None => return Err(unavailable("the message broker is unreachable")),
            }
        };
        if inner.consumers.load(Ordering::Relaxed) == 0 {
            return Err(unavailable("no auth-svc replica is available"));
        }
        let request = serde_json::value::to_raw_value(request)
            .map_err(|e| ErrorBody::new(ErrorCode::Internal, format!("encoding request: {e}")))?;
        if request.get().len() > inner.config.max_message_bytes {
            return Err(ErrorBody::new(
                ErrorCode::PayloadTooLarge,
                "the request exceeds the RPC message size limit",
            ));
        }
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if let Ok(mut pending) = inner.pending.lock() {
            pending.insert(
                id,
                Waiting {
                    reply: tx,
                    message: None,
                },
            );
        }
        let deadline_ms = SystemTime::now()
            .checked_add(timeout)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as i64)
            .unwrap_or(i64::MAX);
        let call = Outgoing {
            id,
            request,
            deadline_ms,
            timeout,
        };
        // A caller that stops waiting (its client went away) takes its entry with it, and with
        // it its message's place in the window.
        let mut waiting = ForgetOnDrop {
            client: self,
            id: Some(id),
        };
        if outbox.send(call).is_err() {
            return Err(unavailable("could not publish the request to the broker"));
        }
        let remaining = timeout.saturating_sub(start.elapsed());
        let outcome = tokio::time::timeout(remaining, rx).await;
        if outcome.is_ok() {
            // Answered, or every entry dropped with the connection: the entry is gone already.
            waiting.id = None;
        }
        match outcome {
            Ok(Ok(data)) => match serde_json::from_slice::<RpcReply>(&data) {
                Ok(reply) => reply.into_result(),
                Err(e) => Err(ErrorBody::new(
                    ErrorCode::RpcBadResponse,
                    format!("auth-svc sent an unreadable reply: {e}"),
                )),
            },
            Ok(Err(_)) => Err(unavailable("the connection to the broker was lost")),
            Err(_) => Err(ErrorBody::new(
                ErrorCode::RpcTimeout,
                format!("auth-svc did not answer within {} ms", timeout.as_millis()),
            )),
        }
    }

    /// Drops the entry of a call nobody waits for any more.
    fn forget(&self, id: u64) {
        if let Ok(mut pending) = self.inner.pending.lock() {
            pending.remove(&id);
        }
    }
}

/// Forgets a call when its caller stops waiting before its entry was taken (timed out, or its
/// future dropped); `None` once the entry is known to be gone.
struct ForgetOnDrop<'a> {
    client: &'a RpcClient,
    id: Option<u64>,
}

impl Drop for ForgetOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.client.forget(id);
        }
    }
}
