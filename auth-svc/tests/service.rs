//! The service library against the real PostgreSQL server: idempotent redelivery, concurrent
//! migrations, rehashing on login, housekeeping.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use auth_svc::keys::KeyStore;
use auth_svc::outbox::RelaySignal;
use auth_svc::passwords::PasswordHasherPool;
use auth_svc::policy::Policy;
use auth_svc::service::{AuthService, ServiceSettings};
use auth_svc::throttle::{BUSY_WAIT_MAX, MAX_WAITING_CHECKS, PENDING_TTL, ThrottlePolicy};
use auth_svc::tokens::AccessTokenSettings;
use authstack_bus::{CancellationToken, IncomingCall, RpcHandler};
use authstack_keyring::material::generate;
use authstack_keyring::{KeyRing, SigningAlgorithm};
use authstack_protocol::ErrorCode;
use authstack_protocol::rpc::{
    AccessCheckParams, AdminUpdate, AdminUpdateParams, Call, CallContext, ChangePasswordParams,
    DeleteMeParams, ListUsersParams, LoginParams, RefreshTokenParams, RegisterParams, RpcReply,
    RpcRequest, Secret, UpdateMeParams, UserIdParams,
};
use authstack_testkit::cleanup::CleanupGuard;
use authstack_testkit::postgres::TestDatabase;
use uuid::Uuid;

async fn service(db: &TestDatabase, shutdown: &CancellationToken) -> Arc<AuthService> {
    service_with(db, shutdown, cheap_hasher(), Duration::ZERO).await
}

/// Argon2id at a test's cost.
fn cheap_hasher() -> PasswordHasherPool {
    PasswordHasherPool::new(8192, 1, 1, 2, 16).unwrap()
}

async fn service_with(
    db: &TestDatabase,
    shutdown: &CancellationToken,
    hasher: PasswordHasherPool,
    reuse_grace: Duration,
) -> Arc<AuthService> {
    service_tweaked(db, shutdown, hasher, reuse_grace, |_| {}).await
}

/// [`service_with`], its settings changed by `tweak` first.
async fn service_tweaked(
    db: &TestDatabase,
    _shutdown: &CancellationToken,
    hasher: PasswordHasherPool,
    reuse_grace: Duration,
    tweak: impl FnOnce(&mut ServiceSettings),
) -> Arc<AuthService> {
    let pool = auth_svc::db::connect_and_migrate(&db.url, 8, Duration::from_secs(10))
        .await
        .unwrap();
    service_on(pool, hasher, reuse_grace, tweak)
}

/// The service on `pool`, its settings changed by `tweak` first.
fn service_on(
    pool: sqlx::PgPool,
    hasher: PasswordHasherPool,
    reuse_grace: Duration,
    tweak: impl FnOnce(&mut ServiceSettings),
) -> Arc<AuthService> {
    let ring = KeyRing::with_active_key(
        generate(SigningAlgorithm::EdDSA).unwrap(),
        chrono::Utc::now(),
    );
    let mut settings = ServiceSettings {
        tokens: AccessTokenSettings {
            issuer: "iss".into(),
            audience: "aud".into(),
            ttl_secs: 900,
        },
        refresh_ttl: Duration::from_secs(3600),
        reuse_grace,
        session_max_lifetime: Duration::from_secs(86_400),
        throttle: ThrottlePolicy {
            pair_threshold: 5,
            lock: Duration::from_secs(60),
            window: Duration::from_secs(60),
            account_backoff_threshold: 20,
            account_backoff_max: Duration::from_secs(60),
            address_delay_threshold: 50,
            address_delay_max: Duration::from_secs(1),
            login_rate: 0,
            register_rate: 0,
        },
        clock_skew_secs: 30,
        token_cache_capacity: 100,
        processed_request_retention: Duration::from_secs(3600),
        ended_retention: Duration::from_secs(86_400),
    };
    tweak(&mut settings);
    AuthService::new(
        pool,
        hasher,
        KeyStore::fixed(&ring).unwrap(),
        settings,
        Policy::default(),
        RelaySignal::default(),
    )
}

/// The events exchange of the service under test (admitted by auth-svc's broker permissions).
fn events_exchange(db: &str) -> String {
    authstack_bus::Names::scoped(db).events_exchange
}

/// A fresh database, and the guard that drops it (and the exchange its service declares) at the
/// end of the test, or when the test panics.
async fn database() -> (TestDatabase, CleanupGuard) {
    authstack_testkit::logs::capture();
    authstack_testkit::logs::record_secret("correct horse battery");
    let db = TestDatabase::create().await.unwrap();
    let (name, url) = (db.name.clone(), db.url.clone());
    let guard = CleanupGuard::new(async move {
        let exchange = events_exchange(&name);
        let _ = authstack_bus::delete_topology(
            "amqp://guest:guest@127.0.0.1:5672/%2f",
            &[],
            &[&exchange],
        )
        .await;
        let _ = TestDatabase { name, url }.drop_database().await;
    });
    (db, guard)
}

fn call(call: &Call, id: &str, redelivered: bool) -> IncomingCall {
    IncomingCall {
        request: RpcRequest::new(call, CallContext::default()),
        request_id: id.into(),
        redelivered,
    }
}

fn register(name: &str) -> Call {
    Call::Register(RegisterParams {
        email: format!("{name}@example.com"),
        username: name.into(),
        password: "correct horse battery".into(),
        display_name: None,
    })
}

fn result(reply: RpcReply) -> Result<serde_json::Value, ErrorCode> {
    match reply {
        RpcReply::Result(raw) => Ok(serde_json::from_str(raw.get()).unwrap()),
        RpcReply::Error(e) => Err(e.code),
    }
}

#[tokio::test]
async fn redelivered_requests_replay_the_first_reply() {
    let (db, cleanup) = database().await;
    let shutdown = CancellationToken::new();
    let svc = service(&db, &shutdown).await;

    let first = result(
        svc.handle(call(&register("quinn"), "m-1", false), None)
            .await,
    )
    .unwrap();
    let again = result(
        svc.handle(call(&register("quinn"), "m-1", true), None)
            .await,
    )
    .unwrap();
    assert_eq!(first, again, "the redelivery returns the stored reply");
    // A different call with the same content is a new request: a real conflict.
    assert_eq!(
        result(
            svc.handle(call(&register("quinn"), "m-2", false), None)
                .await
        ),
        Err(ErrorCode::UserExists)
    );

    // Token-bearing replies are not stored: a redelivered login is refused, not re-applied.
    let login = Call::Login(LoginParams {
        login: "quinn".into(),
        password: "correct horse battery".into(),
    });
    result(svc.handle(call(&login, "m-3", false), None).await).unwrap();
    assert_eq!(
        result(svc.handle(call(&login, "m-3", true), None).await),
        Err(ErrorCode::Conflict)
    );

    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let accounts: i64 = sqlx::query_scalar("SELECT count(*) FROM auth.accounts")
        .fetch_one(&pool)
        .await
        .unwrap();
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM auth.refresh_tokens")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!((accounts, sessions), (1, 1));
    let stored: Option<serde_json::Value> =
        sqlx::query_scalar("SELECT reply FROM auth.processed_requests WHERE request_id = 'm-3'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(
        stored.is_none(),
        "replies with credentials are never stored"
    );
    pool.close().await;
    shutdown.cancel();
    cleanup.run().await;
}

