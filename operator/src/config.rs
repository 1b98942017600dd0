//! Command-line flags and environment of the operator binary.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{ArgAction, Parser};

use crate::settings::Images;

fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::duration::parse(s).map_err(|e| e.to_string())
}

/// Operator configuration.
#[derive(Parser, Debug, Clone, PartialEq, Eq)]
#[command(
    name = "authstack-operator",
    version,
    about = "Reconciles AuthStack resources into a running auth platform and rotates its signing keys."
)]
pub struct Config {
    /// Namespace to watch for AuthStacks; empty watches every namespace.
    #[arg(long, env = "WATCH_NAMESPACE", default_value = "")]
    pub namespace: String,

    /// Run the controller only while holding the leader Lease (set false for a single replica).
    #[arg(long, env = "LEADER_ELECTION", default_value_t = true, action = ArgAction::Set)]
    pub leader_election: bool,

    /// Name of the coordination.k8s.io/v1 Lease used for leader election.
    #[arg(long, env = "LEASE_NAME", default_value = "authstack-operator")]
    pub lease_name: String,

    /// Namespace of the Lease; defaults to the kubeconfig / in-cluster namespace.
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// Holder identity in the Lease; defaults to `<hostname>-<pid>`.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    /// How long a Lease is valid without renewal (Go duration).
    #[arg(long, env = "LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,

    /// How often the leader renews the Lease (Go duration).
    #[arg(long, env = "LEASE_RENEW_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub lease_renew_interval: Duration,

    /// How often a standby replica tries to acquire the Lease (Go duration).
    #[arg(long, env = "LEASE_RETRY_INTERVAL", default_value = "2s", value_parser = parse_duration)]
    pub lease_retry_interval: Duration,

    /// Address of the /metrics, /healthz and /readyz HTTP endpoint.
    #[arg(long, env = "METRICS_LISTEN", default_value = "0.0.0.0:8080")]
    pub metrics_listen: SocketAddr,

    /// Server-side apply the AuthStack CRD at start-up (needs RBAC on customresourcedefinitions).
    #[arg(long, env = "INSTALL_CRD", default_value_t = false, action = ArgAction::Set)]
    pub install_crd: bool,

    /// Default auth-svc image (a stack's spec.authService.image overrides it).
    #[arg(long, env = "AUTH_SVC_IMAGE")]
    pub auth_svc_image: Option<String>,

    /// Default gateway image (a stack's spec.gateway.image overrides it).
    #[arg(long, env = "GATEWAY_IMAGE")]
    pub gateway_image: Option<String>,
}

impl Config {
    /// The default images after flags.
    pub fn images(&self) -> Images {
        let defaults = Images::default();
        Images {
            auth_svc: self
                .auth_svc_image
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or(defaults.auth_svc),
            gateway: self
                .gateway_image
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or(defaults.gateway),
        }
    }

    /// The namespace to watch, if restricted.
    pub fn watch_namespace(&self) -> Option<&str> {
        (!self.namespace.is_empty()).then_some(self.namespace.as_str())
    }

    /// The Lease holder identity.
    pub fn holder_identity(&self) -> String {
        self.identity
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| {
                let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_owned())
                    .ok()
                    .filter(|h| !h.is_empty())
                    .or_else(|| std::env::var("HOSTNAME").ok())
                    .unwrap_or_else(|| "authstack-operator".into());
                format!("{host}-{}", std::process::id())
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = Config::try_parse_from(["authstack-operator"]).unwrap();
        assert!(c.leader_election);
        assert!(!c.install_crd);
        assert_eq!(c.lease_duration, Duration::from_secs(15));
        assert_eq!(c.lease_renew_interval, Duration::from_secs(5));
        assert_eq!(c.metrics_listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(c.watch_namespace(), None);
        assert!(
            c.images()
                .auth_svc
                .starts_with("ghcr.io/authstack/auth-svc:")
        );
    }

    #[test]
    fn flags_override() {
        let c = Config::try_parse_from([
            "authstack-operator",
            "--namespace",
            "team-a",
            "--leader-election=false",
            "--gateway-image",
            "example/gw:2",
            "--lease-duration",
            "3s",
            "--identity",
            "pod-1",
        ])
        .unwrap();
        assert_eq!(c.watch_namespace(), Some("team-a"));
        assert!(!c.leader_election);
        assert_eq!(c.images().gateway, "example/gw:2");
        assert_eq!(c.lease_duration, Duration::from_secs(3));
        assert_eq!(c.holder_identity(), "pod-1");
        assert!(Config::try_parse_from(["x", "--lease-duration", "soon"]).is_err());
    }
}
