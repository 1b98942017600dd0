//! The control plane's processes, and the three ways they are stopped:
//!
//! 1. [`Components::stop`] (a test binary's control plane at process exit through `atexit`, a
//!    `cluster-up` daemon on SIGTERM): the directories of its host-path volumes are removed,
//!    then SIGTERM, a grace period, SIGKILL, and the state directory is deleted;
//! 2. the kernel: every process is started with `PR_SET_PDEATHSIG = SIGKILL` from a thread
//!    that lives as long as the control plane, so a test binary killed with SIGKILL takes its
//!    control plane with it;
//! 3. [`reap`]: state directories whose owner process is gone (left by a SIGKILL) are removed
//!    at the next start, after killing any process still running from them.

use std::fs::File;
use std::io::{BufRead, Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use super::ClusterError;

/// File in a state directory naming its owner: `<pid> <start time in clock ticks>`.
const OWNER_FILE: &str = "owner";
/// File in a state directory listing the pids of its processes, one a line.
const PIDS_FILE: &str = "pids";
/// How long the processes get to exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// One running component.
pub struct Component {
    /// Short name (`etcd`, `kube-apiserver`, ...).
    pub name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Component {
    /// The component's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails with the end of the component's log if it has exited.
    pub fn check_running(&mut self) -> Result<(), ClusterError> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(ClusterError::Exited {
                component: self.name,
                status: status.to_string(),
                log: self.log.clone(),
                tail: log_tail(&self.log, 30),
            }),
            Err(e) => Err(ClusterError::io(&self.log, e)),
        }
    }
}

/// The last `lines` lines of a log file (for error messages).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let mut text = String::new();
    if let Ok(mut f) = File::open(path) {
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = f.seek(SeekFrom::Start(len.saturating_sub(16 * 1024)));
        let _ = f.read_to_string(&mut text);
    }
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The processes of one control plane and its state directory.
pub struct Components {
    dir: PathBuf,
    running: Vec<Component>,
}

/// Every live control plane of this process, for the `atexit` handler: (pids, state dir).
static LIVE: Mutex<Vec<(Vec<u32>, PathBuf)>> = Mutex::new(Vec::new());
static ATEXIT: Once = Once::new();

extern "C" fn stop_all_at_exit() {
    let live = std::mem::take(&mut *LIVE.lock().unwrap_or_else(|e| e.into_inner()));
    for (pids, dir) in live {
        release_volumes(&dir);
        terminate(&pids);
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Removes the host-path volumes of the control plane whose state is in `dir` (asked of its
/// API server while it still runs).
fn release_volumes(dir: &Path) {
    let kubeconfig = dir.join(super::ADMIN_KUBECONFIG);
    if kubeconfig.exists() {
        super::remove_provisioned_volumes(&kubeconfig);
    }
}

/// SIGTERM, up to [`STOP_GRACE`] for them to exit, then SIGKILL.
fn terminate(pids: &[u32]) {
    let alive = |pid: u32| Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid);
    for &pid in pids {
        signal(pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + STOP_GRACE;
    while pids.iter().any(|&p| alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for &pid in pids {
        if alive(pid) {
            signal(pid, libc::SIGKILL);
        }
    }
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) with a pid this module started (or recorded as started by a dead
        // owner and verified by its command line); no memory is involved.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Start time of a process in clock ticks since boot (field 22 of /proc/<pid>/stat).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

impl Components {
    /// Takes ownership of `dir` (created if missing) for this process.
    pub fn new(dir: &Path) -> Result<Components, ClusterError> {
        std::fs::create_dir_all(dir).map_err(|e| ClusterError::io(dir, e))?;
        let me = std::process::id();
        let owner = format!("{me} {}\n", start_time(me).unwrap_or(0));
        let path = dir.join(OWNER_FILE);
        std::fs::write(&path, owner).map_err(|e| ClusterError::io(&path, e))?;
        ATEXIT.call_once(|| {
            // SAFETY: registers a plain extern "C" function without arguments.
            unsafe {
                libc::atexit(stop_all_at_exit);
            }
        });
        LIVE.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((Vec::new(), dir.to_owned()));
        Ok(Components {
            dir: dir.to_owned(),
            running: Vec::new(),
        })
    }

    /// Starts `program` with `args`, output to `<dir>/<name>.log`. The process dies with the
    /// calling thread (PR_SET_PDEATHSIG), so call this from a thread that lives as long as
    /// the control plane.
    pub fn spawn(
        &mut self,
        name: &'static str,
        program: &Path,
        args: &[String],
    ) -> Result<(), ClusterError> {
        let log = self.dir.join(format!("{name}.log"));
        let out = File::create(&log).map_err(|e| ClusterError::io(&log, e))?;
        let err = out.try_clone().map_err(|e| ClusterError::io(&log, e))?;
        let parent = std::process::id();
        let mut cmd = Command::new(program);
        cmd.args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent died before prctl took effect.
                if u32::try_from(libc::getppid()).ok() != Some(parent) {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| ClusterError::io(program, e))?;
        self.running.push(Component { name, child, log });
        self.record_pids()
    }

    fn record_pids(&self) -> Result<(), ClusterError> {
        let pids: Vec<u32> = self.running.iter().map(Component::pid).collect();
        let text: String = pids.iter().map(|p| format!("{p}\n")).collect();
        let path = self.dir.join(PIDS_FILE);
        std::fs::write(&path, text).map_err(|e| ClusterError::io(&path, e))?;
        let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = live.iter_mut().find(|(_, d)| *d == self.dir) {
            entry.0 = pids;
        }
        Ok(())
    }

    /// Fails if any component has exited.
    pub fn check_running(&mut self) -> Result<(), ClusterError> {
        self.running
            .iter_mut()
            .try_for_each(Component::check_running)
    }

    /// Log file of a component.
    pub fn log_of(&self, name: &str) -> Option<&Path> {
        self.running
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.log.as_path())
    }

    /// Stops every component (the last started first) and deletes the state directory
    /// unless `keep_dir`.
    pub fn stop(mut self, keep_dir: bool) {
        release_volumes(&self.dir);
        let pids: Vec<u32> = self.running.iter().rev().map(Component::pid).collect();
        terminate(&pids);
        for c in &mut self.running {
            let _ = c.child.wait();
        }
        LIVE.lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(_, d)| *d != self.dir);
        if !keep_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Removes the state directories under `base` whose owner process is gone, killing any
/// process still running from them (one whose command line names the directory).
pub fn reap(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let Ok(owner) = std::fs::read_to_string(dir.join(OWNER_FILE)) else {
            continue;
        };
        let mut parts = owner.split_whitespace();
        let pid: Option<u32> = parts.next().and_then(|p| p.parse().ok());
        let started: Option<u64> = parts.next().and_then(|p| p.parse().ok());
        let alive = pid.is_some_and(|p| start_time(p).is_some() && start_time(p) == started);
        if alive {
            continue;
        }
        let needle = dir.to_string_lossy().into_owned();
        let pids: Vec<u32> = File::open(dir.join(PIDS_FILE))
            .map(|f| {
                std::io::BufReader::new(f)
                    .lines()
                    .map_while(Result::ok)
                    .filter_map(|l| l.trim().parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        let ours: Vec<u32> = pids
            .into_iter()
            .filter(|p| {
                std::fs::read(format!("/proc/{p}/cmdline"))
                    .map(|c| String::from_utf8_lossy(&c).contains(&needle))
                    .unwrap_or(false)
            })
            .collect();
        terminate(&ours);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
