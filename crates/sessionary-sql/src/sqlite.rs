//! The SQLite backend.
//!
//! Concurrency: every write goes through one dedicated writer connection
//! inside `BEGIN IMMEDIATE`, so writers queue in this process (fairly, on an
//! async mutex) instead of failing with `SQLITE_BUSY`, and each trait operation
//! is one transaction: read, decide, write, commit. Reads that need no write
//! (`load` without a due touch, `get`, `list_user`, `user_data`) run on a few
//! reader connections, which in WAL mode see the last committed state without
//! waiting for the writer. A busy timeout covers other processes that open the
//! same file. With the exclusive cache there are no readers: see [`crate::cache`],
//! and touches are written behind: see [`crate::touches`].

use std::fmt;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sessionary_core::record::{EndReason, Restorable, Tombstone, UserData};
use sessionary_core::store::{
    Counter, Create, Ended, Ending, Lookup, SessionLimit, StoreResult, SweepSpec, Touch, Update,
    apply_update,
};
use sessionary_core::{
    LimitMode, Sealed, SessionId, SessionRecord, StoreError, Timestamp, TokenHash, UserId,
};
use sqlx::query::Query;
use sqlx::sqlite::SqliteTransactionManager;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteLockingMode,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Connection as _, Sqlite, Transaction, TransactionManager as _};

use crate::cache::Cache;
use crate::codec::{
    Encoded, decode_user, encode_counters, next_version, u64_from_column, version_to_i64,
};
use crate::error::{Error, corrupt_value, from_sqlx};
use crate::pool::{Conn, Conns, close_conn};
use crate::touches::{PER_TRANSACTION, Pending};

mod audit;
mod refresh;

/// The migrations of the SQLite schema, embedded at build time.
pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a statement waits for a lock held by another process.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an operation waits for a connection of this process.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// The columns of a session row, in the order [`decode_record`] reads them.
macro_rules! session_cols {
    () => {
        "id, token_hash, user_id, roles, aal, auth_time, created_at, last_seen_at, \
         idle_timeout_ms, touch_interval_ms, absolute_expires_at, remember, device_ip, \
         device_user_agent, device_label, version, csrf_secret, counters, data, exempt_from_limit"
    };
}

const SELECT_BY_HASH: &str = concat!(
    "SELECT ",
    session_cols!(),
    " FROM sessions WHERE token_hash = ?1"
);
const SELECT_BY_ID: &str = concat!("SELECT ", session_cols!(), " FROM sessions WHERE id = ?1");
/// A user's sessions, oldest first (as `MemoryStore` orders them for limits and lists).
const SELECT_USER_BY_AGE: &str = concat!(
    "SELECT ",
    session_cols!(),
    " FROM sessions WHERE user_id = ?1 ORDER BY created_at, id"
);
/// A user's sessions in the order they were stored (as `MemoryStore::end_user` ends them).
const SELECT_USER_BY_SEQ: &str = concat!(
    "SELECT ",
    session_cols!(),
    " FROM sessions WHERE user_id = ?1 ORDER BY seq"
);
const SELECT_USER_LIVE: &str = concat!(
    "SELECT ",
    session_cols!(),
    " FROM sessions WHERE user_id = ?1 AND expires_at > ?2 ORDER BY created_at, id"
);
const SELECT_EXPIRED: &str = concat!(
    "SELECT ",
    session_cols!(),
    " FROM sessions WHERE expires_at <= ?1 ORDER BY expires_at, seq LIMIT ?2"
);
/// Parameters ?1..?21 in the order [`bind_record`] binds them.
const INSERT_SESSION: &str = "INSERT INTO sessions (id, token_hash, user_id, roles, aal, \
     auth_time, created_at, last_seen_at, idle_timeout_ms, touch_interval_ms, \
     absolute_expires_at, remember, device_ip, device_user_agent, device_label, version, \
     csrf_secret, counters, data, expires_at, exempt_from_limit) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, \
     ?19, ?20, ?21)";
const REPLACE_SESSION: &str = "UPDATE sessions SET token_hash = ?2, user_id = ?3, roles = ?4, \
     aal = ?5, auth_time = ?6, created_at = ?7, last_seen_at = ?8, idle_timeout_ms = ?9, \
     touch_interval_ms = ?10, absolute_expires_at = ?11, remember = ?12, device_ip = ?13, \
     device_user_agent = ?14, device_label = ?15, version = ?16, csrf_secret = ?17, \
     counters = ?18, data = ?19, expires_at = ?20, exempt_from_limit = ?21 \
     WHERE id = ?1";
/// A touch as a compare-and-set on everything else a writer changes: it lands only
/// if the row is still the one that was read (every other write bumps the version).
const TOUCH_IF_UNCHANGED: &str = "UPDATE sessions SET last_seen_at = ?1, expires_at = ?2 \
     WHERE id = ?3 AND token_hash = ?4 AND version = ?5 AND last_seen_at = ?6";
const SET_LAST_SEEN: &str = "UPDATE sessions SET last_seen_at = ?1, expires_at = ?2 WHERE id = ?3";
const SELECT_TOMBSTONE: &str = "SELECT session_id, user_id, reason, ended_at, keep_until \
     FROM tombstones WHERE token_hash = ?1";
