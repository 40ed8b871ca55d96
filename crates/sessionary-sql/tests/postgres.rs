//! The shared store conformance suite on PostgreSQL: every case on a store in
//! a schema of its own (`sessionary_testkit::postgres::fresh_schema`), on the
//! server of `SESSIONARY_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`). Without a server the cases
//! skip, unless `CI=true`, where they fail.
//!
//! Plus what only PostgreSQL has: the one-statement `load` under concurrent
//! writers, errors when the server is unreachable, and the migrations run
//! twice.

// Test code: a panic is how a check reports a failure (helpers outside
// `#[test]` functions are not covered by clippy.toml's test allowance).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use sessionary_core::store::{Create, Lookup, Touch};
use sessionary_core::{SessionStore, StoreError, Timestamp};
use sessionary_sql::{PostgresOptions, SqlStore};
use sessionary_testkit::postgres::fresh_schema;

/// The race cases queue hundreds of operations on the pool: a generous wait
/// for a connection, so a loaded machine slows them instead of failing them.
fn options() -> PostgresOptions {
    PostgresOptions::new().with_acquire_timeout(Duration::from_secs(60))
}

async fn store(test: &str) -> Option<SqlStore> {
    let url = fresh_schema(test).await?;
    Some(
        SqlStore::connect_postgres_with(&url, options())
            .await
            .unwrap(),
    )
}

async fn make() -> Option<Arc<dyn SessionStore>> {
    Some(Arc::new(store("conformance").await?))
}

sessionary_testkit::store_conformance!(optional make);

/// Touching loads racing each other and writers: every load finds the
/// session, no update is lost to a touch, no touch bumps the version, and the
/// stored expiry follows the stored `last_seen_at`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn loads_with_touches_race_updates() {
    let Some(store) = store("loads_with_touches_race_updates").await else {
        return;
    };
    let t0 = Timestamp(1_767_225_600_000);
    let (token, rec) = sessionary_testkit::record(Some("alice"), t0);
    assert!(matches!(
        store.create(rec.clone(), None).await.unwrap(),
        Create::Created { .. }
    ));
    let mut tasks = Vec::new();
    for i in 0..40_i64 {
        let store = store.clone();
        let hash = token.hash();
        let rec = rec.clone();
        tasks.push(tokio::spawn(async move {
            if i % 4 == 0 {
                // A writer: data updates by compare-and-set, retried.
                loop {
                    let cur = store.get(&rec.id).await.unwrap().unwrap();
                    let mut w = (*cur).clone();
                    w.data = sessionary_core::Sealed::from_bytes(vec![u8::try_from(i).unwrap()]);
                    match store.update(w, cur.version).await.unwrap() {
                        sessionary_core::store::Update::Updated(_) => return,
                        sessionary_core::store::Update::Conflict(_) => {}
                        sessionary_core::store::Update::Gone => panic!("session gone"),
                    }
                }
            } else {
                let now = t0.add_millis(rec.touch_interval_ms * (i + 1));
                match store.load(&hash, Some(Touch { now })).await.unwrap() {
                    Lookup::Found(r) => assert_eq!(r.id, rec.id),
                    other => panic!("expected the session, got {other:?}"),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let last = store.get(&rec.id).await.unwrap().unwrap();
    // 10 writers, each bumped the version once; touches never did.
    assert_eq!(last.version, rec.version + 10);
    assert!(last.last_seen_at > t0);
    assert_eq!(
        last.expires_at(),
        last.last_seen_at.add_millis(rec.idle_timeout_ms)
    );
}

/// A store whose server went away reports `Unavailable` (503 in the API), and
/// connecting to a closed port does too.
#[tokio::test]
async fn unreachable_server_is_unavailable() {
    let options = PostgresOptions::new().with_acquire_timeout(Duration::from_secs(2));
    // Port 1 on loopback: nothing listens there.
    let err = SqlStore::connect_postgres_with("postgres://postgres@127.0.0.1:1/test", options)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");

    let Some(store) = store("unreachable_server_is_unavailable").await else {
        return;
    };
    store.close().await;
    let err = store
        .load(
            &sessionary_core::SessionToken::generate().unwrap().hash(),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}

/// A malformed URL is a configuration error, and its text (which could hold a
/// password) is not repeated in the error.
#[tokio::test]
async fn malformed_url_is_refused_without_echo() {
    let err = SqlStore::connect_postgres("postgres://user:s3cret@[::1/x")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
    let mut text = format!("{err} {err:?}");
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        text.push_str(&format!(" {s} {s:?}"));
        source = s.source();
    }
    assert!(!text.contains("s3cret"), "{text}");
}

/// Connecting again to a migrated schema (a second node, a restart) runs no
/// migration and finds the sessions.
#[tokio::test]
async fn second_connection_shares_the_schema() {
    let Some(url) = fresh_schema("second_connection_shares_the_schema").await else {
        return;
    };
    let a = SqlStore::connect_postgres_with(&url, options())
        .await
        .unwrap();
    let t0 = Timestamp(1_767_225_600_000);
    let (token, rec) = sessionary_testkit::record(Some("bob"), t0);
    a.create(rec.clone(), None).await.unwrap();
    let b = SqlStore::connect_postgres_with(&url, options())
        .await
        .unwrap();
    match b.load(&token.hash(), None).await.unwrap() {
        Lookup::Found(r) => assert_eq!(*r, rec),
        other => panic!("expected the session, got {other:?}"),
    }
    let debug = format!("{b:?}");
    assert!(!debug.contains("postgres://"), "{debug}");
}
