//! PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and a good-enough
//! strategic merge patch (merge patch plus keyed merging of well-known lists).

use serde_json::{Map, Value};

use crate::status::{ApiError, ApiResult};

/// Apply an RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        let entry = t.entry(k.clone()).or_insert(Value::Null);
                        merge_patch(entry, v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

// ---------------------------------------------------------------- JSON patch

fn unescape(tok: &str) -> String {
    tok.replace("~1", "/").replace("~0", "~")
}

fn parse_pointer(path: &str) -> ApiResult<Vec<String>> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| patch_err(format!("invalid JSON pointer {path:?}")))?;
    Ok(rest.split('/').map(unescape).collect())
}

fn patch_err(msg: impl Into<String>) -> ApiError {
    ApiError::new(
        422,
        "Invalid",
        format!(
            "the server rejected our request due to an error in our request: {}",
            msg.into()
        ),
    )
}

fn get_ptr<'a>(v: &'a Value, toks: &[String]) -> Option<&'a Value> {
    let mut cur = v;
    for t in toks {
        cur = match cur {
            Value::Object(m) => m.get(t)?,
            Value::Array(a) => a.get(t.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn get_ptr_mut<'a>(v: &'a mut Value, toks: &[String]) -> Option<&'a mut Value> {
    let mut cur = v;
    for t in toks {
        cur = match cur {
            Value::Object(m) => m.get_mut(t)?,
            Value::Array(a) => {
                let i = t.parse::<usize>().ok()?;
                a.get_mut(i)?
            }
            _ => return None,
        };
    }
    Some(cur)
}

fn add_at(doc: &mut Value, toks: &[String], value: Value, path: &str) -> ApiResult<()> {
    let Some((last, parent_toks)) = toks.split_last() else {
        *doc = value;
        return Ok(());
    };
    let parent = get_ptr_mut(doc, parent_toks).ok_or_else(|| {
        patch_err(format!(
            "add operation does not apply: doc is missing path: \"{path}\""
        ))
    })?;
    match parent {
        Value::Object(m) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(value);
                return Ok(());
            }
            let i: usize = last.parse().map_err(|_| {
                patch_err(format!(
                    "add operation does not apply: invalid index in path \"{path}\""
                ))
            })?;
            if i > a.len() {
                return Err(patch_err(format!(
                    "add operation does not apply: index out of bounds in path \"{path}\""
                )));
            }
            a.insert(i, value);
            Ok(())
        }
        _ => Err(patch_err(format!(
            "add operation does not apply: doc is missing path: \"{path}\""
        ))),
    }
}

fn remove_at(doc: &mut Value, toks: &[String], path: &str) -> ApiResult<Value> {
    let Some((last, parent_toks)) = toks.split_last() else {
        return Err(patch_err("cannot remove the document root"));
    };
    let missing = || {
        patch_err(format!(
            "remove operation does not apply: doc is missing path: \"{path}\""
        ))
    };
    let parent = get_ptr_mut(doc, parent_toks).ok_or_else(missing)?;
    match parent {
        Value::Object(m) => m.remove(last).ok_or_else(missing),
        Value::Array(a) => {
            let i: usize = last.parse().map_err(|_| missing())?;
            if i >= a.len() {
                return Err(missing());
            }
            Ok(a.remove(i))
        }
        _ => Err(missing()),
    }
}

