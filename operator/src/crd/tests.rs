use serde_json::{Value, json};

use super::*;

fn schema() -> Value {
    let crd = serde_json::to_value(crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn manifest_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The checked-in CRD files are what `crdgen` prints today.
#[test]
fn checked_in_crd_is_up_to_date() {
    let fresh = crd_yaml().unwrap();
    for rel in [
        "../crds/authstack.yaml",
        "../charts/authstack-operator/crds/authstack.yaml",
    ] {
        let path = manifest_dir().join(rel);
        let on_disk =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            on_disk == fresh,
            "{} is stale: regenerate it with `cargo run -q -p authstack-operator --bin crdgen > crds/authstack.yaml` \
             (and copy it to charts/authstack-operator/crds/)",
            path.display()
        );
    }
}

/// Walks every node and checks kube-apiserver's structural-schema rules.
#[test]
fn schema_is_structural() {
    let mut errors = Vec::new();
    check_node(&schema(), "openAPIV3Schema", &mut errors);
    assert!(
        errors.is_empty(),
        "non-structural schema:\n{}",
        errors.join("\n")
    );
}

const ALLOWED_FORMATS: &[&str] = &[
    "int32",
    "int64",
    "float",
    "double",
    "byte",
    "date",
    "date-time",
    "password",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "uuid",
    "duration",
];

fn check_node(node: &Value, path: &str, errors: &mut Vec<String>) {
    let Some(obj) = node.as_object() else {
        errors.push(format!("{path}: schema is not an object"));
        return;
    };
    for forbidden in [
        "$ref",
        "definitions",
        "$defs",
        "$schema",
        "const",
        "patternProperties",
    ] {
        if obj.contains_key(forbidden) {
            errors.push(format!("{path}: `{forbidden}` is not allowed"));
        }
    }
    let int_or_string = obj.get("x-kubernetes-int-or-string") == Some(&json!(true));
    let preserve = obj.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
    if preserve {
        errors.push(format!(
            "{path}: x-kubernetes-preserve-unknown-fields is not expected anywhere in AuthStack"
        ));
    }
    match obj.get("type") {
        Some(Value::String(t)) => {
            if !["object", "array", "string", "integer", "number", "boolean"].contains(&t.as_str())
            {
                errors.push(format!("{path}: unknown type {t}"));
            }
            if int_or_string {
                errors.push(format!("{path}: int-or-string must not also have a type"));
            }
        }
        Some(other) => errors.push(format!("{path}: type must be a single string, got {other}")),
        None if int_or_string => {}
        None => errors.push(format!("{path}: missing type")),
    }
    for junction in ["oneOf", "anyOf", "allOf", "not"] {
        if let Some(branches) = obj.get(junction) {
            if !int_or_string {
                errors.push(format!(
                    "{path}: `{junction}` outside an int-or-string node"
                ));
            }
            for b in branches.as_array().into_iter().flatten() {
                let keys: Vec<_> = b
                    .as_object()
                    .map(|o| o.keys().cloned().collect())
                    .unwrap_or_default();
                if keys.iter().any(|k| k != "type") {
                    errors.push(format!(
                        "{path}: `{junction}` branch may only constrain the type"
                    ));
                }
            }
        }
    }
    if let Some(Value::Array(values)) = obj.get("enum")
        && values.iter().any(Value::is_null)
    {
        errors.push(format!("{path}: enum contains null (use nullable)"));
    }
    if let Some(format) = obj.get("format").and_then(Value::as_str)
        && !ALLOWED_FORMATS.contains(&format)
    {
        errors.push(format!(
            "{path}: format {format} is not a Kubernetes format"
        ));
    }
    if obj.contains_key("properties") && obj.contains_key("additionalProperties") {
        errors.push(format!(
            "{path}: properties and additionalProperties together"
        ));
    }
    if let Some(props) = obj.get("properties") {
        match props.as_object() {
            Some(props) => {
                for (k, v) in props {
                    check_node(v, &format!("{path}.{k}"), errors);
                }
            }
            None => errors.push(format!("{path}: properties is not a map")),
        }
    }
    match obj.get("additionalProperties") {
        None | Some(Value::Bool(false)) => {}
        Some(Value::Bool(true)) => errors.push(format!("{path}: additionalProperties: true")),
        Some(v) => check_node(v, &format!("{path}[*]"), errors),
    }
    if let Some(items) = obj.get("items") {
        if items.is_array() {
            errors.push(format!("{path}: items must be one schema"));
        } else {
            check_node(items, &format!("{path}[]"), errors);
        }
    }
}

#[test]
fn crd_names_scope_columns_and_subresources() {
    let crd = crd();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("authstacks.authstack.io")
    );
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.kind, "AuthStack");
    assert_eq!(
        crd.spec.names.short_names.as_deref(),
        Some(&["as".to_owned()][..])
    );
    let v = &crd.spec.versions[0];
    assert_eq!(v.name, "v1alpha1");
    assert!(v.served && v.storage);
    assert!(v.subresources.as_ref().unwrap().status.is_some());
    let columns: Vec<_> = v
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| (c.name.as_str(), c.json_path.as_str()))
        .collect();
    assert_eq!(
        columns,
        [
            ("Ready", ".status.conditions[?(@.type==\"Ready\")].status"),
            ("Active Key", ".status.keys.activeKid"),
            ("Gateway", ".status.gatewayEndpoint"),
            ("Age", ".metadata.creationTimestamp"),
        ]
    );
}

