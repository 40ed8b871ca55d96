//! The conformance cases. Each takes a fresh, empty store.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sessionary_core::policy::LimitMode;
use sessionary_core::record::Tombstone;
use sessionary_core::store::{
    Counter, Create, Ending, Lookup, SessionLimit, SweepSpec, Touch, Update,
};
use sessionary_core::{
    EndReason, Error, NewSession, Policy, Privilege, Sealed, SessionId, SessionStore, SessionToken,
    Timestamp, UserId,
};

use crate::{manager, manager_with, record, start};

pub use crate::audit_cases::*;
pub use crate::refresh_cases::*;

type Store = Arc<dyn SessionStore>;

const T0: Timestamp = Timestamp(1_767_225_600_000);

fn ending(reason: EndReason, at: Timestamp, restore: bool) -> Ending {
    Ending {
        reason,
        at,
        reason_until: at.add_millis(3_600_000),
        restore_until: restore.then(|| at.add_millis(3_600_000)),
    }
}

fn limit(max: u32, mode: LimitMode, now: Timestamp) -> Option<SessionLimit> {
    Some(SessionLimit {
        max,
        mode,
        now,
        evict: ending(EndReason::EvictedByLimit, now, false),
    })
}

fn user(u: &str) -> UserId {
    UserId::new(u).unwrap()
}

async fn created(
    store: &Store,
    user: Option<&str>,
    now: Timestamp,
) -> (SessionToken, sessionary_core::SessionRecord) {
    let (t, r) = record(user, now);
    let out = store.create(r.clone(), None).await.unwrap();
    assert!(
        matches!(out, Create::Created { ref evicted } if evicted.is_empty()),
        "{out:?}"
    );
    (t, r)
}

fn found(l: Lookup) -> Arc<sessionary_core::SessionRecord> {
    match l {
        Lookup::Found(r) => r,
        other => panic!("expected a session, got {other:?}"),
    }
}

fn ended(l: Lookup) -> Tombstone {
    match l {
        Lookup::Ended(t) => t,
        other => panic!("expected a tombstone, got {other:?}"),
    }
}

/// A created session loads by token hash and by id, exactly as written.
pub async fn create_and_load(store: Store) {
    let (t, r) = created(&store, Some("alice"), T0).await;
    let got = found(store.load(&t.hash(), None).await.unwrap());
    assert_eq!(*got, r);
    assert_eq!(*store.get(&r.id).await.unwrap().unwrap(), r);
    let (anon_t, anon) = created(&store, None, T0).await;
    assert_eq!(
        *found(store.load(&anon_t.hash(), None).await.unwrap()),
        anon
    );
    let unknown = SessionToken::generate().unwrap();
    assert_eq!(
        store.load(&unknown.hash(), None).await.unwrap(),
        Lookup::Missing
    );
    assert_eq!(
        store
            .get(&sessionary_core::SessionId::generate().unwrap())
            .await
            .unwrap(),
        None
    );
}

