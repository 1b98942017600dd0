//! The interactive commands in a real terminal: tmux runs `authstack`, the test types with
//! `send-keys` and reads the screen with `capture-pane`.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use authstack_harness::{PASSWORD, Platform};
use common::{BIN, Cli};

/// A private tmux server (its own socket), killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Starts `command` in a 120x30 terminal with `cli`'s environment.
    fn start(cli: &Cli, command: &str) -> Tmux {
        let socket = format!("authstack-test-{}", uuid::Uuid::new_v4().simple());
        let tmux = Tmux { socket };
        let env = [
            format!("AUTHSTACK_URL={}", cli.server),
            format!("AUTHSTACK_CHAT_URL={}", cli.chat),
            format!("AUTHSTACK_CONFIG_DIR={}", cli.config_dir().display()),
        ];
        let mut args = vec!["new-session", "-d", "-s", "t", "-x", "120", "-y", "30"];
        for e in &env {
            args.extend(["-e", e.as_str()]);
        }
        args.push(command);
        assert!(tmux.cmd(&args).status.success(), "tmux starts");
        tmux
    }

    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("tmux is installed")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.cmd(&["capture-pane", "-p", "-t", "t"]).stdout).into_owned()
    }

    fn type_line(&self, text: &str) {
        self.cmd(&["send-keys", "-t", "t", "-l", text]);
        self.cmd(&["send-keys", "-t", "t", "Enter"]);
    }

    fn keys(&self, keys: &str) {
        self.cmd(&["send-keys", "-t", "t", keys]);
    }

    /// Waits until the screen contains `text`; answers the screen.
    async fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "never saw {text:?} on the screen:\n{screen}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn alive(&self) -> bool {
        self.cmd(&["has-session", "-t", "t"]).status.success()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_reads_the_password_without_echo_and_chat_connect_talks_live() {
    let p = Platform::start().await;
    let ann = Cli::new(&p);
    ann.sign_up("ann");
    let bob = Cli::new(&p);
    bob.register("bob").ok();

    // Interactive login: the password prompt does not echo.
    let login = Tmux::start(&bob, &format!("{BIN} login --login bob; sleep 30"));
    login.wait_for("Password:").await;
    login.type_line(PASSWORD);
    let screen = login.wait_for("Logged in to").await;
    assert!(
        !screen.contains(PASSWORD),
        "the password was echoed:\n{screen}"
    );
    drop(login);

    let id = ann.json(&["chat", "create", "tmux"])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    bob.json(&["chat", "join", &id]);
    ann.run(&["chat", "send", &id, "an earlier message"], "")
        .ok();

    // Bob connects: the history, then live messages while he types.
    let term = Tmux::start(&bob, &format!("{BIN} chat connect {id}"));
    term.wait_for("ann: an earlier message").await;
    term.wait_for("bob>").await;
    ann.run(&["chat", "send", &id, "live from ann"], "").ok();
    term.wait_for("ann: live from ann").await;
    term.type_line("hello from the terminal");
    term.wait_for("bob: hello from the terminal").await;
    let history = ann.json(&["chat", "messages", &id]);
    let last = history["items"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["author"], "bob");
    assert_eq!(last["text"], "hello from the terminal");

    // Messages keep arriving while a line is half typed, and the line survives.
    term.cmd(&["send-keys", "-t", "t", "-l", "half a li"]);
    ann.run(&["chat", "send", &id, "interrupting"], "").ok();
    let screen = term.wait_for("ann: interrupting").await;
    assert!(screen.contains("bob> half a li"), "{screen}");
    term.keys("Enter");
    term.wait_for("bob: half a li").await;

    // Ctrl-D leaves.
    term.keys("C-d");
    let deadline = Instant::now() + Duration::from_secs(10);
    while term.alive() {
        assert!(
            Instant::now() < deadline,
            "chat connect did not exit:\n{}",
            term.screen()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    p.teardown().await;
}