#[test]
fn schema_carries_defaults_validation_and_docs() {
    let s = schema();
    let spec = &s["properties"]["spec"]["properties"];
    let gw = &spec["gateway"]["properties"];
    assert_eq!(gw["replicas"]["default"], 2);
    assert_eq!(gw["replicas"]["minimum"].as_f64(), Some(1.0));
    assert_eq!(gw["replicas"]["maximum"].as_f64(), Some(100.0));
    assert_eq!(gw["service"]["properties"]["port"]["default"], 80);
    assert_eq!(
        gw["service"]["properties"]["type"]["enum"],
        json!(["ClusterIP", "NodePort", "LoadBalancer"])
    );
    assert_eq!(gw["rpcTimeout"]["pattern"], crate::duration::PATTERN);
    let auth = &spec["authService"]["properties"];
    assert_eq!(
        auth["tokens"]["properties"]["accessTokenTtl"]["default"],
        "15m"
    );
    assert_eq!(
        auth["tokens"]["properties"]["refreshTokenTtl"]["default"],
        "720h"
    );
    assert_eq!(auth["argon2"]["properties"]["memoryKib"]["default"], 19456);
    assert_eq!(auth["lockout"]["properties"]["maxFailures"]["default"], 5);
    let keys = &spec["keys"]["properties"];
    assert_eq!(
        keys["algorithm"]["enum"],
        json!(["EdDSA", "ES256", "RS256"])
    );
    assert_eq!(keys["algorithm"]["default"], "EdDSA");
    assert_eq!(keys["rotationCounter"]["minimum"].as_f64(), Some(0.0));
    assert_eq!(keys["revokedKids"]["x-kubernetes-list-type"], "set");
    assert_eq!(
        spec["postgres"]["default"],
        json!({"managed": {"storage": {"size": "1Gi"}}})
    );
    assert_eq!(
        spec["postgres"]["x-kubernetes-validations"][0]["rule"],
        "has(self.managed) != has(self.external)"
    );
    assert_eq!(
        spec["rabbitmq"]["properties"]["external"]["properties"]["secretRef"]["properties"]["key"]
            ["default"],
        "url"
    );
    assert!(
        s["x-kubernetes-validations"][0]["rule"]
            .as_str()
            .unwrap()
            .contains("self.metadata.name")
    );
    // Every spec property is documented (it becomes `kubectl explain` text).
    let mut undocumented = Vec::new();
    find_undocumented(&s["properties"]["spec"], "spec", &mut undocumented);
    find_undocumented(&s["properties"]["status"], "status", &mut undocumented);
    assert!(undocumented.is_empty(), "undocumented: {undocumented:?}");
}

fn find_undocumented(node: &Value, path: &str, out: &mut Vec<String>) {
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            let p = format!("{path}.{k}");
            if v.get("description")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                out.push(p.clone());
            }
            // Don't descend into upstream Kubernetes types (documented upstream).
            if !["resources", "conditions"].contains(&k.as_str()) {
                find_undocumented(v, &p, out);
                if let Some(items) = v.get("items") {
                    find_undocumented(items, &p, out);
                }
            }
        }
    }
}

#[test]
fn empty_spec_deserializes_to_defaults() {
    let spec: AuthStackSpec = serde_json::from_value(json!({})).unwrap();
    assert_eq!(spec, AuthStackSpec::default());
    assert_eq!(spec.gateway.replicas, 2);
    assert!(matches!(spec.postgres.backing(), Some(Backing::Managed(_))));
    let ext: PostgresSpec =
        serde_json::from_value(json!({"external": {"secretRef": {"name": "db"}}})).unwrap();
    match ext.backing() {
        Some(Backing::External(e)) => assert_eq!(e.secret_ref.key, "url"),
        other => panic!("{other:?}"),
    }
    let both: PostgresSpec =
        serde_json::from_value(json!({"managed": {}, "external": {"secretRef": {"name": "db"}}}))
            .unwrap();
    assert_eq!(both.backing(), None);
    let neither: RabbitmqSpec = serde_json::from_value(json!({})).unwrap();
    assert_eq!(neither.backing(), None);
}

#[test]
fn defaults_serialize_without_nulls() {
    let v = serde_json::to_value(AuthStackSpec::default()).unwrap();
    let text = v.to_string();
    assert!(!text.contains("null"), "{text}");
}

/// The schema enforces OWASP's argon2id minimum combinations and the refresh grace cap, so the
/// API server refuses what auth-svc would refuse at start-up.
#[test]
fn schema_enforces_argon2_minimums_and_the_grace_cap() {
    let s = schema();
    let auth = &s["properties"]["spec"]["properties"]["authService"]["properties"];
    let argon2 = &auth["argon2"];
    let rules = argon2["x-kubernetes-validations"].to_string();
    for (memory, iterations) in [(47104, 1), (19456, 2), (12288, 3), (9216, 4), (7168, 5)] {
        assert!(
            rules.contains(&format!(
                "self.memoryKib >= {memory} && self.iterations >= {iterations}"
            )),
            "{rules}"
        );
    }
    assert_eq!(argon2["properties"]["memoryKib"]["minimum"], json!(7168.0));
    let tokens = auth["tokens"]["x-kubernetes-validations"].to_string();
    assert!(
        tokens.contains("duration(self.refreshReuseGrace) <= duration('10s')"),
        "{tokens}"
    );
}
