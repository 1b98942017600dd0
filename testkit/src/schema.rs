//! Structural OpenAPI v3 schemas of CRDs: pruning, defaulting and validation with
//! kube-apiserver style field errors.

use regex::Regex;
use serde_json::{Map, Number, Value};

use crate::patch::{ListKind, item_key};
use crate::status::{FieldError, render_value};

const OBJECT_META_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

const EMBEDDED_META_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "labels",
    "annotations",
    "finalizers",
];

fn flag(s: &Value, key: &str) -> bool {
    s.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// Schema of property `key` of an object schema (`properties` or `additionalProperties`).
pub fn prop_schema<'a>(s: &'a Value, key: &str) -> Option<&'a Value> {
    if let Some(p) = s.get("properties").and_then(|p| p.get(key)) {
        return Some(p);
    }
    match s.get("additionalProperties") {
        Some(ap @ Value::Object(_)) => Some(ap),
        _ => None,
    }
}

/// Schema of the items of an array schema.
pub fn items_schema(s: &Value) -> Option<&Value> {
    s.get("items").filter(|i| i.is_object())
}

/// List semantics declared by `x-kubernetes-list-type` (default atomic).
pub fn list_kind(s: &Value) -> ListKind {
    match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => ListKind::Set,
        Some("map") => ListKind::Map(
            s.get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
        ),
        _ => ListKind::Atomic,
    }
}

/// Whether a map schema is `x-kubernetes-map-type: atomic`.
pub fn is_atomic_map(s: &Value) -> bool {
    s.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic")
}

// ------------------------------------------------------------------- pruning

