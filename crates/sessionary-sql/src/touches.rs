//! Write-behind touches, used with [`crate::SqliteOptions::with_exclusive_cache`].
//!
//! A due touch found on a cache hit moves `last_seen_at` in the cached record
//! at once (see [`crate::cache::Cache::replace`]) and is recorded here as
//! *pending*: session id → the `last_seen_at` the row should have. A background
//! task writes every pending touch each flush interval (and on close), in one
//! transaction per [`PER_TRANSACTION`] touches; so does a sweep before it looks
//! for expired sessions (the last few inside its own transaction).
//!
//! Invariant, for every cached session: the cached record is the committed row
//! with `last_seen_at = max(row, pending)`. It holds because
//!
//! - a touch replaces the cached entry and records the pending value under the
//!   entry's lock, and only if the entry is still the one it read;
//! - every write drops the cached entries of a session *before* it reads its
//!   pending touch (so no touch can land after the read), writes
//!   `max(new, row, pending)` where it rewrites `last_seen_at`, and clears the
//!   pending touch once the row holds it ([`Pending::written`]);
//! - ending a session drops its pending touch, so a flush never writes to an
//!   ended session, and the flush statement only ever updates rows that exist
//!   (`UPDATE`, never an insert) and only moves `last_seen_at` forward;
//! - the entries a flush takes out are put back (keeping the later value) if
//!   its transaction fails or is abandoned ([`Drained`]).
//!
//! Losing pending touches (a crash, a failed flush at close) leaves rows with
//! an older `last_seen_at`: those sessions expire up to one flush interval of
//! activity *earlier*, never later.

use std::sync::OnceLock;

use parking_lot::Mutex;
use sessionary_core::store::StoreResult;
use sessionary_core::token::RandomKeyMap;
use sessionary_core::{SessionId, Timestamp};
use sqlx::sqlite::SqliteConnection;

use crate::error::from_sqlx;

const SHARDS: usize = 64;

/// Rows per flush statement, at most (two parameters each).
const CHUNK: usize = 256;

/// Touches per flush transaction, at most. A flush of more runs several
/// transactions and lets other writes (sign-ins, logouts) in between: one such
/// transaction holds the writer for about 30 ms on a VM disk.
pub(crate) const PER_TRANSACTION: usize = 1024;

type Map = RandomKeyMap<SessionId, Timestamp>;

fn shard(id: &SessionId) -> usize {
    usize::from(id.0[13]) & (SHARDS - 1)
}

/// Touches recorded in memory and not yet written: session id → `last_seen_at`.
#[derive(Debug)]
pub(crate) struct Pending {
    shards: Box<[Mutex<Map>]>,
}

impl Pending {
    pub(crate) fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Map::default())).collect(),
        }
    }

    /// Records that `id` was seen at `seen` (the later value wins).
    pub(crate) fn record(&self, id: SessionId, seen: Timestamp) {
        let mut shard = self.shards[shard(&id)].lock();
        let at = shard.entry(id).or_insert(seen);
        *at = (*at).max(seen);
    }

    /// The pending `last_seen_at` of `id`, if any.
    pub(crate) fn get(&self, id: &SessionId) -> Option<Timestamp> {
        self.shards[shard(id)].lock().get(id).copied()
    }

    /// Forgets the pending touch of an ended session.
    pub(crate) fn remove(&self, id: &SessionId) {
        self.shards[shard(id)].lock().remove(id);
    }

    /// The row of `id` now holds `last_seen_at = seen`: forgets the pending
    /// touch if it is not later.
    pub(crate) fn written(&self, id: &SessionId, seen: Timestamp) {
        let mut shard = self.shards[shard(id)].lock();
        if shard.get(id).is_some_and(|at| *at <= seen) {
            shard.remove(id);
        }
    }

    /// Number of pending touches.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// Takes up to `max` pending touches out, sorted by id (the order of the
    /// index the flush walks). They come back unless [`Drained::done`] is called.
    pub(crate) fn drain(&self, max: usize) -> Drained<'_> {
        let mut items = Vec::new();
        for shard in &*self.shards {
            let room = max - items.len();
            if room == 0 {
                break;
            }
            let mut shard = shard.lock();
            if shard.len() <= room {
                items.extend(shard.drain());
            } else {
                let ids: Vec<SessionId> = shard.keys().take(room).copied().collect();
                items.extend(ids.into_iter().filter_map(|id| shard.remove_entry(&id)));
            }
        }
        items.sort_unstable_by_key(|(id, _)| id.0);
        Drained {
            pending: self,
            items,
            done: false,
        }
    }

    /// Drops every pending touch (when the store closes).
    pub(crate) fn clear(&self) {
        for shard in &*self.shards {
            shard.lock().clear();
        }
    }
}

