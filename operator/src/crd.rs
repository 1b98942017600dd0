//! The `AuthStack` custom resource (`authstack.io/v1alpha1`).
//!
//! Every field's doc comment becomes its `kubectl explain` text; defaults and validation land in
//! the generated OpenAPI schema (see [`crd`]).

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
    ValidationRule,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use authstack_keyring::SigningAlgorithm;
use authstack_protocol::limits;

use crate::duration::PATTERN as DURATION;

/// API group of the AuthStack resource.
pub const GROUP: &str = "authstack.io";
/// API version of the AuthStack resource.
pub const VERSION: &str = "v1alpha1";
/// Longest AuthStack name: derived names (`<name>-postgres-0`, StatefulSet revision labels)
/// must stay within Kubernetes' 63-character label limit.
pub const MAX_NAME_LEN: usize = 40;

/// Specification of an AuthStack: a complete authentication platform (PostgreSQL, RabbitMQ,
/// auth-svc, gateway) managed by the AuthStack operator, including its JWT signing keys.
// `printcolumn(type_ = "string", ...)` repeats per column, which this lint misreads.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "authstack.io",
    version = "v1alpha1",
    kind = "AuthStack",
    plural = "authstacks",
    singular = "authstack",
    namespaced,
    status = "AuthStackStatus",
    derive = "PartialEq",
    derive = "Default",
    shortname = "as",
    category = "authstack",
    doc = "An AuthStack is a complete, Kubernetes-native authentication platform: PostgreSQL, RabbitMQ, the auth service and the API gateway, with rotated JWT signing keys.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether every component is ready"
    ),
    printcolumn(
        name = "Active Key",
        type_ = "string",
        json_path = ".status.keys.activeKid",
        description = "The key id currently signing access tokens"
    ),
    printcolumn(
        name = "Gateway",
        type_ = "string",
        json_path = ".status.gatewayEndpoint",
        description = "The gateway's endpoint"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", default)]
pub struct AuthStackSpec {
    /// The API gateway: the only entry point for clients (REST and WebSocket).
    pub gateway: GatewaySpec,
    /// The authentication service (RPC server on RabbitMQ, backed by PostgreSQL).
    pub auth_service: AuthServiceSpec,
    /// The PostgreSQL database: managed by the operator, or an external one.
    pub postgres: PostgresSpec,
    /// The RabbitMQ broker: managed by the operator, or an external one.
    pub rabbitmq: RabbitmqSpec,
    /// JWT signing keys: algorithm, rotation schedule, manual rotation and emergency revocation.
    pub keys: KeysSpec,
    /// Network access beyond what the stack needs internally.
    pub network_policy: NetworkPolicySpec,
}

/// Network access to the stack's pods. The operator's NetworkPolicies admit only what each port
/// needs: the gateway's API from anywhere, PostgreSQL from auth-svc, RabbitMQ from auth-svc and
/// the gateway, and the metrics ports (gateway 9090, auth-svc 8081) from `metricsFrom` only.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct NetworkPolicySpec {
    /// Who may scrape the metrics ports (NetworkPolicy peers, e.g. a namespaceSelector for your
    /// Prometheus). Empty: nobody (kubelet probes are not affected by NetworkPolicies).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub metrics_from: Vec<k8s_openapi::api::networking::v1::NetworkPolicyPeer>,
}

/// Image pull policy (Always, IfNotPresent or Never); Kubernetes' default when unset.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ImagePullPolicy {
    /// Pull on every start.
    Always,
    /// Pull only when the image is not on the node.
    IfNotPresent,
    /// Never pull.
    Never,
}

impl ImagePullPolicy {
    /// The Kubernetes string value.
    pub fn as_str(self) -> &'static str {
        match self {
            ImagePullPolicy::Always => "Always",
            ImagePullPolicy::IfNotPresent => "IfNotPresent",
            ImagePullPolicy::Never => "Never",
        }
    }
}

