//! A Redis store for Sessionary: [`RedisStore`].
//!
//! Sessions, tombstones, user data, restorable data, refresh token families
//! and the audit log live in Redis. Every write of [`SessionStore`] is one
//! Lua script (one round trip, atomic on the server). On one server and
//! behind Sentinel, `load` is one plain `GET`: the token hash's route key
//! also holds a snapshot of the session (or its tombstone), which every
//! script that changes the session rewrites; the `load` script runs only
//! when a sliding touch is due (once per touch interval). On one server
//! (`redis://...`) the connection is a redis-rs `ConnectionManager`: one
//! multiplexed connection that reconnects by itself after the server went
//! away. Behind Redis Sentinel (`redis+sentinel://`) it is one multiplexed
//! connection to the primary the sentinels name, whose role is checked, and
//! which is replaced after a failover (`+switch-master`, `READONLY`, a broken
//! connection). On a Redis Cluster (`redis+cluster://host:port,host:port`, seed
//! nodes) it is redis-rs's Cluster connection, and each script runs on the
//! slot of the owner it touches: the route to that owner (token hash →
//! session, session id → owner) is read before, from an in-process cache
//! once known, so a verification is again one `EVALSHA`. While Redis (or the
//! master serving a slot) is down, operations fail with
//! [`StoreError::Unavailable`] within the configured timeout instead of
//! hanging.
//!
//! # TLS
//!
//! Each form has a TLS one: `rediss://` (one server), `rediss+cluster://`
//! (every Cluster node) and `rediss+sentinel://` (the sentinels and the data
//! nodes they name), over rustls (ring). The server's certificate is always
//! verified, against the webpki roots or, with
//! [`RedisOptions::with_tls_ca`], against a private CA only; redis-rs's
//! `#insecure` fragment is refused. [`RedisOptions::with_tls_client_identity`]
//! answers servers that ask for a client certificate (`tls-auth-clients`).
//!
//! ```no_run
//! use sessionary_redis::{RedisOptions, RedisStore};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let ca = std::fs::read("/etc/sessionary/redis-ca.pem")?;
//! let store = RedisStore::connect(
//!     "rediss+sentinel://s1:26379,s2:26379,s3:26379/main",
//!     RedisOptions::new().with_tls_ca(ca),
//! )
//! .await?;
//! # let _ = store;
//! # Ok(())
//! # }
//! ```
//!
//! # Examples
//!
//! ```no_run
//! use std::sync::Arc;
//! use sessionary_core::SessionManager;
//! use sessionary_redis::{RedisOptions, RedisStore};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = RedisStore::connect(
//!     "redis://127.0.0.1:6379",
//!     RedisOptions::new().with_key_prefix("myapp:sessions:"),
//! )
//! .await?;
//! let manager = SessionManager::builder(Arc::new(store)).build()?;
//! # let _ = manager;
//! # Ok(())
//! # }
//! ```
//!
//! # Key layout
//!
//! Everything an owner (a user, or an anonymous session) has shares one hash
//! tag, so each multi-key script touches one Cluster slot: `{u:<user>}` or
//! `{s:<session id>}`. Token hash → session and id → owner are small route keys
//! outside the tags (on Cluster the store reads and writes them outside the
//! owner's script). On one server and Sentinel the token hash's route also
//! holds the snapshot `load` reads. See `ARCHITECTURE.md` ("RedisStore") for the table and
//! the Cluster protocol.
//!
//! # Expiry
//!
//! Expiry is computed from the timestamps in the record (in the scripts, or
//! by the store from the snapshot a load reads), never
//! from a key TTL. Keys get TTLs only as garbage collection, a grace period
//! ([`RedisOptions::with_gc_grace`], 7 days by default) past the absolute
//! expiry of what they hold; [`SessionStore::sweep`] ends expired sessions
//! with their tombstones and restorable data as the other stores do.
//!
//! # Security
//!
//! The store sees token hashes, never tokens, and sealed data, never
//! plaintext; refresh successors are sealed under a key the store never
//! holds. Anyone who can write to the Redis database can still end or alter
//! sessions: give the service its own ACL user and database.

#![deny(missing_docs)]

mod cluster;
mod codec;
mod con;
mod fanout;
mod scripts;
mod sentinel;
mod target;
mod tls;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::join_all;
use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, ScriptInvocation, Value};
use sessionary_core::audit::{AuditEntry, AuditQuery, AuditRecord};
use sessionary_core::policy::LimitMode;
use sessionary_core::record::{Restorable, Tombstone, UserData};
use sessionary_core::refresh::{
    CreateFamily, FamilyEnd, RefreshFamily, RefreshOutcome, RefreshRequest,
};
use sessionary_core::store::{
    Counter, Create, Ended, Ending, Lookup, SessionLimit, StoreError, StoreResult, SweepSpec,
    Touch, Update,
};
use sessionary_core::{
    EndReason, Sealed, SessionId, SessionRecord, SessionStore, Timestamp, TokenHash, UserId,
};

pub use crate::fanout::RedisFanout;

use crate::cluster::{Node, Routes};
use crate::codec::{Snapshot, array, bytes, hex, int};
use crate::con::Con;
use crate::scripts::Scripts;
use crate::sentinel::SentinelCon;
use crate::target::Target;
use crate::tls::TlsConfig;

/// Why connecting failed, or a stored value could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL is not a Redis URL (`redis://[user:password@]host[:port][/db]`
    /// or `redis+cluster://[user:password@]host:port[,host:port...]` or
    /// `redis+sentinel://[user:password@]host:port[,host:port...]/<master>[/db]`,
    /// or their TLS forms `rediss://`, `rediss+cluster://`,
    /// `rediss+sentinel://`), or asks for what its mode does not support,
    /// or the TLS settings are unusable (PEM without a certificate, TLS
    /// settings with a plain URL, `#insecure`).
    #[error("invalid Redis URL")]
    Url(#[source] RedisError),
    /// The key prefix is not allowed (see [`RedisOptions::with_key_prefix`]).
    #[error("invalid key prefix: {0}")]
    KeyPrefix(&'static str),
    /// The server could not be reached or refused the connection.
    #[error("cannot connect to Redis")]
    Connect(#[source] RedisError),
    /// A stored value has an unexpected shape.
    #[error("stored value is corrupt: {0}")]
    Decode(&'static str),
    /// A stored record is not valid JSON.
    #[error("stored record is not valid JSON")]
    Json(#[source] serde_json::Error),
}

impl From<Error> for StoreError {
    fn from(e: Error) -> Self {
        match e {
            Error::Decode(_) | Error::Json(_) => StoreError::corrupt(e),
            Error::Connect(_) => StoreError::unavailable(e),
            Error::Url(_) | Error::KeyPrefix(_) => StoreError::backend(e),
        }
    }
}

/// An operation that took longer than [`RedisOptions::with_timeout`].
#[derive(Debug, thiserror::Error)]
#[error("Redis did not answer within {0:?}")]
struct TimedOut(Duration);

/// A write that fewer replicas acknowledged than [`RedisOptions::with_replica_acks`] asks.
#[derive(Debug, thiserror::Error)]
#[error(
    "not acknowledged by {wanted} replicas ({acked} within {timeout:?}); the write may still have happened"
)]
struct NotAcknowledged {
    wanted: u32,
    acked: u64,
    timeout: Duration,
}

fn store_error(e: RedisError) -> StoreError {
    if e.is_io_error()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_unrecoverable_error()
        // Cluster: `MOVED`/`ASK` left after redis-rs's retries, `TRYAGAIN`,
        // `CLUSTERDOWN`: the topology is changing (a master died or moves).
        || e.is_cluster_error()
        || matches!(
            e.kind(),
            redis::ErrorKind::BusyLoadingError
                | redis::ErrorKind::TryAgain
                | redis::ErrorKind::ClusterDown
                | redis::ErrorKind::MasterDown
                | redis::ErrorKind::ReadOnly
        )
    {
        StoreError::unavailable(e)
    } else if e.code() == Some("CORRUPT") {
        // A script found undecodable data (`corrupt` in `lib.lua`).
        StoreError::corrupt(e)
    } else {
        StoreError::backend(e)
    }
}

/// Over TLS, one connection first, within `timeout`: a handshake that fails
/// (a certificate no trusted CA signed, a server that is not TLS) is
/// reported as it is, where the `ConnectionManager`'s retries would end in
/// a time-out that hides the cause. Nothing for a plain URL.
async fn probe_tls(client: &redis::Client, timeout: Duration) -> Result<(), Error> {
    if !uses_tls(client) {
        return Ok(());
    }
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(timeout)
        .set_response_timeout(timeout);
    match tokio::time::timeout(
        timeout,
        client.get_multiplexed_async_connection_with_config(&config),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(Error::Connect(e)),
        Err(_) => Err(Error::Connect(RedisError::from((
            redis::ErrorKind::IoError,
            "TLS connection timed out",
        )))),
    }
}

/// Whether `client` connects over TLS.
fn uses_tls(client: &redis::Client) -> bool {
    matches!(
        client.get_connection_info().addr,
        redis::ConnectionAddr::TcpTls { .. }
    )
}

/// A standalone server's connection: a `ConnectionManager` that reconnects
/// by itself.
async fn direct(url: &str, options: &RedisOptions) -> Result<ConnectionManager, Error> {
    let client = options.tls.client(url).map_err(Error::Url)?;
    probe_tls(&client, options.timeout).await?;
    let tls = uses_tls(&client);
    // Few, short retries: an operation waits for the reconnection, and
    // must fail with `Unavailable` within the timeout rather than queue.
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(options.timeout)
        .set_response_timeout(options.timeout)
        .set_number_of_retries(2)
        .set_factor(50)
        .set_max_delay(500);
    tokio::time::timeout(
        options.timeout,
        ConnectionManager::new_with_config(client, config),
    )
    .await
    .map_err(|_| {
        // A TLS-only port closes a plain connection at once, and the
        // manager's retries end here: say what may be wrong.
        Error::Connect(RedisError::from((
            redis::ErrorKind::IoError,
            if tls {
                "connection timed out"
            } else {
                "connection timed out (a TLS-only server needs a rediss:// URL)"
            },
        )))
    })?
    .map_err(Error::Connect)
}

/// Options of a [`RedisStore`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use sessionary_redis::RedisOptions;
///
/// let options = RedisOptions::new()
///     .with_key_prefix("shop:")
///     .with_timeout(Duration::from_millis(500));
/// assert_eq!(options.key_prefix(), "shop:");
/// ```
#[derive(Clone, Debug)]
pub struct RedisOptions {
    key_prefix: String,
    timeout: Duration,
    gc_grace: Duration,
    replica_acks: Option<(u32, Duration)>,
    route_cache: usize,
    tls: TlsConfig,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            key_prefix: "sessionary:".to_owned(),
            timeout: Duration::from_secs(2),
            gc_grace: Duration::from_secs(7 * 86_400),
            replica_acks: None,
            route_cache: 100_000,
            tls: TlsConfig::default(),
        }
    }
}

