//! auth-svc configuration: every knob is a command-line flag and an environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use authstack_protocol::limits;
use clap::Parser;

/// A configuration that parses but must not run.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The argon2 cost is below every OWASP minimum.
    #[error(
        "argon2 memory {memory_kib} KiB with {iterations} iterations is below OWASP's minimum (one of: {minimums})"
    )]
    WeakArgon2 {
        /// `--argon2-memory-kib`.
        memory_kib: u32,
        /// `--argon2-iterations`.
        iterations: u32,
        /// The minimums in words.
        minimums: String,
    },
}

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
    /// refreshes by one client): the answer is the successor already issued, never a new one.
    /// 0 disables the grace window; at most 10.
    #[arg(long, env = "AUTH_REFRESH_REUSE_GRACE", default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=limits::REFRESH_REUSE_GRACE_MAX_SECS))]
    pub refresh_reuse_grace: u64,

    /// Absolute lifetime of a session in seconds, counted from the login: refreshing never
    /// extends a session beyond it.
    #[arg(long, env = "AUTH_SESSION_MAX_LIFETIME", default_value_t = 30 * 86_400, value_parser = clap::value_parser!(u64).range(60..))]
    pub session_max_lifetime: u64,

    /// Argon2id memory cost in KiB. With the iterations it must meet one of OWASP's minimums:
    /// 47104 KiB with 1 iteration, 19456 with 2, 12288 with 3, 9216 with 4, 7168 with 5.
    #[arg(long, env = "AUTH_ARGON2_MEMORY_KIB", default_value_t = 19_456, value_parser = clap::value_parser!(u32).range(i64::from(limits::ARGON2_MEMORY_FLOOR_KIB)..))]
    pub argon2_memory_kib: u32,

    /// Argon2id iterations (passes over memory; see the memory cost for the minimums).
    #[arg(long, env = "AUTH_ARGON2_ITERATIONS", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub argon2_iterations: u32,

    /// Argon2id parallelism.
    #[arg(long, env = "AUTH_ARGON2_PARALLELISM", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub argon2_parallelism: u32,

    /// Password hashes computed at once (0 = number of CPUs); more wait, never oversubscribe.
    #[arg(long, env = "AUTH_HASHING_THREADS", default_value_t = 0)]
    pub hashing_threads: usize,

    /// Password hashes that may wait for a hashing thread; beyond that, logins, registrations
    /// and password checks are answered at once with `rpc.unavailable` and `Retry-After`.
    #[arg(long, env = "AUTH_HASHING_QUEUE", default_value_t = 32)]
    pub hashing_queue: usize,

    /// Failed password checks for one account from one client address within the window
    /// before that address is locked out of that account (other addresses are not affected).
    #[arg(long, env = "AUTH_LOCKOUT_THRESHOLD", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub lockout_threshold: u32,

    /// Failed password checks for one account from all addresses before further attempts must
    /// be spaced by a delay that doubles with every failure (1 s, 2 s, 4 s, ...).
    #[arg(long, env = "AUTH_ACCOUNT_BACKOFF_THRESHOLD", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub account_backoff_threshold: u32,

    /// Longest spacing, in seconds, that the per-account backoff imposes.
    #[arg(long, env = "AUTH_ACCOUNT_BACKOFF_MAX", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub account_backoff_max: u64,

    /// Failed logins from one client address within the window after which every attempt
    /// from it waits a delay before its password is checked (100 ms, doubling per further
    /// failure): a shared proxy address is slowed down, never locked.
    #[arg(long, env = "AUTH_ADDRESS_LOCKOUT_THRESHOLD", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub address_lockout_threshold: u32,

    /// Longest delay, in milliseconds, for attempts from one address; keep it well below the
    /// gateway's RPC deadline (`GATEWAY_RPC_TIMEOUT_MS`).
    #[arg(long, env = "AUTH_ADDRESS_DELAY_MAX_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(0..=30_000))]
    pub address_delay_max_ms: u64,

    /// Window in seconds over which failed logins are counted (for the per-account backoff: a
    /// quiet period after which its failures are forgotten).
    #[arg(long, env = "AUTH_LOCKOUT_WINDOW", default_value_t = 900)]
    pub lockout_window: u64,

    /// Seconds a client address stays locked out of an account.
    #[arg(long, env = "AUTH_LOCKOUT_DURATION", default_value_t = 900)]
    pub lockout_duration: u64,

    /// Login attempts per minute from one client address (0 = unlimited); beyond it,
    /// `common.rate_limited` with `Retry-After`.
    #[arg(long, env = "AUTH_LOGIN_RATE_PER_ADDRESS", default_value_t = 120)]
    pub login_rate_per_address: u32,

    /// Registrations per minute from one client address (0 = unlimited); beyond it,
    /// `common.rate_limited` with `Retry-After`.
    #[arg(long, env = "AUTH_REGISTER_RATE_PER_ADDRESS", default_value_t = 20)]
    pub register_rate_per_address: u32,

    /// Publish domain events from the outbox table in this replica (at least one replica
    /// must; several may at once).
    #[arg(long, env = "AUTH_OUTBOX_RELAY", default_value_t = true, action = clap::ArgAction::Set)]
    pub outbox_relay: bool,

    /// How often, in milliseconds, the relay looks for events committed by other replicas
    /// (this replica's own events are relayed at once).
    #[arg(long, env = "AUTH_OUTBOX_POLL_MS", default_value_t = 500, value_parser = clap::value_parser!(u64).range(10..))]
    pub outbox_poll_ms: u64,

    /// Seconds a processed request id (and its reply) is kept: a redelivery within it is
    /// answered from the record instead of applied again. Keep it far beyond any RPC deadline.
    #[arg(long, env = "AUTH_PROCESSED_REQUEST_RETENTION_SECS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(300..))]
    pub processed_request_retention_secs: u64,

    /// Seconds ended bookkeeping is kept before housekeeping deletes it: expired refresh tokens,
    /// revoked or expired sessions, idle throttling counters (these never before the lockout
    /// window, whose failures they may still hold).
    #[arg(long, env = "AUTH_ENDED_RETENTION_SECS", default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(60..))]
    pub ended_retention_secs: u64,

    /// Seconds between two housekeeping runs of a replica (deleting what the retention periods
    /// above let go).
    #[arg(long, env = "AUTH_HOUSEKEEPING_INTERVAL_SECS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(10..))]
    pub housekeeping_interval_secs: u64,

    /// Optional JSON file with the role policy of `access.check` (default: users manage their
    /// own account, admins everything under `/api/v1`).
    #[arg(long, env = "AUTH_POLICY_FILE")]
    pub policy_file: Option<PathBuf>,

    /// Allowed clock skew in seconds when verifying the caller's access token (`exp`, `nbf`).
    #[arg(long, env = "AUTH_CLOCK_SKEW_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=300))]
    pub clock_skew_secs: u64,

    /// Verified access tokens kept in memory (a hit skips the signature check; 0 disables).
    #[arg(long, env = "AUTH_TOKEN_CACHE_CAPACITY", default_value_t = 10_000)]
    pub token_cache_capacity: usize,

    /// Address for `/healthz`, `/readyz` and `/metrics`.
    #[arg(long, env = "AUTH_HTTP_LISTEN", default_value = "127.0.0.1:8081")]
    pub http_listen: SocketAddr,

    /// Name of this replica in logs and the broker's connection list.
    #[arg(long, env = "AUTH_INSTANCE_NAME", default_value = "auth-svc")]
    pub instance_name: String,
}

