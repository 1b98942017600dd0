//! The `kubectl authstack` plugin: `status`, `rotate` and `revoke`.
//!
//! Rendering is pure ([`render_status`]); the commands are thin API calls using the caller's
//! kubeconfig. Spec changes are merge patches carrying the resourceVersion that was read
//! (optimistic concurrency), retried on conflict.

use std::fmt::Write as _;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};

use crate::crd::{AuthStack, ComponentStatus};

/// Errors of the plugin commands.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The API call failed.
    #[error("{0}")]
    Kube(#[from] kube::Error),
    /// The AuthStack does not exist.
    #[error("AuthStack {namespace}/{name} not found")]
    NotFound {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// The kid is not in the ring (and `--force` was not given).
    #[error(
        "key id {kid} is not in the key ring of {name} (known: {known}); use --force to revoke it anyway"
    )]
    UnknownKid {
        /// The kid.
        kid: String,
        /// The AuthStack.
        name: String,
        /// Known kids.
        known: String,
    },
    /// The AuthStack kept changing while we tried to patch it.
    #[error("AuthStack {0} kept changing; try again")]
    Conflict(String),
}

const ATTEMPTS: usize = 5;

fn age(t: &Time, now: Timestamp) -> String {
    let secs = now.as_second() - t.0.as_second();
    human(secs)
}

