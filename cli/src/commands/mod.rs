//! One module per group of commands; [`run`] dispatches.

mod account;
mod admin;
mod auth;
mod chat;
mod connect;
mod socket;
mod watch;

use crate::args::Command;
use crate::context::Context;
use crate::error::CliError;

/// Runs `command`.
pub async fn run(ctx: &mut Context, command: Command) -> Result<(), CliError> {
    match command {
        Command::Register {
            email,
            username,
            display_name,
            password,
        } => auth::register(ctx, email, username, display_name, &password).await,
        Command::Login { login, password } => auth::login(ctx, login, &password).await,
        Command::Whoami => auth::whoami(ctx).await,
        Command::Token => auth::token(ctx).await,
        Command::Logout { all } => auth::logout(ctx, all).await,
        Command::Password(cmd) => auth::password(ctx, cmd).await,
        Command::Keys => auth::keys(ctx).await,
        Command::Profiles => auth::profiles(ctx),
        Command::Account(cmd) => account::run(ctx, cmd).await,
        Command::Users(cmd) => admin::users(ctx, cmd).await,
        Command::Access(cmd) => admin::access(ctx, cmd).await,
        Command::Chat(cmd) => chat::run(ctx, cmd).await,
        Command::Watch {
            topics,
            all_accounts,
        } => watch::run(ctx, topics, all_accounts).await,
        Command::Completions { .. } => Ok(()),
    }
}
