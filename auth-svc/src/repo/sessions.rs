//! `auth.sessions`: one row per login; revocations update it.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

/// Creates a session; returns its creation time (the start of its absolute lifetime).
pub(crate) async fn insert(
    db: impl PgExecutor<'_>,
    id: Uuid,
    account: Uuid,
) -> sqlx::Result<DateTime<Utc>> {
    sqlx::query_scalar!(
        "INSERT INTO auth.sessions (id, account_id) VALUES ($1, $2) RETURNING created_at",
        id,
        account
    )
    .fetch_one(db)
    .await
}

/// Revokes one session (nothing if it is revoked already). `IS TRUE`: a condition no index is
/// chosen for, so the plan finds the session by its key (not by walking the index of sessions
/// by account for `revoked_at IS NULL`).
pub(crate) async fn revoke(db: impl PgExecutor<'_>, id: Uuid, reason: &str) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE auth.sessions SET revoked_at = now(), revoked_reason = $2
          WHERE id = $1 AND (revoked_at IS NULL) IS TRUE",
        id,
        reason
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Revokes the live session of `account` that the refresh token hashed `token_hash` belongs
/// to; returns its id (`None`: unknown token, another account's, or revoked already). The
/// session is found by its key only (`IS TRUE`: conditions no index is chosen for, lest a plan
/// read every session of the account instead).
pub(crate) async fn revoke_by_refresh_token(
    db: impl PgExecutor<'_>,
    token_hash: &[u8],
    account: Uuid,
    reason: &str,
) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar!(
        "UPDATE auth.sessions SET revoked_at = now(), revoked_reason = $3
          WHERE id = (SELECT family_id FROM auth.refresh_tokens WHERE token_hash = $1)
            AND (account_id = $2) IS TRUE AND (revoked_at IS NULL) IS TRUE
          RETURNING id",
        token_hash,
        account,
        reason
    )
    .fetch_optional(db)
    .await
}

/// Revokes every live session of `account` except `keep`; returns the revoked ids. A refresh
/// in progress holds its session row, so this waits for it and then revokes its session too.
pub(crate) async fn revoke_all(
    db: impl PgExecutor<'_>,
    account: Uuid,
    keep: Option<Uuid>,
    reason: &str,
) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar!(
        "UPDATE auth.sessions SET revoked_at = now(), revoked_reason = $3
          WHERE account_id = $1 AND revoked_at IS NULL AND id IS DISTINCT FROM $2
          RETURNING id",
        account,
        keep,
        reason
    )
    .fetch_all(db)
    .await
}
