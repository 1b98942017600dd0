//! Throttling of password checks and of per-address request rates, in PostgreSQL so every
//! replica sees the same counters.
//!
//! An attempt **reserves** itself before its password is checked: one transaction locks the
//! counters of all its keys (in key order), decides, and counts the attempt as a failure. A
//! success then gives the reservation back. So parallel guesses cannot all pass a check that
//! each of them read before any of them recorded a failure. The keys of a password check:
//!
//! - **pair** (account, client address): `pair_threshold` failures within the window lock
//!   this address out of this account for `lock`. Guesses from elsewhere lock nobody else out.
//! - **account** (every address together): from `account_backoff_threshold` failures on,
//!   attempts must be spaced by a delay that doubles with every further failure (1 s, 2 s,
//!   ...) up to `account_backoff_max`; the failures are forgotten after a quiet `window`.
//!   This slows a distributed attack on one account without a hard lock.
//! - **address**: from `address_delay_threshold` failures within the window on, every attempt
//!   from the address waits before its check, 100 ms doubling per further failure up to
//!   `address_delay_max`. A shared proxy address is slowed down, never refused.
//! - **rate** (login, registration): at most `n` attempts per minute from one address.
//!
//! A success clears the pair and account counters (the password is known) and takes one
//! failure off the address (its own reservation); a failure keeps what was reserved.
//! Unknown logins are keyed by their normalised name, exactly like accounts.

use std::time::Duration;

use authstack_protocol::ErrorBody;
use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};

use crate::repo;

/// Delay of the first attempt beyond an address's threshold; it doubles per failure.
pub const ADDRESS_DELAY_BASE: Duration = Duration::from_millis(100);
/// Spacing of the first attempt beyond an account's backoff threshold; it doubles per failure.
pub const ACCOUNT_BACKOFF_BASE: Duration = Duration::from_secs(1);
/// The window of per-address rate limits.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);

/// Thresholds and timing.
#[derive(Debug, Clone, Copy)]
pub struct ThrottlePolicy {
    /// Failures of one (account, address) pair that lock the pair.
    pub pair_threshold: u32,
    /// How long a locked pair stays locked.
    pub lock: Duration,
    /// Window over which failures are counted (for accounts: the quiet period that resets).
    pub window: Duration,
    /// Failures of one account (all addresses) from which attempts are spaced.
    pub account_backoff_threshold: u32,
    /// Longest spacing of the per-account backoff.
    pub account_backoff_max: Duration,
    /// Failures from one address from which its attempts are delayed.
    pub address_delay_threshold: u32,
    /// Longest delay of one attempt from a busy address.
    pub address_delay_max: Duration,
    /// Login attempts per minute per address (0 = unlimited).
    pub login_rate: u32,
    /// Registrations per minute per address (0 = unlimited).
    pub register_rate: u32,
}

/// What a key counts, and so how it decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// Failures of one account from one address: a lock at the threshold.
    Pair,
    /// Failures of one account from anywhere: a growing spacing beyond the threshold.
    Account,
    /// Failures from one address: a growing delay beyond the threshold.
    Address,
    /// Attempts per minute from one address, at most this many.
    Rate(u32),
}

/// A throttling key (the row name) and its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottleKey {
    key: String,
    kind: KeyKind,
}

impl ThrottleKey {
    /// The key as stored.
    pub fn as_str(&self) -> &str {
        &self.key
    }

    /// Its kind.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }
}

/// Stand-in for a missing client address (then all such attempts share one pair per account).
const NO_ADDRESS: &str = "-";

impl ThrottlePolicy {
    /// The keys of a password check for `account` (an account id, or `login:<name>` for
    /// unknown logins) from `address`.
    pub fn password_keys(&self, account: &str, address: Option<&str>) -> Vec<ThrottleKey> {
        let mut keys = vec![
            ThrottleKey {
                key: format!("pair:{account}@{}", address.unwrap_or(NO_ADDRESS)),
                kind: KeyKind::Pair,
            },
            ThrottleKey {
                key: format!("account:{account}"),
                kind: KeyKind::Account,
            },
        ];
        if let Some(address) = address {
            keys.push(ThrottleKey {
                key: format!("address:{address}"),
                kind: KeyKind::Address,
            });
        }
        keys
    }

    /// The login rate key of `address`, if logins are rate limited.
    pub fn login_rate_key(&self, address: Option<&str>) -> Option<ThrottleKey> {
        rate_key("login", self.login_rate, address)
    }

