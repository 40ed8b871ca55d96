//! The PostgreSQL backend.
//!
//! Concurrency: a pool of connections, each operation one transaction in
//! PostgreSQL's default `READ COMMITTED` isolation (or one statement), made
//! atomic by row locks rather than by a single writer:
//!
//! - An operation on one session reads its row `FOR UPDATE` first, so checks
//!   (a version, liveness, a counter limit) and the write they guard are one
//!   step; a concurrent writer of the same row waits for the commit and then
//!   reads the new row.
//! - Operations on *all* of a user's sessions (`create` with a limit,
//!   `end_user`) first take a transaction-level advisory lock on the user
//!   (`pg_advisory_xact_lock(USER_LOCK, hashtext(user))`), so they run one at a
//!   time per user: of 50 parallel sign-ins with a limit of 1, each counts
//!   after the previous one committed. Their next statement takes a new
//!   snapshot, which sees that commit.
//! - `load` is one statement (see [`LOAD_TOUCH`]); `take_restorable`,
//!   `set_user_data` and `create` without a limit too.
//! - `sweep` locks expired rows with `SKIP LOCKED`: a row another transaction
//!   holds is left for the next sweep, so sweepers on several nodes never wait
//!   for each other or for requests.
//!
//! No transaction locks rows of two sessions in an order another one could
//! reverse (the multi-row ones hold the user's advisory lock, or skip locked
//! rows), so they do not deadlock; should PostgreSQL still report one (or a
//! serialisation failure), the error is [`StoreError::Unavailable`] and the
//! operation had no effect.

use std::fmt;
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
use sqlx::Transaction;
use sqlx::postgres::{
    PgArguments, PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow, Postgres,
};
use sqlx::query::Query;

use crate::codec::{
    Encoded, decode_user, encode_counters, next_version, u64_from_column, version_to_i64,
};
use crate::error::{Error, corrupt, corrupt_value, from_sqlx};

mod audit;
mod refresh;

/// The migrations of the PostgreSQL schema, embedded at build time.
pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// First key of the advisory locks that serialise the operations on all of a
/// user's sessions (the second is `hashtext(user_id)`). An arbitrary constant
/// ("SeSs"), so the locks do not collide with an application's own.
const USER_LOCK: i32 = 0x5365_5373;

/// The columns of a session row, in the order [`decode_record`] reads them.
macro_rules! session_cols {
    () => {
        "id, token_hash, user_id, roles, aal, auth_time, created_at, last_seen_at, \
         idle_timeout_ms, touch_interval_ms, absolute_expires_at, remember, device_ip, \
         device_user_agent, device_label, version, csrf_secret, counters, data, exempt_from_limit"
    };
}

/// How many columns `session_cols!` has (the tombstone columns of a load follow).
const SESSION_COLS: usize = 20;

/// `load` without a touch, one statement: the session by token hash, or else
/// (same snapshot) its tombstone. Always exactly one row: the session's
/// columns (NULL if none), then the tombstone's (NULL unless no session).
const LOAD: &str = concat!(
    "SELECT f.*, t.session_id, t.user_id, t.reason, t.ended_at, t.keep_until \
     FROM (VALUES (1)) AS one (x) \
     LEFT JOIN (SELECT ",
    session_cols!(),
    " FROM sessions WHERE token_hash = $1) AS f ON TRUE \
     LEFT JOIN tombstones AS t ON t.token_hash = $1 AND f.id IS NULL"
);

