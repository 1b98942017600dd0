//! PostgreSQL: the pool, the embedded migrations (schema `chat`) and every query, each checked
//! at compile time against the migrations (sqlx's macros, offline data in the workspace's
//! `.sqlx/`; `make sqlx-prepare` regenerates it).

use std::time::Duration;

use authstack_protocol::chat::{Chat, Member, Message};
use chrono::{DateTime, Utc};
use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use uuid::Uuid;

/// The schema every table lives in.
pub const SCHEMA: &str = "chat";
/// `NOTIFY` channel announcing a new message (payload: its id).
pub const MESSAGE_CHANNEL: &str = "chat_message";
/// `NOTIFY` channel announcing that a member left (payload: `chat_id:account_id`).
pub const LEFT_CHANNEL: &str = "chat_left";

/// Applies the migrations of `chat/migrations/` (compiled in) under sqlx's advisory
/// lock, so replicas starting together apply them once. Bookkeeping lives in the schema too.
/// The schema is created only when missing: `CREATE SCHEMA IF NOT EXISTS` needs CREATE on the
/// database even when the schema exists, and a least-privilege role that owns only its schema
/// does not have it.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    let schema_exists = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1::text) AS "exists!""#,
        SCHEMA
    )
    .fetch_one(pool)
    .await?;
    let migration = |version, name: &'static str, sql: &'static str| {
        Migration::new(
            version,
            name.into(),
            MigrationType::Simple,
            sql.into_sql_str(),
            false,
        )
    };
    let mut migrator = Migrator::with_migrations(vec![
        migration(1, "init", include_str!("../migrations/0001_init.sql")),
        migration(
            2,
            "chats_by_creation",
            include_str!("../migrations/0002_chats_by_creation.sql"),
        ),
    ]);
    if !schema_exists {
        migrator.create_schema(SCHEMA);
    }
    migrator.dangerous_set_table_name("chat._sqlx_migrations");
    migrator.run(pool).await
}

/// A pool on `url` that connects on first use (start-up does not wait for the database).
pub fn pool(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = url.parse()?;
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(options.application_name("authstack-chat")))
}

/// Chats listed at most by [`list_chats`].
pub const CHAT_LIST_LIMIT: i64 = 500;
/// Messages read at most by one [`messages_for_fanout`] (a catch-up reads the rest next time).
pub const FANOUT_LIMIT: i64 = 10_000;

struct ChatRow {
    id: Uuid,
    name: String,
    created_by: Uuid,
    created_at: DateTime<Utc>,
    members: i64,
}

impl From<ChatRow> for Chat {
    fn from(r: ChatRow) -> Chat {
        Chat {
            id: r.id,
            name: r.name,
            created_by: r.created_by,
            created_at: r.created_at,
            members: r.members,
        }
    }
}

struct MessageRow {
    id: i64,
    chat_id: Uuid,
    author_id: Uuid,
    author: String,
    body: String,
    sent_at: DateTime<Utc>,
}

impl From<MessageRow> for Message {
    fn from(r: MessageRow) -> Message {
        Message {
            id: r.id,
            chat_id: r.chat_id,
            author_id: r.author_id,
            author: r.author,
            text: r.body,
            sent_at: r.sent_at,
        }
    }
}

/// Creates a chat with its creator as the first member.
pub async fn create_chat(
    pool: &PgPool,
    name: &str,
    creator: Uuid,
    username: &str,
) -> Result<Chat, sqlx::Error> {
    let id = Uuid::new_v4();
    let mut tx = pool.begin().await?;
    sqlx::query!(
        "INSERT INTO chat.chats (id, name, created_by) VALUES ($1, $2, $3)",
        id,
        name,
        creator
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "INSERT INTO chat.members (chat_id, account_id, username) VALUES ($1, $2, $3)",
        id,
        creator,
        username
    )
    .execute(&mut *tx)
    .await?;
    let chat = get_chat_in(&mut *tx, id).await?;
    tx.commit().await?;
    chat.ok_or(sqlx::Error::RowNotFound)
}

