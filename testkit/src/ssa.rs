//! Server-side apply: field sets in `metadata.managedFields` (FieldsV1), merging of applied
//! configurations, removal of fields a manager stopped applying, conflicts, and ownership
//! tracking for ordinary (Update) writes.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::patch::{ListKind, builtin_list_kind, item_key};
use crate::schema;

/// One element of a field path, as in FieldsV1.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElem {
    /// `f:name` — a struct/map field.
    Field(String),
    /// `k:{...}` — an associative list item identified by its keys (canonical JSON).
    Key(String),
    /// `v:...` — a set list item (JSON value).
    Value(String),
    /// `i:N` — a list index (only parsed, never produced).
    Index(usize),
}

/// A path from the object root.
pub type FieldPath = Vec<PathElem>;
/// A set of owned field paths.
pub type FieldSet = BTreeSet<FieldPath>;

/// Type information needed to merge: built-in heuristics or a CRD schema node.
#[derive(Debug, Clone, Copy)]
pub enum Shape<'a> {
    /// Built-in type: well-known list keys by field name.
    Builtin,
    /// Custom resource: schema node (None = unknown, atomic lists, granular maps).
    Schema(Option<&'a Value>),
}

impl<'a> Shape<'a> {
    fn child(self, key: &str) -> Shape<'a> {
        match self {
            Shape::Builtin => Shape::Builtin,
            Shape::Schema(s) => Shape::Schema(s.and_then(|s| schema::prop_schema(s, key))),
        }
    }

    fn items(self) -> Shape<'a> {
        match self {
            Shape::Builtin => Shape::Builtin,
            Shape::Schema(s) => Shape::Schema(s.and_then(schema::items_schema)),
        }
    }

    fn list_kind(self, field: &str, items: &[Value]) -> ListKind {
        match self {
            Shape::Builtin => builtin_list_kind(field, items),
            Shape::Schema(Some(s)) => schema::list_kind(s),
            Shape::Schema(None) => ListKind::Atomic,
        }
    }

    fn atomic_map(self, field: &str) -> bool {
        match self {
            Shape::Builtin => matches!(
                field,
                "selector" | "podSelector" | "namespaceSelector" | "labelSelector"
            ),
            Shape::Schema(Some(s)) => schema::is_atomic_map(s),
            Shape::Schema(None) => false,
        }
    }
}

/// Which part of an object an operation addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The main resource of a type without a status subresource: everything.
    Whole,
    /// The main resource of a type with a status subresource: everything except `.status`.
    Main,
    /// The `/status` subresource: only `.status`.
    Status,
}

const SKIP_META: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

fn canonical_key(item: &Value, keys: &[String]) -> String {
    let mut names: Vec<&String> = keys.iter().collect();
    names.sort();
    let vals = item_key(item, keys);
    let mut parts = Vec::new();
    for name in names {
        let idx = keys.iter().position(|k| k == name).unwrap_or(0);
        let v = vals.get(idx).cloned().unwrap_or(Value::Null);
        if !v.is_null() {
            parts.push(format!("{}:{}", Value::String(name.clone()), v));
        }
    }
    format!("{{{}}}", parts.join(","))
}

/// Every field path set in `obj` within `scope` (leaves, atomic values, list items).
pub fn fieldset_of(obj: &Value, shape: Shape, scope: Scope) -> FieldSet {
    let mut set = FieldSet::new();
    let Value::Object(m) = obj else {
        return set;
    };
    for (k, v) in m {
        if k == "apiVersion" || k == "kind" {
            continue;
        }
        match scope {
            Scope::Status if k != "status" => continue,
            Scope::Main if k == "status" => continue,
            _ => {}
        }
        let path = vec![PathElem::Field(k.clone())];
        if k == "metadata" {
            if let Value::Object(meta) = v {
                for (mk, mv) in meta {
                    if SKIP_META.contains(&mk.as_str()) || mv.is_null() {
                        continue;
                    }
                    let mut p = path.clone();
                    p.push(PathElem::Field(mk.clone()));
                    collect(mv, Shape::Builtin, mk, p, &mut set);
                }
            }
            continue;
        }
        collect(v, shape.child(k), k, path, &mut set);
    }
    set
}

