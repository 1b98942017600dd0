//! Closed-loop load over the public HTTP API: each worker registers accounts, logs in, refreshes
//! and calls `/users/me` and `/session`, and records every request (when it started and ended,
//! what came back) and every acknowledged change (a 201 registration, a 200 login).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authstack_bus::CancellationToken;
use base64::Engine;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::stack::PASSWORD;

/// What a request did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Register,
    Login,
    Refresh,
    Me,
    Session,
}

impl Op {
    /// Whether the request needs auth-svc (RPC); `/session` is answered by the gateway alone.
    pub fn is_rpc(self) -> bool {
        self != Op::Session
    }
}

/// How a request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx.
    Ok,
    /// Any other status, with the error code of the body.
    Status(u16, String),
    /// The connection failed (no HTTP answer).
    Transport(String),
    /// No answer within the deadline plus margin.
    Hung,
}

/// One request.
#[derive(Clone, Debug)]
pub struct Record {
    pub op: Op,
    pub started: Instant,
    pub finished: Instant,
    pub outcome: Outcome,
}

/// A registration the client saw succeed.
#[derive(Clone, Debug)]
pub struct Registered {
    pub id: Uuid,
    pub username: String,
}

/// Everything the load saw.
#[derive(Default)]
pub struct Ledger {
    pub records: Vec<Record>,
    pub registered: Vec<Registered>,
    /// Session ids of acknowledged logins.
    pub sessions: Vec<Uuid>,
    /// Fresh user names whose registration answered "user exists": the request was applied
    /// twice (a redelivery that was not recognised as one).
    pub reapplied: Vec<String>,
}

/// Load settings.
#[derive(Clone)]
pub struct LoadConfig {
    pub base: String,
    pub workers: usize,
    /// Prefix of the user names of this load (unique per run).
    pub prefix: String,
    /// A request without an answer after this long is hung.
    pub give_up_after: Duration,
}

/// Running load; [`Load::stop`] returns what it saw.
pub struct Load {
    stop: CancellationToken,
    workers: Vec<tokio::task::JoinHandle<()>>,
    ledger: Arc<Mutex<Ledger>>,
}

impl Load {
    pub fn start(config: LoadConfig) -> Load {
        let stop = CancellationToken::new();
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let names = Arc::new(AtomicU64::new(0));
        let http = authstack_testkit::http::client();
        let workers = (0..config.workers)
            .map(|_| {
                let worker = Worker {
                    http: http.clone(),
                    config: config.clone(),
                    ledger: ledger.clone(),
                    names: names.clone(),
                };
                tokio::spawn(worker.run(stop.clone()))
            })
            .collect();
        Load {
            stop,
            workers,
            ledger,
        }
    }

    /// Stops the workers (each finishes its request in flight) and returns the ledger.
    pub async fn stop(self) -> Ledger {
        self.stop.cancel();
        for w in self.workers {
            w.await.expect("a load worker panicked");
        }
        std::mem::take(&mut *self.ledger.lock().unwrap())
    }
}

/// Where a worker's client is.
enum State {
    /// Needs a new account.
    NoAccount,
    /// Has an account, needs a session.
    Account(String),
    /// Logged in.
    Session {
        username: String,
        access: String,
        refresh: String,
    },
}

impl State {
    fn logged_in(username: String, (access, refresh): (String, String)) -> State {
        State::Session {
            username,
            access,
            refresh,
        }
    }
}

struct Worker {
    http: reqwest::Client,
    config: LoadConfig,
    ledger: Arc<Mutex<Ledger>>,
    names: Arc<AtomicU64>,
}

/// Pause after a success (keeps the load from starving the machine) and after a failure (a
/// client backing off).
const PAUSE_OK: Duration = Duration::from_millis(5);
const PAUSE_FAILED: Duration = Duration::from_millis(50);

impl Worker {
    async fn run(self, stop: CancellationToken) {
        let mut state = State::NoAccount;
        let mut step = 0u64;
        while !stop.is_cancelled() {
            step += 1;
            let (next, ok) = self.step(state, step).await;
            state = next;
            tokio::time::sleep(if ok { PAUSE_OK } else { PAUSE_FAILED }).await;
        }
    }

