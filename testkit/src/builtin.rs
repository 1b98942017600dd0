//! Built-in types: defaulting (the common subset of kube-apiserver's defaulters), decoding
//! through the typed k8s-openapi structs (dropping unknown fields, rejecting wrong types),
//! and the validations operators most often trip over (selectors, immutable fields).

use base64::Engine;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use crate::resources::ResourceType;
use crate::status::{ApiError, ApiResult, FieldError};

fn obj_mut<'a>(v: &'a mut Value, key: &str) -> Option<&'a mut Map<String, Value>> {
    v.get_mut(key).and_then(Value::as_object_mut)
}

fn set_default(m: &mut Map<String, Value>, key: &str, v: Value) {
    match m.get(key) {
        None | Some(Value::Null) => {
            m.insert(key.to_string(), v);
        }
        _ => {}
    }
}

fn default_probe(p: &mut Value) {
    if let Some(m) = p.as_object_mut() {
        set_default(m, "timeoutSeconds", json!(1));
        set_default(m, "periodSeconds", json!(10));
        set_default(m, "successThreshold", json!(1));
        set_default(m, "failureThreshold", json!(3));
        if let Some(h) = m.get_mut("httpGet").and_then(Value::as_object_mut) {
            set_default(h, "scheme", json!("HTTP"));
        }
    }
}

fn default_container(c: &mut Value) {
    let Some(m) = c.as_object_mut() else { return };
    set_default(m, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(m, "terminationMessagePolicy", json!("File"));
    let image = m
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let last = image.rsplit('/').next().unwrap_or_default();
    let tagged = last.contains(':') && !last.ends_with(":latest");
    let digest = image.contains('@');
    set_default(
        m,
        "imagePullPolicy",
        json!(if tagged || digest {
            "IfNotPresent"
        } else {
            "Always"
        }),
    );
    set_default(m, "resources", json!({}));
    if let Some(ports) = m.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            set_default(p, "protocol", json!("TCP"));
        }
    }
    if let Some(env) = m.get_mut("env").and_then(Value::as_array_mut) {
        for e in env.iter_mut() {
            if let Some(fr) = e
                .pointer_mut("/valueFrom/fieldRef")
                .and_then(Value::as_object_mut)
            {
                set_default(fr, "apiVersion", json!("v1"));
            }
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = m.get_mut(probe) {
            default_probe(p);
        }
    }
}

fn default_pod_spec(spec: &mut Value) {
    let Some(m) = spec.as_object_mut() else {
        return;
    };
    set_default(m, "restartPolicy", json!("Always"));
    set_default(m, "terminationGracePeriodSeconds", json!(30));
    set_default(m, "dnsPolicy", json!("ClusterFirst"));
    set_default(m, "securityContext", json!({}));
    set_default(m, "schedulerName", json!("default-scheduler"));
    for key in ["containers", "initContainers"] {
        if let Some(cs) = m.get_mut(key).and_then(Value::as_array_mut) {
            cs.iter_mut().for_each(default_container);
        }
    }
    if let Some(vols) = m.get_mut("volumes").and_then(Value::as_array_mut) {
        for v in vols.iter_mut() {
            for src in ["secret", "configMap", "projected", "downwardAPI"] {
                if let Some(s) = v.get_mut(src).and_then(Value::as_object_mut) {
                    set_default(s, "defaultMode", json!(420));
                }
            }
        }
    }
}

fn default_template(spec: &mut Map<String, Value>) {
    if let Some(ps) = spec.get_mut("template").and_then(|t| t.get_mut("spec")) {
        default_pod_spec(ps);
    }
}