impl RedisOptions {
    /// Prefix `sessionary:`, timeout 2 s, garbage-collection grace 7 days.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every key starts with this prefix (default `sessionary:`), so several
    /// deployments (or test runs) can share a database. At most 64 bytes of
    /// `A-Z a-z 0-9 : _ . -` (no glob characters, no braces: the hash tags
    /// come after it).
    #[must_use]
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// How long one operation may take, reconnecting included, before it fails
    /// with [`StoreError::Unavailable`] (default 2 s).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long keys outlive the absolute expiry of what they hold (default 7
    /// days). Only garbage collection for a deployment whose sweeper stopped:
    /// every decision reads the timestamps in the records.
    #[must_use]
    pub fn with_gc_grace(mut self, grace: Duration) -> Self {
        self.gc_grace = grace;
        self
    }

    /// Opt-in durability: every operation that creates, rotates, ends or
    /// revokes (`create`, `rotate`, `end`, `end_user`, `set_user_data`,
    /// `create_refresh_family`, `refresh`, `revoke_refresh`,
    /// `revoke_refresh_families`) sends `WAIT replicas timeout` after its
    /// script, on the same connection, and fails with
    /// [`StoreError::Unavailable`] ("not acknowledged by N replicas") when
    /// fewer replicas acknowledged within `timeout`.
    ///
    /// Such a failure does not undo the write: it happened on the primary and
    /// may reach the replicas later. The caller sees a failure and retries; a
    /// retried create is a new session (the first one, never handed out,
    /// expires unused), an end or revocation is idempotent.
    ///
    /// `WAIT` counts the replicas that acknowledged every write of the
    /// connection so far, so it also covers concurrent writes of the same
    /// store. Off by default (asynchronous replication). Keep `timeout`
    /// below [`Self::with_timeout`]: a reply slower than that fails the
    /// operation as well. Not supported on a Cluster yet
    /// ([`RedisStore::connect`] refuses it there).
    #[must_use]
    pub fn with_replica_acks(mut self, replicas: u32, timeout: Duration) -> Self {
        self.replica_acks = (replicas > 0).then_some((replicas, timeout));
        self
    }

    /// Cluster only: how many routes (token hash → session, session id →
    /// owner) the store keeps in memory (default 100 000, about 20 MB at
    /// most). A cached route saves a `GET` on another node before each
    /// operation: with it, a verification is one `EVALSHA`. Routes never
    /// change once written, so the cache is never stale in a way that
    /// matters (an owner script that finds nothing re-reads the route).
    #[must_use]
    pub fn with_route_cache(mut self, entries: usize) -> Self {
        self.route_cache = entries;
        self
    }

    /// TLS only (`rediss://`, `rediss+cluster://`, `rediss+sentinel://`):
    /// trust the CA certificate(s) in `pem` (PEM, one or more `BEGIN
    /// CERTIFICATE` blocks: the contents of a CA file, not its path) instead
    /// of the webpki roots, e.g. for a deployment whose servers' certificates
    /// a private CA signed. The server's certificate is always verified
    /// (chain and host name or IP address); there is no insecure mode.
    ///
    /// [`RedisStore::connect`] and [`RedisFanout::connect_with_options`]
    /// refuse PEM without a certificate, and TLS settings with a URL that is
    /// not a TLS one, with [`Error::Url`].
    #[must_use]
    pub fn with_tls_ca(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls.set_ca(pem.into());
        self
    }

    /// TLS only: the client certificate (chain) and private key, both PEM,
    /// shown to servers that ask for one (`tls-auth-clients yes`).
    #[must_use]
    pub fn with_tls_client_identity(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.tls.set_identity(cert_pem.into(), key_pem.into());
        self
    }

    /// Whether `pem` is what [`Self::with_tls_ca`] and the certificate of
    /// [`Self::with_tls_client_identity`] take: valid PEM with at least one
    /// certificate (the check [`RedisStore::connect`] makes, for a
    /// configuration to refuse a file before anything starts).
    ///
    /// # Examples
    ///
    /// ```
    /// use sessionary_redis::RedisOptions;
    ///
    /// assert!(!RedisOptions::is_certificate_pem(b"nothing here"));
    /// assert!(!RedisOptions::is_certificate_pem(
    ///     b"-----BEGIN CERTIFICATE-----\n%%%\n-----END CERTIFICATE-----\n"
    /// ));
    /// ```
    pub fn is_certificate_pem(pem: &[u8]) -> bool {
        tls::has_certificates(pem)
    }

    /// Whether `pem` holds the private key [`Self::with_tls_client_identity`]
    /// takes (PKCS#8, PKCS#1 or SEC1 PEM).
    pub fn is_private_key_pem(pem: &[u8]) -> bool {
        tls::has_private_key(pem)
    }

