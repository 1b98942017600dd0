//! register, login, whoami, token, logout, password change, keys, profiles.

use authstack_protocol::model::PublicJwk;
use authstack_protocol::rpc::{
    ChangePasswordParams, LoginParams, RefreshTokenParams, RegisterParams,
};
use authstack_protocol::{Account, TokenPair};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::account::{describe, me};
use crate::args::{PasswordCommand, PasswordInput};
use crate::context::{Context, Service, decode};
use crate::error::CliError;
use crate::output::table;
use crate::prompt;

pub async fn register(
    ctx: &mut Context,
    email: String,
    username: String,
    display_name: Option<String>,
    input: &PasswordInput,
) -> Result<(), CliError> {
    let password = prompt::passwords(input, &["Password: "], true)?.remove(0);
    let body = RegisterParams {
        email,
        username,
        password: password.as_str().into(),
        display_name,
    };
    let account: Account = decode(
        ctx.send(
            Service::Gateway,
            Method::POST,
            "/api/v1/auth/register",
            Some(&body),
            None,
        )
        .await?,
    )?;
    ctx.output.print(&account, |a| {
        format!(
            "Registered {}\nLog in with `authstack login --login {}`.",
            describe(a),
            a.username
        )
    });
    Ok(())
}

pub async fn login(
    ctx: &mut Context,
    login: Option<String>,
    input: &PasswordInput,
) -> Result<(), CliError> {
    let login = match login {
        Some(l) => l,
        None if input.password_stdin => {
            return Err(CliError::Usage(
                "--login is required with --password-stdin".into(),
            ));
        }
        None => prompt::line("Login (user name or email): ")?,
    };
    let password = prompt::passwords(input, &["Password: "], false)?.remove(0);
    let body = LoginParams {
        login: login.clone(),
        password: password.as_str().into(),
    };
    let pair: TokenPair = decode(
        ctx.send(
            Service::Gateway,
            Method::POST,
            "/api/v1/auth/login",
            Some(&body),
            None,
        )
        .await?,
    )?;
    ctx.save_session(&login, &pair)?;
    let result = json!({
        "ok": true,
        "server": ctx.server,
        "profile": ctx.profile_name,
        "expires_in": pair.expires_in,
    });
    ctx.output.print(&result, |_| {
        format!(
            "Logged in to {} as {login} (profile {}).",
            ctx.server, ctx.profile_name
        )
    });
    Ok(())
}

pub async fn whoami(ctx: &mut Context) -> Result<(), CliError> {
    let account = me(ctx).await?;
    let server = ctx.server.clone();
    ctx.output
        .print(&json!({"account": account, "server": server}), |_| {
            format!("{}\n  server:   {server}", describe(&account))
        });
    Ok(())
}

pub async fn token(ctx: &mut Context) -> Result<(), CliError> {
    let token = ctx.access_token().await?;
    ctx.output
        .print(&json!({"access_token": token}), |_| token.clone());
    Ok(())
}

pub async fn logout(ctx: &mut Context, all: bool) -> Result<(), CliError> {
    // The access token first: a refresh replaces the refresh token sent below.
    let result = match ctx.access_token().await {
        Ok(token) if all => {
            ctx.send(
                Service::Gateway,
                Method::POST,
                "/api/v1/auth/logout-all",
                None::<&()>,
                Some(&token),
            )
            .await
        }
        Ok(token) => {
            let body = RefreshTokenParams {
                refresh_token: ctx.session()?.refresh_token.as_str().into(),
            };
            ctx.send(
                Service::Gateway,
                Method::POST,
                "/api/v1/auth/logout",
                Some(&body),
                Some(&token),
            )
            .await
        }
        Err(e) => Err(e),
    };
    // The tokens are forgotten even when the server already considered them dead.
    match result {
        Ok(_) | Err(CliError::SessionEnded(_)) => {}
        Err(CliError::Api { ref body, .. })
            if body.code == authstack_protocol::ErrorCode::InvalidToken => {}
        Err(e) => return Err(e),
    }
    ctx.clear_session()?;
    let what = if all { "every session" } else { "this session" };
    ctx.output.done(
        &format!("Logged out of {what} on {}.", ctx.server),
        json!({"all": all}),
    );
    Ok(())
}

