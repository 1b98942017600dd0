//! A real Kubernetes control plane on loopback, built from the Kubernetes sources (see
//! `scripts/k8s-binaries.sh`), the way controller-runtime's envtest runs one, plus the
//! controllers and the node stand-in that make workloads really run:
//!
//! - **etcd** (v3.7, no fsync: state is throw-away);
//! - **kube-apiserver** with TLS, client-certificate and ServiceAccount-token authentication,
//!   the RBAC authorizer, the default admission plugins plus
//!   `OwnerReferencesPermissionEnforcement` (as on OpenShift: setting `blockOwnerDeletion`
//!   needs `update` on the owner's `finalizers`), and an audit log of every request a
//!   ServiceAccount makes ([`audit`]: which requests the operator under test sent);
//! - **kube-controller-manager** with the controllers AuthStack depends on (garbage
//!   collection, Deployments → ReplicaSets → Pods, StatefulSets, namespace deletion,
//!   ServiceAccounts, PersistentVolume binding and protection with kcm's host-path
//!   provisioner behind a default StorageClass `standard`, PodDisruptionBudgets, resource
//!   quotas, RBAC aggregation, node lifecycle);
//! - **kube-scheduler**;
//! - **kwok** (`sigs.k8s.io/kwok`) managing one Node, `kwok-node-0`: scheduled Pods become
//!   Running and Ready (no container runs), deleted Pods go away, the Node keeps its Lease.
//!
//! A test binary shares one control plane between its tests ([`ControlPlane::shared`]);
//! each test takes a fresh namespace ([`ControlPlane::namespace`]). The processes stop and
//! the state directory goes when the control plane is dropped, when the test binary exits
//! (also after a failed test), and when it is killed (see [`process`]).

mod apply;
pub mod audit;
pub mod binaries;
mod pki;
pub mod process;
pub mod tools;

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, Node, ServiceAccount};
use kube::api::{DeleteParams, ObjectMeta, PostParams, PropagationPolicy};
use kube::{Api, Client};
use serde_json::{Value, json};

pub use apply::{apply_yaml, delete_yaml};
pub use audit::{AuditEvent, AuditMark};

use self::pki::Pki;
use self::process::Components;

/// Errors starting or using the control plane.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A file or process operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or program.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The binaries are missing and could not be built.
    #[error("Kubernetes binaries: {0}")]
    Binaries(String),
    /// Generating certificates failed.
    #[error("certificates: {0}")]
    Pki(#[from] rcgen::Error),
    /// A component exited.
    #[error("{component} exited ({status}); its log {log:?} ends with:\n{tail}")]
    Exited {
        /// The component.
        component: &'static str,
        /// Its exit status.
        status: String,
        /// Its log file.
        log: PathBuf,
        /// The end of its log.
        tail: String,
    },
    /// Something did not happen in time.
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
    /// An API call failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A kubeconfig could not be read.
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
    /// A manifest could not be parsed or applied.
    #[error("manifest: {0}")]
    Manifest(String),
    /// A tool (helm, kubectl) could not be installed or failed.
    #[error("{0}")]
    Tool(String),
}

impl ClusterError {
    pub(crate) fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        ClusterError::Io {
            path: path.as_ref().to_owned(),
            source,
        }
    }
}

type Result<T, E = ClusterError> = std::result::Result<T, E>;

/// The Service IP range (the `kubernetes` Service takes the first address, 10.0.0.1).
const SERVICE_CIDR: &str = "10.0.0.0/24";
/// Pod IPs kwok hands out (room for thousands of pods).
const POD_CIDR: &str = "10.244.0.0/16";
/// Issuer of ServiceAccount tokens.
const SA_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// The simulated node.
pub const NODE_NAME: &str = "kwok-node-0";
/// Annotation that tells kwok to manage a Node.
const KWOK_ANNOTATION: (&str, &str) = ("kwok.x-k8s.io/node", "fake");
/// Default StorageClass, served by kube-controller-manager's host-path provisioner.
pub const STORAGE_CLASS: &str = "standard";
/// Controllers kube-controller-manager runs (names from cmd/kube-controller-manager/names).
const CONTROLLERS: &[&str] = &[
    "garbage-collector-controller",
    "namespace-controller",
    "deployment-controller",
    "replicaset-controller",
    "statefulset-controller",
    "serviceaccount-controller",
    "root-ca-certificate-publisher-controller",
    "persistentvolume-binder-controller",
    "persistentvolumeclaim-protection-controller",
    "persistentvolume-protection-controller",
    "disruption-controller",
    "resourcequota-controller",
    "clusterrole-aggregation-controller",
    "node-lifecycle-controller",
];
/// Controllers a real node needs on top (kwok needs no Service endpoints): kube-proxy and
/// CoreDNS serve Services from their EndpointSlices.
const REAL_NODE_CONTROLLERS: &[&str] = &["endpointslice-controller"];
/// Longest wait for the control plane to come up (generous: 2 shared cores).
const START_TIMEOUT: Duration = Duration::from_secs(240);
/// Attempts at starting (a free port picked for etcd or kube-apiserver can be taken by
/// someone else before the component binds it).
const START_ATTEMPTS: u32 = 3;