    /// Checks the TLS settings against the URL's target.
    fn check_tls(&self, target: &Target) -> Result<(), Error> {
        if self.tls.is_set() && !target.tls() {
            return Err(Error::Url(RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "TLS settings (a CA or client certificate) need a TLS URL: rediss://, rediss+cluster:// or rediss+sentinel://",
            ))));
        }
        self.tls.check().map_err(Error::Url)
    }

    /// The replica acknowledgements every write waits for, if any
    /// ([`Self::with_replica_acks`]).
    pub fn replica_acks(&self) -> Option<(u32, Duration)> {
        self.replica_acks
    }

    /// The key prefix.
    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }

    /// Checks a URL as [`RedisStore::connect`] and
    /// [`RedisFanout::connect`] read it (`redis://`, `redis+cluster://`,
    /// `redis+sentinel://`, and their TLS forms `rediss://`,
    /// `rediss+cluster://`, `rediss+sentinel://`), without connecting: a
    /// configuration can be refused before anything starts.
    ///
    /// # Errors
    ///
    /// [`Error::Url`]; its message never holds the URL.
    ///
    /// # Examples
    ///
    /// ```
    /// use sessionary_redis::RedisOptions;
    ///
    /// assert!(RedisOptions::check_url("redis+cluster://a:7000,b:7001").is_ok());
    /// assert!(RedisOptions::check_url("redis+cluster://a").is_err());
    /// assert!(RedisOptions::check_url("redis+sentinel://s:26379").is_err());
    /// assert!(RedisOptions::check_url("rediss+sentinel://s:26379/m").is_ok());
    /// assert!(RedisOptions::check_url("rediss://cache:6380#insecure").is_err());
    /// ```
    pub fn check_url(url: &str) -> Result<(), Error> {
        Target::parse(url).map(drop)
    }

    /// Whether `url` is one of the TLS forms (`rediss://`,
    /// `rediss+cluster://`, `rediss+sentinel://`); `false` for a malformed
    /// URL.
    ///
    /// # Examples
    ///
    /// ```
    /// use sessionary_redis::RedisOptions;
    ///
    /// assert!(RedisOptions::is_tls_url("rediss+cluster://a:7000"));
    /// assert!(!RedisOptions::is_tls_url("redis://a:6379"));
    /// ```
    pub fn is_tls_url(url: &str) -> bool {
        Target::parse(url).is_ok_and(|t| t.tls())
    }

    /// Checks a key prefix as [`RedisStore::connect`] does (see
    /// [`Self::with_key_prefix`]).
    ///
    /// # Errors
    ///
    /// [`Error::KeyPrefix`] saying what is wrong.
    ///
    /// # Examples
    ///
    /// ```
    /// use sessionary_redis::RedisOptions;
    ///
    /// assert!(RedisOptions::check_key_prefix("shop:sessions:").is_ok());
    /// assert!(RedisOptions::check_key_prefix("{shop}").is_err());
    /// ```
    pub fn check_key_prefix(p: &str) -> Result<(), Error> {
        if p.len() > 64 {
            return Err(Error::KeyPrefix("longer than 64 bytes"));
        }
        if !p
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b":_.-".contains(&b))
        {
            return Err(Error::KeyPrefix("only A-Z a-z 0-9 : _ . - are allowed"));
        }
        Ok(())
    }
}

/// A [`SessionStore`] on Redis: one server, behind Sentinel, or a Cluster.
/// Clones share the connection (and, on Cluster, the route cache).
///
/// # Examples
///
/// See the [crate docs](crate).
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    con: Con,
    scripts: Scripts,
    prefix: String,
    timeout: Duration,
    grace_ms: String,
    replica_acks: Option<(u32, Duration)>,
    grace: i64,
    /// Cluster: the route cache (`None`: standalone, routes are read inside
    /// the scripts).
    routes: Option<Routes>,
    /// Where the next sweep resumes its `SCAN` (node index, cursor; (0, 0):
    /// from the start).
    sweep_cursor: Mutex<(usize, u64)>,
    refresh_cursor: Mutex<(usize, u64)>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL (and its password) is not kept.
        f.debug_struct("RedisStore")
            .field("prefix", &self.inner.prefix)
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

fn user_tag(u: &UserId) -> String {
    format!("u:{}", hex(u.as_str().as_bytes()))
}

fn owner_tag(user: Option<&UserId>, id: &SessionId) -> String {
    match user {
        Some(u) => user_tag(u),
        None => format!("s:{}", hex(&id.0)),
    }
}

/// The reply of a script that found nothing: `{0}`.
fn code0() -> Value {
    Value::Array(vec![Value::Int(0)])
}

/// The reply of a script that found nothing: `{}`.
fn empty() -> Value {
    Value::Array(vec![])
}

/// A route `<tag> <name>` as the owner key `P{tag}:<kind>:<name>`.
fn named(kind: &'static str) -> impl Fn(&str) -> Option<(String, String)> {
    move |route| {
        let (tag, name) = route.split_once(' ')?;
        Some((tag.to_owned(), format!("{kind}:{name}")))
    }
}

/// A route `<tag>` as the owner key `P{tag}:<kind>:<name>`.
fn tagged(kind: &'static str, name: &str) -> impl Fn(&str) -> Option<(String, String)> {
    let suffix = format!("{kind}:{name}");
    move |tag| (!tag.is_empty()).then(|| (tag.to_owned(), suffix.clone()))
}

fn ending_args(inv: &mut ScriptInvocation<'_>, e: &Ending) {
    inv.arg(e.reason.as_str())
        .arg(e.at.0)
        .arg(e.reason_until.0)
        .arg(e.restore_until.map(|t| t.0.to_string()).unwrap_or_default());
}

fn pairs<K: AsRef<str>>(inv: &mut ScriptInvocation<'_>, fields: &[(K, Vec<u8>)]) {
    for (k, v) in fields {
        inv.arg(k.as_ref()).arg(v.as_slice());
    }
}

fn record_of(v: &Value) -> StoreResult<Option<Arc<SessionRecord>>> {
    Ok(codec::record(v)?.map(Arc::new))
}

fn some_record(v: &Value) -> StoreResult<Arc<SessionRecord>> {
    record_of(v)?.ok_or_else(|| Error::Decode("expected a session").into())
}

fn some_family(v: &Value) -> StoreResult<RefreshFamily> {
    codec::family(v)?.ok_or_else(|| Error::Decode("expected a refresh family").into())
}

/// The status code and the rest of a script's `{code, ...}` reply.
fn reply(v: &Value) -> StoreResult<(i64, &[Value])> {
    let a = array(v)?;
    let (code, rest) = a.split_first().ok_or(Error::Decode("empty reply"))?;
    Ok((int(code)?, rest))
}

fn at(rest: &[Value], i: usize) -> StoreResult<&Value> {
    rest.get(i)
        .ok_or_else(|| Error::Decode("short reply").into())
}

impl RedisStore {
    /// Connects to the Redis server at `url`
    /// (`redis://[user:password@]host[:port][/db]`), to the primary the
    /// sentinels of `url` name
    /// (`redis+sentinel://[user:password@]host:port[,host:port...]/<master>[/db]`)
    /// or to the Redis Cluster that the seed nodes of `url` belong to
    /// (`redis+cluster://[user:password@]host:port[,host:port...]`), waiting
    /// until the first connection is up (within the options' timeout). Later
    /// disconnections are repaired by themselves.
    ///
    /// - `redis://[user:password@]host[:port][/db]`: one server.
    /// - `redis+sentinel://[user:password@]host:port[,host:port...]/<master>[/db]`:
    ///   the primary that the sentinels at `host:port...` know as `<master>`,
    ///   followed across failovers; the credentials and database are the data
    ///   nodes' (the sentinels are asked without). To lose no acknowledged
    ///   write on a failover, combine it with
    ///   [`RedisOptions::with_replica_acks`] set to the number of replicas
    ///   (see `ARCHITECTURE.md`, "Sentinel").
    /// - `rediss://`, `rediss+cluster://`, `rediss+sentinel://`: the same over
    ///   TLS (see the crate's "TLS" section and [`RedisOptions::with_tls_ca`]).
    ///
    /// # Errors
    ///
    /// [`Error::Url`] for a malformed URL (or, on Cluster,
    /// [`RedisOptions::with_replica_acks`], not supported there yet),
    /// [`Error::KeyPrefix`] for a prefix [`RedisOptions::with_key_prefix`]
    /// refuses, [`Error::Connect`] if the server cannot be reached (or, over
    /// TLS, its certificate is not trusted: the cause is the source).
    pub async fn connect(url: &str, options: RedisOptions) -> Result<Self, Error> {
        RedisOptions::check_key_prefix(&options.key_prefix)?;
        let target = Target::parse(url)?;
        options.check_tls(&target)?;
        let (con, routes) = match target {
            Target::Standalone(url) => (Con::Direct(direct(&url, &options).await?), None),
            Target::Cluster(seeds) => {
                if options.replica_acks.is_some() {
                    return Err(Error::Url(RedisError::from((
                        redis::ErrorKind::InvalidClientConfig,
                        "replica acknowledgements (WAIT) are not supported on Cluster yet",
                    ))));
                }
                let con = cluster::connect(seeds, options.timeout, &options.tls).await?;
                (Con::Cluster(con), Some(Routes::new(options.route_cache)))
            }
            Target::Sentinel {
                sentinels,
                master,
                db,
                credentials,
            } => (
                Con::Sentinel(
                    SentinelCon::connect(
                        &sentinels,
                        &master,
                        db,
                        &credentials,
                        options.timeout,
                        &options.tls,
                    )
                    .await?,
                ),
                None,
            ),
        };
        let grace = i64::try_from(options.gc_grace.as_millis()).unwrap_or(i64::MAX);
        Ok(Self {
            inner: Arc::new(Inner {
                con,
                scripts: Scripts::new(),
                prefix: options.key_prefix,
                timeout: options.timeout,
                replica_acks: options.replica_acks,
                grace_ms: grace.max(1).to_string(),
                grace: grace.max(1),
                routes,
                sweep_cursor: Mutex::new((0, 0)),
                refresh_cursor: Mutex::new((0, 0)),
            }),
        })
    }