    /// One request; returns the next state and whether it succeeded.
    async fn step(&self, state: State, step: u64) -> (State, bool) {
        match state {
            State::NoAccount => {
                let n = self.names.fetch_add(1, Ordering::Relaxed);
                let username = format!("{}{n}", self.config.prefix);
                match self.register(&username).await {
                    Some(true) => (State::Account(username), true),
                    // The name is spent either way: its registration may have been applied.
                    _ => (State::NoAccount, false),
                }
            }
            State::Account(username) => match self.login(&username).await {
                Some(pair) => (State::logged_in(username, pair), true),
                None => (State::Account(username), false),
            },
            State::Session {
                username,
                access,
                refresh,
            } => {
                if step.is_multiple_of(60) {
                    return (State::NoAccount, true);
                }
                if step.is_multiple_of(20) {
                    return (State::Account(username), true);
                }
                match step % 4 {
                    0 => match self.refresh(&refresh).await {
                        Some(pair) => (State::logged_in(username, pair), true),
                        // Unknown whether it was spent: start a new session.
                        None => (State::Account(username), false),
                    },
                    op => {
                        let (op, path) = if op == 2 {
                            (Op::Session, "/api/v1/auth/session")
                        } else {
                            (Op::Me, "/api/v1/users/me")
                        };
                        let req = self
                            .http
                            .get(format!("{}{path}", self.config.base))
                            .bearer_auth(&access);
                        let ok = self.send(op, req).await.is_some();
                        (State::logged_in(username, (access, refresh)), ok)
                    }
                }
            }
        }
    }

    /// `Some(true)`: acknowledged; `Some(false)`: refused; `None`: unknown.
    async fn register(&self, username: &str) -> Option<bool> {
        let req = self
            .http
            .post(format!("{}/api/v1/auth/register", self.config.base))
            .json(&json!({
                "email": format!("{username}@example.com"),
                "username": username,
                "password": PASSWORD,
            }));
        let started = Instant::now();
        let (mut outcome, body) = self.exchange(req).await;
        let id = body["id"].as_str().and_then(|s| s.parse().ok());
        if outcome == Outcome::Ok && id.is_none() {
            outcome = Outcome::Status(201, "no account id in the answer".into());
        }
        let mut ledger = self.ledger.lock().unwrap();
        let result = match (&outcome, id) {
            (Outcome::Ok, Some(id)) => {
                ledger.registered.push(Registered {
                    id,
                    username: username.to_owned(),
                });
                Some(true)
            }
            (Outcome::Status(409, code), _) if code == "auth.user_exists" => {
                ledger.reapplied.push(username.to_owned());
                Some(false)
            }
            (Outcome::Status(status, _), _) if *status < 500 => Some(false),
            _ => None,
        };
        ledger.records.push(Record {
            op: Op::Register,
            started,
            finished: Instant::now(),
            outcome,
        });
        result
    }

    async fn login(&self, username: &str) -> Option<(String, String)> {
        let req = self
            .http
            .post(format!("{}/api/v1/auth/login", self.config.base))
            .json(&json!({"login": username, "password": PASSWORD}));
        let pair = self.send(Op::Login, req).await?;
        let access = pair["access_token"].as_str()?.to_owned();
        // A login answer without a readable session id counts as no login (and the ledger's
        // session count shows it against the number of successful login requests).
        let sid = session_id(&access)?;
        self.ledger.lock().unwrap().sessions.push(sid);
        Some((access, pair["refresh_token"].as_str()?.to_owned()))
    }

    async fn refresh(&self, refresh: &str) -> Option<(String, String)> {
        let req = self
            .http
            .post(format!("{}/api/v1/auth/refresh", self.config.base))
            .json(&json!({"refresh_token": refresh}));
        let pair = self.send(Op::Refresh, req).await?;
        Some((
            pair["access_token"].as_str()?.to_owned(),
            pair["refresh_token"].as_str()?.to_owned(),
        ))
    }

    /// Sends, records, and returns the body of a success.
    async fn send(&self, op: Op, req: reqwest::RequestBuilder) -> Option<Value> {
        let started = Instant::now();
        let (outcome, body) = self.exchange(req).await;
        let ok = outcome == Outcome::Ok;
        self.ledger.lock().unwrap().records.push(Record {
            op,
            started,
            finished: Instant::now(),
            outcome,
        });
        ok.then_some(body)
    }

    /// One HTTP exchange, bounded by the give-up time.
    async fn exchange(&self, req: reqwest::RequestBuilder) -> (Outcome, Value) {
        let answer = tokio::time::timeout(self.config.give_up_after, async {
            let res = req.send().await?;
            let status = res.status();
            let bytes = res.bytes().await?;
            Ok::<_, reqwest::Error>((status, bytes))
        })
        .await;
        match answer {
            Err(_) => (Outcome::Hung, Value::Null),
            Ok(Err(e)) => (Outcome::Transport(e.to_string()), Value::Null),
            Ok(Ok((status, bytes))) => {
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                if status.is_success() {
                    (Outcome::Ok, body)
                } else {
                    let code = body["error"]["code"].as_str().unwrap_or("").to_owned();
                    (Outcome::Status(status.as_u16(), code), body)
                }
            }
        }
    }
}

/// The `sid` claim of an access token (read without verification: the token came from us).
fn session_id(token: &str) -> Option<Uuid> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims["sid"].as_str()?.parse().ok()
}
