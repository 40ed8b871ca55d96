//! Write-behind touches, used with [`crate::SqliteOptions::with_exclusive_cache`].
//!
//! A due touch found on a cache hit moves `last_seen_at` in the cached record
//! at once (see [`crate::cache::Cache::replace`]) and is recorded here as
//! *pending*: session id → the `last_seen_at` the row should have. A background
//! task writes every pending touch in one transaction each flush interval (and
//! on close); so does a sweep, inside its own transaction, before it looks for
//! expired sessions.
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

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;

use parking_lot::Mutex;
use sessionary_core::store::StoreResult;
use sessionary_core::{SessionId, Timestamp};
use sqlx::sqlite::SqliteConnection;

use crate::error::from_sqlx;

const SHARDS: usize = 64;

/// Rows per flush statement, at most (two parameters each).
const CHUNK: usize = 256;

/// Hasher for session ids, which are already uniformly random (their `Hash`
/// impl writes one `u64` taken from their bytes).
#[derive(Default, Clone, Copy, Debug)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type Map = HashMap<SessionId, Timestamp, BuildHasherDefault<PassThrough>>;

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

    /// Takes every pending touch out, sorted by id (the order of the index the
    /// flush walks). They come back unless [`Drained::done`] is called.
    pub(crate) fn drain(&self) -> Drained<'_> {
        let mut items = Vec::new();
        for shard in &*self.shards {
            items.extend(shard.lock().drain());
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
            let d = p.drain();
            assert_eq!(d.len(), 1);
            assert_eq!(p.len(), 0);
            p.record(a, Timestamp(4));
            // Abandoned: 5 comes back and beats the 4 recorded meanwhile.
        }
        assert_eq!(p.get(&a), Some(Timestamp(5)));
        assert_eq!(p.drain().done(), 1);
        assert_eq!(p.len(), 0);
        p.record(a, Timestamp(7));
        p.written(&a, Timestamp(6));
        assert_eq!(p.get(&a), Some(Timestamp(7)));
        p.written(&a, Timestamp(7));
        assert_eq!(p.get(&a), None);
    }

    #[test]
    fn flush_statements_bind_two_parameters_per_row() {
        assert!(flush_sql(1).contains("(VALUES (?1, ?2)) AS t"));
        assert!(flush_sql(256).contains("(?511, ?512)) AS t"));
        assert_eq!(flush_sql(8).matches('?').count(), 16);
    }
}