const PUT_TOMBSTONE: &str = "INSERT OR REPLACE INTO tombstones \
     (token_hash, session_id, user_id, reason, ended_at, keep_until) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
/// Of several restorables for one user, the one kept longest wins (as in `MemoryStore`).
const PUT_RESTORABLE: &str = "INSERT INTO restorable \
     (user_id, session_id, data, keep_until) VALUES (?1, ?2, ?3, ?4) \
     ON CONFLICT (user_id) DO UPDATE SET session_id = excluded.session_id, \
     data = excluded.data, keep_until = excluded.keep_until \
     WHERE excluded.keep_until >= restorable.keep_until";

type Q<'q> = Query<'q, Sqlite, SqliteArguments<'q>>;

/// A [`sessionary_core::SessionStore`] on SQLite: the database, and with the
/// exclusive cache the task that writes touches behind. Dropping it (the last
/// [`crate::SqlStore`] clone) makes that task write what is pending and close
/// the database, if the runtime still runs.
pub(crate) struct SqliteStore {
    db: Arc<Db>,
    /// Sends `true` to stop the flusher; dropped, it makes the flusher write
    /// pending touches and close the database.
    stop: Option<tokio::sync::watch::Sender<bool>>,
}

impl Deref for SqliteStore {
    type Target = Db;

    fn deref(&self) -> &Db {
        &self.db
    }
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.db.fmt(f)
    }
}

impl SqliteStore {
    pub(crate) async fn open_file(
        path: &Path,
        exclusive_cache: bool,
        flush_every: Duration,
    ) -> StoreResult<Self> {
        let db = Db::open_file(path, exclusive_cache).await?;
        let Some(cache) = db.cache else {
            return Ok(Self::plain(db));
        };
        // Touches are written behind only if a task can write them.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Ok(Self::plain(Db {
                cache: Some(cache),
                ..db
            }));
        };
        let db = Arc::new(Db {
            cache: Some(cache),
            pending: Some(Pending::new()),
            ..db
        });
        let (stop, stopped) = tokio::sync::watch::channel(false);
        runtime.spawn(flusher(
            Arc::clone(&db),
            flush_every.max(Duration::from_millis(1)),
            stopped,
        ));
        Ok(Self {
            db,
            stop: Some(stop),
        })
    }

    pub(crate) async fn in_memory() -> StoreResult<Self> {
        Ok(Self::plain(Db::in_memory().await?))
    }

    fn plain(db: Db) -> Self {
        Self {
            db: Arc::new(db),
            stop: None,
        }
    }

    /// Stops the flusher, writes pending touches and closes the database.
    pub(crate) async fn close(&self) {
        if let Some(stop) = &self.stop {
            stop.send_replace(true);
        }
        self.db.close().await;
    }
}

/// Writes pending touches every `every` until told to stop. When every handle
/// is gone, writes what is pending and closes the database.
async fn flusher(db: Arc<Db>, every: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                if let Err(e) = db.flush_touches().await {
                    if db.writer.is_closed() {
                        return;
                    }
                    tracing::warn!(error = %e, "writing recorded touches failed; retrying at the next tick");
                }
            }
            changed = stop.changed() => {
                if changed.is_err() {
                    // The store was dropped without `close`.
                    db.close().await;
                }
                return;
            }
        }
    }
}

/// The database: connections, and with the exclusive cache the cached records
/// and pending touches (see the module docs for the concurrency design).
pub(crate) struct Db {
    /// Exactly one connection: every write transaction runs here, one at a time.
    writer: Conns,
    /// Connections for reads; `None` when the writer serves reads too (an
    /// in-memory database, or the exclusive cache).
    readers: Option<Conns>,
    /// The database file; `None` for a private in-memory database.
    path: Option<PathBuf>,
    /// Session records, when the file is this process's alone (see [`crate::cache`]).
    cache: Option<Cache>,
    /// Touches recorded but not yet written; `Some` only with the cache and a
    /// flusher (see [`crate::touches`]). `None`: touches are written at once.
    pending: Option<Pending>,
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("readers", &self.readers.as_ref().map(Conns::len))
            .field("cached", &self.cache.as_ref().map(Cache::len))
            .field("pending_touches", &self.pending.as_ref().map(Pending::len))
            .finish_non_exhaustive()
    }
}

fn reader_count() -> usize {
    std::thread::available_parallelism()
        .map_or(4, std::num::NonZeroUsize::get)
        .clamp(2, 8)
}

async fn migrate(conn: &mut SqliteConnection) -> StoreResult<()> {
    MIGRATOR.run(conn).await.map_err(|e| match e {
        sqlx::migrate::MigrateError::Execute(e) => from_sqlx(e),
        e => StoreError::backend(e),
    })
}

