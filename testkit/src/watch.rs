//! Watch streams: newline-delimited JSON events fed from the store's bounded history.
//!
//! Each watcher is a task that wakes on the store's `tokio::sync::watch` notification,
//! takes the store lock only to copy the new history entries, and writes to its own
//! channel (the HTTP body) without holding any lock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::resources::ResourceType;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::status::ApiError;
use crate::store::{EventKind, HistoryEvent, Store};

/// Where a watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchStart {
    /// Synthetic ADDED events for the current state first (resourceVersion unset or "0").
    CurrentState,
    /// Only changes after this resourceVersion.
    After(u64),
}

/// A watch request.
#[derive(Debug, Clone)]
pub struct WatchSpec {
    /// Resource type.
    pub rt: Arc<ResourceType>,
    /// Version to present objects in.
    pub version: String,
    /// Namespace filter.
    pub namespace: Option<String>,
    /// Label selector.
    pub labels: LabelSelector,
    /// Field selector.
    pub fields: FieldSelector,
    /// Start point.
    pub start: WatchStart,
    /// `sendInitialEvents=true`: end the initial state with an `initial-events-end` bookmark.
    pub initial_events_end: bool,
    /// `allowWatchBookmarks=true`.
    pub bookmarks: bool,
    /// Interval between bookmarks.
    pub bookmark_interval: Duration,
    /// `timeoutSeconds`.
    pub timeout: Duration,
    /// Present objects as `PartialObjectMetadata`.
    pub metadata_only: bool,
}

/// Present a stored object for a request version (and optionally as metadata only).
pub fn present(rt: &ResourceType, version: &str, obj: &Value, metadata_only: bool) -> Value {
    if metadata_only {
        return json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
        });
    }
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.insert("apiVersion".into(), json!(rt.api_version(version)));
        m.insert("kind".into(), json!(rt.kind));
    }
    o
}

fn line(kind: &str, object: Value) -> Bytes {
    let mut s = json!({"type": kind, "object": object}).to_string();
    s.push('\n');
    Bytes::from(s)
}

fn gone_line(requested: u64, oldest: u64) -> Bytes {
    let st =
        ApiError::expired(format!("too old resource version: {requested} ({oldest})")).to_status();
    line("ERROR", st)
}

impl WatchSpec {
    fn matches(&self, ns: &str, obj: &Value) -> bool {
        self.namespace.as_deref().is_none_or(|n| n == ns)
            && self.labels.matches(obj)
            && self.fields.matches(obj)
    }

    fn translate(&self, ev: &HistoryEvent) -> Option<(&'static str, Value)> {
        if ev.key != self.rt.key() {
            return None;
        }
        let now = self.matches(&ev.namespace, &ev.object);
        let out = |o: &Value| present(&self.rt, &self.version, o, self.metadata_only);
        match ev.kind {
            EventKind::Added => now.then(|| ("ADDED", out(&ev.object))),
            EventKind::Deleted => now.then(|| ("DELETED", out(&ev.object))),
            EventKind::Modified => {
                let before = ev
                    .prev
                    .as_ref()
                    .map(|p| self.matches(&ev.namespace, p))
                    .unwrap_or(true);
                match (before, now) {
                    (true, true) => Some(("MODIFIED", out(&ev.object))),
                    (false, true) => Some(("ADDED", out(&ev.object))),
                    (true, false) => Some(("DELETED", out(&ev.object))),
                    (false, false) => None,
                }
            }
        }
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let (kind, av) = if self.metadata_only {
            (
                "PartialObjectMetadata".to_string(),
                "meta.k8s.io/v1".to_string(),
            )
        } else {
            (self.rt.kind.clone(), self.rt.api_version(&self.version))
        };
        line(
            "BOOKMARK",
            json!({"kind": kind, "apiVersion": av, "metadata": meta}),
        )
    }
}

fn lock(store: &Mutex<Store>) -> std::sync::MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(|e| e.into_inner())
}

/// Run one watch until timeout, client disconnect, server shutdown or a 410.
pub async fn run(
    store: Arc<Mutex<Store>>,
    spec: WatchSpec,
    tx: mpsc::Sender<Bytes>,
    mut shutdown: watch::Receiver<bool>,
) {
    let deadline = Instant::now() + spec.timeout;
    // Subscribe before taking the snapshot so no change can slip between the two.
    let (mut notify, mut last_rv, initial) = {
        let st = lock(&store);
        let notify = st.subscribe();
        match spec.start {
            WatchStart::CurrentState => {
                let items: Vec<Bytes> = st
                    .list(
                        &spec.rt.key(),
                        spec.namespace.as_deref(),
                        &spec.labels,
                        &spec.fields,
                    )
                    .into_iter()
                    .map(|o| {
                        line(
                            "ADDED",
                            present(&spec.rt, &spec.version, o, spec.metadata_only),
                        )
                    })
                    .collect();
                (notify, st.current_rv(), Ok(items))
            }
            WatchStart::After(rv) => match st.events_since(rv) {
                Ok(_) => (notify, rv, Ok(Vec::new())),
                Err(oldest) => (notify, rv, Err(oldest)),
            },
        }
    };
    match initial {
        Err(oldest) => {
            let _ = tx.send(gone_line(last_rv, oldest)).await;
            return;
        }
        Ok(items) => {
            for it in items {
                if tx.send(it).await.is_err() {
                    return;
                }
            }
        }
    }
    if spec.initial_events_end && tx.send(spec.bookmark(last_rv, true)).await.is_err() {
        return;
    }
    let mut ticker = tokio::time::interval_at(
        Instant::now() + spec.bookmark_interval,
        spec.bookmark_interval,
    );
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut want_bookmark = false;
    loop {
        let (batch, current) = {
            let st = lock(&store);
            (st.events_since(last_rv), st.current_rv())
        };
        match batch {
            Err(oldest) => {
                let _ = tx.send(gone_line(last_rv, oldest)).await;
                return;
            }
            Ok(events) => {
                for ev in events {
                    last_rv = ev.rv;
                    if let Some((kind, obj)) = spec.translate(&ev)
                        && tx.send(line(kind, obj)).await.is_err()
                    {
                        return;
                    }
                }
            }
        }
        if want_bookmark {
            want_bookmark = false;
            last_rv = last_rv.max(current);
            if tx.send(spec.bookmark(last_rv, false)).await.is_err() {
                return;
            }
        }
        tokio::select! {
            changed = notify.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = ticker.tick(), if spec.bookmarks => want_bookmark = true,
            _ = tokio::time::sleep_until(deadline) => return,
            _ = tx.closed() => return,
            _ = shutdown.changed() => return,
        }
    }
}
