//! Generated credentials of the managed PostgreSQL and RabbitMQ, and their Secrets.
//!
//! Credentials are generated once: every reconcile first reads the existing Secret and reuses
//! each value it finds; only missing values are generated.
//!
//! RabbitMQ has an administrator (for people; mounted only in the broker's pod) and one
//! least-privilege user per component (`authstack_protocol::broker`): auth-svc and the gateway
//! each get a Secret of their own with only their URL.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use rand::Rng;
use rand::distributions::Alphanumeric;

use authstack_protocol::broker::{Component as BrokerComponent, acl};

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

pub(crate) fn random(len: usize) -> String {
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
    /// Administrator user name.
    pub username: String,
    /// Administrator password.
    pub password: String,
    /// Erlang distribution cookie.
    pub erlang_cookie: String,
    /// Password of auth-svc's broker user.
    pub auth_svc_password: String,
    /// Password of the gateway's broker user.
    pub gateway_password: String,
}

/// Key of a component's password in the broker's Secret.
fn password_key(c: BrokerComponent) -> String {
    format!("{}-password", c.as_str())
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
            auth_svc_password: secret_value(existing, &password_key(BrokerComponent::AuthSvc))
                .unwrap_or_else(|| random(PASSWORD_LEN)),
            gateway_password: secret_value(existing, &password_key(BrokerComponent::Gateway))
                .unwrap_or_else(|| random(PASSWORD_LEN)),
        }
    }

    /// The password of a component's broker user.
    pub fn component_password(&self, c: BrokerComponent) -> &str {
        match c {
            BrokerComponent::AuthSvc => &self.auth_svc_password,
            BrokerComponent::Gateway => &self.gateway_password,
        }
    }

    /// `amqp://user:password@host:5672/%2F` of the administrator (the default vhost).
    pub fn url(&self, host: &str) -> String {
        amqp_url(&self.username, &self.password, host)
    }

    /// The URL of a component's own broker user.
    pub fn component_url(&self, c: BrokerComponent, host: &str) -> String {
        amqp_url(&acl().user(c).user, self.component_password(c), host)
    }
}

fn amqp_url(user: &str, password: &str, host: &str) -> String {
    format!(
        "amqp://{}:{}@{host}:5672/{}",
        encode(user),
        encode(password),
        encode(&acl().vhost)
    )
}

pub(crate) fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, ByteString> {
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

/// Secret `<name>-rabbitmq`, mounted only in the broker's pod: the administrator's `username`,
/// `password` and `url`, the `erlang-cookie`, each component's `<component>-password`, and the
/// broker's own configuration (`definitions.json`, `authstack.conf`; see
/// [`super::rabbitmq::definitions`]).
pub fn rabbitmq_secret(s: &Settings, creds: &RabbitmqCredentials) -> Secret {
    let name = s.names.rabbitmq();
    let url = creds.url(&s.names.service_host(&name));
    let definitions = super::rabbitmq::definitions(creds).to_string();
    let auth_key = password_key(BrokerComponent::AuthSvc);
    let gateway_key = password_key(BrokerComponent::Gateway);
    Secret {
        metadata: object_meta(&s.names, name, Component::Rabbitmq, &s.owner),
        type_: Some("Opaque".into()),
        data: Some(data(&[
            ("username", &creds.username),
            ("password", &creds.password),
            ("url", &url),
            ("erlang-cookie", &creds.erlang_cookie),
            (&auth_key, &creds.auth_svc_password),
            (&gateway_key, &creds.gateway_password),
            (super::rabbitmq::DEFINITIONS_KEY, &definitions),
            (super::rabbitmq::CONFIG_KEY, super::rabbitmq::CONFIG),
        ])),
        ..Secret::default()
    }
}

/// Secret `<name>-rabbitmq-<component>`: the component's own broker `username`, `password` and
/// `url` (the only broker credentials its pods see).
pub fn rabbitmq_user_secret(
    s: &Settings,
    creds: &RabbitmqCredentials,
    c: BrokerComponent,
) -> Secret {
    let owner = match c {
        BrokerComponent::AuthSvc => Component::AuthSvc,
        BrokerComponent::Gateway => Component::Gateway,
    };
    let host = s.names.service_host(&s.names.rabbitmq());
    Secret {
        metadata: object_meta(&s.names, s.names.rabbitmq_user(c), owner, &s.owner),
        type_: Some("Opaque".into()),
        data: Some(data(&[
            ("username", &acl().user(c).user),
            ("password", creds.component_password(c)),
            ("url", &creds.component_url(c, &host)),
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
        assert_eq!(
            keys,
            [
                "auth-svc-password",
                "authstack.conf",
                "definitions.json",
                "erlang-cookie",
                "gateway-password",
                "password",
                "url",
                "username"
            ]
        );
        assert_eq!(
            value(&secret, "url"),
            format!(
                "amqp://authstack:{}@demo-rabbitmq.ns.svc:5672/%2F",
                creds.password
            )
        );
        assert_eq!(RabbitmqCredentials::reuse_or_generate(Some(&secret)), creds);
        assert_eq!(
            rabbitmq_secret(&s, &creds),
            secret,
            "stable across reconciles"
        );
    }

    #[test]
    fn each_component_gets_only_its_own_broker_user() {
        let s = settings();
        let creds = RabbitmqCredentials::reuse_or_generate(None);
        assert_ne!(creds.auth_svc_password, creds.gateway_password);
        for (c, name, user) in [
            (
                BrokerComponent::AuthSvc,
                "demo-rabbitmq-auth-svc",
                "authstack-auth-svc",
            ),
            (
                BrokerComponent::Gateway,
                "demo-rabbitmq-gateway",
                "authstack-gateway",
            ),
        ] {
            let secret = rabbitmq_user_secret(&s, &creds, c);
            assert_eq!(secret.metadata.name.as_deref(), Some(name));
            assert_eq!(value(&secret, "username"), user);
            let url = value(&secret, "url");
            assert_eq!(
                url,
                format!(
                    "amqp://{user}:{}@demo-rabbitmq.ns.svc:5672/%2F",
                    creds.component_password(c)
                )
            );
            assert!(!url.contains(&creds.password), "no administrator password");
        }
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