/// Apply an RFC 6902 JSON patch. As in kube-apiserver (evanphx/json-patch), a `test` with a
/// `null` value succeeds when the path does not exist.
pub fn json_patch(doc: &mut Value, patch: &Value) -> ApiResult<()> {
    let ops = patch
        .as_array()
        .ok_or_else(|| ApiError::bad_request("json patch must be an array of operations"))?;
    for op in ops {
        let kind = op
            .get("op")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::bad_request("json patch operation is missing \"op\""))?;
        let path = op.get("path").and_then(Value::as_str).ok_or_else(|| {
            ApiError::bad_request(format!("json patch {kind} operation is missing \"path\""))
        })?;
        let toks = parse_pointer(path)?;
        let value = || {
            op.get("value").cloned().ok_or_else(|| {
                ApiError::bad_request(format!("json patch {kind} operation is missing \"value\""))
            })
        };
        let from = || -> ApiResult<(String, Vec<String>)> {
            let f = op.get("from").and_then(Value::as_str).ok_or_else(|| {
                ApiError::bad_request(format!("json patch {kind} operation is missing \"from\""))
            })?;
            Ok((f.to_string(), parse_pointer(f)?))
        };
        match kind {
            "add" => add_at(doc, &toks, value()?, path)?,
            "remove" => {
                remove_at(doc, &toks, path)?;
            }
            "replace" => {
                let v = value()?;
                let target = get_ptr_mut(doc, &toks).ok_or_else(|| {
                    patch_err(format!(
                        "replace operation does not apply: doc is missing key: {path}"
                    ))
                })?;
                *target = v;
            }
            "move" => {
                let (fpath, ftoks) = from()?;
                let v = remove_at(doc, &ftoks, &fpath)?;
                add_at(doc, &toks, v, path)?;
            }
            "copy" => {
                let (fpath, ftoks) = from()?;
                let v = get_ptr(doc, &ftoks).cloned().ok_or_else(|| {
                    patch_err(format!(
                        "copy operation does not apply: doc is missing from path: {fpath}"
                    ))
                })?;
                add_at(doc, &toks, v, path)?;
            }
            "test" => {
                let want = op.get("value").cloned().unwrap_or(Value::Null);
                let ok = match get_ptr(doc, &toks) {
                    Some(actual) => *actual == want,
                    None => want.is_null(),
                };
                if !ok {
                    return Err(patch_err(format!(
                        "testing value {path} failed: test failed"
                    )));
                }
            }
            other => {
                return Err(ApiError::bad_request(format!("Unexpected kind: {other}")));
            }
        }
    }
    Ok(())
}

// ------------------------------------------------------- strategic merge patch

/// How a list field is merged by strategic merge patch / server-side apply.
#[derive(Debug, Clone, PartialEq)]
pub enum ListKind {
    /// Replaced as a whole.
    Atomic,
    /// Items are objects identified by these key fields.
    Map(Vec<String>),
    /// Items are scalars merged as a set.
    Set,
}

/// Merge strategy for well-known list fields of built-in types, by field name and content.
pub fn builtin_list_kind(field: &str, items: &[Value]) -> ListKind {
    let keys = |k: &[&str]| ListKind::Map(k.iter().map(|s| s.to_string()).collect());
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims" => keys(&["name"]),
        "volumeMounts" => keys(&["mountPath"]),
        "volumeDevices" => keys(&["devicePath"]),
        "hostAliases" => keys(&["ip"]),
        "ownerReferences" => keys(&["uid"]),
        "conditions" => keys(&["type"]),
        "topologySpreadConstraints" => keys(&["topologyKey", "whenUnsatisfiable"]),
        "ports" => {
            let container = items.iter().any(|i| i.get("containerPort").is_some());
            if container {
                keys(&["containerPort", "protocol"])
            } else if items.iter().all(|i| i.get("port").is_some()) && !items.is_empty() {
                keys(&["port", "protocol"])
            } else {
                ListKind::Atomic
            }
        }
        "finalizers" => ListKind::Set,
        _ => ListKind::Atomic,
    }
}

/// Key of a list item (defaults: `protocol` → `TCP`, as the apiserver's schemas do).
pub fn item_key(item: &Value, keys: &[String]) -> Vec<Value> {
    keys.iter()
        .map(|k| match item.get(k) {
            Some(v) => v.clone(),
            None if k == "protocol" => Value::String("TCP".into()),
            None => Value::Null,
        })
        .collect()
}

/// Apply a strategic merge patch (merge patch semantics plus keyed list merging and the
/// `$patch`, `$deleteFromPrimitiveList/`, `$retainKeys`, `$setElementOrder/` directives).
pub fn strategic_merge_patch(target: &mut Value, patch: &Value) -> ApiResult<()> {
    smp_value(target, patch)
}

