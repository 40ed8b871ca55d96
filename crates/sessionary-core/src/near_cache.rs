//! [`NearCache`]: live session records kept in the node's memory in front of a
//! shared store, invalidated through the [`Fanout`] and never older than a bound.
//!
//! A verification that finds a fresh copy here answers without a store round
//! trip (through [`SessionStore::load_now`], so without a future either). What
//! makes a copy usable:
//!
//! - it is younger than `max_age` (default 1 s, by the cache's [`Clock`]);
//! - the session is live by its own timestamps at that instant, and no touch is
//!   due: a due touch, an expiry and everything else go to the store, so a
//!   stale copy never ends a session or skips a write;
//! - no invalidation arrived since it was read. Every write this cache makes
//!   through the store (update, rotate, end, end of a user's sessions, sweep,
//!   a counter increment, a refresh that ended a session) drops the local copy and publishes a
//!   [`RemoteKind::Changed`] event; every node's cache drops its copy when such
//!   an event, or an `ended` / `data_changed` event of a manager, arrives; a
//!   [`RemoteKind::Missed`] (the transport lost messages) or a lagging
//!   subscriber empties the cache.
//!
//! **Staleness bound.** A change made on another node is seen here once its
//! event arrives (the fan-out delay: milliseconds, see `ARCHITECTURE.md`), and
//! in any case within `max_age`, even when the event is lost without anyone
//! noticing (a node's publishing connection dropped it). Revocation may
//! therefore lag by up to `max_age` in that worst case; set it to what the
//! deployment accepts. Touches made by other nodes only make a session live
//! longer, so a copy that misses them errs towards asking the store. Counters
//! in a cached record are as old as the fan-out delay, `max_age` at worst
//! (a lost event); limits are enforced by
//! [`SessionStore::increment_counter`] in the store, never from a copy.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::broadcast;

use crate::audit::{AuditEntry, AuditQuery, AuditRecord};
use crate::clock::{Clock, Timestamp};
use crate::fanout::{Fanout, NodeId, RemoteEvent, RemoteKind};
use crate::record::{Restorable, SessionRecord, Tombstone, UserData};
use crate::refresh::{CreateFamily, FamilyEnd, RefreshFamily, RefreshOutcome, RefreshRequest};
use crate::seal::Sealed;
use crate::store::{
    Counter, Create, Ended, Ending, Lookup, SessionLimit, SessionStore, StoreResult, SweepSpec,
    Touch, Update,
};
use crate::token::{RandomKeyMap, SessionId, TokenHash, UserId};

const SHARDS: usize = 64;

/// Options of a [`NearCache`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use sessionary_core::near_cache::NearCacheOptions;
///
/// let options = NearCacheOptions::new()
///     .with_max_age(Duration::from_millis(500))
///     .with_capacity(50_000);
/// assert_eq!(options.max_age(), Duration::from_millis(500));
/// ```
#[derive(Clone, Copy, Debug)]
pub struct NearCacheOptions {
    max_age: Duration,
    capacity: usize,
}

impl Default for NearCacheOptions {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(1),
            capacity: 100_000,
        }
    }
}

impl NearCacheOptions {
    /// `max_age` 1 s, capacity 100 000 records.
    pub fn new() -> Self {
        Self::default()
    }

    /// The oldest a copy may be when it answers (the staleness bound when an
    /// invalidation is lost). Default 1 s.
    #[must_use]
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// How many records are kept at most (default 100 000); past it, arbitrary
    /// copies make room.
    #[must_use]
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// The staleness bound.
    pub fn max_age(&self) -> Duration {
        self.max_age
    }