/// Create is insert-only: a colliding id or token hash never overwrites.
pub async fn create_never_overwrites(store: Store) {
    let (t, r) = created(&store, Some("alice"), T0).await;
    let (_, mut same_id) = record(Some("mallory"), T0);
    same_id.id = r.id;
    assert_eq!(
        store.create(same_id, None).await.unwrap(),
        Create::Duplicate
    );
    let (_, mut same_hash) = record(Some("mallory"), T0);
    same_hash.token_hash = r.token_hash;
    assert_eq!(
        store.create(same_hash.clone(), None).await.unwrap(),
        Create::Duplicate
    );
    assert_eq!(*found(store.load(&t.hash(), None).await.unwrap()), r);
    assert!(store.get(&same_hash.id).await.unwrap().is_none());
    assert!(
        store
            .list_user(&user("mallory"), T0)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A load with touch writes `last_seen_at` only once per touch interval, and never
/// the version or the data; an expired session is not touched.
pub async fn load_touch_is_coalesced(store: Store) {
    let (t, r) = created(&store, Some("alice"), T0).await;
    let early = T0.add_millis(r.touch_interval_ms - 1);
    let got = found(
        store
            .load(&t.hash(), Some(Touch { now: early }))
            .await
            .unwrap(),
    );
    assert_eq!(got.last_seen_at, T0, "touch written before the interval");
    let due = T0.add_millis(r.touch_interval_ms);
    let got = found(
        store
            .load(&t.hash(), Some(Touch { now: due }))
            .await
            .unwrap(),
    );
    assert_eq!(got.last_seen_at, due);
    assert_eq!(got.version, r.version, "a touch must not bump the version");
    assert_eq!(got.data, r.data);
    let again = found(store.load(&t.hash(), None).await.unwrap());
    assert_eq!(again.last_seen_at, due, "touch not persisted");
    // Past the idle timeout: reported as found (the manager decides), never touched.
    let late = due.add_millis(r.idle_timeout_ms + 1);
    let got = found(
        store
            .load(&t.hash(), Some(Touch { now: late }))
            .await
            .unwrap(),
    );
    assert_eq!(got.last_seen_at, due);
}

/// `load_now`, where a store answers it, gives what `load` gives, touch included;
/// stores that answer `None` pass trivially.
pub async fn load_now_is_load(store: Store) {
    let (t, r) = created(&store, Some("alice"), T0).await;
    let Some(now) = store.load_now(&t.hash(), None) else {
        return;
    };
    assert_eq!(*found(now.unwrap()), r);
    let due = T0.add_millis(r.touch_interval_ms);
    let touched = store.load_now(&t.hash(), Some(Touch { now: due }));
    let touched = found(touched.expect("answered once, answers again").unwrap());
    assert_eq!(touched.last_seen_at, due);
    assert_eq!(
        touched.version, r.version,
        "a touch must not bump the version"
    );
    let again = found(store.load(&t.hash(), None).await.unwrap());
    assert_eq!(again.last_seen_at, due, "touch not persisted");
    let unknown = SessionToken::generate().unwrap();
    assert_eq!(
        store.load_now(&unknown.hash(), None).map(Result::unwrap),
        Some(Lookup::Missing)
    );
    let ended = ending(EndReason::LoggedOut, due, false);
    store.end(&r.id, ended).await.unwrap();
    assert!(matches!(
        store.load_now(&t.hash(), None).map(Result::unwrap),
        Some(Lookup::Ended(Tombstone {
            reason: EndReason::LoggedOut,
            ..
        }))
    ));
}

/// An explicit touch extends a live session and refuses an expired or missing one.
pub async fn explicit_touch(store: Store) {
    let (_, r) = created(&store, Some("alice"), T0).await;
    let now = T0.add_millis(1000);
    let got = store.touch(&r.id, now).await.unwrap().unwrap();
    assert_eq!(got.last_seen_at, now);
    assert_eq!(got.version, r.version);
    let late = now.add_millis(r.idle_timeout_ms);
    assert!(store.touch(&r.id, late).await.unwrap().is_none());
    assert_eq!(
        store.get(&r.id).await.unwrap().unwrap().last_seen_at,
        now,
        "expired session was touched"
    );
    let missing = sessionary_core::SessionId::generate().unwrap();
    assert!(store.touch(&missing, now).await.unwrap().is_none());
}

/// `update` writes only over the expected version and bumps it.
pub async fn update_is_compare_and_set(store: Store) {
    let (t, r) = created(&store, Some("alice"), T0).await;
    let mut a = r.clone();
    a.data = Sealed::from_bytes(vec![1, 2, 3]);
    let Update::Updated(after) = store.update(a, r.version).await.unwrap() else {
        panic!("update over the right version failed");
    };
    assert_eq!(after.version, r.version + 1);
    assert_eq!(after.data.as_bytes(), &[1, 2, 3]);
    let mut stale = r.clone();
    stale.data = Sealed::from_bytes(vec![9]);
    match store.update(stale, r.version).await.unwrap() {
        Update::Conflict(cur) => assert_eq!(cur.version, r.version + 1),
        other => panic!("stale update was not refused: {other:?}"),
    }
    let now = found(store.load(&t.hash(), None).await.unwrap());
    assert_eq!(now.data.as_bytes(), &[1, 2, 3]);
}

/// `update` keeps the stored token hash, counters, owner and creation time, and
/// never moves `last_seen_at` backwards.
pub async fn update_keeps_store_owned_fields(store: Store) {
    let (t, r) = created(&store, Some("alice"), T0).await;
    assert_eq!(
        store
            .increment_counter(&r.id, "downloads", 2, None)
            .await
            .unwrap(),
        Counter::Incremented(2)
    );
    let touched = T0.add_millis(r.touch_interval_ms);
    store
        .load(&t.hash(), Some(Touch { now: touched }))
        .await
        .unwrap();
    let cur = store.get(&r.id).await.unwrap().unwrap();
    // A writer working from the record as it was before the touch and counter.
    let mut w = r.clone();
    w.user = Some(user("mallory"));
    w.token_hash = SessionToken::generate().unwrap().hash();
    w.created_at = Timestamp(0);
    w.counters.clear();
    w.roles = vec!["user".into(), "editor".into()];
    let Update::Updated(after) = store.update(w, cur.version).await.unwrap() else {
        panic!("update failed");
    };
    assert_eq!(after.user, Some(user("alice")));
    assert_eq!(after.token_hash, t.hash());
    assert_eq!(after.created_at, T0);
    assert_eq!(after.counters.get("downloads"), Some(&2));
    assert_eq!(after.last_seen_at, touched);
    assert_eq!(after.roles, vec!["user".to_string(), "editor".into()]);
    assert_eq!(*store.get(&r.id).await.unwrap().unwrap(), *after);
}

/// An update racing a destroy never brings the session back.
pub async fn destroy_beats_in_flight_save(store: Store) {
    let (t, r) = created(&store, Some("alice"), T0).await;
    let in_flight = store.get(&r.id).await.unwrap().unwrap();
    let gone = store
        .end(&r.id, ending(EndReason::LoggedOut, T0, false))
        .await
        .unwrap();
    assert_eq!(gone.map(|g| g.id), Some(r.id));
    let mut w = (*in_flight).clone();
    w.data = Sealed::from_bytes(vec![5]);
    assert_eq!(
        store.update(w, in_flight.version).await.unwrap(),
        Update::Gone
    );
    assert!(store.touch(&r.id, T0).await.unwrap().is_none());
    assert_eq!(
        store.increment_counter(&r.id, "x", 1, None).await.unwrap(),
        Counter::Gone
    );
    assert!(store.get(&r.id).await.unwrap().is_none());
    let tomb = ended(
        store
            .load(&t.hash(), Some(Touch { now: T0 }))
            .await
            .unwrap(),
    );
    assert_eq!(tomb.reason, EndReason::LoggedOut);
    assert_eq!(tomb.session_id, r.id);
    assert!(
        store
            .list_user(&user("alice"), T0)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .end(&r.id, ending(EndReason::LoggedOut, T0, false))
            .await
            .unwrap()
            .is_none()
    );
}

fn regen_tomb(r: &sessionary_core::SessionRecord, at: Timestamp) -> Tombstone {
    Tombstone {
        session_id: r.id,
        user: r.user.clone(),
        reason: EndReason::Regenerated,
        ended_at: at,
        keep_until: at.add_millis(3_600_000),
    }
}

/// `rotate` swaps the token in one step: the old hash reports `regenerated`, the new
/// one finds the same session with its counters.
pub async fn rotate_is_atomic(store: Store) {
    let (old, r) = created(&store, Some("alice"), T0).await;
    store.increment_counter(&r.id, "n", 1, None).await.unwrap();
    let cur = store.get(&r.id).await.unwrap().unwrap();
    let new_t = SessionToken::generate().unwrap();
    let mut next = (*cur).clone();
    next.token_hash = new_t.hash();
    next.roles = vec!["admin".into()];
    let Update::Updated(after) = store
        .rotate(next, cur.version, regen_tomb(&r, T0))
        .await
        .unwrap()
    else {
        panic!("rotation failed");
    };
    assert_eq!(after.version, cur.version + 1);
    assert_eq!(after.id, r.id);
    assert_eq!(
        ended(store.load(&old.hash(), None).await.unwrap()).reason,
        EndReason::Regenerated
    );
    let got = found(store.load(&new_t.hash(), None).await.unwrap());
    assert_eq!(got.roles, vec!["admin".to_string()]);
    assert_eq!(got.counters.get("n"), Some(&1));
    assert_eq!(
        store.get(&r.id).await.unwrap().unwrap().token_hash,
        new_t.hash()
    );
    let listed = store.list_user(&user("alice"), T0).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].token_hash, new_t.hash());
}

