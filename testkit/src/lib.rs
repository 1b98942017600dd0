//! A stateful in-memory Kubernetes API server for tests of the AuthStack operator.
//!
//! It speaks real HTTP/1.1 on loopback (no TLS, no auth) and behaves like kube-apiserver
//! v1.33 for what kube-rs clients, kube-runtime controllers and kubectl use: discovery
//! (legacy and aggregated), CRUD, label/field selectors, paging, watches with bookmarks,
//! streaming lists and `410 Gone`, merge/JSON/strategic patches, server-side apply with
//! `managedFields`, status subresources, `metadata.generation`, finalizers, owner-reference
//! garbage collection, namespace termination, CRDs with structural-schema pruning,
//! defaulting and validation, and `Status` errors shaped like kube-apiserver's.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use authstack_testkit::FakeApiServer;
//!
//! let server = FakeApiServer::builder().auto_ready_workloads(true).start().await?;
//! # let crd_yaml = "";
//! server.install_crd(crd_yaml)?; // CRD as YAML text, serde_json::Value or k8s-openapi type
//! let kubeconfig = server.write_kubeconfig(std::path::Path::new("/tmp/e2e"));
//! // run the operator with KUBECONFIG=<kubeconfig>, or build a kube::Client from
//! // kube::config::Kubeconfig::from_yaml(&server.kubeconfig_yaml())
//! # let _ = kubeconfig;
//! # Ok(())
//! # }
//! ```
//!
//! [`tcp_proxy::TcpProxy`] is also here: a loopback proxy whose connections a test can cut, to
//! simulate a message broker that drops connections or goes away.
//!
//! Notes for tests:
//! - Namespaces `default`, `kube-system`, `kube-public` and `kube-node-lease` exist; other
//!   namespaces must be created before use (404 otherwise), as on a real cluster.
//! - No controllers run: Deployments/StatefulSets stay un-ready unless the builder enables
//!   [`FakeApiServerBuilder::auto_ready_workloads`] or a test calls
//!   [`FakeApiServer::mark_ready`] / [`FakeApiServer::patch_status`]; Pods are never created.
//! - Only JSON/YAML bodies are accepted: kubectl's imperative generators (`kubectl create
//!   secret|configmap|namespace|deployment ...`) send protobuf and get 415; use `-f`.

mod builtin;
pub mod cleanup;
mod http;
mod openapi;
mod ops;
mod patch;
pub mod postgres;
mod resources;
mod schema;
mod selectors;
mod server;
mod ssa;
mod status;
mod store;
mod table;
pub mod tcp_proxy;
mod validation;
mod watch;

pub use http::RecordedRequest;
pub use server::{FakeApiServer, FakeApiServerBuilder};

/// Errors of the test fixture API (not of HTTP requests, which get `Status` objects).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Binding the listener or writing a file failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A manifest could not be serialized or parsed.
    #[error("invalid manifest: {0}")]
    Manifest(String),
    /// The apiVersion/kind is not served.
    #[error("unknown resource type {kind} in {api_version}")]
    UnknownType {
        /// Requested apiVersion.
        api_version: String,
        /// Requested kind or plural.
        kind: String,
    },
    /// The operation was rejected as the API would reject it.
    #[error("{reason} ({code}): {message}")]
    Api {
        /// HTTP status code.
        code: u16,
        /// Status reason, e.g. `Invalid`.
        reason: String,
        /// Status message.
        message: String,
    },
}
