//! The service on Redis while Redis dies: a private `redis-server` (AOF,
//! `appendfsync always`) behind `app(state)`, 8 concurrent clients verifying
//! a session in a loop, Redis killed (SIGKILL) and restarted on the same port.
//!
//! Every answer is `200` or `503` with problem type
//! `/problems/store-unavailable`, each within 3 s; after the restart the
//! first `200` comes within 2 s. Skips without `redis-server` on PATH,
//! unless `CI=true`.

// Test code: a panic is how a check reports a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use parking_lot::Mutex;
use serde_json::json;
use sessionary_core::SessionManager;
use sessionary_redis::{RedisOptions, RedisStore};
use sessionary_server::{ApiKeys, AppState, app};
use sessionary_testkit::redis_server::{RedisServer, free_port, skip};

#[path = "support/oneshot.rs"]
mod oneshot;
use oneshot::{KEY, call};

/// No request may take longer than this, Redis up or down.
const ANSWER_WITHIN: Duration = Duration::from_secs(3);
const WORKERS: usize = 8;

/// One answer a worker saw: when it arrived and whether it was a 200.
#[derive(Clone, Copy)]
struct Seen {
    at: Instant,
    ok: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_answers_200_or_503_while_redis_dies_and_recovers_after_a_restart() {
    let dir = std::env::temp_dir().join(format!(
        "sessionary-redis-faults-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let dir_arg = dir.to_str().unwrap().to_owned();
    let args = [
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--dir",
        dir_arg.as_str(),
    ];
    let port = free_port();
    let mut server = match RedisServer::start(port, &args) {
        Ok(s) => s,
        Err(e) => {
            skip("redis_faults", &format!("cannot run redis-server: {e}"));
            return;
        }
    };
    let options = RedisOptions::new().with_timeout(Duration::from_millis(500));
    let store = RedisStore::connect(&server.url(), options).await.unwrap();
    let manager = SessionManager::builder(Arc::new(store)).build().unwrap();
    let app = app(AppState::new(manager, ApiKeys::new([KEY])));

    let (status, body) = call(&app, Method::POST, "/v1/sessions", json!({"user": "alice"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let verify = json!({ "token": body["token"].as_str().unwrap() });

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (app, verify, stop, seen) = (
            app.clone(),
            verify.clone(),
            Arc::clone(&stop),
            Arc::clone(&seen),
        );
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let (status, body) = tokio::time::timeout(
                    ANSWER_WITHIN,
                    call(&app, Method::POST, "/v1/sessions/verify", verify.clone()),
                )
                .await
                .unwrap_or_else(|_| panic!("no answer within {ANSWER_WITHIN:?}"));
                let ok = match status {
                    StatusCode::OK => true,
                    StatusCode::SERVICE_UNAVAILABLE => {
                        assert_eq!(body["type"], "/problems/store-unavailable", "{body}");
                        false
                    }
                    other => panic!("unexpected {other}: {body}"),
                };
                assert!(started.elapsed() < ANSWER_WITHIN);
                seen.lock().push(Seen {
                    at: Instant::now(),
                    ok,
                });
                // Yield so that 8 loops do not starve the runtime's timers.
                tokio::task::yield_now().await;
            }
        }));
    }

    // Up: all 200.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed = Instant::now();
    server.stop(); // SIGKILL
    // Down for a second: 503s.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let restarting = Instant::now();
    server = RedisServer::start(port, &args).unwrap();
    let listening = restarting.elapsed();
    // Back: wait (bounded) for a 200 after the restart, then a little more load.
    let deadline = restarting + Duration::from_secs(5);
    let first_ok = loop {
        let found = seen
            .lock()
            .iter()
            .filter(|s| s.ok && s.at > restarting)
            .map(|s| s.at)
            .min();
        if let Some(at) = found {
            break at;
        }
        assert!(
            Instant::now() < deadline,
            "no 200 within 5 s of the restart"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap(); // A panicking worker fails the test here.
    }
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);

    let seen = seen.lock().clone();
    let before = seen.iter().filter(|s| s.at < killed).count();
    assert!(
        seen.iter().filter(|s| s.at < killed).all(|s| s.ok),
        "a failure before the kill"
    );
    let down: Vec<_> = seen
        .iter()
        .filter(|s| s.at > killed && s.at < restarting)
        .collect();
    let unavailable = down.iter().filter(|s| !s.ok).count();
    assert!(unavailable > 0, "no 503 while Redis was down");
    let after = seen.iter().filter(|s| s.at > first_ok).collect::<Vec<_>>();
    let recovery = first_ok - restarting;
    eprintln!(
        "redis_faults: {} answers ({before} before the kill, {} while down of which {unavailable} 503, \
         {} after the first 200); redis-server listening {listening:?} after the restart, \
         first 200 {recovery:?} after the restart",
        seen.len(),
        down.len(),
        after.len(),
    );
    assert!(
        recovery < Duration::from_secs(2),
        "first 200 only {recovery:?} after the restart"
    );
}
