//! The authentication service: one method per RPC call.
//!
//! Every state change runs in one PostgreSQL transaction that also records the request id (the
//! AMQP `message_id`, unique per call) in `auth.processed_requests`. A redelivered request is
//! looked up first; if a concurrent first delivery is still running, the final insert conflicts,
//! the transaction rolls back, and the reply stored the first time is returned instead: a
//! request is never applied twice. Replies that carry fresh credentials (login, refresh) are not
//! stored; their replay answers `common.conflict`.

mod accounts;
mod sessions;

use std::sync::Arc;
use std::time::Duration;

use authstack_bus::{EventPublisher, IncomingCall, RpcHandler};
use authstack_protocol::rpc::{Call, CallContext, RpcReply};
use authstack_protocol::{ErrorBody, ErrorCode, Event};
use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::keys::KeyStore;
use crate::passwords::{HashError, PasswordHasherPool};
use crate::policy::Policy;
use crate::throttle::ThrottlePolicy;
use crate::tokens::AccessTokenSettings;

/// Token and throttling settings of the service.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// Access tokens.
    pub tokens: AccessTokenSettings,
    /// Refresh-token lifetime.
    pub refresh_ttl: Duration,
    /// Grace window for presenting a just-replaced refresh token again.
    pub reuse_grace: Duration,
    /// Login throttling.
    pub throttle: ThrottlePolicy,
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A client mistake or a refusal, answered as is.
    #[error("{0}")]
    Client(ErrorBody),
    /// PostgreSQL failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// Password hashing failed.
    #[error("password hashing: {0}")]
    Hash(#[from] HashError),
    /// Token signing failed.
    #[error("token signing: {0}")]
    Signing(String),
}

impl ServiceError {
    /// The error as the caller sees it: internal details are logged, never sent.
    pub fn into_body(self) -> ErrorBody {
        match self {
            ServiceError::Client(body) => body,
            other => {
                tracing::error!(error = %other, "internal error");
                ErrorBody::new(ErrorCode::Internal, "internal error")
            }
        }
    }
}

impl From<ErrorBody> for ServiceError {
    fn from(body: ErrorBody) -> Self {
        ServiceError::Client(body)
    }
}

pub(crate) fn fail(code: ErrorCode, message: &str) -> ServiceError {
    ServiceError::Client(ErrorBody::new(code, message))
}

