//! The authentication service: one method per RPC call.
//!
//! Every state change runs in one PostgreSQL transaction that also records the request id (the
//! AMQP `message_id`, unique per call) in `auth.processed_requests` and writes its domain events
//! to the outbox (published by [`crate::outbox`]). A redelivered request is
//! looked up first; if a concurrent first delivery is still running, the final insert conflicts,
//! the transaction rolls back, and the reply stored the first time is returned instead: a
//! request is never applied twice. Replies that carry fresh credentials (login, refresh) are not
//! stored; their replay answers `common.conflict`.

mod accounts;
mod sessions;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use authstack_bus::{IncomingCall, RpcHandler};
use authstack_protocol::rpc::{Call, CallContext, RpcReply, RpcRequest};
use authstack_protocol::{ErrorBody, ErrorCode, Event, EventKind, Revocation, TokenPair};
use chrono::Utc;
use futures::future::BoxFuture;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::bearer::BearerVerifier;
use crate::keys::KeyStore;
use crate::outbox::{self, RelaySignal};
use crate::passwords::{HashError, PasswordHasherPool};
use crate::policy::Policy;
pub(crate) use crate::repo::accounts::AccountRow;
use crate::repo::accounts::AccountWithSession;
use crate::repo::{self, maintenance, processed};
use crate::throttle::{self, ThrottlePolicy};
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
    /// Absolute lifetime of a session, from its login.
    pub session_max_lifetime: Duration,
    /// Login throttling.
    pub throttle: ThrottlePolicy,
    /// Clock skew allowed when verifying the caller's access token (`exp`, `nbf`).
    pub clock_skew_secs: u64,
    /// Verified access tokens kept in memory (0 disables the cache).
    pub token_cache_capacity: usize,
    /// How long a processed request id is kept: far beyond any RPC deadline, so a redelivery
    /// is always recognised.
    pub processed_request_retention: Duration,
    /// How long ended bookkeeping is kept before housekeeping deletes it: expired refresh
    /// tokens, revoked or expired sessions, idle throttling counters.
    pub ended_retention: Duration,
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
            ServiceError::Hash(HashError::Busy) => ErrorBody::at_capacity(1),
            ServiceError::Db(e) if database_unavailable(&e) => {
                tracing::warn!(error = %e, "database unavailable");
                ErrorBody {
                    retry_after_secs: Some(1),
                    ..ErrorBody::new(
                        ErrorCode::RpcUnavailable,
                        "the database is unavailable; try again shortly",
                    )
                }
            }
            other => {
                tracing::error!(error = %other, "internal error");
                ErrorBody::new(ErrorCode::Internal, "internal error")
            }
        }
    }
}

/// Whether a database error means PostgreSQL is (for now) out of reach rather than a bug: no
/// connection within the pool's timeout, a broken connection, or the server shutting down or
/// starting (SQLSTATE class 08, 57P01–57P03). Those are answered `rpc.unavailable` (503), which
/// clients retry, never `common.internal_error`.
fn database_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03")),
        _ => false,
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

/// An authenticated caller: a verified access token whose session is live and whose account
/// exists and is enabled.
pub(crate) struct Caller {
    /// The account, as stored now.
    pub account: AccountRow,
    /// The session the token belongs to (`sid`).
    pub session_id: Uuid,
}

/// The service: answers every [`Call`].
pub struct AuthService {
    pub(crate) bearer: BearerVerifier,
    pub(crate) pool: PgPool,
    pub(crate) hasher: PasswordHasherPool,
    pub(crate) keys: KeyStore,
    pub(crate) settings: ServiceSettings,
    pub(crate) policy: Policy,
    pub(crate) relay: RelaySignal,
    /// Places for attempts waiting while their pair or account is busy
    /// ([`throttle::MAX_WAITING_CHECKS`]).
    pub(crate) busy_waiters: tokio::sync::Semaphore,
}

