//! `GET /api/v1/chats/{id}/ws`: new messages of one chat, live.
//!
//! The caller is authenticated and authorized (member, or admin) before the upgrade, so a
//! refusal is an ordinary JSON error. `?after=ID` first replays what was stored after the
//! message `ID` (a reconnecting client misses nothing). The server sends [`LiveFrame`] text
//! frames and pings every 30 s; what the client sends is ignored (messages are posted over
//! REST). Close codes: 4001 the access token expired, 4003 the caller left the chat, 4008 the
//! client read too slowly, 1001 the service is shutting down.

use std::collections::HashSet;
use std::time::Duration;

use authstack_protocol::chat::{
    CLOSE_NOT_A_MEMBER, CLOSE_TOKEN_EXPIRED, CLOSE_TOO_SLOW, LiveFrame, MESSAGE_PAGE_MAX, Message,
};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use crate::auth::Caller;
use crate::db::{self, Window};
use crate::error::ApiError;
use crate::live::LiveEvent;
use crate::routes::{Access, authorize};
use crate::state::AppState;

/// Largest frame accepted from a client (they have nothing to say but pongs and closes).
const MAX_CLIENT_FRAME: usize = 4096;
/// How often the server pings.
const PING_EVERY: Duration = Duration::from_secs(30);
/// How long one send may take before the client counts as gone.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Deserialize)]
pub struct LiveQuery {
    /// Replay messages stored after this id first.
    after: Option<i64>,
    /// The token, for clients that cannot set headers (read by [`Caller`]).
    #[serde(rename = "access_token")]
    _access_token: Option<String>,
}

/// Upgrades to a live socket for one chat.
pub async fn live(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<LiveQuery>, QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = upgrade.map_err(|e| ApiError::field("upgrade", "required", e.body_text()))?;
    let Path(raw) = path?;
    let chat: Uuid = raw
        .parse()
        .map_err(|_| ApiError::field("id", "invalid_format", "chat id must be a UUID"))?;
    let Query(q) = query?;
    authorize(&state, &caller, chat, Access::Read).await?;
    // Subscribe before the replay, so nothing falls between the two.
    let events = state.hub.subscribe(chat);
    let span = tracing::Span::current();
    Ok(upgrade
        .max_message_size(MAX_CLIENT_FRAME)
        .on_upgrade(move |socket| {
            let session = Session {
                state,
                chat,
                account: caller.account_id,
                expires_at: caller.claims.exp,
                replayed: HashSet::new(),
                floor: q.after.unwrap_or(0),
            };
            tracing::Instrument::instrument(session.run(socket, events, q.after), span)
        }))
}

struct Session {
    state: AppState,
    chat: Uuid,
    account: Uuid,
    expires_at: i64,
    /// Ids sent by the replay (they may also arrive live; sent once).
    replayed: HashSet<i64>,
    /// The client has every message up to this id (`?after=`); a late notification of an
    /// older one is not sent again.
    floor: i64,
}

impl Session {
    async fn run(
        mut self,
        mut socket: WebSocket,
        mut events: tokio::sync::broadcast::Receiver<LiveEvent>,
        replay_after: Option<i64>,
    ) {
        tracing::info!(chat = %self.chat, account = %self.account, "live socket opened");
        metrics::gauge!("authstack_chat_live_sockets").increment(1.0);
        let (code, reason) = match self.serve(&mut socket, &mut events, replay_after).await {
            Ok(close) => close,
            Err(e) => {
                tracing::debug!(error = %e, "live socket ended");
                (0, "")
            }
        };
        if code != 0 {
            let frame = CloseFrame {
                code,
                reason: reason.into(),
            };
            let _ = tokio::time::timeout(SEND_TIMEOUT, socket.send(WsMessage::Close(Some(frame))))
                .await;
        }
        metrics::gauge!("authstack_chat_live_sockets").decrement(1.0);
        tracing::info!(chat = %self.chat, account = %self.account, code, "live socket closed");
    }

    /// Serves until the socket must close; answers the close code and reason.
    async fn serve(
        &mut self,
        socket: &mut WebSocket,
        events: &mut tokio::sync::broadcast::Receiver<LiveEvent>,
        replay_after: Option<i64>,
    ) -> Result<(u16, &'static str), axum::Error> {
        if let Some(after) = replay_after {
            let (missed, _) = db::messages(
                &self.state.pool,
                self.chat,
                Window::After(after),
                MESSAGE_PAGE_MAX,
            )
            .await
            .map_err(axum::Error::new)?;
            for message in missed {
                self.send(socket, &message).await?;
                self.replayed.insert(message.id);
            }
        }
        let leeway = self.state.config.clock_skew_secs as i64;
        let expires_in = (self.expires_at + leeway - chrono::Utc::now().timestamp()).max(0);
        let expiry = tokio::time::sleep(Duration::from_secs(expires_in as u64));
        tokio::pin!(expiry);
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
        loop {
            tokio::select! {
                _ = self.state.shutdown.cancelled() => return Ok((1001, "server shutting down")),
                _ = &mut expiry => return Ok((CLOSE_TOKEN_EXPIRED, "access token expired")),
                _ = ping.tick() => send_timed(socket, WsMessage::Ping(Default::default())).await?,
                event = events.recv() => match event {
                    Ok(LiveEvent::Message(message)) => self.send(socket, &message).await?,
                    Ok(LiveEvent::Left(account)) if account == self.account => {
                        return Ok((CLOSE_NOT_A_MEMBER, "you left this chat"));
                    }
                    Ok(LiveEvent::Left(_)) => {}
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "live socket too slow");
                        return Ok((CLOSE_TOO_SLOW, "too slow: fetch the history after your last message"));
                    }
                    Err(RecvError::Closed) => return Ok((1011, "live feed ended")),
                },
                incoming = socket.recv() => match incoming {
                    None | Some(Err(_)) | Some(Ok(WsMessage::Close(_))) => return Ok((0, "")),
                    Some(Ok(_)) => {}
                },
            }
        }
    }

    /// Sends a message, unless the replay already did.
    async fn send(&mut self, socket: &mut WebSocket, message: &Message) -> Result<(), axum::Error> {
        if message.id <= self.floor || self.replayed.contains(&message.id) {
            return Ok(());
        }
        let frame = LiveFrame::Message {
            message: message.clone(),
        };
        let text = serde_json::to_string(&frame).map_err(axum::Error::new)?;
        send_timed(socket, WsMessage::Text(text.into())).await
    }
}

async fn send_timed(socket: &mut WebSocket, message: WsMessage) -> Result<(), axum::Error> {
    tokio::time::timeout(SEND_TIMEOUT, socket.send(message))
        .await
        .map_err(axum::Error::new)?
}
