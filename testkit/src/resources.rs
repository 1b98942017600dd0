//! Resource types served by the fake server (built-ins and CRD-defined) and discovery documents.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::status::ErrTarget;

/// CRD-specific data attached to a served custom resource type.
#[derive(Debug, Clone, Default)]
pub struct CrdInfo {
    /// `openAPIV3Schema` per served version (None: no schema).
    pub schemas: BTreeMap<String, Value>,
    /// Name of the CRD object that defines this type.
    pub crd_name: String,
    /// `additionalPrinterColumns` of the preferred version (for Table output).
    pub printer_columns: Vec<Value>,
}

/// A served resource type (one group/resource, possibly several versions).
#[derive(Debug, Clone)]
pub struct ResourceType {
    /// API group ("" = core).
    pub group: String,
    /// Served versions; the first is the preferred one.
    pub versions: Vec<String>,
    /// Plural resource name (URL segment).
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// Kind.
    pub kind: String,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Whether a `/status` subresource exists.
    pub status_subresource: bool,
    /// Whether `metadata.generation` is maintained.
    pub tracks_generation: bool,
    /// kubectl short names.
    pub short_names: Vec<String>,
    /// kubectl categories.
    pub categories: Vec<String>,
    /// Present for custom resources.
    pub crd: Option<CrdInfo>,
}

impl ResourceType {
    /// `group/version` (or just `version` for core).
    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{}", self.group, version)
        }
    }

    /// Preferred version.
    pub fn preferred_version(&self) -> &str {
        self.versions.first().map(String::as_str).unwrap_or("v1")
    }

    /// Storage key for this type.
    pub fn key(&self) -> ResKey {
        ResKey {
            group: self.group.clone(),
            plural: self.plural.clone(),
        }
    }

    /// Error target for an object of this type.
    pub fn target(&self, name: &str) -> ErrTarget {
        ErrTarget {
            group: self.group.clone(),
            plural: self.plural.clone(),
            kind: self.kind.clone(),
            name: name.to_string(),
        }
    }

    /// Verbs for discovery.
    pub fn verbs(&self) -> Vec<&'static str> {
        if self.plural == "namespaces" {
            vec![
                "create", "delete", "get", "list", "patch", "update", "watch",
            ]
        } else {
            vec![
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ]
        }
    }

    /// True for custom resources.
    pub fn is_custom(&self) -> bool {
        self.crd.is_some()
    }
}

/// Storage key of a resource type: group + plural (version independent).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResKey {
    /// API group.
    pub group: String,
    /// Plural resource name.
    pub plural: String,
}

struct Builtin {
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    status: bool,
    generation: bool,
    short: &'static [&'static str],
    categories: &'static [&'static str],
}

const BUILTINS: &[Builtin] = &[
    Builtin {
        group: "",
        version: "v1",
        plural: "namespaces",
        kind: "Namespace",
        namespaced: false,
        status: true,
        generation: false,
        short: &["ns"],
        categories: &[],
    },
    Builtin {
        group: "",
        version: "v1",
        plural: "secrets",
        kind: "Secret",
        namespaced: true,
        status: false,
        generation: false,
        short: &[],
        categories: &[],
    },
    Builtin {
        group: "",
        version: "v1",
        plural: "configmaps",
        kind: "ConfigMap",
        namespaced: true,
        status: false,
        generation: false,
        short: &["cm"],
        categories: &[],
    },
    Builtin {
        group: "",
        version: "v1",
        plural: "services",
        kind: "Service",
        namespaced: true,
        status: true,
        generation: false,
        short: &["svc"],
        categories: &["all"],
    },
    Builtin {
        group: "",
        version: "v1",
        plural: "serviceaccounts",
        kind: "ServiceAccount",
        namespaced: true,
        status: false,
        generation: false,
        short: &["sa"],
        categories: &[],
    },
    Builtin {
        group: "",
        version: "v1",
        plural: "pods",
        kind: "Pod",
        namespaced: true,
        status: true,
        generation: false,
        short: &["po"],
        categories: &["all"],
    },
    Builtin {
        group: "",
        version: "v1",
        plural: "persistentvolumeclaims",
        kind: "PersistentVolumeClaim",
        namespaced: true,
        status: true,
        generation: false,
        short: &["pvc"],
        categories: &[],
    },
    Builtin {
        group: "",
        version: "v1",
        plural: "events",
        kind: "Event",
        namespaced: true,
        status: false,
        generation: false,
        short: &["ev"],
        categories: &[],
    },
    Builtin {
        group: "apps",
        version: "v1",
        plural: "deployments",
        kind: "Deployment",
        namespaced: true,
        status: true,
        generation: true,
        short: &["deploy"],
        categories: &["all"],
    },
    Builtin {
        group: "apps",
        version: "v1",
        plural: "statefulsets",
        kind: "StatefulSet",
        namespaced: true,
        status: true,
        generation: true,
        short: &["sts"],
        categories: &["all"],
    },
    Builtin {
        group: "policy",
        version: "v1",
        plural: "poddisruptionbudgets",
        kind: "PodDisruptionBudget",
        namespaced: true,
        status: true,
        generation: true,
        short: &["pdb"],
        categories: &[],
    },
    Builtin {
        group: "networking.k8s.io",
        version: "v1",
        plural: "networkpolicies",
        kind: "NetworkPolicy",
        namespaced: true,
        status: false,
        generation: true,
        short: &["netpol"],
        categories: &[],
    },
    Builtin {
        group: "coordination.k8s.io",
        version: "v1",
        plural: "leases",
        kind: "Lease",
        namespaced: true,
        status: false,
        generation: false,
        short: &[],
        categories: &[],
    },
    Builtin {
        group: "events.k8s.io",
        version: "v1",
        plural: "events",
        kind: "Event",
        namespaced: true,
        status: false,
        generation: false,
        short: &["ev"],
        categories: &[],
    },
    Builtin {
        group: "apiextensions.k8s.io",
        version: "v1",
        plural: "customresourcedefinitions",
        kind: "CustomResourceDefinition",
        namespaced: false,
        status: true,
        generation: true,
        short: &["crd", "crds"],
        categories: &["api-extensions"],
    },
];