impl Db {
    async fn open_file(path: &Path, exclusive_cache: bool) -> StoreResult<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Once per process start; not worth a blocking-task hop.
            std::fs::create_dir_all(dir).map_err(StoreError::unavailable)?;
        }
        let base = SqliteConnectOptions::new()
            .filename(path)
            .busy_timeout(BUSY_TIMEOUT)
            // FULL: a commit (a logout, a revocation) survives a power cut, so an
            // ended session can never come back after a crash.
            .synchronous(SqliteSynchronous::Full);
        let mut writer_options = base
            .clone()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal);
        if exclusive_cache {
            // Set before WAL mode is entered: no shared memory, and the file is
            // locked for this connection until it closes.
            writer_options = writer_options.locking_mode(SqliteLockingMode::Exclusive);
        }
        let writer = Conns::open(&writer_options, 1, ACQUIRE_TIMEOUT).await?;
        {
            let mut conn = writer.acquire().await?;
            migrate(&mut conn).await?;
            if exclusive_cache {
                // Take the exclusive lock now (a write transaction), so a second
                // process fails here rather than on some later request.
                begin(&mut conn).await?.commit().await.map_err(from_sqlx)?;
            }
        }
        let (readers, cache) = if exclusive_cache {
            (None, Some(Cache::new()))
        } else {
            let options = base.pragma("query_only", "ON");
            let readers = Conns::open(&options, reader_count(), ACQUIRE_TIMEOUT).await?;
            (Some(readers), None)
        };
        Ok(Self {
            writer,
            readers,
            path: Some(path.to_owned()),
            cache,
            pending: None,
        })
    }

    async fn in_memory() -> StoreResult<Self> {
        // A private in-memory database exists in exactly one connection, which
        // therefore serves both reads and writes.
        let options = SqliteConnectOptions::new().in_memory(true);
        let writer = Conns::open(&options, 1, ACQUIRE_TIMEOUT).await?;
        migrate(&mut *writer.acquire().await?).await?;
        Ok(Self {
            writer,
            readers: None,
            path: None,
            cache: None,
            pending: None,
        })
    }

    /// Closes the database: waits for operations in flight, refuses new ones,
    /// writes pending touches, closes every connection. Idempotent.
    async fn close(&self) {
        if let Some(readers) = &self.readers {
            readers.close().await;
        }
        let writers = self.writer.take_all().await;
        // Nothing may answer from memory once the database is closed. After
        // this no touch can be recorded (a touch needs a cached entry), so the
        // flush below writes every touch that was ever reported.
        if let Some(cache) = &self.cache {
            cache.clear();
        }
        for mut conn in writers {
            if let Some(pending) = &self.pending {
                while pending.len() > 0 {
                    match write_pending(&mut conn, pending, PER_TRANSACTION).await {
                        Ok(n) if n > 0 => {}
                        Ok(_) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, touches = pending.len(), "writing recorded touches at close failed; those sessions may expire early");
                            break;
                        }
                    }
                }
                pending.clear();
            }
            close_conn(conn).await;
        }
    }

    /// Writes the touches pending now, [`PER_TRANSACTION`] per transaction,
    /// letting other writes in between; returns how many.
    pub(crate) async fn flush_touches(&self) -> StoreResult<usize> {
        let Some(pending) = &self.pending else {
            return Ok(0);
        };
        // Touches recorded meanwhile wait for the next flush, so that a flush
        // ends even when touches come faster than they can be written.
        let mut left = pending.len();
        let mut written = 0;
        while left > 0 {
            let mut conn = self.writer().await?;
            let n = write_pending(&mut conn, pending, PER_TRANSACTION.min(left)).await?;
            drop(conn);
            if n == 0 {
                break;
            }
            written += n;
            left = left.saturating_sub(n);
        }
        Ok(written)
    }

    /// The writer connection. Holding it excludes every other write (and, with
    /// the cache, every database access) of this process.
    async fn writer(&self) -> StoreResult<Conn<'_>> {
        let mut conn = self.writer.acquire().await?;
        heal(&mut conn).await?;
        Ok(conn)
    }

    /// A connection for reads (the writer when there are no readers).
    async fn reader(&self) -> StoreResult<Conn<'_>> {
        self.readers
            .as_ref()
            .unwrap_or(&self.writer)
            .acquire()
            .await
    }

    /// Drops cached entries of a record about to change (before the commit).
    fn forget(&self, rec: &SessionRecord) {
        if let Some(cache) = &self.cache {
            cache.forget(rec);
        }
    }

    /// Caches a committed record (after the commit, writer still held).
    fn remember(&self, rec: &Arc<SessionRecord>) {
        if let Some(cache) = &self.cache {
            cache.remember(rec);
        }
    }

    /// Applies the pending touch of a row just read (no-op without write-behind).
    fn overlay(&self, rec: &mut SessionRecord) {
        if let Some(seen) = self.pending.as_ref().and_then(|p| p.get(&rec.id)) {
            rec.last_seen_at = rec.last_seen_at.max(seen);
        }
    }

    /// Before a write to a row just read (writer held): drops its cached
    /// entries, so no touch can land on it any more, then applies its pending
    /// touch. `rec` is then the session as it stands.
    fn settle(&self, rec: &mut SessionRecord) {
        self.forget(rec);
        self.overlay(rec);
    }

    /// After a commit that wrote `rec` (with its `last_seen_at`) to the row.
    fn written(&self, rec: &SessionRecord) {
        if let Some(pending) = &self.pending {
            pending.written(&rec.id, rec.last_seen_at);
        }
    }

    /// After a commit that ended `id` (or before inserting a new session under
    /// `id`): its pending touch, if any, must never be written.
    fn ended(&self, id: &SessionId) {
        if let Some(pending) = &self.pending {
            pending.remove(id);
        }
    }

    /// Ends a session inside the caller's transaction: tombstone under its token
    /// hash, row removed, data kept for restore if asked and the session has a user.
    async fn remove(
        &self,
        conn: &mut SqliteConnection,
        rec: &SessionRecord,
        ending: Ending,
    ) -> StoreResult<()> {
        self.forget(rec);
        let tombstone = Tombstone {
            session_id: rec.id,
            user: rec.user.clone(),
            reason: ending.reason,
            ended_at: ending.at,
            keep_until: ending.reason_until,
        };
        put_tombstone(conn, &rec.token_hash, &tombstone).await?;
        sqlx::query("DELETE FROM sessions WHERE id = ?1")
            .bind(rec.id.as_bytes().as_slice())
            .execute(&mut *conn)
            .await
            .map_err(from_sqlx)?;
        if let (Some(user), Some(until)) = (&rec.user, ending.restore_until) {
            sqlx::query(PUT_RESTORABLE)
                .bind(user.as_str())
                .bind(rec.id.as_bytes().as_slice())
                .bind(rec.data.as_bytes())
                .bind(until.0)
                .execute(&mut *conn)
                .await
                .map_err(from_sqlx)?;
        }
        Ok(())
    }

    pub(crate) async fn create(
        &self,
        record: SessionRecord,
        limit: Option<SessionLimit>,
    ) -> StoreResult<Create> {
        let enc = Encoded::new(&record)?;
        let mut conn = self.writer().await?;
        let mut tx = begin(&mut conn).await?;
        let taken: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM sessions WHERE id = ?1) \
             OR EXISTS (SELECT 1 FROM sessions WHERE token_hash = ?2) \
             OR EXISTS (SELECT 1 FROM tombstones WHERE token_hash = ?2)",
        )
        .bind(record.id.as_bytes().as_slice())
        .bind(record.token_hash.as_bytes().as_slice())
        .fetch_one(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        if taken {
            return Ok(Create::Duplicate);
        }
        // No session has this id: a pending touch under it is stale.
        self.ended(&record.id);
        let mut evicted = Vec::new();
        if let (Some(limit), Some(user)) = (limit, record.user.as_ref()) {
            let mut live = select_many(&mut tx, SELECT_USER_BY_AGE, user).await?;
            for r in &mut live {
                self.overlay(r);
            }
            live.retain(|r| r.counts_toward_limit(limit.now));
            let max = usize::try_from(limit.max.max(1)).unwrap_or(usize::MAX);
            if live.len() >= max {
                match limit.mode {
                    LimitMode::RejectNew => {
                        return Ok(Create::LimitReached {
                            active: u32::try_from(live.len()).unwrap_or(u32::MAX),
                        });
                    }
                    LimitMode::EvictOldest => {
                        let excess = live.len() + 1 - max;
                        for mut r in live.drain(..excess) {
                            self.settle(&mut r);
                            self.remove(&mut tx, &r, limit.evict).await?;
                            evicted.push(Arc::new(r));
                        }
                    }
                }
            }
        }
        match bind_record(sqlx::query(INSERT_SESSION), &record, &enc)
            .execute(&mut *tx)
            .await
        {
            Ok(_) => {}
            // Cannot happen under the writer lock after the check above; kept so
            // that a collision can never surface as anything but `Duplicate`.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Ok(Create::Duplicate);
            }
            Err(e) => return Err(from_sqlx(e)),
        }
        tx.commit().await.map_err(from_sqlx)?;
        for r in &evicted {
            self.ended(&r.id);
        }
        self.remember(&Arc::new(record));
        Ok(Create::Created { evicted })
    }

    pub(crate) async fn load(&self, hash: &TokenHash, touch: Option<Touch>) -> StoreResult<Lookup> {
        if let Some(cache) = &self.cache {
            return self.load_cached(cache, hash, touch).await;
        }
        let mut conn = self.reader().await?;
        let row = sqlx::query(SELECT_BY_HASH)
            .bind(hash.as_bytes().as_slice())
            .fetch_optional(&mut *conn)
            .await
            .map_err(from_sqlx)?;
        let Some(row) = row else {
            // The session is gone: say why if a tombstone remembers it. (A hash
            // with a tombstone is never stored again, so reading the tombstone in
            // a second statement cannot miss a session that reappeared.)
            return tombstone_lookup(&mut conn, hash, touch).await;
        };
        drop(conn);
        let rec = decode_record(&row)?;
        drop(row);
        match touch {
            Some(t) if rec.touch_due(t.now) => self.touch_loaded(rec, t.now).await,
            _ => Ok(Lookup::Found(Arc::new(rec))),
        }
    }

    /// `load` with the cache: a hit never leaves memory (a due touch is written
    /// behind); a miss is decided on the (exclusive) connection.
    async fn load_cached(
        &self,
        cache: &Cache,
        hash: &TokenHash,
        touch: Option<Touch>,
    ) -> StoreResult<Lookup> {
        if let Some(rec) = self.answer_from_cache(cache, hash, touch) {
            return Ok(Lookup::Found(rec));
        }
        let mut conn = self.writer().await?;
        // Another operation may have filled the entry while this one waited.
        if let Some(rec) = self.answer_from_cache(cache, hash, touch) {
            return Ok(Lookup::Found(rec));
        }
        let row = sqlx::query(SELECT_BY_HASH)
            .bind(hash.as_bytes().as_slice())
            .fetch_optional(&mut *conn)
            .await
            .map_err(from_sqlx)?;
        let Some(row) = row else {
            return tombstone_lookup(&mut conn, hash, touch).await;
        };
        let mut rec = decode_record(&row)?;
        drop(row);
        // Not cached, so no touch can land on it while the writer is held.
        self.overlay(&mut rec);
        let Some(t) = touch.filter(|t| rec.touch_due(t.now)) else {
            let rec = Arc::new(rec);
            cache.remember(&rec);
            return Ok(Lookup::Found(rec));
        };
        rec.last_seen_at = t.now;
        if let Some(pending) = &self.pending {
            let rec = Arc::new(rec);
            cache.remember(&rec);
            pending.record(rec.id, t.now);
            return Ok(Lookup::Found(rec));
        }
        // No write-behind: one statement, atomic on its own; no other access
        // can come between the read above and this write while the connection
        // is held.
        cache.forget(&rec);
        set_last_seen(&mut conn, &rec).await?;
        let rec = Arc::new(rec);
        cache.remember(&rec);
        Ok(Lookup::Found(rec))
    }

    /// Answers `load` from the cache if the session is cached: as it is, or
    /// touched (in memory, the touch recorded as pending). `None` on a miss,
    /// or when a due touch must be written at once (no write-behind).
    fn answer_from_cache(
        &self,
        cache: &Cache,
        hash: &TokenHash,
        touch: Option<Touch>,
    ) -> Option<Arc<SessionRecord>> {
        loop {
            let rec = cache.by_hash(hash)?;
            let Some(t) = touch.filter(|t| rec.touch_due(t.now)) else {
                return Some(rec);
            };
            let pending = self.pending.as_ref()?;
            let mut new = SessionRecord::clone(&rec);
            new.last_seen_at = t.now;
            let new = Arc::new(new);
            if cache.replace(&rec, &new, || pending.record(new.id, t.now)) {
                return Some(new);
            }
            // A write or another touch changed the entry: look again.
        }
    }

    /// Records a due touch of a session just read.
    async fn touch_loaded(&self, mut rec: SessionRecord, now: Timestamp) -> StoreResult<Lookup> {
        let old_seen = rec.last_seen_at;
        rec.last_seen_at = now;
        // One statement, no transaction: the common case.
        let mut conn = self.writer().await?;
        let done = sqlx::query(TOUCH_IF_UNCHANGED)
            .bind(now.0)
            .bind(rec.expires_at().0)
            .bind(rec.id.as_bytes().as_slice())
            .bind(rec.token_hash.as_bytes().as_slice())
            .bind(version_to_i64(rec.version)?)
            .bind(old_seen.0)
            .execute(&mut *conn)
            .await
            .map_err(from_sqlx)?
            .rows_affected()
            == 1;
        if done {
            return Ok(Lookup::Found(Arc::new(rec)));
        }
        // The row changed (or went) since it was read: decide again under the writer.
        let hash = rec.token_hash;
        let mut tx = begin(&mut conn).await?;
        let cur = sqlx::query(SELECT_BY_HASH)
            .bind(hash.as_bytes().as_slice())
            .fetch_optional(&mut *tx)
            .await
            .map_err(from_sqlx)?;
        let Some(cur) = cur else {
            return tombstone_lookup(&mut tx, &hash, Some(Touch { now })).await;
        };
        let mut cur = decode_record(&cur)?;
        if cur.touch_due(now) {
            cur.last_seen_at = now;
            set_last_seen(&mut tx, &cur).await?;
            tx.commit().await.map_err(from_sqlx)?;
        }
        Ok(Lookup::Found(Arc::new(cur)))
    }

    pub(crate) async fn get(&self, id: &SessionId) -> StoreResult<Option<Arc<SessionRecord>>> {
        if let Some(rec) = self.cache.as_ref().and_then(|c| c.by_id(id)) {
            return Ok(Some(rec));
        }
        let mut conn = self.reader().await?;
        // With the cache, `reader` is the writer: the connection is held here,
        // so an entry absent now stays absent (no touch can land on it) until
        // it is filled below. One may have been filled while this one waited.
        if let Some(rec) = self.cache.as_ref().and_then(|c| c.by_id(id)) {
            return Ok(Some(rec));
        }
        let Some(mut rec) = select_by_id(&mut conn, id).await? else {
            return Ok(None);
        };
        self.overlay(&mut rec);
        let rec = Arc::new(rec);
        self.remember(&rec);
        Ok(Some(rec))
    }

    pub(crate) async fn update(
        &self,
        record: SessionRecord,
        expected_version: u64,
    ) -> StoreResult<Update> {
        let mut conn = self.writer().await?;
        let mut tx = begin(&mut conn).await?;
        let Some(mut cur) = select_by_id(&mut tx, &record.id).await? else {
            return Ok(Update::Gone);
        };
        if cur.version != expected_version {
            self.overlay(&mut cur);
            return Ok(Update::Conflict(Arc::new(cur)));
        }
        // A pending touch is kept: `last_seen_at` never moves backwards.
        self.settle(&mut cur);
        let mut new = apply_update(record, &cur, next_version(expected_version)?);
        new.token_hash = cur.token_hash;
        replace(&mut tx, &new).await?;
        tx.commit().await.map_err(from_sqlx)?;
        self.written(&new);
        let new = Arc::new(new);
        self.remember(&new);
        Ok(Update::Updated(new))
    }

    pub(crate) async fn rotate(
        &self,
        record: SessionRecord,
        expected_version: u64,
        tombstone: Tombstone,
    ) -> StoreResult<Update> {
        let mut conn = self.writer().await?;
        let mut tx = begin(&mut conn).await?;
        let Some(mut cur) = select_by_id(&mut tx, &record.id).await? else {
            return Ok(Update::Gone);
        };
        if cur.version != expected_version {
            self.overlay(&mut cur);
            return Ok(Update::Conflict(Arc::new(cur)));
        }
        let old = cur.token_hash;
        let new_hash = record.token_hash;
        let in_use = new_hash == old
            || sqlx::query_scalar::<_, bool>(
                "SELECT EXISTS (SELECT 1 FROM sessions WHERE token_hash = ?1) \
                 OR EXISTS (SELECT 1 FROM tombstones WHERE token_hash = ?1)",
            )
            .bind(new_hash.as_bytes().as_slice())
            .fetch_one(&mut *tx)
            .await
            .map_err(from_sqlx)?;
        if in_use {
            return Err(StoreError::backend(Error::TokenHashInUse));
        }
        // A pending touch is kept: `last_seen_at` never moves backwards.
        self.settle(&mut cur);
        let new = apply_update(record, &cur, next_version(expected_version)?);
        replace(&mut tx, &new).await?;
        put_tombstone(&mut tx, &old, &tombstone).await?;
        tx.commit().await.map_err(from_sqlx)?;
        self.written(&new);
        let new = Arc::new(new);
        self.remember(&new);
        Ok(Update::Updated(new))
    }

    pub(crate) async fn touch(
        &self,
        id: &SessionId,
        now: Timestamp,
    ) -> StoreResult<Option<Arc<SessionRecord>>> {
        let mut conn = self.writer().await?;
        let mut tx = begin(&mut conn).await?;
        let Some(mut cur) = select_by_id(&mut tx, id).await? else {
            return Ok(None);
        };
        // An explicit extend is written at once, pending touch included.
        self.settle(&mut cur);
        let live = cur.is_live(now);
        if live && now > cur.last_seen_at {
            cur.last_seen_at = now;
            set_last_seen(&mut tx, &cur).await?;
            tx.commit().await.map_err(from_sqlx)?;
            self.written(&cur);
        }
        let cur = Arc::new(cur);
        self.remember(&cur);
        Ok(live.then_some(cur))
    }

    pub(crate) async fn end(
        &self,
        id: &SessionId,
        ending: Ending,
    ) -> StoreResult<Option<Arc<SessionRecord>>> {
        let mut conn = self.writer().await?;
        let mut tx = begin(&mut conn).await?;
        let Some(mut rec) = select_by_id(&mut tx, id).await? else {
            return Ok(None);
        };
        self.settle(&mut rec);
        self.remove(&mut tx, &rec, ending).await?;
        tx.commit().await.map_err(from_sqlx)?;
        self.ended(&rec.id);
        Ok(Some(Arc::new(rec)))
    }

    pub(crate) async fn end_user(
        &self,
        user: &UserId,
        except: Option<&SessionId>,
        ending: Ending,
    ) -> StoreResult<Vec<Arc<SessionRecord>>> {
        let mut conn = self.writer().await?;
        let mut tx = begin(&mut conn).await?;
        let mut all = select_many(&mut tx, SELECT_USER_BY_SEQ, user).await?;
        all.retain(|r| Some(&r.id) != except);
        if all.is_empty() {
            return Ok(Vec::new());
        }
        for r in &mut all {
            self.settle(r);
            self.remove(&mut tx, r, ending).await?;
        }
        tx.commit().await.map_err(from_sqlx)?;
        for r in &all {
            self.ended(&r.id);
        }
        Ok(all.into_iter().map(Arc::new).collect())
    }

    pub(crate) async fn list_user(
        &self,
        user: &UserId,
        now: Timestamp,
    ) -> StoreResult<Vec<Arc<SessionRecord>>> {
        let mut conn = self.reader().await?;
        if self.pending.is_some() {
            // The `expires_at` column does not know about pending touches: take
            // the user's sessions and decide with them applied.
            let mut all = select_many(&mut conn, SELECT_USER_BY_AGE, user).await?;
            for r in &mut all {
                self.overlay(r);
            }
            return Ok(all
                .into_iter()
                .filter(|r| r.is_live(now))
                .map(Arc::new)
                .collect());
        }
        let rows = sqlx::query(SELECT_USER_LIVE)
            .bind(user.as_str())
            .bind(now.0)
            .fetch_all(&mut *conn)
            .await
            .map_err(from_sqlx)?;
        rows.iter()
            .map(|row| decode_record(row).map(Arc::new))
            .collect()
    }

    pub(crate) async fn increment_counter(
        &self,
        id: &SessionId,
        name: &str,
        by: u64,
        limit: Option<u64>,
    ) -> StoreResult<Counter> {
        let mut conn = self.writer().await?;
        let mut tx = begin(&mut conn).await?;
        let Some(mut cur) = select_by_id(&mut tx, id).await? else {
            return Ok(Counter::Gone);
        };
        let now = cur.counters.get(name).copied().unwrap_or(0);
        let next = now.saturating_add(by);
        if limit.is_some_and(|l| next > l) {
            return Ok(Counter::LimitExceeded(now));
        }
        // The pending touch stays pending (this does not write `last_seen_at`).
        self.settle(&mut cur);
        cur.counters.insert(name.to_owned(), next);
        cur.version = next_version(cur.version)?;
        sqlx::query("UPDATE sessions SET counters = ?1, version = ?2 WHERE id = ?3")
            .bind(encode_counters(&cur.counters)?)
            .bind(version_to_i64(cur.version)?)
            .bind(id.as_bytes().as_slice())
            .execute(&mut *tx)
            .await
            .map_err(from_sqlx)?;
        tx.commit().await.map_err(from_sqlx)?;
        self.remember(&Arc::new(cur));
        Ok(Counter::Incremented(next))
    }

    pub(crate) async fn sweep(&self, spec: SweepSpec, max: usize) -> StoreResult<Vec<Ended>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        // Pending touches go to the rows first, so the expiry index sees them:
        // most in transactions of their own, the few recorded since in this
        // one (they come back if it does not commit).
        self.flush_touches().await?;
        let mut conn = self.writer().await?;
        let mut tx = begin(&mut conn).await?;
        let touches = match &self.pending {
            Some(pending) => {
                let touches = pending.drain(usize::MAX);
                touches.write(&mut tx).await?;
                Some(touches)
            }
            None => None,
        };
        let rows = sqlx::query(SELECT_EXPIRED)
            .bind(spec.now.0)
            .bind(i64::try_from(max).unwrap_or(i64::MAX))
            .fetch_all(&mut *tx)
            .await
            .map_err(from_sqlx)?;
        let mut ended = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut rec = decode_record(row)?;
            // A touch may have landed since the rows were written.
            self.settle(&mut rec);
            let Some(reason) = rec.expiry_reason(spec.now) else {
                self.remember(&Arc::new(rec));
                continue;
            };
            self.remove(&mut tx, &rec, spec.ending(&rec, reason))
                .await?;
            ended.push(Ended {
                record: Arc::new(rec),
                reason,
            });
        }
        drop(rows);
        sqlx::query("DELETE FROM tombstones WHERE keep_until <= ?1")
            .bind(spec.now.0)
            .execute(&mut *tx)
            .await
            .map_err(from_sqlx)?;
        sqlx::query("DELETE FROM restorable WHERE keep_until <= ?1")
            .bind(spec.now.0)
            .execute(&mut *tx)
            .await
            .map_err(from_sqlx)?;
        tx.commit().await.map_err(from_sqlx)?;
        if let Some(touches) = touches {
            touches.done();
        }
        for e in &ended {
            self.ended(&e.record.id);
        }
        Ok(ended)
    }

    pub(crate) async fn take_restorable(
        &self,
        user: &UserId,
        now: Timestamp,
    ) -> StoreResult<Option<Restorable>> {
        // One statement, so one atomic step. `fetch_all` runs it to completion.
        let rows = sqlx::query(
            "DELETE FROM restorable WHERE user_id = ?1 RETURNING session_id, data, keep_until",
        )
        .bind(user.as_str())
        .fetch_all(&mut *self.writer().await?)
        .await
        .map_err(from_sqlx)?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let restorable = Restorable {
            session_id: decode_id(row, 0, "restorable.session_id")?,
            data: Sealed::from_bytes(get::<&[u8]>(row, 1)?),
            keep_until: Timestamp(get(row, 2)?),
        };
        Ok(Some(restorable).filter(|r| r.keep_until > now))
    }

    pub(crate) async fn user_data(&self, user: &UserId) -> StoreResult<Option<UserData>> {
        let mut conn = self.reader().await?;
        select_user_data(&mut conn, user).await
    }

    pub(crate) async fn set_user_data(
        &self,
        user: &UserId,
        expected_version: u64,
        data: Sealed,
    ) -> StoreResult<Result<UserData, Option<UserData>>> {
        let mut conn = self.writer().await?;
        let mut tx = begin(&mut conn).await?;
        let cur = select_user_data(&mut tx, user).await?;
        let current = cur.as_ref().map_or(0, |d| d.version);
        if current != expected_version {
            return Ok(Err(cur));
        }
        let new = UserData {
            version: next_version(current)?,
            data,
        };
        sqlx::query(
            "INSERT INTO user_data (user_id, version, data) VALUES (?1, ?2, ?3) \
             ON CONFLICT (user_id) DO UPDATE SET version = excluded.version, data = excluded.data",
        )
        .bind(user.as_str())
        .bind(version_to_i64(new.version)?)
        .bind(new.data.as_bytes())
        .execute(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        tx.commit().await.map_err(from_sqlx)?;
        Ok(Ok(new))
    }
}