/// Registers `name` and logs in (request ids `{prefix}-0` and `{prefix}-1`): the token pair.
async fn logged_in(svc: &AuthService, name: &str, prefix: &str) -> serde_json::Value {
    let registered = call(&register(name), &format!("{prefix}-0"), false);
    result(svc.handle(registered, None).await).unwrap();
    let login = Call::Login(LoginParams {
        login: name.into(),
        password: "correct horse battery".into(),
    });
    result(
        svc.handle(call(&login, &format!("{prefix}-1"), false), None)
            .await,
    )
    .unwrap()
}

/// A refresh presenting `token`.
fn refresh_with(token: &serde_json::Value) -> Call {
    Call::Refresh(RefreshTokenParams {
        refresh_token: token.as_str().unwrap().into(),
    })
}

/// When a batch's rotation commits but its reply is lost, its calls take the single path with
/// the same request ids and find their tokens spent — by themselves, not by a thief. Without a
/// grace window to answer from, that must not count as reuse: the revocation is written in the
/// transaction that claims the request id, which is taken, so it is rolled back and the
/// request answered as a replay; the session lives on.
#[tokio::test]
async fn a_refresh_finding_its_token_spent_by_its_own_request_is_not_reuse() {
    let (db, cleanup) = database().await;
    let shutdown = CancellationToken::new();
    let svc = service(&db, &shutdown).await; // no grace window
    let pair = logged_in(&svc, "rui", "r").await;
    let refresh = refresh_with(&pair["refresh_token"]);
    let next = result(svc.handle(call(&refresh, "r-2", false), None).await).unwrap();
    // The same request once more, a first delivery as far as the single path knows.
    assert_eq!(
        result(svc.handle(call(&refresh, "r-2", false), None).await),
        Err(ErrorCode::Conflict)
    );
    let after = result(
        svc.handle(
            call(&refresh_with(&next["refresh_token"]), "r-3", false),
            None,
        )
        .await,
    );
    assert!(after.is_ok(), "the session was revoked: {after:?}");
    // A different request presenting the spent token is reuse, as before.
    assert_eq!(
        result(svc.handle(call(&refresh, "r-4", false), None).await),
        Err(ErrorCode::InvalidToken)
    );
    shutdown.cancel();
    cleanup.run().await;
}

/// A batch's refresh calls are prepared together (`prepare`: their tokens read in one query,
/// those that can be rotated in one statement); each then answers as it would alone — also a
/// retry whose token was spent after the batch was read (the locked path: the grace window's
/// answer), and a token presented twice in one batch (rotated once, no forked session).
#[tokio::test]
async fn refreshes_prepared_with_their_batch_answer_as_refreshes_alone() {
    let (db, cleanup) = database().await;
    let shutdown = CancellationToken::new();
    let svc = service_with(&db, &shutdown, cheap_hasher(), Duration::from_secs(30)).await;
    let ann = logged_in(&svc, "ann", "a").await;
    let bob = logged_in(&svc, "bob", "b").await;
    let cyd = logged_in(&svc, "cyd", "c").await;
    let unknown = serde_json::Value::from("x".repeat(43));
    // cyd's token twice: a client retrying at once, or a stolen copy.
    let presented = [&ann, &bob, &cyd, &cyd]
        .map(|pair| &pair["refresh_token"])
        .into_iter()
        .chain([&unknown]);
    let batch: Vec<IncomingCall> = presented
        .enumerate()
        .map(|(i, token)| call(&refresh_with(token), &format!("batch-{i}"), false))
        .collect();
    let calls: Vec<&IncomingCall> = batch.iter().collect();
    let prepared = svc.prepare(&calls).await;
    let prepared = prepared.expect("two or more refresh calls are prepared together");
    assert_eq!(
        prepared.rotated_together(),
        2,
        "ann's and bob's in one statement; cyd's twice-presented token goes alone"
    );
    let prepared = Some(prepared);
    let mut replies = Vec::new();
    for c in batch {
        replies.push(result(svc.handle(c, prepared.as_ref()).await));
    }
    let ann_next = replies[0].clone().unwrap();
    assert_ne!(ann_next["refresh_token"], ann["refresh_token"]);
    assert!(replies[1].as_ref().unwrap()["access_token"].is_string());
    assert_eq!(
        replies[2], replies[3],
        "the same token twice: rotated once, the second call is a retry within the grace window"
    );
    assert!(replies[2].is_ok());
    assert_eq!(replies[4], Err(ErrorCode::InvalidToken), "no such token");
    // What was read for the batch still shows ann's token unspent: a retry decides by the
    // database, under its locks.
    let retry = call(&refresh_with(&ann["refresh_token"]), "batch-retry", false);
    let again = result(svc.handle(retry, prepared.as_ref()).await).unwrap();
    assert_eq!(
        again, ann_next,
        "a retry within the grace window gets the same successor"
    );
    // Each session has one unspent token: the successor, which refreshes as usual.
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let live: Vec<(String, i64)> = sqlx::query_as(
        "SELECT a.username, count(*) FROM auth.refresh_tokens t
           JOIN auth.accounts a ON a.id = t.account_id
          WHERE t.used_at IS NULL GROUP BY a.username ORDER BY a.username",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        live,
        [("ann".into(), 1), ("bob".into(), 1), ("cyd".into(), 1)]
    );
    pool.close().await;
    let next = call(&refresh_with(&ann_next["refresh_token"]), "after", false);
    result(svc.handle(next, None).await).unwrap();
    shutdown.cancel();
    cleanup.run().await;
}

