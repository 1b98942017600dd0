//! `meta.k8s.io/v1` `Status` failures, shaped exactly like kube-apiserver's so that
//! kube's `Error::Api` (and kubectl) parse them.

use serde_json::{Map, Value, json};

/// One field-level cause of an `Invalid` (422) failure.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldValueNotSupported`, ...
    pub reason: &'static str,
    /// Dotted field path, e.g. `spec.gateway.replicas`.
    pub field: String,
    /// Message without the field prefix, e.g. `Invalid value: 0: ...`.
    pub detail: String,
}

impl FieldError {
    /// `field: Invalid value: <value>: <msg>`.
    pub fn invalid(field: &str, value: &Value, msg: impl AsRef<str>) -> Self {
        Self {
            reason: "FieldValueInvalid",
            field: field.to_string(),
            detail: format!("Invalid value: {}: {}", render_value(value), msg.as_ref()),
        }
    }

    /// `field: Required value`.
    pub fn required(field: &str, msg: Option<&str>) -> Self {
        Self {
            reason: "FieldValueRequired",
            field: field.to_string(),
            detail: match msg {
                Some(m) => format!("Required value: {m}"),
                None => "Required value".to_string(),
            },
        }
    }

    /// `field: Unsupported value: "x": supported values: "a", "b"`.
    pub fn not_supported(field: &str, value: &Value, allowed: &[Value]) -> Self {
        let list: Vec<String> = allowed.iter().map(render_value).collect();
        Self {
            reason: "FieldValueNotSupported",
            field: field.to_string(),
            detail: format!(
                "Unsupported value: {}: supported values: {}",
                render_value(value),
                list.join(", ")
            ),
        }
    }

    /// `field: Forbidden: msg`.
    pub fn forbidden(field: &str, msg: &str) -> Self {
        Self {
            reason: "FieldValueForbidden",
            field: field.to_string(),
            detail: format!("Forbidden: {msg}"),
        }
    }

    /// `field: Too long: may not be more than N bytes`.
    pub fn too_long(field: &str, max: u64) -> Self {
        Self {
            reason: "FieldValueTooLong",
            field: field.to_string(),
            detail: format!("Too long: may not be more than {max} bytes"),
        }
    }

    /// `field: Too many: N: must have at most M items`.
    pub fn too_many(field: &str, actual: usize, max: u64) -> Self {
        Self {
            reason: "FieldValueTooMany",
            field: field.to_string(),
            detail: format!("Too many: {actual}: must have at most {max} items"),
        }
    }

    /// `field: Duplicate value: v`.
    pub fn duplicate(field: &str, value: &Value) -> Self {
        Self {
            reason: "FieldValueDuplicate",
            field: field.to_string(),
            detail: format!("Duplicate value: {}", render_value(value)),
        }
    }

    /// The full message as kube-apiserver prints it: `field: detail`.
    pub fn message(&self) -> String {
        if self.field.is_empty() {
            self.detail.clone()
        } else {
            format!("{}: {}", self.field, self.detail)
        }
    }
}

/// Render a value the way Go's `%#v`/`%v` does in apiserver field errors: strings quoted,
/// numbers and booleans bare, compound values as JSON.
pub fn render_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "null".to_string(),
        other => other.to_string(),
    }
}

/// An API failure to be returned as a `Status` object.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// `StatusReason`, e.g. `NotFound`.
    pub reason: &'static str,
    /// Human readable message.
    pub message: String,
    /// `details` object (may be empty).
    pub details: Value,
}

/// Identifies the resource an error is about (for `details` and messages).
#[derive(Debug, Clone, Default)]
pub struct ErrTarget {
    /// API group ("" for core).
    pub group: String,
    /// Plural resource name.
    pub plural: String,
    /// Kind.
    pub kind: String,
    /// Object name ("" if unknown).
    pub name: String,
}

