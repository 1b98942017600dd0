//! Keeping a mounted key ring current: inotify on the directory (kubelet's `..data` swap shows up
//! as a rename there) plus a polling fallback for file systems without notifications.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

use crate::{KEYRING_FILE, KeyRing, KeyringError};

/// Reads and validates `<dir>/keyring.json`.
pub fn load(dir: &Path) -> Result<(KeyRing, Vec<u8>), KeyringError> {
    let path = dir.join(KEYRING_FILE);
    let bytes = std::fs::read(&path).map_err(|source| KeyringError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let ring = KeyRing::from_json(&bytes)?;
    Ok((ring, bytes))
}

/// Waits until the key directory holds a valid ring, retrying every `retry`.
pub async fn load_when_ready(dir: &Path, retry: Duration) -> (KeyRing, Vec<u8>) {
    loop {
        match load(dir) {
            Ok(loaded) => return loaded,
            Err(e) => {
                tracing::warn!(error = %e, "key ring not loadable yet; retrying");
                tokio::time::sleep(retry).await;
            }
        }
    }
}

/// How [`spawn`] notices changes.
#[derive(Clone, Copy, Debug)]
pub struct WatchOptions {
    /// Re-read the file this often even without notifications.
    pub poll_interval: Duration,
    /// Use inotify as well (reacts within milliseconds).
    pub notifications: bool,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            poll_interval: Duration::from_secs(1),
            notifications: true,
        }
    }
}

/// Spawns a task that publishes every new valid ring found in `dir` on the returned channel.
///
/// Invalid or half-written files are logged and ignored: the previous ring stays in use. The
/// task ends when every receiver is dropped.
pub fn spawn(
    dir: PathBuf,
    initial: (KeyRing, Vec<u8>),
    options: WatchOptions,
) -> watch::Receiver<Arc<KeyRing>> {
    let poll_interval = options.poll_interval;
    let (tx, rx) = watch::channel(Arc::new(initial.0));
    let mut last_bytes = initial.1;
    let (notify_tx, mut notify_rx) = mpsc::channel::<()>(1);
    let watcher = if !options.notifications {
        Err(notify::Error::generic("disabled by configuration"))
    } else {
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok() {
                let _ = notify_tx.try_send(());
            }
        })
        .and_then(|mut w| w.watch(&dir, RecursiveMode::NonRecursive).map(|_| w))
    };
    let watcher = match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, dir = %dir.display(), "file notifications unavailable; polling only");
            None
        }
    };
    tokio::spawn(async move {
        let _watcher = watcher;
        let mut tick = tokio::time::interval(poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tx.closed() => return,
                _ = tick.tick() => {}
                Some(()) = notify_rx.recv() => {
                    // Let a burst of events (new dir, link, rename, cleanup) settle.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    while notify_rx.try_recv().is_ok() {}
                }
            }
            match load(&dir) {
                Ok((ring, bytes)) if bytes != last_bytes => {
                    tracing::info!(
                        generation = ring.generation,
                        active = ring.active().map(|k| k.kid.as_str()).unwrap_or(""),
                        keys = ring.keys.len(),
                        "key ring reloaded"
                    );
                    last_bytes = bytes;
                    tx.send_replace(Arc::new(ring));
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "ignoring unreadable key ring; keeping the current one")
                }
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::SigningAlgorithm;
    use crate::layout::write_atomic;
    use crate::material::generate;

    fn files(ring: &KeyRing) -> BTreeMap<String, Vec<u8>> {
        BTreeMap::from([(KEYRING_FILE.to_string(), ring.to_json())])
    }

    #[tokio::test]
    async fn picks_up_kubelet_swaps_quickly_and_ignores_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let first = KeyRing::with_active_key(
            generate(SigningAlgorithm::EdDSA).unwrap(),
            chrono::Utc::now(),
        );
        write_atomic(dir.path(), &files(&first)).unwrap();
        let initial = load(dir.path()).unwrap();
        // A long poll interval proves the notification path does the work.
        let options = WatchOptions {
            poll_interval: Duration::from_secs(30),
            notifications: true,
        };
        let mut rx = spawn(dir.path().to_path_buf(), initial, options);
        assert_eq!(rx.borrow().generation, 1);

        let mut second = first.clone();
        second.generation = 2;
        let started = std::time::Instant::now();
        write_atomic(dir.path(), &files(&second)).unwrap();
        tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rx.borrow_and_update().generation, 2);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "took {:?}",
            started.elapsed()
        );

        write_atomic(
            dir.path(),
            &BTreeMap::from([(KEYRING_FILE.to_string(), b"{oops".to_vec())]),
        )
        .unwrap();
        let changed = tokio::time::timeout(Duration::from_millis(300), rx.changed()).await;
        assert!(changed.is_err(), "a broken file must not replace the ring");
        assert_eq!(rx.borrow().generation, 2);
    }

    #[tokio::test]
    async fn polling_alone_finds_changes() {
        let dir = tempfile::tempdir().unwrap();
        let ring = KeyRing::with_active_key(
            generate(SigningAlgorithm::EdDSA).unwrap(),
            chrono::Utc::now(),
        );
        std::fs::write(dir.path().join(KEYRING_FILE), ring.to_json()).unwrap();
        let initial = load(dir.path()).unwrap();
        let options = WatchOptions {
            poll_interval: Duration::from_millis(50),
            notifications: false,
        };
        let mut rx = spawn(dir.path().to_path_buf(), initial, options);
        let mut next = ring.clone();
        next.generation = 7;
        std::fs::write(dir.path().join(KEYRING_FILE), next.to_json()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rx.borrow().generation, 7);
    }
}
