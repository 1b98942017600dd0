//! Semantic validation of an AuthStack spec: everything the schema cannot check (or that the
//! API server may not have checked), resolved into the values the builders use.

use std::time::Duration;

use authstack_protocol::limits;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use crate::builders::meta::{Names, owner_reference};
use crate::crd::{AuthStack, Backing, ExternalSpec, GatewaySpec, ManagedSpec, SecretKeyRef};
use crate::duration;

/// Default container images (the operator's `--auth-svc-image`, `--gateway-image`,
/// `--postgres-image`, `--rabbitmq-image`); a stack's spec overrides each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Images {
    /// auth-svc image.
    pub auth_svc: String,
    /// Gateway image.
    pub gateway: String,
    /// Image of a managed PostgreSQL.
    pub postgres: String,
    /// Image of a managed RabbitMQ.
    pub rabbitmq: String,
}

impl Default for Images {
    fn default() -> Self {
        let version = env!("CARGO_PKG_VERSION");
        Images {
            auth_svc: format!("ghcr.io/authstack/auth-svc:{version}"),
            gateway: format!("ghcr.io/authstack/gateway:{version}"),
            postgres: POSTGRES_IMAGE.into(),
            rabbitmq: RABBITMQ_IMAGE.into(),
        }
    }
}

/// Default image of a managed PostgreSQL.
pub const POSTGRES_IMAGE: &str = "docker.io/library/postgres:17";
/// Default image of a managed RabbitMQ.
pub const RABBITMQ_IMAGE: &str = "docker.io/library/rabbitmq:4.1";

/// A backing service after validation.
#[derive(Clone, Debug, PartialEq)]
pub enum BackingService {
    /// Run by the operator.
    Managed(ManagedSpec),
    /// Run elsewhere; the URL is in the user's Secret.
    External(SecretKeyRef),
}

impl BackingService {
    /// Whether the operator runs it.
    pub fn is_managed(&self) -> bool {
        matches!(self, BackingService::Managed(_))
    }
}

/// Token settings, in seconds where the services expect seconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenSettings {
    /// Access token lifetime.
    pub access_ttl: Duration,
    /// Refresh token lifetime.
    pub refresh_ttl: Duration,
    /// Refresh reuse grace window.
    pub reuse_grace: Duration,
    /// `iss`.
    pub issuer: String,
    /// `aud`.
    pub audience: String,
}

/// Key rotation settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySettings {
    /// Algorithm of new keys.
    pub algorithm: authstack_keyring::SigningAlgorithm,
    /// Scheduled rotation interval (`None` = manual only).
    pub rotation_interval: Option<Duration>,
    /// Publication time before a new key signs.
    pub propagation_delay: Duration,
    /// Manual rotation counter.
    pub rotation_counter: u64,
    /// Kids to revoke.
    pub revoked_kids: Vec<String>,
}

/// Everything the builders need, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Object names.
    pub names: Names,
    /// Owner reference to the AuthStack.
    pub owner: OwnerReference,
    /// Gateway spec.
    pub gateway: GatewaySpec,
    /// Gateway image.
    pub gateway_image: String,
    /// Gateway RPC timeout.
    pub rpc_timeout: Duration,
    /// auth-svc spec (replicas, resources, argon2, lockout).
    pub auth: crate::crd::AuthServiceSpec,
    /// auth-svc image.
    pub auth_image: String,
    /// Token settings.
    pub tokens: TokenSettings,
    /// Lockout window.
    pub lockout_window: Duration,
    /// Lockout duration.
    pub lockout_duration: Duration,
    /// PostgreSQL.
    pub postgres: BackingService,
    /// RabbitMQ.
    pub rabbitmq: BackingService,
    /// Keys.
    pub keys: KeySettings,
    /// Peers admitted to the metrics ports.
    pub metrics_from: Vec<k8s_openapi::api::networking::v1::NetworkPolicyPeer>,
}

/// The spec problems found, each a readable sentence naming the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid AuthStack spec: {}", .0.join("; "))]
pub struct InvalidSpec(pub Vec<String>);

fn backing(
    field: &str,
    b: Option<Backing<'_>>,
    default_image: &str,
    problems: &mut Vec<String>,
) -> Option<BackingService> {
    match b {
        Some(Backing::Managed(m)) => Some(BackingService::Managed(ManagedSpec {
            image: Some(m.image.clone().unwrap_or_else(|| default_image.to_owned())),
            ..m.clone()
        })),
        Some(Backing::External(ExternalSpec { secret_ref })) => {
            if secret_ref.name.is_empty() || secret_ref.key.is_empty() {
                problems.push(format!(
                    "spec.{field}.external.secretRef: name and key must not be empty"
                ));
                None
            } else {
                Some(BackingService::External(secret_ref.clone()))
            }
        }
        None => {
            problems.push(format!(
                "spec.{field}: exactly one of managed or external must be set"
            ));
            None
        }
    }
}

fn dur(field: &str, value: &str, problems: &mut Vec<String>) -> Duration {
    match duration::parse(value) {
        Ok(d) => d,
        Err(e) => {
            problems.push(format!("spec.{field}: {e}"));
            Duration::ZERO
        }
    }
}

