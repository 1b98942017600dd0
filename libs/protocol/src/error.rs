//! The error model: stable string codes and their HTTP mapping (`docs/errors.md`).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A stable, machine-readable error code of the form `domain.description`.
///
/// Unknown codes received over the wire deserialize to [`ErrorCode::Internal`], so a newer
/// auth-svc can never make an older gateway answer anything but a 500 for a code it does not know.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Wrong login or password (`auth.invalid_credentials`, 401).
    InvalidCredentials,
    /// The access token has expired (`auth.token_expired`, 401).
    TokenExpired,
    /// The token is malformed, forged, revoked or missing (`auth.invalid_token`, 401).
    InvalidToken,
    /// The caller is authenticated but not allowed (`auth.forbidden`, 403).
    Forbidden,
    /// Email or username already taken (`auth.user_exists`, 409).
    UserExists,
    /// Too many failed logins; retry later (`auth.account_locked`, 429 + `Retry-After`).
    AccountLocked,
    /// Too many requests of this kind from one client address; retry later
    /// (`common.rate_limited`, 429 + `Retry-After`).
    RateLimited,
    /// The request body failed validation (`validation.failed`, 400, with field details).
    ValidationFailed,
    /// The resource does not exist (`common.not_found`, 404).
    NotFound,
    /// The request body is larger than the gateway accepts (`common.payload_too_large`, 413).
    PayloadTooLarge,
    /// The client sent its request too slowly (`common.request_timeout`, 408).
    RequestTimeout,
    /// A state conflict, e.g. a request that was already processed (`common.conflict`, 409).
    Conflict,
    /// The path exists but not with this HTTP method (`common.method_not_allowed`, 405).
    MethodNotAllowed,
    /// auth-svc did not answer before the deadline (`rpc.timeout`, 504).
    RpcTimeout,
    /// auth-svc answered something the gateway could not understand (`rpc.bad_response`, 502).
    RpcBadResponse,
    /// The broker or every auth-svc replica is unreachable (`rpc.unavailable`, 503).
    RpcUnavailable,
    /// The operation is not implemented (`common.not_implemented`, 501).
    NotImplemented,
    /// Anything else (`common.internal_error`, 500).
    Internal,
}

impl ErrorCode {
    /// Every code, for exhaustive tests and documentation.
    pub const ALL: [ErrorCode; 18] = [
        ErrorCode::InvalidCredentials,
        ErrorCode::TokenExpired,
        ErrorCode::InvalidToken,
        ErrorCode::Forbidden,
        ErrorCode::UserExists,
        ErrorCode::AccountLocked,
        ErrorCode::RateLimited,
        ErrorCode::ValidationFailed,
        ErrorCode::NotFound,
        ErrorCode::PayloadTooLarge,
        ErrorCode::RequestTimeout,
        ErrorCode::Conflict,
        ErrorCode::MethodNotAllowed,
        ErrorCode::RpcTimeout,
        ErrorCode::RpcBadResponse,
        ErrorCode::RpcUnavailable,
        ErrorCode::NotImplemented,
        ErrorCode::Internal,
    ];

    /// The wire string, e.g. `auth.invalid_credentials`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidCredentials => "auth.invalid_credentials",
            ErrorCode::TokenExpired => "auth.token_expired",
            ErrorCode::InvalidToken => "auth.invalid_token",
            ErrorCode::Forbidden => "auth.forbidden",
            ErrorCode::UserExists => "auth.user_exists",
            ErrorCode::AccountLocked => "auth.account_locked",
            ErrorCode::RateLimited => "common.rate_limited",
            ErrorCode::ValidationFailed => "validation.failed",
            ErrorCode::NotFound => "common.not_found",
            ErrorCode::PayloadTooLarge => "common.payload_too_large",
            ErrorCode::RequestTimeout => "common.request_timeout",
            ErrorCode::Conflict => "common.conflict",
            ErrorCode::MethodNotAllowed => "common.method_not_allowed",
            ErrorCode::RpcTimeout => "rpc.timeout",
            ErrorCode::RpcBadResponse => "rpc.bad_response",
            ErrorCode::RpcUnavailable => "rpc.unavailable",
            ErrorCode::NotImplemented => "common.not_implemented",
            ErrorCode::Internal => "common.internal_error",
        }
    }

    /// Parses a wire string; unknown codes become [`ErrorCode::Internal`].
    pub fn from_wire(code: &str) -> ErrorCode {
        ErrorCode::ALL
            .into_iter()
            .find(|c| c.as_str() == code)
            .unwrap_or(ErrorCode::Internal)
    }

    /// The HTTP status the gateway answers with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidCredentials | ErrorCode::TokenExpired | ErrorCode::InvalidToken => {
                401
            }
            ErrorCode::Forbidden => 403,
            ErrorCode::UserExists | ErrorCode::Conflict => 409,
            ErrorCode::AccountLocked | ErrorCode::RateLimited => 429,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::ValidationFailed => 400,
            ErrorCode::NotFound => 404,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::RpcTimeout => 504,
            ErrorCode::RpcBadResponse => 502,
            ErrorCode::RpcUnavailable => 503,
            ErrorCode::NotImplemented => 501,
            ErrorCode::Internal => 500,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Ok(ErrorCode::from_wire(&code))
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for ErrorCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(ErrorCode::ALL.iter().map(|c| c.as_str())))
            .description(Some(
                "Stable error code `domain.description`; the HTTP status follows from it.",
            ))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for ErrorCode {}

