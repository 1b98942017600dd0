//! RabbitMQ plumbing for AuthStack.
//!
//! Every component owns one AMQP connection and runs it under [`supervise`]: connect with
//! backoff, set up channels and topology, run until the connection fails, then start over. So
//! both services recover by themselves when the broker restarts, and while it is down the RPC
//! client fails fast with `rpc.unavailable` instead of hanging.
//!
//! - [`rpc_client`]: requests on the durable RPC queue, replies on an exclusive per-process queue,
//!   correlation ids, per-message expiration equal to the caller's deadline.
//! - [`rpc_server`]: consumers with bounded prefetch and manual acks, replies to `reply_to`.
//! - [`events`]: the topic exchange for domain events (buffered publisher, subscriber, and a
//!   confirmed publisher for outbox relays: [`run_relay`]).

pub mod events;
pub mod rpc_client;
pub mod rpc_server;
mod supervise;
mod topology;

pub use authstack_protocol::broker::{self, Names, Role};
pub use events::{ConfirmedPublisher, EventPublisher, EventSubscriber, PendingConfirm, run_relay};
pub use rpc_client::{Batching, ReplyMode, RpcClient, RpcClientConfig};
pub use rpc_server::{IncomingCall, RpcHandler, RpcServer, RpcServerConfig};
pub use supervise::supervise;
pub use tokio_util::sync::CancellationToken;
pub use topology::{delete as delete_topology, delete_names};

/// Publishes a message without waiting for the connection's writer to send it.
///
/// lapin queues the frames for its I/O thread on the first poll of `basic_publish` and then
/// waits for that thread to report them written: one more cross-thread wake-up per message,
/// a sizeable share of an RPC's cost on a busy machine. Without publisher confirms that report
/// tells nothing the caller needs: a write that fails fails the connection, which the session's
/// supervisor sees, and frames queued later (an ack after a reply) are never written before
/// earlier ones. Errors known at once (the channel is closed) are returned.
pub(crate) fn enqueue_publish(
    channel: &lapin::Channel,
    exchange: &str,
    routing_key: lapin::types::ShortString,
    body: &[u8],
    properties: lapin::BasicProperties,
) -> Result<(), BusError> {
    use futures::FutureExt;
    let publish = channel.basic_publish(
        exchange.into(),
        routing_key,
        lapin::options::BasicPublishOptions::default(),
        body,
        properties,
    );
    match publish.now_or_never() {
        Some(Err(e)) => Err(BusError::Amqp(e)),
        // Queued (pending the writer's report, which nobody waits for) or already sent.
        None | Some(Ok(_)) => Ok(()),
    }
}

/// Errors of the bus layer.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The AMQP client reported an error.
    #[error("amqp: {0}")]
    Amqp(#[from] lapin::Error),
    /// Connecting or an operation took too long.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// The connection was lost.
    #[error("connection lost: {0}")]
    Lost(String),
}

/// Broker settings shared by auth-svc and the gateway (flattened into their configurations, so
/// both sides read the same variables with the same defaults). Names must fit the broker
/// permissions of `libs/protocol/broker-acl.json` (`auth.rpc` or `auth.rpc.<suffix>`, ...).
#[derive(Debug, Clone, clap::Args)]
pub struct BrokerArgs {
    /// RabbitMQ connection URL (`amqps://` for TLS), with this component's own broker user.
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: String,
    /// Durable queue of RPC requests, shared by every auth-svc replica.
    #[arg(long, env = "AUTH_RPC_QUEUE", default_value_t = Names::defaults().rpc_queue,
          value_parser = |s: &str| broker::check_name(Role::RpcQueue, s))]
    pub rpc_queue: String,
    /// Direct exchange the gateway publishes RPC requests to (bound to the RPC queue).
    #[arg(long, env = "AUTH_RPC_EXCHANGE", default_value_t = Names::defaults().rpc_exchange,
          value_parser = |s: &str| broker::check_name(Role::RpcExchange, s))]
    pub rpc_exchange: String,
    /// Topic exchange of domain events.
    #[arg(long, env = "AUTH_EVENTS_EXCHANGE", default_value_t = Names::defaults().events_exchange,
          value_parser = |s: &str| broker::check_name(Role::EventsExchange, s))]
    pub events_exchange: String,
    /// Largest RPC request, reply or event accepted (and sent), in bytes; larger messages are
    /// refused or dropped, never processed.
    #[arg(long, env = "AMQP_MAX_MESSAGE_BYTES", default_value_t = DEFAULT_MAX_MESSAGE_BYTES,
          value_parser = clap::value_parser!(u32).range(1024..))]
    pub max_message_bytes: u32,
}

impl BrokerArgs {
    /// The queue and exchange names.
    pub fn names(&self) -> Names {
        Names {
            rpc_queue: self.rpc_queue.clone(),
            rpc_exchange: self.rpc_exchange.clone(),
            events_exchange: self.events_exchange.clone(),
        }
    }

    /// Uses `names` (tests and scripted runs use names of their own).
    pub fn set_names(&mut self, names: Names) {
        self.rpc_queue = names.rpc_queue;
        self.rpc_exchange = names.rpc_exchange;
        self.events_exchange = names.events_exchange;
    }
}

/// Default of [`BrokerArgs::max_message_bytes`]: 1 MiB, far above any legitimate message (the
/// gateway accepts request bodies of 64 KiB; a page of 200 accounts is ~60 KiB).
pub const DEFAULT_MAX_MESSAGE_BYTES: u32 = 1024 * 1024;
