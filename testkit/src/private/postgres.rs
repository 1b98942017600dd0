//! A private PostgreSQL cluster: `initdb` into a scratch directory, `pg_ctl` to start and stop
//! it on its own loopback port (trust authentication for user `postgres`).

use std::path::PathBuf;
use std::process::Stdio;

use super::ServerError;
use super::process::{RunAs, ScratchDir, free_port, run_to_completion, tail};

/// How to stop the server (`pg_ctl stop -m`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopMode {
    /// Disconnect every client, checkpoint, exit (a normal restart).
    Fast,
    /// Exit at once without a checkpoint, like a crash; the next start replays the WAL.
    Immediate,
}

impl StopMode {
    fn arg(self) -> &'static str {
        match self {
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        }
    }
}

/// A running (or stopped) private PostgreSQL server; dropped: stopped and deleted.
pub struct PrivatePostgres {
    dir: ScratchDir,
    bin: PathBuf,
    port: u16,
    run_as: Option<RunAs>,
    running: bool,
}

impl PrivatePostgres {
    /// Creates a cluster in a fresh scratch directory and starts it on a free port.
    pub async fn launch() -> Result<PrivatePostgres, ServerError> {
        let bin = bin_dir()?;
        let run_as = RunAs::service_user("postgres")?;
        let dir = ScratchDir::create("authstack-pg", run_as)?;
        let mut server = PrivatePostgres {
            port: free_port()?,
            bin,
            run_as,
            dir,
            running: false,
        };
        let data = server.data_dir();
        server
            .run(
                "initdb",
                &[
                    "-D",
                    &data,
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ],
            )
            .await?;
        server.start().await?;
        Ok(server)
    }

    /// The port it listens on (kept across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of `database` on this server.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates `database` (a plain identifier).
    pub async fn create_database(&self, database: &str) -> Result<(), ServerError> {
        use sqlx::{Connection, Executor};
        let failed = |e: sqlx::Error| ServerError::Failed {
            what: format!("creating database {database}: {e}"),
            log: self.log_tail(),
        };
        let mut conn = sqlx::PgConnection::connect(&self.url("postgres"))
            .await
            .map_err(failed)?;
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
            .await
            .map_err(failed)?;
        conn.close().await.map_err(failed)
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub async fn start(&mut self) -> Result<(), ServerError> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let data = self.data_dir();
        let log = self.log_path();
        self.run(
            "pg_ctl",
            &[
                "start", "-D", &data, "-l", &log, "-w", "-t", "60", "-o", &options,
            ],
        )
        .await?;
        self.running = true;
        Ok(())
    }

    /// Stops the server and waits until it has exited.
    pub async fn stop(&mut self, mode: StopMode) -> Result<(), ServerError> {
        let data = self.data_dir();
        self.run("pg_ctl", &["stop", "-D", &data, "-m", mode.arg(), "-w"])
            .await?;
        self.running = false;
        Ok(())
    }

    /// Its scratch directory (data, logs, configuration), deleted on drop.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The end of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        tail(&self.dir.path().join("server.log"), 40)
    }

    fn data_dir(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn log_path(&self) -> String {
        self.dir.path().join("server.log").display().to_string()
    }

    async fn run(&self, program: &str, args: &[&str]) -> Result<(), ServerError> {
        let mut cmd = tokio::process::Command::new(self.bin.join(program));
        cmd.args(args).current_dir(self.dir.path());
        let what = format!("{program} {}", args.first().copied().unwrap_or_default());
        run_to_completion(cmd, self.run_as, &what, || self.log_tail()).await
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if !self.running {
            return;
        }
        let mut cmd = std::process::Command::new(self.bin.join("pg_ctl"));
        cmd.args(["stop", "-D", &self.data_dir(), "-m", "immediate", "-w"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(user) = self.run_as {
            use std::os::unix::process::CommandExt;
            cmd.uid(user.uid).gid(user.gid);
        }
        let _ = cmd.status();
    }
}

/// Where `initdb` and `pg_ctl` live: `PG_BIN_DIR`, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian), else the directories on `PATH`.
fn bin_dir() -> Result<PathBuf, ServerError> {
    if let Some(dir) = std::env::var_os("PG_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let debian = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("initdb").is_file())
        .max_by_key(|(version, _)| *version)
        .map(|(_, bin)| bin);
    let on_path = || {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
    };
    debian.or_else(on_path).ok_or(ServerError::NotInstalled {
        program: "initdb",
        hint: "looked in PG_BIN_DIR, /usr/lib/postgresql/*/bin and PATH; \
               scripts/ensure-services.sh installs PostgreSQL"
            .into(),
    })
}
