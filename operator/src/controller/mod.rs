//! The reconciler: the thin layer between the pure builders and the API server.
//!
//! One reconcile of an AuthStack:
//! 1. validate the spec ([`crate::settings::resolve`]); an invalid spec sets `Degraded`, emits
//!    an `InvalidSpec` Warning and stops there;
//! 2. read the generated-credential Secrets (values are reused, never regenerated) and the
//!    users' external URL Secrets;
//! 3. advance the key ring ([`crate::keys::plan`]) and write the signing Secret only when it
//!    changed, conditional on the resourceVersion read;
//! 4. server-side apply every desired object that drifted, delete the ones that must not exist
//!    (only if this AuthStack controls them);
//! 5. patch the status subresource from the workloads' real status;
//! 6. requeue at the next key-rotation deadline (at most 5 minutes later).

pub mod apply;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authstack_keyring::material;
use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::ApiResource;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use self::apply::Outcome;
use crate::builders::auth_svc::UrlFingerprints;
use crate::builders::credentials::{
    PostgresCredentials, RabbitmqCredentials, fingerprint_external, fingerprint_managed,
    secret_value,
};
use crate::builders::gateway;
use crate::builders::meta::{MANAGER, Names, is_controlled_by, managed_by_selector};
use crate::builders::stack::{self, Inputs, Obsolete};
use crate::crd::{AuthStack, AuthStackStatus, ComponentsStatus, SecretKeyRef};
use crate::error::{Error, Result};
use crate::keys::{self, KeyPlan};
use crate::settings::{BackingService, Images, Settings, resolve};
use crate::status::{self, Degradation};

/// Longest time between two reconciles of a stack.
pub const MAX_REQUEUE: Duration = Duration::from_secs(300);
/// Requeue while an external URL Secret is missing (those Secrets are not watched).
pub const EXTERNAL_RETRY: Duration = Duration::from_secs(30);
/// Stacks reconciled at once: bounds the operator's peak memory; a reconcile is mostly
/// waiting on the API server, so a few in flight keep it busy.
pub const CONCURRENCY: u16 = 4;
const MAX_BACKOFF: Duration = Duration::from_secs(300);
const EVENT_NOTE_MAX: usize = 1000;

/// What every reconcile shares.
pub struct Context {
    client: Client,
    images: Images,
    recorder: Recorder,
    failures: Mutex<HashMap<ObjectRef<AuthStack>, u32>>,
}

impl Context {
    /// A context for `client`; events are reported as `authstack-operator` / `instance`.
    pub fn new(client: Client, images: Images, instance: String) -> Self {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance: Some(instance),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            images,
            failures: Mutex::new(HashMap::new()),
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
        let mut note = note;
        if note.len() > EVENT_NOTE_MAX {
            let mut cut = EVENT_NOTE_MAX - 3;
            while !note.is_char_boundary(cut) {
                cut -= 1;
            }
            note.truncate(cut);
            note.push_str("...");
        }
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &stack.object_ref(&())).await {
            tracing::warn!(error = %e, %reason, "publishing an event failed");
        }
    }

    fn backoff(&self, obj: &ObjectRef<AuthStack>) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(obj.clone()).or_insert(0);
        *n = n.saturating_add(1);
        backoff_delay(*n)
    }

    fn reset_backoff(&self, obj: &ObjectRef<AuthStack>) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(obj);
    }
}

/// Exponential backoff after `failures` consecutive failures: 1 s, 2 s, 4 s, ... at most 5 min.
pub fn backoff_delay(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    Duration::from_secs(1u64 << exp).min(MAX_BACKOFF)
}

/// Now, in whole seconds (what `Time` serializes).
fn now_time() -> Time {
    Time(Timestamp::from_second(Timestamp::now().as_second()).unwrap_or(Timestamp::UNIX_EPOCH))
}

fn parse<K: DeserializeOwned>(obj: &DynamicObject) -> Option<K> {
    serde_json::to_value(obj)
        .ok()
        .and_then(|v| serde_json::from_value(v).ok())
}

