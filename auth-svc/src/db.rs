//! PostgreSQL: the pool and the embedded migrations.
//!
//! Migrations are compiled into the binary and run at start-up under sqlx's advisory lock, so
//! two replicas starting at once apply them exactly once.

use std::borrow::Cow;
use std::time::Duration;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Connection, Executor, SqlSafeStr};

/// The schema everything lives in.
pub const SCHEMA: &str = "auth";

/// The migrations; `create_schema` when [`SCHEMA`] does not exist yet (creating a schema needs
/// CREATE on the database, which a least-privilege role that already owns it lacks).
fn migrator(create_schema: bool) -> Migrator {
    let migration = |version, name, sql: &'static str| {
        Migration::new(
            version,
            Cow::Borrowed(name),
            MigrationType::Simple,
            sql.into_sql_str(),
            false,
        )
    };
    let migrations = vec![
        migration(1, "init", include_str!("../migrations/0001_init.sql")),
        migration(
            2,
            "sessions_throttle_outbox",
            include_str!("../migrations/0002_sessions_throttle_outbox.sql"),
        ),
        migration(
            3,
            "refresh_writes_less",
            include_str!("../migrations/0003_refresh_writes_less.sql"),
        ),
        migration(
            4,
            "throttle_pending_checks",
            include_str!("../migrations/0004_throttle_pending_checks.sql"),
        ),
        migration(
            5,
            "throttle_pending_buckets",
            include_str!("../migrations/0005_throttle_pending_buckets.sql"),
        ),
        migration(
            6,
            "account_indexes",
            include_str!("../migrations/0006_account_indexes.sql"),
        ),
    ];
    Migrator {
        migrations: Cow::Owned(migrations),
        create_schemas: if create_schema {
            Cow::Borrowed(&[Cow::Borrowed(SCHEMA)])
        } else {
            Cow::Borrowed(&[])
        },
        table_name: Cow::Borrowed("auth._sqlx_migrations"),
        ..Migrator::DEFAULT
    }
}

/// A pooled connection idle for this long is checked (a round trip) before it is handed out;
/// one used more recently is handed out as it is. sqlx's default checks every connection on
/// every acquire, which cost `/users/me` a round trip and 15 % of its throughput
/// (docs/performance.md). A connection that breaks while in use is never returned to the pool
/// (sqlx checks it on release), so the ones skipped here were alive moments ago — the same
/// bargain as HikariCP's `aliveBypassWindowMs` (500 ms).
pub const PING_IF_IDLE_FOR: Duration = Duration::from_millis(500);

/// Set on every connection:
///
/// - prepared statements always run their generic plan, never re-planned per execution. Every
///   query here is an OLTP lookup or write by key, where the generic plan is the custom one;
///   PostgreSQL's default (`auto`) re-plans a statement whose custom plans look cheaper, which
///   the one taking arrays of callers (`unnest`, its size known only per call) always does:
///   planning cost `/users/me` half of PostgreSQL's CPU (docs/performance.md);
/// - no sequential scans where an index serves. A generic plan is made once per connection,
///   from the table's size at that moment, and kept until statistics change: a connection that
///   prepared its refresh lookup while `auth.refresh_tokens` held 64 rows scanned the whole
///   table on every refresh as it grew (5,300 rows read per refresh after 10 s, PostgreSQL's CPU
///   per refresh 1.8 ms instead of 0.5 ms). Statements over whole tables run in
///   [`crate::repo::maintenance::whole_table`], where sequential scans are allowed.
pub const SESSION_SETTINGS: &str =
    "SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off";

/// Connects (retrying for up to `wait` while the database is starting) and migrates.
pub async fn connect_and_migrate(
    url: &str,
    max_connections: u32,
    wait: Duration,
) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = url.parse()?;
    let options = options.application_name("auth-svc");
    let deadline = tokio::time::Instant::now() + wait;
    let pool = loop {
        let attempt = PgPoolOptions::new()
            .max_connections(max_connections)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .test_before_acquire(false)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute(SESSION_SETTINGS).await?;
                    Ok(())
                })
            })
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_IF_IDLE_FOR {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(options.clone())
            .await;
        match attempt {
            Ok(pool) => break pool,
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(error = %e, "database not reachable yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    };
    let schema_exists = crate::repo::maintenance::schema_exists(&pool, SCHEMA).await?;
    migrator(!schema_exists)
        .run(&pool)
        .await
        .map_err(|e| sqlx::Error::Migrate(Box::new(e)))?;
    Ok(pool)
}
