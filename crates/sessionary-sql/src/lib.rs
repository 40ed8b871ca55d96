//! SQL stores for Sessionary: [`SqlStore`], a [`SessionStore`] on SQLite or
//! PostgreSQL via sqlx.
//!
//! SQLite is the embedded, durable default of `sessionary serve`: one file in a
//! data folder, in WAL mode, no server to run. PostgreSQL is for several nodes
//! sharing one store ([`SqlStore::connect_postgres`]).
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use sessionary_core::{NewSession, SessionManager, UserId};
//! use sessionary_sql::SqlStore;
//!
//! # let dir = std::env::temp_dir().join(format!("sessionary-sql-doc-{}", std::process::id()));
//! // Creates the folder, the file and the schema if needed.
//! let store = SqlStore::open_sqlite(dir.join("sessions.db")).await?;
//! let manager = SessionManager::builder(Arc::new(store)).build()?;
//!
//! let issued = manager.create(NewSession::user(UserId::new("alice")?)).await?;
//! let session = manager.verify(&issued.token.encode()).await?;
//! assert_eq!(session.user.as_ref().map(UserId::as_str), Some("alice"));
//! # drop(manager);
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # Backends
//!
//! | constructor | database | use |
//! |---|---|---|
//! | [`SqlStore::open_sqlite`] | a SQLite file (WAL, `synchronous=FULL`), shareable with tools; every touch written at once | a file other processes may read or write; slower `verify` |
//! | [`SqlStore::open_sqlite_with`] + [`SqliteOptions::with_exclusive_cache`] | the same file, locked for this process, reads of sessions served from an in-process write-through cache, touches written behind (every second by default) | one `sessionary` process that owns its data folder; fastest `verify` |
//! | [`SqlStore::sqlite_in_memory`] | a private in-memory SQLite database; every touch written at once | tests |
//! | [`SqlStore::connect_postgres`], [`SqlStore::connect_postgres_with`] + [`PostgresOptions`] | a PostgreSQL database (a pool of connections); every touch written at once | several `sessionary` nodes sharing sessions |
//!
//! This crate has no cargo features: both backends are always built.
//!
//! # Schema
//!
//! The same tables on both databases (BLOBs are `bytea` and integers
//! `bigint` on PostgreSQL), created and upgraded by embedded migrations
//! (`migrations/sqlite/`, `migrations/postgres/`) when the store opens. The
//! session tables:
//! `sessions` (unique indexes on the session id and the token hash, indexes by
//! user and by expiry; the sealed data as a BLOB, the other fields as columns,
//! roles and counters as JSON text, `exempt_from_limit` for sessions the
//! concurrent-session limit skips), `tombstones` (by token hash, with
//! `keep_until`), `user_data` (version and sealed blob per user) and
//! `restorable` (the data of a user's expired session, with `keep_until`).
//!
//! Besides them: refresh token families (`refresh_families`, `refresh_hashes`)
//! and the audit log (`audit_log`).
//!
//! # Concurrency on PostgreSQL
//!
//! Every operation is one transaction (or one statement) in `READ COMMITTED`,
//! on any connection of the pool, so nodes sharing the database write in
//! parallel. A check and the write it guards hold the row lock of the session
//! (`SELECT ... FOR UPDATE`); operations on all of a user's sessions (a
//! concurrent-session limit at sign-in, ending a user's sessions) first take a
//! transaction-level advisory lock on the user, so sign-ins of one user count
//! one after another on every node. `load` is one statement, one round trip:
//! the session by token hash, touched in the same statement when the touch is
//! due, or else its tombstone. Sweeps skip rows other transactions hold.
//!
//! # Concurrency on SQLite
//!
//! Every operation of [`SessionStore`] is one transaction. Writes run one at a
//! time on a single writer connection, each inside `BEGIN IMMEDIATE`, so they
//! queue (first come, first served) instead of failing with `SQLITE_BUSY`, and a
//! check (a version, a concurrent-session limit) and the write it guards are one
//! step. Reads run on separate reader connections, which in WAL mode see the
//! last commit and never wait for the writer. The hot path, `load` by token
//! hash, is one indexed query on a prepared statement; a due touch adds one
//! single-statement compare-and-set on the writer (a full transaction only if
//! the row changed in between). A busy timeout of 10 s covers other processes
//! writing the same file. Connections are opened once and kept for the life of
//! the store.
//!
//! # Touches with the exclusive cache (write-behind)
//!
//! With [`SqliteOptions::with_exclusive_cache`], a due touch in
//! [`SessionStore::load`] costs no database access: it moves `last_seen_at`
//! in the cached record at once (so every later `load`, `get` and
//! `list_user` of this store sees it) and is recorded as *pending*. A
//! background task writes all pending touches every
//! [flush interval](SqliteOptions::with_touch_flush_interval) (1 s by
//! default), and on [`SqlStore::close`]: one transaction (and one fsync) for
//! up to 1024 touches, so other writes wait at most that long. Every other operation takes pending
//! touches into account: `update` and `rotate` keep the later `last_seen_at`
//! of the caller's record, the row and the pending touch; `sweep` writes
//! pending touches before it looks for expired sessions, so a session kept
//! alive by a touch is never swept; the concurrent-session limit counts such
//! a session as live; `end` drops its pending touch, and a flush only ever
//! moves `last_seen_at` forward on rows that still exist, so an ended session
//! is never written to or brought back.
//!
//! Durability of touches is the one thing this trades. Creates, updates,
//! rotations, ends and explicit extends ([`SessionStore::touch`]) commit
//! before they return, with `synchronous=FULL`, as before. Pending touches
//! live only in memory until their flush: a crash (or a process killed
//! without [`SqlStore::close`]) loses at most one flush interval of recorded
//! activity, so the sessions concerned expire up to that much *earlier* than
//! they would have (back at their previous `last_seen_at`). That is the safe
//! direction: no session ever outlives its timeouts because of a crash.
//! Dropping the last clone without `close` asks the background task to flush
//! and close, which happens only if the tokio runtime keeps running; call
//! [`SqlStore::close`] on shutdown.
//!
//! Without the cache, touches are written at once, as the file may be shared:
//! another process (a second `sessionary`, a script) must see a session's
//! activity before it sweeps, lists or limits it, and touches pending in this
//! process would be invisible to it. That mode is for shared files and is
//! slower (every `load` is a database read, every due touch a commit).
//!
//! # Security model
//!
//! The store sees what [`SessionStore`] hands it: token *hashes*, never tokens,
//! and session and user data already sealed (AES-256-GCM) by the core's key
//! ring. A copy of the database file therefore gives no usable token and no
//! plaintext data; it does hold user ids, roles, device details and each
//! session's CSRF secret (useless without the session token). Commits use
//! `synchronous=FULL`, so a logout or revocation that returned survives a crash
//! or power cut: an ended session never comes back. (Touches written behind
//! are the exception, in the safe direction: see above.)
//!
//! On PostgreSQL the same holds of a dump or a replica; durability of a commit
//! is the server's (`synchronous_commit`, on by default). The connection URL
//! may carry a password: it is never logged nor put into errors, and the
//! store's `Debug` shows only pool counts. Connections use no TLS in this
//! build: keep the database on a trusted network or a Unix socket.
//!
//! # Errors
//!
//! Database failures become [`StoreError`]s with the sqlx error kept as the
//! source: connection, pool, I/O, busy and disk-full errors are
//! [`StoreError::Unavailable`], undecodable columns and a damaged file
//! [`StoreError::Corrupt`], anything else [`StoreError::Backend`]. On
//! PostgreSQL, `Unavailable` also covers refused credentials, a missing
//! database, a server shutting down or read-only, too many connections,
//! statement and lock timeouts, deadlocks and serialisation failures (the
//! operation had no effect and may be retried); damaged data or indexes
//! (`XX001`, `XX002`) are `Corrupt`. Values this
//! crate refuses itself carry an [`Error`] as their source.