/// A row of `auth.accounts`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct AccountRow {
    pub id: Uuid,
    pub email: String,
    pub username: String,
    pub display_name: Option<String>,
    pub roles: Vec<String>,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<AccountRow> for authstack_protocol::Account {
    fn from(r: AccountRow) -> Self {
        authstack_protocol::Account {
            id: r.id,
            email: r.email,
            username: r.username,
            display_name: r.display_name,
            roles: r.roles,
            disabled: r.disabled,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// The columns of [`AccountRow`], for `SELECT`/`RETURNING`.
macro_rules! account_columns {
    () => {
        "id, email, username, display_name, roles, disabled, created_at, updated_at"
    };
}
pub(crate) use account_columns;

/// Maps a unique violation on the account indexes to `auth.user_exists`.
pub(crate) fn conflict_as_user_exists(e: sqlx::Error) -> ServiceError {
    if let sqlx::Error::Database(db) = &e
        && db.code().as_deref() == Some("23505")
    {
        let which = match db.constraint() {
            Some("accounts_email_key") => "email",
            Some("accounts_username_key") => "username",
            _ => "email or username",
        };
        return fail(
            ErrorCode::UserExists,
            &format!("an account with this {which} already exists"),
        );
    }
    ServiceError::Db(e)
}

/// The service: answers every [`Call`].
pub struct AuthService {
    pub(crate) pool: PgPool,
    pub(crate) hasher: PasswordHasherPool,
    pub(crate) keys: KeyStore,
    pub(crate) settings: ServiceSettings,
    pub(crate) policy: Policy,
    pub(crate) events: EventPublisher,
}

impl AuthService {
    /// Assembles the service.
    pub fn new(
        pool: PgPool,
        hasher: PasswordHasherPool,
        keys: KeyStore,
        settings: ServiceSettings,
        policy: Policy,
        events: EventPublisher,
    ) -> Arc<Self> {
        Arc::new(AuthService {
            pool,
            hasher,
            keys,
            settings,
            policy,
            events,
        })
    }

    /// Dispatches one call.
    pub async fn dispatch(
        &self,
        call: Call,
        ctx: &CallContext,
        request_id: &str,
    ) -> Result<RpcReply, ServiceError> {
        let req = Request {
            ctx,
            id: request_id,
        };
        match call {
            Call::Register(p) => self.register(p, req).await,
            Call::Login(p) => self.login(p, req).await,
            Call::Refresh(p) => self.refresh(p, req).await,
            Call::Logout(p) => self.logout(p, req).await,
            Call::LogoutAll => self.logout_all(req).await,
            Call::GetMe => self.get_me(req).await,
            Call::UpdateMe(p) => self.update_me(p, req).await,
            Call::DeleteMe => self.delete_me(req).await,
            Call::ChangePassword(p) => self.change_password(p, req).await,
            Call::ListUsers(p) => self.list_users(p, req).await,
            Call::GetUser(p) => self.get_user(p.id, req).await,
            Call::UpdateUser(p) => self.update_user(p, req).await,
            Call::DeleteUser(p) => self.delete_user(p.id, req).await,
            Call::CheckAccess(p) => self.check_access(p, req).await,
            Call::ListKeys => Ok(RpcReply::ok(&self.keys.current().key_set)),
        }
    }

    /// Records the request id in `tx`, commits and publishes `events`; if the request was
    /// already applied, rolls back and replays the first reply instead.
    pub(crate) async fn finish(
        &self,
        mut tx: Transaction<'static, Postgres>,
        req: Request<'_>,
        method: &str,
        reply: RpcReply,
        store_reply: bool,
        events: Vec<Event>,
    ) -> Result<RpcReply, ServiceError> {
        if !req.id.is_empty() {
            let stored = if store_reply {
                serde_json::to_value(&reply).ok()
            } else {
                None
            };
            let inserted = sqlx::query(
                "INSERT INTO auth.processed_requests (request_id, method, reply)
                 VALUES ($1, $2, $3) ON CONFLICT (request_id) DO NOTHING",
            )
            .bind(req.id)
            .bind(method)
            .bind(stored.map(sqlx::types::Json))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                tx.rollback().await?;
                metrics::counter!("rpc_replayed_requests_total").increment(1);
                return self.replay(req.id).await;
            }
        }
        tx.commit().await?;
        for event in events {
            self.events.publish(event);
        }
        Ok(reply)
    }

    pub(crate) async fn replay(&self, request_id: &str) -> Result<RpcReply, ServiceError> {
        Ok(self.recorded(request_id).await?.unwrap_or_else(|| {
            RpcReply::Error(ErrorBody::new(
                ErrorCode::Conflict,
                "request already being processed",
            ))
        }))
    }

    /// The reply of a request id that was already applied, if it was.
    async fn recorded(&self, request_id: &str) -> Result<Option<RpcReply>, ServiceError> {
        let stored: Option<Option<sqlx::types::Json<serde_json::Value>>> =
            sqlx::query_scalar("SELECT reply FROM auth.processed_requests WHERE request_id = $1")
                .bind(request_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(match stored {
            None => None,
            Some(Some(value)) => Some(
                serde_json::from_str::<RpcReply>(&value.0.to_string())
                    .map_err(|e| ServiceError::Signing(format!("stored reply unreadable: {e}")))?,
            ),
            Some(None) => Some(RpcReply::Error(ErrorBody::new(
                ErrorCode::Conflict,
                "this request was already processed; send a new request",
            ))),
        })
    }

    /// The authenticated caller's id.
    pub(crate) fn caller(ctx: &CallContext) -> Result<Uuid, ServiceError> {
        ctx.account_id
            .ok_or_else(|| fail(ErrorCode::InvalidToken, "authentication required"))
    }

    /// One account by id.
    pub(crate) async fn account(&self, id: Uuid) -> Result<Option<AccountRow>, sqlx::Error> {
        sqlx::query_as(concat!(
            "SELECT ",
            account_columns!(),
            " FROM auth.accounts WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
    }

    /// The caller's account, which must exist and be enabled.
    pub(crate) async fn active_caller(
        &self,
        ctx: &CallContext,
    ) -> Result<AccountRow, ServiceError> {
        let id = Self::caller(ctx)?;
        match self.account(id).await? {
            None => Err(fail(ErrorCode::NotFound, "account not found")),
            Some(r) if r.disabled => Err(fail(ErrorCode::Forbidden, "account is disabled")),
            Some(r) => Ok(r),
        }
    }

    /// Deletes bookkeeping that can no longer matter: processed request ids older than an
    /// hour (far beyond any RPC deadline), refresh tokens expired for a day, stale throttles.
    pub async fn purge_expired(&self) -> Result<u64, sqlx::Error> {
        let mut removed = 0;
        for sql in [
            "DELETE FROM auth.processed_requests WHERE created_at < now() - interval '1 hour'",
            "DELETE FROM auth.refresh_tokens WHERE expires_at < now() - interval '1 day'",
            "DELETE FROM auth.login_throttle
              WHERE (locked_until IS NULL OR locked_until < now())
                AND window_started_at < now() - interval '1 day'",
        ] {
            removed += sqlx::query(sql).execute(&self.pool).await?.rows_affected();
        }
        Ok(removed)
    }
}

/// The caller context and request id of one call.
#[derive(Clone, Copy)]
pub(crate) struct Request<'a> {
    pub ctx: &'a CallContext,
    pub id: &'a str,
}

impl RpcHandler for AuthService {
    /// Decodes and dispatches a call. A redelivered mutation (its first delivery may have been
    /// applied by a replica that died before acknowledging it) is first looked up by request id.
    /// A failed mutation is looked up too: another delivery of the same message may have
    /// committed meanwhile (either one can win the race), and its reply is the true answer.
    async fn handle(&self, call: IncomingCall) -> RpcReply {
        let decoded = match call.request.decode() {
            Ok(c) => c,
            Err(e) => return RpcReply::Error(e),
        };
        let guarded = decoded.is_mutation() && !call.request_id.is_empty();
        if guarded
            && call.redelivered
            && let Ok(Some(reply)) = self.recorded(&call.request_id).await
        {
            metrics::counter!("rpc_replayed_requests_total").increment(1);
            return reply;
        }
        match self
            .dispatch(decoded, &call.request.context, &call.request_id)
            .await
        {
            Ok(reply) => reply,
            Err(e) => {
                if guarded && let Ok(Some(reply)) = self.recorded(&call.request_id).await {
                    metrics::counter!("rpc_replayed_requests_total").increment(1);
                    return reply;
                }
                RpcReply::Error(e.into_body())
            }
        }
    }
}