/// Which node stand-in runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nodes {
    /// kwok manages [`NODE_NAME`]: Pods become Running/Ready without running anything.
    Kwok,
    /// No node: Pods stay Pending until a real kubelet registers (it can use the admin
    /// kubeconfig and the CA in the state directory). No StorageClass either: a real node
    /// brings its own volumes (`scripts/node/up.sh`).
    None,
}

/// How to start a control plane.
#[derive(Clone, Debug)]
pub struct Options {
    /// State directory (certificates, kubeconfigs, etcd data, logs); created if missing.
    pub dir: PathBuf,
    /// Keep the state directory after stopping (for a look at the logs).
    pub keep_dir: bool,
    /// Node stand-in.
    pub nodes: Nodes,
    /// Where kube-apiserver listens and what it advertises: loopback for the tests; the host's
    /// end of a real node's link for `make cluster-up NODE=real`, so that the kubelet and the
    /// pods (through the `kubernetes` Service) reach it.
    pub bind_address: IpAddr,
}

impl Options {
    /// A fresh directory under `$TMPDIR/authstack-k8s/`, deleted afterwards; kwok.
    pub fn for_tests() -> Options {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        Options {
            dir: state_base().join(format!("cp-{}-{nanos}", std::process::id())),
            keep_dir: std::env::var_os("AUTHSTACK_K8S_KEEP").is_some(),
            nodes: Nodes::Kwok,
            bind_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }
}

/// Where test control planes keep their state (and where [`process::reap`] looks).
pub fn state_base() -> PathBuf {
    std::env::temp_dir().join("authstack-k8s")
}

/// A running control plane.
pub struct ControlPlane {
    dir: PathBuf,
    kubeconfig: PathBuf,
    url: String,
    version: String,
    started_in: Duration,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What the supervising thread reports once the control plane is up.
struct Started {
    kubeconfig: PathBuf,
    url: String,
    version: String,
}

static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();

impl ControlPlane {
    /// The control plane of this test binary, started by the first test that asks (blocking
    /// a thread of the blocking pool, never the test's runtime). Panics with the reason if it
    /// cannot start.
    pub async fn shared() -> &'static ControlPlane {
        let shared = tokio::task::spawn_blocking(|| {
            SHARED.get_or_init(|| {
                ControlPlane::start(Options::for_tests()).map_err(|e| e.to_string())
            })
        })
        .await
        .expect("the control plane's start-up thread panicked");
        match shared {
            Ok(cp) => cp,
            Err(e) => panic!("the Kubernetes control plane did not start: {e}"),
        }
    }

    /// Starts a control plane (blocking; builds the binaries first if they are missing).
    pub fn start(options: Options) -> Result<ControlPlane> {
        let bin = binaries::control_plane_bin_dir()?;
        process::reap(&state_base());
        let started_at = Instant::now();
        let (report_tx, report_rx) = mpsc::channel::<Result<Started>>();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let opts = options.clone();
        // The processes die with the thread that started them (PR_SET_PDEATHSIG): this
        // thread lives until the control plane is stopped.
        let thread = std::thread::Builder::new()
            .name("k8s-control-plane".into())
            .spawn(move || supervise(&bin, &opts, report_tx, stop_rx))
            .map_err(|e| ClusterError::io("thread", e))?;
        let started = match report_rx.recv() {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(ClusterError::Binaries(
                    "the control plane's thread ended without a report".into(),
                ));
            }
        };
        let cp = ControlPlane {
            dir: options.dir,
            kubeconfig: started.kubeconfig,
            url: started.url,
            version: started.version,
            started_in: started_at.elapsed(),
            stop: Some(stop_tx),
            thread: Some(thread),
        };
        // Not captured by the test harness: `make test` shows which server the tests ran on.
        let _ = writeln!(
            std::io::stderr(),
            "[k8s] kube-apiserver {} (etcd, kube-controller-manager, kube-scheduler, kwok) ready at {} in {:.1} s; state in {}",
            cp.version,
            cp.url,
            cp.started_in.as_secs_f64(),
            cp.dir.display()
        );
        Ok(cp)
    }

