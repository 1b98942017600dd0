//! `fake-apiserver`: run the AuthStack fake Kubernetes API server for manual use with
//! kubectl or the operator.
//!
//! ```text
//! fake-apiserver [--port 6443] [--kubeconfig ./fake-kubeconfig] [--crd crd.yaml]... [--auto-ready]
//! ```

use std::path::PathBuf;

use serde::Deserialize;

use authstack_testkit::FakeApiServer;

struct Args {
    port: u16,
    kubeconfig: PathBuf,
    crds: Vec<PathBuf>,
    auto_ready: bool,
}

const USAGE: &str = "usage: fake-apiserver [--port PORT] [--kubeconfig PATH] [--crd FILE]... [--auto-ready]\n\n  --port PORT        port on 127.0.0.1 (default 6443; 0 = any)\n  --kubeconfig PATH  where to write the kubeconfig (default ./fake-kubeconfig)\n  --crd FILE         CRD manifest (YAML/JSON) to install at start; repeatable\n  --auto-ready       mark Deployments/StatefulSets ready after each spec change\n";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        port: 6443,
        kubeconfig: PathBuf::from("fake-kubeconfig"),
        crds: Vec::new(),
        auto_ready: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--port" => {
                let v = it.next().ok_or("--port needs a value")?;
                args.port = v.parse().map_err(|_| format!("invalid port {v:?}"))?;
            }
            "--kubeconfig" => {
                args.kubeconfig = it.next().ok_or("--kubeconfig needs a value")?.into()
            }
            "--crd" => args
                .crds
                .push(it.next().ok_or("--crd needs a value")?.into()),
            "--auto-ready" => args.auto_ready = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,authstack_testkit=debug")
            }),
        )
        .init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("error: {msg}\n");
            }
            eprint!("{USAGE}");
            std::process::exit(if msg.is_empty() { 0 } else { 2 });
        }
    };
    let server = FakeApiServer::builder()
        .port(args.port)
        .auto_ready_workloads(args.auto_ready)
        .start()
        .await?;
    for crd in &args.crds {
        let text = std::fs::read_to_string(crd)?;
        // Every YAML document of the file; comment-only or empty documents are skipped.
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_json::Value::deserialize(doc)?;
            if !value.is_null() {
                server.install_crd(&value)?;
            }
        }
        tracing::info!(file = %crd.display(), "installed CRD");
    }
    std::fs::write(&args.kubeconfig, server.kubeconfig_yaml())?;
    tracing::info!(url = %server.url(), kubeconfig = %args.kubeconfig.display(), "fake apiserver running; Ctrl-C to stop");
    println!(
        "export KUBECONFIG={}",
        std::fs::canonicalize(&args.kubeconfig)?.display()
    );
    tokio::signal::ctrl_c().await?;
    server.shutdown().await;
    Ok(())
}
