//! Developer tooling for local runs (never deployed).
//!
//! - `keygen`: create a key ring in kubelet's mounted-Secret layout, as the operator's Secret
//!   would appear inside an auth-svc pod.
//! - `rotate`: advance that ring with the same rotation state machine the operator uses (start
//!   a rotation, promote after the propagation delay, remove expired keys, revoke a kid).
//! - `show`: print the ring's state without private keys.
//! - `amqp-delete`: remove a scripted run's queues and exchanges.
//! - `kubelet-sync`: follow a Secret through the Kubernetes API (any kubeconfig, including the
//!   control plane of `make cluster-up`) and write it into a directory the way kubelet updates a
//!   Secret volume.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use authstack_keyring::layout::write_atomic;
use authstack_keyring::material::generate;
use authstack_keyring::rotation::{self, RotationPolicy, RotationRequest};
use authstack_keyring::{KEYRING_FILE, KeyRing, KeyState, SigningAlgorithm};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "authstack-dev", version, about = "AuthStack developer tooling")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a key ring with one active key in DIR (kubelet layout).
    Keygen {
        /// Target directory.
        #[arg(long)]
        dir: PathBuf,
        /// Signing algorithm: EdDSA, ES256 or RS256.
        #[arg(long, default_value = "EdDSA")]
        algorithm: SigningAlgorithm,
        /// Replace an existing ring.
        #[arg(long)]
        force: bool,
    },
    /// Advance the ring in DIR: start a rotation (--start), promote / remove keys whose time
    /// has come, revoke kids (--revoke).
    Rotate {
        /// Key directory.
        #[arg(long)]
        dir: PathBuf,
        /// Begin a rotation now (a new pending key).
        #[arg(long)]
        start: bool,
        /// Revoke this kid at once (repeatable; key ids may start with `-`).
        #[arg(long, allow_hyphen_values = true)]
        revoke: Vec<String>,
        /// Seconds a pending key is published before it signs.
        #[arg(long, default_value_t = 10)]
        propagation_delay: i64,
        /// Access-token lifetime plus clock skew, in seconds.
        #[arg(long, default_value_t = 930)]
        token_lifetime: i64,
    },
    /// Print the ring in DIR (kids, states, times), without private keys.
    Show {
        /// Key directory.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Delete RabbitMQ queues and exchanges (the clean-up of scripted runs).
    AmqpDelete {
        /// AMQP URL.
        #[arg(
            long,
            env = "AMQP_URL",
            default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
        )]
        url: String,
        /// A queue to delete (repeatable).
        #[arg(long)]
        queue: Vec<String>,
        /// An exchange to delete (repeatable).
        #[arg(long)]
        exchange: Vec<String>,
    },
    /// Follow a Secret (KUBECONFIG) and write it into DIR like kubelet, DELAY after each change.
    KubeletSync {
        /// Namespace of the Secret.
        #[arg(long, short = 'n', default_value = "default")]
        namespace: String,
        /// Name of the Secret (the operator's is `<stack>-signing-keys`).
        #[arg(long)]
        secret: String,
        /// Target directory.
        #[arg(long)]
        dir: PathBuf,
        /// Milliseconds between seeing a change and writing it.
        #[arg(long, default_value_t = 1000)]
        delay_ms: u64,
        /// Milliseconds between reads of the Secret.
        #[arg(long, default_value_t = 200)]
        poll_ms: u64,
    },
}

fn write_ring(dir: &Path, ring: &KeyRing) -> anyhow::Result<()> {
    let files = BTreeMap::from([(KEYRING_FILE.to_string(), ring.to_json())]);
    write_atomic(dir, &files).with_context(|| format!("writing {}", dir.display()))
}

fn read_ring(dir: &Path) -> anyhow::Result<KeyRing> {
    let (ring, _) = authstack_keyring::watch::load(dir)
        .with_context(|| format!("reading the key ring in {}", dir.display()))?;
    Ok(ring)
}

