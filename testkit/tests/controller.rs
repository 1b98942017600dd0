//! A kube-runtime Controller (derive-generated CRD, owned ConfigMaps, finalizer helper,
//! event recorder) reconciles against the fake server end to end.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event as KEvent, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::watcher;
use kube::{CustomResource, CustomResourceExt, Resource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "test.authstack.io",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus"
)]
struct WidgetSpec {
    size: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    label: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
struct WidgetStatus {
    observed_generation: Option<i64>,
    cleaned: Option<bool>,
}

struct Ctx {
    client: kube::Client,
    recorder: Recorder,
    reconciles: AtomicUsize,
    cleanups: AtomicUsize,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(String),
}

async fn apply(w: Arc<Widget>, ctx: &Ctx) -> Result<Action, kube::Error> {
    ctx.reconciles.fetch_add(1, Ordering::SeqCst);
    let ns = w.namespace().unwrap_or_default();
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    let owner = w.controller_owner_ref(&()).expect("owner ref");
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": format!("{}-cfg", w.name_any()), "ownerReferences": [owner]},
        "data": {"size": w.spec.size.to_string()}
    });
    cms.patch(
        &format!("{}-cfg", w.name_any()),
        &PatchParams::apply("widget-ctrl").force(),
        &Patch::Apply(&cm),
    )
    .await?;
    let widgets: Api<Widget> = Api::namespaced(ctx.client.clone(), &ns);
    widgets
        .patch_status(
            &w.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"observed_generation": w.metadata.generation}})),
        )
        .await?;
    ctx.recorder
        .publish(
            &KEvent {
                type_: EventType::Normal,
                reason: "Reconciled".into(),
                note: Some(format!("size {}", w.spec.size)),
                action: "Reconcile".into(),
                secondary: None,
            },
            &w.object_ref(&()),
        )
        .await?;
    Ok(Action::await_change())
}

async fn reconcile(w: Arc<Widget>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = w.namespace().unwrap_or_default();
    let widgets: Api<Widget> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&widgets, "test.authstack.io/cleanup", w, |ev| async {
        match ev {
            Finalizer::Apply(w) => apply(w, &ctx).await,
            Finalizer::Cleanup(_) => {
                ctx.cleanups.fetch_add(1, Ordering::SeqCst);
                Ok(Action::await_change())
            }
        }
    })
    .await
    .map_err(|e| Error::Finalizer(e.to_string()))
}

fn error_policy(_w: Arc<Widget>, _e: &Error, _ctx: Arc<Ctx>) -> Action {
    Action::requeue(Duration::from_millis(50))
}

#[tokio::test]
async fn controller_reconciles_owned_objects() {
    let (server, client) = common::start().await;
    server.install_crd(&Widget::crd()).unwrap();
    let widgets: Api<Widget> = Api::default_namespaced(client.clone());
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        recorder: Recorder::new(client.clone(), Reporter::from("widget-ctrl")),
        reconciles: AtomicUsize::new(0),
        cleanups: AtomicUsize::new(0),
    });
    let controller = Controller::new(widgets.clone(), watcher::Config::default())
        .owns(cms.clone(), watcher::Config::default())
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|_| futures::future::ready(()));
    let handle = tokio::spawn(controller);

    let w = Widget::new(
        "w1",
        WidgetSpec {
            size: 3,
            label: None,
        },
    );
    widgets.create(&PostParams::default(), &w).await.unwrap();

    let cm = common::eventually(Duration::from_secs(5), "owned ConfigMap", || async {
        cms.get_opt("w1-cfg").await.unwrap()
    })
    .await;
    assert_eq!(cm.data.as_ref().unwrap()["size"], "3");
    assert_eq!(cm.owner_references()[0].kind, "Widget");
    let status = common::eventually(Duration::from_secs(5), "status", || async {
        widgets
            .get_status("w1")
            .await
            .unwrap()
            .status
            .filter(|s| s.observed_generation.is_some())
    })
    .await;
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(
        widgets.get("w1").await.unwrap().finalizers(),
        ["test.authstack.io/cleanup"]
    );

    // spec change -> reconcile -> ConfigMap updated
    widgets
        .patch(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 5}})),
        )
        .await
        .unwrap();
    common::eventually(Duration::from_secs(5), "ConfigMap size 5", || async {
        let cm = cms.get("w1-cfg").await.unwrap();
        (cm.data.unwrap()["size"] == "5").then_some(())
    })
    .await;

    // tampering with the owned object triggers a reconcile that repairs it
    let before = ctx.reconciles.load(Ordering::SeqCst);
    cms.patch(
        "w1-cfg",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"size": "999"}})),
    )
    .await
    .unwrap();
    common::eventually(Duration::from_secs(5), "ConfigMap repaired", || async {
        let cm = cms.get("w1-cfg").await.unwrap();
        (cm.data.unwrap()["size"] == "5").then_some(())
    })
    .await;
    assert!(ctx.reconciles.load(Ordering::SeqCst) > before);

    // events were recorded through events.k8s.io/v1
    let events = server.list("events.k8s.io/v1", "Event", Some("default"));
    assert!(
        events.iter().any(|e| e["reason"] == "Reconciled"),
        "{events:?}"
    );

    // deletion: finalizer cleanup runs, then the CR and (by GC) its ConfigMap disappear
    widgets
        .delete("w1", &DeleteParams::default())
        .await
        .unwrap();
    common::eventually(Duration::from_secs(5), "widget gone", || async {
        widgets.get_opt("w1").await.unwrap().is_none().then_some(())
    })
    .await;
    assert_eq!(ctx.cleanups.load(Ordering::SeqCst), 1);
    assert!(cms.get_opt("w1-cfg").await.unwrap().is_none());
    handle.abort();
}
