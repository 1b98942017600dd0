//! Black-box test harness: real PostgreSQL (a fresh database per test), real RabbitMQ (queue
//! and exchange names per test), auth-svc replicas and the gateway started in-process on
//! ephemeral ports, driven over real HTTP.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use auth_svc::Application as AuthSvc;
use authstack_bus::{CancellationToken, Names};
use authstack_keyring::layout::write_atomic;
use authstack_keyring::material::generate;
use authstack_keyring::{KEYRING_FILE, KeyRing, SigningAlgorithm};
use authstack_protocol::broker::Component;
use authstack_testkit::broker::component_url;
use authstack_testkit::cleanup::CleanupGuard;
use authstack_testkit::postgres::TestDatabase;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The real broker's administrator: only for inspecting and deleting a test's queues.
pub fn amqp_url() -> String {
    authstack_testkit::broker::admin_url()
}

/// The broker's TCP address (for proxies).
pub fn broker_addr() -> SocketAddr {
    authstack_testkit::broker::broker_addr()
}

/// Knobs a test may turn.
#[derive(Clone)]
pub struct Options {
    /// auth-svc replicas.
    pub replicas: usize,
    /// Where auth-svc and the gateway reach the broker (e.g. through a proxy); each connects
    /// with its own least-privilege broker user.
    pub broker: SocketAddr,
    /// Gateway RPC deadline.
    pub rpc_timeout_ms: u64,
    /// Account lockout threshold.
    pub lockout_threshold: u32,
    /// Lockout duration in seconds.
    pub lockout_duration: u64,
    /// Failed logins per client address before it is locked.
    pub address_lockout_threshold: u32,
    /// Refresh reuse grace in seconds.
    pub reuse_grace: u64,
    /// Signing algorithm of the key ring.
    pub algorithm: SigningAlgorithm,
    /// Gateway body limit.
    pub max_body_bytes: usize,
    /// Trust `X-Forwarded-For` from 127.0.0.1 (tests that play several clients).
    pub trust_forwarded_for: bool,
    /// Any other auth-svc setting a test needs (applied last).
    pub tweak_auth: Option<fn(&mut auth_svc::Config)>,
    /// Last word on the gateway's configuration (timeouts, proxies, limits).
    pub gateway_config: fn(&mut gateway::Config),
}

impl Default for Options {
    fn default() -> Self {
        Options {
            replicas: 2,
            broker: broker_addr(),
            rpc_timeout_ms: 5000,
            lockout_threshold: 5,
            lockout_duration: 60,
            address_lockout_threshold: 50,
            reuse_grace: 0,
            algorithm: SigningAlgorithm::EdDSA,
            max_body_bytes: 16 * 1024,
            trust_forwarded_for: false,
            tweak_auth: None,
            gateway_config: |_| {},
        }
    }
}

/// One auth-svc replica running in this process.
pub struct Replica {
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
    pub health: SocketAddr,
}

/// A running platform.
pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    cleanup: Option<CleanupGuard>,
    pub database_url: String,
    pub key_dir: tempfile::TempDir,
    pub ring: KeyRing,
    pub names: Names,
    pub queue: String,
    pub exchange: String,
    pub options: Options,
    pub replicas: Vec<Replica>,
    pub gateway_shutdown: CancellationToken,
    pub gateway: gateway::state::AppState,
    /// The gateway's metrics URL (its separate listener).
    pub metrics: String,
}

/// Notes the passwords and tokens in a request or response body for the log scan.
pub fn record_secrets(body: &Value) {
    for key in [
        "password",
        "current_password",
        "new_password",
        "refresh_token",
        "access_token",
    ] {
        if let Some(secret) = body[key].as_str() {
            authstack_testkit::logs::record_secret(secret);
        }
    }
}

/// The response of a request: status, headers and JSON body (Null when empty).
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    /// The `error.code` of an error body.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    /// Asserts an error response of the given status and code, with the request id echoed.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert_eq!(self.code(), code, "body: {}", self.body);
        let rid = self
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(!rid.is_empty(), "missing x-request-id");
        assert_eq!(
            self.body["error"]["request_id"], rid,
            "request id must be in the body"
        );
        assert!(
            self.body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
}

