//! Broker names and the least-privilege RabbitMQ user of each component.
//!
//! The definition lives in `libs/protocol/broker-acl.json`, embedded here and read as is by
//! `scripts/broker-users.py` (which creates the users for `make run` and the tests); the operator
//! builds its RabbitMQ definitions from [`acl`]. So there is exactly one place that says who may
//! do what on the broker:
//!
//! - **auth-svc** declares the RPC queue, the request exchange and the events exchange, binds the
//!   queue to the request exchange, consumes the queue, publishes events and publishes replies
//!   through the default exchange.
//! - **the gateway** publishes requests to the request exchange (never to the default exchange,
//!   so it cannot write into any queue directly), declares and consumes its own server-named
//!   queues (`amq.gen-…`: replies and events), binds them to the events exchange, and may use
//!   direct reply-to. It cannot consume the RPC queue, publish events or forge replies.
//!
//! RabbitMQ checks `configure` on declare/delete, `write` on publish (the exchange) and on
//! `queue.bind` (the queue), `read` on consume/get/purge (the queue) and on `queue.bind` (the
//! exchange); passive declares need no permission.

use std::sync::LazyLock;

use serde::Deserialize;

/// The embedded definition (`libs/protocol/broker-acl.json`).
pub const ACL_JSON: &str = include_str!("../broker-acl.json");

/// A component that connects to the broker with its own user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Component {
    /// The authentication service.
    AuthSvc,
    /// The REST gateway.
    Gateway,
}

impl Component {
    /// Both components.
    pub const ALL: [Component; 2] = [Component::AuthSvc, Component::Gateway];

    /// The component's key in the definition (`auth-svc`, `gateway`).
    pub fn as_str(self) -> &'static str {
        match self {
            Component::AuthSvc => "auth-svc",
            Component::Gateway => "gateway",
        }
    }
}

/// A kind of RabbitMQ permission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Declare or delete.
    Configure,
    /// Publish to an exchange; be the queue of a binding.
    Write,
    /// Consume, get or purge a queue; be the exchange of a binding.
    Read,
}

const ACCESSES: [Access; 3] = [Access::Configure, Access::Write, Access::Read];

/// The three permission regexes of a user, as RabbitMQ takes them.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Permissions {
    /// `configure` regex.
    pub configure: String,
    /// `write` regex.
    pub write: String,
    /// `read` regex.
    pub read: String,
}

/// One component's broker user.
#[derive(Debug)]
pub struct BrokerUser {
    /// User name.
    pub user: String,
    /// Its permissions on the vhost.
    pub permissions: Permissions,
    compiled: [regex::Regex; 3],
}

impl BrokerUser {
    /// Whether the user may perform `access` on the resource `name` (the same regex match
    /// RabbitMQ does).
    pub fn allows(&self, access: Access, name: &str) -> bool {
        let i = match access {
            Access::Configure => 0,
            Access::Write => 1,
            Access::Read => 2,
        };
        self.compiled[i].is_match(name)
    }
}

/// The broker names a stack uses.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Names {
    /// The durable queue of RPC requests (consumed by auth-svc only).
    pub rpc_queue: String,
    /// The direct exchange the gateway publishes requests to (bound to the queue).
    pub rpc_exchange: String,
    /// The topic exchange of domain events (published by auth-svc only).
    pub events_exchange: String,
}

/// What a name is used for; decides which permissions it must and must not fall under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// [`Names::rpc_queue`].
    RpcQueue,
    /// [`Names::rpc_exchange`].
    RpcExchange,
    /// [`Names::events_exchange`].
    EventsExchange,
}

impl Role {
    /// What `component` must be allowed on a name of this role (everything else is denied).
    pub fn needs(self, component: Component) -> &'static [Access] {
        match (self, component) {
            (Role::RpcQueue, Component::AuthSvc) => {
                &[Access::Configure, Access::Write, Access::Read]
            }
            (Role::RpcQueue, Component::Gateway) => &[],
            (Role::RpcExchange, Component::AuthSvc) => &[Access::Configure, Access::Read],
            (Role::RpcExchange, Component::Gateway) => &[Access::Write],
            (Role::EventsExchange, Component::AuthSvc) => &[Access::Configure, Access::Write],
            (Role::EventsExchange, Component::Gateway) => &[Access::Read],
        }
    }

    fn default_name(self, names: &Names) -> &str {
        match self {
            Role::RpcQueue => &names.rpc_queue,
            Role::RpcExchange => &names.rpc_exchange,
            Role::EventsExchange => &names.events_exchange,
        }
    }
}

/// The whole definition.
#[derive(Debug)]
pub struct Acl {
    /// The vhost the permissions apply to.
    pub vhost: String,
    /// Default names (production).
    pub defaults: Names,
    auth_svc: BrokerUser,
    gateway: BrokerUser,
}

#[derive(Deserialize)]
struct RawUser {
    user: String,
    #[serde(flatten)]
    permissions: Permissions,
}

#[derive(Deserialize)]
struct RawAcl {
    vhost: String,
    names: Names,
    users: std::collections::BTreeMap<String, RawUser>,
}