/// Runs the controller until `stop` turns true (in-flight reconciles finish first).
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    let client = ctx.client.clone();
    fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    {
        match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let ns = namespace.as_deref();
    let stacks: Api<AuthStack> = api(&client, ns);
    let owned = watcher::Config::default().labels(&managed_by_selector());
    let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = stop.wait_for(|v| *v).await;
        let _ = shutdown_tx.send(());
    });
    tracing::info!(
        namespace = ns.unwrap_or("<all>"),
        "starting the AuthStack controller"
    );
    Controller::new(stacks, watcher::Config::default())
        .with_config(kube::runtime::controller::Config::default().concurrency(CONCURRENCY))
        .owns(api::<Deployment>(&client, ns), owned.clone())
        .owns(api::<StatefulSet>(&client, ns), owned.clone())
        .owns(api::<Secret>(&client, ns), owned.clone())
        .owns(api::<Service>(&client, ns), owned)
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
    let api: Api<AuthStack> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    match api.list(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_not_found() => Err(Error::CrdMissing),
        Err(e) => Err(e.into()),
    }
}

fn error_policy(stack: Arc<AuthStack>, err: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff(&ObjectRef::from_obj(&*stack));
    tracing::warn!(
        name = %stack.name_any(),
        namespace = stack.namespace().unwrap_or_default(),
        error = %err,
        retry_in = ?delay,
        "reconcile failed"
    );
    Action::requeue(delay)
}

/// Reconciles one AuthStack (metrics, backoff bookkeeping and error reporting around
/// [`reconcile_stack`]).
pub async fn reconcile(stack: Arc<AuthStack>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let result = reconcile_stack(&stack, &ctx).await;
    metrics::histogram!("authstack_operator_reconcile_duration_seconds")
        .record(started.elapsed().as_secs_f64());
    match result {
        Ok(action) => {
            metrics::counter!("authstack_operator_reconciliations_total", "result" => "success")
                .increment(1);
            ctx.reset_backoff(&ObjectRef::from_obj(&*stack));
            Ok(action)
        }
        Err(err) => {
            metrics::counter!("authstack_operator_reconciliations_total", "result" => "error")
                .increment(1);
            metrics::counter!("authstack_operator_reconcile_errors_total", "reason" => err.reason())
                .increment(1);
            ctx.publish(
                &stack,
                EventType::Warning,
                "ReconcileError",
                "Reconcile",
                err.to_string(),
            )
            .await;
            let degraded = Degradation {
                reason: err.reason().into(),
                message: err.to_string(),
            };
            let previous = stack.status.clone().unwrap_or_default();
            let status = AuthStackStatus {
                observed_generation: stack.metadata.generation,
                conditions: status::conditions(
                    &previous.conditions,
                    previous.components.as_ref(),
                    Some(&degraded),
                    stack.metadata.generation,
                    &now_time(),
                ),
                ..previous
            };
            if let Err(e) = patch_status(&ctx.client, &stack, &status).await {
                tracing::warn!(error = %e, "recording the failure in the status failed");
            }
            Err(err)
        }
    }
}

