//! Housekeeping deletes and the readiness probe's round trip.

use std::time::Duration;

use sqlx::{PgConnection, PgExecutor, PgPool};

use super::secs;

/// Runs `statement` in a transaction of its own where sequential scans are allowed: housekeeping
/// reads whole tables, which the pool's connections otherwise refuse to scan
/// ([`crate::db::SESSION_SETTINGS`]). The plan made here is cached for a statement that only ever
/// runs here.
pub(crate) async fn whole_table(
    pool: &PgPool,
    statement: impl AsyncFnOnce(&mut PgConnection) -> sqlx::Result<u64>,
) -> sqlx::Result<u64> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET LOCAL enable_seqscan = on")
        .execute(&mut *tx)
        .await?;
    let result = statement(&mut tx).await?;
    tx.commit().await?;
    Ok(result)
}

/// Deletes processed request ids recorded more than `age` ago.
pub(crate) async fn delete_processed_requests(
    db: impl PgExecutor<'_>,
    age: Duration,
) -> sqlx::Result<u64> {
    let deleted = sqlx::query!(
        "DELETE FROM auth.processed_requests WHERE created_at < now() - make_interval(secs => $1)",
        secs(age)
    )
    .execute(db)
    .await?;
    Ok(deleted.rows_affected())
}

/// Deletes refresh tokens expired for more than `age`.
pub(crate) async fn delete_expired_refresh_tokens(
    db: impl PgExecutor<'_>,
    age: Duration,
) -> sqlx::Result<u64> {
    let deleted = sqlx::query!(
        "DELETE FROM auth.refresh_tokens WHERE expires_at < now() - make_interval(secs => $1)",
        secs(age)
    )
    .execute(db)
    .await?;
    Ok(deleted.rows_affected())
}

/// Deletes throttling counters that are not locked and did not change for `age`.
pub(crate) async fn delete_idle_throttles(
    db: impl PgExecutor<'_>,
    age: Duration,
) -> sqlx::Result<u64> {
    let deleted = sqlx::query!(
        "DELETE FROM auth.login_throttle
          WHERE (locked_until IS NULL OR locked_until < now())
            AND updated_at < now() - make_interval(secs => $1)",
        secs(age)
    )
    .execute(db)
    .await?;
    Ok(deleted.rows_affected())
}

/// Deletes sessions revoked, or past `session_max_lifetime`, for more than `age`.
pub(crate) async fn delete_ended_sessions(
    db: impl PgExecutor<'_>,
    age: Duration,
    session_max_lifetime: Duration,
) -> sqlx::Result<u64> {
    let deleted = sqlx::query!(
        "DELETE FROM auth.sessions
          WHERE revoked_at < now() - make_interval(secs => $1)
             OR created_at < now() - make_interval(secs => $2) - make_interval(secs => $1)",
        secs(age),
        secs(session_max_lifetime)
    )
    .execute(db)
    .await?;
    Ok(deleted.rows_affected())
}

/// Forgets the sealed successor pairs of tokens replaced more than `age` ago: kept on the
/// successor's row since it was written (its `created_at` is when its predecessor was spent), or
/// on the spent token's row for tokens spent before migration 0003.
pub(crate) async fn forget_sealed_successors(
    db: impl PgExecutor<'_>,
    age: Duration,
) -> sqlx::Result<u64> {
    let updated = sqlx::query!(
        "UPDATE auth.refresh_tokens SET sealed_pair = NULL, successor_sealed = NULL
          WHERE (sealed_pair IS NOT NULL AND created_at < now() - make_interval(secs => $1))
             OR (successor_sealed IS NOT NULL AND used_at < now() - make_interval(secs => $1))",
        secs(age)
    )
    .execute(db)
    .await?;
    Ok(updated.rows_affected())
}

/// One round trip to the database.
pub(crate) async fn ping(db: impl PgExecutor<'_>) -> sqlx::Result<()> {
    sqlx::query!("SELECT 1 AS one").fetch_one(db).await?;
    Ok(())
}

/// Whether schema `name` exists.
pub(crate) async fn schema_exists(db: impl PgExecutor<'_>, name: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1::text) AS "exists!""#,
        name
    )
    .fetch_one(db)
    .await
}
