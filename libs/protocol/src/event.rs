//! Domain events published by auth-svc on the topic exchange and streamed by the gateway.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The kind of an event; its wire form is the routing key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// An account was deleted; `data` is a [`Revocation`] (without session ids: every token of
    /// the account is dead).
    #[serde(rename = "account.deleted")]
    AccountDeleted,
    /// Sessions were revoked (logout, logout-all, password change, refresh-token reuse,
    /// account disabled); `data` is a [`Revocation`].
    #[serde(rename = "session.revoked")]
    SessionRevoked,
    /// A login was refused because of throttling.
    #[serde(rename = "account.locked")]
    AccountLocked,
    /// Someone tried to register with the email of this existing account (the answer they got
    /// looked like a success; a mailer may warn the owner).
    #[serde(rename = "account.registration_attempted")]
    RegistrationAttempted,
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
            EventKind::RegistrationAttempted => "account.registration_attempted",
            EventKind::KeysRotated => "keys.rotated",
        }
    }
}

/// One domain event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

/// The `data` of `session.revoked` and `account.deleted`: why, which sessions (or, for
/// `account.deleted`, the whole account of [`Event::account_id`]) verifiers must refuse, and
/// until when a refusal matters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// Why: `logout`, `logout_all`, `password_changed`, `refresh_token_reuse`,
    /// `account_disabled` or `account_deleted`.
    #[serde(default)]
    pub reason: String,
    /// The revoked sessions (`sid` claims).
    #[serde(default)]
    pub session_ids: Vec<Uuid>,
    /// Unix time (seconds) after which no access token affected by the event is valid anyway,
    /// so a deny-list entry can be dropped then.
    pub tokens_valid_until: i64,
}

impl Revocation {
    /// Reads the revocation part of an event's `data`, if it has one.
    pub fn of(event: &Event) -> Option<Revocation> {
        match event.kind {
            EventKind::SessionRevoked | EventKind::AccountDeleted => {
                Revocation::deserialize(&event.data).ok()
            }
            _ => None,
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
            EventKind::RegistrationAttempted,
            EventKind::KeysRotated,
        ] {
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, serde_json::Value::from(kind.routing_key()));
        }
    }

    #[test]
    fn revocations_are_read_from_revoking_events_only() {
        let sid = Uuid::new_v4();
        let data =
            serde_json::json!({"reason": "logout", "session_ids": [sid], "tokens_valid_until": 99});
        let e = Event::now(EventKind::SessionRevoked, None, data.clone());
        assert_eq!(
            Revocation::of(&e),
            Some(Revocation {
                reason: "logout".into(),
                session_ids: vec![sid],
                tokens_valid_until: 99
            })
        );
        let other = Event::now(EventKind::AccountUpdated, None, data);
        assert_eq!(Revocation::of(&other), None);
    }
}
