//! `authstack-cluster`: the tests' Kubernetes control plane for use by hand (`make cluster-up`
//! / `make cluster-down`): etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
//! kwok on loopback, in the background.
//!
//! `up` builds what is missing, starts `run` as a daemon and prints `export KUBECONFIG=…` as
//! its last line; `down` stops the daemon and deletes its state.

use std::net::IpAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use authstack_testkit::k8s::{self, ControlPlane, Nodes, Options};
use clap::{Parser, Subcommand, ValueEnum};

/// How long `up` waits for the daemon's control plane.
const UP_TIMEOUT: Duration = Duration::from_secs(300);
/// How long `down` waits for the daemon to stop before killing it.
const DOWN_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Parser)]
#[command(
    name = "authstack-cluster",
    about = "A local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok) for trying AuthStack by hand."
)]
struct Cli {
    /// Directory of the cluster's state (certificates, kubeconfig, etcd data, logs).
    #[arg(long, env = "AUTHSTACK_CLUSTER_DIR", default_value_os_t = default_dir(), global = true)]
    dir: PathBuf,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start the control plane in the background (building the binaries if missing).
    Up(Shape),
    /// Stop the control plane and delete its state.
    Down,
    /// Write a kubeconfig that authenticates as a ServiceAccount (a token from the TokenRequest
    /// API, valid for a day), e.g. to run the operator locally as the chart's ServiceAccount.
    Token {
        /// `NAMESPACE/NAME` of the ServiceAccount.
        service_account: String,
        /// Where to write the kubeconfig.
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Run the control plane in the foreground until SIGTERM or Ctrl-C (what `up` starts).
    Run(Shape),
}

/// What kind of cluster `up` starts and `run` runs.
#[derive(clap::Args, Clone, Copy)]
struct Shape {
    /// Node stand-in: `kwok` (Pods become Running/Ready without running), or `none`
    /// (Pods stay Pending until a real kubelet joins: `make cluster-up NODE=real`).
    #[arg(long, env = "AUTHSTACK_CLUSTER_NODES", value_enum, default_value_t = NodeKind::Kwok)]
    nodes: NodeKind,
    /// Address kube-apiserver listens on and advertises (the `kubernetes` Service's
    /// endpoint unless loopback); a real node's kubelet and pods must reach it.
    #[arg(
        long,
        env = "AUTHSTACK_CLUSTER_BIND_ADDRESS",
        default_value = "127.0.0.1"
    )]
    bind_address: IpAddr,
}

#[derive(Clone, Copy, ValueEnum)]
enum NodeKind {
    Kwok,
    None,
}

impl From<NodeKind> for Nodes {
    fn from(n: NodeKind) -> Nodes {
        match n {
            NodeKind::Kwok => Nodes::Kwok,
            NodeKind::None => Nodes::None,
        }
    }
}

fn default_dir() -> PathBuf {
    k8s::binaries::repo_root().join(".run/cluster")
}

/// Files in the cluster directory.
struct Layout {
    dir: PathBuf,
}

impl Layout {
    fn pid(&self) -> PathBuf {
        self.dir.join("daemon.pid")
    }
    fn log(&self) -> PathBuf {
        self.dir.join("daemon.log")
    }
    /// A copy of the admin kubeconfig; its presence means "up".
    fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }
    fn state(&self) -> PathBuf {
        self.dir.join("state")
    }
    /// The daemon's pid, if it is still running.
    fn running_pid(&self) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.pid())
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        String::from_utf8_lossy(&cmdline)
            .contains("authstack-cluster")
            .then_some(pid)
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let dir = if cli.dir.is_absolute() {
        cli.dir
    } else {
        std::env::current_dir()?.join(cli.dir)
    };
    let layout = Layout { dir };
    match cli.command {
        Cmd::Up(shape) => up(&layout, shape),
        Cmd::Down => down(&layout),
        Cmd::Run(shape) => run(&layout, shape),
        Cmd::Token {
            service_account,
            out,
        } => token(&layout, &service_account, &out),
    }
}

