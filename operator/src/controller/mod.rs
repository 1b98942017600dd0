//! The reconciler, in phases (as Stackable's operators do; kube-rs `controller-rs` is the model
//! for the controller around them). One reconcile of an AuthStack:
//!
//! 1. [`validate`]: the spec → [`Settings`]. An invalid spec sets `Degraded` (reason
//!    `InvalidSpec`), emits a Warning event and stops there: nothing is applied.
//! 2. [`dereference`]: read the generated-credential Secrets (values are reused, never
//!    regenerated), the users' external URL Secrets and the stored key ring.
//! 3. [`build`]: advance the key ring ([`crate::keys::plan`]) and build every desired object.
//!    Pure.
//! 4. [`apply`]: write the signing Secret only when the ring changed, conditional on the
//!    resourceVersion read (re-read and re-planned on conflict); server-side apply every object
//!    that drifted; delete the ones that must not exist (only if this AuthStack controls them).
//! 5. [`report`]: the status from the workloads' real status, written only when it changed.
//!
//! Then [`requeue`] says when to look again. Every kind the builders emit is watched
//! ([`stores`]), and live objects are read from the watches' stores.

pub mod apply;
pub mod build;
pub mod dereference;
pub mod report;
pub mod requeue;
pub mod stores;
pub mod validate;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use authstack_keyring::material;
use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ListParams;
use kube::core::ApiResource;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};

use self::apply::{ApplyError, KeyRingWrite};
use self::dereference::Read;
use self::requeue::{Backoffs, Tuning};
use self::stores::Stores;
use self::validate::{ValidateError, Validated};
use crate::builders::meta::MANAGER;
use crate::builders::stack::Obsolete;
use crate::crd::AuthStack;
use crate::error::{Error, Result};
use crate::keys::{self, KeyPlan};
use crate::metrics;
use crate::settings::{Images, Settings};
use crate::status::{self, Degradation};

/// Longest Event note: the API rejects notes over 1 KiB.
pub const EVENT_NOTE_MAX: usize = 1000;
/// Reads and writes of the signing-key Secret per reconcile when it keeps changing under us.
pub const KEY_RING_WRITE_ATTEMPTS: usize = 3;
/// `Degraded` reason of an invalid spec.
pub const INVALID_SPEC: &str = "InvalidSpec";
/// Event reason of a failed reconcile.
pub const RECONCILE_ERROR: &str = "ReconcileError";

/// What the controller needs besides a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControllerConfig {
    /// Default images.
    pub images: Images,
    /// This replica's name in Events (`reportingInstance`).
    pub instance: String,
    /// The namespace to watch (`None`: all).
    pub namespace: Option<String>,
    /// Timing knobs.
    pub tuning: Tuning,
}

/// What every reconcile shares.
pub struct Context {
    client: Client,
    images: Images,
    recorder: Recorder,
    stores: Stores,
    tuning: Tuning,
    backoffs: Backoffs,
}

impl Context {
    /// A context for `client`; events are reported as `authstack-operator` / `config.instance`.
    pub fn new(client: Client, config: ControllerConfig, stores: Stores) -> Self {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance: Some(config.instance),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            images: config.images,
            stores,
            backoffs: Backoffs::new(&config.tuning),
            tuning: config.tuning,
        }
    }

    async fn publish(
        &self,
        stack: &AuthStack,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(truncate_note(note)),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &stack.object_ref(&())).await {
            tracing::warn!(error = %e, %reason, "publishing an event failed");
        }
    }

    /// One Normal event per kind of change (`Created`, `Updated`, `Deleted`).
    async fn report_changes(
        &self,
        stack: &AuthStack,
        changes: &BTreeMap<&'static str, Vec<String>>,
    ) {
        for (reason, objects) in changes {
            tracing::info!(%reason, objects = ?objects, "applied changes");
            let action = if *reason == "Deleted" {
                "Delete"
            } else {
                "Apply"
            };
            let note = format!("{reason} {}", objects.join(", "));
            self.publish(stack, EventType::Normal, reason, action, note)
                .await;
        }
    }

    /// One event per step of the key ring.
    async fn report_key_actions(&self, stack: &AuthStack, plan: &KeyPlan) {
        for action in &plan.actions {
            let (reason, warning, note) = keys::event_for(action);
            tracing::info!(%reason, %note, "key ring changed");
            ::metrics::counter!(metrics::KEY_RING_CHANGES, "action" => keys::action_label(action))
                .increment(1);
            let type_ = if warning {
                EventType::Warning
            } else {
                EventType::Normal
            };
            self.publish(stack, type_, reason, &keys::event_action(action), note)
                .await;
        }
    }
}

