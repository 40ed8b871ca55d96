//! Sentinel mode: one multiplexed connection to the primary the sentinels
//! name, replaced after a failover.
//!
//! - The primary is found with redis-rs' [`Sentinel`] (`SENTINEL MASTERS` on
//!   the first sentinel that answers; a master flagged down is skipped) and
//!   its role is checked with `ROLE` on the very connection that will carry
//!   the commands, so a demoted primary is never used.
//! - The connection is dropped (and the next command finds the primary again)
//!   when a command fails with a connection error, `READONLY` (the node was
//!   demoted) or `MASTERDOWN`, and when a sentinel announces `+switch-master`
//!   for this master (a background task listens on the sentinels).
//! - One caller reconnects at a time (an async mutex); the others wait for it
//!   and use its connection instead of asking the sentinels again. Each
//!   attempt is bounded by the store's timeout.
//! - `READONLY` and `MASTERDOWN` are refusals (nothing was written), so such a
//!   command is sent once more to the new primary; a command whose connection
//!   broke is not (it may have run) and fails with `Unavailable`.
//! - Every new connection bumps an epoch: a write and the `WAIT` after it only
//!   count as acknowledged if both went over the same connection.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt as _;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{AsyncConnectionConfig, Client, Cmd, ErrorKind, Pipeline, RedisError, RedisFuture};
use redis::{IntoConnectionInfo as _, RedisResult, Role, TlsMode, Value};
use tokio::sync::watch;

use crate::tls::TlsConfig;

/// The pub/sub channel on which sentinels announce a new primary.
const SWITCH_MASTER: &str = "+switch-master";

/// How long subscribing to `+switch-master` on one sentinel may take.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Pause between two attempts to find the primary, and between two
/// subscriptions to the sentinels.
const RETRY: Duration = Duration::from_millis(50);

/// A cheap-to-clone handle on the primary of a Sentinel-managed deployment.
#[derive(Clone)]
pub(crate) struct SentinelCon {
    shared: Arc<Shared>,
}

struct Shared {
    master: String,
    db: i64,
    timeout: Duration,
    config: AsyncConnectionConfig,
    /// Held while finding the primary: one reconnection at a time.
    sentinel: tokio::sync::Mutex<SentinelClient>,
    current: parking_lot::Mutex<Current>,
    /// Bumped on every new connection and every invalidation.
    changes: watch::Sender<u64>,
    watcher: parking_lot::Mutex<Option<tokio::task::AbortHandle>>,
}

struct Current {
    epoch: u64,
    /// The connection to the primary, and a client for more (pub/sub).
    primary: Option<(MultiplexedConnection, Client)>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(w) = self.watcher.lock().take() {
            w.abort();
        }
    }
}

/// How to log in to the data nodes: `credentials` is `user:password@` (as in
/// the URL, percent-encoded) or empty.
fn node_info(credentials: &str, db: i64) -> Result<redis::RedisConnectionInfo, crate::Error> {
    // redis-rs reads (and percent-decodes) the credentials from a URL.
    let info: redis::ConnectionInfo = format!("redis://{credentials}127.0.0.1/{db}")
        .parse()
        .map_err(crate::Error::Url)?;
    Ok(info.redis)
}

/// redis-rs' client for the primary behind `sentinels`: `credentials` and
/// `db` for the data nodes; over TLS (with `tls`' certificates) to the
/// sentinels and the data nodes when the sentinels are `rediss://`.
fn sentinel_client(
    sentinels: &[String],
    master: &str,
    db: i64,
    credentials: &str,
    tls: &TlsConfig,
) -> RedisResult<SentinelClient> {
    let secure = crate::tls::any_tls(sentinels);
    let addrs = sentinels
        .iter()
        .map(|s| s.as_str().into_connection_info().map(|i| i.addr))
        .collect::<RedisResult<Vec<_>>>()?;
    let node = node_info(credentials, db).map_err(|_| {
        RedisError::from((
            ErrorKind::InvalidClientConfig,
            "invalid credentials for the data nodes",
        ))
    })?;
    let mut builder =
        SentinelClientBuilder::new(addrs, master.to_owned(), SentinelServerType::Master)?
            .set_client_to_redis_db(db);
    if let Some(user) = node.username {
        builder = builder.set_client_to_redis_username(user);
    }
    if let Some(password) = node.password {
        builder = builder.set_client_to_redis_password(password);
    }
    if secure {
        crate::tls::install_crypto_provider();
        builder = builder
            .set_client_to_redis_tls_mode(TlsMode::Secure)
            .set_client_to_sentinel_tls_mode(TlsMode::Secure);
        if let Some(certs) = tls.certificates() {
            builder = builder
                .set_client_to_redis_certificates(certs.clone())
                .set_client_to_sentinel_certificates(certs);
        }
    }
    builder.build()
}

