//! What only a database file shows: durability across close and reopen, WAL
//! mode, damaged files and columns, and races between the writer and readers.

// Test code: a panic is how a check reports a failure (helpers outside
// `#[test]` functions are not covered by clippy.toml's test allowance).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use common::{
    MINUTE, T0, TempDir, cached_store, cached_store_flushing_every, file_store, record, sealed,
    user,
};
use sessionary_core::record::{EndReason, Tombstone};
use sessionary_core::store::{Create, Ending, Lookup, SessionLimit, Touch, Update};
use sessionary_core::{LimitMode, SessionStore, SessionToken, StoreError, Timestamp};
use sessionary_sql::{SqlStore, SqliteOptions};
use sqlx::Connection as _;

fn ending(reason: EndReason, at: i64, restore: bool) -> Ending {
    Ending {
        reason,
        at: Timestamp(at),
        reason_until: Timestamp(at + 60 * MINUTE),
        restore_until: restore.then_some(Timestamp(at + 60 * MINUTE)),
    }
}

/// A raw connection to the same file, to look at or damage what the store wrote.
async fn raw(dir: &TempDir) -> sqlx::SqliteConnection {
    sqlx::SqliteConnection::connect(&format!("sqlite://{}", dir.db().display()))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_close_and_reopen() {
    let dir = TempDir::new();
    let alice = user("alice");
    let kept = record(Some("alice"), T0);
    let anon = record(None, T0);
    let ended = record(Some("alice"), T0);
    let rotated = record(Some("alice"), T0);
    let new_hash = SessionToken::generate().unwrap().hash();
    let tomb = Tombstone {
        session_id: rotated.id,
        user: Some(alice.clone()),
        reason: EndReason::Regenerated,
        ended_at: Timestamp(T0),
        keep_until: Timestamp(T0 + 60 * MINUTE),
    };
    let rotated_now = {
        let store = SqlStore::open_sqlite(dir.db()).await.unwrap();
        for r in [&kept, &anon, &ended, &rotated] {
            assert!(matches!(
                store.create(r.clone(), None).await.unwrap(),
                Create::Created { .. }
            ));
        }
        store
            .end(&ended.id, ending(EndReason::ExpiredIdle, T0, true))
            .await
            .unwrap()
            .unwrap();
        let mut next = rotated.clone();
        next.token_hash = new_hash;
        let Update::Updated(r) = store.rotate(next, 1, tomb.clone()).await.unwrap() else {
            panic!("not rotated")
        };
        store
            .set_user_data(&alice, 0, sealed(b"theme=dark"))
            .await
            .unwrap()
            .unwrap();
        store.close().await;
        assert!(matches!(
            store.get(&kept.id).await,
            Err(StoreError::Unavailable(_))
        ));
        r
    };

    // Migrations run again on an up-to-date file without harm.
    let store = SqlStore::open_sqlite(dir.db()).await.unwrap();
    assert_eq!(
        store.load(&kept.token_hash, None).await.unwrap(),
        Lookup::Found(Arc::new(kept.clone()))
    );
    assert_eq!(store.get(&anon.id).await.unwrap(), Some(Arc::new(anon)));
    assert_eq!(store.get(&rotated.id).await.unwrap(), Some(rotated_now));
    assert_eq!(
        store.load(&rotated.token_hash, None).await.unwrap(),
        Lookup::Ended(tomb)
    );
    assert!(matches!(
        store.load(&ended.token_hash, None).await.unwrap(),
        Lookup::Ended(Tombstone {
            reason: EndReason::ExpiredIdle,
            ..
        })
    ));
    let restorable = store
        .take_restorable(&alice, Timestamp(T0 + 1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(restorable.data, ended.data);
    assert_eq!(store.user_data(&alice).await.unwrap().unwrap().version, 1);
    store.close().await;
}

#[tokio::test]
async fn opens_in_wal_mode_and_creates_folders() {
    let dir = TempDir::new();
    let path = dir.path().join("a").join("b").join("sessions.db");
    let store = SqlStore::open_sqlite(&path).await.unwrap();
    assert!(path.exists());
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    // The hot path is one indexed lookup.
    let plan: Vec<(i64, i64, i64, String)> =
        sqlx::query_as("EXPLAIN QUERY PLAN SELECT data FROM sessions WHERE token_hash = x'00'")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert!(plan[0].3.contains("USING INDEX"), "{plan:?}");
    let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(
        "EXPLAIN QUERY PLAN SELECT id FROM sessions WHERE user_id = 'a' AND expires_at > 0 \
         ORDER BY created_at, id",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(plan[0].3.contains("sessions_by_user"), "{plan:?}");
    store.close().await;
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_corrupt() {
    let dir = TempDir::new();
    std::fs::create_dir_all(dir.path()).unwrap();
    std::fs::write(dir.db(), vec![0x5a; 8192]).unwrap();
    let err = SqlStore::open_sqlite(dir.db()).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
}

#[tokio::test]
async fn an_unreachable_path_is_unavailable() {
    let dir = TempDir::new();
    std::fs::create_dir_all(dir.path()).unwrap();
    // A folder where the parent of the file should be is a plain file.
    std::fs::write(dir.path().join("file"), b"x").unwrap();
    let err = SqlStore::open_sqlite(dir.path().join("file").join("sessions.db"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn damaged_columns_are_corrupt_with_their_name() {
    let (store, dir) = file_store().await;
    let mut conn = raw(&dir).await;
    let mut checked = 0;
    for (i, damage) in [
        "UPDATE sessions SET roles = 'not json' WHERE id = ?1",
        "UPDATE sessions SET counters = '{\"x\": -1}' WHERE id = ?1",
        "UPDATE sessions SET csrf_secret = x'00' WHERE id = ?1",
        "UPDATE sessions SET aal = 999 WHERE id = ?1",
        "UPDATE sessions SET version = -1 WHERE id = ?1",
        "UPDATE sessions SET device_ip = 'not an ip' WHERE id = ?1",
        "UPDATE sessions SET user_id = '' WHERE id = ?1",
        "UPDATE sessions SET id = x'0102' WHERE id = ?1",
        "UPDATE sessions SET data = 'text, not a blob' WHERE id = ?1",
    ]
    .into_iter()
    .enumerate()
    {
        let rec = record(Some("alice"), T0);
        store.create(rec.clone(), None).await.unwrap();
        let res = sqlx::query(damage)
            .bind(rec.id.as_bytes().as_slice())
            .execute(&mut conn)
            .await;
        if res.is_err() {
            // STRICT tables refuse some damage outright: nothing to read back.
            continue;
        }
        let err = store.load(&rec.token_hash, None).await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "case {i}: {err:?}");
        assert!(err.source().is_some(), "case {i}: the cause is kept");
        checked += 1;
        sqlx::query("DELETE FROM sessions WHERE token_hash = ?1")
            .bind(rec.token_hash.as_bytes().as_slice())
            .execute(&mut conn)
            .await
            .unwrap();
    }
    assert_eq!(
        checked, 8,
        "only the text-into-blob damage is refused by STRICT"
    );
    // A tombstone with an unknown reason.
    let rec = record(None, T0);
    store.create(rec.clone(), None).await.unwrap();
    store
        .end(&rec.id, ending(EndReason::LoggedOut, T0, false))
        .await
        .unwrap();
    sqlx::query("UPDATE tombstones SET reason = 'bored'")
        .execute(&mut conn)
        .await
        .unwrap();
    let err = store.load(&rec.token_hash, None).await.unwrap_err();
    let src = err
        .source()
        .unwrap()
        .downcast_ref::<sessionary_sql::Error>();
    assert!(
        matches!(
            src,
            Some(sessionary_sql::Error::InvalidColumn {
                column: "tombstones.reason",
                ..
            })
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn rotation_to_a_used_hash_names_the_cause() {
    let (store, _dir) = file_store().await;
    let a = record(None, T0);
    let b = record(None, T0);
    store.create(a.clone(), None).await.unwrap();
    store.create(b.clone(), None).await.unwrap();
    let mut next = a.clone();
    next.token_hash = b.token_hash;
    let tomb = Tombstone {
        session_id: a.id,
        user: None,
        reason: EndReason::Regenerated,
        ended_at: Timestamp(T0),
        keep_until: Timestamp(T0 + MINUTE),
    };
    let err = store.rotate(next, 1, tomb).await.unwrap_err();
    assert!(matches!(err, StoreError::Backend(_)));
    assert!(matches!(
        err.source()
            .unwrap()
            .downcast_ref::<sessionary_sql::Error>(),
        Some(sessionary_sql::Error::TokenHashInUse)
    ));
    // Nothing changed.
    assert_eq!(store.get(&a.id).await.unwrap(), Some(Arc::new(a)));
}

/// Readers on their own connections see every write that returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_see_returned_writes() {
    let (store, _dir) = file_store().await;
    let rec = record(Some("alice"), T0);
    store.create(rec.clone(), None).await.unwrap();
    let mut cur = rec;
    for i in 0..200u64 {
        let mut next = cur.clone();
        next.data = sealed(&i.to_be_bytes());
        let Update::Updated(r) = store.update(next, cur.version).await.unwrap() else {
            panic!("conflict without a concurrent writer")
        };
        let Lookup::Found(seen) = store.load(&r.token_hash, None).await.unwrap() else {
            panic!("lost")
        };
        assert_eq!(seen, r);
        cur = (*r).clone();
    }
}

/// Touching loads racing compare-and-set updates lose no update and never
/// bump the version.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn touches_never_lose_updates() {
    for cached in [false, true] {
        let (store, dir) = if cached {
            cached_store().await
        } else {
            file_store().await
        };
        touches_never_lose_updates_on(Arc::new(store)).await;
        drop(dir);
    }
}

async fn touches_never_lose_updates_on(store: Arc<dyn SessionStore>) {
    let mut rec = record(Some("alice"), T0);
    rec.touch_interval_ms = 0;
    rec.data = sealed(&[]);
    store.create(rec.clone(), None).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..50u8 {
        let s = Arc::clone(&store);
        let (id, hash) = (rec.id, rec.token_hash);
        tasks.push(tokio::spawn(async move {
            loop {
                let cur = s.get(&id).await.unwrap().unwrap();
                let mut next = (*cur).clone();
                let mut data = cur.data.as_bytes().to_vec();
                data.push(i);
                next.data = sealed(&data);
                match s.update(next, cur.version).await.unwrap() {
                    Update::Updated(_) => break,
                    Update::Conflict(_) => {}
                    Update::Gone => panic!("gone"),
                }
            }
        }));
        let s = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let now = Timestamp(T0 + 1 + i64::from(i));
            let Lookup::Found(r) = s.load(&hash, Some(Touch { now })).await.unwrap() else {
                panic!("lost")
            };
            assert!(r.last_seen_at >= now);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let end = store.get(&rec.id).await.unwrap().unwrap();
    assert_eq!(end.version, rec.version + 50);
    let got: BTreeSet<u8> = end.data.as_bytes().iter().copied().collect();
    assert_eq!(got, (0..50).collect());
    assert_eq!(end.data.as_bytes().len(), 50);
    assert_eq!(end.last_seen_at, Timestamp(T0 + 50));
}

/// Parallel sign-ins with a limit of one leave exactly one session, whichever mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_creates_respect_a_limit_of_one() {
    for (mode, cached) in [
        (LimitMode::RejectNew, false),
        (LimitMode::EvictOldest, false),
        (LimitMode::RejectNew, true),
        (LimitMode::EvictOldest, true),
    ] {
        let (store, _dir) = if cached {
            cached_store().await
        } else {
            file_store().await
        };
        let store: Arc<dyn SessionStore> = Arc::new(store);
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let s = Arc::clone(&store);
                tokio::spawn(async move {
                    let limit = SessionLimit {
                        max: 1,
                        mode,
                        now: Timestamp(T0 + i),
                        evict: ending(EndReason::EvictedByLimit, T0 + i, false),
                    };
                    s.create(record(Some("alice"), T0 + i), Some(limit))
                        .await
                        .unwrap()
                })
            })
            .collect();
        let (mut created, mut rejected, mut evicted) = (0, 0, 0);
        for t in tasks {
            match t.await.unwrap() {
                Create::Created { evicted: e } => {
                    created += 1;
                    evicted += e.len();
                }
                Create::LimitReached { active } => {
                    assert_eq!(active, 1);
                    rejected += 1;
                }
                Create::Duplicate => panic!("duplicate"),
            }
        }
        let live = store
            .list_user(&user("alice"), Timestamp(T0 + 50))
            .await
            .unwrap();
        assert_eq!(live.len(), 1, "{mode:?}");
        match mode {
            LimitMode::RejectNew => assert_eq!((created, rejected), (1, 49)),
            LimitMode::EvictOldest => assert_eq!((created, evicted), (50, 49)),
        }
    }
}

/// Readers never see a session go back in time while writers change it: once a
/// task saw version n (by token or by id), it never sees less.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_never_see_older_versions() {
    for cached in [false, true] {
        let (store, _dir) = if cached {
            cached_store().await
        } else {
            file_store().await
        };
        let store: Arc<dyn SessionStore> = Arc::new(store);
        let rec = record(Some("alice"), T0);
        store.create(rec.clone(), None).await.unwrap();
        let mut tasks = Vec::new();
        for w in 0..4u8 {
            let s = Arc::clone(&store);
            let id = rec.id;
            tasks.push(tokio::spawn(async move {
                for i in 0..25u8 {
                    if (i + w) % 5 == 0 {
                        s.increment_counter(&id, "n", 1, None).await.unwrap();
                        continue;
                    }
                    loop {
                        let cur = s.get(&id).await.unwrap().unwrap();
                        let mut next = (*cur).clone();
                        next.data = sealed(&[w, i]);
                        if let Update::Updated(_) = s.update(next, cur.version).await.unwrap() {
                            break;
                        }
                    }
                }
            }));
        }
        for _ in 0..4 {
            let s = Arc::clone(&store);
            let (id, hash) = (rec.id, rec.token_hash);
            tasks.push(tokio::spawn(async move {
                let mut seen = 0;
                for i in 0..200 {
                    let v = if i % 2 == 0 {
                        let Lookup::Found(r) = s.load(&hash, None).await.unwrap() else {
                            panic!("lost")
                        };
                        r.version
                    } else {
                        s.get(&id).await.unwrap().unwrap().version
                    };
                    assert!(v >= seen, "saw version {v} after {seen} (cached: {cached})");
                    seen = v;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let end = store.get(&rec.id).await.unwrap().unwrap();
        assert_eq!(end.version, rec.version + 100);
        assert_eq!(end.counters.get("n"), Some(&20));
    }
}

/// With the exclusive cache, the file is this store's alone while it is open,
/// and free again once it is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exclusive_cache_owns_the_file() {
    let (store, dir) = cached_store().await;
    let rec = record(Some("alice"), T0);
    store.create(rec.clone(), None).await.unwrap();

    let other = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.db())
        .busy_timeout(std::time::Duration::from_millis(50));
    let mut conn = sqlx::SqliteConnection::connect_with(&other).await.unwrap();
    let res = sqlx::query("SELECT count(*) FROM sessions")
        .fetch_one(&mut conn)
        .await;
    let err = res.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        err.contains("locked"),
        "another connection read the file: {err}"
    );
    drop(conn);

    // Served from the cache, and still right after a reopen.
    assert_eq!(
        store.load(&rec.token_hash, None).await.unwrap(),
        Lookup::Found(Arc::new(rec.clone()))
    );
    assert!(
        format!("{store:?}").contains("cached: Some(1)"),
        "{store:?}"
    );
    store.close().await;
    assert!(matches!(
        store.load(&rec.token_hash, None).await,
        Err(StoreError::Unavailable(_))
    ));
    let store =
        SqlStore::open_sqlite_with(dir.db(), SqliteOptions::new().with_exclusive_cache(true))
            .await
            .unwrap();
    assert_eq!(
        store.get(&rec.id).await.unwrap(),
        Some(Arc::new(rec.clone()))
    );
    store.close().await;
    // And a plain store can open it afterwards.
    let store = SqlStore::open_sqlite(dir.db()).await.unwrap();
    assert_eq!(
        store.load(&rec.token_hash, None).await.unwrap(),
        Lookup::Found(Arc::new(rec))
    );
}

/// Operations abandoned half-way (a client gone, a timeout) leave the store
/// working and, with the cache, the cache equal to the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelled_operations_leave_a_consistent_store() {
    // (cached, touches flushed every millisecond: flushes get cancelled too)
    for (cached, flush_often) in [(false, false), (true, false), (true, true)] {
        let (store, dir) = match (cached, flush_often) {
            (false, _) => file_store().await,
            (true, false) => cached_store().await,
            (true, true) => cached_store_flushing_every(Duration::from_millis(1)).await,
        };
        let rec = record(Some("alice"), T0);
        store.create(rec.clone(), None).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..200u16 {
            let s = store.clone();
            let (id, hash) = (rec.id, rec.token_hash);
            tasks.push(tokio::spawn(async move {
                match i % 4 {
                    0 => {
                        let cur = s.get(&id).await.unwrap().unwrap();
                        let mut next = (*cur).clone();
                        next.data = sealed(&i.to_be_bytes());
                        s.update(next, cur.version).await.unwrap();
                    }
                    1 => {
                        s.increment_counter(&id, "n", 1, None).await.unwrap();
                    }
                    2 => {
                        let now = Timestamp(T0 + MINUTE * i64::from(i % 20));
                        s.load(&hash, Some(Touch { now })).await.unwrap();
                    }
                    _ => {
                        s.touch(&id, Timestamp(T0 + i64::from(i))).await.unwrap();
                    }
                }
            }));
        }
        // Abort about half of them wherever they are.
        for (i, t) in tasks.iter().enumerate() {
            if i % 2 == 0 {
                tokio::task::yield_now().await;
                t.abort();
            }
        }
        for t in tasks {
            let _ = t.await;
        }
        // The answers match the file...
        let cur = store.get(&rec.id).await.unwrap().unwrap();
        let Lookup::Found(seen) = store.load(&rec.token_hash, None).await.unwrap() else {
            panic!("lost")
        };
        assert_eq!(seen, cur);
        store.close().await;
        let store = if cached {
            SqlStore::open_sqlite_with(dir.db(), SqliteOptions::new().with_exclusive_cache(true))
                .await
                .unwrap()
        } else {
            SqlStore::open_sqlite(dir.db()).await.unwrap()
        };
        assert_eq!(
            store.get(&rec.id).await.unwrap(),
            Some(cur.clone()),
            "cached: {cached}"
        );
        // ...and it still works.
        let mut next = (*cur).clone();
        next.data = sealed(b"after");
        let Update::Updated(last) = store.update(next, cur.version).await.unwrap() else {
            panic!("conflict with nothing running")
        };
        let Lookup::Found(seen) = store.load(&rec.token_hash, None).await.unwrap() else {
            panic!("lost")
        };
        assert_eq!(seen, last);
        store.close().await;
        // What the store answered is what the file holds.
        let plain = SqlStore::open_sqlite(dir.db()).await.unwrap();
        assert_eq!(
            plain.get(&rec.id).await.unwrap(),
            Some(last),
            "cached: {cached}"
        );
        plain.close().await;
    }
}
