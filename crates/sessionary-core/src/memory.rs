//! [`MemoryStore`]: sessions in this process, for tests and single-process apps.
//!
//! Layout: the records live in 64 shards keyed by token hash (the hot path is one
//! shard read lock and one `Arc` clone), with an id index, a tombstone map and a
//! per-user map beside them, each sharded the same way. Writers serialise per
//! *owner* (the user, or the session itself when anonymous) on one of 256 striped
//! mutexes, so a concurrent-session limit is atomic per user while different users
//! never wait for each other. No lock is held across an `.await` (the store does
//! not await at all), and no two shard locks are ever held at once.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use parking_lot::{Mutex, MutexGuard, RwLock};

use crate::audit::{AuditEntry, AuditQuery, AuditRecord};
use crate::clock::Timestamp;
use crate::policy::LimitMode;
use crate::record::{Restorable, SessionRecord, Tombstone, UserData};
use crate::refresh::{CreateFamily, FamilyEnd, RefreshFamily, RefreshOutcome, RefreshRequest};
use crate::seal::Sealed;
use crate::store::{
    Counter, Create, Ended, Ending, Lookup, SessionLimit, SessionStore, StoreResult, SweepSpec,
    Touch, Update, apply_update,
};
use crate::token::{RandomKeyMap, SessionId, TokenHash, UserId};

mod audit;
mod refresh;

const SHARDS: usize = 64;
const STRIPES: usize = 256;

type FastMap<K, V> = RandomKeyMap<K, V>;
type Shards<M> = Box<[Padded<RwLock<M>>]>;

/// A shard on cache lines of its own: a read lock writes the lock word, and two
/// shards on one line would make cores that read different shards contend.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded<T>(T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

#[derive(Debug, Default)]
struct UserEntry {
    sessions: Vec<SessionId>,
    data: Option<UserData>,
    restore: Option<Restorable>,
}

impl UserEntry {
    fn is_empty(&self) -> bool {
        self.sessions.is_empty() && self.data.is_none() && self.restore.is_none()
    }
}

fn shards<K, V, S: Default>() -> Shards<HashMap<K, V, S>> {
    (0..SHARDS)
        .map(|_| Padded(RwLock::new(HashMap::default())))
        .collect()
}

/// An in-process [`SessionStore`]. Clones share the same sessions.
///
/// Its audit log keeps the newest 100 000 entries; older ones are dropped as
/// new ones arrive (besides [`SessionStore::sweep_audit`]).
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use sessionary_core::{MemoryStore, SessionManager};
///
/// let manager = SessionManager::builder(Arc::new(MemoryStore::new())).build()?;
/// # Ok::<(), sessionary_core::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    sessions: Shards<FastMap<TokenHash, Arc<SessionRecord>>>,
    ids: Shards<FastMap<SessionId, TokenHash>>,
    tombstones: Shards<FastMap<TokenHash, Tombstone>>,
    users: Shards<HashMap<UserId, UserEntry>>,
    stripes: Box<[Mutex<()>]>,
    hasher: RandomState,
    sweep_cursor: AtomicUsize,
    /// Refresh token families (see `memory/refresh.rs`).
    refresh: refresh::Families,
    /// The newest audit entries (see `memory/audit.rs`).
    audit: audit::AuditRing,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            sessions: shards(),
            ids: shards(),
            tombstones: shards(),
            users: shards(),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            hasher: RandomState::new(),
            sweep_cursor: AtomicUsize::new(0),
            refresh: refresh::Families::default(),
            audit: audit::AuditRing::default(),
        }
    }
}

fn h_shard(h: &TokenHash) -> usize {
    usize::from(h.0[31]) & (SHARDS - 1)
}