    /// The key prefix.
    pub fn key_prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// Deletes every key under this store's prefix (with `SCAN` + `UNLINK`, on
    /// every primary of a Cluster),
    /// e.g. at the end of a test. Returns how many keys were deleted.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if Redis cannot be reached.
    pub async fn clear(&self) -> StoreResult<usize> {
        let pattern = format!("{}*", self.inner.prefix);
        let mut n = 0;
        for node in self.nodes().await? {
            let mut cursor = 0u64;
            loop {
                let (next, keys) = self.scan(node.as_ref(), cursor, &pattern).await?;
                if !keys.is_empty() {
                    n += keys.len();
                    // On Cluster, redis-rs splits a multi-key UNLINK by slot.
                    let mut cmd = redis::cmd("UNLINK");
                    cmd.arg(&keys);
                    self.query::<Value>(&cmd).await?;
                }
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        Ok(n)
    }

    /// Starts a script call with the prefix and grace arguments every script takes.
    fn call<'a>(&'a self, s: &'a redis::Script) -> ScriptInvocation<'a> {
        let mut inv = s.prepare_invoke();
        inv.arg(&self.inner.prefix).arg(&self.inner.grace_ms);
        inv
    }

    /// [`Self::call`] for a script on one owner's keys: on Cluster, `KEYS[1]`
    /// is `P{tag}:suffix` (redis-rs routes the `EVALSHA` by it; the script
    /// reads the tag and name from it instead of a route key). Standalone
    /// scripts get no keys and read the routes themselves.
    fn call_on<'a>(
        &'a self,
        s: &'a redis::Script,
        tag: &str,
        suffix: &str,
    ) -> ScriptInvocation<'a> {
        let mut inv = self.call(s);
        if self.inner.routes.is_some() {
            inv.key(self.okey(tag, suffix));
        }
        inv
    }

    /// `P{tag}:suffix`.
    fn okey(&self, tag: &str, suffix: &str) -> String {
        format!("{}{{{tag}}}:{suffix}", self.inner.prefix)
    }

    /// `P name` (a route key).
    fn rkey(&self, name: &str) -> String {
        format!("{}{name}", self.inner.prefix)
    }

    /// A key TTL (ms) for something that ends `span` ms from now, as `ttl_for`
    /// in `lib.lua`.
    fn ttl_for(&self, span: i64) -> i64 {
        const MAXTTL: i64 = 400 * 86_400_000;
        let g = self.inner.grace;
        span.saturating_add(g).clamp(g, MAXTTL.max(g))
    }

