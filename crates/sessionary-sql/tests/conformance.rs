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

    use sessionary_core::SessionStore;
    use sessionary_testkit::Keeping;

    use crate::common::file_store;

    /// A store on its own database file; the folder is removed when the case
    /// drops its last handle.
    pub(super) async fn make() -> Arc<dyn SessionStore> {
        let (store, dir) = file_store().await;
        Keeping::store(Arc::new(store), dir)
    }

    sessionary_testkit::store_conformance!(make);

    /// The same, with `SqliteOptions::with_exclusive_cache`.
    mod cached {
        use std::sync::Arc;

        use sessionary_core::SessionStore;

        use crate::common::cached_store;
        use sessionary_testkit::Keeping;

        async fn make() -> Arc<dyn SessionStore> {
            let (store, dir) = cached_store().await;
            Keeping::store(Arc::new(store), dir)
        }

        sessionary_testkit::store_conformance!(make);
    }

    /// The same, with touches written behind every millisecond, so flushes
    /// run in the middle of every case (races included).
    mod cached_flushing_often {
        use std::sync::Arc;
        use std::time::Duration;

        use sessionary_core::SessionStore;

        use crate::common::cached_store_flushing_every;
        use sessionary_testkit::Keeping;

        async fn make() -> Arc<dyn SessionStore> {
            let (store, dir) = cached_store_flushing_every(Duration::from_millis(1)).await;
            Keeping::store(Arc::new(store), dir)
        }

        sessionary_testkit::store_conformance!(make);
    }
}
