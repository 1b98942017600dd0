//! `auth.accounts` and `auth.credentials`.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::secs;

/// A row of `auth.accounts`.
#[derive(Debug, Clone)]
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

/// An account with the state of one of its sessions.
#[derive(Debug, Clone)]
pub(crate) struct AccountWithSession {
    /// The account.
    pub account: AccountRow,
    /// The session is the account's, not revoked and within its absolute lifetime.
    pub session_live: bool,
}

/// What a login needs of an account.
pub(crate) struct LoginCandidate {
    pub id: Uuid,
    pub roles: Vec<String>,
    pub disabled: bool,
    pub password_hash: String,
}

/// What a registration must know before it hashes the password.
pub(crate) struct RegistrationConflicts {
    /// Another account has this user name (case-insensitively).
    pub username_taken: bool,
    /// The account that has this email, if any.
    pub email_owner: Option<Uuid>,
}

/// Key of the advisory lock that serialises changes to who is an administrator.
const ADMINS_LOCK: i64 = 0x6175_7468_6164_6d6e;

/// One account by id.
pub(crate) async fn find(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<AccountRow>> {
    sqlx::query_as!(
        AccountRow,
        "SELECT id, email, username, display_name, roles, disabled, created_at, updated_at
           FROM auth.accounts WHERE id = $1",
        id
    )
    .fetch_optional(db)
    .await
}

/// One account by id, and whether `session` is one of its sessions that is neither revoked nor
/// older than `session_max_lifetime` (two primary-key lookups).
pub(crate) async fn find_with_session(
    db: impl PgExecutor<'_>,
    id: Uuid,
    session: Uuid,
    session_max_lifetime: std::time::Duration,
) -> sqlx::Result<Option<AccountWithSession>> {
    let found = find_with_sessions(db, &[(id, session)], session_max_lifetime).await?;
    Ok(found.into_iter().next().map(|(_, row)| row))
}

/// [`find_with_session`] for many (account, session) pairs in one query: the pairs whose account
/// exists, each with its account and whether the session is live. Each account and session is
/// read by its primary key alone: a subquery under `LIMIT` stays a lookup per pair (as a join or
/// an `EXISTS`, the planner may hash every account or live session instead, once per execution),
/// and the session's other conditions are computed, not searched for (searched, a plan may
/// read every session of the account by the index of sessions by account).
pub(crate) async fn find_with_sessions(
    db: impl PgExecutor<'_>,
    pairs: &[(Uuid, Uuid)],
    session_max_lifetime: std::time::Duration,
) -> sqlx::Result<Vec<((Uuid, Uuid), AccountWithSession)>> {
    let (accounts, sessions): (Vec<Uuid>, Vec<Uuid>) = pairs.iter().copied().unzip();
    let rows = sqlx::query!(
        r#"SELECT p.session_id AS "session_id!",
                  a.id, a.email, a.username, a.display_name, a.roles, a.disabled, a.created_at,
                  a.updated_at, coalesce(s.live, false) AS "session_live!"
             FROM unnest($1::uuid[], $2::uuid[]) AS p (account_id, session_id)
             CROSS JOIN LATERAL (
                   SELECT * FROM auth.accounts WHERE id = p.account_id LIMIT 1) a
             LEFT JOIN LATERAL (
                   SELECT s.account_id = a.id AND s.revoked_at IS NULL
                          AND s.created_at + make_interval(secs => $3) > now() AS live
                     FROM auth.sessions s
                    WHERE s.id = p.session_id
                    LIMIT 1) s ON true"#,
        &accounts,
        &sessions,
        secs(session_max_lifetime)
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let found = AccountWithSession {
                account: AccountRow {
                    id: r.id,
                    email: r.email,
                    username: r.username,
                    display_name: r.display_name,
                    roles: r.roles,
                    disabled: r.disabled,
                    created_at: r.created_at,
                    updated_at: r.updated_at,
                },
                session_live: r.session_live,
            };
            ((r.id, r.session_id), found)
        })
        .collect())
}

