//! Wiring: database and migrations, JWKS keys, the live listener and the HTTP server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use authstack_keyring::jwt::Expectations;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::keys::JwksKeys;
use crate::live::{self, Hub};
use crate::state::{AppState, StateInner};
use crate::{db, tls};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The database URL is malformed or the database is unreachable.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The migrations failed.
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    /// The listen address is taken.
    #[error("listening: {0}")]
    Listen(#[from] std::io::Error),
}

/// A started chat service (listening; requests are served by [`Application::run_until_stopped`]).
pub struct Application {
    listener: tokio::net::TcpListener,
    state: AppState,
}

impl Application {
    /// Migrates the database (retrying for up to 60 s while it starts), binds the listener and
    /// starts the background tasks.
    pub async fn build(config: Config, shutdown: CancellationToken) -> Result<Self, StartupError> {
        let pool = db::pool(&config.database_url, config.db_max_connections)?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            match db::migrate(&pool).await {
                Ok(()) => break,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::warn!(error = %e, "database not ready yet; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(config.gateway_timeout())
            .build()?;
        let keys = JwksKeys::new(
            http.clone(),
            config.jwks_url(),
            Expectations {
                issuer: config.issuer.clone(),
                audience: config.audience.clone(),
                leeway_secs: config.clock_skew_secs,
            },
            Duration::from_millis(config.unknown_kid_refresh_ms),
        );
        keys.clone().spawn_refresher(
            Duration::from_secs(config.key_refresh_secs),
            shutdown.clone(),
        );
        let hub = Hub::new(config.live_buffer as usize);
        live::spawn_listener(pool.clone(), hub.clone(), shutdown.clone());
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let state = Arc::new(StateInner {
            config,
            pool,
            keys,
            hub,
            http,
            metrics: authstack_telemetry::metrics(),
            shutdown,
        });
        tracing::info!(addr = %listener.local_addr()?, "chat service listening");
        Ok(Application { listener, state })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| self.state.config.listen)
    }

    /// Shared state (tests look at it).
    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serves until the shutdown token is cancelled (with the limits and timeouts of
    /// `authstack_http::server`); live sockets close with 1001.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let shutdown = self.state.shutdown.clone();
        let limits = self.state.config.server_limits();
        let router = crate::routes::router(self.state);
        authstack_http::server::serve(self.listener, router, limits, shutdown).await
    }
}