/// The batch's write re-checks each session under its lock: a session revoked while the
/// statement waits for it gets no successor, and the batch's other refreshes go through.
#[tokio::test]
async fn a_session_revoked_while_the_batch_write_waits_gets_no_successor() {
    let (db, cleanup) = database().await;
    let shutdown = CancellationToken::new();
    let svc = service_with(&db, &shutdown, cheap_hasher(), Duration::from_secs(30)).await;
    let ann = logged_in(&svc, "ann", "a").await;
    let bob = logged_in(&svc, "bob", "b").await;
    let batch: Vec<IncomingCall> = [&ann, &bob]
        .iter()
        .enumerate()
        .map(|(i, pair)| {
            call(
                &refresh_with(&pair["refresh_token"]),
                &format!("w-{i}"),
                false,
            )
        })
        .collect();
    // A revocation of ann's session under way: its row locked.
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let mut revoking = pool.begin().await.unwrap();
    sqlx::query(
        "SELECT s.id FROM auth.sessions s JOIN auth.accounts a ON a.id = s.account_id
          WHERE a.username = 'ann' FOR UPDATE OF s",
    )
    .fetch_all(&mut *revoking)
    .await
    .unwrap();
    let prepared = tokio::spawn({
        let svc = svc.clone();
        let calls: Vec<IncomingCall> = batch
            .iter()
            .map(|c| {
                call(
                    &refresh_with(&c.request.params["refresh_token"]),
                    &c.request_id,
                    false,
                )
            })
            .collect();
        async move {
            let calls: Vec<&IncomingCall> = calls.iter().collect();
            svc.prepare(&calls).await
        }
    });
    // The batch's statement waits for ann's session.
    let mut waiting = 0;
    for _ in 0..200 {
        waiting = sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_stat_activity
              WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(waiting, 1, "the batch's write waits for the locked session");
    sqlx::query(
        "UPDATE auth.sessions SET revoked_at = now(), revoked_reason = 'logout'
          WHERE account_id = (SELECT id FROM auth.accounts WHERE username = 'ann')",
    )
    .execute(&mut *revoking)
    .await
    .unwrap();
    revoking.commit().await.unwrap();
    let prepared = prepared.await.unwrap().expect("prepared");
    assert_eq!(prepared.rotated_together(), 1, "bob's only");
    let mut replies = Vec::new();
    for c in batch {
        replies.push(result(svc.handle(c, Some(&prepared)).await));
    }
    assert_eq!(
        replies[0],
        Err(ErrorCode::InvalidToken),
        "ann's session is revoked"
    );
    assert!(replies[1].is_ok());
    let ann_tokens: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM auth.refresh_tokens t JOIN auth.accounts a ON a.id = t.account_id
          WHERE a.username = 'ann'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(ann_tokens, 1, "no successor in the revoked session");
    pool.close().await;
    shutdown.cancel();
    cleanup.run().await;
}

#[tokio::test]
async fn a_redelivered_refresh_rotates_once_and_is_not_taken_for_reuse() {
    let (db, cleanup) = database().await;
    let shutdown = CancellationToken::new();
    let svc = service(&db, &shutdown).await;
    let pair = logged_in(&svc, "rory", "f").await;
    let first = refresh_with(&pair["refresh_token"]);
    let next = result(svc.handle(call(&first, "f-2", false), None).await).unwrap();
    // The broker delivers the same request again (auth-svc died before acknowledging it): not
    // applied twice, and not a reuse of a spent token (which would revoke the session).
    assert_eq!(
        result(svc.handle(call(&first, "f-2", true), None).await),
        Err(ErrorCode::Conflict)
    );
    // Racing deliveries of one request: one answer, one refusal.
    let second = refresh_with(&next["refresh_token"]);
    let (a, b) = tokio::join!(
        svc.handle(call(&second, "f-3", false), None),
        svc.handle(call(&second, "f-3", true), None)
    );
    let (a, b) = (result(a), result(b));
    assert!(a.is_ok() != b.is_ok(), "{a:?} / {b:?}");
    let latest = a.or(b).unwrap();
    result(
        svc.handle(
            call(&refresh_with(&latest["refresh_token"]), "f-4", false),
            None,
        )
        .await,
    )
    .expect("the session survived the redeliveries");

    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let (tokens, revoked): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM auth.refresh_tokens),
                (SELECT count(*) FROM auth.sessions WHERE revoked_at IS NOT NULL)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((tokens, revoked), (4, 0), "one successor per refresh");
    pool.close().await;
    shutdown.cancel();
    cleanup.run().await;
}

