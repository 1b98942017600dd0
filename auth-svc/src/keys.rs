//! The key ring this replica signs with, reloaded from the mounted Secret without a restart.

use std::path::PathBuf;
use std::sync::Arc;

use authstack_bus::EventPublisher;
use authstack_keyring::KeyRing;
use authstack_keyring::jwt::TokenSigner;
use authstack_keyring::watch::{self, WatchOptions};
use authstack_protocol::model::KeySet;
use authstack_protocol::{Event, EventKind};
use tokio::sync::watch as tokio_watch;

/// What a replica needs from one key ring: the signer and the public set.
pub struct ActiveKeys {
    /// Ring generation.
    pub generation: u64,
    /// Signs with the active key.
    pub signer: TokenSigner,
    /// Pending, active and retiring public keys.
    pub key_set: KeySet,
}

impl ActiveKeys {
    fn from_ring(ring: &KeyRing) -> Result<Self, authstack_keyring::KeyringError> {
        Ok(ActiveKeys {
            generation: ring.generation,
            signer: TokenSigner::for_active_key(ring)?,
            key_set: ring.key_set(),
        })
    }
}

/// The current keys; cheap to clone and read.
#[derive(Clone)]
pub struct KeyStore {
    current: tokio_watch::Receiver<Arc<ActiveKeys>>,
}

impl KeyStore {
    /// Loads the ring from `dir` (waiting until one is there), then follows its changes:
    /// every new ring becomes the signing ring at once and is announced as `keys.rotated`
    /// (with the public set) so gateways can refresh their verification keys.
    pub async fn start(
        dir: PathBuf,
        options: WatchOptions,
        events: EventPublisher,
    ) -> Result<Self, authstack_keyring::KeyringError> {
        let initial = watch::load_when_ready(&dir, options.poll_interval).await;
        let first = Arc::new(ActiveKeys::from_ring(&initial.0)?);
        tracing::info!(
            generation = first.generation,
            kid = first.signer.kid(),
            "key ring loaded"
        );
        let (tx, current) = tokio_watch::channel(first.clone());
        announce(&events, &first);
        let mut rings = watch::spawn(dir, initial, options);
        tokio::spawn(async move {
            while rings.changed().await.is_ok() {
                let ring = rings.borrow_and_update().clone();
                match ActiveKeys::from_ring(&ring) {
                    Ok(keys) => {
                        let keys = Arc::new(keys);
                        tracing::info!(
                            generation = keys.generation,
                            kid = keys.signer.kid(),
                            "now signing with the new key ring"
                        );
                        metrics::counter!("authstack_key_ring_reloads_total").increment(1);
                        tx.send_replace(keys.clone());
                        announce(&events, &keys);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "new key ring unusable; still signing with the previous one")
                    }
                }
            }
        });
        Ok(KeyStore { current })
    }

    /// A store with a fixed ring (tests).
    pub fn fixed(ring: &KeyRing) -> Result<Self, authstack_keyring::KeyringError> {
        let (_tx, current) = tokio_watch::channel(Arc::new(ActiveKeys::from_ring(ring)?));
        Ok(KeyStore { current })
    }

    /// The keys in force now.
    pub fn current(&self) -> Arc<ActiveKeys> {
        self.current.borrow().clone()
    }
}

fn announce(events: &EventPublisher, keys: &ActiveKeys) {
    events.publish(Event::now(
        EventKind::KeysRotated,
        None,
        serde_json::json!({
            "generation": keys.generation,
            "active_kid": keys.signer.kid(),
            "key_set": keys.key_set,
        }),
    ));
}