/// The argon2 cost must meet one of OWASP's minimums ([`limits`], auth-svc's own check).
fn argon2_minimum(memory_kib: i32, iterations: i32, problems: &mut Vec<String>) {
    let meets = u32::try_from(memory_kib)
        .ok()
        .zip(u32::try_from(iterations).ok())
        .is_some_and(|(m, t)| limits::meets_argon2_minimum(m, t));
    if !meets {
        problems.push(format!(
            "spec.authService.argon2: memoryKib {memory_kib} with iterations {iterations} is below OWASP's minimum (one of: {})",
            limits::argon2_minimums_text()
        ));
    }
}

/// Resolves an AuthStack's settings. The API server validates the spec against the CRD's
/// schema and CEL rules (ranges, durations and their bounds, exactly one backing per data
/// store, name length); what is left here is what the schema cannot express (a uid), what a
/// spec stored before a rule existed may still violate (a backing, a duration), and the
/// limits auth-svc itself enforces ([`limits`]: argon2 minimums, the refresh grace cap), so a
/// stored spec below them never reaches a Deployment that would refuse to start.
pub fn resolve(stack: &AuthStack, images: &Images) -> Result<Settings, InvalidSpec> {
    let mut p = Vec::new();
    let spec = &stack.spec;
    let names = Names::of(stack);
    let owner = owner_reference(stack);
    if owner.is_none() {
        p.push("metadata: the AuthStack has no uid yet".into());
    }
    let rpc_timeout = dur("gateway.rpcTimeout", &spec.gateway.rpc_timeout, &mut p);
    let auth = &spec.auth_service;
    argon2_minimum(auth.argon2.memory_kib, auth.argon2.iterations, &mut p);
    let t = &auth.tokens;
    let access_ttl = dur(
        "authService.tokens.accessTokenTtl",
        &t.access_token_ttl,
        &mut p,
    );
    let refresh_ttl = dur(
        "authService.tokens.refreshTokenTtl",
        &t.refresh_token_ttl,
        &mut p,
    );
    let reuse_grace = dur(
        "authService.tokens.refreshReuseGrace",
        &t.refresh_reuse_grace,
        &mut p,
    );
    if reuse_grace > Duration::from_secs(limits::REFRESH_REUSE_GRACE_MAX_SECS) {
        p.push(format!(
            "spec.authService.tokens.refreshReuseGrace: must be at most {}s",
            limits::REFRESH_REUSE_GRACE_MAX_SECS
        ));
    }
    let lockout_window = dur("authService.lockout.window", &auth.lockout.window, &mut p);
    let lockout_duration = dur(
        "authService.lockout.duration",
        &auth.lockout.duration,
        &mut p,
    );
    let postgres = backing(
        "postgres",
        spec.postgres.backing(),
        &images.postgres,
        &mut p,
    );
    let rabbitmq = backing(
        "rabbitmq",
        spec.rabbitmq.backing(),
        &images.rabbitmq,
        &mut p,
    );
    let k = &spec.keys;
    let interval = dur("keys.rotationInterval", &k.rotation_interval, &mut p);
    let propagation_delay = dur("keys.propagationDelay", &k.propagation_delay, &mut p);

    if !p.is_empty() {
        return Err(InvalidSpec(p));
    }
    let (Some(owner), Some(postgres), Some(rabbitmq)) = (owner, postgres, rabbitmq) else {
        // Every `None` above pushed a problem.
        return Err(InvalidSpec(vec!["incomplete spec".into()]));
    };
    let issuer = t
        .issuer
        .clone()
        .unwrap_or_else(|| format!("http://{}", names.service_host(&names.gateway())));
    Ok(Settings {
        owner,
        gateway: spec.gateway.clone(),
        gateway_image: spec
            .gateway
            .image
            .clone()
            .unwrap_or_else(|| images.gateway.clone()),
        rpc_timeout,
        auth: auth.clone(),
        auth_image: auth
            .image
            .clone()
            .unwrap_or_else(|| images.auth_svc.clone()),
        tokens: TokenSettings {
            access_ttl,
            refresh_ttl,
            reuse_grace,
            issuer,
            audience: t.audience.clone(),
        },
        lockout_window,
        lockout_duration,
        postgres,
        rabbitmq,
        keys: KeySettings {
            algorithm: k.algorithm,
            rotation_interval: (!interval.is_zero()).then_some(interval),
            propagation_delay,
            rotation_counter: u64::try_from(k.rotation_counter).unwrap_or(0),
            revoked_kids: k.revoked_kids.clone(),
        },
        metrics_from: spec.network_policy.metrics_from.clone(),
        names,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::test_support::stack;
    use crate::crd::{ExternalSpec, PostgresSpec};

    #[test]
    fn defaults_resolve() {
        let s = resolve(&stack("demo", "ns"), &Images::default()).unwrap();
        assert_eq!(s.tokens.access_ttl, Duration::from_secs(900));
        assert_eq!(s.tokens.refresh_ttl, Duration::from_secs(720 * 3600));
        assert_eq!(s.tokens.issuer, "http://demo-gateway.ns.svc");
        assert_eq!(
            s.keys.rotation_interval,
            Some(Duration::from_secs(720 * 3600))
        );
        assert_eq!(s.keys.propagation_delay, Duration::from_secs(120));
        assert!(s.postgres.is_managed() && s.rabbitmq.is_managed());
        assert_eq!(
            s.auth_image,
            format!("ghcr.io/authstack/auth-svc:{}", env!("CARGO_PKG_VERSION"))
        );
    }

    #[test]
    fn spec_images_and_issuer_override_defaults() {
        let mut st = stack("demo", "ns");
        st.spec.gateway.image = Some("example/gw:1".into());
        st.spec.auth_service.tokens.issuer = Some("https://auth.example.com".into());
        st.spec.keys.rotation_interval = "0s".into();
        let s = resolve(&st, &Images::default()).unwrap();
        assert_eq!(s.gateway_image, "example/gw:1");
        assert_eq!(s.tokens.issuer, "https://auth.example.com");
        assert_eq!(s.keys.rotation_interval, None);
    }

    #[test]
    fn managed_images_come_from_the_spec_else_the_operators_defaults() {
        let managed_image = |b: &BackingService| match b {
            BackingService::Managed(m) => m.image.clone(),
            other => panic!("{other:?}"),
        };
        let defaults = resolve(&stack("demo", "ns"), &Images::default()).unwrap();
        assert_eq!(
            managed_image(&defaults.postgres).as_deref(),
            Some(POSTGRES_IMAGE)
        );
        assert_eq!(
            managed_image(&defaults.rabbitmq).as_deref(),
            Some(RABBITMQ_IMAGE)
        );

        let local = Images {
            postgres: "ghcr.io/authstack/postgres:17".into(),
            rabbitmq: "ghcr.io/authstack/rabbitmq:4.0".into(),
            ..Images::default()
        };
        let mut st = stack("demo", "ns");
        st.spec.rabbitmq.managed.as_mut().unwrap().image = Some("example/mq:1".into());
        let s = resolve(&st, &local).unwrap();
        assert_eq!(
            managed_image(&s.postgres).as_deref(),
            Some("ghcr.io/authstack/postgres:17")
        );
        assert_eq!(managed_image(&s.rabbitmq).as_deref(), Some("example/mq:1"));
    }

    #[test]
    fn what_the_schema_cannot_check_is_reported() {
        let mut st = stack("demo", "ns");
        st.spec.postgres = PostgresSpec {
            managed: Some(Default::default()),
            external: Some(ExternalSpec::default()),
        };
        st.spec.auth_service.tokens.access_token_ttl = "15 minutes".into();
        st.metadata.uid = None;
        let text = resolve(&st, &Images::default()).unwrap_err().to_string();
        for problem in [
            "spec.postgres: exactly one of managed or external",
            "spec.authService.tokens.accessTokenTtl: invalid duration",
            "metadata: the AuthStack has no uid yet",
        ] {
            assert!(text.contains(problem), "{text}");
        }
    }

    #[test]
    fn durations_resolve_to_what_the_services_take() {
        let mut ok = stack("demo", "ns");
        ok.spec.gateway.rpc_timeout = "250ms".into();
        ok.spec.auth_service.tokens.refresh_reuse_grace = "0s".into();
        let s = resolve(&ok, &Images::default()).unwrap();
        assert_eq!(s.rpc_timeout, Duration::from_millis(250));
        assert_eq!(s.tokens.reuse_grace, Duration::ZERO);
    }

    /// OWASP's argon2id minimums are combinations: less memory needs more passes.
    #[test]
    fn argon2_costs_below_owasp_minimums_are_rejected() {
        let cases = [
            (47_104, 1, true),
            (19_456, 2, true),
            (12_288, 3, true),
            (9_216, 4, true),
            (7_168, 5, true),
            (1_048_576, 1, true),
            (19_456, 1, false),
            (47_103, 1, false),
            (12_288, 2, false),
            (7_168, 4, false),
            (4_096, 100, false),
        ];
        for (memory, iterations, accepted) in cases {
            let mut st = stack("demo", "ns");
            st.spec.auth_service.argon2.memory_kib = memory;
            st.spec.auth_service.argon2.iterations = iterations;
            let result = resolve(&st, &Images::default());
            assert_eq!(
                result.is_ok(),
                accepted,
                "m={memory} t={iterations}: {result:?}"
            );
            if let Err(e) = result {
                assert!(e.to_string().contains("spec.authService.argon2"), "{e}");
            }
        }
    }

    #[test]
    fn refresh_reuse_grace_is_at_most_ten_seconds() {
        for (grace, accepted) in [("0s", true), ("10s", true), ("10.5s", false), ("1m", false)] {
            let mut st = stack("demo", "ns");
            st.spec.auth_service.tokens.refresh_reuse_grace = grace.into();
            let result = resolve(&st, &Images::default());
            assert_eq!(result.is_ok(), accepted, "{grace}: {result:?}");
            if let Err(e) = result {
                assert!(e.to_string().contains("refreshReuseGrace"), "{e}");
            }
        }
    }
}
