//! Redis Cluster: the connection, the primaries (for `SCAN`) and the route
//! cache.
//!
//! On Cluster the route keys (`t:<hash>`, `i:<id>`, `rf:<hash>`, `sf:<id>`)
//! hash to other slots than the owner's keys, so the store reads a route
//! first and then runs the owner's script on the owner's slot. A route never
//! changes once written (a token hash always names the same session, a
//! session id the same owner), so routes are cached in process: in the
//! steady state a verification is one `EVALSHA` again.

use std::sync::Arc;
use std::time::Duration;

use quick_cache::sync::Cache;
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{RedisError, RedisResult, Value};

use crate::Error;
use crate::tls::TlsConfig;

/// Connects to the Cluster through `seeds` (`redis://[user:password@]host:port`
/// each, `rediss://` for TLS to every node with `tls`' certificates). Retries
/// are few and short: an operation must fail with `Unavailable` within the
/// store's timeout rather than wait for a failover.
pub(crate) async fn connect(
    seeds: Vec<String>,
    timeout: Duration,
    tls: &TlsConfig,
) -> Result<ClusterConnection, Error> {
    let secure = crate::tls::any_tls(&seeds);
    let mut builder = ClusterClientBuilder::new(seeds)
        .connection_timeout(timeout)
        .response_timeout(timeout)
        .retries(2)
        .min_retry_wait(10)
        .max_retry_wait(200);
    if secure {
        crate::tls::install_crypto_provider();
        if let Some(certs) = tls.certificates() {
            builder = builder.certs(certs);
        }
    }
    let client = builder.build().map_err(Error::Url)?;
    tokio::time::timeout(timeout, client.get_async_connection())
        .await
        .map_err(|_| {
            Error::Connect(RedisError::from((
                redis::ErrorKind::IoError,
                "connection timed out",
            )))
        })?
        .map_err(Error::Connect)
}

/// A node's address.
pub(crate) type Node = (String, u16);

/// The primaries serving slots, sorted (so successive sweeps walk them in the
/// same order), from `CLUSTER NODES` asked of any node.
pub(crate) async fn primaries(con: &mut ClusterConnection) -> RedisResult<Vec<Node>> {
    let v = con
        .route_command(
            redis::cmd("CLUSTER").arg("NODES"),
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
        )
        .await?;
    let text: String = redis::from_redis_value(&v)?;
    let mut out: Vec<Node> = text.lines().filter_map(primary).collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// `<id> <ip:port@cport[,hostname]> <flags> <primary> <ping> <pong> <epoch> <state> <slots...>`:
/// the address of a connected primary with slots.
fn primary(line: &str) -> Option<Node> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let flags = f.get(2)?;
    let serves = flags.split(',').any(|x| x == "master")
        && !flags.split(',').any(|x| x == "fail" || x == "noaddr")
        && f.get(7) == Some(&"connected")
        && f.len() > 8;
    if !serves {
        return None;
    }
    let addr = f.get(1)?.split(['@', ',']).next()?;
    let (host, port) = addr.rsplit_once(':')?;
    let port = port.parse().ok()?;
    (!host.is_empty() && port != 0).then(|| (host.to_owned(), port))
}

/// `SCAN cursor MATCH pattern COUNT 1000` on one primary.
pub(crate) async fn scan(
    con: &mut ClusterConnection,
    node: &Node,
    cursor: u64,
    pattern: &str,
) -> RedisResult<(u64, Vec<Vec<u8>>)> {
    let mut cmd = redis::cmd("SCAN");
    cmd.arg(cursor)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg(1000);
    let v: Value = con
        .route_command(
            &cmd,
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                host: node.0.clone(),
                port: node.1,
            }),
        )
        .await?;
    redis::from_redis_value(&v)
}

/// Route key (`t:<hash>`, `i:<id>`, ...) → its value (`<tag> <name>` or
/// `<tag>`), bounded.
pub(crate) struct Routes {
    cache: Cache<String, Arc<str>>,
}

impl Routes {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            cache: Cache::new(capacity.max(1)),
        }
    }

    pub(crate) fn get(&self, name: &str) -> Option<Arc<str>> {
        self.cache.get(name)
    }

    pub(crate) fn put(&self, name: String, value: &str) {
        self.cache.insert(name, Arc::from(value));
    }

    pub(crate) fn forget(&self, name: &str) {
        self.cache.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primaries_from_cluster_nodes() {
        let text = "\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7001@17001,node-b master - 0 0 2 connected 5461-10922
c3 127.0.0.1:7002@17002 slave b2 0 0 2 connected
d4 127.0.0.1:7003@17003 master,fail - 0 0 3 disconnected 10923-16383
e5 :0@0 master,noaddr - 0 0 4 connected
f6 127.0.0.1:7004@17004 master - 0 0 5 connected";
        let got: Vec<Node> = text.lines().filter_map(primary).collect();
        assert_eq!(
            got,
            vec![("127.0.0.1".into(), 7000), ("127.0.0.1".into(), 7001)]
        );
    }
}
