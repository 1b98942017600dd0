//! The in-process fan-out of domain events to WebSockets.
//!
//! One dispatcher task per gateway reads the process's single event subscription
//! ([`crate::state::StateInner::events`]) and routes each event, rendered once, to the sockets
//! that may see it: the sockets of its account, admin sockets watching every account, and for
//! `keys.*` every socket; each socket's topic patterns filter further. Delivery is a
//! `try_send` into the socket's bounded queue: a full queue closes that socket with 4008 and
//! never slows the others. Revocations close the affected sockets (after the event itself is
//! queued), and every adopted key set closes the sockets whose token's key is gone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use authstack_bus::{CancellationToken, EventSubscriber};
use authstack_protocol::ws::{CloseCode, ServerFrame, topic_matches};
use authstack_protocol::{Event, EventKind, Revocation};
use axum::extract::ws::Utf8Bytes;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{Notify, mpsc};
use uuid::Uuid;

use crate::keys::KeyManager;
use crate::revocations::DenyList;

/// What a socket's writer sends next.
#[derive(Debug)]
pub enum Outbound {
    /// A text frame.
    Text(Utf8Bytes),
    /// A ping.
    Ping,
}

/// Ends one socket once: with the first close code asked for, or without a close frame of
/// ours when the client went away first.
#[derive(Default)]
pub struct Closer {
    end: OnceLock<Option<(CloseCode, String)>>,
    notify: Notify,
}

impl Closer {
    /// Asks the socket to close with `code` (later requests are ignored).
    pub fn close(&self, code: CloseCode, reason: impl Into<String>) {
        self.set(Some((code, reason.into())));
    }

    /// Ends the socket without a close frame of ours (the client closed or vanished).
    pub fn end(&self) {
        self.set(None);
    }

    fn set(&self, end: Option<(CloseCode, String)>) {
        if self.end.set(end).is_ok() {
            self.notify.notify_waiters();
            self.notify.notify_one();
        }
    }

    /// Waits until the socket must end; the close code and reason, if the gateway closes it.
    pub async fn closed(&self) -> Option<(CloseCode, String)> {
        loop {
            let notified = self.notify.notified();
            if let Some(end) = self.end.get() {
                return end.clone();
            }
            notified.await;
        }
    }

    /// The close code, if the gateway is closing the socket.
    pub fn code(&self) -> Option<CloseCode> {
        self.end.get().cloned().flatten().map(|c| c.0)
    }
}

/// What the hub knows of one authenticated socket.
struct Entry {
    account: Uuid,
    session: Option<Uuid>,
    kid: String,
    topics: Vec<String>,
    all_accounts: bool,
    queue: mpsc::Sender<Outbound>,
    closer: Arc<Closer>,
}

impl Entry {
    fn wants(&self, routing_key: &str) -> bool {
        self.topics.iter().any(|t| topic_matches(t, routing_key))
    }
}

#[derive(Default)]
struct Registry {
    sockets: HashMap<u64, Entry>,
    by_account: HashMap<Uuid, Vec<u64>>,
    /// Sockets of admins subscribed to every account.
    watchers: Vec<u64>,
}

/// The registry of authenticated sockets and the dispatcher.
pub struct Hub {
    registry: RwLock<Registry>,
    next_id: AtomicU64,
    revocations: Arc<DenyList>,
}

/// Identity and subscription of a socket, as registered.
pub struct Subscription {
    /// The account.
    pub account: Uuid,
    /// The session (`sid`).
    pub session: Option<Uuid>,
    /// The key that signed the token in force.
    pub kid: String,
    /// Topic patterns.
    pub topics: Vec<String>,
    /// Every account's events (admins).
    pub all_accounts: bool,
}

/// A socket's place in the hub; leaving it (drop) unregisters the socket.
pub struct Registration {
    hub: Arc<Hub>,
    id: u64,
}

impl Registration {
    /// Replaces identity and topics (in-band re-authentication, subscribe, unsubscribe).
    pub fn update(&self, s: Subscription) {
        let Ok(mut r) = self.hub.registry.write() else {
            return;
        };
        let Some(entry) = r.sockets.get_mut(&self.id) else {
            return;
        };
        entry.session = s.session;
        entry.kid = s.kid;
        entry.topics = s.topics;
        let was_watching = entry.all_accounts;
        entry.all_accounts = s.all_accounts;
        if was_watching != s.all_accounts {
            if s.all_accounts {
                r.watchers.push(self.id);
            } else {
                r.watchers.retain(|i| *i != self.id);
            }
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let Ok(mut r) = self.hub.registry.write() else {
            return;
        };
        if let Some(entry) = r.sockets.remove(&self.id) {
            if let Some(ids) = r.by_account.get_mut(&entry.account) {
                ids.retain(|i| *i != self.id);
                if ids.is_empty() {
                    r.by_account.remove(&entry.account);
                }
            }
            if entry.all_accounts {
                r.watchers.retain(|i| *i != self.id);
            }
        }
        metrics::gauge!("authstack_gateway_ws_sockets").set(r.sockets.len() as f64);
    }
}

impl Hub {
    /// An empty hub; revocations it sees also go to `revocations` (before sockets are closed).
    pub fn new(revocations: Arc<DenyList>) -> Arc<Self> {
        Arc::new(Hub {
            registry: RwLock::new(Registry::default()),
            next_id: AtomicU64::new(1),
            revocations,
        })
    }

