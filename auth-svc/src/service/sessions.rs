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
    id: Uuid,
    roles: Vec<String>,
    disabled: bool,
    password_hash: String,
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
    /// Creates a refresh token in `family` and signs an access token for it.
    async fn issue_tokens(
        &self,
        conn: &mut PgConnection,
        account_id: Uuid,
        roles: &[String],
        family: Uuid,
    ) -> Result<(TokenPair, Uuid), ServiceError> {
        let refresh = tokens::new_refresh_token();
        let id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO auth.refresh_tokens (id, account_id, family_id, token_hash, expires_at)
             VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))",
        )
        .bind(id)
        .bind(account_id)
        .bind(family)
        .bind(tokens::hash_refresh_token(&refresh))
        .bind(self.settings.refresh_ttl.as_secs_f64())
        .execute(&mut *conn)
        .await?;
        let claims = tokens::access_claims(
            &self.settings.tokens,
            account_id,
            roles,
            family,
            Utc::now().timestamp(),
        );
        let access =
            tokens::sign(&self.keys.current().signer, &claims).map_err(ServiceError::Signing)?;
        Ok((
            TokenPair {
                access_token: access,
                refresh_token: refresh,
                token_type: "Bearer".into(),
                expires_in: self.settings.tokens.ttl_secs,
            },
            id,
        ))
    }

    fn throttle_keys(&self, account: &str, ctx_ip: Option<&String>) -> Vec<ThrottleKey> {
        let policy = &self.settings.throttle;
        let mut keys = vec![policy.account_key(account)];
        if let Some(ip) = ctx_ip {
            keys.push(policy.address_key(ip));
        }
        keys
    }

    async fn refuse_if_locked(
        &self,
        keys: &[ThrottleKey],
        account: Option<Uuid>,
    ) -> Result<(), ServiceError> {
        if let Some(secs) = throttle::locked_for(&self.pool, keys).await? {
            metrics::counter!("logins_total", "outcome" => "locked").increment(1);
            self.events.publish(Event::now(
                EventKind::AccountLocked,
                account,
                json!({ "retry_after_secs": secs }),
            ));
            return Err(ServiceError::Client(ErrorBody::locked(secs)));
        }
        Ok(())
    }

    pub(super) async fn login(
        &self,
        p: LoginParams,
        req: Request<'_>,
    ) -> Result<RpcReply, ServiceError> {
        validate::login(&p)?;
        let login = p.login.trim().to_lowercase();
        // User names cannot contain '@' and emails must, so at most one account matches.
        let row: Option<LoginRow> = sqlx::query_as(
            "SELECT a.id, a.roles, a.disabled, c.password_hash
               FROM auth.accounts a JOIN auth.credentials c ON c.account_id = a.id
              WHERE lower(a.email) = $1 OR lower(a.username) = $1
              LIMIT 1",
        )
        .bind(&login)
        .fetch_optional(&self.pool)
        .await?;
        let subject = row
            .as_ref()
            .map_or_else(|| format!("login:{login}"), |r| r.id.to_string());
        let keys = self.throttle_keys(&subject, req.ctx.client_ip.as_ref());
        self.refuse_if_locked(&keys, row.as_ref().map(|r| r.id))
            .await?;

        // Unknown accounts are verified against a dummy hash: same cost, same answer.
        let stored = row.as_ref().map(|r| r.password_hash.clone());
        let verification = self.hasher.verify(p.password.0, stored).await?;
        let (row, rehash) = match (row, verification) {
            (Some(row), Verification::Match) => (row, None),
            (Some(row), Verification::MatchRehashed(h)) => (row, Some(h)),
            _ => {
                throttle::record_failure(&self.pool, &self.settings.throttle, &keys).await?;
                metrics::counter!("logins_total", "outcome" => "invalid_credentials").increment(1);
                return Err(invalid_credentials());
            }
        };
        if row.disabled {
            metrics::counter!("logins_total", "outcome" => "disabled").increment(1);
            return Err(fail(ErrorCode::Forbidden, "account is disabled"));
        }
        throttle::clear(&self.pool, &keys[0]).await?;
        let mut tx = self.pool.begin().await?;
        if let Some(hash) = rehash {
            sqlx::query("UPDATE auth.credentials SET password_hash = $2, updated_at = now() WHERE account_id = $1")
                .bind(row.id)
                .bind(hash)
                .execute(&mut *tx)
                .await?;
            metrics::counter!("password_rehashes_total").increment(1);
        }
        let session = Uuid::new_v4();
        let (pair, _) = self
            .issue_tokens(&mut tx, row.id, &row.roles, session)
            .await?;
        metrics::counter!("logins_total", "outcome" => "ok").increment(1);
        let event = Event::now(
            EventKind::AccountLoggedIn,
            Some(row.id),
            json!({ "session_id": session }),
        );
        self.finish(
            tx,
            req,
            "auth.login",
            RpcReply::ok(&pair),
            false,
            vec![event],
        )
        .await
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