/// A retry within the grace window gets the successor again, whether its sealed pair is on the
/// successor's row (since migration 0003) or on the spent token's row (written by a replica of
/// an earlier version during a rolling upgrade).
#[tokio::test]
async fn grace_retries_find_the_sealed_successor_in_either_layout() {
    let (db, cleanup) = database().await;
    let shutdown = CancellationToken::new();
    let svc = service_with(&db, &shutdown, cheap_hasher(), Duration::from_secs(30)).await;
    let pair = logged_in(&svc, "gail", "g").await;
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let first = refresh_with(&pair["refresh_token"]);
    let next = result(svc.handle(call(&first, "g-2", false), None).await).unwrap();
    let retried = result(svc.handle(call(&first, "g-3", false), None).await).unwrap();
    assert_eq!(retried, next, "the same successor from the successor's row");

    let second = refresh_with(&next["refresh_token"]);
    let latest = result(svc.handle(call(&second, "g-4", false), None).await).unwrap();
    // The layout of an earlier version: the pair on the spent token's row.
    sqlx::query(
        "UPDATE auth.refresh_tokens t SET successor_sealed = c.sealed_pair
           FROM auth.refresh_tokens c
          WHERE c.id = t.replaced_by AND c.sealed_pair IS NOT NULL",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("UPDATE auth.refresh_tokens SET sealed_pair = NULL")
        .execute(&pool)
        .await
        .unwrap();
    let retried = result(svc.handle(call(&second, "g-5", false), None).await).unwrap();
    assert_eq!(
        retried, latest,
        "the same successor from the spent token's row"
    );
    pool.close().await;
    shutdown.cancel();
    cleanup.run().await;
}

/// A generic plan is made once per connection, from the tables' sizes at that moment, and kept:
/// every statement a request runs, planned while the tables are tiny, must still read rows by
/// their keys, or every execution reads a whole table as it grows (a refresh benchmark read
/// 5,300 rows per refresh after 10 s; the callers' lookup hashed every live session per call).
/// The judge is PostgreSQL: the plans of the statements sqlx prepared on the service's own
/// connection, as they ran, in the states a deployment's tables are in when its connections
/// plan: just migrated (never analyzed), analyzed while empty (an `ANALYZE` right after
/// deploying), a few rows analyzed (autovacuum's first `ANALYZE`), and the 64 logins at the start
/// of a benchmark, analyzed. Deletions are judged too: PostgreSQL's own statement that finds the
/// rows referencing a deleted row, per foreign key.
#[tokio::test]
async fn statements_planned_on_tiny_tables_read_no_whole_table() {
    let mut whole_table_reads = Vec::new();
    for rows in [None, Some(0), Some(5), Some(64)] {
        let state = rows.map_or("never analyzed".into(), |n| format!("{n} rows, analyzed"));
        for read in whole_table_reads_of_requests(rows).await {
            whole_table_reads.push(format!("[{state}] {read}"));
        }
    }
    assert!(
        whole_table_reads.is_empty(),
        "{} statements read whole tables:\n{}",
        whole_table_reads.len(),
        whole_table_reads.join("\n")
    );
}

/// The statements of [`run_every_kind_of_request`] whose plan reads a whole table or index, on
/// a fresh database holding `rows` accounts, each with a session and a refresh token, and as
/// many throttle counters and processed requests, analyzed (`None`: nothing, never analyzed),
/// and the foreign keys whose referencing rows are found by reading a whole table.
async fn whole_table_reads_of_requests(rows: Option<u32>) -> Vec<String> {
    let (db, cleanup) = database().await;
    let shutdown = CancellationToken::new();
    // One connection: every statement below is prepared, and planned, on it.
    let pool = auth_svc::db::connect_and_migrate(&db.url, 1, Duration::from_secs(10))
        .await
        .unwrap();
    let seed = match rows {
        Some(n) => format!(
            "INSERT INTO auth.accounts (id, email, username)
             SELECT gen_random_uuid(), 'u' || i || '@example.com', 'u' || i
               FROM generate_series(1, {n}) AS i;
             INSERT INTO auth.sessions (id, account_id)
             SELECT gen_random_uuid(), id FROM auth.accounts;
             INSERT INTO auth.refresh_tokens (id, account_id, family_id, token_hash, expires_at)
             SELECT gen_random_uuid(), account_id, id, sha256(id::text::bytea),
                    now() + interval '1 day'
               FROM auth.sessions;
             INSERT INTO auth.login_throttle (key, failures, window_started_at)
             SELECT 'seed:' || i, 1, now() FROM generate_series(1, {n}) AS i;
             INSERT INTO auth.processed_requests (request_id, method)
             SELECT 'seed-' || i, 'auth.login' FROM generate_series(1, {n}) AS i;
             ANALYZE auth.accounts, auth.sessions, auth.refresh_tokens, auth.login_throttle,
                     auth.processed_requests;"
        ),
        // Autovacuum would analyze a table once 50 rows changed; these stay below that anyway.
        None => [
            "accounts",
            "sessions",
            "refresh_tokens",
            "login_throttle",
            "processed_requests",
        ]
        .map(|t| format!("ALTER TABLE auth.{t} SET (autovacuum_enabled = false);"))
        .concat(),
    };
    sqlx::raw_sql(sqlx::AssertSqlSafe(seed))
        .execute(&pool)
        .await
        .unwrap();
    let svc = service_on(pool.clone(), cheap_hasher(), REUSE_GRACE, |_| {});
    run_every_kind_of_request(&svc, &pool).await;

    let mut conn = pool.acquire().await.unwrap();
    let statements: Vec<(String, String, i32)> = sqlx::query_as(
        "SELECT name, statement, cardinality(parameter_types) FROM pg_prepared_statements",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    // The unique indexes, and the single columns they key (table, column).
    let unique: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT c.relname::text, t.relname::text, a.attname::text
           FROM pg_index i
           JOIN pg_class c ON c.oid = i.indexrelid
           JOIN pg_class t ON t.oid = i.indrelid
           LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                                   AND i.indnatts = 1 AND i.indkey[0] <> 0
          WHERE i.indisunique",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    let unique = UniqueKeys {
        indexes: unique.iter().map(|(index, _, _)| index.clone()).collect(),
        columns: unique
            .into_iter()
            .filter_map(|(_, table, column)| Some((table, column?)))
            .collect(),
    };
    let mut whole_table_reads = Vec::new();
    let mut planned = 0;
    for (name, statement, parameters) in &statements {
        // sqlx names the statements it prepares `sqlx_s_<n>`; the rest are this test's own, and
        // the migrator's run once at start-up. An administrator's page of accounts says how many
        // there are: that count reads them all, by design (administrators' listings only).
        if !name.starts_with("sqlx_s_")
            || statement.contains("pg_prepared_statements")
            || statement.contains("auth._sqlx_migrations")
            || statement == r#"SELECT count(*) AS "count!" FROM auth.accounts"#
        {
            continue;
        }
        // The generic plan does not depend on the values: NULL stands for each.
        let explain = match usize::try_from(*parameters).unwrap() {
            0 => format!("EXPLAIN (FORMAT JSON) EXECUTE {name}"),
            n => format!(
                "EXPLAIN (FORMAT JSON) EXECUTE {name}({})",
                vec!["NULL"; n].join(", ")
            ),
        };
        let plan: serde_json::Value = sqlx::query_scalar(sqlx::AssertSqlSafe(explain))
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        planned += 1;
        let mut reads = Vec::new();
        assert!(plan[0]["Plan"]["Node Type"].is_string(), "{plan}");
        whole_reads(&plan[0]["Plan"], false, &unique, &mut reads);
        if !reads.is_empty() {
            let statement = statement.split_whitespace().collect::<Vec<_>>().join(" ");
            whole_table_reads.push(format!("{statement}\n  reads {}", reads.join(", ")));
        }
    }
    assert!(
        planned >= 30,
        "only {planned} statements prepared: the requests did not run"
    );
    // Deleting a row finds the rows referencing it (ON DELETE CASCADE, or the check that none
    // is left) by PostgreSQL's own statement on the referencing column: `DELETE FROM ONLY
    // <table> WHERE $1 = <column>`.
    let references: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT c.conrelid::regclass::text, a.attname::text, format_type(a.atttypid, NULL)
           FROM pg_constraint c
           JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
          WHERE c.contype = 'f' AND c.connamespace = 'auth'::regnamespace
            AND cardinality(c.conkey) = 1",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    assert!(!references.is_empty());
    for (i, (table, column, kind)) in references.iter().enumerate() {
        let prepare = format!(
            "PREPARE referencing_{i}({kind}) AS DELETE FROM ONLY {table} WHERE $1 = {column}"
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(prepare))
            .execute(&mut *conn)
            .await
            .unwrap();
        let explain = format!("EXPLAIN (FORMAT JSON) EXECUTE referencing_{i}(NULL)");
        let plan: serde_json::Value = sqlx::query_scalar(sqlx::AssertSqlSafe(explain))
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        let mut reads = Vec::new();
        assert!(plan[0]["Plan"]["Node Type"].is_string(), "{plan}");
        whole_reads(&plan[0]["Plan"], false, &unique, &mut reads);
        if !reads.is_empty() {
            whole_table_reads.push(format!(
                "rows referencing {table}.{column}, deleted or checked\n  reads {}",
                reads.join(", ")
            ));
        }
    }
    drop(conn);
    pool.close().await;
    shutdown.cancel();
    cleanup.run().await;
    whole_table_reads
}

/// The unique indexes of the database, by name, and the columns a unique index keys alone
/// (table, column).
struct UniqueKeys {
    indexes: HashSet<String>,
    columns: Vec<(String, String)>,
}

/// The plan nodes below `node` (EXPLAIN's JSON) that read a whole table or index whatever the
/// parameters, or many rows to keep one: a sequential scan; an index scan without an index
/// condition (all of a partial index too), unless a `Limit` right above stops it and it filters
/// nothing, or with a condition independent of the request (every unexpired token, say); a scan
/// of a non-unique index that filters what it read by a uniquely keyed column
/// (the row had a key of its own; found instead among all rows of another key, e.g. a session
/// among all of its account's); a hashed subplan (its table read in full to build the hash).
fn whole_reads(
    node: &serde_json::Value,
    limited: bool,
    unique: &UniqueKeys,
    found: &mut Vec<String>,
) {
    let kind = node["Node Type"].as_str().unwrap_or_default();
    let relation = node["Relation Name"].as_str().unwrap_or_default();
    let index = node["Index Name"].as_str().unwrap_or_default();
    let index_scan = matches!(kind, "Index Scan" | "Index Only Scan" | "Bitmap Index Scan");
    let filter = node["Filter"].as_str();
    let condition = node["Index Cond"].as_str();
    let keyless = index_scan && condition.is_none() && !(limited && filter.is_none());
    // A condition naming neither a parameter nor another row's column (`expires_at >= now()`,
    // `revoked_at IS NULL`) selects the same rows for every request.
    let unkeyed = condition.is_some_and(|c| !c.contains('$') && !c.contains('.'));
    let by_other_key = index_scan && !unique.indexes.contains(index);
    if kind == "Seq Scan" || keyless {
        found.push(format!("{kind} on {relation} {index}"));
    } else if index_scan && unkeyed {
        found.push(format!(
            "{kind} on {relation} {index}, by a condition no request names: {}",
            condition.unwrap_or_default()
        ));
    } else if by_other_key
        && let Some(filter) = filter
        && let Some((_, column)) = unique
            .columns
            .iter()
            .find(|(table, column)| table == relation && filter.contains(&format!("({column} = ")))
    {
        found.push(format!(
            "{kind} on {relation} {index}, filtered by its key {column}"
        ));
    }
    if let Some(subplan) = node["Subplan Name"].as_str()
        && subplan.starts_with("hashed")
    {
        found.push(format!("{subplan} ({kind} on {relation})"));
    }
    for child in node["Plans"].as_array().into_iter().flatten() {
        whole_reads(child, kind == "Limit", unique, found);
    }
}

/// The grace window of [`run_every_kind_of_request`]'s service: a retry within it gets the same
/// successor, one after it revokes the session.
const REUSE_GRACE: Duration = Duration::from_secs(3);

/// Every kind of request auth-svc answers, alone and in prepared batches, by three users and an
/// administrator, so that each statement a request can run is prepared on `pool`'s connection.
async fn run_every_kind_of_request(svc: &AuthService, pool: &sqlx::PgPool) {
    let password = "correct horse battery";
    let login = |name: &str, password: &str| {
        Call::Login(LoginParams {
            login: name.into(),
            password: password.into(),
        })
    };
    let mut access = Vec::new();
    let mut refresh = Vec::new();
    for name in ["ann", "bob", "cyd", "dan"] {
        result(
            svc.handle(call(&register(name), &format!("r-{name}"), false), None)
                .await,
        )
        .unwrap();
        if name == "ann" {
            auth_svc::admin::grant_role(pool, name, auth_svc::admin::DEFAULT_ROLE)
                .await
                .unwrap();
        }
        let pair = result(
            svc.handle(
                call(&login(name, password), &format!("l-{name}"), false),
                None,
            )
            .await,
        )
        .unwrap();
        access.push(pair["access_token"].as_str().unwrap().to_owned());
        refresh.push(pair["refresh_token"].as_str().unwrap().to_owned());
    }
    let [admin, bob, cyd, dan] = [0, 1, 2, 3].map(|i| Some(access[i].as_str()));
    let refresh_of = |i: usize| {
        Call::Refresh(RefreshTokenParams {
            refresh_token: refresh[i].as_str().into(),
        })
    };
    // A wrong password, then the callers and refreshes of batches, each also alone.
    let _ = svc
        .handle(call(&login("bob", "wrong password"), "wrong", false), None)
        .await;
    let batch = [
        as_caller(&Call::GetMe, admin, "me-1"),
        as_caller(&Call::GetMe, bob, "me-2"),
        as_caller(&refresh_of(2), None, "refresh-1"),
        as_caller(&refresh_of(3), None, "refresh-2"),
    ];
    let calls: Vec<&IncomingCall> = batch.iter().collect();
    let prepared = svc.prepare(&calls).await;
    assert!(
        prepared.is_some(),
        "callers and refreshes are prepared together"
    );
    for c in batch {
        result(svc.handle(c, prepared.as_ref()).await).unwrap();
    }
    let id_of = async |token| -> Uuid {
        let me = result(svc.handle(as_caller(&Call::GetMe, token, ""), None).await).unwrap();
        me["id"].as_str().unwrap().parse().unwrap()
    };
    let (bob_id, cyd_id) = (id_of(bob).await, id_of(cyd).await);
    // An email taken; a refresh retried within the grace window.
    let mut taken = register("ann2");
    if let Call::Register(p) = &mut taken {
        p.email = "ann@example.com".into();
    }
    let _ = svc.handle(call(&taken, "r-taken", false), None).await;
    let alone = [
        (refresh_of(0), None),
        (refresh_of(0), None),
        (
            Call::UpdateMe(UpdateMeParams {
                display_name: Some("Bob".into()),
                ..Default::default()
            }),
            bob,
        ),
        (Call::ListUsers(ListUsersParams::default()), admin),
        (Call::GetUser(UserIdParams { id: bob_id }), admin),
        (
            Call::UpdateUser(AdminUpdateParams {
                id: bob_id,
                update: AdminUpdate {
                    roles: Some(vec!["auditor".into()]),
                    disabled: None,
                    display_name: None,
                },
            }),
            admin,
        ),
        (
            Call::CheckAccess(AccessCheckParams {
                method: "GET".into(),
                path: "/api/v1/users".into(),
            }),
            admin,
        ),
        (
            Call::ChangePassword(ChangePasswordParams {
                current_password: password.into(),
                new_password: "another horse battery".into(),
            }),
            dan,
        ),
        (
            Call::DeleteMe(DeleteMeParams {
                current_password: password.into(),
            }),
            bob,
        ),
        (Call::LogoutAll, cyd),
        (Call::DeleteUser(UserIdParams { id: cyd_id }), admin),
    ];
    for (i, (c, token)) in alone.iter().enumerate() {
        let reply = svc
            .handle(as_caller(c, *token, &format!("alone-{i}")), None)
            .await;
        assert!(result(reply).is_ok(), "{c:?}");
    }
    // A redelivered mutation, applied already: its stored reply.
    let (update, by) = &alone[2];
    assert!(matches!(update, Call::UpdateMe(_)));
    let redelivered = IncomingCall {
        redelivered: true,
        ..as_caller(update, *by, "alone-2")
    };
    result(svc.handle(redelivered, None).await).unwrap();
    let pair = result(
        svc.handle(call(&login("ann", password), "l-again", false), None)
            .await,
    )
    .unwrap();
    let logout = Call::Logout(RefreshTokenParams {
        refresh_token: pair["refresh_token"].as_str().unwrap().into(),
    });
    result(svc.handle(as_caller(&logout, admin, "logout"), None).await).unwrap();
    // dan's first refresh token, spent in the batch, presented again after the grace window.
    tokio::time::sleep(REUSE_GRACE + Duration::from_millis(100)).await;
    let reused = svc
        .handle(as_caller(&refresh_of(3), None, "reuse"), None)
        .await;
    assert_eq!(result(reused), Err(ErrorCode::InvalidToken));
}

/// `c` with `token` as the caller's bearer token and `id` as its request id.
fn as_caller(c: &Call, token: Option<&str>, id: &str) -> IncomingCall {
    IncomingCall {
        request: RpcRequest::new(
            c,
            CallContext {
                access_token: token.map(|t| Secret(t.to_owned())),
                ..Default::default()
            },
        ),
        request_id: id.into(),
        redelivered: false,
    }
}

#[tokio::test]
async fn a_right_password_forgets_the_accounts_failures_and_a_replayed_login_changes_nothing() {
    let (db, cleanup) = database().await;
    let shutdown = CancellationToken::new();
    let svc = service(&db, &shutdown).await;
    result(
        svc.handle(call(&register("sage"), "t-0", false), None)
            .await,
    )
    .unwrap();
    let login = |password: &str| {
        Call::Login(LoginParams {
            login: "sage".into(),
            password: password.into(),
        })
    };
    for (i, id) in ["t-1", "t-2"].iter().enumerate() {
        assert_eq!(
            result(
                svc.handle(call(&login("wrong guess"), id, false), None)
                    .await
            ),
            Err(ErrorCode::InvalidCredentials),
            "guess {i}"
        );
    }
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let failing = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM auth.login_throttle WHERE failures > 0")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    assert!(failing().await > 0, "the wrong guesses are counted");
    result(
        svc.handle(call(&login("correct horse battery"), "t-3", false), None)
            .await,
    )
    .unwrap();
    assert_eq!(failing().await, 0, "the right password forgets them");
    // A redelivery of that login is refused, and stores nothing more.
    assert_eq!(
        result(
            svc.handle(call(&login("correct horse battery"), "t-3", true), None)
                .await
        ),
        Err(ErrorCode::Conflict)
    );
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM auth.sessions")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(sessions, 1);
    let pending: i64 =
        sqlx::query_scalar("SELECT count(*) FROM auth.login_throttle WHERE pending > 0")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(pending, 0, "the redelivery gave its place back");
    pool.close().await;
    shutdown.cancel();
    cleanup.run().await;
}

/// Checks in flight hold places that bound how many may run at once (the pair's threshold, 5
/// here): every check gives its place back when it ends, and the places of checks that never
/// end (a replica gone mid-hash) are forgotten when they expire, never turned into a lock.
#[tokio::test]
async fn password_checks_give_their_places_back_and_lost_places_expire() {
    let (db, cleanup) = database().await;
    let shutdown = CancellationToken::new();
    let svc = service(&db, &shutdown).await;
    result(svc.handle(call(&register("pia"), "p-0", false), None).await).unwrap();
    let login = Call::Login(LoginParams {
        login: "pia".into(),
        password: "correct horse battery".into(),
    });
    let logins = (0..12).map(|i| svc.handle(call(&login, &format!("p-{}", i + 1), false), None));
    let mut ok = 0;
    for reply in futures::future::join_all(logins).await {
        match result(reply) {
            Ok(_) => ok += 1,
            Err(code) => assert_eq!(code, ErrorCode::RateLimited, "busy, never locked"),
        }
    }
    assert!(
        ok >= 5,
        "{ok} of 12 overlapping right logins passed; 5 may run at once"
    );
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let rows = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM auth.login_throttle")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    assert_eq!(
        rows().await,
        0,
        "every place given back, no failure, no counter left"
    );

    // Places of checks that never ended (a replica gone mid-hash), taken `ago` buckets of
    // PENDING_TTL before this one: five fill the pair's places until they are forgotten.
    let account: String = sqlx::query_scalar("SELECT id::text FROM auth.accounts")
        .fetch_one(&pool)
        .await
        .unwrap();
    let lost = |places: i32, ago: i64| {
        let key = format!("pair:{account}@-");
        let pool = pool.clone();
        async move {
            sqlx::query(
                "INSERT INTO auth.login_throttle
                        (key, failures, pending, pending_epoch, window_started_at, updated_at)
                 VALUES ($1, 0, $2, floor(extract(epoch FROM now()) / $4)::int8 - $3, now(),
                         now())
                 ON CONFLICT (key) DO UPDATE
                    SET pending = excluded.pending, pending_epoch = excluded.pending_epoch",
            )
            .bind(key)
            .bind(places)
            .bind(ago)
            .bind(PENDING_TTL.as_secs() as i64)
            .execute(&pool)
            .await
            .unwrap();
        }
    };
    lost(5, 0).await;
    let started = std::time::Instant::now();
    assert_eq!(
        result(svc.handle(call(&login, "p-20", false), None).await),
        Err(ErrorCode::RateLimited)
    );
    assert!(
        started.elapsed() >= BUSY_WAIT_MAX,
        "a busy pair is waited for before the attempt is refused"
    );
    // Only so many attempts of a replica wait; the others are refused at once.
    let started = std::time::Instant::now();
    let attempts = (0..MAX_WAITING_CHECKS + 2).map(|i| {
        let login = &login;
        let svc = &svc;
        async move {
            let reply = svc
                .handle(call(login, &format!("w-{i}"), false), None)
                .await;
            (result(reply), started.elapsed())
        }
    });
    let outcomes = futures::future::join_all(attempts).await;
    assert!(
        outcomes
            .iter()
            .all(|(r, _)| *r == Err(ErrorCode::RateLimited)),
        "{outcomes:?}"
    );
    let at_once = outcomes
        .iter()
        .filter(|(_, t)| *t < BUSY_WAIT_MAX / 2)
        .count();
    assert_eq!(at_once, 2, "{outcomes:?}");
    // Two buckets on they are forgotten, and counted as failures: five lock the pair...
    lost(5, 2).await;
    assert_eq!(
        result(svc.handle(call(&login, "p-21", false), None).await),
        Err(ErrorCode::AccountLocked)
    );
    // ...two do not, and the right password then clears them.
    lost(2, 2).await;
    result(svc.handle(call(&login, "p-22", false), None).await).unwrap();
    assert_eq!(rows().await, 0);
    pool.close().await;
    shutdown.cancel();
    cleanup.run().await;
}