impl AuthService {
    /// Assembles the service.
    pub fn new(
        pool: PgPool,
        hasher: PasswordHasherPool,
        keys: KeyStore,
        settings: ServiceSettings,
        policy: Policy,
        relay: RelaySignal,
    ) -> Arc<Self> {
        let bearer = BearerVerifier::new(
            authstack_keyring::jwt::Expectations {
                issuer: settings.tokens.issuer.clone(),
                audience: settings.tokens.audience.clone(),
                leeway_secs: settings.clock_skew_secs,
            },
            settings.token_cache_capacity,
        );
        Arc::new(AuthService {
            bearer,
            pool,
            hasher,
            keys,
            settings,
            policy,
            relay,
            busy_waiters: tokio::sync::Semaphore::new(throttle::MAX_WAITING_CHECKS),
        })
    }

    /// The callers of the bearer calls among `requests`, from two such calls on.
    async fn prepare_callers(
        &self,
        requests: &[&RpcRequest],
    ) -> HashMap<(Uuid, Uuid), Option<AccountWithSession>> {
        let keys = self.keys.current();
        let mut pairs: Vec<(Uuid, Uuid)> = requests
            .iter()
            .filter_map(|r| r.context.access_token.as_ref())
            .filter_map(|t| self.bearer.verify(&keys, t.expose()).ok())
            .map(|identity| (identity.account_id, identity.session_id))
            .collect();
        if pairs.len() < 2 {
            return HashMap::new();
        }
        pairs.sort_unstable();
        pairs.dedup();
        let Ok(found) = repo::accounts::find_with_sessions(
            &self.pool,
            &pairs,
            self.settings.session_max_lifetime,
        )
        .await
        else {
            return HashMap::new();
        };
        let mut callers: HashMap<_, _> = pairs.into_iter().map(|p| (p, None)).collect();
        for (pair, row) in found {
            callers.insert(pair, Some(row));
        }
        callers
    }