fn show(ring: &KeyRing) {
    println!(
        "generation {} algorithm {}",
        ring.generation, ring.algorithm
    );
    for k in &ring.keys {
        let state = match k.state {
            KeyState::Pending => "pending",
            KeyState::Active => "active",
            KeyState::Retiring => "retiring",
        };
        let until = k
            .remove_after
            .map(|t| format!(" until {t}"))
            .unwrap_or_default();
        println!(
            "  {:<22} {:<8} {:<5} created {}{until}",
            k.kid,
            state,
            k.algorithm.as_str(),
            k.created_at
        );
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::AmqpDelete {
            url,
            queue,
            exchange,
        } => {
            let queues: Vec<&str> = queue.iter().map(String::as_str).collect();
            let exchanges: Vec<&str> = exchange.iter().map(String::as_str).collect();
            authstack_bus::delete_topology(&url, &queues, &exchanges).await?;
        }
        Command::KubeletSync {
            namespace,
            secret,
            dir,
            delay_ms,
            poll_ms,
        } => {
            authstack_telemetry::init_tracing(authstack_telemetry::LogFormat::from_env(), "info");
            let client = kube::Client::try_default()
                .await
                .context("connecting to the Kubernetes API")?;
            let (stop_tx, stop) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                authstack_telemetry::shutdown_signal().await;
                let _ = stop_tx.send(true);
            });
            let volume = authstack_dev::kubelet::SecretVolume {
                namespace,
                name: secret,
                dir,
                delay: std::time::Duration::from_millis(delay_ms),
                poll: std::time::Duration::from_millis(poll_ms),
            };
            let written = authstack_dev::kubelet::sync_secret(client, volume, stop).await?;
            println!("wrote {written} versions");
        }
        Command::Keygen {
            dir,
            algorithm,
            force,
        } => {
            if !force && authstack_keyring::watch::load(&dir).is_ok() {
                println!(
                    "key ring already present in {} (use --force to replace)",
                    dir.display()
                );
                return Ok(());
            }
            let ring = KeyRing::with_active_key(generate(algorithm)?, chrono::Utc::now());
            write_ring(&dir, &ring)?;
            println!("wrote a new {algorithm} key ring to {}", dir.display());
            show(&ring);
        }
        Command::Rotate {
            dir,
            start,
            revoke,
            propagation_delay,
            token_lifetime,
        } => {
            if propagation_delay < 0 || token_lifetime < 0 {
                bail!("durations must not be negative");
            }
            let mut ring = read_ring(&dir)?;
            let policy = RotationPolicy {
                rotation_interval: None,
                propagation_delay: chrono::Duration::seconds(propagation_delay),
                token_lifetime: chrono::Duration::seconds(token_lifetime),
            };
            let request = RotationRequest {
                algorithm: ring.algorithm,
                rotation_counter: ring.rotation.observed_rotation_counter + u64::from(start),
                revoked_kids: revoke,
            };
            let actions = rotation::reconcile(
                &mut ring,
                chrono::Utc::now(),
                &policy,
                &request,
                &mut generate,
            )?;
            if actions.is_empty() {
                println!("nothing to do");
            } else {
                for a in &actions {
                    println!("{a:?}");
                }
                write_ring(&dir, &ring)?;
            }
            if let Some(next) = rotation::next_deadline(&ring, &policy) {
                println!("next step due at {next}");
            }
            show(&ring);
        }
        Command::Show { dir } => show(&read_ring(&dir)?),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{Cli, Command};

    /// A kid is base64url: one in 64 starts with `-`, and must still be revocable.
    #[test]
    fn a_kid_starting_with_a_hyphen_can_be_revoked() {
        let cli = Cli::try_parse_from([
            "authstack-dev",
            "rotate",
            "--dir",
            "keys",
            "--revoke",
            "-HooF2zLoi5ae0-upMo3gg",
            "--propagation-delay",
            "0",
        ])
        .expect("parses");
        match cli.command {
            Command::Rotate { revoke, .. } => assert_eq!(revoke, ["-HooF2zLoi5ae0-upMo3gg"]),
            _ => panic!("not the rotate command"),
        }
    }
}
