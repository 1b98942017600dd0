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
           SELECT k, 0, clock_timestamp(), clock_timestamp()
             FROM unnest($1::text[]) WITH ORDINALITY AS u(k, i) ORDER BY i
           ON CONFLICT (key) DO UPDATE SET key = t.key
           RETURNING t.key, t.failures, t.pending, t.pending_before, t.pending_epoch,
                     t.window_started_at, t.locked_until, t.updated_at,
                     clock_timestamp() AS "now!""#,
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
                pending: r.pending,
                pending_before: r.pending_before,
                pending_epoch: r.pending_epoch,
                window_started_at: r.window_started_at,
                locked_until: r.locked_until,
                updated_at: r.updated_at,
            },
            now: r.now,
        })
        .collect())
}

/// Stores `counters` under `keys` (same order; each key once, as [`lock`] takes them), rows
/// locked by [`lock`]. A counter with nothing in it (no failures, no pending check, no lock) is
/// deleted instead.
pub(crate) async fn store(
    db: impl PgExecutor<'_>,
    keys: &[String],
    counters: &[Counter],
) -> sqlx::Result<()> {
    debug_assert!(
        keys.windows(2).all(|pair| pair[0] < pair[1]),
        "throttle keys sorted and unique"
    );
    let failures: Vec<i32> = counters.iter().map(|c| c.failures).collect();
    let pending: Vec<i32> = counters.iter().map(|c| c.pending).collect();
    let pending_before: Vec<i32> = counters.iter().map(|c| c.pending_before).collect();
    let pending_epoch: Vec<i64> = counters.iter().map(|c| c.pending_epoch).collect();
    let window_started_at: Vec<DateTime<Utc>> =
        counters.iter().map(|c| c.window_started_at).collect();
    let locked_until: Vec<Option<DateTime<Utc>>> =
        counters.iter().map(|c| c.locked_until).collect();
    let updated_at: Vec<DateTime<Utc>> = counters.iter().map(|c| c.updated_at).collect();
    sqlx::query!(
        "WITH u AS (
             SELECT *, failures = 0 AND pending = 0 AND pending_before = 0
                       AND locked_until IS NULL AS empty
               FROM unnest($1::text[], $2::int4[], $3::int4[], $4::int4[], $5::int8[],
                           $6::timestamptz[], $7::timestamptz[], $8::timestamptz[])
                    AS u(key, failures, pending, pending_before, pending_epoch,
                         window_started_at, locked_until, updated_at)
         ), emptied AS (
             DELETE FROM auth.login_throttle t
              WHERE t.key = ANY (ARRAY(SELECT key FROM u WHERE u.empty))
         )
         UPDATE auth.login_throttle AS t
            SET (failures, pending, pending_before, pending_epoch, window_started_at,
                 locked_until, updated_at) =
                (SELECT u.failures, u.pending, u.pending_before, u.pending_epoch,
                        u.window_started_at, u.locked_until, u.updated_at
                   FROM u WHERE u.key = t.key)
          WHERE t.key = ANY (ARRAY(SELECT key FROM u WHERE NOT u.empty))",
        keys as &[String],
        &failures,
        &pending,
        &pending_before,
        &pending_epoch,
        &window_started_at,
        // Nullable elements: the macro's parameter check knows only arrays of non-null values.
        &locked_until as _,
        &updated_at
    )
    .execute(db)
    .await?;
    Ok(())
}