    /// The capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

struct Entry {
    record: Arc<SessionRecord>,
    read_at: Timestamp,
}

struct Shard<K, V>(Mutex<RandomKeyMap<K, V>>);

struct State {
    /// Copies by token hash.
    records: Box<[Shard<TokenHash, Entry>]>,
    /// The token hash cached for each session id.
    ids: Box<[Shard<SessionId, TokenHash>]>,
    /// Bumped before each invalidation: a read started before it does not fill.
    epoch: AtomicU64,
    /// The fanout is gone: nothing is served from memory any more.
    closed: AtomicBool,
    per_shard: usize,
}

fn h_shard(h: &TokenHash) -> usize {
    usize::from(h.0[31]) & (SHARDS - 1)
}

fn id_shard(id: &SessionId) -> usize {
    usize::from(id.0[15]) & (SHARDS - 1)
}

fn shards<K, V>() -> Box<[Shard<K, V>]> {
    (0..SHARDS)
        .map(|_| Shard(Mutex::new(RandomKeyMap::default())))
        .collect()
}

/// Removes some entry to keep `map` under `cap` (which one does not matter:
/// the hashes are random).
fn make_room<K: Copy + Eq + std::hash::Hash, V>(map: &mut RandomKeyMap<K, V>, cap: usize) {
    if map.len() >= cap {
        if let Some(k) = map.keys().next().copied() {
            map.remove(&k);
        }
    }
}

impl State {
    fn new(capacity: usize) -> Self {
        Self {
            records: shards(),
            ids: shards(),
            epoch: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    fn get(&self, hash: &TokenHash) -> Option<(Arc<SessionRecord>, Timestamp)> {
        let map = self.records[h_shard(hash)].0.lock();
        map.get(hash).map(|e| (Arc::clone(&e.record), e.read_at))
    }

    /// Keeps `record` if nothing was invalidated since `epoch` was read.
    /// The id is indexed before the record, each under its lock with the
    /// epoch checked there, so an invalidation racing with the fill either
    /// finds the id (and removes the record) or makes the fill give up.
    fn fill(&self, epoch: u64, record: Arc<SessionRecord>, read_at: Timestamp) {
        let id = record.id;
        let hash = record.token_hash;
        let replaced = {
            let mut ids = self.ids[id_shard(&id)].0.lock();
            if self.epoch.load(Ordering::SeqCst) != epoch {
                return;
            }
            make_room(&mut ids, self.per_shard);
            ids.insert(id, hash)
        };
        if let Some(old) = replaced.filter(|old| *old != hash) {
            // The session was rotated: its old token's copy goes.
            self.records[h_shard(&old)].0.lock().remove(&old);
        }
        let mut records = self.records[h_shard(&hash)].0.lock();
        if self.epoch.load(Ordering::SeqCst) != epoch {
            return;
        }
        make_room(&mut records, self.per_shard);
        records.insert(hash, Entry { record, read_at });
    }

    fn drop_hash(&self, hash: &TokenHash) {
        self.records[h_shard(hash)].0.lock().remove(hash);
    }

    fn invalidate(&self, id: &SessionId) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let hash = self.ids[id_shard(id)].0.lock().remove(id);
        if let Some(h) = hash {
            self.drop_hash(&h);
        }
    }

    fn invalidate_user(&self, user: &UserId) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        for shard in self.records.iter() {
            shard
                .0
                .lock()
                .retain(|_, e| e.record.user.as_ref() != Some(user));
        }
    }

    fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        for shard in self.records.iter() {
            shard.0.lock().clear();
        }
        for shard in self.ids.iter() {
            shard.0.lock().clear();
        }
    }

    fn len(&self) -> usize {
        self.records.iter().map(|s| s.0.lock().len()).sum()
    }
}

