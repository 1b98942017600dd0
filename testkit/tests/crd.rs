//! CRDs: installation (fixture API and HTTP), discovery, DynamicObject CRUD with structural
//! schema pruning, defaulting and validation errors, status subresource, CRD deletion.

mod common;

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::discovery::{Discovery, Scope};
use serde_json::{Value, json};

fn crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "authstacks.authstack.io"},
        "spec": {
            "group": "authstack.io",
            "scope": "Namespaced",
            "names": {"plural": "authstacks", "singular": "authstack", "kind": "AuthStack", "shortNames": ["as"]},
            "versions": [{
                "name": "v1alpha1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [{"name": "Replicas", "type": "integer", "jsonPath": ".spec.gateway.replicas"}],
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {
                            "type": "object",
                            "required": ["domain", "gateway"],
                            "properties": {
                                "domain": {"type": "string", "minLength": 3, "maxLength": 20, "pattern": "^[a-z.]+$"},
                                "mode": {"type": "string", "enum": ["dev", "prod"], "default": "prod"},
                                "gateway": {
                                    "type": "object",
                                    "required": ["image"],
                                    "properties": {
                                        "image": {"type": "string"},
                                        "replicas": {"type": "integer", "format": "int32", "minimum": 1, "maximum": 10, "default": 2},
                                        "port": {"x-kubernetes-int-or-string": true, "default": 8080}
                                    }
                                },
                                "rotation": {
                                    "type": "object",
                                    "default": {},
                                    "properties": {
                                        "intervalHours": {"type": "integer", "minimum": 1, "exclusiveMaximum": true, "maximum": 720, "default": 24},
                                        "notBefore": {"type": "string", "format": "date-time", "nullable": true}
                                    }
                                },
                                "extraEnv": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
                                "config": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                            }
                        },
                        "status": {
                            "type": "object",
                            "properties": {"phase": {"type": "string"}, "ready": {"type": "boolean"}}
                        }
                    }
                }}
            }]
        }
    })
}

fn ar() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("authstack.io", "v1alpha1", "AuthStack"),
        "authstacks",
    )
}

fn stack(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "authstack.io/v1alpha1", "kind": "AuthStack",
        "metadata": {"name": name}, "spec": spec
    }))
    .unwrap()
}

#[tokio::test]
async fn crd_dynamic_crud_defaulting_pruning_validation() {
    let (server, client) = common::start().await;
    let installed = server.install_crd(&crd()).unwrap();
    let conds = installed["status"]["conditions"].as_array().unwrap();
    assert!(
        conds
            .iter()
            .any(|c| c["type"] == "Established" && c["status"] == "True")
    );

    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar());
    let created = api
        .create(
            &PostParams::default(),
            &stack("demo", json!({"domain": "auth.example", "gateway": {"image": "gw:1", "junk": 1}, "unknown": true,
                "config": {"free": {"form": 1}}})),
        )
        .await
        .unwrap();
    let spec = &created.data["spec"];
    assert_eq!(spec["mode"], "prod");
    assert_eq!(spec["gateway"]["replicas"], 2);
    assert_eq!(spec["gateway"]["port"], 8080);
    assert_eq!(spec["rotation"], json!({"intervalHours": 24}));
    assert!(spec.get("unknown").is_none(), "pruned");
    assert!(spec["gateway"].get("junk").is_none(), "pruned");
    assert_eq!(spec["config"], json!({"free": {"form": 1}}), "preserved");
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.data.get("status").is_none());

    // validation errors are listed like kube-apiserver does
    let err = common::status(
        api.create(
            &PostParams::default(),
            &stack("bad", json!({"domain": "A!", "mode": "test", "gateway": {"replicas": 0, "port": true},
                "rotation": {"intervalHours": 720, "notBefore": "yesterday"}, "extraEnv": ["a", "b", "c"]})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    let expected = [
        "spec.domain: Invalid value: \"A!\": spec.domain in body should be at least 3 chars long",
        "spec.domain: Invalid value: \"A!\": spec.domain in body should match '^[a-z.]+$'",
        "spec.extraEnv: Too many: 3: must have at most 2 items",
        "spec.gateway.port: Invalid value: \"boolean\": spec.gateway.port in body must be of type integer,string: \"boolean\"",
        "spec.gateway.replicas: Invalid value: 0: spec.gateway.replicas in body should be greater than or equal to 1",
        "spec.gateway.image: Required value",
        "spec.mode: Unsupported value: \"test\": supported values: \"dev\", \"prod\"",
        "spec.rotation.intervalHours: Invalid value: 720: spec.rotation.intervalHours in body should be less than 720",
        "spec.rotation.notBefore: Invalid value: \"yesterday\": spec.rotation.notBefore in body must be of type date-time: \"yesterday\"",
    ];
    assert_eq!(
        err.message,
        format!(
            "AuthStack.authstack.io \"bad\" is invalid: [{}]",
            expected.join(", ")
        )
    );
    let details = err.details.unwrap();
    assert_eq!(details.kind, "AuthStack");
    assert_eq!(details.group, "authstack.io");
    assert_eq!(details.causes.len(), expected.len());
    assert_eq!(details.causes[4].field, "spec.gateway.replicas");

    // the exact single-error message from the operator's docs
    let err = common::status(
        api.patch(
            "demo",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"gateway": {"replicas": 0}}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        err.message,
        "AuthStack.authstack.io \"demo\" is invalid: spec.gateway.replicas: Invalid value: 0: spec.gateway.replicas in body should be greater than or equal to 1"
    );
    // strategic merge patch is not supported for custom resources
    let err = common::status(
        api.patch(
            "demo",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"mode": "dev"}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 415);

    // spec change bumps generation; status subresource isolation
    let u = api
        .patch(
            "demo",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"mode": "dev"}, "status": {"phase": "Hacked"}})),
        )
        .await
        .unwrap();
    assert_eq!(u.metadata.generation, Some(2));
    assert!(u.data.get("status").is_none());
    let s = api
        .patch_status(
            "demo",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Ready", "ready": true, "bogus": 1}})),
        )
        .await
        .unwrap();
    assert_eq!(s.data["status"], json!({"phase": "Ready", "ready": true}));
    assert_eq!(s.metadata.generation, Some(2));
    let err = common::status(
        api.patch_status(
            "demo",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"ready": "yes"}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 422);

    // apply on a CR, removing an applied field
    let pp = PatchParams::apply("authstack-operator");
    let a = api
        .patch("applied", &pp, &Patch::Apply(json!({"apiVersion": "authstack.io/v1alpha1", "kind": "AuthStack",
            "metadata": {"name": "applied"}, "spec": {"domain": "a.b", "gateway": {"image": "gw", "replicas": 5}, "extraEnv": ["X"]}})))
        .await
        .unwrap();
    assert_eq!(a.data["spec"]["gateway"]["replicas"], 5);
    let a = api
        .patch("applied", &pp, &Patch::Apply(json!({"apiVersion": "authstack.io/v1alpha1", "kind": "AuthStack",
            "metadata": {"name": "applied"}, "spec": {"domain": "a.b", "gateway": {"image": "gw"}}})))
        .await
        .unwrap();
    assert_eq!(
        a.data["spec"]["gateway"]["replicas"], 2,
        "dropped field falls back to its default"
    );
    assert!(a.data["spec"].get("extraEnv").is_none());

    // direct state inspection through the fixture
    let got = server
        .get(
            "authstack.io/v1alpha1",
            "AuthStack",
            Some("default"),
            "demo",
        )
        .unwrap();
    assert_eq!(got["status"]["phase"], "Ready");
    assert_eq!(
        server
            .list("authstack.io/v1alpha1", "authstacks", None)
            .len(),
        2
    );

    // deleting the CRD removes its objects and stops serving the type
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.delete("authstacks.authstack.io", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        crds.get_opt("authstacks.authstack.io")
            .await
            .unwrap()
            .is_none()
    );
    let err = common::status(api.list(&Default::default()).await.unwrap_err());
    assert_eq!(err.code, 404);
}

