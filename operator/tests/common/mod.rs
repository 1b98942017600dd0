//! Test harness: the real control plane of this test binary (kube-apiserver, controllers,
//! kwok), a fresh namespace per test, the chart's ServiceAccount and RBAC rendered by the real
//! `helm` and applied there, and the operator binary started with the flags of the chart's
//! Deployment and a token of that ServiceAccount — so a missing permission fails the test.

#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use authstack_operator::crd::AuthStack;
use authstack_testkit::k8s::{self, ControlPlane, TestNamespace, tools};
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    PostParams,
};
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::OnceCell;

/// The AuthStack CRD, installed once per test binary.
static CRD: OnceCell<()> = OnceCell::const_new();

/// Waits long enough for a loaded 2-core machine (everything here shares it).
pub const SLOW: Duration = Duration::from_secs(90);

pub use authstack_operator::metrics::RECONCILIATIONS;

/// Chart values every test uses: fast standby retries, readable logs.
const TEST_VALUES: &[&str] = &[
    "leaderElection.retryInterval=200ms",
    "leaderElection.renewInterval=1s",
    "leaderElection.leaseDuration=3s",
    "logFormat=text",
    "logLevel=info\\,kube=warn\\,hyper=warn\\,tower=warn",
];

/// The chart rendered for one release.
pub struct Release {
    /// Release name.
    pub name: String,
    /// The chart's full name (`<release>-authstack-operator`): the Deployment, the roles and
    /// the Lease are named so.
    pub fullname: String,
    /// Every rendered document (helm template).
    pub manifest: String,
    /// The ServiceAccount, roles and bindings, as YAML (what the harness applies).
    pub rbac: String,
    /// Arguments of the operator container.
    pub args: Vec<String>,
    /// Plain environment variables of the operator container.
    pub env: Vec<(String, String)>,
    /// The operator's ServiceAccount.
    pub service_account: String,
}

/// Renders the chart with `helm template` into `namespace`.
pub fn render_chart(release: &str, namespace: &str, values: &[&str]) -> Release {
    let helm = tools::helm().expect("helm");
    let chart = k8s::binaries::repo_root().join("charts/authstack-operator");
    let chart = chart.to_string_lossy().into_owned();
    let mut args = vec!["template", release, &chart, "--namespace", namespace];
    let sets: Vec<String> = TEST_VALUES
        .iter()
        .chain(values)
        .map(|v| (*v).to_owned())
        .collect();
    for s in &sets {
        args.push("--set");
        args.push(s);
    }
    let state = std::env::temp_dir().join(format!("authstack-helm-{}", std::process::id()));
    let out = tools::run(&helm, &args, Path::new("/dev/null"), &state, None, None).unwrap();
    assert!(out.success, "helm template: {}", out.stderr);
    Release::parse(release, out.stdout)
}