/// `load` with a touch at `$2`, one statement (one round trip, atomic):
///
/// 1. `touched`: the touch, as an `UPDATE` that matches only when it is due
///    (the session is live at `$2` and the touch interval has passed since
///    `last_seen_at`; the same rule as `SessionRecord::touch_due`). It moves
///    `last_seen_at` and `expires_at` only, never the version or the data, and
///    returns the row as written. Under a concurrent write PostgreSQL re-checks
///    the conditions on the newest row version before updating it, so a touch
///    never lands on a row rotated away from this token hash or made not due.
/// 2. `found`: that row, or else the row as the statement's snapshot holds it
///    (a touch not due, or an expired session: reported, never touched).
/// 3. The tombstone of the token hash, only when no session row matched. A
///    hash with a tombstone is never given to a session again, and ending a
///    session writes its tombstone and deletes its row in one commit, so the
///    snapshot holds exactly one of them.
///
/// Arithmetic is in `numeric`, so that huge timeouts saturate at the absolute
/// expiry as `Timestamp::add_millis` does, instead of overflowing `bigint`.
const LOAD_TOUCH: &str = concat!(
    "WITH touched AS ( \
         UPDATE sessions SET last_seen_at = $2, \
             expires_at = LEAST($2::numeric + idle_timeout_ms, absolute_expires_at)::bigint \
         WHERE token_hash = $1 AND $2 < expires_at \
             AND $2::numeric - last_seen_at >= touch_interval_ms \
         RETURNING ",
    session_cols!(),
    "), found AS ( \
         SELECT ",
    session_cols!(),
    " FROM touched UNION ALL SELECT ",
    session_cols!(),
    " FROM sessions WHERE token_hash = $1 AND NOT EXISTS (SELECT 1 FROM touched)) \
     SELECT f.*, t.session_id, t.user_id, t.reason, t.ended_at, t.keep_until \
     FROM (VALUES (1)) AS one (x) \
     LEFT JOIN found AS f ON TRUE \
     LEFT JOIN tombstones AS t ON t.token_hash = $1 AND f.id IS NULL"
);

const SELECT_BY_ID: &str = concat!("SELECT ", session_cols!(), " FROM sessions WHERE id = $1");
const LOCK_BY_ID: &str = concat!(
    "SELECT ",
    session_cols!(),
    " FROM sessions WHERE id = $1 FOR UPDATE"
);
/// A user's sessions, oldest first (as `MemoryStore` orders them for limits),
/// locked; the caller holds the user's advisory lock.
const LOCK_USER_BY_AGE: &str = concat!(
    "SELECT ",
    session_cols!(),
    " FROM sessions WHERE user_id = $1 ORDER BY created_at, id FOR UPDATE"
);
const SELECT_USER_LIVE: &str = concat!(
    "SELECT ",
    session_cols!(),
    " FROM sessions WHERE user_id = $1 AND expires_at > $2 ORDER BY created_at, id"
);
/// Removes a user's sessions but `$2` (if not NULL), with the order they were stored in.
const DELETE_USER: &str = concat!(
    "DELETE FROM sessions WHERE user_id = $1 AND ($2::bytea IS NULL OR id <> $2) RETURNING ",
    session_cols!(),
    ", seq"
);
const DELETE_BY_ID: &str = concat!(
    "DELETE FROM sessions WHERE id = $1 RETURNING ",
    session_cols!()
);
/// Expired rows, locked; rows another transaction holds are skipped.
const LOCK_EXPIRED: &str = concat!(
    "SELECT ",
    session_cols!(),
    " FROM sessions WHERE expires_at <= $1 ORDER BY expires_at, seq LIMIT $2 \
     FOR UPDATE SKIP LOCKED"
);
/// Parameters $1..$21 in the order [`bind_record`] binds them. Inserts nothing
/// (0 rows) if the id or token hash is taken by a session or the hash by a
/// tombstone: create never overwrites.
const INSERT_SESSION: &str = "INSERT INTO sessions (id, token_hash, user_id, roles, aal, \
     auth_time, created_at, last_seen_at, idle_timeout_ms, touch_interval_ms, \
     absolute_expires_at, remember, device_ip, device_user_agent, device_label, version, \
     csrf_secret, counters, data, expires_at, exempt_from_limit) \
     SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
     $19, $20, $21 WHERE NOT EXISTS (SELECT 1 FROM tombstones WHERE token_hash = $2) \
     ON CONFLICT DO NOTHING";
