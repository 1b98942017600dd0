//! Chat service configuration: every knob is a command-line flag and an environment variable.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

/// The chat service: chat rooms for AuthStack users, live over a WebSocket.
#[derive(Debug, Clone, Parser)]
#[command(name = "authstack-chat", version, about)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "CHAT_LISTEN", default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,

    /// PostgreSQL URL; tables live in the schema `chat` (created by the migrations).
    #[arg(long, env = "CHAT_DATABASE_URL")]
    pub database_url: String,

    /// Largest number of database connections.
    #[arg(long, env = "CHAT_DB_MAX_CONNECTIONS", default_value_t = 8)]
    pub db_max_connections: u32,

    /// Base URL of the AuthStack gateway: its `/.well-known/jwks.json` verifies tokens, and
    /// `/api/v1/users/me` tells a member's user name when they create or join a chat.
    #[arg(long, env = "AUTHSTACK_URL", default_value = "http://127.0.0.1:8080")]
    pub authstack_url: String,

    /// Required `iss` of access tokens.
    #[arg(long, env = "AUTH_ISSUER", default_value = "http://127.0.0.1:8080")]
    pub issuer: String,

    /// Required `aud` of access tokens.
    #[arg(long, env = "AUTH_AUDIENCE", default_value = "authstack")]
    pub audience: String,

    /// Allowed clock skew in seconds when checking `exp` and `nbf`.
    #[arg(long, env = "CHAT_CLOCK_SKEW_SECS", default_value_t = 30)]
    pub clock_skew_secs: u64,

    /// Seconds between periodic JWKS refreshes (drops revoked keys; new keys are also fetched
    /// as soon as a token names an unknown `kid`).
    #[arg(long, env = "CHAT_KEY_REFRESH_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub key_refresh_secs: u64,

    /// Minimum milliseconds between JWKS fetches triggered by tokens with an unknown `kid`
    /// (so forged kids cannot flood the gateway).
    #[arg(long, env = "CHAT_UNKNOWN_KID_REFRESH_MS", default_value_t = 1000)]
    pub unknown_kid_refresh_ms: u64,

    /// Deadline of one call to the gateway, in milliseconds.
    #[arg(long, env = "CHAT_GATEWAY_TIMEOUT_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(50..=120_000))]
    pub gateway_timeout_ms: u64,

    /// Milliseconds a client has to send a request's headers, counted from when the connection
    /// opens or becomes idle; slower connections are closed (slowloris).
    #[arg(long, env = "CHAT_HEADER_READ_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub header_read_timeout_ms: u64,

    /// Milliseconds a kept-alive connection may sit idle between requests before it is closed.
    #[arg(long, env = "CHAT_IDLE_TIMEOUT_MS", default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub idle_timeout_ms: u64,

    /// Open HTTP connections at most (one upgraded to a live socket no longer counts); further
    /// clients wait in the listen backlog.
    #[arg(long, env = "CHAT_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Largest accepted request body in bytes; larger ones get `common.payload_too_large`.
    #[arg(long, env = "CHAT_MAX_BODY_BYTES", default_value_t = 16 * 1024)]
    pub max_body_bytes: usize,

    /// Milliseconds a request body may take to arrive after its head; slower ones get
    /// `common.request_timeout`.
    #[arg(long, env = "CHAT_BODY_READ_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub body_read_timeout_ms: u64,

    /// Messages buffered per chat for live sockets; a socket that falls further behind is
    /// closed with code 4008 (the client reconnects and fetches what it missed).
    #[arg(long, env = "CHAT_LIVE_BUFFER", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub live_buffer: u64,

    /// Name of this instance in logs.
    #[arg(long, env = "CHAT_INSTANCE_NAME", default_value = "chat")]
    pub instance_name: String,
}

impl Config {
    /// A configuration with every default and the given database (tests).
    pub fn with_defaults(database_url: &str) -> Self {
        Config::parse_from(["authstack-chat", "--database-url", database_url])
    }

    /// The gateway's JWKS URL.
    pub fn jwks_url(&self) -> String {
        format!(
            "{}/.well-known/jwks.json",
            self.authstack_url.trim_end_matches('/')
        )
    }

    /// The server loop's connection limit, timeouts and metrics (connections are served on the
    /// service's own runtime).
    pub fn server_limits(&self) -> authstack_http::server::Limits {
        authstack_http::server::Limits {
            workers: 0,
            max_connections: self.max_connections as usize,
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            metrics: crate::metrics::SERVER,
        }
    }

    /// The bounds of a request body.
    pub fn body_limits(&self) -> authstack_http::BodyLimits {
        authstack_http::BodyLimits {
            max_bytes: self.max_body_bytes,
            read_timeout: Duration::from_millis(self.body_read_timeout_ms),
        }
    }

    /// Deadline of one call to the gateway.
    pub fn gateway_timeout(&self) -> Duration {
        Duration::from_millis(self.gateway_timeout_ms)
    }
}
