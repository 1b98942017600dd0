//! A kubelet stand-in for Secret volumes.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

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

/// Versions of a Secret seen and not yet written, each due `delay` after it was first seen
/// (the first version at once). The lag of each version counts from when it appeared, however
/// many follow it: a version seen while an earlier one waits is not held back behind it.
#[derive(Debug)]
pub struct Lagged<T> {
    delay: Duration,
    last_seen: Option<String>,
    waiting: VecDeque<(Instant, T)>,
}

impl<T> Lagged<T> {
    /// Nothing seen yet.
    pub fn new(delay: Duration) -> Self {
        Lagged {
            delay,
            last_seen: None,
            waiting: VecDeque::new(),
        }
    }

    /// Records the version read at `now`; a new one is due `delay` later (the first at once).
    pub fn observe(&mut self, now: Instant, version: &str, content: impl FnOnce() -> T) {
        if self.last_seen.as_deref() == Some(version) {
            return;
        }
        let due = if self.last_seen.is_none() {
            now
        } else {
            now + self.delay
        };
        self.last_seen = Some(version.to_owned());
        self.waiting.push_back((due, content()));
    }

    /// The newest version due at `now`, if any (older ones due too are superseded by it).
    pub fn take_due(&mut self, now: Instant) -> Option<T> {
        let mut newest = None;
        while self.waiting.front().is_some_and(|(due, _)| *due <= now) {
            newest = self.waiting.pop_front().map(|(_, content)| content);
        }
        newest
    }

    /// When the next waiting version is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.waiting.front().map(|(due, _)| *due)
    }
}

/// Follows the Secret until `stop` turns true, writing every new version into the directory
/// `delay` after it was first seen ([`Lagged`]). The first version is written as soon as it
/// exists (a pod does not start before its volume is mounted). Returns the number of versions
/// written.
pub async fn sync_secret(
    client: Client,
    volume: SecretVolume,
    mut stop: watch::Receiver<bool>,
) -> Result<u64, SyncError> {
    let api: Api<Secret> = Api::namespaced(client, &volume.namespace);
    let mut lagged = Lagged::new(volume.delay);
    let mut written = 0u64;
    loop {
        if *stop.borrow() {
            return Ok(written);
        }
        match api.get_opt(&volume.name).await {
            Ok(Some(secret)) => {
                if let Some(version) = secret.metadata.resource_version.clone() {
                    lagged.observe(Instant::now(), &version, || {
                        let files: BTreeMap<String, Vec<u8>> = secret
                            .data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, v.0))
                            .collect();
                        (version.clone(), files)
                    });
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the Secret; retrying"),
        }
        if let Some((version, files)) = lagged.take_due(Instant::now()) {
            write_atomic(&volume.dir, &files)?;
            written += 1;
            tracing::info!(secret = %volume.name, version = %version, dir = %volume.dir.display(), "volume updated");
        }
        let next_poll = Instant::now() + volume.poll;
        let wake = lagged
            .next_due()
            .map_or(next_poll, |due| due.min(next_poll));
        tokio::select! {
            _ = tokio::time::sleep_until(wake.into()) => {}
            _ = stop.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_version_is_due_its_delay_after_it_was_first_seen() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut lagged = Lagged::new(ms(1500));
        lagged.observe(t0, "1", || "v1");
        assert_eq!(lagged.take_due(t0), Some("v1"), "the first version at once");
        lagged.observe(t0 + ms(100), "2", || "v2");
        lagged.observe(t0 + ms(200), "2", || unreachable!("seen before"));
        // A third version while the second waits: not held back behind it.
        lagged.observe(t0 + ms(700), "3", || "v3");
        assert_eq!(lagged.take_due(t0 + ms(1599)), None);
        assert_eq!(lagged.take_due(t0 + ms(1600)), Some("v2"));
        assert_eq!(lagged.next_due(), Some(t0 + ms(2200)));
        assert_eq!(lagged.take_due(t0 + ms(2200)), Some("v3"));
        assert_eq!(lagged.take_due(t0 + ms(9000)), None);
    }

    #[test]
    fn versions_due_together_write_only_the_newest() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut lagged = Lagged::new(ms(600));
        lagged.observe(t0, "1", || 1);
        lagged.observe(t0 + ms(10), "2", || 2);
        lagged.observe(t0 + ms(20), "3", || 3);
        assert_eq!(lagged.take_due(t0 + ms(700)), Some(3));
        assert_eq!(lagged.next_due(), None);
    }
}