fn collect(v: &Value, shape: Shape, field: &str, path: FieldPath, set: &mut FieldSet) {
    match v {
        Value::Object(m) if !shape.atomic_map(field) => {
            if m.is_empty() {
                set.insert(path);
                return;
            }
            for (k, cv) in m {
                let mut p = path.clone();
                p.push(PathElem::Field(k.clone()));
                collect(cv, shape.child(k), k, p, set);
            }
        }
        Value::Array(items) => match shape.list_kind(field, items) {
            ListKind::Atomic => {
                set.insert(path);
            }
            ListKind::Set => {
                for i in items {
                    let mut p = path.clone();
                    p.push(PathElem::Value(i.to_string()));
                    set.insert(p);
                }
            }
            ListKind::Map(keys) => {
                let is = shape.items();
                for i in items {
                    let mut p = path.clone();
                    p.push(PathElem::Key(canonical_key(i, &keys)));
                    set.insert(p.clone());
                    if let Value::Object(im) = i {
                        for (k, cv) in im {
                            let mut cp = p.clone();
                            cp.push(PathElem::Field(k.clone()));
                            collect(cv, is.child(k), k, cp, set);
                        }
                    }
                }
            }
        },
        _ => {
            set.insert(path);
        }
    }
}

fn key_matches(item: &Value, key: &str) -> bool {
    let Ok(Value::Object(want)) = serde_json::from_str::<Value>(key) else {
        return false;
    };
    let names: Vec<String> = want.keys().cloned().collect();
    let vals = item_key(item, &names);
    names.iter().zip(vals).all(|(n, v)| want.get(n) == Some(&v))
}

/// Value at a field path, if present.
pub fn value_at<'v>(obj: &'v Value, path: &[PathElem]) -> Option<&'v Value> {
    let mut cur = obj;
    for e in path {
        cur = match e {
            PathElem::Field(f) => cur.get(f)?,
            PathElem::Key(k) => cur.as_array()?.iter().find(|i| key_matches(i, k))?,
            PathElem::Value(v) => {
                let want: Value = serde_json::from_str(v).ok()?;
                cur.as_array()?.iter().find(|i| **i == want)?
            }
            PathElem::Index(i) => cur.as_array()?.get(*i)?,
        };
    }
    Some(cur)
}

