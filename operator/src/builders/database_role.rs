//! auth-svc's least-privilege role in the managed PostgreSQL: its credentials, its own Secret
//! `<name>-auth-svc-db` (the only database Secret auth-svc sees), and the postStart hook of the
//! PostgreSQL container that creates or updates the role at every start
//! (`operator/sql/auth-svc-role.sql`, also used by `make run`).

use k8s_openapi::api::core::v1::{EnvVar, ExecAction, Lifecycle, LifecycleHandler, Secret};

use super::credentials::{PostgresCredentials, data, random, secret_value};
use super::env_from_secret;
use super::meta::{Component, object_meta};
use crate::settings::Settings;

/// Default name of auth-svc's role.
pub const ROLE: &str = "auth_svc";
/// The schema auth-svc owns (auth-svc's `db::SCHEMA`; `builders::contract` compares them).
pub const SCHEMA: &str = "auth";
/// The role's definition (psql variables `role`, `password`, `schema`).
pub const ROLE_SQL: &str = include_str!("../../sql/auth-svc-role.sql");
/// Environment of the PostgreSQL container that carries the role's name and password to the
/// hook.
pub const ROLE_ENV: &str = "AUTH_SVC_DB_USER";
/// See [`ROLE_ENV`].
pub const PASSWORD_ENV: &str = "AUTH_SVC_DB_PASSWORD";
/// Seconds the hook waits for the server (initialising a new data directory takes a while).
pub const HOOK_WAIT_SECS: u32 = 300;
const PASSWORD_LEN: usize = 32;

/// auth-svc's database credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthSvcDatabaseCredentials {
    /// Role name.
    pub username: String,
    /// Password.
    pub password: String,
}

impl std::fmt::Debug for AuthSvcDatabaseCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSvcDatabaseCredentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl AuthSvcDatabaseCredentials {
    /// Reuses the values of an existing Secret; generates only what is missing.
    pub fn reuse_or_generate(existing: Option<&Secret>) -> Self {
        AuthSvcDatabaseCredentials {
            username: secret_value(existing, "username").unwrap_or_else(|| ROLE.into()),
            password: secret_value(existing, "password").unwrap_or_else(|| random(PASSWORD_LEN)),
        }
    }
}

/// Secret `<name>-auth-svc-db`: `username`, `password`, `url` (the database of `database`).
pub fn secret(
    s: &Settings,
    creds: &AuthSvcDatabaseCredentials,
    database: &PostgresCredentials,
) -> Secret {
    let as_role = PostgresCredentials {
        username: creds.username.clone(),
        password: creds.password.clone(),
        database: database.database.clone(),
    };
    let url = as_role.url(&s.names.service_host(&s.names.postgres()));
    Secret {
        metadata: object_meta(
            &s.names,
            s.names.auth_svc_database(),
            Component::AuthSvc,
            &s.owner,
        ),
        type_: Some("Opaque".into()),
        data: Some(data(&[
            ("username", &creds.username),
            ("password", &creds.password),
            ("url", &url),
        ])),
        ..Secret::default()
    }
}

/// The PostgreSQL container's variables the hook reads (from `<name>-auth-svc-db`).
pub fn container_env(s: &Settings) -> Vec<EnvVar> {
    let secret = s.names.auth_svc_database();
    vec![
        env_from_secret(ROLE_ENV, &secret, "username"),
        env_from_secret(PASSWORD_ENV, &secret, "password"),
    ]
}

/// The hook script: waits for the server on its local socket (psql's default, or `PGHOST`),
/// then applies [`ROLE_SQL`] as the superuser (`POSTGRES_USER`, trusted on the socket).
pub fn hook_script() -> String {
    format!(
        r#"set -u
i=0
until pg_isready -q -U "$POSTGRES_USER" -d "$POSTGRES_DB"; do
  i=$((i + 1)); [ "$i" -ge {HOOK_WAIT_SECS} ] && exit 1; sleep 1
done
until psql -X -q -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" \
    -v role="${ROLE_ENV}" -v password="${PASSWORD_ENV}" -v schema={SCHEMA} <<'SQL'
{ROLE_SQL}SQL
do
  i=$((i + 1)); [ "$i" -ge {HOOK_WAIT_SECS} ] && exit 1; sleep 1
done
"#
    )
}

/// The postStart hook of the PostgreSQL container. The container counts as started (and is
/// probed) only once the role is in place.
pub fn lifecycle() -> Lifecycle {
    Lifecycle {
        post_start: Some(LifecycleHandler {
            exec: Some(ExecAction {
                command: Some(vec!["sh".into(), "-c".into(), hook_script()]),
            }),
            ..LifecycleHandler::default()
        }),
        ..Lifecycle::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::test_support::settings;

    #[test]
    fn secret_has_the_roles_url_and_values_are_reused() {
        let s = settings();
        let db = PostgresCredentials::reuse_or_generate(None);
        let creds = AuthSvcDatabaseCredentials::reuse_or_generate(None);
        assert_eq!(creds.password.len(), 32);
        assert_ne!(creds.password, db.password);
        let secret = secret(&s, &creds, &db);
        assert_eq!(secret.metadata.name.as_deref(), Some("demo-auth-svc-db"));
        assert_eq!(
            secret_value(Some(&secret), "url").unwrap(),
            format!(
                "postgres://auth_svc:{}@demo-postgres.ns.svc:5432/authstack",
                creds.password
            )
        );
        assert!(!format!("{secret:?}{creds:?}").contains(&db.password));
        assert_eq!(
            AuthSvcDatabaseCredentials::reuse_or_generate(Some(&secret)),
            creds
        );
    }

    #[test]
    fn the_hook_applies_the_role_sql_with_the_secrets_values() {
        let script = hook_script();
        assert!(script.contains(ROLE_SQL));
        assert!(script.contains("-v role=\"$AUTH_SVC_DB_USER\""));
        assert!(script.contains("-v password=\"$AUTH_SVC_DB_PASSWORD\""));
        assert!(script.contains("-v schema=auth"));
        let env = container_env(&settings());
        let from = |name: &str| {
            let r = env
                .iter()
                .find(|e| e.name == name)
                .and_then(|e| e.value_from.as_ref()?.secret_key_ref.clone())
                .unwrap();
            (r.name, r.key)
        };
        assert_eq!(
            from(ROLE_ENV),
            ("demo-auth-svc-db".into(), "username".into())
        );
        assert_eq!(
            from(PASSWORD_ENV),
            ("demo-auth-svc-db".into(), "password".into())
        );
    }
}
