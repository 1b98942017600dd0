//! Registration, the caller's own account, account administration and access checks.

use authstack_protocol::model::{AccountPage, ROLE_ADMIN, ROLE_USER};
use authstack_protocol::rpc::{
    AccessCheckParams, AccessDecision, AdminUpdateParams, DeleteMeParams, ListUsersParams,
    RegisterParams, RpcReply, UpdateMeParams,
};
use authstack_protocol::{Account, ErrorBody, ErrorCode, Event, EventKind, FieldError, validate};
use chrono::{SubsecRound, Utc};
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use super::sessions::revoke_sessions;
use super::{
    AccountRow, AuthService, Request, ServiceError, account_columns, conflict_as_user_exists, fail,
};
use crate::throttle::{self, Reservation};

fn not_found() -> ServiceError {
    fail(ErrorCode::NotFound, "account not found")
}

/// Key of the advisory lock that serialises changes to who is an administrator.
const ADMINS_LOCK: i64 = 0x6175_7468_6164_6d6e;

/// Takes the administrators lock in `conn`'s transaction and counts the active administrators.
async fn lock_admins(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(ADMINS_LOCK)
        .execute(&mut *conn)
        .await?;
    active_admins(conn).await
}

async fn active_admins(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM auth.accounts WHERE $1 = ANY(roles) AND NOT disabled")
        .bind(ROLE_ADMIN)
        .fetch_one(conn)
        .await
}

/// After a change made under [`lock_admins`]: refuses it if it removed the last active
/// administrator.
async fn keep_an_admin(conn: &mut PgConnection, before: i64) -> Result<(), ServiceError> {
    if before > 0 && active_admins(conn).await? == 0 {
        return Err(fail(
            ErrorCode::Forbidden,
            "the last administrator cannot be removed, demoted or disabled",
        ));
    }
    Ok(())
}

/// `Some("")` clears a display name; `None` leaves it.
fn display_name_change(v: &Option<String>) -> (bool, Option<String>) {
    match v {
        None => (false, None),
        Some(s) if s.trim().is_empty() => (true, None),
        Some(s) => (true, Some(s.trim().to_owned())),
    }
}