// ---- statements shared by the operations ----

/// Writes up to `max` pending touches in one transaction on `conn` (the
/// writer, held by the caller); returns how many. On failure they stay pending.
async fn write_pending(
    conn: &mut SqliteConnection,
    pending: &Pending,
    max: usize,
) -> StoreResult<usize> {
    let touches = pending.drain(max);
    if touches.len() == 0 {
        return Ok(touches.done());
    }
    let mut tx = begin(conn).await?;
    touches.write(&mut tx).await?;
    tx.commit().await.map_err(from_sqlx)?;
    Ok(touches.done())
}

/// A write transaction: `BEGIN IMMEDIATE` takes the database's write lock at
/// once, so a transaction that reads and then writes can never be refused with
/// `SQLITE_BUSY` half-way (only a `busy_timeout` wait at the start, and only if
/// another process writes the same file).
async fn begin(conn: &mut SqliteConnection) -> StoreResult<Transaction<'_, Sqlite>> {
    heal(conn).await?;
    conn.begin_with("BEGIN IMMEDIATE").await.map_err(from_sqlx)
}

/// Rolls back a transaction left open on the writer with nothing to end it.
///
/// sqlx's `begin_with` awaits once more after SQLite has run a custom `BEGIN`
/// (to check that it opened a transaction). An operation cancelled right there
/// (a client gone, a timeout) leaves the connection inside a transaction that
/// no `Transaction` owns: every later `BEGIN` would fail and every later
/// statement would run inside it and never commit. Called whenever the writer
/// is taken, when no `Transaction` on it can be alive (one borrows the
/// connection), so an open transaction is such a leftover, or one whose queued
/// rollback has not run yet (this rollback then finds nothing to do).
async fn heal(conn: &mut SqliteConnection) -> StoreResult<()> {
    if SqliteTransactionManager::get_transaction_depth(conn) > 0 {
        tracing::debug!("rolling back a transaction left open by a cancelled operation");
        SqliteTransactionManager::rollback(conn)
            .await
            .map_err(from_sqlx)?;
    }
    Ok(())
}

