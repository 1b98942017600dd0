//! The JWT signing algorithms a stack may pin.

use serde::{Deserialize, Serialize};

/// A JWS algorithm supported by AuthStack.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SigningAlgorithm {
    /// Ed25519 signatures (RFC 8037). The default: small keys, fast, deterministic.
    #[default]
    EdDSA,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// RSASSA-PKCS1-v1_5 with SHA-256, 2048-bit keys.
    RS256,
}

impl SigningAlgorithm {
    /// Every supported algorithm (the AuthStack CRD's `spec.keys.algorithm` enum is built from
    /// it).
    pub const ALL: [SigningAlgorithm; 3] = [
        SigningAlgorithm::EdDSA,
        SigningAlgorithm::ES256,
        SigningAlgorithm::RS256,
    ];

    /// The `alg` header / JWK value.
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlgorithm::EdDSA => "EdDSA",
            SigningAlgorithm::ES256 => "ES256",
            SigningAlgorithm::RS256 => "RS256",
        }
    }

    /// The jsonwebtoken algorithm.
    pub fn jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            SigningAlgorithm::EdDSA => jsonwebtoken::Algorithm::EdDSA,
            SigningAlgorithm::ES256 => jsonwebtoken::Algorithm::ES256,
            SigningAlgorithm::RS256 => jsonwebtoken::Algorithm::RS256,
        }
    }
}

impl std::fmt::Display for SigningAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SigningAlgorithm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "EdDSA" => Ok(SigningAlgorithm::EdDSA),
            "ES256" => Ok(SigningAlgorithm::ES256),
            "RS256" => Ok(SigningAlgorithm::RS256),
            other => Err(format!(
                "unsupported signing algorithm `{other}` (expected EdDSA, ES256 or RS256)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ALL` lists every variant, and names round-trip through serde and `FromStr`.
    #[test]
    fn all_lists_every_algorithm_once() {
        for a in SigningAlgorithm::ALL {
            // A new variant makes this match non-exhaustive: add it to ALL too.
            match a {
                SigningAlgorithm::EdDSA | SigningAlgorithm::ES256 | SigningAlgorithm::RS256 => {}
            }
            assert_eq!(a.as_str().parse::<SigningAlgorithm>(), Ok(a));
            assert_eq!(serde_json::to_value(a).unwrap(), a.as_str());
        }
        let mut names: Vec<&str> = SigningAlgorithm::ALL.iter().map(|a| a.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SigningAlgorithm::ALL.len(), "listed twice");
    }
}
