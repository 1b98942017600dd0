//! The RabbitMQ RPC envelope and the methods auth-svc answers.
//!
//! A request is `{"method": "...", "params": {...}, "context": {...}}`; a reply is
//! `{"result": ...}` or `{"error": {"code": ..., "message": ...}}`.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::error::{ErrorBody, ErrorCode};

/// A string that never shows up in `Debug` output or logs (passwords, refresh tokens).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(transparent)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Secret(pub String);

impl Secret {
    /// The secret value.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

/// Who is calling. The gateway forwards the caller's bearer token as it received it; auth-svc
/// verifies it itself (signature against its own key ring, `iss`, `aud`, `typ`, `exp`, `nbf`)
/// and derives the account, roles and session from the verified claims, so nothing in the
/// message body is trusted as an identity.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallContext {
    /// The request id the gateway assigned (also returned to the HTTP client).
    #[serde(default)]
    pub request_id: String,
    /// The caller's access token (JWT), for endpoints that require a bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<Secret>,
    /// The client's address as seen by the gateway (for login throttling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
}

/// `auth.register` parameters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegisterParams {
    /// Email address.
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 254, example = "ann@example.com")
    )]
    pub email: String,
    /// User name (3-32 characters: letters, digits, `_`, `.`, `-`; a letter or digit first).
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{2,31}$", example = "ann")
    )]
    pub username: String,
    /// Password (8-128 characters).
    #[cfg_attr(feature = "openapi", schema(value_type = String, min_length = 8, max_length = 128, example = "correct horse battery"))]
    pub password: Secret,
    /// Optional display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 64))]
    pub display_name: Option<String>,
}

/// `auth.login` parameters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginParams {
    /// Email or user name.
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 254, example = "ann")
    )]
    pub login: String,
    /// Password.
    #[cfg_attr(feature = "openapi", schema(value_type = String, min_length = 1, max_length = 512, example = "correct horse battery"))]
    pub password: Secret,
}

/// `auth.refresh` and `auth.logout` parameters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RefreshTokenParams {
    /// The refresh token.
    #[cfg_attr(feature = "openapi", schema(value_type = String, min_length = 1, max_length = 512))]
    pub refresh_token: Secret,
}

/// `users.update_me` parameters; absent fields stay unchanged.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateMeParams {
    /// New email address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 254))]
    pub email: Option<String>,
    /// New user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{2,31}$")
    )]
    pub username: Option<String>,
    /// New display name; an empty string clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 64))]
    pub display_name: Option<String>,
    /// The current password; required when `email` changes (re-authentication).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, max_length = 512))]
    pub current_password: Option<Secret>,
}

/// `users.delete_me` parameters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeleteMeParams {
    /// The current password (re-authentication).
    #[cfg_attr(feature = "openapi", schema(value_type = String, min_length = 1, max_length = 512))]
    pub current_password: Secret,
}

/// `users.change_password` parameters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChangePasswordParams {
    /// The current password.
    #[cfg_attr(feature = "openapi", schema(value_type = String, min_length = 1, max_length = 512))]
    pub current_password: Secret,
    /// The new password (8-128 characters).
    #[cfg_attr(feature = "openapi", schema(value_type = String, min_length = 8, max_length = 128))]
    pub new_password: Secret,
}

/// `users.list` parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct ListUsersParams {
    /// Page size (1-200, default 50).
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 200))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// Offset (default 0).
    #[cfg_attr(feature = "openapi", param(minimum = 0))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
}

/// Parameters naming one account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserIdParams {
    /// The account id.
    pub id: Uuid,
}

/// The fields an administrator may change on an account; absent fields stay unchanged.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminUpdate {
    /// Replace the roles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    /// Disable or enable the account; disabling revokes its sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// New display name; an empty string clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 64))]
    pub display_name: Option<String>,
}

/// `users.update` parameters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminUpdateParams {
    /// The account id.
    pub id: Uuid,
    /// The changes.
    #[serde(flatten)]
    pub update: AdminUpdate,
}

/// `access.check` parameters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccessCheckParams {
    /// HTTP method, e.g. `GET`.
    #[cfg_attr(feature = "openapi", schema(example = "GET"))]
    pub method: String,
    /// Request path, e.g. `/api/v1/users`.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^/", max_length = 2048, example = "/api/v1/users")
    )]
    pub path: String,
}

/// `access.check` result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccessDecision {
    /// Whether the caller's roles allow the request.
    pub allowed: bool,
}

