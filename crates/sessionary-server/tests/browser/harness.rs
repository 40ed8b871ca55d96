//! Chromium driven through chromedriver: processes, devices, waiting, screenshots.
//!
//! One [`Driver`] per test: a `chromedriver` on a free loopback port and a
//! temporary directory holding one Chromium profile (`--user-data-dir`) per
//! [`Device`], so every device has its own cookie jar. Dropping the `Driver`
//! (also when the test panics) kills chromedriver and every Chromium process
//! started with one of its profiles, found by their command line, then deletes
//! the profiles.
//!
//! Tests run one at a time ([`Driver::start`] takes a global lock): two
//! Chromiums starting at once on two loaded cores made timings unreliable.

use std::future::Future;
use std::io::{ErrorKind, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use fantoccini::cookies::Cookie;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tokio::sync::{Mutex, MutexGuard};

/// The Chromium the tests drive (Debian package `chromium`).
pub(crate) const CHROMIUM: &str = "/usr/bin/chromium";
/// Its WebDriver server (Debian package `chromium-driver`).
pub(crate) const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How often a condition is polled.
pub(crate) const POLL: Duration = Duration::from_millis(25);
/// How long a condition may take by default.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(5);

/// Serialises the browser tests of this binary.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// Distinguishes the temporary directories of one test process.
static NEXT_DIR: AtomicU32 = AtomicU32::new(0);

/// Whether the browser tests can run here. When Chromium or chromedriver is
/// missing: with `CI=true` this panics (the suite must not pass without its
/// browser tests); otherwise it says why and the test returns early.
pub(crate) fn browser_available(test: &str) -> bool {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!(
        "browser test {test}: {} missing (install the Debian packages `chromium` and \
         `chromium-driver`, as scripts/test does)",
        missing.join(" and ")
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{why}; CI=true, so this is a failure");
    }
    // Straight to stderr, past the test harness's output capture, so the skip
    // shows in a passing run.
    let _ = writeln!(std::io::stderr(), "SKIPPED {why}");
    false
}

/// The workspace's target directory: `CARGO_TARGET_DIR` if set, else `<workspace>/target`.
pub(crate) fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
    }
}

/// A chromedriver process and the profiles of the devices it started.
pub(crate) struct Driver {
    test: &'static str,
    url: String,
    child: Child,
    profiles: PathBuf,
    screenshots: PathBuf,
    /// Released last, after every process of this test is gone.
    _turn: MutexGuard<'static, ()>,
}

