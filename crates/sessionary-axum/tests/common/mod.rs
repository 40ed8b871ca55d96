//! A store wrapper that counts reads, to check what reaches the store.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use sessionary_core::record::{Restorable, UserData};
use sessionary_core::store::{
    Counter, Create, Ended, Ending, Lookup, SessionLimit, StoreResult, SweepSpec, Touch, Update,
};
use sessionary_core::{
    MemoryStore, Sealed, SessionId, SessionRecord, SessionStore, Timestamp, TokenHash, Tombstone,
    UserId,
};

/// A [`MemoryStore`] that counts `load` calls (the per-request token lookup).
#[derive(Debug, Default)]
pub(crate) struct CountingStore {
    pub(crate) inner: MemoryStore,
    pub(crate) loads: AtomicUsize,
}

impl CountingStore {
    pub(crate) fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl SessionStore for CountingStore {
    async fn create(
        &self,
        record: SessionRecord,
        limit: Option<SessionLimit>,
    ) -> StoreResult<Create> {
        self.inner.create(record, limit).await
    }
    async fn load(&self, hash: &TokenHash, touch: Option<Touch>) -> StoreResult<Lookup> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.inner.load(hash, touch).await
    }
    async fn get(&self, id: &SessionId) -> StoreResult<Option<Arc<SessionRecord>>> {
        self.inner.get(id).await
    }
    async fn update(&self, record: SessionRecord, expected_version: u64) -> StoreResult<Update> {
        self.inner.update(record, expected_version).await
    }
    async fn rotate(
        &self,
        record: SessionRecord,
        expected_version: u64,
        tombstone: Tombstone,
    ) -> StoreResult<Update> {
        self.inner.rotate(record, expected_version, tombstone).await
    }
    async fn touch(
        &self,
        id: &SessionId,
        now: Timestamp,
    ) -> StoreResult<Option<Arc<SessionRecord>>> {
        self.inner.touch(id, now).await
    }
    async fn end(&self, id: &SessionId, ending: Ending) -> StoreResult<Option<Arc<SessionRecord>>> {
        self.inner.end(id, ending).await
    }
    async fn end_user(
        &self,
        user: &UserId,
        except: Option<&SessionId>,
        ending: Ending,
    ) -> StoreResult<Vec<Arc<SessionRecord>>> {
        self.inner.end_user(user, except, ending).await
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
        self.inner.increment_counter(id, name, by, limit).await
    }
    async fn sweep(&self, spec: SweepSpec, max: usize) -> StoreResult<Vec<Ended>> {
        self.inner.sweep(spec, max).await
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
}
