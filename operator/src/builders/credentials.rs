//! Generated credentials of the managed PostgreSQL and RabbitMQ, and their Secrets.
//!
//! Credentials are generated once: every reconcile first reads the existing Secret and reuses
//! each value it finds; only missing values are generated.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use rand::Rng;
use rand::distributions::Alphanumeric;

use super::meta::{Component, object_meta, short_hash};
use crate::settings::Settings;

/// Database and user name of the managed PostgreSQL.
pub const POSTGRES_USER: &str = "authstack";
/// Database of the managed PostgreSQL.
pub const POSTGRES_DB: &str = "authstack";
/// User of the managed RabbitMQ.
pub const RABBITMQ_USER: &str = "authstack";
/// Length of generated passwords (alphanumeric: ~190 bits).
const PASSWORD_LEN: usize = 32;

fn random(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// A non-empty UTF-8 value of a Secret's data.
pub fn secret_value(secret: Option<&Secret>, key: &str) -> Option<String> {
    let bytes = secret?.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone())
        .ok()
        .filter(|s| !s.is_empty())
}

/// Percent-encodes a URL userinfo or path component (RFC 3986 unreserved characters stay).
fn encode(component: &str) -> String {
    let mut out = String::with_capacity(component.len());
    for b in component.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// PostgreSQL credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresCredentials {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
    /// Database.
    pub database: String,
}

impl std::fmt::Debug for PostgresCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresCredentials")
            .field("username", &self.username)
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

impl PostgresCredentials {
    /// Reuses the values of an existing Secret; generates only what is missing.
    pub fn reuse_or_generate(existing: Option<&Secret>) -> Self {
        PostgresCredentials {
            username: secret_value(existing, "username").unwrap_or_else(|| POSTGRES_USER.into()),
            password: secret_value(existing, "password").unwrap_or_else(|| random(PASSWORD_LEN)),
            database: secret_value(existing, "database").unwrap_or_else(|| POSTGRES_DB.into()),
        }
    }

    /// `postgres://user:password@host:5432/database`.
    pub fn url(&self, host: &str) -> String {
        format!(
            "postgres://{}:{}@{host}:5432/{}",
            encode(&self.username),
            encode(&self.password),
            encode(&self.database)
        )
    }
}

/// RabbitMQ credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct RabbitmqCredentials {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
    /// Erlang distribution cookie.
    pub erlang_cookie: String,
}

impl std::fmt::Debug for RabbitmqCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitmqCredentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl RabbitmqCredentials {
    /// Reuses the values of an existing Secret; generates only what is missing.
    pub fn reuse_or_generate(existing: Option<&Secret>) -> Self {
        RabbitmqCredentials {
            username: secret_value(existing, "username").unwrap_or_else(|| RABBITMQ_USER.into()),
            password: secret_value(existing, "password").unwrap_or_else(|| random(PASSWORD_LEN)),
            erlang_cookie: secret_value(existing, "erlang-cookie")
                .unwrap_or_else(|| random(PASSWORD_LEN).to_uppercase()),
        }
    }

    /// `amqp://user:password@host:5672/%2F` (the default vhost).
    pub fn url(&self, host: &str) -> String {
        format!(
            "amqp://{}:{}@{host}:5672/%2F",
            encode(&self.username),
            encode(&self.password)
        )
    }
}

fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, ByteString> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
        .collect()
}

/// Secret `<name>-postgres`: `username`, `password`, `database`, `url`.
pub fn postgres_secret(s: &Settings, creds: &PostgresCredentials) -> Secret {
    let name = s.names.postgres();
    let url = creds.url(&s.names.service_host(&name));
    Secret {
        metadata: object_meta(&s.names, name, Component::Postgres, &s.owner),
        type_: Some("Opaque".into()),
        data: Some(data(&[
            ("username", &creds.username),
            ("password", &creds.password),
            ("database", &creds.database),
            ("url", &url),
        ])),
        ..Secret::default()
    }
}

