//! The operator library's error type.

use crate::keys::KeysError;

/// Errors of the operator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// An object with a name the stack needs exists but is not controlled by this AuthStack:
    /// the operator never takes over (or deletes) objects it does not own.
    #[error("{kind} {name} already exists and is not controlled by this AuthStack")]
    NotOwned {
        /// Its kind.
        kind: String,
        /// Its name.
        name: String,
    },
    /// The signing keys could not be planned.
    #[error(transparent)]
    Keys(#[from] KeysError),
    /// The signing key Secret kept changing under us.
    #[error("Secret {0} changed concurrently while the key ring was being written")]
    KeyRingConflict(String),
    /// An object could not be (de)serialized.
    #[error("serialization: {0}")]
    Serialization(#[from] serde_json::Error),
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

impl Error {
    /// A short, stable label for metrics and condition reasons.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(s)) if s.is_conflict() => "Conflict",
            Error::Kube(kube::Error::Api(s)) if s.is_forbidden() => "Forbidden",
            Error::Kube(kube::Error::Api(s)) if s.is_invalid() => "Invalid",
            Error::Kube(_) => "KubernetesApiError",
            Error::NotOwned { .. } => "ObjectNotOwned",
            Error::Keys(KeysError::InvalidRing { .. }) => "KeyRingInvalid",
            Error::Keys(_) => "KeyRotationFailed",
            Error::KeyRingConflict(_) => "KeyRingConflict",
            Error::Serialization(_) => "SerializationError",
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