fn id_shard(id: &SessionId) -> usize {
    usize::from(id.0[15]) & (SHARDS - 1)
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of sessions held (live or not yet swept).
    pub fn len(&self) -> usize {
        self.inner.sessions.iter().map(|s| s.read().len()).sum()
    }

    /// Whether the store holds no sessions.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    fn user_shard(&self, u: &UserId) -> usize {
        (self.hasher.hash_one(u) as usize) & (SHARDS - 1)
    }

    fn stripe(&self, user: Option<&UserId>, id: &SessionId) -> MutexGuard<'_, ()> {
        let i = match user {
            Some(u) => (self.hasher.hash_one(u) >> 8) as usize,
            None => usize::from(id.0[14]),
        };
        self.stripes[i & (STRIPES - 1)].lock()
    }

    fn by_id(&self, id: &SessionId) -> Option<Arc<SessionRecord>> {
        let h = *self.ids[id_shard(id)].read().get(id)?;
        self.sessions[h_shard(&h)].read().get(&h).cloned()
    }

    /// Takes the owner lock of a session and returns it with the record read under it.
    fn lock_session(&self, id: &SessionId) -> Option<(MutexGuard<'_, ()>, Arc<SessionRecord>)> {
        let first = self.by_id(id)?;
        // The owner of a session never changes, so this is the right stripe.
        let guard = self.stripe(first.user.as_ref(), id);
        let rec = self.by_id(id)?;
        Some((guard, rec))
    }

    /// Applies `f` to the stored record under its shard's write lock (caller holds
    /// the owner lock). `f` returns the replacement, if any.
    fn modify<R>(
        &self,
        h: &TokenHash,
        f: impl FnOnce(&Arc<SessionRecord>) -> (Option<SessionRecord>, R),
    ) -> Option<R> {
        let mut shard = self.sessions[h_shard(h)].write();
        let cur = shard.get(h)?;
        let (new, out) = f(cur);
        if let Some(new) = new {
            shard.insert(*h, Arc::new(new));
        }
        Some(out)
    }

    /// Removes a session and leaves its tombstone (caller holds the owner lock).
    fn remove_locked(&self, id: &SessionId, ending: Ending) -> Option<Arc<SessionRecord>> {
        let h = *self.ids[id_shard(id)].read().get(id)?;
        let rec = self.sessions[h_shard(&h)].read().get(&h).cloned()?;
        self.tombstones[h_shard(&h)].write().insert(
            h,
            Tombstone {
                session_id: *id,
                user: rec.user.clone(),
                reason: ending.reason,
                ended_at: ending.at,
                keep_until: ending.reason_until,
            },
        );
        let rec = self.sessions[h_shard(&h)].write().remove(&h).unwrap_or(rec);
        self.ids[id_shard(id)].write().remove(id);
        if let Some(user) = &rec.user {
            let mut shard = self.users[self.user_shard(user)].write();
            if let Some(entry) = shard.get_mut(user) {
                entry.sessions.retain(|s| s != id);
                let keep = ending.restore_until.filter(|until| {
                    entry
                        .restore
                        .as_ref()
                        .is_none_or(|r| r.keep_until <= *until)
                });
                if let Some(until) = keep {
                    entry.restore = Some(Restorable {
                        session_id: *id,
                        data: rec.data.clone(),
                        keep_until: until,
                    });
                }
                if entry.is_empty() {
                    shard.remove(user);
                }
            }
        }
        Some(rec)
    }

    /// `load` (the store never waits).
    fn load(&self, hash: &TokenHash, touch: Option<Touch>) -> Lookup {
        let s = self;
        let found = s.sessions[h_shard(hash)].read().get(hash).cloned();
        if let Some(rec) = found {
            let Some(t) = touch.filter(|t| rec.touch_due(t.now)) else {
                return Lookup::Found(rec);
            };
            // A touch only moves `last_seen_at`, under the shard write lock, so it
            // never races a compare-and-set (which also writes under that lock).
            let mut shard = s.sessions[h_shard(hash)].write();
            return match shard.get(hash) {
                Some(cur) if cur.touch_due(t.now) => {
                    let mut new = SessionRecord::clone(cur);
                    new.last_seen_at = t.now;
                    let new = Arc::new(new);
                    shard.insert(*hash, Arc::clone(&new));
                    Lookup::Found(new)
                }
                Some(cur) => Lookup::Found(Arc::clone(cur)),
                None => {
                    drop(shard);
                    tomb_lookup(s, hash, touch)
                }
            };
        }
        tomb_lookup(s, hash, touch)
    }

    fn user_sessions(&self, user: &UserId) -> Vec<Arc<SessionRecord>> {
        let ids = self.users[self.user_shard(user)]
            .read()
            .get(user)
            .map(|e| e.sessions.clone())
            .unwrap_or_default();
        ids.iter().filter_map(|id| self.by_id(id)).collect()
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn create(
        &self,
        record: SessionRecord,
        limit: Option<SessionLimit>,
    ) -> StoreResult<Create> {
        let s = &self.inner;
        let _owner = s.stripe(record.user.as_ref(), &record.id);
        let h = record.token_hash;
        if s.ids[id_shard(&record.id)].read().contains_key(&record.id)
            || s.sessions[h_shard(&h)].read().contains_key(&h)
            || s.tombstones[h_shard(&h)].read().contains_key(&h)
        {
            return Ok(Create::Duplicate);
        }
        let mut evicted = Vec::new();
        if let (Some(limit), Some(user)) = (limit, record.user.as_ref()) {
            let mut live: Vec<_> = s
                .user_sessions(user)
                .into_iter()
                .filter(|r| r.counts_toward_limit(limit.now))
                .collect();
            let max = limit.max.max(1) as usize;
            if live.len() >= max {
                match limit.mode {
                    LimitMode::RejectNew => {
                        return Ok(Create::LimitReached {
                            active: u32::try_from(live.len()).unwrap_or(u32::MAX),
                        });
                    }
                    LimitMode::EvictOldest => {
                        live.sort_by_key(|r| (r.created_at, r.id));
                        let excess = live.len() + 1 - max;
                        for r in live.iter().take(excess) {
                            if let Some(gone) = s.remove_locked(&r.id, limit.evict) {
                                evicted.push(gone);
                            }
                        }
                    }
                }
            }
        }
        let id = record.id;
        let user = record.user.clone();
        s.sessions[h_shard(&h)].write().insert(h, Arc::new(record));
        s.ids[id_shard(&id)].write().insert(id, h);
        if let Some(user) = user {
            let shard = s.user_shard(&user);
            s.users[shard]
                .write()
                .entry(user)
                .or_default()
                .sessions
                .push(id);
        }
        Ok(Create::Created { evicted })
    }

    async fn load(&self, hash: &TokenHash, touch: Option<Touch>) -> StoreResult<Lookup> {
        Ok(self.inner.load(hash, touch))
    }

    fn load_now(&self, hash: &TokenHash, touch: Option<Touch>) -> Option<StoreResult<Lookup>> {
        Some(Ok(self.inner.load(hash, touch)))
    }

    async fn get(&self, id: &SessionId) -> StoreResult<Option<Arc<SessionRecord>>> {
        Ok(self.inner.by_id(id))
    }

    async fn update(&self, record: SessionRecord, expected_version: u64) -> StoreResult<Update> {
        let s = &self.inner;
        let Some((_owner, cur)) = s.lock_session(&record.id) else {
            return Ok(Update::Gone);
        };
        let h = cur.token_hash;
        let out = s.modify(&h, |cur| {
            if cur.version != expected_version {
                return (None, Update::Conflict(Arc::clone(cur)));
            }
            let mut new = apply_update(record, cur, expected_version + 1);
            new.token_hash = cur.token_hash;
            let shown = Arc::new(new.clone());
            (Some(new), Update::Updated(shown))
        });
        Ok(out.unwrap_or(Update::Gone))
    }

    async fn rotate(
        &self,
        record: SessionRecord,
        expected_version: u64,
        tombstone: Tombstone,
    ) -> StoreResult<Update> {
        let s = &self.inner;
        let Some((_owner, cur)) = s.lock_session(&record.id) else {
            return Ok(Update::Gone);
        };
        if cur.version != expected_version {
            return Ok(Update::Conflict(cur));
        }
        let old = cur.token_hash;
        let new_h = record.token_hash;
        if new_h == old
            || s.sessions[h_shard(&new_h)].read().contains_key(&new_h)
            || s.tombstones[h_shard(&new_h)].read().contains_key(&new_h)
        {
            return Err(crate::store::StoreError::Backend(
                "rotation to a token hash already in use".into(),
            ));
        }
        let id = record.id;
        let new = Arc::new(apply_update(record, &cur, expected_version + 1));
        // New first, then the index, then the old token's tombstone and removal:
        // readers by id never see a gap, readers of the old token see the record
        // or the tombstone.
        s.sessions[h_shard(&new_h)]
            .write()
            .insert(new_h, Arc::clone(&new));
        s.ids[id_shard(&id)].write().insert(id, new_h);
        s.tombstones[h_shard(&old)].write().insert(old, tombstone);
        let removed = s.sessions[h_shard(&old)].write().remove(&old);
        // A touch that landed on the old token meanwhile is carried over.
        if let Some(r) = removed.filter(|r| r.last_seen_at > new.last_seen_at) {
            let patched = s.modify(&new_h, |n| {
                let mut p = SessionRecord::clone(n);
                p.last_seen_at = r.last_seen_at;
                let shown = Arc::new(p.clone());
                (Some(p), shown)
            });
            if let Some(p) = patched {
                return Ok(Update::Updated(p));
            }
        }
        Ok(Update::Updated(new))
    }

    async fn touch(
        &self,
        id: &SessionId,
        now: Timestamp,
    ) -> StoreResult<Option<Arc<SessionRecord>>> {
        let s = &self.inner;
        let Some((_owner, cur)) = s.lock_session(id) else {
            return Ok(None);
        };
        let out = s.modify(&cur.token_hash, |cur| {
            if !cur.is_live(now) {
                return (None, None);
            }
            let mut new = SessionRecord::clone(cur);
            new.last_seen_at = new.last_seen_at.max(now);
            let shown = Arc::new(new.clone());
            (Some(new), Some(shown))
        });
        Ok(out.flatten())
    }

    async fn end(&self, id: &SessionId, ending: Ending) -> StoreResult<Option<Arc<SessionRecord>>> {
        let s = &self.inner;
        let Some((_owner, _)) = s.lock_session(id) else {
            return Ok(None);
        };
        Ok(s.remove_locked(id, ending))
    }

    async fn end_user(
        &self,
        user: &UserId,
        except: Option<&SessionId>,
        ending: Ending,
    ) -> StoreResult<Vec<Arc<SessionRecord>>> {
        let s = &self.inner;
        let any = SessionId([0; 16]);
        let _owner = s.stripe(Some(user), &any);
        let ids: Vec<SessionId> = s.users[s.user_shard(user)]
            .read()
            .get(user)
            .map(|e| e.sessions.clone())
            .unwrap_or_default();
        Ok(ids
            .iter()
            .filter(|id| Some(*id) != except)
            .filter_map(|id| s.remove_locked(id, ending))
            .collect())
    }

    async fn list_user(
        &self,
        user: &UserId,
        now: Timestamp,
    ) -> StoreResult<Vec<Arc<SessionRecord>>> {
        let mut v: Vec<_> = self
            .inner
            .user_sessions(user)
            .into_iter()
            .filter(|r| r.is_live(now))
            .collect();
        v.sort_by_key(|r| (r.created_at, r.id));
        Ok(v)
    }

    async fn increment_counter(
        &self,
        id: &SessionId,
        name: &str,
        by: u64,
        limit: Option<u64>,
    ) -> StoreResult<Counter> {
        let s = &self.inner;
        let Some((_owner, cur)) = s.lock_session(id) else {
            return Ok(Counter::Gone);
        };
        let out = s.modify(&cur.token_hash, |cur| {
            let now = cur.counters.get(name).copied().unwrap_or(0);
            let next = now.saturating_add(by);
            if limit.is_some_and(|l| next > l) {
                return (None, Counter::LimitExceeded(now));
            }
            let mut new = SessionRecord::clone(cur);
            new.counters.insert(name.to_owned(), next);
            new.version += 1;
            (Some(new), Counter::Incremented(next))
        });
        Ok(out.unwrap_or(Counter::Gone))
    }

    async fn sweep(&self, spec: SweepSpec, max: usize) -> StoreResult<Vec<Ended>> {
        let s = &self.inner;
        let mut ended = Vec::new();
        for _ in 0..SHARDS {
            if ended.len() >= max {
                break;
            }
            let i = s.sweep_cursor.fetch_add(1, Ordering::Relaxed) % SHARDS;
            let expired: Vec<SessionId> = s.sessions[i]
                .read()
                .values()
                .filter(|r| !r.is_live(spec.now))
                .take(max - ended.len())
                .map(|r| r.id)
                .collect();
            for id in expired {
                let Some((_owner, rec)) = s.lock_session(&id) else {
                    continue;
                };
                let Some(reason) = rec.expiry_reason(spec.now) else {
                    continue;
                };
                if let Some(record) = s.remove_locked(&id, spec.ending(&rec, reason)) {
                    ended.push(Ended { record, reason });
                }
            }
            s.tombstones[i]
                .write()
                .retain(|_, t| t.keep_until > spec.now);
            s.users[i].write().retain(|_, e| {
                if e.restore.as_ref().is_some_and(|r| r.keep_until <= spec.now) {
                    e.restore = None;
                }
                !e.is_empty()
            });
        }
        Ok(ended)
    }

    async fn take_restorable(
        &self,
        user: &UserId,
        now: Timestamp,
    ) -> StoreResult<Option<Restorable>> {
        let s = &self.inner;
        let mut shard = s.users[s.user_shard(user)].write();
        let Some(entry) = shard.get_mut(user) else {
            return Ok(None);
        };
        let taken = entry.restore.take().filter(|r| r.keep_until > now);
        if entry.is_empty() {
            shard.remove(user);
        }
        Ok(taken)
    }

    async fn user_data(&self, user: &UserId) -> StoreResult<Option<UserData>> {
        let s = &self.inner;
        Ok(s.users[s.user_shard(user)]
            .read()
            .get(user)
            .and_then(|e| e.data.clone()))
    }

    async fn set_user_data(
        &self,
        user: &UserId,
        expected_version: u64,
        data: Sealed,
    ) -> StoreResult<Result<UserData, Option<UserData>>> {
        let s = &self.inner;
        let mut shard = s.users[s.user_shard(user)].write();
        let entry = shard.entry(user.clone()).or_default();
        let current = entry.data.as_ref().map_or(0, |d| d.version);
        if current != expected_version {
            return Ok(Err(entry.data.clone()));
        }
        let new = UserData {
            version: current + 1,
            data,
        };
        entry.data = Some(new.clone());
        Ok(Ok(new))
    }

    async fn create_refresh_family(&self, family: RefreshFamily) -> StoreResult<CreateFamily> {
        Ok(self.inner.create_refresh_family(family))
    }

    async fn refresh(&self, request: RefreshRequest) -> StoreResult<RefreshOutcome> {
        self.inner.refresh(request)
    }

    async fn revoke_refresh(
        &self,
        hash: &TokenHash,
        reason: FamilyEnd,
    ) -> StoreResult<Option<RefreshFamily>> {
        Ok(self.inner.revoke_refresh(hash, reason))
    }

    async fn revoke_refresh_families(
        &self,
        session: &SessionId,
        reason: FamilyEnd,
    ) -> StoreResult<Vec<RefreshFamily>> {
        Ok(self.inner.revoke_refresh_families(session, reason))
    }

    async fn sweep_refresh(&self, now: Timestamp, max: usize) -> StoreResult<usize> {
        Ok(self.inner.sweep_refresh(now, max))
    }

    async fn append_audit(&self, entries: Vec<AuditEntry>) -> StoreResult<()> {
        self.inner.audit.append(entries);
        Ok(())
    }

    async fn audit(&self, query: &AuditQuery) -> StoreResult<Vec<AuditRecord>> {
        Ok(self.inner.audit.query(query))
    }

    async fn sweep_audit(&self, before: Timestamp, max: usize) -> StoreResult<usize> {
        Ok(self.inner.audit.sweep(before, max))
    }
}

fn tomb_lookup(s: &Inner, hash: &TokenHash, touch: Option<Touch>) -> Lookup {
    match s.tombstones[h_shard(hash)].read().get(hash) {
        Some(t) if touch.is_none_or(|t2| t2.now < t.keep_until) => Lookup::Ended(t.clone()),
        _ => Lookup::Missing,
    }
}
