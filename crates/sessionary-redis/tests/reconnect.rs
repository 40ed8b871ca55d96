//! Automatic reconnection: a store outlives a restart of its Redis server.
//!
//! The test runs its own `redis-server` on a free port (no persistence), so
//! it can stop and restart it; without `redis-server` on PATH it skips (and
//! fails when `CI=true`).

// Test code: a panic is how a check reports a failure.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Server, free_port};

use std::time::{Duration, Instant};

use sessionary_core::store::{Create, Lookup, StoreError};
use sessionary_core::{SessionStore, Timestamp};
use sessionary_redis::{RedisOptions, RedisStore};

const T0: Timestamp = Timestamp(1_767_225_600_000);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_reconnects_after_a_server_restart() {
    let port = free_port();
    let mut server = match Server::start(port, &[]) {
        Ok(s) => s,
        Err(e) => {
            common::skip("reconnect", &format!("cannot run redis-server: {e}"));
            return;
        }
    };
    let url = format!("redis://127.0.0.1:{}", server.port);
    let timeout = Duration::from_millis(500);
    let store = RedisStore::connect(&url, RedisOptions::new().with_timeout(timeout))
        .await
        .unwrap();
    let (t, r) = sessionary_testkit::record(Some("alice"), T0);
    assert!(matches!(
        store.create(r, None).await.unwrap(),
        Create::Created { .. }
    ));
    assert!(matches!(
        store.load(&t.hash(), None).await.unwrap(),
        Lookup::Found(_)
    ));

    server.stop();
    // While the server is down, operations fail quickly: no hang.
    for _ in 0..3 {
        let started = Instant::now();
        let out = tokio::time::timeout(Duration::from_secs(5), store.load(&t.hash(), None))
            .await
            .expect("a load while Redis is down must not hang");
        match out {
            Err(StoreError::Unavailable(_)) => {}
            other => panic!("expected Unavailable, got {other:?}"),
        }
        assert!(started.elapsed() < timeout * 3, "{:?}", started.elapsed());
    }

    // Same port, empty database: the same store works again within 2 s.
    let mut server = Server::start(port, &[]).unwrap();
    let restarted = Instant::now();
    let (t2, r2) = sessionary_testkit::record(Some("bob"), T0);
    loop {
        match store.create(r2.clone(), None).await {
            Ok(Create::Created { .. }) => break,
            Ok(other) => panic!("unexpected {other:?}"),
            Err(e) => {
                assert!(
                    restarted.elapsed() < Duration::from_secs(2),
                    "no reconnection within 2 s: {e:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    assert!(matches!(
        store.load(&t2.hash(), None).await.unwrap(),
        Lookup::Found(_)
    ));
    // The first server's data is gone with it (no persistence).
    assert_eq!(store.load(&t.hash(), None).await.unwrap(), Lookup::Missing);
    server.stop();
}
