//! Label and field selectors (`labelSelector` / `fieldSelector` query parameters).

use serde_json::Value;

use crate::status::{ApiError, ApiResult};

#[derive(Debug, Clone, PartialEq)]
enum LabelOp {
    Exists,
    NotExists,
    Eq(String),
    NotEq(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Gt(i64),
    Lt(i64),
}

/// A parsed label selector (conjunction of requirements).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector {
    reqs: Vec<(String, LabelOp)>,
}

impl LabelSelector {
    /// Parse kube-apiserver's label selector syntax.
    pub fn parse(input: &str) -> ApiResult<Self> {
        let mut reqs = Vec::new();
        for part in split_top_level(input) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            reqs.push(parse_requirement(part)?);
        }
        Ok(Self { reqs })
    }

    /// Evaluate against an object's `metadata.labels`.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.reqs.iter().all(|(key, op)| {
            let v = get(key);
            match op {
                LabelOp::Exists => v.is_some(),
                LabelOp::NotExists => v.is_none(),
                LabelOp::Eq(x) => v == Some(x.as_str()),
                LabelOp::NotEq(x) => v != Some(x.as_str()),
                LabelOp::In(set) => v.is_some_and(|v| set.iter().any(|s| s == v)),
                LabelOp::NotIn(set) => v.is_none_or(|v| !set.iter().any(|s| s == v)),
                LabelOp::Gt(n) => v
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|x| x > *n),
                LabelOp::Lt(n) => v
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|x| x < *n),
            }
        })
    }
}