/// Every RPC method with its parameters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", content = "params")]
pub enum Call {
    /// Create an account. Result: [`crate::Account`].
    #[serde(rename = "auth.register")]
    Register(RegisterParams),
    /// Log in. Result: [`crate::TokenPair`].
    #[serde(rename = "auth.login")]
    Login(LoginParams),
    /// Exchange a refresh token for a new pair. Result: [`crate::TokenPair`].
    #[serde(rename = "auth.refresh")]
    Refresh(RefreshTokenParams),
    /// End one session. Result: `null`.
    #[serde(rename = "auth.logout")]
    Logout(RefreshTokenParams),
    /// End every session of the caller. Result: `null`.
    #[serde(rename = "auth.logout_all")]
    LogoutAll,
    /// The caller's account. Result: [`crate::Account`].
    #[serde(rename = "users.get_me")]
    GetMe,
    /// Change the caller's profile. Result: [`crate::Account`].
    #[serde(rename = "users.update_me")]
    UpdateMe(UpdateMeParams),
    /// Delete the caller's account (needs the current password). Result: `null`.
    #[serde(rename = "users.delete_me")]
    DeleteMe(DeleteMeParams),
    /// Change the caller's password; other sessions are revoked. Result: `null`.
    #[serde(rename = "users.change_password")]
    ChangePassword(ChangePasswordParams),
    /// Admin: list accounts. Result: [`crate::AccountPage`].
    #[serde(rename = "users.list")]
    ListUsers(ListUsersParams),
    /// Admin: one account. Result: [`crate::Account`].
    #[serde(rename = "users.get")]
    GetUser(UserIdParams),
    /// Admin: change roles, disabled flag or display name. Result: [`crate::Account`].
    #[serde(rename = "users.update")]
    UpdateUser(AdminUpdateParams),
    /// Admin: delete an account. Result: `null`.
    #[serde(rename = "users.delete")]
    DeleteUser(UserIdParams),
    /// Whether the caller's roles allow a request. Result: [`AccessDecision`].
    #[serde(rename = "access.check")]
    CheckAccess(AccessCheckParams),
    /// The public verification keys. Result: [`crate::KeySet`].
    #[serde(rename = "keys.list")]
    ListKeys,
}

impl Call {
    /// The method name on the wire.
    pub fn method(&self) -> &'static str {
        match self {
            Call::Register(_) => "auth.register",
            Call::Login(_) => "auth.login",
            Call::Refresh(_) => "auth.refresh",
            Call::Logout(_) => "auth.logout",
            Call::LogoutAll => "auth.logout_all",
            Call::GetMe => "users.get_me",
            Call::UpdateMe(_) => "users.update_me",
            Call::DeleteMe(_) => "users.delete_me",
            Call::ChangePassword(_) => "users.change_password",
            Call::ListUsers(_) => "users.list",
            Call::GetUser(_) => "users.get",
            Call::UpdateUser(_) => "users.update",
            Call::DeleteUser(_) => "users.delete",
            Call::CheckAccess(_) => "access.check",
            Call::ListKeys => "keys.list",
        }
    }

    /// Whether only administrators may call the method (auth-svc re-checks the role against
    /// the database).
    pub fn requires_admin(&self) -> bool {
        matches!(
            self,
            Call::ListUsers(_) | Call::GetUser(_) | Call::UpdateUser(_) | Call::DeleteUser(_)
        )
    }

    /// Whether the method changes state (and so must be applied at most once per request id).
    pub fn is_mutation(&self) -> bool {
        !matches!(
            self,
            Call::GetMe
                | Call::ListUsers(_)
                | Call::GetUser(_)
                | Call::CheckAccess(_)
                | Call::ListKeys
        )
    }
}

const KNOWN_METHODS: [&str; 15] = [
    "auth.register",
    "auth.login",
    "auth.refresh",
    "auth.logout",
    "auth.logout_all",
    "users.get_me",
    "users.update_me",
    "users.delete_me",
    "users.change_password",
    "users.list",
    "users.get",
    "users.update",
    "users.delete",
    "access.check",
    "keys.list",
];

/// The request envelope as it travels on the queue.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RpcRequest {
    /// The method name.
    pub method: String,
    /// Method parameters (`null` for methods without any).
    #[serde(default)]
    pub params: serde_json::Value,
    /// The caller.
    #[serde(default)]
    pub context: CallContext,
}

impl RpcRequest {
    /// Wraps a call and its context.
    pub fn new(call: &Call, context: CallContext) -> Self {
        let (method, params) = match serde_json::to_value(call) {
            Ok(serde_json::Value::Object(mut map)) => (
                call.method().to_owned(),
                map.remove("params").unwrap_or(serde_json::Value::Null),
            ),
            _ => (call.method().to_owned(), serde_json::Value::Null),
        };
        RpcRequest {
            method,
            params,
            context,
        }
    }

    /// Decodes the typed call: unknown methods are `common.not_implemented`, parameters of the
    /// wrong shape are `validation.failed`.
    pub fn decode(&self) -> Result<Call, ErrorBody> {
        if !KNOWN_METHODS.contains(&self.method.as_str()) {
            return Err(ErrorBody::new(
                ErrorCode::NotImplemented,
                format!("unknown method `{}`", self.method),
            ));
        }
        let envelope = serde_json::json!({ "method": self.method, "params": self.params });
        serde_json::from_value(envelope).map_err(|e| {
            ErrorBody::new(
                ErrorCode::ValidationFailed,
                format!("invalid parameters: {e}"),
            )
        })
    }
}