fn io_error(what: &'static str) -> RedisError {
    RedisError::from((ErrorKind::IoError, what))
}

/// Errors after which the connection is not used again.
fn connection_lost(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_timeout()
        || e.is_unrecoverable_error()
}

/// Replies saying this node is no longer (or not yet) a usable primary; the
/// command was refused, so it may be sent again.
fn refused(e: &RedisError) -> bool {
    matches!(e.kind(), ErrorKind::ReadOnly | ErrorKind::MasterDown)
}

impl SentinelCon {
    /// Finds the primary `master` through `sentinels` (`redis://host:port`
    /// each) and connects to it; `credentials` (`user:password@` or empty)
    /// and `db` are for the data nodes. With `rediss://host:port` sentinels,
    /// the sentinels and the data nodes are reached over TLS with `tls`'
    /// certificates. Starts the `+switch-master` listener.
    pub(crate) async fn connect(
        sentinels: &[String],
        master: &str,
        db: i64,
        credentials: &str,
        timeout: Duration,
        tls: &TlsConfig,
    ) -> Result<Self, crate::Error> {
        let sentinel =
            sentinel_client(sentinels, master, db, credentials, tls).map_err(crate::Error::Url)?;
        let shared = Arc::new(Shared {
            master: master.to_owned(),
            db,
            timeout,
            config: AsyncConnectionConfig::new()
                .set_connection_timeout(timeout)
                .set_response_timeout(timeout),
            sentinel: tokio::sync::Mutex::new(sentinel),
            current: parking_lot::Mutex::new(Current {
                epoch: 0,
                primary: None,
            }),
            changes: watch::channel(0).0,
            watcher: parking_lot::Mutex::new(None),
        });
        let task = tokio::spawn(watch_sentinels(
            Arc::downgrade(&shared),
            sentinels.to_vec(),
            tls.clone(),
        ));
        *shared.watcher.lock() = Some(task.abort_handle());
        let con = Self { shared };
        con.primary().await.map_err(crate::Error::Connect)?;
        Ok(con)
    }

    /// The number of the current connection (0 before the first one).
    pub(crate) fn epoch(&self) -> u64 {
        self.shared.current.lock().epoch
    }

    /// Notified on every change of connection (and invalidation).
    pub(crate) fn changes(&self) -> watch::Receiver<u64> {
        self.shared.changes.subscribe()
    }

    /// The epoch of the current connection, if it has not been dropped.
    pub(crate) fn live_epoch(&self) -> Option<u64> {
        let c = self.shared.current.lock();
        c.primary.as_ref().map(|_| c.epoch)
    }

    /// The current connection, its epoch and a client for the same node;
    /// finds the primary first if there is none.
    pub(crate) async fn primary(&self) -> RedisResult<(u64, MultiplexedConnection, Client)> {
        let seen = {
            let c = self.shared.current.lock();
            if let Some((con, client)) = &c.primary {
                return Ok((c.epoch, con.clone(), client.clone()));
            }
            c.epoch
        };
        self.reconnect(seen).await
    }

    /// Forgets the connection of `epoch` (if still current).
    fn invalidate(&self, epoch: u64) {
        let mut c = self.shared.current.lock();
        if c.epoch == epoch && c.primary.take().is_some() {
            drop(c);
            self.shared.changes.send_modify(|n| *n += 1);
        }
    }

    /// Finds the primary and connects to it, unless another caller did since
    /// `seen`. Every failure is reported as an I/O error (the store maps it
    /// to `Unavailable`): the primary is away, whatever the sentinels said.
    async fn reconnect(&self, seen: u64) -> RedisResult<(u64, MultiplexedConnection, Client)> {
        self.try_reconnect(seen).await.map_err(|e| {
            if connection_lost(&e) {
                e
            } else {
                RedisError::from((
                    ErrorKind::IoError,
                    "no primary reachable through the sentinels",
                    e.to_string(),
                ))
            }
        })
    }

