//! A closed-loop HTTP/1.1 load generator: C keep-alive connections, each sending its next
//! request as soon as the previous answer arrived, for a fixed duration after a warm-up.
//! Prints one JSON report per run (and optionally one line per second).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use authstack_bench::{histogram, report};
use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
enum Scenario {
    /// GET / on a plain server (the baseline).
    Hello,
    /// GET /api/v1/auth/session (verification only).
    Session,
    /// GET /api/v1/users/me (RPC + PostgreSQL).
    Me,
    /// POST /api/v1/auth/login (argon2id).
    Login,
    /// POST /api/v1/auth/refresh, each connection following its own token chain.
    Refresh,
    /// A mix for rotation runs: /session, /users/me, refresh, and a login every 50 requests.
    Mixed,
}

#[derive(Parser)]
struct Args {
    /// Base URL of the target.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    base: String,
    #[arg(long, value_enum)]
    scenario: Scenario,
    /// Concurrent connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Warm-up seconds (not measured).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Users to create and use (login, refresh, me, session).
    #[arg(long, default_value_t = 64)]
    users: usize,
    /// Prefix of the user names (lets runs reuse or separate their users).
    #[arg(long, default_value = "bench")]
    user_prefix: String,
    /// Print a JSON line with throughput and latency every second.
    #[arg(long)]
    per_second: bool,
    /// Name in the report (defaults to the scenario).
    #[arg(long)]
    name: Option<String>,
    /// A named window of the measurement, `NAME=START-END` in seconds after the warm-up
    /// (repeatable); each gets its own report line.
    #[arg(long = "phase", value_parser = parse_phase)]
    phases: Vec<Phase>,
}

#[derive(Clone, Debug)]
struct Phase {
    name: String,
    start: f64,
    end: f64,
}

fn parse_phase(s: &str) -> Result<Phase, String> {
    let (name, range) = s.split_once('=').ok_or("expected NAME=START-END")?;
    let (a, b) = range.split_once('-').ok_or("expected NAME=START-END")?;
    let start: f64 = a.trim().parse().map_err(|e| format!("{e}"))?;
    let end: f64 = b.trim().parse().map_err(|e| format!("{e}"))?;
    if end <= start {
        return Err("END must be after START".into());
    }
    Ok(Phase {
        name: name.to_owned(),
        start,
        end,
    })
}

const PASSWORD: &str = "bench password 123";

struct Target {
    addr: SocketAddr,
    host: String,
}

