//! Verification keys: fetched from auth-svc over RPC, never private.
//!
//! A key set is accepted only from an RPC reply to the gateway's own `keys.list` request (it
//! arrives on the gateway's private reply queue, which no other broker user can write to). A
//! `keys.rotated` event is only a hint to ask (rate limited, retried until a replica answers
//! with at least the announced generation); the key set it carries is never used, so a message
//! injected on the broker cannot make a forged token valid. The set is also refreshed
//! periodically, after every broker reconnect, and when a token names an unknown `kid` (rate
//! limited, so forged kids cannot flood auth-svc).
//!
//! A token naming an unknown `kid` waits, at most the RPC timeout, for the refreshes in flight
//! and then checks its `kid` against the keys in force: the refresh it started (run as a task of
//! its own, so a client that leaves cancels nothing), or, when the interval's on-demand refresh
//! was already taken, the refreshes running at that moment (whatever prompted them: a
//! `keys.rotated` hint, another unknown kid, the periodic refresh, a reconnect). During a
//! rotation the answer already on its way usually brings the new key, so the request succeeds a
//! few milliseconds later instead of failing. With the slot taken and no refresh in flight, or
//! while the last refresh got no key set (auth-svc silent or failing), it fails at once; waiters
//! never ask auth-svc, and tokens whose `kid` is known never wait, so forged kids can neither
//! flood auth-svc nor hold up other requests. Refreshes run one at a time; waiting for the one
//! before and the call together last at most the RPC timeout.
//!
//! auth-svc replicas may briefly hold different rings during a rotation; the gateway keeps the
//! highest ring generation it has seen, so an answer from a replica that lags behind never
//! removes a key. Adoption is a compare-and-swap on the generation: two answers racing cannot
//! leave the older one in place. (A lower generation is adopted only after three periodic
//! refreshes in a row agree, for a ring that was deliberately recreated.)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use authstack_bus::{CancellationToken, EventSubscriber, RpcClient};
use authstack_keyring::jwt::{Expectations, TokenVerifier};
use authstack_protocol::model::KeySet;
use authstack_protocol::rpc::{Call, CallContext, RpcRequest};
use authstack_protocol::{ErrorBody, ErrorCode, EventKind};
use axum::body::Bytes;

/// Asks made for one `keys.rotated` hint at most, one per on-demand interval (1 s by default):
/// long enough for every auth-svc replica to load a ring the hint announced (they poll their
/// ring file every second after the kubelet projects it).
const HINT_ATTEMPTS: u32 = 10;

/// Refreshes requested and finished since start; one runs at a time (`refresh_lock`), the
/// others queue, so refreshes are in flight while `requested > finished`.
#[derive(Debug, Clone, Copy, Default)]
struct RefreshCounts {
    requested: u64,
    finished: u64,
}

/// A refresh counted as in flight until this is dropped (when it ends, or when its future is
/// dropped midway).
struct InFlight {
    counts: Arc<tokio::sync::watch::Sender<RefreshCounts>>,
    /// This refresh is the `number`-th requested.
    number: u64,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.counts.send_modify(|c| c.finished += 1);
    }
}

/// The on-demand refresh slot as a caller found it.
enum Slot {
    /// Claimed: this caller refreshes, counted as in flight from the claim on.
    Claimed(InFlight),
    /// Taken within the interval. `Some(n)`: refreshes were in flight, the last one requested
    /// being the `n`-th; `None`: none was.
    Taken(Option<u64>),
}

/// One verification key set, ready to use.
pub struct VerificationKeys {
    /// Ring generation.
    pub generation: u64,
    /// Verifies tokens.
    pub verifier: TokenVerifier,
    /// Pre-rendered JWKS document.
    pub jwks: Bytes,
    /// The set as received.
    pub key_set: KeySet,
}

/// Why a key set was fetched (decides whether an older generation may replace a newer one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A periodic refresh.
    Periodic,
    /// Any other refresh (start-up, reconnect, unknown kid, `keys.rotated` hint).
    Rpc,
}

