//! Shared by the Redis integration tests: the server URL and skipping.

use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `SESSIONARY_TEST_REDIS_URL`, else the local default.
// Each test binary includes this module; the reconnect test runs its own server.
#[allow(dead_code)]
pub(crate) fn url() -> String {
    std::env::var("SESSIONARY_TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned())
}

/// Reports that a test cannot run here: a failure with `CI=true` (the suite
/// must not pass without its Redis tests), else a note on stderr.
pub(crate) fn skip(test: &str, why: &str) {
    let why = format!(
        "Redis test {test}: {why} (start redis-server, as scripts/test does, or set SESSIONARY_TEST_REDIS_URL)"
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{why}; CI=true, so this is a failure");
    }
    // Straight to stderr, past the harness's capture, so the skip shows in a passing run.
    let _ = writeln!(std::io::stderr(), "SKIPPED {why}");
}

/// A `redis-server` child process, stopped on drop (also when a check panics).
#[allow(dead_code)] // Only the tests that run their own server use it.
pub(crate) struct Server {
    pub(crate) port: u16,
    child: Option<Child>,
}

#[allow(dead_code)]
impl Server {
    pub(crate) fn start(port: u16) -> std::io::Result<Self> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let server = Self {
            port,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

#[allow(dead_code)]
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
