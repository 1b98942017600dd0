//! Wiring: RPC client, event subscription, key manager, deny list, token cache, the HTTP server
//! and the metrics listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use authstack_bus::{CancellationToken, EventSubscriber, RpcClient, RpcClientConfig};
use authstack_http::server;
use authstack_keyring::jwt::Expectations;
use futures::future::BoxFuture;

use crate::client_ip::TrustedProxies;
use crate::config::Config;
use crate::keys::KeyManager;
use crate::request_id::RequestIds;
use crate::revocations::DenyList;
use crate::state::{AppState, StateInner};
use crate::token_cache::TokenCache;

/// Connections the kernel queues for `accept` (at the connection limit, clients wait here).
const LISTEN_BACKLOG: u32 = 1024;

/// Binds the API listener; accepted connections inherit its send buffer size (0: autotuned).
fn bind(addr: SocketAddr, send_buffer_bytes: u32) -> std::io::Result<tokio::net::TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    if send_buffer_bytes > 0 {
        socket.set_send_buffer_size(send_buffer_bytes)?;
    }
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// How often the RPC client checks that an auth-svc replica consumes the request queue
/// (`/readyz` turns unready within this after the last replica went away).
const CONSUMER_CHECK_INTERVAL: Duration = Duration::from_millis(500);
/// How often expired entries leave the deny list (they are refused by expiry anyway).
const DENY_LIST_PURGE_INTERVAL: Duration = Duration::from_secs(30);

/// A started gateway.
pub struct Application {
    addr: SocketAddr,
    metrics_addr: SocketAddr,
    state: AppState,
    serve: BoxFuture<'static, std::io::Result<()>>,
}

impl Application {
    /// Binds the listeners and starts the background connections.
    pub async fn build(config: Config, shutdown: CancellationToken) -> std::io::Result<Self> {
        let metrics = authstack_telemetry::metrics();
        let broker = &config.broker;
        let rpc = RpcClient::start(
            RpcClientConfig {
                url: broker.amqp_url.clone(),
                names: broker.names(),
                max_message_bytes: broker.max_message_bytes as usize,
                connection_name: format!("{}-rpc", config.instance_name),
                consumer_check_interval: CONSUMER_CHECK_INTERVAL,
                reply_mode: config.rpc_reply_mode,
                batching: authstack_bus::Batching {
                    max_calls: config.rpc_max_batch,
                    max_messages_in_flight: config.rpc_max_messages_in_flight,
                    max_linger: Duration::from_millis(config.rpc_batch_linger_ms),
                },
            },
            shutdown.clone(),
        );
        // One subscription to every event for the whole process; keys, the deny list and the
        // WebSocket hub each take a receiver of the in-process fan-out.
        let events = EventSubscriber::start(
            broker.amqp_url.clone(),
            broker.events_exchange.clone(),
            vec!["#".to_owned()],
            format!("{}-events", config.instance_name),
            broker.max_message_bytes as usize,
            shutdown.clone(),
        );
        let leeway = config.clock_skew_secs;
        let keys = KeyManager::new(
            rpc.clone(),
            Expectations {
                issuer: config.issuer.clone(),
                audience: config.audience.clone(),
                leeway_secs: leeway,
            },
            config.rpc_timeout(),
            Duration::from_millis(config.unknown_kid_refresh_ms),
        );
        keys.clone().spawn_background(
            &events,
            Duration::from_secs(config.key_refresh_secs.max(1)),
            shutdown.clone(),
        );
        let revocations = Arc::new(DenyList::new(
            config.deny_list_capacity as usize,
            leeway as i64,
        ));
        revocations
            .clone()
            .spawn(&events, DENY_LIST_PURGE_INTERVAL, shutdown.clone());
        let ws = crate::ws_hub::Hub::new(revocations.clone());
        ws.clone().spawn(&events, keys.clone(), shutdown.clone());
        let state = AppState(Arc::new(StateInner {
            ws,
            ws_slots: Arc::new(tokio::sync::Semaphore::new(config.ws_max_sockets as usize)),
            shutdown: shutdown.clone(),
            tokens: TokenCache::new(config.token_cache_capacity),
            leeway_secs: leeway as i64,
            request_ids: RequestIds::default(),
            proxies: TrustedProxies::new(
                config.trusted_proxies.0.clone(),
                config.trusted_proxy_hops,
            ),
            revocations,
            events,
            rpc,
            keys,
            metrics,
            http_metrics: Default::default(),
            config,
        }));

        let metrics_listener = tokio::net::TcpListener::bind(state.config.metrics_listen).await?;
        let metrics_addr = metrics_listener.local_addr()?;
        let metrics_app = crate::routes::metrics_router(state.clone());
        let metrics_shutdown = shutdown.clone();
        tokio::spawn(async move {
            let serve = axum::serve(metrics_listener, metrics_app)
                .with_graceful_shutdown(async move { metrics_shutdown.cancelled().await });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "metrics listener failed");
            }
        });

        let listener = bind(state.config.listen, state.config.socket_send_buffer_bytes)?;
        let addr = listener.local_addr()?;
        let router = crate::routes::router(state.clone());
        let serve = server::serve(listener, router, state.config.server_limits(), shutdown);
        tracing::info!(%addr, %metrics_addr, "gateway listening");
        Ok(Application {
            addr,
            metrics_addr,
            state,
            serve: Box::pin(serve),
        })
    }

    /// The bound address of the API.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound address of the metrics listener.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
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