    /// Sends what `send` makes, bounded by the timeout. Cluster resharding:
    /// a reply that says the command did not run and will soon
    /// (`TRYAGAIN` — the owner's slot is migrating or importing, see the
    /// guard in `lib.lua` — or an `ASK` / `MOVED` left after redis-rs's own
    /// retries) is retried after 5, 10, 20 ... 100 ms while the timeout
    /// allows (`MOVED`, which a dead master also gives, twice at most), and
    /// is `Unavailable` after that.
    async fn bounded<T, F>(&self, send: impl Fn(Con) -> F) -> StoreResult<T>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let deadline = tokio::time::Instant::now() + self.inner.timeout;
        let mut pause = Duration::from_millis(5);
        let mut moved = 0;
        loop {
            let r = tokio::time::timeout_at(deadline, send(self.inner.con.clone())).await;
            let again = match &r {
                Ok(Err(e)) => match e.kind() {
                    redis::ErrorKind::TryAgain | redis::ErrorKind::Ask => true,
                    redis::ErrorKind::Moved => {
                        moved += 1;
                        moved <= 2
                    }
                    _ => false,
                },
                _ => false,
            };
            match r {
                Ok(_) if again && tokio::time::Instant::now() + pause < deadline => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                Ok(r) => return r.map_err(store_error),
                Err(_) => return Err(StoreError::unavailable(TimedOut(self.inner.timeout))),
            }
        }
    }

    async fn run(&self, inv: &ScriptInvocation<'_>) -> StoreResult<Value> {
        self.bounded(|mut con| async move { inv.invoke_async::<Value>(&mut con).await })
            .await
    }

    /// [`Self::run`] for a write: then `WAIT` for the replicas of
    /// [`RedisOptions::with_replica_acks`], if set.
    async fn run_acked(&self, inv: &ScriptInvocation<'_>) -> StoreResult<Value> {
        let epoch = self.inner.con.epoch();
        let v = self.run(inv).await?;
        if let Some((wanted, timeout)) = self.inner.replica_acks {
            let ms = u64::try_from(timeout.as_millis())
                .unwrap_or(u64::MAX)
                .max(1);
            let mut cmd = redis::cmd("WAIT");
            cmd.arg(wanted).arg(ms);
            let mut con = self.inner.con.clone();
            let limit = self.inner.timeout + timeout;
            let acked: u64 = match tokio::time::timeout(limit, cmd.query_async(&mut con)).await {
                Ok(r) => r.map_err(store_error)?,
                Err(_) => return Err(StoreError::unavailable(TimedOut(limit))),
            };
            // `WAIT` on another connection than the write's (a new primary)
            // would count that connection's writes: none.
            if self.inner.con.epoch() != epoch {
                return Err(StoreError::unavailable(NotAcknowledged {
                    wanted,
                    acked: 0,
                    timeout,
                }));
            }
            if acked < u64::from(wanted) {
                return Err(StoreError::unavailable(NotAcknowledged {
                    wanted,
                    acked,
                    timeout,
                }));
            }
        }
        Ok(v)
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> StoreResult<T> {
        self.bounded(|mut con| async move { cmd.query_async::<T>(&mut con).await })
            .await
    }

    /// The nodes a `SCAN` must visit: the one server (`None`), or every
    /// primary of the Cluster.
    async fn nodes(&self) -> StoreResult<Vec<Option<Node>>> {
        match &self.inner.con {
            Con::Cluster(c) => {
                let mut c = c.clone();
                match tokio::time::timeout(self.inner.timeout, cluster::primaries(&mut c)).await {
                    Ok(r) => Ok(r.map_err(store_error)?.into_iter().map(Some).collect()),
                    Err(_) => Err(StoreError::unavailable(TimedOut(self.inner.timeout))),
                }
            }
            _ => Ok(vec![None]),
        }
    }

    async fn scan(
        &self,
        node: Option<&Node>,
        cursor: u64,
        pattern: &str,
    ) -> StoreResult<(u64, Vec<Vec<u8>>)> {
        if let (Some(node), Con::Cluster(c)) = (node, &self.inner.con) {
            let mut c = c.clone();
            return match tokio::time::timeout(
                self.inner.timeout,
                cluster::scan(&mut c, node, cursor, pattern),
            )
            .await
            {
                Ok(r) => r.map_err(store_error),
                Err(_) => Err(StoreError::unavailable(TimedOut(self.inner.timeout))),
            };
        }
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000);
        self.query(&cmd).await
    }

    /// The next batch of keys of a scan pass, or `None` once the pass is over.
    async fn next_keys(&self, pass: &mut Pass<'_>) -> StoreResult<Option<Vec<Vec<u8>>>> {
        while !pass.done {
            let n = pass.nodes.len();
            let node = pass.nodes[pass.node % n].clone();
            let (next, keys) = self.scan(node.as_ref(), pass.at, &pass.pattern).await?;
            pass.at = next;
            if next == 0 {
                pass.node = (pass.node + 1) % n;
                if pass.node == 0 {
                    pass.done = pass.wrapped;
                    pass.wrapped = true;
                }
            }
            if !keys.is_empty() {
                return Ok(Some(keys));
            }
        }
        Ok(None)
    }

    /// Runs `inv` (built by `build` for an owner's key) for the operation on
    /// the route `name` (`t:<hash>`, `i:<id>`, `rf:<hash>`, `sf:<id>`); Cluster
    /// only. `key` maps the route's value to `(tag, key suffix)`. `None`: no
    /// route (the thing is missing). A reply `missing` says nothing was there
    /// under a cached route: the route is read again and, if it changed, the
    /// script runs once more.
    #[allow(clippy::too_many_arguments)]
    async fn via_route(
        &self,
        routes: &Routes,
        name: &str,
        key: impl Fn(&str) -> Option<(String, String)>,
        build: impl Fn(&mut ScriptInvocation<'_>),
        script: &redis::Script,
        acked: bool,
        missing: impl Fn(&Value) -> bool,
    ) -> StoreResult<Option<(Arc<str>, Value)>> {
        let (mut route, mut cached) = match routes.get(name) {
            Some(r) => (r, true),
            None => match self.fresh_route(routes, name).await? {
                Some(r) => (r, false),
                None => return Ok(None),
            },
        };
        loop {
            let (tag, suffix) = key(&route).ok_or(Error::Decode("malformed route"))?;
            let mut inv = self.call_on(script, &tag, &suffix);
            build(&mut inv);
            let v = if acked {
                self.run_acked(&inv).await?
            } else {
                self.run(&inv).await?
            };
            if !(cached && missing(&v)) {
                return Ok(Some((route, v)));
            }
            match self.fresh_route(routes, name).await? {
                Some(r) if r != route => {
                    route = r;
                    cached = false;
                }
                _ => return Ok(Some((route, v))),
            }
        }
    }

    /// Cluster: a route, from the cache or Redis.
    async fn route(&self, routes: &Routes, name: &str) -> StoreResult<Option<Arc<str>>> {
        match routes.get(name) {
            Some(r) => Ok(Some(r)),
            None => self.fresh_route(routes, name).await,
        }
    }

    /// Cluster: a route as Redis has it now (cached if present).
    async fn fresh_route(&self, routes: &Routes, name: &str) -> StoreResult<Option<Arc<str>>> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.rkey(name));
        let v: Option<String> = self.query(&cmd).await?;
        Ok(match v {
            Some(v) => {
                routes.put(name.to_owned(), &v);
                Some(Arc::from(v))
            }
            None => {
                routes.forget(name);
                None
            }
        })
    }

    /// Cluster: `SET name value NX PX ttl`; whether it was set.
    async fn claim(&self, name: &str, value: &str, ttl: i64) -> StoreResult<bool> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.rkey(name))
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(ttl);
        let v: Option<String> = self.query(&cmd).await?;
        Ok(v.is_some())
    }

    /// Cluster: route upkeep after a script, one command per route key, in
    /// parallel (they live on several nodes). Garbage collection only (a
    /// route that points at nothing reads as missing), so a failure is
    /// logged, not returned: the operation itself is done.
    async fn upkeep(&self, cmds: Vec<redis::Cmd>) {
        let results = join_all(cmds.iter().map(|c| self.query::<Value>(c))).await;
        for r in results {
            if let Err(e) = r {
                tracing::warn!(error = %e, "Redis Cluster route upkeep failed (garbage collection only)");
            }
        }
    }

    /// `PEXPIRE P name ttl GT`: extends a route's TTL, never shortens it.
    fn extend_cmd(&self, name: &str, ttl: i64) -> redis::Cmd {
        let mut cmd = redis::cmd("PEXPIRE");
        cmd.arg(self.rkey(name)).arg(ttl).arg("GT");
        cmd
    }

    fn del_cmd(&self, name: &str) -> redis::Cmd {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.rkey(name));
        cmd
    }

    /// Cluster: the routes of sessions a script ended: the token hash route
    /// lives as long as the tombstone (`ttl`), the id route goes.
    async fn ended_upkeep<'r>(&self, ended: impl IntoIterator<Item = (&'r SessionRecord, i64)>) {
        if self.inner.routes.is_none() {
            return;
        }
        let mut cmds = Vec::new();
        for (r, ttl) in ended {
            cmds.push(self.extend_cmd(&format!("t:{}", hex(&r.token_hash.0)), ttl));
            cmds.push(self.del_cmd(&format!("i:{}", hex(&r.id.0))));
        }
        self.upkeep(cmds).await;
    }

    fn ending_ttl(&self, e: &Ending) -> i64 {
        self.ttl_for(e.reason_until.0 - e.at.0)
    }

    /// Runs `script` on the owner the route `name` leads to. Standalone: one
    /// call (the script reads the route itself). Cluster: through
    /// [`Self::via_route`], `none` when there is no route. `none` is also the
    /// script's reply for "nothing there".
    #[allow(clippy::too_many_arguments)]
    async fn on_owner(
        &self,
        name: &str,
        key: impl Fn(&str) -> Option<(String, String)>,
        script: &redis::Script,
        build: impl Fn(&mut ScriptInvocation<'_>),
        acked: bool,
        none: Value,
    ) -> StoreResult<Value> {
        match &self.inner.routes {
            None => {
                let mut inv = self.call(script);
                build(&mut inv);
                if acked {
                    self.run_acked(&inv).await
                } else {
                    self.run(&inv).await
                }
            }
            Some(routes) => Ok(self
                .via_route(routes, name, key, build, script, acked, |v| *v == none)
                .await?
                .map_or(none, |(_, v)| v)),
        }
    }

    /// Cluster: runs a sweep script once per owner found in `keys` (each
    /// owner's keys share one slot); standalone: once for the whole batch.
    /// `build` adds the script's arguments before the keys, given how many
    /// more may be ended; `count` reads how many a reply ended.
    async fn sweep_batch(
        &self,
        script: &redis::Script,
        keys: Vec<Vec<u8>>,
        mut left: usize,
        build: impl Fn(&mut ScriptInvocation<'_>, usize),
        count: impl Fn(&Value) -> StoreResult<usize>,
    ) -> StoreResult<Vec<Value>> {
        let groups: Vec<(Option<String>, Vec<Vec<u8>>)> = if self.inner.routes.is_some() {
            let mut by_tag: std::collections::BTreeMap<String, Vec<Vec<u8>>> =
                std::collections::BTreeMap::new();
            let skip = self.inner.prefix.len();
            for k in keys {
                let tag = k.get(skip..).and_then(|rest| {
                    let rest = rest.strip_prefix(b"{")?;
                    let end = rest.iter().position(|b| *b == b'}')?;
                    String::from_utf8(rest[..end].to_vec()).ok()
                });
                if let Some(tag) = tag {
                    by_tag.entry(tag).or_default().push(k);
                }
            }
            by_tag.into_iter().map(|(t, k)| (Some(t), k)).collect()
        } else {
            vec![(None, keys)]
        };
        let mut out = Vec::new();
        for (tag, keys) in groups {
            if left == 0 {
                break;
            }
            let mut inv = self.call(script);
            if let Some(tag) = tag {
                inv.key(self.okey(&tag, ""));
            }
            build(&mut inv, left);
            inv.arg(keys);
            let v = self.run(&inv).await?;
            left = left.saturating_sub(count(&v)?);
            out.push(v);
        }
        Ok(out)
    }
}

/// One pass of `SCAN` over the keys matching `pattern` on every node,
/// resuming where the previous pass stopped (`cursor`) and ending after one
/// full cycle.
struct Pass<'a> {
    cursor: &'a Mutex<(usize, u64)>,
    pattern: String,
    nodes: Vec<Option<Node>>,
    node: usize,
    at: u64,
    wrapped: bool,
    done: bool,
}

impl<'a> Pass<'a> {
    fn new(cursor: &'a Mutex<(usize, u64)>, pattern: String, nodes: Vec<Option<Node>>) -> Self {
        let (node, at) = *cursor.lock();
        let node = if nodes.is_empty() {
            0
        } else {
            node % nodes.len()
        };
        Self {
            cursor,
            pattern,
            done: nodes.is_empty(),
            nodes,
            node,
            at,
            wrapped: node == 0 && at == 0,
        }
    }

