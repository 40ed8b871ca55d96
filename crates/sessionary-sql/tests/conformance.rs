//! The shared store conformance suite, run twice:
//!
//! - on a private in-memory database (`make`), the quick form every store runs;
//! - on a fresh database *file* per case (`file::make`, `file::cached::make`
//!   with the exclusive write-through cache, which is what `sessionary serve`
//!   uses, and `file::cached_flushing_often::make`, the same with touches
//!   written behind every millisecond instead of every second). Only the file form has the real concurrency
//!   design: a writer connection plus a pool of reader connections that see
//!   commits while writes queue. The in-memory database lives in a single
//!   connection, so every operation runs one after another there and a race
//!   between a reader and the writer could not show up. The races of the suite
//!   are therefore run against files too.

// Test code: a panic is how a check reports a failure (helpers outside
// `#[test]` functions are not covered by clippy.toml's test allowance).
#![allow(clippy::unwrap_used)]

mod common;

async fn make() -> std::sync::Arc<dyn sessionary_core::SessionStore> {
    std::sync::Arc::new(sessionary_sql::SqlStore::sqlite_in_memory().await.unwrap())
}
sessionary_testkit::store_conformance!(make);

mod file {
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
    use sessionary_sql::SqlStore;

    use crate::common::{TempDir, file_store};

    /// A store on its own database file; the folder is removed when the case
    /// drops its last handle.
    #[derive(Debug)]
    struct FileStore {
        store: SqlStore,
        _dir: TempDir,
    }

    pub(super) async fn make() -> Arc<dyn SessionStore> {
        let (store, dir) = file_store().await;
        Arc::new(FileStore { store, _dir: dir })
    }

    sessionary_testkit::store_conformance!(make);

    /// The same, with `SqliteOptions::with_exclusive_cache`.
    mod cached {
        use std::sync::Arc;

        use sessionary_core::SessionStore;

        use super::FileStore;
        use crate::common::cached_store;

        async fn make() -> Arc<dyn SessionStore> {
            let (store, dir) = cached_store().await;
            Arc::new(FileStore { store, _dir: dir })
        }

        sessionary_testkit::store_conformance!(make);
    }

    /// The same, with touches written behind every millisecond, so flushes
    /// run in the middle of every case (races included).
    mod cached_flushing_often {
        use std::sync::Arc;
        use std::time::Duration;

        use sessionary_core::SessionStore;

        use super::FileStore;
        use crate::common::cached_store_flushing_every;

        async fn make() -> Arc<dyn SessionStore> {
            let (store, dir) = cached_store_flushing_every(Duration::from_millis(1)).await;
            Arc::new(FileStore { store, _dir: dir })
        }

        sessionary_testkit::store_conformance!(make);
    }

    #[async_trait]
    impl SessionStore for FileStore {
        async fn create(&self, r: SessionRecord, l: Option<SessionLimit>) -> StoreResult<Create> {
            self.store.create(r, l).await
        }
        async fn load(&self, h: &TokenHash, t: Option<Touch>) -> StoreResult<Lookup> {
            self.store.load(h, t).await
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
        async fn list_user(
            &self,
            u: &UserId,
            now: Timestamp,
        ) -> StoreResult<Vec<Arc<SessionRecord>>> {
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
        async fn take_restorable(
            &self,
            u: &UserId,
            now: Timestamp,
        ) -> StoreResult<Option<Restorable>> {
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
        async fn append_audit(&self, e: Vec<sessionary_core::AuditEntry>) -> StoreResult<()> {
            self.store.append_audit(e).await
        }
        async fn audit(
            &self,
            q: &sessionary_core::AuditQuery,
        ) -> StoreResult<Vec<sessionary_core::AuditRecord>> {
            self.store.audit(q).await
        }
        async fn sweep_audit(&self, before: Timestamp, max: usize) -> StoreResult<usize> {
            self.store.sweep_audit(before, max).await
        }
    }
}
