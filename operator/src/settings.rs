//! Semantic validation of an AuthStack spec: everything the schema cannot check (or that the
//! API server may not have checked), resolved into the values the builders use.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use crate::builders::meta::{Names, owner_reference};
use crate::crd::{
    AuthStack, Backing, ExternalSpec, GatewaySpec, MAX_NAME_LEN, ManagedSpec, SecretKeyRef,
};
use crate::duration;

/// Default container images (the operator's `--auth-svc-image` / `--gateway-image`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Images {
    /// auth-svc image.
    pub auth_svc: String,
    /// Gateway image.
    pub gateway: String,
}

impl Default for Images {
    fn default() -> Self {
        let version = env!("CARGO_PKG_VERSION");
        Images {
            auth_svc: format!("ghcr.io/authstack/auth-svc:{version}"),
            gateway: format!("ghcr.io/authstack/gateway:{version}"),
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
}

/// The spec problems found, each a readable sentence naming the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid AuthStack spec: {}", .0.join("; "))]
pub struct InvalidSpec(pub Vec<String>);

fn backing(
    field: &str,
    b: Option<Backing<'_>>,
    problems: &mut Vec<String>,
) -> Option<BackingService> {
    match b {
        Some(Backing::Managed(m)) => Some(BackingService::Managed(m.clone())),
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

/// The services take whole seconds: anything shorter than 1s would become 0.
fn positive(field: &str, d: Duration, problems: &mut Vec<String>) {
    if d < Duration::from_secs(1) {
        problems.push(format!("spec.{field}: must be at least 1s"));
    }
}

fn within(field: &str, d: Duration, min: Duration, max: Duration, problems: &mut Vec<String>) {
    if d < min || d > max {
        problems.push(format!("spec.{field}: must be between {min:?} and {max:?}"));
    }
}

fn range(field: &str, v: i64, min: i64, max: i64, problems: &mut Vec<String>) {
    if v < min || v > max {
        problems.push(format!(
            "spec.{field}: {v} is out of range (must be between {min} and {max})"
        ));
    }
}

/// Validates an AuthStack and resolves its defaults.
pub fn resolve(stack: &AuthStack, images: &Images) -> Result<Settings, InvalidSpec> {
    let mut p = Vec::new();
    let spec = &stack.spec;
    let names = Names::of(stack);
    if names.instance.len() > MAX_NAME_LEN {
        p.push(format!(
            "metadata.name: must be at most {MAX_NAME_LEN} characters (names of the generated objects derive from it)"
        ));
    }
    let owner = owner_reference(stack);
    if owner.is_none() {
        p.push("metadata: the AuthStack has no uid yet".into());
    }

    range(
        "gateway.replicas",
        spec.gateway.replicas.into(),
        1,
        100,
        &mut p,
    );
    range(
        "gateway.service.port",
        spec.gateway.service.port.into(),
        1,
        65535,
        &mut p,
    );
    range(
        "gateway.maxBodyBytes",
        spec.gateway.max_body_bytes,
        1024,
        16 << 20,
        &mut p,
    );
    let rpc_timeout = dur("gateway.rpcTimeout", &spec.gateway.rpc_timeout, &mut p);
    within(
        "gateway.rpcTimeout",
        rpc_timeout,
        Duration::from_millis(50),
        Duration::from_secs(120),
        &mut p,
    );

    let auth = &spec.auth_service;
    range("authService.replicas", auth.replicas.into(), 1, 100, &mut p);
    range(
        "authService.argon2.memoryKib",
        auth.argon2.memory_kib.into(),
        19_456,
        1 << 20,
        &mut p,
    );
    range(
        "authService.argon2.iterations",
        auth.argon2.iterations.into(),
        1,
        100,
        &mut p,
    );
    range(
        "authService.argon2.parallelism",
        auth.argon2.parallelism.into(),
        1,
        16,
        &mut p,
    );
    range(
        "authService.lockout.maxFailures",
        auth.lockout.max_failures.into(),
        1,
        1000,
        &mut p,
    );
    range(
        "authService.lockout.addressMaxFailures",
        auth.lockout.address_max_failures.into(),
        1,
        100_000,
        &mut p,
    );
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
    within(
        "authService.tokens.accessTokenTtl",
        access_ttl,
        Duration::from_secs(10),
        Duration::from_secs(24 * 3600),
        &mut p,
    );
    if refresh_ttl < Duration::from_secs(60) {
        p.push("spec.authService.tokens.refreshTokenTtl: must be at least 1m".into());
    }
    if refresh_ttl <= access_ttl {
        p.push(
            "spec.authService.tokens.refreshTokenTtl: must be longer than accessTokenTtl".into(),
        );
    }
    if t.audience.is_empty() {
        p.push("spec.authService.tokens.audience: must not be empty".into());
    }
    let lockout_window = dur("authService.lockout.window", &auth.lockout.window, &mut p);
    let lockout_duration = dur(
        "authService.lockout.duration",
        &auth.lockout.duration,
        &mut p,
    );
    positive("authService.lockout.window", lockout_window, &mut p);
    positive("authService.lockout.duration", lockout_duration, &mut p);

    let postgres = backing("postgres", spec.postgres.backing(), &mut p);
    let rabbitmq = backing("rabbitmq", spec.rabbitmq.backing(), &mut p);
    let k = &spec.keys;
    let interval = dur("keys.rotationInterval", &k.rotation_interval, &mut p);
    let propagation_delay = dur("keys.propagationDelay", &k.propagation_delay, &mut p);
    if !interval.is_zero() && interval <= propagation_delay {
        p.push("spec.keys.rotationInterval: must be longer than propagationDelay (or 0s)".into());
    }
    if k.rotation_counter < 0 {
        p.push("spec.keys.rotationCounter: must not be negative".into());
    }

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
            algorithm: k.algorithm.into(),
            rotation_interval: (!interval.is_zero()).then_some(interval),
            propagation_delay,
            rotation_counter: u64::try_from(k.rotation_counter).unwrap_or(0),
            revoked_kids: k.revoked_kids.clone(),
        },
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
    fn invalid_specs_name_every_problem() {
        let mut st = stack("demo", "ns");
        st.spec.gateway.replicas = 0;
        st.spec.auth_service.tokens.access_token_ttl = "15 minutes".into();
        st.spec.postgres = PostgresSpec {
            managed: Some(Default::default()),
            external: Some(ExternalSpec::default()),
        };
        st.spec.keys.propagation_delay = "1000h".into();
        let err = resolve(&st, &Images::default()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("spec.gateway.replicas: 0 is out of range"),
            "{text}"
        );
        assert!(
            text.contains("spec.authService.tokens.accessTokenTtl"),
            "{text}"
        );
        assert!(
            text.contains("spec.postgres: exactly one of managed or external"),
            "{text}"
        );
        assert!(text.contains("spec.keys.rotationInterval"), "{text}");
    }

    #[test]
    fn durations_fit_what_the_services_accept() {
        let bad = |edit: fn(&mut crate::crd::AuthStack), field: &str| {
            let mut st = stack("demo", "ns");
            edit(&mut st);
            let err = resolve(&st, &Images::default()).unwrap_err().to_string();
            assert!(err.contains(field), "{err}");
        };
        bad(
            |st| st.spec.auth_service.tokens.access_token_ttl = "5s".into(),
            "accessTokenTtl",
        );
        bad(
            |st| st.spec.auth_service.tokens.access_token_ttl = "25h".into(),
            "accessTokenTtl",
        );
        bad(
            |st| st.spec.gateway.rpc_timeout = "10ms".into(),
            "rpcTimeout",
        );
        bad(|st| st.spec.gateway.rpc_timeout = "5m".into(), "rpcTimeout");
        bad(
            |st| st.spec.auth_service.lockout.window = "500ms".into(),
            "lockout.window",
        );
        let mut ok = stack("demo", "ns");
        ok.spec.gateway.rpc_timeout = "250ms".into();
        ok.spec.auth_service.tokens.refresh_reuse_grace = "0s".into();
        assert_eq!(
            resolve(&ok, &Images::default()).unwrap().rpc_timeout,
            Duration::from_millis(250)
        );
    }

    #[test]
    fn long_names_are_rejected() {
        let st = stack(&"x".repeat(41), "ns");
        let err = resolve(&st, &Images::default()).unwrap_err();
        assert!(err.to_string().contains("metadata.name"), "{err}");
    }
}
