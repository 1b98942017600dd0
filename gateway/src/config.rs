//! Gateway configuration: every knob is a command-line flag and an environment variable.

use std::net::SocketAddr;
use std::time::Duration;

use authstack_http::server;
use clap::Parser;

/// The gateway: the REST entry point of AuthStack.
#[derive(Debug, Clone, Parser)]
#[command(name = "gateway", version, about)]
pub struct Config {
    /// Address to listen on (the API).
    #[arg(long, env = "GATEWAY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Address of the Prometheus `/metrics` listener, kept off the public port.
    #[arg(long, env = "GATEWAY_METRICS_LISTEN", default_value = "127.0.0.1:9090")]
    pub metrics_listen: SocketAddr,

    /// Milliseconds a client has to send a request's headers, counted from when the connection
    /// opens or becomes idle; slower connections are closed (slowloris).
    #[arg(long, env = "GATEWAY_HEADER_READ_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub header_read_timeout_ms: u64,

    /// Milliseconds a client has to send a request body; slower ones get `common.request_timeout`
    /// (408).
    #[arg(long, env = "GATEWAY_BODY_READ_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub body_read_timeout_ms: u64,

    /// Milliseconds a kept-alive connection may sit idle between requests before it is closed.
    #[arg(long, env = "GATEWAY_IDLE_TIMEOUT_MS", default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub idle_timeout_ms: u64,

    /// Open client connections at most; further clients wait in the listen backlog.
    #[arg(long, env = "GATEWAY_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Kernel send buffer of each client connection in bytes (`SO_SNDBUF`); 0 leaves it to
    /// the kernel's autotuning (up to `net.ipv4.tcp_wmem`'s maximum, 4 MiB by default). A cap
    /// bounds kernel memory per idle or slow WebSocket, and makes a stalled reader show up
    /// as a full send queue sooner.
    #[arg(long, env = "GATEWAY_SOCKET_SEND_BUFFER_BYTES", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=67_108_864))]
    pub socket_send_buffer_bytes: u32,

    /// Threads serving HTTP connections, each with a single-threaded runtime of its own; a
    /// connection stays on the thread it was given. Unset: two per CPU, at most 16 (the fastest
    /// on the 2-core reference machine, docs/performance.md); 0: connections share the
    /// process's work-stealing runtime.
    #[arg(long, env = "GATEWAY_HTTP_WORKERS")]
    pub http_workers: Option<usize>,

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

    /// Most RPC calls sent in one broker message: calls waiting to be published at the same
    /// moment travel together (1: a message per call).
    // The upper bound is the last bucket of authstack_rpc_client_batch_calls (libs/telemetry).
    #[arg(long, env = "GATEWAY_RPC_MAX_BATCH", default_value_t = authstack_bus::rpc_client::DEFAULT_MAX_BATCH, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub rpc_max_batch: u16,

    /// RPC messages in flight from which a call is held back (up to
    /// `GATEWAY_RPC_BATCH_LINGER_MS`) so that more calls join its message; 0: one per auth-svc
    /// replica consuming the queue.
    #[arg(long, env = "GATEWAY_RPC_MAX_MESSAGES_IN_FLIGHT", default_value_t = authstack_bus::rpc_client::DEFAULT_MAX_MESSAGES_IN_FLIGHT)]
    pub rpc_max_messages_in_flight: u16,

    /// Longest a call is held back for batching, in milliseconds (0: never held back).
    #[arg(long, env = "GATEWAY_RPC_BATCH_LINGER_MS", default_value_t = authstack_bus::rpc_client::DEFAULT_MAX_LINGER.as_millis() as u64, value_parser = clap::value_parser!(u64).range(0..=100))]
    pub rpc_batch_linger_ms: u64,

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

