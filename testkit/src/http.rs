//! HTTP layer: URL parsing (kube-apiserver path layout), query parameters, content
//! negotiation, discovery documents and dispatch to the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::ops::{DeleteOpts, DeleteOutcome, FieldValidation, PatchKind, Sub, WriteCtx};
use crate::resources::ResourceType;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::status::{ApiError, ApiResult};
use crate::store::Store;
use crate::watch::{WatchSpec, WatchStart, present};

/// One request as seen by the server (for assertions in tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: String,
    /// URL path.
    pub path: String,
    /// Raw query string ("" if none).
    pub query: String,
}

/// Recorded requests kept (the older half is dropped when full).
const MAX_RECORDED: usize = 100_000;

/// State shared by all handlers.
pub struct Shared {
    /// The cluster state.
    pub store: Arc<Mutex<Store>>,
    /// Interval between watch bookmarks.
    pub bookmark_interval: Duration,
    /// Flips to true on shutdown (ends watches).
    pub shutdown: watch::Receiver<bool>,
    /// Every request received.
    pub requests: Mutex<Vec<RecordedRequest>>,
    /// `host:port` the server listens on.
    pub address: String,
}

/// Build the axum router.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

fn lock(store: &Mutex<Store>) -> std::sync::MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(|e| e.into_inner())
}

fn json_response(code: StatusCode, v: &Value, warnings: &[String]) -> Response {
    let mut resp = (code, v.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for w in warnings {
        let text = format!("299 - \"{}\"", w.replace('"', "\\\""));
        if let Ok(h) = HeaderValue::from_str(&text) {
            resp.headers_mut().append(header::WARNING, h);
        }
    }
    resp
}

fn error_response(e: &ApiError) -> Response {
    let code = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, &e.to_status(), &[])
}

struct Query(HashMap<String, String>);

impl Query {
    fn parse(uri: &Uri) -> ApiResult<Self> {
        let pairs: Vec<(String, String)> = match uri.query() {
            None => Vec::new(),
            Some(q) => form_pairs(q),
        };
        Ok(Query(pairs.into_iter().collect()))
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }

    fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true") | Some("1") | Some("True"))
    }
}

fn form_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (pct_decode(k), pct_decode(v))
        })
        .collect()
}

fn pct_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parsed resource URL.
struct Target {
    group: String,
    version: String,
    namespace: Option<String>,
    plural: String,
    name: Option<String>,
    sub: Option<String>,
    watch_path: bool,
}

fn parse_resource_path(group: &str, version: &str, rest: &[&str]) -> Option<Target> {
    let mut rest = rest;
    let mut watch_path = false;
    if rest.first() == Some(&"watch") {
        watch_path = true;
        rest = &rest[1..];
    }
    let s = |x: &&str| x.to_string();
    let (namespace, plural, name, sub) = match rest {
        ["namespaces"] => (None, "namespaces".to_string(), None, None),
        ["namespaces", n] => (None, "namespaces".to_string(), Some(s(n)), None),
        ["namespaces", n, sub @ ("status" | "finalize")] if group.is_empty() => {
            (None, "namespaces".to_string(), Some(s(n)), Some(s(sub)))
        }
        ["namespaces", ns, plural] => (Some(s(ns)), s(plural), None, None),
        ["namespaces", ns, plural, name] => (Some(s(ns)), s(plural), Some(s(name)), None),
        ["namespaces", ns, plural, name, sub] => {
            (Some(s(ns)), s(plural), Some(s(name)), Some(s(sub)))
        }
        [plural] => (None, s(plural), None, None),
        [plural, name] => (None, s(plural), Some(s(name)), None),
        [plural, name, sub] => (None, s(plural), Some(s(name)), Some(s(sub))),
        _ => return None,
    };
    Some(Target {
        group: group.to_string(),
        version: version.to_string(),
        namespace,
        plural,
        name,
        sub,
        watch_path,
    })
}

fn accept_has(headers: &HeaderMap, needle: &str) -> bool {
    // Only the first (preferred) media type counts.
    headers
        .get(header::ACCEPT)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|a| a.split(',').next().unwrap_or_default().contains(needle))
}

