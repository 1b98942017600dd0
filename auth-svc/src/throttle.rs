//! Throttling of password checks and of per-address request rates, in PostgreSQL so every
//! replica sees the same counters.
//!
//! An attempt **reserves** a place before its password is checked: one transaction locks the
//! counters of all its keys (in key order), decides, and counts the attempt as *pending*. When
//! the check ends, a wrong password turns its place into a failure (and may set a lock), a
//! right one clears the failures, and either gives the place back ([`finish`]). A check in
//! flight counts against the limits as if it would fail, so parallel guesses cannot all pass a
//! check that each of them read before any of them failed; but only a finished wrong password
//! is a failure, so overlapping *right* logins are never locked out. The keys of a check:
//!
//! - **pair** (account, client address): `pair_threshold` failures within the window lock
//!   this address out of this account for `lock`. While failures and pending checks together
//!   reach the threshold, further attempts are busy: they wait for a place (the caller asks
//!   again, up to [`BUSY_WAIT_MAX`]), then are refused (`common.rate_limited`, retry after 1 s),
//!   never locked. Guesses from elsewhere lock nobody else out.
//! - **account** (every address together): from `account_backoff_threshold` failures on,
//!   attempts must be spaced by a delay that doubles with every further failure (1 s, 2 s,
//!   ...) up to `account_backoff_max`, one check at a time; below it, at most the remaining
//!   failures may be in flight. The failures are forgotten after a quiet `window`. This slows a
//!   distributed attack on one account without a hard lock.
//! - **address**: from `address_delay_threshold` failures and pending checks within the window
//!   on, every attempt from the address waits before its check, 100 ms doubling per further
//!   one up to `address_delay_max`. A shared proxy address is slowed down, never refused.
//! - **rate** (login, registration): at most `n` attempts per minute from one address.
//!
//! Places are counted in buckets of [`PENDING_TTL`]: a place never given back (a replica
//! stopped mid-check, a failure that could not be written) is forgotten when the bucket after
//! its own ends — one to two spans after it was taken, however busy the key — and counts as a
//! failure then, so a check whose failure was lost still counts. Unknown logins are keyed by
//! their normalised name, exactly like accounts.

use std::time::Duration;

use authstack_protocol::{ErrorBody, ErrorCode};
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use crate::repo;

/// Delay of the first attempt beyond an address's threshold; it doubles per failure.
pub const ADDRESS_DELAY_BASE: Duration = Duration::from_millis(100);
/// Spacing of the first attempt beyond an account's backoff threshold; it doubles per failure.
pub const ACCOUNT_BACKOFF_BASE: Duration = Duration::from_secs(1);
/// The window of per-address rate limits.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);
/// The span of one bucket of pending places. A place is forgotten one to two spans after it was
/// taken: longer than any check takes (the hashing queue, at most 30 s of address delay, the
/// hash itself), so only places of checks that will never end are forgotten.
pub const PENDING_TTL: Duration = Duration::from_secs(60);

/// The bucket of pending places that `now` falls in.
pub fn pending_epoch(now: DateTime<Utc>) -> i64 {
    now.timestamp().div_euclid(PENDING_TTL.as_secs() as i64)
}
/// `Retry-After` of an attempt refused because as many checks as it may have are in flight:
/// about the time one check takes to finish.
pub const BUSY_RETRY_AFTER_SECS: u64 = 1;
/// How long an attempt waits for a place while its pair or account is busy before it is
/// refused: overlapping right logins queue for about as long as a few checks take, and the
/// address delay (at most 2 s by default) plus this plus a hash stay within the gateway's RPC
/// deadline (5 s by default).
pub const BUSY_WAIT_MAX: Duration = Duration::from_secs(1);
/// The first pause of a waiting attempt before it asks again; it doubles up to
/// [`BUSY_POLL_MAX`] (each ask is one short transaction).
pub const BUSY_POLL_FIRST: Duration = Duration::from_millis(10);
/// The longest pause between two asks of a waiting attempt.
pub const BUSY_POLL_MAX: Duration = Duration::from_millis(80);
/// Attempts of one replica that may wait for a place at once; more are refused as busy at once,
/// so a flood of parallel guesses at one account costs one transaction each, not one per pause.
pub const MAX_WAITING_CHECKS: usize = 16;

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
    /// Places taken in bucket `pending_epoch` and not given back (never for rate keys).
    pub pending: i32,
    /// Places taken in the bucket before it and not given back.
    pub pending_before: i32,
    /// The bucket `pending` counts ([`pending_epoch`]).
    pub pending_epoch: i64,
    /// When the current window started.
    pub window_started_at: DateTime<Utc>,
    /// Pair: locked until. Account: no attempt before.
    pub locked_until: Option<DateTime<Utc>>,
    /// Last change (the account backoff forgets after a quiet window).
    pub updated_at: DateTime<Utc>,
}

