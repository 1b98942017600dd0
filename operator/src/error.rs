//! The operator library's error type: one variant per reconcile phase (each phase has its own
//! error type in [`crate::controller`]) plus start-up and leadership failures.

use crate::controller::apply::ApplyError;
use crate::controller::build::BuildError;
use crate::controller::dereference::DereferenceError;
use crate::controller::report::StatusError;
use crate::keys::KeysError;

/// Errors of the operator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading what the stack references failed.
    #[error(transparent)]
    Dereference(#[from] DereferenceError),
    /// Building the desired state failed.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// Writing the desired state failed.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// Writing the status failed.
    #[error(transparent)]
    Status(#[from] StatusError),
    /// A Kubernetes API call outside a reconcile failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The kube client could not be configured.
    #[error("Kubernetes client configuration: {0}")]
    ClientConfig(String),
    /// Leader election failed or leadership was lost.
    #[error("leader election: {0}")]
    Leadership(String),
    /// The metrics/health listener could not be started.
    #[error("metrics listener {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The API server does not serve AuthStacks.
    #[error(
        "the AuthStack CRD is not installed: apply crds/authstack.yaml (or the Helm chart), or run with --install-crd"
    )]
    CrdMissing,
    /// The CRD could not be installed.
    #[error("installing the CRD: {0}")]
    InstallCrd(String),
}

fn kube_reason(e: &kube::Error) -> &'static str {
    match e {
        kube::Error::Api(s) if s.is_conflict() => "Conflict",
        kube::Error::Api(s) if s.is_forbidden() => "Forbidden",
        kube::Error::Api(s) if s.is_invalid() => "Invalid",
        _ => "KubernetesApiError",
    }
}

impl Error {
    /// A short, stable label for metrics and condition reasons.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Dereference(DereferenceError::Kube(e))
            | Error::Apply(ApplyError::Kube(e))
            | Error::Status(StatusError::Kube(e))
            | Error::Kube(e) => kube_reason(e),
            Error::Dereference(DereferenceError::NotOwned(_))
            | Error::Apply(ApplyError::NotOwned(_)) => "ObjectNotOwned",
            Error::Dereference(DereferenceError::Undecodable(_)) => "ObjectUndecodable",
            Error::Build(BuildError::Keys(KeysError::InvalidRing { .. })) => "KeyRingInvalid",
            Error::Build(BuildError::Keys(_)) => "KeyRotationFailed",
            Error::Build(BuildError::Serialization(_)) => "SerializationError",
            Error::Apply(ApplyError::KeyRingConflict(_)) => "KeyRingConflict",
            Error::ClientConfig(_) => "ClientConfig",
            Error::Leadership(_) => "LeaderElection",
            Error::Listen { .. } => "Listen",
            Error::InstallCrd(_) => "InstallCrd",
            Error::CrdMissing => "CrdMissing",
        }
    }
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;