#![deny(missing_docs)]

mod cache;
mod codec;
mod error;
mod fanout;
mod pool;
mod postgres;
mod sqlite;
mod touches;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sessionary_core::audit::{AuditEntry, AuditQuery, AuditRecord};
use sessionary_core::record::{Restorable, Tombstone, UserData};
use sessionary_core::refresh::{
    CreateFamily, FamilyEnd, RefreshFamily, RefreshOutcome, RefreshRequest,
};
use sessionary_core::store::{
    Counter, Create, Ended, Ending, Lookup, SessionLimit, StoreResult, SweepSpec, Touch, Update,
};
use sessionary_core::{
    Sealed, SessionId, SessionRecord, SessionStore, StoreError, Timestamp, TokenHash, UserId,
};

pub use crate::error::Error;
pub use crate::fanout::{DEFAULT_CHANNEL, PgFanout};
use crate::postgres::{PgStore, PoolSettings};
use crate::sqlite::SqliteStore;

/// Runs `$call` on the backend's store, bound to `$s`, whichever it is.
macro_rules! dispatch {
    ($self:ident, $s:ident => $call:expr) => {
        match &*$self.backend {
            Backend::Sqlite($s) => $call,
            Backend::Postgres($s) => $call,
        }
    };
}

/// A [`SessionStore`] in a SQL database. Clones share the same database.
///
/// See the [crate docs](crate) for the schema and how operations stay atomic.
///
/// # Examples
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use sessionary_core::SessionStore;
/// use sessionary_sql::SqlStore;
///
/// let store: Arc<dyn SessionStore> = Arc::new(SqlStore::sqlite_in_memory().await?);
/// # Ok::<(), sessionary_core::StoreError>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct SqlStore {
    backend: Arc<Backend>,
}

