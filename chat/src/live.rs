//! Live delivery: PostgreSQL `LISTEN`/`NOTIFY` across replicas, fanned out in process.
//!
//! Every replica runs one listener. A stored message is announced with `NOTIFY` in the same
//! statement that inserts it, so every replica (whichever one took the `POST`) hears of it and
//! hands it to the sockets of that chat through a bounded per-chat broadcast channel. If the
//! listener's connection drops, it reconnects and catches up on every message newer than the
//! last one it delivered. A member leaving is announced the same way, so their sockets close.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authstack_protocol::chat::Message;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::db;

/// What a chat's sockets are told.
#[derive(Clone, Debug)]
pub enum LiveEvent {
    /// A new message.
    Message(Arc<Message>),
    /// A member left the chat.
    Left(Uuid),
}

/// The per-chat broadcast channels of this replica.
pub struct Hub {
    rooms: Mutex<HashMap<Uuid, broadcast::Sender<LiveEvent>>>,
    capacity: usize,
}

impl Hub {
    /// A hub whose channels buffer `capacity` events.
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Hub {
            rooms: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        })
    }

    /// Receives the events of `chat` from now on.
    pub fn subscribe(&self, chat: Uuid) -> broadcast::Receiver<LiveEvent> {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        rooms
            .entry(chat)
            .or_insert_with(|| broadcast::channel(self.capacity).0)
            .subscribe()
    }

    /// Hands `event` to the sockets of `chat` on this replica; drops rooms nobody listens to.
    pub fn publish(&self, chat: Uuid, event: LiveEvent) {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(room) = rooms.get(&chat)
            && room.send(event).is_err()
        {
            rooms.remove(&chat);
        }
    }

    /// Live sockets on this replica.
    pub fn listeners(&self) -> usize {
        let rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        rooms.values().map(broadcast::Sender::receiver_count).sum()
    }
}

/// Runs the listener until `shutdown`, reconnecting after failures.
pub fn spawn_listener(pool: PgPool, hub: Arc<Hub>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut last_delivered: Option<i64> = None;
        loop {
            let result = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = listen(&pool, &hub, &mut last_delivered) => r,
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "chat listener lost its database connection; reconnecting");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    });
}

async fn listen(
    pool: &PgPool,
    hub: &Hub,
    last_delivered: &mut Option<i64>,
) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener
        .listen_all([db::MESSAGE_CHANNEL, db::LEFT_CHANNEL])
        .await?;
    // Messages stored while no listener ran: deliver them now (after a reconnect), or start
    // from the newest one (first start).
    match *last_delivered {
        Some(after) => deliver(pool, hub, &[], Some(after), last_delivered).await?,
        None => *last_delivered = Some(db::last_message_id(pool).await?),
    }
    loop {
        // `try_recv` answers `None` when the connection was lost; then reconnect and catch up.
        let Some(first) = listener.try_recv().await? else {
            return Ok(());
        };
        let mut ids = Vec::new();
        let mut next = Some(first);
        // Drain what is already buffered, so a burst costs one query.
        while let Some(n) = next.take() {
            match n.channel() {
                db::MESSAGE_CHANNEL => ids.extend(n.payload().parse::<i64>().ok()),
                _ => left(hub, n.payload()),
            }
            if ids.len() < 500 {
                next = listener.next_buffered();
            }
        }
        if !ids.is_empty() {
            deliver(pool, hub, &ids, None, last_delivered).await?;
        }
    }
}

fn left(hub: &Hub, payload: &str) {
    if let Some((chat, account)) = payload.split_once(':')
        && let (Ok(chat), Ok(account)) = (chat.parse(), account.parse())
    {
        hub.publish(chat, LiveEvent::Left(account));
    }
}

async fn deliver(
    pool: &PgPool,
    hub: &Hub,
    ids: &[i64],
    after: Option<i64>,
    last_delivered: &mut Option<i64>,
) -> Result<(), sqlx::Error> {
    for message in db::messages_for_fanout(pool, ids, after).await? {
        *last_delivered = Some(last_delivered.unwrap_or(0).max(message.id));
        metrics::counter!("authstack_chat_live_messages_total").increment(1);
        hub.publish(message.chat_id, LiveEvent::Message(Arc::new(message)));
    }
    Ok(())
}