/// The gateway Deployment and Service.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "duration(self.rpcTimeout) >= duration('50ms') && duration(self.rpcTimeout) <= duration('2m')",
    "message": "must be between 50ms and 2m",
    "fieldPath": ".rpcTimeout"
}, {
    "rule": "!has(self.trustedProxies) || self.trustedProxies.all(p, isIP(p) || isCIDR(p))",
    "message": "every entry must be an IP address or a CIDR block",
    "fieldPath": ".trustedProxies"
}]))]
pub struct GatewaySpec {
    /// Number of gateway pods. A PodDisruptionBudget (maxUnavailable 1) is created when above 1.
    #[schemars(range(min = 1, max = 100))]
    pub replicas: i32,
    /// Container image; defaults to the operator's gateway image (`--gateway-image`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub image: Option<String>,
    /// Image pull policy (Always, IfNotPresent, Never); Kubernetes' default when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,
    /// The Service in front of the gateway pods.
    pub service: GatewayServiceSpec,
    /// CPU and memory requests and limits; defaults to 100m CPU / 64Mi memory requested and a
    /// 256Mi memory limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// How long the gateway waits for an RPC answer from auth-svc (Go duration, 50ms to 2m).
    #[schemars(regex(pattern = DURATION), length(max = 32))]
    pub rpc_timeout: String,
    /// Largest accepted request body, in bytes.
    #[schemars(range(min = 1024, max = 16777216))]
    pub max_body_bytes: i64,
    /// Reverse proxies in front of the gateway (CIDRs or addresses, e.g. the ingress
    /// controller's pod network `10.0.0.0/8`) whose `X-Forwarded-For` is believed. Empty: the
    /// TCP peer is the client and the header is ignored — behind a proxy, every client would
    /// then share the proxy's address for login throttling.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 64)))]
    pub trusted_proxies: Vec<String>,
    /// How many trusted proxies may stand in a row in front of the gateway (e.g. 2 for a cloud
    /// load balancer in front of an ingress controller).
    #[schemars(range(min = 1, max = 16))]
    pub trusted_proxy_hops: i32,
}

impl Default for GatewaySpec {
    fn default() -> Self {
        GatewaySpec {
            replicas: 2,
            image: None,
            image_pull_policy: None,
            service: GatewayServiceSpec::default(),
            resources: None,
            rpc_timeout: "5s".into(),
            max_body_bytes: 65_536,
            trusted_proxies: Vec::new(),
            trusted_proxy_hops: 1,
        }
    }
}

/// Kubernetes Service type of the gateway Service.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ServiceType {
    /// Reachable inside the cluster only.
    #[default]
    ClusterIP,
    /// Also exposed on a port of every node.
    NodePort,
    /// Also exposed through a cloud load balancer.
    LoadBalancer,
}

impl ServiceType {
    /// The Kubernetes string value.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
        }
    }
}

/// The gateway Service.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct GatewayServiceSpec {
    /// Service type: ClusterIP, NodePort or LoadBalancer.
    #[serde(rename = "type")]
    pub type_: ServiceType,
    /// Service port (forwarded to the gateway's container port 8080).
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
}

impl Default for GatewayServiceSpec {
    fn default() -> Self {
        GatewayServiceSpec {
            type_: ServiceType::ClusterIP,
            port: 80,
        }
    }
}

/// The auth-svc Deployment.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct AuthServiceSpec {
    /// Number of auth-svc pods (they share the RPC queue). A PodDisruptionBudget
    /// (maxUnavailable 1) is created when above 1.
    #[schemars(range(min = 1, max = 100))]
    pub replicas: i32,
    /// Container image; defaults to the operator's auth-svc image (`--auth-svc-image`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub image: Option<String>,
    /// Image pull policy (Always, IfNotPresent, Never); Kubernetes' default when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,
    /// CPU and memory requests and limits; defaults to 250m CPU / 128Mi memory requested and a
    /// 512Mi memory limit (argon2 needs `memoryKib` per concurrent login).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Access and refresh token settings.
    pub tokens: TokensSpec,
    /// argon2id password hashing cost.
    pub argon2: Argon2Spec,
    /// Login throttling per account and per client address.
    pub lockout: LockoutSpec,
}

impl Default for AuthServiceSpec {
    fn default() -> Self {
        AuthServiceSpec {
            replicas: 2,
            image: None,
            image_pull_policy: None,
            resources: None,
            tokens: TokensSpec::default(),
            argon2: Argon2Spec::default(),
            lockout: LockoutSpec::default(),
        }
    }
}

