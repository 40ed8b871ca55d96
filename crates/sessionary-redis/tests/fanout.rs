//! `RedisFanout`: two nodes (two managers, each with its own `RedisStore` on
//! the same server and prefix, and its own `RedisFanout`) share revocations
//! through pub/sub; a counter increment on one node reaches the other node's
//! near cache; a subscriber that lost its connection reports a miss.

// Test code: a panic is how a check reports a failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Server, free_port};
use sessionary_core::fanout::{Fanout, RemoteKind};
use sessionary_core::near_cache::{NearCache, NearCacheOptions};
use sessionary_core::store::Counter;
use sessionary_core::{EndReason, EventKind, NewSession, SessionManager, SystemClock, UserId};
use sessionary_redis::{RedisFanout, RedisOptions, RedisStore};
use tokio::time::timeout;

const WITHIN: Duration = Duration::from_secs(2);

fn prefix() -> String {
    let id = sessionary_core::SessionId::generate().unwrap();
    let hex: String = id.0.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("fanout{hex}:")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_one_node_reaches_the_other_through_pub_sub() {
    let url = common::url();
    let prefix = prefix();
    let node = |fanout: RedisFanout, store: RedisStore| {
        SessionManager::builder(Arc::new(store))
            .with_fanout(Arc::new(fanout))
            .build()
            .unwrap()
    };
    let options = RedisOptions::new().with_key_prefix(prefix.clone());
    let store_a = match RedisStore::connect(&url, options.clone()).await {
        Ok(s) => s,
        Err(e) => {
            common::skip("fanout", &format!("cannot connect: {e}"));
            return;
        }
    };
    let store_b = RedisStore::connect(&url, options).await.unwrap();
    let a = node(
        RedisFanout::connect(&url, &prefix).await.unwrap(),
        store_a.clone(),
    );
    let b = node(RedisFanout::connect(&url, &prefix).await.unwrap(), store_b);
    let mut on_a = a.subscribe();
    let alice = UserId::new("alice").unwrap();

    let mut delays = Vec::new();
    for _ in 0..200 {
        let s = a.create(NewSession::user(alice.clone())).await.unwrap();
        let token = s.token.encode();
        b.verify(&token).await.unwrap();
        let sent = Instant::now();
        b.end_session(&s.session.id, EndReason::RevokedByAdmin)
            .await
            .unwrap();
        loop {
            let e = timeout(WITHIN, on_a.recv()).await.unwrap().unwrap();
            if e.session_id == Some(s.session.id) && matches!(e.kind, EventKind::Ended { .. }) {
                delays.push(sent.elapsed());
                break;
            }
        }
        assert_eq!(
            a.verify(&token).await.unwrap_err().reason(),
            Some("revoked_by_admin")
        );
    }
    delays.sort();
    println!(
        "RedisFanout revocation B -> A: p50 {:?}, p99 {:?}, max {:?} (200 events)",
        delays[100], delays[197], delays[199]
    );
    store_a.clear().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_increment_on_one_node_reaches_the_other_nodes_near_cache() {
    let url = common::url();
    let prefix = prefix();
    let options = RedisOptions::new().with_key_prefix(prefix.clone());
    let store_a = match RedisStore::connect(&url, options.clone()).await {
        Ok(s) => s,
        Err(e) => {
            common::skip("fanout counters", &format!("cannot connect: {e}"));
            return;
        }
    };
    let store_b = RedisStore::connect(&url, options).await.unwrap();
    // Each node: its store behind a near cache whose copies may be a minute
    // old, so only the fanout can make B see A's increment within the wait.
    let node = |fanout: RedisFanout, store: RedisStore| {
        let fanout: Arc<dyn Fanout> = Arc::new(fanout);
        let cache = NearCache::new(
            Arc::new(store),
            fanout.clone(),
            Arc::new(SystemClock),
            NearCacheOptions::new().with_max_age(Duration::from_secs(60)),
        )
        .unwrap();
        SessionManager::builder(Arc::new(cache))
            .with_fanout(fanout)
            .build()
            .unwrap()
    };
    let a = node(
        RedisFanout::connect(&url, &prefix).await.unwrap(),
        store_a.clone(),
    );
    let b = node(RedisFanout::connect(&url, &prefix).await.unwrap(), store_b);
    let alice = UserId::new("alice").unwrap();

    let mut delays = Vec::new();
    for round in 1..=50u64 {
        let s = a.create(NewSession::user(alice.clone())).await.unwrap();
        let token = s.token.encode();
        // B keeps a copy without the counter.
        assert!(b.verify(&token).await.unwrap().counters.is_empty());
        assert!(b.verify(&token).await.unwrap().counters.is_empty());
        let sent = Instant::now();
        assert_eq!(
            a.increment(&s.session.id, "q:api", round, None)
                .await
                .unwrap(),
            Counter::Incremented(round)
        );
        // B's copy is dropped when A's event arrives: bounded wait.
        loop {
            let seen = b.verify(&token).await.unwrap();
            if seen.counters.get("q:api") == Some(&round) {
                delays.push(sent.elapsed());
                break;
            }
            assert!(
                sent.elapsed() < WITHIN,
                "B still sees {:?} after {WITHIN:?}",
                seen.counters
            );
            tokio::time::sleep(Duration::from_micros(100)).await;
        }
    }
    delays.sort();
    println!(
        "counter increment A -> B's near cache: p50 {:?}, p99 {:?}, max {:?} (50 increments)",
        delays[25], delays[49], delays[49]
    );
    store_a.clear().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_lost_its_server_reports_a_miss_and_hears_again() {
    let port = free_port();
    let mut server = match Server::start(port, &[]) {
        Ok(s) => s,
        Err(e) => {
            common::skip("fanout reconnect", &format!("cannot run redis-server: {e}"));
            return;
        }
    };
    let url = format!("redis://127.0.0.1:{port}");
    let listener = RedisFanout::connect(&url, "x:").await.unwrap();
    let sender = RedisFanout::connect(&url, "x:").await.unwrap();
    let mut rx = listener.subscribe();
    server.stop();
    let _server = Server::start(port, &[]).unwrap();
    // The subscriber reconnects by itself and says messages may be lost.
    let e = timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.kind, RemoteKind::Missed);
    // And hears again (the sender's connection comes back by itself too).
    let mut heard = false;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !heard && Instant::now() < deadline {
        sender.publish(sessionary_core::RemoteEvent {
            node: sessionary_core::NodeId(9),
            at: sessionary_core::Timestamp(1),
            session_id: None,
            user: None,
            kind: RemoteKind::DataChanged,
        });
        if let Ok(Ok(e)) = timeout(Duration::from_millis(200), rx.recv()).await {
            heard = e.kind == RemoteKind::DataChanged;
        }
    }
    assert!(heard, "no event after the restart");
}
