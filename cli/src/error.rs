//! Errors of the CLI and their exit codes (documented in `--help` and the README).

use authstack_protocol::{ErrorBody, ErrorCode};

/// Exit codes: one per kind of failure, stable for scripts.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Anything else: an unexpected answer, a local file problem, a server-side error.
    pub const OTHER: u8 = 1;
    /// Bad usage or input: unknown flags, `validation.failed`, a body too large.
    pub const USAGE: u8 = 2;
    /// Not logged in, wrong credentials, or the session ended (log in again).
    pub const AUTH: u8 = 3;
    /// Logged in but not allowed (`auth.forbidden`).
    pub const FORBIDDEN: u8 = 4;
    /// No such thing (`common.not_found`).
    pub const NOT_FOUND: u8 = 5;
    /// Conflict: the user exists, or the request was already processed.
    pub const CONFLICT: u8 = 6;
    /// Too many attempts (`auth.account_locked`, `common.rate_limited`); retry later.
    pub const LOCKED: u8 = 7;
    /// The server cannot be reached or is unavailable (network, `rpc.*`, a request that did not
    /// reach it in time: `common.request_timeout`).
    pub const UNAVAILABLE: u8 = 8;
}

/// The exit-code table for `--help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  other error (unexpected answer, local file problem, server error)
  2  bad usage or input (validation.failed, common.payload_too_large)
  3  not logged in, wrong credentials, or session ended (auth.invalid_credentials,
     auth.invalid_token, auth.token_expired)
  4  not allowed (auth.forbidden)
  5  not found (common.not_found)
  6  conflict (auth.user_exists, common.conflict)
  7  too many attempts (auth.account_locked, common.rate_limited)
  8  server unreachable or unavailable (rpc.unavailable, rpc.timeout, rpc.bad_response,
     common.request_timeout)";

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The server answered with an error in the platform's error model.
    #[error("{}: {}", .body.code, .body.message)]
    Api {
        /// The error.
        body: ErrorBody,
        /// The request id the server assigned.
        request_id: Option<String>,
    },
    /// No usable session for this server.
    #[error("not logged in to {0}: run `authstack login`")]
    NotLoggedIn(String),
    /// The session cannot be refreshed any more.
    #[error("session ended ({0}): run `authstack login` again")]
    SessionEnded(String),
    /// The server could not be reached.
    #[error("cannot reach {url}: {reason}")]
    Unreachable {
        /// Where.
        url: String,
        /// Why.
        reason: String,
    },
    /// The server answered something that is not the API.
    #[error("unexpected answer from {url}: {reason}")]
    BadResponse {
        /// Where.
        url: String,
        /// What.
        reason: String,
    },
    /// Bad input on the command line or standard input.
    #[error("{0}")]
    Usage(String),
    /// A local problem (configuration directory, terminal).
    #[error("{0}")]
    Local(String),
}

impl CliError {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Api { body, .. } => match body.code {
                ErrorCode::ValidationFailed | ErrorCode::PayloadTooLarge => exit::USAGE,
                ErrorCode::InvalidCredentials
                | ErrorCode::InvalidToken
                | ErrorCode::TokenExpired => exit::AUTH,
                ErrorCode::Forbidden => exit::FORBIDDEN,
                ErrorCode::NotFound => exit::NOT_FOUND,
                ErrorCode::UserExists | ErrorCode::Conflict => exit::CONFLICT,
                ErrorCode::AccountLocked | ErrorCode::RateLimited => exit::LOCKED,
                ErrorCode::RpcTimeout
                | ErrorCode::RpcUnavailable
                | ErrorCode::RpcBadResponse
                | ErrorCode::RequestTimeout => exit::UNAVAILABLE,
                ErrorCode::MethodNotAllowed | ErrorCode::NotImplemented | ErrorCode::Internal => {
                    exit::OTHER
                }
            },
            CliError::NotLoggedIn(_) | CliError::SessionEnded(_) => exit::AUTH,
            CliError::Unreachable { .. } => exit::UNAVAILABLE,
            CliError::Usage(_) => exit::USAGE,
            CliError::BadResponse { .. } | CliError::Local(_) => exit::OTHER,
        }
    }

    /// The stable code printed with the message: the server's, or one of the CLI's own
    /// (`cli.not_logged_in`, `cli.session_ended`, `cli.unreachable`, `cli.bad_response`,
    /// `cli.usage`, `cli.local`).
    pub fn code(&self) -> String {
        match self {
            CliError::Api { body, .. } => body.code.to_string(),
            CliError::NotLoggedIn(_) => "cli.not_logged_in".into(),
            CliError::SessionEnded(_) => "cli.session_ended".into(),
            CliError::Unreachable { .. } => "cli.unreachable".into(),
            CliError::BadResponse { .. } => "cli.bad_response".into(),
            CliError::Usage(_) => "cli.usage".into(),
            CliError::Local(_) => "cli.local".into(),
        }
    }

    /// The human message (without the code).
    pub fn message(&self) -> String {
        match self {
            CliError::Api { body, .. } => body.message.clone(),
            other => other.to_string(),
        }
    }

    /// The error as JSON, in the platform's shape: `{"error": {code, message, request_id?,
    /// details?, retry_after_secs?}}`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut error = serde_json::json!({"code": self.code(), "message": self.message()});
        if let CliError::Api { body, request_id } = self {
            if let Some(id) = request_id {
                error["request_id"] = id.clone().into();
            }
            if !body.details.is_empty() {
                error["details"] = serde_json::json!(body.details);
            }
            if let Some(secs) = body.retry_after_secs {
                error["retry_after_secs"] = secs.into();
            }
        }
        serde_json::json!({ "error": error })
    }

    /// The error for people: code, message, field details, retry hint and request id.
    pub fn human(&self) -> String {
        let mut text = format!("error: {}: {}", self.code(), self.message());
        if let CliError::Api { body, request_id } = self {
            for d in &body.details {
                text.push_str(&format!("\n  {}: {} ({})", d.field, d.message, d.reason));
            }
            if let Some(secs) = body.retry_after_secs {
                text.push_str(&format!("\n  retry in {secs} s"));
            }
            if let Some(id) = request_id {
                text.push_str(&format!("\n  request id: {id}"));
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_server_code_has_a_documented_exit_code() {
        for code in ErrorCode::ALL {
            let e = CliError::Api {
                body: ErrorBody::new(code, "x"),
                request_id: None,
            };
            let exit = e.exit_code();
            assert!(
                EXIT_CODES_HELP.contains(&format!("  {exit}  ")),
                "{code} → {exit}"
            );
            assert_ne!(exit, exit::OK);
        }
    }
}
