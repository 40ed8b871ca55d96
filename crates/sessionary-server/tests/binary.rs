//! The real `sessionary` binary: the README's API walk over HTTP against the
//! default SQLite store, a restart that keeps sessions and keys (SQLite, and
//! Redis with `[store] kind = "redis"`), graceful
//! shutdown on SIGTERM, and exit code 64 for bad configuration.

// Test helpers outside #[test] fns: a panic is how they report a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sessionary_testkit::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_sessionary");

/// `sessionary` with no `SESSIONARY_*` variables from the test's environment.
fn command() -> Command {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("SESSIONARY_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("SESSIONARY_LOG", "warn");
    cmd
}

struct Server {
    child: Child,
    url: String,
    banner: Vec<String>,
    stdout: mpsc::Receiver<String>,
}

impl Server {
    fn start(data_dir: &Path) -> Self {
        Self::start_with(data_dir, &[])
    }

    fn start_with(data_dir: &Path, env: &[(&str, &str)]) -> Self {
        let mut child = command()
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
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
        let mut banner = Vec::new();
        let url = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    banner.push(line.clone());
                    if let Some(url) = line.strip_prefix("Sessionary listening on ") {
                        break url.trim().to_owned();
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("no start banner; got {banner:?}");
                }
            }
        };
        // The rest of the banner follows at once.
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            banner.push(line);
        }
        Self {
            child,
            url,
            banner,
            stdout: rx,
        }
    }

    /// SIGTERM, then wait for a clean exit.
    fn stop(mut self) -> (ExitStatus, Vec<String>) {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(killed.success());
        let status = wait_timeout(&mut self.child, Duration::from_secs(30));
        let rest: Vec<String> = self.stdout.try_iter().collect();
        (status, rest)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_timeout(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("sessionary did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Api {
    http: reqwest::Client,
    url: String,
    key: String,
}

impl Api {
    fn new(server: &Server, data_dir: &Path) -> Self {
        let key = std::fs::read_to_string(data_dir.join("api-key"))
            .unwrap()
            .trim()
            .to_owned();
        Self {
            http: reqwest::Client::new(),
            url: server.url.clone(),
            key,
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        if_match: Option<&str>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        if let Some(v) = if_match {
            req = req.header("if-match", v);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        };
        (status, headers, body)
    }

    async fn verify(&self, token: &str) -> (u16, reqwest::header::HeaderMap, Value) {
        self.send(
            reqwest::Method::POST,
            "/v1/sessions/verify",
            Some(json!({ "token": token })),
            None,
        )
        .await
    }
}

async fn wait_healthy(url: &str) {
    let http = reqwest::Client::new();
    for _ in 0..100 {
        if let Ok(r) = http.get(format!("{url}/healthz")).send().await {
            if r.status() == 200 {
                let body: Value = r.json().await.unwrap();
                assert_eq!(body, json!({"status": "ok", "store": "ok"}));
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url}/healthz never answered 200");
}

#[tokio::test]
async fn api_walk_against_the_real_binary() {
    use reqwest::Method;
    let dir = TempDir::new("walk");
    let server = Server::start(dir.path());
    wait_healthy(&server.url).await;
    let banner = server.banner.join("\n");
    assert!(banner.contains("store:    sqlite"), "{banner}");
    assert!(banner.contains("generated now"), "{banner}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for f in ["api-key", "data-keys"] {
            let mode = std::fs::metadata(dir.path().join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
    }
    let api = Api::new(&server, dir.path());
    assert!(banner.contains(&api.key), "the new key is shown once");

    // Without the key: refused.
    let r = reqwest::Client::new()
        .post(format!("{}/v1/sessions", server.url))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Create.
    let (s, h, body) = api
        .send(
            Method::POST,
            "/v1/sessions",
            Some(
                json!({"user": "alice", "roles": ["user"], "data": {"cart": []},
                        "device": {"ip": "127.0.0.1", "user_agent": "walk-test"}}),
            ),
            None,
        )
        .await;
    assert_eq!(s, 201, "{body}");
    assert_eq!(h["cache-control"], "no-store");
    let token = body["token"].as_str().unwrap().to_owned();
    let id = body["session"]["id"].as_str().unwrap().to_owned();

    // Verify.
    let (s, _, body) = api.verify(&token).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["session"]["id"], id.as_str());

    // Patch data with a version precondition.
    let (s, h, body) = api
        .send(
            Method::PATCH,
            &format!("/v1/sessions/{id}/data"),
            Some(json!({"cart": ["book"]})),
            Some("\"1\""),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["data"], json!({"cart": ["book"]}));
    assert_eq!(h["etag"], "\"2\"");
    let (s, _, body) = api
        .send(
            Method::PATCH,
            &format!("/v1/sessions/{id}/data"),
            Some(json!({"cart": []})),
            Some("\"1\""),
        )
        .await;
    assert_eq!(s, 409, "{body}");

    // Regenerate; the old token is refused with its reason.
    let (s, _, body) = api
        .send(
            Method::POST,
            &format!("/v1/sessions/{id}/regenerate"),
            Some(json!({"aal": 2})),
            None,
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let token2 = body["token"].as_str().unwrap().to_owned();
    let (s, h, body) = api.verify(&token).await;
    assert_eq!(s, 401);
    assert_eq!(h["content-type"], "application/problem+json");
    assert_eq!(body["type"], "/problems/session-expired");
    assert_eq!(body["reason"], "regenerated");
    let (s, _, _) = api.verify(&token2).await;
    assert_eq!(s, 200);

    // List.
    let (s, _, body) = api
        .send(Method::GET, "/v1/users/alice/sessions", None, None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(body["sessions"][0]["id"], id.as_str());

    // Revoke; verify is refused with the reason.
    let (s, _, _) = api
        .send(Method::DELETE, &format!("/v1/sessions/{id}"), None, None)
        .await;
    assert_eq!(s, 204);
    let (s, _, body) = api.verify(&token2).await;
    assert_eq!(s, 401);
    assert_eq!(body["reason"], "revoked_by_admin");

    // Malformed tokens: 401 malformed.
    let (s, _, body) = api.verify(&"x".repeat(10 * 1024)).await;
    assert_eq!(s, 401);
    assert_eq!(body["reason"], "malformed");

    // Graceful shutdown.
    let (status, rest) = server.stop();
    assert!(status.success(), "{status:?}");
    assert!(rest.iter().any(|l| l == "Sessionary stopped"), "{rest:?}");
}

/// `scripts/api-walk.sh`, the walk for humans, passes against the real binary
/// (skipped where curl is missing).
#[tokio::test]
async fn the_api_walk_script_passes() {
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("curl not found; skipping");
        return;
    }
    let dir = TempDir::new("script");
    let server = Server::start(dir.path());
    wait_healthy(&server.url).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/api-walk.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg(&server.url)
        .env("SESSIONARY_DATA_DIR", dir.path())
        .env_remove("SESSIONARY_API_KEY")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("API walk passed"), "{stdout}");
    let (status, _) = server.stop();
    assert!(status.success());
}

#[tokio::test]
async fn sessions_and_keys_survive_a_restart() {
    use reqwest::Method;
    let dir = TempDir::new("restart");
    let server = Server::start(dir.path());
    wait_healthy(&server.url).await;
    let api = Api::new(&server, dir.path());
    let (s, _, body) = api
        .send(
            Method::POST,
            "/v1/sessions",
            Some(json!({"user": "bob", "data": {"theme": "dark"}})),
            None,
        )
        .await;
    assert_eq!(s, 201, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    let id = body["session"]["id"].as_str().unwrap().to_owned();
    let (status, _) = server.stop();
    assert!(status.success());

    let server = Server::start(dir.path());
    wait_healthy(&server.url).await;
    let banner = server.banner.join("\n");
    assert!(
        !banner.contains(&api.key),
        "a kept key is not printed again: {banner}"
    );
    assert!(banner.contains("kept in"), "{banner}");
    let api = Api::new(&server, dir.path());
    let (s, _, body) = api.verify(&token).await;
    assert_eq!(s, 200, "{body}");
    // Data sealed before the restart still opens: the data key was kept.
    let (s, _, body) = api
        .send(Method::GET, &format!("/v1/sessions/{id}/data"), None, None)
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["data"], json!({"theme": "dark"}));
    let (status, _) = server.stop();
    assert!(status.success());
}

/// The Redis server of the Redis tests (`SESSIONARY_TEST_REDIS_URL`, default
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

/// `[store] kind = "redis"`: the binary serves from Redis, and a session
/// created before a restart still verifies after it (nothing in the process).
#[tokio::test]
async fn sessions_survive_a_restart_on_redis() {
    use reqwest::Method;
    let Some(url) = test_redis("sessions_survive_a_restart_on_redis") else {
        return;
    };
    let prefix = format!(
        "sessionary-test:{}:",
        sessionary_core::SessionId::generate().unwrap()
    );
    let env = [
        ("SESSIONARY_STORE__KIND", "redis"),
        ("SESSIONARY_STORE__URL", url.as_str()),
        ("SESSIONARY_STORE__KEY_PREFIX", prefix.as_str()),
    ];
    let dir = TempDir::new("redis");
    let server = Server::start_with(dir.path(), &env);
    wait_healthy(&server.url).await;
    let banner = server.banner.join("\n");
    assert!(banner.contains("store:    redis redis://"), "{banner}");
    let api = Api::new(&server, dir.path());
    let (s, _, body) = api
        .send(
            Method::POST,
            "/v1/sessions",
            Some(json!({"user": "carol", "data": {"theme": "dark"}})),
            None,
        )
        .await;
    assert_eq!(s, 201, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    let (status, _) = server.stop();
    assert!(status.success());

    let server = Server::start_with(dir.path(), &env);
    wait_healthy(&server.url).await;
    let (s, body) = api_verify(&server, dir.path(), &token).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["session"]["user"], "carol", "{body}");
    let (status, _) = server.stop();
    assert!(status.success());

    let store = sessionary_redis::RedisStore::connect(
        &url,
        sessionary_redis::RedisOptions::new().with_key_prefix(prefix),
    )
    .await
    .unwrap();
    store.clear().await.unwrap();
}

async fn api_verify(server: &Server, dir: &Path, token: &str) -> (u16, Value) {
    let (s, _, body) = Api::new(server, dir).verify(token).await;
    (s, body)
}

/// Runs `sessionary` to completion (it must not start serving).
fn run(args: &[&str], env: &[(&str, &str)], data_dir: &Path) -> (i32, String, String) {
    let mut cmd = command();
    cmd.args(args)
        .env("SESSIONARY_DATA_DIR", data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    // Drained while the child runs: output larger than a pipe's buffer (the
    // OpenAPI document is) would otherwise block it forever.
    let drain = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            r.read_to_string(&mut s).unwrap();
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let status = wait_timeout(&mut child, Duration::from_secs(20));
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    (status.code().unwrap_or(-1), out, err)
}

/// Arguments, environment, and what stderr must contain.
type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a [&'a str]);

#[test]
fn bad_configuration_exits_64_naming_the_key() {
    let dir = TempDir::new("badconfig");
    let missing = dir.path().join("missing.toml");
    let bad_toml = dir.path().join("bad.toml");
    std::fs::write(
        &bad_toml,
        "[policy.default]\nidle_timeout = \"2h\"\nabsolute_timeout = \"1h\"\n",
    )
    .unwrap();
    let cases: Vec<Case<'_>> = vec![
        (
            vec![],
            vec![("SESSIONARY_POLICY__DEFAULT__IDLE_TIMEOUT", "soon")],
            &[
                "`policy.default.idle_timeout`",
                "expected a duration",
                "SESSIONARY_POLICY__DEFAULT__IDLE_TIMEOUT",
            ],
        ),
        (
            vec!["--listen", "nope"],
            vec![],
            &["`listen`", "127.0.0.1:8080"],
        ),
        (
            vec![],
            vec![("SESSIONARY_LISTEN", "localhost:80")],
            &["`listen`"],
        ),
        (
            vec![],
            vec![("SESSIONARY_STORE__KIND", "mysql")],
            &["`store.kind`", "sqlite", "memory", "postgres"],
        ),
        (
            vec![],
            vec![("SESSIONARY_STORE__KIND", "postgres")],
            &["`store.url`", "required"],
        ),
        (
            vec![],
            vec![("SESSIONARY_SWEEP_INTERVAL", "0s")],
            &["`sweep_interval`"],
        ),
        (
            vec![],
            vec![("SESSIONARY_DATA_KEYS", "1:short")],
            &["`data_keys[0]`"],
        ),
        (
            vec![],
            vec![("SESSIONARY_API__KEYS", "tooshort")],
            &["`api.keys[0]`"],
        ),
        (
            vec![],
            vec![("SESSIONARY_LISTN", "x")],
            &["`listn`", "unknown key"],
        ),
        (
            vec!["--config", missing.to_str().unwrap()],
            vec![],
            &["`config`", "no such file"],
        ),
        (
            vec!["--config", bad_toml.to_str().unwrap()],
            vec![],
            &[
                "`policy.default`",
                "idle_timeout must not exceed absolute_timeout",
            ],
        ),
        (vec!["--bogus-flag"], vec![], &["--bogus-flag"]),
    ];
    for (args, env, expected) in cases {
        for sub in [None, Some("serve")] {
            let mut full: Vec<&str> = sub.into_iter().collect();
            full.extend(&args);
            let (code, out, err) = run(&full, &env, dir.path());
            assert_eq!(code, 64, "{full:?} {env:?}: stdout {out} stderr {err}");
            for e in expected {
                assert!(err.contains(e), "{full:?} {env:?}: {e:?} not in {err}");
            }
            assert!(!out.contains("listening"), "{out}");
        }
    }
    // Nothing was created for a refused configuration.
    assert!(!dir.path().join("api-key").exists());
}

#[test]
fn config_check_prints_the_effective_config_without_secrets() {
    let dir = TempDir::new("configcheck");
    let key = "k".repeat(40);
    let (code, out, err) = run(
        &["config-check"],
        &[
            ("SESSIONARY_API__KEYS", key.as_str()),
            ("SESSIONARY_POLICY__ROLES__ADMIN__IDLE_TIMEOUT", "5m"),
        ],
        dir.path(),
    );
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains(&key));
    assert!(out.contains("REDACTED"));
    assert!(
        out.contains("[policy.roles.admin]\nidle_timeout = \"5m\""),
        "{out}"
    );
    assert!(out.contains("max_sessions = 3"), "{out}");
    let (code, _, err) = run(
        &["config-check"],
        &[("SESSIONARY_LOG", "info,[")],
        dir.path(),
    );
    assert_eq!(code, 64);
    assert!(err.contains("`log`"), "{err}");
}

/// A PostgreSQL URL's password is shown neither by `config-check` nor when
/// the database cannot be reached (exit 1, the URL redacted).
#[test]
fn postgres_url_password_is_never_printed() {
    let dir = TempDir::new("pgsecret");
    let env = [
        ("SESSIONARY_STORE__KIND", "postgres"),
        // Nothing listens on port 1.
        (
            "SESSIONARY_STORE__URL",
            "postgres://app:s3cret-pw@127.0.0.1:1/sessions",
        ),
        ("SESSIONARY_STORE__ACQUIRE_TIMEOUT", "1s"),
    ];
    let (code, out, err) = run(&["config-check"], &env, dir.path());
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("url = \"postgres://app:REDACTED@127.0.0.1:1/sessions\""),
        "{out}"
    );
    assert!(
        !out.contains("s3cret-pw") && !err.contains("s3cret-pw"),
        "{out} {err}"
    );
    let (code, out, err) = run(&["--listen", "127.0.0.1:0"], &env, dir.path());
    assert_eq!(code, 1, "{out} {err}");
    assert!(
        err.contains(
            "cannot open the session store at postgres://app:REDACTED@127.0.0.1:1/sessions"
        ),
        "{err}"
    );
    assert!(
        !out.contains("s3cret-pw") && !err.contains("s3cret-pw"),
        "{out} {err}"
    );
}

#[test]
fn the_example_config_is_valid() {
    let dir = TempDir::new("example");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../sessionary.example.toml");
    let (code, out, err) = run(&["config-check", "--config", example], &[], dir.path());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("listen = \"127.0.0.1:8080\""), "{out}");
}

#[test]
fn a_taken_address_exits_1_with_a_message() {
    let dir = TempDir::new("taken");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, out, err) = run(&["--listen", &addr], &[], dir.path());
    assert_eq!(code, 1, "{out} {err}");
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    assert!(
        !dir.path().join("api-key").exists(),
        "no key generated unseen"
    );
}

#[test]
fn openapi_subcommand_prints_the_document() {
    let dir = TempDir::new("openapi");
    let (code, out, _) = run(&["openapi"], &[], dir.path());
    assert_eq!(code, 0);
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert!(doc["paths"]["/v1/sessions/verify"].is_object());
}

/// Signs in to the demo shop with `password`; the signed-in page of `/`.
async fn demo_sign_in(url: &str, user: &str, password: &str) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let cookie_of = |res: &reqwest::Response| {
        let v = res.headers()["set-cookie"].to_str().unwrap();
        v.split(';').next().unwrap().to_owned()
    };
    let res = http
        .get(format!("{url}/login"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let anonymous = cookie_of(&res);
    let page = res.text().await.unwrap();
    let at = page.find("name=\"csrf_token\" value=\"").unwrap() + 25;
    let token = page[at..].split('"').next().unwrap();
    let res = http
        .post(format!("{url}/login"))
        .header("accept", "text/html")
        .header("cookie", &anonymous)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "username={user}&password={password}&csrf_token={token}&return_to=/"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "sign-in as {user}");
    let signed_in = cookie_of(&res);
    assert_ne!(signed_in, anonymous);
    http.get(format!("{url}/"))
        .header("accept", "text/html")
        .header("cookie", &signed_in)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn demo_users_are_printed_once_and_can_sign_in() {
    let dir = TempDir::new("demo");
    let server = Server::start(dir.path());
    wait_healthy(&server.url).await;
    let banner = server.banner.join("\n");
    let password_of = |name: &str| {
        let line = banner
            .lines()
            .find(|l| l.contains(&format!("demo user: {name} ")))
            .unwrap_or_else(|| panic!("no demo user {name} in {banner}"));
        line.split("password ")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    };
    let (alice, admin) = (password_of("alice"), password_of("admin"));
    assert!(
        banner.contains(&format!("demo:     {}/", server.url)),
        "{banner}"
    );
    let page = demo_sign_in(&server.url, "alice", &alice).await;
    assert!(
        page.contains("<strong id=\"whoami\">alice</strong>"),
        "{page}"
    );
    let page = demo_sign_in(&server.url, "admin", &admin).await;
    assert!(page.contains("id=\"nav-admin\""));
    let (status, _) = server.stop();
    assert!(status.success());
    let kept = std::fs::read_to_string(dir.path().join("demo-users")).unwrap();
    assert!(!kept.contains(&alice), "only hashes are kept");

    // The second start shows no password; the same one still works.
    let server = Server::start(dir.path());
    wait_healthy(&server.url).await;
    let banner = server.banner.join("\n");
    assert!(
        !banner.contains(&alice) && !banner.contains(&admin),
        "{banner}"
    );
    assert!(
        banner.contains("demo users: alice (user), admin (admin)"),
        "{banner}"
    );
    let page = demo_sign_in(&server.url, "alice", &alice).await;
    assert!(page.contains("<strong id=\"whoami\">alice</strong>"));
    let (status, _) = server.stop();
    assert!(status.success());
}

#[tokio::test]
async fn access_token_keys_are_kept_across_restarts() {
    use reqwest::Method;
    let dir = TempDir::new("token-keys");
    let server = Server::start(dir.path());
    wait_healthy(&server.url).await;
    assert!(server.banner.join("\n").contains("/.well-known/jwks.json"));
    let api = Api::new(&server, dir.path());
    let (s, _, session) = api
        .send(
            Method::POST,
            "/v1/sessions",
            Some(json!({"user": "bob"})),
            None,
        )
        .await;
    assert_eq!(s, 201);
    let (s, _, tokens) = api
        .send(
            Method::POST,
            "/v1/tokens",
            Some(json!({"session_token": session["token"]})),
            None,
        )
        .await;
    assert_eq!(s, 201, "{tokens}");
    let jwks: Value = reqwest::get(format!("{}/.well-known/jwks.json", server.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (status, _) = server.stop();
    assert!(status.success());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join("token-keys"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "token-keys is owner-only");
    }

    let server = Server::start(dir.path());
    wait_healthy(&server.url).await;
    let api = Api::new(&server, dir.path());
    let again: Value = reqwest::get(format!("{}/.well-known/jwks.json", server.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again, jwks, "the same keys after a restart");
    let (s, _, claims) = api
        .send(
            Method::POST,
            "/v1/tokens/verify",
            Some(json!({"access_token": tokens["access_token"]})),
            None,
        )
        .await;
    assert_eq!(s, 200, "{claims}");
    let (s, _, _) = api
        .send(
            Method::POST,
            "/v1/tokens/refresh",
            Some(json!({"refresh_token": tokens["refresh_token"]})),
            None,
        )
        .await;
    assert_eq!(s, 200, "refresh families are in the store and survive too");
    let (status, _) = server.stop();
    assert!(status.success());
}

/// Two `sessionary serve` processes on one shared store: a session created on
/// A verifies on B; revoking it on B is refused on A at once and pushed to A's
/// SSE client. Prints the delay from B's `204` to the `revoked` event on A's
/// stream (p50/p99 over 30 revocations).
async fn two_nodes_share_sessions_and_revocations(kind: &str, env: &[(&str, &str)]) {
    use reqwest::Method;
    let dir = TempDir::new(&format!("two-nodes-{kind}"));
    // A first: it writes the keys (API, data, token) the two nodes share.
    let a = Server::start_with(dir.path(), env);
    wait_healthy(&a.url).await;
    let b = Server::start_with(dir.path(), env);
    wait_healthy(&b.url).await;
    let (api_a, api_b) = (Api::new(&a, dir.path()), Api::new(&b, dir.path()));
    let mut delays = Vec::new();
    for i in 0..30 {
        let (s, _, body) = api_a
            .send(
                Method::POST,
                "/v1/sessions",
                Some(json!({"user": format!("u{i}")})),
                None,
            )
            .await;
        assert_eq!(s, 201, "{body}");
        let token = body["token"].as_str().unwrap().to_owned();
        let id = body["session"]["id"].as_str().unwrap().to_owned();
        let (s, _, body) = api_b.verify(&token).await;
        assert_eq!(s, 200, "created on A, verified on B: {body}");

        // A's SSE client (the demo's events route, the token as its cookie).
        let mut events = reqwest::Client::new()
            .get(format!("{}/session/events", a.url))
            .header("cookie", format!("session={token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(events.status(), 200);

        let (s, _, body) = api_b
            .send(Method::DELETE, &format!("/v1/sessions/{id}"), None, None)
            .await;
        let revoked_at = Instant::now();
        assert_eq!(s, 204, "{body}");
        let mut seen = String::new();
        while !seen.contains("event: revoked") {
            let chunk = tokio::time::timeout(Duration::from_secs(2), events.chunk())
                .await
                .expect("A's SSE client hears the revocation within 2 s")
                .unwrap()
                .expect("the stream stays open until it says revoked");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        delays.push(revoked_at.elapsed());
        assert!(seen.contains("revoked_by_admin"), "{seen}");
        // A near cache hears the same event as the SSE client, on a task of
        // its own: allow it the fan-out delay, never its max_age (60 s here).
        let refused_by = Instant::now() + Duration::from_secs(1);
        loop {
            let (s, _, body) = api_a.verify(&token).await;
            if s == 401 || Instant::now() > refused_by {
                assert_eq!(
                    (s, body["reason"].as_str()),
                    (401, Some("revoked_by_admin")),
                    "{body}"
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    delays.sort();
    println!(
        "{kind}: revocation on B reaches A's SSE client in p50 {:?}, p99 {:?} (30 revocations, two processes)",
        delays[15], delays[29]
    );
    let (sa, _) = a.stop();
    let (sb, _) = b.stop();
    assert!(sa.success() && sb.success());
}

#[tokio::test]
async fn two_nodes_on_redis_share_sessions_and_revocations() {
    let Some(url) = test_redis("two_nodes_on_redis_share_sessions_and_revocations") else {
        return;
    };
    let prefix = format!(
        "two-nodes:{}:",
        sessionary_core::SessionId::generate().unwrap()
    );
    let env = [
        ("SESSIONARY_STORE__KIND", "redis"),
        ("SESSIONARY_STORE__URL", url.as_str()),
        ("SESSIONARY_STORE__KEY_PREFIX", prefix.as_str()),
    ];
    two_nodes_share_sessions_and_revocations("redis", &env).await;
    let store = sessionary_redis::RedisStore::connect(
        &url,
        sessionary_redis::RedisOptions::new().with_key_prefix(prefix),
    )
    .await
    .unwrap();
    store.clear().await.unwrap();
}

/// The same two processes on a 3-master Redis Cluster of the test's own
/// (`store.url = "redis+cluster://..."`): sessions, revocations and the
/// fanout's pub/sub across the Cluster's nodes.
#[tokio::test]
async fn two_nodes_on_redis_cluster_share_sessions_and_revocations() {
    let started =
        tokio::task::spawn_blocking(|| sessionary_testkit::redis_cluster::RedisCluster::start(3))
            .await
            .unwrap();
    let cluster = match started {
        Ok(c) => c,
        Err(e) => {
            sessionary_testkit::redis_server::skip(
                "two_nodes_on_redis_cluster_share_sessions_and_revocations",
                &format!("cannot start a Redis Cluster: {e}"),
            );
            return;
        }
    };
    let url = cluster.url();
    let env = [
        ("SESSIONARY_STORE__KIND", "redis"),
        ("SESSIONARY_STORE__URL", url.as_str()),
    ];
    two_nodes_share_sessions_and_revocations("redis-cluster", &env).await;
    drop(cluster);
}

#[tokio::test]
async fn two_nodes_on_redis_with_near_caches_share_sessions_and_revocations() {
    let Some(url) =
        test_redis("two_nodes_on_redis_with_near_caches_share_sessions_and_revocations")
    else {
        return;
    };
    let prefix = format!(
        "two-near:{}:",
        sessionary_core::SessionId::generate().unwrap()
    );
    let env = [
        ("SESSIONARY_STORE__KIND", "redis"),
        ("SESSIONARY_STORE__URL", url.as_str()),
        ("SESSIONARY_STORE__KEY_PREFIX", prefix.as_str()),
        // The longest allowed: only the invalidation can make A refuse in time.
        ("SESSIONARY_STORE__NEAR_CACHE", "60s"),
    ];
    two_nodes_share_sessions_and_revocations("redis+near-cache", &env).await;
    let store = sessionary_redis::RedisStore::connect(
        &url,
        sessionary_redis::RedisOptions::new().with_key_prefix(prefix),
    )
    .await
    .unwrap();
    store.clear().await.unwrap();
}

#[tokio::test]
async fn two_nodes_on_postgres_share_sessions_and_revocations() {
    let Some(url) = sessionary_testkit::postgres::fresh_schema(
        "two_nodes_on_postgres_share_sessions_and_revocations",
    )
    .await
    else {
        return;
    };
    let env = [
        ("SESSIONARY_STORE__KIND", "postgres"),
        ("SESSIONARY_STORE__URL", url.as_str()),
    ];
    two_nodes_share_sessions_and_revocations("postgres", &env).await;
}

/// `sessionary serve` with `[[oidc.clients]]` in its file: discovery at the
/// configured issuer, a JWKS with the algorithms the clients name, the keys
/// kept (0600) and the same after a restart, and the example file of
/// `examples/sso_client` starts as it is (with another port).
#[tokio::test]
async fn the_oidc_provider_is_served_from_the_config_file_and_keeps_its_keys() {
    let dir = TempDir::new("oidc");
    let config = dir.path().join("sessionary.toml");
    std::fs::write(
        &config,
        "[oidc]\nissuer = \"http://sso.example\"\n\
         [[oidc.clients]]\nid = \"app-a\"\nsecret = \"secret-a\"\n\
         redirect_uris = [\"http://localhost:3001/callback\"]\n\
         [[oidc.clients]]\nid = \"app-r\"\nsecret = \"secret-r\"\nid_token_alg = \"RS256\"\n\
         redirect_uris = [\"http://localhost:3009/callback\"]\n",
    )
    .unwrap();
    let config = config.to_str().unwrap().to_owned();
    let data = dir.path().join("data");
    let server = Server::start_with(&data, &[("SESSIONARY_CONFIG", config.as_str())]);
    wait_healthy(&server.url).await;
    assert!(
        server
            .banner
            .iter()
            .any(|l| l.contains("http://sso.example/.well-known/openid-configuration")),
        "{:?}",
        server.banner
    );
    let doc: Value = reqwest::get(format!("{}/.well-known/openid-configuration", server.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["issuer"], "http://sso.example");
    assert_eq!(doc["token_endpoint"], "http://sso.example/oauth2/token");
    let jwks: Value = reqwest::get(format!("{}/oauth2/jwks", server.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let algs: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["alg"].as_str().unwrap())
        .collect();
    assert_eq!(algs, ["EdDSA", "RS256"]);
    let (status, _) = server.stop();
    assert!(status.success());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(data.join("oidc-keys"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "oidc-keys is owner-only");
    }
    let server = Server::start_with(&data, &[("SESSIONARY_CONFIG", config.as_str())]);
    wait_healthy(&server.url).await;
    let again: Value = reqwest::get(format!("{}/oauth2/jwks", server.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again, jwks, "the same keys after a restart");
    let (status, _) = server.stop();
    assert!(status.success());

    // The example of examples/sso_client, on a free port.
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/sso_client/sessionary.toml"
    );
    let server = Server::start_with(
        &dir.path().join("example"),
        &[("SESSIONARY_CONFIG", example)],
    );
    wait_healthy(&server.url).await;
    let res = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!(
            "{}/oauth2/authorize?client_id=app-b&redirect_uri=http%3A%2F%2Flocalhost%3A3002%2Fcallback\
             &response_type=code&scope=openid&state=s&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM\
             &code_challenge_method=S256",
            server.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let location = res.headers()["location"].to_str().unwrap();
    assert!(location.starts_with("/login?return_to="), "{location}");
    let (status, _) = server.stop();
    assert!(status.success());
}
