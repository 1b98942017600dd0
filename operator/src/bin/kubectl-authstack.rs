//! `kubectl authstack`: status, manual rotation and emergency revocation of AuthStack keys.
//!
//! Install it on the PATH as `kubectl-authstack`; kubectl finds it as a plugin.

use anyhow::Context as _;
use authstack_operator::plugin::{self, Revoked};
use clap::{Parser, Subcommand};

/// Inspect and operate AuthStacks.
#[derive(Parser, Debug)]
#[command(name = "kubectl-authstack", version, about)]
struct Cli {
    /// Namespace of the AuthStack (default: the kubeconfig context's namespace).
    #[arg(short, long, global = true)]
    namespace: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show conditions, components and the signing key ring of an AuthStack.
    Status {
        /// AuthStack name.
        name: String,
    },
    /// Start a key rotation now (bumps spec.keys.rotationCounter).
    Rotate {
        /// AuthStack name.
        name: String,
    },
    /// Revoke a signing key at once (appends it to spec.keys.revokedKids).
    Revoke {
        /// AuthStack name.
        name: String,
        /// The key id to revoke (key ids may start with `-`).
        #[arg(allow_hyphen_values = true)]
        kid: String,
        /// Revoke even if the key ring does not report this key id.
        #[arg(long)]
        force: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let client = kube::Client::try_default()
        .await
        .context("cannot build a Kubernetes client from the kubeconfig")?;
    let namespace = cli
        .namespace
        .unwrap_or_else(|| client.default_namespace().to_owned());
    match cli.command {
        Command::Status { name } => {
            print!("{}", plugin::status(client, &namespace, &name).await?);
        }
        Command::Rotate { name } => {
            let counter = plugin::rotate(client, &namespace, &name).await?;
            println!(
                "authstack {namespace}/{name}: rotation requested (rotationCounter is now {counter}); \
                 the new key signs after the propagation delay"
            );
        }
        Command::Revoke { name, kid, force } => {
            match plugin::revoke(client, &namespace, &name, &kid, force).await? {
                Revoked::Added { was_active: true } => println!(
                    "authstack {namespace}/{name}: revoked the signing key {kid}; a new key signs at once \
                     and tokens signed by {kid} no longer verify"
                ),
                Revoked::Added { was_active: false } => {
                    println!("authstack {namespace}/{name}: revoked key {kid}")
                }
                Revoked::AlreadyListed => {
                    println!("authstack {namespace}/{name}: key {kid} is already revoked")
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_may_start_with_a_hyphen() {
        let cli = Cli::try_parse_from([
            "kubectl-authstack",
            "revoke",
            "demo",
            "-Qx_1",
            "-n",
            "team-a",
        ])
        .unwrap();
        assert_eq!(cli.namespace.as_deref(), Some("team-a"));
        match cli.command {
            Command::Revoke { name, kid, force } => {
                assert_eq!(
                    (name.as_str(), kid.as_str(), force),
                    ("demo", "-Qx_1", false)
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn namespace_is_global() {
        let cli = Cli::try_parse_from(["kubectl-authstack", "-n", "x", "rotate", "demo"]).unwrap();
        assert_eq!(cli.namespace.as_deref(), Some("x"));
        assert!(Cli::try_parse_from(["kubectl-authstack", "status"]).is_err());
    }
}