/// A rotation over a stale version changes nothing: the old token still works.
pub async fn rotate_with_stale_version_changes_nothing(store: Store) {
    let (old, r) = created(&store, Some("alice"), T0).await;
    let new_t = SessionToken::generate().unwrap();
    let mut next = r.clone();
    next.token_hash = new_t.hash();
    match store
        .rotate(next, r.version + 5, regen_tomb(&r, T0))
        .await
        .unwrap()
    {
        Update::Conflict(cur) => assert_eq!(cur.version, r.version),
        other => panic!("stale rotation not refused: {other:?}"),
    }
    assert_eq!(*found(store.load(&old.hash(), None).await.unwrap()), r);
    assert_eq!(
        store.load(&new_t.hash(), None).await.unwrap(),
        Lookup::Missing
    );
}

/// Twenty concurrent rotations from the same version: exactly one wins, and
/// exactly one new token works.
pub async fn concurrent_rotations_one_wins(store: Store) {
    let (old, r) = created(&store, Some("alice"), T0).await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let store = Arc::clone(&store);
        let r = r.clone();
        tasks.push(tokio::spawn(async move {
            let t = SessionToken::generate().unwrap();
            let mut next = r.clone();
            next.token_hash = t.hash();
            let out = store
                .rotate(next, r.version, regen_tomb(&r, T0))
                .await
                .unwrap();
            (t, out)
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        let (t, out) = task.await.unwrap();
        match out {
            Update::Updated(_) => winners.push(t),
            Update::Conflict(_) => {}
            Update::Gone => panic!("session vanished during rotation"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one rotation must win");
    assert!(matches!(
        store.load(&old.hash(), None).await.unwrap(),
        Lookup::Ended(_)
    ));
    assert!(matches!(
        store.load(&winners[0].hash(), None).await.unwrap(),
        Lookup::Found(_)
    ));
    assert_eq!(store.list_user(&user("alice"), T0).await.unwrap().len(), 1);
}

/// Ending keeps the reason under the token hash and, if asked, the data for the
/// user's next session (taken once, until its deadline).
pub async fn end_leaves_reason_and_restorable(store: Store) {
    let (t, r) = created(&store, Some("alice"), T0).await;
    store
        .end(&r.id, ending(EndReason::ExpiredIdle, T0, true))
        .await
        .unwrap()
        .unwrap();
    let tomb = ended(store.load(&t.hash(), None).await.unwrap());
    assert_eq!(tomb.reason, EndReason::ExpiredIdle);
    assert_eq!(tomb.user, Some(user("alice")));
    let later = T0.add_millis(3_600_001);
    assert_eq!(
        store
            .load(&t.hash(), Some(Touch { now: later }))
            .await
            .unwrap(),
        Lookup::Missing
    );
    let restorable = store
        .take_restorable(&user("alice"), T0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(restorable.session_id, r.id);
    assert_eq!(restorable.data, r.data);
    assert!(
        store
            .take_restorable(&user("alice"), T0)
            .await
            .unwrap()
            .is_none()
    );
    // A restorable past its deadline is not handed out.
    let (_, r2) = created(&store, Some("alice"), T0).await;
    store
        .end(&r2.id, ending(EndReason::ExpiredIdle, T0, true))
        .await
        .unwrap();
    assert!(
        store
            .take_restorable(&user("alice"), later)
            .await
            .unwrap()
            .is_none()
    );
    // Without restore, nothing is kept.
    let (_, r3) = created(&store, Some("alice"), T0).await;
    store
        .end(&r3.id, ending(EndReason::LoggedOut, T0, false))
        .await
        .unwrap();
    assert!(
        store
            .take_restorable(&user("alice"), T0)
            .await
            .unwrap()
            .is_none()
    );
}

/// Ending a user's sessions except one leaves that one and other users alone.
pub async fn end_user_except_one(store: Store) {
    let (_, a1) = created(&store, Some("alice"), T0).await;
    let (t2, a2) = created(&store, Some("alice"), T0).await;
    let (t3, a3) = created(&store, Some("alice"), T0).await;
    let (_, b) = created(&store, Some("bob"), T0).await;
    let gone = store
        .end_user(
            &user("alice"),
            Some(&a1.id),
            ending(EndReason::RevokedByUser, T0, false),
        )
        .await
        .unwrap();
    let gone: BTreeSet<_> = gone.iter().map(|g| g.id).collect();
    assert_eq!(gone, BTreeSet::from([a2.id, a3.id]));
    let left = store.list_user(&user("alice"), T0).await.unwrap();
    assert_eq!(left.iter().map(|r| r.id).collect::<Vec<_>>(), vec![a1.id]);
    assert_eq!(store.list_user(&user("bob"), T0).await.unwrap()[0].id, b.id);
    assert_eq!(
        ended(store.load(&t2.hash(), None).await.unwrap()).reason,
        EndReason::RevokedByUser
    );
    assert_eq!(
        ended(store.load(&t3.hash(), None).await.unwrap()).reason,
        EndReason::RevokedByUser
    );
    let all = store
        .end_user(
            &user("alice"),
            None,
            ending(EndReason::RevokedByAdmin, T0, false),
        )
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    assert!(
        store
            .list_user(&user("alice"), T0)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Listing shows only live sessions, oldest first.
pub async fn list_user_is_live_and_oldest_first(store: Store) {
    let (_, first) = created(&store, Some("alice"), T0).await;
    let (_, second) = created(&store, Some("alice"), T0.add_millis(10)).await;
    let (_, mut short) = record(Some("alice"), T0);
    short.idle_timeout_ms = 1000;
    store.create(short, None).await.unwrap();
    created(&store, Some("bob"), T0).await;
    created(&store, None, T0).await;
    let now = T0.add_millis(5000);
    let ids: Vec<_> = store
        .list_user(&user("alice"), now)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, vec![first.id, second.id]);
}

/// The sessions a create evicted; a panic if it did not create.
fn evicted_ids(out: Create) -> Vec<SessionId> {
    match out {
        Create::Created { evicted } => evicted.iter().map(|e| e.id).collect(),
        other => panic!("{other:?}"),
    }
}

/// The ids of `user`'s live sessions at `now`.
async fn live_ids(store: &Store, user_id: &str, now: Timestamp) -> BTreeSet<SessionId> {
    store
        .list_user(&user(user_id), now)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect()
}

/// At the limit with `EvictOldest`, the oldest session ends with `evicted_by_limit`.
pub async fn limit_evicts_oldest(store: Store) {
    let (t1, r1) = record(Some("alice"), T0);
    let (_, r2) = record(Some("alice"), T0.add_millis(1));
    let (_, r3) = record(Some("alice"), T0.add_millis(2));
    let now = T0.add_millis(3);
    for r in [r1.clone(), r2.clone()] {
        let out = store
            .create(r, limit(2, LimitMode::EvictOldest, now))
            .await
            .unwrap();
        assert_eq!(out, Create::Created { evicted: vec![] });
    }
    let out = store
        .create(r3.clone(), limit(2, LimitMode::EvictOldest, now))
        .await
        .unwrap();
    assert_eq!(evicted_ids(out), vec![r1.id]);
    let tomb = ended(store.load(&t1.hash(), None).await.unwrap());
    assert_eq!(tomb.reason, EndReason::EvictedByLimit);
    assert_eq!(
        live_ids(&store, "alice", now).await,
        BTreeSet::from([r2.id, r3.id])
    );
}

/// At the limit with `RejectNew`, nothing is written.
pub async fn limit_rejects_new(store: Store) {
    let (_, r1) = record(Some("alice"), T0);
    store
        .create(r1.clone(), limit(1, LimitMode::RejectNew, T0))
        .await
        .unwrap();
    let (t2, r2) = record(Some("alice"), T0);
    assert_eq!(
        store
            .create(r2.clone(), limit(1, LimitMode::RejectNew, T0))
            .await
            .unwrap(),
        Create::LimitReached { active: 1 }
    );
    assert_eq!(store.load(&t2.hash(), None).await.unwrap(), Lookup::Missing);
    assert!(store.get(&r2.id).await.unwrap().is_none());
    assert_eq!(store.list_user(&user("alice"), T0).await.unwrap().len(), 1);
    // Other users are not counted.
    let (_, b) = record(Some("bob"), T0);
    assert!(matches!(
        store
            .create(b, limit(1, LimitMode::RejectNew, T0))
            .await
            .unwrap(),
        Create::Created { .. }
    ));
}

/// Expired sessions do not count toward the limit.
pub async fn limit_ignores_expired_sessions(store: Store) {
    let (_, mut old) = record(Some("alice"), T0);
    old.idle_timeout_ms = 1000;
    store.create(old, None).await.unwrap();
    let now = T0.add_millis(2000);
    let (_, r) = record(Some("alice"), now);
    assert!(matches!(
        store
            .create(r, limit(1, LimitMode::RejectNew, now))
            .await
            .unwrap(),
        Create::Created { .. }
    ));
}

/// Sessions created exempt from the limit (an app session under a single
/// sign-on session) are neither counted nor evicted by later creates with a
/// limit, and stay exempt through updates and rotations whatever the writer
/// sends.
pub async fn limit_skips_exempt_sessions(store: Store) {
    let (te, mut e) = record(Some("alice"), T0);
    e.exempt_from_limit = true;
    store.create(e.clone(), None).await.unwrap();
    let (_, r1) = record(Some("alice"), T0.add_millis(1));
    let now = T0.add_millis(2);
    assert_eq!(
        store
            .create(r1.clone(), limit(1, LimitMode::RejectNew, now))
            .await
            .unwrap(),
        Create::Created { evicted: vec![] },
        "the exempt session is not counted"
    );
    // A writer that drops the flag, then a rotation: still exempt.
    let cur = store.get(&e.id).await.unwrap().unwrap();
    assert!(cur.exempt_from_limit);
    let mut w = (*cur).clone();
    w.exempt_from_limit = false;
    let Update::Updated(after) = store.update(w, cur.version).await.unwrap() else {
        panic!("update failed");
    };
    assert!(after.exempt_from_limit);
    let new_t = SessionToken::generate().unwrap();
    let mut next = (*after).clone();
    next.token_hash = new_t.hash();
    next.exempt_from_limit = false;
    let Update::Updated(_) = store
        .rotate(next, after.version, regen_tomb(&e, now))
        .await
        .unwrap()
    else {
        panic!("rotation failed");
    };
    assert!(found(store.load(&new_t.hash(), None).await.unwrap()).exempt_from_limit);
    assert!(matches!(
        store.load(&te.hash(), None).await.unwrap(),
        Lookup::Ended(_)
    ));
    // At the limit, the counted session is evicted, never the exempt one.
    let (_, r2) = record(Some("alice"), T0.add_millis(3));
    let out = store
        .create(r2.clone(), limit(1, LimitMode::EvictOldest, now))
        .await
        .unwrap();
    assert_eq!(evicted_ids(out), vec![r1.id]);
    assert_eq!(
        live_ids(&store, "alice", now).await,
        BTreeSet::from([e.id, r2.id])
    );
}

/// 50 parallel creates with a limit of 1 for each of 10 users at once, in 8
/// rounds (a race window is narrow; rounds make a missing lock show); returns
/// (created, rejected) per user and round.
async fn parallel_creates(store: &Store, mode: LimitMode) -> Vec<(usize, usize)> {
    let mut all = Vec::new();
    for round in 0..8 {
        all.extend(parallel_creates_round(store, mode, round).await);
    }
    all
}

async fn parallel_creates_round(
    store: &Store,
    mode: LimitMode,
    round: usize,
) -> Vec<(usize, usize)> {
    const USERS: usize = 10;
    let start = Arc::new(tokio::sync::Barrier::new(50 * USERS));
    let mut tasks = Vec::new();
    for i in 0..50 * USERS {
        let store = Arc::clone(store);
        let start = Arc::clone(&start);
        tasks.push(tokio::spawn(async move {
            let name = format!("r{round}user{}", i % USERS);
            let (_, r) = record(Some(&name), T0);
            start.wait().await;
            (
                i % USERS,
                store.create(r, limit(1, mode, T0)).await.unwrap(),
            )
        }));
    }
    let mut counts = vec![(0, 0); USERS];
    for t in tasks {
        let (u, out) = t.await.unwrap();
        match out {
            Create::Created { .. } => counts[u].0 += 1,
            Create::LimitReached { active } => {
                assert_eq!(active, 1);
                counts[u].1 += 1;
            }
            Create::Duplicate => panic!("random ids collided"),
        }
    }
    for u in 0..USERS {
        let name = format!("r{round}user{u}");
        let live = store.list_user(&user(&name), T0).await.unwrap();
        assert_eq!(live.len(), 1, "{name} has {} live sessions", live.len());
    }
    counts
}

/// 50 parallel sign-ins with a limit of 1 (`EvictOldest`) leave exactly 1 live session.
pub async fn race_parallel_creates_evict_oldest(store: Store) {
    for counts in parallel_creates(&store, LimitMode::EvictOldest).await {
        assert_eq!(counts, (50, 0));
    }
}

/// 50 parallel sign-ins with a limit of 1 (`RejectNew`): 1 succeeds, 49 are refused.
pub async fn race_parallel_creates_reject_new(store: Store) {
    for counts in parallel_creates(&store, LimitMode::RejectNew).await {
        assert_eq!(counts, (1, 49));
    }
}

/// 100 concurrent data updates on one session all take effect.
pub async fn race_concurrent_data_updates(store: Store) {
    let clock = start();
    let m = manager(store, &clock);
    let issued = m.create(NewSession::user(user("alice"))).await.unwrap();
    let id = issued.session.id;
    let mut tasks = Vec::new();
    for i in 0..100 {
        let m = m.clone();
        tasks.push(tokio::spawn(async move {
            m.update_data(&id, None, |d| {
                d.insert(format!("k{i}"), json!(i));
                let n = d.get("n").and_then(|v| v.as_u64()).unwrap_or(0);
                d.insert("n".into(), json!(n + 1));
            })
            .await
            .unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let rec = m.session(&id).await.unwrap();
    let data = m.data(&rec).unwrap();
    assert_eq!(data.get("n"), Some(&json!(100)), "lost updates");
    for i in 0..100 {
        assert_eq!(data.get(&format!("k{i}")), Some(&json!(i)));
    }
}

/// Updates racing a destroy: afterwards the session is gone, whatever finished first.
pub async fn race_destroy_during_updates(store: Store) {
    let clock = start();
    let m = manager(Arc::clone(&store), &clock);
    let issued = m.create(NewSession::user(user("alice"))).await.unwrap();
    let id = issued.session.id;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let m = m.clone();
        tasks.push(tokio::spawn(async move {
            if i == 20 {
                m.end_session(&id, EndReason::LoggedOut).await.map(|_| ())
            } else {
                m.update_data(&id, None, |d| {
                    d.insert(format!("k{i}"), json!(i));
                })
                .await
                .map(|_| ())
            }
        }));
    }
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) | Err(Error::NotFound) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert!(
        store.get(&id).await.unwrap().is_none(),
        "session resurrected"
    );
    let err = m.verify(&issued.token.encode()).await.unwrap_err();
    assert_eq!(err.reason(), Some("logged_out"));
}

/// Counters increment atomically and refuse to pass their limit.
pub async fn counters_increment_with_limit(store: Store) {
    let (_, r) = created(&store, None, T0).await;
    assert_eq!(
        store
            .increment_counter(&r.id, "dl", 3, Some(5))
            .await
            .unwrap(),
        Counter::Incremented(3)
    );
    assert_eq!(
        store
            .increment_counter(&r.id, "dl", 3, Some(5))
            .await
            .unwrap(),
        Counter::LimitExceeded(3)
    );
    assert_eq!(
        store
            .increment_counter(&r.id, "dl", 2, Some(5))
            .await
            .unwrap(),
        Counter::Incremented(5)
    );
    assert_eq!(
        store
            .increment_counter(&r.id, "bytes", 1000, None)
            .await
            .unwrap(),
        Counter::Incremented(1000)
    );
    let cur = store.get(&r.id).await.unwrap().unwrap();
    assert_eq!(cur.counters.get("dl"), Some(&5));
    assert_eq!(cur.counters.get("bytes"), Some(&1000));
    assert_eq!(
        cur.version,
        r.version + 3,
        "each increment bumps the version"
    );
}

/// 50 parallel increments with a limit of 5: exactly 5 succeed.
pub async fn race_counter_limit(store: Store) {
    let (_, r) = created(&store, None, T0).await;
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let store = Arc::clone(&store);
        let id = r.id;
        tasks.push(tokio::spawn(async move {
            store
                .increment_counter(&id, "downloads", 1, Some(5))
                .await
                .unwrap()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        if let Counter::Incremented(_) = t.await.unwrap() {
            ok += 1;
        }
    }
    assert_eq!(ok, 5);
    assert_eq!(
        store
            .get(&r.id)
            .await
            .unwrap()
            .unwrap()
            .counters
            .get("downloads"),
        Some(&5)
    );
}

/// Sweep ends exactly the expired sessions with the right reasons, keeps their
/// reasons and restorable data, and later forgets old reasons.
pub async fn sweep_removes_only_expired(store: Store) {
    let mut live = Vec::new();
    for _ in 0..3 {
        live.push(created(&store, Some("alice"), T0).await);
    }
    let (idle_t, mut idle) = record(Some("bob"), T0);
    idle.idle_timeout_ms = 1000;
    store.create(idle.clone(), None).await.unwrap();
    let (abs_t, mut abs) = record(None, T0);
    abs.absolute_expires_at = T0.add_millis(500);
    store.create(abs.clone(), None).await.unwrap();
    let now = T0.add_millis(2000);
    let spec = SweepSpec {
        now,
        reason_ttl_ms: 10_000,
        restore_ttl_ms: 10_000,
    };
    let mut done = Vec::new();
    for _ in 0..10 {
        let batch = store.sweep(spec, 100).await.unwrap();
        if batch.is_empty() && done.len() >= 2 {
            break;
        }
        done.extend(batch);
    }
    let mut got: Vec<_> = done.iter().map(|e| (e.record.id, e.reason)).collect();
    got.sort();
    let mut want = vec![
        (idle.id, EndReason::ExpiredIdle),
        (abs.id, EndReason::ExpiredAbsolute),
    ];
    want.sort();
    assert_eq!(got, want);
    for (t, r) in &live {
        assert_eq!(found(store.load(&t.hash(), None).await.unwrap()).id, r.id);
    }
    assert_eq!(
        ended(store.load(&idle_t.hash(), None).await.unwrap()).reason,
        EndReason::ExpiredIdle
    );
    assert_eq!(
        ended(store.load(&abs_t.hash(), None).await.unwrap()).reason,
        EndReason::ExpiredAbsolute
    );
    assert_eq!(
        store
            .take_restorable(&user("bob"), now)
            .await
            .unwrap()
            .map(|r| r.session_id),
        Some(idle.id)
    );
    // Much later: the reasons are forgotten.
    let later = SweepSpec {
        now: now.add_millis(60_000),
        ..spec
    };
    for _ in 0..10 {
        store.sweep(later, 100).await.unwrap();
    }
    assert_eq!(
        store.load(&idle_t.hash(), None).await.unwrap(),
        Lookup::Missing
    );
}

/// User data is compare-and-set: 0 means absent, every write bumps the version.
pub async fn user_data_compare_and_set(store: Store) {
    let alice = user("alice");
    assert!(store.user_data(&alice).await.unwrap().is_none());
    let v1 = store
        .set_user_data(&alice, 0, Sealed::from_bytes(vec![1]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v1.version, 1);
    let refused = store
        .set_user_data(&alice, 0, Sealed::from_bytes(vec![2]))
        .await
        .unwrap();
    assert_eq!(refused.unwrap_err().map(|d| d.version), Some(1));
    let v2 = store
        .set_user_data(&alice, 1, Sealed::from_bytes(vec![3]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(
        store
            .user_data(&alice)
            .await
            .unwrap()
            .unwrap()
            .data
            .as_bytes(),
        &[3]
    );
    assert!(store.user_data(&user("bob")).await.unwrap().is_none());
}

/// 50 concurrent user-data updates all take effect.
pub async fn race_user_data_updates(store: Store) {
    let clock = start();
    let m = manager(store, &clock);
    let alice = user("alice");
    let mut tasks = Vec::new();
    for i in 0..50 {
        let m = m.clone();
        let alice = alice.clone();
        tasks.push(tokio::spawn(async move {
            m.update_user_data(&alice, None, |d| {
                d.insert(format!("k{i}"), json!(i));
            })
            .await
            .unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (version, data) = m.user_data(&alice).await.unwrap();
    assert_eq!(data.len(), 50);
    assert_eq!(version, 50);
}

/// The whole lifecycle through the manager on this store, with an injected clock:
/// anonymous cart, sign-in (new token, old refused as `regenerated`, cart kept),
/// role change, idle expiry with reason and restore, limit eviction.
pub async fn manager_walk(store: Store) {
    let clock = start();
    let mut policy = Policy::default();
    policy.default.max_sessions = Some(2);
    let m = manager_with(Arc::clone(&store), &clock, policy);
    let anon = m.create(NewSession::anonymous()).await.unwrap();
    m.update_data(&anon.session.id, None, |d| {
        d.insert("cart".into(), json!(["tea"]));
    })
    .await
    .unwrap();
    let anon_token = anon.token.encode();
    let signed = m
        .login(
            Some(&anon_token),
            NewSession::user(user("alice")).with_roles(["user"]),
        )
        .await
        .unwrap();
    assert_ne!(signed.token.encode(), anon_token);
    assert_eq!(
        m.verify(&anon_token).await.unwrap_err().reason(),
        Some("regenerated")
    );
    let rec = m.verify(&signed.token.encode()).await.unwrap();
    assert_eq!(m.data(&rec).unwrap().get("cart"), Some(&json!(["tea"])));
    // Privilege change: new token, admin timeouts.
    let admin = m
        .regenerate(
            &rec.id,
            Privilege {
                roles: Some(vec!["admin".into()]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        m.verify(&signed.token.encode()).await.unwrap_err().reason(),
        Some("regenerated")
    );
    assert_eq!(admin.session.idle_timeout_ms, 10 * 60_000);
    // Idle expiry: 10 minutes without a request.
    clock.advance(Duration::from_secs(10 * 60));
    let err = m.verify(&admin.token.encode()).await.unwrap_err();
    assert_eq!(err.reason(), Some("expired_idle"));
    assert!(store.get(&rec.id).await.unwrap().is_none());
    // The next sign-in gets the cart back.
    let back = m.create(NewSession::user(user("alice"))).await.unwrap();
    assert_eq!(back.restored_from, Some(rec.id));
    assert_eq!(
        m.data(&back.session).unwrap().get("cart"),
        Some(&json!(["tea"]))
    );
    // Limit of 2 (evict oldest).
    clock.advance(Duration::from_secs(1));
    let third = m.create(NewSession::user(user("alice"))).await.unwrap();
    clock.advance(Duration::from_secs(1));
    let fourth = m.create(NewSession::user(user("alice"))).await.unwrap();
    assert_eq!(fourth.evicted, vec![back.session.id]);
    assert_eq!(
        m.verify(&back.token.encode()).await.unwrap_err().reason(),
        Some("evicted_by_limit")
    );
    assert!(m.verify(&third.token.encode()).await.is_ok());
}
