//! `NearCache`: the conformance suite through it, and two "nodes" with a cache
//! each in front of one shared store, joined by a fanout: hits skip the store,
//! changes (counter increments too) on one node reach the other's cache, and a lost invalidation is
//! bounded by `max_age`.

// Test helpers outside #[test] fns: a panic is how they report a failure.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use sessionary_core::fanout::{Fanout, RemoteEvent};
use sessionary_core::near_cache::{NearCache, NearCacheOptions};
use sessionary_core::{
    EndReason, Error, LocalFanout, MemoryStore, MockClock, NewSession, Privilege, SessionManager,
    SessionStore, UserId,
};
use sessionary_testkit::ProbeStore;
use tokio::sync::broadcast;

async fn conformance_store() -> Arc<dyn SessionStore> {
    let cache = NearCache::new(
        Arc::new(MemoryStore::new()),
        Arc::new(LocalFanout::new()),
        Arc::new(MockClock::default()),
        NearCacheOptions::new(),
    )
    .unwrap();
    Arc::new(cache)
}

sessionary_testkit::store_conformance!(conformance_store);

/// A fanout that loses everything: what a node sees when invalidations never
/// arrive (e.g. the publishing node's connection dropped them).
#[derive(Debug)]
struct Deaf(broadcast::Sender<RemoteEvent>);

impl Deaf {
    fn new() -> Self {
        Self(broadcast::channel(8).0)
    }
}

impl Fanout for Deaf {
    fn publish(&self, _: RemoteEvent) {}
    fn subscribe(&self) -> broadcast::Receiver<RemoteEvent> {
        self.0.subscribe()
    }
}

struct Node {
    manager: SessionManager,
    cache: Arc<NearCache>,
}

fn node(
    shared: Arc<dyn SessionStore>,
    fanout: Arc<dyn Fanout>,
    clock: &MockClock,
    options: NearCacheOptions,
) -> Node {
    let cache =
        Arc::new(NearCache::new(shared, fanout.clone(), Arc::new(clock.clone()), options).unwrap());
    let manager = SessionManager::builder(cache.clone())
        .with_clock(Arc::new(clock.clone()))
        .with_fanout(fanout)
        .build()
        .unwrap();
    Node { manager, cache }
}

