//! auth-svc binary: configuration, telemetry, start-up and signals. The logic is in the library.

use anyhow::Context;
use auth_svc::{Application, Config};
use authstack_bus::CancellationToken;
use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's malloc: cheaper per-call allocations on the RPC path, measured
/// by `make bench` (docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "auth-svc", version, about = "AuthStack authentication service")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (the default).
    Serve,
    /// Add a role (default `admin`) to an existing account, e.g. to bootstrap the first admin.
    GrantRole {
        /// Email or user name of the account.
        #[arg(long)]
        login: String,
        /// The role to add.
        #[arg(long, default_value = auth_svc::admin::DEFAULT_ROLE)]
        role: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    authstack_telemetry::init_tracing(
        authstack_telemetry::LogFormat::from_env(),
        "info,sqlx=warn,lapin=warn",
    );
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(cli.config).await,
        Command::GrantRole { login, role } => {
            if !authstack_protocol::validate::is_valid_role(&role) {
                anyhow::bail!("invalid role `{role}`");
            }
            let pool = auth_svc::db::connect_and_migrate(
                &cli.config.database_url,
                1,
                GRANT_ROLE_DATABASE_WAIT,
            )
            .await?;
            match auth_svc::admin::grant_role(&pool, &login, &role).await? {
                Some(id) => println!("granted `{role}` to {login} ({id})"),
                None => anyhow::bail!("no account with email or user name `{login}`"),
            }
            Ok(())
        }
    }
}

/// How long `grant-role` waits for PostgreSQL before giving up.
const GRANT_ROLE_DATABASE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

async fn serve(config: Config) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let app = Application::build(config, shutdown.clone())
        .await
        .context("starting auth-svc")?;
    tokio::spawn(async move {
        authstack_telemetry::shutdown_signal().await;
        tracing::info!("shutting down: finishing in-flight requests");
        shutdown.cancel();
    });
    app.run_until_stopped().await;
    Ok(())
}
