//! A private RabbitMQ node beside the shared one: its own node name, AMQP and distribution
//! ports, data, logs, configuration, enabled-plugins file and Erlang cookie (a `HOME` of its
//! own), so neither node sees the other. It registers with the machine's epmd (port 4369), which
//! serves any number of nodes; if no epmd runs yet, the node starts one and it stays running.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use authstack_protocol::broker::{Component, acl};

use super::ServerError;
use super::process::{RunAs, ScratchDir, accepts, free_port, run_to_completion, signal, tail};
use crate::broker::amqp_url;

/// How long a (re)start may take: the first boot on a busy 2-core machine takes ~10 s.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a graceful stop may take before the node is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A private RabbitMQ node; dropped: killed and deleted. The administrator is `guest` (password
/// `guest`); each component has its least-privilege user of `libs/protocol/broker-acl.json`,
/// with a password of this node's own ([`PrivateRabbitMq::component_url`]).
pub struct PrivateRabbitMq {
    dir: ScratchDir,
    /// Each component's password on this node.
    passwords: Vec<(Component, String)>,
    server: PathBuf,
    run_as: Option<RunAs>,
    node: String,
    port: u16,
    dist_port: u16,
    child: Option<tokio::process::Child>,
}

impl PrivateRabbitMq {
    /// Prepares a node in a fresh scratch directory and starts it on free ports.
    pub async fn launch() -> Result<PrivateRabbitMq, ServerError> {
        let server = server_script()?;
        let run_as = RunAs::service_user("rabbitmq")?;
        let dir = ScratchDir::create("authstack-rabbitmq", run_as)?;
        for sub in ["home", "mnesia", "log"] {
            dir.subdir(sub, run_as)?;
        }
        let port = free_port()?;
        dir.write(
            "rabbitmq.conf",
            &format!("listeners.tcp.default = 127.0.0.1:{port}\n"),
            run_as,
        )?;
        dir.write("enabled_plugins", "[].\n", run_as)?;
        let node = format!(
            "authstack-{}@localhost",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let mut broker = PrivateRabbitMq {
            dist_port: free_port()?,
            port,
            node,
            server,
            run_as,
            dir,
            passwords: Component::ALL
                .iter()
                .map(|&c| (c, uuid::Uuid::new_v4().simple().to_string()))
                .collect(),
            child: None,
        };
        broker.start().await?;
        broker.import_component_users().await?;
        Ok(broker)
    }

    /// Creates every component's user with its permissions (one `rabbitmqctl
    /// import_definitions`); they live in the node's data, so they survive restarts.
    async fn import_component_users(&self) -> Result<(), ServerError> {
        let acl = acl();
        let users: Vec<_> = self
            .passwords
            .iter()
            .map(|(c, password)| {
                serde_json::json!({"name": acl.user(*c).user, "password": password, "tags": []})
            })
            .collect();
        let permissions: Vec<_> = Component::ALL
            .iter()
            .map(|&c| {
                let u = acl.user(c);
                serde_json::json!({
                    "user": u.user, "vhost": acl.vhost,
                    "configure": u.permissions.configure,
                    "write": u.permissions.write,
                    "read": u.permissions.read,
                })
            })
            .collect();
        let definitions = serde_json::json!({"users": users, "permissions": permissions});
        let file = self
            .dir
            .write("users.json", &definitions.to_string(), self.run_as)?;
        // The node accepts AMQP connections while its boot steps still run, and
        // `import_definitions` refuses a node whose `rabbit` app is not running yet.
        let mut wait = self.command(&self.server.with_file_name("rabbitmqctl"));
        wait.args(["-q", "-n", &self.node, "await_startup", "--timeout"])
            .arg(START_TIMEOUT.as_secs().to_string());
        run_to_completion(wait, self.run_as, "rabbitmqctl await_startup", || {
            self.log_tail()
        })
        .await?;
        let mut cmd = self.command(&self.server.with_file_name("rabbitmqctl"));
        cmd.args(["-q", "-n", &self.node, "import_definitions"])
            .arg(&file);
        run_to_completion(
            cmd,
            self.run_as,
            "rabbitmqctl import_definitions (the component users)",
            || self.log_tail(),
        )
        .await
    }

    /// `program` with a clean environment and this node's `HOME` (its Erlang cookie).
    fn command(&self, program: &std::path::Path) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(program);
        cmd.env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            )
            .env("HOME", self.home())
            .env("LANG", "C.UTF-8");
        cmd
    }

    /// The AMQP URL of `component`'s user at `addr` (this node, or a proxy in front of it).
    pub fn component_url(&self, component: Component, addr: SocketAddr) -> String {
        let password = self
            .passwords
            .iter()
            .find(|(c, _)| *c == component)
            .map(|(_, p)| p.as_str())
            .unwrap_or_default();
        amqp_url(&acl().user(component).user, password, addr)
    }

    /// The AMQP address (kept across restarts).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The administrator's AMQP URL.
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.addr())
    }

    /// The Erlang node name (for `rabbitmqctl -n`, with `HOME` = [`Self::home`]).
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The node's `HOME` (holds its Erlang cookie).
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// Starts the node (again, with the same data) and waits until it accepts AMQP connections.
    pub async fn start(&mut self) -> Result<(), ServerError> {
        let dir = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("server.log"))
            .map_err(ServerError::io("opening the RabbitMQ log"))?;
        let log_err = log
            .try_clone()
            .map_err(ServerError::io("opening the RabbitMQ log"))?;
        let mut cmd = self.command(&self.server);
        cmd.env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq.conf"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", dir.join("advanced.config"))
            .env("RABBITMQ_CONF_ENV_FILE", dir.join("rabbitmq-env.conf"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .env("RABBITMQ_PID_FILE", dir.join("rabbitmq.pid"))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            // Its own process group, so the shell wrapper and the Erlang VM die together.
            .process_group(0)
            .kill_on_drop(true);
        RunAs::apply(self.run_as, &mut cmd);
        let child = cmd
            .spawn()
            .map_err(ServerError::io(format!("starting {:?}", self.server)))?;
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if accepts(self.port).await {
                return Ok(());
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.child = None;
                return Err(self.failed(format!("RabbitMQ exited during start-up: {status}")));
            }
            if started.elapsed() > START_TIMEOUT {
                self.kill().await;
                return Err(self.failed(format!(
                    "RabbitMQ did not accept connections within {START_TIMEOUT:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the node gracefully (SIGTERM: clients get a connection-forced close) and waits
    /// until it has exited; kills it if that takes longer than 30 s.
    pub async fn stop(&mut self) -> Result<(), ServerError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if let Some(pid) = child.id() {
            signal(i64::from(pid), "TERM");
        }
        match tokio::time::timeout(STOP_TIMEOUT, child.wait()).await {
            Ok(Ok(_)) => Ok(()),
            _ => {
                self.child = Some(child);
                self.kill().await;
                Err(self.failed(format!(
                    "RabbitMQ did not stop within {STOP_TIMEOUT:?}; killed"
                )))
            }
        }
    }

    /// Kills the node at once (SIGKILL to its process group), like a crash, and waits until
    /// its port is closed (the Erlang VM may outlive the shell wrapper by a moment).
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                signal(-i64::from(pid), "KILL");
            }
            let _ = child.wait().await;
            let end = Instant::now() + STOP_TIMEOUT;
            while accepts(self.port).await && Instant::now() < end {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// Its scratch directory (data, logs, configuration), deleted on drop.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The end of the node's logs, for failure messages.
    pub fn log_tail(&self) -> String {
        let node_log = self
            .dir
            .path()
            .join("log")
            .join(format!("{}.log", self.node));
        format!(
            "{}\n{}",
            tail(&self.dir.path().join("server.log"), 20),
            tail(&node_log, 20)
        )
    }

    fn failed(&self, what: String) -> ServerError {
        ServerError::Failed {
            what,
            log: self.log_tail(),
        }
    }
}

impl Drop for PrivateRabbitMq {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                signal(-i64::from(pid), "KILL");
            }
            // Until the Erlang VM is gone too (its port closed), at most 10 s.
            let deadline = Instant::now() + Duration::from_secs(10);
            let open = |port| {
                std::net::TcpStream::connect_timeout(
                    &SocketAddr::from(([127, 0, 0, 1], port)),
                    Duration::from_millis(200),
                )
                .is_ok()
            };
            while (child.try_wait().ok().flatten().is_none() || open(self.port))
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// The node's start script: `RABBITMQ_SERVER`, else Debian's
/// `/usr/lib/rabbitmq/bin/rabbitmq-server` (not `/usr/sbin/rabbitmq-server`, which switches to
/// the shared node's user and directories), else `rabbitmq-server` on `PATH`.
fn server_script() -> Result<PathBuf, ServerError> {
    if let Some(path) = std::env::var_os("RABBITMQ_SERVER") {
        return Ok(PathBuf::from(path));
    }
    let debian = PathBuf::from("/usr/lib/rabbitmq/bin/rabbitmq-server");
    if debian.is_file() {
        return Ok(debian);
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("rabbitmq-server"))
        .find(|p| p.is_file())
        .ok_or(ServerError::NotInstalled {
            program: "rabbitmq-server",
            hint: "looked in RABBITMQ_SERVER, /usr/lib/rabbitmq/bin and PATH; \
                   scripts/ensure-services.sh installs RabbitMQ"
                .into(),
        })
}
