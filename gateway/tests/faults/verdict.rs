//! What one fault did to the load, measured from the ledger, the accounts and the events, and
//! the rules it must meet.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use authstack_protocol::EventKind;
use serde_json::Value;

use crate::events::EventLog;
use crate::load::{Ledger, Outcome};

/// Recovery must happen within this long of the dependency returning.
pub const RECOVERY_LIMIT: Duration = Duration::from_secs(5);
/// After recovery, this much failure-free traffic must follow to call it steady.
const CLEAN_SPAN: Duration = Duration::from_secs(2);

/// When the fault happened.
pub struct Timeline {
    pub load_started: Instant,
    pub injected: Instant,
    /// The dependency is back (restarted, reconnected; for a killed replica: the kill).
    pub back: Instant,
    pub load_stopped: Instant,
}

/// The measurements of one fault.
pub struct Verdict {
    pub name: String,
    pub requests: usize,
    /// Requests per second over the whole load.
    pub rate: f64,
    pub failed: usize,
    pub hung: usize,
    /// Requests the gateway never answered (connection errors).
    pub unanswered: usize,
    /// Requests answered 500: an outage must be a 503 the client can retry, never an
    /// internal error.
    pub internal_errors: usize,
    pub failures_by_code: BTreeMap<String, usize>,
    pub registrations: usize,
    pub logins: usize,
    /// Acknowledged registrations missing afterwards.
    pub lost_accounts: Vec<String>,
    /// User names or emails held by more than one account.
    pub duplicate_accounts: Vec<String>,
    /// Why the accounts could not be listed afterwards (then lost and duplicate are unknown).
    pub unlisted: Option<String>,
    /// Requests applied more than once.
    pub applied_twice: Vec<String>,
    pub events_expected: usize,
    pub lost_events: Vec<String>,
    /// Deliveries of an already seen event id during this fault (allowed: at-least-once).
    pub redeliveries: usize,
    /// Messages on the events exchange that are not events (whole run so far).
    pub malformed_events: usize,
    pub outage: Duration,
    /// From "dependency back" to the first successful RPC request.
    pub first_success: Option<Duration>,
    /// From "dependency back" until every request succeeds.
    pub steady: Duration,
    /// Failure-free traffic after steady: (requests, span).
    pub clean_after: (usize, Duration),
    pub slowest: Duration,
}

impl Verdict {
    /// Measures `ledger` against the accounts listed afterwards and the events received.
    pub fn measure(
        name: String,
        timeline: &Timeline,
        ledger: &Ledger,
        accounts: Result<&[Value], &str>,
        events: &EventLog,
    ) -> Verdict {
        let records = &ledger.records;
        let failed: Vec<_> = records
            .iter()
            .filter(|r| r.outcome != Outcome::Ok)
            .collect();
        let mut failures_by_code = BTreeMap::new();
        for r in &failed {
            let key = match &r.outcome {
                Outcome::Status(status, code) => format!("{status} {code}"),
                Outcome::Transport(_) => "no answer".into(),
                Outcome::Hung => "hung".into(),
                Outcome::Ok => unreachable!(),
            };
            *failures_by_code.entry(key).or_insert(0) += 1;
        }
        let back = timeline.back;
        let first_success = records
            .iter()
            .filter(|r| r.op.is_rpc() && r.outcome == Outcome::Ok && r.finished >= back)
            .map(|r| r.finished - back)
            .min();
        let steady_at = failed
            .iter()
            .filter(|r| r.started >= back)
            .map(|r| r.finished)
            .max()
            .unwrap_or(back)
            .max(back);
        let clean_after = (
            records.iter().filter(|r| r.started >= steady_at).count(),
            timeline.load_stopped.saturating_duration_since(steady_at),
        );

        let (lost_accounts, duplicate_accounts) = match accounts {
            Ok(accounts) => check_accounts(ledger, accounts),
            Err(_) => (Vec::new(), Vec::new()),
        };
        let mut applied_twice: Vec<String> = ledger
            .reapplied
            .iter()
            .map(|u| format!("registration of {u} answered user_exists"))
            .collect();
        let mut lost_events = Vec::new();
        for r in &ledger.registered {
            match events.count_for_account(EventKind::AccountRegistered, r.id) {
                0 => lost_events.push(format!("account.registered of {}", r.username)),
                1 => {}
                n => applied_twice.push(format!("{n} account.registered events of {}", r.username)),
            }
            let attempts = events.count_for_account(EventKind::RegistrationAttempted, r.id);
            if attempts > 0 {
                applied_twice.push(format!(
                    "{attempts} account.registration_attempted events of {}",
                    r.username
                ));
            }
        }
        for sid in &ledger.sessions {
            match events.logins_of_session(*sid) {
                0 => lost_events.push(format!("account.logged_in of session {sid}")),
                1 => {}
                n => applied_twice.push(format!("{n} account.logged_in events of session {sid}")),
            }
        }
        let load_span = timeline.load_stopped - timeline.load_started;
        Verdict {
            name,
            requests: records.len(),
            rate: records.len() as f64 / load_span.as_secs_f64(),
            failed: failed.len(),
            hung: failed.iter().filter(|r| r.outcome == Outcome::Hung).count(),
            unanswered: failed
                .iter()
                .filter(|r| matches!(r.outcome, Outcome::Transport(_)))
                .count(),
            internal_errors: failed
                .iter()
                .filter(|r| matches!(r.outcome, Outcome::Status(500, _)))
                .count(),
            failures_by_code,
            registrations: ledger.registered.len(),
            logins: ledger.sessions.len(),
            lost_accounts,
            duplicate_accounts,
            unlisted: accounts.err().map(str::to_owned),
            applied_twice,
            events_expected: ledger.registered.len() + ledger.sessions.len(),
            lost_events,
            redeliveries: 0,
            malformed_events: events.malformed,
            outage: back.saturating_duration_since(timeline.injected),
            first_success,
            steady: steady_at - back,
            clean_after,
            slowest: records
                .iter()
                .map(|r| r.finished - r.started)
                .max()
                .unwrap_or_default(),
        }
    }

