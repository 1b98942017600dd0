//! When to look at a stack again: after a success (the next key deadline, a retry while a
//! user's Secret is missing, at most [`Tuning::max_requeue`]) and after a failure (exponential
//! backoff with jitter per stack, from `backon`). All the requeue maths lives here.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use chrono::{DateTime, Utc};
use kube::runtime::reflector::ObjectRef;

use crate::crd::AuthStack;

/// How long after a key deadline the reconcile runs, so the rotation step is due when it does.
pub const DEADLINE_SLACK: Duration = Duration::from_millis(50);
/// Shortest requeue for a deadline that has already passed.
pub const MIN_REQUEUE: Duration = Duration::from_millis(10);

/// The controller's timing knobs (flags of the operator binary).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuning {
    /// Stacks reconciled at once.
    pub concurrency: u16,
    /// Longest time between two reconciles of a stack.
    pub max_requeue: Duration,
    /// Requeue while a user's URL Secret is missing or incomplete (those are not watched).
    pub external_retry: Duration,
    /// First delay after a failed reconcile.
    pub backoff_min: Duration,
    /// Longest delay after repeated failures.
    pub backoff_max: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            concurrency: 4,
            max_requeue: Duration::from_secs(300),
            external_retry: Duration::from_secs(30),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
        }
    }
}

/// The requeue after a successful reconcile: a little after the next key-rotation deadline,
/// sooner while a user's URL Secret is missing, and never later than `max_requeue`.
pub fn after_success(
    tuning: &Tuning,
    next_key_deadline: Option<DateTime<Utc>>,
    waiting_for_external: bool,
    now: DateTime<Utc>,
) -> Duration {
    let mut requeue = tuning.max_requeue;
    if let Some(deadline) = next_key_deadline {
        let until = (deadline - now)
            .to_std()
            .unwrap_or(Duration::ZERO)
            .max(MIN_REQUEUE);
        requeue = requeue.min(until + DEADLINE_SLACK);
    }
    if waiting_for_external {
        requeue = requeue.min(tuning.external_retry);
    }
    requeue
}

/// Per-stack exponential backoff after failures: delays start at `backoff_min`, double, and
/// carry up to 100 % jitter (so stacks failing together do not retry in lockstep); none is
/// longer than `backoff_max`. A success resets the stack's sequence.
pub struct Backoffs {
    builder: ExponentialBuilder,
    max: Duration,
    running: Mutex<HashMap<ObjectRef<AuthStack>, ExponentialBackoff>>,
}

impl Backoffs {
    /// Backoffs for `tuning`.
    pub fn new(tuning: &Tuning) -> Self {
        let max = tuning.backoff_max.max(tuning.backoff_min);
        // Jitter adds up to the delay itself: halving the cap keeps jittered delays below it.
        let builder = ExponentialBuilder::new()
            .with_min_delay(tuning.backoff_min)
            .with_max_delay((max / 2).max(tuning.backoff_min))
            .with_factor(2.0)
            .with_jitter()
            .without_max_times();
        Backoffs {
            builder,
            max,
            running: Mutex::new(HashMap::new()),
        }
    }

    /// The delay before retrying `stack` after one more failure.
    pub fn next_delay(&self, stack: &ObjectRef<AuthStack>) -> Duration {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running
            .entry(stack.clone())
            .or_insert_with(|| self.builder.build())
            .next()
            .unwrap_or(self.max)
            .min(self.max)
    }

    /// Forgets the failures of `stack`.
    pub fn reset(&self, stack: &ObjectRef<AuthStack>) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.remove(stack);
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    fn stack(name: &str) -> ObjectRef<AuthStack> {
        ObjectRef::new(name).within("ns")
    }

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let tuning = Tuning::default();
        let b = Backoffs::new(&tuning);
        let a = stack("a");
        let delays: Vec<Duration> = (0..20).map(|_| b.next_delay(&a)).collect();
        // 1 s .. 2 s, then 2 s .. 4 s, ...
        assert!(delays[0] >= Duration::from_secs(1) && delays[0] < Duration::from_secs(2));
        assert!(delays[1] >= Duration::from_secs(2) && delays[1] < Duration::from_secs(4));
        assert!(delays.iter().all(|d| *d <= tuning.backoff_max));
        assert!(delays[19] >= tuning.backoff_max / 2, "{:?}", delays[19]);
        // Independent per stack, and reset by a success.
        assert!(b.next_delay(&stack("b")) < Duration::from_secs(2));
        b.reset(&a);
        assert!(b.next_delay(&a) < Duration::from_secs(2));
    }

    #[test]
    fn jitter_spreads_stacks_that_fail_together() {
        let b = Backoffs::new(&Tuning::default());
        let firsts: std::collections::HashSet<Duration> = (0..20)
            .map(|i| b.next_delay(&stack(&format!("s{i}"))))
            .collect();
        assert!(firsts.len() > 1, "every stack got the same delay");
    }

    #[test]
    fn success_requeues_at_the_next_deadline_or_the_maximum() {
        let t = Tuning::default();
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        assert_eq!(after_success(&t, None, false, now), t.max_requeue);
        let soon = now + TimeDelta::seconds(20);
        assert_eq!(
            after_success(&t, Some(soon), false, now),
            Duration::from_secs(20) + DEADLINE_SLACK
        );
        let past = now - TimeDelta::seconds(5);
        assert_eq!(
            after_success(&t, Some(past), false, now),
            MIN_REQUEUE + DEADLINE_SLACK
        );
        let far = now + TimeDelta::days(30);
        assert_eq!(after_success(&t, Some(far), false, now), t.max_requeue);
        assert_eq!(after_success(&t, Some(far), true, now), t.external_retry);
    }
}