    /// Admin kubeconfig (client certificate in `system:masters`).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// kube-apiserver's version (`v1.37.2`).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// How long the start took.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current end of the audit log (requests of ServiceAccounts).
    pub fn audit_mark(&self) -> AuditMark {
        audit::mark(&audit::log_path(&self.dir))
    }

    /// The requests of ServiceAccounts logged after `mark` (kube-apiserver writes an entry
    /// once a request completed; allow it a moment).
    pub fn audit_events_since(&self, mark: AuditMark) -> Result<Vec<AuditEvent>> {
        audit::events_since(&audit::log_path(&self.dir), mark)
    }

    /// A client with the admin's credentials.
    pub async fn client(&self) -> Result<Client> {
        client_from(&self.kubeconfig).await
    }

    /// Creates a namespace `<prefix>-<random>`; it is deleted when the returned value drops.
    pub async fn namespace(&self, prefix: &str) -> Result<TestNamespace> {
        let client = self.client().await?;
        let api: Api<Namespace> = Api::all(client.clone());
        let ns = Namespace {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}-", sanitize(prefix))),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        let created = api.create(&PostParams::default(), &ns).await?;
        let name = created.metadata.name.unwrap_or_default();
        Ok(TestNamespace {
            name,
            kubeconfig: self.kubeconfig.clone(),
        })
    }

    /// Writes a kubeconfig at `path` that authenticates as ServiceAccount `namespace/name`
    /// (see [`service_account_kubeconfig`]).
    pub async fn service_account_kubeconfig(
        &self,
        namespace: &str,
        name: &str,
        path: &Path,
    ) -> Result<PathBuf> {
        service_account_kubeconfig(&self.kubeconfig, namespace, name, path).await
    }

    /// Stops every process and deletes the state (unless kept).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A namespace for one test; deleted (in the background) when dropped.
pub struct TestNamespace {
    name: String,
    kubeconfig: PathBuf,
}

impl TestNamespace {
    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let (name, kubeconfig) = (self.name.clone(), self.kubeconfig.clone());
        // A runtime and a client of its own: drop may run on the test's runtime, whose
        // thread this blocks (a client made there would wait for it forever).
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let Ok(client) = client_from(&kubeconfig).await else {
                    return;
                };
                let api: Api<Namespace> = Api::all(client);
                let dp = DeleteParams {
                    propagation_policy: Some(PropagationPolicy::Background),
                    ..DeleteParams::default()
                };
                let _ = tokio::time::timeout(Duration::from_secs(30), api.delete(&name, &dp)).await;
            });
        })
        .join();
    }
}