/// A reply as it travels on the queue: exactly one of `result` or `error`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RpcReply {
    /// The method's result, kept as raw JSON so the gateway can pass it through untouched.
    Result(Box<RawValue>),
    /// The method's error.
    Error(ErrorBody),
}

impl RpcReply {
    /// Serializes a successful result.
    pub fn ok<T: Serialize>(value: &T) -> Self {
        match serde_json::value::to_raw_value(value) {
            Ok(raw) => RpcReply::Result(raw),
            Err(e) => RpcReply::Error(ErrorBody::new(
                ErrorCode::Internal,
                format!("could not encode result: {e}"),
            )),
        }
    }

    /// Turns the reply into a `Result`.
    pub fn into_result(self) -> Result<Box<RawValue>, ErrorBody> {
        match self {
            RpcReply::Result(raw) => Ok(raw),
            RpcReply::Error(e) => Err(e),
        }
    }
}

/// AMQP `type` of a message carrying several calls ([`CallBatch`]) or several replies
/// ([`ReplyBatch`]) instead of one.
pub const BATCH_MESSAGE_TYPE: &str = "batch";

/// One call inside a [`CallBatch`], with what a single request carries in its AMQP properties.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchedCall {
    /// Matches the reply to the waiting call.
    pub correlation_id: String,
    /// The call's idempotency key.
    pub message_id: String,
    /// The caller's deadline, milliseconds since the Unix epoch.
    pub deadline_ms: i64,
    /// The [`RpcRequest`], decoded on its own so a malformed call fails alone.
    pub request: Box<RawValue>,
}

/// The body of a request message of type [`BATCH_MESSAGE_TYPE`]: calls that were waiting to be
/// published together.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallBatch {
    /// The calls, each answered on its own.
    pub calls: Vec<BatchedCall>,
}

/// One reply inside a [`ReplyBatch`].
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchedReply {
    /// The `correlation_id` of the call answered.
    pub correlation_id: String,
    /// The [`RpcReply`].
    pub reply: Box<RawValue>,
}

/// The body of a reply message of type [`BATCH_MESSAGE_TYPE`].
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyBatch {
    /// Replies to calls of one [`CallBatch`] (those still within their deadline).
    pub replies: Vec<BatchedReply>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trips_every_shape_of_call() {
        let calls = [
            Call::Login(LoginParams {
                login: "ann".into(),
                password: "pw".into(),
            }),
            Call::GetMe,
            Call::UpdateUser(AdminUpdateParams {
                id: Uuid::nil(),
                update: AdminUpdate {
                    disabled: Some(true),
                    ..Default::default()
                },
            }),
        ];
        for call in calls {
            let req = RpcRequest::new(&call, CallContext::default());
            let wire = serde_json::to_vec(&req).unwrap();
            let back: RpcRequest = serde_json::from_slice(&wire).unwrap();
            assert_eq!(back.method, call.method());
            assert_eq!(back.decode().unwrap(), call);
        }
    }

    #[test]
    fn unknown_method_is_not_implemented_and_bad_params_are_validation_errors() {
        let req = RpcRequest {
            method: "auth.fly".into(),
            params: serde_json::Value::Null,
            context: CallContext::default(),
        };
        assert_eq!(req.decode().unwrap_err().code, ErrorCode::NotImplemented);
        let req = RpcRequest {
            method: "auth.login".into(),
            params: serde_json::json!({"login": "x"}),
            context: CallContext::default(),
        };
        assert_eq!(req.decode().unwrap_err().code, ErrorCode::ValidationFailed);
    }

    #[test]
    fn reply_wire_format_is_result_or_error() {
        let ok = serde_json::to_string(&RpcReply::ok(&serde_json::json!({"a": 1}))).unwrap();
        assert_eq!(ok, r#"{"result":{"a":1}}"#);
        let err = RpcReply::Error(ErrorBody::new(ErrorCode::NotFound, "nope"));
        let json = serde_json::to_string(&err).unwrap();
        assert_eq!(
            json,
            r#"{"error":{"code":"common.not_found","message":"nope"}}"#
        );
    }

    #[test]
    fn secrets_never_appear_in_debug_output() {
        let p = LoginParams {
            login: "ann".into(),
            password: "hunter22".into(),
        };
        assert!(!format!("{p:?}").contains("hunter22"));
        let ctx = CallContext {
            access_token: Some("eyJhbGciOi.secret.sig".into()),
            ..Default::default()
        };
        assert!(!format!("{ctx:?}").contains("eyJ"));
    }

    #[test]
    fn identities_in_the_context_are_not_accepted() {
        // The old wire shape carried ids and roles; a message claiming them must not decode.
        let forged = serde_json::json!({
            "method": "users.get_me",
            "params": null,
            "context": {"request_id": "r", "account_id": Uuid::nil(), "roles": ["admin"]}
        });
        assert!(serde_json::from_value::<RpcRequest>(forged).is_err());
    }

    #[test]
    fn mutations_are_flagged() {
        assert!(Call::LogoutAll.is_mutation());
        assert!(!Call::GetMe.is_mutation());
    }
}