fn truncate_note(mut note: String) -> String {
    if note.len() > EVENT_NOTE_MAX {
        let mut cut = EVENT_NOTE_MAX - 3;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
        note.push_str("...");
    }
    note
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs the controller until `stop` turns true (in-flight reconciles finish first).
pub async fn run(
    client: Client,
    config: ControllerConfig,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    let ns = config.namespace.clone();
    let ns = ns.as_deref();
    let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = stop.wait_for(|v| *v).await;
        let _ = shutdown_tx.send(());
    });
    tracing::info!(
        namespace = ns.unwrap_or("<all>"),
        "starting the AuthStack controller"
    );
    let controller = Controller::new(api::<AuthStack>(&client, ns), watcher::Config::default())
        .with_config(
            kube::runtime::controller::Config::default().concurrency(config.tuning.concurrency),
        );
    let (controller, stores) = stores::watch_owned(controller, &client, ns);
    let ctx = Arc::new(Context::new(client, config, stores));
    metrics::describe();
    controller
        .graceful_shutdown_on(async move {
            let _ = shutdown_rx.await;
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((obj, action)) => tracing::debug!(%obj, ?action, "reconciled"),
                Err(e) => tracing::debug!(error = %e, "reconcile attempt failed"),
            }
        })
        .await;
    tracing::info!("controller stopped");
    Ok(())
}

/// Checks that the AuthStack API is served (the CRD is installed).
pub async fn check_api(client: &Client, namespace: Option<&str>) -> Result<()> {
    match api::<AuthStack>(client, namespace)
        .list(&ListParams::default().limit(1))
        .await
    {
        Ok(_) => Ok(()),
        // kube-apiserver answers a path no API serves with a plain-text `404 page not found`,
        // not a NotFound Status: the code is what counts.
        Err(kube::Error::Api(s)) if s.code == 404 => Err(Error::CrdMissing),
        Err(e) => Err(e.into()),
    }
}

fn error_policy(stack: Arc<AuthStack>, err: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoffs.next_delay(&ObjectRef::from_obj(&*stack));
    tracing::warn!(
        namespace = stack.namespace().unwrap_or_default(),
        name = %stack.name_any(),
        error = %err,
        retry_in = ?delay,
        "reconcile failed"
    );
    Action::requeue(delay)
}

/// Reconciles one AuthStack: the phases, with metrics, backoff bookkeeping and the failure
/// report (Warning event, `Degraded` status) around them.
#[tracing::instrument(
    name = "reconcile",
    skip_all,
    fields(namespace = %stack.namespace().unwrap_or_default(), name = %stack.name_any())
)]
pub async fn reconcile(stack: Arc<AuthStack>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let result = reconcile_phases(&stack, &ctx).await;
    ::metrics::histogram!(metrics::RECONCILE_DURATION).record(started.elapsed().as_secs_f64());
    match result {
        Ok(action) => {
            ::metrics::counter!(metrics::RECONCILIATIONS, "result" => "success").increment(1);
            ctx.backoffs.reset(&ObjectRef::from_obj(&*stack));
            Ok(action)
        }
        Err(err) => {
            ::metrics::counter!(metrics::RECONCILIATIONS, "result" => "error").increment(1);
            ::metrics::counter!(metrics::RECONCILE_ERRORS, "reason" => err.reason()).increment(1);
            report_failure(&stack, &ctx, &err).await;
            Err(err)
        }
    }
}