/// Access and refresh token settings.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "duration(self.accessTokenTtl) >= duration('10s') && duration(self.accessTokenTtl) <= duration('24h')",
    "message": "must be between 10s and 24h",
    "fieldPath": ".accessTokenTtl"
}, {
    "rule": "duration(self.refreshTokenTtl) >= duration('1m')",
    "message": "must be at least 1m",
    "fieldPath": ".refreshTokenTtl"
}, {
    "rule": "duration(self.refreshTokenTtl) > duration(self.accessTokenTtl)",
    "message": "must be longer than accessTokenTtl",
    "fieldPath": ".refreshTokenTtl"
}]))]
pub struct TokensSpec {
    /// Lifetime of access tokens (JWTs), a Go duration from "10s" to "24h". Retired signing keys
    /// are kept this long (plus propagation delay and 30s clock skew) after a rotation.
    #[schemars(regex(pattern = DURATION), length(max = 32))]
    pub access_token_ttl: String,
    /// Lifetime of refresh tokens, a Go duration such as "720h" (30 days); at least "1m" and
    /// longer than `accessTokenTtl`.
    #[schemars(regex(pattern = DURATION), length(max = 32))]
    pub refresh_token_ttl: String,
    /// How long a just-replaced refresh token may still be presented (concurrent refreshes)
    /// before its reuse revokes the session family, at most "10s". "0s" disables the grace
    /// window.
    #[schemars(regex(pattern = DURATION), length(max = 32))]
    pub refresh_reuse_grace: String,
    /// The `iss` claim of access tokens. Defaults to `http://<name>-gateway.<namespace>.svc`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub issuer: Option<String>,
    /// The `aud` claim of access tokens.
    #[schemars(length(min = 1))]
    pub audience: String,
}

impl Default for TokensSpec {
    fn default() -> Self {
        TokensSpec {
            access_token_ttl: "15m".into(),
            refresh_token_ttl: "720h".into(),
            refresh_reuse_grace: "2s".into(),
            issuer: None,
            audience: "authstack".into(),
        }
    }
}

/// argon2id cost parameters. Memory and iterations must meet one of OWASP's minimum
/// combinations: 47104 KiB with 1 iteration, 19456 KiB with 2, 12288 KiB with 3, 9216 KiB
/// with 4, or 7168 KiB with 5. The defaults are 19456 KiB (19 MiB), 2 iterations, 1 lane.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Argon2Spec {
    /// Memory cost in KiB (at least 7168, and enough for `iterations`: see above).
    #[schemars(range(min = limits::ARGON2_MEMORY_FLOOR_KIB, max = 1048576))]
    pub memory_kib: i32,
    /// Number of passes over memory.
    #[schemars(range(min = 1, max = 100))]
    pub iterations: i32,
    /// Degree of parallelism (lanes).
    #[schemars(range(min = 1, max = 16))]
    pub parallelism: i32,
}

impl Default for Argon2Spec {
    fn default() -> Self {
        Argon2Spec {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// Login throttling: per (account, client address) pair, per client address, per account.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "duration(self.window) >= duration('1s')",
    "message": "must be at least 1s",
    "fieldPath": ".window"
}, {
    "rule": "duration(self.duration) >= duration('1s')",
    "message": "must be at least 1s",
    "fieldPath": ".duration"
}]))]
pub struct LockoutSpec {
    /// Wrong passwords for one account from one client address within `window` that lock
    /// that address out of that account (other addresses are not affected); also how many
    /// password checks of the pair may run at once.
    #[schemars(range(min = 1, max = 1000))]
    pub max_failures: i32,
    /// Sliding window over which failures are counted (Go duration, at least "1s").
    #[schemars(regex(pattern = DURATION), length(max = 32))]
    pub window: String,
    /// How long a locked (account, address) pair stays locked (Go duration, at least "1s").
    #[schemars(regex(pattern = DURATION), length(max = 32))]
    pub duration: String,
    /// Failed logins from one client address within `window` from which each further attempt
    /// from it is delayed (100 ms, doubling per failure, at most 2 s); never refused, so a
    /// shared proxy address keeps working.
    #[schemars(range(min = 1, max = 100000))]
    pub address_max_failures: i32,
}

