//! Phase 3, build: settings and what was read → the key ring to store and every object the
//! stack should have (and those it must not have). Pure: time and key generation are inputs.

use authstack_keyring::{KeyMaterial, KeyringError, SigningAlgorithm};
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Secret;

use super::dereference::Dereferenced;
use crate::builders::stack::{self, Desired, Inputs, Obsolete};
use crate::keys::{self, KeyPlan, KeysError};
use crate::settings::Settings;

/// Errors of the build phase.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The signing keys could not be planned.
    #[error(transparent)]
    Keys(#[from] KeysError),
    /// A desired object could not be serialized.
    #[error("serializing a desired object: {0}")]
    Serialization(#[from] serde_json::Error),
}

/// Key generation, injectable for tests.
pub type Generate<'a> = &'a mut dyn FnMut(SigningAlgorithm) -> Result<KeyMaterial, KeyringError>;

/// The key ring after this reconcile, advanced from the `stored` Secret to `now`.
pub fn key_plan(
    stored: Option<&Secret>,
    settings: &Settings,
    now: DateTime<Utc>,
    generate: Generate<'_>,
) -> Result<KeyPlan, BuildError> {
    Ok(keys::plan(stored, settings, now, generate)?)
}

/// The objects of one stack.
#[derive(Debug)]
pub struct Built {
    /// Everything to server-side apply, in order (the signing-key Secret excepted: it is
    /// written with a resourceVersion precondition).
    pub desired: Vec<Desired>,
    /// What must not exist under this spec.
    pub obsolete: Vec<Obsolete>,
}

/// Every object of the stack for `settings`, the credentials read and the key ring `plan`.
pub fn objects(
    settings: &Settings,
    read: &Dereferenced,
    plan: &KeyPlan,
) -> Result<Built, BuildError> {
    let inputs = Inputs {
        postgres: read.postgres.as_ref(),
        auth_svc_database: read.auth_svc_database.as_ref(),
        rabbitmq: read.rabbitmq.as_ref(),
        ring: &plan.ring,
        urls: read.urls.clone(),
    };
    Ok(Built {
        desired: stack::desired(settings, &inputs)?,
        obsolete: stack::obsolete(settings),
    })
}

#[cfg(test)]
mod tests {
    use authstack_keyring::material::generate;

    use super::*;
    use crate::builders::credentials::{PostgresCredentials, RabbitmqCredentials};
    use crate::builders::database_role::AuthSvcDatabaseCredentials;
    use crate::builders::test_support::settings;

    #[test]
    fn builds_the_ring_and_every_object() {
        let s = settings();
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let plan = key_plan(None, &s, now, &mut generate).unwrap();
        assert!(plan.changed);
        let read = Dereferenced {
            postgres: Some(PostgresCredentials::reuse_or_generate(None)),
            auth_svc_database: Some(AuthSvcDatabaseCredentials::reuse_or_generate(None)),
            rabbitmq: Some(RabbitmqCredentials::reuse_or_generate(None)),
            ..Dereferenced::default()
        };
        let built = objects(&s, &read, &plan).unwrap();
        let jwks = built
            .desired
            .iter()
            .find(|d| d.resource.kind == "ConfigMap")
            .unwrap();
        let active = plan.ring.active().unwrap().kid.clone();
        assert!(jwks.object.to_string().contains(&active));
        assert!(built.obsolete.is_empty());
    }
}
