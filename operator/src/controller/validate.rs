//! Phase 1, validate: the AuthStack as read → [`Settings`], or why nothing is to be done.
//! Pure.

use crate::crd::AuthStack;
use crate::settings::{Images, InvalidSpec, Settings, resolve};

/// Why a stack is not reconciled further.
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    /// The spec is invalid: reported as `Degraded` (reason `InvalidSpec`) and a Warning event;
    /// nothing is applied until the spec changes.
    #[error(transparent)]
    InvalidSpec(#[from] InvalidSpec),
}

/// What validation decided.
#[derive(Debug)]
pub enum Validated {
    /// Reconcile with these settings.
    Reconcile(Box<Settings>),
    /// Being deleted (owner references let the garbage collector remove everything), or not
    /// yet persisted (no uid): wait for the next change.
    Skip,
}

/// Validates `stack` against the operator's default images.
pub fn validate(stack: &AuthStack, images: &Images) -> Result<Validated, ValidateError> {
    if stack.metadata.deletion_timestamp.is_some() || stack.metadata.uid.is_none() {
        return Ok(Validated::Skip);
    }
    Ok(Validated::Reconcile(Box::new(resolve(stack, images)?)))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::builders::test_support::stack;

    #[test]
    fn deleted_and_unsaved_stacks_are_skipped() {
        let mut deleted = stack("demo", "ns");
        deleted.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        assert!(matches!(
            validate(&deleted, &Images::default()),
            Ok(Validated::Skip)
        ));
        let mut unsaved = stack("demo", "ns");
        unsaved.metadata.uid = None;
        assert!(matches!(
            validate(&unsaved, &Images::default()),
            Ok(Validated::Skip)
        ));
    }

    #[test]
    fn valid_and_invalid_specs() {
        assert!(matches!(
            validate(&stack("demo", "ns"), &Images::default()),
            Ok(Validated::Reconcile(_))
        ));
        // What the API server's schema and CEL rules cannot vouch for (a spec stored before a
        // rule existed): an argon2 cost below auth-svc's minimums.
        let mut bad = stack("demo", "ns");
        bad.spec.auth_service.argon2.iterations = 1;
        let err = validate(&bad, &Images::default()).unwrap_err();
        assert!(err.to_string().contains("spec.authService.argon2"), "{err}");
    }
}
