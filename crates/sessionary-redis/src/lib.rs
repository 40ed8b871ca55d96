//! A Redis store for Sessionary: [`RedisStore`].
//!
//! Sessions, tombstones, user data, restorable data, refresh token families
//! and the audit log live in Redis. Every operation of
//! [`SessionStore`] is one Lua script (one round trip, atomic on the
//! server), including `load` with a due sliding touch. On a standalone
//! server (`redis://`) the connection is a redis-rs `ConnectionManager`: one
//! multiplexed connection that reconnects by itself after the server went
//! away. Behind Redis Sentinel (`redis+sentinel://`) it is one multiplexed
//! connection to the primary the sentinels name, whose role is checked, and
//! which is replaced after a failover (`+switch-master`, `READONLY`, a broken
//! connection). While Redis is away, operations fail with
//! [`StoreError::Unavailable`] within the configured timeout instead of
//! hanging.
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
//! outside the tags. See `ARCHITECTURE.md` ("RedisStore") for the table and
//! what Cluster and Sentinel will need.
//!
//! # Expiry
//!
//! Expiry is computed from the timestamps in the record, in the scripts, never
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

mod codec;
mod con;
mod fanout;
mod scripts;
mod sentinel;
mod target;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
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

use crate::codec::{array, bytes, hex, int};
use crate::con::Con;
use crate::scripts::Scripts;
use crate::sentinel::SentinelCon;
use crate::target::Target;

/// Why connecting failed, or a stored value could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL is not a Redis URL (`redis://[user:password@]host[:port][/db]`
    /// or `redis+sentinel://[user:password@]host:port[,host:port...]/<master>[/db]`).
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
    } else {
        StoreError::backend(e)
    }
}