impl Default for LockoutSpec {
    fn default() -> Self {
        LockoutSpec {
            max_failures: 5,
            window: "15m".into(),
            duration: "15m".into(),
            address_max_failures: 50,
        }
    }
}

/// Persistent storage of a managed component.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct StorageSpec {
    /// Size of the PersistentVolumeClaim (a Kubernetes quantity such as "1Gi").
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"))]
    pub size: String,
    /// StorageClass of the claim; the cluster's default class when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub storage_class_name: Option<String>,
}

impl Default for StorageSpec {
    fn default() -> Self {
        StorageSpec {
            size: "1Gi".into(),
            storage_class_name: None,
        }
    }
}

/// A component run by the operator as a single-replica StatefulSet.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ManagedSpec {
    /// Container image; defaults to the operator's `--postgres-image` / `--rabbitmq-image`
    /// (`docker.io/library/postgres:17` / `docker.io/library/rabbitmq:4.1` unless set).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub image: Option<String>,
    /// Persistent storage of the data directory. The claim is kept when the AuthStack is
    /// deleted or switched to `external`.
    pub storage: StorageSpec,
    /// CPU and memory requests and limits; defaults to 100m CPU / 256Mi memory requested and a
    /// 1Gi memory limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// A component run outside the operator (CloudNativePG, a cloud database, the RabbitMQ Cluster
/// Operator, ...), reached through a connection URL kept in a Secret.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSpec {
    /// The Secret (in the AuthStack's namespace) holding the connection URL.
    pub secret_ref: SecretKeyRef,
}

/// A key of a Secret in the AuthStack's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Data key holding the URL (`postgres://...` or `amqp://...`).
    #[serde(default = "default_url_key")]
    #[schemars(length(min = 1))]
    pub key: String,
}

impl Default for SecretKeyRef {
    fn default() -> Self {
        SecretKeyRef {
            name: String::new(),
            key: default_url_key(),
        }
    }
}

fn default_url_key() -> String {
    "url".into()
}

/// PostgreSQL: exactly one of `managed` or `external`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.managed) != has(self.external)",
    "message": "exactly one of managed or external must be set"
}]))]
pub struct PostgresSpec {
    /// Run PostgreSQL as a StatefulSet managed by the operator (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<ManagedSpec>,
    /// Use an existing PostgreSQL server; `secretRef` points at its `postgres://` URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalSpec>,
}

impl Default for PostgresSpec {
    fn default() -> Self {
        PostgresSpec {
            managed: Some(ManagedSpec::default()),
            external: None,
        }
    }
}

/// RabbitMQ: exactly one of `managed` or `external`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.managed) != has(self.external)",
    "message": "exactly one of managed or external must be set"
}]))]
pub struct RabbitmqSpec {
    /// Run RabbitMQ as a StatefulSet managed by the operator (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<ManagedSpec>,
    /// Use an existing RabbitMQ broker; `secretRef` points at its `amqp://` URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalSpec>,
}

impl Default for RabbitmqSpec {
    fn default() -> Self {
        RabbitmqSpec {
            managed: Some(ManagedSpec::default()),
            external: None,
        }
    }
}

/// Where a backing service comes from, once validated.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Backing<'a> {
    /// Run by the operator.
    Managed(&'a ManagedSpec),
    /// Run elsewhere; the URL is in a user Secret.
    External(&'a ExternalSpec),
}

macro_rules! backing_impl {
    ($t:ty) => {
        impl $t {
            /// `Some` when exactly one of `managed` / `external` is set.
            pub fn backing(&self) -> Option<Backing<'_>> {
                match (&self.managed, &self.external) {
                    (Some(m), None) => Some(Backing::Managed(m)),
                    (None, Some(e)) => Some(Backing::External(e)),
                    _ => None,
                }
            }
        }
    };
}
backing_impl!(PostgresSpec);
backing_impl!(RabbitmqSpec);

/// The schema of `spec.keys.algorithm`: the names of keyring's [`SigningAlgorithm`]s (the one
/// list of supported algorithms; the field is that type).
fn algorithm_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let names: Vec<&str> = SigningAlgorithm::ALL.iter().map(|a| a.as_str()).collect();
    schemars::json_schema!({ "type": "string", "enum": names })
}

