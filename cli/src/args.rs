//! The command line: `authstack [--server URL] [--config-dir DIR] [--output json] <command>`.
//! Every global option also has an environment variable.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use uuid::Uuid;

use crate::error::EXIT_CODES_HELP;
use crate::output::Format;

/// The command-line client of AuthStack and of its chat service.
#[derive(Debug, Parser)]
#[command(name = "authstack", version, about, after_help = EXIT_CODES_HELP)]
pub struct Cli {
    /// Base URL of the AuthStack gateway [default: the profile's, else http://127.0.0.1:8080].
    #[arg(long, global = true, env = "AUTHSTACK_URL", value_name = "URL")]
    pub server: Option<String>,

    /// Base URL of the chat service [default: the profile's, else http://127.0.0.1:8090].
    #[arg(long, global = true, env = "AUTHSTACK_CHAT_URL", value_name = "URL")]
    pub chat_url: Option<String>,

    /// Where profiles and tokens are kept [default: ~/.config/authstack].
    #[arg(long, global = true, env = "AUTHSTACK_CONFIG_DIR", value_name = "DIR")]
    pub config_dir: Option<PathBuf>,

    /// The profile: one set of servers and one login (several servers, several accounts).
    #[arg(
        long,
        global = true,
        env = "AUTHSTACK_PROFILE",
        default_value = "default"
    )]
    pub profile: String,

    /// Output format.
    #[arg(long, short = 'o', global = true, env = "AUTHSTACK_OUTPUT", value_enum, default_value_t = Format::Human)]
    pub output: Format,

    /// Seconds to wait for a server's answer.
    #[arg(long, global = true, env = "AUTHSTACK_TIMEOUT", default_value_t = 30)]
    pub timeout: u64,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// A password from the terminal (without echo), or from standard input.
#[derive(Debug, Args)]
pub struct PasswordInput {
    /// Read the password(s) from standard input, one per line, instead of the terminal.
    #[arg(long)]
    pub password_stdin: bool,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create an account (then `authstack login`).
    Register {
        /// Email address.
        #[arg(long)]
        email: String,
        /// User name (3-32 characters: letters, digits, `_`, `.`, `-`).
        #[arg(long)]
        username: String,
        /// Display name.
        #[arg(long)]
        display_name: Option<String>,
        #[command(flatten)]
        password: PasswordInput,
    },
    /// Log in and keep the tokens in the profile (file mode 0600).
    Login {
        /// User name or email [prompted when absent].
        #[arg(long)]
        login: Option<String>,
        #[command(flatten)]
        password: PasswordInput,
    },
    /// Show who is logged in (the account, as the server sees it).
    Whoami,
    /// Print the access token (refreshed when needed), e.g. for curl.
    Token,
    /// Log out of this session, or of every session with --all.
    Logout {
        /// End every session of the account, on every device.
        #[arg(long)]
        all: bool,
    },
    /// Change the password (other sessions are ended).
    #[command(subcommand)]
    Password(PasswordCommand),
    /// Your own account.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Administer accounts (needs the admin role).
    #[command(subcommand)]
    Users(UsersCommand),
    /// Ask the role policy.
    #[command(subcommand)]
    Access(AccessCommand),
    /// Show the public signing keys (JWKS) and the issuer.
    Keys,
    /// List the profiles and who is logged in where.
    Profiles,
    /// Chat rooms on the chat service.
    #[command(subcommand)]
    Chat(ChatCommand),
    /// Live events of your account (and `keys.rotated`) over the gateway's WebSocket, one per
    /// line (JSON lines with --output json); reconnects by itself; Ctrl-C stops.
    Watch {
        /// Topic pattern, e.g. `account.*` or `session.revoked` (`*` one word, `#` any);
        /// repeatable [default: every event you may see].
        #[arg(long = "topic", value_name = "PATTERN")]
        topics: Vec<String>,
        /// Every account's events (role `admin`).
        #[arg(long)]
        all_accounts: bool,
    },
    /// Print a shell completion script (e.g. `authstack completions bash > /etc/bash_completion.d/authstack`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// `authstack password …`.
#[derive(Debug, Subcommand)]
pub enum PasswordCommand {
    /// Change the password: the current one, then the new one (twice on a terminal).
    Change {
        #[command(flatten)]
        password: PasswordInput,
    },
}

/// `authstack account …`.
#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Show the account.
    Show,
    /// Change email, user name or display name.
    Update {
        /// New email address.
        #[arg(long)]
        email: Option<String>,
        /// New user name.
        #[arg(long)]
        username: Option<String>,
        /// New display name (an empty string clears it).
        #[arg(long)]
        display_name: Option<String>,
        /// A new email needs the current password [prompted without echo].
        #[command(flatten)]
        password: PasswordInput,
    },
    /// Delete the account for good (asks for the current password).
    Delete {
        /// Do not ask for confirmation (required when standard input is not a terminal).
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        password: PasswordInput,
    },
}

