//! The Redis store on a 3-master Redis Cluster of its own `redis-server`
//! processes (`sessionary_testkit::redis_cluster`): the whole store
//! conformance suite (each case on a fresh Cluster, stopped when the case
//! drops its store), sessions spread over all masters, one `EVALSHA` per
//! verification with a warm route cache, the sweep on every master, and
//! `RedisFanout` across nodes. Without `redis-server` the tests skip (and
//! fail when `CI=true`).

// Test code: a panic is how a check reports a failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sessionary_core::SessionStore;
use sessionary_core::Timestamp;
use sessionary_core::fanout::{Fanout, RemoteKind};
use sessionary_core::store::{Create, Lookup, SweepSpec, Touch};
use sessionary_redis::{RedisFanout, RedisOptions, RedisStore};
use sessionary_testkit::Keeping;
use sessionary_testkit::redis_cluster::RedisCluster;

const T0: Timestamp = Timestamp(1_767_225_600_000);

/// A fresh 3-master Cluster, or `None` (skipped) without `redis-server`.
async fn cluster(test: &str) -> Option<RedisCluster> {
    match tokio::task::spawn_blocking(|| RedisCluster::start(3))
        .await
        .unwrap()
    {
        Ok(c) => Some(c),
        Err(e) => {
            common::skip(test, &format!("cannot start a Redis Cluster: {e}"));
            None
        }
    }
}

async fn make() -> Option<Arc<dyn SessionStore>> {
    let cluster = cluster("cluster conformance").await?;
    // Two cases at a time, each with its own three `redis-server`s and bursts
    // of 500 concurrent operations, on a shared machine: a generous timeout,
    // since what is checked here is the contract (timeouts have their own
    // test below).
    let options = RedisOptions::new().with_timeout(Duration::from_secs(10));
    let store = RedisStore::connect(&cluster.url(), options).await.unwrap();
    // The Cluster stops when the store drops.
    Some(Keeping::store(Arc::new(store), cluster))
}

sessionary_testkit::store_conformance!(optional make);

/// `INFO commandstats` of every node, summed: command → calls.
async fn commandstats(cluster: &RedisCluster) -> BTreeMap<String, u64> {
    let mut total = BTreeMap::new();
    for url in cluster.node_urls() {
        let client = redis::Client::open(url).unwrap();
        let mut con = client.get_multiplexed_async_connection().await.unwrap();
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut con)
            .await
            .unwrap();
        for l in info.lines() {
            let Some((name, rest)) = l.strip_prefix("cmdstat_").and_then(|l| l.split_once(':'))
            else {
                continue;
            };
            let calls: u64 = rest
                .strip_prefix("calls=")
                .and_then(|r| r.split(',').next())
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            *total.entry(name.to_owned()).or_insert(0) += calls;
        }
    }
    total
}

fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(k, d)| *d > 0 && k != "info")
        .collect()
}

/// Keys of each node matching `pattern` (`SCAN` on the node itself).
async fn keys_per_node(cluster: &RedisCluster, pattern: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for url in cluster.node_urls() {
        let client = redis::Client::open(url).unwrap();
        let mut con = client.get_multiplexed_async_connection().await.unwrap();
        let mut cursor = 0u64;
        let mut n = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut con)
                .await
                .unwrap();
            n += keys.len();
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        out.push(n);
    }
    out
}

