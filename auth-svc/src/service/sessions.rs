//! Login, password checks under throttling, refresh-token rotation with reuse detection,
//! logout and password changes.

use authstack_protocol::rpc::{
    ChangePasswordParams, LoginParams, RefreshTokenParams, RpcReply, Secret,
};
use authstack_protocol::{ErrorBody, ErrorCode, Event, EventKind, TokenPair, validate};
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{AuthService, Caller, Request, ServiceError, fail};
use crate::passwords::Verification;
use crate::throttle::{self, Reservation, ThrottleKey};
use crate::tokens;

#[derive(sqlx::FromRow)]
struct LoginRow {
    id: Option<Uuid>,
    roles: Option<Vec<String>>,
    disabled: Option<bool>,
    password_hash: Option<String>,
    /// The account id, or `login:<name>` for unknown logins (throttled the same way).
    throttle_name: String,
}

/// A refresh token about to be stored: its id and hash (the token itself goes to the client).
struct NewRefresh {
    id: Uuid,
    hash: Vec<u8>,
}

#[derive(sqlx::FromRow)]
struct RefreshRow {
    id: Uuid,
    account_id: Uuid,
    family_id: Uuid,
    successor_sealed: Option<Vec<u8>>,
    revoked: bool,
    expired: bool,
    session_ended: bool,
    used: bool,
    in_grace: bool,
    roles: Vec<String>,
    disabled: bool,
    /// Expiry of a successor: a fresh lifetime, but never past the session's end.
    successor_expires_at: DateTime<Utc>,
}

fn invalid_credentials() -> ServiceError {
    fail(ErrorCode::InvalidCredentials, "invalid login or password")
}