/// Secret `<name>-rabbitmq`: `username`, `password`, `url`, `erlang-cookie`.
pub fn rabbitmq_secret(s: &Settings, creds: &RabbitmqCredentials) -> Secret {
    let name = s.names.rabbitmq();
    let url = creds.url(&s.names.service_host(&name));
    Secret {
        metadata: object_meta(&s.names, name, Component::Rabbitmq, &s.owner),
        type_: Some("Opaque".into()),
        data: Some(data(&[
            ("username", &creds.username),
            ("password", &creds.password),
            ("url", &url),
            ("erlang-cookie", &creds.erlang_cookie),
        ])),
        ..Secret::default()
    }
}

/// A fingerprint of a connection URL's source that changes when the URL changes, without
/// revealing it: for managed credentials a digest of the (high-entropy) password, for a user
/// Secret its uid and resourceVersion.
pub fn fingerprint_managed(password: &str) -> String {
    short_hash(&[b"managed", password.as_bytes()])
}

/// See [`fingerprint_managed`].
pub fn fingerprint_external(secret: &Secret) -> String {
    let uid = secret.metadata.uid.as_deref().unwrap_or_default();
    let rv = secret
        .metadata
        .resource_version
        .as_deref()
        .unwrap_or_default();
    format!("{uid}/{rv}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::test_support::settings;

    fn value(secret: &Secret, key: &str) -> String {
        secret_value(Some(secret), key).unwrap()
    }

    #[test]
    fn postgres_secret_has_every_key_and_a_matching_url() {
        let s = settings();
        let creds = PostgresCredentials::reuse_or_generate(None);
        assert_eq!(creds.password.len(), 32);
        let secret = postgres_secret(&s, &creds);
        assert_eq!(secret.metadata.name.as_deref(), Some("demo-postgres"));
        assert_eq!(value(&secret, "username"), "authstack");
        assert_eq!(value(&secret, "database"), "authstack");
        assert_eq!(
            value(&secret, "url"),
            format!(
                "postgres://authstack:{}@demo-postgres.ns.svc:5432/authstack",
                creds.password
            )
        );
        assert_eq!(secret.metadata.owner_references.as_ref().unwrap().len(), 1);
    }

    #[test]
    fn existing_values_are_reused_and_only_missing_ones_generated() {
        let s = settings();
        let first = PostgresCredentials::reuse_or_generate(None);
        let secret = postgres_secret(&s, &first);
        let again = PostgresCredentials::reuse_or_generate(Some(&secret));
        assert_eq!(again, first);
        assert_eq!(postgres_secret(&s, &again), secret);

        let mut partial = secret.clone();
        partial.data.as_mut().unwrap().remove("database");
        let p = PostgresCredentials::reuse_or_generate(Some(&partial));
        assert_eq!(p.password, first.password);
        assert_eq!(p.database, "authstack");

        let other = PostgresCredentials::reuse_or_generate(None);
        assert_ne!(other.password, first.password, "passwords are random");
    }

    #[test]
    fn rabbitmq_secret_has_every_key() {
        let s = settings();
        let creds = RabbitmqCredentials::reuse_or_generate(None);
        let secret = rabbitmq_secret(&s, &creds);
        assert_eq!(secret.metadata.name.as_deref(), Some("demo-rabbitmq"));
        let keys: Vec<_> = secret.data.as_ref().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["erlang-cookie", "password", "url", "username"]);
        assert_eq!(
            value(&secret, "url"),
            format!(
                "amqp://authstack:{}@demo-rabbitmq.ns.svc:5672/%2F",
                creds.password
            )
        );
        assert_eq!(RabbitmqCredentials::reuse_or_generate(Some(&secret)), creds);
    }

    #[test]
    fn urls_escape_reused_values() {
        let c = PostgresCredentials {
            username: "a@b".into(),
            password: "p:w/d?".into(),
            database: "db".into(),
        };
        assert_eq!(c.url("h"), "postgres://a%40b:p%3Aw%2Fd%3F@h:5432/db");
        assert!(!format!("{c:?}").contains("p:w"));
    }
}
