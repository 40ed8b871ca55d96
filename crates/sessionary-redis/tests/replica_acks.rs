//! WAIT mode ([`RedisOptions::with_replica_acks`]): on a private primary with
//! one private replica, creates succeed and are on the replica; with the
//! replica stopped, they fail with `Unavailable` within the WAIT timeout.
//!
//! Skips without `redis-server` on PATH (fails when `CI=true`).

// Test code: a panic is how a check reports a failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use sessionary_core::store::{Create, Lookup, StoreError};
use sessionary_core::{SessionStore, Timestamp};
use sessionary_redis::{RedisOptions, RedisStore};
use sessionary_testkit::redis_server::{RedisServer, free_port};

const T0: Timestamp = Timestamp(1_767_225_600_000);
const WAIT: Duration = Duration::from_millis(100);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_wait_for_the_replica_and_fail_without_it() {
    let p1 = free_port();
    let primary = match RedisServer::start(p1, &[]) {
        Ok(s) => s,
        Err(e) => {
            common::skip("replica_acks", &format!("cannot run redis-server: {e}"));
            return;
        }
    };
    let p2 = free_port();
    let primary_addr = p1.to_string();
    let mut replica =
        RedisServer::start(p2, &["--replicaof", "127.0.0.1", primary_addr.as_str()]).unwrap();

    let options = RedisOptions::new()
        .with_timeout(Duration::from_millis(500))
        .with_replica_acks(1, WAIT);
    let store = RedisStore::connect(&primary.url(), options).await.unwrap();
    // Reads only: a store on the replica.
    let on_replica = RedisStore::connect(&replica.url(), RedisOptions::new())
        .await
        .unwrap();

    // The replica syncs first: creates fail until it is attached (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, r) = sessionary_testkit::record(Some("warmup"), T0);
        match store.create(r, None).await {
            Ok(_) => break,
            Err(StoreError::Unavailable(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the replica did not attach within 10 s: {e:?}"),
        }
    }

    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let (t, r) = sessionary_testkit::record(Some("alice"), T0);
        let started = Instant::now();
        assert!(matches!(
            store.create(r, None).await.unwrap(),
            Create::Created { .. }
        ));
        slowest = slowest.max(started.elapsed());
        // Acknowledged: already on the replica, no waiting.
        assert!(
            matches!(
                on_replica.load(&t.hash(), None).await.unwrap(),
                Lookup::Found(_)
            ),
            "an acknowledged create is not on the replica"
        );
    }

    replica.stop();
    let mut failures = Vec::new();
    for _ in 0..5 {
        let (_, r) = sessionary_testkit::record(Some("bob"), T0);
        let started = Instant::now();
        match store.create(r, None).await {
            Err(StoreError::Unavailable(e)) => {
                assert!(
                    e.to_string().contains("not acknowledged by 1 replicas"),
                    "{e}"
                );
            }
            other => panic!("expected Unavailable without the replica, got {other:?}"),
        }
        let took = started.elapsed();
        assert!(took < WAIT + Duration::from_millis(400), "{took:?}");
        failures.push(took);
    }
    eprintln!(
        "replica_acks: acknowledged creates took at most {slowest:?}; \
         without the replica creates failed after {failures:?} (WAIT {WAIT:?})"
    );
}
