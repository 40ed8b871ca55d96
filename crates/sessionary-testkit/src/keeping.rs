//! [`Keeping`]: a store that keeps something alive (a temporary folder, a
//! private Redis deployment) for as long as any handle to the store exists.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use sessionary_core::audit::{AuditEntry, AuditQuery, AuditRecord};
use sessionary_core::record::{Restorable, UserData};
use sessionary_core::refresh::{
    CreateFamily, FamilyEnd, RefreshFamily, RefreshOutcome, RefreshRequest,
};
use sessionary_core::store::{
    Counter, Create, Ended, Ending, Lookup, SessionLimit, StoreResult, SweepSpec, Touch, Update,
};
use sessionary_core::{
    Sealed, SessionId, SessionRecord, SessionStore, Timestamp, TokenHash, Tombstone, UserId,
};

/// `store`, with `guard` dropped only after the last handle to it: what a
/// conformance case's `make` returns when the store lives in a fixture of
/// its own. Every call goes to `store` unchanged.
pub struct Keeping<G> {
    store: Arc<dyn SessionStore>,
    _guard: G,
}

impl<G: Send + Sync + 'static> Keeping<G> {
    /// `store`, keeping `guard` alive as long as it.
    pub fn store(store: Arc<dyn SessionStore>, guard: G) -> Arc<dyn SessionStore> {
        Arc::new(Self {
            store,
            _guard: guard,
        })
    }
}

impl<G> fmt::Debug for Keeping<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.store, f)
    }
}

#[async_trait]
impl<G: Send + Sync + 'static> SessionStore for Keeping<G> {
    async fn create(&self, r: SessionRecord, l: Option<SessionLimit>) -> StoreResult<Create> {
        self.store.create(r, l).await
    }
    async fn load(&self, h: &TokenHash, t: Option<Touch>) -> StoreResult<Lookup> {
        self.store.load(h, t).await
    }
    fn load_now(&self, h: &TokenHash, t: Option<Touch>) -> Option<StoreResult<Lookup>> {
        self.store.load_now(h, t)
    }
    async fn get(&self, id: &SessionId) -> StoreResult<Option<Arc<SessionRecord>>> {
        self.store.get(id).await
    }
    async fn update(&self, r: SessionRecord, v: u64) -> StoreResult<Update> {
        self.store.update(r, v).await
    }
    async fn rotate(&self, r: SessionRecord, v: u64, t: Tombstone) -> StoreResult<Update> {
        self.store.rotate(r, v, t).await
    }
    async fn touch(
        &self,
        id: &SessionId,
        now: Timestamp,
    ) -> StoreResult<Option<Arc<SessionRecord>>> {
        self.store.touch(id, now).await
    }
    async fn end(&self, id: &SessionId, e: Ending) -> StoreResult<Option<Arc<SessionRecord>>> {
        self.store.end(id, e).await
    }
    async fn end_user(
        &self,
        u: &UserId,
        except: Option<&SessionId>,
        e: Ending,
    ) -> StoreResult<Vec<Arc<SessionRecord>>> {
        self.store.end_user(u, except, e).await
    }
    async fn list_user(&self, u: &UserId, now: Timestamp) -> StoreResult<Vec<Arc<SessionRecord>>> {
        self.store.list_user(u, now).await
    }
    async fn increment_counter(
        &self,
        id: &SessionId,
        name: &str,
        by: u64,
        limit: Option<u64>,
    ) -> StoreResult<Counter> {
        self.store.increment_counter(id, name, by, limit).await
    }
    async fn sweep(&self, spec: SweepSpec, max: usize) -> StoreResult<Vec<Ended>> {
        self.store.sweep(spec, max).await
    }
    async fn take_restorable(&self, u: &UserId, now: Timestamp) -> StoreResult<Option<Restorable>> {
        self.store.take_restorable(u, now).await
    }
    async fn user_data(&self, u: &UserId) -> StoreResult<Option<UserData>> {
        self.store.user_data(u).await
    }
    async fn set_user_data(
        &self,
        u: &UserId,
        v: u64,
        data: Sealed,
    ) -> StoreResult<Result<UserData, Option<UserData>>> {
        self.store.set_user_data(u, v, data).await
    }
    async fn create_refresh_family(&self, f: RefreshFamily) -> StoreResult<CreateFamily> {
        self.store.create_refresh_family(f).await
    }
    async fn refresh(&self, r: RefreshRequest) -> StoreResult<RefreshOutcome> {
        self.store.refresh(r).await
    }
    async fn revoke_refresh(
        &self,
        h: &TokenHash,
        why: FamilyEnd,
    ) -> StoreResult<Option<RefreshFamily>> {
        self.store.revoke_refresh(h, why).await
    }
    async fn revoke_refresh_families(
        &self,
        s: &SessionId,
        why: FamilyEnd,
    ) -> StoreResult<Vec<RefreshFamily>> {
        self.store.revoke_refresh_families(s, why).await
    }
    async fn sweep_refresh(&self, now: Timestamp, max: usize) -> StoreResult<usize> {
        self.store.sweep_refresh(now, max).await
    }
    async fn append_audit(&self, e: Vec<AuditEntry>) -> StoreResult<()> {
        self.store.append_audit(e).await
    }
    async fn audit(&self, q: &AuditQuery) -> StoreResult<Vec<AuditRecord>> {
        self.store.audit(q).await
    }
    async fn sweep_audit(&self, before: Timestamp, max: usize) -> StoreResult<usize> {
        self.store.sweep_audit(before, max).await
    }
}
