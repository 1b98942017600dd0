//! Registration, the caller's own account, account administration and access checks.

use authstack_protocol::model::{AccountPage, ROLE_ADMIN};
use authstack_protocol::rpc::{
    AccessCheckParams, AccessDecision, AdminUpdateParams, ListUsersParams, RegisterParams,
    RpcReply, UpdateMeParams,
};
use authstack_protocol::{Account, ErrorCode, Event, EventKind, validate};
use serde_json::json;
use uuid::Uuid;

use super::sessions::revoke_sessions;
use super::{
    AccountRow, AuthService, Request, ServiceError, account_columns, conflict_as_user_exists, fail,
};

fn not_found() -> ServiceError {
    fail(ErrorCode::NotFound, "account not found")
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
        let hash = self.hasher.hash(p.password.0).await?;
        let id = Uuid::new_v4();
        let mut tx = self.pool.begin().await?;
        let row: AccountRow = sqlx::query_as(concat!(
            "INSERT INTO auth.accounts (id, email, username, display_name) VALUES ($1, $2, $3, $4) RETURNING ",
            account_columns!()
        ))
        .bind(id)
        .bind(p.email.trim().to_lowercase())
        .bind(p.username.trim())
        .bind(display_name_change(&p.display_name).1)
        .fetch_one(&mut *tx)
        .await
        .map_err(conflict_as_user_exists)?;
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

    pub(super) async fn delete_me(&self, req: Request<'_>) -> Result<RpcReply, ServiceError> {
        let id = Self::caller(req.ctx)?;
        self.delete_account(id, None, req, "users.delete_me").await
    }

    async fn delete_account(
        &self,
        id: Uuid,
        by: Option<Uuid>,
        req: Request<'_>,
        method: &str,
    ) -> Result<RpcReply, ServiceError> {
        let mut tx = self.pool.begin().await?;
        // Credentials and refresh tokens go with the account (ON DELETE CASCADE).
        let deleted = sqlx::query("DELETE FROM auth.accounts WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(not_found());
        }
        let event = Event::now(EventKind::AccountDeleted, Some(id), json!({ "by": by }));
        self.finish(tx, req, method, RpcReply::ok(&()), true, vec![event])
            .await
    }

    /// The caller, who must currently hold the admin role (checked against the database, not
    /// just the token, so a revoked role stops working at once).
    async fn require_admin(&self, req: Request<'_>) -> Result<AccountRow, ServiceError> {
        let caller = self.active_caller(req.ctx).await?;
        if !caller.roles.iter().any(|r| r == ROLE_ADMIN) {
            return Err(fail(ErrorCode::Forbidden, "administrator role required"));
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
        let demotes_self = u
            .roles
            .as_ref()
            .is_some_and(|r| !r.iter().any(|x| x == ROLE_ADMIN));
        if p.id == admin.id && (u.disabled == Some(true) || demotes_self) {
            return Err(fail(
                ErrorCode::Forbidden,
                "administrators cannot disable themselves or remove their own admin role",
            ));
        }
        let roles = u.roles.clone().map(|mut r| {
            r.sort();
            r.dedup();
            r
        });
        let (set_name, name) = display_name_change(&u.display_name);
        let mut tx = self.pool.begin().await?;
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
            events.push(Event::now(
                EventKind::SessionRevoked,
                Some(row.id),
                json!({ "reason": "account_disabled", "tokens": revoked }),
            ));
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
            Ok(caller) => self.policy.allows(&caller.roles, &p.method, &p.path),
            Err(ServiceError::Client(_)) => false,
            Err(e) => return Err(e),
        };
        Ok(RpcReply::ok(&AccessDecision { allowed }))
    }
}
