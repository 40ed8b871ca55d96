//! The administration commands of the real `sessionary` binary against a
//! running `sessionary serve`: `sessions list|revoke` on SQLite and on
//! PostgreSQL (where the revocation also reaches the running node's
//! access-token verifier through the fanout), `keys rotate` (old tokens and
//! data still verify and open, new ones use the new keys), `users ...`, and
//! JSON logs that never hold a token.

// Test helpers outside #[test] fns: a panic is how they report a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use sessionary_testkit::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_sessionary");

/// Writes `sessionary.toml` into `dir` (data folder `data`, a free port) plus `extra`.
fn write_config(dir: &TempDir, extra: &str) -> PathBuf {
    let data = dir.path().join("data");
    let text = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\n{extra}\n",
        data.display().to_string()
    );
    let p = dir.path().join("sessionary.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// `sessionary` with no `SESSIONARY_*` variables from the test's environment.
fn command() -> Command {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("SESSIONARY_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// Runs `sessionary <args>` to the end, with `stdin` on its standard input.
fn sessionary(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = command()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    } else {
        drop(child.stdin.take());
    }
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

struct Server {
    child: Child,
    url: String,
    key: String,
    http: reqwest::Client,
}

impl Server {
    /// Starts `serve` on `config`; `quiet`: warnings only (`SESSIONARY_LOG`,
    /// which replaces a `[log]` table of the file).
    fn start(config: &Path, quiet: bool, stderr: Stdio) -> Self {
        let mut cmd = command();
        if quiet {
            cmd.env("SESSIONARY_LOG", "warn");
        }
        let mut child = cmd
            .args(["serve", "--config"])
            .arg(config)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn sessionary");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("Sessionary listening on ") {
                        break url.trim().to_owned();
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("no start banner");
                }
            }
        };
        let dir = config.parent().unwrap().join("data");
        let key = std::fs::read_to_string(dir.join("api-key"))
            .unwrap()
            .trim()
            .to_owned();
        Self {
            child,
            url,
            key,
            http: reqwest::Client::new(),
        }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let t = res.text().await.unwrap();
        (status, serde_json::from_str(&t).unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    /// A new session of `user`: (token, id).
    async fn sign_in(&self, user: &str) -> (String, String) {
        let (s, b) = self.post("/v1/sessions", json!({ "user": user })).await;
        assert_eq!(s, 201, "{b}");
        (
            b["token"].as_str().unwrap().to_owned(),
            b["session"]["id"].as_str().unwrap().to_owned(),
        )
    }

    async fn verify(&self, token: &str) -> (u16, Value) {
        self.post("/v1/sessions/verify", json!({ "token": token }))
            .await
    }

    /// SIGTERM, then wait (at most 30 s) for the exit.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "serve did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `sessions list` shows the session, `sessions revoke` makes the running
/// server refuse it; `--user` ends the rest; bad input changes nothing.
async fn list_and_revoke(config: &Path, server: &Server, user: &str) {
    let cfg = config.to_str().unwrap();
    let (t1, id1) = server.sign_in(user).await;
    let (t2, id2) = server.sign_in(user).await;
    let (t3, id3) = server.sign_in(user).await;
    assert_eq!(server.verify(&t1).await.0, 200);

    let out = sessionary(&["sessions", "list", "--config", cfg, "--user", user], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed = text(&out.stdout);
    for id in [&id1, &id2, &id3] {
        assert!(listed.contains(id.as_str()), "{id} not in {listed}");
    }
    assert!(!listed.contains(&t1), "a token was printed");
    let out = sessionary(
        &[
            "sessions", "list", "--config", cfg, "--user", user, "--json",
        ],
        None,
    );
    let rows: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["id"], json!(id1));

    // Bad input: a clear error, exit 64, nothing revoked.
    let out = sessionary(&["sessions", "revoke", "--config", cfg, "not-an-id"], None);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        text(&out.stderr).contains("bad session id"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(server.verify(&t1).await.0, 200);
    // Ids are base64url and may start with `-`: still an id, not an option.
    let out = sessionary(
        &[
            "sessions",
            "revoke",
            "--config",
            cfg,
            "-AAAAAAAAAAAAAAAAAAAAA",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("no live session"),
        "{}",
        text(&out.stderr)
    );

    let out = sessionary(&["sessions", "revoke", "--config", cfg, "--", &id1], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&format!("revoked {id1}")));
    let (s, b) = server.verify(&t1).await;
    assert_eq!((s, b["reason"].clone()), (401, json!("revoked_by_admin")));
    assert_eq!(
        server.verify(&t2).await.0,
        200,
        "only the one session ended"
    );

    // Again: it is gone.
    let out = sessionary(&["sessions", "revoke", "--config", cfg, "--", &id1], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no live session"));

    let out = sessionary(
        &["sessions", "revoke", "--config", cfg, "--user", user],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    for t in [&t2, &t3] {
        assert_eq!(server.verify(t).await.0, 401);
    }
    let out = sessionary(&["sessions", "list", "--config", cfg, "--user", user], None);
    assert_eq!(text(&out.stdout), "");
}

#[tokio::test]
async fn sessions_list_and_revoke_against_a_running_server_on_sqlite() {
    let dir = TempDir::new("sqlite");
    // A node that reads the file on every verification (no exclusive cache).
    let config = write_config(&dir, "[store]\nexclusive = false");
    let server = Server::start(&config, true, Stdio::inherit());
    list_and_revoke(&config, &server, "alice").await;
    drop(server);
}

#[tokio::test]
async fn an_exclusive_sqlite_server_is_reported_not_waited_for_forever() {
    let dir = TempDir::new("locked");
    let config = write_config(&dir, "");
    let server = Server::start(&config, true, Stdio::inherit());
    let (_t, _id) = server.sign_in("alice").await;
    let out = sessionary(
        &[
            "sessions",
            "list",
            "--config",
            config.to_str().unwrap(),
            "--user",
            "alice",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(64), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("exclusive = false"),
        "{}",
        text(&out.stderr)
    );
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_list_and_revoke_against_a_running_server_on_postgres() {
    let Some(url) = sessionary_testkit::postgres::fresh_schema("cli_on_postgres").await else {
        return;
    };
    let dir = TempDir::new("pg");
    let config = write_config(
        &dir,
        &format!("[store]\nkind = \"postgres\"\nurl = {:?}", url),
    );
    let server = Server::start(&config, true, Stdio::inherit());
    list_and_revoke(&config, &server, "alice").await;

    revocation_reaches_access_tokens(&config, &server).await;
    drop(server);
}

/// The fanout: an access token of a session revoked by the command is
/// refused by the running node (its revocation list heard the event; the
/// token itself is checked without the store).
async fn revocation_reaches_access_tokens(config: &Path, server: &Server) {
    let (token, id) = server.sign_in("bob").await;
    let (s, issued) = server
        .post(
            "/v1/tokens",
            json!({ "session_token": token, "refresh": false }),
        )
        .await;
    assert_eq!(s, 201, "{issued}");
    let access = issued["access_token"].as_str().unwrap().to_owned();
    let check = json!({ "access_token": access });
    assert_eq!(server.post("/v1/tokens/verify", check.clone()).await.0, 200);
    let out = sessionary(
        &[
            "sessions",
            "revoke",
            "--config",
            config.to_str().unwrap(),
            "--",
            &id,
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("notified through the store's fanout"),
        "{}",
        text(&out.stdout)
    );
    // The NOTIFY reached the server before the command returned (the command
    // heard its own message on the same channel); allow the server's task a
    // moment to apply it.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (s, _) = server.post("/v1/tokens/verify", check.clone()).await;
        if s == 401 {
            break;
        }
        assert!(Instant::now() < deadline, "access token still accepted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The Redis server of the tests (`SESSIONARY_TEST_REDIS_URL`, default
/// `redis://127.0.0.1:6379`), or `None` (said on stderr; a failure with
/// `CI=true`) when nothing listens there.
fn test_redis(test: &str) -> Option<String> {
    let url = std::env::var("SESSIONARY_TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned());
    let authority = url.trim_start_matches("redis://");
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let addr = authority.split('/').next().unwrap_or(authority);
    if std::net::TcpStream::connect(addr).is_ok() {
        return Some(url);
    }
    let why = format!("{test}: no Redis server at {addr} (scripts/test starts one)");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{why}; CI=true, so this is a failure");
    }
    eprintln!("SKIPPED {why}");
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_list_and_revoke_against_a_running_server_on_redis() {
    let Some(url) = test_redis("cli_on_redis") else {
        return;
    };
    let dir = TempDir::new("redis");
    // Keys of this test only.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = format!("cli-test:{}:{nanos}:", std::process::id());
    let config = write_config(
        &dir,
        &format!("[store]\nkind = \"redis\"\nurl = {url:?}\nkey_prefix = {prefix:?}"),
    );
    let server = Server::start(&config, true, Stdio::inherit());
    list_and_revoke(&config, &server, "alice").await;
    revocation_reaches_access_tokens(&config, &server).await;
    drop(server);
}

/// The `kid` of a compact JWS.
fn kid(jwt: &str) -> String {
    let header = jwt.split('.').next().unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    v["kid"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn keys_rotate_keeps_old_tokens_and_data_and_uses_new_keys() {
    let dir = TempDir::new("keys");
    let config = write_config(&dir, "");
    let cfg = config.to_str().unwrap();
    let server = Server::start(&config, true, Stdio::inherit());
    let (token, id) = server.sign_in("alice").await;
    let (s, _) = server
        .send(
            reqwest::Method::PATCH,
            &format!("/v1/sessions/{id}/data"),
            Some(json!({ "cart": ["tea"] })),
        )
        .await;
    assert_eq!(s, 200);
    let (_, issued) = server
        .post(
            "/v1/tokens",
            json!({ "session_token": token, "refresh": false }),
        )
        .await;
    let old_access = issued["access_token"].as_str().unwrap().to_owned();
    let old_kid = kid(&old_access);
    server.stop();

    let data_keys = dir.path().join("data").join("data-keys");
    let before = std::fs::read_to_string(&data_keys).unwrap();
    let out = sessionary(&["keys", "rotate", "--config", cfg], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(said.contains("data key 2 now seals"), "{said}");
    assert!(said.contains("restart running nodes"), "{said}");
    let after = std::fs::read_to_string(&data_keys).unwrap();
    let keys: Vec<&str> = after.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(keys.len(), 2);
    assert!(keys[0].starts_with("2:"), "the new key seals: {after}");
    assert!(before.contains(keys[1]), "the old key stays");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&data_keys).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0);
    }

    let server = Server::start(&config, true, Stdio::inherit());
    // What the old keys made still opens and verifies.
    assert_eq!(server.verify(&token).await.0, 200);
    let (s, data) = server
        .send(
            reqwest::Method::GET,
            &format!("/v1/sessions/{id}/data"),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(data["data"]["cart"], json!(["tea"]), "{data}");
    let (s, _) = server
        .post("/v1/tokens/verify", json!({ "access_token": old_access }))
        .await;
    assert_eq!(s, 200, "a token signed before the rotation still verifies");
    // New tokens use the new key.
    let (_, issued) = server
        .post(
            "/v1/tokens",
            json!({ "session_token": token, "refresh": false }),
        )
        .await;
    let new_access = issued["access_token"].as_str().unwrap();
    assert_ne!(kid(new_access), old_kid);
    let (_, jwks) = server
        .send(reqwest::Method::GET, "/.well-known/jwks.json", None)
        .await;
    assert_eq!(jwks["keys"][0]["kid"], json!(kid(new_access)));
    drop(server);

    // Keys from the configuration are not the command's to change.
    let configured = write_config(
        &dir,
        "data_keys = [\"1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"]",
    );
    let out = sessionary(
        &[
            "keys",
            "rotate",
            "--data",
            "--config",
            configured.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(64), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&data_keys).unwrap(), after);
}

#[tokio::test]
async fn users_add_list_passwd_remove() {
    let dir = TempDir::new("users");
    let config = write_config(&dir, "[store]\nexclusive = false");
    let cfg = config.to_str().unwrap();
    let out = sessionary(
        &[
            "users",
            "add",
            "--config",
            cfg,
            "carol",
            "--role",
            "admin",
            "--password-stdin",
        ],
        Some("correct horse battery\n"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = sessionary(&["users", "add", "--config", cfg, "dave"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("shown once"));
    // A taken name, a short password: refused, nothing changes.
    let file = dir.path().join("data").join("demo-users");
    let before = std::fs::read_to_string(&file).unwrap();
    let out = sessionary(&["users", "add", "--config", cfg, "dave"], None);
    assert_eq!(out.status.code(), Some(64));
    let out = sessionary(
        &[
            "users",
            "passwd",
            "--config",
            cfg,
            "carol",
            "--password-stdin",
        ],
        Some("short\n"),
    );
    assert_eq!(out.status.code(), Some(64));
    assert!(text(&out.stderr).contains("8 characters"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before);

    let out = sessionary(&["users", "list", "--config", cfg], None);
    assert_eq!(text(&out.stdout), "carol admin\ndave user\n");
    let out = sessionary(
        &[
            "users",
            "passwd",
            "--config",
            cfg,
            "carol",
            "--password-stdin",
        ],
        Some("a new long password\n"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_ne!(std::fs::read_to_string(&file).unwrap(), before);

    // Removing an account ends its sessions on the running server.
    let server = Server::start(&config, true, Stdio::inherit());
    let (token, _) = server.sign_in("dave").await;
    let out = sessionary(&["users", "remove", "--config", cfg, "dave"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("1 session(s) ended"),
        "{}",
        text(&out.stdout)
    );
    let (s, b) = server.verify(&token).await;
    assert_eq!((s, b["reason"].clone()), (401, json!("user_disabled")));
    let out = sessionary(&["users", "list", "--config", cfg], None);
    assert_eq!(text(&out.stdout), "carol admin\n");
    drop(server);
}

#[tokio::test]
async fn json_logs_carry_session_ids_and_never_tokens() {
    let dir = TempDir::new("json");
    let config = write_config(&dir, "[log]\nformat = \"json\"\nfilter = \"debug\"");
    let log_path = dir.path().join("stderr.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let server = Server::start(&config, false, Stdio::from(log));
    let (token, id) = server.sign_in("alice").await;
    assert_eq!(server.verify(&token).await.0, 200);
    let (s, _) = server
        .post("/v1/sessions/logout", json!({ "token": token }))
        .await;
    assert!(s < 300);
    assert_eq!(server.verify(&token).await.0, 401);
    let api_key = server.key.clone();
    server.stop();
    let logs = std::fs::read_to_string(&log_path).unwrap();
    let mut lines = 0;
    for line in logs.lines() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
        lines += 1;
    }
    assert!(lines > 3, "{logs}");
    assert!(
        logs.contains(&id),
        "the session id should be logged:\n{logs}"
    );
    // The verify request's span carries the session id.
    assert!(
        logs.lines()
            .any(|l| l.contains("\"route\":\"/v1/sessions/verify\"") && l.contains(&id)),
        "{logs}"
    );
    assert!(!logs.contains(&token), "token logged");
    assert!(!logs.contains(&api_key), "API key logged");
}