/// A standalone server's connection: a `ConnectionManager` that reconnects
/// by itself.
async fn direct(url: &str, options: &RedisOptions) -> Result<ConnectionManager, Error> {
    let client = redis::Client::open(url).map_err(Error::Url)?;
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
        Error::Connect(RedisError::from((
            redis::ErrorKind::IoError,
            "connection timed out",
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
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            key_prefix: "sessionary:".to_owned(),
            timeout: Duration::from_secs(2),
            gc_grace: Duration::from_secs(7 * 86_400),
            replica_acks: None,
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
    /// operation as well.
    #[must_use]
    pub fn with_replica_acks(mut self, replicas: u32, timeout: Duration) -> Self {
        self.replica_acks = (replicas > 0).then_some((replicas, timeout));
        self
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

/// A [`SessionStore`] on Redis (standalone or behind Sentinel). Clones share
/// the connection.
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
    /// Where the next sweep resumes its `SCAN` (0: from the start).
    sweep_cursor: AtomicU64,
    refresh_cursor: AtomicU64,
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
    /// Connects to the Redis server at `url`, waiting until the first
    /// connection is up (within the options' timeout). Later disconnections
    /// are repaired by themselves.
    ///
    /// - `redis://[user:password@]host[:port][/db]`: one server.
    /// - `redis+sentinel://[user:password@]host:port[,host:port...]/<master>[/db]`:
    ///   the primary that the sentinels at `host:port...` know as `<master>`,
    ///   followed across failovers; the credentials and database are the data
    ///   nodes' (the sentinels are asked without). To lose no acknowledged
    ///   write on a failover, combine it with
    ///   [`RedisOptions::with_replica_acks`] set to the number of replicas
    ///   (see `ARCHITECTURE.md`, "Sentinel").
    ///
    /// # Errors
    ///
    /// [`Error::Url`] for a malformed URL (or a `redis+cluster://` one: not
    /// supported yet), [`Error::KeyPrefix`] for a prefix
    /// [`RedisOptions::with_key_prefix`] refuses, [`Error::Connect`] if the
    /// server (or, with Sentinel, a primary) cannot be reached.
    pub async fn connect(url: &str, options: RedisOptions) -> Result<Self, Error> {
        RedisOptions::check_key_prefix(&options.key_prefix)?;
        let con = match Target::parse(url)? {
            Target::Standalone(url) => Con::Direct(direct(&url, &options).await?),
            Target::Sentinel {
                sentinels,
                master,
                db,
                credentials,
            } => Con::Sentinel(
                SentinelCon::connect(&sentinels, &master, db, &credentials, options.timeout)
                    .await?,
            ),
            Target::Cluster(_) => {
                return Err(Error::Url(RedisError::from((
                    redis::ErrorKind::InvalidClientConfig,
                    "Cluster is not supported yet",
                ))));
            }
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
                sweep_cursor: AtomicU64::new(0),
                refresh_cursor: AtomicU64::new(0),
            }),
        })
    }

    /// The key prefix.
    pub fn key_prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// Deletes every key under this store's prefix (with `SCAN` + `UNLINK`),
    /// e.g. at the end of a test. Returns how many keys were deleted.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if Redis cannot be reached.
    pub async fn clear(&self) -> StoreResult<usize> {
        let pattern = format!("{}*", self.inner.prefix);
        let mut cursor = 0u64;
        let mut n = 0;
        loop {
            let (next, keys) = self.scan(cursor, &pattern).await?;
            if !keys.is_empty() {
                n += keys.len();
                let mut cmd = redis::cmd("UNLINK");
                cmd.arg(&keys);
                self.query::<Value>(&cmd).await?;
            }
            cursor = next;
            if cursor == 0 {
                return Ok(n);
            }
        }
    }

    /// Starts a script call with the prefix and grace arguments every script takes.
    fn call<'a>(&'a self, s: &'a redis::Script) -> ScriptInvocation<'a> {
        let mut inv = s.prepare_invoke();
        inv.arg(&self.inner.prefix).arg(&self.inner.grace_ms);
        inv
    }

    async fn run(&self, inv: &ScriptInvocation<'_>) -> StoreResult<Value> {
        let mut con = self.inner.con.clone();
        match tokio::time::timeout(self.inner.timeout, inv.invoke_async::<Value>(&mut con)).await {
            Ok(r) => r.map_err(store_error),
            Err(_) => Err(StoreError::unavailable(TimedOut(self.inner.timeout))),
        }
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
        let mut con = self.inner.con.clone();
        match tokio::time::timeout(self.inner.timeout, cmd.query_async::<T>(&mut con)).await {
            Ok(r) => r.map_err(store_error),
            Err(_) => Err(StoreError::unavailable(TimedOut(self.inner.timeout))),
        }
    }

    async fn scan(&self, cursor: u64, pattern: &str) -> StoreResult<(u64, Vec<Vec<u8>>)> {
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
            let (next, keys) = self.scan(pass.at, &pass.pattern).await?;
            pass.at = next;
            if next == 0 {
                pass.done = pass.wrapped;
                pass.wrapped = true;
            }
            if !keys.is_empty() {
                return Ok(Some(keys));
            }
        }
        Ok(None)
    }
}

/// One pass of `SCAN` over the keys matching `pattern`, resuming where the
/// previous pass stopped (`cursor`) and ending after one full cycle.
struct Pass<'a> {
    cursor: &'a AtomicU64,
    pattern: String,
    at: u64,
    wrapped: bool,
    done: bool,
}

impl<'a> Pass<'a> {
    fn new(cursor: &'a AtomicU64, pattern: String) -> Self {
        let at = cursor.load(Ordering::Relaxed);
        Self {
            cursor,
            pattern,
            at,
            wrapped: at == 0,
            done: false,
        }
    }

    /// Stopped early (a batch was full): the next pass resumes here.
    fn stop(self) {
        let at = if self.done { 0 } else { self.at };
        self.cursor.store(at, Ordering::Relaxed);
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
        let s = &self.inner.scripts;
        let mut inv = self.call(&s.create);
        inv.arg(owner_tag(record.user.as_ref(), &record.id))
            .arg(hex(&record.id.0))
            .arg(hex(&record.token_hash.0))
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
        Ok(match code {
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
        })
    }

