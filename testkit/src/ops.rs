//! Write operations with kube-apiserver semantics: create, update, patch (merge, JSON,
//! strategic, server-side apply), delete with finalizers and garbage collection, CRD
//! registration and namespace termination.

use serde_json::{Map, Value, json};

use crate::builtin;
use crate::patch;
use crate::resources::{CrdInfo, ResKey, ResourceType, version_priority};
use crate::schema;
use crate::ssa::{self, Scope, Shape};
use crate::status::{ApiError, ApiResult, FieldError};
use crate::store::{EventKind, Store, now};
use crate::validation::{self, NameRule};

/// `fieldValidation` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    /// Drop unknown fields silently.
    Ignore,
    /// Drop unknown fields and return `Warning` headers (the server default).
    #[default]
    Warn,
    /// Reject unknown fields with 400.
    Strict,
}

/// Per-request context for writes.
#[derive(Debug, Clone, Default)]
pub struct WriteCtx {
    /// Version addressed by the request URL.
    pub version: String,
    /// Field manager (query parameter or derived from the User-Agent).
    pub manager: String,
    /// `dryRun=All`.
    pub dry_run: bool,
    /// Unknown field handling.
    pub field_validation: FieldValidation,
    /// Warnings to return as `Warning` headers.
    pub warnings: Vec<String>,
}

/// Main resource or `/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sub {
    /// The main resource.
    Main,
    /// The status subresource.
    Status,
}

