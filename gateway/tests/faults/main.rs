//! The fault suite (issue 11): the real `auth-svc` and `gateway` binaries under continuous load
//! (registrations, logins, refreshes, `/users/me`, `/session`), against a PostgreSQL and a
//! RabbitMQ of the test's own, through five faults:
//!
//! 1. the broker restarts; 2. PostgreSQL restarts; 3. `kill -9` of one of two auth-svc
//!    replicas (a replacement starts afterwards, as a Deployment would); 4. the network between
//!    the gateway and the broker is cut (a proxy resets every connection and refuses new ones);
//!    5. the same link is partitioned silently (open connections stay open but carry nothing,
//!    as when the broker's node crashed; new ones are refused until the broker is back).
//!
//! For each: no request hangs past the gateway's RPC deadline plus a margin; within 5 s of the
//! dependency returning an RPC request succeeds and from then on every request does; every
//! acknowledged registration exists afterwards (admin list); no request is applied twice and no
//! account is duplicated; the event of every acknowledged registration and login arrives at a
//! consumer of the events exchange (at least once: deduplicated by event id).
//!
//! Knobs (environment): `FAULTS_ROUNDS` (1) repeats the faults, `FAULTS_OUTAGE_SECS` (2) is how
//! long a dependency stays away, `FAULTS_OBSERVE_SECS` (8) how long the load runs after it
//! returns, `FAULTS_WORKERS` (6) the concurrent clients, `FAULTS_ONLY` (all) a comma-separated
//! selection of `broker`, `postgres`, `kill`, `reset`, `silence`. `make chaos` runs a longer
//! version.
//! The report (one block per fault) goes to stderr, also when the test passes.

#[path = "../common/mod.rs"]
mod common;
mod events;
mod load;
mod stack;
mod verdict;

use std::io::Write;
use std::time::{Duration, Instant};

use authstack_testkit::private::StopMode;
use events::EventCounter;
use load::{Load, LoadConfig};
use stack::{RPC_TIMEOUT, Stack};
use verdict::{Timeline, Verdict};

/// How long after its deadline a request counts as hung.
const MARGIN: Duration = Duration::from_millis(2500);
/// Load before each fault.
const WARM_UP: Duration = Duration::from_secs(2);
/// How long events of acknowledged changes may take to arrive.
const EVENT_WAIT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug)]
enum Fault {
    BrokerRestart,
    PostgresRestart,
    KillReplica,
    NetworkCut,
    Partition,
}

impl Fault {
    const ALL: [Fault; 5] = [
        Fault::BrokerRestart,
        Fault::PostgresRestart,
        Fault::KillReplica,
        Fault::NetworkCut,
        Fault::Partition,
    ];

    fn name(self) -> &'static str {
        match self {
            Fault::BrokerRestart => "broker restart",
            Fault::PostgresRestart => "postgres restart",
            Fault::KillReplica => "kill -9 auth-svc",
            Fault::NetworkCut => "gateway-broker reset",
            Fault::Partition => "gateway-broker silence",
        }
    }

    /// Its name in `FAULTS_ONLY`, also the user-name prefix of its load.
    fn tag(self) -> &'static str {
        match self {
            Fault::BrokerRestart => "broker",
            Fault::PostgresRestart => "postgres",
            Fault::KillReplica => "kill",
            Fault::NetworkCut => "reset",
            Fault::Partition => "silence",
        }
    }

    /// Injects the fault, keeps the dependency away for `outage`, brings it back; returns when
    /// it is back.
    async fn inject(self, stack: &mut Stack, outage: Duration) -> Instant {
        match self {
            Fault::BrokerRestart => {
                stack.broker.stop().await.expect("broker stops");
                tokio::time::sleep(outage).await;
                stack.broker.start().await.expect("broker starts again");
                Instant::now()
            }
            Fault::PostgresRestart => {
                stack
                    .postgres
                    .stop(StopMode::Fast)
                    .await
                    .expect("postgres stops");
                tokio::time::sleep(outage).await;
                stack.postgres.start().await.expect("postgres starts again");
                Instant::now()
            }
            Fault::KillReplica => {
                // The dependency that must carry on is the surviving replica: "back" is now.
                let victim = stack.replicas.remove(0);
                victim.kill9().await;
                let back = Instant::now();
                tokio::time::sleep(outage).await;
                stack.add_replica().await;
                back
            }
            Fault::NetworkCut => {
                stack.proxy.set_down(true);
                tokio::time::sleep(outage).await;
                stack.proxy.set_down(false);
                Instant::now()
            }
            Fault::Partition => {
                stack.proxy.partition();
                tokio::time::sleep(outage).await;
                stack.proxy.set_down(false);
                Instant::now()
            }
        }
    }
}