async fn get_chat_in<'e>(
    exec: impl sqlx::PgExecutor<'e>,
    id: Uuid,
) -> Result<Option<Chat>, sqlx::Error> {
    let row = sqlx::query_as!(
        ChatRow,
        r#"SELECT c.id, c.name, c.created_by, c.created_at,
                  (SELECT count(*) FROM chat.members m WHERE m.chat_id = c.id) AS "members!"
             FROM chat.chats c WHERE c.id = $1"#,
        id
    )
    .fetch_optional(exec)
    .await?;
    Ok(row.map(Chat::from))
}

/// One chat.
pub async fn get_chat(pool: &PgPool, id: Uuid) -> Result<Option<Chat>, sqlx::Error> {
    get_chat_in(pool, id).await
}

/// The chats `account` is a member of (every chat when `account` is `None`), newest first, at
/// most [`CHAT_LIST_LIMIT`]. Two statements: one query for both (`$1 IS NULL OR EXISTS ...`)
/// read every chat for an account's list, the `OR` keeping the membership test from driving it.
pub async fn list_chats(pool: &PgPool, account: Option<Uuid>) -> Result<Vec<Chat>, sqlx::Error> {
    let rows = match account {
        Some(account) => {
            sqlx::query_as!(
                ChatRow,
                r#"SELECT c.id, c.name, c.created_by, c.created_at,
                          (SELECT count(*) FROM chat.members m WHERE m.chat_id = c.id)
                            AS "members!"
                     FROM chat.members me
                     JOIN chat.chats c ON c.id = me.chat_id
                    WHERE me.account_id = $1
                    ORDER BY c.created_at DESC, c.id LIMIT $2"#,
                account,
                CHAT_LIST_LIMIT
            )
            .fetch_all(pool)
            .await?
        }
        None => {
            sqlx::query_as!(
                ChatRow,
                r#"SELECT c.id, c.name, c.created_by, c.created_at,
                          (SELECT count(*) FROM chat.members m WHERE m.chat_id = c.id)
                            AS "members!"
                     FROM chat.chats c
                    ORDER BY c.created_at DESC, c.id LIMIT $1"#,
                CHAT_LIST_LIMIT
            )
            .fetch_all(pool)
            .await?
        }
    };
    Ok(rows.into_iter().map(Chat::from).collect())
}

/// Whether `account` is a member of `chat`.
pub async fn is_member(pool: &PgPool, chat: Uuid, account: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM chat.members WHERE chat_id = $1 AND account_id = $2)
             AS "member!""#,
        chat,
        account
    )
    .fetch_one(pool)
    .await
}

/// Adds `account` to `chat` (or refreshes its user name); `false` when the chat does not exist.
pub async fn join(
    pool: &PgPool,
    chat: Uuid,
    account: Uuid,
    username: &str,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query!(
        "INSERT INTO chat.members (chat_id, account_id, username)
         SELECT id, $2, $3 FROM chat.chats WHERE id = $1
         ON CONFLICT (chat_id, account_id) DO UPDATE SET username = EXCLUDED.username",
        chat,
        account,
        username
    )
    .execute(pool)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Removes `account` from `chat` and tells every replica (their sockets of that member close);
/// `false` when it was not a member.
pub async fn leave(pool: &PgPool, chat: Uuid, account: Uuid) -> Result<bool, sqlx::Error> {
    let left = sqlx::query_scalar!(
        "WITH gone AS (DELETE FROM chat.members WHERE chat_id = $1 AND account_id = $2
                       RETURNING chat_id, account_id)
         SELECT pg_notify($3, chat_id::text || ':' || account_id::text) IS NULL AS notified
           FROM gone",
        chat,
        account,
        LEFT_CHANNEL
    )
    .fetch_optional(pool)
    .await?;
    Ok(left.is_some())
}

/// The members of `chat`, in joining order.
pub async fn members(pool: &PgPool, chat: Uuid) -> Result<Vec<Member>, sqlx::Error> {
    let rows = sqlx::query!(
        "SELECT account_id, username, joined_at FROM chat.members WHERE chat_id = $1
          ORDER BY joined_at, account_id",
        chat
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Member {
            account_id: r.account_id,
            username: r.username,
            joined_at: r.joined_at,
        })
        .collect())
}

