//! Revoked sessions and deleted accounts, so their still-unexpired access tokens are refused by
//! the gateway too (on `/api/v1/auth/session`, which answers without asking auth-svc).
//!
//! auth-svc announces `session.revoked` (logout, logout-all, password change, refresh-token
//! reuse, account disabled: the `sid`s) and `account.deleted` (the `sub`), each with the time
//! after which the affected tokens expire anyway. Only auth-svc's broker user may publish on the
//! events exchange, so these announcements are trustworthy. An entry is kept until then (plus
//! the clock skew), so memory stays bounded by the revocations of one token lifetime; beyond the
//! configured capacity the soonest-expiring entries go first (auth-svc still refuses every RPC
//! of a revoked session: it checks the database on each call).

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use authstack_bus::{CancellationToken, EventSubscriber};
use authstack_protocol::{Event, EventKind, Revocation};
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

#[derive(Default)]
struct Entries {
    /// Revoked session → unix time after which the entry may go.
    sessions: HashMap<Uuid, i64>,
    /// Deleted account → unix time after which the entry may go.
    accounts: HashMap<Uuid, i64>,
}

impl Entries {
    fn len(&self) -> usize {
        self.sessions.len() + self.accounts.len()
    }

    fn purge(&mut self, now: i64) {
        self.sessions.retain(|_, until| *until >= now);
        self.accounts.retain(|_, until| *until >= now);
    }

    /// Drops the entry that expires first.
    fn evict_one(&mut self) {
        let soonest =
            |m: &HashMap<Uuid, i64>| m.iter().min_by_key(|(_, t)| **t).map(|(k, t)| (*k, *t));
        match (soonest(&self.sessions), soonest(&self.accounts)) {
            (Some((s, ts)), Some((_, ta))) if ts <= ta => {
                self.sessions.remove(&s);
            }
            (_, Some((a, _))) => {
                self.accounts.remove(&a);
            }
            (Some((s, _)), None) => {
                self.sessions.remove(&s);
            }
            (None, None) => {}
        }
    }
}

/// The deny list.
pub struct DenyList {
    entries: RwLock<Entries>,
    /// Fast path: nothing revoked at all.
    empty: AtomicBool,
    capacity: usize,
    leeway_secs: i64,
}

impl DenyList {
    /// A deny list holding at most `capacity` entries; entries outlive their tokens' expiry by
    /// `leeway_secs` (the clock skew verification allows).
    pub fn new(capacity: usize, leeway_secs: i64) -> Self {
        DenyList {
            entries: RwLock::new(Entries::default()),
            empty: AtomicBool::new(true),
            capacity: capacity.max(1),
            leeway_secs,
        }
    }

    /// Records what `event` revokes (other events are ignored).
    pub fn apply(&self, event: &Event) {
        let Some(revocation) = Revocation::of(event) else {
            return;
        };
        let until = revocation.tokens_valid_until + self.leeway_secs;
        let now = chrono::Utc::now().timestamp();
        if until < now {
            return;
        }
        let Ok(mut entries) = self.entries.write() else {
            return;
        };
        let add = |entries: &mut Entries, account: bool, id: Uuid| {
            if entries.len() >= self.capacity {
                entries.purge(now);
            }
            if entries.len() >= self.capacity {
                metrics::counter!("authstack_gateway_deny_list_evictions_total").increment(1);
                tracing::warn!(
                    capacity = self.capacity,
                    "deny list full: dropping the soonest-expiring entry"
                );
                entries.evict_one();
            }
            let map = if account {
                &mut entries.accounts
            } else {
                &mut entries.sessions
            };
            let slot = map.entry(id).or_insert(until);
            *slot = (*slot).max(until);
        };
        for sid in &revocation.session_ids {
            add(&mut entries, false, *sid);
        }
        if event.kind == EventKind::AccountDeleted
            && let Some(account) = event.account_id
        {
            add(&mut entries, true, account);
        }
        self.empty.store(entries.len() == 0, Ordering::Release);
        metrics::gauge!("authstack_gateway_deny_list_entries").set(entries.len() as f64);
    }

