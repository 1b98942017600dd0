//! A throw-away PostgreSQL database per test, on the real server.

use sqlx::{Connection, Executor, PgConnection};

/// Server-level URL used to create and drop test databases (`TEST_DATABASE_ADMIN_URL`,
/// default `postgres://postgres@127.0.0.1:5432/postgres`).
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A freshly created, empty database; [`TestDatabase::drop_database`] removes it.
pub struct TestDatabase {
    /// Database name (`authstack_test_<random>`).
    pub name: String,
    /// Connection URL of the database.
    pub url: String,
}

impl TestDatabase {
    /// Creates `authstack_test_<random>` on the server behind [`admin_url`].
    pub async fn create() -> Result<Self, sqlx::Error> {
        let admin = admin_url();
        let name = format!(
            "authstack_test_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..16]
        );
        let mut conn = PgConnection::connect(&admin).await?;
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await?;
        conn.close().await?;
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        let url = format!("{base}/{name}");
        Ok(TestDatabase { name, url })
    }

    /// Drops the database, disconnecting anyone still connected.
    pub async fn drop_database(&self) -> Result<(), sqlx::Error> {
        let mut conn = PgConnection::connect(&admin_url()).await?;
        conn.execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .await?;
        conn.close().await
    }
}