/// Stores a message by a member and announces it to every replica; `None` when `author` is not
/// a member of `chat` (the membership check and the insert are one statement).
pub async fn post_message(
    pool: &PgPool,
    chat: Uuid,
    author: Uuid,
    text: &str,
) -> Result<Option<Message>, sqlx::Error> {
    let row = sqlx::query!(
        r#"WITH m AS (INSERT INTO chat.messages (chat_id, author_id, author, body)
                      SELECT chat_id, account_id, username, $3 FROM chat.members
                       WHERE chat_id = $1 AND account_id = $2
                      RETURNING id, chat_id, author_id, author, body, sent_at)
           SELECT m.id AS "id!", m.chat_id AS "chat_id!", m.author_id AS "author_id!",
                  m.author AS "author!", m.body AS "body!", m.sent_at AS "sent_at!",
                  pg_notify($4, m.id::text) IS NULL AS notified
             FROM m"#,
        chat,
        author,
        text,
        MESSAGE_CHANNEL
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| {
        Message::from(MessageRow {
            id: r.id,
            chat_id: r.chat_id,
            author_id: r.author_id,
            author: r.author,
            body: r.body,
            sent_at: r.sent_at,
        })
    }))
}

/// Which part of the history to read.
#[derive(Clone, Copy, Debug)]
pub enum Window {
    /// The newest messages older than this id (`None`: the newest of all).
    Before(Option<i64>),
    /// The oldest messages newer than this id.
    After(i64),
}

/// Up to `limit` messages of `chat` in `window`, oldest first, and whether older ones exist
/// (for [`Window::Before`]).
pub async fn messages(
    pool: &PgPool,
    chat: Uuid,
    window: Window,
    limit: i64,
) -> Result<(Vec<Message>, bool), sqlx::Error> {
    let mut rows = match window {
        Window::Before(before) => {
            sqlx::query_as!(
                MessageRow,
                "SELECT id, chat_id, author_id, author, body, sent_at FROM chat.messages
                  WHERE chat_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
                chat,
                before.unwrap_or(i64::MAX),
                limit + 1
            )
            .fetch_all(pool)
            .await?
        }
        Window::After(after) => {
            sqlx::query_as!(
                MessageRow,
                "SELECT id, chat_id, author_id, author, body, sent_at FROM chat.messages
                  WHERE chat_id = $1 AND id > $2 ORDER BY id ASC LIMIT $3",
                chat,
                after,
                limit + 1
            )
            .fetch_all(pool)
            .await?
        }
    };
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    if matches!(window, Window::Before(_)) {
        rows.reverse();
    }
    Ok((rows.into_iter().map(Message::from).collect(), more))
}

/// Messages with the given ids, or every message newer than `after` (a bounded catch-up after a
/// lost listener connection), oldest first, at most [`FANOUT_LIMIT`]. The lower bound on `id`
/// (implied by the rest) lets a generic plan start the primary key there instead of walking it.
pub async fn messages_for_fanout(
    pool: &PgPool,
    ids: &[i64],
    after: Option<i64>,
) -> Result<Vec<Message>, sqlx::Error> {
    let rows = sqlx::query_as!(
        MessageRow,
        "SELECT id, chat_id, author_id, author, body, sent_at FROM chat.messages
          WHERE (id = ANY($1) OR id > $2)
            AND id >= LEAST($2, (SELECT min(i) FROM unnest($1::int8[]) AS i))
          ORDER BY id LIMIT $3",
        ids as &[i64],
        after.unwrap_or(i64::MAX),
        FANOUT_LIMIT
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(Message::from).collect())
}

/// The largest message id so far (0 when there is none).
pub async fn last_message_id(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(r#"SELECT COALESCE(max(id), 0) AS "last!" FROM chat.messages"#)
        .fetch_one(pool)
        .await
}

/// Whether the database answers.
pub async fn ping(pool: &PgPool) -> bool {
    sqlx::query!("SELECT 1 AS one")
        .fetch_one(pool)
        .await
        .is_ok()
}