    /// The registration rate key of `address`, if registrations are rate limited.
    pub fn register_rate_key(&self, address: Option<&str>) -> Option<ThrottleKey> {
        rate_key("register", self.register_rate, address)
    }
}

fn rate_key(what: &str, per_minute: u32, address: Option<&str>) -> Option<ThrottleKey> {
    (per_minute > 0).then(|| ThrottleKey {
        key: format!("rate:{what}:{}", address.unwrap_or(NO_ADDRESS)),
        kind: KeyKind::Rate(per_minute),
    })
}

/// The stored state of one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    /// Failures (attempts, for rate keys) in the current window.
    pub failures: i32,
    /// When the current window started.
    pub window_started_at: DateTime<Utc>,
    /// Pair: locked until. Account: no attempt before.
    pub locked_until: Option<DateTime<Utc>>,
    /// Last change (the account backoff forgets after a quiet window).
    pub updated_at: DateTime<Utc>,
}

impl Counter {
    fn empty(now: DateTime<Utc>) -> Self {
        Counter {
            failures: 0,
            window_started_at: now,
            locked_until: None,
            updated_at: now,
        }
    }
}

/// What a reservation decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Go ahead after `delay`; store `counters` (same order as the keys).
    Proceed {
        /// Wait this long before checking the password.
        delay: Duration,
        /// The counters with this attempt reserved.
        counters: Vec<Counter>,
    },
    /// Refused before any password check (nothing is counted).
    Refused(ErrorBody),
}

fn chrono(d: Duration) -> chrono::TimeDelta {
    chrono::TimeDelta::from_std(d).unwrap_or(chrono::TimeDelta::MAX)
}

fn secs_until(t: DateTime<Utc>, now: DateTime<Utc>) -> u64 {
    let ms = (t - now).num_milliseconds().max(0) as u64;
    ms.div_ceil(1000).max(1)
}

/// `base * 2^exponent`, at most `max`.
fn doubling(base: Duration, exponent: u32, max: Duration) -> Duration {
    base.checked_mul(1u32.checked_shl(exponent.min(31)).unwrap_or(u32::MAX))
        .unwrap_or(max)
        .min(max)
}

impl ThrottlePolicy {
    /// A counter as it stands at `now`, its expired window forgotten.
    fn current(&self, kind: KeyKind, c: Counter, now: DateTime<Utc>) -> Counter {
        let locked = c.locked_until.is_some_and(|t| t > now);
        let expired = match kind {
            KeyKind::Pair | KeyKind::Address => {
                !locked
                    && (c.window_started_at + chrono(self.window) <= now
                        || c.locked_until.is_some())
            }
            KeyKind::Account => !locked && c.updated_at + chrono(self.window) <= now,
            KeyKind::Rate(_) => c.window_started_at + chrono(RATE_WINDOW) <= now,
        };
        if expired { Counter::empty(now) } else { c }
    }

    /// Decides one attempt over its keys' counters (`None`: no row yet). Pure: time is an input.
    pub fn decide(
        &self,
        keys: &[ThrottleKey],
        counters: &[Option<Counter>],
        now: DateTime<Utc>,
    ) -> Decision {
        let current: Vec<Counter> = keys
            .iter()
            .zip(counters)
            .map(|(k, c)| self.current(k.kind, c.unwrap_or(Counter::empty(now)), now))
            .collect();
        let mut locked_for: Option<u64> = None;
        let mut rate_limited_for: Option<u64> = None;
        for (k, c) in keys.iter().zip(&current) {
            match k.kind {
                KeyKind::Pair | KeyKind::Account => {
                    if let Some(t) = c.locked_until.filter(|t| *t > now) {
                        locked_for = locked_for.max(Some(secs_until(t, now)));
                    }
                }
                KeyKind::Rate(limit) if c.failures >= limit as i32 => {
                    let ends = c.window_started_at + chrono(RATE_WINDOW);
                    rate_limited_for = rate_limited_for.max(Some(secs_until(ends, now)));
                }
                KeyKind::Rate(_) | KeyKind::Address => {}
            }
        }
        if let Some(secs) = locked_for {
            return Decision::Refused(ErrorBody::locked(secs));
        }
        if let Some(secs) = rate_limited_for {
            return Decision::Refused(ErrorBody::rate_limited(secs));
        }
        let mut delay = Duration::ZERO;
        let counters = keys
            .iter()
            .zip(current)
            .map(|(k, mut c)| {
                let before = c.failures.max(0) as u32;
                c.failures += 1;
                c.updated_at = now;
                match k.kind {
                    KeyKind::Pair if c.failures as u32 >= self.pair_threshold => {
                        c.locked_until = Some(now + chrono(self.lock));
                    }
                    KeyKind::Account if c.failures as u32 >= self.account_backoff_threshold => {
                        let n = c.failures as u32 - self.account_backoff_threshold;
                        let spacing = doubling(ACCOUNT_BACKOFF_BASE, n, self.account_backoff_max);
                        c.locked_until = Some(now + chrono(spacing));
                    }
                    KeyKind::Address if before >= self.address_delay_threshold => {
                        let n = before - self.address_delay_threshold;
                        delay = delay.max(doubling(ADDRESS_DELAY_BASE, n, self.address_delay_max));
                    }
                    _ => {}
                }
                c
            })
            .collect();
        Decision::Proceed { delay, counters }
    }
}