fn split_top_level(input: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut cur = String::new();
    for c in input.chars() {
        match c {
            '(' => {
                depth += 1;
                cur.push(c);
            }
            ')' => {
                depth -= 1;
                cur.push(c);
            }
            ',' if depth == 0 => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn bad(part: &str, why: &str) -> ApiError {
    ApiError::bad_request(format!("unable to parse requirement: {why}: {part:?}"))
}

fn valid_key(k: &str) -> bool {
    if k.is_empty() || k.len() > 317 {
        return false;
    }
    let name = match k.split_once('/') {
        Some((prefix, name)) => {
            if prefix.is_empty() || prefix.len() > 253 {
                return false;
            }
            name
        }
        None => k,
    };
    valid_label_value(name) && !name.is_empty()
}

/// Label values: at most 63 chars, alphanumerics plus `-_.`, alphanumeric at both ends.
pub fn valid_label_value(v: &str) -> bool {
    if v.is_empty() {
        return true;
    }
    if v.len() > 63 {
        return false;
    }
    let bytes = v.as_bytes();
    let ok_char = |c: u8| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.';
    bytes.iter().all(|c| ok_char(*c))
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

fn parse_set(part: &str, rest: &str) -> ApiResult<Vec<String>> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| bad(part, "found '', expected: '('"))?;
    let vals: Vec<String> = inner
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    for v in &vals {
        if !valid_label_value(v) {
            return Err(bad(part, "invalid label value"));
        }
    }
    Ok(vals)
}

fn parse_requirement(part: &str) -> ApiResult<(String, LabelOp)> {
    if let Some(key) = part.strip_prefix('!') {
        let key = key.trim();
        if !valid_key(key) {
            return Err(bad(part, "invalid label key"));
        }
        return Ok((key.to_string(), LabelOp::NotExists));
    }
    // set-based: "key in (..)" / "key notin (..)"
    let words: Vec<&str> = part.splitn(2, char::is_whitespace).collect();
    if words.len() == 2 {
        let key = words[0].trim();
        let rest = words[1].trim_start();
        if let Some(r) = rest.strip_prefix("notin") {
            if !valid_key(key) {
                return Err(bad(part, "invalid label key"));
            }
            return Ok((key.to_string(), LabelOp::NotIn(parse_set(part, r)?)));
        }
        if let Some(r) = rest.strip_prefix("in")
            && r.trim_start().starts_with('(')
        {
            if !valid_key(key) {
                return Err(bad(part, "invalid label key"));
            }
            return Ok((key.to_string(), LabelOp::In(parse_set(part, r)?)));
        }
    }
    for (tok, kind) in [("!=", 0), ("==", 1), ("=", 1), (">", 2), ("<", 3)] {
        if let Some((k, v)) = part.split_once(tok) {
            let k = k.trim();
            let v = v.trim();
            if !valid_key(k) {
                return Err(bad(part, "invalid label key"));
            }
            return match kind {
                0 | 1 => {
                    if !valid_label_value(v) {
                        return Err(bad(part, "invalid label value"));
                    }
                    Ok((
                        k.to_string(),
                        if kind == 0 {
                            LabelOp::NotEq(v.to_string())
                        } else {
                            LabelOp::Eq(v.to_string())
                        },
                    ))
                }
                _ => {
                    let n: i64 = v.parse().map_err(|_| {
                        bad(
                            part,
                            "for 'Gt', 'Lt' operators, the value must be an integer",
                        )
                    })?;
                    Ok((
                        k.to_string(),
                        if kind == 2 {
                            LabelOp::Gt(n)
                        } else {
                            LabelOp::Lt(n)
                        },
                    ))
                }
            };
        }
    }
    let key = part.trim();
    if !valid_key(key) {
        return Err(bad(part, "invalid label key"));
    }
    Ok((key.to_string(), LabelOp::Exists))
}

/// A parsed field selector (conjunction of `path=value` / `path!=value`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSelector {
    reqs: Vec<(String, bool, String)>,
}

impl FieldSelector {
    /// Parse `metadata.name=foo,metadata.namespace!=bar`.
    pub fn parse(input: &str) -> ApiResult<Self> {
        let mut reqs = Vec::new();
        for part in input.split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (field, eq, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{input}'; can't understand '{part}'"
                )));
            };
            let field = field.trim();
            if field.is_empty() || !field.split('.').all(|s| !s.is_empty()) {
                return Err(ApiError::bad_request(format!(
                    "\"{field}\" is not a known field selector"
                )));
            }
            reqs.push((field.to_string(), eq, value.trim().to_string()));
        }
        Ok(Self { reqs })
    }

    /// Add a `metadata.name=name` requirement.
    pub fn with_name(mut self, name: &str) -> Self {
        self.reqs.push(("metadata.name".into(), true, name.into()));
        self
    }

    /// Evaluate against an object (dotted paths; missing fields compare as "").
    pub fn matches(&self, obj: &Value) -> bool {
        self.reqs.iter().all(|(field, eq, want)| {
            let mut cur = obj;
            let mut found = true;
            for seg in field.split('.') {
                match cur.get(seg) {
                    Some(v) => cur = v,
                    None => {
                        found = false;
                        break;
                    }
                }
            }
            let actual = if !found {
                String::new()
            } else {
                match cur {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                }
            };
            (actual == *want) == *eq
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(labels: Value) -> Value {
        json!({"metadata": {"name": "a", "namespace": "ns", "labels": labels}})
    }

    #[test]
    fn label_ops() {
        let o = obj(json!({"app": "web", "tier": "fe", "n": "5"}));
        for (sel, want) in [
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("missing!=x", true),
            ("app in (web, api)", true),
            ("app notin (web)", false),
            ("missing notin (web)", true),
            ("app,tier", true),
            ("!app", false),
            ("!missing", true),
            ("app=web,tier in (fe,be)", true),
            ("n>4", true),
            ("n<4", false),
            ("", true),
        ] {
            assert_eq!(
                LabelSelector::parse(sel).unwrap().matches(&o),
                want,
                "{sel}"
            );
        }
        assert!(LabelSelector::parse("app in web").is_err());
        assert!(LabelSelector::parse("-bad=x").is_err());
    }

    #[test]
    fn field_ops() {
        let o = obj(json!({}));
        assert!(FieldSelector::parse("metadata.name=a").unwrap().matches(&o));
        assert!(
            !FieldSelector::parse("metadata.name!=a")
                .unwrap()
                .matches(&o)
        );
        assert!(
            FieldSelector::parse("metadata.namespace==ns,metadata.name=a")
                .unwrap()
                .matches(&o)
        );
        assert!(FieldSelector::parse("nonsense").is_err());
    }
}
