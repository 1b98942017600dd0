//! Black-box tests of the `authstack` binary against the real platform (auth-svc, gateway and
//! chat service in-process, real PostgreSQL and RabbitMQ).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use authstack_harness::{Options, PASSWORD, Platform};
use common::Cli;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_journey_from_register_to_chat() {
    let p = Platform::start().await;
    let ann = Cli::new(&p);
    let bob = Cli::new(&p);

    // register + login: human output, and the tokens are never printed.
    let reg = ann.register("ann");
    let reg = reg.ok();
    assert!(
        reg.stdout.contains("Registered ann <ann@example.com>"),
        "{}",
        reg.stdout
    );
    let login = ann
        .run(
            &["login", "--login", "ann", "--password-stdin"],
            &format!("{PASSWORD}\n"),
        )
        .ok();
    assert!(login.stdout.contains("Logged in to"), "{}", login.stdout);
    let profile = ann.profile();
    let access = profile["session"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let refresh = profile["session"]["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!login.stdout.contains(&access) && !login.stdout.contains(&refresh));

    // The token file is 0600 in a 0700 directory.
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&ann.profile_file()), 0o600);
    assert_eq!(mode(&ann.config_dir().join("profiles")), 0o700);

    let me = ann.json(&["whoami"]);
    assert_eq!(me["account"]["username"], "ann");
    assert_eq!(me["server"], p.gateway_url.as_str());
    let whoami = ann.run(&["whoami"], "").ok();
    assert!(whoami.stdout.contains("ann <ann@example.com>") && !whoami.stdout.contains(&access));
    // Asked for explicitly, the token is printed.
    assert_eq!(ann.run(&["token"], "").ok().stdout.trim(), access);

    let updated = ann.json(&["account", "update", "--display-name", "Ann A."]);
    assert_eq!(updated["display_name"], "Ann A.");
    assert_eq!(ann.json(&["account", "show"])["display_name"], "Ann A.");
    // A new email needs the current password (re-authentication).
    let args = [
        "--output",
        "json",
        "account",
        "update",
        "--email",
        "ann@example.org",
    ];
    assert_eq!(
        ann.run(
            &[&args[..], &["--password-stdin"]].concat(),
            "wrong password\n"
        )
        .code,
        3
    );
    let moved = ann
        .run(
            &[&args[..], &["--password-stdin"]].concat(),
            &format!("{PASSWORD}\n"),
        )
        .ok();
    let moved: Value = serde_json::from_str(&moved.stdout).unwrap();
    assert_eq!(moved["email"], "ann@example.org");

    let keys = ann.json(&["keys"]);
    assert_eq!(keys["issuer"], authstack_harness::ISSUER);
    assert_eq!(keys["keys"][0]["alg"], "EdDSA");
    assert!(ann.run(&["keys"], "").ok().stdout.contains("EdDSA"));

    // access check: a plain user may read their account, not list everyone's.
    assert!(ann.json(&["access", "check", "GET", "/api/v1/users/me"])["allowed"] == true);
    let denied = ann.run(&["access", "check", "GET", "/api/v1/users"], "");
    assert_eq!(denied.code, 4, "{}", denied.stderr);
    assert!(denied.stdout.contains("denied"));

    // chat create / join / send / messages / list / members.
    let chat = ann.json(&["chat", "create", "general"]);
    let id = chat["id"].as_str().unwrap().to_owned();
    assert_eq!(chat["name"], "general");
    bob.sign_up("bob");
    let joined = bob.json(&["chat", "join", &id]);
    assert_eq!(joined["members"], 2);
    let sent = ann.json(&["chat", "send", &id, "hello bob"]);
    assert_eq!(sent["author"], "ann");
    bob.run(&["chat", "send", &id, "hi ann"], "").ok();
    let history = bob.json(&["chat", "messages", &id]);
    let texts: Vec<&str> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["hello bob", "hi ann"]);
    let human = bob.run(&["chat", "messages", &id], "").ok();
    assert!(human.stdout.contains("ann: hello bob") && human.stdout.contains("bob: hi ann"));
    let list = ann.json(&["chat", "list"]);
    assert_eq!(list[0]["id"], id.as_str());
    let members = ann.json(&["chat", "members", &id]);
    let names: Vec<&str> = members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ann", "bob"]);
    bob.run(&["chat", "leave", &id], "").ok();
    assert_eq!(bob.run(&["chat", "send", &id, "still here?"], "").code, 4);

    // profiles, logout, and the tokens are gone.
    let profiles = ann.json(&["profiles"]);
    assert_eq!(profiles[0]["logged_in_as"], "ann");
    ann.run(&["logout"], "").ok();
    assert!(ann.profile().get("session").is_none());
    let after = ann.run(&["whoami"], "");
    assert_eq!(after.code, 3);
    assert!(
        after.stderr.contains("cli.not_logged_in"),
        "{}",
        after.stderr
    );
    p.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_access_token_is_refreshed_automatically() {
    let p = Platform::start_with(Options {
        access_token_ttl: 2,
        clock_skew_secs: 0,
        ..Options::default()
    })
    .await;
    let ann = Cli::new(&p);
    ann.sign_up("ann");
    let first = ann.profile()["session"].clone();
    tokio::time::sleep(Duration::from_secs(3)).await;

    // The CLI sees the expiry itself and refreshes before calling.
    assert_eq!(ann.json(&["whoami"])["account"]["username"], "ann");
    let second = ann.profile()["session"].clone();
    assert_ne!(second["access_token"], first["access_token"]);
    assert_ne!(second["refresh_token"], first["refresh_token"]);

    // The server says "expired" while the CLI believes the token is fresh (clock skew): it
    // refreshes and repeats the request, for the gateway and the chat service alike.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut profile = ann.profile();
    profile["session"]["expires_at"] = Value::from(chrono_now() + 3600);
    std::fs::write(ann.profile_file(), serde_json::to_vec(&profile).unwrap()).unwrap();
    assert_eq!(ann.json(&["whoami"])["account"]["username"], "ann");
    let third = ann.profile()["session"].clone();
    assert_ne!(third["refresh_token"], second["refresh_token"]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut profile = ann.profile();
    profile["session"]["expires_at"] = Value::from(chrono_now() + 3600);
    std::fs::write(ann.profile_file(), serde_json::to_vec(&profile).unwrap()).unwrap();
    ann.json(&["chat", "create", "refreshed"]);
    assert_ne!(
        ann.profile()["session"]["refresh_token"],
        third["refresh_token"]
    );

    // A refresh token that no longer works ends the session cleanly (exit 3).
    let mut profile = ann.profile();
    profile["session"]["refresh_token"] = Value::from("bogus-refresh-token-bogus-refresh-token");
    profile["session"]["expires_at"] = Value::from(0);
    std::fs::write(ann.profile_file(), serde_json::to_vec(&profile).unwrap()).unwrap();
    let ended = ann.run(&["whoami"], "");
    assert_eq!(ended.code, 3, "{}", ended.stderr);
    assert!(
        ended.stderr.contains("cli.session_ended"),
        "{}",
        ended.stderr
    );
    assert!(ann.profile().get("session").is_none());
    p.teardown().await;
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_print_the_stable_code_and_exit_with_the_documented_code() {
    let p = Platform::start().await;
    let ann = Cli::new(&p);
    ann.sign_up("ann");

    // 2: usage (clap) and validation.failed with field details.
    assert_eq!(ann.run(&["chat", "send"], "").code, 2);
    let invalid_registration = [
        "--output",
        "json",
        "register",
        "--email",
        "nope",
        "--username",
        "x",
        "--password-stdin",
    ];
    let invalid = ann.run(
        &invalid_registration,
        "short
",
    );
    assert_eq!(invalid.code, 2);
    let error = invalid.error();
    assert_eq!(error["error"]["code"], "validation.failed");
    assert!(!error["error"]["request_id"].as_str().unwrap().is_empty());
    let fields: Vec<&str> = error["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"email") && fields.contains(&"password"),
        "{fields:?}"
    );
    let human = ann.run(
        &invalid_registration[2..],
        "short
",
    );
    assert!(
        human.stderr.starts_with("error: validation.failed: "),
        "{}",
        human.stderr
    );
    assert!(human.stderr.contains("request id: "));
    assert_eq!(ann.run(&["login", "--password-stdin"], "x\n").code, 2);

    // 3: wrong password; 6: the user exists.
    let wrong = ann.run(
        &["login", "--login", "ann", "--password-stdin"],
        "wrong password\n",
    );
    assert_eq!(wrong.code, 3);
    assert!(
        wrong.stderr.contains("auth.invalid_credentials"),
        "{}",
        wrong.stderr
    );
    let exists = ann.register("ann");
    assert_eq!(exists.code, 6, "{}", exists.stderr);
    assert!(exists.stderr.contains("auth.user_exists"));

    // 4: not a member; 5: no such chat; 4: an admin command without the role.
    let bob = Cli::new(&p);
    bob.sign_up("bob");
    let id = ann.json(&["chat", "create", "private"])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let refused = bob.run(&["--output", "json", "chat", "send", &id, "let me in"], "");
    assert_eq!(refused.code, 4);
    assert_eq!(refused.error()["error"]["code"], "auth.forbidden");
    let missing = bob.run(&["chat", "messages", &uuid_v4()], "");
    assert_eq!(missing.code, 5, "{}", missing.stderr);
    assert!(missing.stderr.contains("common.not_found"));
    let users = bob.run(&["users", "list"], "");
    assert_eq!(users.code, 4, "{}", users.stderr);

    // 3: tokens are bound to their server: another --server means "not logged in", and the
    // tokens are not sent there.
    let elsewhere = ann.run(&["--server", "http://127.0.0.1:9", "whoami"], "");
    assert_eq!(elsewhere.code, 3, "{}", elsewhere.stderr);
    assert!(elsewhere.stderr.contains("cli.not_logged_in"));

    // 8: nothing listens there.
    let down = ann.run(&["--server", "http://127.0.0.1:9", "keys"], "");
    assert_eq!(down.code, 8, "{}", down.stderr);
    assert!(down.stderr.contains("cli.unreachable"));
    let chat_down = ann.run(&["--chat-url", "http://127.0.0.1:9", "chat", "list"], "");
    assert_eq!(chat_down.code, 8, "{}", chat_down.stderr);

    // 7: locked after repeated failures, with the time to wait.
    let mut locked = None;
    for _ in 0..8 {
        let r = bob.run(
            &["login", "--login", "bob", "--password-stdin"],
            "wrong password\n",
        );
        if r.code == 7 {
            locked = Some(r);
            break;
        }
        assert_eq!(r.code, 3, "{}", r.stderr);
    }
    let locked = locked.expect("the account locks");
    assert!(
        locked.stderr.contains("auth.account_locked") && locked.stderr.contains("retry in"),
        "{}",
        locked.stderr
    );

    // No terminal and no --password-stdin: a usage error, not a hang.
    let no_tty = ann.run(&["login", "--login", "ann"], "");
    assert_eq!(no_tty.code, 2, "{}", no_tty.stderr);
    // account delete refuses without --yes when not on a terminal.
    assert_eq!(ann.run(&["account", "delete"], "").code, 2);
    p.teardown().await;
}

fn uuid_v4() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_password_change_logout_all_and_account_delete() {
    let p = Platform::start().await;
    let root = Cli::new(&p);
    root.sign_up("root");
    p.grant_admin("root").await;
    root.login("root");
    let bob = Cli::new(&p);
    bob.sign_up("bob");
    let bob_id = bob.json(&["whoami"])["account"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let page = root.json(&["users", "list", "--limit", "10"]);
    assert_eq!(page["total"], 2);
    assert!(
        root.run(&["users", "list"], "")
            .ok()
            .stdout
            .contains("bob@example.com")
    );
    assert_eq!(root.json(&["users", "get", &bob_id])["username"], "bob");
    let roles = root.json(&["users", "update", &bob_id, "--role", "user,auditor"]);
    assert_eq!(roles["roles"], serde_json::json!(["auditor", "user"]));
    assert_eq!(root.json(&["users", "disable", &bob_id])["disabled"], true);
    let refused = bob.run(
        &["login", "--login", "bob", "--password-stdin"],
        &format!("{PASSWORD}\n"),
    );
    assert_ne!(refused.code, 0);
    assert_eq!(root.json(&["users", "enable", &bob_id])["disabled"], false);
    assert!(root.json(&["access", "check", "GET", "/api/v1/users"])["allowed"] == true);

    // password change (current, new, from stdin), then log in with the new one.
    bob.login("bob");
    bob.run(
        &["password", "change", "--password-stdin"],
        &format!("{PASSWORD}\nan even better passphrase\n"),
    )
    .ok();
    bob.run(
        &["login", "--login", "bob", "--password-stdin"],
        "an even better passphrase\n",
    )
    .ok();
    // logout --all ends every session: a second device's refresh token stops working.
    let other_device = Cli::new(&p);
    other_device
        .run(
            &["login", "--login", "bob", "--password-stdin"],
            "an even better passphrase\n",
        )
        .ok();
    bob.run(&["logout", "--all"], "").ok();
    let mut profile = other_device.profile();
    profile["session"]["expires_at"] = Value::from(0);
    std::fs::write(
        other_device.profile_file(),
        serde_json::to_vec(&profile).unwrap(),
    )
    .unwrap();
    assert_eq!(other_device.run(&["whoami"], "").code, 3);

    // account delete --yes, then the admin no longer finds it.
    bob.run(
        &["login", "--login", "bob", "--password-stdin"],
        "an even better passphrase\n",
    )
    .ok();
    // The server asks for the current password: a wrong one deletes nothing.
    assert_eq!(
        bob.run(
            &["account", "delete", "--yes", "--password-stdin"],
            "not the password\n"
        )
        .code,
        3
    );
    assert_eq!(root.run(&["users", "get", &bob_id], "").code, 0);
    bob.run(
        &["account", "delete", "--yes", "--password-stdin"],
        "an even better passphrase\n",
    )
    .ok();
    assert_eq!(root.run(&["users", "get", &bob_id], "").code, 5);
    let carol = Cli::new(&p);
    carol.sign_up("carol");
    let carol_id = carol.json(&["whoami"])["account"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    root.run(&["users", "delete", &carol_id], "").ok();
    assert_eq!(root.run(&["users", "get", &carol_id], "").code, 5);
    p.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_streams_own_events_reconnects_and_ends_with_the_session() {
    let p = Platform::start_with(Options {
        access_token_ttl: 4,
        clock_skew_secs: 0,
        ..Options::default()
    })
    .await;
    let ann = Cli::new(&p);
    ann.sign_up("ann");
    let bob = Cli::new(&p);
    bob.sign_up("bob");
    let ann_id = ann.json(&["whoami"])["account"]["id"].clone();
    let bob_id = bob.json(&["whoami"])["account"]["id"].clone();

    let mut watch = ann.spawn(&["--output", "json", "watch"]);
    watch.note("watching", 20);
    let updated = |w: &common::Running| loop {
        let event: Value = serde_json::from_str(&w.line(20)).unwrap();
        assert_eq!(
            event["account_id"], ann_id,
            "another account's event: {event}"
        );
        if event["kind"] == "account.updated" {
            return event;
        }
    };
    ann.json(&["account", "update", "--display-name", "Ann"]);
    bob.json(&["account", "update", "--display-name", "Bob"]);
    assert_eq!(updated(&watch)["data"]["fields"][0], "display_name");

    // The token expires (4 s): the gateway closes with 4001, watch refreshes and reconnects.
    watch.note("access token expired", 20);
    watch.note("reconnected", 20);
    ann.json(&["account", "update", "--display-name", "Ann again"]);
    updated(&watch);

    // Logging out everywhere revokes the watch's session: it ends with exit 3.
    ann.run(&["logout", "--all"], "").ok();
    watch.note("session revoked", 20);
    assert_eq!(watch.exit_code(20), 3);
    while let Ok(line) = watch.stdout.try_recv() {
        let event: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            event["account_id"], ann_id,
            "another account's event: {event}"
        );
    }

    // Human output: one line per event, with kind and account.
    let human = bob.spawn(&["watch", "--topic", "account.*"]);
    human.note("watching (topics: account.*)", 20);
    bob.json(&["account", "update", "--display-name", "Bobby"]);
    let line = loop {
        let line = human.line(20);
        if line.contains("account.updated") {
            break line;
        }
    };
    assert!(line.contains(bob_id.as_str().unwrap()), "{line}");
    assert!(line.contains(r#"{"fields":["display_name"]}"#), "{line}");
    drop(human);
    p.teardown().await;
}

#[test]
fn shell_completions_are_printed_for_bash_zsh_and_fish() {
    for shell in ["bash", "zsh", "fish"] {
        let out = assert_cmd::Command::new(common::BIN)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success());
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            script.contains("authstack") && script.contains("connect"),
            "{shell}"
        );
    }
    let help = assert_cmd::Command::new(common::BIN)
        .arg("--help")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("Exit codes:"));
}