fn smp_value(target: &mut Value, patch: &Value) -> ApiResult<()> {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    match p.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut m = p.clone();
            m.remove("$patch");
            *target = Value::Object(m);
            return Ok(());
        }
        Some("delete") => {
            *target = Value::Null;
            return Ok(());
        }
        Some(other) if other != "merge" => {
            return Err(ApiError::bad_request(format!(
                "Unknown patch type: {other}"
            )));
        }
        _ => {}
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else {
        return Ok(());
    };
    let retain: Option<Vec<String>> = p.get("$retainKeys").and_then(Value::as_array).map(|a| {
        a.iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()
    });
    for (k, v) in p {
        if k == "$patch" || k == "$retainKeys" || k.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(live)), Some(del)) = (t.get_mut(field), v.as_array()) {
                live.retain(|x| !del.contains(x));
            }
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        match v {
            Value::Array(items) => {
                let live = t
                    .get(k)
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let mut all: Vec<Value> = live.clone();
                all.extend(items.iter().cloned());
                let merged = match builtin_list_kind(k, &all) {
                    ListKind::Atomic => items
                        .iter()
                        .filter(|i| i.get("$patch").is_none())
                        .cloned()
                        .collect(),
                    ListKind::Set => {
                        let mut out = live;
                        for i in items {
                            if !out.contains(i) {
                                out.push(i.clone());
                            }
                        }
                        out
                    }
                    ListKind::Map(keys) => smp_keyed_list(live, items, &keys)?,
                };
                t.insert(k.clone(), Value::Array(merged));
            }
            Value::Object(_) => {
                let entry = t.entry(k.clone()).or_insert(Value::Null);
                smp_value(entry, v)?;
                if entry.is_null() {
                    t.remove(k);
                }
            }
            other => {
                t.insert(k.clone(), other.clone());
            }
        }
    }
    if let Some(keep) = retain {
        t.retain(|k, _| keep.contains(k));
    }
    Ok(())
}

fn smp_keyed_list(live: Vec<Value>, items: &[Value], keys: &[String]) -> ApiResult<Vec<Value>> {
    if items
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        return Ok(items
            .iter()
            .filter(|i| i.get("$patch").is_none())
            .cloned()
            .collect());
    }
    let mut out = live;
    for item in items {
        let key = item_key(item, keys);
        let pos = out.iter().position(|l| item_key(l, keys) == key);
        let is_delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (pos, is_delete) {
            (Some(i), true) => {
                out.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => smp_value(&mut out[i], item)?,
            (None, false) => {
                let mut fresh = Value::Object(Map::new());
                smp_value(&mut fresh, item)?;
                out.push(fresh);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge() {
        let mut t = json!({"a": 1, "b": {"c": 2, "d": 3}});
        merge_patch(&mut t, &json!({"a": null, "b": {"c": 5}, "e": [1]}));
        assert_eq!(t, json!({"b": {"c": 5, "d": 3}, "e": [1]}));
    }

    #[test]
    fn jsonpatch() {
        let mut t = json!({"metadata": {"name": "x"}});
        json_patch(
            &mut t,
            &json!([
                {"op": "test", "path": "/metadata/finalizers", "value": null},
                {"op": "add", "path": "/metadata/finalizers", "value": ["a"]},
                {"op": "add", "path": "/metadata/finalizers/-", "value": "b"},
                {"op": "test", "path": "/metadata/finalizers/0", "value": "a"},
                {"op": "remove", "path": "/metadata/finalizers/0"},
                {"op": "copy", "from": "/metadata/name", "path": "/metadata/n2"},
                {"op": "move", "from": "/metadata/n2", "path": "/x"},
                {"op": "replace", "path": "/x", "value": "y"}
            ]),
        )
        .unwrap();
        assert_eq!(
            t,
            json!({"metadata": {"name": "x", "finalizers": ["b"]}, "x": "y"})
        );
        let e =
            json_patch(&mut t, &json!([{"op": "test", "path": "/x", "value": "z"}])).unwrap_err();
        assert_eq!(e.code, 422);
    }

    #[test]
    fn strategic() {
        let mut t = json!({"spec": {"containers": [
            {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
            {"name": "b", "image": "b:1"}
        ], "args": ["x"]}, "metadata": {"finalizers": ["f1"]}});
        strategic_merge_patch(
            &mut t,
            &json!({"spec": {"containers": [
                {"name": "a", "env": [{"name": "Y", "value": "2"}]},
                {"name": "b", "$patch": "delete"},
                {"name": "c", "image": "c:1"}
            ], "args": ["y"]}, "metadata": {"finalizers": ["f2"]}}),
        )
        .unwrap();
        assert_eq!(
            t,
            json!({"spec": {"containers": [
                {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]},
                {"name": "c", "image": "c:1"}
            ], "args": ["y"]}, "metadata": {"finalizers": ["f1", "f2"]}})
        );
    }
}
