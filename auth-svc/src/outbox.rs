//! The transactional outbox: domain events are written to `auth.outbox` in the same
//! transaction as the state change they describe, and a relay publishes them.
//!
//! The relay claims rows with `FOR UPDATE SKIP LOCKED` (so several replicas relay at once
//! without publishing the same row twice), publishes them on a channel in publisher-confirm
//! mode, and deletes each row only after the broker confirmed it. A crash anywhere between
//! the commit and the confirmation leaves the row to be published again: delivery is
//! at-least-once, and consumers deduplicate by the event id (also the AMQP `message_id`).

use std::sync::Arc;
use std::time::Duration;

use authstack_bus::{BusError, CancellationToken, ConfirmedPublisher};
use authstack_protocol::Event;
use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::repo;

/// Rows published per round trip of the relay.
const BATCH: i64 = 100;

/// Writes `events` in the caller's transaction.
pub async fn enqueue(conn: &mut PgConnection, events: &[Event]) -> Result<(), sqlx::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
    let keys: Vec<String> = events
        .iter()
        .map(|e| e.kind.routing_key().to_owned())
        .collect();
    let payloads: Vec<serde_json::Value> = events
        .iter()
        .map(|e| serde_json::to_value(e).unwrap_or_default())
        .collect();
    repo::outbox::insert(conn, &ids, &keys, &payloads).await
}

/// Wakes this replica's relay after a commit that wrote events (events committed by other
/// replicas are found by polling).
#[derive(Clone, Default)]
pub struct RelaySignal(Arc<Notify>);

impl RelaySignal {
    /// Asks the relay to look at the outbox now.
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// Where and how the relay publishes.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// AMQP URL.
    pub url: String,
    /// The events exchange.
    pub exchange: String,
    /// Connection name shown by the broker.
    pub connection_name: String,
    /// How often to look for events without being woken.
    pub poll: Duration,
}

/// Starts the relay; it runs until `shutdown`.
pub fn spawn_relay(
    pool: PgPool,
    config: RelayConfig,
    signal: RelaySignal,
    shutdown: CancellationToken,
) {
    let poll = config.poll;
    tokio::spawn(authstack_bus::run_relay(
        config.url,
        config.exchange,
        config.connection_name,
        shutdown,
        move |publisher| relay(pool.clone(), publisher, signal.clone(), poll),
    ));
}

/// Publishes until the broker fails (returns its error; the caller reconnects).
async fn relay(
    pool: PgPool,
    publisher: ConfirmedPublisher,
    signal: RelaySignal,
    poll: Duration,
) -> Result<(), BusError> {
    loop {
        loop {
            match publish_batch(&pool, &publisher).await {
                // A short batch emptied the outbox as far as this replica can tell: events it
                // commits later wake it again, other replicas' are found by the next poll. (Not
                // looking again saves a transaction per wake-up.)
                Ok(n) if (n as i64) < BATCH => break,
                Ok(_) => {}
                Err(RelayError::Bus(e)) => return Err(e),
                Err(RelayError::Db(e)) => {
                    tracing::warn!(error = %e, "outbox relay cannot read the outbox; retrying");
                    break;
                }
            }
        }
        tokio::select! {
            _ = signal.0.notified() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

enum RelayError {
    Db(sqlx::Error),
    Bus(BusError),
}

impl From<sqlx::Error> for RelayError {
    fn from(e: sqlx::Error) -> Self {
        RelayError::Db(e)
    }
}

/// Publishes up to [`BATCH`] rows; returns how many were confirmed and deleted.
async fn publish_batch(pool: &PgPool, publisher: &ConfirmedPublisher) -> Result<usize, RelayError> {
    let mut tx = pool.begin().await?;
    let rows = repo::outbox::claim(&mut *tx, BATCH).await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut pending = Vec::with_capacity(rows.len());
    let mut failure = None;
    for row in &rows {
        match publisher
            .publish(
                &row.routing_key,
                &row.event_id.to_string(),
                row.payload.as_bytes(),
            )
            .await
        {
            Ok(p) => pending.push((row.id, &row.routing_key, p)),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let mut confirmed = Vec::with_capacity(pending.len());
    for (id, key, p) in pending {
        match p.confirmed().await {
            Ok(()) => {
                metrics::counter!("authstack_events_published_total", "kind" => key.clone())
                    .increment(1);
                confirmed.push(id);
            }
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    repo::outbox::delete(&mut *tx, &confirmed).await?;
    tx.commit().await?;
    match failure {
        Some(e) => Err(RelayError::Bus(e)),
        None => Ok(confirmed.len()),
    }
}
