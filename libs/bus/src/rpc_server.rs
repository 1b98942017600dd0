//! The RPC server run by every auth-svc replica.
//!
//! Replicas share the durable request queue. Each consumes with a bounded prefetch and manual
//! acks: a request is acknowledged only after its reply was queued on the connection (the
//! writer sends frames in order, so the ack never leaves before the reply), so a replica that
//! dies mid-request leaves it to another replica (which recognises the request id and does not apply
//! it twice — that part is the handler's job). Requests past their deadline are dropped
//! unprocessed: nobody waits for the answer any more.
//!
//! Acks are batched: the completed prefix of delivery tags is acknowledged with
//! `multiple = true` once 16 requests completed, 2 ms passed, or nothing else is in flight.
//! Under load that saves a frame and a broker operation per request; a crash before the flush
//! only causes redeliveries, which the request ids make harmless.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use authstack_protocol::broker::Names;
use authstack_protocol::rpc::{
    BATCH_MESSAGE_TYPE, BatchedReply, CallBatch, ReplyBatch, RpcReply, RpcRequest,
};
use authstack_protocol::{ErrorBody, ErrorCode};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection};
use serde_json::value::RawValue;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::BusError;
use crate::rpc_client::DEADLINE_HEADER;
use crate::supervise::{connection_failed, supervise};
use crate::topology;

/// How long a shutting-down server waits for in-flight requests before leaving them to
/// redelivery (below the 30 s default termination grace period of a pod).
const SHUTDOWN_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// One request as the handler sees it.
#[derive(Debug)]
pub struct IncomingCall {
    /// The decoded envelope.
    pub request: RpcRequest,
    /// The idempotency key of the call (AMQP `message_id`; empty if the sender set none).
    pub request_id: String,
    /// Whether the broker delivered this message before (a replica died or disconnected).
    pub redelivered: bool,
}

/// Answers RPC calls.
pub trait RpcHandler: Send + Sync + 'static {
    /// What [`RpcHandler::prepare`] loads once for all the calls of a batch (`()` if nothing).
    type Batch: Send + Sync + 'static;

    /// Runs once for the decodable calls of a batch message before any of them is handled, e.g.
    /// one query for what they all need instead of one per call. `None`: nothing shared.
    fn prepare(
        &self,
        _calls: &[&IncomingCall],
    ) -> impl Future<Output = Option<Self::Batch>> + Send {
        async { None }
    }

    /// Whether [`RpcHandler::prepare`] already applied `call` (its reply is ready in `batch`).
    /// Such a call is answered at once, without waiting for a permit and even past its
    /// deadline: what was applied must reach the caller if it still waits.
    fn applied_in_prepare(&self, _batch: &Self::Batch, _call: &IncomingCall) -> bool {
        false
    }

    /// Handles one call and returns its reply; `batch` is what [`RpcHandler::prepare`] loaded for
    /// the call's batch (`None` for a call that came alone).
    fn handle(
        &self,
        call: IncomingCall,
        batch: Option<&Self::Batch>,
    ) -> impl Future<Output = RpcReply> + Send;
}

/// Settings of an [`RpcServer`].
#[derive(Debug, Clone)]
pub struct RpcServerConfig {
    /// AMQP URL.
    pub url: String,
    /// The RPC queue, the request exchange bound to it (declared by the server).
    pub names: Names,
    /// Largest request processed, in bytes; larger ones are answered `common.payload_too_large`
    /// without being parsed.
    pub max_message_bytes: usize,
    /// Connection name shown in the broker's management UI.
    pub connection_name: String,
    /// Unacknowledged deliveries per replica (bounds concurrent work).
    pub prefetch: u16,
}

/// A running RPC server; reconnects by itself until shut down.
#[derive(Clone)]
pub struct RpcServer {
    connected: Arc<AtomicBool>,
}

impl RpcServer {
    /// Starts consuming; the returned future completes after `shutdown` is cancelled and every
    /// in-flight request has been answered.
    pub fn start<H: RpcHandler>(
        config: RpcServerConfig,
        handler: Arc<H>,
        shutdown: CancellationToken,
    ) -> (Self, impl Future<Output = ()> + Send) {
        let connected = Arc::new(AtomicBool::new(false));
        let server = RpcServer {
            connected: connected.clone(),
        };
        let run = async move {
            let url = config.url.clone();
            let name = config.connection_name.clone();
            let config = Arc::new(config);
            supervise(url, name, shutdown.clone(), |conn| {
                session(
                    conn,
                    config.clone(),
                    handler.clone(),
                    shutdown.clone(),
                    connected.clone(),
                )
            })
            .await;
        };
        (server, run)
    }

