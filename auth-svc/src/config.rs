//! auth-svc configuration: every knob is a command-line flag and an environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// The authentication service: an RPC server on RabbitMQ backed by PostgreSQL.
#[derive(Debug, Clone, Parser)]
#[command(name = "auth-svc", version, about)]
pub struct Config {
    /// PostgreSQL connection URL. The `auth` schema and its tables are created on start.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,

    /// Maximum PostgreSQL connections of this replica.
    #[arg(long, env = "AUTH_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,

    /// Broker connection and names (`AMQP_URL`, `AUTH_RPC_QUEUE`, `AUTH_EVENTS_EXCHANGE`).
    #[command(flatten)]
    pub broker: authstack_bus::BrokerArgs,

    /// Unacknowledged RPC requests per replica (bounds concurrent work).
    #[arg(long, env = "AUTH_RPC_PREFETCH", default_value_t = 64)]
    pub rpc_prefetch: u16,

    /// Directory holding `keyring.json` (a mounted Secret in kubelet's layout).
    #[arg(long, env = "AUTH_KEY_DIR", default_value = "/var/run/authstack/keys")]
    pub key_dir: PathBuf,

    /// How often the key directory is re-read in addition to file notifications, in milliseconds.
    #[arg(long, env = "AUTH_KEY_POLL_MS", default_value_t = 1000)]
    pub key_poll_ms: u64,

    /// `iss` of issued tokens (the gateway's public URL).
    #[arg(long, env = "AUTH_ISSUER", default_value = "http://127.0.0.1:8080")]
    pub issuer: String,

    /// `aud` of issued tokens.
    #[arg(long, env = "AUTH_AUDIENCE", default_value = "authstack")]
    pub audience: String,

    /// Access-token lifetime in seconds.
    #[arg(long, env = "AUTH_ACCESS_TOKEN_TTL", default_value_t = 900, value_parser = clap::value_parser!(u64).range(10..=86_400))]
    pub access_token_ttl: u64,

    /// Refresh-token lifetime in seconds (each refresh issues a new token with a fresh lifetime).
    #[arg(long, env = "AUTH_REFRESH_TOKEN_TTL", default_value_t = 30 * 86_400, value_parser = clap::value_parser!(u64).range(60..))]
    pub refresh_token_ttl: u64,

    /// Seconds during which a just-replaced refresh token may be presented again (concurrent
    /// refreshes by one client) without revoking its session; 0 disables the grace window.
    #[arg(long, env = "AUTH_REFRESH_REUSE_GRACE", default_value_t = 2)]
    pub refresh_reuse_grace: u64,

    /// Argon2id memory cost in KiB (OWASP minimum: 19456).
    #[arg(long, env = "AUTH_ARGON2_MEMORY_KIB", default_value_t = 19_456, value_parser = clap::value_parser!(u32).range(8..))]
    pub argon2_memory_kib: u32,

    /// Argon2id iterations (OWASP minimum with 19 MiB: 2).
    #[arg(long, env = "AUTH_ARGON2_ITERATIONS", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub argon2_iterations: u32,

    /// Argon2id parallelism.
    #[arg(long, env = "AUTH_ARGON2_PARALLELISM", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub argon2_parallelism: u32,

    /// Password hashes computed at once (0 = number of CPUs); more wait, never oversubscribe.
    #[arg(long, env = "AUTH_HASHING_THREADS", default_value_t = 0)]
    pub hashing_threads: usize,

    /// Failed logins for one account within the window before it is locked.
    #[arg(long, env = "AUTH_LOCKOUT_THRESHOLD", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub lockout_threshold: u32,

    /// Failed logins from one client address within the window before it is locked.
    #[arg(long, env = "AUTH_ADDRESS_LOCKOUT_THRESHOLD", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub address_lockout_threshold: u32,

    /// Window in seconds over which failed logins are counted.
    #[arg(long, env = "AUTH_LOCKOUT_WINDOW", default_value_t = 900)]
    pub lockout_window: u64,

    /// Seconds an account or address stays locked.
    #[arg(long, env = "AUTH_LOCKOUT_DURATION", default_value_t = 900)]
    pub lockout_duration: u64,

    /// Optional JSON file with the role policy of `access.check` (default: users manage their
    /// own account, admins everything under `/api/v1`).
    #[arg(long, env = "AUTH_POLICY_FILE")]
    pub policy_file: Option<PathBuf>,

    /// Address for `/healthz`, `/readyz` and `/metrics`.
    #[arg(long, env = "AUTH_HTTP_LISTEN", default_value = "127.0.0.1:8081")]
    pub http_listen: SocketAddr,

    /// Name of this replica in logs and the broker's connection list.
    #[arg(long, env = "AUTH_INSTANCE_NAME", default_value = "auth-svc")]
    pub instance_name: String,
}

impl Config {
    /// Access-token lifetime.
    pub fn access_ttl(&self) -> Duration {
        Duration::from_secs(self.access_token_ttl)
    }

    /// Hashing concurrency, resolving 0 to the number of CPUs.
    pub fn hashing_concurrency(&self) -> usize {
        if self.hashing_threads > 0 {
            self.hashing_threads
        } else {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        }
    }

    /// A configuration with every default, for tests and embedding.
    pub fn with_defaults(database_url: &str, key_dir: PathBuf) -> Self {
        Config::parse_from([
            "auth-svc",
            "--database-url",
            database_url,
            "--key-dir",
            &key_dir.display().to_string(),
        ])
    }
}