impl Release {
    /// The operator's objects, flags and environment from a rendered manifest (`helm template`
    /// or `helm get manifest`).
    pub fn parse(release: &str, manifest: String) -> Release {
        let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&manifest)
            .filter_map(|d| serde::Deserialize::deserialize(d).ok())
            .filter(|v: &Value| v.is_object())
            .collect();
        let rbac_kinds = [
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "ClusterRole",
            "ClusterRoleBinding",
        ];
        let rbac: Vec<String> = docs
            .iter()
            .filter(|d| rbac_kinds.contains(&d["kind"].as_str().unwrap_or_default()))
            .map(|d| serde_yaml::to_string(d).unwrap())
            .collect();
        let deployment = docs
            .iter()
            .find(|d| d["kind"] == "Deployment")
            .expect("the chart renders a Deployment");
        let pod = &deployment["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let env = container["env"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| {
                        Some((
                            e["name"].as_str()?.to_owned(),
                            e["value"].as_str()?.to_owned(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Release {
            name: release.to_owned(),
            fullname: deployment["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            args: strings(&container["args"]),
            env,
            service_account: pod["serviceAccountName"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            rbac: rbac.join("---\n"),
            manifest,
        }
    }
}

/// One isolated world: a namespace of the shared control plane, the chart's RBAC for it, an
/// admin client.
pub struct Harness {
    pub cp: &'static ControlPlane,
    ns: TestNamespace,
    pub dir: PathBuf,
    pub client: Client,
    pub release: Release,
    /// Kubeconfig of the chart's ServiceAccount.
    pub operator_kubeconfig: PathBuf,
    /// Namespaces created by the test besides its own (deleted with the harness).
    extra: std::sync::Mutex<Vec<TestNamespace>>,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Installs the AuthStack CRD (once per test binary) and waits until it is served.
pub async fn install_crd(cp: &ControlPlane) {
    CRD.get_or_init(|| async {
        let client = cp.client().await.unwrap();
        let yaml = authstack_operator::crd::crd_yaml().unwrap();
        k8s::apply_yaml(&client, &yaml, "authstack-e2e").await.unwrap();
        let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
            Api::all(client);
        let established = kube::runtime::wait::await_condition(
            crds,
            "authstacks.authstack.io",
            kube::runtime::conditions::is_crd_established(),
        );
        tokio::time::timeout(SLOW, established).await.unwrap().unwrap();
    })
    .await;
}

impl Harness {
    /// A harness with the chart's default values (plus the test values).
    pub async fn new(test: &str) -> Harness {
        Self::with(test, true, &[]).await
    }

    /// A harness; `crd` installs the CRD first; `values` are extra `--set` chart values.
    pub async fn with(test: &str, crd: bool, values: &[&str]) -> Harness {
        let cp = ControlPlane::shared().await;
        if crd {
            install_crd(cp).await;
        }
        let ns = cp.namespace(test).await.unwrap();
        let release = render_chart(ns.name(), ns.name(), values);
        k8s::apply_yaml(&cp.client().await.unwrap(), &release.rbac, "helm")
            .await
            .unwrap();
        Self::for_release(ns, release).await
    }

    /// A harness for a release whose ServiceAccount and RBAC are in place (applied by
    /// [`Harness::with`], or by `helm install` into `ns`).
    pub async fn for_release(ns: TestNamespace, release: Release) -> Harness {
        let cp = ControlPlane::shared().await;
        let client = cp.client().await.unwrap();
        let dir = std::env::temp_dir().join(format!(
            "authstack-operator-e2e-{}-{}-{}",
            release.name,
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let operator_kubeconfig = cp
            .service_account_kubeconfig(
                ns.name(),
                &release.service_account,
                &dir.join("operator.kubeconfig"),
            )
            .await
            .unwrap();
        Harness {
            cp,
            ns,
            dir,
            client,
            release,
            operator_kubeconfig,
            extra: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The test's namespace (the release's namespace, watched by default).
    pub fn ns(&self) -> &str {
        self.ns.name()
    }

    /// Another namespace, deleted with the harness.
    pub async fn other_namespace(&self, prefix: &str) -> String {
        let ns = self.cp.namespace(prefix).await.unwrap();
        let name = ns.name().to_owned();
        self.extra.lock().unwrap().push(ns);
        name
    }

    /// Starts the operator binary as replica `identity`, as the chart's Deployment would.
    pub fn operator(&self, identity: &str) -> Operator {
        self.operator_with(identity, &[])
    }

    /// As [`Harness::operator`], with extra environment variables.
    pub fn operator_with(&self, identity: &str, env: &[(&str, &str)]) -> Operator {
        let port = free_port();
        let log = self.dir.join(format!("operator-{identity}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_authstack-operator"));
        let args = self
            .release
            .args
            .iter()
            .map(|a| {
                if a.starts_with("--metrics-listen=") {
                    format!("--metrics-listen=127.0.0.1:{port}")
                } else {
                    a.clone()
                }
            })
            .collect::<Vec<_>>();
        cmd.env_clear()
            .args(&args)
            .envs(self.release.env.iter().map(|(k, v)| (k, v)))
            .env("KUBECONFIG", &self.operator_kubeconfig)
            .env("POD_NAME", identity)
            .env("POD_NAMESPACE", self.ns())
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

    /// Runs `kubectl-authstack` with the admin's credentials; (success, stdout, stderr).
    pub fn plugin(&self, args: &[&str]) -> (bool, String, String) {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubectl-authstack"))
            .args(args)
            .env_clear()
            .env("KUBECONFIG", self.cp.kubeconfig())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs the real kubectl (admin credentials) with `kubectl-authstack` on its PATH.
    pub fn kubectl(&self, args: &[&str]) -> tools::Output {
        self.kubectl_stdin(args, None)
    }

    /// [`Harness::kubectl`] with `stdin` as its standard input.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> tools::Output {
        let kubectl = tools::kubectl().unwrap();
        let plugin_dir = Path::new(env!("CARGO_BIN_EXE_kubectl-authstack"))
            .parent()
            .map(Path::to_owned);
        tools::run(
            &kubectl,
            args,
            self.cp.kubeconfig(),
            &self.dir,
            plugin_dir.as_deref(),
            stdin,
        )
        .unwrap()
    }

    pub fn stacks(&self) -> Api<AuthStack> {
        Api::namespaced(self.client.clone(), self.ns())
    }

    /// Server-side applies an AuthStack as a user would (`kubectl apply --server-side`).
    pub async fn apply_stack(&self, name: &str, spec: Value) -> AuthStack {
        self.try_apply_stack(self.ns(), name, spec).await.unwrap()
    }

    /// Server-side applies an AuthStack in `ns`.
    pub async fn try_apply_stack(
        &self,
        ns: &str,
        name: &str,
        spec: Value,
    ) -> Result<AuthStack, kube::Error> {
        let body = json!({
            "apiVersion": "authstack.io/v1alpha1",
            "kind": "AuthStack",
            "metadata": {"name": name, "namespace": ns},
            "spec": spec,
        });
        Api::<AuthStack>::namespaced(self.client.clone(), ns)
            .patch(
                name,
                &PatchParams::apply("e2e-user").force(),
                &Patch::Apply(&body),
            )
            .await
    }

    /// Merge-patches an AuthStack's spec.
    pub async fn patch_spec(&self, name: &str, spec: Value) -> AuthStack {
        self.stacks()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"spec": spec})),
            )
            .await
            .unwrap()
    }

    fn api(&self, api_version: &str, kind: &str, ns: &str) -> Api<DynamicObject> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
        Api::namespaced_with(self.client.clone(), ns, &ar)
    }

    /// An object of the test namespace as JSON.
    pub async fn get(&self, api_version: &str, kind: &str, name: &str) -> Option<Value> {
        self.get_in(api_version, kind, self.ns(), name).await
    }

    /// An object of any namespace as JSON.
    pub async fn get_in(
        &self,
        api_version: &str,
        kind: &str,
        ns: &str,
        name: &str,
    ) -> Option<Value> {
        let obj = self
            .api(api_version, kind, ns)
            .get_opt(name)
            .await
            .unwrap_or_else(|e| panic!("GET {kind} {ns}/{name}: {e}"))?;
        serde_json::to_value(obj).ok()
    }

    /// Every object of a kind in the test namespace.
    pub async fn list(&self, api_version: &str, kind: &str) -> Vec<Value> {
        self.api(api_version, kind, self.ns())
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|o| serde_json::to_value(o).ok())
            .collect()
    }

    /// Creates an object (JSON with apiVersion and kind) in the test namespace as the admin.
    pub async fn create(&self, obj: Value) -> Value {
        let api_version = obj["apiVersion"].as_str().unwrap().to_owned();
        let kind = obj["kind"].as_str().unwrap().to_owned();
        let ns = obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or(self.ns())
            .to_owned();
        let dynamic: DynamicObject = serde_json::from_value(obj).unwrap();
        let created = self
            .api(&api_version, &kind, &ns)
            .create(&PostParams::default(), &dynamic)
            .await
            .unwrap();
        serde_json::to_value(created).unwrap()
    }

    /// Asks for the deletion of an object of the test namespace; returns at once.
    pub async fn request_delete(&self, api_version: &str, kind: &str, name: &str) {
        self.api(api_version, kind, self.ns())
            .delete(name, &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("DELETE {kind} {name}: {e}"));
    }

    /// Deletes an object of the test namespace (foreground: returns once it is gone).
    pub async fn delete(&self, api_version: &str, kind: &str, name: &str) {
        self.request_delete(api_version, kind, name).await;
        let api = self.api(api_version, kind, self.ns());
        eventually(&format!("{kind} {name} to be gone"), SLOW, || async {
            api.get_opt(name).await.ok()?.is_none().then_some(())
        })
        .await;
    }

    pub async fn stack_json(&self, name: &str) -> Option<Value> {
        self.get("authstack.io/v1alpha1", "AuthStack", name).await
    }

    pub async fn events(&self) -> Vec<Value> {
        self.list("events.k8s.io/v1", "Event").await
    }

    pub async fn event_reasons(&self) -> Vec<String> {
        self.events()
            .await
            .iter()
            .filter_map(|e| e["reason"].as_str().map(str::to_owned))
            .collect()
    }

    /// Merge-patches an object of the test namespace as field manager `manager` (what
    /// `kubectl edit` or `kubectl patch` by someone else does).
    pub async fn merge_patch(
        &self,
        api_version: &str,
        kind: &str,
        name: &str,
        manager: &str,
        patch: Value,
    ) {
        let params = PatchParams {
            field_manager: Some(manager.to_owned()),
            ..PatchParams::default()
        };
        self.api(api_version, kind, self.ns())
            .patch(name, &params, &Patch::Merge(&patch))
            .await
            .unwrap_or_else(|e| panic!("PATCH {kind} {name}: {e}"));
    }

    /// The operator's ServiceAccount as kube-apiserver names it (in the audit log).
    pub fn operator_user(&self) -> String {
        format!(
            "system:serviceaccount:{}:{}",
            self.ns(),
            self.release.service_account
        )
    }

    /// Holder of the chart's leader-election Lease.
    pub async fn lease_holder(&self) -> Option<String> {
        self.get("coordination.k8s.io/v1", "Lease", &self.release.fullname)
            .await
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned))
    }

    /// Every object the operator creates for a default stack (apiVersion, kind, name).
    pub fn default_objects(name: &str) -> Vec<(&'static str, &'static str, String)> {
        let n = |s: &str| format!("{name}-{s}");
        vec![
            ("v1", "ServiceAccount", n("auth-svc")),
            ("v1", "ServiceAccount", n("gateway")),
            ("v1", "ServiceAccount", n("postgres")),
            ("v1", "ServiceAccount", n("rabbitmq")),
            ("v1", "Secret", n("postgres")),
            ("v1", "Secret", n("auth-svc-db")),
            ("v1", "Secret", n("rabbitmq")),
            ("v1", "Secret", n("rabbitmq-auth-svc")),
            ("v1", "Secret", n("rabbitmq-gateway")),
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

    /// Default objects of `name` that do not exist.
    pub async fn missing_objects(&self, name: &str) -> Vec<String> {
        let mut missing = Vec::new();
        for (v, k, n) in Self::default_objects(name) {
            if self.get(v, k, &n).await.is_none() {
                missing.push(format!("{k} {n}"));
            }
        }
        missing
    }

    /// Waits until every default object exists and the status reports the key ring.
    pub async fn converged(&self, name: &str) {
        eventually("the stack to converge", SLOW, || async {
            let keyed = self
                .stack_json(name)
                .await
                .is_some_and(|s| s["status"]["keys"]["activeKid"].is_string());
            (keyed && self.missing_objects(name).await.is_empty()).then_some(())
        })
        .await
    }

    /// Waits for Ready=True and returns the stack.
    pub async fn ready(&self, name: &str) -> Value {
        eventually(&format!("AuthStack {name} to be Ready"), SLOW, || async {
            let s = self.stack_json(name).await?;
            (condition_status(&s, "Ready").as_deref() == Some("True")).then_some(s)
        })
        .await
    }

    /// The key ring in the stack's signing Secret.
    pub async fn key_ring(&self, name: &str) -> Option<authstack_keyring::KeyRing> {
        let secret = self
            .get("v1", "Secret", &format!("{name}-signing-keys"))
            .await?;
        let data = secret_data(&secret);
        authstack_keyring::KeyRing::from_json(data.get("keyring.json")?).ok()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        // The namespaces go with their TestNamespace guards; cluster-scoped objects of the
        // release (aggregated ClusterRoles, a cluster-wide binding) are deleted here.
        let cluster_scoped: Vec<String> = self
            .release
            .rbac
            .split("---\n")
            .filter(|d| d.contains("kind: ClusterRole"))
            .map(str::to_owned)
            .collect();
        if !cluster_scoped.is_empty() {
            let kubeconfig = self.cp.kubeconfig().to_owned();
            let yaml = cluster_scoped.join("---\n");
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .ok()?;
                rt.block_on(async {
                    let client = k8s::client_from(&kubeconfig).await.ok()?;
                    k8s::delete_yaml(&client, &yaml).await.ok()
                })
            })
            .join();
        }
        // Keep the operator logs of a failed test for inspection.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("operator logs kept in {}", self.dir.display());
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

    /// SIGTERM, then wait (at most 30 s).
    pub async fn stop(mut self) -> ExitStatus {
        let pid = self.pid();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
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
        eventually("the operator's HTTP endpoint", SLOW, || async {
            self.http_get("/healthz").await.filter(|(c, _)| *c == 200)
        })
        .await;
    }

    /// Waits until /readyz answers `expected` (`leader` or `standby`).
    pub async fn wait_role(&self, expected: &str) {
        eventually(&format!("the operator to be {expected}"), SLOW, || async {
            self.http_get("/readyz")
                .await
                .filter(|r| *r == (200, expected.to_owned()))
        })
        .await;
    }

    /// Waits until no reconcile has run for `quiet` (the reconciles its own writes and the
    /// controllers' status updates triggered have run out); returns the reconcile count.
    pub async fn settled(&self, quiet: Duration) -> f64 {
        let started = Instant::now();
        let mut count = self.metric(RECONCILIATIONS).await;
        loop {
            tokio::time::sleep(quiet).await;
            let now = self.metric(RECONCILIATIONS).await;
            if now == count {
                return count;
            }
            assert!(
                started.elapsed() < SLOW,
                "the operator kept reconciling for {SLOW:?}"
            );
            count = now;
        }
    }

    /// Waits until a reconcile completed after the count `since`.
    pub async fn reconciled_after(&self, since: f64) {
        eventually("a reconcile", SLOW, || async {
            (self.metric(RECONCILIATIONS).await > since).then_some(())
        })
        .await
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

/// Polls `check` every 100 ms until it returns `Some`, or panics after `timeout`.
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
        tokio::time::sleep(Duration::from_millis(100)).await;
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

/// The `Status` of an API error (panics on other outcomes).
pub fn api_error<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> Box<kube::core::Status> {
    match result {
        Err(kube::Error::Api(s)) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}
