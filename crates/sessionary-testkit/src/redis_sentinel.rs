//! A private Redis Sentinel deployment for failover tests: one primary, two
//! replicas and three sentinels, each a `redis-server` child process on a
//! free port, all stopped on drop.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::redis_server::{RedisServer, free_port};
use crate::redis_tls::TlsFiles;

/// The name the sentinels monitor the primary under.
pub const MASTER: &str = "m";

/// `down-after-milliseconds`: how long the primary must be silent before a
/// sentinel thinks it down.
pub const DOWN_AFTER: Duration = Duration::from_millis(1000);

/// `failover-timeout` of the sentinels.
pub const FAILOVER_TIMEOUT: Duration = Duration::from_millis(3000);

/// One primary, two replicas, three sentinels (quorum 2), all on
/// `127.0.0.1`, with the sentinels' configuration files in a temporary
/// directory removed on drop.
#[derive(Debug)]
pub struct SentinelSet {
    /// The data nodes; the first one starts as the primary.
    pub nodes: Vec<RedisServer>,
    /// The sentinels' ports.
    pub sentinel_ports: Vec<u16>,
    sentinels: Vec<Child>,
    dir: PathBuf,
    /// TLS only (data nodes, replication, sentinels), for [`SentinelSet::start_tls`].
    tls: Option<Arc<TlsFiles>>,
}

/// A short synchronous connection to `127.0.0.1:port` (TLS with `tls`).
fn connect(tls: Option<&TlsFiles>, port: u16) -> redis::RedisResult<redis::Connection> {
    let client = match tls {
        Some(tls) => tls.client(port)?,
        None => redis::Client::open(format!("redis://127.0.0.1:{port}"))?,
    };
    let con = client.get_connection_with_timeout(Duration::from_secs(1))?;
    con.set_read_timeout(Some(Duration::from_secs(2)))?;
    con.set_write_timeout(Some(Duration::from_secs(2)))?;
    Ok(con)
}

/// Runs `cmd` on `127.0.0.1:port`.
pub fn query<T: redis::FromRedisValue>(port: u16, cmd: &redis::Cmd) -> redis::RedisResult<T> {
    cmd.query(&mut connect(None, port)?)
}

fn query_with<T: redis::FromRedisValue>(
    tls: Option<&TlsFiles>,
    port: u16,
    cmd: &redis::Cmd,
) -> redis::RedisResult<T> {
    cmd.query(&mut connect(tls, port)?)
}