/// Apply kube-apiserver's defaults for a built-in kind. `old` is the previous version on
/// updates (used to keep allocated values such as a Service's clusterIP); `alloc_ip`
/// allocates a new cluster IP.
pub fn apply_defaults(
    rt: &ResourceType,
    obj: &mut Value,
    old: Option<&Value>,
    alloc_ip: &mut dyn FnMut() -> String,
) -> ApiResult<()> {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Secret") => {
            if let Some(m) = obj.as_object_mut() {
                set_default(m, "type", json!("Opaque"));
                if let Some(Value::Object(sd)) = m.remove("stringData") {
                    let mut data = m
                        .get("data")
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default();
                    for (k, v) in sd {
                        let s = v.as_str().ok_or_else(|| {
                            ApiError::bad_request(format!(
                                "Secret in version \"v1\" cannot be handled as a Secret: json: cannot unmarshal {} into Go struct field Secret.stringData of type string",
                                json_kind(&v)
                            ))
                        })?;
                        data.insert(
                            k,
                            json!(base64::engine::general_purpose::STANDARD.encode(s)),
                        );
                    }
                    m.insert("data".into(), Value::Object(data));
                }
            }
        }
        ("", "Namespace") => {
            if let Some(m) = obj.as_object_mut() {
                let spec = m.entry("spec").or_insert_with(|| json!({}));
                if let Some(s) = spec.as_object_mut() {
                    set_default(s, "finalizers", json!(["kubernetes"]));
                }
                let status = m.entry("status").or_insert_with(|| json!({}));
                if let Some(s) = status.as_object_mut() {
                    set_default(s, "phase", json!("Active"));
                }
            }
            if let Some(meta) = obj_mut(obj, "metadata") {
                let labels = meta.entry("labels").or_insert_with(|| json!({}));
                if let Some(l) = labels.as_object_mut() {
                    l.insert("kubernetes.io/metadata.name".into(), json!(name));
                }
            }
        }
        ("", "Service") => {
            if let Some(m) = obj.as_object_mut() {
                let spec = m.entry("spec").or_insert_with(|| json!({}));
                if let Some(s) = spec.as_object_mut() {
                    set_default(s, "type", json!("ClusterIP"));
                    set_default(s, "sessionAffinity", json!("None"));
                    let ty = s
                        .get("type")
                        .and_then(Value::as_str)
                        .unwrap_or("ClusterIP")
                        .to_string();
                    if let Some(ports) = s.get_mut("ports").and_then(Value::as_array_mut) {
                        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                            set_default(p, "protocol", json!("TCP"));
                            if let Some(port) = p.get("port").cloned() {
                                set_default(p, "targetPort", port);
                            }
                        }
                    }
                    if ty != "ExternalName" {
                        let old_ip = old
                            .and_then(|o| o.pointer("/spec/clusterIP"))
                            .and_then(Value::as_str)
                            .map(str::to_string);
                        let ip = match s.get("clusterIP").and_then(Value::as_str) {
                            Some(ip) if !ip.is_empty() => ip.to_string(),
                            _ => old_ip.unwrap_or_else(&mut *alloc_ip),
                        };
                        s.insert("clusterIP".into(), json!(ip));
                        s.insert("clusterIPs".into(), json!([ip]));
                        if ip != "None" {
                            set_default(s, "ipFamilies", json!(["IPv4"]));
                            set_default(s, "ipFamilyPolicy", json!("SingleStack"));
                        }
                        set_default(s, "internalTrafficPolicy", json!("Cluster"));
                    }
                }
                set_default(m, "status", json!({"loadBalancer": {}}));
            }
        }
        ("", "Pod") => {
            if let Some(spec) = obj.get_mut("spec") {
                default_pod_spec(spec);
            }
            if let Some(m) = obj.as_object_mut() {
                let st = m.entry("status").or_insert_with(|| json!({}));
                if let Some(s) = st.as_object_mut() {
                    set_default(s, "phase", json!("Pending"));
                }
            }
        }
        ("", "PersistentVolumeClaim") => {
            if let Some(s) = obj_mut(obj, "spec") {
                set_default(s, "volumeMode", json!("Filesystem"));
            }
            if let Some(m) = obj.as_object_mut() {
                let st = m.entry("status").or_insert_with(|| json!({}));
                if let Some(s) = st.as_object_mut() {
                    set_default(s, "phase", json!("Pending"));
                }
            }
        }
        ("apps", "Deployment") => {
            if let Some(s) = obj_mut(obj, "spec") {
                set_default(s, "replicas", json!(1));
                set_default(s, "revisionHistoryLimit", json!(10));
                set_default(s, "progressDeadlineSeconds", json!(600));
                set_default(
                    s,
                    "strategy",
                    json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}),
                );
                if let Some(st) = s.get_mut("strategy").and_then(Value::as_object_mut)
                    && st.get("type").and_then(Value::as_str) == Some("RollingUpdate")
                {
                    let ru = st.entry("rollingUpdate").or_insert_with(|| json!({}));
                    if let Some(ru) = ru.as_object_mut() {
                        set_default(ru, "maxUnavailable", json!("25%"));
                        set_default(ru, "maxSurge", json!("25%"));
                    }
                }
                default_template(s);
            }
        }
        ("apps", "StatefulSet") => {
            if let Some(s) = obj_mut(obj, "spec") {
                set_default(s, "replicas", json!(1));
                set_default(s, "podManagementPolicy", json!("OrderedReady"));
                set_default(s, "revisionHistoryLimit", json!(10));
                set_default(
                    s,
                    "updateStrategy",
                    json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
                );
                set_default(
                    s,
                    "persistentVolumeClaimRetentionPolicy",
                    json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
                );
                if let Some(vcts) = s
                    .get_mut("volumeClaimTemplates")
                    .and_then(Value::as_array_mut)
                {
                    for v in vcts.iter_mut().filter_map(Value::as_object_mut) {
                        set_default(v, "apiVersion", json!("v1"));
                        set_default(v, "kind", json!("PersistentVolumeClaim"));
                        if let Some(vs) = v.get_mut("spec").and_then(Value::as_object_mut) {
                            set_default(vs, "volumeMode", json!("Filesystem"));
                        }
                        set_default(v, "status", json!({"phase": "Pending"}));
                    }
                }
                default_template(s);
            }
        }
        ("networking.k8s.io", "NetworkPolicy") => {
            if let Some(s) = obj_mut(obj, "spec") {
                if !s.contains_key("policyTypes") {
                    let mut types = vec![json!("Ingress")];
                    if s.contains_key("egress") {
                        types.push(json!("Egress"));
                    }
                    s.insert("policyTypes".into(), Value::Array(types));
                }
                for dir in ["ingress", "egress"] {
                    if let Some(rules) = s.get_mut(dir).and_then(Value::as_array_mut) {
                        for r in rules.iter_mut() {
                            if let Some(ports) = r.get_mut("ports").and_then(Value::as_array_mut) {
                                for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                                    set_default(p, "protocol", json!("TCP"));
                                }
                            }
                        }
                    }
                }
            }
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            if let Some(s) = obj_mut(obj, "spec") {
                set_default(s, "conversion", json!({"strategy": "None"}));
                if let Some(names) = s.get_mut("names").and_then(Value::as_object_mut) {
                    let kind = names
                        .get("kind")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    set_default(names, "singular", json!(kind.to_lowercase()));
                    set_default(names, "listKind", json!(format!("{kind}List")));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn roundtrip<T: DeserializeOwned + Serialize>(rt: &ResourceType, v: Value) -> ApiResult<Value> {
    let typed: T = serde_json::from_value(v).map_err(|e| {
        ApiError::bad_request(format!(
            "{kind} in version \"{ver}\" cannot be handled as a {kind}: {e}",
            kind = rt.kind,
            ver = rt.preferred_version()
        ))
    })?;
    serde_json::to_value(&typed).map_err(|e| ApiError::internal(e.to_string()))
}

/// Decode through the typed struct, as kube-apiserver does: unknown fields are dropped and
/// values of the wrong type are rejected with 400.
pub fn decode(rt: &ResourceType, v: Value) -> ApiResult<Value> {
    use k8s_openapi::api::{apps, coordination, core, events, networking, policy};
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as ext;
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Namespace") => roundtrip::<core::v1::Namespace>(rt, v),
        ("", "Secret") => roundtrip::<core::v1::Secret>(rt, v),
        ("", "ConfigMap") => roundtrip::<core::v1::ConfigMap>(rt, v),
        ("", "Service") => roundtrip::<core::v1::Service>(rt, v),
        ("", "ServiceAccount") => roundtrip::<core::v1::ServiceAccount>(rt, v),
        ("", "Pod") => roundtrip::<core::v1::Pod>(rt, v),
        ("", "PersistentVolumeClaim") => roundtrip::<core::v1::PersistentVolumeClaim>(rt, v),
        ("", "Event") => roundtrip::<core::v1::Event>(rt, v),
        ("apps", "Deployment") => roundtrip::<apps::v1::Deployment>(rt, v),
        ("apps", "StatefulSet") => roundtrip::<apps::v1::StatefulSet>(rt, v),
        ("policy", "PodDisruptionBudget") => roundtrip::<policy::v1::PodDisruptionBudget>(rt, v),
        ("networking.k8s.io", "NetworkPolicy") => roundtrip::<networking::v1::NetworkPolicy>(rt, v),
        ("coordination.k8s.io", "Lease") => roundtrip::<coordination::v1::Lease>(rt, v),
        ("events.k8s.io", "Event") => roundtrip::<events::v1::Event>(rt, v),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            roundtrip::<ext::CustomResourceDefinition>(rt, v)
        }
        _ => Ok(v),
    }
}