    /// Whether a token of `account` in `session` is refused.
    pub fn denies(&self, account: Option<Uuid>, session: Option<Uuid>) -> bool {
        if self.empty.load(Ordering::Acquire) {
            return false;
        }
        let Ok(entries) = self.entries.read() else {
            return false;
        };
        session.is_some_and(|s| entries.sessions.contains_key(&s))
            || account.is_some_and(|a| entries.accounts.contains_key(&a))
    }

    /// Forgets entries whose tokens have all expired.
    pub fn purge(&self) {
        if let Ok(mut entries) = self.entries.write() {
            entries.purge(chrono::Utc::now().timestamp());
            self.empty.store(entries.len() == 0, Ordering::Release);
            metrics::gauge!("authstack_gateway_deny_list_entries").set(entries.len() as f64);
        }
    }

    /// Feeds the list from the process's event subscription until `shutdown`, purging expired
    /// entries every `purge_every`.
    pub fn spawn(
        self: std::sync::Arc<Self>,
        events: &EventSubscriber,
        purge_every: Duration,
        shutdown: CancellationToken,
    ) {
        let mut rx = events.subscribe();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(purge_every);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => self.purge(),
                    event = rx.recv() => match event {
                        Ok(e) => self.apply(&e),
                        Err(RecvError::Lagged(n)) => {
                            metrics::counter!("authstack_gateway_deny_list_missed_events_total").increment(n);
                            tracing::warn!(missed = n, "deny list fell behind the event stream");
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

    fn revoked(kind: EventKind, account: Option<Uuid>, sessions: &[Uuid], until: i64) -> Event {
        Event::now(
            kind,
            account,
            serde_json::json!({"reason": "test", "session_ids": sessions, "tokens_valid_until": until}),
        )
    }

    #[test]
    fn sessions_and_deleted_accounts_are_denied_until_their_tokens_expire() {
        let list = DenyList::new(10, 0);
        let now = chrono::Utc::now().timestamp();
        let (s1, s2, a) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        assert!(!list.denies(Some(a), Some(s1)));
        list.apply(&revoked(
            EventKind::SessionRevoked,
            Some(a),
            &[s1],
            now + 60,
        ));
        assert!(list.denies(Some(Uuid::new_v4()), Some(s1)));
        assert!(
            !list.denies(Some(a), Some(s2)),
            "other sessions of the account stay valid"
        );
        list.apply(&revoked(EventKind::AccountDeleted, Some(a), &[], now + 60));
        assert!(list.denies(Some(a), Some(s2)));
        // Other events revoke nothing; stale revocations are not stored.
        list.apply(&revoked(EventKind::AccountUpdated, None, &[s2], now + 60));
        list.apply(&revoked(EventKind::SessionRevoked, None, &[s2], now - 5));
        assert!(!list.denies(None, Some(s2)));
    }

    #[test]
    fn memory_is_bounded_and_expired_entries_go_first() {
        let list = DenyList::new(3, 0);
        let now = chrono::Utc::now().timestamp();
        let ids: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
        for (i, id) in ids.iter().enumerate() {
            list.apply(&revoked(
                EventKind::SessionRevoked,
                None,
                &[*id],
                now + 10 + i as i64,
            ));
        }
        let kept: Vec<bool> = ids.iter().map(|id| list.denies(None, Some(*id))).collect();
        assert_eq!(
            kept,
            [false, false, true, true, true],
            "the soonest-expiring went first"
        );
        if let Ok(mut e) = list.entries.write() {
            e.sessions.insert(Uuid::new_v4(), now - 100);
        }
        list.purge();
        assert_eq!(list.entries.read().unwrap().len(), 3);
    }
}