/// Holds and refreshes the verification keys.
pub struct KeyManager {
    current: ArcSwapOption<VerificationKeys>,
    rpc: RpcClient,
    expect: Expectations,
    rpc_timeout: Duration,
    /// Minimum time between on-demand refreshes (unknown kid, `keys.rotated` hint).
    on_demand_interval: Duration,
    last_on_demand_refresh: std::sync::Mutex<Option<Instant>>,
    refresh_lock: tokio::sync::Mutex<()>,
    lower_streak: AtomicU32,
    /// Refreshes in flight, so an unknown kid can wait for the answer already on its way.
    refreshes: Arc<tokio::sync::watch::Sender<RefreshCounts>>,
    /// The last refresh got no key set (auth-svc silent or failing): nobody waits for the
    /// refreshes in flight then, until one brings a key set again.
    last_refresh_failed: AtomicBool,
    /// Counts adoptions, so holders of long-lived tokens (WebSockets) can re-check their kid.
    adoptions: tokio::sync::watch::Sender<u64>,
}

impl KeyManager {
    /// A manager with no keys yet.
    pub fn new(
        rpc: RpcClient,
        expect: Expectations,
        rpc_timeout: Duration,
        on_demand_interval: Duration,
    ) -> Arc<Self> {
        Arc::new(KeyManager {
            current: ArcSwapOption::empty(),
            rpc,
            expect,
            rpc_timeout,
            on_demand_interval,
            last_on_demand_refresh: std::sync::Mutex::new(None),
            refresh_lock: tokio::sync::Mutex::new(()),
            lower_streak: AtomicU32::new(0),
            refreshes: Arc::new(tokio::sync::watch::Sender::new(RefreshCounts::default())),
            last_refresh_failed: AtomicBool::new(false),
            adoptions: tokio::sync::watch::Sender::new(0),
        })
    }

    /// Changes every time a key set is adopted.
    pub fn adoptions(&self) -> tokio::sync::watch::Receiver<u64> {
        self.adoptions.subscribe()
    }

    /// The keys in force, if any were loaded yet.
    pub fn current(&self) -> Option<Arc<VerificationKeys>> {
        self.current.load_full()
    }

    /// Adopts `set` (from an RPC reply) if it is newer than the current one; returns whether it
    /// was adopted. Atomic: the check and the swap are one compare-and-swap, so concurrent
    /// adoptions can never leave a lower generation in force.
    pub fn adopt(&self, set: KeySet, source: Source) -> bool {
        let current_generation = self.current.load().as_ref().map(|c| c.generation);
        match current_generation {
            Some(g) if set.generation == g => {
                self.lower_streak.store(0, Ordering::Relaxed);
                return false;
            }
            // Lower: only three periodic answers in a row may take the ring back.
            Some(g)
                if set.generation < g
                    && (source != Source::Periodic
                        || self.lower_streak.fetch_add(1, Ordering::Relaxed) + 1 < 3) =>
            {
                return false;
            }
            _ => {}
        }
        let lower_allowed = current_generation.is_some_and(|g| set.generation < g);
        let (verifier, warnings) = TokenVerifier::new(&set.keys, &self.expect);
        for w in warnings {
            tracing::warn!(warning = %w, "ignoring an unusable verification key");
        }
        let jwks =
            serde_json::to_vec(&crate::openapi::Jwks { keys: &set.keys }).unwrap_or_default();
        let candidate = Arc::new(VerificationKeys {
            generation: set.generation,
            verifier,
            jwks: Bytes::from(jwks),
            key_set: set,
        });
        let mut adopted = false;
        self.current.rcu(|current| {
            adopted = match current.as_ref().map(|c| c.generation) {
                None => true,
                Some(g) => candidate.generation > g || (lower_allowed && candidate.generation < g),
            };
            if adopted {
                Some(candidate.clone())
            } else {
                current.clone()
            }
        });
        if adopted {
            self.lower_streak.store(0, Ordering::Relaxed);
            if lower_allowed {
                tracing::warn!(
                    to = candidate.generation,
                    "adopted a lower key ring generation: the ring was recreated"
                );
            }
            tracing::info!(generation = candidate.generation, active = %candidate.key_set.active_kid, keys = candidate.key_set.keys.len(), ?source, "verification keys updated");
            metrics::counter!("authstack_gateway_key_set_updates_total").increment(1);
            self.adoptions.send_modify(|n| *n += 1);
        }
        adopted
    }

    /// Fetches the key set from auth-svc.
    pub async fn refresh(&self, source: Source) -> Result<bool, ErrorBody> {
        self.fetch(self.begin_refresh(), source).await
    }

    /// Counts a refresh as in flight until the returned guard is dropped.
    fn begin_refresh(&self) -> InFlight {
        let mut number = 0;
        self.refreshes.send_modify(|c| {
            c.requested += 1;
            number = c.requested;
        });
        InFlight {
            counts: self.refreshes.clone(),
            number,
        }
    }