    /// Whether the server is connected and consuming.
    pub fn is_consuming(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
}

async fn session<H: RpcHandler>(
    conn: Arc<Connection>,
    config: Arc<RpcServerConfig>,
    handler: Arc<H>,
    shutdown: CancellationToken,
    connected: Arc<AtomicBool>,
) -> Result<(), BusError> {
    let channel = conn.create_channel().await?;
    channel
        .basic_qos(config.prefetch, BasicQosOptions::default())
        .await?;
    topology::declare_rpc(&channel, &config.names).await?;
    let tag = format!("{}-{}", config.connection_name, std::process::id());
    let mut consumer = channel
        .basic_consume(
            config.names.rpc_queue.as_str().into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    connected.store(true, Ordering::Relaxed);
    let mut in_flight: JoinSet<(u64, bool)> = JoinSet::new();
    // Bounds the calls handled at once, whether they came alone or in batches.
    let permits = Arc::new(Semaphore::new(usize::from(config.prefetch)));
    let mut acks = AckTracker::default();
    let failure = connection_failed(&conn);
    tokio::pin!(failure);
    let result = loop {
        let flush_at = acks.flush_deadline();
        tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            e = &mut failure => break Err(e),
            Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                if let Ok((tag, published)) = done
                    && let Err(e) = settle(&channel, &mut acks, tag, published).await
                {
                    break Err(e);
                }
                if (acks.batch_full() || in_flight.is_empty())
                    && let Err(e) = acks.flush(&channel).await
                {
                    break Err(e);
                }
            }
            _ = sleep_until_opt(flush_at) => {
                if let Err(e) = acks.flush(&channel).await {
                    break Err(e);
                }
            }
            delivery = consumer.next() => match delivery {
                Some(Ok(d)) => {
                    let channel = channel.clone();
                    let handler = handler.clone();
                    let max = config.max_message_bytes;
                    let permits = permits.clone();
                    in_flight.spawn(async move { process(channel, handler, permits, d, max).await });
                }
                Some(Err(e)) => break Err(BusError::Amqp(e)),
                None => break Err(BusError::Lost("consumer cancelled by the broker".into())),
            },
        }
    };
    connected.store(false, Ordering::Relaxed);
    if result.is_ok() {
        // Graceful shutdown: stop taking work, finish what we have, acknowledge, then close.
        let _ = channel
            .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
            .await;
        let drain = async {
            while let Some(done) = in_flight.join_next().await {
                if let Ok((tag, published)) = done {
                    // The channel is closing anyway: what cannot be settled is redelivered.
                    let _ = settle(&channel, &mut acks, tag, published).await;
                }
            }
        };
        if tokio::time::timeout(SHUTDOWN_DRAIN_TIMEOUT, drain)
            .await
            .is_err()
        {
            tracing::warn!(
                timeout = ?SHUTDOWN_DRAIN_TIMEOUT,
                "in-flight requests still running at shutdown; abandoning them to redelivery"
            );
        }
        let _ = acks.flush(&channel).await;
    }
    result
}