fn valid_data_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 253
        && k != "."
        && k != ".."
        && k.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.')
}

fn go_map(v: &Value) -> String {
    match v.as_object() {
        Some(m) => {
            let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k:?}:{v}")).collect();
            format!("map[string]string{{{}}}", parts.join(", "))
        }
        None => "map[string]string(nil)".to_string(),
    }
}

fn selector_matches(selector: &Value, labels: &Value) -> bool {
    let empty = Map::new();
    let labels = labels.as_object().unwrap_or(&empty);
    if let Some(ml) = selector.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in ml {
            if labels.get(k) != Some(v) {
                return false;
            }
        }
    }
    if let Some(exprs) = selector.get("matchExpressions").and_then(Value::as_array) {
        for e in exprs {
            let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
            let values: Vec<&Value> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|a| a.iter().collect())
                .unwrap_or_default();
            let have = labels.get(key);
            let ok = match e
                .get("operator")
                .and_then(Value::as_str)
                .unwrap_or_default()
            {
                "In" => have.is_some_and(|h| values.contains(&h)),
                "NotIn" => have.is_none_or(|h| !values.contains(&h)),
                "Exists" => have.is_some(),
                "DoesNotExist" => have.is_none(),
                _ => false,
            };
            if !ok {
                return false;
            }
        }
    }
    true
}

