//! Wiring: database, key ring, event publisher, RPC server, probes and housekeeping.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use authstack_bus::{CancellationToken, EventPublisher, RpcServer, RpcServerConfig};
use authstack_keyring::watch::WatchOptions;
use futures::future::BoxFuture;
use sqlx::PgPool;

use crate::config::Config;
use crate::keys::KeyStore;
use crate::outbox::{RelayConfig, RelaySignal};
use crate::passwords::PasswordHasherPool;
use crate::policy::Policy;
use crate::service::{AuthService, ServiceSettings};
use crate::throttle::ThrottlePolicy;
use crate::tokens::AccessTokenSettings;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The configuration must not run.
    #[error("configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    /// PostgreSQL connection or migration failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The argon2 parameters are invalid.
    #[error("password hashing parameters: {0}")]
    Hashing(#[from] crate::passwords::HashError),
    /// The key ring could not be used.
    #[error("key ring: {0}")]
    Keys(#[from] authstack_keyring::KeyringError),
    /// The probe listener could not bind.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// The access policy file is unreadable.
    #[error("access policy: {0}")]
    Policy(String),
}

/// How long start-up waits for PostgreSQL to accept connections (it may start after us).
const DATABASE_WAIT_AT_STARTUP: Duration = Duration::from_secs(60);

/// A started auth-svc replica.
pub struct Application {
    http_addr: SocketAddr,
    pool: PgPool,
    server: RpcServer,
    shutdown: CancellationToken,
    run: BoxFuture<'static, ()>,
}

impl Application {
    /// Connects, migrates, loads the key ring and starts consuming RPC requests.
    pub async fn build(config: Config, shutdown: CancellationToken) -> Result<Self, StartupError> {
        config.check()?;
        let metrics = authstack_telemetry::metrics();
        let pool = crate::db::connect_and_migrate(
            &config.database_url,
            config.db_max_connections,
            DATABASE_WAIT_AT_STARTUP,
        )
        .await?;
        let hasher = PasswordHasherPool::new(
            config.argon2_memory_kib,
            config.argon2_iterations,
            config.argon2_parallelism,
            config.hashing_concurrency(),
            config.hashing_queue,
        )?;
        let policy = match &config.policy_file {
            Some(path) => Policy::from_file(path).map_err(StartupError::Policy)?,
            None => Policy::default(),
        };
        // Key-ring announcements are not state changes in the database: published directly.
        let events = EventPublisher::start(
            config.broker.amqp_url.clone(),
            config.broker.events_exchange.clone(),
            format!("{}-events", config.instance_name),
            10_000,
            shutdown.clone(),
        );
        let keys = KeyStore::start(
            config.key_dir.clone(),
            WatchOptions {
                poll_interval: Duration::from_millis(config.key_poll_ms.max(50)),
                notifications: true,
            },
            events.clone(),
        )
        .await?;
        let settings = ServiceSettings {
            tokens: AccessTokenSettings {
                issuer: config.issuer.clone(),
                audience: config.audience.clone(),
                ttl_secs: config.access_token_ttl,
            },
            refresh_ttl: Duration::from_secs(config.refresh_token_ttl),
            reuse_grace: Duration::from_secs(config.refresh_reuse_grace),
            session_max_lifetime: Duration::from_secs(config.session_max_lifetime),
            throttle: ThrottlePolicy {
                pair_threshold: config.lockout_threshold,
                lock: Duration::from_secs(config.lockout_duration),
                window: Duration::from_secs(config.lockout_window),
                account_backoff_threshold: config.account_backoff_threshold,
                account_backoff_max: Duration::from_secs(config.account_backoff_max),
                address_delay_threshold: config.address_lockout_threshold,
                address_delay_max: Duration::from_millis(config.address_delay_max_ms),
                login_rate: config.login_rate_per_address,
                register_rate: config.register_rate_per_address,
            },
            clock_skew_secs: config.clock_skew_secs,
            token_cache_capacity: config.token_cache_capacity,
            processed_request_retention: Duration::from_secs(
                config.processed_request_retention_secs,
            ),
            ended_retention: Duration::from_secs(config.ended_retention_secs),
        };
        let relay = RelaySignal::default();
        if config.outbox_relay {
            crate::outbox::spawn_relay(
                pool.clone(),
                RelayConfig {
                    url: config.broker.amqp_url.clone(),
                    exchange: config.broker.events_exchange.clone(),
                    connection_name: format!("{}-outbox", config.instance_name),
                    poll: Duration::from_millis(config.outbox_poll_ms),
                },
                relay.clone(),
                shutdown.clone(),
            );
        }
        let service = AuthService::new(pool.clone(), hasher, keys, settings, policy, relay);
        spawn_housekeeping(
            service.clone(),
            Duration::from_secs(config.housekeeping_interval_secs),
            shutdown.clone(),
        );
        let (server, run) = RpcServer::start(
            RpcServerConfig {
                url: config.broker.amqp_url.clone(),
                names: config.broker.names(),
                max_message_bytes: config.broker.max_message_bytes as usize,
                connection_name: config.instance_name.clone(),
                prefetch: config.rpc_prefetch,
            },
            service,
            shutdown.clone(),
        );
        let listener = tokio::net::TcpListener::bind(config.http_listen)
            .await
            .map_err(|source| StartupError::Bind {
                addr: config.http_listen,
                source,
            })?;
        let http_addr = listener.local_addr().map_err(|source| StartupError::Bind {
            addr: config.http_listen,
            source,
        })?;
        let app = crate::health::router(pool.clone(), server.clone(), metrics);
        let http_shutdown = shutdown.clone();
        tokio::spawn(async move {
            let serve = axum::serve(listener, app)
                .with_graceful_shutdown(async move { http_shutdown.cancelled().await });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "probe server failed");
            }
        });
        tracing::info!(%http_addr, queue = %config.broker.rpc_queue, "auth-svc started");
        Ok(Application {
            http_addr,
            pool,
            server,
            shutdown,
            run: Box::pin(run),
        })
    }

    /// Address of the probe and metrics server.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The database pool (for tests and tools).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Whether the RPC server is consuming.
    pub fn is_consuming(&self) -> bool {
        self.server.is_consuming()
    }

    /// The token that stops this replica.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Runs until the shutdown token is cancelled and in-flight requests are answered.
    pub async fn run_until_stopped(self) {
        // On a runtime worker, not on the thread that awaits this (the binary's main thread,
        // outside the worker pool): each delivery then hands its request to a worker of the same
        // pool instead of waking another thread twice per request (measured in
        // docs/performance.md).
        if let Err(e) = tokio::spawn(self.run).await
            && e.is_panic()
        {
            // As if it had run here: a panic still ends the process as a failure.
            std::panic::resume_unwind(e.into_panic());
        }
        self.pool.close().await;
    }
}

/// Every `interval`, deletes bookkeeping that can no longer matter
/// ([`AuthService::purge_expired`]).
fn spawn_housekeeping(service: Arc<AuthService>, interval: Duration, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => match service.purge_expired().await {
                    Ok(n) if n > 0 => tracing::info!(rows = n, "purged expired bookkeeping"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "housekeeping failed"),
                },
            }
        }
    });
}