/// The database behind a [`SqlStore`]; one variant per supported database.
#[derive(Debug)]
enum Backend {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl SqlStore {
    /// Opens a SQLite database file, creating the file and its parent folders if
    /// needed, and brings its schema up to date. The database is put in WAL mode.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the folder or file cannot be created or
    /// opened, [`StoreError::Corrupt`] if the file is not a SQLite database, and
    /// [`StoreError::Backend`] if a migration fails.
    pub async fn open_sqlite(path: impl AsRef<Path>) -> Result<SqlStore, StoreError> {
        Self::open_sqlite_with(path, SqliteOptions::new()).await
    }

    /// Like [`Self::open_sqlite`], with [`SqliteOptions`].
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use sessionary_sql::{SqlStore, SqliteOptions};
    ///
    /// # let dir = std::env::temp_dir().join(format!("sessionary-sql-doc-opt-{}", std::process::id()));
    /// // `sessionary serve` owns its data folder: serve reads from memory.
    /// let store =
    ///     SqlStore::open_sqlite_with(dir.join("sessions.db"), SqliteOptions::new().with_exclusive_cache(true))
    ///         .await?;
    /// # store.close().await;
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok::<(), sessionary_core::StoreError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Self::open_sqlite`]; with the exclusive cache also
    /// [`StoreError::Unavailable`] when another process (or another store in
    /// this one) has the file open, after the busy timeout (10 s).
    pub async fn open_sqlite_with(
        path: impl AsRef<Path>,
        options: SqliteOptions,
    ) -> Result<SqlStore, StoreError> {
        Ok(Self::from_backend(Backend::Sqlite(
            SqliteStore::open_file(
                path.as_ref(),
                options.exclusive_cache,
                options.touch_flush_interval,
            )
            .await?,
        )))
    }

    /// A private in-memory SQLite database, for tests. It lives as long as the
    /// store and its clones; one connection serves every operation.
    ///
    /// # Errors
    ///
    /// [`StoreError`] if SQLite cannot open the database or create the schema.
    pub async fn sqlite_in_memory() -> Result<SqlStore, StoreError> {
        Ok(Self::from_backend(Backend::Sqlite(
            SqliteStore::in_memory().await?,
        )))
    }

    /// Closes the database: waits for operations in flight, writes the
    /// touches still pending (with the exclusive cache), then closes every
    /// connection (SQLite checkpoints the WAL into the main file when the last
    /// one closes). Affects all clones; later operations fail with
    /// [`StoreError::Unavailable`]. Dropping the last clone also closes the
    /// database, without waiting; pending touches are then written only if the
    /// tokio runtime keeps running long enough (see the
    /// [crate docs](crate#touches-with-the-exclusive-cache-write-behind)).
    pub async fn close(&self) {
        dispatch!(self, s => s.close().await)
    }

    /// Writes the touches recorded in memory and not yet written, now (one
    /// transaction per 1024), and returns how many sessions had one pending. Nothing to
    /// do (`Ok(0)`) unless the store uses the exclusive cache.
    ///
    /// Not needed in normal use: a background task does this every
    /// [flush interval](SqliteOptions::with_touch_flush_interval), and
    /// [`Self::close`] does it last. Useful to tests and benchmarks that
    /// control time.
    ///
    /// # Errors
    ///
    /// [`StoreError`] if the transaction fails; the touches then stay pending.
    pub async fn flush_touches(&self) -> Result<usize, StoreError> {
        match &*self.backend {
            Backend::Sqlite(s) => s.flush_touches().await,
            // Touches are written at once on PostgreSQL.
            Backend::Postgres(_) => Ok(0),
        }
    }

    /// Connects to a PostgreSQL database and brings its schema up to date
    /// (embedded migrations, run under sqlx's advisory lock, so several nodes
    /// may start at once). `url` is a libpq-style URL,
    /// `postgres://user:password@host:5432/database`; its parameters (for
    /// example `options=-c search_path=sessionary`) are honoured. The store
    /// is a pool of [`PostgresOptions::DEFAULT_MAX_CONNECTIONS`] connections at most,
    /// opened on demand; see [`Self::connect_postgres_with`].
    ///
    /// Connections are plain TCP (or a Unix socket): this build has no TLS
    /// for PostgreSQL, so use it on a trusted network or a local socket.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use sessionary_sql::SqlStore;
    ///
    /// let store = SqlStore::connect_postgres("postgres://sessionary@127.0.0.1:5432/sessionary").await?;
    /// # Ok::<(), sessionary_core::StoreError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the server cannot be reached or refuses
    /// the credentials or database within the acquire timeout,
    /// [`StoreError::Backend`] if the URL is malformed or a migration fails.
    /// Errors never include the URL (it may hold a password).
    pub async fn connect_postgres(url: &str) -> Result<SqlStore, StoreError> {
        Self::connect_postgres_with(url, PostgresOptions::new()).await
    }