#[tokio::test]
async fn sessions_of_many_users_land_on_every_master_and_sweep_finds_them() {
    let Some(cluster) = cluster("cluster spread").await else {
        return;
    };
    let store = RedisStore::connect(&cluster.url(), RedisOptions::new())
        .await
        .unwrap();
    let mut tokens = Vec::new();
    for i in 0..30 {
        let (t, r) = sessionary_testkit::record(Some(&format!("user{i}")), T0);
        assert!(matches!(
            store.create(r, None).await.unwrap(),
            Create::Created { .. }
        ));
        tokens.push(t);
    }
    let per_node = keys_per_node(&cluster, "sessionary:{u:*}:s:*").await;
    println!("sessions per master: {per_node:?}");
    assert_eq!(per_node.iter().sum::<usize>(), 30);
    assert!(per_node.iter().all(|n| *n > 0), "{per_node:?}");
    // Every session verifies from a store with a cold route cache.
    let cold = RedisStore::connect(&cluster.url(), RedisOptions::new())
        .await
        .unwrap();
    for t in &tokens {
        assert!(matches!(
            cold.load(&t.hash(), None).await.unwrap(),
            Lookup::Found(_)
        ));
    }
    // The sweep walks every master: all 30 expire (12 h absolute). Their
    // reasons are kept 30 days, longer than the token routes' TTL so far
    // (12 h + the 7-day grace): the routes are extended to the tombstones'.
    const DAY: i64 = 86_400_000;
    let spec = SweepSpec {
        now: T0.add_millis(13 * 3_600_000),
        reason_ttl_ms: 30 * DAY,
        restore_ttl_ms: 0,
    };
    let ended = store.sweep(spec, 1000).await.unwrap();
    assert_eq!(ended.len(), 30);
    let routes = redis::cluster::ClusterClient::new(cluster.node_urls()).unwrap();
    let mut routes = routes.get_async_connection().await.unwrap();
    for t in &tokens {
        assert!(matches!(
            cold.load(&t.hash(), None).await.unwrap(),
            Lookup::Ended(_)
        ));
        let hex: String = t.hash().0.iter().map(|b| format!("{b:02x}")).collect();
        let ttl: i64 = redis::cmd("PTTL")
            .arg(format!("sessionary:t:{hex}"))
            .query_async(&mut routes)
            .await
            .unwrap();
        assert!(ttl > 36 * DAY, "route TTL {ttl} ms");
    }
    assert_eq!(
        keys_per_node(&cluster, "sessionary:i:*")
            .await
            .iter()
            .sum::<usize>(),
        0
    );
    // `clear` walks every master too.
    assert!(store.clear().await.unwrap() > 0);
    assert_eq!(
        keys_per_node(&cluster, "sessionary:*")
            .await
            .iter()
            .sum::<usize>(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_that_died_is_unavailable_within_the_timeout() {
    let Some(mut cluster) = cluster("cluster faults").await else {
        return;
    };
    let timeout = Duration::from_millis(500);
    let store = RedisStore::connect(&cluster.url(), RedisOptions::new().with_timeout(timeout))
        .await
        .unwrap();
    let mut tokens = Vec::new();
    for i in 0..30 {
        let (t, r) = sessionary_testkit::record(Some(&format!("user{i}")), T0);
        store.create(r, None).await.unwrap();
        assert!(matches!(
            store.load(&t.hash(), None).await.unwrap(),
            Lookup::Found(_)
        ));
        tokens.push(t);
    }
    cluster.nodes[0].stop();
    let (mut found, mut unavailable, mut slowest) = (0, 0, Duration::ZERO);
    for t in &tokens {
        let started = Instant::now();
        match store.load(&t.hash(), None).await {
            Ok(Lookup::Found(_)) => found += 1,
            Err(sessionary_core::store::StoreError::Unavailable(_)) => unavailable += 1,
            Ok(other) => panic!("unexpected {other:?}"),
            Err(e) => panic!("unexpected error {e:?}"),
        }
        slowest = slowest.max(started.elapsed());
    }
    println!(
        "Cluster with a master killed: {found} found, {unavailable} unavailable, slowest answer {slowest:?} (timeout {timeout:?})"
    );
    assert!(
        unavailable > 0,
        "the dead master's sessions cannot be found"
    );
    assert!(slowest < Duration::from_secs(2), "{slowest:?}");

    // The master comes back (empty: no persistence) and takes its slots
    // again; the same store reconnects by itself: what it had is missing,
    // the rest is found, and new sessions can be created for every user.
    let cluster = tokio::task::spawn_blocking(move || cluster.restart(0).map(|()| cluster))
        .await
        .unwrap()
        .unwrap();
    let started = Instant::now();
    let mut again = (0, 0);
    let deadline = started + Duration::from_secs(10);
    for t in &tokens {
        loop {
            match store.load(&t.hash(), None).await {
                Ok(Lookup::Found(_)) => again.0 += 1,
                Ok(Lookup::Missing) => again.1 += 1,
                Ok(other) => panic!("unexpected {other:?}"),
                Err(e) => {
                    assert!(Instant::now() < deadline, "still failing: {e:?}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
            break;
        }
    }
    println!(
        "after the restart: {} found, {} missing, back within {:?}",
        again.0,
        again.1,
        started.elapsed()
    );
    assert_eq!(again, (found, unavailable));
    for i in 0..30 {
        let (_, r) = sessionary_testkit::record(Some(&format!("user{i}")), T0);
        assert!(matches!(
            store.create(r, None).await.unwrap(),
            Create::Created { .. }
        ));
    }
    drop(cluster);
}

#[tokio::test]
async fn a_verification_with_a_warm_route_cache_is_one_evalsha() {
    const LOADS: u64 = 1000;
    let Some(cluster) = cluster("cluster commands per load").await else {
        return;
    };
    let store = RedisStore::connect(&cluster.url(), RedisOptions::new())
        .await
        .unwrap();
    let (t, r) = sessionary_testkit::record(Some("alice"), T0);
    store.create(r, None).await.unwrap();
    let h = t.hash();

    // Cold: a store that never saw the session reads the route first.
    let cold = RedisStore::connect(&cluster.url(), RedisOptions::new())
        .await
        .unwrap();
    let before = commandstats(&cluster).await;
    assert!(matches!(
        cold.load(&h, None).await.unwrap(),
        Lookup::Found(_)
    ));
    let first = delta(&before, &commandstats(&cluster).await);
    println!("Cluster, first load on a cold route cache: {first:?}");
    assert_eq!(first.get("get"), Some(&1));

    let before = commandstats(&cluster).await;
    let started = Instant::now();
    for i in 0..LOADS {
        let now = T0.add_millis(1 + i64::try_from(i).unwrap() * 1000);
        assert!(matches!(
            store.load(&h, Some(Touch { now })).await.unwrap(),
            Lookup::Found(_)
        ));
    }
    let took = started.elapsed();
    let d = delta(&before, &commandstats(&cluster).await);
    let total: u64 = d.values().sum();
    println!(
        "Cluster, {LOADS} loads with touch (warm route cache): {d:?}; {:.2} commands per load, {:?} per load",
        total as f64 / LOADS as f64,
        took / u32::try_from(LOADS).unwrap()
    );
    assert_eq!(d.get("evalsha"), Some(&LOADS), "{d:?}");
    assert_eq!(d.get("get"), None, "no route reads: {d:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_events_cross_the_cluster_and_survive_a_seed_going_away() {
    let Some(mut cluster) = cluster("cluster fanout").await else {
        return;
    };
    let url = cluster.url();
    let listener = RedisFanout::connect(&url, "x:").await.unwrap();
    let sender = RedisFanout::connect(&url, "x:").await.unwrap();
    let mut rx = listener.subscribe();
    let event = |kind| sessionary_core::RemoteEvent {
        node: sessionary_core::NodeId(9),
        at: Timestamp(1),
        session_id: None,
        user: None,
        kind,
    };
    // Published through the Cluster connection, heard on a seed node.
    sender.publish(event(RemoteKind::DataChanged));
    let e = tokio::time::timeout(Duration::from_secs(2), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.kind, RemoteKind::DataChanged);

    // The listener's node (the first seed) dies: it reports a miss, listens
    // on the next seed and hears again.
    cluster.nodes[0].stop();
    let e = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.kind, RemoteKind::Missed);
    let mut got = false;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !got && Instant::now() < deadline {
        sender.publish(event(RemoteKind::DataChanged));
        if let Ok(Ok(e)) = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
            got = e.kind == RemoteKind::DataChanged;
        }
    }
    assert!(got, "no event after the first seed went away");
}