fn role(tls: Option<&TlsFiles>, port: u16) -> Option<String> {
    let v: Vec<redis::Value> = query_with(tls, port, &redis::cmd("ROLE")).ok()?;
    match v.first()? {
        redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}

fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) -> std::io::Result<()> {
    let deadline = Instant::now() + limit;
    while !ok() {
        if Instant::now() >= deadline {
            return Err(std::io::Error::other(format!(
                "{what}: not within {limit:?}"
            )));
        }
        // Waiting for real external processes.
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

impl SentinelSet {
    /// Starts the six processes and waits (at most 30 s) until the replicas
    /// are in sync and every sentinel knows both replicas and the two other
    /// sentinels, so that a failover can happen. An error if `redis-server`
    /// cannot be run or the set does not come up.
    pub fn start() -> std::io::Result<Self> {
        Self::start_with(None)
    }

    /// As [`Self::start`], TLS only: the data nodes and the sentinels listen
    /// with the certificate of `tls` on their TLS ports only, replication
    /// and the sentinels' connections are TLS too, and [`Self::url`] is
    /// `rediss+sentinel://...`.
    pub fn start_tls(tls: Arc<TlsFiles>) -> std::io::Result<Self> {
        Self::start_with(Some(tls))
    }

    /// Runs `cmd` on `127.0.0.1:port` (over TLS for a set of [`Self::start_tls`]).
    pub fn query<T: redis::FromRedisValue>(
        &self,
        port: u16,
        cmd: &redis::Cmd,
    ) -> redis::RedisResult<T> {
        query_with(self.tls.as_deref(), port, cmd)
    }

    fn node(&self, port: u16, args: &[&str]) -> std::io::Result<RedisServer> {
        match &self.tls {
            Some(tls) => RedisServer::start_tls(port, tls, args),
            None => RedisServer::start(port, args),
        }
    }

    fn start_with(tls: Option<Arc<TlsFiles>>) -> std::io::Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "sessionary-sentinel-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir)?;
        let mut set = Self {
            nodes: Vec::new(),
            sentinel_ports: Vec::new(),
            sentinels: Vec::new(),
            dir,
            tls,
        };
        // A replica writes the primary's snapshot to its directory on sync.
        let data_dir = set.dir.display().to_string();
        let primary = set.node(free_port(), &["--dir", data_dir.as_str()])?;
        let primary_port = primary.port.to_string();
        set.nodes.push(primary);
        for i in 0..2 {
            let replica = set.node(
                free_port(),
                &[
                    "--replicaof",
                    "127.0.0.1",
                    primary_port.as_str(),
                    "--repl-diskless-sync",
                    "yes",
                    "--repl-diskless-sync-delay",
                    "0",
                    "--dir",
                    data_dir.as_str(),
                    "--dbfilename",
                    &format!("replica-{i}.rdb"),
                ],
            )?;
            set.nodes.push(replica);
        }
        for i in 0..3 {
            let port = free_port();
            let conf = set.dir.join(format!("sentinel-{i}.conf"));
            let listen = match &set.tls {
                Some(tls) => tls.config_lines(port),
                None => format!("port {port}\n"),
            };
            std::fs::write(
                &conf,
                format!(
                    "{listen}bind 127.0.0.1\ndir {dir}\n\
                     sentinel monitor {MASTER} 127.0.0.1 {primary_port} 2\n\
                     sentinel down-after-milliseconds {MASTER} {down}\n\
                     sentinel failover-timeout {MASTER} {failover}\n\
                     sentinel parallel-syncs {MASTER} 2\n",
                    dir = set.dir.display(),
                    down = DOWN_AFTER.as_millis(),
                    failover = FAILOVER_TIMEOUT.as_millis(),
                ),
            )?;
            let child = Command::new("redis-server")
                .arg(&conf)
                .arg("--sentinel")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            set.sentinels.push(child);
            set.sentinel_ports.push(port);
        }
        set.wait_ready(Duration::from_secs(30))?;
        Ok(set)
    }

    /// `redis+sentinel://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3/m`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinel_ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}+sentinel://{}/{MASTER}", hosts.join(","))
    }

    /// The port of the primary according to sentinel `i`.
    pub fn primary_by(&self, i: usize) -> Option<u16> {
        let mut cmd = redis::cmd("SENTINEL");
        cmd.arg("GET-MASTER-ADDR-BY-NAME").arg(MASTER);
        let (_, port): (String, u16) = self.query(self.sentinel_ports[i], &cmd).ok()?;
        Some(port)
    }

    /// The port of the primary if all three sentinels agree on it and it
    /// says it is a primary.
    pub fn agreed_primary(&self) -> Option<u16> {
        let first = self.primary_by(0)?;
        let agree = (1..3).all(|i| self.primary_by(i) == Some(first));
        let tls = self.tls.as_deref();
        (agree && role(tls, first).as_deref() == Some("master")).then_some(first)
    }

    /// Waits until the deployment is usable and a failover can happen: the
    /// sentinels agree on a primary, which has both live replicas in sync
    /// (`connected_slaves`, `ROLE`), and each sentinel sees the replicas and
    /// the other sentinels.
    pub fn wait_ready(&self, limit: Duration) -> std::io::Result<()> {
        wait_until("the Sentinel set to be ready", limit, || {
            let Some(primary) = self.agreed_primary() else {
                return false;
            };
            let replicas: Vec<u16> = self
                .nodes
                .iter()
                .map(|n| n.port)
                .filter(|p| *p != primary && role(self.tls.as_deref(), *p).is_some())
                .collect();
            let synced = replicas.iter().all(|p| {
                let info: String = self
                    .query(*p, redis::cmd("INFO").arg("replication"))
                    .unwrap_or_default();
                info.contains("master_link_status:up")
                    && info.contains(&format!("master_port:{primary}"))
            });
            synced
                && (0..3).all(|i| {
                    let port = self.sentinel_ports[i];
                    let seen = |what: &str| -> Vec<HashMap<String, String>> {
                        self.query(port, redis::cmd("SENTINEL").arg(what).arg(MASTER))
                            .unwrap_or_default()
                    };
                    let healthy = |n: &HashMap<String, String>| {
                        n.get("flags")
                            .is_some_and(|f| !f.contains("down") && !f.contains("disconnected"))
                    };
                    seen("REPLICAS").iter().filter(|r| healthy(r)).count() >= replicas.len()
                        && seen("SENTINELS").iter().filter(|s| healthy(s)).count() >= 2
                })
        })
    }

    /// Asks sentinel 0 for a failover (`SENTINEL FAILOVER m`) and returns
    /// the port of the primary it replaces. Does not wait.
    pub fn failover(&self) -> std::io::Result<u16> {
        let old = self
            .agreed_primary()
            .ok_or_else(|| std::io::Error::other("the sentinels do not agree on a primary"))?;
        self.query::<()>(
            self.sentinel_ports[0],
            redis::cmd("SENTINEL").arg("FAILOVER").arg(MASTER),
        )
        .map_err(std::io::Error::other)?;
        Ok(old)
    }

    /// Kills the current primary with SIGKILL (no shutdown work) and returns
    /// its port. Does not wait for the failover.
    pub fn kill_primary(&mut self) -> std::io::Result<u16> {
        let old = self
            .agreed_primary()
            .ok_or_else(|| std::io::Error::other("the sentinels do not agree on a primary"))?;
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == old)
            .ok_or_else(|| std::io::Error::other("the primary is not one of the nodes"))?;
        node.stop();
        Ok(old)
    }

    /// Starts the stopped node on `port` again, as a replica of `primary`
    /// (as an operator brings a crashed node back), and waits until it
    /// accepts connections.
    pub fn restart_as_replica(&mut self, port: u16, primary: u16) -> std::io::Result<()> {
        let data_dir = self.dir.display().to_string();
        let node = self.node(
            port,
            &[
                "--replicaof",
                "127.0.0.1",
                &primary.to_string(),
                "--dir",
                data_dir.as_str(),
                "--dbfilename",
                &format!("restarted-{port}.rdb"),
            ],
        )?;
        match self.nodes.iter_mut().find(|n| n.port == port) {
            Some(slot) => *slot = node,
            None => self.nodes.push(node),
        }
        Ok(())
    }

    /// Waits until all three sentinels have named the same primary (which
    /// says it is one) for a second, as after a failover that may be
    /// followed by another; returns its port.
    pub fn settled_primary(&self, limit: Duration) -> std::io::Result<u16> {
        let (mut last, mut same) = (None, 0);
        wait_until("the sentinels to settle on a primary", limit, || {
            let now = self.agreed_primary();
            same = if now.is_some() && now == last {
                same + 1
            } else {
                0
            };
            last = now;
            same >= 20 // polls 50 ms apart
        })?;
        last.ok_or_else(|| std::io::Error::other("no primary"))
    }

    /// Waits until all three sentinels name the same primary, other than
    /// `old`, and it says it is a primary; returns its port.
    pub fn wait_new_primary(&self, old: u16, limit: Duration) -> std::io::Result<u16> {
        let mut new = None;
        wait_until("the sentinels to agree on a new primary", limit, || {
            new = self.agreed_primary().filter(|p| *p != old);
            new.is_some()
        })?;
        new.ok_or_else(|| std::io::Error::other("no new primary"))
    }
}

impl Drop for SentinelSet {
    fn drop(&mut self) {
        for mut child in self.sentinels.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
        for node in &mut self.nodes {
            node.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