impl Counter {
    /// Checks in flight: the places of both buckets.
    pub fn in_flight(&self) -> i32 {
        self.pending.max(0) + self.pending_before.max(0)
    }

    /// Moves the buckets on to `epoch`; returns the places forgotten on the way.
    fn roll_to(&mut self, epoch: i64) -> i32 {
        let forgotten = match epoch - self.pending_epoch {
            ..=0 => return 0,
            1 => std::mem::replace(&mut self.pending_before, self.pending),
            _ => self.pending + std::mem::take(&mut self.pending_before),
        };
        self.pending = 0;
        self.pending_epoch = epoch;
        forgotten.max(0)
    }

    fn empty(now: DateTime<Utc>) -> Self {
        Counter {
            failures: 0,
            pending: 0,
            pending_before: 0,
            pending_epoch: pending_epoch(now),
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
    Refused(Refusal),
}

/// Why an attempt was refused before its check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A locked pair or a backed-off account (`auth.account_locked`).
    Locked {
        /// When to try again.
        retry_after_secs: u64,
    },
    /// An address over its rate (`common.rate_limited`).
    RateLimited {
        /// When to try again.
        retry_after_secs: u64,
    },
    /// As many checks as the pair or account may have are in flight (`common.rate_limited`,
    /// retry after [`BUSY_RETRY_AFTER_SECS`]).
    Busy,
}

impl Refusal {
    /// The error answered.
    pub fn body(self) -> ErrorBody {
        match self {
            Refusal::Locked { retry_after_secs } => ErrorBody::locked(retry_after_secs),
            Refusal::RateLimited { retry_after_secs } => ErrorBody::rate_limited(retry_after_secs),
            Refusal::Busy => ErrorBody {
                retry_after_secs: Some(BUSY_RETRY_AFTER_SECS),
                ..ErrorBody::new(
                    ErrorCode::RateLimited,
                    "too many password checks for this account in progress; try again shortly",
                )
            },
        }
    }

    /// Its label in metrics.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Locked { .. } => "locked",
            Refusal::RateLimited { .. } => "rate_limited",
            Refusal::Busy => "busy",
        }
    }
}