impl Config {
    /// Checks what single flags cannot: the argon2 cost meets one of OWASP's minimum
    /// combinations ([`limits::ARGON2_MINIMUMS`], shared with the operator's CRD).
    pub fn check(&self) -> Result<(), ConfigError> {
        if !limits::meets_argon2_minimum(self.argon2_memory_kib, self.argon2_iterations) {
            return Err(ConfigError::WeakArgon2 {
                memory_kib: self.argon2_memory_kib,
                iterations: self.argon2_iterations,
                minimums: limits::argon2_minimums_text(),
            });
        }
        Ok(())
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> Result<Config, clap::Error> {
        let mut args = vec!["auth-svc", "--database-url", "postgres://x/y"];
        args.extend_from_slice(extra);
        Config::try_parse_from(args)
    }

    #[test]
    fn a_reuse_grace_above_ten_seconds_is_refused_with_a_clear_error() {
        assert_eq!(
            parse(&["--refresh-reuse-grace", "10"])
                .unwrap()
                .refresh_reuse_grace,
            10
        );
        let err = parse(&["--refresh-reuse-grace", "30"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--refresh-reuse-grace"), "{err}");
        assert!(err.contains("0..=10"), "{err}");
    }

    #[test]
    fn retention_and_housekeeping_are_flags_with_sane_lower_bounds() {
        let defaults = parse(&[]).unwrap();
        assert_eq!(
            (
                defaults.processed_request_retention_secs,
                defaults.ended_retention_secs,
                defaults.housekeeping_interval_secs
            ),
            (3600, 86_400, 600)
        );
        let set = parse(&[
            "--processed-request-retention-secs",
            "7200",
            "--ended-retention-secs",
            "3600",
            "--housekeeping-interval-secs",
            "60",
        ])
        .unwrap();
        assert_eq!(set.processed_request_retention_secs, 7200);
        assert_eq!(set.ended_retention_secs, 3600);
        assert_eq!(set.housekeeping_interval_secs, 60);
        // A request id forgotten within an RPC deadline would let a redelivery apply twice.
        let err = parse(&["--processed-request-retention-secs", "10"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--processed-request-retention-secs"), "{err}");
        assert!(parse(&["--housekeeping-interval-secs", "0"]).is_err());
    }

    #[test]
    fn the_outbox_relay_can_be_switched_off() {
        assert!(parse(&[]).unwrap().outbox_relay);
        assert!(!parse(&["--outbox-relay", "false"]).unwrap().outbox_relay);
    }

    fn argon2(memory: &str, iterations: &str) -> Result<Config, String> {
        let config = Config::try_parse_from([
            "auth-svc",
            "--database-url",
            "postgres://localhost/x",
            "--argon2-memory-kib",
            memory,
            "--argon2-iterations",
            iterations,
        ])
        .map_err(|e| e.to_string())?;
        config.check().map_err(|e| e.to_string())?;
        Ok(config)
    }

    /// OWASP's argon2id minimums are combinations: 19 MiB needs 2 passes, 46 MiB one.
    #[test]
    fn argon2_cost_must_meet_an_owasp_minimum() {
        for (m, t) in [
            ("19456", "2"),
            ("47104", "1"),
            ("7168", "5"),
            ("65536", "3"),
        ] {
            assert!(
                argon2(m, t).is_ok(),
                "m={m} t={t}: {:?}",
                argon2(m, t).err()
            );
        }
        for (m, t) in [("19456", "1"), ("7168", "4"), ("8", "100"), ("47103", "1")] {
            let err = argon2(m, t).unwrap_err();
            assert!(err.contains("argon2"), "m={m} t={t}: {err}");
        }
        let err = argon2("19456", "1").unwrap_err();
        assert!(err.contains("19456 KiB with iterations ≥ 2"), "{err}");
    }
}
