//! The operator's Prometheus metrics: every name in one place, all under `authstack_operator_`.
//! Served on `/metrics` of `--metrics-listen`.

/// Histogram: seconds per reconcile of one stack.
pub const RECONCILE_DURATION: &str = "authstack_operator_reconcile_duration_seconds";
/// Counter: reconciles, by `result` (`success`, `error`).
pub const RECONCILIATIONS: &str = "authstack_operator_reconciliations_total";
/// Counter: failed reconciles, by `reason` (the `Degraded` condition's reason).
pub const RECONCILE_ERRORS: &str = "authstack_operator_reconcile_errors_total";
/// Counter: server-side applies, by `kind` and `outcome` (`created`, `updated`, `unchanged`).
pub const APPLIES: &str = "authstack_operator_applies_total";
/// Counter: key ring changes, by `action` (`bootstrapped`, `rotation_started`, `promoted`,
/// `removed`, `revoked`, `emergency_activated`, `pending_replaced`).
pub const KEY_RING_CHANGES: &str = "authstack_operator_key_ring_changes_total";
/// Gauge: 1 while this replica holds the leader Lease.
pub const LEADER: &str = "authstack_operator_leader";

/// Every metric with its help text (for `# HELP` lines and the documentation).
pub const ALL: &[(&str, &str)] = &[
    (
        RECONCILE_DURATION,
        "Seconds per reconcile of one AuthStack.",
    ),
    (
        RECONCILIATIONS,
        "Reconciles of AuthStacks, by result (success, error).",
    ),
    (
        RECONCILE_ERRORS,
        "Failed reconciles, by reason (the Degraded condition's reason).",
    ),
    (
        APPLIES,
        "Server-side applies of owned objects, by kind and outcome (created, updated, unchanged).",
    ),
    (KEY_RING_CHANGES, "Changes of signing key rings, by action."),
    (LEADER, "1 while this replica holds the leader Lease."),
];

/// Registers the help texts with the installed recorder.
pub fn describe() {
    for (name, help) in ALL {
        match *name {
            RECONCILE_DURATION => {
                metrics::describe_histogram!(*name, metrics::Unit::Seconds, *help)
            }
            LEADER => metrics::describe_gauge!(*name, *help),
            _ => metrics::describe_counter!(*name, *help),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_prefix_and_prometheus_suffixes() {
        for (name, help) in ALL {
            assert!(name.starts_with("authstack_operator_"), "{name}");
            assert!(!help.is_empty());
        }
        for counter in [RECONCILIATIONS, RECONCILE_ERRORS, APPLIES, KEY_RING_CHANGES] {
            assert!(counter.ends_with("_total"), "{counter}");
        }
        assert!(RECONCILE_DURATION.ends_with("_seconds"));
    }
}