/// Overwrites the stored row of `rec.id` with `rec`.
async fn replace(conn: &mut SqliteConnection, rec: &SessionRecord) -> StoreResult<()> {
    let enc = Encoded::new(rec)?;
    bind_record(sqlx::query(REPLACE_SESSION), rec, &enc)
        .execute(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    Ok(())
}

/// Writes `rec.last_seen_at` (and the expiry that follows from it).
async fn set_last_seen(conn: &mut SqliteConnection, rec: &SessionRecord) -> StoreResult<()> {
    sqlx::query(SET_LAST_SEEN)
        .bind(rec.last_seen_at.0)
        .bind(rec.expires_at().0)
        .bind(rec.id.as_bytes().as_slice())
        .execute(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    Ok(())
}

async fn select_by_id(
    conn: &mut SqliteConnection,
    id: &SessionId,
) -> StoreResult<Option<SessionRecord>> {
    let row = sqlx::query(SELECT_BY_ID)
        .bind(id.as_bytes().as_slice())
        .fetch_optional(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    row.as_ref().map(decode_record).transpose()
}

async fn select_many(
    conn: &mut SqliteConnection,
    sql: &'static str,
    user: &UserId,
) -> StoreResult<Vec<SessionRecord>> {
    let rows = sqlx::query(sql)
        .bind(user.as_str())
        .fetch_all(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    rows.iter().map(decode_record).collect()
}

async fn select_user_data(
    conn: &mut SqliteConnection,
    user: &UserId,
) -> StoreResult<Option<UserData>> {
    let row = sqlx::query("SELECT version, data FROM user_data WHERE user_id = ?1")
        .bind(user.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    let Some(row) = row else {
        return Ok(None);
    };
    Ok(Some(UserData {
        version: u64_from_column(get(&row, 0)?, "user_data.version")?,
        data: Sealed::from_bytes(get::<&[u8]>(&row, 1)?),
    }))
}

async fn put_tombstone(
    conn: &mut SqliteConnection,
    hash: &TokenHash,
    t: &Tombstone,
) -> StoreResult<()> {
    sqlx::query(PUT_TOMBSTONE)
        .bind(hash.as_bytes().as_slice())
        .bind(t.session_id.as_bytes().as_slice())
        .bind(t.user.as_ref().map(UserId::as_str))
        .bind(t.reason.as_str())
        .bind(t.ended_at.0)
        .bind(t.keep_until.0)
        .execute(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    Ok(())
}

/// The tombstone of a token hash whose session is gone, if still kept.
async fn tombstone_lookup(
    conn: &mut SqliteConnection,
    hash: &TokenHash,
    touch: Option<Touch>,
) -> StoreResult<Lookup> {
    let row = sqlx::query(SELECT_TOMBSTONE)
        .bind(hash.as_bytes().as_slice())
        .fetch_optional(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    let Some(row) = row else {
        return Ok(Lookup::Missing);
    };
    let reason: &str = get(&row, 2)?;
    let t = Tombstone {
        session_id: decode_id(&row, 0, "tombstones.session_id")?,
        user: decode_user(get(&row, 1)?, "tombstones.user_id")?,
        reason: EndReason::parse(reason).ok_or_else(|| corrupt_value("tombstones.reason"))?,
        ended_at: Timestamp(get(&row, 3)?),
        keep_until: Timestamp(get(&row, 4)?),
    };
    // As `MemoryStore`: a touching load (a request) no longer learns reasons past
    // `keep_until`; a status read still does until the sweep forgets them.
    Ok(match touch {
        Some(t2) if t2.now >= t.keep_until => Lookup::Missing,
        _ => Lookup::Ended(t),
    })
}

crate::codec::backend_codec!(Sqlite, SqliteRow, i64);