/// The account whose email or user name is `login` (lower-cased), with its password hash.
/// User names cannot contain '@' and emails must, so at most one account matches. One lookup
/// per unique index (an `OR` of the two may be planned as one scan of every account).
pub(crate) async fn find_for_login(
    db: impl PgExecutor<'_>,
    login: &str,
) -> sqlx::Result<Option<LoginCandidate>> {
    sqlx::query_as!(
        LoginCandidate,
        "SELECT a.id, a.roles, a.disabled, c.password_hash
           FROM auth.accounts a JOIN auth.credentials c ON c.account_id = a.id
          WHERE a.id = coalesce(
                (SELECT id FROM auth.accounts WHERE lower(email) = $1),
                (SELECT id FROM auth.accounts WHERE lower(username) = $1))",
        login
    )
    .fetch_optional(db)
    .await
}

/// Whether `username` is taken and who owns `email` (lower-cased).
pub(crate) async fn registration_conflicts(
    db: impl PgExecutor<'_>,
    email: &str,
    username: &str,
) -> sqlx::Result<RegistrationConflicts> {
    sqlx::query_as!(
        RegistrationConflicts,
        r#"SELECT EXISTS (SELECT 1 FROM auth.accounts WHERE lower(username) = lower($2))
                    AS "username_taken!",
                  (SELECT id FROM auth.accounts WHERE lower(email) = $1) AS email_owner"#,
        email,
        username
    )
    .fetch_one(db)
    .await
}

/// The account that has `email` (lower-cased), if any.
pub(crate) async fn email_owner(
    db: impl PgExecutor<'_>,
    email: &str,
) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar!(
        "SELECT id FROM auth.accounts WHERE lower(email) = $1",
        email
    )
    .fetch_optional(db)
    .await
}

/// Creates an account (default roles, enabled).
pub(crate) async fn insert(
    db: impl PgExecutor<'_>,
    id: Uuid,
    email: &str,
    username: &str,
    display_name: Option<&str>,
) -> sqlx::Result<AccountRow> {
    sqlx::query_as!(
        AccountRow,
        "INSERT INTO auth.accounts (id, email, username, display_name) VALUES ($1, $2, $3, $4)
         RETURNING id, email, username, display_name, roles, disabled, created_at, updated_at",
        id,
        email,
        username,
        display_name
    )
    .fetch_one(db)
    .await
}

/// A change of the display name: `None` leaves it, `Some(None)` clears it.
pub(crate) type DisplayNameChange<'a> = Option<Option<&'a str>>;

/// An account's own change: `None` fields are left as they are.
pub(crate) async fn update_profile(
    db: impl PgExecutor<'_>,
    id: Uuid,
    email: Option<&str>,
    username: Option<&str>,
    display_name: DisplayNameChange<'_>,
) -> sqlx::Result<AccountRow> {
    sqlx::query_as!(
        AccountRow,
        "UPDATE auth.accounts SET
            email = coalesce($2, email),
            username = coalesce($3, username),
            display_name = CASE WHEN $4 THEN $5 ELSE display_name END,
            updated_at = now()
          WHERE id = $1
          RETURNING id, email, username, display_name, roles, disabled, created_at, updated_at",
        id,
        email,
        username,
        display_name.is_some(),
        display_name.flatten()
    )
    .fetch_one(db)
    .await
}

/// An administrator's change: `None` fields are left as they are. `None` if there is no such
/// account.
pub(crate) async fn update_by_admin(
    db: impl PgExecutor<'_>,
    id: Uuid,
    roles: Option<&[String]>,
    disabled: Option<bool>,
    display_name: DisplayNameChange<'_>,
) -> sqlx::Result<Option<AccountRow>> {
    sqlx::query_as!(
        AccountRow,
        "UPDATE auth.accounts SET
            roles = coalesce($2, roles),
            disabled = coalesce($3, disabled),
            display_name = CASE WHEN $4 THEN $5 ELSE display_name END,
            updated_at = now()
          WHERE id = $1
          RETURNING id, email, username, display_name, roles, disabled, created_at, updated_at",
        id,
        roles as _,
        disabled,
        display_name.is_some(),
        display_name.flatten()
    )
    .fetch_optional(db)
    .await
}