    /// Stopped early (a batch was full): the next pass resumes here.
    fn stop(self) {
        *self.cursor.lock() = if self.done {
            (0, 0)
        } else {
            (self.node, self.at)
        };
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn create(
        &self,
        record: SessionRecord,
        limit: Option<SessionLimit>,
    ) -> StoreResult<Create> {
        let fields = codec::record_fields(&record)?;
        let tag = owner_tag(record.user.as_ref(), &record.id);
        let id = hex(&record.id.0);
        let h = hex(&record.token_hash.0);
        // Cluster: the routes first, so that a route without its session
        // (a failure in between) reads as missing; `NX` is the duplicate check.
        let routes = match &self.inner.routes {
            Some(routes) => {
                let ttl = self.ttl_for(record.absolute_expires_at.0 - record.last_seen_at.0);
                let (t, i) = (format!("t:{h}"), format!("i:{id}"));
                let (a, b) = futures_util::future::join(
                    self.claim(&t, &format!("{tag} {id}"), ttl),
                    self.claim(&i, &tag, ttl),
                )
                .await;
                let (a, b) = (a?, b?);
                if !(a && b) {
                    let mut undo = Vec::new();
                    if a {
                        undo.push(self.del_cmd(&t));
                    }
                    if b {
                        undo.push(self.del_cmd(&i));
                    }
                    self.upkeep(undo).await;
                    return Ok(Create::Duplicate);
                }
                Some((routes, t, i))
            }
            None => None,
        };
        let s = &self.inner.scripts;
        let mut inv = self.call_on(&s.create, &tag, &format!("s:{id}"));
        inv.arg(&tag)
            .arg(&id)
            .arg(&h)
            .arg(record.user.as_ref().map_or("", UserId::as_str))
            .arg(record.created_at.0);
        match limit {
            Some(l) => {
                inv.arg(l.max).arg(match l.mode {
                    LimitMode::RejectNew => "reject",
                    _ => "evict",
                });
                inv.arg(l.now.0);
                ending_args(&mut inv, &l.evict);
            }
            None => {
                inv.arg("").arg("").arg("").arg("").arg("").arg("").arg("");
            }
        }
        inv.arg(record.last_seen_at.0)
            .arg(record.absolute_expires_at.0);
        pairs(&mut inv, &fields);
        let v = self.run_acked(&inv).await?;
        let (code, rest) = reply(&v)?;
        let created = match code {
            0 => Create::Duplicate,
            2 => Create::LimitReached {
                active: u32::try_from(int(at(rest, 0)?)?).unwrap_or(u32::MAX),
            },
            _ => Create::Created {
                evicted: array(at(rest, 0)?)?
                    .iter()
                    .map(some_record)
                    .collect::<StoreResult<_>>()?,
            },
        };
        if let Some((routes, t, i)) = routes {
            match &created {
                Create::Created { evicted } => {
                    routes.put(t, &format!("{tag} {id}"));
                    routes.put(i, &tag);
                    if let Some(l) = &limit {
                        let ttl = self.ending_ttl(&l.evict);
                        self.ended_upkeep(evicted.iter().map(|r| (&**r, ttl))).await;
                    }
                }
                _ => self.upkeep(vec![self.del_cmd(&t), self.del_cmd(&i)]).await,
            }
        }
        Ok(created)
    }

    async fn load(&self, hash: &TokenHash, touch: Option<Touch>) -> StoreResult<Lookup> {
        let h = hex(&hash.0);
        // One server (or Sentinel): one `GET` of the token route, which holds
        // the snapshot of the session or its tombstone. The `load` script
        // runs only when a touch is due (once per touch interval) or the
        // route has no snapshot (written by an older version).
        if self.inner.routes.is_none() {
            let mut cmd = redis::cmd("GET");
            cmd.arg(self.rkey(&format!("t:{h}")));
            let v: Option<Vec<u8>> = self.query(&cmd).await?;
            let Some(v) = v else {
                return Ok(Lookup::Missing);
            };
            match codec::snapshot(&v)? {
                // A snapshot under another hash is corrupt (`load.lua` checks
                // the same on the session hash).
                Snapshot::Session(r) if r.token_hash != *hash => {
                    return Err(Error::Decode("snapshot of another token hash").into());
                }
                Snapshot::Session(r) if !touch.is_some_and(|t| r.touch_due(t.now)) => {
                    return Ok(Lookup::Found(r));
                }
                Snapshot::Ended(t) => {
                    return Ok(match touch {
                        Some(now) if now.now >= t.keep_until => Lookup::Missing,
                        _ => Lookup::Ended(t),
                    });
                }
                Snapshot::Session(_) | Snapshot::RouteOnly => {}
            }
        }
        let now = touch.map(|t| t.now.0.to_string()).unwrap_or_default();
        let v = self
            .on_owner(
                &format!("t:{h}"),
                named("s"),
                &self.inner.scripts.load,
                |inv| {
                    inv.arg(&h).arg(&now);
                },
                false,
                code0(),
            )
            .await?;
        let (code, rest) = reply(&v)?;
        Ok(match code {
            1 => Lookup::Found(some_record(at(rest, 0)?)?),
            2 => Lookup::Ended(codec::tombstone(at(rest, 0)?)?),
            _ => Lookup::Missing,
        })
    }

    async fn get(&self, id: &SessionId) -> StoreResult<Option<Arc<SessionRecord>>> {
        let id = hex(&id.0);
        let v = self
            .on_owner(
                &format!("i:{id}"),
                tagged("s", &id),
                &self.inner.scripts.get,
                |inv| {
                    inv.arg(&id);
                },
                false,
                empty(),
            )
            .await?;
        record_of(&v)
    }

    async fn update(&self, record: SessionRecord, expected_version: u64) -> StoreResult<Update> {
        // The absolute expiry changes only with a rotation, so an update
        // needs no route upkeep on Cluster.
        let fields = codec::mutable_fields(&record)?;
        let id = hex(&record.id.0);
        let v = self
            .on_owner(
                &format!("i:{id}"),
                tagged("s", &id),
                &self.inner.scripts.update,
                |inv| {
                    inv.arg(&id).arg(expected_version).arg("");
                    inv.arg("").arg("").arg("").arg("").arg("");
                    inv.arg(record.last_seen_at.0)
                        .arg(record.absolute_expires_at.0);
                    pairs(inv, &fields);
                },
                false,
                code0(),
            )
            .await?;
        update_reply(&v)
    }

    async fn rotate(
        &self,
        record: SessionRecord,
        expected_version: u64,
        tombstone: Tombstone,
    ) -> StoreResult<Update> {
        let fields = codec::mutable_fields(&record)?;
        let id = hex(&record.id.0);
        let nh = hex(&record.token_hash.0);
        let build = |inv: &mut ScriptInvocation<'_>| {
            inv.arg(&id).arg(expected_version).arg(&nh);
            inv.arg(hex(&tombstone.session_id.0))
                .arg(tombstone.user.as_ref().map_or("", UserId::as_str))
                .arg(tombstone.reason.as_str())
                .arg(tombstone.ended_at.0)
                .arg(tombstone.keep_until.0);
            inv.arg(record.last_seen_at.0)
                .arg(record.absolute_expires_at.0);
            pairs(inv, &fields);
        };
        let Some(routes) = &self.inner.routes else {
            let mut inv = self.call(&self.inner.scripts.update);
            build(&mut inv);
            return update_reply(&self.run_acked(&inv).await?);
        };
        // Cluster: the new token's route first (`NX`: not in use), then the
        // owner's script; the route goes again if the rotation did not happen.
        let i = format!("i:{id}");
        let (mut tag, mut cached) = match routes.get(&i) {
            Some(t) => (t, true),
            None => match self.fresh_route(routes, &i).await? {
                Some(t) => (t, false),
                None => return Ok(Update::Gone),
            },
        };
        let ttl = self.ttl_for(record.absolute_expires_at.0 - record.last_seen_at.0);
        let t = format!("t:{nh}");
        loop {
            let route = format!("{tag} {id}");
            if !self.claim(&t, &route, ttl).await? {
                return Err(store_error(RedisError::from((
                    redis::ErrorKind::ResponseError,
                    "rotation to a token hash already in use",
                ))));
            }
            let mut inv = self.call_on(&self.inner.scripts.update, &tag, &format!("s:{id}"));
            build(&mut inv);
            // On an error the rotation may have happened: keep the route (one
            // without its session reads as missing).
            let v = self.run_acked(&inv).await?;
            let (code, rest) = reply(&v)?;
            if code == 1 {
                routes.put(t, &route);
                let old = std::str::from_utf8(bytes(at(rest, 1)?)?)
                    .map_err(|_| Error::Decode("token hash"))?;
                let xttl = self.ttl_for(tombstone.keep_until.0 - tombstone.ended_at.0);
                self.upkeep(vec![
                    self.extend_cmd(&format!("t:{old}"), xttl),
                    self.extend_cmd(&i, ttl),
                ])
                .await;
                return update_reply(&v);
            }
            self.upkeep(vec![self.del_cmd(&t)]).await;
            if code == 0 && cached {
                if let Some(fresh) = self.fresh_route(routes, &i).await? {
                    if fresh != tag {
                        tag = fresh;
                        cached = false;
                        continue;
                    }
                }
            }
            return update_reply(&v);
        }
    }

