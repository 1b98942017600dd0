//! The platform under test as real processes: a private PostgreSQL and RabbitMQ, two `auth-svc`
//! binaries and one `gateway` binary whose broker connection goes through a cuttable proxy.
//! Everything is configured through the binaries' environment variables, as an operator would.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use authstack_keyring::material::generate;
use authstack_keyring::{KeyRing, SigningAlgorithm};
use authstack_protocol::broker::Component;
use authstack_testkit::private::{PrivatePostgres, PrivateRabbitMq};
use authstack_testkit::tcp_proxy::TcpProxy;
use serde_json::{Value, json};

use crate::common::write_ring;

/// The gateway's RPC deadline (`GATEWAY_RPC_TIMEOUT_MS`).
pub const RPC_TIMEOUT: Duration = Duration::from_millis(2500);
/// The issuer both services agree on.
const ISSUER: &str = "http://authstack.faults";
/// The database the services use on the private server.
const DATABASE: &str = "authstack";
/// The administrator that lists accounts for the checks.
pub const ADMIN: &str = "faultsadmin";
/// Every account's password.
pub const PASSWORD: &str = "correct horse battery";

/// One running binary; killed with SIGKILL when dropped.
pub struct Service {
    pub name: String,
    child: tokio::process::Child,
    log: PathBuf,
    /// Its probe listener (`/readyz`).
    health: SocketAddr,
}

impl Service {
    /// SIGKILL, and wait until the process is gone.
    pub async fn kill9(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The last lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    async fn ready(&self, http: &reqwest::Client) -> bool {
        http.get(format!("http://{}/readyz", self.health))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }
}

/// The whole platform.
pub struct Stack {
    pub postgres: PrivatePostgres,
    pub broker: PrivateRabbitMq,
    /// Between the gateway and the broker.
    pub proxy: TcpProxy,
    pub replicas: Vec<Service>,
    pub gateway: Service,
    pub base: String,
    pub http: reqwest::Client,
    dir: tempfile::TempDir,
    started_replicas: usize,
}

impl Stack {
    /// Starts PostgreSQL, RabbitMQ, two auth-svc replicas and the gateway, and bootstraps the
    /// administrator; returns once a registration goes through.
    pub async fn start() -> Stack {
        let (postgres, broker) = tokio::join!(PrivatePostgres::launch(), PrivateRabbitMq::launch());
        let postgres = postgres.expect("private PostgreSQL starts");
        let broker = broker.expect("private RabbitMQ starts");
        postgres
            .create_database(DATABASE)
            .await
            .expect("database created");
        let proxy = TcpProxy::start(broker.addr()).await.expect("proxy starts");
        let dir = tempfile::tempdir().expect("temp dir");
        let ring = KeyRing::with_active_key(
            generate(SigningAlgorithm::EdDSA).expect("key"),
            chrono::Utc::now(),
        );
        write_ring(&dir.path().join("keys"), &ring);

        let gateway_port = free_port();
        let base = format!("http://127.0.0.1:{gateway_port}");
        let gateway = spawn(
            &gateway_bin(),
            "gateway",
            dir.path(),
            &[
                ("GATEWAY_LISTEN", format!("127.0.0.1:{gateway_port}")),
                // Each binary connects as its own least-privilege broker user.
                (
                    "AMQP_URL",
                    broker.component_url(Component::Gateway, proxy.addr()),
                ),
                ("AUTH_ISSUER", ISSUER.into()),
                (
                    "GATEWAY_RPC_TIMEOUT_MS",
                    RPC_TIMEOUT.as_millis().to_string(),
                ),
                ("GATEWAY_INSTANCE_NAME", "gateway".into()),
                // A free port for the metrics listener (its default, 9090, may be taken).
                (
                    "GATEWAY_METRICS_LISTEN",
                    format!("127.0.0.1:{}", free_port()),
                ),
            ],
            SocketAddr::from(([127, 0, 0, 1], gateway_port)),
        );
        let mut stack = Stack {
            postgres,
            broker,
            proxy,
            replicas: Vec::new(),
            gateway,
            base,
            http: authstack_testkit::http::client(),
            dir,
            started_replicas: 0,
        };
        for _ in 0..2 {
            stack.add_replica().await;
        }
        stack
            .wait_ready(&stack.gateway, Duration::from_secs(60))
            .await;
        stack.bootstrap_admin().await;
        stack
    }

    /// Starts one more auth-svc replica and waits until it consumes requests.
    pub async fn add_replica(&mut self) {
        let name = format!("auth-svc-{}", self.started_replicas);
        self.started_replicas += 1;
        let port = free_port();
        let replica = spawn(
            &auth_svc_bin(),
            &name,
            self.dir.path(),
            &[
                ("DATABASE_URL", self.postgres.url(DATABASE)),
                (
                    "AMQP_URL",
                    self.broker
                        .component_url(Component::AuthSvc, self.broker.addr()),
                ),
                (
                    "AUTH_KEY_DIR",
                    self.dir.path().join("keys").display().to_string(),
                ),
                ("AUTH_ISSUER", ISSUER.into()),
                ("AUTH_HTTP_LISTEN", format!("127.0.0.1:{port}")),
                ("AUTH_INSTANCE_NAME", name.clone()),
                ("AUTH_DB_MAX_CONNECTIONS", "8".into()),
                ("AUTH_OUTBOX_POLL_MS", "200".into()),
                // Every load client comes from 127.0.0.1: per-address rate limits off.
                ("AUTH_LOGIN_RATE_PER_ADDRESS", "0".into()),
                ("AUTH_REGISTER_RATE_PER_ADDRESS", "0".into()),
            ],
            SocketAddr::from(([127, 0, 0, 1], port)),
        );
        self.wait_ready(&replica, Duration::from_secs(60)).await;
        self.replicas.push(replica);
    }

