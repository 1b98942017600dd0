//! Typed CRUD through the real kube client: metadata, errors, conflicts, generation,
//! status subresource, selectors and paging.

mod common;

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;

fn deployment(name: &str, image: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": image, "ports": [{"containerPort": 8080}]}]}
            }
        }
    }))
    .expect("valid deployment")
}

#[tokio::test]
async fn secret_crud_metadata_and_errors() {
    let (server, client) = common::start().await;
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());

    let mut s = Secret {
        metadata: ObjectMeta {
            name: Some("db".into()),
            ..Default::default()
        },
        string_data: Some(BTreeMap::from([(
            "password".to_string(),
            "hunter2".to_string(),
        )])),
        ..Default::default()
    };
    let created = secrets.create(&PostParams::default(), &s).await.unwrap();
    assert_eq!(created.namespace().as_deref(), Some("default"));
    assert!(created.uid().is_some());
    assert!(created.metadata.creation_timestamp.is_some());
    assert_eq!(created.type_.as_deref(), Some("Opaque"));
    assert!(
        created.string_data.is_none(),
        "stringData is folded into data"
    );
    assert_eq!(
        created.data.as_ref().unwrap()["password"],
        ByteString(b"hunter2".to_vec())
    );
    assert!(
        created.metadata.generation.is_none(),
        "secrets have no generation"
    );
    let rv1: u64 = created.resource_version().unwrap().parse().unwrap();

    // AlreadyExists
    let err = common::status(
        secrets
            .create(&PostParams::default(), &s)
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(err.message, "secrets \"db\" already exists");

    // replace with the current resourceVersion works, stale one conflicts
    let mut current = secrets.get("db").await.unwrap();
    current.labels_mut().insert("tier".into(), "db".into());
    let updated = secrets
        .replace("db", &PostParams::default(), &current)
        .await
        .unwrap();
    let rv2: u64 = updated.resource_version().unwrap().parse().unwrap();
    assert!(rv2 > rv1);
    let err = common::status(
        secrets
            .replace("db", &PostParams::default(), &current)
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        err.message,
        "Operation cannot be fulfilled on secrets \"db\": the object has been modified; please apply your changes to the latest version and try again"
    );

    // a no-op update does not bump the resourceVersion
    let same = secrets
        .replace("db", &PostParams::default(), &updated)
        .await
        .unwrap();
    assert_eq!(same.resource_version(), updated.resource_version());

    // NotFound
    let err = common::status(secrets.get("nope").await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (404, "NotFound"));
    assert_eq!(err.message, "secrets \"nope\" not found");
    assert!(secrets.get_opt("nope").await.unwrap().is_none());

    // invalid base64 in data is a 400 like the real decoder
    let err = common::status(
        secrets
            .patch(
                "db",
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"k": "!!not base64"}})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 400);

    // invalid name is a 422 with kube-apiserver's message
    s.metadata.name = Some("Bad_Name".into());
    let err = common::status(
        secrets
            .create(&PostParams::default(), &s)
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    assert!(err.message.starts_with("Secret \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"), "{}", err.message);

    // generateName
    s.metadata.name = None;
    s.metadata.generate_name = Some("gen-".into());
    let g = secrets.create(&PostParams::default(), &s).await.unwrap();
    assert!(
        g.name_any().starts_with("gen-") && g.name_any().len() == 9,
        "{}",
        g.name_any()
    );

    // delete of a secret answers with a Status (ReturnDeletedObject=false), pods-like types return the object
    let res = secrets
        .delete("db", &DeleteParams::default())
        .await
        .unwrap();
    let st = res.right().expect("a Status");
    assert_eq!(st.details.unwrap().name, "db");
    assert!(server.get("v1", "Secret", Some("default"), "db").is_none());
    let err = common::status(
        secrets
            .delete("db", &DeleteParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 404);

    // a namespace must exist
    let other: Api<Secret> = Api::namespaced(client.clone(), "missing");
    s.metadata.generate_name = None;
    s.metadata.name = Some("x".into());
    let err = common::status(other.create(&PostParams::default(), &s).await.unwrap_err());
    assert_eq!(
        (err.code, err.message.as_str()),
        (404, "namespaces \"missing\" not found")
    );
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "missing"}})).unwrap(),
    )
    .await
    .unwrap();
    other.create(&PostParams::default(), &s).await.unwrap();
}

