//! Shared helpers for the integration tests: a server plus a real kube client.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use authstack_testkit::{FakeApiServer, FakeApiServerBuilder};

/// Start a default server and a kube client configured from its kubeconfig.
pub async fn start() -> (FakeApiServer, kube::Client) {
    start_with(FakeApiServer::builder()).await
}

/// Start a server from a builder and a kube client for it.
pub async fn start_with(b: FakeApiServerBuilder) -> (FakeApiServer, kube::Client) {
    let server = b.start().await.expect("server starts");
    let client = client_for(&server).await;
    (server, client)
}

/// A kube client built through the kubeconfig path, as the operator does.
pub async fn client_for(server: &FakeApiServer) -> kube::Client {
    let kc =
        kube::config::Kubeconfig::from_yaml(&server.kubeconfig_yaml()).expect("kubeconfig parses");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .expect("config");
    assert_eq!(cfg.default_namespace, "default");
    kube::Client::try_from(cfg).expect("client")
}

/// The `Status` of an API error (panics on other errors).
pub fn status(e: kube::Error) -> Box<kube::core::Status> {
    match e {
        kube::Error::Api(s) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Poll `f` until it returns Some, or panic after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
