//! Each `SessionStore` operation of `SqlStore`, on an in-memory database and on
//! a database file, checked against the contract (and `MemoryStore`'s behaviour).

// Test code: a panic is how a check reports a failure (helpers outside
// `#[test]` functions are not covered by clippy.toml's test allowance).
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{MINUTE, T0, record, sealed, user};
use sessionary_core::record::{EndReason, Tombstone, UserData};
use sessionary_core::store::{
    Counter, Create, Ending, Lookup, SessionLimit, SweepSpec, Touch, Update,
};
use sessionary_core::{LimitMode, SessionId, SessionStore, SessionToken, StoreError, Timestamp};

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod in_memory {
            $(
                #[tokio::test]
                async fn $name() {
                    let store = sessionary_sql::SqlStore::sqlite_in_memory().await.unwrap();
                    super::$name(&store).await;
                }
            )*
        }
        /// The same checks on the reference store: they encode its behaviour.
        mod memory_store_reference {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(&sessionary_core::MemoryStore::new()).await;
                }
            )*
        }
        mod file {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (store, _dir) = crate::common::file_store().await;
                    super::$name(&store).await;
                }
            )*
        }
        mod cached_file {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (store, _dir) = crate::common::cached_store().await;
                    super::$name(&store).await;
                }
            )*
        }
    };
}

on_both!(
    create_load_get_round_trip,
    create_never_overwrites,
    load_touches_only_when_due,
    load_reports_tombstones,
    update_is_compare_and_set,
    rotate_moves_the_token_in_one_step,
    touch_extends_live_sessions_only,
    end_keeps_reason_and_restorable_data,
    end_user_ends_all_but_one,
    list_user_lists_live_sessions_oldest_first,
    increment_counter_respects_limits,
    create_with_limit_rejects_or_evicts,
    sweep_ends_expired_sessions_and_forgets_old_reasons,
    user_data_is_compare_and_set,
);

fn ending(reason: EndReason, at: i64, restore: bool) -> Ending {
    Ending {
        reason,
        at: Timestamp(at),
        reason_until: Timestamp(at + 60 * MINUTE),
        restore_until: restore.then_some(Timestamp(at + 30 * MINUTE)),
    }
}

fn limit(max: u32, mode: LimitMode, now: i64) -> Option<SessionLimit> {
    Some(SessionLimit {
        max,
        mode,
        now: Timestamp(now),
        evict: ending(EndReason::EvictedByLimit, now, false),
    })
}

fn created(c: Create) -> Vec<Arc<sessionary_core::SessionRecord>> {
    match c {
        Create::Created { evicted } => evicted,
        other => panic!("expected Created, got {other:?}"),
    }
}

async fn create_load_get_round_trip(s: &dyn SessionStore) {
    for rec in [record(Some("alice"), T0), {
        let mut anon = record(None, T0);
        anon.device = Default::default();
        anon.counters.clear();
        anon.data = Default::default();
        anon
    }] {
        assert!(created(s.create(rec.clone(), None).await.unwrap()).is_empty());
        assert_eq!(
            s.load(&rec.token_hash, None).await.unwrap(),
            Lookup::Found(Arc::new(rec.clone()))
        );
        assert_eq!(s.get(&rec.id).await.unwrap(), Some(Arc::new(rec.clone())));
    }
    assert_eq!(s.get(&SessionId([9; 16])).await.unwrap(), None);
}

async fn create_never_overwrites(s: &dyn SessionStore) {
    let rec = record(Some("alice"), T0);
    created(s.create(rec.clone(), None).await.unwrap());
    // Same id, other token.
    let mut same_id = record(Some("bob"), T0);
    same_id.id = rec.id;
    assert_eq!(s.create(same_id, None).await.unwrap(), Create::Duplicate);
    // Same token, other id.
    let mut same_hash = record(Some("bob"), T0);
    same_hash.token_hash = rec.token_hash;
    assert_eq!(
        s.create(same_hash.clone(), None).await.unwrap(),
        Create::Duplicate
    );
    assert_eq!(s.get(&rec.id).await.unwrap(), Some(Arc::new(rec.clone())));
    // A token remembered by a tombstone is never reused.
    s.end(&rec.id, ending(EndReason::LoggedOut, T0, false))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.create(same_hash, None).await.unwrap(), Create::Duplicate);
    // The id of an ended session is free again (with a new token).
    let mut reuse = record(Some("alice"), T0);
    reuse.id = rec.id;
    created(s.create(reuse, None).await.unwrap());
}

