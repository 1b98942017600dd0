//! Login throttling: failed attempts are counted per login (account id, or the normalised login
//! name for unknown accounts, so both behave the same) and per client address, in PostgreSQL so
//! every replica sees the same counters.

use std::time::Duration;

use sqlx::PgPool;

/// Thresholds and timing.
#[derive(Debug, Clone, Copy)]
pub struct ThrottlePolicy {
    /// Failures per account before it is locked.
    pub account_threshold: u32,
    /// Failures per client address before it is locked.
    pub address_threshold: u32,
    /// Window over which failures are counted.
    pub window: Duration,
    /// How long a lock lasts.
    pub lock: Duration,
}

/// A throttling key and its threshold.
#[derive(Debug, Clone)]
pub struct ThrottleKey {
    key: String,
    threshold: u32,
}

impl ThrottlePolicy {
    /// The key for an account (or an unknown login name).
    pub fn account_key(&self, id: &str) -> ThrottleKey {
        ThrottleKey {
            key: format!("account:{id}"),
            threshold: self.account_threshold,
        }
    }

    /// The key for a client address.
    pub fn address_key(&self, address: &str) -> ThrottleKey {
        ThrottleKey {
            key: format!("address:{address}"),
            threshold: self.address_threshold,
        }
    }
}

/// Seconds until the longest lock among `keys` ends, if any is locked.
pub async fn locked_for(pool: &PgPool, keys: &[ThrottleKey]) -> Result<Option<u64>, sqlx::Error> {
    let names: Vec<&str> = keys.iter().map(|k| k.key.as_str()).collect();
    let secs: Option<f64> = sqlx::query_scalar(
        "SELECT max(extract(epoch FROM locked_until - now()))::float8
           FROM auth.login_throttle
          WHERE key = ANY($1) AND locked_until > now()",
    )
    .bind(&names)
    .fetch_one(pool)
    .await?;
    Ok(secs.map(|s| s.ceil().max(1.0) as u64))
}

/// Counts one failure against each key, locking those that reach their threshold.
pub async fn record_failure(
    pool: &PgPool,
    policy: &ThrottlePolicy,
    keys: &[ThrottleKey],
) -> Result<(), sqlx::Error> {
    for k in keys {
        sqlx::query(
            "INSERT INTO auth.login_throttle AS t (key, failures, window_started_at, locked_until)
             VALUES ($1, 1, now(), CASE WHEN 1 >= $2 THEN now() + make_interval(secs => $4) END)
             ON CONFLICT (key) DO UPDATE SET
               failures = CASE WHEN t.window_started_at < now() - make_interval(secs => $3)
                                 OR t.locked_until < now() THEN 1 ELSE t.failures + 1 END,
               window_started_at = CASE WHEN t.window_started_at < now() - make_interval(secs => $3)
                                          OR t.locked_until < now() THEN now() ELSE t.window_started_at END,
               locked_until = CASE
                 WHEN (CASE WHEN t.window_started_at < now() - make_interval(secs => $3)
                              OR t.locked_until < now() THEN 1 ELSE t.failures + 1 END) >= $2
                 THEN now() + make_interval(secs => $4)
                 ELSE t.locked_until END",
        )
        .bind(&k.key)
        .bind(k.threshold as i32)
        .bind(policy.window.as_secs_f64())
        .bind(policy.lock.as_secs_f64())
        .execute(pool)
        .await?;
    }
    Ok(())
}

/// Forgets the failures of a key (after a successful login).
pub async fn clear(pool: &PgPool, key: &ThrottleKey) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM auth.login_throttle WHERE key = $1")
        .bind(&key.key)
        .execute(pool)
        .await?;
    Ok(())
}