/// JWT signing keys.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "duration(self.rotationInterval) == duration('0s') || duration(self.rotationInterval) > duration(self.propagationDelay)",
    "message": "must be longer than propagationDelay (or 0s: rotate on request only)",
    "fieldPath": ".rotationInterval"
}]))]
pub struct KeysSpec {
    /// Signing algorithm: EdDSA (Ed25519, the default), ES256 (ECDSA P-256) or RS256 (RSA
    /// 2048). Changing it rotates to a key of the new algorithm (with the usual propagation
    /// delay).
    #[schemars(schema_with = "algorithm_schema")]
    pub algorithm: SigningAlgorithm,
    /// Start a rotation this long after the previous one (Go duration). "0s" rotates only when
    /// `rotationCounter` is bumped.
    #[schemars(regex(pattern = DURATION), length(max = 32))]
    pub rotation_interval: String,
    /// How long a new key is published for verification before it signs (Go duration). Must
    /// cover the time kubelet takes to update mounted Secrets (a minute or more).
    #[schemars(regex(pattern = DURATION), length(max = 32))]
    pub propagation_delay: String,
    /// Manual rotation trigger: increase it (e.g. `kubectl authstack rotate NAME`) to start a
    /// rotation now.
    #[schemars(range(min = 0))]
    pub rotation_counter: i64,
    /// Emergency revocation: key ids removed from the ring at once. Revoking the signing key
    /// activates a new key immediately, before the propagation delay (reported in status).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub revoked_kids: Vec<String>,
}

impl Default for KeysSpec {
    fn default() -> Self {
        KeysSpec {
            algorithm: SigningAlgorithm::EdDSA,
            rotation_interval: "720h".into(),
            propagation_delay: "2m".into(),
            rotation_counter: 0,
            revoked_kids: Vec::new(),
        }
    }
}

/// Observed state of an AuthStack.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthStackStatus {
    /// The `metadata.generation` the operator last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Standard conditions: `Ready`, `Progressing`, `Degraded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Readiness of each component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub components: Option<ComponentsStatus>,
    /// Where clients reach the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_endpoint: Option<String>,
    /// Summary of the signing key ring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<KeysStatus>,
}

/// Readiness of the four components.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentsStatus {
    /// PostgreSQL.
    pub postgres: ComponentStatus,
    /// RabbitMQ.
    pub rabbitmq: ComponentStatus,
    /// auth-svc.
    pub auth_service: ComponentStatus,
    /// The gateway.
    pub gateway: ComponentStatus,
}

/// Readiness of one component.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    /// Whether the component is fully rolled out and ready.
    pub ready: bool,
    /// Pods ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Pods wanted.
    #[serde(default)]
    pub replicas: i32,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Summary of the signing key ring (private keys never appear here).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeysStatus {
    /// Algorithm of new keys.
    #[serde(default)]
    pub algorithm: String,
    /// The key id signing access tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_kid: Option<String>,
    /// Keys published for verification that will sign after the propagation delay.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_kids: Vec<String>,
    /// Keys that no longer sign but still verify tokens they signed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retiring_kids: Vec<String>,
    /// Generation of the key ring (increases on every change).
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub generation: i64,
    /// When the last rotation began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation_time: Option<Time>,
    /// When the next scheduled rotation begins (absent when only manual rotation is on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_rotation_time: Option<Time>,
    /// The `spec.keys.rotationCounter` value the ring has acted on.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub observed_rotation_counter: i64,
    /// Set while a key that started signing right after an emergency revocation has not yet
    /// been published for the propagation delay: some verifiers may reject its tokens until
    /// then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emergency_activation: Option<EmergencyActivation>,
}

/// A key activated before the propagation delay had passed.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmergencyActivation {
    /// The key id.
    pub kid: String,
    /// When it started signing.
    pub time: Time,
}

/// The CustomResourceDefinition of AuthStack, with the rules schemars cannot express added.
pub fn crd() -> CustomResourceDefinition {
    let mut crd = AuthStack::crd();
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            add_name_rule(schema);
            add_security_rules(schema);
            visit(schema, &mut |node| {
                strip_quantity_docs(node);
                unwrap_doc_lines(node);
            });
        }
    }
    crd
}