fn remove_path(obj: &mut Value, path: &[PathElem]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = &mut *obj;
    for e in parents {
        let next = match e {
            PathElem::Field(f) => cur.get_mut(f),
            PathElem::Key(k) => cur
                .as_array_mut()
                .and_then(|a| a.iter_mut().find(|i| key_matches(i, k))),
            PathElem::Value(_) | PathElem::Index(_) => None,
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    match last {
        PathElem::Field(f) => {
            if let Some(m) = cur.as_object_mut() {
                m.remove(f);
            }
        }
        PathElem::Key(k) => {
            if let Some(a) = cur.as_array_mut() {
                a.retain(|i| !key_matches(i, k));
            }
        }
        PathElem::Value(v) => {
            if let (Some(a), Ok(want)) = (cur.as_array_mut(), serde_json::from_str::<Value>(v)) {
                a.retain(|i| *i != want);
            }
        }
        PathElem::Index(_) => {}
    }
}

/// Drop maps left empty below the top level (as Go's `omitempty` would for built-ins).
fn prune_empty(v: &mut Value, depth: usize) {
    match v {
        Value::Object(m) => {
            for child in m.values_mut() {
                prune_empty(child, depth + 1);
            }
            if depth >= 1 {
                m.retain(|_, c| !matches!(c, Value::Object(cm) if cm.is_empty()));
            }
        }
        Value::Array(items) => {
            for i in items {
                prune_empty(i, depth + 1);
            }
        }
        _ => {}
    }
}

/// Merge an applied configuration into a live object.
pub fn merge_applied(live: &Value, applied: &Value, shape: Shape) -> Value {
    merge_value(Some(live), applied, shape, "")
}

fn merge_value(live: Option<&Value>, applied: &Value, shape: Shape, field: &str) -> Value {
    match applied {
        Value::Object(am) if !shape.atomic_map(field) => {
            let mut out = live.and_then(Value::as_object).cloned().unwrap_or_default();
            for (k, av) in am {
                if av.is_null() {
                    out.remove(k);
                    continue;
                }
                let cs = if field.is_empty() && k == "metadata" {
                    Shape::Builtin
                } else {
                    shape.child(k)
                };
                let merged = merge_value(out.get(k), av, cs, k);
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        Value::Array(items) => {
            let live_items = live.and_then(Value::as_array).cloned().unwrap_or_default();
            let mut all = live_items.clone();
            all.extend(items.iter().cloned());
            match shape.list_kind(field, &all) {
                ListKind::Atomic => applied.clone(),
                ListKind::Set => {
                    let mut out = live_items;
                    for i in items {
                        if !out.contains(i) {
                            out.push(i.clone());
                        }
                    }
                    Value::Array(out)
                }
                ListKind::Map(keys) => {
                    let is = shape.items();
                    let mut out = live_items;
                    for i in items {
                        let k = canonical_key(i, &keys);
                        match out.iter().position(|l| canonical_key(l, &keys) == k) {
                            Some(p) => {
                                let merged = merge_value(Some(&out[p]), i, is, "");
                                out[p] = merged;
                            }
                            None => out.push(merge_value(None, i, is, "")),
                        }
                    }
                    Value::Array(out)
                }
            }
        }
        other => other.clone(),
    }
}

// ------------------------------------------------------------ managedFields

/// One `managedFields` entry.
#[derive(Debug, Clone)]
pub struct ManagerEntry {
    /// Manager name.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// apiVersion the fields were written with.
    pub api_version: String,
    /// Last change time (RFC 3339).
    pub time: String,
    /// `""` or `status`.
    pub subresource: String,
    /// Owned fields.
    pub fields: FieldSet,
}

fn parse_elem(k: &str) -> Option<PathElem> {
    if let Some(f) = k.strip_prefix("f:") {
        Some(PathElem::Field(f.to_string()))
    } else if let Some(x) = k.strip_prefix("k:") {
        Some(PathElem::Key(x.to_string()))
    } else if let Some(x) = k.strip_prefix("v:") {
        Some(PathElem::Value(x.to_string()))
    } else {
        k.strip_prefix("i:")
            .and_then(|x| x.parse().ok())
            .map(PathElem::Index)
    }
}

fn parse_fields_v1(v: &Value, path: &mut FieldPath, out: &mut FieldSet) {
    let Value::Object(m) = v else {
        return;
    };
    if m.is_empty() && !path.is_empty() {
        out.insert(path.clone());
        return;
    }
    for (k, child) in m {
        if k == "." {
            out.insert(path.clone());
            continue;
        }
        if let Some(e) = parse_elem(k) {
            path.push(e);
            parse_fields_v1(child, path, out);
            path.pop();
        }
    }
}

fn elem_str(e: &PathElem) -> String {
    match e {
        PathElem::Field(f) => format!("f:{f}"),
        PathElem::Key(k) => format!("k:{k}"),
        PathElem::Value(v) => format!("v:{v}"),
        PathElem::Index(i) => format!("i:{i}"),
    }
}

/// Serialize a field set as FieldsV1 JSON.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut cur = &mut root;
        for e in path {
            let entry = cur
                .entry(elem_str(e))
                .or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(m) = entry else {
                break;
            };
            cur = m;
        }
        // a member that also has children gets a "." marker; added below
    }
    mark_self(&mut root, set, &mut Vec::new());
    Value::Object(root)
}

fn mark_self(m: &mut Map<String, Value>, set: &FieldSet, path: &mut FieldPath) {
    let keys: Vec<String> = m.keys().cloned().collect();
    for k in keys {
        let Some(e) = parse_elem(&k) else { continue };
        path.push(e);
        if let Some(Value::Object(child)) = m.get_mut(&k)
            && !child.is_empty()
        {
            mark_self(child, set, path);
            if set.contains(path) {
                child.insert(".".into(), json!({}));
            }
        }
        path.pop();
    }
}

/// Read the `managedFields` of an object.
pub fn read_managers(obj: &Value) -> Vec<ManagerEntry> {
    let Some(list) = obj
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|e| {
            let manager = e.get("manager").and_then(Value::as_str)?.to_string();
            let mut fields = FieldSet::new();
            if let Some(f) = e.get("fieldsV1") {
                parse_fields_v1(f, &mut Vec::new(), &mut fields);
            }
            Some(ManagerEntry {
                manager,
                operation: e
                    .get("operation")
                    .and_then(Value::as_str)
                    .unwrap_or("Update")
                    .to_string(),
                api_version: e
                    .get("apiVersion")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                time: e
                    .get("time")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                subresource: e
                    .get("subresource")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                fields,
            })
        })
        .collect()
}

/// Write entries to `metadata.managedFields` (dropping empty ones).
pub fn write_managers(obj: &mut Value, entries: &[ManagerEntry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut m = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&e.fields),
            });
            if !e.subresource.is_empty() {
                m["subresource"] = json!(e.subresource);
            }
            m
        })
        .collect();
    if let Some(m) = obj.as_object_mut()
        && !m.get("metadata").is_some_and(Value::is_object)
    {
        m.insert("metadata".into(), json!({}));
    }
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if list.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(list));
        }
    }
}