/// Validate → dereference → build → apply → status.
async fn reconcile_phases(stack: &AuthStack, ctx: &Context) -> Result<Action> {
    let settings = match validate::validate(stack, &ctx.images) {
        Ok(Validated::Reconcile(settings)) => *settings,
        Ok(Validated::Skip) => return Ok(Action::await_change()),
        Err(invalid) => return invalid_spec(stack, ctx, &invalid).await,
    };
    let uid = stack.metadata.uid.clone().unwrap_or_default();
    let namespace = settings.names.namespace.clone();

    let read = dereference::dereference(&ctx.client, &ctx.stores, &settings, &uid).await?;
    let (plan, keys_written) =
        key_ring(stack, ctx, &settings, &uid, read.signing_secret.clone()).await?;
    let built = build::objects(&settings, &read, &plan)?;
    let applied = apply::apply_all(
        &ctx.client,
        &ctx.stores,
        &namespace,
        &uid,
        &built.desired,
        &built.obsolete,
    )
    .await?;
    ctx.report_changes(stack, &applied.changes).await;

    let degraded = report::external_degradation(&read.external_problems);
    let observed = report::observe(&settings, &applied, &read.external_problems, &plan);
    let new_status = status::build(stack, Some(observed), degraded.as_ref(), &status::now());
    let written = report::write(&ctx.client, stack, &new_status).await;
    let deleted = match &written {
        Err(e) if e.is_not_found() => true,
        _ if keys_written || !applied.changes.is_empty() => {
            apply::owner_gone(&ctx.client, stack).await?
        }
        _ => false,
    };
    if deleted {
        // The garbage collector may have removed the stack's objects before this reconcile
        // wrote some of them again: remove them rather than wait for the collector.
        tracing::info!("AuthStack deleted during the reconcile; removing what it wrote");
        let mut wrote: Vec<Obsolete> = built
            .desired
            .iter()
            .map(|d| Obsolete {
                resource: d.resource.clone(),
                name: d.name.clone(),
            })
            .collect();
        wrote.push(Obsolete {
            resource: ApiResource::erase::<Secret>(&()),
            name: settings.names.signing_keys(),
        });
        for obj in &wrote {
            apply::delete_if_owned(&ctx.client, &ctx.stores, &namespace, &uid, obj).await?;
        }
        return Ok(Action::await_change());
    }
    written?;
    Ok(Action::requeue(requeue::after_success(
        &ctx.tuning,
        plan.next_deadline,
        degraded.is_some(),
        Utc::now(),
    )))
}

/// Plans the key ring from the stored Secret and writes it when it changed; on a concurrent
/// write, reads the Secret again and re-plans. Returns the plan and whether it was written.
async fn key_ring(
    stack: &AuthStack,
    ctx: &Context,
    settings: &Settings,
    uid: &str,
    mut stored: Option<Secret>,
) -> Result<(KeyPlan, bool)> {
    let name = settings.names.signing_keys();
    for _attempt in 0..KEY_RING_WRITE_ATTEMPTS {
        let plan = build::key_plan(
            stored.as_ref(),
            settings,
            Utc::now(),
            &mut material::generate,
        )?;
        match apply::write_key_ring(&ctx.client, settings, stored.as_ref(), &plan).await? {
            KeyRingWrite::Unchanged => return Ok((plan, false)),
            KeyRingWrite::Written => {
                ctx.report_key_actions(stack, &plan).await;
                return Ok((plan, true));
            }
            KeyRingWrite::Conflict => {
                tracing::info!(secret = %name, "signing Secret changed concurrently; re-planning");
                stored = dereference::owned_secret(
                    &ctx.client,
                    &ctx.stores,
                    &settings.names.namespace,
                    &name,
                    uid,
                    Read::Fresh,
                )
                .await?;
            }
        }
    }
    Err(ApplyError::KeyRingConflict(name).into())
}

/// An invalid spec: `Degraded` with the problems, a Warning event, nothing applied. A spec
/// change triggers the next reconcile; nothing to retry until then.
async fn invalid_spec(stack: &AuthStack, ctx: &Context, invalid: &ValidateError) -> Result<Action> {
    let message = invalid.to_string();
    tracing::warn!(%message, "invalid AuthStack");
    ctx.publish(
        stack,
        EventType::Warning,
        INVALID_SPEC,
        "Validate",
        message.clone(),
    )
    .await;
    let degraded = Degradation {
        reason: INVALID_SPEC.into(),
        message,
    };
    let new_status = status::build(stack, None, Some(&degraded), &status::now());
    report::write(&ctx.client, stack, &new_status).await?;
    Ok(Action::requeue(ctx.tuning.max_requeue))
}

/// A failed reconcile: a Warning event and `Degraded` with the error's reason.
async fn report_failure(stack: &AuthStack, ctx: &Context, err: &Error) {
    ctx.publish(
        stack,
        EventType::Warning,
        RECONCILE_ERROR,
        "Reconcile",
        err.to_string(),
    )
    .await;
    let degraded = Degradation {
        reason: err.reason().into(),
        message: err.to_string(),
    };
    let new_status = status::build(stack, None, Some(&degraded), &status::now());
    if let Err(e) = report::write(&ctx.client, stack, &new_status).await {
        tracing::warn!(error = %e, "recording the failure in the status failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_cut_below_the_api_limit_on_a_char_boundary() {
        assert_eq!(truncate_note("short".into()), "short");
        let long = "é".repeat(EVENT_NOTE_MAX);
        let cut = truncate_note(long);
        assert!(cut.len() <= EVENT_NOTE_MAX, "{}", cut.len());
        assert!(cut.ends_with("..."));
    }
}