    async fn try_reconnect(&self, seen: u64) -> RedisResult<(u64, MultiplexedConnection, Client)> {
        let s = &self.shared;
        let deadline = tokio::time::Instant::now() + s.timeout;
        let mut sentinel = tokio::time::timeout_at(deadline, s.sentinel.lock())
            .await
            .map_err(|_| io_error("timed out waiting for the reconnection to the primary"))?;
        {
            // Someone else reconnected while this caller waited.
            let c = s.current.lock();
            if let (Some((con, client)), true) = (&c.primary, c.epoch != seen) {
                return Ok((c.epoch, con.clone(), client.clone()));
            }
        }
        let mut last = io_error("the sentinels named no reachable primary in time");
        loop {
            let attempt = async {
                let client = sentinel.async_get_client().await?;
                let mut con = client
                    .get_multiplexed_async_connection_with_config(&s.config)
                    .await?;
                // The role, checked on this connection: the sentinels' view
                // may lag behind a failover.
                let role: Role = redis::cmd("ROLE").query_async(&mut con).await?;
                if !matches!(role, Role::Primary { .. }) {
                    return Err(RedisError::from((
                        ErrorKind::ReadOnly,
                        "the node the sentinels name is not a primary (yet)",
                    )));
                }
                Ok((con, client))
            };
            match tokio::time::timeout_at(deadline, attempt).await {
                Ok(Ok((con, client))) => {
                    let epoch = {
                        let mut c = s.current.lock();
                        c.epoch += 1;
                        c.primary = Some((con.clone(), client.clone()));
                        c.epoch
                    };
                    s.changes.send_modify(|n| *n += 1);
                    tracing::info!(master = %s.master, epoch, "connected to the Redis primary named by the sentinels");
                    return Ok((epoch, con, client));
                }
                Ok(Err(e)) => last = e,
                Err(_) => return Err(last),
            }
            if tokio::time::Instant::now() + RETRY >= deadline {
                return Err(last);
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    async fn send(&self, req: Req<'_>) -> RedisResult<Reply> {
        let (epoch, mut con, _) = self.primary().await?;
        match req.run(&mut con).await {
            Err(e) if refused(&e) => {
                self.invalidate(epoch);
                let (_, mut con, _) = self.primary().await?;
                req.run(&mut con).await
            }
            // A single command's error reply comes back as a value.
            Ok(Reply::One(Value::ServerError(e)))
                if matches!(e.code(), "READONLY" | "MASTERDOWN") =>
            {
                self.invalidate(epoch);
                let (_, mut con, _) = self.primary().await?;
                req.run(&mut con).await
            }
            Err(e) if connection_lost(&e) => {
                self.invalidate(epoch);
                Err(e)
            }
            r => r,
        }
    }
}

/// What [`SentinelCon`] sends: one command or part of a pipeline.
#[derive(Clone, Copy)]
enum Req<'a> {
    One(&'a Cmd),
    Many(&'a Pipeline, usize, usize),
}

enum Reply {
    One(Value),
    Many(Vec<Value>),
}

impl Req<'_> {
    async fn run(self, con: &mut MultiplexedConnection) -> RedisResult<Reply> {
        match self {
            Req::One(cmd) => con.req_packed_command(cmd).await.map(Reply::One),
            Req::Many(p, offset, count) => con
                .req_packed_commands(p, offset, count)
                .await
                .map(Reply::Many),
        }
    }
}

fn unexpected() -> RedisError {
    RedisError::from((ErrorKind::ClientError, "unexpected reply shape"))
}

impl ConnectionLike for SentinelCon {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            match self.send(Req::One(cmd)).await? {
                Reply::One(v) => Ok(v),
                Reply::Many(_) => Err(unexpected()),
            }
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            match self.send(Req::Many(cmd, offset, count)).await? {
                Reply::Many(v) => Ok(v),
                Reply::One(_) => Err(unexpected()),
            }
        })
    }

    fn get_db(&self) -> i64 {
        self.shared.db
    }
}

