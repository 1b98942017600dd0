//! A kubelet stand-in for Secret volumes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use authstack_keyring::layout::write_atomic;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use tokio::sync::watch;

/// Errors of the sync loop.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Reading the Secret failed.
    #[error("reading the Secret: {0}")]
    Api(#[from] kube::Error),
    /// Writing the directory failed.
    #[error("writing the volume: {0}")]
    Write(#[from] authstack_keyring::KeyringError),
}

/// What to sync and how.
#[derive(Debug, Clone)]
pub struct SecretVolume {
    /// Namespace of the Secret.
    pub namespace: String,
    /// Name of the Secret.
    pub name: String,
    /// The "mount" directory.
    pub dir: PathBuf,
    /// Delay between seeing a change and writing it (kubelet's propagation lag).
    pub delay: Duration,
    /// How often the Secret is read.
    pub poll: Duration,
}

/// Follows the Secret until `stop` turns true, writing every new version into the directory
/// `delay` after it was first seen. The first version is written as soon as it exists (a pod
/// does not start before its volume is mounted). Returns the number of versions written.
pub async fn sync_secret(
    client: Client,
    volume: SecretVolume,
    mut stop: watch::Receiver<bool>,
) -> Result<u64, SyncError> {
    let api: Api<Secret> = Api::namespaced(client, &volume.namespace);
    let mut last_version: Option<String> = None;
    let mut written = 0u64;
    loop {
        if *stop.borrow() {
            return Ok(written);
        }
        match api.get_opt(&volume.name).await {
            Ok(Some(secret)) => {
                let version = secret.metadata.resource_version.clone();
                if version.is_some() && version != last_version {
                    if last_version.is_some() {
                        tokio::select! {
                            _ = tokio::time::sleep(volume.delay) => {}
                            _ = stop.changed() => return Ok(written),
                        }
                    }
                    let files: BTreeMap<String, Vec<u8>> = secret
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0))
                        .collect();
                    write_atomic(&volume.dir, &files)?;
                    written += 1;
                    tracing::info!(secret = %volume.name, version = ?version, dir = %volume.dir.display(), "volume updated");
                    last_version = version;
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the Secret; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(volume.poll) => {}
            _ = stop.changed() => {}
        }
    }
}