async fn handle(
    State(sh): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    tracing::debug!(%method, %uri, "request");
    if let Ok(mut r) = sh.requests.lock() {
        if r.len() >= MAX_RECORDED {
            r.drain(..MAX_RECORDED / 2);
        }
        r.push(RecordedRequest {
            method: method.to_string(),
            path: path.clone(),
            query: uri.query().unwrap_or_default().to_string(),
        });
    }
    match route(&sh, &method, &uri, &headers, &body).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(code = e.code, reason = e.reason, message = %e.message, "request failed");
            error_response(&e)
        }
    }
}

async fn route(
    sh: &Arc<Shared>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> ApiResult<Response> {
    let segs: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    let aggregated = accept_has(headers, "as=APIGroupDiscoveryList");
    let get_only = |r: ApiResult<Response>| {
        if method == Method::GET {
            r
        } else {
            Err(ApiError::method_not_allowed())
        }
    };
    match segs.as_slice() {
        [] => get_only(Ok(json_response(
            StatusCode::OK,
            &json!({"paths": ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/readyz", "/version"]}),
            &[],
        ))),
        ["version"] => get_only(Ok(json_response(StatusCode::OK, &version_info(), &[]))),
        ["healthz"] | ["livez"] | ["readyz"] => {
            get_only(Ok((StatusCode::OK, "ok").into_response()))
        }
        ["api"] => {
            if aggregated {
                let doc = lock(&sh.store).registry.aggregated_discovery(true);
                return get_only(Ok(aggregated_response(&doc)));
            }
            get_only(Ok(json_response(
                StatusCode::OK,
                &json!({
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": sh.address}],
                }),
                &[],
            )))
        }
        ["apis"] => {
            let st = lock(&sh.store);
            if aggregated {
                let doc = st.registry.aggregated_discovery(false);
                return get_only(Ok(aggregated_response(&doc)));
            }
            get_only(Ok(json_response(
                StatusCode::OK,
                &st.registry.api_group_list(),
                &[],
            )))
        }
        ["api", v] => {
            let doc = lock(&sh.store).registry.api_resource_list("", v);
            get_only(
                doc.map(|d| json_response(StatusCode::OK, &d, &[]))
                    .ok_or_else(ApiError::not_found_path),
            )
        }
        ["apis", g] => {
            let doc = lock(&sh.store).registry.api_group(g);
            get_only(
                doc.map(|d| json_response(StatusCode::OK, &d, &[]))
                    .ok_or_else(ApiError::not_found_path),
            )
        }
        ["apis", g, v] => {
            let doc = lock(&sh.store).registry.api_resource_list(g, v);
            get_only(
                doc.map(|d| json_response(StatusCode::OK, &d, &[]))
                    .ok_or_else(ApiError::not_found_path),
            )
        }
        ["openapi", "v3"] => get_only(Ok(json_response(
            StatusCode::OK,
            &crate::openapi::root(&lock(&sh.store).registry),
            &[],
        ))),
        ["openapi", "v3", "api", v] => {
            let doc = crate::openapi::gv_document(&lock(&sh.store).registry, "", v);
            get_only(
                doc.map(|d| json_response(StatusCode::OK, &d, &[]))
                    .ok_or_else(ApiError::not_found_path),
            )
        }
        ["openapi", "v3", "apis", g, v] => {
            let doc = crate::openapi::gv_document(&lock(&sh.store).registry, g, v);
            get_only(
                doc.map(|d| json_response(StatusCode::OK, &d, &[]))
                    .ok_or_else(ApiError::not_found_path),
            )
        }
        ["api", v, rest @ ..] => {
            let t = parse_resource_path("", v, rest).ok_or_else(ApiError::not_found_path)?;
            resource(sh, method, uri, headers, body, t).await
        }
        ["apis", g, v, rest @ ..] => {
            let t = parse_resource_path(g, v, rest).ok_or_else(ApiError::not_found_path)?;
            resource(sh, method, uri, headers, body, t).await
        }
        _ => Err(ApiError::not_found_path()),
    }
}

fn aggregated_response(doc: &Value) -> Response {
    let mut resp = (StatusCode::OK, doc.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
        ),
    );
    resp
}

fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "emulationMajor": "1",
        "emulationMinor": "33",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "32",
        "gitVersion": "v1.33.0-authstack-fake",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

fn manager_from(q: &Query, headers: &HeaderMap) -> String {
    if let Some(m) = q.get("fieldManager").filter(|m| !m.is_empty()) {
        return m.to_string();
    }
    headers
        .get(header::USER_AGENT)
        .and_then(|h| h.to_str().ok())
        .map(|ua| ua.split('/').next().unwrap_or_default().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

fn write_ctx(version: &str, q: &Query, headers: &HeaderMap, apply: bool) -> ApiResult<WriteCtx> {
    let field_validation = match q.get("fieldValidation") {
        None | Some("") => FieldValidation::Warn,
        Some("Ignore") => FieldValidation::Ignore,
        Some("Warn") => FieldValidation::Warn,
        Some("Strict") => FieldValidation::Strict,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "fieldValidation: Unsupported value: {other:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
            )));
        }
    };
    let dry_run = match q.get("dryRun") {
        None | Some("") => false,
        Some("All") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "dryRun: Unsupported value: {other:?}: supported values: \"All\""
            )));
        }
    };
    let manager = if apply {
        q.get("fieldManager").unwrap_or_default().to_string()
    } else {
        manager_from(q, headers)
    };
    Ok(WriteCtx {
        version: version.to_string(),
        manager,
        dry_run,
        field_validation,
        warnings: Vec::new(),
    })
}

