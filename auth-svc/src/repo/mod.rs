//! The repository layer: every SQL statement of auth-svc, one small function each.
//!
//! Statements are checked at compile time against the migrations (`sqlx::query!` and friends,
//! with the offline data in the workspace's `.sqlx/`; `make sqlx-prepare` regenerates it after
//! a statement or a migration changes). Functions take an executor (a pool, or a connection
//! inside the caller's transaction) and return typed rows; what to check, what to revoke and
//! which events to write stays in [`crate::service`], [`crate::throttle`] and
//! [`crate::outbox`].

pub(crate) mod accounts;
pub(crate) mod maintenance;
pub(crate) mod outbox;
pub(crate) mod processed;
pub(crate) mod refresh;
pub(crate) mod sessions;
pub(crate) mod throttle;

/// A [`std::time::Duration`] as the seconds `make_interval(secs => ...)` takes.
pub(crate) fn secs(d: std::time::Duration) -> f64 {
    d.as_secs_f64()
}