    async fn load(&self, hash: &TokenHash, touch: Option<Touch>) -> StoreResult<Lookup> {
        let mut inv = self.call(&self.inner.scripts.load);
        inv.arg(hex(&hash.0))
            .arg(touch.map(|t| t.now.0.to_string()).unwrap_or_default());
        let v = self.run(&inv).await?;
        let (code, rest) = reply(&v)?;
        Ok(match code {
            1 => Lookup::Found(some_record(at(rest, 0)?)?),
            2 => Lookup::Ended(codec::tombstone(at(rest, 0)?)?),
            _ => Lookup::Missing,
        })
    }

    async fn get(&self, id: &SessionId) -> StoreResult<Option<Arc<SessionRecord>>> {
        let mut inv = self.call(&self.inner.scripts.get);
        inv.arg(hex(&id.0));
        record_of(&self.run(&inv).await?)
    }

    async fn update(&self, record: SessionRecord, expected_version: u64) -> StoreResult<Update> {
        let fields = codec::mutable_fields(&record)?;
        let mut inv = self.call(&self.inner.scripts.update);
        inv.arg(hex(&record.id.0)).arg(expected_version).arg("");
        inv.arg("").arg("").arg("").arg("").arg("");
        inv.arg(record.last_seen_at.0)
            .arg(record.absolute_expires_at.0);
        pairs(&mut inv, &fields);
        update_reply(&self.run(&inv).await?)
    }

    async fn rotate(
        &self,
        record: SessionRecord,
        expected_version: u64,
        tombstone: Tombstone,
    ) -> StoreResult<Update> {
        let fields = codec::mutable_fields(&record)?;
        let mut inv = self.call(&self.inner.scripts.update);
        inv.arg(hex(&record.id.0))
            .arg(expected_version)
            .arg(hex(&record.token_hash.0));
        inv.arg(hex(&tombstone.session_id.0))
            .arg(tombstone.user.as_ref().map_or("", UserId::as_str))
            .arg(tombstone.reason.as_str())
            .arg(tombstone.ended_at.0)
            .arg(tombstone.keep_until.0);
        inv.arg(record.last_seen_at.0)
            .arg(record.absolute_expires_at.0);
        pairs(&mut inv, &fields);
        update_reply(&self.run_acked(&inv).await?)
    }

    async fn touch(
        &self,
        id: &SessionId,
        now: Timestamp,
    ) -> StoreResult<Option<Arc<SessionRecord>>> {
        let mut inv = self.call(&self.inner.scripts.touch);
        inv.arg(hex(&id.0)).arg(now.0);
        record_of(&self.run(&inv).await?)
    }

    async fn end(&self, id: &SessionId, ending: Ending) -> StoreResult<Option<Arc<SessionRecord>>> {
        let mut inv = self.call(&self.inner.scripts.end);
        inv.arg(hex(&id.0));
        ending_args(&mut inv, &ending);
        record_of(&self.run_acked(&inv).await?)
    }

    async fn end_user(
        &self,
        user: &UserId,
        except: Option<&SessionId>,
        ending: Ending,
    ) -> StoreResult<Vec<Arc<SessionRecord>>> {
        let mut inv = self.call(&self.inner.scripts.end_user);
        inv.arg(user_tag(user))
            .arg(except.map(|id| hex(&id.0)).unwrap_or_default());
        ending_args(&mut inv, &ending);
        array(&self.run_acked(&inv).await?)?
            .iter()
            .map(some_record)
            .collect()
    }

