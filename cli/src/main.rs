//! `authstack`: parse the command line, run the command, print errors with their code, and
//! exit with the documented code.

mod args;
mod commands;
mod context;
mod error;
mod output;
mod prompt;
mod store;
mod tls;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::args::{Cli, Command};
use crate::context::{Context, Settings};
use crate::output::Output;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "authstack",
            &mut std::io::stdout(),
        );
        return ExitCode::SUCCESS;
    }
    let output = Output::new(cli.output);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cli.local: starting the runtime: {e}");
            return ExitCode::from(error::exit::OTHER);
        }
    };
    let settings = Settings {
        server: cli.server,
        chat_url: cli.chat_url,
        config_dir: cli.config_dir,
        profile: cli.profile,
        timeout_secs: cli.timeout,
        output,
    };
    let result = runtime.block_on(async move {
        let mut ctx = Context::new(settings)?;
        commands::run(&mut ctx, cli.command).await
    });
    match result {
        Ok(()) => ExitCode::from(error::exit::OK),
        Err(e) => {
            if output.json() {
                eprintln!("{}", e.to_json());
            } else {
                eprintln!("{}", e.human());
            }
            ExitCode::from(e.exit_code())
        }
    }
}