    async fn touch(
        &self,
        id: &SessionId,
        now: Timestamp,
    ) -> StoreResult<Option<Arc<SessionRecord>>> {
        let id = hex(&id.0);
        let v = self
            .on_owner(
                &format!("i:{id}"),
                tagged("s", &id),
                &self.inner.scripts.touch,
                |inv| {
                    inv.arg(&id).arg(now.0);
                },
                false,
                empty(),
            )
            .await?;
        record_of(&v)
    }

    async fn end(&self, id: &SessionId, ending: Ending) -> StoreResult<Option<Arc<SessionRecord>>> {
        let id = hex(&id.0);
        let v = self
            .on_owner(
                &format!("i:{id}"),
                tagged("s", &id),
                &self.inner.scripts.end,
                |inv| {
                    inv.arg(&id);
                    ending_args(inv, &ending);
                },
                true,
                empty(),
            )
            .await?;
        let ended = record_of(&v)?;
        if let Some(r) = &ended {
            self.ended_upkeep([(&**r, self.ending_ttl(&ending))]).await;
        }
        Ok(ended)
    }

    async fn end_user(
        &self,
        user: &UserId,
        except: Option<&SessionId>,
        ending: Ending,
    ) -> StoreResult<Vec<Arc<SessionRecord>>> {
        let tag = user_tag(user);
        let mut inv = self.call_on(&self.inner.scripts.end_user, &tag, "ix");
        inv.arg(&tag)
            .arg(except.map(|id| hex(&id.0)).unwrap_or_default());
        ending_args(&mut inv, &ending);
        let ended = array(&self.run_acked(&inv).await?)?
            .iter()
            .map(some_record)
            .collect::<StoreResult<Vec<_>>>()?;
        let ttl = self.ending_ttl(&ending);
        self.ended_upkeep(ended.iter().map(|r| (&**r, ttl))).await;
        Ok(ended)
    }

    async fn list_user(
        &self,
        user: &UserId,
        now: Timestamp,
    ) -> StoreResult<Vec<Arc<SessionRecord>>> {
        let tag = user_tag(user);
        let mut inv = self.call_on(&self.inner.scripts.list_user, &tag, "ix");
        inv.arg(&tag).arg(now.0);
        array(&self.run(&inv).await?)?
            .iter()
            .map(some_record)
            .collect()
    }

    async fn increment_counter(
        &self,
        id: &SessionId,
        name: &str,
        by: u64,
        limit: Option<u64>,
    ) -> StoreResult<Counter> {
        let id = hex(&id.0);
        let limit = limit.map(|l| l.to_string()).unwrap_or_default();
        let v = self
            .on_owner(
                &format!("i:{id}"),
                tagged("s", &id),
                &self.inner.scripts.counter,
                |inv| {
                    inv.arg(&id).arg(name).arg(by).arg(&limit);
                },
                false,
                code0(),
            )
            .await?;
        let (code, rest) = reply(&v)?;
        let n = |rest: &[Value]| -> StoreResult<u64> {
            u64::try_from(int(at(rest, 0)?)?).map_err(|_| Error::Decode("negative counter").into())
        };
        Ok(match code {
            1 => Counter::Incremented(n(rest)?),
            2 => Counter::LimitExceeded(n(rest)?),
            _ => Counter::Gone,
        })
    }

    async fn sweep(&self, spec: SweepSpec, max: usize) -> StoreResult<Vec<Ended>> {
        let mut pass = Pass::new(
            &self.inner.sweep_cursor,
            format!("{}{{*", self.inner.prefix),
            self.nodes().await?,
        );
        let mut ended = Vec::new();
        while ended.len() < max {
            let Some(keys) = self.next_keys(&mut pass).await? else {
                break;
            };
            let replies = self
                .sweep_batch(
                    &self.inner.scripts.sweep,
                    keys,
                    max - ended.len(),
                    |inv, left| {
                        inv.arg(spec.now.0)
                            .arg(spec.reason_ttl_ms)
                            .arg(spec.restore_ttl_ms)
                            .arg(left);
                    },
                    |v| Ok(array(v)?.len() / 2),
                )
                .await?;
            for v in &replies {
                for p in array(v)?.chunks(2) {
                    let [reason, fields] = p else {
                        return Err(Error::Decode("odd sweep reply").into());
                    };
                    let reason = std::str::from_utf8(bytes(reason)?)
                        .ok()
                        .and_then(EndReason::parse)
                        .ok_or(Error::Decode("unknown end reason"))?;
                    ended.push(Ended {
                        record: some_record(fields)?,
                        reason,
                    });
                }
            }
        }
        pass.stop();
        let ttl = self.ttl_for(spec.reason_ttl_ms);
        self.ended_upkeep(ended.iter().map(|e| (&*e.record, ttl)))
            .await;
        Ok(ended)
    }

    async fn take_restorable(
        &self,
        user: &UserId,
        now: Timestamp,
    ) -> StoreResult<Option<Restorable>> {
        let tag = user_tag(user);
        let mut inv = self.call_on(&self.inner.scripts.take_restorable, &tag, "r");
        inv.arg(&tag).arg(now.0);
        Ok(codec::restorable(&self.run(&inv).await?)?)
    }

    async fn user_data(&self, user: &UserId) -> StoreResult<Option<UserData>> {
        let key = format!("{}{{{}}}:d", self.inner.prefix, user_tag(user));
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(key).arg("v").arg("b");
        let (v, b): (Option<u64>, Option<Vec<u8>>) = self.query(&cmd).await?;
        Ok(v.map(|version| UserData {
            version,
            data: Sealed::from_bytes(b.unwrap_or_default()),
        }))
    }

    async fn set_user_data(
        &self,
        user: &UserId,
        expected_version: u64,
        data: Sealed,
    ) -> StoreResult<Result<UserData, Option<UserData>>> {
        let tag = user_tag(user);
        let mut inv = self.call_on(&self.inner.scripts.set_user_data, &tag, "d");
        inv.arg(&tag).arg(expected_version).arg(data.as_bytes());
        let v = self.run_acked(&inv).await?;
        let (code, rest) = reply(&v)?;
        let current = match rest {
            [v, b] => Some(UserData {
                version: u64::try_from(int(v)?).map_err(|_| Error::Decode("negative version"))?,
                data: Sealed::from_bytes(bytes(b)?.to_vec()),
            }),
            _ => None,
        };
        Ok(match (code, current) {
            (1, Some(d)) => Ok(d),
            (1, None) => return Err(Error::Decode("short reply").into()),
            (_, current) => Err(current),
        })
    }