    /// Registers an authenticated socket. The caller checks the deny list afterwards: a
    /// revocation dispatched before this registration is in the deny list by then.
    pub fn register(
        self: &Arc<Self>,
        s: Subscription,
        queue: mpsc::Sender<Outbound>,
        closer: Arc<Closer>,
    ) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut r) = self.registry.write() {
            r.by_account.entry(s.account).or_default().push(id);
            if s.all_accounts {
                r.watchers.push(id);
            }
            r.sockets.insert(
                id,
                Entry {
                    account: s.account,
                    session: s.session,
                    kid: s.kid,
                    topics: s.topics,
                    all_accounts: s.all_accounts,
                    queue,
                    closer,
                },
            );
            metrics::gauge!("authstack_gateway_ws_sockets").set(r.sockets.len() as f64);
        }
        Registration {
            hub: self.clone(),
            id,
        }
    }

    /// Authenticated sockets open now.
    pub fn len(&self) -> usize {
        self.registry.read().map_or(0, |r| r.sockets.len())
    }

    /// Whether no socket is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Routes one event to the sockets that may see it, then closes what it revokes.
    pub fn dispatch(&self, event: &Event) {
        let revocation = Revocation::of(event);
        if revocation.is_some() {
            self.revocations.apply(event);
        }
        let Ok(r) = self.registry.read() else {
            return;
        };
        let key = event.kind.routing_key();
        let frame = ServerFrame::Event {
            event: event.clone(),
        };
        let Ok(text) = serde_json::to_string(&frame) else {
            return;
        };
        let text = Utf8Bytes::from(text);
        let mut sent = 0u64;
        let mut deliver = |entry: &Entry| {
            if !entry.wants(key) {
                return;
            }
            match entry.queue.try_send(Outbound::Text(text.clone())) {
                Ok(()) => sent += 1,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    entry
                        .closer
                        .close(CloseCode::TooSlow, CloseCode::TooSlow.reason());
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        };
        match event.account_id {
            Some(account) => {
                let own = r.by_account.get(&account).map(Vec::as_slice).unwrap_or(&[]);
                for id in own {
                    if let Some(e) = r.sockets.get(id) {
                        deliver(e);
                    }
                }
                for id in &r.watchers {
                    if let Some(e) = r.sockets.get(id)
                        && e.account != account
                    {
                        deliver(e);
                    }
                }
            }
            // Events about no account (`keys.rotated`) concern everyone.
            None => r.sockets.values().for_each(&mut deliver),
        }
        metrics::counter!("authstack_gateway_ws_events_sent_total").increment(sent);
        let Some(revocation) = revocation else {
            return;
        };
        let close = |entry: &Entry, code: CloseCode, why: &str| {
            entry
                .closer
                .close(code, format!("{}: {why}", code.reason()));
        };
        let affected: Box<dyn Iterator<Item = &Entry>> = match event.account_id {
            Some(account) => Box::new(
                r.by_account
                    .get(&account)
                    .into_iter()
                    .flatten()
                    .filter_map(|id| r.sockets.get(id)),
            ),
            None => Box::new(r.sockets.values()),
        };
        for entry in affected {
            if event.kind == EventKind::AccountDeleted && Some(entry.account) == event.account_id {
                close(entry, CloseCode::AccountDisabled, &revocation.reason);
            } else if entry
                .session
                .is_some_and(|s| revocation.session_ids.contains(&s))
            {
                let code = if revocation.reason == "account_disabled" {
                    CloseCode::AccountDisabled
                } else {
                    CloseCode::SessionRevoked
                };
                close(entry, code, &revocation.reason);
            }
        }
    }

    /// Closes the sockets whose token was signed by a key the current set no longer holds.
    pub fn close_revoked_keys(&self, keys: &KeyManager) {
        let Some(current) = keys.current() else {
            return;
        };
        let Ok(r) = self.registry.read() else {
            return;
        };
        for entry in r.sockets.values() {
            if !current.verifier.contains(&entry.kid) {
                entry
                    .closer
                    .close(CloseCode::KeyRevoked, CloseCode::KeyRevoked.reason());
            }
        }
    }

    /// Runs the dispatcher until `shutdown`: events from the process's subscription, key-set
    /// changes from `keys`.
    pub fn spawn(
        self: Arc<Self>,
        events: &EventSubscriber,
        keys: Arc<KeyManager>,
        shutdown: CancellationToken,
    ) {
        let mut rx = events.subscribe();
        let mut adoptions = keys.adoptions();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    changed = adoptions.changed() => match changed {
                        Ok(()) => self.close_revoked_keys(&keys),
                        Err(_) => return,
                    },
                    event = rx.recv() => match event {
                        Ok(e) => self.dispatch(&e),
                        Err(RecvError::Lagged(n)) => {
                            metrics::counter!("authstack_gateway_ws_missed_events_total").increment(n);
                            tracing::warn!(missed = n, "WebSocket dispatcher fell behind the event stream");
                        }
                        Err(RecvError::Closed) => return,
                    },
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscription(account: Uuid, session: Uuid, topics: &[&str], all: bool) -> Subscription {
        Subscription {
            account,
            session: Some(session),
            kid: "k1".into(),
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            all_accounts: all,
        }
    }

    fn socket(
        hub: &Arc<Hub>,
        s: Subscription,
        buffer: usize,
    ) -> (Registration, mpsc::Receiver<Outbound>, Arc<Closer>) {
        let (tx, rx) = mpsc::channel(buffer);
        let closer = Arc::new(Closer::default());
        (hub.register(s, tx, closer.clone()), rx, closer)
    }

    fn kinds(rx: &mut mpsc::Receiver<Outbound>) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(Outbound::Text(t)) = rx.try_recv() {
            let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
            out.push(v["event"]["kind"].as_str().unwrap().to_owned());
        }
        out
    }

    #[test]
    fn events_reach_their_account_admin_watchers_and_matching_topics_only() {
        let hub = Hub::new(Arc::new(DenyList::new(100, 0)));
        let (ann, bob, admin) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let (_a, mut ann_rx, _) = socket(&hub, subscription(ann, Uuid::new_v4(), &["#"], false), 8);
        let (_b, mut bob_rx, _) = socket(
            &hub,
            subscription(bob, Uuid::new_v4(), &["session.*"], false),
            8,
        );
        let (_w, mut admin_rx, _) = socket(
            &hub,
            subscription(admin, Uuid::new_v4(), &["account.*"], true),
            8,
        );
        hub.dispatch(&Event::now(
            EventKind::AccountUpdated,
            Some(ann),
            serde_json::json!({}),
        ));
        hub.dispatch(&Event::now(
            EventKind::AccountUpdated,
            Some(bob),
            serde_json::json!({}),
        ));
        hub.dispatch(&Event::now(
            EventKind::KeysRotated,
            None,
            serde_json::json!({}),
        ));
        assert_eq!(kinds(&mut ann_rx), ["account.updated", "keys.rotated"]);
        assert!(kinds(&mut bob_rx).is_empty(), "bob's topics exclude both");
        assert_eq!(kinds(&mut admin_rx), ["account.updated", "account.updated"]);
    }

    #[test]
    fn a_full_queue_closes_that_socket_only_and_revocations_close_their_sessions() {
        let hub = Hub::new(Arc::new(DenyList::new(100, 0)));
        let ann = Uuid::new_v4();
        let (s1, s2) = (Uuid::new_v4(), Uuid::new_v4());
        let (_slow, _rx1, slow) = socket(&hub, subscription(ann, s1, &["#"], false), 1);
        let (_fast, mut rx2, fast) = socket(&hub, subscription(ann, s2, &["#"], false), 8);
        for _ in 0..2 {
            hub.dispatch(&Event::now(
                EventKind::AccountUpdated,
                Some(ann),
                serde_json::json!({}),
            ));
        }
        assert_eq!(slow.code(), Some(CloseCode::TooSlow));
        assert_eq!(fast.code(), None);
        assert_eq!(kinds(&mut rx2).len(), 2);
        let until = chrono::Utc::now().timestamp() + 60;
        let revoke = |reason: &str| {
            Event::now(
                EventKind::SessionRevoked,
                Some(ann),
                serde_json::json!({"reason": reason, "session_ids": [s2], "tokens_valid_until": until}),
            )
        };
        hub.dispatch(&revoke("account_disabled"));
        assert_eq!(fast.code(), Some(CloseCode::AccountDisabled));
        assert!(
            hub.revocations.denies(None, Some(s2)),
            "the deny list learnt it first"
        );
    }
}
