//! Leader election on a `coordination.k8s.io/v1` Lease.
//!
//! Written here rather than taken from crates.io: `kube-leader-election` targets kube 4, and
//! `kube-lease-manager` (kube 5) acquires through server-side-apply field ownership instead of
//! resourceVersion preconditions and needs a newer Rust than the workspace's MSRV.
//!
//! Protocol (the one client-go uses):
//! - every write is a create (fails if the Lease exists) or a replace carrying the
//!   resourceVersion that was read (fails with 409 if anyone wrote in between), so two replicas
//!   can never both believe they acquired it;
//! - a Lease held by someone else is taken over only after its record (holder, renewTime) has
//!   stayed unchanged for the lease duration **by the local clock**, so clock skew between
//!   replicas does not matter;
//! - the leader renews every renew interval and steps down if it could not renew within the
//!   renew deadline (2/3 of the lease duration), before anyone may take over;
//! - on graceful shutdown the leader clears `holderIdentity`, so a standby takes over at its
//!   next retry instead of waiting for expiry.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::Mutex;

use crate::builders::meta::MANAGER;
use crate::error::{Error, Result};

/// Lease settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseConfig {
    /// Lease name.
    pub name: String,
    /// Lease namespace.
    pub namespace: String,
    /// This replica's identity.
    pub identity: String,
    /// Validity without renewal.
    pub lease_duration: Duration,
    /// Renewal period of the leader.
    pub renew_interval: Duration,
    /// Acquisition retry period of a standby.
    pub retry_interval: Duration,
}

impl LeaseConfig {
    /// The leader steps down when it could not renew for this long (2/3 of the duration).
    pub fn renew_deadline(&self) -> Duration {
        self.lease_duration * 2 / 3
    }
}

/// What to do with the Lease as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// We hold it: renew.
    Renew,
    /// Free or expired: take it (incrementing `leaseTransitions` when the holder changes).
    Acquire,
    /// Someone else holds it.
    HeldBy(String),
}

/// Decides from the Lease spec, our identity and how long its record has been unchanged (by our
/// clock).
pub fn decide(
    spec: &LeaseSpec,
    identity: &str,
    unchanged_for: Duration,
    default: Duration,
) -> Decision {
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder.is_empty() {
        return Decision::Acquire;
    }
    if holder == identity {
        return Decision::Renew;
    }
    let duration = spec
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map(Duration::from_secs)
        .unwrap_or(default);
    if unchanged_for >= duration {
        Decision::Acquire
    } else {
        Decision::HeldBy(holder.to_owned())
    }
}

/// The record identity: a change means the holder is alive.
fn record(spec: Option<&LeaseSpec>) -> (Option<String>, Option<Timestamp>, Option<i32>) {
    (
        spec.and_then(|s| s.holder_identity.clone()),
        spec.and_then(|s| s.renew_time.as_ref()).map(|t| t.0),
        spec.and_then(|s| s.lease_transitions),
    )
}

type Observed = ((Option<String>, Option<Timestamp>, Option<i32>), Instant);

/// Acquires, renews and releases the Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    cfg: LeaseConfig,
    observed: Mutex<Option<Observed>>,
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_conflict() || s.is_already_exists())
}

impl LeaderElector {
    /// An elector for `cfg`.
    pub fn new(client: Client, cfg: LeaseConfig) -> Self {
        LeaderElector {
            api: Api::namespaced(client, &cfg.namespace),
            cfg,
            observed: Mutex::new(None),
        }
    }

    /// The settings.
    pub fn config(&self) -> &LeaseConfig {
        &self.cfg
    }

    fn seconds(&self) -> i32 {
        i32::try_from(self.cfg.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }

    /// Tries to acquire or renew; `Ok(true)` when this replica holds the Lease afterwards.
    pub async fn try_acquire_or_renew(&self) -> Result<bool> {
        let now = MicroTime(Timestamp::now());
        let pp = PostParams {
            field_manager: Some(MANAGER.into()),
            ..PostParams::default()
        };
        let Some(mut lease) = self.api.get_opt(&self.cfg.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.cfg.name.clone()),
                    namespace: Some(self.cfg.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.cfg.identity.clone()),
                    lease_duration_seconds: Some(self.seconds()),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&pp, &lease).await {
                Ok(_) => Ok(true),
                Err(e) if is_conflict(&e) => Ok(false),
                Err(e) => Err(e.into()),
            };
        };

