//! Token verification from the gateway's public JWKS alone: no shared secret, no call per
//! request.
//!
//! The key set is fetched at start-up, periodically (so revoked keys disappear), and when a
//! token names a `kid` we do not know (a rotation has happened), at most once per configured
//! interval, so tokens with forged kids cannot make us flood the gateway. A failed fetch keeps
//! the keys we have.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use authstack_keyring::jwt::{Expectations, TokenVerifier, VerifyError};
use authstack_protocol::model::PublicJwk;
use authstack_protocol::{AccessClaims, ErrorBody, ErrorCode};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

/// Why the JWKS could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// The gateway did not answer, or answered something other than 200.
    #[error("fetching {url}: {reason}")]
    Fetch {
        /// The JWKS URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<PublicJwk>,
}

/// The verification keys, refreshed from the JWKS.
pub struct JwksKeys {
    http: reqwest::Client,
    url: String,
    expect: Expectations,
    current: ArcSwapOption<TokenVerifier>,
    min_unknown_kid_interval: Duration,
    last_unknown_kid_fetch: std::sync::Mutex<Option<Instant>>,
    fetch_lock: tokio::sync::Mutex<()>,
}

impl JwksKeys {
    /// Keys from `url`, none loaded yet.
    pub fn new(
        http: reqwest::Client,
        url: String,
        expect: Expectations,
        min_unknown_kid_interval: Duration,
    ) -> Arc<Self> {
        Arc::new(JwksKeys {
            http,
            url,
            expect,
            current: ArcSwapOption::empty(),
            min_unknown_kid_interval,
            last_unknown_kid_fetch: std::sync::Mutex::new(None),
            fetch_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// Whether a key set has been loaded.
    pub fn is_loaded(&self) -> bool {
        self.current.load().is_some()
    }

    /// Fetches the JWKS and swaps it in; returns the number of usable keys.
    pub async fn refresh(&self) -> Result<usize, JwksError> {
        let _one_at_a_time = self.fetch_lock.lock().await;
        let fail = |reason: String| JwksError::Fetch {
            url: self.url.clone(),
            reason,
        };
        let response = self
            .http
            .get(&self.url)
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !response.status().is_success() {
            return Err(fail(format!("status {}", response.status())));
        }
        let jwks: Jwks = response.json().await.map_err(|e| fail(e.to_string()))?;
        let (verifier, warnings) = TokenVerifier::new(&jwks.keys, &self.expect);
        for warning in warnings {
            tracing::warn!(%warning, "ignoring an unusable key of the JWKS");
        }
        let mut kids: Vec<&str> = verifier.kids().collect();
        kids.sort_unstable();
        tracing::info!(?kids, "verification keys loaded from the JWKS");
        let count = kids.len();
        metrics::counter!("authstack_chat_jwks_fetches_total").increment(1);
        self.current.store(Some(Arc::new(verifier)));
        Ok(count)
    }

    /// Refreshes because a token named an unknown (or any, before the first load) key, unless
    /// that happened less than the configured interval ago.
    async fn refresh_for_unknown_kid(&self) {
        {
            let Ok(mut last) = self.last_unknown_kid_fetch.lock() else {
                return;
            };
            if last.is_some_and(|t| t.elapsed() < self.min_unknown_kid_interval) {
                metrics::counter!("authstack_chat_jwks_fetches_skipped_total").increment(1);
                return;
            }
            *last = Some(Instant::now());
        }
        if let Err(e) = self.refresh().await {
            tracing::warn!(error = %e, "JWKS refresh for an unknown key failed");
        }
    }

    fn verify_now(&self, token: &str) -> Option<Result<AccessClaims, VerifyError>> {
        let verifier = self.current.load_full()?;
        Some(verifier.verify::<AccessClaims>(token).map(|v| v.claims))
    }

    /// Verifies an access token: signature with a key of the JWKS, `typ`, issuer, audience,
    /// expiry and not-before.
    pub async fn verify(&self, token: &str) -> Result<AccessClaims, ErrorBody> {
        let result = match self.verify_now(token) {
            Some(Err(VerifyError::UnknownKey(_))) | None => {
                self.refresh_for_unknown_kid().await;
                self.verify_now(token).ok_or_else(|| {
                    ErrorBody::new(
                        ErrorCode::RpcUnavailable,
                        "the AuthStack JWKS could not be fetched yet",
                    )
                })?
            }
            Some(result) => result,
        };
        result.map_err(|e| match e {
            VerifyError::Expired => ErrorBody::new(ErrorCode::TokenExpired, "access token expired"),
            VerifyError::UnknownKey(_) => ErrorBody::new(
                ErrorCode::InvalidToken,
                "access token signed by an unknown key",
            ),
            VerifyError::Malformed(_) | VerifyError::Invalid(_) => {
                ErrorBody::new(ErrorCode::InvalidToken, "invalid access token")
            }
        })
    }

    /// Loads the keys (retrying until the gateway answers) and refreshes them every `period`
    /// until `shutdown`.
    pub fn spawn_refresher(self: Arc<Self>, period: Duration, shutdown: CancellationToken) {
        tokio::spawn(async move {
            let mut retry = Duration::from_millis(250);
            while !self.is_loaded() {
                if let Err(e) = self.refresh().await {
                    tracing::warn!(error = %e, "JWKS not available yet");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(retry) => {}
                    }
                    retry = (retry * 2).min(Duration::from_secs(5));
                }
            }
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {
                        if let Err(e) = self.refresh().await {
                            tracing::warn!(error = %e, "periodic JWKS refresh failed; keeping the current keys");
                        }
                    }
                }
            }
        });
    }
}
