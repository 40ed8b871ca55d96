//! The shared store conformance suite against a real Redis server
//! (`SESSIONARY_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`). Each case
//! gets its own random key prefix, deleted when the case drops its store.
//! Without a server the cases skip (and fail when `CI=true`).

// Test code: a panic is how a check reports a failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use sessionary_core::SessionStore;
use sessionary_core::record::{Restorable, Tombstone, UserData};
use sessionary_core::refresh::{
    CreateFamily, FamilyEnd, RefreshFamily, RefreshOutcome, RefreshRequest,
};
use sessionary_core::store::{
    Counter, Create, Ended, Ending, Lookup, SessionLimit, StoreResult, SweepSpec, Touch, Update,
};
use sessionary_core::{Sealed, SessionId, SessionRecord, Timestamp, TokenHash, UserId};
use sessionary_redis::{RedisOptions, RedisStore};

/// A store under a fresh random prefix; its keys are deleted on drop.
#[derive(Debug)]
struct Isolated(RedisStore);

impl Drop for Isolated {
    fn drop(&mut self) {
        // Best effort, on a connection of its own: the case's runtime may be
        // shutting down.
        let prefix = self.0.key_prefix().to_owned();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let options = RedisOptions::new().with_key_prefix(prefix);
                let store = RedisStore::connect(&common::url(), options).await.ok()?;
                store.clear().await.ok()
            })
        })
        .join();
    }
}

async fn make() -> Option<Arc<dyn SessionStore>> {
    let prefix = format!("sessionary-test:{}:", SessionId::generate().unwrap());
    let options = RedisOptions::new().with_key_prefix(prefix);
    match RedisStore::connect(&common::url(), options).await {
        Ok(store) => Some(Arc::new(Isolated(store))),
        Err(e) => {
            common::skip("conformance", &format!("cannot connect: {e}"));
            None
        }
    }
}

sessionary_testkit::store_conformance!(optional make);

#[async_trait]
impl SessionStore for Isolated {
    async fn create(&self, r: SessionRecord, l: Option<SessionLimit>) -> StoreResult<Create> {
        self.0.create(r, l).await
    }
    async fn load(&self, h: &TokenHash, t: Option<Touch>) -> StoreResult<Lookup> {
        self.0.load(h, t).await
    }
    async fn get(&self, id: &SessionId) -> StoreResult<Option<Arc<SessionRecord>>> {
        self.0.get(id).await
    }
    async fn update(&self, r: SessionRecord, v: u64) -> StoreResult<Update> {
        self.0.update(r, v).await
    }
    async fn rotate(&self, r: SessionRecord, v: u64, t: Tombstone) -> StoreResult<Update> {
        self.0.rotate(r, v, t).await
    }
    async fn touch(
        &self,
        id: &SessionId,
        now: Timestamp,
    ) -> StoreResult<Option<Arc<SessionRecord>>> {
        self.0.touch(id, now).await
    }
    async fn end(&self, id: &SessionId, e: Ending) -> StoreResult<Option<Arc<SessionRecord>>> {
        self.0.end(id, e).await
    }
    async fn end_user(
        &self,
        u: &UserId,
        except: Option<&SessionId>,
        e: Ending,
    ) -> StoreResult<Vec<Arc<SessionRecord>>> {
        self.0.end_user(u, except, e).await
    }
    async fn list_user(&self, u: &UserId, now: Timestamp) -> StoreResult<Vec<Arc<SessionRecord>>> {
        self.0.list_user(u, now).await
    }
    async fn increment_counter(
        &self,
        id: &SessionId,
        name: &str,
        by: u64,
        limit: Option<u64>,
    ) -> StoreResult<Counter> {
        self.0.increment_counter(id, name, by, limit).await
    }
    async fn sweep(&self, spec: SweepSpec, max: usize) -> StoreResult<Vec<Ended>> {
        self.0.sweep(spec, max).await
    }
    async fn take_restorable(&self, u: &UserId, now: Timestamp) -> StoreResult<Option<Restorable>> {
        self.0.take_restorable(u, now).await
    }
    async fn user_data(&self, u: &UserId) -> StoreResult<Option<UserData>> {
        self.0.user_data(u).await
    }
    async fn set_user_data(
        &self,
        u: &UserId,
        v: u64,
        data: Sealed,
    ) -> StoreResult<Result<UserData, Option<UserData>>> {
        self.0.set_user_data(u, v, data).await
    }
    async fn create_refresh_family(&self, f: RefreshFamily) -> StoreResult<CreateFamily> {
        self.0.create_refresh_family(f).await
    }
    async fn refresh(&self, r: RefreshRequest) -> StoreResult<RefreshOutcome> {
        self.0.refresh(r).await
    }
    async fn revoke_refresh(
        &self,
        h: &TokenHash,
        why: FamilyEnd,
    ) -> StoreResult<Option<RefreshFamily>> {
        self.0.revoke_refresh(h, why).await
    }
    async fn revoke_refresh_families(
        &self,
        s: &SessionId,
        why: FamilyEnd,
    ) -> StoreResult<Vec<RefreshFamily>> {
        self.0.revoke_refresh_families(s, why).await
    }
    async fn sweep_refresh(&self, now: Timestamp, max: usize) -> StoreResult<usize> {
        self.0.sweep_refresh(now, max).await
    }
    async fn append_audit(&self, e: Vec<sessionary_core::AuditEntry>) -> StoreResult<()> {
        self.0.append_audit(e).await
    }
    async fn audit(
        &self,
        q: &sessionary_core::AuditQuery,
    ) -> StoreResult<Vec<sessionary_core::AuditRecord>> {
        self.0.audit(q).await
    }
    async fn sweep_audit(&self, before: Timestamp, max: usize) -> StoreResult<usize> {
        self.0.sweep_audit(before, max).await
    }
}