/// Calls `f` on `schema` and every schema nested in it.
fn visit(schema: &mut JSONSchemaProps, f: &mut impl FnMut(&mut JSONSchemaProps)) {
    f(schema);
    for child in schema.properties.iter_mut().flat_map(|p| p.values_mut()) {
        visit(child, f);
    }
    if let Some(JSONSchemaPropsOrBool::Schema(child)) = schema.additional_properties.as_mut() {
        visit(child, f);
    }
    if let Some(JSONSchemaPropsOrArray::Schema(child)) = schema.items.as_mut() {
        visit(child, f);
    }
}

/// Drops the (long, repeated) upstream description of a Quantity node: it would make up half
/// of the CRD and adds nothing to `kubectl explain`.
fn strip_quantity_docs(schema: &mut JSONSchemaProps) {
    if schema.x_kubernetes_int_or_string == Some(true) {
        schema.description = None;
    }
}

/// Joins the hard-wrapped lines of a doc comment (schemars keeps them) so `kubectl explain`
/// wraps whole sentences; blank lines stay paragraph breaks.
fn unwrap_doc_lines(schema: &mut JSONSchemaProps) {
    if let Some(d) = schema.description.as_mut() {
        *d = d
            .split("\n\n")
            .map(|paragraph| paragraph.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join("\n\n");
    }
}

fn add_name_rule(schema: &mut JSONSchemaProps) {
    push_rule(
        schema,
        format!("size(self.metadata.name) <= {MAX_NAME_LEN}"),
        format!(
            "metadata.name must be at most {MAX_NAME_LEN} characters (names of the generated objects derive from it)"
        ),
        None,
    );
}

/// The schema node at `path` (property names from the root).
fn node<'a>(schema: &'a mut JSONSchemaProps, path: &[&str]) -> Option<&'a mut JSONSchemaProps> {
    path.iter()
        .try_fold(schema, |node, key| node.properties.as_mut()?.get_mut(*key))
}

/// Adds a CEL rule to `node`; `field_path` (relative to `node`) is the field its message is
/// reported on.
fn push_rule(node: &mut JSONSchemaProps, rule: String, message: String, field_path: Option<&str>) {
    node.x_kubernetes_validations
        .get_or_insert_with(Vec::new)
        .push(ValidationRule {
            rule,
            message: Some(message),
            field_path: field_path.map(str::to_owned),
            ..ValidationRule::default()
        });
}

/// The CEL rule accepting an argon2 cost that meets one of OWASP's minimums.
pub fn argon2_rule() -> String {
    limits::ARGON2_MINIMUMS
        .iter()
        .map(|m| {
            format!(
                "self.memoryKib >= {} && self.iterations >= {}",
                m.memory_kib, m.iterations
            )
        })
        .collect::<Vec<_>>()
        .join(" || ")
}

/// Rules whose numbers live in [`authstack_protocol::limits`], shared with auth-svc: argon2
/// minimum combinations and the refresh reuse grace cap.
fn add_security_rules(schema: &mut JSONSchemaProps) {
    if let Some(argon2) = node(schema, &["spec", "authService", "argon2"]) {
        push_rule(
            argon2,
            argon2_rule(),
            format!(
                "memoryKib and iterations must meet one of OWASP's argon2id minimums: {}",
                limits::argon2_minimums_text()
            ),
            None,
        );
    }
    if let Some(tokens) = node(schema, &["spec", "authService", "tokens"]) {
        let max = limits::REFRESH_REUSE_GRACE_MAX_SECS;
        push_rule(
            tokens,
            format!("duration(self.refreshReuseGrace) <= duration('{max}s')"),
            format!("must be at most {max}s"),
            Some(".refreshReuseGrace"),
        );
    }
}

/// The CRD as YAML, as checked in under `crds/authstack.yaml`.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    let body = serde_yaml::to_string(&crd())?;
    Ok(format!(
        "# Generated by `cargo run -p authstack-operator --bin crdgen`; do not edit.\n---\n{body}"
    ))
}

#[cfg(test)]
mod tests;
