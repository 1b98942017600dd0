//! The gateway's WebSocket `/api/v1/ws`: frames, topics and close codes (`docs/websocket.md`).
//!
//! Every frame is one JSON text message. The client authenticates (header, query parameter or
//! a first `auth` frame), then receives `event` frames for its own account and `keys.rotated`,
//! may change its topics with `subscribe`/`unsubscribe`, and may call RPC methods with
//! `{"id", "method", "params"}` frames answered by `reply` frames.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event::Event;
use crate::rpc::{Call, Secret};

/// The path of the socket on the gateway.
pub const PATH: &str = "/api/v1/ws";

/// Topics at most per socket.
pub const MAX_TOPICS: usize = 32;
/// Longest topic pattern.
pub const MAX_TOPIC_LEN: usize = 64;

/// Why the gateway closed a socket; the close frame carries [`CloseCode::code`] and a short
/// reason. A client reconnects after every code except [`CloseCode::Unauthenticated`],
/// [`CloseCode::AccountDisabled`] and [`CloseCode::MessageTooBig`] (which will happen again).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseCode {
    /// 1001: the gateway is shutting down; reconnect (another replica answers).
    GoingAway,
    /// 1009: a client frame exceeded the maximum message size.
    MessageTooBig,
    /// 1013: the gateway cannot verify tokens yet, or holds its maximum of sockets; retry later.
    TryAgainLater,
    /// 4000: nothing (not even a pong) arrived within the idle timeout.
    IdleTimeout,
    /// 4001: the access token expired; reconnect with a fresh one (or refresh in band before).
    TokenExpired,
    /// 4002: no valid access token: none within the authentication timeout, a first frame
    /// that was not `auth`, an invalid token, or an in-band `auth` for another account.
    Unauthenticated,
    /// 4003: the session was revoked (logout, logout-all, password change, refresh-token
    /// reuse); log in again.
    SessionRevoked,
    /// 4004: the account was disabled or deleted.
    AccountDisabled,
    /// 4005: the key that signed the token was revoked; log in again.
    KeyRevoked,
    /// 4008: the client read too slowly and its send buffer filled up; events were lost.
    TooSlow,
}

impl CloseCode {
    /// Every close code, for documentation.
    pub const ALL: [CloseCode; 10] = [
        CloseCode::GoingAway,
        CloseCode::MessageTooBig,
        CloseCode::TryAgainLater,
        CloseCode::IdleTimeout,
        CloseCode::TokenExpired,
        CloseCode::Unauthenticated,
        CloseCode::SessionRevoked,
        CloseCode::AccountDisabled,
        CloseCode::KeyRevoked,
        CloseCode::TooSlow,
    ];

    /// The number in the close frame.
    pub fn code(self) -> u16 {
        match self {
            CloseCode::GoingAway => 1001,
            CloseCode::MessageTooBig => 1009,
            CloseCode::TryAgainLater => 1013,
            CloseCode::IdleTimeout => 4000,
            CloseCode::TokenExpired => 4001,
            CloseCode::Unauthenticated => 4002,
            CloseCode::SessionRevoked => 4003,
            CloseCode::AccountDisabled => 4004,
            CloseCode::KeyRevoked => 4005,
            CloseCode::TooSlow => 4008,
        }
    }

    /// The code for a number, if it is one of ours.
    pub fn from_code(code: u16) -> Option<CloseCode> {
        CloseCode::ALL.into_iter().find(|c| c.code() == code)
    }

    /// The default reason text.
    pub fn reason(self) -> &'static str {
        match self {
            CloseCode::GoingAway => "server shutting down",
            CloseCode::MessageTooBig => "message too big",
            CloseCode::TryAgainLater => "try again later",
            CloseCode::IdleTimeout => "idle timeout",
            CloseCode::TokenExpired => "access token expired",
            CloseCode::Unauthenticated => "authentication required",
            CloseCode::SessionRevoked => "session revoked",
            CloseCode::AccountDisabled => "account disabled or deleted",
            CloseCode::KeyRevoked => "signing key revoked",
            CloseCode::TooSlow => "too slow: send buffer full",
        }
    }

    /// Whether reconnecting (with a valid token) may succeed.
    pub fn reconnect(self) -> bool {
        !matches!(
            self,
            CloseCode::Unauthenticated | CloseCode::AccountDisabled | CloseCode::MessageTooBig
        )
    }
}

/// A control frame from the client (RPC calls are [`CallFrame`]s: they carry `method`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ClientFrame {
    /// Authenticate (first frame), or replace the token in band before it expires (same
    /// account).
    Auth {
        /// The access token.
        access_token: Secret,
    },
    /// Add topic patterns; `all_accounts` (admins only) widens every topic to all accounts.
    Subscribe {
        /// Routing-key patterns: words separated by `.`, `*` one word, `#` any number.
        topics: Vec<String>,
        /// Events of every account, not only the caller's (role `admin`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        all_accounts: bool,
    },
    /// Remove topic patterns (exactly as subscribed).
    Unsubscribe {
        /// Patterns to remove.
        topics: Vec<String>,
    },
}

/// An RPC call over the socket: the same methods, parameters and errors as REST.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CallFrame {
    /// Echoed in the reply (a string or a number).
    pub id: serde_json::Value,
    /// The method, e.g. `users.get_me`.
    pub method: String,
    /// Its parameters (omit for methods without).
    #[serde(default)]
    pub params: serde_json::Value,
}