    /// Waits until `service` answers `/readyz` with 200; panics with its log otherwise.
    pub async fn wait_ready(&self, service: &Service, timeout: Duration) {
        let end = Instant::now() + timeout;
        while !service.ready(&self.http).await {
            assert!(
                Instant::now() < end,
                "{} not ready within {timeout:?}:\n{}",
                service.name,
                service.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Registers the administrator and grants the role with `auth-svc grant-role`, as an
    /// operator bootstraps the first admin.
    async fn bootstrap_admin(&self) {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let r = self
                .http
                .post(format!("{}/api/v1/auth/register", self.base))
                .json(&json!({"email": format!("{ADMIN}@example.com"), "username": ADMIN, "password": PASSWORD}))
                .send()
                .await;
            if r.is_ok_and(|r| r.status().as_u16() == 201) {
                break;
            }
            assert!(Instant::now() < end, "the administrator cannot register");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let out = tokio::process::Command::new(auth_svc_bin())
            .args(["grant-role", "--login", ADMIN])
            .env_clear()
            .env("DATABASE_URL", self.postgres.url(DATABASE))
            .output()
            .await
            .expect("auth-svc grant-role runs");
        assert!(
            out.status.success(),
            "grant-role: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A fresh access token of the administrator (retried for up to 30 s).
    pub async fn admin_token(&self) -> Result<String, String> {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let answer = self
                .http
                .post(format!("{}/api/v1/auth/login", self.base))
                .json(&json!({"login": ADMIN, "password": PASSWORD}))
                .send()
                .await;
            let last = match answer {
                Ok(r) if r.status().is_success() => {
                    let body: Value = r.json().await.map_err(|e| e.to_string())?;
                    return body["access_token"]
                        .as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| format!("a login answer without a token: {body}"));
                }
                Ok(r) => format!("{} {}", r.status(), r.text().await.unwrap_or_default()),
                Err(e) => e.to_string(),
            };
            if Instant::now() > end {
                return Err(format!("the administrator cannot log in: {last}"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Every account, through the admin API (all pages).
    pub async fn accounts(&self) -> Result<Vec<Value>, String> {
        let token = self.admin_token().await?;
        let mut all = Vec::new();
        loop {
            let answer = self
                .http
                .get(format!(
                    "{}/api/v1/users?limit=200&offset={}",
                    self.base,
                    all.len()
                ))
                .bearer_auth(&token)
                .send()
                .await
                .map_err(|e| format!("listing accounts: {e}"))?;
            if !answer.status().is_success() {
                return Err(format!("listing accounts: {}", answer.status()));
            }
            let page: Value = answer
                .json()
                .await
                .map_err(|e| format!("listing accounts: {e}"))?;
            let items = page["items"].as_array().cloned().unwrap_or_default();
            let total = page["total"].as_u64().unwrap_or(0) as usize;
            let done = items.is_empty();
            all.extend(items);
            if done || all.len() >= total {
                return Ok(all);
            }
        }
    }

    /// Logs of every service (for failure messages).
    pub fn log_tails(&self, lines: usize) -> String {
        std::iter::once(&self.gateway)
            .chain(&self.replicas)
            .map(|s| format!("--- {} ---\n{}", s.name, s.log_tail(lines)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Starts `binary` with only `env` (plus a log level), its output into `<dir>/<name>.log`.
fn spawn(
    binary: &Path,
    name: &str,
    dir: &Path,
    env: &[(&str, String)],
    health: SocketAddr,
) -> Service {
    let log = dir.join(format!("{name}.log"));
    let file = std::fs::File::create(&log).expect("log file");
    let child = tokio::process::Command::new(binary)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("RUST_LOG", "info,lapin=warn,sqlx=warn")
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log file"))
        .stderr(file)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{binary:?} starts: {e}"));
    Service {
        name: name.into(),
        child,
        log,
        health,
    }
}

fn gateway_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_gateway"))
}

/// The auth-svc binary beside the gateway's (`AUTH_SVC_BIN` overrides). Cargo builds binaries
/// only for the package under test, so `cargo test --workspace` (make test) or
/// `cargo build -p auth-svc` (make chaos) must have built it; a binary older than any source
/// file cargo built it from (its dep-info file lists them) is refused rather than tested.
fn auth_svc_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("AUTH_SVC_BIN") {
        return PathBuf::from(path);
    }
    let bin = gateway_bin().with_file_name("auth-svc");
    let built = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!("{bin:?} is missing: run `cargo build -p auth-svc` first (make chaos does)")
        });
    let dep_info = std::fs::read_to_string(bin.with_extension("d")).unwrap_or_default();
    let sources = dep_info
        .split_once(": ")
        .map(|(_, deps)| deps.replace("\\ ", "\0"))
        .unwrap_or_default();
    let stale = sources
        .split_whitespace()
        .map(|p| PathBuf::from(p.replace('\0', " ")))
        .find(|p| {
            std::fs::metadata(p)
                .and_then(|m| m.modified())
                .is_ok_and(|m| m > built)
        });
    if let Some(newer) = stale {
        panic!("{bin:?} is older than {newer:?}: run `cargo build -p auth-svc` first");
    }
    bin
}
