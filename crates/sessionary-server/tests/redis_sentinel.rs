//! The service on Redis Sentinel: the store `serve` opens from `[store] kind =
//! "redis"` with a `redis+sentinel://` URL and `replica_acks = 2`, on a
//! private deployment (one primary, two replicas, three sentinels), behind
//! `app(state)`. 8 clients verify a session and create new ones while the
//! sentinels fail the primary over (`SENTINEL FAILOVER`).
//!
//! Every answer is `200`/`201` or `503` with problem type
//! `/problems/store-unavailable`, each within 3 s; after the sentinels agree
//! on the new primary, verification answers `200` again within 5 s and
//! creation `201` within 30 s (a create waits for both replicas; the old
//! primary rejoins as a replica only when the sentinels reconfigure it).
//! Skips without `redis-server` on PATH, unless `CI=true`.

// Test code: a panic is how a check reports a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use parking_lot::Mutex;
use serde_json::json;
use sessionary_core::SessionManager;
use sessionary_server::config::{Config, Secret, StoreConfig, StoreKind};
use sessionary_server::serve::open_store;
use sessionary_server::{ApiKeys, AppState, app};
use sessionary_testkit::redis_sentinel::SentinelSet;
use sessionary_testkit::redis_server::skip;

#[path = "support/oneshot.rs"]
mod oneshot;
use oneshot::{KEY, call};

/// No request may take longer than this, whatever the primary does.
const ANSWER_WITHIN: Duration = Duration::from_secs(3);
const WORKERS: usize = 8;

/// One answer: when, and which status.
#[derive(Clone, Copy)]
struct Seen {
    at: Instant,
    status: StatusCode,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_rides_a_sentinel_failover_with_only_200_or_503() {
    let set = match tokio::task::spawn_blocking(SentinelSet::start)
        .await
        .unwrap()
    {
        Ok(s) => s,
        Err(e) => {
            skip("redis_sentinel", &format!("cannot start: {e}"));
            return;
        }
    };
    // As `sessionary serve` reads `[store]`.
    let config = Config {
        store: StoreConfig {
            kind: StoreKind::Redis,
            url: Some(Secret::new(set.url())),
            key_prefix: Some("serve:".into()),
            replica_acks: Some(2),
            replica_ack_timeout: Some("300ms".into()),
            ..StoreConfig::default()
        },
        ..Config::default()
    };
    let settings = config.validate().unwrap();
    let opened = open_store(&settings).await.unwrap();
    let manager = SessionManager::builder(Arc::clone(&opened.store))
        .with_fanout(opened.fanout.clone().unwrap())
        .build()
        .unwrap();
    let app = app(AppState::new(manager, ApiKeys::new([KEY])));

    let (status, body) = call(&app, Method::POST, "/v1/sessions", json!({"user": "alice"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let verify = json!({ "token": body["token"].as_str().unwrap() });

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let (app, verify, stop, seen) = (
            app.clone(),
            verify.clone(),
            Arc::clone(&stop),
            Arc::clone(&seen),
        );
        workers.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let (uri, body) = if i % 4 == 0 {
                    ("/v1/sessions", json!({ "user": format!("u{w}-{i}") }))
                } else {
                    ("/v1/sessions/verify", verify.clone())
                };
                let started = Instant::now();
                let (status, body) =
                    tokio::time::timeout(ANSWER_WITHIN, call(&app, Method::POST, uri, body))
                        .await
                        .unwrap_or_else(|_| panic!("no answer within {ANSWER_WITHIN:?}"));
                match status {
                    StatusCode::OK | StatusCode::CREATED => {}
                    StatusCode::SERVICE_UNAVAILABLE => {
                        assert_eq!(body["type"], "/problems/store-unavailable", "{body}");
                    }
                    other => panic!("unexpected {other} from {uri}: {body}"),
                }
                assert!(started.elapsed() < ANSWER_WITHIN);
                seen.lock().push(Seen {
                    at: Instant::now(),
                    status,
                });
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    // Real time: waiting for real processes to fail over.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                } else {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }

    // Real time: load against real processes, then the failover.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let failover = Instant::now();
    let old = tokio::task::block_in_place(|| set.failover().unwrap());
    let new =
        tokio::task::block_in_place(|| set.wait_new_primary(old, Duration::from_secs(30)).unwrap());
    let agreed = Instant::now();
    let first = |status: StatusCode, within: Duration| loop {
        let found = seen
            .lock()
            .iter()
            .filter(|s| s.status == status && s.at > agreed)
            .map(|s| s.at)
            .min();
        if let Some(at) = found {
            return Some(at);
        }
        if agreed.elapsed() > within {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let first_ok = tokio::task::block_in_place(|| first(StatusCode::OK, Duration::from_secs(5)))
        .expect("no 200 within 5 s of the sentinels agreeing");
    let first_created =
        tokio::task::block_in_place(|| first(StatusCode::CREATED, Duration::from_secs(30)))
            .expect("no 201 within 30 s of the sentinels agreeing");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap(); // A panicking worker fails the test here.
    }

    let seen = seen.lock().clone();
    let before = seen.iter().filter(|s| s.at < failover).count();
    assert!(
        seen.iter()
            .filter(|s| s.at < failover)
            .all(|s| s.status != StatusCode::SERVICE_UNAVAILABLE),
        "a 503 before the failover"
    );
    let unavailable = seen
        .iter()
        .filter(|s| s.status == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    eprintln!(
        "redis_sentinel: {} answers ({before} before the failover, {unavailable} 503 in all); \
         primary {old} -> {new}, sentinels agreed {:?} after the failover began; \
         first 200 {:?} and first 201 {:?} after they agreed",
        seen.len(),
        agreed - failover,
        first_ok.saturating_duration_since(agreed),
        first_created.saturating_duration_since(agreed),
    );
    // The session created before the failover still verifies.
    let (status, body) = call(&app, Method::POST, "/v1/sessions/verify", verify).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