impl Driver {
    /// Waits for the previous browser test to finish, then starts chromedriver.
    pub(crate) async fn start(test: &'static str) -> Self {
        let turn = ONE_AT_A_TIME.lock().await;
        let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
        let profiles = std::env::temp_dir().join(format!(
            "sessionary-browser-{}-{n}-{test}",
            std::process::id()
        ));
        std::fs::create_dir_all(&profiles).expect("create the profiles directory");
        let screenshots = target_dir().join("browser-screenshots");
        std::fs::create_dir_all(&screenshots).expect("create target/browser-screenshots");

        // A free port: bound by us, released, handed to chromedriver. Another
        // process could take it meanwhile; then chromedriver exits and we retry.
        for _attempt in 0..5 {
            let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .and_then(|l| l.local_addr())
                .expect("find a free port")
                .port();
            let mut child = Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .arg("--allowed-ips=127.0.0.1")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start chromedriver");
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let started = Instant::now();
            loop {
                if TcpStream::connect(addr).is_ok() {
                    return Self {
                        test,
                        url: format!("http://{addr}"),
                        child,
                        profiles,
                        screenshots,
                        _turn: turn,
                    };
                }
                if child.try_wait().ok().flatten().is_some() || started.elapsed() > TIMEOUT {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                tokio::time::sleep(POLL).await;
            }
        }
        panic!("chromedriver did not start (5 attempts)");
    }

    /// A new browser with its own fresh profile (cookie jar) called `name`.
    pub(crate) async fn device(&self, name: &str) -> Device {
        let profile = self.profiles.join(name);
        assert!(!profile.exists(), "device {name} exists already");
        std::fs::create_dir_all(&profile).expect("create the profile directory");
        let client = self.connect(&profile).await;
        Device {
            name: format!("{}-{name}", self.test),
            client: Some(client),
            profile,
            screenshots: self.screenshots.clone(),
        }
    }

    /// Ends `device`'s WebDriver session (Chromium shuts down cleanly and writes
    /// its cookie store) and starts a new browser on the same profile.
    pub(crate) async fn restart(&self, device: &mut Device) {
        let client = device.client.take().expect("device is open");
        client.close().await.expect("end the WebDriver session");
        // Chromium holds a lock on its profile until it has exited.
        until(&format!("{}: Chromium exits", device.name), TIMEOUT, || {
            let gone = processes_using(&device.profile).is_empty();
            async move { gone.then_some(()) }
        })
        .await;
        device.client = Some(self.connect(&device.profile).await);
    }

    async fn connect(&self, profile: &Path) -> Client {
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-dev-shm-usage",
                    format!("--user-data-dir={}", profile.display()),
                    "--window-size=1200,900",
                    "--no-first-run",
                    "--no-default-browser-check",
                    // A fixed cookie encryption key: the same jar after a restart,
                    // and no desktop keyring asked.
                    "--password-store=basic",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                ],
            },
        });
        let Value::Object(caps) = caps else {
            unreachable!()
        };
        let mut last = None;
        // Chromium occasionally fails its first start on a loaded machine.
        for _attempt in 0..3 {
            match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&self.url)
                .await
            {
                Ok(client) => return client,
                Err(e) => last = Some(e),
            }
        }
        panic!("start Chromium through chromedriver: {last:?}");
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Chromium first (chromedriver may not get to it when we kill it), then
        // chromedriver, then Chromium again (in case chromedriver started one meanwhile).
        kill_all(&processes_using(&self.profiles));
        let _ = self.child.kill();
        let _ = self.child.wait();
        let started = Instant::now();
        loop {
            let left = processes_using(&self.profiles);
            if left.is_empty() {
                break;
            }
            if started.elapsed() > TIMEOUT {
                eprintln!("{}: Chromium processes {left:?} would not die", self.test);
                break;
            }
            kill_all(&left);
            std::thread::sleep(POLL);
        }
        if let Err(e) = std::fs::remove_dir_all(&self.profiles) {
            if e.kind() != ErrorKind::NotFound {
                eprintln!("{}: remove {}: {e}", self.test, self.profiles.display());
            }
        }
    }
}

/// The ids of the processes whose command line mentions `dir` (Chromium and its
/// helpers all carry `--user-data-dir=<dir>`).
fn processes_using(dir: &Path) -> Vec<u32> {
    let needle = dir.to_string_lossy().into_owned();
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
        })
        .collect()
}