/// PATCH content types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/merge-patch+json`.
    Merge,
    /// `application/json-patch+json`.
    Json,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml`.
    Apply {
        /// `force=true`.
        force: bool,
    },
}

/// Result of a delete.
#[derive(Debug, Clone)]
pub enum DeleteOutcome {
    /// The object is gone (last state).
    Deleted(Value),
    /// Deletion is pending on finalizers (current state).
    Pending(Value),
}

/// Parsed DeleteOptions.
#[derive(Debug, Clone, Default)]
pub struct DeleteOpts {
    /// `Orphan`, `Background` or `Foreground`.
    pub propagation: Option<String>,
    /// Precondition on uid.
    pub uid: Option<String>,
    /// Precondition on resourceVersion.
    pub resource_version: Option<String>,
}

impl DeleteOpts {
    /// Parse a DeleteOptions body (may be empty) plus query overrides.
    pub fn parse(body: &[u8], query_propagation: Option<String>) -> ApiResult<Self> {
        let mut o = DeleteOpts::default();
        if !body.iter().all(u8::is_ascii_whitespace) {
            let v: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))?;
            o.propagation = v
                .get("propagationPolicy")
                .and_then(Value::as_str)
                .map(str::to_string);
            if o.propagation.is_none()
                && let Some(orphan) = v.get("orphanDependents").and_then(Value::as_bool)
            {
                o.propagation = Some(if orphan { "Orphan" } else { "Background" }.into());
            }
            if let Some(p) = v.get("preconditions") {
                o.uid = p.get("uid").and_then(Value::as_str).map(str::to_string);
                o.resource_version = p
                    .get("resourceVersion")
                    .and_then(Value::as_str)
                    .map(str::to_string);
            }
        }
        if query_propagation.is_some() {
            o.propagation = query_propagation;
        }
        if let Some(p) = &o.propagation
            && !matches!(p.as_str(), "Orphan" | "Background" | "Foreground")
        {
            return Err(ApiError::bad_request(format!(
                "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: {p:?}: supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
            )));
        }
        Ok(o)
    }
}

fn name_rule(rt: &ResourceType) -> NameRule {
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "namespaces") => NameRule::Label1123,
        ("", "services") => NameRule::Label1035,
        _ => NameRule::Subdomain,
    }
}

fn scope_for(rt: &ResourceType, sub: Sub) -> Scope {
    match sub {
        Sub::Status => Scope::Status,
        Sub::Main if rt.status_subresource => Scope::Main,
        Sub::Main => Scope::Whole,
    }
}

fn schema_for<'a>(rt: &'a ResourceType, version: &str) -> Option<&'a Value> {
    rt.crd.as_ref().and_then(|c| c.schemas.get(version))
}

fn shape_for<'a>(rt: &'a ResourceType, version: &str) -> Shape<'a> {
    if rt.is_custom() {
        Shape::Schema(schema_for(rt, version))
    } else {
        Shape::Builtin
    }
}

/// Refuses a body whose namespace differs from the one in the request URL.
fn check_namespace(meta: &Map<String, Value>, rt: &ResourceType, ns: &str) -> ApiResult<()> {
    if rt.namespaced
        && let Some(n) = meta.get("namespace").and_then(Value::as_str)
        && !n.is_empty()
        && n != ns
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    Ok(())
}

/// [`check_namespace`], then writes the request's namespace into the body (or removes it for
/// cluster-scoped resources).
fn settle_namespace(meta: &mut Map<String, Value>, rt: &ResourceType, ns: &str) -> ApiResult<()> {
    check_namespace(meta, rt, ns)?;
    if rt.namespaced {
        meta.insert("namespace".into(), json!(ns));
    } else {
        meta.remove("namespace");
    }
    Ok(())
}

fn meta_mut(obj: &mut Value) -> ApiResult<&mut Map<String, Value>> {
    let m = obj
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("the request body must be a JSON object"))?;
    let meta = m.entry("metadata").or_insert_with(|| json!({}));
    if meta.is_null() {
        *meta = json!({});
    }
    meta.as_object_mut()
        .ok_or_else(|| ApiError::bad_request("metadata must be an object"))
}

fn meta_str(obj: &Value, field: &str) -> Option<String> {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn is_deleting(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
}

/// Ensure apiVersion/kind match the addressed type (set them when absent).
fn check_type_meta(rt: &ResourceType, version: &str, obj: &mut Value) -> ApiResult<()> {
    let want_av = rt.api_version(version);
    let m = obj
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("the request body must be a JSON object"))?;
    if let Some(kind) = m.get("kind").and_then(Value::as_str)
        && kind != rt.kind
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({}) does not match the expected API version ({want_av}) or the kind in the data ({kind}) does not match the expected kind ({})",
            m.get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or_default(),
            rt.kind
        )));
    }
    if let Some(av) = m.get("apiVersion").and_then(Value::as_str)
        && av != want_av
    {
        let (g, _) = crate::resources::split_api_version(av);
        if g != rt.group {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({want_av})"
            )));
        }
    }
    m.insert("apiVersion".into(), json!(want_av));
    m.insert("kind".into(), json!(rt.kind));
    Ok(())
}

fn random_suffix() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::thread_rng();
    (0..5)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

fn strip_meta_status(v: &Value) -> Value {
    let mut c = v.clone();
    if let Some(m) = c.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    c
}

fn strip_rv(v: &Value) -> Value {
    let mut c = v.clone();
    if let Some(m) = c.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    c
}

/// How managedFields are produced for a write.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Managed {
    /// Record an Update operation by the request's manager.
    Update,
    /// Already computed by server-side apply.
    Applied,
}

impl Store {
    /// Namespace must exist and not be terminating for new content.
    fn check_namespace(&self, rt: &ResourceType, ns: &str, name: &str) -> ApiResult<()> {
        if !rt.namespaced {
            return Ok(());
        }
        let key = ResKey {
            group: String::new(),
            plural: "namespaces".into(),
        };
        match self.get(&key, "", ns) {
            None => Err(ApiError::not_found(&crate::status::ErrTarget {
                group: String::new(),
                plural: "namespaces".into(),
                kind: "Namespace".into(),
                name: ns.to_string(),
            })),
            Some(n) if is_deleting(n) => Err(ApiError::forbidden(
                &rt.target(name),
                &format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                ),
            )),
            Some(_) => Ok(()),
        }
    }

    /// Defaulting, pruning, decoding, validation and generation for a candidate object.
    fn prepare(
        &mut self,
        rt: &ResourceType,
        old: Option<&Value>,
        mut cand: Value,
        sub: Sub,
        ctx: &mut WriteCtx,
        managed: Managed,
    ) -> ApiResult<Value> {
        check_type_meta(rt, &ctx.version, &mut cand)?;
        if let Some(old) = old {
            if rt.status_subresource {
                match sub {
                    Sub::Main => {
                        let m = cand
                            .as_object_mut()
                            .ok_or_else(|| ApiError::bad_request("object expected"))?;
                        match old.get("status") {
                            Some(s) => m.insert("status".into(), s.clone()),
                            None => m.remove("status"),
                        };
                    }
                    Sub::Status => {
                        let status = cand.get("status").cloned();
                        let mf = cand.pointer("/metadata/managedFields").cloned();
                        let mut base = old.clone();
                        if let Some(m) = base.as_object_mut() {
                            match status {
                                Some(s) => m.insert("status".into(), s),
                                None => m.remove("status"),
                            };
                        }
                        if managed == Managed::Applied
                            && let Some(meta) =
                                base.get_mut("metadata").and_then(Value::as_object_mut)
                        {
                            match mf {
                                Some(mf) => meta.insert("managedFields".into(), mf),
                                None => meta.remove("managedFields"),
                            };
                        }
                        check_type_meta(rt, &ctx.version, &mut base)?;
                        cand = base;
                    }
                }
            }
            let old_meta = old
                .get("metadata")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let meta = meta_mut(&mut cand)?;
            for f in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "name",
                "namespace",
            ] {
                match old_meta.get(f) {
                    Some(v) => meta.insert(f.to_string(), v.clone()),
                    None => meta.remove(f),
                };
            }
            meta.remove("selfLink");
            if managed != Managed::Applied {
                match old_meta.get("managedFields") {
                    Some(v) => meta.insert("managedFields".into(), v.clone()),
                    None => meta.remove("managedFields"),
                };
            }
        }

        if rt.is_custom() {
            if let Some(s) = schema_for(rt, &ctx.version) {
                let s = s.clone();
                let dropped = schema::prune(&mut cand, &s);
                self.handle_unknown_fields(&dropped, ctx)?;
                schema::apply_defaults(&mut cand, &s);
            }
        } else {
            builtin::apply_defaults(rt, &mut cand, old, &mut || self.alloc_ip())?;
            let before = cand.clone();
            cand = builtin::decode(rt, cand)?;
            let mut dropped = Vec::new();
            unknown_paths(&before, &cand, "", &mut dropped);
            self.handle_unknown_fields(&dropped, ctx)?;
        }

        let name = meta_str(&cand, "name").unwrap_or_default();
        let mut errs: Vec<FieldError> = Vec::new();
        validation::validate_meta(&cand, name_rule(rt), &mut errs);
        if rt.is_custom() {
            if let Some(s) = schema_for(rt, &ctx.version) {
                errs.extend(schema::validate(&cand, s));
            }
        } else {
            errs.extend(builtin::validate(rt, &cand));
            if let Some(old) = old {
                errs.extend(builtin::validate_update(rt, old, &cand));
            }
            if rt.kind == "CustomResourceDefinition" {
                errs.extend(validate_crd(&cand));
            }
        }
        if let Some(old) = old
            && is_deleting(old)
        {
            let before = finalizers(old);
            let added: Vec<String> = finalizers(&cand)
                .into_iter()
                .filter(|f| !before.contains(f))
                .collect();
            if !added.is_empty() {
                errs.push(FieldError::forbidden(
                    "metadata.finalizers",
                    &format!(
                        "no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                        added.iter().map(|f| format!("{f:?}")).collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }
        if !errs.is_empty() {
            return Err(ApiError::invalid(&rt.target(&name), &errs));
        }

        if rt.tracks_generation
            && let Some(old) = old
        {
            let gen_old = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            let next = if strip_meta_status(old) != strip_meta_status(&cand) {
                gen_old + 1
            } else {
                gen_old
            };
            meta_mut(&mut cand)?.insert("generation".into(), json!(next));
        }
        if managed == Managed::Update {
            let scope = scope_for(rt, sub);
            let av = rt.api_version(&ctx.version);
            let base = old.cloned().unwrap_or(Value::Null);
            ssa::record_update(
                &base,
                &mut cand,
                &ctx.manager,
                scope,
                shape_for(rt, &ctx.version),
                &av,
                &now(),
            );
        }
        Ok(cand)
    }

    fn handle_unknown_fields(&self, dropped: &[String], ctx: &mut WriteCtx) -> ApiResult<()> {
        if dropped.is_empty() {
            return Ok(());
        }
        match ctx.field_validation {
            FieldValidation::Ignore => Ok(()),
            FieldValidation::Warn => {
                for d in dropped {
                    ctx.warnings.push(format!("unknown field \"{d}\""));
                }
                Ok(())
            }
            FieldValidation::Strict => {
                let list: Vec<String> = dropped
                    .iter()
                    .map(|d| format!("unknown field \"{d}\""))
                    .collect();
                Err(ApiError::bad_request(format!(
                    "strict decoding error: {}",
                    list.join(", ")
                )))
            }
        }
    }

    /// Store the result of a write: no-op detection, resourceVersion, watch event, and
    /// immediate removal when a deleting object lost its last finalizer.
    fn commit(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        old: Option<&Value>,
        mut cand: Value,
        ctx: &WriteCtx,
    ) -> ApiResult<Value> {
        let key = rt.key();
        if rt.kind == "CustomResourceDefinition" && rt.group == "apiextensions.k8s.io" {
            set_crd_status(&mut cand, old);
        }
        if let Some(old) = old
            && strip_rv(old) == strip_rv(&cand)
        {
            return Ok(old.clone());
        }
        if ctx.dry_run {
            return Ok(cand);
        }
        let rv = self.next_rv();
        meta_mut(&mut cand)?.insert("resourceVersion".into(), json!(rv.to_string()));
        if old.is_some() && is_deleting(&cand) && finalizers(&cand).is_empty() {
            if let Some(m) = self.objects.get_mut(&key) {
                m.insert((ns.to_string(), name.to_string()), cand.clone());
            }
            let removed = self.remove(&key, ns, name).unwrap_or(cand);
            self.after_removal(&removed);
            return Ok(removed);
        }
        let kind = if old.is_some() {
            EventKind::Modified
        } else {
            EventKind::Added
        };
        self.put(&key, ns, name, cand.clone(), rv, kind, old.cloned());
        if rt.kind == "CustomResourceDefinition" && rt.group == "apiextensions.k8s.io" {
            self.register_crd(&cand);
        }
        if self.config.auto_ready_workloads
            && rt.group == "apps"
            && (rt.kind == "Deployment" || rt.kind == "StatefulSet")
            && !is_deleting(&cand)
        {
            let gen_changed = old.is_none_or(|o| {
                o.pointer("/metadata/generation") != cand.pointer("/metadata/generation")
            });
            if gen_changed {
                self.mark_ready(&key, ns, name);
            }
        }
        Ok(cand)
    }

    /// POST: create an object.
    pub fn create(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        mut body: Value,
        ctx: &mut WriteCtx,
    ) -> ApiResult<Value> {
        check_type_meta(rt, &ctx.version, &mut body)?;
        self.create_inner(rt, ns, body, ctx, Managed::Update)
    }

    fn create_inner(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        mut body: Value,
        ctx: &mut WriteCtx,
        managed: Managed,
    ) -> ApiResult<Value> {
        let meta = meta_mut(&mut body)?;
        settle_namespace(meta, rt, ns)?;
        if meta
            .get("resourceVersion")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
        {
            return Err(ApiError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        let explicit = meta
            .get("name")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let generate = meta
            .get("generateName")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let (name, generated) = match (explicit, &generate) {
            (Some(n), _) => (n, false),
            (None, Some(g)) => (format!("{g}{}", random_suffix()), true),
            (None, None) => {
                return Err(ApiError::invalid(
                    &rt.target(""),
                    &[FieldError::required(
                        "metadata.name",
                        Some("name or generateName is required"),
                    )],
                ));
            }
        };
        meta.insert("name".into(), json!(name));
        meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        meta.insert("creationTimestamp".into(), json!(now()));
        for f in [
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
            "resourceVersion",
        ] {
            meta.remove(f);
        }
        if managed != Managed::Applied {
            meta.remove("managedFields");
        }
        if rt.tracks_generation {
            meta.insert("generation".into(), json!(1));
        } else {
            meta.remove("generation");
        }
        if rt.status_subresource
            && let Some(m) = body.as_object_mut()
        {
            if rt.is_custom() {
                m.remove("status");
            } else {
                m.insert("status".into(), json!({}));
            }
        }
        self.check_namespace(rt, ns, &name)?;
        let mut cand = self.prepare(rt, None, body, Sub::Main, ctx, managed)?;
        let mut name = name;
        if self.get(&rt.key(), ns, &name).is_some() {
            if !generated {
                return Err(ApiError::already_exists(&rt.target(&name)));
            }
            let g = generate.unwrap_or_default();
            let mut tries = 0;
            while self.get(&rt.key(), ns, &name).is_some() && tries < 10 {
                name = format!("{g}{}", random_suffix());
                tries += 1;
            }
            meta_mut(&mut cand)?.insert("name".into(), json!(name));
        }
        self.commit(rt, ns, &name, None, cand, ctx)
    }

    /// PUT: replace an object (main resource or status).
    pub fn replace(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        mut body: Value,
        sub: Sub,
        ctx: &mut WriteCtx,
    ) -> ApiResult<Value> {
        check_type_meta(rt, &ctx.version, &mut body)?;
        let meta = meta_mut(&mut body)?;
        match meta.get("name").and_then(Value::as_str) {
            Some(n) if n != name => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
            _ => {
                meta.insert("name".into(), json!(name));
            }
        }
        check_namespace(meta, rt, ns)?;
        let precondition = meta
            .get("resourceVersion")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let old = self
            .get(&rt.key(), ns, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rt.target(name)))?;
        if let Some(rv) = precondition
            && Some(rv) != meta_str(&old, "resourceVersion")
        {
            return Err(ApiError::conflict(&rt.target(name)));
        }
        if let Some(uid) = meta_str(&body, "uid").filter(|u| !u.is_empty())
            && Some(&uid) != meta_str(&old, "uid").as_ref()
        {
            return Err(ApiError::conflict_msg(
                &rt.target(name),
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta_str(&old, "uid").unwrap_or_default()
                ),
            ));
        }
        let cand = self.prepare(rt, Some(&old), body, sub, ctx, Managed::Update)?;
        self.commit(rt, ns, name, Some(&old), cand, ctx)
    }

    /// PATCH: merge / JSON / strategic patch or server-side apply. Returns the object and
    /// whether it was created (apply only).
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        kind: PatchKind,
        body: &[u8],
        sub: Sub,
        ctx: &mut WriteCtx,
    ) -> ApiResult<(Value, bool)> {
        if let PatchKind::Apply { force } = kind {
            return self.apply(rt, ns, name, body, force, sub, ctx);
        }
        let old = self
            .get(&rt.key(), ns, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rt.target(name)))?;
        let mut doc = old.clone();
        let parse = || -> ApiResult<Value> {
            serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))
        };
        match kind {
            PatchKind::Merge => {
                let p = parse()?;
                if !p.is_object() {
                    return Err(ApiError::bad_request("merge patch must be a JSON object"));
                }
                patch::merge_patch(&mut doc, &p);
            }
            PatchKind::Json => patch::json_patch(&mut doc, &parse()?)?,
            PatchKind::Strategic => {
                if rt.is_custom() {
                    return Err(ApiError::unsupported_media_type(&[
                        "application/json-patch+json",
                        "application/merge-patch+json",
                        "application/apply-patch+yaml",
                    ]));
                }
                let p = parse()?;
                if !p.is_object() {
                    return Err(ApiError::bad_request(
                        "strategic merge patch must be a JSON object",
                    ));
                }
                patch::strategic_merge_patch(&mut doc, &p)?;
            }
            PatchKind::Apply { .. } => {}
        }
        if !doc.is_object() {
            return Err(ApiError::bad_request(
                "the patched object must be a JSON object",
            ));
        }
        if let Some(n) = meta_str(&doc, "name")
            && n != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        if let Some(rv) = meta_str(&doc, "resourceVersion")
            && Some(&rv) != meta_str(&old, "resourceVersion").as_ref()
        {
            return Err(ApiError::conflict(&rt.target(name)));
        }
        let cand = self.prepare(rt, Some(&old), doc, sub, ctx, Managed::Update)?;
        Ok((self.commit(rt, ns, name, Some(&old), cand, ctx)?, false))
    }

    #[allow(clippy::too_many_arguments)]
    fn apply(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        body: &[u8],
        force: bool,
        sub: Sub,
        ctx: &mut WriteCtx,
    ) -> ApiResult<(Value, bool)> {
        if ctx.manager.is_empty() {
            return Err(ApiError::bad_request(
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            ));
        }
        let mut applied: Value = serde_yaml::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
        if !applied.is_object() {
            return Err(ApiError::bad_request(
                "applied configuration must be an object",
            ));
        }
        if applied
            .get("apiVersion")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(ApiError::bad_request(
                "invalid object type: /, Kind=: apiVersion must be set",
            ));
        }
        if applied
            .get("kind")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(ApiError::bad_request(
                "invalid object type: kind must be set",
            ));
        }
        check_type_meta(rt, &ctx.version, &mut applied)?;
        let meta = meta_mut(&mut applied)?;
        match meta.get("name").and_then(Value::as_str) {
            Some(n) if n != name => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
            _ => {
                meta.insert("name".into(), json!(name));
            }
        }
        settle_namespace(meta, rt, ns)?;
        let precondition = meta
            .remove("resourceVersion")
            .and_then(|v| v.as_str().map(str::to_string))
            .filter(|s| !s.is_empty());
        for f in [
            "uid",
            "creationTimestamp",
            "generation",
            "managedFields",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            meta.remove(f);
        }
        let scope = scope_for(rt, sub);
        let av = rt.api_version(&ctx.version);
        let now = now();
        let existing = self.get(&rt.key(), ns, name).cloned();
        let shape = shape_for(rt, &ctx.version);
        match existing {
            None => {
                if sub == Sub::Status {
                    return Err(ApiError::not_found(&rt.target(name)));
                }
                if precondition.is_some() {
                    return Err(ApiError::conflict(&rt.target(name)));
                }
                let mut skeleton =
                    json!({"apiVersion": av, "kind": rt.kind, "metadata": {"name": name}});
                if rt.namespaced {
                    skeleton["metadata"]["namespace"] = json!(ns);
                }
                let merged = ssa::apply(ssa::ApplyInput {
                    live: &skeleton,
                    applied: &applied,
                    manager: &ctx.manager,
                    force,
                    scope,
                    shape,
                    api_version: &av,
                    now: &now,
                })
                .map_err(|c| conflict_error(rt, name, &av, &c))?;
                let v = self.create_inner(rt, ns, merged, ctx, Managed::Applied)?;
                Ok((v, true))
            }
            Some(old) => {
                if let Some(rv) = precondition
                    && Some(rv) != meta_str(&old, "resourceVersion")
                {
                    return Err(ApiError::conflict(&rt.target(name)));
                }
                let merged = ssa::apply(ssa::ApplyInput {
                    live: &old,
                    applied: &applied,
                    manager: &ctx.manager,
                    force,
                    scope,
                    shape,
                    api_version: &av,
                    now: &now,
                })
                .map_err(|c| conflict_error(rt, name, &av, &c))?;
                let cand = self.prepare(rt, Some(&old), merged, sub, ctx, Managed::Applied)?;
                Ok((self.commit(rt, ns, name, Some(&old), cand, ctx)?, false))
            }
        }
    }

    /// DELETE one object.
    pub fn delete(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        opts: &DeleteOpts,
        ctx: &WriteCtx,
    ) -> ApiResult<DeleteOutcome> {
        let key = rt.key();
        let obj = self
            .get(&key, ns, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rt.target(name)))?;
        if let Some(uid) = &opts.uid
            && Some(uid) != meta_str(&obj, "uid").as_ref()
        {
            return Err(ApiError::conflict_msg(
                &rt.target(name),
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta_str(&obj, "uid").unwrap_or_default()
                ),
            ));
        }
        if let Some(rv) = &opts.resource_version
            && Some(rv) != meta_str(&obj, "resourceVersion").as_ref()
        {
            return Err(ApiError::conflict_msg(
                &rt.target(name),
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    meta_str(&obj, "resourceVersion").unwrap_or_default()
                ),
            ));
        }
        if ctx.dry_run {
            return Ok(DeleteOutcome::Deleted(obj));
        }
        if is_deleting(&obj) {
            return Ok(DeleteOutcome::Pending(obj));
        }
        let uid = meta_str(&obj, "uid").unwrap_or_default();
        match opts.propagation.as_deref() {
            Some("Orphan") => self.orphan_dependents(&uid),
            Some("Foreground") => self.delete_dependents(&uid),
            _ => {}
        }
        let is_ns = rt.group.is_empty() && rt.plural == "namespaces";
        let is_crd = rt.group == "apiextensions.k8s.io" && rt.plural == "customresourcedefinitions";
        if is_ns || is_crd || !finalizers(&obj).is_empty() {
            let marked = self.mark_deleting(&key, ns, name, rt.tracks_generation);
            if is_ns {
                self.delete_namespace_content(name);
            }
            if is_crd {
                self.delete_crd_content(&obj);
            }
            self.finish_terminating();
            return Ok(match self.get(&key, ns, name) {
                Some(v) => DeleteOutcome::Pending(v.clone()),
                None => DeleteOutcome::Pending(marked.unwrap_or(obj)),
            });
        }
        let removed = self.remove(&key, ns, name).unwrap_or(obj);
        self.after_removal(&removed);
        Ok(DeleteOutcome::Deleted(removed))
    }

    fn mark_deleting(
        &mut self,
        key: &ResKey,
        ns: &str,
        name: &str,
        tracks_generation: bool,
    ) -> Option<Value> {
        let old = self.get(key, ns, name).cloned()?;
        if is_deleting(&old) {
            return Some(old);
        }
        let mut obj = old.clone();
        let rv = self.next_rv();
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("deletionTimestamp".into(), json!(now()));
            meta.insert("deletionGracePeriodSeconds".into(), json!(0));
            meta.insert("resourceVersion".into(), json!(rv.to_string()));
            if tracks_generation {
                let g = meta.get("generation").and_then(Value::as_i64).unwrap_or(1);
                meta.insert("generation".into(), json!(g + 1));
            }
        }
        if key.group.is_empty() && key.plural == "namespaces" {
            obj["status"] = json!({"phase": "Terminating"});
        }
        self.put(
            key,
            ns,
            name,
            obj.clone(),
            rv,
            EventKind::Modified,
            Some(old),
        );
        Some(obj)
    }

    /// Delete an object on behalf of the server (GC, namespace/CRD cleanup), honouring
    /// finalizers.
    fn delete_internal(&mut self, key: &ResKey, ns: &str, name: &str) {
        let Some(obj) = self.get(key, ns, name).cloned() else {
            return;
        };
        if is_deleting(&obj) {
            return;
        }
        let tracks = self.resource(key).is_some_and(|rt| rt.tracks_generation);
        if !finalizers(&obj).is_empty() {
            self.mark_deleting(key, ns, name, tracks);
            return;
        }
        if let Some(removed) = self.remove(key, ns, name) {
            self.after_removal(&removed);
        }
    }

    fn dependents_of(&self, uid: &str) -> Vec<(ResKey, String, String, Value)> {
        let mut out = Vec::new();
        for (key, objs) in &self.objects {
            for ((ns, name), obj) in objs {
                let refs = obj
                    .pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array);
                if refs.is_some_and(|r| {
                    r.iter()
                        .any(|o| o.get("uid").and_then(Value::as_str) == Some(uid))
                }) {
                    out.push((key.clone(), ns.clone(), name.clone(), obj.clone()));
                }
            }
        }
        out
    }

    fn rewrite_owner_refs(
        &mut self,
        key: &ResKey,
        ns: &str,
        name: &str,
        obj: &Value,
        keep: impl Fn(&Value) -> bool,
    ) {
        let mut new = obj.clone();
        let rv = self.next_rv();
        if let Some(meta) = new.get_mut("metadata").and_then(Value::as_object_mut) {
            let refs: Vec<Value> = meta
                .get("ownerReferences")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter(|r| keep(r)).cloned().collect())
                .unwrap_or_default();
            if refs.is_empty() {
                meta.remove("ownerReferences");
            } else {
                meta.insert("ownerReferences".into(), Value::Array(refs));
            }
            meta.insert("resourceVersion".into(), json!(rv.to_string()));
        }
        self.put(
            key,
            ns,
            name,
            new,
            rv,
            EventKind::Modified,
            Some(obj.clone()),
        );
    }

    fn orphan_dependents(&mut self, uid: &str) {
        for (key, ns, name, obj) in self.dependents_of(uid) {
            self.rewrite_owner_refs(&key, &ns, &name, &obj, |r| {
                r.get("uid").and_then(Value::as_str) != Some(uid)
            });
        }
    }

    fn delete_dependents(&mut self, uid: &str) {
        for (key, ns, name, _) in self.dependents_of(uid) {
            self.delete_internal(&key, &ns, &name);
        }
    }

    /// Garbage collection after an object is gone: dependents without any remaining owner
    /// are deleted (background cascade); dangling references are dropped otherwise.
    fn after_removal(&mut self, removed: &Value) {
        if let Some(uid) = meta_str(removed, "uid") {
            for (key, ns, name, obj) in self.dependents_of(&uid) {
                let refs = obj
                    .pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let alive = refs.iter().any(|r| {
                    r.get("uid")
                        .and_then(Value::as_str)
                        .is_some_and(|u| u != uid && self.uid_exists(u))
                });
                if alive {
                    self.rewrite_owner_refs(&key, &ns, &name, &obj, |r| {
                        r.get("uid").and_then(Value::as_str) != Some(uid.as_str())
                    });
                } else {
                    self.delete_internal(&key, &ns, &name);
                }
            }
        }
        if removed.get("kind").and_then(Value::as_str) == Some("CustomResourceDefinition")
            && let Some(name) = meta_str(removed, "name")
        {
            self.unregister_crd(&name);
        }
        self.finish_terminating();
    }

    fn delete_namespace_content(&mut self, ns: &str) {
        let targets: Vec<(ResKey, String)> = self
            .objects
            .iter()
            .flat_map(|(k, objs)| {
                objs.keys()
                    .filter(|(ons, _)| ons == ns)
                    .map(|(_, n)| (k.clone(), n.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        for (key, name) in targets {
            if self.resource(&key).is_some_and(|rt| rt.namespaced) {
                self.delete_internal(&key, ns, &name);
            }
        }
    }

    fn delete_crd_content(&mut self, crd: &Value) {
        let Some(key) = crd_key(crd) else { return };
        let targets: Vec<(String, String)> = self
            .objects
            .get(&key)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        for (ns, name) in targets {
            self.delete_internal(&key, &ns, &name);
        }
    }

    /// Remove terminating namespaces and CRDs whose content is gone.
    fn finish_terminating(&mut self) {
        loop {
            let ns_key = ResKey {
                group: String::new(),
                plural: "namespaces".into(),
            };
            let crd_key_ = ResKey {
                group: "apiextensions.k8s.io".into(),
                plural: "customresourcedefinitions".into(),
            };
            let mut done: Option<(ResKey, String)> = None;
            if let Some(nss) = self.objects.get(&ns_key) {
                for ((_, name), obj) in nss {
                    if is_deleting(obj) && finalizers(obj).is_empty() {
                        let empty = self.objects.iter().all(|(k, objs)| {
                            !self.registry.by_key(k).is_some_and(|rt| rt.namespaced)
                                || !objs.keys().any(|(ons, _)| ons == name)
                        });
                        if empty {
                            done = Some((ns_key.clone(), name.clone()));
                            break;
                        }
                    }
                }
            }
            if done.is_none()
                && let Some(crds) = self.objects.get(&crd_key_)
            {
                for ((_, name), obj) in crds {
                    if is_deleting(obj) && finalizers(obj).is_empty() {
                        let empty = crd_key(obj)
                            .and_then(|k| self.objects.get(&k))
                            .is_none_or(|m| m.is_empty());
                        if empty {
                            done = Some((crd_key_.clone(), name.clone()));
                            break;
                        }
                    }
                }
            }
            let Some((key, name)) = done else { break };
            if let Some(removed) = self.remove(&key, "", &name) {
                if key.plural == "customresourcedefinitions" {
                    self.unregister_crd(&name);
                }
                let _ = removed;
            }
        }
    }

    fn register_crd(&mut self, crd: &Value) {
        let Some(rt) = crd_resource_type(crd) else {
            return;
        };
        if is_deleting(crd) {
            return;
        }
        tracing::debug!(group = %rt.group, plural = %rt.plural, "serving custom resource");
        self.registry.insert(rt);
    }

    fn unregister_crd(&mut self, crd_name: &str) {
        let key = self
            .registry
            .all()
            .find(|rt| rt.crd.as_ref().is_some_and(|c| c.crd_name == crd_name))
            .map(|rt| rt.key());
        if let Some(k) = key {
            self.registry.remove(&k);
            self.objects.remove(&k);
        }
    }

    /// Simulate the workload controllers: mark a Deployment/StatefulSet as fully rolled out
    /// and ready (status written by `kube-controller-manager`).
    pub fn mark_ready(&mut self, key: &ResKey, ns: &str, name: &str) -> Option<Value> {
        let rt = self.resource(key)?;
        let old = self.get(key, ns, name).cloned()?;
        let gen_ = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let replicas = old
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let ts = now();
        let status = match rt.kind.as_str() {
            "Deployment" => json!({
                "observedGeneration": gen_,
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": replicas,
                "availableReplicas": replicas,
                "conditions": [
                    {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                     "message": "Deployment has minimum availability.", "lastUpdateTime": ts, "lastTransitionTime": ts},
                    {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                     "message": format!("ReplicaSet \"{name}-fake\" has successfully progressed."),
                     "lastUpdateTime": ts, "lastTransitionTime": ts}
                ],
            }),
            "StatefulSet" => json!({
                "observedGeneration": gen_,
                "replicas": replicas,
                "readyReplicas": replicas,
                "currentReplicas": replicas,
                "updatedReplicas": replicas,
                "availableReplicas": replicas,
                "currentRevision": format!("{name}-fake-{gen_}"),
                "updateRevision": format!("{name}-fake-{gen_}"),
                "collisionCount": 0,
            }),
            _ => return None,
        };
        let mut ctx = WriteCtx {
            version: rt.preferred_version().to_string(),
            manager: "kube-controller-manager".into(),
            ..Default::default()
        };
        let mut cand = old.clone();
        cand["status"] = status;
        let cand = self
            .prepare(
                &rt,
                Some(&old),
                cand,
                Sub::Status,
                &mut ctx,
                Managed::Update,
            )
            .ok()?;
        self.commit(&rt, ns, name, Some(&old), cand, &ctx).ok()
    }

    /// Server-internal status write with a merge patch (used by test helpers).
    pub fn merge_status(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        patch: &Value,
        manager: &str,
    ) -> ApiResult<Value> {
        let body = serde_json::to_vec(&json!({"status": patch}))
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let sub = if rt.status_subresource {
            Sub::Status
        } else {
            Sub::Main
        };
        let mut ctx = WriteCtx {
            version: rt.preferred_version().to_string(),
            manager: manager.to_string(),
            ..Default::default()
        };
        self.patch(rt, ns, name, PatchKind::Merge, &body, sub, &mut ctx)
            .map(|(v, _)| v)
    }
}

fn conflict_error(
    rt: &ResourceType,
    name: &str,
    api_version: &str,
    conflicts: &[ssa::Conflict],
) -> ApiError {
    let n = conflicts.len();
    let mut by_mgr: Vec<(String, Vec<String>)> = Vec::new();
    for (m, p) in conflicts {
        let path = ssa::render_path(p);
        match by_mgr.iter_mut().find(|(x, _)| x == m) {
            Some((_, v)) => v.push(path),
            None => by_mgr.push((m.clone(), vec![path])),
        }
    }
    let parts: Vec<String> = by_mgr
        .iter()
        .map(|(m, paths)| {
            if paths.len() == 1 {
                format!("conflict with \"{m}\" using {api_version}: {}", paths[0])
            } else {
                format!(
                    "conflicts with \"{m}\" using {api_version}:\n- {}",
                    paths.join("\n- ")
                )
            }
        })
        .collect();
    let message = format!(
        "Apply failed with {n} conflict{}: {}",
        if n == 1 { "" } else { "s" },
        parts.join("\n")
    );
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(m, p)| {
            json!({
                "reason": "FieldManagerConflict",
                "message": format!("conflict with \"{m}\" using {api_version}"),
                "field": ssa::render_path(p),
            })
        })
        .collect();
    let t = rt.target(name);
    let mut details = json!({"name": name, "kind": t.plural, "causes": causes});
    if !rt.group.is_empty() {
        details["group"] = json!(rt.group);
    }
    ApiError {
        code: 409,
        reason: "Conflict",
        message,
        details,
    }
}

/// Leaf paths present (non-null) in `before` but absent from `after` (dropped unknown fields).
fn unknown_paths(before: &Value, after: &Value, path: &str, out: &mut Vec<String>) {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            for (k, v) in b {
                if v.is_null() || k == "managedFields" {
                    continue;
                }
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match a.get(k) {
                    Some(av) => unknown_paths(v, av, &p, out),
                    None => {
                        let empty = matches!(v, Value::Object(m) if m.is_empty())
                            || matches!(v, Value::Array(a) if a.is_empty());
                        if !empty {
                            out.push(p);
                        }
                    }
                }
            }
        }
        (Value::Array(b), Value::Array(a)) if b.len() == a.len() => {
            for (i, (bv, av)) in b.iter().zip(a).enumerate() {
                unknown_paths(bv, av, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn crd_key(crd: &Value) -> Option<ResKey> {
    Some(ResKey {
        group: crd.pointer("/spec/group")?.as_str()?.to_string(),
        plural: crd.pointer("/spec/names/plural")?.as_str()?.to_string(),
    })
}

fn str_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Build the served type from a CRD object.
pub fn crd_resource_type(crd: &Value) -> Option<ResourceType> {
    let spec = crd.get("spec")?;
    let names = spec.get("names")?;
    let kind = names.get("kind")?.as_str()?.to_string();
    let plural = names.get("plural")?.as_str()?.to_string();
    let group = spec.get("group")?.as_str()?.to_string();
    let mut versions: Vec<String> = Vec::new();
    let mut schemas = std::collections::BTreeMap::new();
    let mut status = false;
    let mut printer_columns = Vec::new();
    for v in spec.get("versions").and_then(Value::as_array)? {
        let Some(name) = v.get("name").and_then(Value::as_str) else {
            continue;
        };
        if v.get("served").and_then(Value::as_bool) != Some(true) {
            continue;
        }
        versions.push(name.to_string());
        if let Some(s) = v.pointer("/schema/openAPIV3Schema") {
            schemas.insert(name.to_string(), s.clone());
        }
        if v.pointer("/subresources/status").is_some() {
            status = true;
        }
        if printer_columns.is_empty()
            && let Some(cols) = v.get("additionalPrinterColumns").and_then(Value::as_array)
        {
            printer_columns = cols.clone();
        }
    }
    if versions.is_empty() {
        return None;
    }
    versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
    Some(ResourceType {
        group,
        versions,
        singular: names
            .get("singular")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| kind.to_lowercase()),
        plural,
        kind,
        namespaced: spec.get("scope").and_then(Value::as_str) != Some("Cluster"),
        status_subresource: status,
        tracks_generation: true,
        short_names: str_list(names.get("shortNames")),
        categories: str_list(names.get("categories")),
        crd: Some(CrdInfo {
            schemas,
            crd_name: crd
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            printer_columns,
        }),
    })
}

fn validate_crd(crd: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = crd.get("spec").cloned().unwrap_or(Value::Null);
    let group = spec
        .get("group")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let plural = spec
        .pointer("/names/plural")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = spec
        .pointer("/names/kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let name = crd
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if group.is_empty() {
        errs.push(FieldError::required("spec.group", None));
    } else if !group.contains('.') {
        errs.push(FieldError::invalid(
            "spec.group",
            &json!(group),
            "should be a domain with at least one dot",
        ));
    }
    if plural.is_empty() {
        errs.push(FieldError::required("spec.names.plural", None));
    }
    if kind.is_empty() {
        errs.push(FieldError::required("spec.names.kind", None));
    }
    if !group.is_empty() && !plural.is_empty() && name != format!("{plural}.{group}") {
        errs.push(FieldError::invalid(
            "metadata.name",
            &json!(name),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    match spec.get("scope").and_then(Value::as_str) {
        Some("Namespaced") | Some("Cluster") => {}
        other => errs.push(FieldError::not_supported(
            "spec.scope",
            &other.map(|s| json!(s)).unwrap_or(json!("")),
            &[json!("Cluster"), json!("Namespaced")],
        )),
    }
    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        errs.push(FieldError::invalid(
            "spec.versions",
            &json!([]),
            "must have exactly one version marked as storage version",
        ));
    } else {
        let storage = versions
            .iter()
            .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
            .count();
        if storage != 1 {
            errs.push(FieldError::invalid(
                "spec.versions",
                &Value::Array(versions.clone()),
                "must have exactly one version marked as storage version",
            ));
        }
        for (i, v) in versions.iter().enumerate() {
            match v.pointer("/schema/openAPIV3Schema") {
                None => errs.push(FieldError::required(
                    &format!("spec.versions[{i}].schema.openAPIV3Schema"),
                    Some("schemas are required"),
                )),
                Some(s) => schema::check_structural(
                    s,
                    &format!("spec.versions[{i}].schema.openAPIV3Schema"),
                    &mut errs,
                ),
            }
        }
    }
    errs
}

fn set_crd_status(crd: &mut Value, old: Option<&Value>) {
    let names = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
    let storage: Vec<Value> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                .filter_map(|v| v.get("name").cloned())
                .collect()
        })
        .unwrap_or_default();
    let mut stored: Vec<Value> = old
        .and_then(|o| o.pointer("/status/storedVersions"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for s in storage {
        if !stored.contains(&s) {
            stored.push(s);
        }
    }
    let conditions = old
        .and_then(|o| o.pointer("/status/conditions"))
        .cloned()
        .unwrap_or_else(|| {
            let ts = now();
            json!([
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                 "message": "no conflicts found", "lastTransitionTime": ts},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                 "message": "the initial names have been accepted", "lastTransitionTime": ts}
            ])
        });
    crd["status"] = json!({
        "conditions": conditions,
        "acceptedNames": names,
        "storedVersions": stored,
    });
}