/// How a reserved check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The password was right: the pair's and the account's failures are forgotten.
    Succeeded,
    /// The password was wrong (or the account unusable): a failure on every key.
    Failed,
    /// The check did not happen (an internal error): only its place is given back.
    Abandoned,
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
    /// A counter as it stands at `now`: its expired window forgotten, its buckets moved on,
    /// and the places they forgot counted as failures.
    fn current(&self, kind: KeyKind, mut c: Counter, now: DateTime<Utc>) -> Counter {
        let forgotten = c.roll_to(pending_epoch(now));
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
        if expired {
            c = Counter {
                pending: c.pending,
                pending_before: c.pending_before,
                pending_epoch: c.pending_epoch,
                ..Counter::empty(now)
            };
        }
        if forgotten > 0 {
            self.count_failures(kind, &mut c, forgotten, now);
        }
        c
    }

    /// Adds `n` failures to a counter, with the pair's lock or the account's spacing they set.
    fn count_failures(&self, kind: KeyKind, c: &mut Counter, n: i32, now: DateTime<Utc>) {
        c.failures += n;
        let failures = c.failures.max(0) as u32;
        let locked = c.locked_until.is_some_and(|t| t > now);
        match kind {
            KeyKind::Pair if failures >= self.pair_threshold && !locked => {
                c.locked_until = Some(now + chrono(self.lock));
            }
            KeyKind::Account if failures >= self.account_backoff_threshold => {
                let n = failures - self.account_backoff_threshold;
                let spacing = doubling(ACCOUNT_BACKOFF_BASE, n, self.account_backoff_max);
                c.locked_until = Some(now + chrono(spacing));
            }
            _ => {}
        }
    }

    /// Checks of a pair or account key that may be in flight at once, given its failures:
    /// those that could still fail without passing the threshold (one at a time once an
    /// account is backed off).
    fn allowed_in_flight(&self, kind: KeyKind, failures: i32) -> i32 {
        let threshold = match kind {
            KeyKind::Pair => self.pair_threshold,
            KeyKind::Account => self.account_backoff_threshold,
            KeyKind::Address | KeyKind::Rate(_) => return i32::MAX,
        };
        let left = i32::try_from(threshold).unwrap_or(i32::MAX) - failures;
        if kind == KeyKind::Account {
            left.max(1)
        } else {
            left
        }
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
        let mut busy_key = false;
        for (k, c) in keys.iter().zip(&current) {
            match k.kind {
                KeyKind::Pair | KeyKind::Account => {
                    if let Some(t) = c.locked_until.filter(|t| *t > now) {
                        locked_for = locked_for.max(Some(secs_until(t, now)));
                    }
                    busy_key |= c.in_flight() >= self.allowed_in_flight(k.kind, c.failures);
                }
                KeyKind::Rate(limit) if c.failures >= limit as i32 => {
                    let ends = c.window_started_at + chrono(RATE_WINDOW);
                    rate_limited_for = rate_limited_for.max(Some(secs_until(ends, now)));
                }
                KeyKind::Rate(_) | KeyKind::Address => {}
            }
        }
        if let Some(retry_after_secs) = locked_for {
            return Decision::Refused(Refusal::Locked { retry_after_secs });
        }
        if let Some(retry_after_secs) = rate_limited_for {
            return Decision::Refused(Refusal::RateLimited { retry_after_secs });
        }
        if busy_key {
            return Decision::Refused(Refusal::Busy);
        }
        let mut delay = Duration::ZERO;
        let counters = keys
            .iter()
            .zip(current)
            .map(|(k, mut c)| {
                c.updated_at = now;
                if let KeyKind::Rate(_) = k.kind {
                    c.failures += 1;
                    return c;
                }
                let before = (c.failures.max(0) + c.in_flight()) as u32;
                c.pending += 1;
                if k.kind == KeyKind::Address && before >= self.address_delay_threshold {
                    let n = before - self.address_delay_threshold;
                    delay = delay.max(doubling(ADDRESS_DELAY_BASE, n, self.address_delay_max));
                }
                c
            })
            .collect();
        Decision::Proceed { delay, counters }
    }

    /// A counter after its check with a place taken in bucket `epoch` ended with `outcome`.
    /// Pure: time is an input.
    pub fn finish(
        &self,
        kind: KeyKind,
        counter: Option<Counter>,
        epoch: i64,
        outcome: Outcome,
        now: DateTime<Utc>,
    ) -> Counter {
        let mut c = self.current(kind, counter.unwrap_or(Counter::empty(now)), now);
        if let KeyKind::Rate(_) = kind {
            return c;
        }
        // A place already forgotten was counted as a failure then: it is not counted again.
        let held = match c.pending_epoch - epoch {
            0 => Some(&mut c.pending),
            1 => Some(&mut c.pending_before),
            _ => None,
        };
        let forgotten = held.is_none();
        if let Some(places) = held {
            *places = (*places - 1).max(0);
        }
        c.updated_at = now;
        match (outcome, kind) {
            (Outcome::Succeeded, KeyKind::Pair | KeyKind::Account) => {
                c.failures = 0;
                c.locked_until = None;
                c.window_started_at = now;
            }
            (Outcome::Failed, _) if !forgotten => self.count_failures(kind, &mut c, 1, now),
            _ => {}
        }
        c
    }
}

/// A place reserved for one check on its keys, ended by [`finish`].
#[derive(Debug, Clone, PartialEq)]
pub struct Place {
    keys: Vec<ThrottleKey>,
    epoch: i64,
}

/// The outcome of [`reserve`].
#[derive(Debug, Clone, PartialEq)]
pub enum Reservation {
    /// Reserved: wait `delay`, then check the password, then end the `place`.
    Granted {
        /// The address delay.
        delay: Duration,
        /// The place taken.
        place: Place,
    },
    /// Refused before the check.
    Refused(Refusal),
}

/// `keys` sorted and deduplicated (the order every transaction locks their rows in, so two never
/// wait for each other in a cycle), and their names.
fn in_lock_order<'a>(
    keys: impl Iterator<Item = &'a ThrottleKey>,
) -> (Vec<ThrottleKey>, Vec<String>) {
    let mut keys: Vec<ThrottleKey> = keys.cloned().collect();
    keys.sort_by(|a, b| a.key.cmp(&b.key));
    keys.dedup_by(|a, b| a.key == b.key);
    let names = keys.iter().map(|k| k.key.clone()).collect();
    (keys, names)
}

