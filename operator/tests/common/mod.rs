//! Test harness: a fake API server per test, the real operator binary, the real kube client.

#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use authstack_operator::crd::AuthStack;
use authstack_testkit::FakeApiServer;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One isolated world: fake API server with the CRD installed, a kubeconfig, a client.
pub struct Harness {
    pub server: FakeApiServer,
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub client: Client,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl Harness {
    pub async fn new(test: &str) -> Harness {
        Self::with_crd(test, true).await
    }

    /// A harness whose API server may not serve AuthStacks yet.
    pub async fn with_crd(test: &str, install: bool) -> Harness {
        let server = FakeApiServer::start().await.unwrap();
        if install {
            server.install_crd(&authstack_operator::crd::crd()).unwrap();
        }
        let dir = std::env::temp_dir().join(format!(
            "authstack-operator-e2e-{test}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let kubeconfig = server.write_kubeconfig(&dir);
        let config = kube::Config::new(server.url().parse().unwrap());
        let client = Client::try_from(config).unwrap();
        Harness {
            server,
            dir,
            kubeconfig,
            client,
        }
    }

    pub fn namespace(&self, ns: &str) {
        self.server.create_namespace(ns).unwrap();
    }

    /// Starts the operator binary as replica `identity`.
    pub fn operator(&self, identity: &str) -> Operator {
        self.operator_with(identity, &[])
    }

    pub fn operator_with(&self, identity: &str, env: &[(&str, &str)]) -> Operator {
        let port = free_port();
        let log = self.dir.join(format!("operator-{identity}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_authstack-operator"));
        cmd.env_clear()
            .env("KUBECONFIG", &self.kubeconfig)
            .env("METRICS_LISTEN", format!("127.0.0.1:{port}"))
            .env("POD_NAME", identity)
            .env("LEASE_RETRY_INTERVAL", "200ms")
            .env("RUST_LOG", "info,kube=warn,hyper=warn,tower=warn")
            .env("LOG_FORMAT", "text")
            .stdin(Stdio::null())
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        Operator { child, port, log }
    }

    /// Runs `kubectl-authstack` against this world; returns (success, stdout, stderr).
    pub fn plugin(&self, args: &[&str]) -> (bool, String, String) {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubectl-authstack"))
            .args(args)
            .env_clear()
            .env("KUBECONFIG", &self.kubeconfig)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn stacks(&self, ns: &str) -> Api<AuthStack> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Server-side applies an AuthStack as a user would (`kubectl apply --server-side`).
    pub async fn apply_stack(&self, ns: &str, name: &str, spec: Value) -> AuthStack {
        let body = json!({
            "apiVersion": "authstack.io/v1alpha1",
            "kind": "AuthStack",
            "metadata": {"name": name, "namespace": ns},
            "spec": spec,
        });
        self.stacks(ns)
            .patch(
                name,
                &PatchParams::apply("e2e-user").force(),
                &Patch::Apply(&body),
            )
            .await
            .unwrap()
    }

    /// Merge-patches an AuthStack's spec.
    pub async fn patch_spec(&self, ns: &str, name: &str, spec: Value) -> AuthStack {
        self.stacks(ns)
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"spec": spec})),
            )
            .await
            .unwrap()
    }

    pub fn get(&self, api_version: &str, kind: &str, ns: &str, name: &str) -> Option<Value> {
        self.server.get(api_version, kind, Some(ns), name)
    }

    pub fn stack_json(&self, ns: &str, name: &str) -> Option<Value> {
        self.get("authstack.io/v1alpha1", "AuthStack", ns, name)
    }

    pub fn events(&self, ns: &str) -> Vec<Value> {
        self.server.list("events.k8s.io/v1", "Event", Some(ns))
    }

    pub fn event_reasons(&self, ns: &str) -> Vec<String> {
        self.events(ns)
            .iter()
            .filter_map(|e| e["reason"].as_str().map(str::to_owned))
            .collect()
    }

