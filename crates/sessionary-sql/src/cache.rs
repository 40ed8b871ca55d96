//! The in-process write-through cache of session records used by
//! [`crate::SqliteOptions::with_exclusive_cache`].
//!
//! It is only correct because nothing but this process's single connection can
//! change the database (`PRAGMA locking_mode=EXCLUSIVE`), and the connection is
//! held across every step below:
//!
//! - a write removes the entries of the records it changes *before* it reads
//!   the pending touches of those records (see [`crate::touches`]) and inserts
//!   the new record *after* the commit, still holding the connection;
//! - a read that misses queries the database, applies the pending touch, and
//!   fills the entry while holding the connection, so it can never insert a
//!   record a write has replaced.
//!
//! So an entry, when present, is the committed row with its pending touch (if
//! any) applied; a reader that misses waits for the connection and reads the
//! same. Lookups by token hash and by id take one shard read lock and clone one
//! `Arc`.
//!
//! The one change made *without* the connection is a touch on a hit
//! ([`Cache::replace`]): a compare-and-swap on the entry by token hash, which
//! fails once a write has removed (or replaced) the entry, and which records
//! the pending touch before it releases the entry's lock. Hence the order of
//! the two maps: [`Cache::remember`] fills the map by id first and
//! [`Cache::forget`] empties the map by token hash first, so a touch, which is
//! gated on the map by token hash, always finds both maps filled.

use std::sync::Arc;

use parking_lot::RwLock;
use sessionary_core::token::RandomKeyMap;
use sessionary_core::{SessionId, SessionRecord, TokenHash};

const SHARDS: usize = 64;

type Map<K> = RandomKeyMap<K, Arc<SessionRecord>>;

/// Session records by token hash and by id.
#[derive(Debug)]
pub(crate) struct Cache {
    by_hash: Box<[RwLock<Map<TokenHash>>]>,
    by_id: Box<[RwLock<Map<SessionId>>]>,
}

fn hash_shard(h: &TokenHash) -> usize {
    usize::from(h.0[31]) & (SHARDS - 1)
}

fn id_shard(id: &SessionId) -> usize {
    usize::from(id.0[15]) & (SHARDS - 1)
}

impl Cache {
    pub(crate) fn new() -> Self {
        Self {
            by_hash: (0..SHARDS).map(|_| RwLock::new(Map::default())).collect(),
            by_id: (0..SHARDS).map(|_| RwLock::new(Map::default())).collect(),
        }
    }

    pub(crate) fn by_hash(&self, h: &TokenHash) -> Option<Arc<SessionRecord>> {
        self.by_hash[hash_shard(h)].read().get(h).cloned()
    }

    pub(crate) fn by_id(&self, id: &SessionId) -> Option<Arc<SessionRecord>> {
        self.by_id[id_shard(id)].read().get(id).cloned()
    }

    /// Drops the entries of a record about to change (call before the commit,
    /// and before reading its pending touch).
    pub(crate) fn forget(&self, rec: &SessionRecord) {
        self.by_hash[hash_shard(&rec.token_hash)]
            .write()
            .remove(&rec.token_hash);
        self.by_id[id_shard(&rec.id)].write().remove(&rec.id);
    }

    /// Inserts the committed record (call after the commit, connection still held).
    pub(crate) fn remember(&self, rec: &Arc<SessionRecord>) {
        self.by_id[id_shard(&rec.id)]
            .write()
            .insert(rec.id, Arc::clone(rec));
        self.by_hash[hash_shard(&rec.token_hash)]
            .write()
            .insert(rec.token_hash, Arc::clone(rec));
    }

    /// Replaces the entry `old` (found by token hash) with `new`, a copy with
    /// only `last_seen_at` moved, and runs `then` (which records the pending
    /// touch) before anyone can see or drop `new`. Returns `false`, doing
    /// nothing, if the entry is no longer `old` (a write removed or replaced it).
    pub(crate) fn replace(
        &self,
        old: &Arc<SessionRecord>,
        new: &Arc<SessionRecord>,
        then: impl FnOnce(),
    ) -> bool {
        debug_assert_eq!(old.token_hash, new.token_hash);
        debug_assert_eq!(old.id, new.id);
        let mut by_hash = self.by_hash[hash_shard(&old.token_hash)].write();
        match by_hash.get_mut(&old.token_hash) {
            Some(cur) if Arc::ptr_eq(cur, old) => *cur = Arc::clone(new),
            _ => return false,
        }
        self.by_id[id_shard(&new.id)]
            .write()
            .insert(new.id, Arc::clone(new));
        then();
        true
    }

    /// Drops every entry (when the store closes).
    pub(crate) fn clear(&self) {
        // By token hash first, as in `forget`.
        for shard in &*self.by_hash {
            shard.write().clear();
        }
        for shard in &*self.by_id {
            shard.write().clear();
        }
    }

    /// Number of cached records.
    pub(crate) fn len(&self) -> usize {
        self.by_id.iter().map(|s| s.read().len()).sum()
    }
}