/// A [`SessionStore`] that keeps fresh copies of live sessions in memory in
/// front of another store (see the [module docs](self) for the rules and the
/// staleness bound). Every other operation goes to the wrapped store.
///
/// Build the manager over it and give the manager the same fanout, so that
/// its `ended` and `data_changed` events invalidate too.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use sessionary_core::near_cache::{NearCache, NearCacheOptions};
/// use sessionary_core::{LocalFanout, MemoryStore, SessionManager, SystemClock};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let shared = Arc::new(MemoryStore::new()); // e.g. a RedisStore
/// let fanout = Arc::new(LocalFanout::new()); // e.g. a RedisFanout
/// let cache = NearCache::new(shared, fanout.clone(), Arc::new(SystemClock), NearCacheOptions::new())?;
/// let manager = SessionManager::builder(Arc::new(cache)).with_fanout(fanout).build()?;
/// # let _ = manager;
/// # Ok(())
/// # }
/// ```
pub struct NearCache {
    inner: Arc<dyn SessionStore>,
    fanout: Arc<dyn Fanout>,
    clock: Arc<dyn Clock>,
    node: NodeId,
    max_age_ms: i64,
    state: Arc<State>,
}

impl fmt::Debug for NearCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NearCache")
            .field("inner", &self.inner)
            .field("max_age_ms", &self.max_age_ms)
            .field("len", &self.state.len())
            .finish_non_exhaustive()
    }
}

impl NearCache {
    /// Wraps `store`, listening to `fanout` for invalidations (a task on the
    /// current Tokio runtime, until the cache is dropped).
    ///
    /// # Errors
    ///
    /// [`crate::Error::Config`] outside a Tokio runtime; an error of the
    /// system's random source for the node id.
    pub fn new(
        store: Arc<dyn SessionStore>,
        fanout: Arc<dyn Fanout>,
        clock: Arc<dyn Clock>,
        options: NearCacheOptions,
    ) -> crate::Result<Self> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            crate::Error::Config("a near cache needs a Tokio runtime: build it inside one".into())
        })?;
        let node = NodeId::generate()?;
        let state = Arc::new(State::new(options.capacity));
        // Subscribed before the first read, so no invalidation is missed.
        let rx = fanout.subscribe();
        runtime.spawn(listen(rx, Arc::downgrade(&state), node));
        Ok(Self {
            inner: store,
            fanout,
            clock,
            node,
            max_age_ms: i64::try_from(options.max_age.as_millis()).unwrap_or(i64::MAX),
            state,
        })
    }

    /// How many records are cached now.
    pub fn len(&self) -> usize {
        self.state.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn SessionStore> {
        &self.inner
    }

    /// Drops the local copy of `id` and tells the other nodes to.
    fn changed(&self, id: &SessionId, user: Option<&UserId>) {
        self.state.invalidate(id);
        self.fanout.publish(RemoteEvent {
            node: self.node,
            at: self.clock.now(),
            session_id: Some(*id),
            user: user.cloned(),
            kind: RemoteKind::Changed,
        });
    }

    fn changed_record(&self, rec: &SessionRecord) {
        self.changed(&rec.id, rec.user.as_ref());
    }

    /// Keeps a live session the store just returned (read after `epoch`).
    fn keep(&self, epoch: u64, lookup: &Lookup, touch: Option<Touch>) {
        if let Lookup::Found(rec) = lookup {
            let now = touch.map_or_else(|| self.clock.now(), |t| t.now);
            if rec.is_live(now) && !self.state.closed.load(Ordering::Relaxed) {
                self.state.fill(epoch, Arc::clone(rec), now);
            }
        }
    }

    /// A copy that may answer for `hash` now, if there is one.
    fn fresh(&self, hash: &TokenHash, touch: Option<Touch>) -> Option<Arc<SessionRecord>> {
        let (record, read_at) = self.state.get(hash)?;
        let now = match touch {
            Some(t) => t.now,
            None => self.clock.now(),
        };
        // A clock that went back makes the age unknown: ask the store.
        let young = now >= read_at && now.millis_since(read_at) < self.max_age_ms;
        if !young {
            self.state.drop_hash(hash);
            return None;
        }
        let usable = record.is_live(now) && !touch.is_some_and(|t| record.touch_due(t.now));
        usable.then_some(record)
    }
}