#[tokio::test]
async fn crd_created_through_the_api_and_discovery() {
    let (server, client) = common::start().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let typed: CustomResourceDefinition = serde_json::from_value(crd()).unwrap();
    crds.create(&PostParams::default(), &typed).await.unwrap();
    let established = kube::runtime::wait::await_condition(
        crds.clone(),
        "authstacks.authstack.io",
        kube::runtime::wait::conditions::is_crd_established(),
    );
    tokio::time::timeout(Duration::from_secs(5), established)
        .await
        .unwrap()
        .unwrap();

    // invalid CRDs are rejected
    let mut bad = crd();
    bad["metadata"]["name"] = json!("wrong.authstack.io");
    let err = common::status(
        crds.create(
            &PostParams::default(),
            &serde_json::from_value(bad).unwrap(),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    assert!(
        err.message
            .contains("must be spec.names.plural+\".\"+spec.group"),
        "{}",
        err.message
    );

    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let (ar, caps) = discovery
        .resolve_gvk(&GroupVersionKind::gvk(
            "authstack.io",
            "v1alpha1",
            "AuthStack",
        ))
        .unwrap();
    assert_eq!(ar.plural, "authstacks");
    assert_eq!(caps.scope, Scope::Namespaced);
    assert!(caps.subresources.iter().any(|(s, _)| s.plural == "status"));
    for (g, v, k) in [
        ("", "v1", "Secret"),
        ("", "v1", "Namespace"),
        ("apps", "v1", "StatefulSet"),
        ("policy", "v1", "PodDisruptionBudget"),
        ("networking.k8s.io", "v1", "NetworkPolicy"),
        ("coordination.k8s.io", "v1", "Lease"),
        ("events.k8s.io", "v1", "Event"),
    ] {
        assert!(
            discovery
                .resolve_gvk(&GroupVersionKind::gvk(g, v, k))
                .is_some(),
            "{g}/{v} {k}"
        );
    }
    let (_, ns_caps) = discovery
        .resolve_gvk(&GroupVersionKind::gvk("", "v1", "Namespace"))
        .unwrap();
    assert_eq!(ns_caps.scope, Scope::Cluster);
    // aggregated discovery (kube >= 1.30 style) agrees
    let agg = Discovery::new(client.clone())
        .run_aggregated()
        .await
        .unwrap();
    assert!(
        agg.resolve_gvk(&GroupVersionKind::gvk(
            "authstack.io",
            "v1alpha1",
            "AuthStack"
        ))
        .is_some()
    );
    assert!(
        agg.resolve_gvk(&GroupVersionKind::gvk("apps", "v1", "Deployment"))
            .is_some()
    );
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.major, "1");

    // the CR is now usable
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    api.create(
        &PostParams::default(),
        &stack("x", json!({"domain": "x.y", "gateway": {"image": "i"}})),
    )
    .await
    .unwrap();
    assert_eq!(api.get("x").await.unwrap().name_any(), "x");
    drop(server);
}
