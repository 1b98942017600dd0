//! Operator commands that act on the database directly (bootstrap the first administrator).

use authstack_protocol::model::ROLE_ADMIN;
use sqlx::PgPool;

use crate::repo;

/// Adds `role` to the account whose email or user name is `login`; returns its id.
pub async fn grant_role(
    pool: &PgPool,
    login: &str,
    role: &str,
) -> Result<Option<uuid::Uuid>, sqlx::Error> {
    repo::accounts::grant_role(pool, login.trim(), role).await
}

/// The role granted by default.
pub const DEFAULT_ROLE: &str = ROLE_ADMIN;