struct Knobs {
    faults: Vec<Fault>,
    rounds: u32,
    outage: Duration,
    observe: Duration,
    workers: usize,
}

impl Knobs {
    fn from_env() -> Knobs {
        fn var<T: std::str::FromStr>(name: &str, default: T) -> T {
            match std::env::var(name) {
                Ok(v) => v
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}={v}: not a number")),
                Err(_) => default,
            }
        }
        let faults = match std::env::var("FAULTS_ONLY") {
            Err(_) => Fault::ALL.to_vec(),
            Ok(list) => list
                .split(',')
                .map(|tag| {
                    Fault::ALL
                        .into_iter()
                        .find(|f| f.tag() == tag.trim())
                        .unwrap_or_else(|| panic!("FAULTS_ONLY: unknown fault `{tag}`"))
                })
                .collect(),
        };
        Knobs {
            faults,
            rounds: var("FAULTS_ROUNDS", 1),
            outage: Duration::from_secs(var("FAULTS_OUTAGE_SECS", 2)),
            observe: Duration::from_secs(var("FAULTS_OBSERVE_SECS", 8)),
            workers: var("FAULTS_WORKERS", 6),
        }
    }
}

/// Runs one fault under load and measures it.
async fn run(
    stack: &mut Stack,
    events: &EventCounter,
    fault: Fault,
    round: u32,
    knobs: &Knobs,
) -> Verdict {
    let load = Load::start(LoadConfig {
        base: stack.base.clone(),
        workers: knobs.workers,
        prefix: format!("{}{round}x", fault.tag()),
        give_up_after: RPC_TIMEOUT + MARGIN,
    });
    let load_started = Instant::now();
    let redelivered_before = events.log.lock().unwrap().redeliveries();
    tokio::time::sleep(WARM_UP).await;
    let injected = Instant::now();
    let back = fault.inject(stack, knobs.outage).await;
    tokio::time::sleep(knobs.observe).await;
    let ledger = load.stop().await;
    let load_stopped = Instant::now();

    events
        .wait_until(EVENT_WAIT, |log| {
            ledger.registered.iter().all(|r| {
                log.count_for_account(authstack_protocol::EventKind::AccountRegistered, r.id) > 0
            }) && ledger
                .sessions
                .iter()
                .all(|sid| log.logins_of_session(*sid) > 0)
        })
        .await;
    let accounts = stack.accounts().await;
    let log = events.log.lock().unwrap();
    let mut verdict = Verdict::measure(
        format!("{} #{round}", fault.name()),
        &Timeline {
            load_started,
            injected,
            back,
            load_stopped,
        },
        &ledger,
        accounts.as_deref().map_err(String::as_str),
        &log,
    );
    verdict.redeliveries = log.redeliveries() - redelivered_before;
    verdict
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_under_load_lose_nothing_and_recover_within_five_seconds() {
    let knobs = Knobs::from_env();
    let mut stack = Stack::start().await;
    let events = EventCounter::start(stack.broker.amqp_url()).await;
    let mut verdicts = Vec::new();
    for round in 1..=knobs.rounds {
        for &fault in &knobs.faults {
            let verdict = run(&mut stack, &events, fault, round, &knobs).await;
            // Straight to stderr: shown by `cargo test` even when the test passes.
            let _ = std::io::stderr().write_all(verdict.render().as_bytes());
            verdicts.push(verdict);
        }
    }
    let gateway_alive = stack.gateway.alive();
    let violations: Vec<String> = verdicts.iter().flat_map(Verdict::violations).collect();
    assert!(gateway_alive, "the gateway process died");
    assert!(
        violations.is_empty(),
        "{} violations:\n{}\n\nservice logs:\n{}",
        violations.len(),
        violations.join("\n"),
        stack.log_tails(30)
    );
}