/// Touches taken out of [`Pending`] by a flush. Put back on drop (keeping the
/// later of two values) unless the transaction that wrote them committed.
#[derive(Debug)]
pub(crate) struct Drained<'a> {
    pending: &'a Pending,
    items: Vec<(SessionId, Timestamp)>,
    done: bool,
}

impl Drained<'_> {
    /// Number of touches taken out.
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// The transaction holding the touches committed.
    pub(crate) fn done(mut self) -> usize {
        self.done = true;
        self.items.len()
    }

    /// Writes the touches in the caller's transaction: a few statements of up
    /// to [`CHUNK`] rows each, every one
    /// `UPDATE sessions SET last_seen_at = t.seen, expires_at = min(t.seen +
    /// idle_timeout_ms, absolute_expires_at) ... WHERE id = t.id AND
    /// last_seen_at < t.seen`. A row that is gone stays gone and a row already
    /// seen later is not rewritten.
    pub(crate) async fn write(&self, conn: &mut SqliteConnection) -> StoreResult<()> {
        let mut rest = self.items.as_slice();
        while !rest.is_empty() {
            // Chunks of CHUNK rows, then powers of two: at most 9 distinct
            // statements, each prepared once per connection.
            let n = if rest.len() >= CHUNK {
                CHUNK
            } else {
                1 << rest.len().ilog2()
            };
            let (chunk, tail) = rest.split_at(n);
            let mut q = sqlx::query(flush_sql(n));
            for (id, seen) in chunk {
                q = q.bind(id.as_bytes().as_slice()).bind(seen.0);
            }
            q.execute(&mut *conn).await.map_err(from_sqlx)?;
            rest = tail;
        }
        Ok(())
    }
}

impl Drop for Drained<'_> {
    fn drop(&mut self) {
        if !self.done {
            for (id, seen) in self.items.drain(..) {
                self.pending.record(id, seen);
            }
        }
    }
}