/// The set of served resource types.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    types: BTreeMap<ResKey, Arc<ResourceType>>,
    /// Group order for discovery (built-ins first, then CRD groups by first registration).
    group_order: Vec<String>,
}

impl Registry {
    /// A registry with every built-in type.
    pub fn with_builtins() -> Self {
        let mut r = Registry::default();
        for b in BUILTINS {
            r.insert(ResourceType {
                group: b.group.to_string(),
                versions: vec![b.version.to_string()],
                plural: b.plural.to_string(),
                singular: b.kind.to_lowercase(),
                kind: b.kind.to_string(),
                namespaced: b.namespaced,
                status_subresource: b.status,
                tracks_generation: b.generation,
                short_names: b.short.iter().map(|s| s.to_string()).collect(),
                categories: b.categories.iter().map(|s| s.to_string()).collect(),
                crd: None,
            });
        }
        r
    }

    /// Add or replace a type.
    pub fn insert(&mut self, rt: ResourceType) {
        if !self.group_order.contains(&rt.group) {
            self.group_order.push(rt.group.clone());
        }
        self.types.insert(rt.key(), Arc::new(rt));
    }

    /// Remove a type.
    pub fn remove(&mut self, key: &ResKey) -> Option<Arc<ResourceType>> {
        let out = self.types.remove(key);
        if let Some(rt) = &out
            && !self.types.values().any(|t| t.group == rt.group)
        {
            self.group_order.retain(|g| g != &rt.group);
        }
        out
    }

    /// Type by storage key.
    pub fn by_key(&self, key: &ResKey) -> Option<Arc<ResourceType>> {
        self.types.get(key).cloned()
    }

