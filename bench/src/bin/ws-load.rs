//! WebSocket load for the gateway's `/api/v1/ws`.
//!
//! - `idle`: opens one authenticated socket per token line (reusing lines when there are more
//!   sockets than tokens), waits for every `ready`, holds them for `--hold` seconds while
//!   answering pings, and prints `{"opened", "failed", "connect_seconds"}`. The caller samples
//!   the gateway's RSS meanwhile (a file appears at `--ready-file` once all are open).
//! - `latency`: one socket per token, then publishes events on the events exchange (as auth-svc
//!   would, with auth-svc's broker user) at a steady rate; each carries its send time, and the
//!   receiving socket records publish→client latency. `--target one` sends each event to one
//!   random socket's account; `--target all` sends `keys.rotated` (every socket receives it).
//!   Prints `{"events", "deliveries", "expected", "p50_ms", "p99_ms", "max_ms"}`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use futures::StreamExt;
use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[derive(Parser)]
struct Args {
    /// WebSocket URL of the gateway, e.g. ws://127.0.0.1:8080/api/v1/ws.
    #[arg(long)]
    url: String,
    /// File with access tokens, one per line.
    #[arg(long)]
    tokens: String,
    /// Sockets opened at once at most while connecting.
    #[arg(long, default_value_t = 256)]
    parallel: usize,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Hold idle sockets.
    Idle {
        /// Sockets to open.
        #[arg(long)]
        count: usize,
        /// Seconds to hold them once all are open.
        #[arg(long, default_value_t = 10)]
        hold: u64,
        /// Created once every socket is ready.
        #[arg(long)]
        ready_file: Option<String>,
    },
    /// Publish→client latency of events at a steady rate.
    Latency {
        /// Sockets (one per token line, at most this many).
        #[arg(long, default_value_t = 1000)]
        count: usize,
        /// AMQP URL of a user allowed to publish on the events exchange.
        #[arg(long)]
        amqp: String,
        /// The events exchange.
        #[arg(long)]
        exchange: String,
        /// Events per second.
        #[arg(long, default_value_t = 200)]
        rate: u64,
        /// Measured seconds.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Who receives each event.
        #[arg(long, value_enum, default_value_t = Target::One)]
        target: Target,
    },
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Target {
    /// One socket's account per event (`account.updated`).
    One,
    /// Every socket (`keys.rotated`).
    All,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The `sub` claim of a token (no verification: the bench minted it).
fn subject(token: &str) -> anyhow::Result<String> {
    use base64::Engine;
    let payload = token.split('.').nth(1).context("not a JWT")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload)?;
    let claims: Value = serde_json::from_slice(&bytes)?;
    Ok(claims["sub"].as_str().context("no sub")?.to_owned())
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a socket with `token` and waits for `ready`.
async fn open(url: &str, token: &str) -> anyhow::Result<Socket> {
    let mut request = url.into_client_request()?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.contains(r#""type":"ready""#) => return Ok(ws),
            Some(Ok(Message::Close(f))) => bail!("closed: {f:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => bail!("closed before ready"),
        }
    }
}

/// Opens `count` sockets, `parallel` at a time; the i-th uses token `i % tokens.len()`.
async fn open_all(
    url: &str,
    tokens: &[String],
    count: usize,
    parallel: usize,
) -> (Vec<(usize, Socket)>, usize) {
    let results: Vec<_> = futures::stream::iter(0..count)
        .map(|i| {
            let token = tokens[i % tokens.len()].clone();
            async move { (i, open(url, &token).await) }
        })
        .buffer_unordered(parallel.max(1))
        .collect()
        .await;
    let mut open = Vec::new();
    let mut failed = 0;
    for (i, r) in results {
        match r {
            Ok(ws) => open.push((i, ws)),
            Err(e) => {
                failed += 1;
                if failed <= 3 {
                    eprintln!("socket {i}: {e}");
                }
            }
        }
    }
    (open, failed)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tokens: Vec<String> = std::fs::read_to_string(&args.tokens)?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    if tokens.is_empty() {
        bail!("no tokens in {}", args.tokens);
    }
    match args.mode {
        Mode::Idle {
            count,
            hold,
            ready_file,
        } => {
            let started = Instant::now();
            let (sockets, failed) = open_all(&args.url, &tokens, count, args.parallel).await;
            let connect_seconds = started.elapsed().as_secs_f64();
            if let Some(f) = ready_file {
                std::fs::write(f, sockets.len().to_string())?;
            }
            // Hold: read each socket (tungstenite answers pings on read).
            let closed = Arc::new(AtomicU64::new(0));
            let mut tasks = Vec::new();
            for (_, mut ws) in sockets.into_iter() {
                let closed = closed.clone();
                tasks.push(tokio::spawn(async move {
                    let deadline = tokio::time::sleep(Duration::from_secs(hold));
                    tokio::pin!(deadline);
                    loop {
                        tokio::select! {
                            _ = &mut deadline => break,
                            m = ws.next() => match m {
                                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                                    closed.fetch_add(1, Ordering::Relaxed);
                                    return;
                                }
                                _ => {}
                            },
                        }
                    }
                    let _ = ws.close(None).await;
                }));
            }
            let opened = tasks.len();
            for t in tasks {
                let _ = t.await;
            }
            println!(
                "{}",
                json!({"opened": opened, "failed": failed, "closed_early": closed.load(Ordering::Relaxed),
                       "connect_seconds": connect_seconds})
            );
        }
        Mode::Latency {
            count,
            amqp,
            exchange,
            rate,
            seconds,
            target,
        } => {
            let n = count.min(tokens.len());
            let subjects: Vec<String> = tokens[..n]
                .iter()
                .map(|t| subject(t))
                .collect::<anyhow::Result<_>>()?;
            let (sockets, failed) = open_all(&args.url, &tokens[..n], n, args.parallel).await;
            if failed > 0 {
                bail!("{failed} of {n} sockets failed to open");
            }
            let histogram = Arc::new(Mutex::new(authstack_bench::histogram()));
            let deliveries = Arc::new(AtomicU64::new(0));
            for (_, mut ws) in sockets {
                let histogram = histogram.clone();
                let deliveries = deliveries.clone();
                tokio::spawn(async move {
                    while let Some(Ok(m)) = ws.next().await {
                        let Message::Text(t) = m else { continue };
                        let Ok(frame) = serde_json::from_str::<Value>(t.as_str()) else {
                            continue;
                        };
                        let Some(sent) = frame["event"]["data"]["bench_sent_ns"].as_u64() else {
                            continue;
                        };
                        let micros = now_ns().saturating_sub(sent) / 1000;
                        deliveries.fetch_add(1, Ordering::Relaxed);
                        let _ = histogram.lock().await.record(micros.max(1));
                    }
                });
            }
            let connection = Connection::connect(&amqp, ConnectionProperties::default()).await?;
            let channel = connection.create_channel().await?;
            let interval = Duration::from_nanos(1_000_000_000 / rate.max(1));
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let total = rate * seconds;
            let mut expected = 0u64;
            for i in 0..total {
                tick.tick().await;
                let (kind, account) = match target {
                    Target::One => ("account.updated", Some(subjects[i as usize % n].clone())),
                    Target::All => ("keys.rotated", None),
                };
                expected += if target == Target::One { 1 } else { n as u64 };
                let event = json!({
                    "id": uuid::Uuid::new_v4(),
                    "kind": kind,
                    "account_id": account,
                    "occurred_at": chrono::Utc::now(),
                    "data": {"bench_sent_ns": now_ns()},
                });
                channel
                    .basic_publish(
                        exchange.as_str().into(),
                        kind.into(),
                        BasicPublishOptions::default(),
                        &serde_json::to_vec(&event)?,
                        BasicProperties::default(),
                    )
                    .await?;
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
            let h = histogram.lock().await;
            let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
            println!(
                "{}",
                json!({"sockets": n, "rate": rate, "seconds": seconds, "events": total,
                       "expected": expected, "deliveries": deliveries.load(Ordering::Relaxed),
                       "p50_ms": ms(0.5), "p99_ms": ms(0.99), "max_ms": h.max() as f64 / 1000.0})
            );
            let _ = connection.close(200, "done".into()).await;
        }
    }
    Ok(())
}
