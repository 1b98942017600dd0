//! Domain objects that cross the wire: accounts, tokens, claims and public keys.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The role every new account gets.
pub const ROLE_USER: &str = "user";
/// The role that may administer accounts.
pub const ROLE_ADMIN: &str = "admin";
/// Longest access token any verifier looks at (ours are under 1 KiB even with RS256); longer
/// ones are refused before parsing, so a huge forged header costs nothing.
pub const MAX_ACCESS_TOKEN_BYTES: usize = 4096;

/// An account as clients see it (never includes credentials).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Account {
    /// Stable account id (the `sub` of its tokens).
    pub id: Uuid,
    /// Email address, stored lower-case.
    pub email: String,
    /// Unique user name, as registered (compared case-insensitively).
    pub username: String,
    /// Optional display name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Roles, e.g. `["user"]` or `["user", "admin"]`.
    pub roles: Vec<String>,
    /// A disabled account cannot log in or refresh.
    pub disabled: bool,
    /// When the account was created.
    pub created_at: DateTime<Utc>,
    /// When the account was last changed.
    pub updated_at: DateTime<Utc>,
}

/// One page of an account listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccountPage {
    /// The accounts of this page, oldest first.
    pub items: Vec<Account>,
    /// Total number of accounts.
    pub total: i64,
    /// Page size used.
    pub limit: i64,
    /// Offset used.
    pub offset: i64,
}

/// The answer to a successful login or refresh.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenPair {
    /// A signed JWT (RFC 9068 `at+jwt`).
    pub access_token: String,
    /// An opaque refresh token; single use.
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Lifetime of the access token in seconds.
    pub expires_in: u64,
}

/// The claims of an access token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccessClaims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Account id.
    pub sub: String,
    /// Expiry (seconds since the epoch).
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Unique token id.
    pub jti: String,
    /// Roles at the time of issue.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Session (refresh-token family) id.
    #[serde(default)]
    pub sid: String,
}

impl AccessClaims {
    /// Whether the claims carry `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// A public JSON Web Key (RFC 7517) as published in the JWKS.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublicJwk {
    /// Key type: `OKP`, `EC` or `RSA`.
    pub kty: String,
    /// Key id.
    pub kid: String,
    /// Algorithm: `EdDSA`, `ES256` or `RS256`.
    pub alg: String,
    /// Always `sig`.
    #[serde(rename = "use")]
    pub use_: String,
    /// Curve for OKP and EC keys (`Ed25519`, `P-256`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// Public x coordinate / Ed25519 public key (base64url).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// EC y coordinate (base64url).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// RSA modulus (base64url).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// RSA exponent (base64url).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
}

/// The verification key set auth-svc hands to gateways.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySet {
    /// The key ring generation these keys come from; higher is newer.
    pub generation: u64,
    /// The signing algorithm pinned for this stack.
    pub algorithm: String,
    /// Kid of the key currently signing.
    pub active_kid: String,
    /// Every key that may verify a live token (pending, active, retiring).
    pub keys: Vec<PublicJwk>,
}
