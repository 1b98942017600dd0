//! At-least-once domain events: the real auth-svc binary, killed with SIGKILL between committing
//! a change and publishing its event, loses no event; replicas relaying at once publish each
//! event once. A consumer bound to the events exchange counts what arrives.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authstack_bus::{
    CancellationToken, DEFAULT_MAX_MESSAGE_BYTES, EventSubscriber, Names, ReplyMode, RpcClient,
    RpcClientConfig,
};
use authstack_keyring::layout::write_atomic;
use authstack_keyring::material::generate;
use authstack_keyring::{KEYRING_FILE, KeyRing, SigningAlgorithm};
use authstack_protocol::EventKind;
use authstack_protocol::broker::Component;
use authstack_protocol::rpc::{Call, CallContext, RegisterParams, RpcRequest};
use authstack_testkit::broker::{admin_url, broker_addr, component_url};
use authstack_testkit::cleanup::CleanupGuard;
use authstack_testkit::postgres::TestDatabase;
use uuid::Uuid;

/// A running auth-svc process, killed with SIGKILL when dropped.
struct Replica(Child);

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Stack {
    database_url: String,
    names: Names,
    dir: tempfile::TempDir,
}

impl Stack {
    /// Starts the auth-svc binary; `relay`: whether it publishes the outbox.
    fn replica(&self, name: &str, relay: bool) -> Replica {
        let log = std::fs::File::create(self.dir.path().join(format!("{name}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_auth-svc"))
            .env_clear()
            .env("DATABASE_URL", &self.database_url)
            .env("AMQP_URL", component_url(Component::AuthSvc, broker_addr()))
            .env("AUTH_RPC_QUEUE", &self.names.rpc_queue)
            .env("AUTH_RPC_EXCHANGE", &self.names.rpc_exchange)
            .env("AUTH_EVENTS_EXCHANGE", &self.names.events_exchange)
            .env("AUTH_KEY_DIR", self.dir.path().join("keys"))
            .env("AUTH_HTTP_LISTEN", "127.0.0.1:0")
            .env("AUTH_INSTANCE_NAME", name)
            .env("AUTH_OUTBOX_RELAY", relay.to_string())
            .env("AUTH_OUTBOX_POLL_MS", "100")
            // OWASP's least-memory minimum (auth-svc refuses anything below one of them).
            .env("AUTH_ARGON2_MEMORY_KIB", "7168")
            .env("AUTH_ARGON2_ITERATIONS", "5")
            .env("AUTH_REGISTER_RATE_PER_ADDRESS", "0")
            .env("AUTH_HASHING_QUEUE", "256")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("auth-svc binary starts");
        Replica(child)
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }
}

/// Counts `account.registered` events per account id, and every event per event id.
#[derive(Default)]
struct Counts {
    registered: HashMap<Uuid, usize>,
    by_event: HashMap<Uuid, usize>,
}

fn register(name: &str) -> RpcRequest {
    RpcRequest::new(
        &Call::Register(RegisterParams {
            email: format!("{name}@example.com"),
            username: name.into(),
            password: "correct horse battery".into(),
            display_name: None,
        }),
        CallContext::default(),
    )
}

/// Registers `names` concurrently; returns the ids of the acknowledged registrations.
async fn register_all(rpc: &RpcClient, names: &[String]) -> Vec<Uuid> {
    let calls = names.iter().map(|n| {
        let rpc = rpc.clone();
        let request = register(n);
        async move {
            let raw = rpc.call(&request, Duration::from_secs(5)).await.ok()?;
            let account: serde_json::Value = serde_json::from_str(raw.get()).ok()?;
            account["id"].as_str()?.parse().ok()
        }
    });
    futures::future::join_all(calls)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// Waits until some replica answers RPC calls.
async fn wait_for_rpc(rpc: &RpcClient) {
    let ping = RpcRequest::new(&Call::ListKeys, CallContext::default());
    let end = Instant::now() + Duration::from_secs(30);
    while rpc.call(&ping, Duration::from_secs(1)).await.is_err() {
        assert!(Instant::now() < end, "no replica answers");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_until(secs: u64, what: &str, mut done: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn outbox_rows(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM auth.outbox")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn account_ids(pool: &sqlx::PgPool) -> Vec<Uuid> {
    sqlx::query_scalar("SELECT id FROM auth.accounts")
        .fetch_all(pool)
        .await
        .unwrap()
}

fn write_ring(dir: &Path) {
    let ring = KeyRing::with_active_key(
        generate(SigningAlgorithm::EdDSA).unwrap(),
        chrono::Utc::now(),
    );
    write_atomic(
        dir,
        &BTreeMap::from([(KEYRING_FILE.to_string(), ring.to_json())]),
    )
    .unwrap();
}

#[tokio::test]
async fn events_survive_sigkill_between_commit_and_publish_and_relays_do_not_duplicate() {
    let db = TestDatabase::create().await.unwrap();
    let id = Uuid::new_v4().simple().to_string();
    let stack = Stack {
        database_url: db.url.clone(),
        names: Names::scoped(&format!("t{id}")),
        dir: tempfile::tempdir().unwrap(),
    };
    write_ring(&stack.dir.path().join("keys"));
    let cleanup = {
        let (name, url) = (db.name.clone(), db.url.clone());
        let names = stack.names.clone();
        CleanupGuard::new(async move {
            let _ = authstack_bus::delete_names(&admin_url(), &names).await;
            let _ = TestDatabase { name, url }.drop_database().await;
        })
    };
    let shutdown = CancellationToken::new();

    let rpc = RpcClient::start(
        RpcClientConfig {
            url: component_url(Component::Gateway, broker_addr()),
            names: stack.names.clone(),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES as usize,
            connection_name: "outbox-test-client".into(),
            consumer_check_interval: Duration::from_millis(100),
            reply_mode: ReplyMode::Exclusive,
            batching: Default::default(),
        },
        shutdown.clone(),
    );
    let names = |prefix: &str, n: usize| -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i}")).collect()
    };

    // 1. A replica that commits but does not publish, killed with SIGKILL: its events are
    //    committed and unpublished at the moment of the crash.
    let silent = stack.replica("silent", false);
    wait_for_rpc(&rpc).await;
    // The consumer (the gateway's broker user), bound to every routing key before any event
    // is relayed; the events exchange exists once a replica has declared it.
    let subscriber = EventSubscriber::start(
        component_url(Component::Gateway, broker_addr()),
        stack.names.events_exchange.clone(),
        vec!["#".into()],
        "outbox-test-consumer".into(),
        DEFAULT_MAX_MESSAGE_BYTES as usize,
        shutdown.clone(),
    );
    let mut sessions = subscriber.sessions();
    tokio::time::timeout(Duration::from_secs(10), sessions.wait_for(|n| *n > 0))
        .await
        .unwrap()
        .unwrap();
    let counts = Arc::new(Mutex::new(Counts::default()));
    {
        let mut rx = subscriber.subscribe();
        let counts = counts.clone();
        tokio::spawn(async move {
            while let Ok(event) = rx.recv().await {
                let mut c = counts.lock().unwrap();
                *c.by_event.entry(event.id).or_default() += 1;
                if event.kind == EventKind::AccountRegistered
                    && let Some(account) = event.account_id
                {
                    *c.registered.entry(account).or_default() += 1;
                }
            }
        });
    }
    let acknowledged = register_all(&rpc, &names("crash", 20)).await;
    assert_eq!(acknowledged.len(), 20, "{}", stack.log("silent"));
    drop(silent); // SIGKILL
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    assert!(
        outbox_rows(&pool).await >= 20,
        "the crash left committed, unpublished events"
    );
    assert!(counts.lock().unwrap().registered.is_empty());

    // 2. Two relaying replicas start: the events of the dead one arrive, each exactly once.
    let mut a = stack.replica("relay-a", true);
    let b = stack.replica("relay-b", true);
    wait_until(30, "the crashed replica's events", || {
        let c = counts.lock().unwrap();
        acknowledged.iter().all(|id| c.registered.contains_key(id))
    })
    .await;
    wait_for_rpc(&rpc).await;
    let more = register_all(&rpc, &names("both", 40)).await;
    assert_eq!(more.len(), 40, "{}", stack.log("relay-a"));
    wait_until(30, "events relayed by two replicas", || {
        let c = counts.lock().unwrap();
        more.iter().all(|id| c.registered.contains_key(id))
    })
    .await;
    {
        let c = counts.lock().unwrap();
        let duplicated = c.by_event.values().filter(|n| **n > 1).count();
        assert_eq!(duplicated, 0, "no crash, no duplicate");
    }

    // 3. SIGKILL of a relaying replica in the middle of a burst of registrations: every
    //    registration that was committed (acknowledged or not) has its event afterwards.
    let burst = {
        let rpc = rpc.clone();
        let names = names("burst", 60);
        tokio::spawn(async move { register_all(&rpc, &names).await })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    let _ = a.0.kill();
    let _ = a.0.wait();
    let burst_acknowledged = burst.await.unwrap();
    let restarted = stack.replica("relay-a2", true);
    let committed = account_ids(&pool).await;
    wait_until(30, "an event for every committed registration", || {
        let c = counts.lock().unwrap();
        committed.iter().all(|id| c.registered.contains_key(id))
    })
    .await;
    let mut left = outbox_rows(&pool).await;
    let end = Instant::now() + Duration::from_secs(30);
    while left > 0 && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = outbox_rows(&pool).await;
    }
    assert_eq!(left, 0, "the outbox drains");
    for id in &burst_acknowledged {
        assert!(
            committed.contains(id),
            "an acknowledged registration exists"
        );
    }
    let (events, duplicates) = {
        let c = counts.lock().unwrap();
        let duplicates: usize = c.by_event.values().map(|n| n - 1).sum();
        (c.by_event.len(), duplicates)
    };
    eprintln!(
        "burst: {} acknowledged of 60, {} accounts committed in all, {events} events, \
         {duplicates} duplicate deliveries",
        burst_acknowledged.len(),
        committed.len(),
    );

    drop((b, restarted));
    pool.close().await;
    shutdown.cancel();
    cleanup.run().await;
}
