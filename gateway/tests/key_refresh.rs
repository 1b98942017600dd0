//! The gateway's key manager against the real broker and a stand-in for auth-svc whose
//! `keys.list` answers take a while: a token naming a kid that the refresh already in flight
//! brings waits for that refresh instead of failing, and a kid nobody brings never makes a
//! request wait when no refresh is in flight, nor asks auth-svc beyond the rate limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use authstack_bus::{
    CancellationToken, IncomingCall, Names, ReplyMode, RpcClient, RpcClientConfig, RpcHandler,
    RpcServer, RpcServerConfig,
};
use authstack_keyring::jwt::Expectations;
use authstack_keyring::material::generate;
use authstack_keyring::{KeyRing, SigningAlgorithm};
use authstack_protocol::broker::Component;
use authstack_protocol::model::KeySet;
use authstack_protocol::rpc::RpcReply;
use authstack_testkit::broker::{admin_url, broker_addr, component_url};
use gateway::keys::{KeyManager, Source};

/// auth-svc as the key manager sees it: answers `keys.list` with the ring it holds when the
/// call arrives, `delay_ms` later.
struct SlowKeys {
    set: std::sync::Mutex<KeySet>,
    delay_ms: AtomicU64,
    calls: AtomicUsize,
}

impl RpcHandler for SlowKeys {
    type Batch = ();

    async fn handle(&self, call: IncomingCall, _: Option<&()>) -> RpcReply {
        assert_eq!(call.request.method, "keys.list");
        let set = self.set.lock().expect("key set lock").clone();
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(self.delay_ms.load(Ordering::SeqCst))).await;
        RpcReply::ok(&set)
    }
}

