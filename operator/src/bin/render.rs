//! Prints every object the operator would apply for one AuthStack, as a YAML stream: the
//! Secrets (with freshly generated credentials and a new signing key), workloads, Services and
//! policies of a new stack, from the same builders the controller uses. For reviewing what a
//! spec produces, and for running the pod specs on a kubelet without an API server
//! (`scripts/node/static-pods.py`).
//!
//! `authstack-render manifests/samples/minimal.yaml --postgres-image ghcr.io/authstack/postgres:17`

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result};
use authstack_operator::builders::auth_svc::UrlFingerprints;
use authstack_operator::builders::credentials::{PostgresCredentials, RabbitmqCredentials};
use authstack_operator::builders::database_role::AuthSvcDatabaseCredentials;
use authstack_operator::builders::stack::{Inputs, desired};
use authstack_operator::config::ImageFlags;
use authstack_operator::crd::AuthStack;
use authstack_operator::keys;
use authstack_operator::settings::resolve;
use clap::Parser;

/// The uid of a stack that has none yet (owner references need one).
const PLACEHOLDER_UID: &str = "00000000-0000-0000-0000-000000000000";

#[derive(Parser, Debug)]
#[command(
    name = "authstack-render",
    version,
    about = "Prints the objects the operator would apply for an AuthStack (new credentials and keys) as YAML."
)]
struct Args {
    /// The AuthStack manifest (YAML); `-` reads standard input.
    manifest: PathBuf,

    /// Namespace of the stack when the manifest has none.
    #[arg(long, env = "AUTHSTACK_NAMESPACE", default_value = "default")]
    namespace: String,

    #[command(flatten)]
    images: ImageFlags,
}

fn read(path: &PathBuf) -> Result<String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the manifest from standard input")?;
        Ok(text)
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut stack: AuthStack = serde_yaml::from_str(&read(&args.manifest)?)
        .with_context(|| format!("{} is not an AuthStack", args.manifest.display()))?;
    let meta = &mut stack.metadata;
    meta.namespace.get_or_insert(args.namespace);
    meta.uid.get_or_insert_with(|| PLACEHOLDER_UID.to_owned());
    meta.generation.get_or_insert(1);

    let settings = resolve(&stack, &args.images.images())?;
    let plan = keys::plan(None, &settings, chrono::Utc::now(), &mut |algorithm| {
        authstack_keyring::material::generate(algorithm)
    })?;
    let postgres = PostgresCredentials::reuse_or_generate(None);
    let auth_svc_database = AuthSvcDatabaseCredentials::reuse_or_generate(None);
    let rabbitmq = RabbitmqCredentials::reuse_or_generate(None);
    let inputs = Inputs {
        postgres: settings.postgres.is_managed().then_some(&postgres),
        auth_svc_database: settings.postgres.is_managed().then_some(&auth_svc_database),
        rabbitmq: settings.rabbitmq.is_managed().then_some(&rabbitmq),
        ring: &plan.ring,
        urls: UrlFingerprints::default(),
    };

    let mut out = String::new();
    let signing = serde_json::to_value(keys::signing_secret(&settings, &plan.ring))?;
    for object in
        std::iter::once(signing).chain(desired(&settings, &inputs)?.into_iter().map(|d| d.object))
    {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&object)?);
    }
    print!("{out}");
    Ok(())
}
