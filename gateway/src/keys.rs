//! Verification keys: fetched from auth-svc over RPC, never private.
//!
//! The set is refreshed periodically, after every broker reconnect, when auth-svc announces a
//! new ring (`keys.rotated` carries the public set, so no RPC is needed), and when a token
//! names an unknown `kid` (rate limited, so forged kids cannot flood auth-svc). auth-svc
//! replicas may briefly hold different rings during a rotation; the gateway keeps the highest
//! ring generation it has seen, so an answer from a replica that lags behind never removes a
//! key. (A lower generation is adopted only after three periodic refreshes in a row agree, for
//! a ring that was deliberately recreated.)

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use authstack_bus::{CancellationToken, EventSubscriber, RpcClient};
use authstack_keyring::jwt::{Expectations, TokenVerifier};
use authstack_protocol::model::KeySet;
use authstack_protocol::rpc::{Call, CallContext, RpcRequest};
use authstack_protocol::{ErrorBody, ErrorCode, EventKind};
use axum::body::Bytes;

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

/// Where a key set came from (decides whether an older generation may replace a newer one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// An RPC answer to a periodic refresh.
    Periodic,
    /// Any other RPC answer.
    Rpc,
    /// A `keys.rotated` event.
    Event,
}

/// Holds and refreshes the verification keys.
pub struct KeyManager {
    current: ArcSwapOption<VerificationKeys>,
    rpc: RpcClient,
    expect: Expectations,
    rpc_timeout: Duration,
    unknown_kid_interval: Duration,
    last_unknown_refresh: std::sync::Mutex<Option<Instant>>,
    refresh_lock: tokio::sync::Mutex<()>,
    lower_streak: AtomicU32,
}

impl KeyManager {
    /// A manager with no keys yet.
    pub fn new(
        rpc: RpcClient,
        expect: Expectations,
        rpc_timeout: Duration,
        unknown_kid_interval: Duration,
    ) -> Arc<Self> {
        Arc::new(KeyManager {
            current: ArcSwapOption::empty(),
            rpc,
            expect,
            rpc_timeout,
            unknown_kid_interval,
            last_unknown_refresh: std::sync::Mutex::new(None),
            refresh_lock: tokio::sync::Mutex::new(()),
            lower_streak: AtomicU32::new(0),
        })
    }

    /// The keys in force, if any were loaded yet.
    pub fn current(&self) -> Option<Arc<VerificationKeys>> {
        self.current.load_full()
    }

    /// Adopts `set` if it is newer than the current one; returns whether it was adopted.
    pub fn adopt(&self, set: KeySet, source: Source) -> bool {
        let current = self.current.load();
        if let Some(cur) = current.as_ref() {
            if set.generation == cur.generation {
                self.lower_streak.store(0, Ordering::Relaxed);
                return false;
            }
            if set.generation < cur.generation {
                if source != Source::Periodic {
                    return false;
                }
                if self.lower_streak.fetch_add(1, Ordering::Relaxed) + 1 < 3 {
                    return false;
                }
                tracing::warn!(
                    from = cur.generation,
                    to = set.generation,
                    "adopting a lower key ring generation: the ring was recreated"
                );
            }
        }
        self.lower_streak.store(0, Ordering::Relaxed);
        let (verifier, warnings) = TokenVerifier::new(&set.keys, &self.expect);
        for w in warnings {
            tracing::warn!(warning = %w, "ignoring an unusable verification key");
        }
        let jwks = serde_json::to_vec(&serde_json::json!({ "keys": set.keys })).unwrap_or_default();
        tracing::info!(generation = set.generation, active = %set.active_kid, keys = set.keys.len(), ?source, "verification keys updated");
        metrics::counter!("gateway_key_set_updates_total").increment(1);
        self.current.store(Some(Arc::new(VerificationKeys {
            generation: set.generation,
            verifier,
            jwks: Bytes::from(jwks),
            key_set: set,
        })));
        true
    }

    /// Fetches the key set from auth-svc.
    pub async fn refresh(&self, source: Source) -> Result<bool, ErrorBody> {
        let _guard = self.refresh_lock.lock().await;
        let request = RpcRequest::new(
            &Call::ListKeys,
            CallContext {
                request_id: format!("keys-{}", uuid::Uuid::new_v4().simple()),
                ..Default::default()
            },
        );
        let raw = self.rpc.call(&request, self.rpc_timeout).await?;
        let set: KeySet = serde_json::from_str(raw.get()).map_err(|e| {
            ErrorBody::new(
                ErrorCode::RpcBadResponse,
                format!("unreadable key set: {e}"),
            )
        })?;
        Ok(self.adopt(set, source))
    }

    /// Refreshes because a token named `kid`, at most once per configured interval. Returns
    /// whether `kid` is known afterwards.
    pub async fn refresh_for_unknown_kid(&self, kid: &str) -> bool {
        {
            let Ok(mut last) = self.last_unknown_refresh.lock() else {
                return false;
            };
            if last.is_some_and(|t| t.elapsed() < self.unknown_kid_interval) {
                metrics::counter!("gateway_unknown_kid_refresh_skipped_total").increment(1);
                return self.current().is_some_and(|k| k.verifier.contains(kid));
            }
            *last = Some(Instant::now());
        }
        if let Err(e) = self.refresh(Source::Rpc).await {
            tracing::warn!(error = %e, "key refresh for an unknown kid failed");
        }
        self.current().is_some_and(|k| k.verifier.contains(kid))
    }

    /// Keeps the keys fresh until `shutdown`: initial load, events, reconnects, periodic.
    pub fn spawn_background(
        self: Arc<Self>,
        events: EventSubscriber,
        period: Duration,
        shutdown: CancellationToken,
    ) {
        tokio::spawn(async move {
            let mut rotated = events.subscribe();
            let mut sessions = events.sessions();
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
                            match serde_json::from_value::<KeySet>(e.data["key_set"].clone()) {
                                Ok(set) => { self.adopt(set, Source::Event); }
                                Err(_) => { let _ = self.refresh(Source::Rpc).await; }
                            }
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
