//! The whole platform in this process, for black-box tests of its clients (the CLI, the chat
//! service): a fresh PostgreSQL database, RabbitMQ queue and exchange names of its own (each
//! service connects with its own least-privilege broker user), a key
//! ring in a temporary directory, one auth-svc, the gateway and the chat service, each on an
//! ephemeral loopback port. Everything is removed by [`Platform::teardown`], or when a test
//! panics, by the clean-up guard.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use authstack_bus::{CancellationToken, Names};
use authstack_keyring::layout::write_atomic;
use authstack_keyring::material::generate;
use authstack_keyring::rotation::{self, RotationPolicy, RotationRequest};
use authstack_keyring::{KEYRING_FILE, KeyRing, KeyState, SigningAlgorithm};
use authstack_protocol::broker::Component;
use authstack_testkit::broker::{admin_url, broker_addr, component_url};
use authstack_testkit::cleanup::CleanupGuard;
use authstack_testkit::postgres::TestDatabase;
use serde_json::{Value, json};

/// The password of every user made by [`Platform::user`].
pub const PASSWORD: &str = "correct horse battery";
/// The `iss` of the platform's tokens.
pub const ISSUER: &str = "http://authstack.test";

/// Knobs a test may turn.
#[derive(Clone, Debug)]
pub struct Options {
    /// Access-token lifetime in seconds.
    pub access_token_ttl: u64,
    /// Clock skew the gateway and the chat service allow on `exp`.
    pub clock_skew_secs: u64,
    /// The chat service's periodic JWKS refresh, in seconds.
    pub chat_key_refresh_secs: u64,
    /// The chat service's header read timeout, in milliseconds.
    pub chat_header_read_timeout_ms: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            access_token_ttl: 900,
            clock_skew_secs: 30,
            chat_key_refresh_secs: 60,
            chat_header_read_timeout_ms: 10_000,
        }
    }
}

/// A running platform.
pub struct Platform {
    /// Base URL of the gateway.
    pub gateway_url: String,
    /// Base URL of the chat service.
    pub chat_url: String,
    /// The test database.
    pub database_url: String,
    /// An HTTP client for the test's own calls.
    pub http: reqwest::Client,
    key_dir: tempfile::TempDir,
    ring: KeyRing,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    cleanup: Option<CleanupGuard>,
}

impl Platform {
    /// Starts everything with default options.
    pub async fn start() -> Platform {
        Platform::start_with(Options::default()).await
    }