impl AuthService {
    pub(super) async fn register(
        &self,
        p: RegisterParams,
        req: Request<'_>,
    ) -> Result<RpcReply, ServiceError> {
        validate::register(&p)?;
        let address = req.ctx.client_ip.as_deref();
        if let Some(key) = self.settings.throttle.register_rate_key(address)
            && let Reservation::Refused(body) =
                throttle::reserve(&self.pool, &self.settings.throttle, &[key]).await?
        {
            return Err(ServiceError::Client(body));
        }
        let email = p.email.trim().to_lowercase();
        let username = p.username.trim().to_owned();
        // Cheap checks before hashing. User names are public handles: a taken one is said at
        // once. A taken email is not revealed (see `answer_taken_email`), so it costs the same
        // hash as a new account.
        let (username_taken, email_owner): (bool, Option<Uuid>) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM auth.accounts WHERE lower(username) = lower($2)),
                    (SELECT id FROM auth.accounts WHERE lower(email) = $1)",
        )
        .bind(&email)
        .bind(&username)
        .fetch_one(&self.pool)
        .await?;
        if username_taken {
            return Err(fail(
                ErrorCode::UserExists,
                "an account with this username already exists",
            ));
        }
        let hash = self.hasher.hash(p.password.0).await?;
        if let Some(owner) = email_owner {
            return self
                .answer_taken_email(email, username, p.display_name, owner, req)
                .await;
        }
        let id = Uuid::new_v4();
        let mut tx = self.pool.begin().await?;
        let inserted: Result<AccountRow, _> = sqlx::query_as(concat!(
            "INSERT INTO auth.accounts (id, email, username, display_name) VALUES ($1, $2, $3, $4) RETURNING ",
            account_columns!()
        ))
        .bind(id)
        .bind(&email)
        .bind(&username)
        .bind(display_name_change(&p.display_name).1)
        .fetch_one(&mut *tx)
        .await;
        let row = match inserted {
            Ok(row) => row,
            Err(e) if is_email_conflict(&e) => {
                // A concurrent registration took the email first: answered like any taken one.
                tx.rollback().await?;
                let owner: Option<Uuid> =
                    sqlx::query_scalar("SELECT id FROM auth.accounts WHERE lower(email) = $1")
                        .bind(&email)
                        .fetch_optional(&self.pool)
                        .await?;
                return match owner {
                    Some(owner) => {
                        self.answer_taken_email(email, username, p.display_name, owner, req)
                            .await
                    }
                    None => Err(conflict_as_user_exists(e)),
                };
            }
            Err(e) => return Err(conflict_as_user_exists(e)),
        };
        sqlx::query("INSERT INTO auth.credentials (account_id, password_hash) VALUES ($1, $2)")
            .bind(id)
            .bind(hash)
            .execute(&mut *tx)
            .await?;
        let account = Account::from(row);
        let event = Event::now(
            EventKind::AccountRegistered,
            Some(id),
            json!({ "username": account.username }),
        );
        self.finish(
            tx,
            req,
            "auth.register",
            RpcReply::ok(&account),
            true,
            vec![event],
        )
        .await
    }

    /// Registration with an email that already has an account: the answer looks exactly like a
    /// new account (status, shape, cost) but nothing is created, so registration does not tell
    /// who has an account here. The owner's event stream gets
    /// `account.registration_attempted` (a mailer can warn them).
    async fn answer_taken_email(
        &self,
        email: String,
        username: String,
        display_name: Option<String>,
        owner: Uuid,
        req: Request<'_>,
    ) -> Result<RpcReply, ServiceError> {
        metrics::counter!("authstack_registrations_with_taken_email_total").increment(1);
        // Timestamps as PostgreSQL stores them (microseconds), like a real account's.
        let now = Utc::now().trunc_subsecs(6);
        let lookalike = Account {
            id: Uuid::new_v4(),
            email,
            username,
            display_name: display_name_change(&display_name).1,
            roles: vec![ROLE_USER.to_owned()],
            disabled: false,
            created_at: now,
            updated_at: now,
        };
        let event = Event::now(EventKind::RegistrationAttempted, Some(owner), json!({}));
        let tx = self.pool.begin().await?;
        self.finish(
            tx,
            req,
            "auth.register",
            RpcReply::ok(&lookalike),
            true,
            vec![event],
        )
        .await
    }

    pub(super) async fn get_me(&self, req: Request<'_>) -> Result<RpcReply, ServiceError> {
        let row = self.active_caller(req.ctx).await?;
        Ok(RpcReply::ok(&Account::from(row)))
    }

    pub(super) async fn update_me(
        &self,
        p: UpdateMeParams,
        req: Request<'_>,
    ) -> Result<RpcReply, ServiceError> {
        validate::update_me(&p)?;
        let caller = self.active_caller(req.ctx).await?;
        if p.email.is_some()
            && let Some(password) = p.current_password.clone()
        {
            self.verify_current_password(caller.id, password, req)
                .await?;
        }
        let (set_name, name) = display_name_change(&p.display_name);
        let mut tx = self.pool.begin().await?;
        let row: AccountRow = sqlx::query_as(concat!(
            "UPDATE auth.accounts SET
                email = coalesce($2, email),
                username = coalesce($3, username),
                display_name = CASE WHEN $4 THEN $5 ELSE display_name END,
                updated_at = now()
              WHERE id = $1 RETURNING ",
            account_columns!()
        ))
        .bind(caller.id)
        .bind(p.email.as_ref().map(|e| e.trim().to_lowercase()))
        .bind(p.username.as_ref().map(|u| u.trim().to_owned()))
        .bind(set_name)
        .bind(name)
        .fetch_one(&mut *tx)
        .await
        .map_err(conflict_as_user_exists)?;
        let fields: Vec<&str> = [
            p.email.as_ref().map(|_| "email"),
            p.username.as_ref().map(|_| "username"),
            p.display_name.as_ref().map(|_| "display_name"),
        ]
        .into_iter()
        .flatten()
        .collect();
        let event = Event::now(
            EventKind::AccountUpdated,
            Some(caller.id),
            json!({ "fields": fields }),
        );
        self.finish(
            tx,
            req,
            "users.update_me",
            RpcReply::ok(&Account::from(row)),
            true,
            vec![event],
        )
        .await
    }

    pub(super) async fn delete_me(
        &self,
        p: DeleteMeParams,
        req: Request<'_>,
    ) -> Result<RpcReply, ServiceError> {
        validate::delete_me(&p)?;
        let caller = self.active_caller(req.ctx).await?;
        self.verify_current_password(caller.id, p.current_password, req)
            .await?;
        self.delete_account(caller.id, None, req, "users.delete_me")
            .await
    }

    async fn delete_account(
        &self,
        id: Uuid,
        by: Option<Uuid>,
        req: Request<'_>,
        method: &str,
    ) -> Result<RpcReply, ServiceError> {
        let mut tx = self.pool.begin().await?;
        let admins = lock_admins(&mut tx).await?;
        // Sessions, credentials and refresh tokens go with the account (ON DELETE CASCADE).
        let deleted = sqlx::query("DELETE FROM auth.accounts WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(not_found());
        }
        keep_an_admin(&mut tx, admins).await?;
        let mut data = self.revocation("account_deleted", &[]);
        data["by"] = json!(by);
        let event = Event::now(EventKind::AccountDeleted, Some(id), data);
        self.finish(tx, req, method, RpcReply::ok(&()), true, vec![event])
            .await
    }

    /// The caller, who must currently hold the admin role (checked against the database, not
    /// just the token, so a revoked role stops working at once).
    async fn require_admin(&self, req: Request<'_>) -> Result<AccountRow, ServiceError> {
        let caller = self.active_caller(req.ctx).await?;
        if !caller.roles.iter().any(|r| r == ROLE_ADMIN) {
            return Err(admin_required());
        }
        Ok(caller)
    }

    pub(super) async fn list_users(
        &self,
        p: ListUsersParams,
        req: Request<'_>,
    ) -> Result<RpcReply, ServiceError> {
        validate::list_users(&p)?;
        self.require_admin(req).await?;
        let limit = p.limit.unwrap_or(50);
        let offset = p.offset.unwrap_or(0);
        let rows: Vec<AccountRow> = sqlx::query_as(concat!(
            "SELECT ",
            account_columns!(),
            " FROM auth.accounts ORDER BY created_at, id LIMIT $1 OFFSET $2"
        ))
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM auth.accounts")
            .fetch_one(&self.pool)
            .await?;
        Ok(RpcReply::ok(&AccountPage {
            items: rows.into_iter().map(Account::from).collect(),
            total,
            limit,
            offset,
        }))
    }

    pub(super) async fn get_user(
        &self,
        id: Uuid,
        req: Request<'_>,
    ) -> Result<RpcReply, ServiceError> {
        self.require_admin(req).await?;
        let row = self.account(id).await?;
        row.map(|r| RpcReply::ok(&Account::from(r)))
            .ok_or_else(not_found)
    }

    pub(super) async fn update_user(
        &self,
        p: AdminUpdateParams,
        req: Request<'_>,
    ) -> Result<RpcReply, ServiceError> {
        validate::admin_update(&p.update)?;
        let admin = self.require_admin(req).await?;
        let u = &p.update;
        if p.id == admin.id && u.disabled == Some(true) {
            return Err(fail(
                ErrorCode::Forbidden,
                "administrators cannot disable themselves",
            ));
        }
        let roles = u.roles.clone().map(|mut r| {
            r.sort();
            r.dedup();
            r
        });
        let (set_name, name) = display_name_change(&u.display_name);
        let mut tx = self.pool.begin().await?;
        // Who is an administrator changes one change at a time, and the caller must still be
        // one when its change runs (a concurrent demotion may have happened since).
        let admins = lock_admins(&mut tx).await?;
        let still_admin: bool = sqlx::query_scalar(
            "SELECT coalesce(bool_or($2 = ANY(roles) AND NOT disabled), false)
               FROM auth.accounts WHERE id = $1",
        )
        .bind(admin.id)
        .bind(ROLE_ADMIN)
        .fetch_one(&mut *tx)
        .await?;
        if !still_admin {
            return Err(admin_required());
        }
        let row: Option<AccountRow> = sqlx::query_as(concat!(
            "UPDATE auth.accounts SET
                roles = coalesce($2, roles),
                disabled = coalesce($3, disabled),
                display_name = CASE WHEN $4 THEN $5 ELSE display_name END,
                updated_at = now()
              WHERE id = $1 RETURNING ",
            account_columns!()
        ))
        .bind(p.id)
        .bind(roles)
        .bind(u.disabled)
        .bind(set_name)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        let row = row.ok_or_else(not_found)?;
        keep_an_admin(&mut tx, admins).await?;
        let mut fields = Vec::new();
        if u.roles.is_some() {
            fields.push("roles");
        }
        if u.disabled.is_some() {
            fields.push("disabled");
        }
        if u.display_name.is_some() {
            fields.push("display_name");
        }
        let mut events = vec![Event::now(
            EventKind::AccountUpdated,
            Some(row.id),
            json!({ "fields": fields, "by": admin.id }),
        )];
        if u.disabled == Some(true) {
            let revoked = revoke_sessions(&mut tx, row.id, None, "account_disabled").await?;
            events.push(self.sessions_revoked(row.id, "account_disabled", &revoked));
        }
        self.finish(
            tx,
            req,
            "users.update",
            RpcReply::ok(&Account::from(row)),
            true,
            events,
        )
        .await
    }

    pub(super) async fn delete_user(
        &self,
        id: Uuid,
        req: Request<'_>,
    ) -> Result<RpcReply, ServiceError> {
        let admin = self.require_admin(req).await?;
        if id == admin.id {
            return Err(fail(
                ErrorCode::Forbidden,
                "administrators delete their own account with DELETE /api/v1/users/me",
            ));
        }
        self.delete_account(id, Some(admin.id), req, "users.delete")
            .await
    }

    pub(super) async fn check_access(
        &self,
        p: AccessCheckParams,
        req: Request<'_>,
    ) -> Result<RpcReply, ServiceError> {
        validate::access_check(&p)?;
        let allowed = match self.active_caller(req.ctx).await {
            Ok(caller) => self
                .policy
                .allows(&caller.roles, &p.method, &p.path)
                .map_err(|e| {
                    ErrorBody::validation(vec![FieldError::new(
                        "path",
                        "ambiguous",
                        format!("path cannot be judged: {e}"),
                    )])
                })?,
            Err(ServiceError::Client(_)) => false,
            Err(e) => return Err(e),
        };
        Ok(RpcReply::ok(&AccessDecision { allowed }))
    }
}

fn admin_required() -> ServiceError {
    fail(ErrorCode::Forbidden, "administrator role required")
}

/// Whether `e` is the unique violation of the email index.
fn is_email_conflict(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db)
        if db.code().as_deref() == Some("23505") && db.constraint() == Some("accounts_email_key"))
}