async fn target(base: &str) -> anyhow::Result<Target> {
    let uri: hyper::Uri = base.parse()?;
    let host = uri
        .host()
        .ok_or_else(|| anyhow::anyhow!("no host in {base}"))?
        .to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await?
        .next()
        .ok_or_else(|| anyhow::anyhow!("cannot resolve {base}"))?;
    Ok(Target {
        addr,
        host: format!("{host}:{port}"),
    })
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(t: &Target) -> anyhow::Result<Sender> {
    let stream = tokio::net::TcpStream::connect(t.addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

fn request(
    t: &Target,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Request<Full<Bytes>> {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", &t.host);
    if let Some(tok) = token {
        b = b.header("authorization", format!("Bearer {tok}"));
    }
    let body = match body {
        Some(v) => {
            b = b.header("content-type", "application/json");
            Bytes::from(serde_json::to_vec(v).unwrap_or_default())
        }
        None => Bytes::new(),
    };
    b.body(Full::new(body))
        .unwrap_or_else(|_| Request::new(Full::new(Bytes::new())))
}

async fn send(
    sender: &mut Sender,
    req: Request<Full<Bytes>>,
) -> anyhow::Result<(StatusCode, Bytes)> {
    sender.ready().await?;
    let res = sender.send_request(req).await?;
    let status = res.status();
    let body = res.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// Registers (409 is fine) and logs in `users` users; returns (login, access, refresh).
async fn prepare_users(
    t: &Target,
    prefix: &str,
    users: usize,
) -> anyhow::Result<Vec<(String, String, String)>> {
    let mut sender = connect(t).await?;
    let mut out = Vec::with_capacity(users);
    for i in 0..users {
        let name = format!("{prefix}{i}");
        let reg = json!({"email": format!("{name}@bench.example"), "username": name, "password": PASSWORD});
        let (s, b) = send(
            &mut sender,
            request(t, Method::POST, "/api/v1/auth/register", None, Some(&reg)),
        )
        .await?;
        if s != StatusCode::CREATED && s != StatusCode::CONFLICT {
            anyhow::bail!("register {name}: {s} {}", String::from_utf8_lossy(&b));
        }
        let login = json!({"login": name, "password": PASSWORD});
        let (s, b) = send(
            &mut sender,
            request(t, Method::POST, "/api/v1/auth/login", None, Some(&login)),
        )
        .await?;
        if s != StatusCode::OK {
            anyhow::bail!("login {name}: {s} {}", String::from_utf8_lossy(&b));
        }
        let v: Value = serde_json::from_slice(&b)?;
        out.push((
            name,
            v["access_token"].as_str().unwrap_or_default().to_owned(),
            v["refresh_token"].as_str().unwrap_or_default().to_owned(),
        ));
    }
    Ok(out)
}

struct Shared {
    ok_per_second: Vec<AtomicU64>,
    failed: AtomicU64,
    failed_per_phase: Vec<AtomicU64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let t = Arc::new(target(&args.base).await?);
    let users = if args.scenario == Scenario::Hello {
        Vec::new()
    } else {
        prepare_users(&t, &args.user_prefix, args.users.max(1)).await?
    };
    let users = Arc::new(users);
    let warmup = Duration::from_secs_f64(args.warmup);
    let measure = Duration::from_secs_f64(args.duration);
    let start = Instant::now() + Duration::from_millis(50);
    let measure_from = start + warmup;
    let end = measure_from + measure;
    let seconds = measure.as_secs() as usize + 2;
    let shared = Arc::new(Shared {
        ok_per_second: (0..seconds).map(|_| AtomicU64::new(0)).collect(),
        failed: AtomicU64::new(0),
        failed_per_phase: args.phases.iter().map(|_| AtomicU64::new(0)).collect(),
    });
    let phases = Arc::new(args.phases.clone());
    // Which phases contain a moment `sent`.
    let phase_of = {
        let phases = phases.clone();
        move |sent: Instant| -> Vec<usize> {
            let at = sent.saturating_duration_since(measure_from).as_secs_f64();
            phases
                .iter()
                .enumerate()
                .filter(|(_, p)| at >= p.start && at < p.end)
                .map(|(i, _)| i)
                .collect()
        }
    };
    let mut tasks = Vec::new();
    for c in 0..args.connections {
        let (t, users, shared) = (t.clone(), users.clone(), shared.clone());
        let (phase_of, phase_count) = (phase_of.clone(), phases.len());
        let scenario = args.scenario;
        tasks.push(tokio::spawn(async move {
            let mut hist = histogram();
            let mut per_phase: Vec<hdrhistogram::Histogram<u64>> =
                (0..phase_count).map(|_| histogram()).collect();
            let mut per_second: Vec<hdrhistogram::Histogram<u64>> =
                (0..seconds).map(|_| histogram()).collect();
            let mut sender = match connect(&t).await {
                Ok(s) => s,
                Err(_) => {
                    shared.failed.fetch_add(1, Ordering::Relaxed);
                    return (hist, per_second, per_phase);
                }
            };
            let mine = if users.is_empty() {
                None
            } else {
                Some(&users[c % users.len()])
            };
            let mut refresh = mine.map(|u| u.2.clone()).unwrap_or_default();
            let mut n = 0usize;
            tokio::time::sleep_until(start.into()).await;
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                n += 1;
                let kind = match scenario {
                    // Token checks, RPCs and token issuing; one argon2 login in 50 requests.
                    Scenario::Mixed if n.is_multiple_of(50) => Scenario::Login,
                    Scenario::Mixed => [
                        Scenario::Session,
                        Scenario::Me,
                        Scenario::Session,
                        Scenario::Refresh,
                        Scenario::Me,
                        Scenario::Session,
                    ][n % 6],
                    s => s,
                };
                let (req, expect) = match (kind, mine) {
                    (Scenario::Hello, _) => {
                        (request(&t, Method::GET, "/", None, None), StatusCode::OK)
                    }
                    (Scenario::Session, Some(u)) => (
                        request(&t, Method::GET, "/api/v1/auth/session", Some(&u.1), None),
                        StatusCode::OK,
                    ),
                    (Scenario::Me, Some(u)) => (
                        request(&t, Method::GET, "/api/v1/users/me", Some(&u.1), None),
                        StatusCode::OK,
                    ),
                    (Scenario::Login, Some(u)) => (
                        request(
                            &t,
                            Method::POST,
                            "/api/v1/auth/login",
                            None,
                            Some(&json!({"login": u.0, "password": PASSWORD})),
                        ),
                        StatusCode::OK,
                    ),
                    (Scenario::Refresh, Some(_)) => (
                        request(
                            &t,
                            Method::POST,
                            "/api/v1/auth/refresh",
                            None,
                            Some(&json!({"refresh_token": refresh})),
                        ),
                        StatusCode::OK,
                    ),
                    _ => break,
                };
                let sent = Instant::now();
                let result = send(&mut sender, req).await;
                let took = sent.elapsed();
                let measured = sent >= measure_from && sent < end;
                match result {
                    Ok((status, body)) if status == expect => {
                        if kind == Scenario::Refresh {
                            let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                            if let Some(r) = v["refresh_token"].as_str() {
                                refresh = r.to_owned();
                            }
                        }
                        if measured {
                            let us = (took.as_micros() as u64).max(1);
                            let _ = hist.record(us);
                            for p in phase_of(sent) {
                                let _ = per_phase[p].record(us);
                            }
                            let sec = (sent - measure_from).as_secs() as usize;
                            if sec < seconds {
                                let _ = per_second[sec].record(us);
                                shared.ok_per_second[sec].fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    Ok((status, body)) => {
                        if measured || sent >= measure_from {
                            shared.failed.fetch_add(1, Ordering::Relaxed);
                            for p in phase_of(sent) {
                                shared.failed_per_phase[p].fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        eprintln!("unexpected {status}: {}", String::from_utf8_lossy(&body));
                    }
                    Err(e) => {
                        shared.failed.fetch_add(1, Ordering::Relaxed);
                        for p in phase_of(sent) {
                            shared.failed_per_phase[p].fetch_add(1, Ordering::Relaxed);
                        }
                        eprintln!("transport error: {e}");
                        match connect(&t).await {
                            Ok(s) => sender = s,
                            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                        }
                    }
                }
            }
            (hist, per_second, per_phase)
        }));
    }
    let mut total = histogram();
    let mut per_second: Vec<hdrhistogram::Histogram<u64>> =
        (0..seconds).map(|_| histogram()).collect();
    let mut per_phase: Vec<hdrhistogram::Histogram<u64>> =
        phases.iter().map(|_| histogram()).collect();
    for task in tasks {
        let (h, ps, pp) = task.await?;
        let _ = total.add(&h);
        for (acc, s) in per_second.iter_mut().zip(ps.iter()) {
            let _ = acc.add(s);
        }
        for (acc, s) in per_phase.iter_mut().zip(pp.iter()) {
            let _ = acc.add(s);
        }
    }
    for ((p, h), failed) in phases
        .iter()
        .zip(per_phase.iter())
        .zip(shared.failed_per_phase.iter())
    {
        let window = Duration::from_secs_f64(p.end.min(measure.as_secs_f64()) - p.start);
        let mut r = report(&p.name, h, failed.load(Ordering::Relaxed), window);
        r.name = format!("phase:{}", p.name);
        println!("{}", serde_json::to_string(&r)?);
    }
    if args.per_second {
        for (i, h) in per_second
            .iter()
            .enumerate()
            .take(measure.as_secs() as usize)
        {
            println!(
                "{}",
                json!({"second": i, "ok": h.len(), "p99_ms": h.value_at_quantile(0.99) as f64 / 1000.0})
            );
        }
    }
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("{:?}", args.scenario).to_lowercase());
    let r = report(
        &name,
        &total,
        shared.failed.load(Ordering::Relaxed),
        measure,
    );
    println!("{}", serde_json::to_string(&r)?);
    Ok(())
}