        let spec = lease.spec.clone().unwrap_or_default();
        let unchanged_for = {
            let mut observed = self.observed.lock().await;
            let current = record(Some(&spec));
            match observed.as_ref() {
                Some((r, since)) if *r == current => since.elapsed(),
                _ => {
                    *observed = Some((current, Instant::now()));
                    Duration::ZERO
                }
            }
        };
        let mut next = spec.clone();
        match decide(
            &spec,
            &self.cfg.identity,
            unchanged_for,
            self.cfg.lease_duration,
        ) {
            Decision::HeldBy(holder) => {
                tracing::debug!(%holder, "lease held by another replica");
                return Ok(false);
            }
            Decision::Renew => {
                next.renew_time = Some(now);
                next.lease_duration_seconds = Some(self.seconds());
            }
            Decision::Acquire => {
                let previous = spec.holder_identity.as_deref().unwrap_or_default();
                if previous != self.cfg.identity {
                    next.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                }
                next.holder_identity = Some(self.cfg.identity.clone());
                next.acquire_time = Some(now.clone());
                next.renew_time = Some(now);
                next.lease_duration_seconds = Some(self.seconds());
            }
        }
        lease.spec = Some(next);
        // `lease.metadata.resourceVersion` is what we read: the replace is conditional on it.
        match self.api.replace(&self.cfg.name, &pp, &lease).await {
            Ok(_) => Ok(true),
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Gives the Lease up if this replica holds it (clears `holderIdentity`).
    pub async fn release(&self) -> Result<()> {
        let Some(mut lease) = self.api.get_opt(&self.cfg.name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.cfg.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.acquire_time = None;
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        let pp = PostParams {
            field_manager: Some(MANAGER.into()),
            ..PostParams::default()
        };
        match self.api.replace(&self.cfg.name, &pp, &lease).await {
            Ok(_) => Ok(()),
            // Someone else wrote it: it is not ours to release any more.
            Err(e) if is_conflict(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// How a term of leadership ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TermEnd {
    /// Shutdown was requested; the Lease was released.
    Shutdown,
}

/// Waits for the Lease, runs `lead` while holding it, renews it, and releases it on shutdown.
///
/// `lead` gets a future that resolves when leadership ends (shutdown or loss) and must stop its
/// work then. Losing the Lease is an error: the process should exit and be restarted as a
/// candidate, as client-go controllers do.
pub async fn run<F, Fut>(
    elector: LeaderElector,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    on_leader: impl Fn(bool),
    lead: F,
) -> Result<TermEnd>
where
    F: FnOnce(tokio::sync::watch::Receiver<bool>) -> Fut,
    Fut: std::future::Future<Output = Result<()>> + Send + 'static,
{
    let cfg = elector.config().clone();
    tracing::info!(lease = %cfg.name, namespace = %cfg.namespace, identity = %cfg.identity, "waiting for leadership");
    loop {
        if *shutdown.borrow() {
            return Ok(TermEnd::Shutdown);
        }
        match elector.try_acquire_or_renew().await {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "acquiring the lease failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(cfg.retry_interval) => {}
            // A dropped sender means nobody can ask any more: treat it as shutdown.
            changed = shutdown.changed() => if changed.is_err() {
                return Ok(TermEnd::Shutdown);
            }
        }
    }
    tracing::info!(identity = %cfg.identity, "became leader");
    on_leader(true);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut work = tokio::spawn(lead(stop_rx));
    let mut last_renew = Instant::now();
    let outcome: Result<TermEnd> = loop {
        tokio::select! {
            _ = tokio::time::sleep(cfg.renew_interval) => {
                match elector.try_acquire_or_renew().await {
                    Ok(true) => last_renew = Instant::now(),
                    Ok(false) => break Err(Error::Leadership("the lease was taken by another replica".into())),
                    Err(e) => {
                        tracing::warn!(error = %e, "renewing the lease failed");
                        if last_renew.elapsed() >= cfg.renew_deadline() {
                            break Err(Error::Leadership(format!("could not renew the lease within {:?}", cfg.renew_deadline())));
                        }
                    }
                }
            }
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break Ok(TermEnd::Shutdown);
                }
            }
            done = &mut work => {
                break match done {
                    Ok(Ok(())) => Ok(TermEnd::Shutdown),
                    Ok(Err(e)) => Err(e),
                    Err(e) => Err(Error::Leadership(format!("controller task failed: {e}"))),
                };
            }
        }
    };
    on_leader(false);
    let _ = stop_tx.send(true);
    if !work.is_finished() {
        // Let in-flight reconciles finish, but never past the point where another replica
        // could take over.
        match tokio::time::timeout(cfg.renew_deadline(), &mut work).await {
            Ok(_) => {}
            Err(_) => {
                tracing::warn!("controller did not stop in time; aborting it");
                work.abort();
            }
        }
    }
    if outcome.is_ok() {
        match elector.release().await {
            Ok(()) => tracing::info!("released the lease"),
            Err(e) => tracing::warn!(error = %e, "releasing the lease failed"),
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: Option<&str>, secs: Option<i32>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(Into::into),
            lease_duration_seconds: secs,
            ..LeaseSpec::default()
        }
    }

    const D: Duration = Duration::from_secs(15);

    #[test]
    fn free_leases_are_acquired() {
        assert_eq!(
            decide(&spec(None, None), "a", Duration::ZERO, D),
            Decision::Acquire
        );
        assert_eq!(
            decide(&spec(Some(""), Some(15)), "a", Duration::ZERO, D),
            Decision::Acquire
        );
    }

    #[test]
    fn own_lease_is_renewed() {
        assert_eq!(
            decide(&spec(Some("a"), Some(15)), "a", Duration::from_secs(60), D),
            Decision::Renew
        );
    }

    #[test]
    fn others_lease_is_respected_until_it_expires_by_our_clock() {
        let s = spec(Some("b"), Some(15));
        assert_eq!(
            decide(&s, "a", Duration::from_secs(14), D),
            Decision::HeldBy("b".into())
        );
        assert_eq!(
            decide(&s, "a", Duration::from_secs(15), D),
            Decision::Acquire
        );
        // The lease's own duration wins over our default.
        let short = spec(Some("b"), Some(3));
        assert_eq!(
            decide(&short, "a", Duration::from_secs(3), D),
            Decision::Acquire
        );
        let unset = spec(Some("b"), None);
        assert_eq!(
            decide(&unset, "a", Duration::from_secs(10), D),
            Decision::HeldBy("b".into())
        );
    }

    #[test]
    fn renew_deadline_is_before_expiry() {
        let cfg = LeaseConfig {
            name: "l".into(),
            namespace: "n".into(),
            identity: "a".into(),
            lease_duration: Duration::from_secs(15),
            renew_interval: Duration::from_secs(5),
            retry_interval: Duration::from_secs(2),
        };
        assert_eq!(cfg.renew_deadline(), Duration::from_secs(10));
    }
}