    /// The last refresh requested, if any is still in flight.
    fn last_in_flight(&self) -> Option<u64> {
        let c = *self.refreshes.borrow();
        (c.requested > c.finished).then_some(c.requested)
    }

    /// Fetches and adopts the key set, counted as in flight until it ends (`in_flight` is
    /// dropped last, after the outcome is recorded). Refreshes run one at a time; waiting for
    /// the one before and the call together last at most the RPC timeout.
    async fn fetch(&self, in_flight: InFlight, source: Source) -> Result<bool, ErrorBody> {
        let result = self.fetch_in_turn(source).await;
        self.last_refresh_failed
            .store(result.is_err(), Ordering::Release);
        drop(in_flight);
        result
    }

    async fn fetch_in_turn(&self, source: Source) -> Result<bool, ErrorBody> {
        let deadline = tokio::time::Instant::now() + self.rpc_timeout;
        let Ok(_guard) = tokio::time::timeout_at(deadline, self.refresh_lock.lock()).await else {
            return Err(ErrorBody::new(
                ErrorCode::RpcTimeout,
                "the key refresh before this one did not end in time",
            ));
        };
        let request = RpcRequest::new(
            &Call::ListKeys,
            CallContext {
                request_id: format!("keys-{}", uuid::Uuid::new_v4().simple()),
                ..Default::default()
            },
        );
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let raw = self.rpc.call(&request, remaining).await?;
        let set: KeySet = serde_json::from_str(raw.get()).map_err(|e| {
            ErrorBody::new(
                ErrorCode::RpcBadResponse,
                format!("unreadable key set: {e}"),
            )
        })?;
        Ok(self.adopt(set, source))
    }

    /// Claims the on-demand refresh slot: at most one refresh per configured interval. The
    /// claim and the count of refreshes in flight are one step under the slot's lock, so a
    /// caller that finds the slot taken also sees the refresh of whoever took it.
    fn on_demand_slot(&self) -> Slot {
        let Ok(mut last) = self.last_on_demand_refresh.lock() else {
            return Slot::Taken(self.last_in_flight());
        };
        if last.is_some_and(|t| t.elapsed() < self.on_demand_interval) {
            metrics::counter!("authstack_gateway_on_demand_key_refresh_skipped_total").increment(1);
            return Slot::Taken(self.last_in_flight());
        }
        *last = Some(Instant::now());
        Slot::Claimed(self.begin_refresh())
    }

    /// Whether the keys in force know `kid`.
    fn knows(&self, kid: &str) -> bool {
        self.current().is_some_and(|k| k.verifier.contains(kid))
    }

    /// Refreshes because a token named `kid`, at most once per configured interval, and waits
    /// (at most the RPC timeout) for the refreshes in flight: its own — run as a task of its
    /// own, so a client that leaves does not cancel it for the others — or, when the interval's
    /// refresh was already taken, those running then, unless the last refresh got no key set
    /// (auth-svc not answering: refused at once). Returns whether `kid` is known afterwards.
    pub async fn refresh_for_unknown_kid(self: &Arc<Self>, kid: &str) -> bool {
        if self.knows(kid) {
            return true;
        }
        let last = match self.on_demand_slot() {
            Slot::Claimed(in_flight) => {
                let number = in_flight.number;
                let manager = self.clone();
                tokio::spawn(async move {
                    if let Err(e) = manager.fetch(in_flight, Source::Rpc).await {
                        tracing::warn!(error = %e, "key refresh for an unknown kid failed");
                    }
                });
                number
            }
            Slot::Taken(Some(last)) if !self.last_refresh_failed.load(Ordering::Acquire) => {
                metrics::counter!("authstack_gateway_on_demand_key_refresh_waits_total")
                    .increment(1);
                last
            }
            Slot::Taken(_) => return false,
        };
        if !self.wait_for_refreshes(last, kid).await {
            tracing::debug!("an unknown kid stopped waiting for a key refresh in flight");
        }
        self.knows(kid)
    }

    /// Waits until `kid` is known or the refreshes up to the `last`-th requested have finished
    /// (refreshes run one at a time, in turn), at most the RPC timeout; returns whether either
    /// happened.
    async fn wait_for_refreshes(&self, last: u64, kid: &str) -> bool {
        let mut counts = self.refreshes.subscribe();
        let done = counts.wait_for(|c| c.finished >= last || self.knows(kid));
        matches!(
            tokio::time::timeout(self.rpc_timeout, done).await,
            Ok(Ok(_))
        )
    }

