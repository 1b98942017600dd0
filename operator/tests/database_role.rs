//! auth-svc's least-privilege PostgreSQL role on a real PostgreSQL: the exact postStart hook the
//! operator puts into the managed PostgreSQL container creates it; auth-svc migrates and works
//! as it; it owns schema `auth` and can do nothing else.

use std::process::Command;

use authstack_operator::builders::database_role;
use authstack_testkit::cleanup::CleanupGuard;
use authstack_testkit::postgres::{TestDatabase, admin_url};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, Row};

struct World {
    db: TestDatabase,
    role: String,
    cleanup: CleanupGuard,
}

async fn world() -> World {
    let db = TestDatabase::create().await.expect("postgres reachable");
    let role = format!(
        "auth_svc_test_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let cleanup = {
        let (db, role) = (
            TestDatabase {
                name: db.name.clone(),
                url: db.url.clone(),
            },
            role.clone(),
        );
        CleanupGuard::new(async move {
            let _ = db.drop_database().await;
            if let Ok(mut admin) = PgConnection::connect(&admin_url()).await {
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP ROLE IF EXISTS {role}")))
                    .execute(&mut admin)
                    .await;
            }
        })
    };
    World { db, role, cleanup }
}

/// Runs the hook as kubelet would in the PostgreSQL container (same variables), against the
/// test server instead of the local socket.
fn run_hook(w: &World, password: &str) {
    let admin: PgConnectOptions = admin_url().parse().unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(database_role::hook_script())
        .env("PGHOST", admin.get_host())
        .env("PGPORT", admin.get_port().to_string())
        .env("POSTGRES_USER", admin.get_username())
        .env("POSTGRES_DB", &w.db.name)
        .env(database_role::ROLE_ENV, &w.role)
        .env(database_role::PASSWORD_ENV, password)
        .output()
        .expect("sh runs");
    assert!(
        out.status.success(),
        "hook failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn url_as(w: &World, password: &str) -> String {
    let options: PgConnectOptions = w.db.url.parse().unwrap();
    format!(
        "postgres://{}:{password}@{}:{}/{}",
        w.role,
        options.get_host(),
        options.get_port(),
        w.db.name
    )
}

async fn admin(w: &World) -> PgConnection {
    PgConnection::connect(&w.db.url).await.unwrap()
}

/// What the role may do, checked as the role and as the superuser.
async fn assert_least_privilege(w: &World, password: &str) {
    let mut a = admin(w).await;
    let row = sqlx::query(
        "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolcanlogin
           FROM pg_roles WHERE rolname = $1",
    )
    .bind(&w.role)
    .fetch_one(&mut a)
    .await
    .unwrap();
    let flags: Vec<bool> = (0..6).map(|i| row.get(i)).collect();
    assert_eq!(
        flags,
        [false, false, false, false, false, true],
        "role attributes"
    );
    let owner: String = sqlx::query_scalar(
        "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'auth'",
    )
    .fetch_one(&mut a)
    .await
    .unwrap();
    assert_eq!(owner, w.role);
    let foreign: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'auth' AND pg_get_userbyid(c.relowner) <> $1",
    )
    .bind(&w.role)
    .fetch_all(&mut a)
    .await
    .unwrap();
    assert!(foreign.is_empty(), "not owned by the role: {foreign:?}");

    let mut r = PgConnection::connect(&url_as(w, password)).await.unwrap();
    for refused in [
        "CREATE SCHEMA elsewhere",
        "CREATE TABLE public.elsewhere (id int)",
        "SELECT rolpassword FROM pg_authid",
        "CREATE ROLE another",
        "CREATE DATABASE another",
    ] {
        let err = sqlx::query(refused).execute(&mut r).await.unwrap_err();
        let code = err
            .as_database_error()
            .and_then(|e| e.code())
            .unwrap_or_default();
        assert_eq!(code, "42501", "{refused}: {err}");
    }
    for allowed in [
        "CREATE TABLE auth.scratch (id int)",
        "DROP TABLE auth.scratch",
    ] {
        sqlx::query(allowed).execute(&mut r).await.unwrap();
    }
}

#[tokio::test]
async fn a_fresh_database_gets_the_role_and_auth_svc_migrates_as_it() {
    let w = world().await;
    run_hook(&w, "first-password");
    let pool = auth_svc::db::connect_and_migrate(
        &url_as(&w, "first-password"),
        2,
        std::time::Duration::from_secs(5),
    )
    .await
    .expect("auth-svc migrates as its role");
    let accounts: i64 = sqlx::query_scalar("SELECT count(*) FROM auth.accounts")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(accounts, 0);
    pool.close().await;
    assert_least_privilege(&w, "first-password").await;
    w.cleanup.run().await;
}

#[tokio::test]
async fn an_existing_superuser_schema_is_handed_over_and_the_hook_is_idempotent() {
    let w = world().await;
    // What earlier versions did: auth-svc migrated as the superuser.
    auth_svc::db::connect_and_migrate(&w.db.url, 2, std::time::Duration::from_secs(5))
        .await
        .unwrap()
        .close()
        .await;
    let password_hash = |w: &World| {
        let url = w.db.url.clone();
        let role = w.role.clone();
        async move {
            let mut a = PgConnection::connect(&url).await.unwrap();
            sqlx::query_scalar::<_, Option<String>>(
                "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
            )
            .bind(role)
            .fetch_one(&mut a)
            .await
            .unwrap()
        }
    };
    run_hook(&w, "first-password");
    let first = password_hash(&w).await;
    run_hook(&w, "second-password");
    let second = password_hash(&w).await;
    assert!(first.is_some() && second.is_some());
    assert_ne!(
        first, second,
        "a new password in the Secret is applied at the next start"
    );
    auth_svc::db::connect_and_migrate(
        &url_as(&w, "second-password"),
        2,
        std::time::Duration::from_secs(5),
    )
    .await
    .expect("auth-svc runs as its role on the handed-over schema")
    .close()
    .await;
    assert_least_privilege(&w, "second-password").await;
    w.cleanup.run().await;
}
