//! `watch`: the live events of the account over the gateway's WebSocket `/api/v1/ws`, until
//! interrupted. Events go to standard output (one line each, JSON lines with `--output json`);
//! notes (connected, reconnecting) to standard error.
//!
//! The socket reconnects by itself: after a network failure or a close the gateway marks as
//! worth retrying (backoff up to 30 s), and at once with a refreshed token when the token
//! expired, its key was revoked or the session ended (then the refresh decides: a revoked
//! session or a disabled account ends the command with exit 3).

use std::time::Duration;

use authstack_protocol::ws::{ClientFrame, CloseCode, PATH, ServerFrame};
use authstack_protocol::{ErrorCode, Event};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use super::socket::{self, Reconnect, Socket};
use crate::context::{Context, Service};
use crate::error::CliError;

const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How one connection ended.
enum Ended {
    /// The user interrupted.
    Interrupted,
    /// The gateway closed with this code (or the connection was lost: `None`).
    Closed(Option<CloseCode>, String),
    /// A final error.
    Failed(CliError),
}

/// Runs until Ctrl-C (exit 0) or until the session cannot go on.
pub async fn run(
    ctx: &mut Context,
    topics: Vec<String>,
    all_accounts: bool,
) -> Result<(), CliError> {
    let json = ctx.output.json();
    let mut backoff = Duration::from_secs(1);
    let mut connected_before = false;
    loop {
        let stale = ctx.session()?.access_token.clone();
        let socket = tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            opened = socket::open(ctx, Service::Gateway, PATH) => opened,
        };
        let ended = match socket {
            Ok(mut ws) => {
                let ended =
                    serve(&mut ws, &topics, all_accounts, json, &mut connected_before).await;
                let _ = ws.close(None).await;
                ended
            }
            Err(Reconnect::Never(e)) => return Err(e),
            Err(Reconnect::After(why)) => Ended::Closed(None, why),
        };
        match ended {
            Ended::Interrupted => return Ok(()),
            Ended::Failed(e) => return Err(e),
            Ended::Closed(Some(code), _)
                if matches!(
                    code,
                    CloseCode::TokenExpired
                        | CloseCode::SessionRevoked
                        | CloseCode::AccountDisabled
                        | CloseCode::KeyRevoked
                        | CloseCode::Unauthenticated
                ) =>
            {
                // A fresh token, or the news that the session is over (exit 3).
                eprintln!("{}; refreshing the token", code.reason());
                ctx.refresh(&stale).await?;
                backoff = Duration::from_secs(1);
            }
            Ended::Closed(Some(CloseCode::MessageTooBig), reason) => {
                return Err(CliError::Local(format!(
                    "the gateway refused a frame: {reason}"
                )));
            }
            Ended::Closed(code, reason) => {
                let what =
                    code.map_or_else(|| "connection lost".to_owned(), |c| c.reason().to_owned());
                eprintln!("{what} ({reason}); reconnecting in {} s", backoff.as_secs());
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => return Ok(()),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

async fn serve(
    ws: &mut Socket,
    topics: &[String],
    all_accounts: bool,
    json: bool,
    connected_before: &mut bool,
) -> Ended {
    // `subscribed` answers still to come before the topics are in force.
    let mut awaiting = 0usize;
    if !topics.is_empty() || all_accounts {
        let mut frames = Vec::new();
        if !topics.is_empty() {
            frames.push(ClientFrame::Unsubscribe {
                topics: authstack_protocol::ws::default_topics(),
            });
        }
        frames.push(ClientFrame::Subscribe {
            topics: if topics.is_empty() {
                authstack_protocol::ws::default_topics()
            } else {
                topics.to_vec()
            },
            all_accounts,
        });
        awaiting = frames.len();
        for f in frames {
            let Ok(text) = serde_json::to_string(&f) else {
                continue;
            };
            if let Err(e) = ws.send(Message::Text(text.into())).await {
                return Ended::Closed(None, e.to_string());
            }
        }
    }
    loop {
        let frame = tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ended::Interrupted,
            frame = ws.next() => frame,
        };
        match frame {
            Some(Ok(Message::Text(text))) => match serde_json::from_str::<ServerFrame>(&text) {
                // With topics of its own, the socket is ready once they are in force.
                Ok(ServerFrame::Ready { topics, .. }) if awaiting == 0 => {
                    announce(&topics, connected_before)
                }
                Ok(ServerFrame::Subscribed { topics, .. }) if awaiting > 0 => {
                    awaiting -= 1;
                    if awaiting == 0 {
                        announce(&topics, connected_before);
                    }
                }
                Ok(ServerFrame::Event { event }) => print_event(&event, json),
                Ok(ServerFrame::Error { error }) if error.code == ErrorCode::Forbidden.as_str() => {
                    return Ended::Failed(CliError::Api {
                        body: authstack_protocol::ErrorBody::new(
                            ErrorCode::Forbidden,
                            error.message,
                        ),
                        request_id: Some(error.request_id),
                    });
                }
                Ok(ServerFrame::Error { error })
                    if error.code == ErrorCode::ValidationFailed.as_str() =>
                {
                    return Ended::Failed(CliError::Usage(format!("topics: {}", error.message)));
                }
                Ok(_) => {}
                Err(e) => eprintln!("ignoring an unreadable frame: {e}"),
            },
            Some(Ok(Message::Close(frame))) => {
                let (code, reason) = frame
                    .map(|f| {
                        (
                            CloseCode::from_code(u16::from(f.code)),
                            f.reason.to_string(),
                        )
                    })
                    .unwrap_or((None, String::new()));
                return Ended::Closed(code, reason);
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Ended::Closed(None, e.to_string()),
            None => return Ended::Closed(None, "closed".into()),
        }
    }
}

fn announce(topics: &[String], connected_before: &mut bool) {
    if *connected_before {
        eprintln!("reconnected");
    } else {
        *connected_before = true;
        eprintln!("watching (topics: {}); Ctrl-C stops", topics.join(", "));
    }
}

/// One event: a JSON line, or `time  kind  account  data`.
fn print_event(event: &Event, json: bool) {
    if json {
        if let Ok(text) = serde_json::to_string(event) {
            println!("{text}");
        }
        return;
    }
    let account = event
        .account_id
        .map_or_else(|| "-".to_owned(), |a| a.to_string());
    let data = match &event.data {
        serde_json::Value::Null => String::new(),
        serde_json::Value::Object(m) if m.is_empty() => String::new(),
        other => other.to_string(),
    };
    println!(
        "{}  {:<32} {:<36}  {}",
        event.occurred_at.format("%Y-%m-%d %H:%M:%S"),
        event.kind.routing_key(),
        account,
        data
    );
}
