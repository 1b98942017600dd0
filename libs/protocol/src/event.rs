//! Domain events published by auth-svc on the topic exchange and streamed by the gateway.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The kind of an event; its wire form is the routing key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    /// A new account was registered.
    #[serde(rename = "account.registered")]
    AccountRegistered,
    /// An account logged in.
    #[serde(rename = "account.logged_in")]
    AccountLoggedIn,
    /// One session was logged out.
    #[serde(rename = "account.logged_out")]
    AccountLoggedOut,
    /// Profile, roles, status or password changed.
    #[serde(rename = "account.updated")]
    AccountUpdated,
    /// An account was deleted.
    #[serde(rename = "account.deleted")]
    AccountDeleted,
    /// Sessions were revoked (logout-all, password change, refresh-token reuse).
    #[serde(rename = "session.revoked")]
    SessionRevoked,
    /// A login was refused because of throttling.
    #[serde(rename = "account.locked")]
    AccountLocked,
    /// An auth-svc replica loaded a new key ring.
    #[serde(rename = "keys.rotated")]
    KeysRotated,
}

impl EventKind {
    /// The routing key on the events exchange.
    pub fn routing_key(self) -> &'static str {
        match self {
            EventKind::AccountRegistered => "account.registered",
            EventKind::AccountLoggedIn => "account.logged_in",
            EventKind::AccountLoggedOut => "account.logged_out",
            EventKind::AccountUpdated => "account.updated",
            EventKind::AccountDeleted => "account.deleted",
            EventKind::SessionRevoked => "session.revoked",
            EventKind::AccountLocked => "account.locked",
            EventKind::KeysRotated => "keys.rotated",
        }
    }
}

/// One domain event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique event id.
    pub id: Uuid,
    /// What happened (also the routing key).
    pub kind: EventKind,
    /// The account concerned, if any.
    #[serde(default)]
    pub account_id: Option<Uuid>,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// Event-specific details (never secrets).
    #[serde(default)]
    pub data: serde_json::Value,
}

impl Event {
    /// A new event happening now.
    pub fn now(kind: EventKind, account_id: Option<Uuid>, data: serde_json::Value) -> Self {
        Event {
            id: Uuid::new_v4(),
            kind,
            account_id,
            occurred_at: Utc::now(),
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_key_equals_serialized_kind() {
        for kind in [
            EventKind::AccountRegistered,
            EventKind::AccountLoggedIn,
            EventKind::AccountLoggedOut,
            EventKind::AccountUpdated,
            EventKind::AccountDeleted,
            EventKind::SessionRevoked,
            EventKind::AccountLocked,
            EventKind::KeysRotated,
        ] {
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, serde_json::Value::from(kind.routing_key()));
        }
    }
}