pub fn write_ring(dir: &std::path::Path, ring: &KeyRing) {
    write_atomic(
        dir,
        &BTreeMap::from([(KEYRING_FILE.to_string(), ring.to_json())]),
    )
    .unwrap();
}

impl TestApp {
    /// A platform whose services reach the broker through a cuttable proxy.
    pub async fn behind(proxy: &authstack_testkit::tcp_proxy::TcpProxy) -> TestApp {
        TestApp::spawn_with(Options {
            broker: proxy.addr(),
            ..Options::default()
        })
        .await
    }

    pub async fn spawn() -> TestApp {
        TestApp::spawn_with(Options::default()).await
    }

    pub async fn spawn_with(options: Options) -> TestApp {
        authstack_testkit::logs::capture();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let database = TestDatabase::create().await.expect("postgres reachable");
        let database_url = database.url.clone();
        let key_dir = tempfile::tempdir().unwrap();
        let ring =
            KeyRing::with_active_key(generate(options.algorithm).unwrap(), chrono::Utc::now());
        write_ring(key_dir.path(), &ring);
        let names = Names::scoped(&format!("t{id}"));
        let (queue, exchange) = (names.rpc_queue.clone(), names.events_exchange.clone());
        let cleanup = {
            let names = names.clone();
            CleanupGuard::new(async move {
                let _ = database.drop_database().await;
                let _ = authstack_bus::delete_names(&amqp_url(), &names).await;
            })
        };
        let gateway_shutdown = CancellationToken::new();

        // The gateway first, so its port (and so the issuer) is known.
        let mut gw_config = gateway::Config::with_defaults();
        gw_config.listen = "127.0.0.1:0".parse().unwrap();
        gw_config.metrics_listen = "127.0.0.1:0".parse().unwrap();
        gw_config.broker.amqp_url = component_url(Component::Gateway, options.broker);
        gw_config.broker.set_names(names.clone());
        gw_config.rpc_timeout_ms = options.rpc_timeout_ms;
        gw_config.max_body_bytes = options.max_body_bytes;
        gw_config.issuer = "http://authstack.test".into();
        gw_config.unknown_kid_refresh_ms = 200;
        if options.trust_forwarded_for {
            gw_config.trusted_proxies =
                gateway::client_ip::ProxyList(vec!["127.0.0.1/32".parse().unwrap()]);
        }
        (options.gateway_config)(&mut gw_config);
        let gw = gateway::Application::build(gw_config, gateway_shutdown.clone())
            .await
            .unwrap();
        let base = format!("http://{}", gw.addr());
        let metrics = format!("http://{}/metrics", gw.metrics_addr());
        let state = gw.state();
        tokio::spawn(async move {
            let _ = gw.run_until_stopped().await;
        });

        let mut app = TestApp {
            base,
            http: authstack_testkit::http::client(),
            cleanup: Some(cleanup),
            database_url,
            key_dir,
            ring,
            names,
            queue,
            exchange,
            metrics,
            options: options.clone(),
            replicas: Vec::new(),
            gateway_shutdown,
            gateway: state,
        };
        for i in 0..options.replicas {
            app.add_replica(&format!("auth-svc-{i}")).await;
        }
        app.wait_ready().await;
        app
    }

    pub fn auth_config(&self, name: &str) -> auth_svc::Config {
        let mut c =
            auth_svc::Config::with_defaults(&self.database_url, self.key_dir.path().to_path_buf());
        c.broker.amqp_url = component_url(Component::AuthSvc, self.options.broker);
        c.broker.set_names(self.names.clone());
        c.issuer = "http://authstack.test".into();
        c.http_listen = "127.0.0.1:0".parse().unwrap();
        c.lockout_threshold = self.options.lockout_threshold;
        c.lockout_duration = self.options.lockout_duration;
        c.address_lockout_threshold = self.options.address_lockout_threshold;
        c.refresh_reuse_grace = self.options.reuse_grace;
        c.key_poll_ms = 200;
        c.instance_name = name.into();
        c.db_max_connections = 8;
        if let Some(tweak) = self.options.tweak_auth {
            tweak(&mut c);
        }
        c
    }

