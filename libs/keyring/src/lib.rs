//! JWT signing keys for AuthStack.
//!
//! - [`algorithm`]: the signing algorithms a stack may pin (EdDSA, ES256, RS256).
//! - [`material`]: key generation, PEM encoding, JWK and RFC 7638 thumbprint key ids.
//! - [`ring`]: the key ring as stored in the signing Secret (`keyring.json`).
//! - [`rotation`]: the pure rotation state machine (pending -> active -> retiring -> removed).
//! - [`jwt`]: signing with the active key and verifying with a public key set.
//! - [`layout`]: kubelet's mounted-Secret directory layout (atomic `..data` swaps).
//! - [`watch`]: reloading a mounted key ring when kubelet swaps it.

pub mod algorithm;
pub mod jwt;
pub mod layout;
pub mod material;
pub mod ring;
pub mod rotation;
pub mod watch;

pub use algorithm::SigningAlgorithm;
pub use material::KeyMaterial;
pub use ring::{KEYRING_FILE, KeyRing, KeyState, RingKey};
pub use rotation::{RotationAction, RotationPolicy, RotationRequest};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// Key generation or parsing failed.
    #[error("key material: {0}")]
    Material(String),
    /// The key ring file is malformed or violates an invariant.
    #[error("invalid key ring: {0}")]
    InvalidRing(String),
    /// Reading or writing the key directory failed.
    #[error("key directory {path}: {source}")]
    Io {
        /// The path involved.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A JWT could not be signed.
    #[error("signing: {0}")]
    Signing(String),
}
