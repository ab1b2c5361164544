//! The `product-service` binary itself: `serve` on its embedded database, a clean stop on
//! SIGTERM, data kept across runs, and `migrate`.

use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::helpers::product;

const BINARY: &str = env!("CARGO_BIN_EXE_product-service");

/// Starts `product-service serve` with no DATABASE_URL; returns it and its port.
fn serve(data_dir: &Path) -> (Child, u16) {
    let (child, port, _log) = serve_with(data_dir, &[]);
    (child, port)
}

/// Every line the service has logged so far.
type Log = Arc<Mutex<Vec<String>>>;

/// Starts `product-service serve` with no DATABASE_URL and the variables `env`; returns it, its
/// port and its log (stderr), which keeps filling.
fn serve_with(data_dir: &Path, env: &[(&str, &str)]) -> (Child, u16, Log) {
    let mut child = Command::new(BINARY)
        .arg("serve")
        .env_remove("DATABASE_URL")
        .env("DATA_DIR", data_dir)
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start the product-service binary");
    let stderr = child.stderr.take().expect("piped stderr");
    let log = Log::default();
    let (tx, rx) = std::sync::mpsc::channel();
    let lines = Arc::clone(&log);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on http://127.0.0.1:").nth(1) {
                let _ = tx.send(rest.trim().parse::<u16>().ok());
            }
            lines.lock().expect("log").push(line);
        }
    });
    let port = rx
        .recv_timeout(Duration::from_secs(60))
        .ok()
        .flatten()
        .expect("the service did not report its port within 60 s");
    (child, port, log)
}

/// SIGTERM, then wait for a clean exit.
fn terminate(mut child: Child) {
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).expect("send SIGTERM");
    let status = child.wait().expect("wait for the service");
    assert!(
        status.success(),
        "the service exited with {status} after SIGTERM"
    );
}