/// The counters of `keys` (named `names`, in lock order), their rows created if missing and
/// locked, in the order of `keys`, and the database's clock.
async fn lock_counters(
    conn: &mut PgConnection,
    keys: &[ThrottleKey],
    names: &[String],
) -> Result<(Vec<Option<Counter>>, DateTime<Utc>), sqlx::Error> {
    let rows = repo::throttle::lock(conn, names).await?;
    let now = rows.first().map_or_else(Utc::now, |r| r.now);
    let counters = keys
        .iter()
        .map(|k| rows.iter().find(|r| r.key == k.key).map(|r| r.counter))
        .collect();
    Ok((counters, now))
}

/// Reserves one attempt against `keys`, atomically across replicas.
pub async fn reserve(
    pool: &PgPool,
    policy: &ThrottlePolicy,
    keys: &[ThrottleKey],
) -> Result<Reservation, sqlx::Error> {
    let (keys, names) = in_lock_order(keys.iter());
    let mut tx = pool.begin().await?;
    let (counters, now) = lock_counters(&mut tx, &keys, &names).await?;
    match policy.decide(&keys, &counters, now) {
        Decision::Refused(refusal) => {
            tx.rollback().await?;
            Ok(Reservation::Refused(refusal))
        }
        Decision::Proceed { delay, counters } => {
            repo::throttle::store(&mut *tx, &names, &counters).await?;
            tx.commit().await?;
            let place = Place {
                keys,
                epoch: pending_epoch(now),
            };
            Ok(Reservation::Granted { delay, place })
        }
    }
}

/// Ends the check of `place` with `outcome`, in the caller's transaction (a success is stored
/// with the login it allows).
pub async fn finish(
    conn: &mut PgConnection,
    policy: &ThrottlePolicy,
    place: &Place,
    outcome: Outcome,
) -> Result<(), sqlx::Error> {
    let held = place
        .keys
        .iter()
        .filter(|k| !matches!(k.kind, KeyKind::Rate(_)));
    let (keys, names) = in_lock_order(held);
    let (stored, now) = lock_counters(conn, &keys, &names).await?;
    let counters: Vec<Counter> = keys
        .iter()
        .zip(stored)
        .map(|(k, c)| policy.finish(k.kind, c, place.epoch, outcome, now))
        .collect();
    repo::throttle::store(&mut *conn, &names, &counters).await
}