    /// Dispatches one call. The method's future is boxed in this plain function, sized for
    /// that method: inline in an async caller, every call (a `users.me` too) would carry the
    /// state of the largest method (a refresh, 15 KiB), copied each time the call's future
    /// moves (docs/performance.md).
    pub(crate) fn dispatch<'a>(
        &'a self,
        call: Call,
        ctx: &'a CallContext,
        request_id: &'a str,
        prepared: Option<&'a Prepared>,
    ) -> BoxFuture<'a, Result<RpcReply, ServiceError>> {
        let req = Request {
            ctx,
            id: request_id,
            prepared,
        };
        match call {
            Call::Register(p) => Box::pin(self.register(p, req)),
            Call::Login(p) => Box::pin(self.login(p, req)),
            Call::Refresh(p) => Box::pin(self.refresh(p, req)),
            Call::Logout(p) => Box::pin(self.logout(p, req)),
            Call::LogoutAll => Box::pin(self.logout_all(req)),
            Call::GetMe => Box::pin(self.get_me(req)),
            Call::UpdateMe(p) => Box::pin(self.update_me(p, req)),
            Call::DeleteMe(p) => Box::pin(self.delete_me(p, req)),
            Call::ChangePassword(p) => Box::pin(self.change_password(p, req)),
            Call::ListUsers(p) => Box::pin(self.list_users(p, req)),
            Call::GetUser(p) => Box::pin(self.get_user(p.id, req)),
            Call::UpdateUser(p) => Box::pin(self.update_user(p, req)),
            Call::DeleteUser(p) => Box::pin(self.delete_user(p.id, req)),
            Call::CheckAccess(p) => Box::pin(self.check_access(p, req)),
            Call::ListKeys => Box::pin(std::future::ready(Ok(RpcReply::ok(
                &self.keys.current().key_set,
            )))),
        }
    }

    /// Records the request id and writes `events` to the outbox in `tx`, commits and wakes the
    /// relay; if the request was already applied, rolls back and replays the first reply
    /// instead. `store_reply`: keep `reply` for replays (never for fresh credentials).
    pub(crate) async fn finish(
        &self,
        tx: Transaction<'static, Postgres>,
        req: Request<'_>,
        method: &str,
        reply: RpcReply,
        store_reply: bool,
        events: Vec<Event>,
    ) -> Result<RpcReply, ServiceError> {
        let stored = if store_reply && !req.id.is_empty() {
            serde_json::to_value(&reply).ok()
        } else {
            None
        };
        if self.commit_once(tx, req, method, stored, &events).await? {
            Ok(reply)
        } else {
            self.replay(req.id).await
        }
    }

    /// Records the request id (with `stored_reply`, the reply to replay) and writes `events` to
    /// the outbox in `tx`, commits and wakes the relay. False when the request id was already
    /// applied: `tx` is rolled back then and nothing is stored.
    pub(crate) async fn commit_once(
        &self,
        mut tx: Transaction<'static, Postgres>,
        req: Request<'_>,
        method: &str,
        stored_reply: Option<serde_json::Value>,
        events: &[Event],
    ) -> Result<bool, ServiceError> {
        if !req.id.is_empty() && !processed::claim(&mut *tx, req.id, method, stored_reply).await? {
            Self::abandon_as_replayed(tx).await?;
            return Ok(false);
        }
        outbox::enqueue(&mut tx, events).await?;
        tx.commit().await?;
        if !events.is_empty() {
            self.relay.wake();
        }
        Ok(true)
    }

    /// Rolls back `tx` of a request whose id was already applied (claimed by an earlier or
    /// concurrent delivery) and replays the first reply instead.
    pub(crate) async fn replay_instead(
        &self,
        tx: Transaction<'static, Postgres>,
        req: Request<'_>,
    ) -> Result<RpcReply, ServiceError> {
        Self::abandon_as_replayed(tx).await?;
        self.replay(req.id).await
    }

    async fn abandon_as_replayed(tx: Transaction<'static, Postgres>) -> Result<(), ServiceError> {
        tx.rollback().await?;
        metrics::counter!("authstack_rpc_replayed_requests_total").increment(1);
        Ok(())
    }

    /// Writes events that belong to no transaction (e.g. a refused login) to the outbox.
    pub(crate) async fn record_events(&self, events: &[Event]) -> Result<(), ServiceError> {
        let mut conn = self.pool.acquire().await?;
        outbox::enqueue(&mut conn, events).await?;
        self.relay.wake();
        Ok(())
    }

    pub(crate) async fn replay(&self, request_id: &str) -> Result<RpcReply, ServiceError> {
        Ok(self.recorded(request_id).await?.unwrap_or_else(|| {
            RpcReply::Error(ErrorBody::new(
                ErrorCode::Conflict,
                "request already being processed",
            ))
        }))
    }

    /// The reply of a request id that was already applied, if it was. Boxed, like
    /// [`Self::dispatch`]: its query's state stays out of every call's future.
    fn recorded<'a>(
        &'a self,
        request_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<RpcReply>, ServiceError>> {
        Box::pin(async move {
            let stored = processed::stored_reply(&self.pool, request_id).await?;
            Ok(match stored {
                None => None,
                Some(Some(value)) => {
                    Some(serde_json::from_str::<RpcReply>(&value).map_err(|e| {
                        ServiceError::Signing(format!("stored reply unreadable: {e}"))
                    })?)
                }
                Some(None) => Some(RpcReply::Error(ErrorBody::new(
                    ErrorCode::Conflict,
                    "this request was already processed; send a new request",
                ))),
            })
        })
    }

    /// Authenticates the caller from the access token in `ctx` (verified here, never trusted
    /// from the gateway), then checks in one query (two primary-key lookups) that its session
    /// is neither revoked nor past its absolute lifetime and that its account still exists and
    /// is enabled — so logout, logout-all, a password change, disabling and deletion stop the
    /// old access tokens at once, however long they would still verify.
    pub(crate) async fn authenticate(&self, req: Request<'_>) -> Result<Caller, ServiceError> {
        let token = req
            .ctx
            .access_token
            .as_ref()
            .ok_or_else(|| fail(ErrorCode::InvalidToken, "authentication required"))?;
        let identity = self.bearer.verify(&self.keys.current(), token.expose())?;
        let pair = (identity.account_id, identity.session_id);
        let row = match req.prepared.and_then(|p| p.callers.get(&pair)) {
            Some(loaded) => loaded.clone(),
            None => {
                repo::accounts::find_with_session(
                    &self.pool,
                    identity.account_id,
                    identity.session_id,
                    self.settings.session_max_lifetime,
                )
                .await?
            }
        };
        match row {
            None => Err(fail(
                ErrorCode::InvalidToken,
                "the account no longer exists",
            )),
            Some(r) if !r.session_live => Err(fail(
                ErrorCode::InvalidToken,
                "this session has been revoked",
            )),
            // Like a revoked session (disabling revokes them all): the token no longer counts.
            Some(r) if r.account.disabled => {
                Err(fail(ErrorCode::InvalidToken, "the account is disabled"))
            }
            Some(r) => Ok(Caller {
                account: r.account,
                session_id: identity.session_id,
            }),
        }
    }

    /// The authenticated caller's id (see [`AuthService::authenticate`]).
    pub(crate) async fn caller(&self, req: Request<'_>) -> Result<Uuid, ServiceError> {
        Ok(self.authenticate(req).await?.account.id)
    }

    /// One account by id.
    pub(crate) async fn account(&self, id: Uuid) -> Result<Option<AccountRow>, sqlx::Error> {
        repo::accounts::find(&self.pool, id).await
    }

    /// The caller's account (see [`AuthService::authenticate`]).
    pub(crate) async fn active_caller(&self, req: Request<'_>) -> Result<AccountRow, ServiceError> {
        Ok(self.authenticate(req).await?.account)
    }

    /// The `data` of an event revoking `sessions` (or, with none, a whole account): why, which
    /// sessions, and until when their access tokens would otherwise verify.
    pub(crate) fn revocation(&self, reason: &str, sessions: &[Uuid]) -> serde_json::Value {
        let revocation = Revocation {
            reason: reason.to_owned(),
            session_ids: sessions.to_vec(),
            tokens_valid_until: Utc::now().timestamp() + self.settings.tokens.ttl_secs as i64,
        };
        serde_json::to_value(revocation).unwrap_or_default()
    }

    /// The `session.revoked` event for `sessions` of `account`.
    pub(crate) fn sessions_revoked(&self, account: Uuid, reason: &str, sessions: &[Uuid]) -> Event {
        Event::now(
            EventKind::SessionRevoked,
            Some(account),
            self.revocation(reason, sessions),
        )
    }

    /// Deletes bookkeeping that can no longer matter: processed request ids older than
    /// [`ServiceSettings::processed_request_retention`], refresh tokens expired, sessions
    /// revoked or past their lifetime, and idle throttles for
    /// [`ServiceSettings::ended_retention`] (throttles never within the lockout window); and
    /// forgets sealed successors once no grace window can still need them.
    pub async fn purge_expired(&self) -> Result<u64, sqlx::Error> {
        use maintenance::whole_table;
        let pool = &self.pool;
        let ended = self.settings.ended_retention;
        let retention = self.settings.processed_request_retention;
        let lifetime = self.settings.session_max_lifetime;
        let grace = Duration::from_secs(authstack_protocol::limits::REFRESH_REUSE_GRACE_MAX_SECS);
        // A throttle counter idle for less than the lockout window may still hold failures that
        // count, and one holding places keeps them until its buckets forget them.
        let idle_throttle = ended
            .max(self.settings.throttle.window)
            .max(throttle::PENDING_TTL * 2);
        // A transaction per statement: none holds its rows longer than it needs them.
        let removed = whole_table(pool, async |db| {
            maintenance::delete_processed_requests(db, retention).await
        })
        .await?
            + whole_table(pool, async |db| {
                maintenance::delete_expired_refresh_tokens(db, ended).await
            })
            .await?
            + whole_table(pool, async |db| {
                maintenance::delete_idle_throttles(db, idle_throttle).await
            })
            .await?
            + whole_table(pool, async |db| {
                maintenance::delete_ended_sessions(db, ended, lifetime).await
            })
            .await?;
        whole_table(pool, async |db| {
            maintenance::forget_sealed_successors(db, grace).await
        })
        .await?;
        Ok(removed)
    }
}