async fn load_touches_only_when_due(s: &dyn SessionStore) {
    let rec = record(Some("alice"), T0);
    created(s.create(rec.clone(), None).await.unwrap());
    let touch = |ms| Some(Touch { now: Timestamp(ms) });

    // Not due yet: nothing written.
    let Lookup::Found(r) = s.load(&rec.token_hash, touch(T0 + 30_000)).await.unwrap() else {
        panic!("not found")
    };
    assert_eq!(*r, rec);

    // Due: only last_seen_at moves.
    let Lookup::Found(r) = s
        .load(&rec.token_hash, touch(T0 + 2 * MINUTE))
        .await
        .unwrap()
    else {
        panic!("not found")
    };
    let mut expect = rec.clone();
    expect.last_seen_at = Timestamp(T0 + 2 * MINUTE);
    assert_eq!(*r, expect);
    assert_eq!(s.get(&rec.id).await.unwrap().as_deref(), Some(&expect));
    // The expiry moved with it: alive past the old idle deadline.
    let live = s
        .list_user(&user("alice"), Timestamp(T0 + 31 * MINUTE))
        .await
        .unwrap();
    assert_eq!(live.len(), 1);

    // A load without touch never writes.
    let Lookup::Found(r) = s.load(&rec.token_hash, None).await.unwrap() else {
        panic!("not found")
    };
    assert_eq!(*r, expect);

    // An expired session is found (the caller decides) but not touched.
    let late = T0 + 2 * MINUTE + 30 * MINUTE;
    let Lookup::Found(r) = s.load(&rec.token_hash, touch(late)).await.unwrap() else {
        panic!("not found")
    };
    assert_eq!(*r, expect);
}

async fn load_reports_tombstones(s: &dyn SessionStore) {
    let unknown = SessionToken::generate().unwrap().hash();
    assert_eq!(s.load(&unknown, None).await.unwrap(), Lookup::Missing);
    assert_eq!(
        s.load(&unknown, Some(Touch { now: Timestamp(T0) }))
            .await
            .unwrap(),
        Lookup::Missing
    );

    let rec = record(Some("alice"), T0);
    created(s.create(rec.clone(), None).await.unwrap());
    let e = ending(EndReason::LoggedOut, T0 + MINUTE, false);
    s.end(&rec.id, e).await.unwrap().unwrap();
    let tomb = Tombstone {
        session_id: rec.id,
        user: rec.user.clone(),
        reason: EndReason::LoggedOut,
        ended_at: e.at,
        keep_until: e.reason_until,
    };
    assert_eq!(
        s.load(&rec.token_hash, None).await.unwrap(),
        Lookup::Ended(tomb.clone())
    );
    let before = Some(Touch {
        now: Timestamp(e.reason_until.0 - 1),
    });
    assert_eq!(
        s.load(&rec.token_hash, before).await.unwrap(),
        Lookup::Ended(tomb.clone())
    );
    // Past keep_until a request no longer learns the reason; a status read still
    // does until a sweep forgets it (as MemoryStore).
    let after = Some(Touch {
        now: e.reason_until,
    });
    assert_eq!(
        s.load(&rec.token_hash, after).await.unwrap(),
        Lookup::Missing
    );
    assert_eq!(
        s.load(&rec.token_hash, None).await.unwrap(),
        Lookup::Ended(tomb)
    );
    assert_eq!(s.get(&rec.id).await.unwrap(), None);
}

