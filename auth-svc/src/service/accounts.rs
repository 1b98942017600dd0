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

use super::{AccountRow, AuthService, Request, ServiceError, conflict_as_user_exists, fail};
use crate::repo::accounts::{self, DisplayNameChange};
use crate::repo::sessions;
use crate::throttle::{self, Reservation};

fn not_found() -> ServiceError {
    fail(ErrorCode::NotFound, "account not found")
}

/// Takes the administrators lock in `conn`'s transaction and counts the active administrators.
async fn lock_admins(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    accounts::lock_admins(conn, ROLE_ADMIN).await
}

/// After a change made under [`lock_admins`]: refuses it if it removed the last active
/// administrator.
async fn keep_an_admin(conn: &mut PgConnection, before: i64) -> Result<(), ServiceError> {
    if before > 0 && accounts::count_active_with_role(conn, ROLE_ADMIN).await? == 0 {
        return Err(fail(
            ErrorCode::Forbidden,
            "the last administrator cannot be removed, demoted or disabled",
        ));
    }
    Ok(())
}

/// The change a requested display name makes: `Some("")` (blank) clears it; `None` leaves it.
fn display_name_change(v: &Option<String>) -> DisplayNameChange<'_> {
    v.as_deref()
        .map(|s| Some(s.trim()).filter(|t| !t.is_empty()))
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
            && let Reservation::Refused(refusal) =
                throttle::reserve(&self.pool, &self.settings.throttle, &[key]).await?
        {
            return Err(ServiceError::Client(refusal.body()));
        }
        let email = p.email.trim().to_lowercase();
        let username = p.username.trim().to_owned();
        // Cheap checks before hashing. User names are public handles: a taken one is said at
        // once. A taken email is not revealed (see `answer_taken_email`), so it costs the same
        // hash as a new account.
        let conflicts = accounts::registration_conflicts(&self.pool, &email, &username).await?;
        if conflicts.username_taken {
            return Err(fail(
                ErrorCode::UserExists,
                "an account with this username already exists",
            ));
        }
        let hash = self.hasher.hash(p.password.0).await?;
        if let Some(owner) = conflicts.email_owner {
            return self
                .answer_taken_email(email, username, p.display_name, owner, req)
                .await;
        }
        let id = Uuid::new_v4();
        let mut tx = self.pool.begin().await?;
        let display_name = display_name_change(&p.display_name).flatten();
        let inserted = accounts::insert(&mut *tx, id, &email, &username, display_name).await;
        let row = match inserted {
            Ok(row) => row,
            Err(e) if is_email_conflict(&e) => {
                // A concurrent registration took the email first: answered like any taken one.
                tx.rollback().await?;
                return match accounts::email_owner(&self.pool, &email).await? {
                    Some(owner) => {
                        self.answer_taken_email(email, username, p.display_name, owner, req)
                            .await
                    }
                    None => Err(conflict_as_user_exists(e)),
                };
            }
            Err(e) => return Err(conflict_as_user_exists(e)),
        };
        accounts::insert_password_hash(&mut *tx, id, &hash).await?;
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
            display_name: display_name_change(&display_name)
                .flatten()
                .map(str::to_owned),
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
        let row = self.active_caller(req).await?;
        Ok(RpcReply::ok(&Account::from(row)))
    }

    pub(super) async fn update_me(
        &self,
        p: UpdateMeParams,
        req: Request<'_>,
    ) -> Result<RpcReply, ServiceError> {
        validate::update_me(&p)?;
        let caller = self.active_caller(req).await?;
        if p.email.is_some()
            && let Some(password) = p.current_password.clone()
        {
            self.verify_current_password(caller.id, password, req)
                .await?;
        }
        let email = p.email.as_ref().map(|e| e.trim().to_lowercase());
        let username = p.username.as_ref().map(|u| u.trim());
        let mut tx = self.pool.begin().await?;
        let row = accounts::update_profile(
            &mut *tx,
            caller.id,
            email.as_deref(),
            username,
            display_name_change(&p.display_name),
        )
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
        let caller = self.active_caller(req).await?;
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
        if !accounts::delete(&mut *tx, id).await? {
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
        let caller = self.active_caller(req).await?;
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
        let rows = accounts::page(&self.pool, limit, offset).await?;
        let total = accounts::count(&self.pool).await?;
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
        let mut tx = self.pool.begin().await?;
        // Who is an administrator changes one change at a time, and the caller must still be
        // one when its change runs (a concurrent demotion may have happened since).
        let admins = lock_admins(&mut tx).await?;
        if !accounts::is_active_with_role(&mut *tx, admin.id, ROLE_ADMIN).await? {
            return Err(admin_required());
        }
        let row = accounts::update_by_admin(
            &mut *tx,
            p.id,
            roles.as_deref(),
            u.disabled,
            display_name_change(&u.display_name),
        )
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
            let revoked = sessions::revoke_all(&mut *tx, row.id, None, "account_disabled").await?;
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
        let allowed = match self.active_caller(req).await {
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
