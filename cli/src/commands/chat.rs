//! chat create|list|join|leave|members|send|messages (and connect, in `connect`).

use authstack_protocol::chat::{Chat, Member, Message, MessagePage, NewChat, NewMessage};
use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

use super::connect;
use crate::args::ChatCommand;
use crate::context::{Context, Service, decode};
use crate::error::CliError;
use crate::output::table;

/// A message for people: `[HH:MM:SS] author: text`.
pub fn line(m: &Message) -> String {
    let time = m.sent_at.with_timezone(&chrono::Local).format("%H:%M:%S");
    format!("[{time}] {}: {}", m.author, m.text)
}

fn describe(c: &Chat) -> String {
    format!(
        "{}  {}\n  members:  {}\n  created:  {}",
        c.id,
        c.name,
        c.members,
        c.created_at.format("%Y-%m-%d %H:%M:%S UTC")
    )
}

pub async fn run(ctx: &mut Context, cmd: ChatCommand) -> Result<(), CliError> {
    match cmd {
        ChatCommand::Create { name } => {
            let chat: Chat = decode(
                ctx.authed(
                    Service::Chat,
                    Method::POST,
                    "/api/v1/chats",
                    Some(&NewChat { name }),
                )
                .await?,
            )?;
            ctx.output.print(&chat, |c| {
                format!(
                    "Created {}\nOthers join with `authstack chat join {}`; talk with `authstack chat connect {}`.",
                    describe(c),
                    c.id,
                    c.id
                )
            });
        }
        ChatCommand::List { all } => {
            let path = if all {
                "/api/v1/chats?all=true"
            } else {
                "/api/v1/chats"
            };
            let chats: Vec<Chat> = decode(
                ctx.authed(Service::Chat, Method::GET, path, None::<&()>)
                    .await?,
            )?;
            ctx.output.print(&chats, |chats| {
                if chats.is_empty() {
                    return "No chats yet: `authstack chat create NAME` or `authstack chat join ID`.".into();
                }
                let rows = chats
                    .iter()
                    .map(|c| vec![c.id.to_string(), c.name.clone(), c.members.to_string()])
                    .collect();
                table(&["ID", "NAME", "MEMBERS"], rows)
            });
        }
        ChatCommand::Join { id } => {
            let chat: Chat = decode(
                ctx.authed(Service::Chat, Method::POST, &path(id, "/join"), None::<&()>)
                    .await?,
            )?;
            ctx.output
                .print(&chat, |c| format!("Joined {}", describe(c)));
        }
        ChatCommand::Leave { id } => {
            ctx.authed(
                Service::Chat,
                Method::POST,
                &path(id, "/leave"),
                None::<&()>,
            )
            .await?;
            ctx.output
                .done(&format!("Left chat {id}."), json!({"left": id}));
        }
        ChatCommand::Members { id } => {
            let members: Vec<Member> = decode(
                ctx.authed(
                    Service::Chat,
                    Method::GET,
                    &path(id, "/members"),
                    None::<&()>,
                )
                .await?,
            )?;
            ctx.output.print(&members, |members| {
                let rows = members
                    .iter()
                    .map(|m| {
                        vec![
                            m.username.clone(),
                            m.account_id.to_string(),
                            m.joined_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                        ]
                    })
                    .collect();
                table(&["USERNAME", "ACCOUNT", "JOINED"], rows)
            });
        }
        ChatCommand::Send { id, message } => {
            let sent = send(ctx, id, message).await?;
            ctx.output.print(&sent, line);
        }
        ChatCommand::Messages {
            id,
            limit,
            before,
            after,
        } => {
            let page = history(ctx, id, limit, before, after).await?;
            ctx.output.print(&page, |p| {
                let mut lines: Vec<String> = p.items.iter().map(line).collect();
                if let Some(before) = p.next_before {
                    lines.push(format!("(older: --before {before})"));
                }
                if lines.is_empty() {
                    "No messages.".into()
                } else {
                    lines.join("\n")
                }
            });
        }
        ChatCommand::Connect { id, history } => connect::run(ctx, id, history).await?,
    }
    Ok(())
}

fn path(id: Uuid, rest: &str) -> String {
    format!("/api/v1/chats/{id}{rest}")
}

/// Posts a message.
pub async fn send(ctx: &mut Context, id: Uuid, text: String) -> Result<Message, CliError> {
    let body = NewMessage { text };
    decode(
        ctx.authed(
            Service::Chat,
            Method::POST,
            &path(id, "/messages"),
            Some(&body),
        )
        .await?,
    )
}

/// One page of history.
pub async fn history(
    ctx: &mut Context,
    id: Uuid,
    limit: i64,
    before: Option<i64>,
    after: Option<i64>,
) -> Result<MessagePage, CliError> {
    let mut query = format!("?limit={limit}");
    if let Some(b) = before {
        query.push_str(&format!("&before={b}"));
    }
    if let Some(a) = after {
        query.push_str(&format!("&after={a}"));
    }
    decode(
        ctx.authed(
            Service::Chat,
            Method::GET,
            &path(id, &format!("/messages{query}")),
            None::<&()>,
        )
        .await?,
    )
}

/// One chat (members and admins).
pub async fn get(ctx: &mut Context, id: Uuid) -> Result<Chat, CliError> {
    decode(
        ctx.authed(Service::Chat, Method::GET, &path(id, ""), None::<&()>)
            .await?,
    )
}