/// Listens for `+switch-master` on one sentinel after the other (the next
/// one when a subscription breaks) and drops the connection to the old
/// primary as soon as a switch of this master is announced.
async fn watch_sentinels(shared: Weak<Shared>, sentinels: Vec<String>, tls: TlsConfig) {
    for url in sentinels.iter().cycle() {
        let subscribed = async {
            let client = tls.client(url)?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(SWITCH_MASTER).await?;
            Ok::<_, RedisError>(pubsub)
        };
        // A sentinel that accepts the connection but never answers must not
        // hold the watcher.
        if let Ok(Ok(pubsub)) = tokio::time::timeout(SUBSCRIBE_TIMEOUT, subscribed).await {
            let mut messages = pubsub.into_on_message();
            while let Some(msg) = messages.next().await {
                let Some(shared) = shared.upgrade() else {
                    return;
                };
                // "<master name> <old ip> <old port> <new ip> <new port>"
                let payload: String = msg.get_payload().unwrap_or_default();
                if payload.split(' ').next() == Some(shared.master.as_str()) {
                    tracing::warn!(master = %shared.master, switch = %payload, "the sentinels switched the Redis primary");
                    let con = SentinelCon { shared };
                    con.invalidate(con.epoch());
                }
            }
        }
        if shared.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(RETRY * 4).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use sessionary_testkit::redis_sentinel::{MASTER, SentinelSet};

    /// A Sentinel set of its own and a connection through its sentinels, or
    /// `None` (skipped, a failure when `CI=true`) without `redis-server`.
    async fn started(test: &str) -> Option<(SentinelSet, SentinelCon)> {
        let set = match tokio::task::spawn_blocking(SentinelSet::start)
            .await
            .unwrap()
        {
            Ok(s) => s,
            Err(e) => {
                sessionary_testkit::redis_server::skip(test, &format!("cannot start: {e}"));
                return None;
            }
        };
        let sentinels: Vec<String> = set
            .sentinel_ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect();
        let con = SentinelCon::connect(
            &sentinels,
            MASTER,
            0,
            "",
            Duration::from_secs(2),
            &TlsConfig::default(),
        )
        .await
        .unwrap();
        Some((set, con))
    }

    /// After the connection is dropped, 64 concurrent commands reconnect
    /// once: the first finds the primary, the others take its connection.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_callers_reconnect_once() {
        let Some((_set, con)) = started("sentinel reconnect").await else {
            return;
        };
        assert_eq!(con.epoch(), 1);
        con.invalidate(1);
        assert_eq!(con.live_epoch(), None);
        let calls: Vec<_> = (0..64)
            .map(|i| {
                let mut c = con.clone();
                tokio::spawn(async move {
                    redis::cmd("SET")
                        .arg(format!("k{i}"))
                        .arg(i)
                        .query_async::<()>(&mut c)
                        .await
                })
            })
            .collect();
        for call in calls {
            call.await.unwrap().unwrap();
        }
        assert_eq!(con.epoch(), 2, "more than one reconnection");
        assert_eq!(con.live_epoch(), Some(2));
    }

    /// A connection that turned out to be to a replica (a demoted primary)
    /// gets `READONLY`: the command is sent once more, to the primary the
    /// sentinels name, and succeeds there.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_readonly_reply_moves_to_the_primary_and_resends() {
        let Some((set, mut con)) = started("sentinel readonly").await else {
            return;
        };
        let primary = tokio::task::block_in_place(|| set.agreed_primary()).unwrap();
        let replica = set.nodes.iter().find(|n| n.port != primary).unwrap().port;
        // Point the current connection at the replica, as if the primary had
        // been demoted under it.
        let client = Client::open(format!("redis://127.0.0.1:{replica}")).unwrap();
        let on_replica = client.get_multiplexed_async_connection().await.unwrap();
        {
            let mut c = con.shared.current.lock();
            c.epoch += 1;
            c.primary = Some((on_replica, client));
        }
        assert_eq!(con.epoch(), 2);
        redis::cmd("SET")
            .arg("moved")
            .arg("yes")
            .query_async::<()>(&mut con)
            .await
            .unwrap();
        assert_eq!(con.epoch(), 3, "the connection was not replaced");
        let mut check = redis::cmd("GET");
        check.arg("moved");
        let on_primary: Option<String> = tokio::task::block_in_place(|| {
            sessionary_testkit::redis_sentinel::query(primary, &check)
        })
        .unwrap();
        assert_eq!(on_primary.as_deref(), Some("yes"));
    }

    #[test]
    fn data_node_credentials_come_from_the_url() {
        let info = node_info("app:p%40ss%2Fw@", 3).unwrap();
        assert_eq!(info.username.as_deref(), Some("app"));
        assert_eq!(info.password.as_deref(), Some("p@ss/w"));
        assert_eq!(info.db, 3);
        let info = node_info(":secret@", 0).unwrap();
        assert_eq!(info.username, None);
        assert_eq!(info.password.as_deref(), Some("secret"));
        let info = node_info("", 0).unwrap();
        assert_eq!((info.username, info.password), (None, None));
    }

    #[tokio::test]
    async fn no_reachable_sentinel_is_a_connect_error_within_the_timeout() {
        let port = sessionary_testkit::redis_server::free_port();
        let started = std::time::Instant::now();
        let r = SentinelCon::connect(
            &[format!("redis://127.0.0.1:{port}")],
            "m",
            0,
            "",
            Duration::from_millis(300),
            &TlsConfig::default(),
        )
        .await;
        assert!(matches!(r, Err(crate::Error::Connect(_))));
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
