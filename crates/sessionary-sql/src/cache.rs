//! The in-process write-through cache of session records used by
//! [`crate::SqliteOptions::with_exclusive_cache`].
//!
//! It is only correct because nothing but this process's single connection can
//! change the database (`PRAGMA locking_mode=EXCLUSIVE`), and the connection is
//! held across every step below:
//!
//! - a write removes the entries of the records it changes *before* it commits
//!   and inserts the new record *after* the commit, still holding the
//!   connection;
//! - a read that misses queries the database and fills the entry while holding
//!   the connection, so it can never insert a record a write has replaced.
//!
//! So an entry, when present, is the committed row; a reader that misses waits
//! for the connection and reads the committed row. Lookups by token hash and by
//! id take one shard read lock and clone one `Arc`.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::hash::Hasher;
use std::sync::Arc;

use parking_lot::RwLock;
use sessionary_core::{SessionId, SessionRecord, TokenHash};

const SHARDS: usize = 64;

/// Hasher for keys that are already uniformly random (token hashes, session ids,
/// whose `Hash` impls write one `u64` taken from their bytes).
#[derive(Default, Clone, Copy, Debug)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn write(&mut self, bytes: &[u8]) {
        // Not used by our keys; fold anything else FNV-style to stay correct.
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

type Map<K> = HashMap<K, Arc<SessionRecord>, BuildHasherDefault<PassThrough>>;

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

    /// Drops the entries of a record about to change (call before the commit).
    pub(crate) fn forget(&self, rec: &SessionRecord) {
        self.by_hash[hash_shard(&rec.token_hash)]
            .write()
            .remove(&rec.token_hash);
        self.by_id[id_shard(&rec.id)].write().remove(&rec.id);
    }

    /// Inserts the committed record (call after the commit, connection still held).
    pub(crate) fn remember(&self, rec: &Arc<SessionRecord>) {
        self.by_hash[hash_shard(&rec.token_hash)]
            .write()
            .insert(rec.token_hash, Arc::clone(rec));
        self.by_id[id_shard(&rec.id)]
            .write()
            .insert(rec.id, Arc::clone(rec));
    }

    /// Drops every entry (when the store closes).
    pub(crate) fn clear(&self) {
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