    /// Reverse proxies (comma-separated CIDRs, e.g. `10.0.0.0/8,fd00::/8`) whose
    /// `X-Forwarded-For` is believed. Empty: the TCP peer is the client, and the header is
    /// ignored from everyone.
    #[arg(long, env = "GATEWAY_TRUSTED_PROXIES", default_value = "",
          value_parser = crate::client_ip::parse_proxy_list)]
    pub trusted_proxies: crate::client_ip::ProxyList,

    /// How many trusted proxies may stand in a row before the gateway (e.g. 2 for a cloud load
    /// balancer in front of an ingress controller): at most this many `X-Forwarded-For` entries
    /// are read, from the right, while they are trusted proxies.
    #[arg(long, env = "GATEWAY_TRUSTED_PROXY_HOPS", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=16))]
    pub trusted_proxy_hops: u8,

    /// Revoked sessions and deleted accounts remembered until their tokens expire (entries);
    /// beyond it the soonest-expiring entries are dropped (auth-svc still refuses them).
    #[arg(long, env = "GATEWAY_DENY_LIST_CAPACITY", default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub deny_list_capacity: u32,

    /// WebSocket `/api/v1/ws`: milliseconds a socket opened without a token has to send its
    /// `auth` frame; then it is closed with 4002.
    #[arg(long, env = "GATEWAY_WS_AUTH_TIMEOUT_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub ws_auth_timeout_ms: u64,

    /// WebSocket: seconds between the gateway's pings.
    #[arg(long, env = "GATEWAY_WS_PING_INTERVAL_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub ws_ping_interval_secs: u64,

    /// WebSocket: seconds without any frame from the client (pongs count) before the socket
    /// is closed with 4000; keep it above the ping interval.
    #[arg(long, env = "GATEWAY_WS_IDLE_TIMEOUT_SECS", default_value_t = 75, value_parser = clap::value_parser!(u64).range(2..=7200))]
    pub ws_idle_timeout_secs: u64,

    /// WebSocket: largest frame or message a client may send in bytes; larger ones close the
    /// socket with 1009.
    #[arg(long, env = "GATEWAY_WS_MAX_MESSAGE_BYTES", default_value_t = 16 * 1024, value_parser = clap::value_parser!(u64).range(256..=1_048_576))]
    pub ws_max_message_bytes: u64,

    /// WebSocket: frames queued for one client at most; a client that lets it fill is closed
    /// with 4008 (memory per socket stays bounded).
    #[arg(long, env = "GATEWAY_WS_SEND_BUFFER", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub ws_send_buffer: u32,

    /// WebSocket: open sockets at most per gateway; beyond, new sockets are closed with 1013.
    /// They do not count against `GATEWAY_MAX_CONNECTIONS`.
    #[arg(long, env = "GATEWAY_WS_MAX_SOCKETS", default_value_t = 50_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub ws_max_sockets: u32,

    /// WebSocket: RPC calls one socket may have in flight; beyond, the gateway stops reading
    /// that socket until one is answered.
    #[arg(long, env = "GATEWAY_WS_MAX_CALLS_IN_FLIGHT", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub ws_max_calls_in_flight: u32,

    /// Name of this instance in logs and the broker's connection list.
    #[arg(long, env = "GATEWAY_INSTANCE_NAME", default_value = "gateway")]
    pub instance_name: String,
}

impl Config {
    /// The server loop's worker threads (the configured number, or
    /// [`server::default_workers`]), connection limit, timeouts and metrics.
    pub fn server_limits(&self) -> server::Limits {
        server::Limits {
            workers: self.http_workers.unwrap_or_else(server::default_workers),
            max_connections: self.max_connections as usize,
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            metrics: crate::metrics::SERVER,
        }
    }

    /// RPC deadline.
    pub fn rpc_timeout(&self) -> Duration {
        Duration::from_millis(self.rpc_timeout_ms)
    }

    /// Time allowed for a request body.
    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_millis(self.body_read_timeout_ms)
    }

    /// A configuration with every default (tests).
    pub fn with_defaults() -> Self {
        Config::parse_from(["gateway"])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(value: &str) -> Result<Vec<String>, String> {
        Config::try_parse_from(["gateway", "--trusted-proxies", value])
            .map(|c| c.trusted_proxies.0.iter().map(|n| n.to_string()).collect())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn an_empty_trusted_proxy_list_means_no_proxy() {
        // The operator writes `GATEWAY_TRUSTED_PROXIES=` for a spec without proxies; clap
        // hands an empty variable to the parser like an empty flag value.
        assert_eq!(proxies(""), Ok(vec![]));
        assert_eq!(
            proxies("10.0.0.0/8, 192.0.2.7"),
            Ok(vec!["10.0.0.0/8".into(), "192.0.2.7/32".into()])
        );
        let err = proxies("10.0.0.0/8,10.0.0.0/40").unwrap_err();
        assert!(err.contains("`10.0.0.0/40`"), "{err}");
    }
}