    /// Like [`Self::connect_postgres`], with [`PostgresOptions`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use sessionary_sql::{PostgresOptions, SqlStore};
    ///
    /// let options = PostgresOptions::new()
    ///     .with_max_connections(20)
    ///     .with_statement_timeout(Some(Duration::from_secs(2)));
    /// let store =
    ///     SqlStore::connect_postgres_with("postgres://sessionary@db.internal/sessionary", options).await?;
    /// # Ok::<(), sessionary_core::StoreError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Self::connect_postgres`].
    pub async fn connect_postgres_with(
        url: &str,
        options: PostgresOptions,
    ) -> Result<SqlStore, StoreError> {
        let settings = PoolSettings {
            max_connections: options.max_connections,
            acquire_timeout: options.acquire_timeout,
            statement_timeout: options.statement_timeout,
        };
        Ok(Self::from_backend(Backend::Postgres(
            PgStore::connect(url, settings).await?,
        )))
    }

    fn from_backend(backend: Backend) -> Self {
        Self {
            backend: Arc::new(backend),
        }
    }
}

/// How [`SqlStore::open_sqlite_with`] opens a SQLite file. The default is what
/// [`SqlStore::open_sqlite`] does.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SqliteOptions {
    exclusive_cache: bool,
    touch_flush_interval: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            exclusive_cache: false,
            touch_flush_interval: Self::DEFAULT_TOUCH_FLUSH_INTERVAL,
        }
    }
}

impl SqliteOptions {
    /// How often touches are written with the exclusive cache, by default.
    pub const DEFAULT_TOUCH_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

    /// The defaults: the file may be shared with other processes (for example a
    /// backup tool or the `sqlite3` shell), reads go to the database.
    pub fn new() -> Self {
        Self::default()
    }