fn up(layout: &Layout, shape: Shape) -> anyhow::Result<()> {
    if layout.running_pid().is_some() && layout.kubeconfig().exists() {
        eprintln!(
            "the control plane is already running (state in {})",
            layout.dir.display()
        );
        println!("export KUBECONFIG={}", layout.kubeconfig().display());
        return Ok(());
    }
    if layout.running_pid().is_some() {
        bail!(
            "a control plane daemon is starting or stuck in {}: run `make cluster-down` first",
            layout.dir.display()
        );
    }
    // Build the binaries in the foreground, so the first run shows its progress.
    let bin = k8s::binaries::control_plane_bin_dir()?;
    std::fs::create_dir_all(&layout.dir)?;
    let _ = std::fs::remove_file(layout.kubeconfig());
    let log = std::fs::File::create(layout.log())?;
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("--dir")
        .arg(&layout.dir)
        .arg("run")
        .arg("--nodes")
        .arg(match shape.nodes {
            NodeKind::Kwok => "kwok",
            NodeKind::None => "none",
        })
        .arg("--bind-address")
        .arg(shape.bind_address.to_string())
        .env(k8s::binaries::BIN_DIR_ENV, &bin)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: setsid(2) only, between fork and exec: the daemon leaves the terminal's
    // session, so Ctrl-C in the shell that ran `make cluster-up` does not reach it.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("starting the control plane daemon")?;
    std::fs::write(layout.pid(), format!("{}\n", child.id()))?;
    let started = Instant::now();
    eprintln!(
        "starting the control plane (log: {})",
        layout.log().display()
    );
    while !layout.kubeconfig().exists() {
        if let Some(status) = child.try_wait()? {
            let tail = k8s::process::log_tail(&layout.log(), 40);
            bail!("the control plane daemon exited ({status}):\n{tail}");
        }
        if started.elapsed() > UP_TIMEOUT {
            bail!(
                "the control plane was not up after {UP_TIMEOUT:?}; see {}",
                layout.log().display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let summary = std::fs::read_to_string(layout.log()).unwrap_or_default();
    if let Some(line) = summary.lines().find(|l| l.starts_with("[k8s]")) {
        eprintln!("{line}");
    }
    eprintln!("kubectl: scripts/k8s-tools.sh --print-path kubectl; stop with `make cluster-down`");
    println!("export KUBECONFIG={}", layout.kubeconfig().display());
    Ok(())
}

fn run(layout: &Layout, shape: Shape) -> anyhow::Result<()> {
    let cp = ControlPlane::start(Options {
        dir: layout.state(),
        keep_dir: false,
        nodes: shape.nodes.into(),
        bind_address: shape.bind_address,
    })?;
    // Written last: `up` takes its presence as "ready".
    let tmp = layout.dir.join("kubeconfig.tmp");
    std::fs::copy(cp.kubeconfig(), &tmp)?;
    std::fs::rename(&tmp, layout.kubeconfig())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(authstack_telemetry::shutdown_signal());
    eprintln!("stopping the control plane");
    let _ = std::fs::remove_file(layout.kubeconfig());
    cp.stop();
    Ok(())
}

fn token(layout: &Layout, service_account: &str, out: &Path) -> anyhow::Result<()> {
    let Some((ns, name)) = service_account.split_once('/') else {
        bail!("expected NAMESPACE/NAME, got {service_account:?}");
    };
    if !layout.kubeconfig().exists() {
        bail!(
            "no control plane running in {} (make cluster-up)",
            layout.dir.display()
        );
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(k8s::service_account_kubeconfig(
        &layout.kubeconfig(),
        ns,
        name,
        out,
    ))?;
    eprintln!("wrote {} (ServiceAccount {ns}/{name})", out.display());
    Ok(())
}

fn down(layout: &Layout) -> anyhow::Result<()> {
    if let Some(pid) = layout.running_pid() {
        let target = libc::pid_t::try_from(pid)?;
        // SAFETY: kill(2) on the daemon whose pid file and command line we just checked.
        unsafe {
            libc::kill(target, libc::SIGTERM);
        }
        let started = Instant::now();
        while layout.running_pid().is_some() && started.elapsed() < DOWN_TIMEOUT {
            std::thread::sleep(Duration::from_millis(100));
        }
        if layout.running_pid().is_some() {
            // SAFETY: as above; its components die with it (PR_SET_PDEATHSIG).
            unsafe {
                libc::kill(target, libc::SIGKILL);
            }
        }
        eprintln!("stopped the control plane (pid {pid})");
    } else {
        eprintln!("no control plane running in {}", layout.dir.display());
    }
    remove_state(&layout.dir)
}

fn remove_state(dir: &Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("deleting {}", dir.display())),
    }
}
