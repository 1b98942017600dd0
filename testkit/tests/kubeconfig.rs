//! The kubeconfig file works with kube's file loading, and the server shuts down cleanly.

mod common;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};

#[tokio::test]
async fn kubeconfig_file_and_shutdown() {
    let server = authstack_testkit::FakeApiServer::start().await.unwrap();
    let dir = std::env::temp_dir().join(format!("authstack-testkit-{}", std::process::id()));
    let path = server.write_kubeconfig(&dir);
    let kc = kube::config::Kubeconfig::read_from(&path).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    assert_eq!(
        cfg.cluster_url.to_string().trim_end_matches('/'),
        server.url()
    );
    assert_eq!(cfg.default_namespace, "default");
    let client = kube::Client::try_from(cfg).unwrap();
    let nss: Api<Namespace> = Api::all(client.clone());
    let names: Vec<_> = nss
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert_eq!(
        names,
        ["default", "kube-node-lease", "kube-public", "kube-system"]
    );
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.method == "GET" && r.path == "/api/v1/namespaces")
    );
    let url = server.url();
    server.shutdown().await;
    assert!(
        nss.list(&ListParams::default()).await.is_err(),
        "server at {url} is gone"
    );
    let _ = std::fs::remove_dir_all(dir);
}
