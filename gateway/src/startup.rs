//! Wiring: RPC client, event subscriber, key manager, token cache and the HTTP server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use authstack_bus::{CancellationToken, EventSubscriber, RpcClient, RpcClientConfig};
use authstack_keyring::jwt::Expectations;
use futures::future::BoxFuture;

use crate::auth::TokenCache;
use crate::config::Config;
use crate::keys::KeyManager;
use crate::middleware::RequestIds;
use crate::state::{AppState, StateInner};

/// A started gateway.
pub struct Application {
    addr: SocketAddr,
    state: AppState,
    serve: BoxFuture<'static, std::io::Result<()>>,
}

impl Application {
    /// Binds the listener and starts the background connections.
    pub async fn build(config: Config, shutdown: CancellationToken) -> std::io::Result<Self> {
        let metrics = authstack_telemetry::metrics();
        let rpc = RpcClient::start(
            RpcClientConfig {
                url: config.broker.amqp_url.clone(),
                queue: config.broker.rpc_queue.clone(),
                connection_name: format!("{}-rpc", config.instance_name),
                consumer_check_interval: Duration::from_millis(500),
                reply_mode: config.rpc_reply_mode,
            },
            shutdown.clone(),
        );
        let events = EventSubscriber::start(
            config.broker.amqp_url.clone(),
            config.broker.events_exchange.clone(),
            vec!["keys.*".to_owned()],
            format!("{}-events", config.instance_name),
            shutdown.clone(),
        );
        let keys = KeyManager::new(
            rpc.clone(),
            Expectations {
                issuer: config.issuer.clone(),
                audience: config.audience.clone(),
                leeway_secs: config.clock_skew_secs,
            },
            config.rpc_timeout(),
            Duration::from_millis(config.unknown_kid_refresh_ms),
        );
        keys.clone().spawn_background(
            events,
            Duration::from_secs(config.key_refresh_secs.max(1)),
            shutdown.clone(),
        );
        let state = AppState(Arc::new(StateInner {
            tokens: TokenCache::new(config.token_cache_capacity),
            leeway_secs: config.clock_skew_secs as i64,
            request_ids: RequestIds::default(),
            rpc,
            keys,
            metrics,
            config,
        }));
        let listener = tokio::net::TcpListener::bind(state.config.listen).await?;
        let addr = listener.local_addr()?;
        let app = crate::routes::router(state.clone())
            .into_make_service_with_connect_info::<SocketAddr>();
        let serve = async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await
        };
        tracing::info!(%addr, "gateway listening");
        Ok(Application {
            addr,
            state,
            serve: Box::pin(serve),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Shared state (tests inspect readiness through it).
    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serves until the shutdown token is cancelled; in-flight requests complete.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.serve.await
    }
}