impl AuthService {
    /// A new token pair for `family`: the refresh token (to be stored) and a signed access token.
    fn new_pair(
        &self,
        account_id: Uuid,
        roles: &[String],
        family: Uuid,
    ) -> Result<(TokenPair, NewRefresh), ServiceError> {
        let refresh = tokens::new_refresh_token();
        let stored = NewRefresh {
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

    /// Stores a login in one statement: claims its request id, creates the session and its
    /// first refresh token, and writes its event to the outbox. Returns false when the request
    /// id was already applied (nothing is stored then).
    async fn store_login(
        &self,
        conn: &mut PgConnection,
        account_id: Uuid,
        session: Uuid,
        stored: &NewRefresh,
        event: &Event,
        request_id: &str,
    ) -> Result<bool, ServiceError> {
        let inserted = sqlx::query(
            "WITH claim AS (
                 INSERT INTO auth.processed_requests (request_id, method)
                 SELECT $6, 'auth.login' WHERE $6 <> ''
                 ON CONFLICT (request_id) DO NOTHING
                 RETURNING 1
             ), go AS (
                 SELECT 1 WHERE $6 = '' OR EXISTS (SELECT 1 FROM claim)
             ), session AS (
                 INSERT INTO auth.sessions (id, account_id) SELECT $3, $2 FROM go
                 RETURNING id, created_at
             ), event AS (
                 INSERT INTO auth.outbox (event_id, routing_key, payload)
                 SELECT $8, $9, $10 FROM go
             )
             INSERT INTO auth.refresh_tokens (id, account_id, family_id, token_hash, expires_at)
             SELECT $1, $2, session.id, $4,
                    least(now() + make_interval(secs => $5),
                          session.created_at + make_interval(secs => $7))
               FROM session",
        )
        .bind(stored.id)
        .bind(account_id)
        .bind(session)
        .bind(&stored.hash)
        .bind(self.settings.refresh_ttl.as_secs_f64())
        .bind(request_id)
        .bind(self.settings.session_max_lifetime.as_secs_f64())
        .bind(event.id)
        .bind(event.kind.routing_key())
        .bind(serde_json::to_value(event).unwrap_or_default())
        .execute(conn)
        .await?
        .rows_affected();
        Ok(inserted == 1)
    }

    /// Checks a password under throttling: reserves the attempt (refusing locked pairs,
    /// backed-off accounts and rate-limited addresses before any hashing), waits the address
    /// delay, verifies, and on success (a match on a `usable` account) gives the reservation
    /// back. `account` is the id for events. Returns the verification, `Mismatch` for an
    /// unusable account.
    pub(crate) async fn check_password(
        &self,
        keys: &[ThrottleKey],
        account: Option<Uuid>,
        password: Secret,
        stored: Option<String>,
        usable: bool,
    ) -> Result<Verification, ServiceError> {
        // A place in the hashing queue first: a full queue answers at once, and a refused
        // attempt is never counted against anyone.
        let admission = self.hasher.admit()?;
        match throttle::reserve(&self.pool, &self.settings.throttle, keys).await? {
            Reservation::Refused(body) => {
                let outcome = if body.code == ErrorCode::AccountLocked {
                    "locked"
                } else {
                    "rate_limited"
                };
                metrics::counter!("authstack_password_checks_refused_total", "outcome" => outcome)
                    .increment(1);
                if body.code == ErrorCode::AccountLocked {
                    self.record_events(&[Event::now(
                        EventKind::AccountLocked,
                        account,
                        json!({ "retry_after_secs": body.retry_after_secs }),
                    )])
                    .await?;
                }
                return Err(ServiceError::Client(body));
            }
            Reservation::Granted(delay) if !delay.is_zero() => {
                metrics::counter!("authstack_password_checks_delayed_total").increment(1);
                tokio::time::sleep(delay).await;
            }
            Reservation::Granted(_) => {}
        }
        let verification = admission.verify(password.0, stored).await?;
        if !usable || verification == Verification::Mismatch {
            return Ok(Verification::Mismatch);
        }
        throttle::succeeded(&self.pool, keys).await?;
        Ok(verification)
    }

    /// Checks the caller's current password (re-authentication for sensitive changes), under
    /// the same throttling as a login from the caller's address.
    pub(crate) async fn verify_current_password(
        &self,
        account: Uuid,
        password: Secret,
        req: Request<'_>,
    ) -> Result<(), ServiceError> {
        let stored: Option<String> =
            sqlx::query_scalar("SELECT password_hash FROM auth.credentials WHERE account_id = $1")
                .bind(account)
                .fetch_optional(&self.pool)
                .await?;
        let keys = self
            .settings
            .throttle
            .password_keys(&account.to_string(), req.ctx.client_ip.as_deref());
        match self
            .check_password(&keys, Some(account), password, stored, true)
            .await?
        {
            Verification::Mismatch => Err(fail(
                ErrorCode::InvalidCredentials,
                "current password is wrong",
            )),
            Verification::Match | Verification::MatchRehashed(_) => Ok(()),
        }
    }

    pub(super) async fn login(
        &self,
        p: LoginParams,
        req: Request<'_>,
    ) -> Result<RpcReply, ServiceError> {
        validate::login(&p)?;
        let login = p.login.trim().to_lowercase();
        // User names cannot contain '@' and emails must, so at most one account matches.
        let row: LoginRow = sqlx::query_as(
            "SELECT a.id, a.roles, a.disabled, c.password_hash,
                    coalesce(a.id::text, 'login:' || $1) AS throttle_name
               FROM (SELECT 1) AS one
               LEFT JOIN (auth.accounts a JOIN auth.credentials c ON c.account_id = a.id)
                 ON lower(a.email) = $1 OR lower(a.username) = $1
              LIMIT 1",
        )
        .bind(&login)
        .fetch_one(&self.pool)
        .await?;
        let address = req.ctx.client_ip.as_deref();
        let policy = &self.settings.throttle;
        let mut keys = policy.password_keys(&row.throttle_name, address);
        keys.extend(policy.login_rate_key(address));
        // Unknown accounts are verified against a dummy hash, and disabled ones answer like a
        // wrong password: same cost, same answer, nothing confirmed.
        let usable = row.id.is_some() && !row.disabled.unwrap_or(false);
        let verification = self
            .check_password(&keys, row.id, p.password, row.password_hash, usable)
            .await?;
        let (id, rehash) = match (row.id, verification) {
            (Some(id), Verification::Match) => (id, None),
            (Some(id), Verification::MatchRehashed(h)) => (id, Some(h)),
            _ => {
                metrics::counter!("authstack_logins_total", "outcome" => "invalid_credentials")
                    .increment(1);
                return Err(invalid_credentials());
            }
        };
        let roles = row.roles.unwrap_or_default();
        let session = Uuid::new_v4();
        let event = Event::now(
            EventKind::AccountLoggedIn,
            Some(id),
            json!({ "session_id": session }),
        );
        let (pair, stored) = self.new_pair(id, &roles, session)?;
        let applied = match rehash {
            Some(hash) => {
                let mut tx = self.pool.begin().await?;
                sqlx::query("UPDATE auth.credentials SET password_hash = $2, updated_at = now() WHERE account_id = $1")
                    .bind(id)
                    .bind(hash)
                    .execute(&mut *tx)
                    .await?;
                let applied = self
                    .store_login(&mut tx, id, session, &stored, &event, req.id)
                    .await?;
                if applied {
                    tx.commit().await?;
                    metrics::counter!("authstack_password_rehashes_total").increment(1);
                }
                applied
            }
            None => {
                let mut conn = self.pool.acquire().await?;
                self.store_login(&mut conn, id, session, &stored, &event, req.id)
                    .await?
            }
        };
        if !applied {
            return self.replay(req.id).await;
        }
        self.relay.wake();
        metrics::counter!("authstack_logins_total", "outcome" => "ok").increment(1);
        Ok(RpcReply::ok(&pair))
    }

    pub(super) async fn refresh(
        &self,
        p: RefreshTokenParams,
        req: Request<'_>,
    ) -> Result<RpcReply, ServiceError> {
        validate::refresh_token(&p)?;
        let presented = p.refresh_token.expose();
        let hash = tokens::hash_refresh_token(presented);
        let mut tx = self.pool.begin().await?;
        // Locks the token (serialising refreshes of it) and its session (serialising this
        // refresh with any revocation of the session, which updates that row).
        let row: Option<RefreshRow> = sqlx::query_as(
            "SELECT t.id, t.account_id, t.family_id, t.successor_sealed,
                    s.revoked_at IS NOT NULL AS revoked,
                    t.expires_at < now() AS expired,
                    s.created_at + make_interval(secs => $3) < now() AS session_ended,
                    t.used_at IS NOT NULL AS used,
                    coalesce(now() - t.used_at <= make_interval(secs => $2), false) AS in_grace,
                    a.roles, a.disabled,
                    least(now() + make_interval(secs => $4),
                          s.created_at + make_interval(secs => $3)) AS successor_expires_at
               FROM auth.refresh_tokens t
               JOIN auth.sessions s ON s.id = t.family_id
               JOIN auth.accounts a ON a.id = t.account_id
              WHERE t.token_hash = $1
                FOR UPDATE OF t, s",
        )
        .bind(&hash)
        .bind(self.settings.reuse_grace.as_secs_f64())
        .bind(self.settings.session_max_lifetime.as_secs_f64())
        .bind(self.settings.refresh_ttl.as_secs_f64())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(token) = row else {
            return Err(fail(ErrorCode::InvalidToken, "unknown refresh token"));
        };
        if token.revoked {
            return Err(fail(
                ErrorCode::InvalidToken,
                "this session has been revoked",
            ));
        }
        if token.expired {
            return Err(fail(ErrorCode::TokenExpired, "refresh token expired"));
        }
        if token.session_ended {
            return Err(fail(
                ErrorCode::TokenExpired,
                "the session has reached its maximum lifetime; log in again",
            ));
        }
        if token.used && token.in_grace {
            // A retry of a refresh that already happened (e.g. two tabs at once): the same
            // successor again, never a second one, so the session cannot fork.
            metrics::counter!("authstack_refresh_grace_reuse_total").increment(1);
            let successor = token
                .successor_sealed
                .as_deref()
                .and_then(|sealed| tokens::open_successor(presented, sealed))
                .and_then(|plain| serde_json::from_slice::<TokenPair>(&plain).ok());
            return match successor {
                Some(pair) => Ok(RpcReply::ok(&pair)),
                None => Err(fail(
                    ErrorCode::InvalidToken,
                    "this refresh token was just replaced",
                )),
            };
        }
        if token.used {
            // RFC 9700 4.14: a replaced token came back; someone may hold a stolen copy.
            revoke_session(&mut tx, token.family_id, "reuse_detected").await?;
            metrics::counter!("authstack_refresh_reuse_detected_total").increment(1);
            tracing::warn!(account = %token.account_id, session = %token.family_id, "refresh token reuse detected; session revoked");
            let event =
                self.sessions_revoked(token.account_id, "refresh_token_reuse", &[token.family_id]);
            let reply = RpcReply::Error(ErrorBody::new(
                ErrorCode::InvalidToken,
                "refresh token reuse detected; the session has been revoked",
            ));
            return self
                .finish(tx, req, "auth.refresh", reply, true, vec![event])
                .await;
        }
        if token.disabled {
            return Err(fail(ErrorCode::Forbidden, "account is disabled"));
        }
        let (pair, stored) = self.new_pair(token.account_id, &token.roles, token.family_id)?;
        let sealed = if self.settings.reuse_grace.is_zero() {
            None
        } else {
            let plain = serde_json::to_vec(&pair)
                .map_err(|e| ServiceError::Signing(format!("encoding a token pair: {e}")))?;
            Some(tokens::seal_successor(presented, &plain).map_err(ServiceError::Signing)?)
        };
        sqlx::query(
            "WITH child AS (
                 INSERT INTO auth.refresh_tokens (id, account_id, family_id, token_hash, expires_at)
                 VALUES ($2, $3, $4, $5, $6)
             )
             UPDATE auth.refresh_tokens SET used_at = now(), replaced_by = $2, successor_sealed = $7
              WHERE id = $1",
        )
        .bind(token.id)
        .bind(stored.id)
        .bind(token.account_id)
        .bind(token.family_id)
        .bind(&stored.hash)
        .bind(token.successor_expires_at)
        .bind(sealed)
        .execute(&mut *tx)
        .await?;
        self.finish(
            tx,
            req,
            "auth.refresh",
            RpcReply::ok(&pair),
            false,
            Vec::new(),
        )
        .await
    }