    async fn create_refresh_family(&self, family: RefreshFamily) -> StoreResult<CreateFamily> {
        let sid = hex(&family.session_id.0);
        let fid = hex(&family.id.0);
        let h = hex(&family.current_hash.0);
        let fields = codec::family_fields(&family);
        let build = |inv: &mut ScriptInvocation<'_>| {
            inv.arg(&sid)
                .arg(&fid)
                .arg(&h)
                .arg(family.user.as_str())
                .arg(family.created_at.0)
                .arg(family.absolute_expires_at.0);
            pairs(inv, &fields);
        };
        let Some(routes) = &self.inner.routes else {
            let mut inv = self.call(&self.inner.scripts.create_family);
            build(&mut inv);
            return family_created(&self.run_acked(&inv).await?);
        };
        // Cluster: the session's owner from its route; the family's routes
        // (`rf:<hash>` claimed with `NX`, `sf:<session>`) before the family.
        let i = format!("i:{sid}");
        let (mut tag, mut cached) = match routes.get(&i) {
            Some(t) => (t, true),
            None => match self.fresh_route(routes, &i).await? {
                Some(t) => (t, false),
                None => return Ok(CreateFamily::SessionGone),
            },
        };
        let ttl = self.ttl_for(family.absolute_expires_at.0 - family.created_at.0);
        let rf = format!("rf:{h}");
        let sf = format!("sf:{sid}");
        loop {
            let route = format!("{tag} {fid}");
            if !self.claim(&rf, &route, ttl).await? {
                return Ok(CreateFamily::Duplicate);
            }
            self.claim(&sf, &tag, ttl).await?;
            self.query::<Value>(&self.extend_cmd(&sf, ttl)).await?;
            let mut inv =
                self.call_on(&self.inner.scripts.create_family, &tag, &format!("f:{fid}"));
            build(&mut inv);
            let created = family_created(&self.run_acked(&inv).await?)?;
            if created == CreateFamily::Created {
                routes.put(rf, &route);
                return Ok(created);
            }
            self.upkeep(vec![self.del_cmd(&rf)]).await;
            if created == CreateFamily::SessionGone && cached {
                if let Some(fresh) = self.fresh_route(routes, &i).await? {
                    if fresh != tag {
                        tag = fresh;
                        cached = false;
                        continue;
                    }
                }
            }
            return Ok(created);
        }
    }

    async fn refresh(&self, request: RefreshRequest) -> StoreResult<RefreshOutcome> {
        let h = hex(&request.presented.0);
        let nh = hex(&request.next_hash.0);
        let build = |inv: &mut ScriptInvocation<'_>| {
            inv.arg(&h)
                .arg(&nh)
                .arg(request.next_sealed.as_bytes())
                .arg(request.now.0)
                .arg(request.grace_ms);
            ending_args(inv, &request.reuse);
        };
        let v = match &self.inner.routes {
            None => {
                let mut inv = self.call(&self.inner.scripts.refresh);
                build(&mut inv);
                self.run_acked(&inv).await?
            }
            Some(routes) => {
                // Cluster: the successor's route is claimed before (with a
                // provisional TTL: the family's expiry is read in the
                // script) and kept only if this call rotated.
                let Some(route) = self.route(routes, &format!("rf:{h}")).await? else {
                    return Ok(RefreshOutcome::Missing);
                };
                let next = format!("rf:{nh}");
                if !self.claim(&next, &route, self.ttl_for(0)).await? {
                    return Err(store_error(RedisError::from((
                        redis::ErrorKind::ResponseError,
                        "rotation to a token hash already in use",
                    ))));
                }
                let v = self
                    .via_route(
                        routes,
                        &format!("rf:{h}"),
                        named("f"),
                        build,
                        &self.inner.scripts.refresh,
                        true,
                        |v| *v == code0(),
                    )
                    .await;
                match v? {
                    Some((r, v)) => {
                        if !reply(&v).is_ok_and(|(c, _)| c == 1) {
                            self.upkeep(vec![self.del_cmd(&next)]).await;
                        } else if r != route {
                            // The cached route was stale; the successor's
                            // route must name the family found.
                            let mut cmd = redis::cmd("SET");
                            cmd.arg(self.rkey(&next))
                                .arg(&*r)
                                .arg("PX")
                                .arg(self.ttl_for(0));
                            self.upkeep(vec![cmd]).await;
                        }
                        v
                    }
                    None => {
                        self.upkeep(vec![self.del_cmd(&next)]).await;
                        code0()
                    }
                }
            }
        };
        let (code, rest) = reply(&v)?;
        if code == 0 {
            return Ok(RefreshOutcome::Missing);
        }
        let family = some_family(at(rest, 0)?)?;
        let outcome = match code {
            1 => RefreshOutcome::Rotated {
                family,
                session: some_record(at(rest, 1)?)?,
            },
            2 => RefreshOutcome::Retry {
                family,
                session: some_record(at(rest, 1)?)?,
            },
            3 => RefreshOutcome::Reused {
                family,
                ended: record_of(at(rest, 1)?)?,
            },
            4 => RefreshOutcome::Expired(family),
            5 => RefreshOutcome::Revoked(family),
            _ => RefreshOutcome::SessionEnded {
                family,
                session: record_of(at(rest, 1)?)?,
            },
        };
        if self.inner.routes.is_some() {
            match &outcome {
                RefreshOutcome::Rotated { family, .. } => {
                    let ttl = self.ttl_for(family.absolute_expires_at.0 - request.now.0);
                    self.upkeep(vec![self.extend_cmd(&format!("rf:{nh}"), ttl)])
                        .await;
                }
                RefreshOutcome::Reused { ended: Some(r), .. } => {
                    self.ended_upkeep([(&**r, self.ending_ttl(&request.reuse))])
                        .await;
                }
                _ => {}
            }
        }
        Ok(outcome)
    }

    async fn revoke_refresh(
        &self,
        hash: &TokenHash,
        reason: FamilyEnd,
    ) -> StoreResult<Option<RefreshFamily>> {
        let h = hex(&hash.0);
        let v = self
            .on_owner(
                &format!("rf:{h}"),
                named("f"),
                &self.inner.scripts.revoke_family,
                |inv| {
                    inv.arg(&h).arg(reason.as_str());
                },
                true,
                empty(),
            )
            .await?;
        Ok(codec::family(&v)?)
    }

    async fn revoke_refresh_families(
        &self,
        session: &SessionId,
        reason: FamilyEnd,
    ) -> StoreResult<Vec<RefreshFamily>> {
        let sid = hex(&session.0);
        let v = self
            .on_owner(
                &format!("sf:{sid}"),
                tagged("fs", &sid),
                &self.inner.scripts.revoke_session_families,
                |inv| {
                    inv.arg(&sid).arg(reason.as_str());
                },
                true,
                empty(),
            )
            .await?;
        array(&v)?.iter().map(some_family).collect()
    }

    async fn sweep_refresh(&self, now: Timestamp, max: usize) -> StoreResult<usize> {
        let mut pass = Pass::new(
            &self.inner.refresh_cursor,
            format!("{}{{*}}:f:*", self.inner.prefix),
            self.nodes().await?,
        );
        let mut n = 0usize;
        while n < max {
            let Some(keys) = self.next_keys(&mut pass).await? else {
                break;
            };
            let replies = self
                .sweep_batch(
                    &self.inner.scripts.sweep_families,
                    keys,
                    max - n,
                    |inv, left| {
                        inv.arg(now.0).arg(left);
                    },
                    |v| Ok(usize::try_from(int(v)?).unwrap_or(0)),
                )
                .await?;
            for v in &replies {
                n += usize::try_from(int(v)?).unwrap_or(0);
            }
        }
        pass.stop();
        Ok(n)
    }

    async fn append_audit(&self, entries: Vec<AuditEntry>) -> StoreResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut inv = self.call_on(&self.inner.scripts.append_audit, "audit", "log");
        for e in &entries {
            let json = serde_json::to_vec(e).map_err(Error::Json)?;
            inv.arg(e.at.0).arg(json);
        }
        self.run(&inv).await.map(drop)
    }

    async fn audit(&self, query: &AuditQuery) -> StoreResult<Vec<AuditRecord>> {
        let key = format!("{}{{audit}}:log", self.inner.prefix);
        let mut out = Vec::new();
        let mut max = match query.before {
            Some(b) => format!("({b}"),
            None => "+inf".to_owned(),
        };
        while out.len() < query.limit {
            let mut cmd = redis::cmd("ZREVRANGEBYSCORE");
            cmd.arg(&key)
                .arg(&max)
                .arg("-inf")
                .arg("LIMIT")
                .arg(0)
                .arg(256);
            let batch: Vec<Vec<u8>> = self.query(&cmd).await?;
            if batch.is_empty() {
                break;
            }
            let mut last_seq = 0;
            for member in &batch {
                let rec = audit_record(member)?;
                last_seq = rec.seq;
                if query.matches(&rec) && out.len() < query.limit {
                    out.push(rec);
                }
            }
            max = format!("({last_seq}");
        }
        Ok(out)
    }

    async fn sweep_audit(&self, before: Timestamp, max: usize) -> StoreResult<usize> {
        let mut inv = self.call_on(&self.inner.scripts.sweep_audit, "audit", "log");
        inv.arg(before.0).arg(max);
        let v = self.run(&inv).await?;
        Ok(usize::try_from(int(&v)?).unwrap_or(0))
    }
}

/// `<seq>|<at>|<entry JSON>`, as `append_audit.lua` writes it.
fn audit_record(member: &[u8]) -> StoreResult<AuditRecord> {
    let mut parts = member.splitn(3, |b| *b == b'|');
    let seq = parts
        .next()
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse().ok())
        .ok_or(Error::Decode("audit sequence number"))?;
    let json = parts.nth(1).ok_or(Error::Decode("audit entry"))?;
    let entry = serde_json::from_slice(json).map_err(Error::Json)?;
    Ok(AuditRecord { seq, entry })
}

fn family_created(v: &Value) -> StoreResult<CreateFamily> {
    Ok(match reply(v)?.0 {
        1 => CreateFamily::Created,
        2 => CreateFamily::Duplicate,
        _ => CreateFamily::SessionGone,
    })
}

fn update_reply(v: &Value) -> StoreResult<Update> {
    let (code, rest) = reply(v)?;
    Ok(match code {
        1 => Update::Updated(some_record(at(rest, 0)?)?),
        2 => Update::Conflict(some_record(at(rest, 0)?)?),
        _ => Update::Gone,
    })
}
