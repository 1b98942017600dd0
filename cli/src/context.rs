//! What every command works with: the effective servers, the profile and its session, the
//! HTTP client (bearer tokens refreshed automatically) and the output mode.

use std::time::Duration;

use authstack_protocol::rpc::RefreshTokenParams;
use authstack_protocol::{ErrorBody, ErrorCode, TokenPair};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::CliError;
use crate::output::Output;
use crate::store::{Profile, Session, Store};

/// The gateway when neither `--server`, `AUTHSTACK_URL` nor the profile names one.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";
/// The chat service when neither `--chat-url`, `AUTHSTACK_CHAT_URL` nor the profile names one.
pub const DEFAULT_CHAT_URL: &str = "http://127.0.0.1:8090";
/// An access token this close to its expiry is refreshed before use.
const REFRESH_MARGIN_SECS: i64 = 30;

/// Which service a request goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// The AuthStack gateway.
    Gateway,
    /// The chat service.
    Chat,
}

/// Settings from the command line and the environment.
pub struct Settings {
    /// `--server` / `AUTHSTACK_URL`.
    pub server: Option<String>,
    /// `--chat-url` / `AUTHSTACK_CHAT_URL`.
    pub chat_url: Option<String>,
    /// `--config-dir` / `AUTHSTACK_CONFIG_DIR`.
    pub config_dir: Option<std::path::PathBuf>,
    /// `--profile` / `AUTHSTACK_PROFILE`.
    pub profile: String,
    /// `--timeout` / `AUTHSTACK_TIMEOUT` in seconds.
    pub timeout_secs: u64,
    /// Output mode.
    pub output: Output,
}

/// The state of one invocation.
pub struct Context {
    /// Profiles on disk.
    pub store: Store,
    /// The profile's name.
    pub profile_name: String,
    /// The profile as loaded (and updated by login/refresh/logout).
    pub profile: Profile,
    /// The gateway in use.
    pub server: String,
    /// The chat service in use.
    pub chat_url: String,
    /// How results are printed.
    pub output: Output,
    http: reqwest::Client,
}

fn trimmed(url: &str) -> String {
    url.trim_end_matches('/').to_owned()
}

impl Context {
    /// Loads the profile and resolves the servers: flag or environment, else the profile's,
    /// else the defaults.
    pub fn new(settings: Settings) -> Result<Self, CliError> {
        if !crate::store::valid_profile_name(&settings.profile) {
            return Err(CliError::Usage(format!(
                "invalid profile name {:?}: letters, digits, `-`, `_` and `.` only",
                settings.profile
            )));
        }
        let dir = settings
            .config_dir
            .or_else(Store::default_dir)
            .ok_or_else(|| {
                CliError::Local(
                    "no configuration directory: set --config-dir or AUTHSTACK_CONFIG_DIR".into(),
                )
            })?;
        let store = Store::new(dir);
        let profile = store.load(&settings.profile)?;
        let server = trimmed(
            settings
                .server
                .as_deref()
                .or(profile.server.as_deref())
                .unwrap_or(DEFAULT_SERVER),
        );
        let chat_url = trimmed(
            settings
                .chat_url
                .as_deref()
                .or(profile.chat_url.as_deref())
                .unwrap_or(DEFAULT_CHAT_URL),
        );
        crate::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(settings.timeout_secs.max(1)))
            .connect_timeout(Duration::from_secs(settings.timeout_secs.clamp(1, 10)))
            .user_agent(concat!("authstack-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CliError::Local(format!("HTTP client: {e}")))?;
        Ok(Context {
            store,
            profile_name: settings.profile,
            profile,
            server,
            chat_url,
            output: settings.output,
            http,
        })
    }

    /// The base URL of `service`.
    pub fn base(&self, service: Service) -> &str {
        match service {
            Service::Gateway => &self.server,
            Service::Chat => &self.chat_url,
        }
    }

    /// The session for the server in use; tokens of another server are never sent here.
    pub fn session(&self) -> Result<&Session, CliError> {
        self.profile
            .session
            .as_ref()
            .filter(|s| s.server == self.server)
            .ok_or_else(|| CliError::NotLoggedIn(self.server.clone()))
    }

    /// Stores a fresh token pair (after login or refresh), and the servers in use as the
    /// profile's defaults.
    pub fn save_session(&mut self, login: &str, pair: &TokenPair) -> Result<(), CliError> {
        self.profile.server = Some(self.server.clone());
        self.profile.chat_url = Some(self.chat_url.clone());
        self.profile.session = Some(Session {
            server: self.server.clone(),
            login: login.to_owned(),
            access_token: pair.access_token.clone(),
            refresh_token: pair.refresh_token.clone(),
            expires_at: chrono::Utc::now().timestamp() + pair.expires_in as i64,
        });
        self.store.save(&self.profile_name, &self.profile)
    }

    /// Forgets the session (logout, or a session that cannot be refreshed).
    pub fn clear_session(&mut self) -> Result<(), CliError> {
        if self.profile.session.take().is_some() {
            self.store.save(&self.profile_name, &self.profile)?;
        }
        Ok(())
    }

    /// A valid access token: the stored one, or a refreshed one when it has (nearly) expired.
    pub async fn access_token(&mut self) -> Result<String, CliError> {
        let session = self.session()?;
        if session.expires_at - REFRESH_MARGIN_SECS > chrono::Utc::now().timestamp() {
            return Ok(session.access_token.clone());
        }
        let stale = session.access_token.clone();
        self.refresh(&stale).await
    }

    /// Exchanges the refresh token for a new pair, unless another invocation already replaced
    /// `stale` (the profile lock serialises refreshes; refresh tokens are single use).
    pub async fn refresh(&mut self, stale: &str) -> Result<String, CliError> {
        let _lock = self.store.lock(&self.profile_name)?;
        self.profile = self.store.load(&self.profile_name)?;
        let session = self.session()?.clone();
        if session.access_token != stale
            && session.expires_at - REFRESH_MARGIN_SECS > chrono::Utc::now().timestamp()
        {
            return Ok(session.access_token);
        }
        let body = RefreshTokenParams {
            refresh_token: session.refresh_token.as_str().into(),
        };
        let result: Result<TokenPair, CliError> = self
            .send(
                Service::Gateway,
                Method::POST,
                "/api/v1/auth/refresh",
                Some(&body),
                None,
            )
            .await
            .and_then(decode);
        match result {
            Ok(pair) => {
                self.save_session(&session.login, &pair)?;
                Ok(pair.access_token)
            }
            Err(CliError::Api { body, .. })
                if matches!(
                    body.code,
                    ErrorCode::InvalidToken
                        | ErrorCode::InvalidCredentials
                        | ErrorCode::ValidationFailed
                ) =>
            {
                self.clear_session()?;
                Err(CliError::SessionEnded(body.message))
            }
            Err(e) => Err(e),
        }
    }

    /// One HTTP request; a 2xx body as JSON (Null when empty), anything else as [`CliError`].
    pub async fn send<B: Serialize + ?Sized>(
        &self,
        service: Service,
        method: Method,
        path: &str,
        body: Option<&B>,
        token: Option<&str>,
    ) -> Result<Value, CliError> {
        let url = format!("{}{path}", self.base(service));
        let _spinner = self.output.spinner(&format!("{method} {path}"));
        let mut request = self.http.request(method, &url);
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| CliError::Unreachable {
            url: url.clone(),
            reason: error_chain(&e),
        })?;
        read_response(&url, response).await
    }