async fn patch_status(client: &Client, stack: &AuthStack, status: &AuthStackStatus) -> Result<()> {
    if stack.status.as_ref() == Some(status) {
        return Ok(());
    }
    let Some(ns) = stack.namespace() else {
        return Ok(());
    };
    let api: Api<AuthStack> = Api::namespaced(client.clone(), &ns);
    let body = serde_json::json!({
        "apiVersion": AuthStack::api_version(&()),
        "kind": AuthStack::kind(&()),
        "metadata": { "name": stack.name_any() },
        "status": status,
    });
    api.patch_status(
        &stack.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
}

/// The reconcile proper.
pub async fn reconcile_stack(stack: &AuthStack, ctx: &Context) -> Result<Action> {
    if stack.metadata.deletion_timestamp.is_some() {
        // Owner references let the garbage collector remove everything.
        return Ok(Action::await_change());
    }
    let Some(uid) = stack.metadata.uid.clone() else {
        return Ok(Action::await_change());
    };
    let settings = match resolve(stack, &ctx.images) {
        Ok(s) => s,
        Err(invalid) => return invalid_spec(stack, ctx, invalid.to_string()).await,
    };
    let names = settings.names.clone();
    let client = &ctx.client;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &names.namespace);

    // Generated credentials: reuse what exists, generate only what is missing.
    let mut urls = UrlFingerprints::default();
    let mut problems = Vec::new();
    let pg_creds = match &settings.postgres {
        BackingService::Managed(_) => {
            let existing = owned_secret(&secrets, &names.postgres(), &uid).await?;
            let creds = PostgresCredentials::reuse_or_generate(existing.as_ref());
            urls.postgres = fingerprint_managed(&creds.password);
            Some(creds)
        }
        BackingService::External(r) => {
            let (fp, problem) = check_external(&secrets, r).await?;
            urls.postgres = fp;
            problems.extend(problem.map(|p| ("postgres", r.clone(), p)));
            None
        }
    };
    let mq_creds = match &settings.rabbitmq {
        BackingService::Managed(_) => {
            let existing = owned_secret(&secrets, &names.rabbitmq(), &uid).await?;
            let creds = RabbitmqCredentials::reuse_or_generate(existing.as_ref());
            urls.rabbitmq = fingerprint_managed(&creds.password);
            Some(creds)
        }
        BackingService::External(r) => {
            let (fp, problem) = check_external(&secrets, r).await?;
            urls.rabbitmq = fp;
            problems.extend(problem.map(|p| ("rabbitmq", r.clone(), p)));
            None
        }
    };

    // Signing keys.
    let (plan, keys_written) = reconcile_keys(stack, ctx, &settings, &secrets, &uid).await?;
    // Everything this reconcile wrote, in case the AuthStack is deleted meanwhile.
    let mut written = vec![Obsolete {
        resource: ApiResource::erase::<Secret>(&()),
        name: names.signing_keys(),
    }];

    // Everything else.
    let inputs = Inputs {
        postgres: pg_creds.as_ref(),
        rabbitmq: mq_creds.as_ref(),
        ring: &plan.ring,
        urls,
    };
    let mut changes: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let mut live: HashMap<(String, String), DynamicObject> = HashMap::new();
    for desired in stack::desired(&settings, &inputs)? {
        let (outcome, obj) = apply::apply(client, &names.namespace, &uid, &desired).await?;
        let what = format!("{} {}", desired.resource.kind, desired.name);
        match outcome {
            Outcome::Created => changes.entry("Created").or_default().push(what),
            Outcome::Updated => changes.entry("Updated").or_default().push(what),
            Outcome::Unchanged => {}
        }
        metrics::counter!(
            "authstack_operator_applies_total",
            "kind" => desired.resource.kind.clone(),
            "outcome" => format!("{outcome:?}").to_lowercase()
        )
        .increment(1);
        written.push(Obsolete {
            resource: desired.resource.clone(),
            name: desired.name.clone(),
        });
        live.insert((desired.resource.kind.clone(), desired.name.clone()), obj);
    }
    for gone in stack::obsolete(&settings) {
        if apply::delete_if_owned(client, &names.namespace, &uid, &gone).await? {
            changes
                .entry("Deleted")
                .or_default()
                .push(format!("{} {}", gone.resource.kind, gone.name));
        }
    }
    for (reason, objects) in &changes {
        tracing::info!(stack = %names.instance, namespace = %names.namespace, %reason, objects = ?objects, "applied changes");
        let action = if *reason == "Deleted" {
            "Delete"
        } else {
            "Apply"
        };
        ctx.publish(
            stack,
            EventType::Normal,
            reason,
            action,
            format!("{reason} {}", objects.join(", ")),
        )
        .await;
    }

    // Status.
    let get = |kind: &str, name: String| live.get(&(kind.to_owned(), name));
    let components = ComponentsStatus {
        postgres: match &settings.postgres {
            BackingService::Managed(_) => status::stateful_set(
                get("StatefulSet", names.postgres())
                    .and_then(parse::<StatefulSet>)
                    .as_ref(),
            ),
            BackingService::External(r) => external_status(&problems, "postgres", r),
        },
        rabbitmq: match &settings.rabbitmq {
            BackingService::Managed(_) => status::stateful_set(
                get("StatefulSet", names.rabbitmq())
                    .and_then(parse::<StatefulSet>)
                    .as_ref(),
            ),
            BackingService::External(r) => external_status(&problems, "rabbitmq", r),
        },
        auth_service: status::deployment(
            get("Deployment", names.auth_svc())
                .and_then(parse::<Deployment>)
                .as_ref(),
        ),
        gateway: status::deployment(
            get("Deployment", names.gateway())
                .and_then(parse::<Deployment>)
                .as_ref(),
        ),
    };
    let gateway_service = get("Service", names.gateway()).and_then(parse::<Service>);
    let degraded = (!problems.is_empty()).then(|| Degradation {
        reason: "ExternalSecretInvalid".into(),
        message: problems
            .iter()
            .map(|(c, _, p)| format!("{c}: {p}"))
            .collect::<Vec<_>>()
            .join("; "),
    });
    let previous = stack.status.clone().unwrap_or_default();
    let new_status = AuthStackStatus {
        observed_generation: stack.metadata.generation,
        conditions: status::conditions(
            &previous.conditions,
            Some(&components),
            degraded.as_ref(),
            stack.metadata.generation,
            &now_time(),
        ),
        components: Some(components),
        gateway_endpoint: Some(gateway::endpoint(&settings, gateway_service.as_ref())),
        keys: Some(keys::status(&plan.ring, &keys::policy(&settings))),
    };
    let status_written = patch_status(client, stack, &new_status).await;
    let deleted = match &status_written {
        Err(Error::Kube(kube::Error::Api(s))) if s.is_not_found() => true,
        _ if keys_written || !changes.is_empty() => owner_gone(client, stack).await?,
        _ => false,
    };
    if deleted {
        // The garbage collector may have removed the stack's objects before this reconcile
        // wrote some of them again: remove them rather than wait for the collector.
        tracing::info!(stack = %names.instance, namespace = %names.namespace, "AuthStack deleted during the reconcile; removing what it wrote");
        for obj in &written {
            apply::delete_if_owned(client, &names.namespace, &uid, obj).await?;
        }
        return Ok(Action::await_change());
    }
    status_written?;

    let mut requeue = MAX_REQUEUE;
    if let Some(deadline) = plan.next_deadline {
        let until = (deadline - Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO)
            .max(Duration::from_millis(10));
        // A little after the deadline, so the rotation step is due when we wake up.
        requeue = requeue.min(until + Duration::from_millis(50));
    }
    if degraded.is_some() {
        requeue = requeue.min(EXTERNAL_RETRY);
    }
    Ok(Action::requeue(requeue))
}