/// Settles a finished request as far as the ack prefix is concerned: a request whose reply
/// could not be published goes back to the queue (nack with requeue) for another attempt, by
/// another replica or after reconnecting.
async fn settle(
    channel: &Channel,
    acks: &mut AckTracker,
    tag: u64,
    published: bool,
) -> Result<(), BusError> {
    if !published {
        let requeue = BasicNackOptions {
            multiple: false,
            requeue: true,
        };
        channel.basic_nack(tag, requeue).await?;
    }
    acks.complete(tag);
    Ok(())
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Tracks which deliveries are settled so the contiguous prefix can be acked at once.
#[derive(Default)]
struct AckTracker {
    /// Every tag up to this one is settled.
    settled_upto: u64,
    /// Settled tags above `settled_upto` (completed out of order).
    settled_above: BTreeSet<u64>,
    /// Highest tag acknowledged to the broker.
    acked_upto: u64,
    /// When the oldest settled-but-unacked completion happened.
    pending_since: Option<tokio::time::Instant>,
}

impl AckTracker {
    const BATCH: u64 = 16;
    const MAX_DELAY: Duration = Duration::from_millis(2);

    fn complete(&mut self, tag: u64) {
        self.settled_above.insert(tag);
        while self.settled_above.remove(&(self.settled_upto + 1)) {
            self.settled_upto += 1;
        }
        if self.settled_upto > self.acked_upto && self.pending_since.is_none() {
            self.pending_since = Some(tokio::time::Instant::now());
        }
    }

    fn batch_full(&self) -> bool {
        self.settled_upto >= self.acked_upto + Self::BATCH
    }

    fn flush_deadline(&self) -> Option<tokio::time::Instant> {
        self.pending_since.map(|t| t + Self::MAX_DELAY)
    }

    async fn flush(&mut self, channel: &Channel) -> Result<(), BusError> {
        self.pending_since = None;
        if self.settled_upto > self.acked_upto {
            channel
                .basic_ack(self.settled_upto, BasicAckOptions { multiple: true })
                .await?;
            metrics::counter!("authstack_rpc_server_ack_frames_total").increment(1);
            self.acked_upto = self.settled_upto;
        }
        Ok(())
    }
}

/// The caller's deadline in a message's `x-deadline-ms` header.
fn message_deadline(props: &BasicProperties) -> Option<i64> {
    props.headers().as_ref().and_then(|h| {
        h.inner().get(DEADLINE_HEADER).and_then(|v| match v {
            AMQPValue::LongLongInt(ms) => Some(*ms),
            AMQPValue::LongInt(ms) => Some(i64::from(*ms)),
            _ => None,
        })
    })
}

fn deadline_passed(props: &BasicProperties) -> bool {
    message_deadline(props).is_some_and(|d| now_ms() > d)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Handles one delivery (a call, or a batch of calls) and publishes its replies; returns its tag
/// and whether it may be acked (false: a reply could not be published, so the request must go
/// back to the queue).
async fn process<H: RpcHandler>(
    channel: Channel,
    handler: Arc<H>,
    permits: Arc<Semaphore>,
    delivery: Delivery,
    max_message_bytes: usize,
) -> (u64, bool) {
    let tag = delivery.delivery_tag;
    let props = &delivery.properties;
    let Some(reply_to) = props
        .reply_to()
        .as_ref()
        .filter(|r| topology::is_reply_address(r.as_str()))
    else {
        // Not from a gateway's private reply queue: nobody legitimate waits for it.
        metrics::counter!("authstack_rpc_server_unanswerable_requests_total").increment(1);
        tracing::warn!("request without a private reply address dropped unprocessed");
        return (tag, true);
    };
    if deadline_passed(props) {
        metrics::counter!("authstack_rpc_server_expired_total").increment(1);
        return (tag, true);
    }
    let batch = props
        .kind()
        .as_ref()
        .is_some_and(|k| k.as_str() == BATCH_MESSAGE_TYPE);
    if delivery.data.len() > max_message_bytes {
        metrics::counter!("authstack_rpc_server_oversized_requests_total").increment(1);
        tracing::warn!(
            bytes = delivery.data.len(),
            batch,
            "oversized RPC request refused"
        );
        if batch {
            // Its calls cannot be told apart without parsing it; they time out.
            return (tag, true);
        }
        let reply = RpcReply::Error(ErrorBody::new(
            ErrorCode::PayloadTooLarge,
            "the request exceeds the RPC message size limit",
        ));
        let correlation_id = props.correlation_id().as_ref().map(|c| c.as_str());
        let replies = vec![(correlation_id.map(str::to_owned), reply)];
        return (
            tag,
            publish_replies(&channel, reply_to, replies, max_message_bytes),
        );
    }
    let worker = Worker {
        handler: &*handler,
        permits: &permits,
        redelivered: delivery.redelivered,
    };
    let published = if batch {
        answer_batch(
            &channel,
            worker,
            &delivery.data,
            reply_to,
            max_message_bytes,
        )
        .await
    } else {
        let request_id = props
            .message_id()
            .as_ref()
            .map(|m| m.as_str().to_owned())
            .unwrap_or_default();
        let call = worker.incoming(serde_json::from_slice(&delivery.data), request_id);
        match worker.answer(call, message_deadline(props), None).await {
            Some(reply) => {
                let correlation_id = props
                    .correlation_id()
                    .as_ref()
                    .map(|c| c.as_str().to_owned());
                publish_replies(
                    &channel,
                    reply_to,
                    vec![(correlation_id, reply)],
                    max_message_bytes,
                )
            }
            None => true,
        }
    };
    (tag, published)
}

/// What handling a call needs, shared by the calls of one delivery.
struct Worker<'a, H> {
    handler: &'a H,
    /// One per call being handled (the replica's prefetch).
    permits: &'a Semaphore,
    redelivered: bool,
}

impl<H> Clone for Worker<'_, H> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<H> Copy for Worker<'_, H> {}

impl<H: RpcHandler> Worker<'_, H> {
    /// A decoded request as the handler sees it.
    fn incoming(
        self,
        request: serde_json::Result<RpcRequest>,
        request_id: String,
    ) -> serde_json::Result<IncomingCall> {
        request.map(|request| IncomingCall {
            request,
            request_id,
            redelivered: self.redelivered,
        })
    }

    /// Waits for a permit, then lets the handler answer the call (or refuses its undecodable
    /// request). A call whose deadline passed meanwhile is dropped unanswered (`None`): nobody
    /// waits for it any more. A call the batch's `prepare` applied is answered at once.
    async fn answer(
        self,
        call: serde_json::Result<IncomingCall>,
        deadline_ms: Option<i64>,
        batch: Option<&H::Batch>,
    ) -> Option<RpcReply> {
        let applied = match (&call, batch) {
            (Ok(call), Some(batch)) => self.handler.applied_in_prepare(batch, call),
            _ => false,
        };
        let _permit = if applied {
            None
        } else {
            let Ok(permit) = self.permits.acquire().await else {
                return None;
            };
            if deadline_ms.is_some_and(|d| now_ms() > d) {
                metrics::counter!("authstack_rpc_server_expired_total").increment(1);
                return None;
            }
            Some(permit)
        };
        let started = Instant::now();
        let (method, reply) = match call {
            Ok(call) => {
                let method = call.request.method.clone();
                // Every log line of the call names the HTTP request id the gateway assigned.
                let span = tracing::info_span!(
                    "call",
                    request_id = %call.request.context.request_id,
                    method = %call.request.method,
                );
                (
                    method,
                    self.handler.handle(call, batch).instrument(span).await,
                )
            }
            Err(e) => (
                "invalid".to_owned(),
                RpcReply::Error(ErrorBody::new(
                    ErrorCode::ValidationFailed,
                    format!("malformed RPC request: {e}"),
                )),
            ),
        };
        record(&method, &reply, started);
        Some(reply)
    }
}