/// The caller context and request id of one call, with what was prepared for its batch.
#[derive(Clone, Copy)]
pub(crate) struct Request<'a> {
    pub ctx: &'a CallContext,
    pub id: &'a str,
    pub prepared: Option<&'a Prepared>,
}

/// What a batch's calls need from the database, read before any of them runs, a query for
/// each kind instead of one per call. A call that finds nothing here for itself reads it itself.
#[derive(Default)]
pub struct Prepared {
    /// The callers of bearer calls by (account, session): the account and whether the session
    /// is live, or `None` for an account that does not exist.
    callers: HashMap<(Uuid, Uuid), Option<AccountWithSession>>,
    /// The batch's refresh calls rotated together (`None`: not prepared).
    refresh: Option<sessions::RefreshedTogether>,
}

impl Prepared {
    /// The new pair of the refresh call `request_id`, if it was rotated with its batch.
    pub(crate) fn rotated(&self, request_id: &str) -> Option<&TokenPair> {
        self.refresh.as_ref()?.rotated.get(request_id)
    }

    /// How many refresh calls of the batch were rotated together, in one statement.
    pub fn rotated_together(&self) -> usize {
        self.refresh.as_ref().map_or(0, |r| r.rotated.len())
    }
}

impl RpcHandler for AuthService {
    type Batch = Prepared;