impl ErrTarget {
    /// `plural.group` (just `plural` for the core group).
    pub fn qualified_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `Kind.group` (just `Kind` for the core group).
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    fn details_resource(&self) -> Value {
        let mut m = Map::new();
        if !self.name.is_empty() {
            m.insert("name".into(), json!(self.name));
        }
        if !self.group.is_empty() {
            m.insert("group".into(), json!(self.group));
        }
        m.insert("kind".into(), json!(self.plural));
        Value::Object(m)
    }
}

impl ApiError {
    /// A generic error with empty details.
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: Value::Null,
        }
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 404 NotFound for an unknown path / resource type.
    pub fn not_found_path() -> Self {
        let mut e = Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        );
        e.details = json!({});
        e
    }

    /// 404 NotFound for a missing object.
    pub fn not_found(t: &ErrTarget) -> Self {
        Self {
            code: 404,
            reason: "NotFound",
            message: format!("{} \"{}\" not found", t.qualified_resource(), t.name),
            details: t.details_resource(),
        }
    }

    /// 409 AlreadyExists.
    pub fn already_exists(t: &ErrTarget) -> Self {
        Self {
            code: 409,
            reason: "AlreadyExists",
            message: format!("{} \"{}\" already exists", t.qualified_resource(), t.name),
            details: t.details_resource(),
        }
    }

    /// 409 Conflict for a stale resourceVersion.
    pub fn conflict(t: &ErrTarget) -> Self {
        Self::conflict_msg(
            t,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 409 Conflict with a custom explanation.
    pub fn conflict_msg(t: &ErrTarget, why: &str) -> Self {
        Self {
            code: 409,
            reason: "Conflict",
            message: format!(
                "Operation cannot be fulfilled on {} \"{}\": {}",
                t.qualified_resource(),
                t.name,
                why
            ),
            details: t.details_resource(),
        }
    }

    /// 422 Invalid listing every field error.
    pub fn invalid(t: &ErrTarget, errors: &[FieldError]) -> Self {
        let msgs: Vec<String> = errors.iter().map(FieldError::message).collect();
        let joined = if msgs.len() == 1 {
            msgs[0].clone()
        } else {
            format!("[{}]", msgs.join(", "))
        };
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| json!({"reason": e.reason, "message": e.detail, "field": e.field}))
            .collect();
        let mut details = Map::new();
        if !t.name.is_empty() {
            details.insert("name".into(), json!(t.name));
        }
        if !t.group.is_empty() {
            details.insert("group".into(), json!(t.group));
        }
        details.insert("kind".into(), json!(t.kind));
        details.insert("causes".into(), Value::Array(causes));
        Self {
            code: 422,
            reason: "Invalid",
            message: format!(
                "{} \"{}\" is invalid: {}",
                t.qualified_kind(),
                t.name,
                joined
            ),
            details: Value::Object(details),
        }
    }

    /// 403 Forbidden.
    pub fn forbidden(t: &ErrTarget, why: &str) -> Self {
        Self {
            code: 403,
            reason: "Forbidden",
            message: format!(
                "{} \"{}\" is forbidden: {}",
                t.qualified_resource(),
                t.name,
                why
            ),
            details: t.details_resource(),
        }
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    /// 415 UnsupportedMediaType.
    pub fn unsupported_media_type(accepted: &[&str]) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: {}",
                accepted.join(", ")
            ),
        )
    }

    /// 410 Expired (too old resource version).
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 500 InternalError.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// The `Status` JSON object.
    pub fn to_status(&self) -> Value {
        let mut m = Map::new();
        m.insert("kind".into(), json!("Status"));
        m.insert("apiVersion".into(), json!("v1"));
        m.insert("metadata".into(), json!({}));
        m.insert("status".into(), json!("Failure"));
        m.insert("message".into(), json!(self.message));
        m.insert("reason".into(), json!(self.reason));
        if !self.details.is_null() {
            m.insert("details".into(), self.details.clone());
        }
        m.insert("code".into(), json!(self.code));
        Value::Object(m)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.reason, self.code, self.message)
    }
}

/// Result alias for request processing.
pub type ApiResult<T> = Result<T, ApiError>;
