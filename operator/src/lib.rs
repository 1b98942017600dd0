//! The AuthStack operator: reconciles `AuthStack` resources (`authstack.io/v1alpha1`) into a
//! running auth platform and rotates its JWT signing keys.
//!
//! Pure parts, unit-tested object by object: [`crd`], [`duration`], [`settings`],
//! [`builders`], [`keys`], [`status`]. The reconciler in phases: [`controller`]. Around it:
//! [`leader`], [`http`], [`metrics`], [`plugin`]. [`run`] is the operator's entry point.

pub mod builders;
pub mod config;
pub mod controller;
pub mod crd;
pub mod duration;
pub mod error;
pub mod http;
pub mod keys;
pub mod leader;
pub mod metrics;
pub mod plugin;
pub mod settings;
pub mod status;

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::runtime::{conditions, wait};
use kube::{Api, Client};
use tokio::sync::watch;

pub use config::Config;
pub use error::{Error, Result};

use builders::meta::MANAGER;

/// How long the health endpoints keep answering after the controller stopped, so probes see
/// the replica go unready before it disappears.
pub const HTTP_DRAIN: Duration = Duration::from_secs(5);

/// Runs the operator until SIGTERM or Ctrl-C.
pub async fn run(config: Config) -> Result<()> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        authstack_telemetry::shutdown_signal().await;
        tracing::info!("shutdown requested");
        let _ = tx.send(true);
    });
    run_until(config, rx).await
}

/// Runs the operator until `shutdown` turns true.
pub async fn run_until(config: Config, shutdown: watch::Receiver<bool>) -> Result<()> {
    let metrics = authstack_telemetry::metrics();
    let health = http::Health::default();
    let mut http_stop = shutdown.clone();
    let (addr, serve) = http::bind(config.metrics_listen, health.clone(), metrics, async move {
        let _ = http_stop.wait_for(|v| *v).await;
    })
    .await?;
    let server = tokio::spawn(serve);
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");

    let client = Client::try_default()
        .await
        .map_err(|e| Error::ClientConfig(e.to_string()))?;
    if config.install_crd {
        install_crd(&client, config.crd_established_timeout).await?;
    }
    let scopes = config.watch_scopes();
    for scope in &scopes {
        controller::check_api(&client, scope.as_deref()).await?;
    }
    health.set_ready(true);

    let identity = config.holder_identity();
    let controller_config = controller::ControllerConfig {
        images: config.images(),
        instance: identity.clone(),
        namespace: None,
        tuning: config.tuning(),
    };
    let result = if config.leader_election {
        let lease_namespace = config
            .lease_namespace
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| client.default_namespace().to_owned());
        let elector = leader::LeaderElector::new(
            client.clone(),
            leader::LeaseConfig {
                name: config.lease_name.clone(),
                namespace: lease_namespace,
                identity,
                lease_duration: config.lease_duration,
                renew_interval: config.lease_renew_interval,
                retry_interval: config.lease_retry_interval,
            },
        );
        let h = health.clone();
        leader::run(
            elector,
            shutdown.clone(),
            move |leading| h.set_leader(leading),
            move |stop| run_controllers(client, controller_config, scopes, stop),
        )
        .await
        .map(|_| ())
    } else {
        health.set_leader(true);
        run_controllers(client, controller_config, scopes, shutdown.clone()).await
    };
    health.set_ready(false);
    health.set_leader(false);
    // Stop serving health endpoints only once everything else has stopped.
    let mut stop = shutdown;
    if result.is_err() {
        server.abort();
    } else {
        let _ = tokio::time::timeout(HTTP_DRAIN, stop.wait_for(|v| *v)).await;
        let _ = tokio::time::timeout(HTTP_DRAIN, server).await;
    }
    result
}

/// One controller per watched namespace (or one for all), each with `config` and its own
/// watches, until `stop` turns true.
async fn run_controllers(
    client: Client,
    config: controller::ControllerConfig,
    scopes: Vec<Option<String>>,
    stop: watch::Receiver<bool>,
) -> Result<()> {
    futures::future::try_join_all(scopes.into_iter().map(|namespace| {
        let config = controller::ControllerConfig {
            namespace,
            ..config.clone()
        };
        controller::run(client.clone(), config, stop.clone())
    }))
    .await
    .map(drop)
}

/// Server-side applies the AuthStack CRD and waits until it is established (Stackable-style
/// CRD upgrades: the operator ships the schema it understands), waiting at most `timeout`.
pub async fn install_crd(client: &Client, timeout: Duration) -> Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = crd::crd();
    let name = crd.metadata.name.clone().unwrap_or_default();
    crds.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&crd),
    )
    .await
    .map_err(|e| Error::InstallCrd(e.to_string()))?;
    let established = wait::await_condition(crds, &name, conditions::is_crd_established());
    match tokio::time::timeout(timeout, established).await {
        Ok(Ok(_)) => {
            tracing::info!(crd = %name, "CRD installed");
            Ok(())
        }
        Ok(Err(e)) => Err(Error::InstallCrd(e.to_string())),
        Err(_) => Err(Error::InstallCrd(format!(
            "{name} not established after {timeout:?}"
        ))),
    }
}