    pub fn lease_holder(&self) -> Option<String> {
        self.get(
            "coordination.k8s.io/v1",
            "Lease",
            "default",
            "authstack-operator",
        )
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned))
    }

    /// Every object of the stack the operator creates by default (kind, name).
    pub fn default_objects(name: &str) -> Vec<(&'static str, &'static str, String)> {
        let n = |s: &str| format!("{name}-{s}");
        vec![
            ("v1", "ServiceAccount", n("auth-svc")),
            ("v1", "ServiceAccount", n("gateway")),
            ("v1", "ServiceAccount", n("postgres")),
            ("v1", "ServiceAccount", n("rabbitmq")),
            ("v1", "Secret", n("postgres")),
            ("v1", "Secret", n("rabbitmq")),
            ("v1", "Secret", n("signing-keys")),
            ("v1", "ConfigMap", n("jwks")),
            ("v1", "Service", n("postgres")),
            ("v1", "Service", n("rabbitmq")),
            ("v1", "Service", n("gateway")),
            ("apps/v1", "StatefulSet", n("postgres")),
            ("apps/v1", "StatefulSet", n("rabbitmq")),
            ("apps/v1", "Deployment", n("auth-svc")),
            ("apps/v1", "Deployment", n("gateway")),
            ("policy/v1", "PodDisruptionBudget", n("auth-svc")),
            ("policy/v1", "PodDisruptionBudget", n("gateway")),
            ("networking.k8s.io/v1", "NetworkPolicy", n("auth-svc")),
            ("networking.k8s.io/v1", "NetworkPolicy", n("gateway")),
            ("networking.k8s.io/v1", "NetworkPolicy", n("postgres")),
            ("networking.k8s.io/v1", "NetworkPolicy", n("rabbitmq")),
        ]
    }

    /// Waits until every default object exists and the status reports the key ring.
    pub async fn converged(&self, ns: &str, name: &str) {
        eventually("the stack to converge", Duration::from_secs(15), || async {
            let all = Self::default_objects(name)
                .iter()
                .all(|(v, k, n)| self.get(v, k, ns, n).is_some());
            let keyed = self
                .stack_json(ns, name)
                .is_some_and(|s| s["status"]["keys"]["activeKid"].is_string());
            (all && keyed).then_some(())
        })
        .await
    }

    pub async fn mark_all_ready(&self, ns: &str, name: &str) {
        for (kind, obj) in [
            ("StatefulSet", "postgres"),
            ("StatefulSet", "rabbitmq"),
            ("Deployment", "auth-svc"),
            ("Deployment", "gateway"),
        ] {
            self.server
                .mark_ready(kind, ns, &format!("{name}-{obj}"))
                .unwrap();
        }
    }
}

/// A running operator process.
pub struct Operator {
    pub child: tokio::process::Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Operator {
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }

    /// SIGTERM, then wait (at most 15 s).
    pub async fn stop(mut self) -> ExitStatus {
        let pid = self.pid();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        match tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => panic!("operator did not stop after SIGTERM:\n{}", self.logs()),
        }
    }

    /// Resident set size in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET a path on the metrics listener: (status code, body).
    pub async fn http_get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.port, path).await
    }

    pub async fn wait_http_ready(&self) {
        eventually(
            "the operator's HTTP endpoint",
            Duration::from_secs(10),
            || async { self.http_get("/healthz").await.filter(|(c, _)| *c == 200) },
        )
        .await;
    }

    /// The value of a metric line starting with `prefix`, summed over label sets.
    pub async fn metric(&self, name: &str) -> f64 {
        let Some((_, body)) = self.http_get("/metrics").await else {
            return 0.0;
        };
        body.lines()
            .filter(|l| l.starts_with(name) && !l.starts_with('#'))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

pub async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .ok()?;
    let mut out = String::new();
    stream.read_to_string(&mut out).await.ok()?;
    let code = out.split(' ').nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((code, body))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `check` every 25 ms until it returns `Some`, or panics after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A container's env var entry by name.
pub fn env<'a>(container: &'a Value, name: &str) -> &'a Value {
    container["env"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["name"] == name))
        .unwrap_or_else(|| panic!("env {name} missing in {container}"))
}

/// `(secret, key)` of an env var read from a Secret.
pub fn env_secret(container: &Value, name: &str) -> (String, String) {
    let r = &env(container, name)["valueFrom"]["secretKeyRef"];
    (
        r["name"].as_str().unwrap_or_default().to_owned(),
        r["key"].as_str().unwrap_or_default().to_owned(),
    )
}

pub fn env_value<'a>(container: &'a Value, name: &str) -> &'a str {
    env(container, name)["value"].as_str().unwrap_or_default()
}

pub fn first_container(workload: &Value) -> &Value {
    &workload["spec"]["template"]["spec"]["containers"][0]
}

/// The decoded data of a Secret.
pub fn secret_data(secret: &Value) -> std::collections::BTreeMap<String, Vec<u8>> {
    use base64::Engine;
    secret["data"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        base64::engine::general_purpose::STANDARD
                            .decode(v.as_str().unwrap_or_default())
                            .unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn condition<'a>(stack: &'a Value, type_: &str) -> Option<&'a Value> {
    stack["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

pub fn condition_status(stack: &Value, type_: &str) -> Option<String> {
    condition(stack, type_).and_then(|c| c["status"].as_str().map(str::to_owned))
}

pub fn key_ring(h: &Harness, ns: &str, name: &str) -> Option<authstack_keyring::KeyRing> {
    let secret = h.get("v1", "Secret", ns, &format!("{name}-signing-keys"))?;
    let data = secret_data(&secret);
    authstack_keyring::KeyRing::from_json(data.get("keyring.json")?).ok()
}

impl Drop for Harness {
    fn drop(&mut self) {
        // Keep the operator logs of a failed test for inspection.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
