//! Command-line flags and environment of the operator binary.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{ArgAction, Parser};

use crate::controller::requeue::Tuning;
use crate::settings::Images;

fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::duration::parse(s).map_err(|e| e.to_string())
}

/// Default images of the workloads a stack runs (flags and environment shared by the operator
/// and `authstack-render`); a stack's spec overrides each.
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageFlags {
    /// Default auth-svc image (a stack's spec.authService.image overrides it).
    #[arg(long, env = "AUTH_SVC_IMAGE")]
    pub auth_svc_image: Option<String>,

    /// Default gateway image (a stack's spec.gateway.image overrides it).
    #[arg(long, env = "GATEWAY_IMAGE")]
    pub gateway_image: Option<String>,

    /// Default image of a managed PostgreSQL (a stack's spec.postgres.managed.image overrides
    /// it); empty: docker.io/library/postgres:17.
    #[arg(long, env = "POSTGRES_IMAGE")]
    pub postgres_image: Option<String>,

    /// Default image of a managed RabbitMQ (a stack's spec.rabbitmq.managed.image overrides
    /// it); empty: docker.io/library/rabbitmq:4.1.
    #[arg(long, env = "RABBITMQ_IMAGE")]
    pub rabbitmq_image: Option<String>,
}

impl ImageFlags {
    /// The default images after flags (an empty flag keeps the built-in default).
    pub fn images(&self) -> Images {
        let defaults = Images::default();
        let pick = |flag: &Option<String>, default: String| {
            flag.clone().filter(|s| !s.is_empty()).unwrap_or(default)
        };
        Images {
            auth_svc: pick(&self.auth_svc_image, defaults.auth_svc),
            gateway: pick(&self.gateway_image, defaults.gateway),
            postgres: pick(&self.postgres_image, defaults.postgres),
            rabbitmq: pick(&self.rabbitmq_image, defaults.rabbitmq),
        }
    }
}

/// Operator configuration.
#[derive(Parser, Debug, Clone, PartialEq, Eq)]
#[command(
    name = "authstack-operator",
    version,
    about = "Reconciles AuthStack resources into a running auth platform and rotates its signing keys."
)]
pub struct Config {
    /// Namespaces to watch for AuthStacks, comma-separated (one controller each; the
    /// operator needs permissions only there); empty watches every namespace (and needs
    /// cluster-wide permissions).
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

    /// Default images of the stacks' workloads.
    #[command(flatten)]
    pub image_flags: ImageFlags,

    /// How long to wait for the CRD to be Established after installing it (Go duration).
    #[arg(long, env = "CRD_ESTABLISHED_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub crd_established_timeout: Duration,

    /// AuthStacks reconciled at once per watched namespace (bounds the operator's peak memory
    /// and API load).
    #[arg(long, env = "RECONCILE_CONCURRENCY", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub reconcile_concurrency: u16,

    /// Longest time between two reconciles of a stack, even when nothing changed (Go duration).
    #[arg(long, env = "RECONCILE_MAX_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub reconcile_max_interval: Duration,

    /// Retry interval while a stack's external URL Secret is missing or lacks its key (Go
    /// duration; those Secrets are not watched).
    #[arg(long, env = "EXTERNAL_SECRET_RETRY_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub external_secret_retry_interval: Duration,

    /// First retry delay after a failed reconcile; it doubles per failure, with jitter (Go
    /// duration).
    #[arg(long, env = "RECONCILE_BACKOFF_MIN", default_value = "1s", value_parser = parse_duration)]
    pub reconcile_backoff_min: Duration,

    /// Longest retry delay after repeated failures (Go duration).
    #[arg(long, env = "RECONCILE_BACKOFF_MAX", default_value = "5m", value_parser = parse_duration)]
    pub reconcile_backoff_max: Duration,
}

impl Config {
    /// The default images after flags.
    pub fn images(&self) -> Images {
        self.image_flags.images()
    }

    /// The controller's timing knobs.
    pub fn tuning(&self) -> Tuning {
        Tuning {
            concurrency: self.reconcile_concurrency,
            max_requeue: self.reconcile_max_interval,
            external_retry: self.external_secret_retry_interval,
            backoff_min: self.reconcile_backoff_min,
            backoff_max: self.reconcile_backoff_max,
        }
    }

    /// Where to watch: one entry per namespace, or a single `None` for every namespace.
    pub fn watch_scopes(&self) -> Vec<Option<String>> {
        let mut namespaces: Vec<String> = self
            .namespace
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect();
        namespaces.sort();
        namespaces.dedup();
        if namespaces.is_empty() {
            vec![None]
        } else {
            namespaces.into_iter().map(Some).collect()
        }
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
        assert_eq!(c.watch_scopes(), vec![None]);
        assert_eq!(c.tuning(), Tuning::default());
        assert_eq!(c.crd_established_timeout, Duration::from_secs(30));
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
            "--postgres-image",
            "registry.local/postgres:17",
            "--lease-duration",
            "3s",
            "--identity",
            "pod-1",
            "--reconcile-concurrency",
            "8",
            "--reconcile-backoff-max",
            "1m",
        ])
        .unwrap();
        assert_eq!(c.watch_scopes(), vec![Some("team-a".to_owned())]);
        assert!(!c.leader_election);
        assert_eq!(c.images().gateway, "example/gw:2");
        assert_eq!(c.images().postgres, "registry.local/postgres:17");
        assert_eq!(c.images().rabbitmq, "docker.io/library/rabbitmq:4.1");
        assert_eq!(c.lease_duration, Duration::from_secs(3));
        assert_eq!(c.holder_identity(), "pod-1");
        assert_eq!(c.tuning().concurrency, 8);
        assert_eq!(c.tuning().backoff_max, Duration::from_secs(60));
        assert!(Config::try_parse_from(["x", "--reconcile-concurrency", "0"]).is_err());
        assert!(Config::try_parse_from(["x", "--lease-duration", "soon"]).is_err());
    }

    #[test]
    fn several_namespaces() {
        let c = Config::try_parse_from(["x", "--namespace", "team-b, team-a,,team-b"]).unwrap();
        assert_eq!(
            c.watch_scopes(),
            vec![Some("team-a".to_owned()), Some("team-b".to_owned())]
        );
    }
}