/// Remove fields not declared in the schema; returns the dotted paths that were dropped.
pub fn prune(obj: &mut Value, schema: &Value) -> Vec<String> {
    let mut dropped = Vec::new();
    if let Value::Object(m) = obj {
        for key in m.keys().cloned().collect::<Vec<_>>() {
            match key.as_str() {
                "apiVersion" | "kind" => {}
                "metadata" => {
                    if let Some(Value::Object(meta)) = m.get_mut("metadata") {
                        meta.retain(|k, _| {
                            let keep = OBJECT_META_FIELDS.contains(&k.as_str());
                            if !keep {
                                dropped.push(format!("metadata.{k}"));
                            }
                            keep
                        });
                    }
                }
                _ => {
                    if let Some(child) = m.get_mut(&key) {
                        match prop_schema(schema, &key) {
                            Some(cs) => prune_value(child, cs, &key, &mut dropped),
                            None if flag(schema, "x-kubernetes-preserve-unknown-fields") => {}
                            None => {
                                dropped.push(key.clone());
                                m.remove(&key);
                            }
                        }
                    }
                }
            }
        }
    }
    dropped
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn prune_value(v: &mut Value, s: &Value, path: &str, dropped: &mut Vec<String>) {
    let preserve = flag(s, "x-kubernetes-preserve-unknown-fields");
    let embedded = flag(s, "x-kubernetes-embedded-resource");
    match v {
        Value::Object(m) => {
            let keys: Vec<String> = m.keys().cloned().collect();
            for key in keys {
                if embedded && (key == "apiVersion" || key == "kind") {
                    continue;
                }
                if embedded && key == "metadata" {
                    if let Some(Value::Object(meta)) = m.get_mut("metadata") {
                        meta.retain(|k, _| EMBEDDED_META_FIELDS.contains(&k.as_str()));
                    }
                    continue;
                }
                match prop_schema(s, &key) {
                    Some(cs) => {
                        if let Some(child) = m.get_mut(&key) {
                            prune_value(child, cs, &join(path, &key), dropped);
                        }
                    }
                    None => {
                        let allow_any = s.get("additionalProperties") == Some(&Value::Bool(true));
                        if !preserve && !allow_any {
                            dropped.push(join(path, &key));
                            m.remove(&key);
                        }
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = items_schema(s) {
                for (i, item) in items.iter_mut().enumerate() {
                    prune_value(item, is, &format!("{path}[{i}]"), dropped);
                }
            }
        }
        _ => {}
    }
}

// ----------------------------------------------------------------- defaulting

/// Apply `default` values from the schema (recursively, including inside defaults).
pub fn apply_defaults(obj: &mut Value, schema: &Value) {
    if let Value::Object(m) = obj {
        for (k, v) in m.iter_mut() {
            if k == "metadata" || k == "apiVersion" || k == "kind" {
                continue;
            }
            if let Some(cs) = prop_schema(schema, k) {
                default_value(v, cs);
            }
        }
        fill_defaults(m, schema);
    }
}

fn fill_defaults(m: &mut Map<String, Value>, s: &Value) {
    let Some(props) = s.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (k, ps) in props {
        if k == "metadata" || k == "apiVersion" || k == "kind" {
            continue;
        }
        let Some(def) = ps.get("default") else {
            continue;
        };
        let missing = match m.get(k) {
            None => true,
            Some(Value::Null) => !flag(ps, "nullable"),
            Some(_) => false,
        };
        if missing {
            let mut d = def.clone();
            default_value(&mut d, ps);
            m.insert(k.clone(), d);
        }
    }
}

fn default_value(v: &mut Value, s: &Value) {
    match v {
        Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                if let Some(cs) = prop_schema(s, k) {
                    default_value(child, cs);
                }
            }
            fill_defaults(m, s);
        }
        Value::Array(items) => {
            if let Some(is) = items_schema(s) {
                for item in items {
                    default_value(item, is);
                }
            }
        }
        _ => {}
    }
}

// ----------------------------------------------------------------- validation

/// Validate an object against its CRD schema; returns every field error.
pub fn validate(obj: &Value, schema: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Value::Object(m) = obj else {
        return errs;
    };
    for (k, v) in m {
        if k == "metadata" || k == "apiVersion" || k == "kind" {
            continue;
        }
        if let Some(cs) = prop_schema(schema, k) {
            validate_value(v, cs, k, &mut errs);
        }
    }
    check_required(m, schema, "", &mut errs);
    errs
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) => {
            if is_integer(n) {
                "integer"
            } else {
                "number"
            }
        }
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn is_integer(n: &Number) -> bool {
    n.is_i64()
        || n.is_u64()
        || n.as_f64()
            .is_some_and(|f| f.fract() == 0.0 && f.is_finite())
}

fn type_error(path: &str, v: &Value, want: &str, errs: &mut Vec<FieldError>) {
    let actual = type_name(v);
    errs.push(FieldError::invalid(
        path,
        &Value::String(actual.into()),
        format!("{path} in body must be of type {want}: {actual:?}"),
    ));
}

fn fmt_num(v: &Value) -> String {
    match v.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        Some(f) => format!("{f}"),
        None => v.to_string(),
    }
}

fn check_required(m: &Map<String, Value>, s: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(req) = s.get("required").and_then(Value::as_array) {
        for r in req.iter().filter_map(Value::as_str) {
            if !m.contains_key(r) {
                errs.push(FieldError::required(&join(path, r), None));
            }
        }
    }
}

fn validate_value(v: &Value, s: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if v.is_null() {
        if flag(s, "nullable") {
            return;
        }
        if let Some(t) = s.get("type").and_then(Value::as_str) {
            type_error(path, v, t, errs);
        }
        return;
    }
    if flag(s, "x-kubernetes-int-or-string") {
        let ok = matches!(v, Value::String(_)) || v.as_number().is_some_and(is_integer);
        if !ok {
            type_error(path, v, "integer,string", errs);
            return;
        }
    } else if let Some(t) = s.get("type").and_then(Value::as_str) {
        let ok = match t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => v.as_number().is_some_and(is_integer),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            _ => true,
        };
        if !ok {
            type_error(path, v, t, errs);
            return;
        }
    }
    if let Some(allowed) = s.get("enum").and_then(Value::as_array)
        && !allowed.contains(v)
    {
        errs.push(FieldError::not_supported(path, v, allowed));
    }
    match v {
        Value::String(st) => validate_string(st, v, s, path, errs),
        Value::Number(_) => validate_number(v, s, path, errs),
        Value::Array(items) => validate_array(items, v, s, path, errs),
        Value::Object(m) => {
            for (k, child) in m {
                if flag(s, "x-kubernetes-embedded-resource")
                    && (k == "apiVersion" || k == "kind" || k == "metadata")
                {
                    continue;
                }
                if let Some(cs) = prop_schema(s, k) {
                    validate_value(child, cs, &join(path, k), errs);
                }
            }
            check_required(m, s, path, errs);
            if let Some(min) = s.get("minProperties").and_then(Value::as_u64)
                && (m.len() as u64) < min
            {
                errs.push(FieldError::invalid(
                    path,
                    &Value::from(m.len()),
                    format!("{path} in body should have at least {min} properties"),
                ));
            }
            if let Some(max) = s.get("maxProperties").and_then(Value::as_u64)
                && (m.len() as u64) > max
            {
                errs.push(FieldError::too_many(path, m.len(), max));
            }
        }
        _ => {}
    }
    validate_combinators(v, s, path, errs);
}

