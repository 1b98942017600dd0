//! The repository layer: every SQL statement of auth-svc, one small function each.
//!
//! Statements are checked at compile time against the migrations (`sqlx::query!` and friends,
//! with the offline data in the workspace's `.sqlx/`; `make sqlx-prepare` regenerates it after
//! a statement or a migration changes). Functions take an executor (a pool, or a connection
//! inside the caller's transaction) and return typed rows; what to check, what to revoke and
//! which events to write stays in [`crate::service`], [`crate::throttle`] and
//! [`crate::outbox`].
//!
//! Every connection plans a statement once, generically, from the tables' statistics of that
//! moment — often tiny or none — and keeps the plan ([`crate::db`]). So a statement that runs per
//! request is written to leave the planner little choice but to find its rows by their keys:
//! rows related to a row are read by a subquery under `LIMIT` (a join or an `EXISTS` may become
//! a hash of the whole other table), rows named by an array parameter are matched with
//! `= ANY(...)` on their key or looked up per element (not joined to `unnest`), one lookup per
//! unique index instead of an `OR`, a row with a key of its own is searched by that key only
//! (other conditions computed, or wrapped in `IS TRUE`, so no other index is used to find it).
//! The test `statements_planned_on_tiny_tables_read_no_whole_table` checks PostgreSQL's plans of
//! the statements its requests run, planned in four states of the tables (never analyzed,
//! analyzed while empty, 5 and 64 rows); not run there: the locked refresh path's write (after a
//! lost race), a concurrent registration's email owner, the outbox relay's. Exempt: the
//! administrators' page total (a count of every account) and housekeeping
//! ([`maintenance::whole_table`]).

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
