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

/// Prefix of per-account keys (`account:<id>`, or `account:login:<name>` for unknown logins).
pub const ACCOUNT_PREFIX: &str = "account:";
/// Prefix of per-address keys.
pub const ADDRESS_PREFIX: &str = "address:";

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
            key: format!("{ACCOUNT_PREFIX}{id}"),
            threshold: self.account_threshold,
        }
    }

    /// The account key under its stored name (as built by the login query).
    pub fn key_for_account(&self, name: String) -> ThrottleKey {
        ThrottleKey {
            key: name,
            threshold: self.account_threshold,
        }
    }

    /// The key for a client address.
    pub fn address_key(&self, address: &str) -> ThrottleKey {
        ThrottleKey {
            key: format!("{ADDRESS_PREFIX}{address}"),
            threshold: self.address_threshold,
        }
    }
}

impl ThrottleKey {
    /// The key as stored.
    pub fn as_str(&self) -> &str {
        &self.key
    }
}

/// The throttling state of a login attempt's keys.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThrottleState {
    /// Seconds until the longest lock among the keys ends, if any is locked.
    pub locked_for: Option<u64>,
    /// Whether the first key (the account) has failures on record (to clear after success).
    pub first_has_failures: bool,
}

/// Reads the state of `keys` in one query.
pub async fn state(pool: &PgPool, keys: &[ThrottleKey]) -> Result<ThrottleState, sqlx::Error> {
    let names: Vec<&str> = keys.iter().map(|k| k.key.as_str()).collect();
    let (secs, first): (Option<f64>, bool) = sqlx::query_as(
        "SELECT max(extract(epoch FROM locked_until - now())) FILTER (WHERE locked_until > now())::float8,
                coalesce(bool_or(key = $1[1]), false)
           FROM auth.login_throttle
          WHERE key = ANY($1)",
    )
    .bind(&names)
    .fetch_one(pool)
    .await?;
    Ok(ThrottleState {
        locked_for: secs.map(|s| s.ceil().max(1.0) as u64),
        first_has_failures: first,
    })
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
