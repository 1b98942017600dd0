//! Gateway configuration: every knob is a command-line flag and an environment variable.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

/// The gateway: the REST entry point of AuthStack.
#[derive(Debug, Clone, Parser)]
#[command(name = "gateway", version, about)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "GATEWAY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Broker connection and names (`AMQP_URL`, `AUTH_RPC_QUEUE`, `AUTH_EVENTS_EXCHANGE`).
    #[command(flatten)]
    pub broker: authstack_bus::BrokerArgs,

    /// Required `iss` of access tokens (also announced in the OpenID configuration).
    #[arg(long, env = "AUTH_ISSUER", default_value = "http://127.0.0.1:8080")]
    pub issuer: String,

    /// Required `aud` of access tokens.
    #[arg(long, env = "AUTH_AUDIENCE", default_value = "authstack")]
    pub audience: String,

    /// Deadline of one RPC call in milliseconds; after it the client gets `rpc.timeout` (504).
    #[arg(long, env = "GATEWAY_RPC_TIMEOUT_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(50..=120_000))]
    pub rpc_timeout_ms: u64,

    /// Where RPC replies come back: `exclusive` (a queue per gateway process, RabbitMQ's advice
    /// for long-lived high-rate requesters) or `direct` (RabbitMQ's direct reply-to).
    #[arg(long, env = "GATEWAY_RPC_REPLY_MODE", value_enum, default_value_t = authstack_bus::ReplyMode::Exclusive)]
    pub rpc_reply_mode: authstack_bus::ReplyMode,

    /// Largest accepted request body in bytes; larger ones get `common.payload_too_large` (413).
    #[arg(long, env = "GATEWAY_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,

    /// Verified access tokens kept in memory (about 1 KiB each; 0 disables the cache).
    #[arg(long, env = "GATEWAY_TOKEN_CACHE_CAPACITY", default_value_t = 20_000)]
    pub token_cache_capacity: usize,

    /// Allowed clock skew in seconds when checking `exp` and `nbf`.
    #[arg(long, env = "GATEWAY_CLOCK_SKEW_SECS", default_value_t = 30)]
    pub clock_skew_secs: u64,

    /// Seconds between periodic refreshes of the verification keys.
    #[arg(long, env = "GATEWAY_KEY_REFRESH_SECS", default_value_t = 60)]
    pub key_refresh_secs: u64,

    /// Minimum milliseconds between key refreshes triggered by tokens with an unknown `kid`.
    #[arg(long, env = "GATEWAY_UNKNOWN_KID_REFRESH_MS", default_value_t = 1000)]
    pub unknown_kid_refresh_ms: u64,

    /// Take the client address from the last `X-Forwarded-For` entry (only behind a proxy
    /// that sets it); otherwise the TCP peer address is used.
    #[arg(long, env = "GATEWAY_TRUST_FORWARDED_FOR", default_value_t = false)]
    pub trust_forwarded_for: bool,

    /// Name of this instance in logs and the broker's connection list.
    #[arg(long, env = "GATEWAY_INSTANCE_NAME", default_value = "gateway")]
    pub instance_name: String,
}

impl Config {
    /// RPC deadline.
    pub fn rpc_timeout(&self) -> Duration {
        Duration::from_millis(self.rpc_timeout_ms)
    }

    /// A configuration with every default (tests).
    pub fn with_defaults() -> Self {
        Config::parse_from(["gateway"])
    }
}