/// Waits (a bound, not a sleep: the fanout task runs meanwhile) until `cond`.
async fn until(mut cond: impl FnMut() -> bool) {
    tokio::time::timeout(Duration::from_secs(2), async {
        while !cond() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("condition within 2 s");
}

fn alice() -> NewSession {
    NewSession::user(UserId::new("alice").unwrap())
}

#[tokio::test]
async fn a_fresh_copy_answers_without_the_store() {
    let probe = Arc::new(ProbeStore::new());
    let clock = MockClock::default();
    let a = node(
        probe.clone(),
        Arc::new(LocalFanout::new()),
        &clock,
        NearCacheOptions::new(),
    );
    let token = a.manager.create(alice()).await.unwrap().token.encode();
    a.manager.verify(&token).await.unwrap();
    let loads = probe.loads();
    for _ in 0..10 {
        clock.advance(Duration::from_millis(50));
        a.manager.verify(&token).await.unwrap();
    }
    assert_eq!(probe.loads(), loads, "copies younger than max_age answer");
    clock.advance(Duration::from_secs(1));
    a.manager.verify(&token).await.unwrap();
    assert_eq!(probe.loads(), loads + 1, "an old copy asks the store again");
}

#[tokio::test]
async fn a_due_touch_is_written_to_the_store() {
    let probe = Arc::new(ProbeStore::new());
    let clock = MockClock::default();
    let a = node(
        probe.clone(),
        Arc::new(LocalFanout::new()),
        &clock,
        NearCacheOptions::new().with_max_age(Duration::from_secs(3600)),
    );
    let issued = a.manager.create(alice()).await.unwrap();
    let token = issued.token.encode();
    a.manager.verify(&token).await.unwrap();
    let interval = Duration::from_millis(issued.session.touch_interval_ms.try_into().unwrap());
    clock.advance(interval);
    let loads = probe.loads();
    let seen = a.manager.verify(&token).await.unwrap();
    assert_eq!(seen.last_seen_at, sessionary_core::Clock::now(&clock));
    assert_eq!(probe.loads(), loads + 1, "a due touch goes to the store");
    let stored = probe.inner.get(&issued.session.id).await.unwrap().unwrap();
    assert_eq!(stored.last_seen_at, sessionary_core::Clock::now(&clock));
}

#[tokio::test]
async fn a_revocation_on_one_node_reaches_the_other_nodes_cache() {
    let shared: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    let hub: Arc<dyn Fanout> = Arc::new(LocalFanout::new());
    let clock = MockClock::default();
    let options = NearCacheOptions::new().with_max_age(Duration::from_secs(3600));
    let a = node(shared.clone(), hub.clone(), &clock, options);
    let b = node(shared, hub, &clock, options);
    let issued = a.manager.create(alice()).await.unwrap();
    let token = issued.token.encode();
    b.manager.verify(&token).await.unwrap();
    assert_eq!(b.cache.len(), 1);
    a.manager
        .end_session(&issued.session.id, EndReason::RevokedByAdmin)
        .await
        .unwrap();
    until(|| b.cache.is_empty()).await;
    assert!(matches!(
        b.manager.verify(&token).await,
        Err(Error::Ended(EndReason::RevokedByAdmin))
    ));
}

#[tokio::test]
async fn a_rotation_on_one_node_retires_the_old_token_on_the_other() {
    let shared: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    let hub: Arc<dyn Fanout> = Arc::new(LocalFanout::new());
    let clock = MockClock::default();
    let options = NearCacheOptions::new().with_max_age(Duration::from_secs(3600));
    let a = node(shared.clone(), hub.clone(), &clock, options);
    let b = node(shared, hub, &clock, options);
    let issued = a.manager.create(alice()).await.unwrap();
    let old = issued.token.encode();
    b.manager.verify(&old).await.unwrap();
    let change = Privilege {
        roles: Some(vec!["admin".into()]),
        ..Privilege::default()
    };
    let new = a
        .manager
        .regenerate(&issued.session.id, change)
        .await
        .unwrap();
    until(|| b.cache.is_empty()).await;
    assert!(b.manager.verify(&old).await.is_err(), "old token refused");
    let rec = b.manager.verify(&new.token.encode()).await.unwrap();
    assert_eq!(rec.roles, vec!["admin".to_owned()]);
}

#[tokio::test]
async fn a_counter_increment_on_one_node_reaches_the_other_nodes_cache() {
    let shared: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    let hub: Arc<dyn Fanout> = Arc::new(LocalFanout::new());
    let clock = MockClock::default();
    let options = NearCacheOptions::new().with_max_age(Duration::from_secs(3600));
    let a = node(shared.clone(), hub.clone(), &clock, options);
    let b = node(shared, hub, &clock, options);
    let issued = a.manager.create(alice()).await.unwrap();
    let token = issued.token.encode();
    assert!(b.manager.verify(&token).await.unwrap().counters.is_empty());
    assert_eq!(b.cache.len(), 1);
    a.manager
        .increment(&issued.session.id, "q:api", 3, None)
        .await
        .unwrap();
    until(|| b.cache.is_empty()).await;
    let rec = b.manager.verify(&token).await.unwrap();
    assert_eq!(rec.counters.get("q:api"), Some(&3));
}

#[tokio::test]
async fn a_lost_invalidation_is_bounded_by_max_age() {
    let shared: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    let clock = MockClock::default();
    let options = NearCacheOptions::new().with_max_age(Duration::from_millis(800));
    let a = node(shared.clone(), Arc::new(Deaf::new()), &clock, options);
    let b = node(shared, Arc::new(Deaf::new()), &clock, options);
    let issued = a.manager.create(alice()).await.unwrap();
    let token = issued.token.encode();
    b.manager.verify(&token).await.unwrap();
    a.manager
        .end_session(&issued.session.id, EndReason::RevokedByAdmin)
        .await
        .unwrap();
    // The documented staleness: B's copy still answers until it is max_age old...
    clock.advance(Duration::from_millis(799));
    assert!(b.manager.verify(&token).await.is_ok());
    // ...and never after.
    clock.advance(Duration::from_millis(1));
    assert!(matches!(
        b.manager.verify(&token).await,
        Err(Error::Ended(EndReason::RevokedByAdmin))
    ));
}

#[tokio::test]
async fn a_copy_that_looks_expired_asks_the_store_and_ends_nothing() {
    // B's copy predates A's activity: by the copy the session is idle-expired,
    // by the store it is live. B must ask, not end it.
    let shared: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    let clock = MockClock::default();
    let options = NearCacheOptions::new().with_max_age(Duration::from_secs(24 * 3600));
    let a = node(shared.clone(), Arc::new(Deaf::new()), &clock, options);
    let b = node(shared, Arc::new(Deaf::new()), &clock, options);
    let issued = a.manager.create(alice()).await.unwrap();
    let token = issued.token.encode();
    b.manager.verify(&token).await.unwrap();
    let idle = Duration::from_millis(issued.session.idle_timeout_ms.try_into().unwrap());
    clock.advance(idle / 2);
    a.manager.extend(&token).await.unwrap();
    clock.advance(idle / 2 + Duration::from_secs(1));
    let rec = b.manager.verify(&token).await.unwrap();
    assert!(rec.is_live(sessionary_core::Clock::now(&clock)));
}

#[tokio::test]
async fn missed_messages_empty_the_cache() {
    let shared: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    let hub = LocalFanout::new();
    let clock = MockClock::default();
    let b = node(
        shared.clone(),
        Arc::new(hub.clone()),
        &clock,
        NearCacheOptions::new(),
    );
    let token = b.manager.create(alice()).await.unwrap().token.encode();
    b.manager.verify(&token).await.unwrap();
    assert_eq!(b.cache.len(), 1);
    hub.publish(RemoteEvent::missed(sessionary_core::Clock::now(&clock)));
    until(|| b.cache.is_empty()).await;
}