#[tokio::test]
async fn a_redelivery_racing_its_first_delivery_is_applied_once() {
    let (db, cleanup) = database().await;
    let shutdown = CancellationToken::new();
    let svc = service(&db, &shutdown).await;
    for i in 0..10 {
        let c = register(&format!("racer{i}"));
        let id = format!("race-{i}");
        let (a, b) = tokio::join!(
            svc.handle(call(&c, &id, false), None),
            svc.handle(call(&c, &id, true), None)
        );
        let (a, b) = (result(a), result(b));
        assert!(a.is_ok(), "{a:?}");
        assert_eq!(a, b, "both deliveries answer the same");
    }
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let accounts: i64 = sqlx::query_scalar("SELECT count(*) FROM auth.accounts")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(accounts, 10);
    pool.close().await;
    shutdown.cancel();
    cleanup.run().await;
}

/// A batch's callers are loaded in one query before its calls run (`prepare`); each call then
/// answers exactly as it would alone: a live session, a logged-out one, a deleted account, no
/// token at all.
#[tokio::test]
async fn calls_with_prepared_callers_answer_as_calls_alone() {
    let (db, cleanup) = database().await;
    let shutdown = CancellationToken::new();
    let svc = service(&db, &shutdown).await;
    let mut access = Vec::new();
    let mut refresh = Vec::new();
    for name in ["ann", "bob", "cyd"] {
        result(
            svc.handle(call(&register(name), &format!("r-{name}"), false), None)
                .await,
        )
        .unwrap();
        let login = Call::Login(LoginParams {
            login: name.into(),
            password: "correct horse battery".into(),
        });
        let pair = result(
            svc.handle(call(&login, &format!("l-{name}"), false), None)
                .await,
        )
        .unwrap();
        access.push(pair["access_token"].as_str().unwrap().to_owned());
        refresh.push(pair["refresh_token"].as_str().unwrap().to_owned());
    }
    // bob logs out; cyd deletes the account.
    let logout = Call::Logout(RefreshTokenParams {
        refresh_token: refresh[1].as_str().into(),
    });
    result(
        svc.handle(as_caller(&logout, Some(&access[1]), ""), None)
            .await,
    )
    .unwrap();
    let delete = Call::DeleteMe(DeleteMeParams {
        current_password: "correct horse battery".into(),
    });
    result(
        svc.handle(as_caller(&delete, Some(&access[2]), ""), None)
            .await,
    )
    .unwrap();

    let batch: Vec<IncomingCall> = access
        .iter()
        .map(|t| as_caller(&Call::GetMe, Some(t), ""))
        .chain([as_caller(&Call::GetMe, None, "")])
        .collect();
    let calls: Vec<&IncomingCall> = batch.iter().collect();
    let prepared = svc.prepare(&calls).await;
    assert!(
        prepared.is_some(),
        "two or more callers are loaded together"
    );
    let mut together = Vec::new();
    let mut alone = Vec::new();
    let copy_of = |c: &IncomingCall| IncomingCall {
        request: c.request.clone(),
        request_id: String::new(),
        redelivered: false,
    };
    for c in &batch {
        together.push(result(svc.handle(copy_of(c), prepared.as_ref()).await));
        alone.push(result(svc.handle(copy_of(c), None).await));
    }
    assert_eq!(together, alone);
    assert_eq!(together[0].as_ref().unwrap()["username"], "ann");
    assert_eq!(
        together[1],
        Err(ErrorCode::InvalidToken),
        "bob's session is revoked"
    );
    assert_eq!(
        together[2],
        Err(ErrorCode::InvalidToken),
        "cyd's account is gone"
    );
    assert_eq!(together[3], Err(ErrorCode::InvalidToken), "no token");
    // A busy client sends many calls with one token: its batch is one query too, not one per
    // call.
    let one_caller: Vec<IncomingCall> = (0..3)
        .map(|_| as_caller(&Call::GetMe, Some(&access[0]), ""))
        .collect();
    let calls: Vec<&IncomingCall> = one_caller.iter().collect();
    let prepared = svc.prepare(&calls).await;
    assert!(
        prepared.is_some(),
        "the calls of one caller are loaded together"
    );
    let me = result(svc.handle(copy_of(&one_caller[0]), prepared.as_ref()).await);
    assert_eq!(me.unwrap()["username"], "ann");
    shutdown.cancel();
    cleanup.run().await;
}