/// [`finish`] in a transaction of its own.
pub async fn finish_alone(
    pool: &PgPool,
    policy: &ThrottlePolicy,
    place: &Place,
    outcome: Outcome,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    finish(&mut tx, policy, place, outcome).await?;
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Attempts at one-second intervals, each finished as told before the next one starts,
    /// storing what each decision and ending stores.
    struct Sim {
        policy: ThrottlePolicy,
        keys: Vec<ThrottleKey>,
        counters: Vec<Option<Counter>>,
        now: DateTime<Utc>,
        /// The buckets of the places taken and not ended, oldest first.
        places: std::collections::VecDeque<i64>,
    }

    impl Sim {
        fn new(keys: Vec<ThrottleKey>) -> Self {
            let n = keys.len();
            Sim {
                policy: policy(),
                keys,
                counters: vec![None; n],
                // At the start of a bucket.
                now: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
                places: Default::default(),
            }
        }

        /// Reserves one attempt (left pending).
        fn start(&mut self) -> Decision {
            let d = self.policy.decide(&self.keys, &self.counters, self.now);
            if let Decision::Proceed { counters, .. } = &d {
                self.counters = counters.iter().copied().map(Some).collect();
                self.places.push_back(pending_epoch(self.now));
            }
            d
        }

        /// Ends the oldest pending attempt.
        fn end(&mut self, outcome: Outcome) {
            let epoch = self.places.pop_front().expect("a place to end");
            self.counters = self
                .keys
                .iter()
                .zip(&self.counters)
                .map(|(k, c)| Some(self.policy.finish(k.kind, *c, epoch, outcome, self.now)))
                .collect();
        }

        /// A whole attempt that ends with `outcome` if it is not refused, then a second passes.
        fn attempt(&mut self, outcome: Outcome) -> Decision {
            let d = self.start();
            if let Decision::Proceed { .. } = d {
                self.end(outcome);
            }
            self.now += chrono::TimeDelta::seconds(1);
            d
        }
    }

    fn refused(d: &Decision) -> Option<ErrorCode> {
        match d {
            Decision::Refused(r) => Some(r.body().code),
            Decision::Proceed { .. } => None,
        }
    }

    #[test]
    fn a_pair_is_locked_after_its_threshold_and_only_that_pair() {
        let p = policy();
        let mut sim = Sim::new(p.password_keys("acct", Some("10.0.0.1")));
        for _ in 0..3 {
            assert_eq!(refused(&sim.attempt(Outcome::Failed)), None);
        }
        let locked = sim.attempt(Outcome::Succeeded);
        assert_eq!(refused(&locked), Some(ErrorCode::AccountLocked));
        // Another address has its own pair (the shared account counter is still below 5).
        let other = p.password_keys("acct", Some("10.0.0.2"));
        let counters: Vec<Option<Counter>> = vec![None, sim.counters[1], None];
        assert!(matches!(
            p.decide(&other, &counters, sim.now),
            Decision::Proceed { .. }
        ));
    }

    #[test]
    fn checks_in_flight_are_bounded_by_the_failures_left_but_never_lock() {
        let p = policy();
        let mut sim = Sim::new(p.password_keys("acct", Some("10.0.0.1")));
        // Threshold 3: three checks may run at once, the fourth is busy, not locked.
        for _ in 0..3 {
            assert_eq!(refused(&sim.start()), None);
        }
        assert_eq!(sim.start(), Decision::Refused(Refusal::Busy));
        assert_eq!(Refusal::Busy.body().code, ErrorCode::RateLimited);
        assert_eq!(Refusal::Busy.body().retry_after_secs, Some(1));
        // They were right: the pair is clear, nothing pending, nothing locked.
        for _ in 0..3 {
            sim.end(Outcome::Succeeded);
        }
        let pair = sim.counters[0].unwrap();
        assert_eq!(
            (pair.failures, pair.in_flight(), pair.locked_until),
            (0, 0, None)
        );
        // Two failures leave room for one check at a time.
        sim.attempt(Outcome::Failed);
        sim.attempt(Outcome::Failed);
        assert_eq!(refused(&sim.start()), None);
        assert_eq!(sim.start(), Decision::Refused(Refusal::Busy));
        // Its failure locks the pair.
        sim.end(Outcome::Failed);
        assert_eq!(refused(&sim.start()), Some(ErrorCode::AccountLocked));
    }

    #[test]
    fn places_never_given_back_are_forgotten_within_two_spans_and_count_as_failures() {
        let p = policy();
        let mut sim = Sim::new(p.password_keys("acct", Some("10.0.0.1")));
        // A place taken and never given back (its replica stopped mid-check)...
        sim.start();
        let lost = sim.places.pop_front().unwrap();
        // ...while the key stays in use: checks every 30 s that end without an outcome.
        let span = chrono(PENDING_TTL).num_seconds();
        for t in (30..2 * span).step_by(30) {
            sim.now += chrono::TimeDelta::seconds(30);
            assert_eq!(refused(&sim.start()), None, "at {t} s");
            assert_eq!(
                sim.counters[0].unwrap().in_flight(),
                2,
                "at {t} s: still held"
            );
            sim.end(Outcome::Abandoned);
        }
        // Two spans after it was taken it is forgotten, and counted as a failure on every key.
        sim.now += chrono::TimeDelta::seconds(30);
        assert_eq!(refused(&sim.start()), None);
        let counters: Vec<Counter> = sim.counters.iter().map(|c| c.unwrap()).collect();
        assert_eq!(
            counters.iter().map(|c| c.failures).collect::<Vec<_>>(),
            [1, 1, 1]
        );
        assert_eq!(counters[0].in_flight(), 1, "only the check just started");
        // An abandoned check gives its place back and counts nothing.
        sim.end(Outcome::Abandoned);
        let pair = sim.counters[0].unwrap();
        assert_eq!((pair.failures, pair.in_flight()), (1, 0));
        // A check ending after its place was forgotten is not counted twice.
        sim.start();
        sim.now += chrono::TimeDelta::seconds(2 * span);
        sim.end(Outcome::Failed);
        let pair = sim.counters[0].unwrap();
        assert_eq!((pair.failures, pair.in_flight()), (2, 0));
        assert_ne!(lost, pending_epoch(sim.now));
    }

    #[test]
    fn the_account_backoff_spaces_attempts_and_doubles() {
        let p = policy();
        let keys = vec![p.password_keys("acct", None)[1].clone()];
        let mut sim = Sim::new(keys);
        for _ in 0..4 {
            assert_eq!(refused(&sim.attempt(Outcome::Failed)), None);
        }
        // Below the threshold, at most the failures left may be in flight (one here).
        assert_eq!(refused(&sim.start()), None);
        assert_eq!(sim.start(), Decision::Refused(Refusal::Busy));
        // The 5th failure imposes 1 s, then 2 s, 4 s, ... up to 10 s, after the failure.
        sim.end(Outcome::Failed);
        let spacing = |sim: &Sim| sim.counters[0].unwrap().locked_until.unwrap() - sim.now;
        assert_eq!(spacing(&sim), chrono::TimeDelta::seconds(1));
        assert_eq!(refused(&sim.start()), Some(ErrorCode::AccountLocked));
        sim.now += chrono::TimeDelta::seconds(1);
        assert_eq!(refused(&sim.attempt(Outcome::Failed)), None);
        assert_eq!(spacing(&sim), chrono::TimeDelta::seconds(1));
        assert_eq!(
            refused(&sim.attempt(Outcome::Failed)),
            Some(ErrorCode::AccountLocked)
        );
        sim.now += chrono::TimeDelta::seconds(5);
        // Backed off, one check at a time.
        assert_eq!(refused(&sim.start()), None);
        assert_eq!(sim.start(), Decision::Refused(Refusal::Busy));
        sim.end(Outcome::Failed);
        assert_eq!(spacing(&sim), chrono::TimeDelta::seconds(4));
        sim.now += chrono::TimeDelta::seconds(60);
        assert_eq!(refused(&sim.attempt(Outcome::Failed)), None);
        assert_eq!(sim.counters[0].unwrap().failures, 8);
        assert_eq!(spacing(&sim), chrono::TimeDelta::seconds(7));
        sim.now += chrono::TimeDelta::seconds(60);
        sim.attempt(Outcome::Failed);
        assert_eq!(spacing(&sim), chrono::TimeDelta::seconds(9), "at most 10 s");
        // A quiet window forgets everything.
        sim.now += chrono::TimeDelta::seconds(301);
        assert_eq!(refused(&sim.attempt(Outcome::Failed)), None);
        assert_eq!(sim.counters[0].unwrap().failures, 1);
        // A right password forgets the failures at once.
        sim.attempt(Outcome::Succeeded);
        assert_eq!(sim.counters[0].unwrap().failures, 0);
    }

    #[test]
    fn a_busy_address_is_delayed_more_and_more_but_never_refused() {
        let p = policy();
        let keys = vec![p.password_keys("acct", Some("10.0.0.1"))[2].clone()];
        let mut sim = Sim::new(keys);
        let delays: Vec<u128> = (0..7)
            .map(|_| match sim.attempt(Outcome::Failed) {
                Decision::Proceed { delay, .. } => delay.as_millis(),
                Decision::Refused(r) => panic!("refused: {}", r.body()),
            })
            .collect();
        assert_eq!(delays, [0, 0, 100, 200, 400, 500, 500]);
        // Checks in flight count like failures; a right password takes only its own back.
        let mut sim = Sim::new(vec![p.password_keys("acct", Some("10.0.0.1"))[2].clone()]);
        let delays: Vec<u128> = (0..4)
            .map(|_| match sim.start() {
                Decision::Proceed { delay, .. } => delay.as_millis(),
                Decision::Refused(r) => panic!("refused: {}", r.body()),
            })
            .collect();
        assert_eq!(delays, [0, 0, 100, 200]);
        for _ in 0..4 {
            sim.end(Outcome::Succeeded);
        }
        assert_eq!(sim.counters[0].unwrap().failures, 0);
    }

    #[test]
    fn rate_limits_count_attempts_per_minute() {
        let p = policy();
        let keys = vec![p.register_rate_key(Some("10.0.0.1")).unwrap()];
        let mut sim = Sim::new(keys);
        assert_eq!(refused(&sim.attempt(Outcome::Succeeded)), None);
        assert_eq!(refused(&sim.attempt(Outcome::Succeeded)), None);
        match sim.attempt(Outcome::Succeeded) {
            Decision::Refused(r) => {
                assert_eq!(
                    r,
                    Refusal::RateLimited {
                        retry_after_secs: 58
                    }
                );
                assert_eq!(r.body().code, ErrorCode::RateLimited);
            }
            other => panic!("{other:?}"),
        }
        sim.now += chrono::TimeDelta::seconds(60);
        assert_eq!(refused(&sim.attempt(Outcome::Succeeded)), None);
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
