//! Logs of the services running inside a test binary, kept for the log scan.
//!
//! [`capture`] installs (once per process) a JSON subscriber writing every log line of the
//! in-process services to `<AUTHSTACK_TEST_LOGS>/<binary>-<pid>.jsonl` (default:
//! `.test-logs/` at the repository root). [`record_secret`] notes a password or token the test
//! used in `<binary>-<pid>.secrets`; `scripts/log-scan.py` then fails `make test` if any
//! recorded secret, any JWT or any private key shows up in any log line of the run.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

/// Where test logs go.
pub fn dir() -> PathBuf {
    std::env::var_os("AUTHSTACK_TEST_LOGS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.test-logs")))
}

fn stem() -> String {
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "test".into());
    format!("{exe}-{}", std::process::id())
}

/// The file [`capture`] writes this process's log lines to (one JSON object per line).
pub fn file() -> PathBuf {
    dir().join(format!("{}.jsonl", stem()))
}

fn open(extension: &str) -> Option<File> {
    let dir = dir();
    std::fs::create_dir_all(&dir).ok()?;
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{}.{extension}", stem())))
        .ok()
}

/// Sends this process's service logs to a file (idempotent), lines logged
/// [`in_request`](authstack_telemetry::in_request) inside the request's span as the services
/// write them. The level is `TEST_LOG` or, by default, debug for the project's crates and info
/// for the rest.
pub fn capture() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let Some(file) = open("jsonl") else {
            return;
        };
        let filter = tracing_subscriber::EnvFilter::try_from_env("TEST_LOG").unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(
                "info,lapin=warn,auth_svc=debug,gateway=debug,authstack_bus=debug,authstack_keyring=debug",
            )
        });
        let _ = tracing_subscriber::fmt()
            .json()
            .with_current_span(false)
            .map_event_format(authstack_telemetry::RequestFormat::json)
            .with_env_filter(filter)
            .with_writer(Mutex::new(file))
            .try_init();
    });
}

/// Notes a secret the test sent or received, for the log scan.
pub fn record_secret(secret: &str) {
    static FILE: OnceLock<Option<Mutex<File>>> = OnceLock::new();
    if secret.is_empty() || secret.contains('\n') {
        return;
    }
    let Some(file) = FILE.get_or_init(|| open("secrets").map(Mutex::new)) else {
        return;
    };
    if let Ok(mut f) = file.lock() {
        let _ = writeln!(f, "{secret}");
    }
}