async fn update_is_compare_and_set(s: &dyn SessionStore) {
    let rec = record(Some("alice"), T0);
    created(s.create(rec.clone(), None).await.unwrap());

    let mut change = rec.clone();
    change.data = sealed(b"new data");
    change.roles = vec!["user".to_owned()];
    change.aal = 3;
    // Fields the store keeps whatever the caller sends:
    change.token_hash = SessionToken::generate().unwrap().hash();
    change.user = Some(user("mallory"));
    change.created_at = Timestamp(T0 + 5);
    change.counters.insert("downloads".to_owned(), 99);
    change.last_seen_at = Timestamp(T0 - MINUTE);

    assert_eq!(
        s.update(change.clone(), 7).await.unwrap(),
        Update::Conflict(Arc::new(rec.clone()))
    );
    let Update::Updated(new) = s.update(change.clone(), 1).await.unwrap() else {
        panic!("not updated")
    };
    let mut expect = change.clone();
    expect.version = 2;
    expect.token_hash = rec.token_hash;
    expect.user = rec.user.clone();
    expect.created_at = rec.created_at;
    expect.counters = rec.counters.clone();
    expect.last_seen_at = rec.last_seen_at;
    assert_eq!(*new, expect);
    assert_eq!(s.get(&rec.id).await.unwrap().as_deref(), Some(&expect));
    assert_eq!(
        s.load(&rec.token_hash, None).await.unwrap(),
        Lookup::Found(Arc::new(expect.clone()))
    );
    // last_seen_at moves forwards.
    let mut later = expect.clone();
    later.last_seen_at = Timestamp(T0 + 3 * MINUTE);
    let Update::Updated(new) = s.update(later, 2).await.unwrap() else {
        panic!("not updated")
    };
    assert_eq!(new.last_seen_at, Timestamp(T0 + 3 * MINUTE));
    assert_eq!(new.version, 3);

    // An ended session is never re-created.
    s.end(&rec.id, ending(EndReason::LoggedOut, T0, false))
        .await
        .unwrap();
    assert_eq!(s.update(expect, 3).await.unwrap(), Update::Gone);
    assert_eq!(s.get(&rec.id).await.unwrap(), None);
}

async fn rotate_moves_the_token_in_one_step(s: &dyn SessionStore) {
    let rec = record(Some("alice"), T0);
    created(s.create(rec.clone(), None).await.unwrap());
    s.increment_counter(&rec.id, "downloads", 2, None)
        .await
        .unwrap();
    let cur = s.get(&rec.id).await.unwrap().unwrap();
    assert_eq!(cur.version, 2);

    let new_hash = SessionToken::generate().unwrap().hash();
    let tomb = Tombstone {
        session_id: rec.id,
        user: rec.user.clone(),
        reason: EndReason::Regenerated,
        ended_at: Timestamp(T0 + MINUTE),
        keep_until: Timestamp(T0 + 61 * MINUTE),
    };
    let mut next = (*cur).clone();
    next.token_hash = new_hash;
    next.aal = 3;
    next.counters.clear(); // kept from the store regardless

    assert_eq!(
        s.rotate(next.clone(), 1, tomb.clone()).await.unwrap(),
        Update::Conflict(cur.clone())
    );
    // A hash in use (the current one, or another session's) is refused.
    let mut same = next.clone();
    same.token_hash = rec.token_hash;
    assert!(matches!(
        s.rotate(same, 2, tomb.clone()).await,
        Err(StoreError::Backend(_))
    ));
    let other = record(None, T0);
    created(s.create(other.clone(), None).await.unwrap());
    let mut clash = next.clone();
    clash.token_hash = other.token_hash;
    assert!(matches!(
        s.rotate(clash, 2, tomb.clone()).await,
        Err(StoreError::Backend(_))
    ));

    let Update::Updated(new) = s.rotate(next.clone(), 2, tomb.clone()).await.unwrap() else {
        panic!("not rotated")
    };
    let mut expect = next.clone();
    expect.version = 3;
    expect.counters = cur.counters.clone();
    assert_eq!(*new, expect);
    assert_eq!(
        s.load(&new_hash, None).await.unwrap(),
        Lookup::Found(Arc::new(expect.clone()))
    );
    assert_eq!(
        s.load(&rec.token_hash, None).await.unwrap(),
        Lookup::Ended(tomb.clone())
    );
    assert_eq!(s.get(&rec.id).await.unwrap().as_deref(), Some(&expect));
    // The old hash stays dead: it cannot be rotated back to, nor created.
    let mut back = expect.clone();
    back.token_hash = rec.token_hash;
    assert!(s.rotate(back, 3, tomb.clone()).await.is_err());

    s.end(&rec.id, ending(EndReason::LoggedOut, T0, false))
        .await
        .unwrap();
    assert_eq!(s.rotate(expect, 3, tomb).await.unwrap(), Update::Gone);
    assert_eq!(s.get(&rec.id).await.unwrap(), None);
}

