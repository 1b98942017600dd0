//! Watches: kube-runtime's watcher (list+watch and streaming lists), raw watch events,
//! bookmarks, resume from a resourceVersion, 410 Gone and selector transitions.

mod common;

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::watcher::{self, Event, watcher};
use serde_json::json;

fn cm(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": labels}, "data": {"v": "0"}}),
    )
    .unwrap()
}

async fn next<S, T>(s: &mut S) -> T
where
    S: futures::Stream<Item = T> + Unpin,
{
    tokio::time::timeout(Duration::from_secs(5), s.next())
        .await
        .expect("event within 5s")
        .expect("stream continues")
}

async fn watcher_sequence(streaming: bool) {
    let (_server, client) = common::start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    cms.create(&PostParams::default(), &cm("pre", json!({"w": "1"})))
        .await
        .unwrap();
    let mut cfg = watcher::Config::default().labels("w=1");
    if streaming {
        cfg = cfg.streaming_lists();
    }
    let mut stream = watcher(cms.clone(), cfg).boxed();
    assert!(matches!(next(&mut stream).await.unwrap(), Event::Init));
    match next(&mut stream).await.unwrap() {
        Event::InitApply(o) => assert_eq!(o.name_any(), "pre"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(next(&mut stream).await.unwrap(), Event::InitDone));

    cms.create(&PostParams::default(), &cm("new", json!({"w": "1"})))
        .await
        .unwrap();
    cms.create(&PostParams::default(), &cm("other", json!({"w": "2"})))
        .await
        .unwrap();
    match next(&mut stream).await.unwrap() {
        Event::Apply(o) => assert_eq!(o.name_any(), "new"),
        other => panic!("unexpected {other:?}"),
    }
    cms.patch(
        "new",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "1"}})),
    )
    .await
    .unwrap();
    match next(&mut stream).await.unwrap() {
        Event::Apply(o) => assert_eq!(o.data.unwrap()["v"], "1"),
        other => panic!("unexpected {other:?}"),
    }
    cms.delete("new", &DeleteParams::default()).await.unwrap();
    match next(&mut stream).await.unwrap() {
        Event::Delete(o) => assert_eq!(o.name_any(), "new"),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn runtime_watcher_list_watch() {
    watcher_sequence(false).await;
}

#[tokio::test]
async fn runtime_watcher_streaming_list() {
    watcher_sequence(true).await;
}

#[tokio::test]
async fn raw_watch_resume_bookmarks_selector_transitions_and_gone() {
    let (_server, client) = common::start_with(
        authstack_testkit::FakeApiServer::builder()
            .bookmark_interval(Duration::from_millis(100))
            .history_capacity(50),
    )
    .await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let a = cms
        .create(&PostParams::default(), &cm("a", json!({"sel": "yes"})))
        .await
        .unwrap();
    let rv = a.resource_version().unwrap();

    // resume after `a`: only later changes; label transitions become ADDED / DELETED
    let wp = WatchParams::default().labels("sel=yes").timeout(10);
    let mut w = cms.watch(&wp, &rv).await.unwrap().boxed();
    cms.create(&PostParams::default(), &cm("b", json!({"sel": "no"})))
        .await
        .unwrap();
    cms.patch(
        "b",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"sel": "yes"}}})),
    )
    .await
    .unwrap();
    match next(&mut w).await.unwrap() {
        WatchEvent::Added(o) => assert_eq!(o.name_any(), "b"),
        other => panic!("unexpected {other:?}"),
    }
    cms.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"sel": "off"}}})),
    )
    .await
    .unwrap();
    match next(&mut w).await.unwrap() {
        WatchEvent::Deleted(o) => assert_eq!(o.name_any(), "a"),
        other => panic!("unexpected {other:?}"),
    }

    // bookmarks carry the latest resourceVersion
    let mut bw = cms
        .watch(&WatchParams::default().timeout(10), &rv)
        .await
        .unwrap()
        .try_filter(|e| futures::future::ready(matches!(e, WatchEvent::Bookmark(_))))
        .boxed();
    match next(&mut bw).await.unwrap() {
        WatchEvent::Bookmark(b) => {
            let brv: u64 = b.metadata.resource_version.parse().unwrap();
            assert!(brv >= rv.parse::<u64>().unwrap() + 3, "{brv}");
            assert_eq!(b.types.kind, "ConfigMap");
        }
        other => panic!("unexpected {other:?}"),
    }

    // timeoutSeconds ends the stream
    let mut short = cms
        .watch(&WatchParams::default().timeout(1).disable_bookmarks(), "0")
        .await
        .unwrap()
        .boxed();
    let started = std::time::Instant::now();
    while tokio::time::timeout(Duration::from_secs(5), short.next())
        .await
        .expect("ends")
        .is_some()
    {}
    assert!(started.elapsed() >= Duration::from_millis(900));

    // compacted history: 410 Gone as an ERROR event
    for i in 0..60 {
        cms.patch(
            "b",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"v": i.to_string()}})),
        )
        .await
        .unwrap();
    }
    let mut gone = cms
        .watch(&WatchParams::default().timeout(10), &rv)
        .await
        .unwrap()
        .boxed();
    match next(&mut gone).await.unwrap() {
        WatchEvent::Error(s) => {
            assert_eq!(s.code, 410);
            assert_eq!(s.reason, "Expired");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn watcher_recovers_from_gone() {
    let (_server, client) =
        common::start_with(authstack_testkit::FakeApiServer::builder().history_capacity(5)).await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    cms.create(&PostParams::default(), &cm("x", json!({})))
        .await
        .unwrap();
    let rv = cms.get("x").await.unwrap().resource_version().unwrap();
    for i in 0..10 {
        cms.patch(
            "x",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"v": i.to_string()}})),
        )
        .await
        .unwrap();
    }
    let mut ev = cms
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    assert!(matches!(next(&mut ev).await.unwrap(), WatchEvent::Error(s) if s.code == 410));
    // the runtime watcher re-lists and sees the final state
    let store = kube::runtime::reflector::store::Writer::<ConfigMap>::default();
    let reader = store.as_reader();
    let stream = kube::runtime::reflector(store, watcher(cms.clone(), watcher::Config::default()));
    let handle = tokio::spawn(stream.for_each(|_| futures::future::ready(())));
    reader.wait_until_ready().await.unwrap();
    assert_eq!(reader.state()[0].data.as_ref().unwrap()["v"], "9");
    handle.abort();
}