/// The outcome of [`reserve`].
#[derive(Debug, Clone, PartialEq)]
pub enum Reservation {
    /// Reserved: wait this long, then check the password.
    Granted(Duration),
    /// Refused before the check.
    Refused(ErrorBody),
}

/// Reserves one attempt against `keys`, atomically across replicas.
pub async fn reserve(
    pool: &PgPool,
    policy: &ThrottlePolicy,
    keys: &[ThrottleKey],
) -> Result<Reservation, sqlx::Error> {
    let mut keys = keys.to_vec();
    keys.sort_by(|a, b| a.key.cmp(&b.key));
    keys.dedup_by(|a, b| a.key == b.key);
    let names: Vec<String> = keys.iter().map(|k| k.key.clone()).collect();
    let mut tx = pool.begin().await?;
    // Missing rows are created (as empty counters) and every row is locked, in key order.
    let rows = repo::throttle::lock(&mut *tx, &names).await?;
    let now = rows.first().map_or_else(Utc::now, |r| r.now);
    let counters: Vec<Option<Counter>> = keys
        .iter()
        .map(|k| rows.iter().find(|r| r.key == k.key).map(|r| r.counter))
        .collect();
    match policy.decide(&keys, &counters, now) {
        Decision::Refused(body) => {
            tx.rollback().await?;
            Ok(Reservation::Refused(body))
        }
        Decision::Proceed { delay, counters } => {
            repo::throttle::store(&mut *tx, &names, &counters).await?;
            tx.commit().await?;
            Ok(Reservation::Granted(delay))
        }
    }
}