    /// Type served at `group/version/plural`.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        let rt = self.types.get(&ResKey {
            group: group.to_string(),
            plural: plural.to_string(),
        })?;
        rt.versions.iter().any(|v| v == version).then(|| rt.clone())
    }

    /// Type by apiVersion and kind, plural, singular or short name (case-insensitive for kind).
    pub fn lookup_loose(
        &self,
        api_version: &str,
        name: &str,
    ) -> Option<(Arc<ResourceType>, String)> {
        let (group, version) = split_api_version(api_version);
        let lname = name.to_lowercase();
        self.types
            .values()
            .filter(|rt| rt.group == group && rt.versions.iter().any(|v| v == version))
            .find(|rt| {
                rt.plural == lname
                    || rt.singular == lname
                    || rt.kind.to_lowercase() == lname
                    || rt.short_names.contains(&lname)
            })
            .map(|rt| (rt.clone(), version.to_string()))
    }

    /// All types.
    pub fn all(&self) -> impl Iterator<Item = &Arc<ResourceType>> {
        self.types.values()
    }

    /// Groups (excluding core) in discovery order, each with its served versions.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out = Vec::new();
        for g in &self.group_order {
            if g.is_empty() {
                continue;
            }
            let mut versions: Vec<String> = Vec::new();
            for rt in self.types.values().filter(|t| &t.group == g) {
                for v in &rt.versions {
                    if !versions.contains(v) {
                        versions.push(v.clone());
                    }
                }
            }
            versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
            out.push((g.clone(), versions));
        }
        out
    }

    /// `APIResourceList` for a group version.
    pub fn api_resource_list(&self, group: &str, version: &str) -> Option<Value> {
        let mut resources = Vec::new();
        for rt in self
            .types
            .values()
            .filter(|t| t.group == group && t.versions.iter().any(|v| v == version))
        {
            let mut r = json!({
                "name": rt.plural,
                "singularName": rt.singular,
                "namespaced": rt.namespaced,
                "kind": rt.kind,
                "verbs": rt.verbs(),
            });
            if !rt.short_names.is_empty() {
                r["shortNames"] = json!(rt.short_names);
            }
            if !rt.categories.is_empty() {
                r["categories"] = json!(rt.categories);
            }
            resources.push(r);
            if rt.status_subresource {
                resources.push(json!({
                    "name": format!("{}/status", rt.plural),
                    "singularName": "",
                    "namespaced": rt.namespaced,
                    "kind": rt.kind,
                    "verbs": ["get", "patch", "update"],
                }));
            }
        }
        if resources.is_empty() {
            return None;
        }
        let gv = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        Some(json!({
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": gv,
            "resources": resources,
        }))
    }

    /// `APIGroup` document for one group.
    pub fn api_group(&self, group: &str) -> Option<Value> {
        let (name, versions) = self.groups().into_iter().find(|(g, _)| g == group)?;
        Some(api_group_json(&name, &versions))
    }

    /// `APIGroupList` document for `/apis`.
    pub fn api_group_list(&self) -> Value {
        let groups: Vec<Value> = self
            .groups()
            .iter()
            .map(|(g, vs)| api_group_json(g, vs))
            .collect();
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
    }

    /// Aggregated discovery (`apidiscovery.k8s.io/v2` `APIGroupDiscoveryList`) for the core
    /// group (`core == true`) or all named groups.
    pub fn aggregated_discovery(&self, core: bool) -> Value {
        let groups: Vec<(String, Vec<String>)> = if core {
            vec![(String::new(), vec!["v1".to_string()])]
        } else {
            self.groups()
        };
        let items: Vec<Value> = groups
            .iter()
            .map(|(g, versions)| {
                let vs: Vec<Value> = versions
                    .iter()
                    .map(|v| {
                        let resources: Vec<Value> = self
                            .types
                            .values()
                            .filter(|t| &t.group == g && t.versions.iter().any(|x| x == v))
                            .map(|rt| {
                                let mut subs = Vec::new();
                                if rt.status_subresource {
                                    subs.push(json!({
                                        "subresource": "status",
                                        "responseKind": {"group": g, "version": v, "kind": rt.kind},
                                        "verbs": ["get", "patch", "update"],
                                    }));
                                }
                                json!({
                                    "resource": rt.plural,
                                    "responseKind": {"group": g, "version": v, "kind": rt.kind},
                                    "scope": if rt.namespaced { "Namespaced" } else { "Cluster" },
                                    "singularResource": rt.singular,
                                    "verbs": rt.verbs(),
                                    "shortNames": rt.short_names,
                                    "categories": rt.categories,
                                    "subresources": subs,
                                })
                            })
                            .collect();
                        json!({"version": v, "resources": resources, "freshness": "Current"})
                    })
                    .collect();
                let mut item = json!({"metadata": {}, "versions": vs});
                if !g.is_empty() {
                    item["metadata"] = json!({"name": g});
                }
                item
            })
            .collect();
        json!({
            "kind": "APIGroupDiscoveryList",
            "apiVersion": "apidiscovery.k8s.io/v2",
            "metadata": {},
            "items": items,
        })
    }
}

fn api_group_json(name: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    let preferred = vs.first().cloned().unwrap_or(Value::Null);
    json!({
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": name,
        "versions": vs,
        "preferredVersion": preferred,
    })
}

/// Split `group/version` (`v1` → `("", "v1")`).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.rsplit_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

/// Kubernetes version priority: GA > beta > alpha, higher numbers first.
pub fn version_priority(v: &str) -> (u8, u64, u64) {
    let Some(rest) = v.strip_prefix('v') else {
        return (0, 0, 0);
    };
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let Ok(major) = digits.parse::<u64>() else {
        return (0, 0, 0);
    };
    let tail = &rest[digits.len()..];
    if tail.is_empty() {
        return (3, major, 0);
    }
    let (level, num) = if let Some(n) = tail.strip_prefix("beta") {
        (2, n)
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (1, n)
    } else {
        return (0, 0, 0);
    };
    match num.parse::<u64>() {
        Ok(n) => (level, major, n),
        Err(_) => (0, 0, 0),
    }
}