    /// The rules this fault broke.
    pub fn violations(&self) -> Vec<String> {
        let mut v = Vec::new();
        let mut rule = |broken: bool, what: String| {
            if broken {
                v.push(format!("{}: {what}", self.name));
            }
        };
        rule(self.hung > 0, format!("{} requests hung", self.hung));
        rule(
            self.unanswered > 0,
            format!("{} requests got no HTTP answer", self.unanswered),
        );
        rule(
            self.internal_errors > 0,
            format!(
                "{} requests answered 500 instead of a retryable 503",
                self.internal_errors
            ),
        );
        match self.first_success {
            None => rule(true, "no RPC request succeeded after recovery".into()),
            Some(t) => rule(
                t > RECOVERY_LIMIT,
                format!("first success {t:.2?} after the dependency returned"),
            ),
        }
        rule(
            self.steady > RECOVERY_LIMIT,
            format!(
                "requests kept failing {:.2?} after the dependency returned",
                self.steady
            ),
        );
        rule(
            self.clean_after.1 < CLEAN_SPAN || self.clean_after.0 < 20,
            format!(
                "only {} requests in {:.2?} after recovery: steady success not shown",
                self.clean_after.0, self.clean_after.1
            ),
        );
        if let Some(why) = &self.unlisted {
            rule(true, format!("accounts not checked: {why}"));
        }
        rule(
            self.malformed_events > 0,
            format!("{} malformed events", self.malformed_events),
        );
        rule(
            self.registrations == 0 || self.logins == 0,
            "the load acknowledged no registration or no login".into(),
        );
        for (what, list) in [
            ("lost acknowledged registrations", &self.lost_accounts),
            ("duplicate accounts", &self.duplicate_accounts),
            ("requests applied twice", &self.applied_twice),
            ("lost events", &self.lost_events),
        ] {
            rule(
                !list.is_empty(),
                format!("{} {what}: {}", list.len(), sample(list)),
            );
        }
        v
    }

    /// One block of the report.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let secs = |d: Duration| format!("{:.2} s", d.as_secs_f64());
        let _ = writeln!(
            s,
            "{:<26} outage {:>8}  first success {:>8}  steady {:>8}  | requests {:>6} ({:>4.0}/s)  failed {:>5}  hung {}  lost {} (accounts {}/{}, events {}/{})  twice {}  dup accounts {}  redelivered events {}  slowest {}",
            self.name,
            secs(self.outage),
            self.first_success.map_or("never".into(), secs),
            secs(self.steady),
            self.requests,
            self.rate,
            self.failed,
            self.hung,
            self.lost_accounts.len() + self.lost_events.len(),
            self.lost_accounts.len(),
            self.registrations,
            self.lost_events.len(),
            self.events_expected,
            self.applied_twice.len(),
            self.duplicate_accounts.len(),
            self.redeliveries,
            secs(self.slowest),
        );
        if !self.failures_by_code.is_empty() {
            let codes: Vec<String> = self
                .failures_by_code
                .iter()
                .map(|(code, n)| format!("{code} ×{n}"))
                .collect();
            let _ = writeln!(s, "{:<26} failures: {}", "", codes.join(", "));
        }
        s
    }
}

/// (acknowledged registrations missing or different, names/emails held twice).
fn check_accounts(ledger: &Ledger, accounts: &[Value]) -> (Vec<String>, Vec<String>) {
    let by_id: HashMap<&str, &Value> = accounts
        .iter()
        .filter_map(|a| Some((a["id"].as_str()?, a)))
        .collect();
    let lost = ledger
        .registered
        .iter()
        .filter(|r| {
            by_id
                .get(r.id.to_string().as_str())
                .is_none_or(|a| a["username"].as_str() != Some(r.username.as_str()))
        })
        .map(|r| format!("{} ({})", r.username, r.id))
        .collect();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for a in accounts {
        for field in ["username", "email"] {
            if let Some(v) = a[field].as_str() {
                *seen.entry(format!("{field} {v}")).or_insert(0) += 1;
            }
        }
    }
    let duplicates = seen
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(k, n)| format!("{k} ×{n}"))
        .collect();
    (lost, duplicates)
}

fn sample(list: &[String]) -> String {
    let mut s = list.iter().take(5).cloned().collect::<Vec<_>>().join("; ");
    if list.len() > 5 {
        s.push_str("; …");
    }
    s
}