async fn listen(
    mut rx: broadcast::Receiver<RemoteEvent>,
    state: std::sync::Weak<State>,
    me: NodeId,
) {
    loop {
        let event = rx.recv().await;
        let Some(state) = state.upgrade() else { return };
        match event {
            Ok(e) if e.node == me => {}
            Ok(e) => match (&e.kind, e.session_id, &e.user) {
                (RemoteKind::Missed, ..) => state.clear(),
                (RemoteKind::UserDataChanged, ..) => {}
                (_, Some(id), _) => state.invalidate(&id),
                (_, None, Some(user)) => state.invalidate_user(user),
                (_, None, None) => state.clear(),
            },
            Err(broadcast::error::RecvError::Lagged(_)) => state.clear(),
            Err(broadcast::error::RecvError::Closed) => {
                // No more invalidations: nothing may be served from memory.
                state.closed.store(true, Ordering::SeqCst);
                state.clear();
                return;
            }
        }
    }
}

#[async_trait]
impl SessionStore for NearCache {
    async fn create(
        &self,
        record: SessionRecord,
        limit: Option<SessionLimit>,
    ) -> StoreResult<Create> {
        let out = self.inner.create(record, limit).await?;
        if let Create::Created { evicted } = &out {
            for e in evicted {
                self.changed_record(e);
            }
        }
        Ok(out)
    }

    async fn load(&self, hash: &TokenHash, touch: Option<Touch>) -> StoreResult<Lookup> {
        if let Some(rec) = self.fresh(hash, touch) {
            return Ok(Lookup::Found(rec));
        }
        let epoch = self.state.epoch.load(Ordering::SeqCst);
        let lookup = self.inner.load(hash, touch).await?;
        self.keep(epoch, &lookup, touch);
        Ok(lookup)
    }

    fn load_now(&self, hash: &TokenHash, touch: Option<Touch>) -> Option<StoreResult<Lookup>> {
        if let Some(rec) = self.fresh(hash, touch) {
            return Some(Ok(Lookup::Found(rec)));
        }
        let epoch = self.state.epoch.load(Ordering::SeqCst);
        let out = self.inner.load_now(hash, touch)?;
        if let Ok(lookup) = &out {
            self.keep(epoch, lookup, touch);
        }
        Some(out)
    }

    async fn get(&self, id: &SessionId) -> StoreResult<Option<Arc<SessionRecord>>> {
        self.inner.get(id).await
    }

    async fn update(&self, record: SessionRecord, expected_version: u64) -> StoreResult<Update> {
        let (id, user) = (record.id, record.user.clone());
        let out = self.inner.update(record, expected_version).await;
        self.changed(&id, user.as_ref());
        out
    }

    async fn rotate(
        &self,
        record: SessionRecord,
        expected_version: u64,
        tombstone: Tombstone,
    ) -> StoreResult<Update> {
        let (id, user) = (record.id, record.user.clone());
        let out = self.inner.rotate(record, expected_version, tombstone).await;
        self.changed(&id, user.as_ref());
        out
    }

    async fn touch(
        &self,
        id: &SessionId,
        now: Timestamp,
    ) -> StoreResult<Option<Arc<SessionRecord>>> {
        // Only makes the session live longer: other nodes' copies may keep
        // the older time (they ask the store when it looks due or expired).
        let out = self.inner.touch(id, now).await;
        self.state.invalidate(id);
        out
    }

    async fn end(&self, id: &SessionId, ending: Ending) -> StoreResult<Option<Arc<SessionRecord>>> {
        let out = self.inner.end(id, ending).await;
        let user = out.as_ref().ok().and_then(|r| r.as_ref()?.user.clone());
        self.changed(id, user.as_ref());
        out
    }