fn validate_pod_template(spec: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let containers = spec
        .pointer("/template/spec/containers")
        .and_then(Value::as_array);
    match containers {
        None => errs.push(FieldError::required(
            &format!("{path}.template.spec.containers"),
            None,
        )),
        Some(cs) if cs.is_empty() => errs.push(FieldError::required(
            &format!("{path}.template.spec.containers"),
            None,
        )),
        Some(cs) => {
            for (i, c) in cs.iter().enumerate() {
                let p = format!("{path}.template.spec.containers[{i}]");
                if c.get("name")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    errs.push(FieldError::required(&format!("{p}.name"), None));
                }
                if c.get("image")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    errs.push(FieldError::required(&format!("{p}.image"), None));
                }
            }
        }
    }
}

fn validate_workload(obj: &Value, errs: &mut Vec<FieldError>) {
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    if let Some(r) = spec.get("replicas").and_then(Value::as_i64)
        && r < 0
    {
        errs.push(FieldError::invalid(
            "spec.replicas",
            &json!(r),
            "must be greater than or equal to 0",
        ));
    }
    match spec.get("selector") {
        None | Some(Value::Null) => errs.push(FieldError::required("spec.selector", None)),
        Some(sel) => {
            let empty = sel
                .get("matchLabels")
                .and_then(Value::as_object)
                .is_none_or(Map::is_empty)
                && sel
                    .get("matchExpressions")
                    .and_then(Value::as_array)
                    .is_none_or(Vec::is_empty);
            if empty {
                errs.push(FieldError::invalid(
                    "spec.selector",
                    &json!("{}"),
                    "empty selector is invalid for deployment",
                ));
            }
            let labels = spec
                .pointer("/template/metadata/labels")
                .cloned()
                .unwrap_or(Value::Null);
            if !empty && !selector_matches(sel, &labels) {
                errs.push(FieldError {
                    reason: "FieldValueInvalid",
                    field: "spec.template.metadata.labels".into(),
                    detail: format!(
                        "Invalid value: {}: `selector` does not match template `labels`",
                        go_map(&labels)
                    ),
                });
            }
        }
    }
    validate_pod_template(&spec, "spec", errs);
}

fn validate_secret(obj: &Value, errs: &mut Vec<FieldError>) {
    let data = obj.get("data").and_then(Value::as_object);
    let has = |k: &str| data.is_some_and(|d| d.contains_key(k));
    let required: &[&str] = match obj.get("type").and_then(Value::as_str).unwrap_or("Opaque") {
        "kubernetes.io/tls" => &["tls.crt", "tls.key"],
        "kubernetes.io/dockerconfigjson" => &[".dockerconfigjson"],
        "kubernetes.io/dockercfg" => &[".dockercfg"],
        "kubernetes.io/ssh-auth" => &["ssh-privatekey"],
        _ => &[],
    };
    for k in required {
        if !has(k) {
            errs.push(FieldError::required(&format!("data[{k}]"), None));
        }
    }
    let total: usize = data
        .map(|d| {
            d.values()
                .filter_map(Value::as_str)
                .map(|b64| b64.len() / 4 * 3)
                .sum()
        })
        .unwrap_or(0);
    if total > 1024 * 1024 {
        errs.push(FieldError {
            reason: "FieldValueTooLong",
            field: "data".into(),
            detail: "Too long: must have at most 1048576 bytes".into(),
        });
    }
}