async fn touch_extends_live_sessions_only(s: &dyn SessionStore) {
    let rec = record(None, T0);
    created(s.create(rec.clone(), None).await.unwrap());
    // Any time later, whatever the touch interval.
    let r = s.touch(&rec.id, Timestamp(T0 + 1)).await.unwrap().unwrap();
    assert_eq!(r.last_seen_at, Timestamp(T0 + 1));
    assert_eq!(r.version, rec.version);
    // Never backwards.
    let r = s.touch(&rec.id, Timestamp(T0)).await.unwrap().unwrap();
    assert_eq!(r.last_seen_at, Timestamp(T0 + 1));
    // Expired: nothing.
    assert_eq!(
        s.touch(&rec.id, Timestamp(T0 + 1 + 30 * MINUTE))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.touch(&SessionId([3; 16]), Timestamp(T0)).await.unwrap(),
        None
    );
    assert_eq!(
        s.get(&rec.id).await.unwrap().unwrap().last_seen_at,
        Timestamp(T0 + 1)
    );
}

async fn end_keeps_reason_and_restorable_data(s: &dyn SessionStore) {
    let alice = user("alice");
    let rec = record(Some("alice"), T0);
    created(s.create(rec.clone(), None).await.unwrap());
    let e = ending(EndReason::ExpiredIdle, T0 + 30 * MINUTE, true);
    assert_eq!(
        s.end(&rec.id, e).await.unwrap(),
        Some(Arc::new(rec.clone()))
    );
    assert_eq!(s.end(&rec.id, e).await.unwrap(), None);
    assert!(matches!(
        s.load(&rec.token_hash, None).await.unwrap(),
        Lookup::Ended(Tombstone {
            reason: EndReason::ExpiredIdle,
            ..
        })
    ));
    let now = Timestamp(T0 + 31 * MINUTE);
    let taken = s.take_restorable(&alice, now).await.unwrap().unwrap();
    assert_eq!(taken.session_id, rec.id);
    assert_eq!(taken.data, rec.data);
    assert_eq!(taken.keep_until, e.restore_until.unwrap());
    // Taken once.
    assert_eq!(s.take_restorable(&alice, now).await.unwrap(), None);

    // Past keep_until it is dropped, not returned.
    let rec2 = record(Some("alice"), T0);
    created(s.create(rec2.clone(), None).await.unwrap());
    s.end(&rec2.id, e).await.unwrap();
    assert_eq!(
        s.take_restorable(&alice, e.restore_until.unwrap())
            .await
            .unwrap(),
        None
    );
    assert_eq!(s.take_restorable(&alice, now).await.unwrap(), None);

    // Without restore_until, or without a user, nothing is kept.
    let rec3 = record(Some("alice"), T0);
    created(s.create(rec3.clone(), None).await.unwrap());
    s.end(&rec3.id, ending(EndReason::LoggedOut, T0, false))
        .await
        .unwrap();
    assert_eq!(s.take_restorable(&alice, now).await.unwrap(), None);
}

async fn end_user_ends_all_but_one(s: &dyn SessionStore) {
    let alice = user("alice");
    // Created in an order that differs from created_at order.
    let a = record(Some("alice"), T0 + 2);
    let b = record(Some("alice"), T0);
    let c = record(Some("alice"), T0 + 1);
    let bob = record(Some("bob"), T0);
    for r in [&a, &b, &c, &bob] {
        created(s.create(r.clone(), None).await.unwrap());
    }
    let e = ending(EndReason::RevokedByUser, T0 + MINUTE, false);
    let gone = s.end_user(&alice, Some(&b.id), e).await.unwrap();
    let ids: Vec<_> = gone.iter().map(|r| r.id).collect();
    assert_eq!(ids, vec![a.id, c.id]);
    assert_eq!(
        s.list_user(&alice, Timestamp(T0 + MINUTE))
            .await
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect::<Vec<_>>(),
        vec![b.id]
    );
    for r in [&a, &c] {
        assert!(matches!(
            s.load(&r.token_hash, None).await.unwrap(),
            Lookup::Ended(Tombstone {
                reason: EndReason::RevokedByUser,
                ..
            })
        ));
    }
    assert!(s.get(&bob.id).await.unwrap().is_some());
    let gone = s.end_user(&alice, None, e).await.unwrap();
    assert_eq!(gone.len(), 1);
    assert!(s.end_user(&alice, None, e).await.unwrap().is_empty());
}