    async fn end_user(
        &self,
        user: &UserId,
        except: Option<&SessionId>,
        ending: Ending,
    ) -> StoreResult<Vec<Arc<SessionRecord>>> {
        let out = self.inner.end_user(user, except, ending).await;
        match &out {
            Ok(ended) => {
                for r in ended {
                    self.changed_record(r);
                }
            }
            // Whatever happened, no copy of this user's sessions stays.
            Err(_) => self.state.invalidate_user(user),
        }
        out
    }

    async fn list_user(
        &self,
        user: &UserId,
        now: Timestamp,
    ) -> StoreResult<Vec<Arc<SessionRecord>>> {
        self.inner.list_user(user, now).await
    }

    async fn increment_counter(
        &self,
        id: &SessionId,
        name: &str,
        by: u64,
        limit: Option<u64>,
    ) -> StoreResult<Counter> {
        let out = self.inner.increment_counter(id, name, by, limit).await;
        match &out {
            // The other nodes' copies show the counters (quota usage is read
            // from the record), so they drop theirs too.
            Ok(Counter::Incremented(_)) => self.changed(id, None),
            // Nothing changed in the store (limit reached, gone), or unknown.
            _ => self.state.invalidate(id),
        }
        out
    }

    async fn sweep(&self, spec: SweepSpec, max: usize) -> StoreResult<Vec<Ended>> {
        let out = self.inner.sweep(spec, max).await?;
        for e in &out {
            self.changed_record(&e.record);
        }
        Ok(out)
    }

    async fn take_restorable(
        &self,
        user: &UserId,
        now: Timestamp,
    ) -> StoreResult<Option<Restorable>> {
        self.inner.take_restorable(user, now).await
    }

    async fn user_data(&self, user: &UserId) -> StoreResult<Option<UserData>> {
        self.inner.user_data(user).await
    }

    async fn set_user_data(
        &self,
        user: &UserId,
        expected_version: u64,
        data: Sealed,
    ) -> StoreResult<Result<UserData, Option<UserData>>> {
        self.inner.set_user_data(user, expected_version, data).await
    }

    async fn create_refresh_family(&self, family: RefreshFamily) -> StoreResult<CreateFamily> {
        self.inner.create_refresh_family(family).await
    }

    async fn refresh(&self, request: RefreshRequest) -> StoreResult<RefreshOutcome> {
        let out = self.inner.refresh(request).await?;
        match &out {
            RefreshOutcome::Rotated { session, .. } | RefreshOutcome::Retry { session, .. } => {
                self.state.invalidate(&session.id);
            }
            RefreshOutcome::Reused { family, .. } | RefreshOutcome::SessionEnded { family, .. } => {
                self.changed(&family.session_id, Some(&family.user));
            }
            RefreshOutcome::Expired(_) | RefreshOutcome::Revoked(_) | RefreshOutcome::Missing => {}
        }
        Ok(out)
    }

    async fn revoke_refresh(
        &self,
        hash: &TokenHash,
        why: FamilyEnd,
    ) -> StoreResult<Option<RefreshFamily>> {
        self.inner.revoke_refresh(hash, why).await
    }

    async fn revoke_refresh_families(
        &self,
        session: &SessionId,
        why: FamilyEnd,
    ) -> StoreResult<Vec<RefreshFamily>> {
        self.inner.revoke_refresh_families(session, why).await
    }

    async fn sweep_refresh(&self, now: Timestamp, max: usize) -> StoreResult<usize> {
        self.inner.sweep_refresh(now, max).await
    }

    async fn append_audit(&self, entries: Vec<AuditEntry>) -> StoreResult<()> {
        self.inner.append_audit(entries).await
    }

    async fn audit(&self, query: &AuditQuery) -> StoreResult<Vec<AuditRecord>> {
        self.inner.audit(query).await
    }

    async fn sweep_audit(&self, before: Timestamp, max: usize) -> StoreResult<usize> {
        self.inner.sweep_audit(before, max).await
    }
}