/// Render a path like kube-apiserver's conflict messages: `.spec.containers[name="a"].image`.
pub fn render_path(path: &[PathElem]) -> String {
    let mut s = String::new();
    for e in path {
        match e {
            PathElem::Field(f) => {
                s.push('.');
                s.push_str(f);
            }
            PathElem::Key(k) => {
                let inner = serde_json::from_str::<Value>(k)
                    .ok()
                    .and_then(|v| v.as_object().cloned())
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_default();
                s.push_str(&format!("[{inner}]"));
            }
            PathElem::Value(v) => s.push_str(&format!("[={v}]")),
            PathElem::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// A conflict: (other manager, path).
pub type Conflict = (String, FieldPath);

/// Inputs of one server-side apply.
pub struct ApplyInput<'a> {
    /// Live object (None: the apply creates it; pass an empty object).
    pub live: &'a Value,
    /// The applied configuration.
    pub applied: &'a Value,
    /// `fieldManager`.
    pub manager: &'a str,
    /// `force=true`.
    pub force: bool,
    /// Main resource or status subresource.
    pub scope: Scope,
    /// Merge type information.
    pub shape: Shape<'a>,
    /// apiVersion of the request.
    pub api_version: &'a str,
    /// Current time (RFC 3339).
    pub now: &'a str,
}

/// Perform a server-side apply; returns the merged object (with updated managedFields) or the
/// conflicts when `force` is false.
pub fn apply(input: ApplyInput) -> Result<Value, Vec<Conflict>> {
    let ApplyInput {
        live,
        applied,
        manager,
        force,
        scope,
        shape,
        api_version,
        now,
    } = input;
    let subresource = if scope == Scope::Status { "status" } else { "" };
    let new_set = fieldset_of(applied, shape, scope);
    let mut managers = read_managers(live);
    let old_set = managers
        .iter()
        .find(|e| e.manager == manager && e.operation == "Apply" && e.subresource == subresource)
        .map(|e| e.fields.clone())
        .unwrap_or_default();

    let mut conflicts = Vec::new();
    for e in managers.iter().filter(|e| e.manager != manager) {
        for p in new_set.intersection(&e.fields) {
            if value_at(live, p) != value_at(applied, p) && value_at(live, p).is_some() {
                let leaf_like =
                    !matches!(p.last(), Some(PathElem::Key(_)) | Some(PathElem::Value(_)));
                if leaf_like {
                    conflicts.push((e.manager.clone(), p.clone()));
                }
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    for e in managers.iter_mut().filter(|e| e.manager != manager) {
        for (_, p) in conflicts.iter() {
            e.fields.remove(p);
        }
    }

    let mut merged = merge_applied(live, applied, shape);

    let others: FieldSet = managers
        .iter()
        .filter(|e| {
            !(e.manager == manager && e.operation == "Apply" && e.subresource == subresource)
        })
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    let keep = |p: &FieldPath| {
        new_set
            .iter()
            .chain(others.iter())
            .any(|q| q.starts_with(p))
    };
    let mut removed_any = false;
    for p in old_set.difference(&new_set) {
        if keep(p) {
            continue;
        }
        remove_path(&mut merged, p);
        removed_any = true;
    }
    if removed_any {
        prune_empty(&mut merged, 0);
    }

    match managers
        .iter_mut()
        .find(|e| e.manager == manager && e.operation == "Apply" && e.subresource == subresource)
    {
        Some(e) => {
            if e.fields != new_set {
                e.time = now.to_string();
            }
            e.fields = new_set;
            e.api_version = api_version.to_string();
        }
        None => managers.push(ManagerEntry {
            manager: manager.to_string(),
            operation: "Apply".into(),
            api_version: api_version.to_string(),
            time: now.to_string(),
            subresource: subresource.to_string(),
            fields: new_set,
        }),
    }
    write_managers(&mut merged, &managers);
    Ok(merged)
}

/// Record ownership for an ordinary write (create/update/patch): the manager takes the
/// fields it changed, others lose them, and removed fields lose all owners. `old` is the
/// object before the write (Null for create); `new` gets its managedFields rewritten.
#[allow(clippy::too_many_arguments)]
pub fn record_update(
    old: &Value,
    new: &mut Value,
    manager: &str,
    scope: Scope,
    shape: Shape,
    api_version: &str,
    now: &str,
) {
    let subresource = if scope == Scope::Status { "status" } else { "" };
    let old_set = fieldset_of(old, shape, scope);
    let new_set = fieldset_of(new, shape, scope);
    let changed: FieldSet = new_set
        .iter()
        .filter(|p| !old_set.contains(*p) || value_at(old, p) != value_at(new, p))
        .cloned()
        .collect();
    let removed: FieldSet = old_set.difference(&new_set).cloned().collect();
    let mut managers = read_managers(old);
    for e in managers.iter_mut() {
        for p in changed.iter().chain(removed.iter()) {
            if !(e.manager == manager && e.operation == "Update" && e.subresource == subresource) {
                e.fields.remove(p);
            }
        }
        if e.manager == manager && e.operation == "Update" && e.subresource == subresource {
            for p in &removed {
                e.fields.remove(p);
            }
        }
    }
    if !changed.is_empty() {
        match managers.iter_mut().find(|e| {
            e.manager == manager && e.operation == "Update" && e.subresource == subresource
        }) {
            Some(e) => {
                e.fields.extend(changed);
                e.time = now.to_string();
                e.api_version = api_version.to_string();
            }
            None => managers.push(ManagerEntry {
                manager: manager.to_string(),
                operation: "Update".into(),
                api_version: api_version.to_string(),
                time: now.to_string(),
                subresource: subresource.to_string(),
                fields: changed,
            }),
        }
    }
    write_managers(new, &managers);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> &'static str {
        "2024-01-01T00:00:00Z"
    }

    fn do_apply(
        live: &Value,
        applied: &Value,
        mgr: &str,
        force: bool,
    ) -> Result<Value, Vec<Conflict>> {
        apply(ApplyInput {
            live,
            applied,
            manager: mgr,
            force,
            scope: Scope::Main,
            shape: Shape::Builtin,
            api_version: "apps/v1",
            now: now(),
        })
    }

    #[test]
    fn apply_removes_dropped_fields() {
        let a1 = json!({"metadata": {"name": "d", "labels": {"a": "1", "b": "2"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "c1", "image": "i1"}, {"name": "c2", "image": "i2"}]}}}});
        let live = do_apply(&json!({"metadata": {"name": "d"}}), &a1, "op", false).unwrap();
        assert_eq!(live["spec"]["replicas"], json!(2));
        let mf = &live["metadata"]["managedFields"][0];
        assert_eq!(mf["manager"], json!("op"));
        assert_eq!(mf["operation"], json!("Apply"));
        assert!(
            mf["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"c1\"}"]
                ["."]
                .is_object()
        );

        let a2 = json!({"metadata": {"name": "d", "labels": {"a": "1"}},
            "spec": {"template": {"spec": {"containers": [{"name": "c1", "image": "i1b"}]}}}});
        let live2 = do_apply(&live, &a2, "op", false).unwrap();
        assert_eq!(live2["metadata"]["labels"], json!({"a": "1"}));
        assert!(live2["spec"].get("replicas").is_none());
        assert_eq!(
            live2["spec"]["template"]["spec"]["containers"],
            json!([{"name": "c1", "image": "i1b"}])
        );
    }

    #[test]
    fn conflicts_and_shared_ownership() {
        let live = do_apply(
            &json!({}),
            &json!({"spec": {"replicas": 2, "x": 1}}),
            "a",
            false,
        )
        .unwrap();
        let err = do_apply(&live, &json!({"spec": {"replicas": 3}}), "b", false).unwrap_err();
        assert_eq!(
            err,
            vec![(
                "a".to_string(),
                vec![
                    PathElem::Field("spec".into()),
                    PathElem::Field("replicas".into())
                ]
            )]
        );
        assert_eq!(render_path(&err[0].1), ".spec.replicas");
        // same value: no conflict, shared ownership; a dropping it keeps it (b still owns)
        let live = do_apply(&live, &json!({"spec": {"x": 1}}), "b", false).unwrap();
        let live = do_apply(&live, &json!({"spec": {"replicas": 2}}), "a", false).unwrap();
        assert_eq!(live["spec"]["x"], json!(1));
        // force takes ownership
        let live = do_apply(&live, &json!({"spec": {"x": 1, "replicas": 5}}), "b", true).unwrap();
        assert_eq!(live["spec"]["replicas"], json!(5));
        let live = do_apply(&live, &json!({}), "a", false).unwrap();
        assert_eq!(live["spec"]["replicas"], json!(5));
    }

    #[test]
    fn update_takes_ownership() {
        let live = do_apply(
            &json!({}),
            &json!({"data": {"a": "1", "b": "2"}}),
            "app",
            false,
        )
        .unwrap();
        let mut upd = live.clone();
        upd["data"]["a"] = json!("changed");
        record_update(
            &live,
            &mut upd,
            "kubectl",
            Scope::Whole,
            Shape::Builtin,
            "v1",
            now(),
        );
        // app re-applies without "a": it no longer owns it, so it stays
        let after = do_apply(&upd, &json!({"data": {"b": "2"}}), "app", false).unwrap();
        assert_eq!(after["data"], json!({"a": "changed", "b": "2"}));
    }
}
