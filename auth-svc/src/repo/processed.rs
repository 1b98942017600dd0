//! `auth.processed_requests`: the request ids applied, and the replies to replay.

use sqlx::PgExecutor;

/// Records request `id` of `method` with the reply to replay (`None`: a reply that is never
/// stored). False when the id was recorded already (by an earlier or concurrent delivery).
pub(crate) async fn claim(
    db: impl PgExecutor<'_>,
    id: &str,
    method: &str,
    reply: Option<serde_json::Value>,
) -> sqlx::Result<bool> {
    let inserted = sqlx::query!(
        "INSERT INTO auth.processed_requests (request_id, method, reply)
         VALUES ($1, $2, $3) ON CONFLICT (request_id) DO NOTHING",
        id,
        method,
        reply
    )
    .execute(db)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// `None` if request `id` was not applied; else its stored reply as JSON text, `None` inside
/// when it was not stored.
pub(crate) async fn stored_reply(
    db: impl PgExecutor<'_>,
    id: &str,
) -> sqlx::Result<Option<Option<String>>> {
    sqlx::query_scalar!(
        "SELECT reply::text FROM auth.processed_requests WHERE request_id = $1",
        id
    )
    .fetch_optional(db)
    .await
}
