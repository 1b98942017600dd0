//! `chat connect`: the live view. Messages stream in over the chat service's WebSocket while
//! the user types; Enter posts a line. On a terminal the input line stays at the bottom
//! (rustyline-async prints above it); otherwise lines are read from standard input and
//! messages printed as they come (JSON lines with `--output json`), until interrupted.
//!
//! The socket reconnects by itself (backoff up to 30 s, a fresh token when the old one
//! expired) and asks for the messages after the last one shown, so nothing is missed.

use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use authstack_protocol::chat::{
    CLOSE_NOT_A_MEMBER, CLOSE_TOKEN_EXPIRED, LiveFrame, MESSAGE_PAGE_MAX, Message,
};
use authstack_protocol::{ErrorBody, ErrorCode};
use rustyline_async::{Readline, ReadlineEvent, SharedWriter};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use uuid::Uuid;

use super::chat;
use super::socket::{self, Reconnect, Socket};
use crate::context::{Context, Service};
use crate::error::CliError;

const HELP: &str = "Type a message and press Enter to send it. /quit or Ctrl-D leaves.";
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Where typed lines come from.
enum Input {
    Terminal(Readline),
    Lines(tokio::io::Lines<BufReader<tokio::io::Stdin>>),
    Closed,
}

enum Typed {
    Line(String),
    Quit,
    /// Standard input ended (not a terminal): keep showing messages.
    Ended,
}

impl Input {
    async fn next(&mut self) -> Typed {
        match self {
            Input::Terminal(rl) => match rl.readline().await {
                Ok(ReadlineEvent::Line(line)) => {
                    rl.add_history_entry(line.clone());
                    Typed::Line(line)
                }
                Ok(ReadlineEvent::Eof | ReadlineEvent::Interrupted) | Err(_) => Typed::Quit,
            },
            Input::Lines(lines) => match lines.next_line().await {
                Ok(Some(line)) => Typed::Line(line),
                Ok(None) | Err(_) => Typed::Ended,
            },
            Input::Closed => std::future::pending().await,
        }
    }
}

/// Where messages and notes go.
struct Screen {
    terminal: Option<SharedWriter>,
    json: bool,
}

impl Screen {
    fn message(&mut self, m: &Message) {
        if self.json {
            if let Ok(text) = serde_json::to_string(m) {
                println!("{text}");
            }
            return;
        }
        self.write(&chat::line(m));
    }

    fn note(&mut self, text: &str) {
        if self.json || self.terminal.is_none() {
            eprintln!("{text}");
        } else {
            self.write(&format!("-- {text}"));
        }
    }

    fn write(&mut self, text: &str) {
        match &mut self.terminal {
            Some(out) => {
                let _ = writeln!(out, "{text}");
            }
            None => println!("{text}"),
        }
    }
}

pub async fn run(ctx: &mut Context, id: Uuid, history: i64) -> Result<(), CliError> {
    let room = chat::get(ctx, id).await?;
    let page = chat::history(ctx, id, history.clamp(1, MESSAGE_PAGE_MAX), None, None).await?;
    let login = ctx.session()?.login.clone();
    let json = ctx.output.json();
    let (mut input, terminal) = if std::io::stdin().is_terminal() && !json {
        let (rl, out) = Readline::new(format!("{login}> "))
            .map_err(|e| CliError::Local(format!("terminal: {e}")))?;
        (Input::Terminal(rl), Some(out))
    } else {
        let lines = BufReader::new(tokio::io::stdin()).lines();
        (Input::Lines(lines), None)
    };
    let mut screen = Screen { terminal, json };
    screen.note(&format!(
        "#{} ({} members, id {}). {HELP}",
        room.name, room.members, room.id
    ));
    let mut seen = Seen::default();
    for m in &page.items {
        seen.insert(m.id);
        screen.message(m);
    }

    let mut socket: Option<Socket> = None;
    let mut retry_at = Instant::now();
    let mut backoff = Duration::from_secs(1);
    let result = loop {
        if socket.is_none() && Instant::now() >= retry_at {
            match open(ctx, id, seen.last).await {
                Ok(s) => {
                    if backoff > Duration::from_secs(1) {
                        screen.note("reconnected");
                    }
                    socket = Some(s);
                    backoff = Duration::from_secs(1);
                }
                Err(Reconnect::Never(e)) => break Err(e),
                Err(Reconnect::After(why)) => {
                    screen.note(&format!(
                        "live connection failed ({why}); retrying in {} s",
                        backoff.as_secs()
                    ));
                    retry_at = Instant::now() + backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        tokio::select! {
            typed = input.next() => match typed {
                Typed::Quit => break Ok(()),
                Typed::Ended => input = Input::Closed,
                Typed::Line(line) => match line.trim() {
                    "" => {}
                    "/quit" | "/exit" => break Ok(()),
                    "/help" => screen.note(HELP),
                    _ => match chat::send(ctx, id, line).await {
                        // The message comes back over the socket like everyone else's.
                        Ok(_) => {}
                        Err(e @ (CliError::SessionEnded(_) | CliError::NotLoggedIn(_))) => break Err(e),
                        Err(e) => screen.note(&e.human()),
                    },
                },
            },
            frame = socket::next(&mut socket) => match frame {
                Some(Ok(WsMessage::Text(text))) => {
                    if let Ok(LiveFrame::Message { message }) = serde_json::from_str(&text)
                        && seen.insert(message.id)
                    {
                        screen.message(&message);
                    }
                }
                Some(Ok(WsMessage::Close(frame))) => {
                    socket = None;
                    let code = frame.as_ref().map_or(1005, |f| u16::from(f.code));
                    if code == CLOSE_NOT_A_MEMBER {
                        break Err(forbidden("you are no longer a member of this chat"));
                    }
                    if code == CLOSE_TOKEN_EXPIRED {
                        // Reconnect at once with a fresh token.
                        let stale = ctx.session()?.access_token.clone();
                        if let Err(e) = ctx.refresh(&stale).await {
                            break Err(e);
                        }
                    } else {
                        screen.note(&format!("live connection closed ({code}); reconnecting"));
                        retry_at = Instant::now() + backoff;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    socket = None;
                    screen.note(&format!("live connection lost ({e}); reconnecting"));
                    retry_at = Instant::now() + backoff;
                }
                None => {
                    socket = None;
                    retry_at = Instant::now() + backoff;
                }
            },
            _ = tokio::time::sleep_until(retry_at), if socket.is_none() => {}
        }
    };
    if let Input::Terminal(rl) = &mut input {
        let _ = rl.flush();
    }
    drop(input);
    if let Some(mut s) = socket {
        let _ = s.close(None).await;
    }
    result
}

/// Message ids already shown (a reconnect replays from the last one).
#[derive(Default)]
struct Seen {
    ids: HashSet<i64>,
    last: i64,
}

impl Seen {
    fn insert(&mut self, id: i64) -> bool {
        if self.ids.len() > 10_000 {
            let last = self.last;
            self.ids.retain(|&i| i > last - 1_000);
        }
        self.last = self.last.max(id);
        self.ids.insert(id)
    }
}

fn forbidden(message: &str) -> CliError {
    CliError::Api {
        body: ErrorBody::new(ErrorCode::Forbidden, message),
        request_id: None,
    }
}

/// Opens the live socket, replaying messages after `after`.
async fn open(ctx: &mut Context, id: Uuid, after: i64) -> Result<Socket, Reconnect> {
    socket::open(
        ctx,
        Service::Chat,
        &format!("/api/v1/chats/{id}/ws?after={after}"),
    )
    .await
}
