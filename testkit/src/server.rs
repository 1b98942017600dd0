//! The public test fixture: start/stop the fake API server, kubeconfig generation and direct
//! state access.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Error;
use crate::http::{RecordedRequest, Shared, router};
use crate::ops::{DeleteOpts, PatchKind, Sub, WriteCtx};
use crate::resources::ResourceType;
use crate::status::ApiError;
use crate::store::{Store, StoreConfig};

/// Builder for [`FakeApiServer`].
#[derive(Debug, Clone)]
pub struct FakeApiServerBuilder {
    port: u16,
    bookmark_interval: Duration,
    history_capacity: usize,
    auto_ready_workloads: bool,
}

impl Default for FakeApiServerBuilder {
    fn default() -> Self {
        Self {
            port: 0,
            bookmark_interval: Duration::from_secs(5),
            history_capacity: 10_000,
            auto_ready_workloads: false,
        }
    }
}

impl FakeApiServerBuilder {
    /// Port on 127.0.0.1 (0 = any free port, the default).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Interval between watch bookmarks for watches with `allowWatchBookmarks=true` (default 5 s).
    pub fn bookmark_interval(mut self, every: Duration) -> Self {
        self.bookmark_interval = every;
        self
    }

    /// Number of change events kept for resuming watches (default 10 000); older
    /// resourceVersions get `410 Gone`.
    pub fn history_capacity(mut self, events: usize) -> Self {
        self.history_capacity = events;
        self
    }

    /// Act as the Deployment/StatefulSet controllers: after every spec change the object's
    /// status is set to fully rolled out and ready (default off).
    pub fn auto_ready_workloads(mut self, on: bool) -> Self {
        self.auto_ready_workloads = on;
        self
    }

    /// Bind and start serving.
    pub async fn start(self) -> Result<FakeApiServer, Error> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await?;
        let addr = listener.local_addr()?;
        let (store, _rx) = Store::new(StoreConfig {
            history_capacity: self.history_capacity,
            auto_ready_workloads: self.auto_ready_workloads,
        });
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            store: Arc::new(Mutex::new(store)),
            bookmark_interval: self.bookmark_interval,
            shutdown: shutdown_rx.clone(),
            requests: Mutex::new(Vec::new()),
            address: addr.to_string(),
        });
        let app = router(shared.clone());
        let mut stop = shutdown_rx;
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|v| *v).await;
                })
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "fake apiserver stopped with an error");
            }
        });
        tracing::debug!(%addr, "fake apiserver listening");
        Ok(FakeApiServer {
            addr,
            shared,
            shutdown_tx,
            task: Some(task),
        })
    }
}

/// A stateful in-memory Kubernetes API server on loopback, for tests.
pub struct FakeApiServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown_tx: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for FakeApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeApiServer")
            .field("addr", &self.addr)
            .finish()
    }
}

fn to_manifest<T: Serialize + ?Sized>(obj: &T) -> Result<Value, Error> {
    let v = serde_json::to_value(obj).map_err(|e| Error::Manifest(e.to_string()))?;
    match v {
        Value::String(text) => {
            serde_yaml::from_str(&text).map_err(|e| Error::Manifest(e.to_string()))
        }
        Value::Object(_) => Ok(v),
        other => Err(Error::Manifest(format!("expected an object, got {other}"))),
    }
}

fn api_err(e: ApiError) -> Error {
    Error::Api {
        code: e.code,
        reason: e.reason.to_string(),
        message: e.message,
    }
}

/// The destination of a manifest, resolved by [`FakeApiServer::target_of`].
struct Target {
    rt: Arc<ResourceType>,
    version: String,
    ns: String,
    name: String,
}

impl FakeApiServer {
    /// Start a server on a free loopback port with default settings.
    pub async fn start() -> Result<FakeApiServer, Error> {
        FakeApiServerBuilder::default().start().await
    }

    /// A builder for non-default settings.
    pub fn builder() -> FakeApiServerBuilder {
        FakeApiServerBuilder::default()
    }