/// After a successful password check: forgets the pair's and the account's failures and gives
/// the address its reservation back.
pub async fn succeeded(db: impl PgExecutor<'_>, keys: &[ThrottleKey]) -> Result<(), sqlx::Error> {
    let names = |pick: fn(KeyKind) -> bool| -> Vec<String> {
        keys.iter()
            .filter(|k| pick(k.kind))
            .map(|k| k.key.clone())
            .collect()
    };
    repo::throttle::clear_and_decrement(
        db,
        &names(|k| matches!(k, KeyKind::Pair | KeyKind::Account)),
        &names(|k| k == KeyKind::Address),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use authstack_protocol::ErrorCode;

    fn policy() -> ThrottlePolicy {
        ThrottlePolicy {
            pair_threshold: 3,
            lock: Duration::from_secs(60),
            window: Duration::from_secs(300),
            account_backoff_threshold: 5,
            account_backoff_max: Duration::from_secs(10),
            address_delay_threshold: 2,
            address_delay_max: Duration::from_millis(500),
            login_rate: 4,
            register_rate: 2,
        }
    }

    /// Runs `n` attempts at one-second intervals, storing what each decision reserves.
    struct Sim {
        policy: ThrottlePolicy,
        keys: Vec<ThrottleKey>,
        counters: Vec<Option<Counter>>,
        now: DateTime<Utc>,
    }

    impl Sim {
        fn new(keys: Vec<ThrottleKey>) -> Self {
            let n = keys.len();
            Sim {
                policy: policy(),
                keys,
                counters: vec![None; n],
                now: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            }
        }

        fn attempt(&mut self) -> Decision {
            let d = self.policy.decide(&self.keys, &self.counters, self.now);
            if let Decision::Proceed { counters, .. } = &d {
                self.counters = counters.iter().copied().map(Some).collect();
            }
            self.now += chrono::TimeDelta::seconds(1);
            d
        }
    }

    fn refused(d: &Decision) -> Option<ErrorCode> {
        match d {
            Decision::Refused(b) => Some(b.code),
            Decision::Proceed { .. } => None,
        }
    }

    #[test]
    fn a_pair_is_locked_after_its_threshold_and_only_that_pair() {
        let p = policy();
        let mut sim = Sim::new(p.password_keys("acct", Some("10.0.0.1")));
        for _ in 0..3 {
            assert_eq!(refused(&sim.attempt()), None);
        }
        assert_eq!(refused(&sim.attempt()), Some(ErrorCode::AccountLocked));
        // Another address has its own pair (the shared account counter is still below 5).
        let other = p.password_keys("acct", Some("10.0.0.2"));
        let counters: Vec<Option<Counter>> = vec![None, sim.counters[1], None];
        assert!(matches!(
            p.decide(&other, &counters, sim.now),
            Decision::Proceed { .. }
        ));
    }

    #[test]
    fn the_account_backoff_spaces_attempts_and_doubles() {
        let p = policy();
        let keys = vec![p.password_keys("acct", None)[1].clone()];
        let mut sim = Sim::new(keys);
        for _ in 0..4 {
            assert_eq!(refused(&sim.attempt()), None);
        }
        // The 5th failure imposes 1 s, then 2 s, 4 s, ... up to 10 s.
        assert_eq!(refused(&sim.attempt()), None);
        let spacing = |sim: &Sim| sim.counters[0].unwrap().locked_until.unwrap() - sim.now;
        assert_eq!(spacing(&sim), chrono::TimeDelta::seconds(0));
        assert_eq!(refused(&sim.attempt()), None);
        assert_eq!(spacing(&sim), chrono::TimeDelta::seconds(1));
        assert_eq!(refused(&sim.attempt()), Some(ErrorCode::AccountLocked));
        sim.now += chrono::TimeDelta::seconds(5);
        assert_eq!(refused(&sim.attempt()), None);
        sim.now += chrono::TimeDelta::seconds(60);
        assert_eq!(refused(&sim.attempt()), None);
        assert_eq!(spacing(&sim), chrono::TimeDelta::seconds(7));
        // A quiet window forgets everything.
        sim.now += chrono::TimeDelta::seconds(301);
        assert_eq!(refused(&sim.attempt()), None);
        assert_eq!(sim.counters[0].unwrap().failures, 1);
    }

    #[test]
    fn a_busy_address_is_delayed_more_and_more_but_never_refused() {
        let p = policy();
        let keys = vec![p.password_keys("acct", Some("10.0.0.1"))[2].clone()];
        let mut sim = Sim::new(keys);
        let delays: Vec<u128> = (0..7)
            .map(|_| match sim.attempt() {
                Decision::Proceed { delay, .. } => delay.as_millis(),
                Decision::Refused(b) => panic!("refused: {b}"),
            })
            .collect();
        assert_eq!(delays, [0, 0, 100, 200, 400, 500, 500]);
    }

    #[test]
    fn rate_limits_count_attempts_per_minute() {
        let p = policy();
        let keys = vec![p.register_rate_key(Some("10.0.0.1")).unwrap()];
        let mut sim = Sim::new(keys);
        assert_eq!(refused(&sim.attempt()), None);
        assert_eq!(refused(&sim.attempt()), None);
        match sim.attempt() {
            Decision::Refused(b) => {
                assert_eq!(b.code, ErrorCode::RateLimited);
                assert_eq!(b.retry_after_secs, Some(58));
            }
            other => panic!("{other:?}"),
        }
        sim.now += chrono::TimeDelta::seconds(60);
        assert_eq!(refused(&sim.attempt()), None);
        assert!(
            ThrottlePolicy {
                register_rate: 0,
                ..p
            }
            .register_rate_key(Some("x"))
            .is_none()
        );
    }

    #[test]
    fn doubling_saturates() {
        assert_eq!(
            doubling(Duration::from_secs(1), 100, Duration::from_secs(7)),
            Duration::from_secs(7)
        );
        assert_eq!(
            doubling(Duration::from_millis(100), 3, Duration::from_secs(7)),
            Duration::from_millis(800)
        );
    }
}