fn validate_combinators(v: &Value, s: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(all) = s.get("allOf").and_then(Value::as_array) {
        for sub in all {
            validate_value(v, sub, path, errs);
        }
    }
    let passes = |sub: &Value| {
        let mut e = Vec::new();
        validate_value(v, sub, path, &mut e);
        e.is_empty()
    };
    if let Some(any) = s.get("anyOf").and_then(Value::as_array)
        && !any.is_empty()
        && !any.iter().any(passes)
    {
        errs.push(FieldError::invalid(
            path,
            v,
            format!("{path} in body must validate at least one schema (anyOf)"),
        ));
    }
    if let Some(one) = s.get("oneOf").and_then(Value::as_array)
        && !one.is_empty()
        && one.iter().filter(|x| passes(x)).count() != 1
    {
        errs.push(FieldError::invalid(
            path,
            v,
            format!("{path} in body must validate one and only one schema (oneOf)"),
        ));
    }
    if let Some(not) = s.get("not")
        && not.is_object()
        && passes(not)
    {
        errs.push(FieldError::invalid(
            path,
            v,
            format!("{path} in body must not validate the schema (not)"),
        ));
    }
}

fn validate_string(st: &str, v: &Value, s: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let len = st.chars().count() as u64;
    if let Some(min) = s.get("minLength").and_then(Value::as_u64)
        && len < min
    {
        errs.push(FieldError::invalid(
            path,
            v,
            format!("{path} in body should be at least {min} chars long"),
        ));
    }
    if let Some(max) = s.get("maxLength").and_then(Value::as_u64)
        && len > max
    {
        errs.push(FieldError::too_long(path, max));
    }
    if let Some(p) = s.get("pattern").and_then(Value::as_str) {
        match Regex::new(p) {
            Ok(re) => {
                if !re.is_match(st) {
                    errs.push(FieldError::invalid(
                        path,
                        v,
                        format!("{path} in body should match '{p}'"),
                    ));
                }
            }
            Err(_) => tracing::warn!(pattern = p, "unsupported schema pattern ignored"),
        }
    }
    if let Some(f) = s.get("format").and_then(Value::as_str)
        && !string_format_ok(f, st)
    {
        errs.push(FieldError::invalid(
            path,
            v,
            format!("{path} in body must be of type {f}: {}", render_value(v)),
        ));
    }
}

fn string_format_ok(format: &str, s: &str) -> bool {
    match format {
        "date-time" | "datetime" => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
        "date" => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok(),
        "int32" => s.parse::<i32>().is_ok(),
        "int64" => s.parse::<i64>().is_ok(),
        "uuid" => uuid::Uuid::parse_str(s).is_ok(),
        "byte" => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(s).is_ok()
        }
        "ipv4" => s.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => s.parse::<std::net::Ipv6Addr>().is_ok(),
        "hostname" => {
            !s.is_empty()
                && s.len() <= 253
                && s.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
                        && !l.starts_with('-')
                        && !l.ends_with('-')
                })
        }
        _ => true,
    }
}

fn validate_number(v: &Value, s: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let Some(x) = v.as_f64() else {
        return;
    };
    if let Some(f) = s.get("format").and_then(Value::as_str) {
        let ok = match f {
            "int32" => v.as_i64().is_some_and(|i| i32::try_from(i).is_ok()),
            "int64" => v.as_i64().is_some(),
            _ => true,
        };
        if !ok {
            errs.push(FieldError::invalid(
                path,
                v,
                format!("{path} in body must be of type {f}: {}", render_value(v)),
            ));
        }
    }
    if let Some(min) = s.get("minimum") {
        let excl = flag(s, "exclusiveMinimum");
        if let Some(m) = min.as_f64()
            && (x < m || (excl && x == m))
        {
            let rel = if excl {
                "greater than"
            } else {
                "greater than or equal to"
            };
            errs.push(FieldError::invalid(
                path,
                v,
                format!("{path} in body should be {rel} {}", fmt_num(min)),
            ));
        }
    }
    if let Some(max) = s.get("maximum") {
        let excl = flag(s, "exclusiveMaximum");
        if let Some(m) = max.as_f64()
            && (x > m || (excl && x == m))
        {
            let rel = if excl {
                "less than"
            } else {
                "less than or equal to"
            };
            errs.push(FieldError::invalid(
                path,
                v,
                format!("{path} in body should be {rel} {}", fmt_num(max)),
            ));
        }
    }
    if let Some(mo) = s.get("multipleOf").and_then(Value::as_f64)
        && mo > 0.0
        && ((x / mo).round() - x / mo).abs() > 1e-9
    {
        errs.push(FieldError::invalid(
            path,
            v,
            format!(
                "{path} in body should be a multiple of {}",
                fmt_num(&Value::from(mo))
            ),
        ));
    }
}