    /// Follows a `keys.rotated` hint announcing `generation`: asks auth-svc (within the
    /// on-demand rate limit) until a replica answers with at least that generation, once per
    /// on-demand interval, [`HINT_ATTEMPTS`] times at most. The replica answering may not have
    /// loaded the announced ring yet, and the new key may sign as soon as the propagation delay
    /// after it was published has passed, so the next ask comes one interval later, not after a
    /// growing pause. The event's own key set is never used.
    async fn follow_hint(&self, generation: Option<u64>, shutdown: &CancellationToken) {
        let known = || self.current().map_or(0, |k| k.generation);
        for attempt in 0..HINT_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(self.on_demand_interval).await;
            }
            if shutdown.is_cancelled() || generation.is_some_and(|g| known() >= g) {
                return;
            }
            let Slot::Claimed(in_flight) = self.on_demand_slot() else {
                continue;
            };
            if let Err(e) = self.fetch(in_flight, Source::Rpc).await {
                tracing::warn!(error = %e, "key refresh after keys.rotated failed");
            }
            if generation.is_none() {
                return;
            }
        }
    }

    /// Keeps the keys fresh until `shutdown`: initial load, events, reconnects, periodic.
    pub fn spawn_background(
        self: Arc<Self>,
        events: &EventSubscriber,
        period: Duration,
        shutdown: CancellationToken,
    ) {
        let mut rotated = events.subscribe();
        let mut sessions = events.sessions();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // Initial load: retry quickly until auth-svc answers.
            while self.current().is_none() {
                if shutdown.is_cancelled() {
                    return;
                }
                if let Err(e) = self.refresh(Source::Rpc).await {
                    tracing::debug!(error = %e, "verification keys not available yet");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {
                        if let Err(e) = self.refresh(Source::Periodic).await {
                            tracing::warn!(error = %e, "periodic key refresh failed");
                        }
                    }
                    changed = sessions.changed() => {
                        if changed.is_err() { return; }
                        // Events may have been missed while disconnected.
                        let _ = self.refresh(Source::Rpc).await;
                    }
                    event = rotated.recv() => match event {
                        Ok(e) if e.kind == EventKind::KeysRotated => {
                            self.follow_hint(e.data["generation"].as_u64(), &shutdown).await;
                        }
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            let _ = self.refresh(Source::Rpc).await;
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    },
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use authstack_bus::{Names, ReplyMode, RpcClientConfig};
    use authstack_keyring::material::generate;
    use authstack_keyring::{KeyRing, SigningAlgorithm};

    use super::*;

    fn key_set(generation: u64) -> KeySet {
        let mut ring = KeyRing::with_active_key(
            generate(SigningAlgorithm::EdDSA).unwrap(),
            chrono::Utc::now(),
        );
        ring.generation = generation;
        ring.key_set()
    }

    /// A manager whose broker is unreachable: adoption is all these tests exercise.
    fn manager() -> Arc<KeyManager> {
        manager_with(Duration::ZERO)
    }

    /// A manager whose broker is unreachable (every RPC fails at once), RPC timeout 1 s.
    fn manager_with(on_demand_interval: Duration) -> Arc<KeyManager> {
        let rpc = RpcClient::start(
            RpcClientConfig {
                url: "amqp://127.0.0.1:1/%2f".into(),
                names: Names::defaults(),
                max_message_bytes: 1 << 20,
                connection_name: "test".into(),
                consumer_check_interval: Duration::from_secs(1),
                reply_mode: ReplyMode::Exclusive,
                batching: Default::default(),
            },
            CancellationToken::new(),
        );
        let expect = Expectations {
            issuer: "i".into(),
            audience: "a".into(),
            leeway_secs: 0,
        };
        KeyManager::new(rpc, expect, Duration::from_secs(1), on_demand_interval)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_adoptions_never_leave_a_lower_generation_in_force() {
        let manager = manager();
        // Six replicas' answers racing upwards through 20000 generations at once.
        let base = key_set(1);
        let threads = 6u64;
        let top = 20_000u64;
        let barrier = Arc::new(std::sync::Barrier::new(threads as usize + 1));
        let stop = Arc::new(AtomicBool::new(false));
        let watcher = {
            let (manager, stop) = (manager.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut seen = 0;
                while !stop.load(Ordering::Relaxed) {
                    let g = manager.current().map_or(0, |k| k.generation);
                    assert!(g >= seen, "generation went back from {seen} to {g}");
                    seen = g;
                }
            })
        };
        let workers: Vec<_> = (0..threads)
            .map(|w| {
                let (manager, base, barrier) = (manager.clone(), base.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    for g in (1..=top).filter(|g| g % threads == w) {
                        let mut set = base.clone();
                        set.generation = g;
                        manager.adopt(set, Source::Rpc);
                    }
                })
            })
            .collect();
        barrier.wait();
        for w in workers {
            w.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        watcher.join().unwrap();
        assert_eq!(manager.current().unwrap().generation, top);
    }

    #[tokio::test]
    async fn only_three_periodic_answers_in_a_row_may_lower_the_generation() {
        let manager = manager();
        assert!(manager.adopt(key_set(5), Source::Rpc));
        assert!(!manager.adopt(key_set(3), Source::Rpc));
        assert!(!manager.adopt(key_set(3), Source::Periodic));
        assert!(!manager.adopt(key_set(3), Source::Periodic));
        assert!(
            manager.adopt(key_set(3), Source::Periodic),
            "the ring was recreated"
        );
        assert_eq!(manager.current().unwrap().generation, 3);
    }

    /// A set of generation `generation` with `more`'s keys added to `base`'s.
    fn with_keys(base: &KeySet, more: &KeySet, generation: u64) -> KeySet {
        let mut set = base.clone();
        set.keys.extend(more.keys.iter().cloned());
        set.generation = generation;
        set
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unknown_kid_waits_for_a_refresh_in_flight_but_not_without_one() {
        let manager = manager_with(Duration::from_secs(3600));
        let first = key_set(1);
        assert!(manager.adopt(first.clone(), Source::Rpc));
        let (incoming, kid) = {
            let set = key_set(1);
            let kid = set.active_kid.clone();
            (with_keys(&first, &set, 2), kid)
        };
        // Takes the slot (its refresh fails at once: no broker).
        assert!(!manager.refresh_for_unknown_kid("other").await);

        // Slot taken, nothing in flight: refused at once.
        let started = Instant::now();
        assert!(!manager.refresh_for_unknown_kid(&kid).await);
        assert!(started.elapsed() < Duration::from_millis(500));

        // A refresh in flight, but the last one got no key set (auth-svc not answering):
        // refused at once too, not after the RPC timeout.
        let in_flight = manager.begin_refresh();
        let started = Instant::now();
        assert!(!manager.refresh_for_unknown_kid(&kid).await);
        assert!(started.elapsed() < Duration::from_millis(500));
        drop(in_flight);
        // As after a refresh that brought a key set.
        manager.last_refresh_failed.store(false, Ordering::Release);

        // A refresh in flight that brings the kid 200 ms later.
        let in_flight = manager.begin_refresh();
        let (waiter, started) = {
            let (manager, kid) = (manager.clone(), kid.clone());
            let started = Instant::now();
            (
                tokio::spawn(async move { manager.refresh_for_unknown_kid(&kid).await }),
                started,
            )
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiter.is_finished(), "the waiter gave up early");
        assert!(manager.adopt(incoming, Source::Rpc));
        drop(in_flight);
        assert!(waiter.await.unwrap(), "the kid the refresh brought");
        assert!(started.elapsed() < Duration::from_secs(1));

        // A refresh in flight that never ends: the wait lasts the RPC timeout, no longer.
        let in_flight = manager.begin_refresh();
        let started = Instant::now();
        assert!(!manager.refresh_for_unknown_kid("forged").await);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
            "{waited:?}"
        );
        drop(in_flight);
        assert_eq!(manager.last_in_flight(), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refresh_dropped_midway_stops_counting_as_in_flight() {
        let manager = manager_with(Duration::from_secs(3600));
        let lock = manager.refresh_lock.lock().await;
        let queued = {
            let manager = manager.clone();
            tokio::spawn(async move { manager.refresh(Source::Periodic).await })
        };
        let end = Instant::now() + Duration::from_secs(10);
        while manager.last_in_flight().is_none() {
            assert!(Instant::now() < end, "the refresh never started");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(manager.last_in_flight(), Some(1));
        queued.abort();
        assert!(queued.await.is_err());
        assert_eq!(manager.last_in_flight(), None);
        drop(lock);
    }
}