/// `authstack users …` (admin).
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// List accounts, oldest first.
    List {
        /// Page size (1-200).
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Accounts to skip.
        #[arg(long, default_value_t = 0)]
        offset: i64,
    },
    /// Show one account.
    Get {
        /// Account id.
        id: Uuid,
    },
    /// Change roles, display name or the disabled flag.
    Update {
        /// Account id.
        id: Uuid,
        /// Replace the roles (repeat, or separate with commas).
        #[arg(long = "role", value_delimiter = ',')]
        roles: Option<Vec<String>>,
        /// New display name (an empty string clears it).
        #[arg(long)]
        display_name: Option<String>,
        /// Disable (true) or enable (false) the account.
        #[arg(long)]
        disabled: Option<bool>,
    },
    /// Disable an account (it cannot log in; its sessions end).
    Disable {
        /// Account id.
        id: Uuid,
    },
    /// Enable a disabled account.
    Enable {
        /// Account id.
        id: Uuid,
    },
    /// Delete an account.
    Delete {
        /// Account id.
        id: Uuid,
    },
}

/// `authstack access …`.
#[derive(Debug, Subcommand)]
pub enum AccessCommand {
    /// Whether your roles allow METHOD on PATH (exit 0 allowed, 4 denied).
    Check {
        /// HTTP method, e.g. GET.
        method: String,
        /// Path, e.g. /api/v1/users.
        path: String,
    },
}

/// `authstack chat …`.
#[derive(Debug, Subcommand)]
pub enum ChatCommand {
    /// Create a chat (you are its first member); prints it, with its id.
    Create {
        /// The chat's name.
        name: String,
    },
    /// List your chats (every chat with --all, for admins).
    List {
        /// Every chat (admin role).
        #[arg(long)]
        all: bool,
    },
    /// Join a chat by its id.
    Join {
        /// Chat id.
        id: Uuid,
    },
    /// Leave a chat.
    Leave {
        /// Chat id.
        id: Uuid,
    },
    /// List the members of a chat.
    Members {
        /// Chat id.
        id: Uuid,
    },
    /// Send a message.
    Send {
        /// Chat id.
        id: Uuid,
        /// The message.
        message: String,
    },
    /// Show the history, oldest first.
    Messages {
        /// Chat id.
        id: Uuid,
        /// How many messages (1-200).
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Only messages older than this message id (the page before).
        #[arg(long, conflicts_with = "after")]
        before: Option<i64>,
        /// Only messages newer than this message id.
        #[arg(long)]
        after: Option<i64>,
    },
    /// Talk: messages stream in while you type; Enter sends, Ctrl-D or /quit leaves.
    Connect {
        /// Chat id.
        id: Uuid,
        /// Messages of history shown first.
        #[arg(long, default_value_t = 20)]
        history: i64,
    },
}
