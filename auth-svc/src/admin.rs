//! Operator commands that act on the database directly (bootstrap the first administrator).

use authstack_protocol::model::ROLE_ADMIN;
use sqlx::PgPool;

/// Adds `role` to the account whose email or user name is `login`; returns its id.
pub async fn grant_role(
    pool: &PgPool,
    login: &str,
    role: &str,
) -> Result<Option<uuid::Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE auth.accounts
            SET roles = (SELECT array_agg(DISTINCT r ORDER BY r) FROM unnest(roles || $2::text) AS r),
                updated_at = now()
          WHERE lower(email) = lower($1) OR lower(username) = lower($1)
          RETURNING id",
    )
    .bind(login.trim())
    .bind(role)
    .fetch_optional(pool)
    .await
}

/// The role granted by default.
pub const DEFAULT_ROLE: &str = ROLE_ADMIN;
