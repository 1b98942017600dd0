//! users list|get|update|disable|enable|delete (admin), access check.

use authstack_protocol::rpc::{AccessCheckParams, AccessDecision, AdminUpdate};
use authstack_protocol::{Account, AccountPage, ErrorBody, ErrorCode};
use reqwest::Method;
use serde_json::json;

use super::account::describe;
use crate::args::{AccessCommand, UsersCommand};
use crate::context::{Context, Service, decode};
use crate::error::CliError;
use crate::output::table;

pub async fn users(ctx: &mut Context, cmd: UsersCommand) -> Result<(), CliError> {
    let (id, update) = match cmd {
        UsersCommand::List { limit, offset } => {
            let path = format!("/api/v1/users?limit={limit}&offset={offset}");
            let page: AccountPage = decode(
                ctx.authed(Service::Gateway, Method::GET, &path, None::<&()>)
                    .await?,
            )?;
            ctx.output.print(&page, |p| {
                let rows = p
                    .items
                    .iter()
                    .map(|a| {
                        vec![
                            a.id.to_string(),
                            a.username.clone(),
                            a.email.clone(),
                            a.roles.join(","),
                            if a.disabled { "disabled" } else { "" }.to_owned(),
                        ]
                    })
                    .collect();
                format!(
                    "{}\n{} of {} account(s), from {}",
                    table(&["ID", "USERNAME", "EMAIL", "ROLES", ""], rows),
                    p.items.len(),
                    p.total,
                    p.offset
                )
            });
            return Ok(());
        }
        UsersCommand::Get { id } => (id, None),
        UsersCommand::Update {
            id,
            roles,
            display_name,
            disabled,
        } => {
            if roles.is_none() && display_name.is_none() && disabled.is_none() {
                return Err(CliError::Usage(
                    "nothing to change: give --role, --display-name or --disabled".into(),
                ));
            }
            let update = AdminUpdate {
                roles,
                disabled,
                display_name,
            };
            (id, Some(update))
        }
        UsersCommand::Disable { id } => (id, Some(disabled(true))),
        UsersCommand::Enable { id } => (id, Some(disabled(false))),
        UsersCommand::Delete { id } => {
            let path = format!("/api/v1/users/{id}");
            ctx.authed(Service::Gateway, Method::DELETE, &path, None::<&()>)
                .await?;
            ctx.output
                .done(&format!("Account {id} deleted."), json!({"deleted": id}));
            return Ok(());
        }
    };
    let path = format!("/api/v1/users/{id}");
    let account: Account = match update {
        None => decode(
            ctx.authed(Service::Gateway, Method::GET, &path, None::<&()>)
                .await?,
        )?,
        Some(u) => decode(
            ctx.authed(Service::Gateway, Method::PATCH, &path, Some(&u))
                .await?,
        )?,
    };
    ctx.output.print(&account, describe);
    Ok(())
}

fn disabled(value: bool) -> AdminUpdate {
    AdminUpdate {
        roles: None,
        disabled: Some(value),
        display_name: None,
    }
}

pub async fn access(ctx: &mut Context, cmd: AccessCommand) -> Result<(), CliError> {
    let AccessCommand::Check { method, path } = cmd;
    let body = AccessCheckParams {
        method: method.to_uppercase(),
        path: path.clone(),
    };
    let decision: AccessDecision = decode(
        ctx.authed(
            Service::Gateway,
            Method::POST,
            "/api/v1/access/check",
            Some(&body),
        )
        .await?,
    )?;
    let verdict = if decision.allowed {
        "allowed"
    } else {
        "denied"
    };
    ctx.output
        .print(&decision, |_| format!("{} {path}: {verdict}", body.method));
    if decision.allowed {
        Ok(())
    } else {
        Err(CliError::Api {
            body: ErrorBody::new(
                ErrorCode::Forbidden,
                format!("{} {path} is not allowed for your roles", body.method),
            ),
            request_id: None,
        })
    }
}
