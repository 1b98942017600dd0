//! Login, refresh-token rotation with reuse detection, logout and password changes.

use authstack_protocol::rpc::{ChangePasswordParams, LoginParams, RefreshTokenParams, RpcReply};
use authstack_protocol::{ErrorBody, ErrorCode, Event, EventKind, TokenPair, validate};
use chrono::Utc;
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{AuthService, Request, ServiceError, fail};
use crate::passwords::Verification;
use crate::throttle::{self, ThrottleKey};
use crate::tokens;

#[derive(sqlx::FromRow)]
struct LoginRow {
    id: Option<Uuid>,
    roles: Option<Vec<String>>,
    disabled: Option<bool>,
    password_hash: Option<String>,
    account_key: String,
    locked_secs: Option<f64>,
    had_failures: bool,
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
    revoked: bool,
    expired: bool,
    used: bool,
    in_grace: bool,
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

    /// Creates a refresh token in `family` (inside `conn`'s transaction) and signs an access
    /// token for it.
    async fn issue_tokens(
        &self,
        conn: &mut PgConnection,
        account_id: Uuid,
        roles: &[String],
        family: Uuid,
    ) -> Result<(TokenPair, Uuid), ServiceError> {
        let (pair, stored) = self.new_pair(account_id, roles, family)?;
        sqlx::query(
            "INSERT INTO auth.refresh_tokens (id, account_id, family_id, token_hash, expires_at)
             VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))",
        )
        .bind(stored.id)
        .bind(account_id)
        .bind(family)
        .bind(&stored.hash)
        .bind(self.settings.refresh_ttl.as_secs_f64())
        .execute(&mut *conn)
        .await?;
        Ok((pair, stored.id))
    }

    /// Stores a login's refresh token and claims its request id in one atomic statement (no
    /// explicit transaction: one round trip). Returns false when the request id was already
    /// applied (nothing is stored then).
    async fn store_login(
        &self,
        account_id: Uuid,
        family: Uuid,
        stored: &NewRefresh,
        request_id: &str,
    ) -> Result<bool, ServiceError> {
        let inserted = sqlx::query(
            "WITH claim AS (
                 INSERT INTO auth.processed_requests (request_id, method)
                 SELECT $6, 'auth.login' WHERE $6 <> ''
                 ON CONFLICT (request_id) DO NOTHING
                 RETURNING 1
             )
             INSERT INTO auth.refresh_tokens (id, account_id, family_id, token_hash, expires_at)
             SELECT $1, $2, $3, $4, now() + make_interval(secs => $5)
              WHERE $6 = '' OR EXISTS (SELECT 1 FROM claim)",
        )
        .bind(stored.id)
        .bind(account_id)
        .bind(family)
        .bind(&stored.hash)
        .bind(self.settings.refresh_ttl.as_secs_f64())
        .bind(request_id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(inserted == 1)
    }

    fn throttle_keys(&self, account: &str, ctx_ip: Option<&String>) -> Vec<ThrottleKey> {
        let policy = &self.settings.throttle;
        let mut keys = vec![policy.account_key(account)];
        if let Some(ip) = ctx_ip {
            keys.push(policy.address_key(ip));
        }
        keys
    }

    /// Refuses a locked account or address; otherwise tells whether the account has failures
    /// on record (to clear after a success).
    async fn refuse_if_locked(
        &self,
        keys: &[ThrottleKey],
        account: Option<Uuid>,
    ) -> Result<bool, ServiceError> {
        let state = throttle::state(&self.pool, keys).await?;
        if let Some(secs) = state.locked_for {
            metrics::counter!("logins_total", "outcome" => "locked").increment(1);
            self.events.publish(Event::now(
                EventKind::AccountLocked,
                account,
                json!({ "retry_after_secs": secs }),
            ));
            return Err(ServiceError::Client(ErrorBody::locked(secs)));
        }
        Ok(state.first_has_failures)
    }

    pub(super) async fn login(
        &self,
        p: LoginParams,
        req: Request<'_>,
    ) -> Result<RpcReply, ServiceError> {
        validate::login(&p)?;
        let login = p.login.trim().to_lowercase();
        let address = req
            .ctx
            .client_ip
            .as_ref()
            .map(|ip| self.settings.throttle.address_key(ip));
        // One round trip: the account (user names cannot contain '@' and emails must, so at most
        // one matches) and the throttling state of its key and of the client address. Unknown
        // logins are throttled under their name, exactly like accounts.
        let row: LoginRow = sqlx::query_as(
            "WITH account AS (
                 SELECT a.id, a.roles, a.disabled, c.password_hash
                   FROM auth.accounts a JOIN auth.credentials c ON c.account_id = a.id
                  WHERE lower(a.email) = $1 OR lower(a.username) = $1
                  LIMIT 1
             ), key AS (
                 SELECT coalesce((SELECT $3 || id::text FROM account), $3 || 'login:' || $1) AS name
             )
             SELECT account.id, account.roles, account.disabled, account.password_hash,
                    key.name AS account_key,
                    (SELECT max(extract(epoch FROM t.locked_until - now()))::float8
                       FROM auth.login_throttle t
                      WHERE t.key IN (key.name, $2) AND t.locked_until > now()) AS locked_secs,
                    EXISTS (SELECT 1 FROM auth.login_throttle t WHERE t.key = key.name) AS had_failures
               FROM key LEFT JOIN account ON true",
        )
        .bind(&login)
        .bind(address.as_ref().map_or("", |a| a.as_str()))
        .bind(throttle::ACCOUNT_PREFIX)
        .fetch_one(&self.pool)
        .await?;
        let account_key = self
            .settings
            .throttle
            .key_for_account(row.account_key.clone());
        let mut keys = vec![account_key];
        keys.extend(address);
        if let Some(secs) = row.locked_secs {
            let secs = secs.ceil().max(1.0) as u64;
            metrics::counter!("logins_total", "outcome" => "locked").increment(1);
            self.events.publish(Event::now(
                EventKind::AccountLocked,
                row.id,
                json!({ "retry_after_secs": secs }),
            ));
            return Err(ServiceError::Client(ErrorBody::locked(secs)));
        }

        // Unknown accounts are verified against a dummy hash: same cost, same answer.
        let verification = self
            .hasher
            .verify(p.password.0, row.password_hash.clone())
            .await?;
        let (id, rehash) = match (row.id, verification) {
            (Some(id), Verification::Match) => (id, None),
            (Some(id), Verification::MatchRehashed(h)) => (id, Some(h)),
            _ => {
                throttle::record_failure(&self.pool, &self.settings.throttle, &keys).await?;
                metrics::counter!("logins_total", "outcome" => "invalid_credentials").increment(1);
                return Err(invalid_credentials());
            }
        };
        if row.disabled.unwrap_or(false) {
            metrics::counter!("logins_total", "outcome" => "disabled").increment(1);
            return Err(fail(ErrorCode::Forbidden, "account is disabled"));
        }
        if row.had_failures {
            throttle::clear(&self.pool, &keys[0]).await?;
        }
        let roles = row.roles.unwrap_or_default();
        let session = Uuid::new_v4();
        let event = Event::now(
            EventKind::AccountLoggedIn,
            Some(id),
            json!({ "session_id": session }),
        );
        metrics::counter!("logins_total", "outcome" => "ok").increment(1);
        if let Some(hash) = rehash {
            let mut tx = self.pool.begin().await?;
            sqlx::query("UPDATE auth.credentials SET password_hash = $2, updated_at = now() WHERE account_id = $1")
                .bind(id)
                .bind(hash)
                .execute(&mut *tx)
                .await?;
            metrics::counter!("password_rehashes_total").increment(1);
            let (pair, _) = self.issue_tokens(&mut tx, id, &roles, session).await?;
            return self
                .finish(
                    tx,
                    req,
                    "auth.login",
                    RpcReply::ok(&pair),
                    false,
                    vec![event],
                )
                .await;
        }
        let (pair, stored) = self.new_pair(id, &roles, session)?;
        if !self.store_login(id, session, &stored, req.id).await? {
            return self.replay(req.id).await;
        }
        self.events.publish(event);
        Ok(RpcReply::ok(&pair))
    }

    pub(super) async fn refresh(
        &self,
        p: RefreshTokenParams,
        req: Request<'_>,
    ) -> Result<RpcReply, ServiceError> {
        validate::refresh_token(&p)?;
        let hash = tokens::hash_refresh_token(p.refresh_token.expose());
        let mut tx = self.pool.begin().await?;
        // The row lock serialises concurrent refreshes of one token.
        let row: Option<RefreshRow> = sqlx::query_as(
            "SELECT id, account_id, family_id,
                    revoked_at IS NOT NULL AS revoked,
                    expires_at < now() AS expired,
                    used_at IS NOT NULL AS used,
                    coalesce(now() - used_at <= make_interval(secs => $2), false) AS in_grace
               FROM auth.refresh_tokens WHERE token_hash = $1 FOR UPDATE",
        )
        .bind(&hash)
        .bind(self.settings.reuse_grace.as_secs_f64())
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
        if token.used && !token.in_grace {
            // RFC 9700 4.14: a replaced token came back; someone may hold a stolen copy.
            let revoked = sqlx::query(
                "UPDATE auth.refresh_tokens SET revoked_at = now(), revoked_reason = 'reuse_detected'
                  WHERE family_id = $1 AND revoked_at IS NULL",
            )
            .bind(token.family_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            metrics::counter!("refresh_reuse_detected_total").increment(1);
            tracing::warn!(account = %token.account_id, session = %token.family_id, "refresh token reuse detected; session revoked");
            let event = Event::now(
                EventKind::SessionRevoked,
                Some(token.account_id),
                json!({ "reason": "refresh_token_reuse", "session_id": token.family_id, "tokens": revoked }),
            );
            let reply = RpcReply::Error(ErrorBody::new(
                ErrorCode::InvalidToken,
                "refresh token reuse detected; the session has been revoked",
            ));
            return self
                .finish(tx, req, "auth.refresh", reply, true, vec![event])
                .await;
        }
        let account: Option<(Vec<String>, bool)> =
            sqlx::query_as("SELECT roles, disabled FROM auth.accounts WHERE id = $1")
                .bind(token.account_id)
                .fetch_optional(&mut *tx)
                .await?;
        let roles = match account {
            Some((_, true)) => return Err(fail(ErrorCode::Forbidden, "account is disabled")),
            Some((roles, false)) => roles,
            None => return Err(fail(ErrorCode::InvalidToken, "unknown refresh token")),
        };
        let (pair, new_id) = self
            .issue_tokens(&mut tx, token.account_id, &roles, token.family_id)
            .await?;
        if !token.used {
            sqlx::query(
                "UPDATE auth.refresh_tokens SET used_at = now(), replaced_by = $2 WHERE id = $1",
            )
            .bind(token.id)
            .bind(new_id)
            .execute(&mut *tx)
            .await?;
        } else {
            metrics::counter!("refresh_grace_reuse_total").increment(1);
        }
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
        let account = Self::caller(req.ctx)?;
        let mut tx = self.pool.begin().await?;
        // Like RFC 7009: an unknown token, or another account's, is not an error.
        let revoked = sqlx::query(
            "UPDATE auth.refresh_tokens SET revoked_at = now(), revoked_reason = 'logout'
              WHERE revoked_at IS NULL AND family_id = (
                    SELECT family_id FROM auth.refresh_tokens WHERE token_hash = $1 AND account_id = $2)",
        )
        .bind(tokens::hash_refresh_token(p.refresh_token.expose()))
        .bind(account)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let events = if revoked > 0 {
            vec![Event::now(
                EventKind::AccountLoggedOut,
                Some(account),
                json!({}),
            )]
        } else {
            Vec::new()
        };
        self.finish(tx, req, "auth.logout", RpcReply::ok(&()), true, events)
            .await
    }

    pub(super) async fn logout_all(&self, req: Request<'_>) -> Result<RpcReply, ServiceError> {
        let account = Self::caller(req.ctx)?;
        let mut tx = self.pool.begin().await?;
        let revoked = revoke_sessions(&mut tx, account, None, "logout_all").await?;
        let event = Event::now(
            EventKind::SessionRevoked,
            Some(account),
            json!({ "reason": "logout_all", "tokens": revoked }),
        );
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
        let caller = self.active_caller(req.ctx).await?;
        let keys = self.throttle_keys(&caller.id.to_string(), req.ctx.client_ip.as_ref());
        self.refuse_if_locked(&keys, Some(caller.id)).await?;
        let stored: Option<String> =
            sqlx::query_scalar("SELECT password_hash FROM auth.credentials WHERE account_id = $1")
                .bind(caller.id)
                .fetch_optional(&self.pool)
                .await?;
        if self.hasher.verify(p.current_password.0, stored).await? == Verification::Mismatch {
            throttle::record_failure(&self.pool, &self.settings.throttle, &keys).await?;
            return Err(fail(
                ErrorCode::InvalidCredentials,
                "current password is wrong",
            ));
        }
        let new_hash = self.hasher.hash(p.new_password.0).await?;
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE auth.credentials SET password_hash = $2, updated_at = now() WHERE account_id = $1")
            .bind(caller.id)
            .bind(new_hash)
            .execute(&mut *tx)
            .await?;
        let revoked =
            revoke_sessions(&mut tx, caller.id, req.ctx.session_id, "password_changed").await?;
        let events = vec![
            Event::now(
                EventKind::AccountUpdated,
                Some(caller.id),
                json!({ "fields": ["password"] }),
            ),
            Event::now(
                EventKind::SessionRevoked,
                Some(caller.id),
                json!({ "reason": "password_changed", "tokens": revoked }),
            ),
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

/// Revokes every live refresh token of `account`, except those of `keep` (a session id).
pub(crate) async fn revoke_sessions(
    conn: &mut PgConnection,
    account: Uuid,
    keep: Option<Uuid>,
    reason: &str,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE auth.refresh_tokens SET revoked_at = now(), revoked_reason = $3
          WHERE account_id = $1 AND revoked_at IS NULL AND family_id IS DISTINCT FROM $2",
    )
    .bind(account)
    .bind(keep)
    .bind(reason)
    .execute(conn)
    .await?
    .rows_affected())
}