const REPLACE_SESSION: &str = "UPDATE sessions SET token_hash = $2, user_id = $3, roles = $4, \
     aal = $5, auth_time = $6, created_at = $7, last_seen_at = $8, idle_timeout_ms = $9, \
     touch_interval_ms = $10, absolute_expires_at = $11, remember = $12, device_ip = $13, \
     device_user_agent = $14, device_label = $15, version = $16, csrf_secret = $17, \
     counters = $18, data = $19, expires_at = $20, exempt_from_limit = $21 \
     WHERE id = $1";
const SET_LAST_SEEN: &str = "UPDATE sessions SET last_seen_at = $1, expires_at = $2 WHERE id = $3";
const PUT_TOMBSTONE: &str = "INSERT INTO tombstones \
     (token_hash, session_id, user_id, reason, ended_at, keep_until) \
     VALUES ($1, $2, $3, $4, $5, $6) \
     ON CONFLICT (token_hash) DO UPDATE SET session_id = excluded.session_id, \
     user_id = excluded.user_id, reason = excluded.reason, ended_at = excluded.ended_at, \
     keep_until = excluded.keep_until";
/// Of several restorables for one user, the one kept longest wins (as in `MemoryStore`).
const PUT_RESTORABLE: &str = "INSERT INTO restorable \
     (user_id, session_id, data, keep_until) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (user_id) DO UPDATE SET session_id = excluded.session_id, \
     data = excluded.data, keep_until = excluded.keep_until \
     WHERE excluded.keep_until >= restorable.keep_until";

type Q<'q> = Query<'q, Postgres, PgArguments>;

/// What [`crate::PostgresOptions`] configures, as the backend reads it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PoolSettings {
    pub(crate) max_connections: u32,
    pub(crate) acquire_timeout: Duration,
    pub(crate) statement_timeout: Option<Duration>,
}

/// A [`sessionary_core::SessionStore`] on PostgreSQL: a connection pool.
pub(crate) struct PgStore {
    pool: PgPool,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the connect options: they hold the password.
        f.debug_struct("PostgresStore")
            .field("connections", &self.pool.size())
            .field("idle", &self.pool.num_idle())
            .field("closed", &self.pool.is_closed())
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects (one connection at once, more on demand) and brings the schema
    /// up to date.
    pub(crate) async fn connect(url: &str, settings: PoolSettings) -> StoreResult<Self> {
        let mut options: PgConnectOptions = url.parse().map_err(from_sqlx)?;
        if let Some(t) = settings.statement_timeout {
            options = options.options([("statement_timeout", t.as_millis().max(1))]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .acquire_timeout(settings.acquire_timeout)
            // No ping before each use: `load` stays one round trip. sqlx pings
            // every connection when it is given back (in a task of its own) and
            // drops the broken ones, so a dead connection fails at most once.
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(from_sqlx)?;
        // The migrator serialises concurrent runs (other nodes starting) with
        // an advisory lock of its own.
        MIGRATOR.run(&pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => from_sqlx(e),
            e => StoreError::backend(e),
        })?;
        Ok(Self { pool })
    }

    /// Closes every connection; later operations fail with `Unavailable`.
    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }

    async fn begin(&self) -> StoreResult<Transaction<'static, Postgres>> {
        self.pool.begin().await.map_err(from_sqlx)
    }

    pub(crate) async fn create(
        &self,
        record: SessionRecord,
        limit: Option<SessionLimit>,
    ) -> StoreResult<Create> {
        let enc = Encoded::new(&record)?;
        let (Some(limit), Some(user)) = (limit, record.user.as_ref()) else {
            // Nothing to count: one statement.
            let done = bind_record(sqlx::query(INSERT_SESSION), &record, &enc)
                .execute(&self.pool)
                .await
                .map_err(from_sqlx)?;
            return Ok(if done.rows_affected() == 1 {
                Create::Created {
                    evicted: Vec::new(),
                }
            } else {
                Create::Duplicate
            });
        };
        let mut tx = self.begin().await?;
        // A duplicate evicts nobody: checked first.
        let taken: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM sessions WHERE id = $1) \
             OR EXISTS (SELECT 1 FROM sessions WHERE token_hash = $2) \
             OR EXISTS (SELECT 1 FROM tombstones WHERE token_hash = $2)",
        )
        .bind(record.id.as_bytes().as_slice())
        .bind(record.token_hash.as_bytes().as_slice())
        .fetch_one(&mut *tx)
        .await
        .map_err(from_sqlx)?;
        if taken {
            return Ok(Create::Duplicate);
        }
        lock_user(&mut tx, user).await?;
        // Read after the lock: this snapshot sees every create of this user
        // that held the lock before.
        let mut live = select_many(&mut tx, LOCK_USER_BY_AGE, user).await?;
        live.retain(|r| r.counts_toward_limit(limit.now));
        let max = usize::try_from(limit.max.max(1)).unwrap_or(usize::MAX);
        let mut evicted = Vec::new();
        if live.len() >= max {
            match limit.mode {
                LimitMode::RejectNew => {
                    return Ok(Create::LimitReached {
                        active: u32::try_from(live.len()).unwrap_or(u32::MAX),
                    });
                }
                LimitMode::EvictOldest => {
                    let excess = live.len() + 1 - max;
                    for r in live.drain(..excess) {
                        remove(&mut tx, &r, limit.evict).await?;
                        evicted.push(Arc::new(r));
                    }
                }
            }
        }
        let done = bind_record(sqlx::query(INSERT_SESSION), &record, &enc)
            .execute(&mut *tx)
            .await
            .map_err(from_sqlx)?;
        if done.rows_affected() != 1 {
            // Taken since the check: the evictions roll back with the rest.
            return Ok(Create::Duplicate);
        }
        tx.commit().await.map_err(from_sqlx)?;
        Ok(Create::Created { evicted })
    }

    pub(crate) async fn load(&self, hash: &TokenHash, touch: Option<Touch>) -> StoreResult<Lookup> {
        let q = match touch {
            Some(t) => sqlx::query(LOAD_TOUCH)
                .bind(hash.as_bytes().as_slice())
                .bind(t.now.0),
            None => sqlx::query(LOAD).bind(hash.as_bytes().as_slice()),
        };
        let row = q.fetch_one(&self.pool).await.map_err(from_sqlx)?;
        if get::<Option<&[u8]>>(&row, 0)?.is_some() {
            return Ok(Lookup::Found(Arc::new(decode_record(&row)?)));
        }
        let Some(session_id) = get::<Option<&[u8]>>(&row, SESSION_COLS)? else {
            return Ok(Lookup::Missing);
        };
        let reason: &str = get(&row, SESSION_COLS + 2)?;
        let t = Tombstone {
            session_id: SessionId::from_slice(session_id)
                .map_err(|e| corrupt("tombstones.session_id", e))?,
            user: decode_user(get(&row, SESSION_COLS + 1)?, "tombstones.user_id")?,
            reason: EndReason::parse(reason).ok_or_else(|| corrupt_value("tombstones.reason"))?,
            ended_at: Timestamp(get(&row, SESSION_COLS + 3)?),
            keep_until: Timestamp(get(&row, SESSION_COLS + 4)?),
        };
        // As `MemoryStore`: a touching load (a request) no longer learns reasons past
        // `keep_until`; a status read still does until the sweep forgets them.
        Ok(match touch {
            Some(t2) if t2.now >= t.keep_until => Lookup::Missing,
            _ => Lookup::Ended(t),
        })
    }

    pub(crate) async fn get(&self, id: &SessionId) -> StoreResult<Option<Arc<SessionRecord>>> {
        let row = sqlx::query(SELECT_BY_ID)
            .bind(id.as_bytes().as_slice())
            .fetch_optional(&self.pool)
            .await
            .map_err(from_sqlx)?;
        row.as_ref()
            .map(|r| decode_record(r).map(Arc::new))
            .transpose()
    }

    pub(crate) async fn update(
        &self,
        record: SessionRecord,
        expected_version: u64,
    ) -> StoreResult<Update> {
        let mut tx = self.begin().await?;
        let Some(cur) = lock_by_id(&mut tx, &record.id).await? else {
            return Ok(Update::Gone);
        };
        if cur.version != expected_version {
            return Ok(Update::Conflict(Arc::new(cur)));
        }
        let mut new = apply_update(record, &cur, next_version(expected_version)?);
        new.token_hash = cur.token_hash;
        replace(&mut tx, &new).await?;
        tx.commit().await.map_err(from_sqlx)?;
        Ok(Update::Updated(Arc::new(new)))
    }

    pub(crate) async fn rotate(
        &self,
        record: SessionRecord,
        expected_version: u64,
        tombstone: Tombstone,
    ) -> StoreResult<Update> {
        let mut tx = self.begin().await?;
        let Some(cur) = lock_by_id(&mut tx, &record.id).await? else {
            return Ok(Update::Gone);
        };
        if cur.version != expected_version {
            return Ok(Update::Conflict(Arc::new(cur)));
        }
        let old = cur.token_hash;
        let new_hash = record.token_hash;
        let in_use = new_hash == old
            || sqlx::query_scalar::<_, bool>(
                "SELECT EXISTS (SELECT 1 FROM sessions WHERE token_hash = $1) \
                 OR EXISTS (SELECT 1 FROM tombstones WHERE token_hash = $1)",
            )
            .bind(new_hash.as_bytes().as_slice())
            .fetch_one(&mut *tx)
            .await
            .map_err(from_sqlx)?;
        if in_use {
            return Err(StoreError::backend(Error::TokenHashInUse));
        }
        let new = apply_update(record, &cur, next_version(expected_version)?);
        replace(&mut tx, &new).await?;
        put_tombstone(&mut tx, &old, &tombstone).await?;
        tx.commit().await.map_err(from_sqlx)?;
        Ok(Update::Updated(Arc::new(new)))
    }

    pub(crate) async fn touch(
        &self,
        id: &SessionId,
        now: Timestamp,
    ) -> StoreResult<Option<Arc<SessionRecord>>> {
        let mut tx = self.begin().await?;
        let Some(mut cur) = lock_by_id(&mut tx, id).await? else {
            return Ok(None);
        };
        let live = cur.is_live(now);
        if live && now > cur.last_seen_at {
            cur.last_seen_at = now;
            set_last_seen(&mut tx, &cur).await?;
            tx.commit().await.map_err(from_sqlx)?;
        }
        Ok(live.then_some(Arc::new(cur)))
    }

    pub(crate) async fn end(
        &self,
        id: &SessionId,
        ending: Ending,
    ) -> StoreResult<Option<Arc<SessionRecord>>> {
        let mut tx = self.begin().await?;
        let row = sqlx::query(DELETE_BY_ID)
            .bind(id.as_bytes().as_slice())
            .fetch_optional(&mut *tx)
            .await
            .map_err(from_sqlx)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let rec = decode_record(&row)?;
        bury(&mut tx, &rec, ending).await?;
        tx.commit().await.map_err(from_sqlx)?;
        Ok(Some(Arc::new(rec)))
    }

    pub(crate) async fn end_user(
        &self,
        user: &UserId,
        except: Option<&SessionId>,
        ending: Ending,
    ) -> StoreResult<Vec<Arc<SessionRecord>>> {
        let mut tx = self.begin().await?;
        lock_user(&mut tx, user).await?;
        let rows = sqlx::query(DELETE_USER)
            .bind(user.as_str())
            .bind(except.map(|id| id.as_bytes().as_slice()))
            .fetch_all(&mut *tx)
            .await
            .map_err(from_sqlx)?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut all = rows
            .iter()
            .map(|row| Ok((get::<i64>(row, SESSION_COLS)?, decode_record(row)?)))
            .collect::<StoreResult<Vec<_>>>()?;
        drop(rows);
        // In the order they were stored (as `MemoryStore::end_user` ends them).
        all.sort_unstable_by_key(|(seq, _)| *seq);
        for (_, r) in &all {
            bury(&mut tx, r, ending).await?;
        }
        tx.commit().await.map_err(from_sqlx)?;
        Ok(all.into_iter().map(|(_, r)| Arc::new(r)).collect())
    }

    pub(crate) async fn list_user(
        &self,
        user: &UserId,
        now: Timestamp,
    ) -> StoreResult<Vec<Arc<SessionRecord>>> {
        let rows = sqlx::query(SELECT_USER_LIVE)
            .bind(user.as_str())
            .bind(now.0)
            .fetch_all(&self.pool)
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
        let mut tx = self.begin().await?;
        let Some(mut cur) = lock_by_id(&mut tx, id).await? else {
            return Ok(Counter::Gone);
        };
        let now = cur.counters.get(name).copied().unwrap_or(0);
        let next = now.saturating_add(by);
        if limit.is_some_and(|l| next > l) {
            return Ok(Counter::LimitExceeded(now));
        }
        cur.counters.insert(name.to_owned(), next);
        cur.version = next_version(cur.version)?;
        sqlx::query("UPDATE sessions SET counters = $1, version = $2 WHERE id = $3")
            .bind(encode_counters(&cur.counters)?)
            .bind(version_to_i64(cur.version)?)
            .bind(id.as_bytes().as_slice())
            .execute(&mut *tx)
            .await
            .map_err(from_sqlx)?;
        tx.commit().await.map_err(from_sqlx)?;
        Ok(Counter::Incremented(next))
    }

    pub(crate) async fn sweep(&self, spec: SweepSpec, max: usize) -> StoreResult<Vec<Ended>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let mut tx = self.begin().await?;
        let rows = sqlx::query(LOCK_EXPIRED)
            .bind(spec.now.0)
            .bind(i64::try_from(max).unwrap_or(i64::MAX))
            .fetch_all(&mut *tx)
            .await
            .map_err(from_sqlx)?;
        let mut ended = Vec::with_capacity(rows.len());
        for row in &rows {
            let rec = decode_record(row)?;
            // `expires_at` follows from the other columns; a row that says
            // otherwise is left alone rather than ended early.
            let Some(reason) = rec.expiry_reason(spec.now) else {
                continue;
            };
            remove(&mut tx, &rec, spec.ending(&rec, reason)).await?;
            ended.push(Ended {
                record: Arc::new(rec),
                reason,
            });
        }
        drop(rows);
        sqlx::query("DELETE FROM tombstones WHERE keep_until <= $1")
            .bind(spec.now.0)
            .execute(&mut *tx)
            .await
            .map_err(from_sqlx)?;
        sqlx::query("DELETE FROM restorable WHERE keep_until <= $1")
            .bind(spec.now.0)
            .execute(&mut *tx)
            .await
            .map_err(from_sqlx)?;
        tx.commit().await.map_err(from_sqlx)?;
        Ok(ended)
    }

    pub(crate) async fn take_restorable(
        &self,
        user: &UserId,
        now: Timestamp,
    ) -> StoreResult<Option<Restorable>> {
        // One statement, so one atomic step: of two concurrent takes, one gets it.
        let row = sqlx::query(
            "DELETE FROM restorable WHERE user_id = $1 RETURNING session_id, data, keep_until",
        )
        .bind(user.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(from_sqlx)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let restorable = Restorable {
            session_id: decode_id(&row, 0, "restorable.session_id")?,
            data: Sealed::from_bytes(get::<&[u8]>(&row, 1)?),
            keep_until: Timestamp(get(&row, 2)?),
        };
        Ok(Some(restorable).filter(|r| r.keep_until > now))
    }

    pub(crate) async fn user_data(&self, user: &UserId) -> StoreResult<Option<UserData>> {
        let row = sqlx::query("SELECT version, data FROM user_data WHERE user_id = $1")
            .bind(user.as_str())
            .fetch_optional(&self.pool)
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

    pub(crate) async fn set_user_data(
        &self,
        user: &UserId,
        expected_version: u64,
        data: Sealed,
    ) -> StoreResult<Result<UserData, Option<UserData>>> {
        let new = UserData {
            version: next_version(expected_version)?,
            data,
        };
        // One statement each, so the version check and the write are one step.
        let version = version_to_i64(new.version)?;
        let done = if expected_version == 0 {
            sqlx::query(
                "INSERT INTO user_data (user_id, version, data) VALUES ($1, $2, $3) \
                 ON CONFLICT (user_id) DO NOTHING",
            )
            .bind(user.as_str())
            .bind(version)
            .bind(new.data.as_bytes())
            .execute(&self.pool)
            .await
        } else {
            sqlx::query(
                "UPDATE user_data SET version = $2, data = $3 WHERE user_id = $1 AND version = $4",
            )
            .bind(user.as_str())
            .bind(version)
            .bind(new.data.as_bytes())
            .bind(version_to_i64(expected_version)?)
            .execute(&self.pool)
            .await
        }
        .map_err(from_sqlx)?;
        if done.rows_affected() == 1 {
            return Ok(Ok(new));
        }
        // Someone else wrote first: their value (versions only grow, so it
        // still differs from `expected_version`).
        Ok(Err(self.user_data(user).await?))
    }
}

// ---- statements shared by the operations ----

/// Waits for (then holds until the transaction ends) the advisory lock that
/// serialises the operations on all of `user`'s sessions.
async fn lock_user(conn: &mut PgConnection, user: &UserId) -> StoreResult<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(USER_LOCK)
        .bind(user.as_str())
        .execute(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    Ok(())
}

/// Overwrites the stored row of `rec.id` with `rec`.
async fn replace(conn: &mut PgConnection, rec: &SessionRecord) -> StoreResult<()> {
    let enc = Encoded::new(rec)?;
    bind_record(sqlx::query(REPLACE_SESSION), rec, &enc)
        .execute(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    Ok(())
}

/// Writes `rec.last_seen_at` (and the expiry that follows from it).
pub(crate) async fn set_last_seen(conn: &mut PgConnection, rec: &SessionRecord) -> StoreResult<()> {
    sqlx::query(SET_LAST_SEEN)
        .bind(rec.last_seen_at.0)
        .bind(rec.expires_at().0)
        .bind(rec.id.as_bytes().as_slice())
        .execute(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    Ok(())
}

/// The session `id`, locked until the transaction ends.
pub(crate) async fn lock_by_id(
    conn: &mut PgConnection,
    id: &SessionId,
) -> StoreResult<Option<SessionRecord>> {
    select_one(conn, LOCK_BY_ID, id).await
}

async fn select_one(
    conn: &mut PgConnection,
    sql: &'static str,
    id: &SessionId,
) -> StoreResult<Option<SessionRecord>> {
    let row = sqlx::query(sql)
        .bind(id.as_bytes().as_slice())
        .fetch_optional(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    row.as_ref().map(decode_record).transpose()
}

async fn select_many(
    conn: &mut PgConnection,
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

async fn put_tombstone(
    conn: &mut PgConnection,
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

/// Ends a session (row locked by the caller) inside the caller's transaction:
/// row removed, then [`bury`].
pub(crate) async fn remove(
    conn: &mut PgConnection,
    rec: &SessionRecord,
    ending: Ending,
) -> StoreResult<()> {
    sqlx::query("DELETE FROM sessions WHERE id = $1")
        .bind(rec.id.as_bytes().as_slice())
        .execute(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    bury(conn, rec, ending).await
}

/// What stays of a removed session: a tombstone under its token hash, and its
/// data for restore if asked and the session has a user.
async fn bury(conn: &mut PgConnection, rec: &SessionRecord, ending: Ending) -> StoreResult<()> {
    let tombstone = Tombstone {
        session_id: rec.id,
        user: rec.user.clone(),
        reason: ending.reason,
        ended_at: ending.at,
        keep_until: ending.reason_until,
    };
    put_tombstone(conn, &rec.token_hash, &tombstone).await?;
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

crate::codec::backend_codec!(Postgres, PgRow, i16);