/// `45s`, `12m`, `5h`, `3d`; negative values are written `in ...`.
pub fn human(secs: i64) -> String {
    if secs < 0 {
        return format!("in {}", human(-secs));
    }
    match secs {
        0..120 => format!("{secs}s"),
        120..7_200 => format!("{}m", secs / 60),
        7_200..172_800 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn list(kids: &[String]) -> String {
    if kids.is_empty() {
        "-".into()
    } else {
        kids.join(", ")
    }
}

fn component_row(name: &str, c: &ComponentStatus) -> Vec<String> {
    vec![
        name.into(),
        if c.ready { "yes" } else { "no" }.into(),
        if c.replicas > 0 {
            format!("{}/{}", c.ready_replicas, c.replicas)
        } else {
            "-".into()
        },
        c.message.clone().unwrap_or_default(),
    ]
}

/// A readable report of an AuthStack's status.
pub fn render_status(stack: &AuthStack, now: Timestamp) -> String {
    let mut out = String::new();
    let status = stack.status.clone().unwrap_or_default();
    let _ = writeln!(
        out,
        "AuthStack {}/{}  (generation {}, observed {})",
        stack.namespace().unwrap_or_default(),
        stack.name_any(),
        stack
            .metadata
            .generation
            .map_or("-".into(), |g| g.to_string()),
        status
            .observed_generation
            .map_or("-".into(), |g| g.to_string()),
    );
    let _ = writeln!(
        out,
        "Gateway: {}",
        status.gateway_endpoint.as_deref().unwrap_or("-")
    );

    out.push_str("\nCONDITIONS\n");
    if status.conditions.is_empty() {
        out.push_str("  (none yet: the operator has not reconciled this stack)\n");
    } else {
        let mut rows = vec![vec![
            "TYPE".into(),
            "STATUS".into(),
            "REASON".into(),
            "SINCE".into(),
            "MESSAGE".into(),
        ]];
        for c in &status.conditions {
            rows.push(vec![
                c.type_.clone(),
                c.status.clone(),
                c.reason.clone(),
                age(&c.last_transition_time, now),
                c.message.clone(),
            ]);
        }
        for line in table(&rows).lines() {
            let _ = writeln!(out, "  {line}");
        }
    }

    out.push_str("\nCOMPONENTS\n");
    match &status.components {
        None => out.push_str("  (unknown)\n"),
        Some(c) => {
            let rows = vec![
                vec![
                    "COMPONENT".into(),
                    "READY".into(),
                    "PODS".into(),
                    "MESSAGE".into(),
                ],
                component_row("postgres", &c.postgres),
                component_row("rabbitmq", &c.rabbitmq),
                component_row("auth-svc", &c.auth_service),
                component_row("gateway", &c.gateway),
            ];
            for line in table(&rows).lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
    }

    out.push_str("\nSIGNING KEYS\n");
    let spec = &stack.spec.keys;
    match &status.keys {
        None => out.push_str("  (no key ring yet)\n"),
        Some(k) => {
            let time = |t: &Option<Time>| match t {
                Some(t) => format!("{} ({})", t.0, age(t, now)),
                None => "-".into(),
            };
            let rows = vec![
                vec!["Algorithm:".into(), k.algorithm.clone()],
                vec![
                    "Active:".into(),
                    k.active_kid.clone().unwrap_or_else(|| "-".into()),
                ],
                vec!["Pending:".into(), list(&k.pending_kids)],
                vec!["Retiring:".into(), list(&k.retiring_kids)],
                vec!["Ring generation:".into(), k.generation.to_string()],
                vec!["Last rotation:".into(), time(&k.last_rotation_time)],
                vec![
                    "Next rotation:".into(),
                    match &k.next_rotation_time {
                        Some(_) => time(&k.next_rotation_time),
                        None => "manual only (rotationInterval 0s)".into(),
                    },
                ],
                vec![
                    "Rotation counter:".into(),
                    format!(
                        "spec {}, acted on {}",
                        spec.rotation_counter, k.observed_rotation_counter
                    ),
                ],
                vec!["Revoked (spec):".into(), list(&spec.revoked_kids)],
            ];
            for line in table(&rows).lines() {
                let _ = writeln!(out, "  {line}");
            }
            if let Some(e) = &k.emergency_activation {
                let _ = writeln!(
                    out,
                    "  WARNING: key {} has signed since {} ({}) without the full propagation delay",
                    e.kid,
                    e.time.0,
                    age(&e.time, now)
                );
            }
        }
    }
    out
}

/// Key ids the AuthStack reports (active, pending, retiring).
pub fn known_kids(stack: &AuthStack) -> Vec<String> {
    let Some(k) = stack.status.as_ref().and_then(|s| s.keys.as_ref()) else {
        return Vec::new();
    };
    k.active_kid
        .iter()
        .chain(&k.pending_kids)
        .chain(&k.retiring_kids)
        .cloned()
        .collect()
}

async fn get(api: &Api<AuthStack>, namespace: &str, name: &str) -> Result<AuthStack, PluginError> {
    api.get_opt(name)
        .await?
        .ok_or_else(|| PluginError::NotFound {
            namespace: namespace.into(),
            name: name.into(),
        })
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_conflict())
}

/// `kubectl authstack status`.
pub async fn status(client: Client, namespace: &str, name: &str) -> Result<String, PluginError> {
    let api: Api<AuthStack> = Api::namespaced(client, namespace);
    let stack = get(&api, namespace, name).await?;
    Ok(render_status(&stack, Timestamp::now()))
}

/// `kubectl authstack rotate`: bumps `spec.keys.rotationCounter`; returns the new value.
pub async fn rotate(client: Client, namespace: &str, name: &str) -> Result<i64, PluginError> {
    let api: Api<AuthStack> = Api::namespaced(client, namespace);
    for _ in 0..ATTEMPTS {
        let stack = get(&api, namespace, name).await?;
        let next = stack.spec.keys.rotation_counter.saturating_add(1);
        let patch = serde_json::json!({
            "metadata": { "resourceVersion": stack.resource_version() },
            "spec": { "keys": { "rotationCounter": next } },
        });
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return Ok(next),
            Err(e) if is_conflict(&e) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(PluginError::Conflict(name.into()))
}

/// What `revoke` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoked {
    /// Added to `spec.keys.revokedKids`; `was_active` when it is the signing key.
    Added {
        /// Whether the kid is the active key.
        was_active: bool,
    },
    /// Already listed.
    AlreadyListed,
}

/// `kubectl authstack revoke`: appends `kid` to `spec.keys.revokedKids`, refusing kids the
/// ring does not report unless `force`.
pub async fn revoke(
    client: Client,
    namespace: &str,
    name: &str,
    kid: &str,
    force: bool,
) -> Result<Revoked, PluginError> {
    let api: Api<AuthStack> = Api::namespaced(client, namespace);
    for _ in 0..ATTEMPTS {
        let stack = get(&api, namespace, name).await?;
        let mut revoked = stack.spec.keys.revoked_kids.clone();
        if revoked.iter().any(|k| k == kid) {
            return Ok(Revoked::AlreadyListed);
        }
        let known = known_kids(&stack);
        if !force && !known.iter().any(|k| k == kid) {
            return Err(PluginError::UnknownKid {
                kid: kid.into(),
                name: name.into(),
                known: list(&known),
            });
        }
        let was_active = stack
            .status
            .as_ref()
            .and_then(|s| s.keys.as_ref())
            .and_then(|k| k.active_kid.as_deref())
            == Some(kid);
        revoked.push(kid.into());
        let patch = serde_json::json!({
            "metadata": { "resourceVersion": stack.resource_version() },
            "spec": { "keys": { "revokedKids": revoked } },
        });
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return Ok(Revoked::Added { was_active }),
            Err(e) if is_conflict(&e) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(PluginError::Conflict(name.into()))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
    use kube::api::ObjectMeta;

    use super::*;
    use crate::crd::{AuthStackSpec, AuthStackStatus, ComponentsStatus, KeysStatus};

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    fn sample() -> AuthStack {
        let mut s = AuthStack::new("demo", AuthStackSpec::default());
        s.metadata = ObjectMeta {
            name: Some("demo".into()),
            namespace: Some("team-a".into()),
            generation: Some(3),
            ..ObjectMeta::default()
        };
        s.spec.keys.rotation_counter = 2;
        let ready = ComponentStatus {
            ready: true,
            ready_replicas: 2,
            replicas: 2,
            message: Some("2/2 ready".into()),
        };
        s.status = Some(AuthStackStatus {
            observed_generation: Some(3),
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: "True".into(),
                reason: "AllComponentsReady".into(),
                message: "All components are ready".into(),
                observed_generation: Some(3),
                last_transition_time: at(1_000),
            }],
            components: Some(ComponentsStatus {
                postgres: ready.clone(),
                rabbitmq: ready.clone(),
                auth_service: ready.clone(),
                gateway: ComponentStatus {
                    ready: false,
                    ready_replicas: 1,
                    replicas: 2,
                    message: Some("rolling out".into()),
                },
            }),
            gateway_endpoint: Some("http://demo-gateway.team-a.svc".into()),
            keys: Some(KeysStatus {
                algorithm: "EdDSA".into(),
                active_kid: Some("kid-active".into()),
                pending_kids: vec!["kid-new".into()],
                retiring_kids: vec!["kid-old".into()],
                generation: 7,
                last_rotation_time: Some(at(1_000)),
                next_rotation_time: Some(at(1_000 + 3600)),
                observed_rotation_counter: 2,
                emergency_activation: None,
            }),
        });
        s
    }

    #[test]
    fn status_report_shows_conditions_components_and_keys() {
        let now = Timestamp::from_second(1_300).unwrap();
        let text = render_status(&sample(), now);
        assert!(
            text.contains("AuthStack team-a/demo  (generation 3, observed 3)"),
            "{text}"
        );
        assert!(text.contains("Gateway: http://demo-gateway.team-a.svc"));
        let ready_line = text
            .lines()
            .find(|l| l.trim_start().starts_with("Ready"))
            .unwrap();
        assert!(
            ready_line.contains("True")
                && ready_line.contains("AllComponentsReady")
                && ready_line.contains("5m"),
            "{ready_line}"
        );
        let gw = text
            .lines()
            .find(|l| l.trim_start().starts_with("gateway"))
            .unwrap();
        assert!(gw.contains("no") && gw.contains("1/2"), "{gw}");
        assert!(text.contains("Active:            kid-active"), "{text}");
        assert!(text.contains("Pending:           kid-new"));
        assert!(text.contains("Retiring:          kid-old"));
        assert!(text.contains("spec 2, acted on 2"));
        assert!(text.contains("(in 55m)"), "{text}");
    }

    #[test]
    fn report_before_first_reconcile() {
        let mut s = sample();
        s.status = None;
        let text = render_status(&s, Timestamp::now());
        assert!(text.contains("not reconciled"), "{text}");
        assert!(text.contains("(no key ring yet)"));
    }

    #[test]
    fn known_kids_come_from_the_status() {
        assert_eq!(known_kids(&sample()), ["kid-active", "kid-new", "kid-old"]);
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(5), "5s");
        assert_eq!(human(300), "5m");
        assert_eq!(human(3 * 3600), "3h");
        assert_eq!(human(3 * 86_400), "3d");
        assert_eq!(human(-600), "in 10m");
    }
}
