//! `auth.login_throttle`: the counters of [`crate::throttle`], one row per key.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

use crate::throttle::Counter;

/// A counter as stored, and the database's clock when it was read.
pub(crate) struct StoredCounter {
    pub key: String,
    pub counter: Counter,
    pub now: DateTime<Utc>,
}

/// Creates the missing rows of `keys` (as empty counters) and locks every row, in the order of
/// `keys` (sorted by the caller, so two attempts never wait for each other in a cycle).
pub(crate) async fn lock(
    db: impl PgExecutor<'_>,
    keys: &[String],
) -> sqlx::Result<Vec<StoredCounter>> {
    let rows = sqlx::query!(
        r#"INSERT INTO auth.login_throttle AS t (key, failures, window_started_at, updated_at)
           SELECT k, 0, now(), now() FROM unnest($1::text[]) WITH ORDINALITY AS u(k, i) ORDER BY i
           ON CONFLICT (key) DO UPDATE SET key = t.key
           RETURNING t.key, t.failures, t.window_started_at, t.locked_until, t.updated_at,
                     now() AS "now!""#,
        keys as &[String]
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| StoredCounter {
            key: r.key,
            counter: Counter {
                failures: r.failures,
                window_started_at: r.window_started_at,
                locked_until: r.locked_until,
                updated_at: r.updated_at,
            },
            now: r.now,
        })
        .collect())
}

/// Stores `counters` under `keys` (same order), rows locked by [`lock`].
pub(crate) async fn store(
    db: impl PgExecutor<'_>,
    keys: &[String],
    counters: &[Counter],
) -> sqlx::Result<()> {
    let failures: Vec<i32> = counters.iter().map(|c| c.failures).collect();
    let window_started_at: Vec<DateTime<Utc>> =
        counters.iter().map(|c| c.window_started_at).collect();
    let locked_until: Vec<Option<DateTime<Utc>>> =
        counters.iter().map(|c| c.locked_until).collect();
    let updated_at: Vec<DateTime<Utc>> = counters.iter().map(|c| c.updated_at).collect();
    sqlx::query!(
        "UPDATE auth.login_throttle AS t
            SET failures = u.failures, window_started_at = u.window_started_at,
                locked_until = u.locked_until, updated_at = u.updated_at
           FROM unnest($1::text[], $2::int4[], $3::timestamptz[], $4::timestamptz[],
                       $5::timestamptz[])
                AS u(key, failures, window_started_at, locked_until, updated_at)
          WHERE t.key = u.key",
        keys as &[String],
        &failures,
        &window_started_at,
        // Nullable elements: the macro's parameter check knows only arrays of non-null values.
        &locked_until as _,
        &updated_at
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Deletes the counters of `clear` and takes one failure off those of `decrement`, locking the
/// rows in key order first (like [`lock`], so the two never deadlock).
pub(crate) async fn clear_and_decrement(
    db: impl PgExecutor<'_>,
    clear: &[String],
    decrement: &[String],
) -> sqlx::Result<()> {
    sqlx::query!(
        "WITH locked AS (
             SELECT key FROM auth.login_throttle WHERE key = ANY($1) OR key = ANY($2)
              ORDER BY key FOR UPDATE
         ), cleared AS (
             DELETE FROM auth.login_throttle t USING locked
              WHERE t.key = locked.key AND t.key = ANY($1)
         )
         UPDATE auth.login_throttle t SET failures = greatest(t.failures - 1, 0), updated_at = now()
           FROM locked WHERE t.key = locked.key AND t.key = ANY($2)",
        clear as &[String],
        decrement as &[String]
    )
    .execute(db)
    .await?;
    Ok(())
}
