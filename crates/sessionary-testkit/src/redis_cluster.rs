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
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
