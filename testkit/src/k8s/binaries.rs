//! Where the Kubernetes binaries are: built once per machine by `scripts/k8s-binaries.sh`
//! into `~/.cache/authstack/k8s/<version>/bin`, or taken from `AUTHSTACK_K8S_BIN_DIR`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::ClusterError;

/// Environment variable naming a directory that already holds the binaries (skips the
/// script).
pub const BIN_DIR_ENV: &str = "AUTHSTACK_K8S_BIN_DIR";

/// The repository root (this crate lives in `<root>/testkit`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The directory with kube-apiserver, kube-controller-manager, kube-scheduler, etcd, kwok
/// and kwok's stages, building what is missing (the first time: about 10 minutes on 2
/// cores; the script's progress goes to stderr).
pub fn control_plane_bin_dir() -> Result<PathBuf, ClusterError> {
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let script = repo_root().join("scripts/k8s-binaries.sh");
    let out = Command::new(&script)
        .arg("control-plane")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| ClusterError::io(&script, e))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout.lines().last().map(str::trim) {
        Some(dir) if out.status.success() && !dir.is_empty() => Ok(PathBuf::from(dir)),
        _ => Err(ClusterError::Binaries(format!(
            "{} control-plane failed ({}); run it by hand to see why",
            script.display(),
            out.status
        ))),
    }
}