    /// Owns the file and serves session reads from memory.
    ///
    /// The store takes the file for itself (`PRAGMA locking_mode=EXCLUSIVE`:
    /// no other process can read or write it while the store is open) and keeps
    /// the session records it reads or writes in an in-process write-through
    /// cache. Since nothing else can change the file, a cached record is exactly
    /// the committed row, so `load` and `get` of a cached session answer from
    /// memory, without a database round trip. A touch that is due is applied
    /// to the cached record at once and written behind, with the other touches
    /// of the [flush interval](Self::with_touch_flush_interval), in one
    /// transaction. Every write and every miss still go to SQLite in one
    /// transaction, so the atomicity of every operation and the durability of
    /// everything but touches are unchanged.
    ///
    /// # Trade-offs
    ///
    /// - Every database access of the store runs on one connection (no separate
    ///   readers), so misses, lists and writes queue behind each other.
    /// - Memory grows with the sessions used since the store opened (one shared
    ///   record per session, like `MemoryStore`); ended and swept sessions leave
    ///   the cache.
    /// - Tools cannot open the file while the store runs; stop it first (or
    ///   copy the file for a backup only while it is closed).
    /// - Sessions are never shared between processes: use it only where one
    ///   `sessionary` process owns its data folder.
    /// - A crash loses the touches of at most one flush interval: those
    ///   sessions may expire up to that much earlier, never later (see the
    ///   [crate docs](crate#touches-with-the-exclusive-cache-write-behind)).
    ///   Call [`SqlStore::close`] on shutdown to write them.
    /// - Touches are written behind only when the store is opened inside a
    ///   tokio runtime (which runs the flush task); otherwise they are written
    ///   at once.
    pub fn with_exclusive_cache(mut self, on: bool) -> Self {
        self.exclusive_cache = on;
        self
    }

    /// How often touches recorded in memory are written, with the exclusive
    /// cache (default [`Self::DEFAULT_TOUCH_FLUSH_INTERVAL`], 1 s; at least
    /// 1 ms). It bounds the activity a crash can lose. Shorter costs more
    /// transactions (and fsyncs); longer batches more touches per transaction.
    /// Without the exclusive cache it has no effect: touches are written at once.
    pub fn with_touch_flush_interval(mut self, every: Duration) -> Self {
        self.touch_flush_interval = every;
        self
    }
}

/// How [`SqlStore::connect_postgres_with`] connects. The default is what
/// [`SqlStore::connect_postgres`] does.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PostgresOptions {
    max_connections: u32,
    acquire_timeout: Duration,
    statement_timeout: Option<Duration>,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            acquire_timeout: Self::DEFAULT_ACQUIRE_TIMEOUT,
            statement_timeout: Some(Self::DEFAULT_STATEMENT_TIMEOUT),
        }
    }
}

impl PostgresOptions {
    /// The most connections the pool opens, by default.
    pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;
    /// How long an operation waits for a connection (or for connecting), by default.
    pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
    /// How long the server lets one statement run, by default.
    pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);

    /// The defaults: 10 connections, 5 s to get one, statements cancelled after 10 s.
    pub fn new() -> Self {
        Self::default()
    }

    /// The most connections the pool keeps open (at least 1). Each node of a
    /// deployment has its own pool: keep the sum under the server's
    /// `max_connections`.
    pub fn with_max_connections(mut self, max: u32) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// How long an operation waits for a free connection, or for a new one to
    /// connect, before failing with [`StoreError::Unavailable`].
    pub fn with_acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// The server-side `statement_timeout` of every connection (`None`: the
    /// server's setting). A statement cancelled by it, like one waiting too
    /// long for a row lock, fails with [`StoreError::Unavailable`] and has no
    /// effect.
    pub fn with_statement_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.statement_timeout = timeout;
        self
    }
}

#[async_trait]
impl SessionStore for SqlStore {
    async fn create(
        &self,
        record: SessionRecord,
        limit: Option<SessionLimit>,
    ) -> StoreResult<Create> {
        dispatch!(self, s => s.create(record, limit).await)
    }

    async fn load(&self, hash: &TokenHash, touch: Option<Touch>) -> StoreResult<Lookup> {
        dispatch!(self, s => s.load(hash, touch).await)
    }