    /// Starts one more auth-svc replica.
    pub async fn add_replica(&mut self, name: &str) {
        let shutdown = CancellationToken::new();
        let svc = AuthSvc::build(self.auth_config(name), shutdown.clone())
            .await
            .unwrap();
        let health = svc.http_addr();
        let task = tokio::spawn(svc.run_until_stopped());
        self.replicas.push(Replica {
            shutdown,
            task,
            health,
        });
    }

    /// Stops replica `i` gracefully and waits for it.
    pub async fn stop_replica(&mut self, i: usize) {
        let r = self.replicas.remove(i);
        r.shutdown.cancel();
        let _ = r.task.await;
    }

    /// Waits until the gateway is ready and sees an auth-svc consumer.
    pub async fn wait_ready(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let ready = self
                .http
                .get(format!("{}/readyz", self.base))
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            if ready && (self.replicas.is_empty() || self.gateway.rpc.has_consumers()) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "platform did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the broker's consumer count, as the gateway last read it (every half second),
    /// covers every running replica: [`Self::wait_ready`] waits for the first one only.
    pub async fn wait_for_every_replica(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while (self.gateway.rpc.consumers() as usize) < self.replicas.len() {
            assert!(
                std::time::Instant::now() < deadline,
                "the gateway saw {} consumers for {} replicas",
                self.gateway.rpc.consumers(),
                self.replicas.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends a request with an optional JSON body and bearer token.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> Reply {
        let mut req = self.http.request(method, self.url(path));
        if let Some(b) = body {
            record_secrets(&b);
            req = req.json(&b);
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.unwrap();
        let reply = Reply::from(res).await;
        record_secrets(&reply.body);
        reply
    }

    pub async fn post(&self, path: &str, body: Value, token: Option<&str>) -> Reply {
        self.send(Method::POST, path, Some(body), token).await
    }

    /// POSTs as if from client address `addr` (needs `Options::trust_forwarded_for`).
    pub async fn post_from(&self, addr: &str, path: &str, body: Value) -> Reply {
        let res = self
            .http
            .post(self.url(path))
            .header("x-forwarded-for", addr)
            .json(&body)
            .send()
            .await
            .unwrap();
        Reply::from(res).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(Method::GET, path, None, token).await
    }

    /// Registers `name` (email `name@example.com`) with `password`; asserts 201.
    pub async fn register(&self, name: &str, password: &str) -> Value {
        let r = self
            .post(
                "/api/v1/auth/register",
                json!({"email": format!("{name}@example.com"), "username": name, "password": password}),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "register {name}: {}", r.body);
        r.body
    }

    /// Logs in; asserts 200 and returns the token pair.
    pub async fn login(&self, login: &str, password: &str) -> Value {
        let r = self
            .post(
                "/api/v1/auth/login",
                json!({"login": login, "password": password}),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "login {login}: {}", r.body);
        r.body
    }

    /// Registers and logs in a user; returns (account, access token, refresh token).
    pub async fn user(&self, name: &str) -> (Value, String, String) {
        let account = self.register(name, "correct horse battery").await;
        let pair = self.login(name, "correct horse battery").await;
        (
            account,
            pair["access_token"].as_str().unwrap().to_owned(),
            pair["refresh_token"].as_str().unwrap().to_owned(),
        )
    }

    /// A user with the admin role (granted the way an operator would, then logged in again).
    pub async fn admin(&self, name: &str) -> (Value, String) {
        let account = self.register(name, "correct horse battery").await;
        let pool = sqlx::PgPool::connect(&self.database_url).await.unwrap();
        auth_svc::admin::grant_role(&pool, name, "admin")
            .await
            .unwrap()
            .unwrap();
        pool.close().await;
        let pair = self.login(name, "correct horse battery").await;
        (account, pair["access_token"].as_str().unwrap().to_owned())
    }

    /// A pool on the test database.
    pub async fn pool(&self) -> sqlx::PgPool {
        sqlx::PgPool::connect(&self.database_url).await.unwrap()
    }

    /// Stops everything and drops the database and the RPC queue.
    pub async fn teardown(mut self) {
        while !self.replicas.is_empty() {
            self.stop_replica(0).await;
        }
        self.gateway_shutdown.cancel();
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Some(cleanup) = self.cleanup.take() {
            cleanup.run().await;
        }
    }
}

impl Reply {
    pub async fn from(res: reqwest::Response) -> Reply {
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Reply {
            status,
            headers,
            body,
        }
    }
}

/// Signs arbitrary claims with the active key of `ring` (to forge expired tokens and the like).
pub fn sign_with(ring: &KeyRing, claims: &Value) -> String {
    authstack_keyring::jwt::TokenSigner::for_active_key(ring)
        .unwrap()
        .sign(claims)
        .unwrap()
}

pub fn key_dir_path(app: &TestApp) -> PathBuf {
    app.key_dir.path().to_path_buf()
}

/// Access-token claims for this test platform (`iss`/`aud` as the services expect).
pub fn claims_for(sub: &str, sid: &str, roles: &[&str], exp_offset: i64) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({
        "iss": "http://authstack.test", "aud": "authstack", "sub": sub, "sid": sid,
        "exp": now + exp_offset, "iat": now, "nbf": now, "jti": uuid::Uuid::new_v4(),
        "roles": roles,
    })
}

/// A token signed by an attacker's own Ed25519 key with `jsonwebtoken` directly (not our
/// signer), under `kid` (the attacker's own kid when `None`). Returns the token and the key.
pub fn attacker_token(
    claims: &Value,
    kid: Option<&str>,
) -> (String, authstack_keyring::KeyMaterial) {
    let key = generate(SigningAlgorithm::EdDSA).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.typ = Some("at+jwt".into());
    header.kid = Some(kid.unwrap_or(&key.kid).to_owned());
    let encoding = jsonwebtoken::EncodingKey::from_ed_pem(key.private_key_pem.as_bytes()).unwrap();
    (
        jsonwebtoken::encode(&header, claims, &encoding).unwrap(),
        key,
    )
}

/// A connection to the broker with the gateway's own (least-privilege) credentials: what an
/// attacker who took over a gateway pod holds.
pub async fn gateway_broker_connection() -> lapin::Connection {
    lapin::Connection::connect(
        &component_url(Component::Gateway, broker_addr()),
        lapin::ConnectionProperties::default(),
    )
    .await
    .expect("the gateway's broker user connects")
}

/// Sends a raw RPC request (`body`, any JSON) to auth-svc as the gateway user would — through
/// the request exchange, replies on a private queue — and returns the reply as JSON.
pub async fn raw_rpc(app: &TestApp, conn: &lapin::Connection, body: &Value) -> Value {
    use futures::StreamExt;
    let channel = conn.create_channel().await.unwrap();
    let queue = channel
        .queue_declare(
            "".into(),
            lapin::options::QueueDeclareOptions::exclusive().auto_delete(),
            lapin::types::FieldTable::default(),
        )
        .await
        .unwrap();
    let mut replies = channel
        .basic_consume(
            queue.name().clone(),
            "".into(),
            lapin::options::BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await
        .unwrap();
    let props = lapin::BasicProperties::default()
        .with_reply_to(queue.name().clone())
        .with_correlation_id("1".into())
        .with_message_id(uuid::Uuid::new_v4().to_string().into());
    channel
        .basic_publish(
            app.names.rpc_exchange.as_str().into(),
            app.names.rpc_queue.as_str().into(),
            lapin::options::BasicPublishOptions::default(),
            &serde_json::to_vec(body).unwrap(),
            props,
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(10), replies.next())
        .await
        .expect("auth-svc answered")
        .unwrap()
        .unwrap();
    serde_json::from_slice(&delivery.data).unwrap()
}
