//! In-memory object storage: objects per resource type, the global resourceVersion counter,
//! the bounded watch-event history and the notification channel that wakes watchers.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::watch;

use crate::resources::{Registry, ResKey, ResourceType};
use crate::selectors::{FieldSelector, LabelSelector};

/// Type of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Object created.
    Added,
    /// Object changed.
    Modified,
    /// Object removed.
    Deleted,
}

/// One entry of the watch history.
#[derive(Debug, Clone)]
pub struct HistoryEvent {
    /// resourceVersion of the change.
    pub rv: u64,
    /// Resource type.
    pub key: ResKey,
    /// Namespace ("" for cluster-scoped).
    pub namespace: String,
    /// Event type.
    pub kind: EventKind,
    /// Object after the change (last state for deletions).
    pub object: Arc<Value>,
    /// Object before the change (for selector transitions).
    pub prev: Option<Arc<Value>>,
}

/// Tunables of the store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Number of watch events kept for resuming watches.
    pub history_capacity: usize,
    /// Mark Deployments/StatefulSets ready automatically after each spec change.
    pub auto_ready_workloads: bool,
}

/// The whole state of the fake cluster.
pub struct Store {
    /// Served types.
    pub registry: Registry,
    pub(crate) objects: BTreeMap<ResKey, BTreeMap<(String, String), Value>>,
    pub(crate) uid_index: HashMap<String, (ResKey, String, String)>,
    pub(crate) rv: u64,
    history: VecDeque<Arc<HistoryEvent>>,
    /// Events with rv <= this are gone from the history.
    pub(crate) compacted_rv: u64,
    pub(crate) config: StoreConfig,
    pub(crate) next_ip: u32,
    notify: watch::Sender<u64>,
}

impl Store {
    /// New store with built-in types and the standard namespaces.
    pub fn new(config: StoreConfig) -> (Self, watch::Receiver<u64>) {
        let (tx, rx) = watch::channel(0);
        let mut s = Store {
            registry: Registry::with_builtins(),
            objects: BTreeMap::new(),
            uid_index: HashMap::new(),
            rv: 0,
            history: VecDeque::new(),
            compacted_rv: 0,
            config,
            next_ip: 10,
            notify: tx,
        };
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            s.seed_namespace(ns);
        }
        (s, rx)
    }

    fn seed_namespace(&mut self, name: &str) {
        let rv = self.next_rv();
        let uid = uuid::Uuid::new_v4().to_string();
        let obj = json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                "uid": uid,
                "resourceVersion": rv.to_string(),
                "creationTimestamp": now(),
                "labels": {"kubernetes.io/metadata.name": name},
            },
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        });
        let key = ResKey {
            group: String::new(),
            plural: "namespaces".into(),
        };
        self.put(&key, "", name, obj, rv, EventKind::Added, None);
    }

    /// A fresh watch receiver.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.notify.subscribe()
    }

    /// Current (latest) resourceVersion.
    pub fn current_rv(&self) -> u64 {
        self.rv
    }

    pub(crate) fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    /// Fetch an object.
    pub fn get(&self, key: &ResKey, ns: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(key)
            .and_then(|m| m.get(&(ns.to_string(), name.to_string())))
    }

    /// Objects of a type, optionally in one namespace, sorted by namespace/name.
    pub fn list(
        &self,
        key: &ResKey,
        ns: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
    ) -> Vec<&Value> {
        let Some(m) = self.objects.get(key) else {
            return Vec::new();
        };
        m.iter()
            .filter(|((ons, _), _)| ns.is_none_or(|n| n == ons))
            .map(|(_, v)| v)
            .filter(|v| labels.matches(v) && fields.matches(v))
            .collect()
    }

    /// Store an object (insert or replace) and record a watch event.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn put(
        &mut self,
        key: &ResKey,
        ns: &str,
        name: &str,
        obj: Value,
        rv: u64,
        kind: EventKind,
        prev: Option<Value>,
    ) {
        if let Some(uid) = obj.pointer("/metadata/uid").and_then(Value::as_str) {
            self.uid_index.insert(
                uid.to_string(),
                (key.clone(), ns.to_string(), name.to_string()),
            );
        }
        self.objects
            .entry(key.clone())
            .or_default()
            .insert((ns.to_string(), name.to_string()), obj.clone());
        self.record(HistoryEvent {
            rv,
            key: key.clone(),
            namespace: ns.to_string(),
            kind,
            object: Arc::new(obj),
            prev: prev.map(Arc::new),
        });
    }

    /// Remove an object for good, recording a DELETED event with a fresh resourceVersion.
    pub(crate) fn remove(&mut self, key: &ResKey, ns: &str, name: &str) -> Option<Value> {
        let mut obj = self
            .objects
            .get_mut(key)?
            .remove(&(ns.to_string(), name.to_string()))?;
        if let Some(uid) = obj.pointer("/metadata/uid").and_then(Value::as_str) {
            self.uid_index.remove(uid);
        }
        let rv = self.next_rv();
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), json!(rv.to_string()));
        }
        self.record(HistoryEvent {
            rv,
            key: key.clone(),
            namespace: ns.to_string(),
            kind: EventKind::Deleted,
            object: Arc::new(obj.clone()),
            prev: None,
        });
        Some(obj)
    }

    fn record(&mut self, ev: HistoryEvent) {
        let rv = ev.rv;
        self.history.push_back(Arc::new(ev));
        while self.history.len() > self.config.history_capacity.max(1) {
            if let Some(old) = self.history.pop_front() {
                self.compacted_rv = old.rv;
            }
        }
        self.notify.send_replace(rv);
    }

    /// Events with rv > `after`, or Err(oldest available rv) if some were compacted away.
    pub fn events_since(&self, after: u64) -> Result<Vec<Arc<HistoryEvent>>, u64> {
        if after < self.compacted_rv {
            return Err(self.compacted_rv + 1);
        }
        let start = self.history.partition_point(|e| e.rv <= after);
        Ok(self.history.iter().skip(start).cloned().collect())
    }

    /// Type by key.
    pub fn resource(&self, key: &ResKey) -> Option<Arc<ResourceType>> {
        self.registry.by_key(key)
    }

    /// Whether an object with this uid exists.
    pub fn uid_exists(&self, uid: &str) -> bool {
        self.uid_index.contains_key(uid)
    }

    /// Allocate a Service cluster IP.
    pub(crate) fn alloc_ip(&mut self) -> String {
        let n = self.next_ip;
        self.next_ip += 1;
        format!("10.96.{}.{}", (n / 250) % 250, n % 250 + 1)
    }
}

/// Current time as kube-apiserver formats `metav1.Time`.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