    /// A request with the session's bearer token; an access token the server calls expired is
    /// refreshed once and the request repeated.
    pub async fn authed<B: Serialize + ?Sized>(
        &mut self,
        service: Service,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Value, CliError> {
        let token = self.access_token().await?;
        match self
            .send(service, method.clone(), path, body, Some(&token))
            .await
        {
            Err(CliError::Api { body: e, .. }) if e.code == ErrorCode::TokenExpired => {
                let fresh = self.refresh(&token).await?;
                self.send(service, method, path, body, Some(&fresh)).await
            }
            other => other,
        }
    }
}

/// Deserializes a response body into `T`.
pub fn decode<T: DeserializeOwned>(value: Value) -> Result<T, CliError> {
    serde_json::from_value(value).map_err(|e| CliError::BadResponse {
        url: "the server".into(),
        reason: e.to_string(),
    })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

async fn read_response(url: &str, response: reqwest::Response) -> Result<Value, CliError> {
    let status = response.status();
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let bytes = response.bytes().await.map_err(|e| CliError::Unreachable {
        url: url.to_owned(),
        reason: error_chain(&e),
    })?;
    if status.is_success() {
        if bytes.is_empty() || status == StatusCode::NO_CONTENT {
            return Ok(Value::Null);
        }
        return serde_json::from_slice(&bytes).map_err(|e| CliError::BadResponse {
            url: url.to_owned(),
            reason: format!("not JSON: {e}"),
        });
    }
    #[derive(serde::Deserialize)]
    struct Envelope {
        error: ErrorBody,
    }
    match serde_json::from_slice::<Envelope>(&bytes) {
        Ok(Envelope { mut error }) => {
            error.retry_after_secs = error.retry_after_secs.or(retry_after);
            Err(CliError::Api {
                body: error,
                request_id,
            })
        }
        Err(_) if status.is_server_error() && status != StatusCode::INTERNAL_SERVER_ERROR => {
            Err(CliError::Unreachable {
                url: url.to_owned(),
                reason: format!("status {status}"),
            })
        }
        Err(_) => Err(CliError::BadResponse {
            url: url.to_owned(),
            reason: format!("status {status}, not an AuthStack error"),
        }),
    }
}