/// An error in a frame: the REST error object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FrameError {
    /// Stable code (`docs/errors.md`).
    pub code: String,
    /// Human-readable message.
    pub message: String,
    /// The request id of the call (also in the gateway's logs).
    pub request_id: String,
    /// Per-field details for `validation.failed`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<crate::error::FieldError>,
}

/// A frame from the gateway.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ServerFrame {
    /// Authenticated (also after an in-band `auth`): who, until when, and the topics in force.
    Ready {
        /// The account.
        account_id: Uuid,
        /// The session (`sid`).
        session_id: Option<Uuid>,
        /// The token's `exp` (unix seconds): the socket closes with 4001 then.
        expires_at: i64,
        /// Topics in force.
        topics: Vec<String>,
        /// Whether the topics cover every account.
        all_accounts: bool,
    },
    /// The topics after a `subscribe` or `unsubscribe`.
    Subscribed {
        /// Topics in force.
        topics: Vec<String>,
        /// Whether the topics cover every account.
        all_accounts: bool,
    },
    /// A domain event.
    Event {
        /// The event as auth-svc published it.
        event: Event,
    },
    /// The answer to a [`CallFrame`]: exactly one of `result` and `error`.
    Reply {
        /// The call's id.
        id: serde_json::Value,
        /// The method's result (the REST response body of the same operation).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
        result: Option<Box<serde_json::value::RawValue>>,
        /// The method's error.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<FrameError>,
    },
    /// A frame the gateway could not accept (the socket stays open).
    Error {
        /// What was wrong.
        error: FrameError,
    },
}

/// The topics a new socket starts with: every event it may see.
pub fn default_topics() -> Vec<String> {
    vec!["#".to_owned()]
}

/// Whether `pattern` is a valid topic pattern (words of `a-z`, `0-9`, `_`, or `*` / `#`).
pub fn is_valid_topic(pattern: &str) -> bool {
    !pattern.is_empty()
        && pattern.len() <= MAX_TOPIC_LEN
        && pattern.split('.').all(|w| {
            w == "*"
                || w == "#"
                || (!w.is_empty()
                    && w.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'))
        })
}

/// AMQP topic matching: `*` matches one word, `#` zero or more.
pub fn topic_matches(pattern: &str, routing_key: &str) -> bool {
    fn go(p: &[&str], k: &[&str]) -> bool {
        match (p.first(), k.first()) {
            (None, None) => true,
            (Some(&"#"), _) => go(&p[1..], k) || (!k.is_empty() && go(p, &k[1..])),
            (Some(&"*"), Some(_)) => go(&p[1..], &k[1..]),
            (Some(w), Some(x)) if w == x => go(&p[1..], &k[1..]),
            _ => false,
        }
    }
    let p: Vec<&str> = pattern.split('.').collect();
    let k: Vec<&str> = routing_key.split('.').collect();
    go(&p, &k)
}

/// Methods that may be called over the socket: those acting for an authenticated caller.
/// Not: registration, login and refresh (they issue tokens; use REST) and `keys.list` (the
/// JWKS is public).
pub fn allowed_over_socket(call: &Call) -> bool {
    !matches!(
        call,
        Call::Register(_) | Call::Login(_) | Call::Refresh(_) | Call::ListKeys
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_match_like_amqp() {
        assert!(topic_matches("#", "keys.rotated"));
        assert!(topic_matches("account.*", "account.updated"));
        assert!(!topic_matches("account.*", "session.revoked"));
        assert!(topic_matches("account.#", "account.updated"));
        assert!(topic_matches("#.revoked", "session.revoked"));
        assert!(!topic_matches("*", "session.revoked"));
        assert!(topic_matches("session.revoked", "session.revoked"));
        assert!(!topic_matches("session.revoked.x", "session.revoked"));
    }

    #[test]
    fn topic_patterns_are_validated() {
        for ok in [
            "#",
            "account.*",
            "session.revoked",
            "account.registration_attempted",
        ] {
            assert!(is_valid_topic(ok), "{ok}");
        }
        for bad in ["", "a..b", "Account.x", "a.b c", "a.**", &"a".repeat(65)] {
            assert!(!is_valid_topic(bad), "{bad}");
        }
    }

    #[test]
    fn close_codes_are_distinct_and_round_trip() {
        for c in CloseCode::ALL {
            assert_eq!(CloseCode::from_code(c.code()), Some(c));
        }
        let mut codes: Vec<u16> = CloseCode::ALL.iter().map(|c| c.code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), CloseCode::ALL.len());
    }

    #[test]
    fn frames_have_their_documented_shape() {
        let f: ClientFrame =
            serde_json::from_str(r#"{"type":"subscribe","topics":["account.*"]}"#).unwrap();
        assert_eq!(
            f,
            ClientFrame::Subscribe {
                topics: vec!["account.*".into()],
                all_accounts: false
            }
        );
        let c: CallFrame = serde_json::from_str(r#"{"id":7,"method":"users.get_me"}"#).unwrap();
        assert_eq!(c.params, serde_json::Value::Null);
        let reply = ServerFrame::Reply {
            id: serde_json::json!(7),
            result: Some(serde_json::value::to_raw_value(&1).unwrap()),
            error: None,
        };
        assert_eq!(
            serde_json::to_string(&reply).unwrap(),
            r#"{"type":"reply","id":7,"result":1}"#
        );
    }
}