fn external_status(
    problems: &[(&str, SecretKeyRef, String)],
    component: &str,
    r: &SecretKeyRef,
) -> crate::crd::ComponentStatus {
    let problem = problems
        .iter()
        .find(|(c, _, _)| *c == component)
        .map(|(_, _, p)| p.clone());
    status::external(&r.name, &r.key, problem)
}

async fn invalid_spec(stack: &AuthStack, ctx: &Context, message: String) -> Result<Action> {
    tracing::warn!(stack = %stack.name_any(), %message, "invalid AuthStack");
    ctx.publish(
        stack,
        EventType::Warning,
        "InvalidSpec",
        "Validate",
        message.clone(),
    )
    .await;
    let degraded = Degradation {
        reason: "InvalidSpec".into(),
        message,
    };
    let previous = stack.status.clone().unwrap_or_default();
    let status = AuthStackStatus {
        observed_generation: stack.metadata.generation,
        conditions: status::conditions(
            &previous.conditions,
            previous.components.as_ref(),
            Some(&degraded),
            stack.metadata.generation,
            &now_time(),
        ),
        ..previous
    };
    patch_status(&ctx.client, stack, &status).await?;
    // A spec change triggers the next reconcile; nothing to retry until then.
    Ok(Action::requeue(MAX_REQUEUE))
}

/// Whether the AuthStack was deleted (or replaced by a new one of the same name).
async fn owner_gone(client: &Client, stack: &AuthStack) -> Result<bool> {
    let Some(ns) = stack.namespace() else {
        return Ok(false);
    };
    let api: Api<AuthStack> = Api::namespaced(client.clone(), &ns);
    Ok(match api.get_opt(&stack.name_any()).await? {
        None => true,
        Some(live) => {
            live.metadata.uid != stack.metadata.uid || live.metadata.deletion_timestamp.is_some()
        }
    })
}