/// Create/update validation of a built-in object (a subset of kube-apiserver's).
pub fn validate(rt: &ResourceType, obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "ConfigMap") | ("", "Secret") => {
            if rt.kind == "Secret" {
                validate_secret(obj, &mut errs);
            }
            for field in ["data", "binaryData"] {
                if let Some(m) = obj.get(field).and_then(Value::as_object) {
                    for k in m.keys() {
                        if !valid_data_key(k) {
                            errs.push(FieldError::invalid(
                                &format!("{field}[{k}]"),
                                &json!(k),
                                "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                            ));
                        }
                    }
                }
            }
        }
        ("", "Service") => {
            let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
            let ty = spec
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("ClusterIP");
            let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
            let ports = spec
                .get("ports")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if ports.is_empty() && ty != "ExternalName" && !headless {
                errs.push(FieldError::required("spec.ports", None));
            }
            for (i, p) in ports.iter().enumerate() {
                let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
                if !(1..=65535).contains(&port) {
                    errs.push(FieldError::invalid(
                        &format!("spec.ports[{i}].port"),
                        &json!(port),
                        "must be between 1 and 65535, inclusive",
                    ));
                }
                if ports.len() > 1
                    && p.get("name")
                        .and_then(Value::as_str)
                        .is_none_or(str::is_empty)
                {
                    errs.push(FieldError::required(&format!("spec.ports[{i}].name"), None));
                }
            }
        }
        ("apps", "Deployment") | ("apps", "StatefulSet") => validate_workload(obj, &mut errs),
        ("policy", "PodDisruptionBudget") => {
            let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
            if spec.get("minAvailable").is_some() && spec.get("maxUnavailable").is_some() {
                errs.push(FieldError::invalid(
                    "spec",
                    &spec,
                    "minAvailable and maxUnavailable cannot be both set",
                ));
            }
        }
        _ => {}
    }
    errs
}

/// Update-only validation: immutable fields.
pub fn validate_update(rt: &ResourceType, old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let immutable = |path: &str, field: &str, errs: &mut Vec<FieldError>| {
        let (o, n) = (old.pointer(path), new.pointer(path));
        if o != n {
            errs.push(FieldError::invalid(
                field,
                n.unwrap_or(&Value::Null),
                "field is immutable",
            ));
        }
    };
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("apps", "Deployment") => immutable("/spec/selector", "spec.selector", &mut errs),
        ("apps", "StatefulSet") => {
            let strip = |v: &Value| {
                let mut s = v.get("spec").cloned().unwrap_or(Value::Null);
                if let Some(m) = s.as_object_mut() {
                    for k in [
                        "replicas",
                        "ordinals",
                        "template",
                        "updateStrategy",
                        "persistentVolumeClaimRetentionPolicy",
                        "minReadySeconds",
                    ] {
                        m.remove(k);
                    }
                }
                s
            };
            if strip(old) != strip(new) {
                errs.push(FieldError::forbidden(
                    "spec",
                    "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
                ));
            }
        }
        ("", "Service") => {
            let o = old.pointer("/spec/clusterIP");
            let n = new.pointer("/spec/clusterIP");
            if o.is_some() && n.is_some() && o != n {
                errs.push(FieldError::invalid(
                    "spec.clusterIPs[0]",
                    n.unwrap_or(&Value::Null),
                    "may not change once set",
                ));
            }
        }
        ("", "Secret") if old.get("type") != new.get("type") => {
            errs.push(FieldError::invalid(
                "type",
                new.get("type").unwrap_or(&Value::Null),
                "field is immutable",
            ));
        }
        ("", "Secret") | ("", "ConfigMap") if old.get("immutable") == Some(&Value::Bool(true)) => {
            for f in ["data", "binaryData", "stringData"] {
                if old.get(f) != new.get(f) {
                    errs.push(FieldError::forbidden(
                        f,
                        "field is immutable when `immutable` is set",
                    ));
                }
            }
            if new.get("immutable") != Some(&Value::Bool(true)) {
                errs.push(FieldError::forbidden(
                    "immutable",
                    "field is immutable when `immutable` is set",
                ));
            }
        }
        _ => {}
    }
    errs
}