/// Answers the calls of a batch concurrently and publishes the replies as they complete: those
/// ready at the same moment travel in one message, so a slow call does not hold back the others.
/// Calls past their deadline are dropped unanswered. Returns whether every reply was published.
async fn answer_batch<H: RpcHandler>(
    channel: &Channel,
    worker: Worker<'_, H>,
    data: &[u8],
    reply_to: &ShortString,
    max_message_bytes: usize,
) -> bool {
    let batch = match serde_json::from_slice::<CallBatch>(data) {
        Ok(b) => b,
        Err(e) => {
            // Its calls cannot be told apart; they time out.
            metrics::counter!("authstack_rpc_server_malformed_batches_total").increment(1);
            tracing::warn!(error = %e, "malformed batch of RPC requests dropped");
            return true;
        }
    };
    let now = now_ms();
    let calls: Vec<_> = batch
        .calls
        .into_iter()
        .filter(|call| {
            let live = call.deadline_ms >= now;
            if !live {
                metrics::counter!("authstack_rpc_server_expired_total").increment(1);
            }
            live
        })
        .map(|call| {
            let request = serde_json::from_str::<RpcRequest>(call.request.get());
            let incoming = worker.incoming(request, call.message_id);
            (call.correlation_id, call.deadline_ms, incoming)
        })
        .collect();
    let decoded: Vec<&IncomingCall> = calls
        .iter()
        .filter_map(|(_, _, c)| c.as_ref().ok())
        .collect();
    let prepared = if decoded.len() > 1 {
        worker.handler.prepare(&decoded).await
    } else {
        None
    };
    let prepared = prepared.as_ref();
    let mut calls: FuturesUnordered<_> = calls
        .into_iter()
        .map(|(correlation_id, deadline_ms, call)| async move {
            let reply = worker.answer(call, Some(deadline_ms), prepared).await;
            (Some(correlation_id), reply)
        })
        .collect();
    let mut published = true;
    while let Some(first) = calls.next().await {
        let mut ready = vec![first];
        while let Some(Some(next)) = calls.next().now_or_never() {
            ready.push(next);
        }
        let ready: Vec<_> = ready
            .into_iter()
            .filter_map(|(c, reply)| Some((c, reply?)))
            .collect();
        if !ready.is_empty() {
            published &= publish_replies(channel, reply_to, ready, max_message_bytes);
        }
    }
    published
}