/// Reads a Secret the stack owns; an existing Secret of that name that it does not control
/// is an error (never adopted, never overwritten).
async fn owned_secret(secrets: &Api<Secret>, name: &str, uid: &str) -> Result<Option<Secret>> {
    match secrets.get_opt(name).await? {
        Some(s) if !is_controlled_by(&s.metadata, uid) => Err(Error::NotOwned {
            kind: "Secret".into(),
            name: name.into(),
        }),
        other => Ok(other),
    }
}

/// Fingerprint of a user's URL Secret, and what is wrong with it.
async fn check_external(
    secrets: &Api<Secret>,
    r: &SecretKeyRef,
) -> Result<(String, Option<String>)> {
    Ok(match secrets.get_opt(&r.name).await? {
        None => (
            "absent".into(),
            Some(format!("Secret {} not found", r.name)),
        ),
        Some(s) if secret_value(Some(&s), &r.key).is_none() => (
            fingerprint_external(&s),
            Some(format!("Secret {} has no key {}", r.name, r.key)),
        ),
        Some(s) => (fingerprint_external(&s), None),
    })
}

/// Advances the key ring and writes the signing Secret when it changed (create if absent,
/// else replace conditional on the resourceVersion read; re-planned on conflict).
async fn reconcile_keys(
    stack: &AuthStack,
    ctx: &Context,
    settings: &Settings,
    secrets: &Api<Secret>,
    uid: &str,
) -> Result<(KeyPlan, bool)> {
    let name = settings.names.signing_keys();
    let pp = PostParams {
        field_manager: Some(MANAGER.into()),
        ..PostParams::default()
    };
    for _attempt in 0..3 {
        let existing = owned_secret(secrets, &name, uid).await?;
        let plan = keys::plan(
            existing.as_ref(),
            settings,
            Utc::now(),
            &mut material::generate,
        )?;
        if !plan.changed {
            return Ok((plan, false));
        }
        let mut secret = keys::signing_secret(settings, &plan.ring);
        let written = match &existing {
            None => secrets.create(&pp, &secret).await,
            Some(e) => {
                secret.metadata.resource_version = e.metadata.resource_version.clone();
                secrets.replace(&name, &pp, &secret).await
            }
        };
        match written {
            Ok(_) => {
                report_key_actions(stack, ctx, &settings.names, &plan).await;
                return Ok((plan, true));
            }
            Err(kube::Error::Api(s)) if s.is_conflict() || s.is_already_exists() => {
                tracing::info!(secret = %name, "signing Secret changed concurrently; re-planning");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::KeyRingConflict(name))
}

async fn report_key_actions(stack: &AuthStack, ctx: &Context, names: &Names, plan: &KeyPlan) {
    for action in &plan.actions {
        let (reason, warning, note) = keys::event_for(action);
        tracing::info!(stack = %names.instance, namespace = %names.namespace, %reason, %note, "key ring changed");
        let label = match action {
            authstack_keyring::RotationAction::Bootstrapped { .. } => "bootstrapped",
            authstack_keyring::RotationAction::RotationStarted { .. } => "rotation_started",
            authstack_keyring::RotationAction::Promoted { .. } => "promoted",
            authstack_keyring::RotationAction::Removed { .. } => "removed",
            authstack_keyring::RotationAction::Revoked { .. } => "revoked",
            authstack_keyring::RotationAction::EmergencyActivated { .. } => "emergency_activated",
            authstack_keyring::RotationAction::PendingReplaced { .. } => "pending_replaced",
        };
        metrics::counter!("authstack_operator_key_ring_changes_total", "action" => label)
            .increment(1);
        let type_ = if warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        ctx.publish(stack, type_, reason, "RotateKeys", note).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff_delay(1), Duration::from_secs(1));
        assert_eq!(backoff_delay(2), Duration::from_secs(2));
        assert_eq!(backoff_delay(5), Duration::from_secs(16));
        assert_eq!(backoff_delay(20), Duration::from_secs(300));
        assert_eq!(backoff_delay(u32::MAX), Duration::from_secs(300));
    }
}