fn validate_array(items: &[Value], v: &Value, s: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(min) = s.get("minItems").and_then(Value::as_u64)
        && (items.len() as u64) < min
    {
        errs.push(FieldError::invalid(
            path,
            &Value::from(items.len()),
            format!("{path} in body should have at least {min} items"),
        ));
    }
    if let Some(max) = s.get("maxItems").and_then(Value::as_u64)
        && (items.len() as u64) > max
    {
        errs.push(FieldError::too_many(path, items.len(), max));
    }
    if flag(s, "uniqueItems") {
        for (i, a) in items.iter().enumerate() {
            if items[..i].contains(a) {
                errs.push(FieldError::invalid(
                    path,
                    v,
                    format!("{path} in body shouldn't contain duplicates"),
                ));
                break;
            }
        }
    }
    match list_kind(s) {
        ListKind::Set => {
            for (i, a) in items.iter().enumerate() {
                if items[..i].contains(a) {
                    errs.push(FieldError::duplicate(&format!("{path}[{i}]"), a));
                }
            }
        }
        ListKind::Map(keys) if !keys.is_empty() => {
            let ks: Vec<Vec<Value>> = items.iter().map(|i| item_key(i, &keys)).collect();
            for (i, k) in ks.iter().enumerate() {
                if ks[..i].contains(k) {
                    let mut m = Map::new();
                    for (name, val) in keys.iter().zip(k) {
                        m.insert(name.clone(), val.clone());
                    }
                    errs.push(FieldError::duplicate(
                        &format!("{path}[{i}]"),
                        &Value::Object(m),
                    ));
                }
            }
        }
        _ => {}
    }
    if let Some(is) = items_schema(s) {
        for (i, item) in items.iter().enumerate() {
            validate_value(item, is, &format!("{path}[{i}]"), errs);
        }
    }
}

// ------------------------------------------------------- structural schema check

/// Minimal structural-schema checks for a CRD version's `openAPIV3Schema`.
pub fn check_structural(schema: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let is_root = !path.contains(".properties[");
    let has_type = schema.get("type").and_then(Value::as_str).is_some();
    let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields");
    let int_or_string = flag(schema, "x-kubernetes-int-or-string");
    if !has_type && !preserve && !int_or_string && !is_root {
        errs.push(FieldError::required(
            &format!("{path}.type"),
            Some("must not be empty for specified object fields"),
        ));
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        if schema
            .get("additionalProperties")
            .is_some_and(|a| a != &Value::Bool(false))
        {
            errs.push(FieldError::forbidden(
                &format!("{path}.additionalProperties"),
                "additionalProperties and properties are mutual exclusive",
            ));
        }
        for (k, ps) in props {
            check_structural(ps, &format!("{path}.properties[{k}]"), errs);
        }
    }
    if let Some(ap @ Value::Object(_)) = schema.get("additionalProperties") {
        check_structural(ap, &format!("{path}.additionalProperties"), errs);
    }
    if let Some(is) = schema.get("items") {
        check_structural(is, &format!("{path}.items"), errs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["image"],
                    "properties": {
                        "image": {"type": "string", "minLength": 1},
                        "replicas": {"type": "integer", "format": "int32", "minimum": 1, "maximum": 5, "default": 1},
                        "mode": {"type": "string", "enum": ["a", "b"], "default": "a"},
                        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2, "x-kubernetes-list-type": "set"},
                        "opts": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "port": {"x-kubernetes-int-or-string": true},
                        "nested": {"type": "object", "default": {}, "properties": {"x": {"type": "integer", "default": 7}}}
                    }
                }
            }
        })
    }

    #[test]
    fn prune_default_validate() {
        let s = schema();
        let mut o = json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "a", "junk": 1},
            "spec": {"image": "i", "unknown": true, "opts": {"free": 1}}, "extra": 1});
        let dropped = prune(&mut o, &s);
        assert_eq!(
            dropped,
            vec![
                "extra".to_string(),
                "metadata.junk".into(),
                "spec.unknown".into()
            ]
        );
        apply_defaults(&mut o, &s);
        assert_eq!(o["spec"]["replicas"], json!(1));
        assert_eq!(o["spec"]["mode"], json!("a"));
        assert_eq!(o["spec"]["nested"], json!({"x": 7}));
        assert_eq!(o["spec"]["opts"], json!({"free": 1}));
        assert!(validate(&o, &s).is_empty());

        let bad =
            json!({"spec": {"replicas": 0, "mode": "c", "tags": ["a", "a", "b"], "port": true}});
        let errs: Vec<String> = validate(&bad, &s).iter().map(FieldError::message).collect();
        assert_eq!(
            errs,
            vec![
                "spec.mode: Unsupported value: \"c\": supported values: \"a\", \"b\"",
                "spec.port: Invalid value: \"boolean\": spec.port in body must be of type integer,string: \"boolean\"",
                "spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1",
                "spec.tags: Too many: 3: must have at most 2 items",
                "spec.tags[1]: Duplicate value: \"a\"",
                "spec.image: Required value",
            ]
        );
    }
}
