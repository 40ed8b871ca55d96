//! A private `redis-server` child process for tests that stop and restart
//! their Redis (reconnection, faults, persistence, replication).

use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` child process on `127.0.0.1:port`, stopped on drop (also
/// when a check panics). No persistence unless `extra_args` ask for it
/// (later arguments win, so `["--appendonly", "yes"]` turns AOF on).
#[derive(Debug)]
pub struct RedisServer {
    /// The port it listens on.
    pub port: u16,
    child: Option<Child>,
    tls: bool,
}

impl RedisServer {
    /// Starts `redis-server --port port` plus `extra_args` and waits (at most
    /// 10 s) until it accepts connections. An error if it cannot be spawned
    /// (not installed) or does not come up.
    pub fn start(port: u16, extra_args: &[&str]) -> std::io::Result<Self> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let mut server = Self {
            port,
            child: Some(child),
            tls: false,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(Ok(Some(status))) = server.child.as_mut().map(Child::try_wait) {
                server.child = None;
                return Err(std::io::Error::other(format!(
                    "redis-server exited: {status}"
                )));
            }
            if Instant::now() >= deadline {
                server.stop();
                return Err(std::io::Error::other("redis-server did not start in 10 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    /// As [`Self::start`], TLS only: `port` is the TLS port (`--port 0
    /// --tls-port port`) with the certificate of `tls` (see
    /// [`TlsFiles::server_args`](crate::redis_tls::TlsFiles::server_args)),
    /// which must outlive the server.
    pub fn start_tls(
        port: u16,
        tls: &crate::redis_tls::TlsFiles,
        extra_args: &[&str],
    ) -> std::io::Result<Self> {
        let mut args = tls.server_args(port);
        args.extend(extra_args.iter().map(|a| (*a).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut server = Self::start(port, &args)?;
        server.tls = true;
        Ok(server)
    }

    /// `redis://127.0.0.1:port` (`rediss://` for a server of
    /// [`Self::start_tls`]).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Stops the server with SIGKILL (no shutdown work: a crash) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server with SIGTERM (a clean shutdown: Redis flushes its
    /// AOF) and waits for it to exit, at most 10 s, then kills it.
    pub fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A free TCP port on 127.0.0.1 (free when asked; a test binds it soon after).
///
/// Ports come from 20000-32767, below Linux's ephemeral range (32768-60999):
/// a port the kernel picked for `:0` could meanwhile be taken by an outgoing
/// connection (a replica or sentinel dialing out) before the server meant to
/// listen on it starts, and two threads asking at once could get the same
/// one. Here each port is handed out once per process, starting at an offset
/// of the process id so that concurrent test processes rarely meet.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_768;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(97) % SPAN,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed) % SPAN;
        #[allow(clippy::cast_possible_truncation)] // FIRST + n < 32768
        let port = (FIRST + n) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Reports that a Redis test cannot run here: a panic when `CI=true` (the
/// suite must not pass without its Redis tests), else `SKIPPED ...` on stderr.
pub fn skip(test: &str, why: &str) {
    let why = format!("Redis test {test}: {why} (install redis-server)");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{why}; CI=true, so this is a failure");
    }
    let _ = writeln!(std::io::stderr(), "SKIPPED {why}");
}