/// Deletes a namespace and waits until the namespace controller has removed it with
/// everything in it.
pub async fn delete_namespace(client: &Client, name: &str, timeout: Duration) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    let started = Instant::now();
    while api.get_opt(name).await?.is_some() {
        if started.elapsed() > timeout {
            return Err(ClusterError::Timeout(
                timeout,
                format!("namespace {name} to be deleted"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// A DNS-1123 label from a test name.
fn sanitize(prefix: &str) -> String {
    let s: String = prefix
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let s = s.trim_matches('-');
    let s = if s.is_empty() { "test" } else { s };
    s.chars()
        .take(40)
        .collect::<String>()
        .trim_end_matches('-')
        .to_owned()
}

/// A client from a kubeconfig file.
pub async fn client_from(kubeconfig: &Path) -> Result<Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .map_err(|e| ClusterError::Kubeconfig(format!("{}: {e}", kubeconfig.display())))?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| ClusterError::Kubeconfig(e.to_string()))?;
    Ok(Client::try_from(config)?)
}

/// Writes a kubeconfig at `path` that authenticates as ServiceAccount `namespace/name` with a
/// token from the TokenRequest API (valid for a day), for the cluster of the admin kubeconfig
/// `admin` (whose credentials ask for the token); default namespace `namespace`.
pub async fn service_account_kubeconfig(
    admin: &Path,
    namespace: &str,
    name: &str,
    path: &Path,
) -> Result<PathBuf> {
    let kc = kube::config::Kubeconfig::read_from(admin)
        .map_err(|e| ClusterError::Kubeconfig(format!("{}: {e}", admin.display())))?;
    let cluster = kc
        .clusters
        .first()
        .and_then(|c| c.cluster.clone())
        .ok_or_else(|| ClusterError::Kubeconfig(format!("{}: no cluster", admin.display())))?;
    let server = cluster.server.unwrap_or_default();
    let ca = cluster.certificate_authority_data.unwrap_or_default();
    let api: Api<ServiceAccount> = Api::namespaced(client_from(admin).await?, namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(24 * 3600),
            bound_object_ref: None,
        },
        ..TokenRequest::default()
    };
    let token = api
        .create_token_request(name, &PostParams::default(), &request)
        .await?
        .status
        .map(|s| s.token)
        .unwrap_or_default();
    write_kubeconfig(
        path,
        &server,
        &ca,
        &format!("system:serviceaccount:{namespace}:{name}"),
        json!({"token": token}),
        namespace,
    )?;
    Ok(path.to_owned())
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| ClusterError::io(path, e))
}

/// Writes a self-contained kubeconfig (certificates inline, `ca_data` base64 PEM) with mode
/// 0600.
fn write_kubeconfig(
    path: &Path,
    url: &str,
    ca_data: &str,
    user_name: &str,
    user: Value,
    namespace: &str,
) -> Result<()> {
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "authstack-test", "cluster": {
            "server": url,
            "certificate-authority-data": ca_data,
        }}],
        "users": [{"name": user_name, "user": user}],
        "contexts": [{"name": "authstack-test", "context": {
            "cluster": "authstack-test", "user": user_name, "namespace": namespace,
        }}],
        "current-context": "authstack-test",
    });
    let yaml = serde_yaml::to_string(&config).map_err(|e| ClusterError::Manifest(e.to_string()))?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| ClusterError::io(parent, e))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| ClusterError::io(path, e))?;
    file.write_all(yaml.as_bytes())
        .map_err(|e| ClusterError::io(path, e))
}

