//! The RPC server run by every auth-svc replica.
//!
//! Replicas share the durable request queue. Each consumes with a bounded prefetch and manual
//! acks: a request is acknowledged only after its reply was published, so a replica that dies
//! mid-request leaves it to another replica (which recognises the request id and does not apply
//! it twice — that part is the handler's job). Requests past their deadline are dropped
//! unprocessed: nobody waits for the answer any more.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use authstack_protocol::rpc::{RpcReply, RpcRequest};
use authstack_protocol::{ErrorBody, ErrorCode};
use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::BusError;
use crate::rpc_client::DEADLINE_HEADER;
use crate::supervise::{connection_failed, supervise};

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
    /// Handles one call and returns its reply.
    fn handle(&self, call: IncomingCall) -> impl Future<Output = RpcReply> + Send;
}

/// Settings of an [`RpcServer`].
#[derive(Debug, Clone)]
pub struct RpcServerConfig {
    /// AMQP URL.
    pub url: String,
    /// The durable request queue.
    pub queue: String,
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
    channel
        .queue_declare(
            config.queue.as_str().into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await?;
    let tag = format!("{}-{}", config.connection_name, std::process::id());
    let mut consumer = channel
        .basic_consume(
            config.queue.as_str().into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    connected.store(true, Ordering::Relaxed);
    let mut in_flight = JoinSet::new();
    let failure = connection_failed(&conn);
    tokio::pin!(failure);
    let result = loop {
        tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            e = &mut failure => break Err(e),
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            delivery = consumer.next() => match delivery {
                Some(Ok(d)) => {
                    let channel = channel.clone();
                    let handler = handler.clone();
                    in_flight.spawn(async move { process(channel, handler, d).await });
                }
                Some(Err(e)) => break Err(BusError::Amqp(e)),
                None => break Err(BusError::Lost("consumer cancelled by the broker".into())),
            },
        }
    };
    connected.store(false, Ordering::Relaxed);
    if result.is_ok() {
        // Graceful shutdown: stop taking work, finish what we have, then close.
        let _ = channel
            .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
            .await;
        let drain = async { while in_flight.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(10), drain)
            .await
            .is_err()
        {
            tracing::warn!(
                "in-flight requests still running after 10 s; abandoning them to redelivery"
            );
        }
    }
    result
}

fn deadline_passed(props: &BasicProperties) -> bool {
    let deadline = props.headers().as_ref().and_then(|h| {
        h.inner().get(DEADLINE_HEADER).and_then(|v| match v {
            AMQPValue::LongLongInt(ms) => Some(*ms),
            AMQPValue::LongInt(ms) => Some(i64::from(*ms)),
            _ => None,
        })
    });
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    deadline.is_some_and(|d| now_ms > d)
}

async fn process<H: RpcHandler>(channel: Channel, handler: Arc<H>, delivery: Delivery) {
    let started = Instant::now();
    let props = &delivery.properties;
    let mut method = String::from("invalid");
    let reply = if deadline_passed(props) {
        metrics::counter!("rpc_server_expired_total").increment(1);
        None
    } else {
        let reply = match serde_json::from_slice::<RpcRequest>(&delivery.data) {
            Ok(request) => {
                method.clone_from(&request.method);
                let request_id = props
                    .message_id()
                    .as_ref()
                    .map(|m| m.as_str().to_owned())
                    .unwrap_or_default();
                handler
                    .handle(IncomingCall {
                        request,
                        request_id,
                        redelivered: delivery.redelivered,
                    })
                    .await
            }
            Err(e) => RpcReply::Error(ErrorBody::new(
                ErrorCode::ValidationFailed,
                format!("malformed RPC request: {e}"),
            )),
        };
        Some(reply)
    };
    if let (Some(reply), Some(reply_to)) = (reply, props.reply_to().as_ref()) {
        let outcome = match &reply {
            RpcReply::Result(_) => "ok",
            RpcReply::Error(e) => e.code.as_str(),
        };
        metrics::counter!("rpc_server_requests_total", "method" => method.clone(), "outcome" => outcome)
            .increment(1);
        let body = serde_json::to_vec(&reply).unwrap_or_else(|_| {
            br#"{"error":{"code":"common.internal_error","message":"could not encode reply"}}"#
                .to_vec()
        });
        let mut reply_props = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(1);
        if let Some(c) = props.correlation_id() {
            reply_props = reply_props.with_correlation_id(c.clone());
        }
        let publish = async {
            channel
                .basic_publish(
                    "".into(),
                    reply_to.clone(),
                    BasicPublishOptions::default(),
                    &body,
                    reply_props,
                )
                .await?
                .await
        };
        if let Err(e) | Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(5), publish)
            .await
            .map_err(|_| BusError::Timeout("publishing a reply"))
            .map(|r| r.map_err(BusError::from))
        {
            // Not acknowledged: the broker redelivers, and the request id prevents a double apply.
            tracing::warn!(error = %e, "could not publish a reply");
            return;
        }
    }
    metrics::histogram!("rpc_server_duration_seconds", "method" => method)
        .record(started.elapsed().as_secs_f64());
    if let Err(e) = delivery.acker.ack(BasicAckOptions::default()).await {
        tracing::warn!(error = %e, "could not acknowledge a request");
    }
}
