//! Durability: sessions created through a `RedisStore` survive a restart of
//! a private `redis-server` with `appendonly yes`, `appendfsync always`,
//! after a clean stop (SIGTERM) and after a crash (SIGKILL).
//!
//! Skips without `redis-server` on PATH (fails when `CI=true`).

// Test code: a panic is how a check reports a failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sessionary_core::{NewSession, SessionManager, UserId};
use sessionary_redis::{RedisOptions, RedisStore};
use sessionary_testkit::redis_server::{RedisServer, free_port};

/// A fresh temporary directory for the AOF (removed at the end of the test).
fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sessionary-{name}-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn manager(url: &str) -> SessionManager {
    let options = RedisOptions::new().with_timeout(Duration::from_millis(500));
    let deadline = Instant::now() + Duration::from_secs(5);
    let store = loop {
        match RedisStore::connect(url, options.clone()).await {
            Ok(s) => break s,
            // Still loading its AOF: a bounded retry.
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("cannot connect to {url}: {e}"),
        }
    };
    SessionManager::builder(Arc::new(store)).build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_sessions_survive_a_restart_from_the_aof() {
    let dir = temp_dir("aof");
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
            common::skip("durability", &format!("cannot run redis-server: {e}"));
            return;
        }
    };
    let mut tokens = Vec::new();
    // Round 1 ends with SIGTERM (clean shutdown), round 2 with SIGKILL (crash).
    for (round, crash) in [(1, false), (2, true)] {
        let m = manager(&server.url()).await;
        let alice = UserId::new(format!("alice{round}")).unwrap();
        for _ in 0..50 {
            let issued = m.create(NewSession::user(alice.clone())).await.unwrap();
            tokens.push(issued.token.encode());
        }
        drop(m);
        if crash {
            server.stop();
        } else {
            server.terminate();
        }
        let started = Instant::now();
        server = RedisServer::start(port, &args).unwrap();
        let m = manager(&server.url()).await;
        for token in &tokens {
            m.verify(token).await.unwrap_or_else(|e| {
                panic!("round {round} (crash: {crash}): a session is lost: {e:?}")
            });
        }
        eprintln!(
            "durability round {round} ({}): {} sessions verify after the restart, back in {:?}",
            if crash { "SIGKILL" } else { "SIGTERM" },
            tokens.len(),
            started.elapsed()
        );
    }
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