#[tokio::test]
async fn replicas_starting_together_migrate_once() {
    let (db, cleanup) = database().await;
    let starts =
        (0..4).map(|_| auth_svc::db::connect_and_migrate(&db.url, 2, Duration::from_secs(10)));
    for pool in futures::future::join_all(starts).await {
        let pool = pool.expect("every replica starts");
        // Every pooled connection runs prepared statements on their generic plan (db.rs).
        let mode: String = sqlx::query_scalar("SHOW plan_cache_mode")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(mode, "force_generic_plan");
        pool.close().await;
    }
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let applied: i64 =
        sqlx::query_scalar("SELECT count(*) FROM auth._sqlx_migrations WHERE success")
            .fetch_one(&pool)
            .await
            .unwrap();
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .count();
    assert_eq!(applied, migrations as i64, "every migration applied once");
    pool.close().await;
    cleanup.run().await;
}

#[tokio::test]
async fn login_rehashes_a_password_stored_with_old_parameters() {
    let (db, cleanup) = database().await;
    let shutdown = CancellationToken::new();
    let old = service_with(&db, &shutdown, cheap_hasher(), Duration::ZERO).await;
    result(old.handle(call(&register("rae"), "r-1", false), None).await).unwrap();
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let hash = || async {
        sqlx::query_scalar::<_, String>("SELECT password_hash FROM auth.credentials")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    assert!(hash().await.contains("m=8192,t=1,p=1"));

    // The operator raised the argon2 cost: the next successful login upgrades the stored hash.
    let new = service_with(
        &db,
        &shutdown,
        PasswordHasherPool::new(19_456, 2, 1, 2, 16).unwrap(),
        Duration::ZERO,
    )
    .await;
    let login = Call::Login(LoginParams {
        login: "rae".into(),
        password: "correct horse battery".into(),
    });
    result(new.handle(call(&login, "r-2", false), None).await).unwrap();
    assert!(hash().await.contains("m=19456,t=2,p=1"), "{}", hash().await);
    result(new.handle(call(&login, "r-3", false), None).await).unwrap();
    pool.close().await;
    shutdown.cancel();
    cleanup.run().await;
}

/// Housekeeping keeps a throttle counter that still holds failures within the lockout window,
/// however short the retention of ended bookkeeping is set (it can be 60 s, the window 15 min):
/// deleting it would hand a guesser a fresh count.
#[tokio::test]
async fn housekeeping_keeps_throttle_counters_inside_their_window() {
    let (db, cleanup) = database().await;
    let shutdown = CancellationToken::new();
    let svc = service_tweaked(&db, &shutdown, cheap_hasher(), Duration::ZERO, |s| {
        s.ended_retention = Duration::from_secs(60);
        s.throttle.window = Duration::from_secs(3600);
    })
    .await;
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    sqlx::query(
        "INSERT INTO auth.login_throttle (key, failures, window_started_at, updated_at)
         VALUES ('pair:guessed@-', 4, now() - interval '10 minutes',
                 now() - interval '10 minutes'),
                ('pair:old@-', 4, now() - interval '2 hours', now() - interval '2 hours')",
    )
    .execute(&pool)
    .await
    .unwrap();
    svc.purge_expired().await.unwrap();
    let kept: Vec<String> = sqlx::query_scalar("SELECT key FROM auth.login_throttle")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(
        kept,
        ["pair:guessed@-"],
        "the window's failures stay, older ones go"
    );
    pool.close().await;
    shutdown.cancel();
    cleanup.run().await;
}

#[tokio::test]
async fn housekeeping_deletes_only_what_can_no_longer_matter() {
    let (db, cleanup) = database().await;
    let shutdown = CancellationToken::new();
    let svc = service(&db, &shutdown).await;
    result(
        svc.handle(call(&register("hana"), "h-1", false), None)
            .await,
    )
    .unwrap();
    let login = Call::Login(LoginParams {
        login: "hana".into(),
        password: "correct horse battery".into(),
    });
    result(svc.handle(call(&login, "h-2", false), None).await).unwrap();

    // Old bookkeeping next to the login's: the registration's request id an hour and a minute
    // old; a session revoked 25 hours ago and one revoked an hour ago; in the latter, a token
    // expired 25 hours ago and one expired 23 hours ago, replaced 11 s ago (its sealed
    // successor outlived every grace window); an idle throttle counter, and a locked one.
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    for sql in [
        "UPDATE auth.processed_requests SET created_at = now() - interval '61 minutes'
          WHERE request_id = 'h-1'",
        "INSERT INTO auth.sessions (id, account_id, created_at, revoked_at)
         SELECT '00000000-0000-0000-0000-00000000000a', id, now() - interval '2 days',
                now() - interval '25 hours' FROM auth.accounts",
        "INSERT INTO auth.sessions (id, account_id, revoked_at)
         SELECT '00000000-0000-0000-0000-00000000000b', id, now() - interval '1 hour'
           FROM auth.accounts",
        "INSERT INTO auth.refresh_tokens (id, account_id, family_id, token_hash, expires_at)
         SELECT '00000000-0000-0000-0000-0000000000c1', id,
                '00000000-0000-0000-0000-00000000000b', '\\x01', now() - interval '25 hours'
           FROM auth.accounts",
        "INSERT INTO auth.refresh_tokens
                (id, account_id, family_id, token_hash, expires_at, used_at, successor_sealed)
         SELECT '00000000-0000-0000-0000-0000000000c2', id,
                '00000000-0000-0000-0000-00000000000b', '\\x02', now() - interval '23 hours',
                now() - interval '11 seconds', '\\x00'
           FROM auth.accounts",
        // Successors keep their predecessor's sealed pair on their own row (migration 0003):
        // one written 11 s ago (forgotten), one just now (kept).
        "INSERT INTO auth.refresh_tokens
                (id, account_id, family_id, token_hash, expires_at, created_at, sealed_pair)
         SELECT '00000000-0000-0000-0000-0000000000c3', id,
                '00000000-0000-0000-0000-00000000000b', '\\x03', now() + interval '1 hour',
                now() - interval '11 seconds', '\\x00'
           FROM auth.accounts",
        "INSERT INTO auth.refresh_tokens
                (id, account_id, family_id, token_hash, expires_at, sealed_pair)
         SELECT '00000000-0000-0000-0000-0000000000c4', id,
                '00000000-0000-0000-0000-00000000000b', '\\x04', now() + interval '1 hour',
                '\\x00'
           FROM auth.accounts",
        "INSERT INTO auth.login_throttle (key, failures, window_started_at, updated_at)
         VALUES ('pair:idle@-', 1, now() - interval '2 days', now() - interval '25 hours')",
        "INSERT INTO auth.login_throttle (key, failures, window_started_at, locked_until, updated_at)
         VALUES ('pair:locked@-', 5, now() - interval '2 days', now() + interval '1 hour',
                 now() - interval '25 hours')",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }

    let removed = svc.purge_expired().await.unwrap();
    assert_eq!(
        removed, 4,
        "one request id, one session, one token, one counter"
    );
    let texts = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, String>(sql)
                .fetch_all(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        texts("SELECT request_id FROM auth.processed_requests").await,
        ["h-2"]
    );
    assert_eq!(
        texts("SELECT key FROM auth.login_throttle").await,
        ["pair:locked@-"]
    );
    assert_eq!(
        texts(
            "SELECT id::text FROM auth.sessions
              WHERE id::text LIKE '00000000-0000-0000-0000-00000000000%'"
        )
        .await,
        ["00000000-0000-0000-0000-00000000000b"]
    );
    assert_eq!(
        texts(
            "SELECT id::text || ':' || (successor_sealed IS NULL)::text || ':'
                    || (sealed_pair IS NULL)::text
               FROM auth.refresh_tokens
              WHERE family_id = '00000000-0000-0000-0000-00000000000b' ORDER BY id"
        )
        .await,
        [
            "00000000-0000-0000-0000-0000000000c2:true:true",
            "00000000-0000-0000-0000-0000000000c3:true:true",
            "00000000-0000-0000-0000-0000000000c4:true:false",
        ]
    );
    let live_logins: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM auth.sessions s JOIN auth.refresh_tokens t ON t.family_id = s.id
          WHERE s.revoked_at IS NULL",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(live_logins, 1, "the login's session and token stay");
    pool.close().await;
    shutdown.cancel();
    cleanup.run().await;
}

/// The RPC server allocates a future per call and moves it: its size is what every call copies.
/// With each method's state inline, a `users.me` carried the refresh's (its future was
/// 16.8 KiB, ~5 % of auth-svc's CPU in `memcpy` under `/users/me` load).
#[tokio::test]
async fn a_call_future_is_sized_for_dispatch_not_for_the_largest_method() {
    let (db, cleanup) = database().await;
    let shutdown = CancellationToken::new();
    let svc = service(&db, &shutdown).await;
    // One type for every method: the size is the dispatch's, whichever call it carries.
    let future = svc.handle(call(&Call::GetMe, "r-1", false), None);
    let size = std::mem::size_of_val(&future);
    assert!(size <= 1024, "a call's future: {size} bytes");
    drop(future);
    shutdown.cancel();
    cleanup.run().await;
}
