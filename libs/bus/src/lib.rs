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
//! - [`events`]: the topic exchange for domain events (publisher and subscriber).

pub mod events;
pub mod rpc_client;
pub mod rpc_server;
mod supervise;
mod topology;

pub use events::{EventPublisher, EventSubscriber};
pub use rpc_client::{ReplyMode, RpcClient, RpcClientConfig};
pub use rpc_server::{IncomingCall, RpcHandler, RpcServer, RpcServerConfig};
pub use supervise::{Backoff, supervise};
pub use tokio_util::sync::CancellationToken;
pub use topology::delete as delete_topology;

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
/// both sides read the same variables with the same defaults).
#[derive(Debug, Clone, clap::Args)]
pub struct BrokerArgs {
    /// RabbitMQ connection URL (`amqps://` for TLS).
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: String,
    /// Durable queue of RPC requests, shared by every auth-svc replica.
    #[arg(long, env = "AUTH_RPC_QUEUE", default_value = DEFAULT_RPC_QUEUE)]
    pub rpc_queue: String,
    /// Topic exchange of domain events.
    #[arg(long, env = "AUTH_EVENTS_EXCHANGE", default_value = DEFAULT_EVENTS_EXCHANGE)]
    pub events_exchange: String,
}

/// Default durable queue for RPC requests.
pub const DEFAULT_RPC_QUEUE: &str = "auth.rpc";
/// Default topic exchange for domain events.
pub const DEFAULT_EVENTS_EXCHANGE: &str = "auth.events";
