//! [`YieldingStore`]: a `MemoryStore` that yields to the scheduler before every
//! user-data read and write, as a networked store would wait, so concurrent
//! tasks really interleave between a read and its compare-and-set.

use std::sync::Arc;

use async_trait::async_trait;
use sessionary_core::record::{Restorable, UserData};
use sessionary_core::refresh::{
    CreateFamily, FamilyEnd, RefreshFamily, RefreshOutcome, RefreshRequest,
};
use sessionary_core::store::{
    Counter, Create, Ended, Ending, Lookup, SessionLimit, StoreResult, SweepSpec, Touch, Update,
};
use sessionary_core::{
    MemoryStore, Sealed, SessionId, SessionRecord, SessionStore, Timestamp, TokenHash, Tombstone,
    UserId,
};
use tokio::task::yield_now;

/// A [`MemoryStore`] that yields before every user-data read and write (see
/// the module docs): races on user data really interleave under it.
#[derive(Debug, Default)]
pub struct YieldingStore {
    inner: MemoryStore,
}

#[async_trait]
impl SessionStore for YieldingStore {
    async fn create(&self, r: SessionRecord, l: Option<SessionLimit>) -> StoreResult<Create> {
        self.inner.create(r, l).await
    }
    async fn load(&self, h: &TokenHash, t: Option<Touch>) -> StoreResult<Lookup> {
        self.inner.load(h, t).await
    }
    async fn get(&self, id: &SessionId) -> StoreResult<Option<Arc<SessionRecord>>> {
        yield_now().await;
        self.inner.get(id).await
    }
    async fn update(&self, r: SessionRecord, v: u64) -> StoreResult<Update> {
        self.inner.update(r, v).await
    }
    async fn rotate(&self, r: SessionRecord, v: u64, t: Tombstone) -> StoreResult<Update> {
        yield_now().await;
        self.inner.rotate(r, v, t).await
    }
    async fn touch(
        &self,
        id: &SessionId,
        now: Timestamp,
    ) -> StoreResult<Option<Arc<SessionRecord>>> {
        self.inner.touch(id, now).await
    }
    async fn end(&self, id: &SessionId, e: Ending) -> StoreResult<Option<Arc<SessionRecord>>> {
        self.inner.end(id, e).await
    }
    async fn end_user(
        &self,
        u: &UserId,
        x: Option<&SessionId>,
        e: Ending,
    ) -> StoreResult<Vec<Arc<SessionRecord>>> {
        self.inner.end_user(u, x, e).await
    }
    async fn list_user(&self, u: &UserId, now: Timestamp) -> StoreResult<Vec<Arc<SessionRecord>>> {
        self.inner.list_user(u, now).await
    }
    async fn increment_counter(
        &self,
        id: &SessionId,
        n: &str,
        by: u64,
        l: Option<u64>,
    ) -> StoreResult<Counter> {
        self.inner.increment_counter(id, n, by, l).await
    }
    async fn sweep(&self, s: SweepSpec, max: usize) -> StoreResult<Vec<Ended>> {
        self.inner.sweep(s, max).await
    }
    async fn take_restorable(&self, u: &UserId, now: Timestamp) -> StoreResult<Option<Restorable>> {
        self.inner.take_restorable(u, now).await
    }
    async fn user_data(&self, u: &UserId) -> StoreResult<Option<UserData>> {
        yield_now().await;
        self.inner.user_data(u).await
    }
    async fn set_user_data(
        &self,
        u: &UserId,
        v: u64,
        d: Sealed,
    ) -> StoreResult<Result<UserData, Option<UserData>>> {
        yield_now().await;
        self.inner.set_user_data(u, v, d).await
    }
    async fn create_refresh_family(&self, f: RefreshFamily) -> StoreResult<CreateFamily> {
        self.inner.create_refresh_family(f).await
    }
    async fn refresh(&self, r: RefreshRequest) -> StoreResult<RefreshOutcome> {
        self.inner.refresh(r).await
    }
    async fn revoke_refresh(
        &self,
        h: &TokenHash,
        why: FamilyEnd,
    ) -> StoreResult<Option<RefreshFamily>> {
        self.inner.revoke_refresh(h, why).await
    }
    async fn revoke_refresh_families(
        &self,
        s: &SessionId,
        why: FamilyEnd,
    ) -> StoreResult<Vec<RefreshFamily>> {
        self.inner.revoke_refresh_families(s, why).await
    }
    async fn sweep_refresh(&self, now: Timestamp, max: usize) -> StoreResult<usize> {
        self.inner.sweep_refresh(now, max).await
    }
    async fn append_audit(&self, e: Vec<sessionary_core::AuditEntry>) -> StoreResult<()> {
        self.inner.append_audit(e).await
    }
    async fn audit(
        &self,
        q: &sessionary_core::AuditQuery,
    ) -> StoreResult<Vec<sessionary_core::AuditRecord>> {
        self.inner.audit(q).await
    }
    async fn sweep_audit(&self, before: Timestamp, max: usize) -> StoreResult<usize> {
        self.inner.sweep_audit(before, max).await
    }
}
