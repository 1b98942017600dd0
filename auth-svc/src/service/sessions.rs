//! Login, password checks under throttling, refresh-token rotation with reuse detection,
//! logout and password changes.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use authstack_bus::IncomingCall;
use authstack_protocol::rpc::{
    Call, ChangePasswordParams, LoginParams, RefreshTokenParams, RpcReply, Secret,
};
use authstack_protocol::{ErrorBody, ErrorCode, Event, EventKind, TokenPair, validate};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use super::{AuthService, Caller, Request, ServiceError, ServiceSettings, fail};
use crate::passwords::{Admission, Verification};
use crate::repo::accounts::LoginCandidate;
use crate::repo::refresh::{NewRefreshToken, PresentedToken, Replacement};
use crate::repo::{accounts, refresh, sessions};
use crate::throttle::{self, Outcome, Place, Refusal, Reservation, ThrottleKey};
use crate::tokens;

fn invalid_credentials() -> ServiceError {
    fail(ErrorCode::InvalidCredentials, "invalid login or password")
}

fn unknown_refresh_token() -> ServiceError {
    fail(ErrorCode::InvalidToken, "unknown refresh token")
}

/// The pair replacing a presented refresh token: for the client, the new token's stored form,
/// the pair sealed for a retry within the grace window, and the new token's expiry.
struct Successor {
    pair: TokenPair,
    stored: NewRefreshToken,
    sealed: Option<Vec<u8>>,
    expires_at: DateTime<Utc>,
}

impl Successor {
    /// What spending `token` for this successor writes, recorded under `request_id`.
    fn replacing<'a>(&'a self, token: &PresentedToken, request_id: &'a str) -> Replacement<'a> {
        Replacement {
            spent: token.id,
            successor: &self.stored,
            account: token.account_id,
            session: token.family_id,
            expires_at: self.expires_at,
            successor_sealed: self.sealed.as_deref(),
            request_id,
        }
    }
}

/// The refresh calls of a batch, prepared together ([`AuthService::refresh_together`]).
pub(crate) struct RefreshedTogether {
    /// The new pairs of the calls rotated together, by request id.
    pub rotated: HashMap<String, TokenPair>,
}

/// Why a presented refresh token is refused before anything else is looked at.
fn refusal(token: &PresentedToken, settings: &ServiceSettings) -> Option<ServiceError> {
    if token.session_revoked {
        return Some(fail(
            ErrorCode::InvalidToken,
            "this session has been revoked",
        ));
    }
    if token.expires_at < token.now {
        return Some(fail(ErrorCode::TokenExpired, "refresh token expired"));
    }
    if session_end(token.session_created_at, settings) < token.now {
        return Some(fail(
            ErrorCode::TokenExpired,
            "the session has reached its maximum lifetime; log in again",
        ));
    }
    None
}

/// When a session created at `created_at` ends (`AUTH_SESSION_MAX_LIFETIME` after its login).
fn session_end(created_at: DateTime<Utc>, settings: &ServiceSettings) -> DateTime<Utc> {
    created_at + delta(settings.session_max_lifetime)
}

/// Expiry of a refresh token issued at `now` in a session created at `session_created_at`: a
/// fresh lifetime, but never past the session's end.
fn refresh_expiry(
    now: DateTime<Utc>,
    session_created_at: DateTime<Utc>,
    settings: &ServiceSettings,
) -> DateTime<Utc> {
    (now + delta(settings.refresh_ttl)).min(session_end(session_created_at, settings))
}