impl SlowKeys {
    fn serve(&self, set: KeySet) {
        *self.set.lock().expect("key set lock") = set;
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Waits until `n` calls have reached this stand-in (so the last one is in flight).
    async fn until_calls(&self, n: usize) {
        let end = Instant::now() + Duration::from_secs(10);
        while self.calls() < n {
            assert!(Instant::now() < end, "call {n} never reached auth-svc");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Starts a periodic refresh and returns once it is the `calls`-th call at the stand-in (in
/// flight); the task ends with the refresh's outcome.
async fn periodic_refresh_in_flight(
    keys: &Arc<KeyManager>,
    auth_svc: &SlowKeys,
    calls: usize,
) -> tokio::task::JoinHandle<Result<bool, authstack_protocol::ErrorBody>> {
    let refresh = {
        let keys = keys.clone();
        tokio::spawn(async move { keys.refresh(Source::Periodic).await })
    };
    auth_svc.until_calls(calls).await;
    refresh
}

/// A fresh key: its set (one key) and its kid.
fn new_key() -> (KeySet, String) {
    let ring = KeyRing::with_active_key(
        generate(SigningAlgorithm::EdDSA).expect("a key"),
        chrono::Utc::now(),
    );
    let set = ring.key_set();
    let kid = set.active_kid.clone();
    (set, kid)
}

/// `base` plus the keys of `more`, as ring `generation`.
fn with_keys(base: &KeySet, more: &KeySet, generation: u64) -> KeySet {
    let mut set = base.clone();
    set.keys.extend(more.keys.iter().cloned());
    set.generation = generation;
    set
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_kid_waits_for_the_key_refresh_in_flight_instead_of_failing() {
    let names = Names::scoped(&format!("t{}", uuid::Uuid::new_v4().simple()));
    let shutdown = CancellationToken::new();
    let (mut first, _) = new_key();
    first.generation = 1;
    let auth_svc = Arc::new(SlowKeys {
        set: std::sync::Mutex::new(first.clone()),
        delay_ms: AtomicU64::new(1000),
        calls: AtomicUsize::new(0),
    });
    let (_server, run) = RpcServer::start(
        RpcServerConfig {
            url: component_url(Component::AuthSvc, broker_addr()),
            names: names.clone(),
            max_message_bytes: 1 << 20,
            connection_name: "slow-keys".into(),
            prefetch: 16,
        },
        auth_svc.clone(),
        shutdown.clone(),
    );
    tokio::spawn(run);
    let rpc = RpcClient::start(
        RpcClientConfig {
            url: component_url(Component::Gateway, broker_addr()),
            names: names.clone(),
            max_message_bytes: 1 << 20,
            connection_name: "key-refresh-test".into(),
            consumer_check_interval: Duration::from_millis(100),
            reply_mode: ReplyMode::Exclusive,
            batching: Default::default(),
        },
        shutdown.clone(),
    );
    let rpc_timeout = Duration::from_secs(2);
    let expect = Expectations {
        issuer: "i".into(),
        audience: "a".into(),
        leeway_secs: 0,
    };
    // The on-demand slot, once claimed, stays taken for the whole test.
    let keys = KeyManager::new(rpc, expect, rpc_timeout, Duration::from_secs(3600));

    // Start-up: load generation 1 (a refresh outside the on-demand slot).
    let end = Instant::now() + Duration::from_secs(20);
    while keys.refresh(Source::Rpc).await.is_err() {
        assert!(Instant::now() < end, "auth-svc stand-in never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(keys.current().expect("keys loaded").generation, 1);

    // A rotation: auth-svc now holds kid K. A first token naming K claims the on-demand slot;
    // while its keys.list is in flight, a second token naming K arrives. It must wait for that
    // answer (which brings K) rather than fail at once because the slot is taken.
    let (k_set, k) = new_key();
    auth_svc.serve(with_keys(&first, &k_set, 2));
    let calls = auth_svc.calls();
    let claimer = {
        let (keys, k) = (keys.clone(), k.clone());
        tokio::spawn(async move { keys.refresh_for_unknown_kid(&k).await })
    };
    auth_svc.until_calls(calls + 1).await;
    let started = Instant::now();
    assert!(
        keys.refresh_for_unknown_kid(&k).await,
        "a kid that the refresh in flight brings was refused after {:?}",
        started.elapsed()
    );
    // It waited for the answer (1 s after the call arrived), not found K already adopted.
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "did not wait: {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < rpc_timeout);
    assert!(claimer.await.expect("claimer"), "the claimer's own refresh");
    assert_eq!(
        auth_svc.calls(),
        calls + 1,
        "the waiter asked auth-svc itself"
    );

    // The same for a refresh of another source in flight (here a periodic one; the
    // keys.rotated hint follower and reconnects refresh the same way).
    let (l_set, l) = new_key();
    auth_svc.serve(with_keys(&with_keys(&first, &k_set, 2), &l_set, 3));
    let periodic = periodic_refresh_in_flight(&keys, &auth_svc, calls + 2).await;
    assert!(
        keys.refresh_for_unknown_kid(&l).await,
        "a kid that the periodic refresh in flight brings was refused"
    );
    assert!(periodic.await.expect("periodic").expect("periodic refresh"));
    assert_eq!(auth_svc.calls(), calls + 2);

    // A kid nobody publishes (forged), slot taken and nothing in flight: refused at once,
    // without asking auth-svc.
    let started = Instant::now();
    for _ in 0..50 {
        assert!(!keys.refresh_for_unknown_kid("forged").await);
    }
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "forged kids waited {:?} with no refresh in flight",
        started.elapsed()
    );
    assert_eq!(auth_svc.calls(), calls + 2, "forged kids asked auth-svc");

    // A refresh in flight that outlives the RPC timeout: a forged kid waits no longer than the
    // timeout, and still asks nothing.
    auth_svc.delay_ms.store(5000, Ordering::SeqCst);
    let stuck = periodic_refresh_in_flight(&keys, &auth_svc, calls + 3).await;
    let started = Instant::now();
    assert!(!keys.refresh_for_unknown_kid("forged").await);
    assert!(
        started.elapsed() < rpc_timeout + Duration::from_secs(2),
        "waited {:?}",
        started.elapsed()
    );
    assert!(stuck.await.expect("stuck").is_err(), "the call timed out");
    assert_eq!(auth_svc.calls(), calls + 3);

    // auth-svc still silent: with the last refresh failed, a forged kid does not wait for the
    // next one in flight (every unknown kid would otherwise hold its connection for the RPC
    // timeout while auth-svc is stalled).
    let stuck = periodic_refresh_in_flight(&keys, &auth_svc, calls + 4).await;
    let started = Instant::now();
    assert!(!keys.refresh_for_unknown_kid("forged").await);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "waited {:?} behind a stalled auth-svc",
        started.elapsed()
    );
    assert!(stuck.await.expect("stuck").is_err(), "the call timed out");

    shutdown.cancel();
    let _ = authstack_bus::delete_names(&admin_url(), &names).await;
}