/// One failed field of a `validation.failed` error.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldError {
    /// The JSON field name, e.g. `email`.
    pub field: String,
    /// A stable reason, e.g. `required`, `too_short`, `invalid_format`.
    pub reason: String,
    /// A human-readable explanation.
    pub message: String,
}

impl FieldError {
    /// Builds a field error.
    pub fn new(field: &str, reason: &str, message: impl Into<String>) -> Self {
        FieldError {
            field: field.to_owned(),
            reason: reason.to_owned(),
            message: message.into(),
        }
    }
}

/// The error object carried in RPC replies and (with a request id added) in gateway responses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The stable code.
    pub code: ErrorCode,
    /// A human-readable message; never contains secrets, SQL or stack traces.
    pub message: String,
    /// Per-field details for `validation.failed`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<FieldError>,
    /// Seconds until the caller may try again (`auth.account_locked`, `common.rate_limited`,
    /// and `rpc.unavailable` when auth-svc is at capacity); the gateway sends it as
    /// `Retry-After`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
}

impl ErrorBody {
    /// An error with a code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            code,
            message: message.into(),
            details: Vec::new(),
            retry_after_secs: None,
        }
    }

    /// A `validation.failed` error with field details.
    pub fn validation(details: Vec<FieldError>) -> Self {
        ErrorBody {
            code: ErrorCode::ValidationFailed,
            message: "request validation failed".to_owned(),
            details,
            retry_after_secs: None,
        }
    }

    /// An `auth.account_locked` error that tells the caller when to retry.
    pub fn locked(retry_after_secs: u64) -> Self {
        ErrorBody {
            code: ErrorCode::AccountLocked,
            message: "too many failed attempts; try again later".to_owned(),
            details: Vec::new(),
            retry_after_secs: Some(retry_after_secs.max(1)),
        }
    }

    /// A `common.rate_limited` error that tells the caller when to retry.
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        ErrorBody {
            retry_after_secs: Some(retry_after_secs.max(1)),
            ..ErrorBody::new(
                ErrorCode::RateLimited,
                "too many requests from this address; try again later",
            )
        }
    }

    /// An `rpc.unavailable` error for work refused at once because the service is at capacity.
    pub fn at_capacity(retry_after_secs: u64) -> Self {
        ErrorBody {
            retry_after_secs: Some(retry_after_secs.max(1)),
            ..ErrorBody::new(
                ErrorCode::RpcUnavailable,
                "the service is at capacity; try again shortly",
            )
        }
    }
}

impl std::fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ErrorBody {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_its_wire_string() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_wire(code.as_str()), code);
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
        }
    }

    #[test]
    fn unknown_codes_map_to_internal_error_and_500() {
        let code: ErrorCode = serde_json::from_str("\"billing.exploded\"").unwrap();
        assert_eq!(code, ErrorCode::Internal);
        assert_eq!(code.http_status(), 500);
    }

    #[test]
    fn statuses_follow_the_design_table() {
        let table = [
            ("auth.invalid_credentials", 401),
            ("auth.token_expired", 401),
            ("auth.invalid_token", 401),
            ("auth.forbidden", 403),
            ("auth.user_exists", 409),
            ("auth.account_locked", 429),
            ("common.rate_limited", 429),
            ("validation.failed", 400),
            ("common.not_found", 404),
            ("common.payload_too_large", 413),
            ("common.request_timeout", 408),
            ("rpc.timeout", 504),
            ("rpc.bad_response", 502),
            ("rpc.unavailable", 503),
            ("common.not_implemented", 501),
            ("common.internal_error", 500),
        ];
        for (wire, status) in table {
            assert_eq!(ErrorCode::from_wire(wire).http_status(), status, "{wire}");
        }
    }

    #[test]
    fn locked_errors_always_carry_a_positive_retry_after() {
        assert_eq!(ErrorBody::locked(0).retry_after_secs, Some(1));
        assert_eq!(ErrorBody::rate_limited(0).retry_after_secs, Some(1));
        assert_eq!(ErrorBody::at_capacity(0).retry_after_secs, Some(1));
    }
}