    async fn list_user(
        &self,
        user: &UserId,
        now: Timestamp,
    ) -> StoreResult<Vec<Arc<SessionRecord>>> {
        let mut inv = self.call(&self.inner.scripts.list_user);
        inv.arg(user_tag(user)).arg(now.0);
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
        let mut inv = self.call(&self.inner.scripts.counter);
        inv.arg(hex(&id.0))
            .arg(name)
            .arg(by)
            .arg(limit.map(|l| l.to_string()).unwrap_or_default());
        let v = self.run(&inv).await?;
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
        );
        let mut ended = Vec::new();
        while ended.len() < max {
            let Some(keys) = self.next_keys(&mut pass).await? else {
                break;
            };
            let mut inv = self.call(&self.inner.scripts.sweep);
            inv.arg(spec.now.0)
                .arg(spec.reason_ttl_ms)
                .arg(spec.restore_ttl_ms)
                .arg(max - ended.len())
                .arg(keys);
            let v = self.run(&inv).await?;
            for p in array(&v)?.chunks(2) {
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
        pass.stop();
        Ok(ended)
    }

    async fn take_restorable(
        &self,
        user: &UserId,
        now: Timestamp,
    ) -> StoreResult<Option<Restorable>> {
        let mut inv = self.call(&self.inner.scripts.take_restorable);
        inv.arg(user_tag(user)).arg(now.0);
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
        let mut inv = self.call(&self.inner.scripts.set_user_data);
        inv.arg(user_tag(user))
            .arg(expected_version)
            .arg(data.as_bytes());
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
        let mut inv = self.call(&self.inner.scripts.create_family);
        inv.arg(hex(&family.session_id.0))
            .arg(hex(&family.id.0))
            .arg(hex(&family.current_hash.0))
            .arg(family.user.as_str())
            .arg(family.created_at.0)
            .arg(family.absolute_expires_at.0);
        pairs(&mut inv, &codec::family_fields(&family));
        let v = self.run_acked(&inv).await?;
        Ok(match reply(&v)?.0 {
            1 => CreateFamily::Created,
            2 => CreateFamily::Duplicate,
            _ => CreateFamily::SessionGone,
        })
    }

    async fn refresh(&self, request: RefreshRequest) -> StoreResult<RefreshOutcome> {
        let mut inv = self.call(&self.inner.scripts.refresh);
        inv.arg(hex(&request.presented.0))
            .arg(hex(&request.next_hash.0))
            .arg(request.next_sealed.as_bytes())
            .arg(request.now.0)
            .arg(request.grace_ms);
        ending_args(&mut inv, &request.reuse);
        let v = self.run_acked(&inv).await?;
        let (code, rest) = reply(&v)?;
        if code == 0 {
            return Ok(RefreshOutcome::Missing);
        }
        let family = some_family(at(rest, 0)?)?;
        Ok(match code {
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
        })
    }

    async fn revoke_refresh(
        &self,
        hash: &TokenHash,
        reason: FamilyEnd,
    ) -> StoreResult<Option<RefreshFamily>> {
        let mut inv = self.call(&self.inner.scripts.revoke_family);
        inv.arg(hex(&hash.0)).arg(reason.as_str());
        Ok(codec::family(&self.run_acked(&inv).await?)?)
    }

    async fn revoke_refresh_families(
        &self,
        session: &SessionId,
        reason: FamilyEnd,
    ) -> StoreResult<Vec<RefreshFamily>> {
        let mut inv = self.call(&self.inner.scripts.revoke_session_families);
        inv.arg(hex(&session.0)).arg(reason.as_str());
        array(&self.run_acked(&inv).await?)?
            .iter()
            .map(some_family)
            .collect()
    }

    async fn sweep_refresh(&self, now: Timestamp, max: usize) -> StoreResult<usize> {
        let mut pass = Pass::new(
            &self.inner.refresh_cursor,
            format!("{}{{*}}:f:*", self.inner.prefix),
        );
        let mut n = 0usize;
        while n < max {
            let Some(keys) = self.next_keys(&mut pass).await? else {
                break;
            };
            let mut inv = self.call(&self.inner.scripts.sweep_families);
            inv.arg(now.0).arg(max - n).arg(keys);
            n += usize::try_from(int(&self.run(&inv).await?)?).unwrap_or(0);
        }
        pass.stop();
        Ok(n)
    }

    async fn append_audit(&self, entries: Vec<AuditEntry>) -> StoreResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut inv = self.call(&self.inner.scripts.append_audit);
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
        let mut inv = self.call(&self.inner.scripts.sweep_audit);
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

fn update_reply(v: &Value) -> StoreResult<Update> {
    let (code, rest) = reply(v)?;
    Ok(match code {
        1 => Update::Updated(some_record(at(rest, 0)?)?),
        2 => Update::Conflict(some_record(at(rest, 0)?)?),
        _ => Update::Gone,
    })
}