#[tokio::test]
async fn deployment_generation_status_subresource_and_defaults() {
    let (_server, client) = common::start().await;
    let deps: Api<Deployment> = Api::default_namespaced(client.clone());
    let d = deps
        .create(&PostParams::default(), &deployment("web", "nginx:1.27"))
        .await
        .unwrap();
    assert_eq!(d.metadata.generation, Some(1));
    let spec = d.spec.as_ref().unwrap();
    assert_eq!(spec.revision_history_limit, Some(10));
    assert_eq!(spec.progress_deadline_seconds, Some(600));
    assert_eq!(
        spec.strategy.as_ref().unwrap().type_.as_deref(),
        Some("RollingUpdate")
    );
    let c = &spec.template.spec.as_ref().unwrap().containers[0];
    assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert_eq!(
        c.ports.as_ref().unwrap()[0].protocol.as_deref(),
        Some("TCP")
    );
    assert_eq!(
        c.termination_message_path.as_deref(),
        Some("/dev/termination-log")
    );

    // metadata-only change: no generation bump
    let d2 = deps
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(d2.metadata.generation, Some(1));
    // status written through the main resource is ignored
    let d3 = deps
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"readyReplicas": 2}})),
        )
        .await
        .unwrap();
    assert!(d3.status.as_ref().and_then(|s| s.ready_replicas).is_none());
    assert_eq!(
        d3.resource_version(),
        d2.resource_version(),
        "ignored status change is a no-op"
    );
    // spec change bumps generation
    let d4 = deps
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(d4.metadata.generation, Some(2));
    // /status changes only status and never bumps generation
    let d5 = deps
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 9}, "status": {"readyReplicas": 3, "observedGeneration": 2}})),
        )
        .await
        .unwrap();
    assert_eq!(d5.status.as_ref().unwrap().ready_replicas, Some(3));
    assert_eq!(d5.spec.as_ref().unwrap().replicas, Some(3));
    assert_eq!(d5.metadata.generation, Some(2));
    // replace_status with a full object
    let mut cur = deps.get_status("web").await.unwrap();
    cur.status.as_mut().unwrap().available_replicas = Some(3);
    let d6 = deps
        .replace_status("web", &PostParams::default(), &cur)
        .await
        .unwrap();
    assert_eq!(d6.status.unwrap().available_replicas, Some(3));

    // selector must match template labels (422)
    let mut bad = deployment("bad", "nginx");
    bad.spec
        .as_mut()
        .unwrap()
        .template
        .metadata
        .as_mut()
        .unwrap()
        .labels = Some(BTreeMap::from([("app".to_string(), "other".to_string())]));
    let err = common::status(deps.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!(err.code, 422);
    assert!(
        err.message
            .contains("`selector` does not match template `labels`"),
        "{}",
        err.message
    );
    // selector is immutable
    let err = common::status(
        deps.patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"selector": {"matchLabels": {"app": "x"}}, "template": {"metadata": {"labels": {"app": "x"}}}}})),
        )
        .await
        .unwrap_err(),
    );
    assert!(
        err.message.contains("spec.selector: Invalid value"),
        "{}",
        err.message
    );
    assert!(
        err.message.contains("field is immutable"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn label_selectors_field_selectors_and_paging() {
    let (_server, client) = common::start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    for (name, env, tier) in [
        ("a", "prod", "fe"),
        ("b", "prod", "be"),
        ("c", "dev", "fe"),
        ("d", "dev", ""),
    ] {
        let mut labels = BTreeMap::from([("env".to_string(), env.to_string())]);
        if !tier.is_empty() {
            labels.insert("tier".into(), tier.into());
        }
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(labels),
                ..Default::default()
            },
            ..Default::default()
        };
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }
    let names = |l: kube::core::ObjectList<ConfigMap>| {
        l.items.iter().map(|c| c.name_any()).collect::<Vec<_>>()
    };
    let q = |s: &str| ListParams::default().labels(s);
    assert_eq!(names(cms.list(&q("env=prod")).await.unwrap()), ["a", "b"]);
    assert_eq!(names(cms.list(&q("env==dev")).await.unwrap()), ["c", "d"]);
    assert_eq!(names(cms.list(&q("env!=prod")).await.unwrap()), ["c", "d"]);
    assert_eq!(
        names(cms.list(&q("tier in (fe,xx)")).await.unwrap()),
        ["a", "c"]
    );
    assert_eq!(
        names(cms.list(&q("tier notin (fe)")).await.unwrap()),
        ["b", "d"]
    );
    assert_eq!(names(cms.list(&q("tier")).await.unwrap()), ["a", "b", "c"]);
    assert_eq!(names(cms.list(&q("!tier")).await.unwrap()), ["d"]);
    assert_eq!(names(cms.list(&q("env=dev,tier")).await.unwrap()), ["c"]);
    assert_eq!(
        names(
            cms.list(&ListParams::default().fields("metadata.name=b"))
                .await
                .unwrap()
        ),
        ["b"]
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().fields("metadata.namespace=default,metadata.name!=b"))
                .await
                .unwrap()
        ),
        ["a", "c", "d"]
    );
    let err = common::status(cms.list(&q("tier in fe")).await.unwrap_err());
    assert_eq!(err.code, 400);

    // paging
    let p1 = cms.list(&ListParams::default().limit(3)).await.unwrap();
    assert_eq!(names(p1.clone()), ["a", "b", "c"]);
    let token = p1.metadata.continue_.clone().expect("continue token");
    assert_eq!(p1.metadata.remaining_item_count, Some(1));
    let p2 = cms
        .list(&ListParams::default().limit(3).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(names(p2.clone()), ["d"]);
    assert!(p2.metadata.continue_.is_none());
    assert_eq!(p1.metadata.resource_version, p2.metadata.resource_version);

    // all-namespaces list and metadata-only list
    let all: Api<ConfigMap> = Api::all(client.clone());
    assert_eq!(
        all.list(&ListParams::default()).await.unwrap().items.len(),
        4
    );
    let meta = cms.list_metadata(&q("env=prod")).await.unwrap();
    assert_eq!(meta.items.len(), 2);
    assert_eq!(
        meta.items[0].metadata.labels.as_ref().unwrap()["env"],
        "prod"
    );
}

#[tokio::test]
async fn services_get_cluster_ips_and_return_deleted_object() {
    let (_server, client) = common::start().await;
    let svcs: Api<Service> = Api::default_namespaced(client.clone());
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]}
    }))
    .unwrap();
    let s = svcs.create(&PostParams::default(), &svc).await.unwrap();
    let spec = s.spec.unwrap();
    assert!(spec.cluster_ip.as_deref().unwrap().starts_with("10.96."));
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
    let port = &spec.ports.unwrap()[0];
    assert_eq!(port.protocol.as_deref(), Some("TCP"));
    assert_eq!(
        port.target_port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(80))
    );
    let deleted = svcs.delete("web", &DeleteParams::default()).await.unwrap();
    assert_eq!(
        deleted.left().expect("the deleted Service").name_any(),
        "web"
    );
}