fn parse(json: &str) -> Result<Acl, String> {
    let raw: RawAcl = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let mut users = raw.users;
    let mut take = |c: Component| -> Result<BrokerUser, String> {
        let u = users
            .remove(c.as_str())
            .ok_or_else(|| format!("no user for {}", c.as_str()))?;
        let compile = |r: &str| regex::Regex::new(r).map_err(|e| e.to_string());
        Ok(BrokerUser {
            compiled: [
                compile(&u.permissions.configure)?,
                compile(&u.permissions.write)?,
                compile(&u.permissions.read)?,
            ],
            user: u.user,
            permissions: u.permissions,
        })
    };
    Ok(Acl {
        auth_svc: take(Component::AuthSvc)?,
        gateway: take(Component::Gateway)?,
        vhost: raw.vhost,
        defaults: raw.names,
    })
}

static ACL: LazyLock<Acl> = LazyLock::new(|| {
    // The file is part of the source tree and unit-tested; it cannot be broken at run time.
    parse(ACL_JSON).unwrap_or_else(|e| panic!("libs/protocol/broker-acl.json is invalid: {e}"))
});

/// The definition.
pub fn acl() -> &'static Acl {
    &ACL
}

impl Acl {
    /// The user of `component`.
    pub fn user(&self, component: Component) -> &BrokerUser {
        match component {
            Component::AuthSvc => &self.auth_svc,
            Component::Gateway => &self.gateway,
        }
    }
}

impl Names {
    /// The production names (`auth.rpc`, `auth.requests`, `auth.events`).
    pub fn defaults() -> Names {
        acl().defaults.clone()
    }

    /// Names of their own for one test, benchmark or scripted run: `<default>.<suffix>`.
    pub fn scoped(suffix: &str) -> Names {
        let d = Names::defaults();
        Names {
            rpc_queue: format!("{}.{suffix}", d.rpc_queue),
            rpc_exchange: format!("{}.{suffix}", d.rpc_exchange),
            events_exchange: format!("{}.{suffix}", d.events_exchange),
        }
    }

    /// Checks every name against the permissions of both users.
    pub fn check(&self) -> Result<(), String> {
        for role in [Role::RpcQueue, Role::RpcExchange, Role::EventsExchange] {
            check_name(role, role.default_name(self))?;
        }
        Ok(())
    }
}

/// Checks that `name` can serve as `role`: each component gets exactly the access it needs on
/// it, and no other. Returns the name (usable as a clap value parser).
pub fn check_name(role: Role, name: &str) -> Result<String, String> {
    let acl = acl();
    for c in Component::ALL {
        let user = acl.user(c);
        for access in ACCESSES {
            let needed = role.needs(c).contains(&access);
            if user.allows(access, name) != needed {
                let example = role.default_name(&acl.defaults);
                return Err(format!(
                    "`{name}` does not fit the broker permissions of {} (libs/protocol/broker-acl.json): use `{example}` or `{example}.<suffix>`",
                    c.as_str()
                ));
            }
        }
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_definition_parses() {
        let acl = parse(ACL_JSON).unwrap();
        assert_eq!(acl.vhost, "/");
        assert_eq!(acl.user(Component::Gateway).user, "authstack-gateway");
        assert_eq!(acl.user(Component::AuthSvc).user, "authstack-auth-svc");
    }

    #[test]
    fn default_and_scoped_names_fit_the_permissions() {
        Names::defaults().check().unwrap();
        Names::scoped("test-0f3a_b").check().unwrap();
    }

    #[test]
    fn foreign_names_are_refused_with_a_hint() {
        let e = check_name(Role::RpcQueue, "test.rpc.123").unwrap_err();
        assert!(e.contains("auth.rpc"), "{e}");
        for (role, name) in [
            (Role::RpcQueue, "auth.requests"),
            (Role::RpcExchange, "auth.rpc"),
            (Role::EventsExchange, "auth.events.a.b"),
            (Role::RpcExchange, "amq.default"),
            (Role::EventsExchange, "amq.gen-abc"),
        ] {
            assert!(check_name(role, name).is_err(), "{role:?} {name}");
        }
    }

    #[test]
    fn the_gateway_cannot_consume_requests_publish_events_or_replies() {
        let acl = acl();
        let gw = acl.user(Component::Gateway);
        for name in ["auth.rpc", "auth.rpc.x", "auth.events", "amq.default"] {
            assert!(!gw.allows(Access::Write, name), "write {name}");
        }
        for name in ["auth.rpc", "auth.rpc.x", "auth.requests"] {
            assert!(!gw.allows(Access::Read, name), "read {name}");
        }
        for name in ["auth.rpc", "auth.events", "auth.requests"] {
            assert!(!gw.allows(Access::Configure, name), "configure {name}");
        }
        // Its own server-named queues: declare, bind, consume.
        let own = "amq.gen-JzTY20BRgKO-HjmUJj0wLg";
        for access in ACCESSES {
            assert!(gw.allows(access, own));
        }
        assert!(gw.allows(Access::Read, "amq.rabbitmq.reply-to"));
        let svc = acl.user(Component::AuthSvc);
        assert!(svc.allows(Access::Write, "amq.default"));
        assert!(!svc.allows(Access::Configure, own));
        assert!(!svc.allows(Access::Write, "auth.requests"));
    }
}