    /// Base URL, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A kubeconfig (YAML) for this server: no TLS, no auth, default namespace `default`.
    pub fn kubeconfig_yaml(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: authstack-fake\n  cluster:\n    server: {url}\ncontexts:\n- name: authstack-fake\n  context:\n    cluster: authstack-fake\n    user: authstack-fake\n    namespace: default\ncurrent-context: authstack-fake\npreferences: {{}}\nusers:\n- name: authstack-fake\n  user: {{}}\n",
            url = self.url()
        )
    }

    /// Write the kubeconfig to `dir/kubeconfig` and return its path.
    ///
    /// # Panics
    /// If the file cannot be written (use [`Self::try_write_kubeconfig`] to handle that).
    pub fn write_kubeconfig(&self, dir: &Path) -> PathBuf {
        match self.try_write_kubeconfig(dir) {
            Ok(p) => p,
            Err(e) => panic!("cannot write kubeconfig into {}: {e}", dir.display()),
        }
    }

    /// Write the kubeconfig to `dir/kubeconfig` (creating `dir`) and return its path.
    pub fn try_write_kubeconfig(&self, dir: &Path) -> Result<PathBuf, Error> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("kubeconfig");
        std::fs::write(&path, self.kubeconfig_yaml())?;
        Ok(path)
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.shared.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn resolve(
        &self,
        api_version: &str,
        kind_or_plural: &str,
    ) -> Result<(Arc<ResourceType>, String), Error> {
        self.store()
            .registry
            .lookup_loose(api_version, kind_or_plural)
            .ok_or_else(|| Error::UnknownType {
                api_version: api_version.to_string(),
                kind: kind_or_plural.to_string(),
            })
    }

    /// Where a manifest goes: its resource type, served version, namespace (defaulted) and name.
    fn target_of(&self, v: &Value) -> Result<Target, Error> {
        let field = |pointer: &str| {
            v.pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let (rt, version) = self.resolve(&field("/apiVersion"), &field("/kind"))?;
        let ns = Self::ns_for(
            &rt,
            v.pointer("/metadata/namespace").and_then(Value::as_str),
        );
        Ok(Target {
            rt,
            version,
            ns,
            name: field("/metadata/name"),
        })
    }

    fn ns_for(rt: &ResourceType, namespace: Option<&str>) -> String {
        if rt.namespaced {
            namespace.unwrap_or("default").to_string()
        } else {
            String::new()
        }
    }

    /// Install a CustomResourceDefinition (a `serde_json::Value`, a k8s-openapi
    /// `CustomResourceDefinition`, or YAML text); same effect as creating it through the API
    /// (or updating it when it already exists). The custom resource is served immediately.
    pub fn install_crd<T: Serialize + ?Sized>(&self, crd: &T) -> Result<Value, Error> {
        let mut v = to_manifest(crd)?;
        if v.get("apiVersion").is_none() {
            v["apiVersion"] = json!("apiextensions.k8s.io/v1");
        }
        if v.get("kind").is_none() {
            v["kind"] = json!("CustomResourceDefinition");
        }
        self.create_or_replace(v)
    }

    fn create_or_replace(&self, mut v: Value) -> Result<Value, Error> {
        let Target {
            rt,
            version,
            ns,
            name,
        } = self.target_of(&v)?;
        let mut ctx = self.ctx(&version);
        let mut st = self.store();
        if !name.is_empty() && st.get(&rt.key(), &ns, &name).is_some() {
            if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("resourceVersion");
            }
            st.replace(&rt, &ns, &name, v, Sub::Main, &mut ctx)
                .map_err(api_err)
        } else {
            st.create(&rt, &ns, v, &mut ctx).map_err(api_err)
        }
    }

    fn ctx(&self, version: &str) -> WriteCtx {
        WriteCtx {
            version: version.to_string(),
            manager: "authstack-testkit".into(),
            ..Default::default()
        }
    }

    /// Create any object (JSON value, typed k8s-openapi object or YAML text) as a POST would;
    /// the namespace defaults to `default`.
    pub fn create<T: Serialize + ?Sized>(&self, obj: &T) -> Result<Value, Error> {
        let v = to_manifest(obj)?;
        let Target {
            rt, version, ns, ..
        } = self.target_of(&v)?;
        let mut ctx = self.ctx(&version);
        self.store().create(&rt, &ns, v, &mut ctx).map_err(api_err)
    }

    /// Create a namespace.
    pub fn create_namespace(&self, name: &str) -> Result<Value, Error> {
        self.create(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))
    }

    /// Server-side apply an object (forced) as `field_manager`.
    pub fn apply<T: Serialize + ?Sized>(
        &self,
        obj: &T,
        field_manager: &str,
    ) -> Result<Value, Error> {
        let v = to_manifest(obj)?;
        let Target {
            rt,
            version,
            ns,
            name,
        } = self.target_of(&v)?;
        let body = serde_json::to_vec(&v).map_err(|e| Error::Manifest(e.to_string()))?;
        let mut ctx = self.ctx(&version);
        ctx.manager = field_manager.to_string();
        self.store()
            .patch(
                &rt,
                &ns,
                &name,
                PatchKind::Apply { force: true },
                &body,
                Sub::Main,
                &mut ctx,
            )
            .map(|(v, _)| v)
            .map_err(api_err)
    }

    /// Current state of one object (`kind_or_plural`: `Deployment`, `deployments`, `deploy`...;
    /// namespace defaults to `default` for namespaced types).
    pub fn get(
        &self,
        api_version: &str,
        kind_or_plural: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let (rt, version) = self.resolve(api_version, kind_or_plural).ok()?;
        let ns = Self::ns_for(&rt, namespace);
        let st = self.store();
        st.get(&rt.key(), &ns, name)
            .map(|o| crate::watch::present(&rt, &version, o, false))
    }

    /// All objects of a type (in one namespace, or everywhere with `None`), sorted by
    /// namespace and name.
    pub fn list(
        &self,
        api_version: &str,
        kind_or_plural: &str,
        namespace: Option<&str>,
    ) -> Vec<Value> {
        let Ok((rt, version)) = self.resolve(api_version, kind_or_plural) else {
            return Vec::new();
        };
        let st = self.store();
        st.list(
            &rt.key(),
            namespace.filter(|_| rt.namespaced),
            &Default::default(),
            &Default::default(),
        )
        .into_iter()
        .map(|o| crate::watch::present(&rt, &version, o, false))
        .collect()
    }

    /// Delete an object as a DELETE with default options would (finalizers and garbage
    /// collection apply).
    pub fn delete(
        &self,
        api_version: &str,
        kind_or_plural: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<(), Error> {
        let (rt, version) = self.resolve(api_version, kind_or_plural)?;
        let ns = Self::ns_for(&rt, namespace);
        let ctx = self.ctx(&version);
        self.store()
            .delete(&rt, &ns, name, &DeleteOpts::default(), &ctx)
            .map(|_| ())
            .map_err(api_err)
    }

    /// Merge-patch an object's `.status` (through `/status` when the type has that
    /// subresource), e.g. to simulate a controller. `status_patch` is the patch for `.status`.
    pub fn patch_status(
        &self,
        api_version: &str,
        kind_or_plural: &str,
        namespace: Option<&str>,
        name: &str,
        status_patch: &Value,
    ) -> Result<Value, Error> {
        let (rt, _) = self.resolve(api_version, kind_or_plural)?;
        let ns = Self::ns_for(&rt, namespace);
        self.store()
            .merge_status(&rt, &ns, name, status_patch, "authstack-testkit")
            .map_err(api_err)
    }

    /// Mark an `apps/v1` Deployment or StatefulSet as rolled out and ready, as the
    /// controllers of a real cluster would.
    pub fn mark_ready(&self, kind: &str, namespace: &str, name: &str) -> Result<Value, Error> {
        let (rt, _) = self.resolve("apps/v1", kind)?;
        if rt.kind != "Deployment" && rt.kind != "StatefulSet" {
            return Err(Error::UnknownType {
                api_version: "apps/v1".into(),
                kind: kind.to_string(),
            });
        }
        let mut st = self.store();
        if st.get(&rt.key(), namespace, name).is_none() {
            return Err(api_err(ApiError::not_found(&rt.target(name))));
        }
        st.mark_ready(&rt.key(), namespace, name)
            .ok_or_else(|| Error::Manifest("status could not be written".into()))
    }

    /// Latest resourceVersion handed out.
    pub fn resource_version(&self) -> u64 {
        self.store().current_rv()
    }

    /// Every HTTP request received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Forget the recorded requests.
    pub fn clear_requests(&self) {
        if let Ok(mut r) = self.shared.requests.lock() {
            r.clear();
        }
    }

    /// Stop serving: ends open watches and waits (up to 5 s) for connections to close.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown_tx.send(true);
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        let _ = self.shutdown_tx.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