fn delta(d: std::time::Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

impl AuthService {
    /// A new token pair for `family`: the refresh token (to be stored) and a signed access token.
    fn new_pair(
        &self,
        account_id: Uuid,
        roles: &[String],
        family: Uuid,
    ) -> Result<(TokenPair, NewRefreshToken), ServiceError> {
        let refresh = tokens::new_refresh_token();
        let stored = NewRefreshToken {
            id: Uuid::new_v4(),
            hash: tokens::hash_refresh_token(&refresh),
        };
        let claims = tokens::access_claims(
            &self.settings.tokens,
            account_id,
            roles,
            family,
            Utc::now().timestamp(),
        );
        let access =
            tokens::sign(&self.keys.current().signer, &claims).map_err(ServiceError::Signing)?;
        let pair = TokenPair {
            access_token: access,
            refresh_token: refresh,
            token_type: "Bearer".into(),
            expires_in: self.settings.tokens.ttl_secs,
        };
        Ok((pair, stored))
    }

    /// Checks a password under throttling: reserves the attempt (refusing locked pairs,
    /// backed-off accounts, busy pairs and rate-limited addresses before any hashing), waits the
    /// address delay and verifies. `account` is the id for events. Returns the verification,
    /// `Mismatch` for an unusable account, and the place taken; a mismatch ends the place as a
    /// failure here. On a match the caller ends it ([`throttle::finish`] with `Succeeded`), in
    /// the transaction that stores the outcome if there is one.
    pub(crate) async fn check_password(
        &self,
        keys: &[ThrottleKey],
        account: Option<Uuid>,
        password: Secret,
        stored: Option<String>,
        usable: bool,
    ) -> Result<(Verification, Place), ServiceError> {
        let (admission, reservation) = self.admit_and_reserve(keys).await?;
        let place = match reservation {
            Reservation::Refused(refusal) => {
                metrics::counter!(
                    "authstack_password_checks_refused_total",
                    "outcome" => refusal.label()
                )
                .increment(1);
                let body = refusal.body();
                if let Refusal::Locked { .. } = refusal {
                    self.record_events(&[Event::now(
                        EventKind::AccountLocked,
                        account,
                        json!({ "retry_after_secs": body.retry_after_secs }),
                    )])
                    .await?;
                }
                return Err(ServiceError::Client(body));
            }
            Reservation::Granted { delay, place } => {
                if !delay.is_zero() {
                    metrics::counter!("authstack_password_checks_delayed_total").increment(1);
                    tokio::time::sleep(delay).await;
                }
                place
            }
        };
        let verification = match admission.verify(password.0, stored).await {
            Ok(v) if usable => v,
            Ok(_) => Verification::Mismatch,
            Err(e) => {
                // No check happened: give the place back.
                self.end_place(&place, Outcome::Abandoned).await;
                return Err(e.into());
            }
        };
        if matches!(verification, Verification::Mismatch) {
            // The answer stands even if the failure cannot be written now: its place is then
            // counted as a failure when its bucket is forgotten.
            self.end_place(&place, Outcome::Failed).await;
        }
        Ok((verification, place))
    }

    /// Ends `place` in a transaction of its own; a failure to do so is logged, and the place is
    /// then counted as a failure when forgotten ([`throttle`]).
    async fn end_place(&self, place: &Place, outcome: Outcome) {
        let policy = &self.settings.throttle;
        if let Err(e) = throttle::finish_alone(&self.pool, policy, place, outcome).await {
            tracing::warn!(error = %e, ?outcome, "a password check's place was not ended");
        }
    }

    /// A place in the hashing queue, then the throttle's reservation on `keys`. The queue
    /// first: a full queue answers at once, and a refused attempt is never counted against
    /// anyone. While the pair or account has as many checks in flight as it may, waits for one
    /// of them to end (up to [`throttle::BUSY_WAIT_MAX`], holding no place in the queue
    /// meanwhile, and only while fewer than [`throttle::MAX_WAITING_CHECKS`] attempts of this
    /// replica wait), so overlapping right logins queue instead of failing.
    async fn admit_and_reserve(
        &self,
        keys: &[ThrottleKey],
    ) -> Result<(Admission, Reservation), ServiceError> {
        let policy = &self.settings.throttle;
        let mut waited = Duration::ZERO;
        let mut pause = throttle::BUSY_POLL_FIRST;
        let mut waiting = None;
        loop {
            let admission = self.hasher.admit()?;
            match throttle::reserve(&self.pool, policy, keys).await? {
                busy @ Reservation::Refused(Refusal::Busy) => {
                    if waiting.is_none() {
                        waiting = self.busy_waiters.try_acquire().ok();
                        if waiting.is_some() {
                            metrics::counter!("authstack_password_checks_queued_total")
                                .increment(1);
                        }
                    }
                    if waiting.is_none() || waited >= throttle::BUSY_WAIT_MAX {
                        return Ok((admission, busy));
                    }
                    drop(admission);
                    let step = pause.min(throttle::BUSY_WAIT_MAX - waited);
                    tokio::time::sleep(step).await;
                    waited += step;
                    pause = (pause * 2).min(throttle::BUSY_POLL_MAX);
                }
                reservation => return Ok((admission, reservation)),
            }
        }
    }

    /// Checks the caller's current password (re-authentication for sensitive changes), under
    /// the same throttling as a login from the caller's address.
    pub(crate) async fn verify_current_password(
        &self,
        account: Uuid,
        password: Secret,
        req: Request<'_>,
    ) -> Result<(), ServiceError> {
        let stored = accounts::password_hash(&self.pool, account).await?;
        let policy = &self.settings.throttle;
        let keys = policy.password_keys(&account.to_string(), req.ctx.client_ip.as_deref());
        match self
            .check_password(&keys, Some(account), password, stored, true)
            .await?
        {
            (Verification::Mismatch, _) => Err(fail(
                ErrorCode::InvalidCredentials,
                "current password is wrong",
            )),
            (Verification::Match | Verification::MatchRehashed(_), place) => {
                throttle::finish_alone(&self.pool, policy, &place, Outcome::Succeeded).await?;
                Ok(())
            }
        }
    }

    pub(super) async fn login(
        &self,
        p: LoginParams,
        req: Request<'_>,
    ) -> Result<RpcReply, ServiceError> {
        validate::login(&p)?;
        let login = p.login.trim().to_lowercase();
        let candidate = accounts::find_for_login(&self.pool, &login).await?;
        let (account, rehash, place) = self
            .check_login_password(&login, candidate, p.password, req)
            .await?;
        match self.open_session(&account, rehash, &place, req).await {
            Ok(Some(pair)) => {
                metrics::counter!("authstack_logins_total", "outcome" => "ok").increment(1);
                Ok(RpcReply::ok(&pair))
            }
            // Nothing was stored, the place's end neither: end it apart.
            Ok(None) => {
                self.end_place(&place, Outcome::Succeeded).await;
                self.replay(req.id).await
            }
            Err(e) => {
                self.end_place(&place, Outcome::Succeeded).await;
                Err(e)
            }
        }
    }

    /// A new session for a login whose password was right, stored with the end of its check's
    /// `place`: its token pair, or `None` when the request id was already applied.
    async fn open_session(
        &self,
        account: &LoginCandidate,
        rehash: Option<String>,
        place: &Place,
        req: Request<'_>,
    ) -> Result<Option<TokenPair>, ServiceError> {
        let session = Uuid::new_v4();
        let (pair, token) = self.new_pair(account.id, &account.roles, session)?;
        let stored = self
            .store_login(account.id, session, &token, rehash, place, req)
            .await?;
        Ok(stored.then_some(pair))
    }

    /// The password check of a login, under throttling by account (or, for unknown logins, by
    /// `login:<name>`), address and login rate. Returns the account, the new hash when its hash
    /// used outdated parameters, and the place the stored login ends.
    async fn check_login_password(
        &self,
        login: &str,
        mut candidate: Option<LoginCandidate>,
        password: Secret,
        req: Request<'_>,
    ) -> Result<(LoginCandidate, Option<String>, Place), ServiceError> {
        let throttle_name = match &candidate {
            Some(account) => account.id.to_string(),
            None => format!("login:{login}"),
        };
        let address = req.ctx.client_ip.as_deref();
        let policy = &self.settings.throttle;
        let mut keys = policy.password_keys(&throttle_name, address);
        keys.extend(policy.login_rate_key(address));
        // Unknown accounts are verified against a dummy hash, and disabled ones answer like a
        // wrong password: same cost, same answer, nothing confirmed.
        let usable = candidate.as_ref().is_some_and(|a| !a.disabled);
        let id = candidate.as_ref().map(|a| a.id);
        let stored = candidate
            .as_mut()
            .map(|a| std::mem::take(&mut a.password_hash));
        let (verification, place) = self
            .check_password(&keys, id, password, stored, usable)
            .await?;
        match (candidate, verification) {
            (Some(account), Verification::Match) => Ok((account, None, place)),
            (Some(account), Verification::MatchRehashed(hash)) => Ok((account, Some(hash), place)),
            _ => {
                metrics::counter!("authstack_logins_total", "outcome" => "invalid_credentials")
                    .increment(1);
                Err(invalid_credentials())
            }
        }
    }

    /// Stores a login in one transaction: the new hash of a rehashed password, the session, its
    /// first refresh token, the throttle's `place` ended as a success, the login event and the
    /// request id. False when the request id was already applied (nothing is stored then).
    async fn store_login(
        &self,
        account: Uuid,
        session: Uuid,
        token: &NewRefreshToken,
        rehash: Option<String>,
        place: &Place,
        req: Request<'_>,
    ) -> Result<bool, ServiceError> {
        let mut tx = self.pool.begin().await?;
        if let Some(hash) = &rehash {
            accounts::set_password_hash(&mut *tx, account, hash).await?;
        }
        let created_at = sessions::insert(&mut *tx, session, account).await?;
        let expires_at = refresh_expiry(created_at, created_at, &self.settings);
        refresh::insert(&mut *tx, token, account, session, expires_at).await?;
        // Here rather than in its own transaction: one commit fewer per login.
        throttle::finish(&mut tx, &self.settings.throttle, place, Outcome::Succeeded).await?;
        let event = Event::now(
            EventKind::AccountLoggedIn,
            Some(account),
            json!({ "session_id": session }),
        );
        let applied = self
            .commit_once(tx, req, "auth.login", None, &[event])
            .await?;
        if applied && rehash.is_some() {
            metrics::counter!("authstack_password_rehashes_total").increment(1);
        }
        Ok(applied)
    }

    pub(super) async fn refresh(
        &self,
        p: RefreshTokenParams,
        req: Request<'_>,
    ) -> Result<RpcReply, ServiceError> {
        validate::refresh_token(&p)?;
        if let Some(pair) = req.prepared.and_then(|b| b.rotated(req.id)) {
            return Ok(RpcReply::ok(pair));
        }
        let presented = p.refresh_token.expose();
        let hash = tokens::hash_refresh_token(presented);
        // The fast path, for a live token not spent yet (nearly every refresh): read, sign and
        // replace in one statement outside a transaction — two round trips instead of four, no
        // row locks held across them. Everything else (refused, spent, a race lost) is decided
        // under the locks of the locked path.
        let Some(token) = refresh::peek_presented(&self.pool, &hash).await? else {
            return Err(unknown_refresh_token());
        };
        if token.used_at.is_none() && !token.disabled && refusal(&token, &self.settings).is_none() {
            let next = self.successor(presented, &token)?;
            if refresh::replace_if_live(&self.pool, &next.replacing(&token, req.id)).await? {
                return Ok(RpcReply::ok(&next.pair));
            }
        }
        self.refresh_locked(presented, &hash, req).await
    }

    /// The refresh calls of a batch (from two on): their presented tokens read in one query,
    /// and those that would take the fast path rotated in one statement — what `refresh` does
    /// for each with a read and a write. Only a first delivery with a request id, presenting a
    /// live, unspent token that no other call of the batch presents, for an account no other
    /// rotated call is for, is rotated here; the statement writes only where the token is
    /// still unspent and its session live when it runs. Every other call, and every call of a
    /// failed statement, takes `refresh`'s own path, reading afresh.
    pub(super) async fn refresh_together(
        &self,
        calls: &[&IncomingCall],
    ) -> Option<RefreshedTogether> {
        let presented: Vec<(&IncomingCall, String, Vec<u8>)> = calls
            .iter()
            .filter_map(|c| match c.request.decode() {
                Ok(Call::Refresh(p)) if validate::refresh_token(&p).is_ok() => {
                    let token = p.refresh_token.expose().to_owned();
                    let hash = tokens::hash_refresh_token(&token);
                    Some((*c, token, hash))
                }
                _ => None,
            })
            .collect();
        if presented.len() < 2 {
            return None;
        }
        let mut hashes: Vec<Vec<u8>> = presented.iter().map(|(_, _, h)| h.clone()).collect();
        hashes.sort_unstable();
        hashes.dedup();
        let tokens: HashMap<Vec<u8>, PresentedToken> = refresh::peek_many(&self.pool, &hashes)
            .await
            .ok()?
            .into_iter()
            .collect();
        let rotated = self.rotate_together(&presented, &tokens).await;
        Some(RefreshedTogether { rotated })
    }

    /// Rotates the calls of `presented` that may be in one statement; their new pairs by
    /// request id.
    async fn rotate_together(
        &self,
        presented: &[(&IncomingCall, String, Vec<u8>)],
        tokens: &HashMap<Vec<u8>, PresentedToken>,
    ) -> HashMap<String, TokenPair> {
        let mut times: HashMap<&[u8], usize> = HashMap::new();
        let mut ids: HashMap<&str, usize> = HashMap::new();
        for (call, _, hash) in presented {
            *times.entry(hash.as_slice()).or_default() += 1;
            *ids.entry(call.request_id.as_str()).or_default() += 1;
        }
        // One call per account: the statement then share-locks at most one session of each
        // account, so it cannot deadlock with a revocation of an account's sessions.
        let mut accounts = HashSet::new();
        let mut successors = Vec::new();
        for (call, token, hash) in presented {
            let alone = times[hash.as_slice()] == 1 && ids[call.request_id.as_str()] == 1;
            if call.redelivered || call.request_id.is_empty() || !alone {
                continue;
            }
            let Some(found) = tokens.get(hash) else {
                continue;
            };
            if found.used_at.is_some() || found.disabled || refusal(found, &self.settings).is_some()
            {
                continue;
            }
            if !accounts.insert(found.account_id) {
                continue;
            }
            if let Ok(next) = self.successor(token, found) {
                successors.push((call.request_id.as_str(), found, next));
            }
        }
        if successors.len() < 2 {
            return HashMap::new();
        }
        // The same order in every replica's statements (the plan usually locks rows in it; a
        // deadlock fails the statement, and its calls take the single path).
        successors.sort_unstable_by_key(|(_, found, _)| found.id);
        let replacements: Vec<Replacement<'_>> = successors
            .iter()
            .map(|(id, found, next)| next.replacing(found, id))
            .collect();
        let Ok(written) = refresh::replace_many_if_live(&self.pool, &replacements).await else {
            return HashMap::new();
        };
        let written: HashSet<(Uuid, Uuid)> = written.into_iter().collect();
        successors
            .into_iter()
            .filter(|(_, found, next)| written.contains(&(found.id, next.stored.id)))
            .map(|(id, _, next)| (id.to_owned(), next.pair))
            .collect()
    }

    /// A refresh decided with the presented token and its session locked: refusals, a retry
    /// within the grace window, reuse, and races with another refresh or a revocation.
    async fn refresh_locked(
        &self,
        presented: &str,
        hash: &[u8],
        req: Request<'_>,
    ) -> Result<RpcReply, ServiceError> {
        let mut tx = self.pool.begin().await?;
        let Some(token) = refresh::lock_presented(&mut *tx, hash).await? else {
            return Err(unknown_refresh_token());
        };
        if let Some(refused) = refusal(&token, &self.settings) {
            return Err(refused);
        }
        if let Some(used_at) = token.used_at {
            if token.now - used_at <= delta(self.settings.reuse_grace) {
                let sealed = refresh::sealed_successor(&mut *tx, token.id).await?;
                return grace_retry(presented, sealed.as_deref());
            }
            return self.revoke_reused(tx, req, &token).await;
        }
        if token.disabled {
            return Err(fail(ErrorCode::Forbidden, "account is disabled"));
        }
        let next = self.successor(presented, &token)?;
        // The request id is claimed by the same statement (refresh is a hot path): one round
        // trip fewer than `finish`, with the same outcome.
        if !refresh::replace(&mut *tx, &next.replacing(&token, req.id)).await? {
            return self.replay_instead(tx, req).await;
        }
        tx.commit().await?;
        Ok(RpcReply::ok(&next.pair))
    }

    /// The pair that replaces `token`, in its session, with what is stored of it.
    fn successor(
        &self,
        presented: &str,
        token: &PresentedToken,
    ) -> Result<Successor, ServiceError> {
        let (pair, stored) = self.new_pair(token.account_id, &token.roles, token.family_id)?;
        let sealed = self.seal_successor(presented, &pair)?;
        let expires_at = refresh_expiry(token.now, token.session_created_at, &self.settings);
        Ok(Successor {
            pair,
            stored,
            sealed,
            expires_at,
        })
    }

    /// The successor `pair` sealed under a key derived from the `presented` token, for a retry
    /// within the grace window (`None` without a grace window).
    fn seal_successor(
        &self,
        presented: &str,
        pair: &TokenPair,
    ) -> Result<Option<Vec<u8>>, ServiceError> {
        if self.settings.reuse_grace.is_zero() {
            return Ok(None);
        }
        let plain = serde_json::to_vec(pair)
            .map_err(|e| ServiceError::Signing(format!("encoding a token pair: {e}")))?;
        tokens::seal_successor(presented, &plain)
            .map(Some)
            .map_err(ServiceError::Signing)
    }

    /// RFC 9700 4.14: a replaced token came back after the grace window; someone may hold a
    /// stolen copy. Revokes its session.
    async fn revoke_reused(
        &self,
        mut tx: Transaction<'static, Postgres>,
        req: Request<'_>,
        token: &PresentedToken,
    ) -> Result<RpcReply, ServiceError> {
        sessions::revoke(&mut *tx, token.family_id, "reuse_detected").await?;
        metrics::counter!("authstack_refresh_reuse_detected_total").increment(1);
        tracing::warn!(account = %token.account_id, session = %token.family_id, "refresh token reuse detected; session revoked");
        let event =
            self.sessions_revoked(token.account_id, "refresh_token_reuse", &[token.family_id]);
        let reply = RpcReply::Error(ErrorBody::new(
            ErrorCode::InvalidToken,
            "refresh token reuse detected; the session has been revoked",
        ));
        self.finish(tx, req, "auth.refresh", reply, true, vec![event])
            .await
    }

    pub(super) async fn logout(
        &self,
        p: RefreshTokenParams,
        req: Request<'_>,
    ) -> Result<RpcReply, ServiceError> {
        validate::refresh_token(&p)?;
        let account = self.caller(req).await?;
        let mut tx = self.pool.begin().await?;
        // Like RFC 7009: an unknown token, or another account's, is not an error.
        let hash = tokens::hash_refresh_token(p.refresh_token.expose());
        let revoked = sessions::revoke_by_refresh_token(&mut *tx, &hash, account, "logout").await?;
        // The logout itself, and the revocation verifiers act on.
        let events = match revoked {
            Some(session) => vec![
                Event::now(
                    EventKind::AccountLoggedOut,
                    Some(account),
                    json!({ "session_id": session }),
                ),
                self.sessions_revoked(account, "logout", &[session]),
            ],
            None => Vec::new(),
        };
        self.finish(tx, req, "auth.logout", RpcReply::ok(&()), true, events)
            .await
    }

    pub(super) async fn logout_all(&self, req: Request<'_>) -> Result<RpcReply, ServiceError> {
        let account = self.caller(req).await?;
        let mut tx = self.pool.begin().await?;
        let revoked = sessions::revoke_all(&mut *tx, account, None, "logout_all").await?;
        let event = self.sessions_revoked(account, "logout_all", &revoked);
        self.finish(
            tx,
            req,
            "auth.logout_all",
            RpcReply::ok(&()),
            true,
            vec![event],
        )
        .await
    }

    pub(super) async fn change_password(
        &self,
        p: ChangePasswordParams,
        req: Request<'_>,
    ) -> Result<RpcReply, ServiceError> {
        validate::change_password(&p)?;
        let Caller {
            account: caller,
            session_id,
        } = self.authenticate(req).await?;
        self.verify_current_password(caller.id, p.current_password, req)
            .await?;
        let new_hash = self.hasher.hash(p.new_password.0).await?;
        let mut tx = self.pool.begin().await?;
        accounts::set_password_hash(&mut *tx, caller.id, &new_hash).await?;
        let revoked =
            sessions::revoke_all(&mut *tx, caller.id, Some(session_id), "password_changed").await?;
        let events = vec![
            Event::now(
                EventKind::AccountUpdated,
                Some(caller.id),
                json!({ "fields": ["password"] }),
            ),
            self.sessions_revoked(caller.id, "password_changed", &revoked),
        ];
        self.finish(
            tx,
            req,
            "users.change_password",
            RpcReply::ok(&()),
            true,
            events,
        )
        .await
    }
}

/// A retry of a refresh that already happened (e.g. two tabs at once) within the grace window:
/// the same successor again (`sealed` under a key derived from the `presented` token), never a
/// second one, so the session cannot fork.
fn grace_retry(presented: &str, sealed: Option<&[u8]>) -> Result<RpcReply, ServiceError> {
    metrics::counter!("authstack_refresh_grace_reuse_total").increment(1);
    let successor = sealed
        .and_then(|sealed| tokens::open_successor(presented, sealed))
        .and_then(|plain| serde_json::from_slice::<TokenPair>(&plain).ok());
    match successor {
        Some(pair) => Ok(RpcReply::ok(&pair)),
        None => Err(fail(
            ErrorCode::InvalidToken,
            "this refresh token was just replaced",
        )),
    }
}
