//! Runs the real `authstack` binary against an in-process platform, with its own config dir.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use authstack_harness::{PASSWORD, Platform};
use serde_json::Value;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_authstack");

/// One user's CLI: a config directory of its own, pointed at the platform.
pub struct Cli {
    pub dir: tempfile::TempDir,
    pub server: String,
    pub chat: String,
}

/// What a run printed and how it ended.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// stdout as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("stdout is not JSON ({e}): {}\n{}", self.stdout, self.stderr)
        })
    }

    /// stderr as the JSON error of `--output json`.
    pub fn error(&self) -> Value {
        serde_json::from_str(&self.stderr)
            .unwrap_or_else(|e| panic!("stderr is not JSON ({e}): {}", self.stderr))
    }

    /// Asserts success.
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
}

impl Cli {
    pub fn new(p: &Platform) -> Cli {
        Cli {
            dir: tempfile::tempdir().unwrap(),
            server: p.gateway_url.clone(),
            chat: p.chat_url.clone(),
        }
    }

    pub fn config_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The default profile's file.
    pub fn profile_file(&self) -> PathBuf {
        self.dir.path().join("profiles/default.json")
    }

    /// The stored profile.
    pub fn profile(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.profile_file()).unwrap()).unwrap()
    }

    /// A command with the environment of this user (and nothing inherited that could
    /// change the outcome).
    pub fn command(&self) -> Command {
        Command::from_std(self.std_command())
    }

    fn std_command(&self) -> std::process::Command {
        let mut c = std::process::Command::new(BIN);
        for var in ["AUTHSTACK_PROFILE", "AUTHSTACK_OUTPUT", "AUTHSTACK_TIMEOUT"] {
            c.env_remove(var);
        }
        c.env("AUTHSTACK_URL", &self.server)
            .env("AUTHSTACK_CHAT_URL", &self.chat)
            .env("AUTHSTACK_CONFIG_DIR", self.dir.path());
        c
    }

    /// Starts `args` in the background; its output arrives line by line.
    pub fn spawn(&self, args: &[&str]) -> Running {
        use std::io::BufRead;
        use std::process::Stdio;
        let mut child = self
            .std_command()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = |pipe: Box<dyn std::io::Read + Send>| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            rx
        };
        let stdout = lines(Box::new(child.stdout.take().unwrap()));
        let stderr = lines(Box::new(child.stderr.take().unwrap()));
        Running {
            child,
            stdout,
            stderr,
        }
    }

    /// Runs `args` with `stdin`.
    pub fn run(&self, args: &[&str], stdin: &str) -> Run {
        let out = self
            .command()
            .args(args)
            .write_stdin(stdin)
            .output()
            .unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs `args` with `--output json`, asserting success; stdout as JSON.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        self.run(&all, "").ok().json()
    }

    /// Registers `name` (`name@example.com`, the harness password from stdin).
    pub fn register(&self, name: &str) -> Run {
        let email = format!("{name}@example.com");
        let args = [
            "register",
            "--email",
            &email,
            "--username",
            name,
            "--password-stdin",
        ];
        self.run(&args, &format!("{PASSWORD}\n"))
    }

    /// Registers and logs in `name` with the harness password.
    pub fn sign_up(&self, name: &str) {
        self.register(name).ok();
        self.login(name);
    }

    pub fn login(&self, name: &str) {
        self.run(
            &["login", "--login", name, "--password-stdin"],
            &format!("{PASSWORD}\n"),
        )
        .ok();
    }
}

/// A command running in the background.
pub struct Running {
    pub child: std::process::Child,
    pub stdout: std::sync::mpsc::Receiver<String>,
    pub stderr: std::sync::mpsc::Receiver<String>,
}

impl Running {
    /// The next stdout line, within `secs`.
    pub fn line(&self, secs: u64) -> String {
        self.stdout
            .recv_timeout(std::time::Duration::from_secs(secs))
            .unwrap_or_else(|e| panic!("no output line within {secs} s ({e})"))
    }

    /// Waits for a stderr line containing `text` within `secs`; returns it.
    pub fn note(&self, text: &str, secs: u64) -> String {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let left = until.saturating_duration_since(std::time::Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.contains(text) => return line,
                Ok(_) => {}
                Err(e) => panic!("no stderr line with {text:?} within {secs} s ({e})"),
            }
        }
    }

    /// The exit code, waiting at most `secs`.
    pub fn exit_code(&mut self, secs: u64) -> i32 {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                std::time::Instant::now() < until,
                "still running after {secs} s"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