/// `kill -KILL` each process by id (the workspace forbids `unsafe`, so no libc).
fn kill_all(pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg("-KILL")
        .args(pids.iter().map(u32::to_string))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Polls `probe` every [`POLL`] until it gives a value; panics after `timeout`.
pub(crate) async fn until<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// One browser (one profile, one cookie jar).
pub(crate) struct Device {
    name: String,
    client: Option<Client>,
    profile: PathBuf,
    screenshots: PathBuf,
}

impl Device {
    /// The WebDriver client.
    pub(crate) fn client(&self) -> &Client {
        self.client.as_ref().expect("device is open")
    }

    /// Opens `url` and waits for its document to load.
    pub(crate) async fn goto(&self, url: &str) {
        self.client()
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("{}: open {url}: {e}", self.name));
    }

    /// Runs `script` (a function body: `return ...`) in the page.
    pub(crate) async fn js(&self, script: &str) -> Value {
        self.client()
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("{}: script {script:?}: {e}", self.name))
    }

    /// Runs `script` with `arguments[0..]`.
    pub(crate) async fn js_with(&self, script: &str, args: Vec<Value>) -> Value {
        self.client()
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("{}: script {script:?}: {e}", self.name))
    }

    /// Polls the JavaScript expression `expr` until it is truthy and returns its
    /// value; panics after `timeout` with the last value, the URL and a screenshot.
    /// Script errors (a page being replaced) count as "not yet".
    pub(crate) async fn wait_js_for(&self, expr: &str, timeout: Duration) -> Value {
        let script = format!("return ({expr});");
        let started = Instant::now();
        loop {
            let last = self.client().execute(&script, Vec::new()).await;
            if let Ok(v) = &last {
                if truthy(v) {
                    return v.clone();
                }
            }
            if started.elapsed() >= timeout {
                let url = self.url().await;
                self.screenshot("timeout").await;
                panic!(
                    "{}: timed out after {timeout:?} waiting for `{expr}`; last value {last:?}; at {url}",
                    self.name
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// [`Self::wait_js_for`] with the default timeout.
    pub(crate) async fn wait_js(&self, expr: &str) -> Value {
        self.wait_js_for(expr, TIMEOUT).await
    }

    /// Waits for an element matching `css` and returns its trimmed text.
    pub(crate) async fn text(&self, css: &str) -> String {
        let expr = format!("document.querySelector({css:?})");
        self.wait_js(&expr).await;
        let v = self
            .js_with(
                "return arguments[0] && document.querySelector(arguments[0]).textContent.trim();",
                vec![json!(css)],
            )
            .await;
        v.as_str().unwrap_or_default().to_owned()
    }

    /// Waits for an element matching `css` and clicks it.
    pub(crate) async fn click(&self, css: &str) {
        let expr = format!("document.querySelector({css:?})");
        self.wait_js(&expr).await;
        self.client()
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{}: find {css}: {e}", self.name))
            .click()
            .await
            .unwrap_or_else(|e| panic!("{}: click {css}: {e}", self.name));
    }

    /// Types `text` into the field `css` (cleared first).
    pub(crate) async fn fill(&self, css: &str, text: &str) {
        let expr = format!("document.querySelector({css:?})");
        self.wait_js(&expr).await;
        let field = self
            .client()
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{}: find {css}: {e}", self.name));
        field.clear().await.expect("clear field");
        field
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("{}: type into {css}: {e}", self.name));
    }

    /// The page's URL.
    pub(crate) async fn url(&self) -> String {
        self.client()
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_else(|e| format!("<no url: {e}>"))
    }

    /// The cookie `name`, if the browser holds one for the current page.
    pub(crate) async fn cookie(&self, name: &str) -> Option<Cookie<'static>> {
        let all = self
            .client()
            .get_all_cookies()
            .await
            .unwrap_or_else(|e| panic!("{}: read cookies: {e}", self.name));
        all.into_iter().find(|c| c.name() == name)
    }

    /// The HTTP status of the current document (Navigation Timing).
    pub(crate) async fn page_status(&self) -> u64 {
        self.js("return performance.getEntriesByType('navigation')[0].responseStatus;")
            .await
            .as_u64()
            .unwrap_or_else(|| panic!("{}: no navigation status", self.name))
    }

    /// Saves a PNG of the viewport as `target/browser-screenshots/<test>-<device>-<what>.png`.
    pub(crate) async fn screenshot(&self, what: &str) {
        match self.client().screenshot().await {
            Ok(png) => {
                let path = self.screenshots.join(format!("{}-{what}.png", self.name));
                if let Err(e) = std::fs::write(&path, png) {
                    eprintln!("{}: save {}: {e}", self.name, path.display());
                }
            }
            Err(e) => eprintln!("{}: screenshot {what}: {e}", self.name),
        }
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}
