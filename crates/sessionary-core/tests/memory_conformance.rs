//! The store conformance suite on [`MemoryStore`].

use std::sync::Arc;

use sessionary_core::{MemoryStore, SessionStore};

async fn make() -> Arc<dyn SessionStore> {
    Arc::new(MemoryStore::new())
}

sessionary_testkit::store_conformance!(make);
