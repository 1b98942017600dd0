//! Wire types of the chat service built on AuthStack (`chat/`), shared with the CLI.
//!
//! The chat service answers errors in the platform's shape ([`crate::ErrorBody`] with a request
//! id); live messages arrive over its WebSocket as [`LiveFrame`]s.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Longest chat name, in characters.
pub const CHAT_NAME_MAX: usize = 100;
/// Longest message, in characters.
pub const MESSAGE_MAX: usize = 2000;
/// Largest page of `GET /api/v1/chats/{id}/messages`.
pub const MESSAGE_PAGE_MAX: i64 = 200;

/// WebSocket close code: the access token expired (reconnect with a fresh one).
pub const CLOSE_TOKEN_EXPIRED: u16 = 4001;
/// WebSocket close code: the caller is no longer a member of the chat.
pub const CLOSE_NOT_A_MEMBER: u16 = 4003;
/// WebSocket close code: the client read too slowly and missed messages (reconnect and
/// fetch the history after the last message seen).
pub const CLOSE_TOO_SLOW: u16 = 4008;

/// A chat room.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chat {
    /// Chat id (also what others need to join).
    pub id: Uuid,
    /// Name given at creation.
    pub name: String,
    /// Account that created it.
    pub created_by: Uuid,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Current number of members.
    pub members: i64,
}

/// `POST /api/v1/chats`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewChat {
    /// 1 to [`CHAT_NAME_MAX`] characters, not only spaces.
    pub name: String,
}

/// A member of a chat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Account id (`sub` of the member's tokens).
    pub account_id: Uuid,
    /// User name, as AuthStack reported it when the member joined.
    pub username: String,
    /// When the member joined.
    pub joined_at: DateTime<Utc>,
}

/// A message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Increasing message id (later messages have larger ids).
    pub id: i64,
    /// The chat it was sent to.
    pub chat_id: Uuid,
    /// Author's account id.
    pub author_id: Uuid,
    /// Author's user name.
    pub author: String,
    /// The text.
    pub text: String,
    /// When it was sent.
    pub sent_at: DateTime<Utc>,
}

/// `POST /api/v1/chats/{id}/messages`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewMessage {
    /// 1 to [`MESSAGE_MAX`] characters, not only spaces.
    pub text: String,
}

/// One page of history, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessagePage {
    /// The messages.
    pub items: Vec<Message>,
    /// Pass as `before` to get the page of older messages; absent on the oldest page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_before: Option<i64>,
}

/// What the chat WebSocket sends (text frames, JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveFrame {
    /// A new message in the chat.
    Message {
        /// The message.
        message: Message,
    },
}