    /// A refresh call rotated together with its batch is answered even past its deadline.
    fn applied_in_prepare(&self, prepared: &Prepared, call: &IncomingCall) -> bool {
        prepared.rotated(&call.request_id).is_some()
    }

    /// Does what the batch's calls can share, a statement for each kind instead of one per
    /// call, from two calls of a kind on (whether of one client or several): reads the bearer
    /// calls' callers (their access tokens verified here, a cache hit for most: account and
    /// session state), and rotates the refresh calls that can be in one statement
    /// (`refresh_together`). A failed statement leaves each call to do its own. Boxed, like
    /// [`AuthService::dispatch`]: the queries' state stays out of the batch's future, which the
    /// RPC server spawns for every message.
    fn prepare(&self, calls: &[&IncomingCall]) -> impl Future<Output = Option<Prepared>> + Send {
        Box::pin(async move {
            let requests: Vec<&RpcRequest> = calls.iter().map(|c| &c.request).collect();
            let (callers, refresh) = tokio::join!(
                self.prepare_callers(&requests),
                self.refresh_together(calls)
            );
            if callers.is_empty() && refresh.is_none() {
                return None;
            }
            Some(Prepared { callers, refresh })
        })
    }

    /// Decodes and dispatches a call. A redelivered mutation (its first delivery may have been
    /// applied by a replica that died before acknowledging it) is first looked up by request id.
    /// A failed mutation is looked up too: another delivery of the same message may have
    /// committed meanwhile (either one can win the race), and its reply is the true answer.
    async fn handle(&self, call: IncomingCall, prepared: Option<&Prepared>) -> RpcReply {
        let decoded = match call.request.decode() {
            Ok(c) => c,
            Err(e) => return RpcReply::Error(e),
        };
        let guarded = decoded.is_mutation() && !call.request_id.is_empty();
        if guarded
            && call.redelivered
            && let Ok(Some(reply)) = self.recorded(&call.request_id).await
        {
            metrics::counter!("authstack_rpc_replayed_requests_total").increment(1);
            return reply;
        }
        match self
            .dispatch(decoded, &call.request.context, &call.request_id, prepared)
            .await
        {
            Ok(reply) => reply,
            Err(e) => {
                if guarded && let Ok(Some(reply)) = self.recorded(&call.request_id).await {
                    metrics::counter!("authstack_rpc_replayed_requests_total").increment(1);
                    return reply;
                }
                RpcReply::Error(e.into_body())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_database_is_unavailable_not_an_internal_error() {
        for e in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
        ] {
            let body = ServiceError::Db(e).into_body();
            assert_eq!(body.code, ErrorCode::RpcUnavailable);
            assert_eq!(body.retry_after_secs, Some(1));
        }
        let bug = ServiceError::Db(sqlx::Error::RowNotFound).into_body();
        assert_eq!(bug.code, ErrorCode::Internal);
    }
}