fn record(method: &str, reply: &RpcReply, started: Instant) {
    let outcome = match reply {
        RpcReply::Result(_) => "ok",
        RpcReply::Error(e) => e.code.as_str(),
    };
    let method = method_label(method, reply);
    metrics::counter!("authstack_rpc_server_requests_total", "method" => method.to_owned(), "outcome" => outcome)
        .increment(1);
    metrics::histogram!("authstack_rpc_server_duration_seconds", "method" => method.to_owned())
        .record(started.elapsed().as_secs_f64());
}

/// The `method` label of a call's metrics: the method's name, or `unknown` for a name the
/// handler did not know (answered `common.not_implemented`), so that a publisher inventing
/// names cannot add a series per name. Handlers therefore decode the method before anything
/// else (auth-svc's `RpcRequest::decode`) and answer `common.not_implemented` for nothing else.
fn method_label<'a>(method: &'a str, reply: &RpcReply) -> &'a str {
    match reply {
        RpcReply::Error(e) if e.code == ErrorCode::NotImplemented => "unknown",
        _ => method,
    }
}

/// The reply as it travels (an encoding failure becomes an internal error).
fn encode_reply(reply: &RpcReply) -> Box<RawValue> {
    serde_json::value::to_raw_value(reply).unwrap_or_else(|_| {
        let fallback = RpcReply::Error(ErrorBody::new(
            ErrorCode::Internal,
            "could not encode reply",
        ));
        serde_json::value::to_raw_value(&fallback).unwrap_or_default()
    })
}

/// Publishes replies to `reply_to`: one alone as a message of its own, several as one message of
/// type `batch` (or one by one if together they exceed the message size limit). Returns whether
/// all were queued on the connection.
fn publish_replies(
    channel: &Channel,
    reply_to: &ShortString,
    replies: Vec<(Option<String>, RpcReply)>,
    max_message_bytes: usize,
) -> bool {
    let props = || {
        BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(1)
    };
    let publish = |body: &[u8], props: BasicProperties| {
        crate::enqueue_publish(channel, "", reply_to.clone(), body, props)
            .inspect_err(|e| {
                // Not acknowledged: the broker redelivers, and the request id prevents a double
                // apply.
                tracing::warn!(error = %e, "could not publish a reply");
            })
            .is_ok()
    };
    // One reply as a message of its own.
    let single = |correlation_id: Option<String>, reply: &RawValue| {
        let props = match correlation_id {
            Some(c) => props().with_correlation_id(c.into()),
            None => props(),
        };
        publish(reply.get().as_bytes(), props)
    };
    if replies.len() == 1 {
        return replies
            .into_iter()
            .all(|(c, reply)| single(c, &encode_reply(&reply)));
    }
    let batch = ReplyBatch {
        replies: replies
            .into_iter()
            .map(|(c, reply)| BatchedReply {
                correlation_id: c.unwrap_or_default(),
                reply: encode_reply(&reply),
            })
            .collect(),
    };
    match serde_json::to_vec(&batch) {
        Ok(body) if body.len() <= max_message_bytes => {
            publish(&body, props().with_type(BATCH_MESSAGE_TYPE.into()))
        }
        _ => batch
            .replies
            .into_iter()
            .all(|r| single(Some(r.correlation_id), &r.reply)),
    }
}

#[cfg(test)]
mod tests {
    use super::{AckTracker, method_label};
    use authstack_protocol::rpc::RpcReply;
    use authstack_protocol::{ErrorBody, ErrorCode};

    #[test]
    fn metrics_label_unknown_methods_as_one() {
        let unknown = RpcReply::Error(ErrorBody::new(ErrorCode::NotImplemented, "unknown method"));
        assert_eq!(method_label("auth.fly-4711", &unknown), "unknown");
        let refused = RpcReply::Error(ErrorBody::new(ErrorCode::NotFound, "no such user"));
        assert_eq!(method_label("users.get", &refused), "users.get");
        assert_eq!(method_label("users.me", &RpcReply::ok(&1)), "users.me");
    }

    #[test]
    fn only_the_contiguous_settled_prefix_is_ackable() {
        let mut a = AckTracker::default();
        a.complete(2);
        a.complete(3);
        assert_eq!(a.settled_upto, 0, "tag 1 is still in flight");
        a.complete(1);
        assert_eq!(a.settled_upto, 3);
        a.complete(5);
        assert_eq!(a.settled_upto, 3);
        a.complete(4);
        assert_eq!(a.settled_upto, 5);
        assert!(a.flush_deadline().is_some());
        assert!(!a.batch_full());
        for tag in 6..=21 {
            a.complete(tag);
        }
        assert!(a.batch_full());
    }
}
