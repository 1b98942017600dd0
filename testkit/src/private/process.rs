//! What both private servers need: a scratch directory, the service user to run as, free
//! loopback ports, signals and log tails.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::TcpStream;

use super::ServerError;

/// The user a server runs as (only when the test runs as root).
#[derive(Clone, Copy, Debug)]
pub(super) struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

impl RunAs {
    /// `Some(user)` when running as root, `None` (run as the current user) otherwise.
    pub fn service_user(name: &'static str) -> Result<Option<RunAs>, ServerError> {
        let euid = std::fs::metadata("/proc/self")
            .map_err(ServerError::io("reading /proc/self"))?
            .uid();
        if euid != 0 {
            return Ok(None);
        }
        let passwd = std::fs::read_to_string("/etc/passwd")
            .map_err(ServerError::io("reading /etc/passwd"))?;
        passwd
            .lines()
            .map(|line| line.split(':').collect::<Vec<_>>())
            .find(|fields| fields.len() > 3 && fields[0] == name)
            .and_then(|fields| {
                Some(RunAs {
                    uid: fields[2].parse().ok()?,
                    gid: fields[3].parse().ok()?,
                })
            })
            .map(Some)
            .ok_or_else(|| ServerError::NotInstalled {
                program: name,
                hint: format!(
                    "no system user `{name}`: as root the server runs as its service user; \
                     scripts/ensure-services.sh installs the Debian package that creates it"
                ),
            })
    }

    /// Applies the user to a command (no-op for `None`).
    pub fn apply(run_as: Option<RunAs>, cmd: &mut tokio::process::Command) {
        if let Some(user) = run_as {
            cmd.uid(user.uid).gid(user.gid);
        }
    }
}

/// A directory deleted on drop; owned by the server's user.
pub(super) struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Creates `<tmp>/<prefix>-<random>` and hands it to `run_as`.
    pub fn create(prefix: &str, run_as: Option<RunAs>) -> Result<ScratchDir, ServerError> {
        let path = std::env::temp_dir().join(format!(
            "{prefix}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        ));
        std::fs::create_dir_all(&path).map_err(ServerError::io(format!("creating {path:?}")))?;
        let dir = ScratchDir { path };
        dir.give_to(&dir.path, run_as)?;
        Ok(dir)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates a subdirectory owned by `run_as`.
    pub fn subdir(&self, name: &str, run_as: Option<RunAs>) -> Result<PathBuf, ServerError> {
        let path = self.path.join(name);
        std::fs::create_dir_all(&path).map_err(ServerError::io(format!("creating {path:?}")))?;
        self.give_to(&path, run_as)?;
        Ok(path)
    }

    /// Writes a file owned by `run_as`.
    pub fn write(
        &self,
        name: &str,
        contents: &str,
        run_as: Option<RunAs>,
    ) -> Result<PathBuf, ServerError> {
        let path = self.path.join(name);
        std::fs::write(&path, contents).map_err(ServerError::io(format!("writing {path:?}")))?;
        self.give_to(&path, run_as)?;
        Ok(path)
    }

    fn give_to(&self, path: &Path, run_as: Option<RunAs>) -> Result<(), ServerError> {
        if let Some(user) = run_as {
            std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
                .map_err(ServerError::io(format!("chown {path:?}")))?;
        }
        Ok(())
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A loopback port nobody listens on right now.
pub(super) fn free_port() -> Result<u16, ServerError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(ServerError::io("finding a free port"))
}

/// Whether something accepts TCP connections on the loopback `port`.
pub(super) async fn accepts(port: u16) -> bool {
    tokio::time::timeout(
        Duration::from_millis(500),
        TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    .is_ok_and(|r| r.is_ok())
}

/// Sends `signal` (e.g. `TERM`, `KILL`) to a process, or to a process group when `pid` is
/// negative. Errors (the process is already gone) are ignored.
pub(super) fn signal(pid: i64, signal: &str) {
    let _ = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(pid.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// The last `lines` lines of the file at `path` (empty when unreadable).
pub(super) fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs `cmd` (its stdin closed) to completion as `run_as`; a failure names `what`, the exit
/// status and the program's output, followed by `log` (the server's log tail).
pub(super) async fn run_to_completion(
    mut cmd: tokio::process::Command,
    run_as: Option<RunAs>,
    what: &str,
    log: impl FnOnce() -> String,
) -> Result<(), ServerError> {
    cmd.stdin(std::process::Stdio::null()).kill_on_drop(true);
    RunAs::apply(run_as, &mut cmd);
    let out = cmd
        .output()
        .await
        .map_err(ServerError::io(format!("running {what}")))?;
    if out.status.success() {
        return Ok(());
    }
    Err(ServerError::Failed {
        what: format!(
            "{what}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        log: log(),
    })
}
