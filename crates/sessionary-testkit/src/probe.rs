//! [`ProbeStore`]: a [`MemoryStore`] that counts what reaches it and can be made
//! unavailable, for tests that check what a layer sends to the store.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use sessionary_core::record::{Restorable, UserData};
use sessionary_core::refresh::{
    CreateFamily, FamilyEnd, RefreshFamily, RefreshOutcome, RefreshRequest,
};
use sessionary_core::store::{
    Counter, Create, Ended, Ending, Lookup, SessionLimit, StoreResult, SweepSpec, Touch, Update,
};
use sessionary_core::{
    MemoryStore, Sealed, SessionId, SessionRecord, SessionStore, StoreError, Timestamp, TokenHash,
    Tombstone, UserId,
};

/// A [`MemoryStore`] that counts calls (`load`s, other reads, writes) and fails
/// every call with [`StoreError::Unavailable`] while [`ProbeStore::set_down`] is on.
#[derive(Debug, Default)]
pub struct ProbeStore {
    /// The store behind the probe (clones share its sessions).
    pub inner: MemoryStore,
    loads: AtomicUsize,
    reads: AtomicUsize,
    writes: AtomicUsize,
    down: AtomicBool,
}

impl ProbeStore {
    /// A probe over an empty [`MemoryStore`].
    pub fn new() -> Self {
        Self::default()
    }

    /// `load` calls (the per-request token lookup).
    pub fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }

    /// Read calls, `load` included.
    pub fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }

    /// Write calls.
    pub fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }

    /// Every call.
    pub fn calls(&self) -> usize {
        self.reads() + self.writes()
    }

    /// Makes every call fail as unavailable (`true`) or pass again (`false`).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn read(&self) -> StoreResult<()> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.gate()
    }

    fn write(&self) -> StoreResult<()> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.gate()
    }

    fn gate(&self) -> StoreResult<()> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable(std::io::Error::other(
                "store down (ProbeStore)",
            )));
        }
        Ok(())
    }
}

#[async_trait]
impl SessionStore for ProbeStore {
    async fn create(&self, r: SessionRecord, l: Option<SessionLimit>) -> StoreResult<Create> {
        self.write()?;
        self.inner.create(r, l).await
    }
    async fn load(&self, h: &TokenHash, t: Option<Touch>) -> StoreResult<Lookup> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.read()?;
        self.inner.load(h, t).await
    }
    fn load_now(&self, h: &TokenHash, t: Option<Touch>) -> Option<StoreResult<Lookup>> {
        // Counted like `load`: it is the same lookup, answered without waiting.
        self.loads.fetch_add(1, Ordering::SeqCst);
        if let Err(e) = self.read() {
            return Some(Err(e));
        }
        self.inner.load_now(h, t)
    }
    async fn get(&self, id: &SessionId) -> StoreResult<Option<Arc<SessionRecord>>> {
        self.read()?;
        self.inner.get(id).await
    }
    async fn update(&self, r: SessionRecord, v: u64) -> StoreResult<Update> {
        self.write()?;
        self.inner.update(r, v).await
    }
    async fn rotate(&self, r: SessionRecord, v: u64, t: Tombstone) -> StoreResult<Update> {
        self.write()?;
        self.inner.rotate(r, v, t).await
    }
    async fn touch(
        &self,
        id: &SessionId,
        now: Timestamp,
    ) -> StoreResult<Option<Arc<SessionRecord>>> {
        self.write()?;
        self.inner.touch(id, now).await
    }
    async fn end(&self, id: &SessionId, e: Ending) -> StoreResult<Option<Arc<SessionRecord>>> {
        self.write()?;
        self.inner.end(id, e).await
    }
    async fn end_user(
        &self,
        u: &UserId,
        x: Option<&SessionId>,
        e: Ending,
    ) -> StoreResult<Vec<Arc<SessionRecord>>> {
        self.write()?;
        self.inner.end_user(u, x, e).await
    }
    async fn list_user(&self, u: &UserId, now: Timestamp) -> StoreResult<Vec<Arc<SessionRecord>>> {
        self.read()?;
        self.inner.list_user(u, now).await
    }
    async fn increment_counter(
        &self,
        id: &SessionId,
        n: &str,
        by: u64,
        l: Option<u64>,
    ) -> StoreResult<Counter> {
        self.write()?;
        self.inner.increment_counter(id, n, by, l).await
    }
    async fn sweep(&self, s: SweepSpec, max: usize) -> StoreResult<Vec<Ended>> {
        self.write()?;
        self.inner.sweep(s, max).await
    }
    async fn take_restorable(&self, u: &UserId, now: Timestamp) -> StoreResult<Option<Restorable>> {
        self.write()?;
        self.inner.take_restorable(u, now).await
    }
    async fn user_data(&self, u: &UserId) -> StoreResult<Option<UserData>> {
        self.read()?;
        self.inner.user_data(u).await
    }
    async fn set_user_data(
        &self,
        u: &UserId,
        v: u64,
        d: Sealed,
    ) -> StoreResult<Result<UserData, Option<UserData>>> {
        self.write()?;
        self.inner.set_user_data(u, v, d).await
    }

    async fn create_refresh_family(&self, f: RefreshFamily) -> StoreResult<CreateFamily> {
        self.write()?;
        self.inner.create_refresh_family(f).await
    }
    async fn refresh(&self, r: RefreshRequest) -> StoreResult<RefreshOutcome> {
        self.write()?;
        self.inner.refresh(r).await
    }
    async fn revoke_refresh(
        &self,
        h: &TokenHash,
        why: FamilyEnd,
    ) -> StoreResult<Option<RefreshFamily>> {
        self.write()?;
        self.inner.revoke_refresh(h, why).await
    }
    async fn revoke_refresh_families(
        &self,
        s: &SessionId,
        why: FamilyEnd,
    ) -> StoreResult<Vec<RefreshFamily>> {
        self.write()?;
        self.inner.revoke_refresh_families(s, why).await
    }
    async fn sweep_refresh(&self, now: Timestamp, max: usize) -> StoreResult<usize> {
        self.write()?;
        self.inner.sweep_refresh(now, max).await
    }
    async fn append_audit(&self, e: Vec<sessionary_core::AuditEntry>) -> StoreResult<()> {
        self.write()?;
        self.inner.append_audit(e).await
    }
    async fn audit(
        &self,
        q: &sessionary_core::AuditQuery,
    ) -> StoreResult<Vec<sessionary_core::AuditRecord>> {
        self.read()?;
        self.inner.audit(q).await
    }
    async fn sweep_audit(&self, before: Timestamp, max: usize) -> StoreResult<usize> {
        self.write()?;
        self.inner.sweep_audit(before, max).await
    }
}
