//! account show|update|delete.

use std::io::IsTerminal;

use authstack_protocol::Account;
use authstack_protocol::rpc::{DeleteMeParams, Secret, UpdateMeParams};
use reqwest::Method;
use serde_json::json;

use crate::args::{AccountCommand, PasswordInput};
use crate::context::{Context, Service, decode};
use crate::error::CliError;
use crate::prompt;

/// An account for people, several lines.
pub fn describe(a: &Account) -> String {
    let mut text = format!(
        "{} <{}>\n  id:       {}\n  roles:    {}",
        a.username,
        a.email,
        a.id,
        a.roles.join(", ")
    );
    if let Some(name) = &a.display_name {
        text.push_str(&format!("\n  name:     {name}"));
    }
    text.push_str(&format!(
        "\n  created:  {}",
        a.created_at.format("%Y-%m-%d %H:%M:%S UTC")
    ));
    if a.disabled {
        text.push_str("\n  DISABLED");
    }
    text
}

/// The caller's account, as the server sees it.
pub async fn me(ctx: &mut Context) -> Result<Account, CliError> {
    let path = "/api/v1/users/me";
    decode(
        ctx.authed(Service::Gateway, Method::GET, path, None::<&()>)
            .await?,
    )
}

pub async fn run(ctx: &mut Context, cmd: AccountCommand) -> Result<(), CliError> {
    let account: Account = match cmd {
        AccountCommand::Show => me(ctx).await?,
        AccountCommand::Update {
            email,
            username,
            display_name,
            password,
        } => {
            if email.is_none() && username.is_none() && display_name.is_none() {
                return Err(CliError::Usage(
                    "nothing to change: give --email, --username or --display-name".into(),
                ));
            }
            // The server asks for re-authentication before an email change.
            let current_password = match email {
                Some(_) => Some(current_password(&password)?),
                None => None,
            };
            let body = UpdateMeParams {
                email,
                username,
                display_name,
                current_password,
            };
            decode(
                ctx.authed(
                    Service::Gateway,
                    Method::PATCH,
                    "/api/v1/users/me",
                    Some(&body),
                )
                .await?,
            )?
        }
        AccountCommand::Delete { yes, password } => return delete(ctx, yes, &password).await,
    };
    ctx.output.print(&account, describe);
    Ok(())
}

/// The current password, for the server's re-authentication.
fn current_password(input: &PasswordInput) -> Result<Secret, CliError> {
    let mut secrets = prompt::passwords(input, &["Current password: "], false)?;
    Ok(Secret(secrets.pop().unwrap_or_default()))
}

async fn delete(ctx: &mut Context, yes: bool, password: &PasswordInput) -> Result<(), CliError> {
    let login = ctx.session()?.login.clone();
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(CliError::Usage(
                "deleting the account needs --yes when standard input is not a terminal".into(),
            ));
        }
        let answer = prompt::line(&format!(
            "Delete the account {login} on {} for good? Type its login to confirm: ",
            ctx.server
        ))?;
        if answer != login {
            return Err(CliError::Usage("not confirmed; nothing deleted".into()));
        }
    }
    let body = DeleteMeParams {
        current_password: current_password(password)?,
    };
    ctx.authed(
        Service::Gateway,
        Method::DELETE,
        "/api/v1/users/me",
        Some(&body),
    )
    .await?;
    ctx.clear_session()?;
    ctx.output.done(
        &format!("Account {login} deleted."),
        json!({"deleted": login}),
    );
    Ok(())
}
