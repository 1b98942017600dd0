//! `auth.outbox`: domain events waiting for the relay.

use sqlx::PgExecutor;
use uuid::Uuid;

/// An event waiting to be published.
pub(crate) struct PendingEvent {
    pub id: i64,
    pub routing_key: String,
    pub event_id: Uuid,
    /// The event as JSON text (the message body).
    pub payload: String,
}

/// Inserts events, given column by column (same length each).
pub(crate) async fn insert(
    db: impl PgExecutor<'_>,
    event_ids: &[Uuid],
    routing_keys: &[String],
    payloads: &[serde_json::Value],
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO auth.outbox (event_id, routing_key, payload)
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::jsonb[])",
        event_ids as &[Uuid],
        routing_keys as &[String],
        payloads as &[serde_json::Value]
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Up to `limit` events, oldest first, locked; rows another relay holds are skipped.
pub(crate) async fn claim(db: impl PgExecutor<'_>, limit: i64) -> sqlx::Result<Vec<PendingEvent>> {
    sqlx::query_as!(
        PendingEvent,
        r#"SELECT id, routing_key, event_id, payload::text AS "payload!" FROM auth.outbox
            ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED"#,
        limit
    )
    .fetch_all(db)
    .await
}

/// Deletes published events.
pub(crate) async fn delete(db: impl PgExecutor<'_>, ids: &[i64]) -> sqlx::Result<()> {
    sqlx::query!("DELETE FROM auth.outbox WHERE id = ANY($1)", ids as &[i64])
        .execute(db)
        .await?;
    Ok(())
}