pub async fn password(ctx: &mut Context, cmd: PasswordCommand) -> Result<(), CliError> {
    let PasswordCommand::Change { password } = cmd;
    ctx.session()?;
    let mut secrets =
        prompt::passwords(&password, &["Current password: ", "New password: "], true)?;
    let body = ChangePasswordParams {
        new_password: secrets.remove(1).as_str().into(),
        current_password: secrets.remove(0).as_str().into(),
    };
    ctx.authed(
        Service::Gateway,
        Method::POST,
        "/api/v1/users/me/password",
        Some(&body),
    )
    .await?;
    ctx.output.done(
        "Password changed; your other sessions have ended.",
        json!({}),
    );
    Ok(())
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<PublicJwk>,
}

#[derive(Serialize)]
struct KeySummary {
    issuer: Option<String>,
    jwks_uri: String,
    keys: Vec<KeyRow>,
}

#[derive(Serialize)]
struct KeyRow {
    kid: String,
    alg: String,
    kty: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    crv: Option<String>,
}

pub async fn keys(ctx: &mut Context) -> Result<(), CliError> {
    let discovery = ctx
        .send(
            Service::Gateway,
            Method::GET,
            "/.well-known/openid-configuration",
            None::<&()>,
            None,
        )
        .await?;
    let jwks: Jwks = decode(
        ctx.send(
            Service::Gateway,
            Method::GET,
            "/.well-known/jwks.json",
            None::<&()>,
            None,
        )
        .await?,
    )?;
    let summary = KeySummary {
        issuer: discovery["issuer"].as_str().map(str::to_owned),
        jwks_uri: format!("{}/.well-known/jwks.json", ctx.server),
        keys: jwks
            .keys
            .into_iter()
            .map(|k| KeyRow {
                kid: k.kid,
                alg: k.alg,
                kty: k.kty,
                crv: k.crv,
            })
            .collect(),
    };
    ctx.output.print(&summary, |s| {
        let rows = s
            .keys
            .iter()
            .map(|k| {
                vec![
                    k.kid.clone(),
                    k.alg.clone(),
                    format!("{} {}", k.kty, k.crv.as_deref().unwrap_or(""))
                        .trim()
                        .to_owned(),
                ]
            })
            .collect();
        format!(
            "issuer: {}\njwks:   {}\n{} key(s) may verify tokens now:\n{}",
            s.issuer.as_deref().unwrap_or("?"),
            s.jwks_uri,
            s.keys.len(),
            table(&["KID", "ALG", "TYPE"], rows)
        )
    });
    Ok(())
}

pub fn profiles(ctx: &Context) -> Result<(), CliError> {
    let mut list = Vec::new();
    for name in ctx.store.names()? {
        let p = ctx.store.load(&name)?;
        list.push(json!({
            "name": name,
            "server": p.server,
            "chat_url": p.chat_url,
            "logged_in_as": p.session.as_ref().map(|s| s.login.clone()),
            "current": name == ctx.profile_name,
        }));
    }
    ctx.output.print(&list, |list| {
        let cell = |v: &Value| v.as_str().unwrap_or("-").to_owned();
        let rows = list
            .iter()
            .map(|p| {
                let marker = if p["current"] == true { "*" } else { "" };
                vec![
                    format!("{}{marker}", cell(&p["name"])),
                    cell(&p["server"]),
                    cell(&p["chat_url"]),
                    cell(&p["logged_in_as"]),
                ]
            })
            .collect();
        table(&["PROFILE", "SERVER", "CHAT", "LOGGED IN AS"], rows)
    });
    Ok(())
}