/// Adds `role` to the account whose email or user name is `login` (case-insensitively);
/// returns its id.
pub(crate) async fn grant_role(
    db: impl PgExecutor<'_>,
    login: &str,
    role: &str,
) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar!(
        "UPDATE auth.accounts
            SET roles = (SELECT array_agg(DISTINCT r ORDER BY r) FROM unnest(roles || $2::text) AS r),
                updated_at = now()
          WHERE lower(email) = lower($1) OR lower(username) = lower($1)
          RETURNING id",
        login,
        role
    )
    .fetch_optional(db)
    .await
}

/// Deletes an account (its credentials, sessions and refresh tokens go with it: ON DELETE
/// CASCADE); false if there was none.
pub(crate) async fn delete(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<bool> {
    let deleted = sqlx::query!("DELETE FROM auth.accounts WHERE id = $1", id)
        .execute(db)
        .await?
        .rows_affected();
    Ok(deleted > 0)
}

/// One page of accounts, oldest first.
pub(crate) async fn page(
    db: impl PgExecutor<'_>,
    limit: i64,
    offset: i64,
) -> sqlx::Result<Vec<AccountRow>> {
    sqlx::query_as!(
        AccountRow,
        "SELECT id, email, username, display_name, roles, disabled, created_at, updated_at
           FROM auth.accounts ORDER BY created_at, id LIMIT $1 OFFSET $2",
        limit,
        offset
    )
    .fetch_all(db)
    .await
}

/// How many accounts there are.
pub(crate) async fn count(db: impl PgExecutor<'_>) -> sqlx::Result<i64> {
    sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM auth.accounts"#)
        .fetch_one(db)
        .await
}

/// Takes the administrators lock in `conn`'s transaction (changes to who is an administrator
/// run one at a time) and counts the enabled accounts holding `admin_role`.
pub(crate) async fn lock_admins(conn: &mut PgConnection, admin_role: &str) -> sqlx::Result<i64> {
    sqlx::query!("SELECT pg_advisory_xact_lock($1)", ADMINS_LOCK)
        .execute(&mut *conn)
        .await?;
    count_active_with_role(conn, admin_role).await
}

/// How many enabled accounts hold `role` (by the index of roles, migration 0006).
pub(crate) async fn count_active_with_role(
    db: impl PgExecutor<'_>,
    role: &str,
) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM auth.accounts
            WHERE roles @> ARRAY[$1::text] AND NOT disabled"#,
        role
    )
    .fetch_one(db)
    .await
}

/// Whether account `id` exists, is enabled and holds `role`.
pub(crate) async fn is_active_with_role(
    db: impl PgExecutor<'_>,
    id: Uuid,
    role: &str,
) -> sqlx::Result<bool> {
    sqlx::query_scalar!(
        r#"SELECT coalesce(bool_or($2 = ANY(roles) AND NOT disabled), false) AS "holds!"
             FROM auth.accounts WHERE id = $1"#,
        id,
        role
    )
    .fetch_one(db)
    .await
}

/// The password hash (PHC string) of an account, if it has one.
pub(crate) async fn password_hash(
    db: impl PgExecutor<'_>,
    account: Uuid,
) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar!(
        "SELECT password_hash FROM auth.credentials WHERE account_id = $1",
        account
    )
    .fetch_optional(db)
    .await
}

/// Stores the first password hash of a new account.
pub(crate) async fn insert_password_hash(
    db: impl PgExecutor<'_>,
    account: Uuid,
    hash: &str,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO auth.credentials (account_id, password_hash) VALUES ($1, $2)",
        account,
        hash
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Replaces an account's password hash (a new password, or a rehash with current parameters).
pub(crate) async fn set_password_hash(
    db: impl PgExecutor<'_>,
    account: Uuid,
    hash: &str,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE auth.credentials SET password_hash = $2, updated_at = now() WHERE account_id = $1",
        account,
        hash
    )
    .execute(db)
    .await?;
    Ok(())
}
