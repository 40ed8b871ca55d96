//! A private Redis Cluster of `redis-server` child processes, for the
//! Cluster tests of the Redis store.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::redis_server::{RedisServer, free_port};
use crate::redis_tls::TlsFiles;

/// A Cluster of `masters` primaries (no replicas) on free ports of
/// 127.0.0.1, each node's `nodes.conf` in a temporary directory; the nodes
/// are stopped and the directory removed on drop.
#[derive(Debug)]
pub struct RedisCluster {
    /// The nodes, in the order their ports were taken.
    pub nodes: Vec<RedisServer>,
    /// Each node's Cluster bus port, kept for [`RedisCluster::restart`].
    buses: Vec<u16>,
    dir: PathBuf,
    /// TLS only (nodes, clients and the Cluster bus), for [`RedisCluster::start_tls`].
    tls: Option<Arc<TlsFiles>>,
}

fn cli(tls: Option<&TlsFiles>, port: u16, args: &[&str]) -> std::io::Result<String> {
    let out = Command::new("redis-cli")
        .args(tls.map(TlsFiles::cli_args).unwrap_or_default())
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl RedisCluster {
    /// Starts `masters` (at least 3, as `redis-cli --cluster create` wants)
    /// nodes with `--cluster-enabled yes`, joins them with `redis-cli
    /// --cluster create ... --cluster-replicas 0 --cluster-yes` (slots spread
    /// evenly) and waits (at most 30 s) until every node reports
    /// `cluster_state:ok`. An error if `redis-server` or `redis-cli` is
    /// missing or the Cluster does not form.
    pub fn start(masters: usize) -> std::io::Result<Self> {
        Self::start_with(masters, None)
    }

    /// As [`Self::start`], TLS only: every node listens with the
    /// certificate of `tls` on its TLS port only, the Cluster bus is TLS
    /// too, and [`Self::url`] is `rediss+cluster://...`.
    pub fn start_tls(masters: usize, tls: Arc<TlsFiles>) -> std::io::Result<Self> {
        Self::start_with(masters, Some(tls))
    }

    fn start_with(masters: usize, tls: Option<Arc<TlsFiles>>) -> std::io::Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "sessionary-cluster-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir)?;
        let mut cluster = Self {
            nodes: Vec::new(),
            buses: Vec::new(),
            dir,
            tls,
        };
        for _ in 0..masters {
            // A few tries: a port free when handed out can still be taken
            // (by another test process) before the node binds it.
            let mut tries = 0;
            let node = loop {
                let (port, bus) = (free_port(), free_port());
                match cluster.node(port, bus) {
                    Ok(node) => break (node, bus),
                    Err(e) if tries >= 4 => return Err(e),
                    Err(_) => tries += 1,
                }
            };
            cluster.buses.push(node.1);
            cluster.nodes.push(node.0);
        }
        let mut create = Command::new("redis-cli");
        create.args(
            cluster
                .tls
                .as_deref()
                .map(TlsFiles::cli_args)
                .unwrap_or_default(),
        );
        create.arg("--cluster").arg("create");
        for n in &cluster.nodes {
            create.arg(format!("127.0.0.1:{}", n.port));
        }
        let status = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        if !status.success() {
            return Err(std::io::Error::other(format!(
                "redis-cli --cluster create failed: {status}"
            )));
        }
        cluster.wait_ok()?;
        Ok(cluster)
    }

    /// Starts the node on `port`, with its Cluster bus on `bus`, and its
    /// `nodes.conf` in the Cluster's directory. The bus port is set rather
    /// than left to Redis's `port + 10000`, which could land on a port
    /// [`free_port`] hands to another test, or in the ephemeral range.
    fn node(&self, port: u16, bus: u16) -> std::io::Result<RedisServer> {
        let bus = bus.to_string();
        let conf = format!("nodes-{port}.conf");
        let dir = self.dir.to_string_lossy().into_owned();
        let args = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            &conf,
            "--cluster-port",
            &bus,
            "--cluster-node-timeout",
            "2000",
            "--dir",
            &dir,
        ];
        match &self.tls {
            Some(tls) => RedisServer::start_tls(port, tls, &args),
            None => RedisServer::start(port, &args),
        }
    }

    /// Starts node `i` again (after [`RedisServer::stop`]) on its port with
    /// its `nodes.conf`, so it takes its slots back (empty: no persistence),
    /// and waits (at most 30 s) until every node reports `cluster_state:ok`.
    pub fn restart(&mut self, i: usize) -> std::io::Result<()> {
        let port = self.nodes[i].port;
        self.nodes[i] = self.node(port, self.buses[i])?;
        self.wait_ok()
    }

    fn wait_ok(&self) -> std::io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        for n in &self.nodes {
            while !cli(self.tls.as_deref(), n.port, &["cluster", "info"])?
                .contains("cluster_state:ok")
            {
                if Instant::now() >= deadline {
                    return Err(std::io::Error::other("the Cluster is not ok after 30 s"));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// `redis+cluster://127.0.0.1:p1,127.0.0.1:p2,...`: every node as a seed.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}+cluster://{}", seeds.join(","))
    }

    /// `redis://127.0.0.1:port` (`rediss://` with TLS) of each node.
    pub fn node_urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// Node `i`'s Cluster node id (`CLUSTER MYID`).
    pub fn node_id(&self, i: usize) -> std::io::Result<String> {
        let id = cli(
            self.tls.as_deref(),
            self.nodes[i].port,
            &["cluster", "myid"],
        )?
        .trim()
        .to_owned();
        if id.len() == 40 {
            Ok(id)
        } else {
            Err(std::io::Error::other(format!(
                "CLUSTER MYID of node {i}: {id:?}"
            )))
        }
    }

    /// How many slots node `i` serves, as node `i` itself sees it.
    pub fn slot_count(&self, i: usize) -> std::io::Result<usize> {
        let map = slot_map(&cli(
            self.tls.as_deref(),
            self.nodes[i].port,
            &["cluster", "nodes"],
        )?);
        let id = self.node_id(i)?;
        Ok(map
            .iter()
            .filter(|(_, owner)| *owner == id)
            .map(|(r, _)| usize::from(r.1 - r.0) + 1)
            .sum())
    }

    /// Moves `count` slots from node `from` to node `to` with `redis-cli
    /// --cluster reshard` (keys included, `MIGRATE` in batches, while the
    /// Cluster keeps serving), then waits (at most 30 s) until every node
    /// reports `cluster_state:ok`, no slot is left migrating or importing,
    /// and every node has the same slot map. Blocking: call it from
    /// `spawn_blocking` or `block_in_place` in async tests.
    pub fn move_slots(&self, from: usize, to: usize, count: usize) -> std::io::Result<()> {
        let (src, dst) = (self.node_id(from)?, self.node_id(to)?);
        let out = Command::new("redis-cli")
            .args(
                self.tls
                    .as_deref()
                    .map(TlsFiles::cli_args)
                    .unwrap_or_default(),
            )
            .args(["--cluster", "reshard"])
            .arg(format!("127.0.0.1:{}", self.nodes[from].port))
            .args(["--cluster-from", &src, "--cluster-to", &dst])
            .args(["--cluster-slots", &count.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        // redis-cli exits with 0 after some failures too: its `[ERR]` lines count.
        if !out.status.success() || text.contains("[ERR]") {
            return Err(std::io::Error::other(format!(
                "redis-cli --cluster reshard failed ({}): {}{}",
                out.status,
                text.lines()
                    .filter(|l| l.contains("ERR") || l.contains("***"))
                    .collect::<Vec<_>>()
                    .join("; "),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        self.wait_agreed()
    }

    /// Waits (at most 30 s) until every node reports `cluster_state:ok`, no
    /// slot is migrating or importing, and all nodes see the same slot map.
    pub fn wait_agreed(&self) -> std::io::Result<()> {
        self.wait_ok()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut maps = Vec::new();
            let mut open = false;
            for n in &self.nodes {
                let text = cli(self.tls.as_deref(), n.port, &["cluster", "nodes"])?;
                open |= text.contains('[');
                maps.push(slot_map(&text));
            }
            let full = maps[0]
                .iter()
                .map(|(r, _)| usize::from(r.1 - r.0) + 1)
                .sum::<usize>();
            if !open && full == 16384 && maps.iter().all(|m| *m == maps[0]) {
                return self.wait_ok();
            }
            if Instant::now() >= deadline {
                return Err(std::io::Error::other(
                    "the nodes do not agree on the slot map after 30 s",
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `CLUSTER NODES` → the served slot ranges, sorted, each with its owner's
/// node id (migration markers `[slot->-id]` / `[slot-<-id]` are left out).
fn slot_map(nodes: &str) -> Vec<((u16, u16), String)> {
    let mut out = Vec::new();
    for line in nodes.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let Some(id) = f.first() else { continue };
        for r in f.iter().skip(8).filter(|r| !r.starts_with('[')) {
            let (a, b) = r.split_once('-').unwrap_or((r, r));
            if let (Ok(a), Ok(b)) = (a.parse(), b.parse()) {
                out.push(((a, b), (*id).to_owned()));
            }
        }
    }
    out.sort();
    out
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