    pub(super) async fn logout(
        &self,
        p: RefreshTokenParams,
        req: Request<'_>,
    ) -> Result<RpcReply, ServiceError> {
        validate::refresh_token(&p)?;
        let account = self.caller(req.ctx).await?;
        let mut tx = self.pool.begin().await?;
        // Like RFC 7009: an unknown token, or another account's, is not an error.
        let revoked: Option<Uuid> = sqlx::query_scalar(
            "UPDATE auth.sessions SET revoked_at = now(), revoked_reason = 'logout'
              WHERE revoked_at IS NULL AND account_id = $2 AND id = (
                    SELECT family_id FROM auth.refresh_tokens WHERE token_hash = $1)
              RETURNING id",
        )
        .bind(tokens::hash_refresh_token(p.refresh_token.expose()))
        .bind(account)
        .fetch_optional(&mut *tx)
        .await?;
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
        let account = self.caller(req.ctx).await?;
        let mut tx = self.pool.begin().await?;
        let revoked = revoke_sessions(&mut tx, account, None, "logout_all").await?;
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
        } = self.authenticate(req.ctx).await?;
        self.verify_current_password(caller.id, p.current_password, req)
            .await?;
        let new_hash = self.hasher.hash(p.new_password.0).await?;
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE auth.credentials SET password_hash = $2, updated_at = now() WHERE account_id = $1")
            .bind(caller.id)
            .bind(new_hash)
            .execute(&mut *tx)
            .await?;
        let revoked =
            revoke_sessions(&mut tx, caller.id, Some(session_id), "password_changed").await?;
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

/// Revokes one session.
async fn revoke_session(
    conn: &mut PgConnection,
    session: Uuid,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE auth.sessions SET revoked_at = now(), revoked_reason = $2
          WHERE id = $1 AND revoked_at IS NULL",
    )
    .bind(session)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(())
}

/// Revokes every live session of `account`, except `keep`; returns the revoked ids. A refresh
/// in progress holds its session row, so this waits for it and then revokes its session too.
pub(crate) async fn revoke_sessions(
    conn: &mut PgConnection,
    account: Uuid,
    keep: Option<Uuid>,
    reason: &str,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE auth.sessions SET revoked_at = now(), revoked_reason = $3
          WHERE account_id = $1 AND revoked_at IS NULL AND id IS DISTINCT FROM $2
          RETURNING id",
    )
    .bind(account)
    .bind(keep)
    .bind(reason)
    .fetch_all(conn)
    .await
}