    /// Starts everything and waits until the gateway and the chat service are ready.
    pub async fn start_with(options: Options) -> Platform {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let database = TestDatabase::create().await.expect("PostgreSQL reachable");
        let database_url = database.url.clone();
        let names = Names::scoped(&format!("t{id}"));
        let cleanup = {
            let names = names.clone();
            CleanupGuard::new(async move {
                let _ = database.drop_database().await;
                let _ = authstack_bus::delete_names(&admin_url(), &names).await;
            })
        };
        let key_dir = tempfile::tempdir().expect("temporary directory");
        let ring = KeyRing::with_active_key(
            generate(SigningAlgorithm::EdDSA).expect("key generation"),
            chrono::Utc::now(),
        );
        write_ring(key_dir.path(), &ring);
        let shutdown = CancellationToken::new();
        let mut tasks = Vec::new();

        let mut gw = gateway::Config::with_defaults();
        gw.listen = "127.0.0.1:0".parse().expect("address");
        gw.metrics_listen = "127.0.0.1:0".parse().expect("address");
        // Each component with its own least-privilege broker user, as deployed.
        gw.broker.amqp_url = component_url(Component::Gateway, broker_addr());
        gw.broker.set_names(names.clone());
        gw.issuer = ISSUER.into();
        gw.clock_skew_secs = options.clock_skew_secs;
        gw.unknown_kid_refresh_ms = 200;
        let gw = gateway::Application::build(gw, shutdown.clone())
            .await
            .expect("gateway starts");
        let gateway_url = format!("http://{}", gw.addr());
        tasks.push(tokio::spawn(async move {
            let _ = gw.run_until_stopped().await;
        }));

        let mut auth = auth_svc::Config::with_defaults(&database_url, key_dir.path().into());
        auth.broker.amqp_url = component_url(Component::AuthSvc, broker_addr());
        auth.broker.set_names(names);
        auth.issuer = ISSUER.into();
        auth.http_listen = "127.0.0.1:0".parse().expect("address");
        auth.access_token_ttl = options.access_token_ttl;
        auth.key_poll_ms = 200;
        auth.db_max_connections = 4;
        let auth = auth_svc::Application::build(auth, shutdown.clone())
            .await
            .expect("auth-svc starts");
        tasks.push(tokio::spawn(auth.run_until_stopped()));

        let mut chat = authstack_chat::Config::with_defaults(&database_url);
        chat.listen = "127.0.0.1:0".parse().expect("address");
        chat.authstack_url = gateway_url.clone();
        chat.issuer = ISSUER.into();
        chat.clock_skew_secs = options.clock_skew_secs;
        chat.key_refresh_secs = options.chat_key_refresh_secs;
        chat.header_read_timeout_ms = options.chat_header_read_timeout_ms;
        chat.unknown_kid_refresh_ms = 200;
        chat.db_max_connections = 4;
        let chat = authstack_chat::Application::build(chat, shutdown.clone())
            .await
            .expect("chat service starts");
        let chat_url = format!("http://{}", chat.addr());
        tasks.push(tokio::spawn(async move {
            let _ = chat.run_until_stopped().await;
        }));

        let platform = Platform {
            gateway_url,
            chat_url,
            database_url,
            http: authstack_testkit::http::client(),
            key_dir,
            ring,
            shutdown,
            tasks,
            cleanup: Some(cleanup),
        };
        platform.wait_ready().await;
        platform
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        // Ready = both probes answer 200 and a login reaches auth-svc (400 for an empty body,
        // not 503 while no consumer is attached yet).
        loop {
            let gateway = self.status("GET", &self.gateway_url, "/readyz", None).await;
            let chat = self.status("GET", &self.chat_url, "/readyz", None).await;
            let rpc = self
                .status(
                    "POST",
                    &self.gateway_url,
                    "/api/v1/auth/login",
                    Some(json!({})),
                )
                .await;
            if gateway == 200 && chat == 200 && rpc == 400 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "platform not ready: gateway {gateway}, chat {chat}, login {rpc}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn status(&self, method: &str, base: &str, path: &str, body: Option<Value>) -> u16 {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.http.request(method, format!("{base}{path}"));
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.map_or(0, |r| r.status().as_u16())
    }

    /// Calls the gateway; answers the status and the JSON body (Null when empty).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.gateway_url));
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("gateway answers");
        let status = response.status().as_u16();
        let bytes = response.bytes().await.expect("body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// Registers `name` (email `name@example.com`, password [`PASSWORD`]) and logs in; answers
    /// the access token.
    pub async fn user(&self, name: &str) -> String {
        let account =
            json!({"email": format!("{name}@example.com"), "username": name, "password": PASSWORD});
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                "/api/v1/auth/register",
                Some(account),
                None,
            )
            .await;
        assert_eq!(status, 201, "register {name}: {body}");
        self.login(name).await
    }

    /// Logs `name` in with [`PASSWORD`]; answers the access token.
    pub async fn login(&self, name: &str) -> String {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                "/api/v1/auth/login",
                Some(json!({"login": name, "password": PASSWORD})),
                None,
            )
            .await;
        assert_eq!(status, 200, "login {name}: {body}");
        body["access_token"]
            .as_str()
            .expect("access token")
            .to_owned()
    }

    /// Grants `name` the admin role, the way an operator bootstraps one (log in again to get it
    /// in a token).
    pub async fn grant_admin(&self, name: &str) {
        let pool = sqlx::PgPool::connect(&self.database_url)
            .await
            .expect("database");
        auth_svc::admin::grant_role(&pool, name, "admin")
            .await
            .expect("grant")
            .expect("account exists");
        pool.close().await;
    }

    /// The key id that signs tokens now.
    pub fn active_kid(&self) -> String {
        self.ring.active().expect("an active key").kid.clone()
    }

    /// Rotates the signing key as the operator and kubelet do (a pending key is published,
    /// then signs after a one-second propagation delay) and waits until auth-svc signs with
    /// it; answers the new kid.
    pub async fn rotate_keys(&mut self) -> String {
        let policy = RotationPolicy {
            rotation_interval: None,
            propagation_delay: chrono::Duration::seconds(1),
            token_lifetime: chrono::Duration::seconds(930),
        };
        let request = RotationRequest {
            rotation_counter: self.ring.rotation.observed_rotation_counter + 1,
            ..Default::default()
        };
        let mut generate_key = |alg| generate(alg);
        let now = chrono::Utc::now();
        rotation::reconcile(&mut self.ring, now, &policy, &request, &mut generate_key)
            .expect("rotation starts");
        write_ring(self.key_dir.path(), &self.ring);
        let new_kid = self.ring.kids(KeyState::Pending)[0].clone();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let now = chrono::Utc::now();
        rotation::reconcile(&mut self.ring, now, &policy, &request, &mut generate_key)
            .expect("rotation completes");
        write_ring(self.key_dir.path(), &self.ring);
        assert_eq!(self.active_kid(), new_kid);
        new_kid
    }

    /// Stops everything and removes the database, queue and exchange.
    pub async fn teardown(mut self) {
        self.shutdown.cancel();
        for task in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        if let Some(cleanup) = self.cleanup.take() {
            cleanup.run().await;
        }
    }
}

/// The `kid` header of a JWT.
pub fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .expect("a JWT")
        .kid
        .expect("a kid")
}

fn write_ring(dir: &std::path::Path, ring: &KeyRing) {
    write_atomic(
        dir,
        &BTreeMap::from([(KEYRING_FILE.to_string(), ring.to_json())]),
    )
    .expect("key ring written");
}
