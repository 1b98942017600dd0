//! Reading secrets: from the terminal without echo, or from standard input for scripts.

use std::io::{BufRead, IsTerminal};

use crate::args::PasswordInput;
use crate::error::CliError;

/// Reads one secret per prompt. With `--password-stdin`, one line of standard input each;
/// otherwise from the terminal without echo, and when `confirm` is set the last one is asked
/// twice.
pub fn passwords(
    input: &PasswordInput,
    prompts: &[&str],
    confirm: bool,
) -> Result<Vec<String>, CliError> {
    if input.password_stdin {
        let stdin = std::io::stdin();
        let mut lines = stdin.lock().lines();
        return prompts
            .iter()
            .map(|prompt| match lines.next() {
                Some(Ok(line)) => Ok(line.trim_end_matches('\r').to_owned()),
                Some(Err(e)) => Err(CliError::Local(format!("reading standard input: {e}"))),
                None => Err(CliError::Usage(format!(
                    "standard input ended before the {} (one per line)",
                    prompt.trim_end_matches(": ").to_lowercase()
                ))),
            })
            .collect();
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::Usage(
            "no terminal to read a password from: use --password-stdin".into(),
        ));
    }
    let ask = |prompt: &str| {
        rpassword::prompt_password(prompt)
            .map_err(|e| CliError::Local(format!("reading the password: {e}")))
    };
    let secrets = prompts
        .iter()
        .map(|p| ask(p))
        .collect::<Result<Vec<_>, _>>()?;
    if confirm
        && let (Some(last), Some(prompt)) = (secrets.last(), prompts.last())
        && ask(&format!("Repeat {}", prompt.to_lowercase()))? != *last
    {
        return Err(CliError::Usage("the passwords do not match".into()));
    }
    Ok(secrets)
}

/// Reads one line from the terminal (e.g. a login name).
pub fn line(prompt: &str) -> Result<String, CliError> {
    if !std::io::stdin().is_terminal() {
        return Err(CliError::Usage(format!(
            "{} is required (no terminal to ask on)",
            prompt.trim_end_matches(": ")
        )));
    }
    eprint!("{prompt}");
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| CliError::Local(format!("reading the terminal: {e}")))?;
    Ok(answer.trim().to_owned())
}