async fn list_user_lists_live_sessions_oldest_first(s: &dyn SessionStore) {
    let alice = user("alice");
    let mut old = record(Some("alice"), T0 - 40 * MINUTE); // idle-expired at T0
    old.created_at = Timestamp(T0 - 40 * MINUTE);
    let x = record(Some("alice"), T0 + 5);
    let y = record(Some("alice"), T0 + 1);
    let mut z = record(Some("alice"), T0 + 1);
    // Same created_at as y: ordered by id.
    z.id = SessionId(if y.id.0[0] == 0xff {
        [0; 16]
    } else {
        [0xff; 16]
    });
    for r in [
        &old,
        &x,
        &y,
        &z,
        &record(None, T0),
        &record(Some("bob"), T0),
    ] {
        created(s.create(r.clone(), None).await.unwrap());
    }
    let mut expect = vec![y.id, z.id];
    expect.sort();
    expect.push(x.id);
    let got: Vec<_> = s
        .list_user(&alice, Timestamp(T0 + 10))
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(got, expect);
    assert!(
        s.list_user(&user("nobody"), Timestamp(T0))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn increment_counter_respects_limits(s: &dyn SessionStore) {
    let rec = record(None, T0);
    created(s.create(rec.clone(), None).await.unwrap());
    assert_eq!(
        s.increment_counter(&rec.id, "downloads", 3, Some(5))
            .await
            .unwrap(),
        Counter::Incremented(4)
    );
    assert_eq!(
        s.increment_counter(&rec.id, "downloads", 2, Some(5))
            .await
            .unwrap(),
        Counter::LimitExceeded(4)
    );
    assert_eq!(
        s.increment_counter(&rec.id, "bytes", 1000, None)
            .await
            .unwrap(),
        Counter::Incremented(1000)
    );
    assert_eq!(
        s.increment_counter(&rec.id, "bytes", u64::MAX, None)
            .await
            .unwrap(),
        Counter::Incremented(u64::MAX)
    );
    let cur = s.get(&rec.id).await.unwrap().unwrap();
    assert_eq!(cur.version, rec.version + 2 + 1);
    assert_eq!(cur.counters.get("downloads"), Some(&4));
    assert_eq!(cur.counters.get("bytes"), Some(&u64::MAX));
    assert_eq!(cur.data, rec.data);
    assert_eq!(
        s.increment_counter(&SessionId([1; 16]), "downloads", 1, None)
            .await
            .unwrap(),
        Counter::Gone
    );
}

async fn create_with_limit_rejects_or_evicts(s: &dyn SessionStore) {
    let alice = user("alice");
    let first = record(Some("alice"), T0);
    let second = record(Some("alice"), T0 + 1);
    created(
        s.create(first.clone(), limit(2, LimitMode::RejectNew, T0))
            .await
            .unwrap(),
    );
    created(
        s.create(second.clone(), limit(2, LimitMode::RejectNew, T0))
            .await
            .unwrap(),
    );
    assert_eq!(
        s.create(
            record(Some("alice"), T0 + 2),
            limit(2, LimitMode::RejectNew, T0 + 2)
        )
        .await
        .unwrap(),
        Create::LimitReached { active: 2 }
    );
    // Anonymous sessions have no limit.
    created(
        s.create(record(None, T0), limit(1, LimitMode::RejectNew, T0))
            .await
            .unwrap(),
    );
    // Evict: the oldest goes, with its reason.
    let third = record(Some("alice"), T0 + 2);
    let evicted = created(
        s.create(third.clone(), limit(2, LimitMode::EvictOldest, T0 + 2))
            .await
            .unwrap(),
    );
    assert_eq!(evicted, vec![Arc::new(first.clone())]);
    assert!(matches!(
        s.load(&first.token_hash, None).await.unwrap(),
        Lookup::Ended(Tombstone {
            reason: EndReason::EvictedByLimit,
            ..
        })
    ));
    // A lowered limit evicts several, oldest first; max 0 counts as 1.
    let fourth = record(Some("alice"), T0 + 3);
    let evicted = created(
        s.create(fourth.clone(), limit(0, LimitMode::EvictOldest, T0 + 3))
            .await
            .unwrap(),
    );
    assert_eq!(
        evicted.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![second.id, third.id]
    );
    // Expired sessions do not count.
    let later = T0 + 3 + 30 * MINUTE;
    created(
        s.create(
            record(Some("alice"), later),
            limit(1, LimitMode::RejectNew, later),
        )
        .await
        .unwrap(),
    );
    assert_eq!(
        s.list_user(&alice, Timestamp(later)).await.unwrap().len(),
        1
    );
}

async fn sweep_ends_expired_sessions_and_forgets_old_reasons(s: &dyn SessionStore) {
    let alice = user("alice");
    let idle = record(Some("alice"), T0); // idle-expires at T0 + 30 min
    let mut absolute = record(None, T0); // absolute-expires at T0 + 10 min
    absolute.absolute_expires_at = Timestamp(T0 + 10 * MINUTE);
    let live = record(Some("bob"), T0 + 20 * MINUTE);
    for r in [&idle, &absolute, &live] {
        created(s.create(r.clone(), None).await.unwrap());
    }
    let spec = |now| SweepSpec {
        now: Timestamp(now),
        reason_ttl_ms: 60 * MINUTE,
        restore_ttl_ms: 15 * MINUTE,
    };
    assert!(s.sweep(spec(T0 + 40 * MINUTE), 0).await.unwrap().is_empty());
    let one = s.sweep(spec(T0 + 40 * MINUTE), 1).await.unwrap();
    assert_eq!(one.len(), 1);
    let mut ended = one;
    ended.extend(s.sweep(spec(T0 + 40 * MINUTE), 10).await.unwrap());
    ended.sort_by_key(|e| e.record.created_at);
    let mut got: Vec<_> = ended.iter().map(|e| (e.record.id, e.reason)).collect();
    got.sort();
    let mut expect = vec![
        (idle.id, EndReason::ExpiredIdle),
        (absolute.id, EndReason::ExpiredAbsolute),
    ];
    expect.sort();
    assert_eq!(got, expect);
    assert!(s.get(&live.id).await.unwrap().is_some());

    // Tombstones: ended at the expiry, kept reason_ttl after it.
    let Lookup::Ended(t) = s.load(&idle.token_hash, None).await.unwrap() else {
        panic!("no tombstone")
    };
    assert_eq!(t.ended_at, Timestamp(T0 + 30 * MINUTE));
    assert_eq!(t.keep_until, Timestamp(T0 + 90 * MINUTE));
    // The user's data is restorable until expiry + restore_ttl.
    // A later sweep forgets what is past its keep_until.
    assert!(
        s.sweep(spec(T0 + 45 * MINUTE), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.take_restorable(&alice, Timestamp(T0 + 44 * MINUTE))
            .await
            .unwrap()
            .is_none(),
        "the sweep at T0+45 forgot data kept until T0+45"
    );
    assert!(matches!(
        s.load(&idle.token_hash, None).await.unwrap(),
        Lookup::Ended(_)
    ));
    s.sweep(spec(T0 + 90 * MINUTE), 10).await.unwrap();
    assert_eq!(
        s.load(&idle.token_hash, None).await.unwrap(),
        Lookup::Missing
    );
    assert_eq!(
        s.load(&absolute.token_hash, None).await.unwrap(),
        Lookup::Missing
    );
}

async fn user_data_is_compare_and_set(s: &dyn SessionStore) {
    let alice = user("alice");
    assert_eq!(s.user_data(&alice).await.unwrap(), None);
    assert_eq!(
        s.set_user_data(&alice, 3, sealed(b"x")).await.unwrap(),
        Err(None)
    );
    let v1 = UserData {
        version: 1,
        data: sealed(b"theme=dark"),
    };
    assert_eq!(
        s.set_user_data(&alice, 0, sealed(b"theme=dark"))
            .await
            .unwrap(),
        Ok(v1.clone())
    );
    assert_eq!(
        s.set_user_data(&alice, 0, sealed(b"lost")).await.unwrap(),
        Err(Some(v1.clone()))
    );
    assert_eq!(s.user_data(&alice).await.unwrap(), Some(v1));
    let v2 = s
        .set_user_data(&alice, 1, sealed(b"theme=light"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(s.user_data(&alice).await.unwrap(), Some(v2));
    assert_eq!(s.user_data(&user("bob")).await.unwrap(), None);
}
