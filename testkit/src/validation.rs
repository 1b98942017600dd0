//! ObjectMeta validation shared by every type (names, labels, annotations, owner references).

use serde_json::Value;

use crate::selectors::valid_label_value;
use crate::status::FieldError;

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_1123_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const LABEL_1035_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

/// Which naming rule a type uses for `metadata.name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// RFC 1123 subdomain (most types).
    Subdomain,
    /// RFC 1123 label (namespaces).
    Label1123,
    /// RFC 1035 label (services).
    Label1035,
}

fn is_label_1123(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// RFC 1123 subdomain check.
pub fn is_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_label_1123)
}

/// Validate an object name; returns error messages (without the field prefix).
pub fn validate_name(name: &str, rule: NameRule) -> Option<String> {
    match rule {
        NameRule::Subdomain => {
            if name.len() > 253 {
                Some("must be no more than 253 characters".into())
            } else if !is_subdomain(name) {
                Some(SUBDOMAIN_MSG.into())
            } else {
                None
            }
        }
        NameRule::Label1123 => {
            if name.len() > 63 {
                Some("must be no more than 63 characters".into())
            } else if !is_label_1123(name) {
                Some(LABEL_1123_MSG.into())
            } else {
                None
            }
        }
        NameRule::Label1035 => {
            if name.len() > 63 {
                Some("must be no more than 63 characters".into())
            } else if !is_label_1123(name) || !name.starts_with(|c: char| c.is_ascii_lowercase()) {
                Some(LABEL_1035_MSG.into())
            } else {
                None
            }
        }
    }
}

fn validate_qualified_name(key: &str, field: &str, errs: &mut Vec<FieldError>) {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix
        && !is_subdomain(p)
    {
        errs.push(FieldError::invalid(
            field,
            &Value::String(key.into()),
            format!("prefix part {SUBDOMAIN_MSG}"),
        ));
    }
    if name.is_empty() || name.len() > 63 || !valid_label_value(name) {
        errs.push(FieldError::invalid(
            field,
            &Value::String(key.into()),
            QUALIFIED_NAME_MSG,
        ));
    }
}

/// Validate the user-settable parts of `metadata`.
pub fn validate_meta(obj: &Value, rule: NameRule, errs: &mut Vec<FieldError>) {
    let meta = obj.get("metadata").cloned().unwrap_or(Value::Null);
    if let Some(name) = meta.get("name").and_then(Value::as_str)
        && let Some(msg) = validate_name(name, rule)
    {
        errs.push(FieldError::invalid(
            "metadata.name",
            &Value::String(name.into()),
            msg,
        ));
    }
    if let Some(labels) = meta.get("labels").and_then(Value::as_object) {
        for (k, v) in labels {
            validate_qualified_name(k, "metadata.labels", errs);
            match v.as_str() {
                Some(s) if valid_label_value(s) => {}
                _ => errs.push(FieldError::invalid("metadata.labels", v, LABEL_VALUE_MSG)),
            }
        }
    }
    if let Some(ann) = meta.get("annotations").and_then(Value::as_object) {
        let mut total = 0usize;
        for (k, v) in ann {
            validate_qualified_name(&k.to_lowercase(), "metadata.annotations", errs);
            total += k.len() + v.as_str().map(str::len).unwrap_or(0);
        }
        if total > 256 * 1024 {
            errs.push(FieldError::too_long("metadata.annotations", 256 * 1024));
        }
    }
    if let Some(refs) = meta.get("ownerReferences").and_then(Value::as_array) {
        let mut controllers = 0;
        for r in refs {
            for f in ["apiVersion", "kind", "name", "uid"] {
                if r.get(f).and_then(Value::as_str).is_none_or(str::is_empty) {
                    let detail = match f {
                        "apiVersion" => "version must not be empty",
                        "kind" => "kind must not be empty",
                        "name" => "name must not be empty",
                        _ => "uid must not be empty",
                    };
                    errs.push(FieldError::invalid(
                        &format!("metadata.ownerReferences.{f}"),
                        r.get(f).unwrap_or(&Value::String(String::new())),
                        detail,
                    ));
                }
            }
            if r.get("controller").and_then(Value::as_bool) == Some(true) {
                controllers += 1;
            }
        }
        if controllers > 1 {
            errs.push(FieldError::invalid(
                "metadata.ownerReferences",
                &Value::Array(refs.clone()),
                "Only one reference can have Controller set to true",
            ));
        }
    }
    if let Some(fins) = meta.get("finalizers").and_then(Value::as_array) {
        for f in fins {
            match f.as_str() {
                Some(s) if !s.is_empty() => validate_qualified_name(s, "metadata.finalizers", errs),
                _ => errs.push(FieldError::invalid(
                    "metadata.finalizers",
                    f,
                    "name part must be non-empty",
                )),
            }
        }
    }
}