/// A free TCP port on loopback.
fn free_port() -> Result<u16> {
    free_port_on(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// A free TCP port on `address`.
fn free_port_on(address: IpAddr) -> Result<u16> {
    TcpListener::bind((address, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| ClusterError::io(format!("{address}:0"), e))
}

/// The body of the supervising thread: start, report, wait for the stop signal, stop.
fn supervise(
    bin: &Path,
    options: &Options,
    report: mpsc::Sender<Result<Started>>,
    stop: mpsc::Receiver<()>,
) {
    let mut last = None;
    for attempt in 1..=START_ATTEMPTS {
        let _ = std::fs::remove_dir_all(&options.dir);
        let mut components = match Components::new(&options.dir) {
            Ok(c) => c,
            Err(e) => {
                let _ = report.send(Err(e));
                return;
            }
        };
        match boot(bin, options, &mut components) {
            Ok(started) => {
                if report.send(Ok(started)).is_err() {
                    components.stop(options.keep_dir);
                    return;
                }
                // Blocks until stopped (or the ControlPlane is gone).
                let _ = stop.recv();
                components.stop(options.keep_dir);
                return;
            }
            Err(e) => {
                let retry = attempt < START_ATTEMPTS && is_port_clash(&e);
                components.stop(!retry && options.keep_dir);
                if !retry {
                    let _ = report.send(Err(e));
                    return;
                }
                last = Some(e);
            }
        }
    }
    if let Some(e) = last {
        let _ = report.send(Err(e));
    }
}

fn is_port_clash(e: &ClusterError) -> bool {
    matches!(e, ClusterError::Exited { tail, .. } if tail.contains("address already in use"))
}

fn boot(bin: &Path, options: &Options, components: &mut Components) -> Result<Started> {
    let dir = &options.dir;
    let deadline = Instant::now() + START_TIMEOUT;
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let address = options.bind_address;
    let pki = Pki::generate(dir, address)?;
    let ca_pem = String::from_utf8_lossy(&read(&pki.ca_cert)?).into_owned();
    let (etcd_port, peer_port, api_port) = (free_port()?, free_port()?, free_port_on(address)?);
    let etcd_url = format!("http://127.0.0.1:{etcd_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let url = format!("https://{}", std::net::SocketAddr::new(address, api_port));
    let endpoint_flags: Vec<String> = if address.is_loopback() {
        // A loopback advertise address is refused by the endpoint reconciler.
        vec!["--endpoint-reconciler-type=none".into()]
    } else {
        // The `kubernetes` Service's endpoint: pods of a real node reach the server through it.
        vec![]
    };

    components.spawn(
        "etcd",
        &bin.join("etcd"),
        &[
            format!("--data-dir={}", path("etcd")),
            "--name=default".into(),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=default={peer_url}"),
            "--unsafe-no-fsync".into(),
            "--log-level=warn".into(),
        ],
    )?;
    let p = |f: &Path| f.to_string_lossy().into_owned();
    let audit_flags = audit::apiserver_flags(dir)?;
    components.spawn(
        "kube-apiserver",
        &bin.join("kube-apiserver"),
        &[
            format!("--etcd-servers={etcd_url}"),
            format!("--secure-port={api_port}"),
            format!("--bind-address={address}"),
            format!("--advertise-address={address}"),
            // A real node's name does not resolve on the host; its address does (logs, exec).
            "--kubelet-preferred-address-types=InternalIP".into(),
            format!("--cert-dir={}", path("apiserver-certs")),
            format!("--tls-cert-file={}", p(&pki.serving_cert)),
            format!("--tls-private-key-file={}", p(&pki.serving_key)),
            format!("--client-ca-file={}", p(&pki.ca_cert)),
            "--authorization-mode=RBAC".into(),
            format!("--service-account-issuer={SA_ISSUER}"),
            format!("--service-account-key-file={}", p(&pki.sa_pub)),
            format!("--service-account-signing-key-file={}", p(&pki.sa_key)),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            "--enable-admission-plugins=OwnerReferencesPermissionEnforcement".into(),
            "--allow-privileged=true".into(),
            "--profiling=false".into(),
        ]
        .into_iter()
        .chain(endpoint_flags)
        .chain(audit_flags)
        .collect::<Vec<_>>(),
    )?;
    let kubeconfig = dir.join(ADMIN_KUBECONFIG);
    write_kubeconfig(
        &kubeconfig,
        &url,
        &b64(ca_pem.as_bytes()),
        "authstack-admin",
        json!({
            "client-certificate-data": b64(&read(&pki.admin_cert)?),
            "client-key-data": b64(&read(&pki.admin_key)?),
        }),
        "default",
    )?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ClusterError::io("tokio runtime", e))?;
    let client = rt.block_on(client_from(&kubeconfig))?;
    rt.block_on(wait_until(
        components,
        deadline,
        "kube-apiserver /readyz",
        || {
            let client = client.clone();
            async move {
                let req = http::Request::get("/readyz").body(Vec::new()).ok()?;
                client
                    .request_text(req)
                    .await
                    .ok()
                    .filter(|b| b.starts_with("ok"))
            }
        },
    ))?;

    let kc = p(&kubeconfig);
    let controllers = [
        format!("--kubeconfig={kc}"),
        "--leader-elect=false".into(),
        "--secure-port=0".into(),
        format!("--controllers={}", controllers(options.nodes)),
        format!("--root-ca-file={}", p(&pki.ca_cert)),
        format!("--service-account-private-key-file={}", p(&pki.sa_key)),
        "--enable-hostpath-provisioner".into(),
    ];
    components.spawn(
        "kube-controller-manager",
        &bin.join("kube-controller-manager"),
        &controllers,
    )?;
    components.spawn(
        "kube-scheduler",
        &bin.join("kube-scheduler"),
        &[
            format!("--kubeconfig={kc}"),
            "--leader-elect=false".into(),
            "--secure-port=0".into(),
        ],
    )?;
    if options.nodes == Nodes::Kwok {
        components.spawn(
            "kwok",
            &bin.join("kwok"),
            &[
                format!("--kubeconfig={kc}"),
                format!("--config={}", p(&bin.join("kwok-stages.yaml"))),
                format!(
                    "--manage-nodes-with-annotation-selector={}={}",
                    KWOK_ANNOTATION.0, KWOK_ANNOTATION.1
                ),
                format!("--cidr={POD_CIDR}"),
                "--node-lease-duration-seconds=40".into(),
            ],
        )?;
    }
    rt.block_on(async {
        apply_yaml(
            &client,
            &cluster_objects(options.nodes),
            "authstack-testkit",
        )
        .await?;
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
        wait_until(
            components,
            deadline,
            "kube-controller-manager (the default ServiceAccount)",
            || {
                let sas = sas.clone();
                async move { sas.get_opt("default").await.ok().flatten() }
            },
        )
        .await?;
        if options.nodes == Nodes::Kwok {
            let nodes: Api<Node> = Api::all(client.clone());
            wait_until(
                components,
                deadline,
                "kwok's node to be Ready and untainted",
                || {
                    let nodes = nodes.clone();
                    async move { nodes.get(NODE_NAME).await.ok().filter(node_schedulable) }
                },
            )
            .await?;
        }
        let version = client.apiserver_version().await?.git_version;
        Ok(Started {
            kubeconfig: kubeconfig.clone(),
            url: url.clone(),
            version,
        })
    })
}

/// kube-controller-manager's `--controllers` for a node stand-in.
fn controllers(nodes: Nodes) -> String {
    let extra = match nodes {
        Nodes::Kwok => &[][..],
        Nodes::None => REAL_NODE_CONTROLLERS,
    };
    CONTROLLERS
        .iter()
        .chain(extra)
        .copied()
        .collect::<Vec<_>>()
        .join(",")
}

/// The admin kubeconfig in a state directory.
const ADMIN_KUBECONFIG: &str = "admin.kubeconfig";
/// Where kube-controller-manager's host-path provisioner creates volumes (fixed in its code).
const HOSTPATH_PV_DIR: &str = "/tmp/hostpath_pv/";

/// Deletes the directories of the host-path volumes of the control plane behind `kubeconfig`
/// (called before it stops: kube-controller-manager deletes them only when their claims go).
pub(crate) fn remove_provisioned_volumes(kubeconfig: &Path) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let paths = rt.block_on(async {
        let client = client_from(kubeconfig).await.ok()?;
        let pvs: Api<k8s_openapi::api::core::v1::PersistentVolume> = Api::all(client);
        let list = tokio::time::timeout(Duration::from_secs(10), pvs.list(&Default::default()))
            .await
            .ok()?
            .ok()?;
        Some(
            list.items
                .into_iter()
                .filter_map(|pv| pv.spec?.host_path.map(|h| h.path))
                .filter(|p| p.starts_with(HOSTPATH_PV_DIR) && !p.contains(".."))
                .collect::<Vec<_>>(),
        )
    });
    for path in paths.unwrap_or_default() {
        let _ = std::fs::remove_dir_all(path);
    }
    // Only if empty: another control plane may be using it.
    let _ = std::fs::remove_dir(HOSTPATH_PV_DIR);
}

/// Ready=True and no NoSchedule taint left (kube-controller-manager's node lifecycle removes
/// `node.kubernetes.io/not-ready` once kwok reports the node Ready).
fn node_schedulable(node: &Node) -> bool {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let tainted = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|t| !t.is_empty());
    ready && !tainted
}

/// With kwok: the default StorageClass (kube-controller-manager's host-path provisioner) and
/// the kwok Node. Without (a real node brings its volumes): nothing.
fn cluster_objects(nodes: Nodes) -> String {
    if nodes == Nodes::None {
        return String::new();
    }
    let mut docs = vec![json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": STORAGE_CLASS,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": "kubernetes.io/host-path",
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
    })];
    if nodes == Nodes::Kwok {
        let capacity = json!({"cpu": "1000", "memory": "4Ti", "pods": "5000"});
        docs.push(json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": NODE_NAME,
                "annotations": {KWOK_ANNOTATION.0: KWOK_ANNOTATION.1, "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {
                    "kubernetes.io/hostname": NODE_NAME,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                },
            },
            "status": {"allocatable": capacity, "capacity": capacity},
        }));
    }
    docs.iter()
        .filter_map(|d| serde_yaml::to_string(d).ok())
        .collect::<Vec<_>>()
        .join("---\n")
}

/// Polls `check` until it yields, failing early when a component exits.
async fn wait_until<T, F, Fut>(
    components: &mut Components,
    deadline: Instant,
    what: &str,
    mut check: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        components.check_running()?;
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(ClusterError::Timeout(started.elapsed(), what.to_owned()));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