fn parse_json_body(body: &Bytes) -> ApiResult<Value> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding request body: {e}")))
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn parse_body_any(headers: &HeaderMap, body: &Bytes) -> ApiResult<Value> {
    let ct = content_type(headers);
    if ct.contains("protobuf") || ct.contains("cbor") {
        return Err(ApiError::unsupported_media_type(&[
            "application/json",
            "application/yaml",
        ]));
    }
    if ct.contains("yaml") {
        serde_yaml::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
    } else {
        parse_json_body(body)
    }
}

/// Status object returned by deletes of types that do not return the deleted object.
fn delete_success(rt: &ResourceType, obj: &Value) -> Value {
    let mut details = json!({
        "name": obj.pointer("/metadata/name").cloned().unwrap_or(Value::Null),
        "kind": rt.plural,
        "uid": obj.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
    });
    if !rt.group.is_empty() {
        details["group"] = json!(rt.group);
    }
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}

fn returns_deleted_object(rt: &ResourceType) -> bool {
    rt.is_custom()
        || (rt.group.is_empty()
            && matches!(
                rt.plural.as_str(),
                "pods" | "services" | "serviceaccounts" | "namespaces"
            ))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: u64,
    start: String,
}

async fn resource(
    sh: &Arc<Shared>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
    t: Target,
) -> ApiResult<Response> {
    let q = Query::parse(uri)?;
    let rt = lock(&sh.store)
        .registry
        .lookup(&t.group, &t.version, &t.plural)
        .ok_or_else(ApiError::not_found_path)?;
    if t.namespace.is_some() && !rt.namespaced {
        return Err(ApiError::not_found_path());
    }
    let ns = if rt.namespaced {
        t.namespace.clone().unwrap_or_default()
    } else {
        String::new()
    };
    let sub = match t.sub.as_deref() {
        None => Sub::Main,
        Some("status") if rt.status_subresource => Sub::Status,
        Some(_) => return Err(ApiError::not_found_path()),
    };
    let metadata_only = accept_has(headers, "as=PartialObjectMetadata");
    let table = accept_has(headers, "as=Table");
    let version = t.version.clone();
    let status_ok = |v: Value, w: &[String]| {
        json_response(
            StatusCode::OK,
            &present(&rt, &version, &v, metadata_only),
            w,
        )
    };

    match (method.clone(), t.name.clone()) {
        (Method::GET, None) => {
            if t.watch_path || q.flag("watch") {
                return start_watch(sh, &rt, &t, &q, metadata_only, None);
            }
            list(sh, &rt, &t, &q, metadata_only, table)
        }
        (Method::GET, Some(name)) => {
            if t.watch_path || q.flag("watch") {
                return start_watch(sh, &rt, &t, &q, metadata_only, Some(&name));
            }
            if rt.namespaced && t.namespace.is_none() {
                return Err(ApiError::not_found_path());
            }
            let st = lock(&sh.store);
            let obj = st
                .get(&rt.key(), &ns, &name)
                .cloned()
                .ok_or_else(|| ApiError::not_found(&rt.target(&name)))?;
            drop(st);
            if table {
                return Ok(json_response(
                    StatusCode::OK,
                    &crate::table::table(&rt, &[obj], None),
                    &[],
                ));
            }
            Ok(status_ok(obj, &[]))
        }
        (Method::POST, None) => {
            if rt.namespaced && t.namespace.is_none() {
                return Err(ApiError::method_not_allowed());
            }
            let mut ctx = write_ctx(&version, &q, headers, false)?;
            let obj = parse_body_any(headers, body)?;
            let created = lock(&sh.store).create(&rt, &ns, obj, &mut ctx)?;
            Ok(json_response(
                StatusCode::CREATED,
                &present(&rt, &version, &created, metadata_only),
                &ctx.warnings,
            ))
        }
        (Method::PUT, Some(name)) => {
            if rt.namespaced && t.namespace.is_none() {
                return Err(ApiError::not_found_path());
            }
            let mut ctx = write_ctx(&version, &q, headers, false)?;
            let obj = parse_body_any(headers, body)?;
            let updated = lock(&sh.store).replace(&rt, &ns, &name, obj, sub, &mut ctx)?;
            Ok(status_ok(updated, &ctx.warnings))
        }
        (Method::PATCH, Some(name)) => {
            if rt.namespaced && t.namespace.is_none() {
                return Err(ApiError::not_found_path());
            }
            let ct = content_type(headers);
            let kind = match ct.as_str() {
                "application/merge-patch+json" => PatchKind::Merge,
                "application/json-patch+json" => PatchKind::Json,
                "application/strategic-merge-patch+json" => PatchKind::Strategic,
                "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
                    PatchKind::Apply {
                        force: q.flag("force"),
                    }
                }
                _ => {
                    return Err(ApiError::unsupported_media_type(&[
                        "application/json-patch+json",
                        "application/merge-patch+json",
                        "application/apply-patch+yaml",
                        "application/strategic-merge-patch+json",
                    ]));
                }
            };
            if q.get("force").is_some() && !matches!(kind, PatchKind::Apply { .. }) {
                return Err(ApiError::bad_request(
                    "force: Forbidden: may not be specified for non-apply patch",
                ));
            }
            let mut ctx = write_ctx(
                &version,
                &q,
                headers,
                matches!(kind, PatchKind::Apply { .. }),
            )?;
            let (obj, created) =
                lock(&sh.store).patch(&rt, &ns, &name, kind, body, sub, &mut ctx)?;
            let code = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok(json_response(
                code,
                &present(&rt, &version, &obj, metadata_only),
                &ctx.warnings,
            ))
        }
        (Method::DELETE, Some(name)) => {
            if rt.namespaced && t.namespace.is_none() {
                return Err(ApiError::not_found_path());
            }
            if sub != Sub::Main {
                return Err(ApiError::method_not_allowed());
            }
            let ctx = write_ctx(&version, &q, headers, false)?;
            let opts = DeleteOpts::parse(body, q.get("propagationPolicy").map(str::to_string))?;
            let outcome = lock(&sh.store).delete(&rt, &ns, &name, &opts, &ctx)?;
            Ok(match outcome {
                DeleteOutcome::Pending(obj) => status_ok(obj, &[]),
                DeleteOutcome::Deleted(obj) => {
                    if returns_deleted_object(&rt) {
                        status_ok(obj, &[])
                    } else {
                        json_response(StatusCode::OK, &delete_success(&rt, &obj), &[])
                    }
                }
            })
        }
        (Method::DELETE, None) => {
            if rt.plural == "namespaces" && rt.group.is_empty() {
                return Err(ApiError::method_not_allowed());
            }
            let ctx = write_ctx(&version, &q, headers, false)?;
            let opts = DeleteOpts::parse(body, q.get("propagationPolicy").map(str::to_string))?;
            let labels = LabelSelector::parse(q.get("labelSelector").unwrap_or_default())?;
            let fields = FieldSelector::parse(q.get("fieldSelector").unwrap_or_default())?;
            let mut st = lock(&sh.store);
            let targets: Vec<(String, String)> = st
                .list(&rt.key(), t.namespace.as_deref(), &labels, &fields)
                .into_iter()
                .map(|o| {
                    (
                        o.pointer("/metadata/namespace")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                        o.pointer("/metadata/name")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                    )
                })
                .collect();
            let mut items = Vec::new();
            for (ons, name) in targets {
                if let Ok(DeleteOutcome::Deleted(o) | DeleteOutcome::Pending(o)) =
                    st.delete(&rt, &ons, &name, &opts, &ctx)
                {
                    items.push(present(&rt, &version, &o, metadata_only));
                }
            }
            let rv = st.current_rv();
            Ok(json_response(
                StatusCode::OK,
                &json!({
                    "kind": format!("{}List", rt.kind),
                    "apiVersion": rt.api_version(&version),
                    "metadata": {"resourceVersion": rv.to_string()},
                    "items": items,
                }),
                &[],
            ))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn list(
    sh: &Arc<Shared>,
    rt: &Arc<ResourceType>,
    t: &Target,
    q: &Query,
    metadata_only: bool,
    table: bool,
) -> ApiResult<Response> {
    let labels = LabelSelector::parse(q.get("labelSelector").unwrap_or_default())?;
    let fields = FieldSelector::parse(q.get("fieldSelector").unwrap_or_default())?;
    let limit: Option<usize> = match q.get("limit") {
        None | Some("") => None,
        Some(l) => {
            let n: i64 = l.parse().map_err(|_| {
                ApiError::bad_request(format!("limit: Invalid value: {l:?}: must be an integer"))
            })?;
            (n > 0).then_some(n as usize)
        }
    };
    let cont: Option<ContinueToken> = match q.get("continue") {
        None | Some("") => None,
        Some(c) => {
            let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(c)
                .map_err(|_| {
                    ApiError::bad_request("continue key is not valid: illegal base64 data")
                })?;
            Some(serde_json::from_slice(&raw).map_err(|_| {
                ApiError::bad_request(
                    "continue key is not valid: incorrect encoded start resourceVersion",
                )
            })?)
        }
    };
    let st = lock(&sh.store);
    let all = st.list(&rt.key(), t.namespace.as_deref(), &labels, &fields);
    let list_rv = cont
        .as_ref()
        .map(|c| c.rv)
        .unwrap_or_else(|| st.current_rv());
    let key_of = |o: &Value| {
        format!(
            "{}/{}",
            o.pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or_default(),
            o.pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
        )
    };
    let remaining: Vec<&Value> = match &cont {
        Some(c) => all.into_iter().filter(|o| key_of(o) > c.start).collect(),
        None => all,
    };
    let total = remaining.len();
    let page: Vec<Value> = remaining
        .iter()
        .take(limit.unwrap_or(usize::MAX))
        .map(|o| present(rt, &t.version, o, metadata_only))
        .collect();
    let mut meta = json!({"resourceVersion": list_rv.to_string()});
    if let Some(l) = limit
        && total > l
        && let Some(last) = page.last()
    {
        let tok = ContinueToken {
            rv: list_rv,
            start: key_of(last),
        };
        let raw = serde_json::to_vec(&tok).map_err(|e| ApiError::internal(e.to_string()))?;
        meta["continue"] = json!(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw));
        meta["remainingItemCount"] = json!(total - l);
    }
    drop(st);
    if table {
        return Ok(json_response(
            StatusCode::OK,
            &crate::table::table(rt, &page, Some(meta)),
            &[],
        ));
    }
    let (kind, av) = if metadata_only {
        (
            "PartialObjectMetadataList".to_string(),
            "meta.k8s.io/v1".to_string(),
        )
    } else {
        (format!("{}List", rt.kind), rt.api_version(&t.version))
    };
    Ok(json_response(
        StatusCode::OK,
        &json!({"kind": kind, "apiVersion": av, "metadata": meta, "items": page}),
        &[],
    ))
}

fn start_watch(
    sh: &Arc<Shared>,
    rt: &Arc<ResourceType>,
    t: &Target,
    q: &Query,
    metadata_only: bool,
    name: Option<&str>,
) -> ApiResult<Response> {
    let labels = LabelSelector::parse(q.get("labelSelector").unwrap_or_default())?;
    let mut fields = FieldSelector::parse(q.get("fieldSelector").unwrap_or_default())?;
    if let Some(n) = name {
        fields = fields.with_name(n);
    }
    let send_initial = q.flag("sendInitialEvents");
    let bookmarks = q.flag("allowWatchBookmarks");
    if send_initial {
        if q.get("resourceVersionMatch") != Some("NotOlderThan") {
            return Err(ApiError::invalid(
                &rt.target(""),
                &[crate::status::FieldError::forbidden(
                    "resourceVersionMatch",
                    "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                )],
            ));
        }
        if !bookmarks {
            return Err(ApiError::invalid(
                &rt.target(""),
                &[crate::status::FieldError::forbidden(
                    "allowWatchBookmarks",
                    "sendInitialEvents requires setting allowWatchBookmarks to true",
                )],
            ));
        }
    }
    let start = match q.get("resourceVersion") {
        None | Some("") | Some("0") => WatchStart::CurrentState,
        Some(_) if send_initial => WatchStart::CurrentState,
        Some(rv) => WatchStart::After(
            rv.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv}")))?,
        ),
    };
    let timeout =
        match q.get("timeoutSeconds") {
            None | Some("") => Duration::from_secs(1800),
            Some(s) => Duration::from_secs(s.parse().map_err(|_| {
                ApiError::bad_request(format!("timeoutSeconds: Invalid value: {s:?}"))
            })?),
        };
    let spec = WatchSpec {
        rt: rt.clone(),
        version: t.version.clone(),
        namespace: t.namespace.clone(),
        labels,
        fields,
        start,
        initial_events_end: send_initial,
        bookmarks,
        bookmark_interval: sh.bookmark_interval,
        timeout,
        metadata_only,
    };
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    tokio::spawn(crate::watch::run(
        sh.store.clone(),
        spec,
        tx,
        sh.shutdown.clone(),
    ));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<Bytes, std::convert::Infallible>(b), rx))
    });
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode() {
        assert_eq!(pct_decode("a%3Db+c%2C%20d"), "a=b c, d");
        assert_eq!(pct_decode("%"), "%");
        assert_eq!(pct_decode("%zz"), "%zz");
        let p = form_pairs("labelSelector=app%20in%20(a%2Cb)&watch=true");
        assert_eq!(p[0], ("labelSelector".into(), "app in (a,b)".into()));
    }

    #[test]
    fn paths() {
        let t =
            parse_resource_path("", "v1", &["namespaces", "ns", "pods", "p", "status"]).unwrap();
        assert_eq!(
            (
                t.namespace.as_deref(),
                t.plural.as_str(),
                t.name.as_deref(),
                t.sub.as_deref()
            ),
            (Some("ns"), "pods", Some("p"), Some("status"))
        );
        let t = parse_resource_path("", "v1", &["namespaces", "ns", "status"]).unwrap();
        assert_eq!(
            (t.namespace.as_deref(), t.plural.as_str(), t.name.as_deref()),
            (None, "namespaces", Some("ns"))
        );
        let t = parse_resource_path("apps", "v1", &["watch", "deployments"]).unwrap();
        assert!(t.watch_path);
    }
}