/// The flush statement for `n` rows (`n` a power of two up to [`CHUNK`]).
fn flush_sql(n: usize) -> &'static str {
    static SQL: OnceLock<Vec<String>> = OnceLock::new();
    let all = SQL.get_or_init(|| {
        (0..=CHUNK.ilog2())
            .map(|k| {
                let rows = (0..1usize << k)
                    .map(|i| format!("(?{}, ?{})", 2 * i + 1, 2 * i + 2))
                    .collect::<Vec<_>>()
                    .join(", ");
                format!(
                    "UPDATE sessions SET last_seen_at = t.column2, \
                     expires_at = min(t.column2 + idle_timeout_ms, absolute_expires_at) \
                     FROM (VALUES {rows}) AS t \
                     WHERE sessions.id = t.column1 AND sessions.last_seen_at < t.column2"
                )
            })
            .collect()
    });
    &all[n.ilog2() as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_touches_win_and_drained_touches_come_back() {
        let p = Pending::new();
        let a = SessionId([1; 16]);
        p.record(a, Timestamp(5));
        p.record(a, Timestamp(3));
        assert_eq!(p.get(&a), Some(Timestamp(5)));
        {
            let d = p.drain(usize::MAX);
            assert_eq!(d.len(), 1);
            assert_eq!(p.len(), 0);
            p.record(a, Timestamp(4));
            // Abandoned: 5 comes back and beats the 4 recorded meanwhile.
        }
        assert_eq!(p.get(&a), Some(Timestamp(5)));
        assert_eq!(p.drain(usize::MAX).done(), 1);
        assert_eq!(p.len(), 0);
        p.record(a, Timestamp(7));
        p.written(&a, Timestamp(6));
        assert_eq!(p.get(&a), Some(Timestamp(7)));
        p.written(&a, Timestamp(7));
        assert_eq!(p.get(&a), None);
    }

    /// The flush statement alone: forward only, capped by the absolute
    /// expiry, never an insert; more rows than one statement takes.
    #[tokio::test]
    async fn the_flush_only_moves_existing_rows_forward() {
        use sqlx::Connection as _;

        let mut conn = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        crate::sqlite::MIGRATOR.run(&mut conn).await.unwrap();
        // 256 plain rows, then three special ones; idle timeout 1000.
        let plain = |i: u8| {
            let mut id = [0; 16];
            id[0] = 1;
            id[1] = i;
            SessionId(id)
        };
        let rows: Vec<(SessionId, i64, i64)> = (0..=255u8)
            .map(|i| (plain(i), 0, 1_000_000))
            .chain([
                (SessionId([0xf0; 16]), 100, 10_000),
                (SessionId([0xf1; 16]), 500, 10_000),
                (SessionId([0xf2; 16]), 100, 1_200),
            ])
            .collect();
        for &(id, seen, absolute) in &rows {
            sqlx::query(
                "INSERT INTO sessions (id, token_hash, roles, aal, created_at, last_seen_at, \
                 idle_timeout_ms, touch_interval_ms, absolute_expires_at, expires_at, remember, \
                 version, csrf_secret, counters, data) \
                 VALUES (?1, ?1, '[]', 0, 0, ?2, 1000, 0, ?3, min(?2 + 1000, ?3), 0, 1, \
                 zeroblob(32), '{}', x'')",
            )
            .bind(id.as_bytes().as_slice())
            .bind(seen)
            .bind(absolute)
            .execute(&mut conn)
            .await
            .unwrap();
        }
        let p = Pending::new();
        for i in 0..=255u8 {
            p.record(plain(i), Timestamp(7));
        }
        p.record(SessionId([0xf0; 16]), Timestamp(300)); // forward
        p.record(SessionId([0xf1; 16]), Timestamp(400)); // older than the row
        p.record(SessionId([0xf2; 16]), Timestamp(900)); // past the absolute expiry
        for i in 0xf3..=0xffu8 {
            p.record(SessionId([i; 16]), Timestamp(900)); // no such session
        }
        let d = p.drain(usize::MAX);
        assert_eq!(d.len(), 256 + 3 + 13);
        d.write(&mut conn).await.unwrap();
        assert_eq!(d.done(), 272);

        let got: Vec<(Vec<u8>, i64, i64)> =
            sqlx::query_as("SELECT id, last_seen_at, expires_at FROM sessions ORDER BY id")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        assert_eq!(got.len(), rows.len(), "nothing inserted");
        for (id, seen, expires) in got {
            let want = match id[0] {
                1 => (7, 1_007),
                0xf0 => (300, 1_300),
                0xf1 => (500, 1_500),
                _ => (900, 1_200),
            };
            assert_eq!((seen, expires), want, "row {:#x}", id[0]);
        }
    }

    #[test]
    fn a_drain_takes_at_most_what_it_is_asked() {
        let p = Pending::new();
        for i in 0..100u8 {
            p.record(SessionId([i; 16]), Timestamp(i64::from(i)));
        }
        let d = p.drain(30);
        assert_eq!(d.len(), 30);
        assert!(d.items.windows(2).all(|w| w[0].0.0 < w[1].0.0), "sorted");
        assert_eq!(p.len(), 70);
        assert_eq!(d.done(), 30);
        assert_eq!(p.drain(usize::MAX).done(), 70);
        assert_eq!(p.len(), 0);
    }

    #[test]
    fn flush_statements_bind_two_parameters_per_row() {
        assert!(flush_sql(1).contains("(VALUES (?1, ?2)) AS t"));
        assert!(flush_sql(256).contains("(?511, ?512)) AS t"));
        assert_eq!(flush_sql(8).matches('?').count(), 16);
    }
}