#[tokio::test]
async fn serve_starts_its_embedded_database_stops_it_on_sigterm_and_keeps_the_data() {
    let root = tempfile::tempdir().expect("temp dir");
    // The embedded cluster may run as the `postgres` user, which must reach the data directory.
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let data_dir = root.path().join("data");
    let client = reqwest::Client::new();

    let (first, port) = serve(&data_dir);
    let created = client
        .post(format!("http://127.0.0.1:{port}/products"))
        .json(&product("Bin", "1", "M"))
        .send()
        .await
        .expect("POST to the binary");
    assert_eq!(created.status(), 201);
    terminate(first);
    assert!(
        !data_dir.join("postgres/postmaster.pid").exists(),
        "the embedded PostgreSQL must be stopped when the service exits"
    );

    let (second, port) = serve(&data_dir);
    // A reload signal sent to every instance (log rotation, ExecReload) ends none: without
    // API_TOKENS_FILE it is logged and ignored.
    kill(Pid::from_raw(second.id() as i32), Signal::SIGHUP).expect("send SIGHUP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = client
        .post(format!("http://127.0.0.1:{port}/products"))
        .json(&product("Bin", "1", "M"))
        .send()
        .await
        .expect("POST to the binary");
    assert_eq!(
        again.status(),
        200,
        "the product created by the first run is still there"
    );
    terminate(second);
}

#[test]
fn migrate_applies_the_migrations_and_exits() {
    let root = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let run = || {
        Command::new(BINARY)
            .arg("migrate")
            .env_remove("DATABASE_URL")
            .env("DATA_DIR", root.path().join("data"))
            .env("RUST_LOG", "info")
            .output()
            .expect("run product-service migrate")
    };

    let first = run();
    let second = run();

    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(String::from_utf8_lossy(&first.stderr).contains("applied migration"));
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(String::from_utf8_lossy(&second.stderr).contains("no pending migrations"));
    assert!(!root.path().join("data/postgres/postmaster.pid").exists());
}

/// The flags `product-service <args> --help` lists.
fn flags_in_help(args: &[&str]) -> Vec<String> {
    let output = Command::new(BINARY)
        .args(args)
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(output.status.success(), "{args:?} --help failed");
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .filter(|word| word.starts_with("--"))
        .map(|word| word.trim_end_matches(',').to_owned())
        .collect()
}

#[test]
fn each_command_lists_only_the_flags_it_reads() {
    let mut serve = flags_in_help(&[]);
    serve.retain(|flag| flag != "--version");
    assert_eq!(flags_in_help(&["serve"]), serve);
    for flag in [
        "--bind-addr",
        "--database-url",
        "--lock-timeout-ms",
        "--group-commit",
    ] {
        assert!(serve.contains(&flag.to_owned()), "serve lacks {flag}");
    }

    let migrate = flags_in_help(&["migrate"]);
    assert_eq!(
        migrate,
        ["--database-url", "--data-dir", "--rust-log", "--help"],
        "migrate"
    );

    let dedupe = flags_in_help(&["dedupe"]);
    assert_eq!(
        dedupe,
        [
            "--database-url",
            "--data-dir",
            "--rust-log",
            "--lock-timeout-ms",
            "--statement-timeout-ms",
            "--apply",
            "--json",
            "--help"
        ],
        "dedupe"
    );
}

#[test]
fn cors_origins_that_would_not_do_what_they_say_stop_the_start() {
    for (origins, says) in [
        (
            "https://*.example.com",
            "wildcard patterns are not supported",
        ),
        (
            "https://shop.example/",
            "did you mean \"https://shop.example\"",
        ),
        ("*,https://shop.example", "give it alone"),
    ] {
        let empty = tempfile::tempdir().expect("temp dir");
        let output = Command::new(BINARY)
            .env_remove("DATABASE_URL")
            .env("DATA_DIR", empty.path())
            .env("CORS_ALLOWED_ORIGINS", origins)
            .env("BIND_ADDR", "127.0.0.1:0")
            .output()
            .expect("run product-service");
        assert!(!output.status.success(), "{origins} started");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{origins}: {stderr}");
        assert!(
            !empty.path().join("postgres").exists(),
            "{origins}: refused before any database work"
        );
    }
}

#[tokio::test]
async fn sighup_rereads_the_tokens_file_and_no_token_is_ever_logged() {
    let root = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let tokens = root.path().join("tokens");
    let (old, new) = ("old-token-4f1c", "new-token-9b2e");
    std::fs::write(&tokens, format!("# first\n{old}\n")).expect("write");
    let file = tokens.to_str().expect("UTF-8 path");
    let (child, port, log) = serve_with(
        &root.path().join("data"),
        &[("API_TOKENS_FILE", file), ("RUST_LOG", "debug")],
    );
    let client = reqwest::Client::new();
    let post = |token: &'static str| {
        client
            .post(format!("http://127.0.0.1:{port}/products"))
            .bearer_auth(token)
            .json(&product("Hup", "1", "M"))
            .send()
    };
    let pid = Pid::from_raw(child.id() as i32);

    assert_eq!(post(old).await.expect("POST").status(), 201);
    assert_eq!(post(new).await.expect("POST").status(), 401);
    std::fs::write(&tokens, format!("{new}\n")).expect("write");
    kill(pid, Signal::SIGHUP).expect("send SIGHUP");
    let mut reloaded = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if post(new).await.expect("POST").status() == 200 {
            reloaded = true;
            break;
        }
    }
    assert!(reloaded, "the new token was not accepted after SIGHUP");
    assert_eq!(post(old).await.expect("POST").status(), 401, "revoked");
    // A file that fails to read keeps the tokens in force, and the service runs on.
    std::fs::remove_file(&tokens).expect("remove");
    kill(pid, Signal::SIGHUP).expect("send SIGHUP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(post(new).await.expect("POST").status(), 200, "kept");
    terminate(child);

    let log = log.lock().expect("log").join("\n");
    assert!(log.contains("API_TOKENS_FILE re-read, 1 tokens"), "{log}");
    assert!(log.contains("the previous 1 tokens stay in force"), "{log}");
    for token in [old, new] {
        assert!(!log.contains(token), "the log shows a token:\n{log}");
    }
}