    async fn get(&self, id: &SessionId) -> StoreResult<Option<Arc<SessionRecord>>> {
        dispatch!(self, s => s.get(id).await)
    }

    async fn update(&self, record: SessionRecord, expected_version: u64) -> StoreResult<Update> {
        dispatch!(self, s => s.update(record, expected_version).await)
    }

    async fn rotate(
        &self,
        record: SessionRecord,
        expected_version: u64,
        tombstone: Tombstone,
    ) -> StoreResult<Update> {
        dispatch!(self, s => s.rotate(record, expected_version, tombstone).await)
    }

    async fn touch(
        &self,
        id: &SessionId,
        now: Timestamp,
    ) -> StoreResult<Option<Arc<SessionRecord>>> {
        dispatch!(self, s => s.touch(id, now).await)
    }

    async fn end(&self, id: &SessionId, ending: Ending) -> StoreResult<Option<Arc<SessionRecord>>> {
        dispatch!(self, s => s.end(id, ending).await)
    }

    async fn end_user(
        &self,
        user: &UserId,
        except: Option<&SessionId>,
        ending: Ending,
    ) -> StoreResult<Vec<Arc<SessionRecord>>> {
        dispatch!(self, s => s.end_user(user, except, ending).await)
    }

    async fn list_user(
        &self,
        user: &UserId,
        now: Timestamp,
    ) -> StoreResult<Vec<Arc<SessionRecord>>> {
        dispatch!(self, s => s.list_user(user, now).await)
    }

    async fn increment_counter(
        &self,
        id: &SessionId,
        name: &str,
        by: u64,
        limit: Option<u64>,
    ) -> StoreResult<Counter> {
        dispatch!(self, s => s.increment_counter(id, name, by, limit).await)
    }

    async fn sweep(&self, spec: SweepSpec, max: usize) -> StoreResult<Vec<Ended>> {
        dispatch!(self, s => s.sweep(spec, max).await)
    }

    async fn take_restorable(
        &self,
        user: &UserId,
        now: Timestamp,
    ) -> StoreResult<Option<Restorable>> {
        dispatch!(self, s => s.take_restorable(user, now).await)
    }

    async fn user_data(&self, user: &UserId) -> StoreResult<Option<UserData>> {
        dispatch!(self, s => s.user_data(user).await)
    }

    async fn set_user_data(
        &self,
        user: &UserId,
        expected_version: u64,
        data: Sealed,
    ) -> StoreResult<Result<UserData, Option<UserData>>> {
        dispatch!(self, s => s.set_user_data(user, expected_version, data).await)
    }

    async fn create_refresh_family(&self, family: RefreshFamily) -> StoreResult<CreateFamily> {
        dispatch!(self, s => s.create_refresh_family(family).await)
    }

    async fn refresh(&self, request: RefreshRequest) -> StoreResult<RefreshOutcome> {
        dispatch!(self, s => s.refresh(request).await)
    }

    async fn revoke_refresh(
        &self,
        hash: &TokenHash,
        reason: FamilyEnd,
    ) -> StoreResult<Option<RefreshFamily>> {
        dispatch!(self, s => s.revoke_refresh(hash, reason).await)
    }

    async fn revoke_refresh_families(
        &self,
        session: &SessionId,
        reason: FamilyEnd,
    ) -> StoreResult<Vec<RefreshFamily>> {
        dispatch!(self, s => s.revoke_refresh_families(session, reason).await)
    }

    async fn sweep_refresh(&self, now: Timestamp, max: usize) -> StoreResult<usize> {
        dispatch!(self, s => s.sweep_refresh(now, max).await)
    }

    async fn append_audit(&self, entries: Vec<AuditEntry>) -> StoreResult<()> {
        dispatch!(self, s => s.append_audit(entries).await)
    }

    async fn audit(&self, query: &AuditQuery) -> StoreResult<Vec<AuditRecord>> {
        dispatch!(self, s => s.audit(query).await)
    }

    async fn sweep_audit(&self, before: Timestamp, max: usize) -> StoreResult<usize> {
        dispatch!(self, s => s.sweep_audit(before, max).await)
    }
}
