//! Touches written behind with the exclusive cache: seen at once by this store,
//! in the file only after a flush, and never lost or misapplied by the other
//! operations meanwhile. Time is injected (record timestamps and explicit
//! `flush_touches` calls); the flush task runs with an interval of an hour, so
//! nothing here waits for it except where it is the subject.

// Test code: a panic is how a check reports a failure (helpers outside
// `#[test]` functions are not covered by clippy.toml's test allowance).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{MINUTE, T0, TempDir, file_store, record, sealed, user};
use sessionary_core::record::{EndReason, Tombstone};
use sessionary_core::store::{Create, Ending, Lookup, SessionLimit, SweepSpec, Touch, Update};
use sessionary_core::{
    LimitMode, SessionId, SessionRecord, SessionStore, SessionToken, Timestamp, TokenHash,
};
use sessionary_sql::{SqlStore, SqliteOptions};
use sqlx::Connection as _;

const IDLE: i64 = 30 * MINUTE;

/// A write-behind store whose flush task stays out of the way.
async fn open(dir: &TempDir) -> SqlStore {
    let options = SqliteOptions::new()
        .with_exclusive_cache(true)
        .with_touch_flush_interval(Duration::from_secs(3600));
    SqlStore::open_sqlite_with(dir.db(), options).await.unwrap()
}

fn pending(store: &SqlStore) -> String {
    let dbg = format!("{store:?}");
    let at = dbg.find("pending_touches: ").unwrap();
    dbg[at..].split([',', ' ', '}']).nth(1).unwrap().to_owned()
}

async fn touch(store: &SqlStore, hash: &TokenHash, at: i64) -> Arc<SessionRecord> {
    let now = Timestamp(at);
    match store.load(hash, Some(Touch { now })).await.unwrap() {
        Lookup::Found(r) => r,
        other => panic!("not found: {other:?}"),
    }
}

/// `(last_seen_at, expires_at)` of a session row, read with a plain connection
/// (the store on `path` must be closed, or `path` a copy).
async fn row(path: &Path, id: &SessionId) -> Option<(i64, i64)> {
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let row = sqlx::query_as("SELECT last_seen_at, expires_at FROM sessions WHERE id = ?1")
        .bind(id.as_bytes().as_slice())
        .fetch_optional(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    row
}

/// The database file and its WAL as they are on disk now, copied: what a
/// restart after a crash (or a kill) at this point would find.
fn crash_copy(dir: &TempDir) -> TempDir {
    let copy = TempDir::new();
    std::fs::create_dir_all(copy.path()).unwrap();
    for suffix in ["", "-wal"] {
        let from = format!("{}{suffix}", dir.db().display());
        if Path::new(&from).exists() {
            std::fs::copy(&from, format!("{}{suffix}", copy.db().display())).unwrap();
        }
    }
    copy
}

fn ending(reason: EndReason, at: i64) -> Ending {
    Ending {
        reason,
        at: Timestamp(at),
        reason_until: Timestamp(at + 60 * MINUTE),
        restore_until: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_touch_is_seen_at_once_and_reaches_the_file_with_the_flush() {
    let dir = TempDir::new();
    let store = open(&dir).await;
    let rec = record(Some("alice"), T0);
    store.create(rec.clone(), None).await.unwrap();

    let touched = touch(&store, &rec.token_hash, T0 + 2 * MINUTE).await;
    assert_eq!(touched.last_seen_at, Timestamp(T0 + 2 * MINUTE));
    assert_eq!(touched.version, rec.version, "a touch bumps no version");
    // The next operations see it, before any flush.
    assert_eq!(
        store.load(&rec.token_hash, None).await.unwrap(),
        Lookup::Found(Arc::clone(&touched))
    );
    // Not due again a minute later: nothing new recorded.
    assert_eq!(
        touch(&store, &rec.token_hash, T0 + 2 * MINUTE + 30_000).await,
        touched
    );
    assert_eq!(
        store.get(&rec.id).await.unwrap(),
        Some(Arc::clone(&touched))
    );
    // Alive past the old idle deadline only thanks to the pending touch.
    let live = store
        .list_user(&user("alice"), Timestamp(T0 + IDLE + MINUTE))
        .await
        .unwrap();
    assert_eq!(live, vec![Arc::clone(&touched)]);
    assert_eq!(pending(&store), "Some(1)");

    // Not in the file yet: a crash now would bring back the older
    // `last_seen_at`, so the session would expire earlier, never later.
    let before = crash_copy(&dir);
    assert_eq!(row(&before.db(), &rec.id).await, Some((T0, T0 + IDLE)));

    assert_eq!(store.flush_touches().await.unwrap(), 1);
    assert_eq!(store.flush_touches().await.unwrap(), 0);
    assert_eq!(pending(&store), "Some(0)");
    let after = crash_copy(&dir);
    assert_eq!(
        row(&after.db(), &rec.id).await,
        Some((T0 + 2 * MINUTE, T0 + 2 * MINUTE + IDLE))
    );

    // And a reopened store, of either kind, agrees.
    store.close().await;
    let plain = SqlStore::open_sqlite(dir.db()).await.unwrap();
    assert_eq!(plain.get(&rec.id).await.unwrap(), Some(touched));
    plain.close().await;
}

/// More touches than one flush transaction takes (1024).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_flush_writes_every_touch() {
    let dir = TempDir::new();
    let store = open(&dir).await;
    let mut recs = Vec::new();
    for _ in 0..1100 {
        let rec = record(None, T0);
        store.create(rec.clone(), None).await.unwrap();
        recs.push(rec);
    }
    for rec in &recs {
        touch(&store, &rec.token_hash, T0 + 5 * MINUTE).await;
    }
    assert_eq!(pending(&store), "Some(1100)");
    assert_eq!(store.flush_touches().await.unwrap(), 1100);
    store.close().await;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", dir.db().display()))
        .await
        .unwrap();
    let touched: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions WHERE last_seen_at = ?1")
        .bind(T0 + 5 * MINUTE)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(touched, 1100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flush_never_goes_past_the_absolute_expiry() {
    let dir = TempDir::new();
    let store = open(&dir).await;
    let mut rec = record(None, T0);
    rec.absolute_expires_at = Timestamp(T0 + 10 * MINUTE);
    store.create(rec.clone(), None).await.unwrap();
    touch(&store, &rec.token_hash, T0 + 5 * MINUTE).await;
    assert_eq!(store.flush_touches().await.unwrap(), 1);
    store.close().await;
    assert_eq!(
        row(&dir.db(), &rec.id).await,
        Some((T0 + 5 * MINUTE, T0 + 10 * MINUTE))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_writes_pending_touches() {
    let dir = TempDir::new();
    let store = open(&dir).await;
    let rec = record(None, T0);
    store.create(rec.clone(), None).await.unwrap();
    touch(&store, &rec.token_hash, T0 + 5 * MINUTE).await;
    store.close().await;
    assert!(store.load(&rec.token_hash, None).await.is_err(), "closed");
    assert_eq!(
        row(&dir.db(), &rec.id).await,
        Some((T0 + 5 * MINUTE, T0 + 5 * MINUTE + IDLE))
    );
}

/// Best effort, while the runtime runs: the flush task writes and closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_store_writes_pending_touches() {
    let dir = TempDir::new();
    let store = open(&dir).await;
    let rec = record(None, T0);
    store.create(rec.clone(), None).await.unwrap();
    touch(&store, &rec.token_hash, T0 + 5 * MINUTE).await;
    drop(store);
    // Waits (busy timeout) until the flush task has closed the file.
    let plain = SqlStore::open_sqlite(dir.db()).await.unwrap();
    assert_eq!(
        plain.get(&rec.id).await.unwrap().unwrap().last_seen_at,
        Timestamp(T0 + 5 * MINUTE)
    );
    plain.close().await;
}

/// The one test that lets the flush task run on its own (every 10 ms).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flush_task_writes_touches_by_itself() {
    let dir = TempDir::new();
    let options = SqliteOptions::new()
        .with_exclusive_cache(true)
        .with_touch_flush_interval(Duration::from_millis(10));
    let store = SqlStore::open_sqlite_with(dir.db(), options).await.unwrap();
    let rec = record(None, T0);
    store.create(rec.clone(), None).await.unwrap();
    touch(&store, &rec.token_hash, T0 + 5 * MINUTE).await;
    // Watch the file (the pending count drops as a flush starts, not as it
    // commits).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let copy = crash_copy(&dir);
        if row(&copy.db(), &rec.id).await == Some((T0 + 5 * MINUTE, T0 + 5 * MINUTE + IDLE)) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never flushed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(pending(&store), "Some(0)");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_never_ends_a_session_kept_alive_by_a_pending_touch() {
    let dir = TempDir::new();
    let store = open(&dir).await;
    let kept = record(Some("alice"), T0);
    let idle = record(Some("bob"), T0);
    store.create(kept.clone(), None).await.unwrap();
    store.create(idle.clone(), None).await.unwrap();
    let touched = touch(&store, &kept.token_hash, T0 + 20 * MINUTE).await;

    // Past both sessions' idle deadline as the file has it, before `kept`'s
    // as the pending touch has it.
    let spec = SweepSpec {
        now: Timestamp(T0 + 40 * MINUTE),
        reason_ttl_ms: 60 * MINUTE,
        restore_ttl_ms: 0,
    };
    let ended = store.sweep(spec, 100).await.unwrap();
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].record.id, idle.id);
    assert_eq!(ended[0].reason, EndReason::ExpiredIdle);
    assert_eq!(store.get(&kept.id).await.unwrap(), Some(touched));
    assert!(matches!(
        store.load(&idle.token_hash, None).await.unwrap(),
        Lookup::Ended(Tombstone {
            reason: EndReason::ExpiredIdle,
            ..
        })
    ));
    // The sweep wrote the touch, in its own transaction.
    assert_eq!(pending(&store), "Some(0)");
    let copy = crash_copy(&dir);
    assert_eq!(
        row(&copy.db(), &kept.id).await,
        Some((T0 + 20 * MINUTE, T0 + 20 * MINUTE + IDLE))
    );
    assert_eq!(row(&copy.db(), &idle.id).await, None);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_drops_the_pending_touch_and_the_flush_changes_nothing() {
    let dir = TempDir::new();
    let store = open(&dir).await;
    let rec = record(Some("alice"), T0);
    let other = record(Some("alice"), T0);
    store.create(rec.clone(), None).await.unwrap();
    store.create(other.clone(), None).await.unwrap();
    touch(&store, &rec.token_hash, T0 + 2 * MINUTE).await;
    touch(&store, &other.token_hash, T0 + 2 * MINUTE).await;

    // The ended record is returned as it stood, touch included.
    let gone = store
        .end(&rec.id, ending(EndReason::LoggedOut, T0 + 3 * MINUTE))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(gone.last_seen_at, Timestamp(T0 + 2 * MINUTE));
    let gone = store
        .end_user(
            &user("alice"),
            None,
            ending(EndReason::RevokedByAdmin, T0 + 3 * MINUTE),
        )
        .await
        .unwrap();
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].last_seen_at, Timestamp(T0 + 2 * MINUTE));
    assert_eq!(pending(&store), "Some(0)");

    // The id of an ended session may be used again; the old touch (later
    // than the new session's activity) must not land on it.
    let mut reuse = record(Some("alice"), T0 + MINUTE);
    reuse.id = rec.id;
    store.create(reuse.clone(), None).await.unwrap();
    assert_eq!(store.flush_touches().await.unwrap(), 0);
    assert_eq!(
        store.get(&rec.id).await.unwrap(),
        Some(Arc::new(reuse.clone()))
    );
    let tomb = Tombstone {
        session_id: rec.id,
        user: rec.user.clone(),
        reason: EndReason::LoggedOut,
        ended_at: Timestamp(T0 + 3 * MINUTE),
        keep_until: Timestamp(T0 + 63 * MINUTE),
    };
    assert_eq!(
        store.load(&rec.token_hash, None).await.unwrap(),
        Lookup::Ended(tomb.clone())
    );
    store.close().await;

    assert_eq!(
        row(&dir.db(), &rec.id).await,
        Some((T0 + MINUTE, T0 + MINUTE + IDLE))
    );
    assert_eq!(row(&dir.db(), &other.id).await, None);
    let plain = SqlStore::open_sqlite(dir.db()).await.unwrap();
    assert_eq!(
        plain.load(&rec.token_hash, None).await.unwrap(),
        Lookup::Ended(tomb)
    );
    assert_eq!(plain.get(&other.id).await.unwrap(), None);
    plain.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_racing_a_pending_touch_keep_the_later_last_seen() {
    let dir = TempDir::new();
    let store = open(&dir).await;
    let rec = record(Some("alice"), T0);
    store.create(rec.clone(), None).await.unwrap();

    // An update from a record read before the touch keeps the touch.
    touch(&store, &rec.token_hash, T0 + 2 * MINUTE).await;
    let mut stale = rec.clone();
    stale.data = sealed(b"one");
    let Update::Updated(r) = store.update(stale, 1).await.unwrap() else {
        panic!("conflict")
    };
    assert_eq!(r.last_seen_at, Timestamp(T0 + 2 * MINUTE));
    assert_eq!(r.version, 2);
    // The update wrote it: nothing left to flush.
    assert_eq!(pending(&store), "Some(0)");

    // An update carrying a later time than the pending touch keeps its own,
    // and the flush does not move it back.
    touch(&store, &rec.token_hash, T0 + 4 * MINUTE).await;
    let mut later = (*r).clone();
    later.last_seen_at = Timestamp(T0 + 6 * MINUTE);
    later.data = sealed(b"two");
    let Update::Updated(r) = store.update(later, 2).await.unwrap() else {
        panic!("conflict")
    };
    assert_eq!(r.last_seen_at, Timestamp(T0 + 6 * MINUTE));
    store.flush_touches().await.unwrap();
    assert_eq!(store.get(&rec.id).await.unwrap(), Some(Arc::clone(&r)));

    // A conflict reports the touch too.
    touch(&store, &rec.token_hash, T0 + 8 * MINUTE).await;
    let Update::Conflict(cur) = store.update(rec.clone(), 1).await.unwrap() else {
        panic!("stale version accepted")
    };
    assert_eq!(cur.last_seen_at, Timestamp(T0 + 8 * MINUTE));

    // A rotation from a stale record keeps it as well.
    let mut next = (*r).clone();
    next.token_hash = SessionToken::generate().unwrap().hash();
    let tomb = Tombstone {
        session_id: rec.id,
        user: rec.user.clone(),
        reason: EndReason::Regenerated,
        ended_at: Timestamp(T0 + 9 * MINUTE),
        keep_until: Timestamp(T0 + 69 * MINUTE),
    };
    let Update::Updated(r) = store.rotate(next.clone(), 3, tomb.clone()).await.unwrap() else {
        panic!("conflict")
    };
    assert_eq!(r.last_seen_at, Timestamp(T0 + 8 * MINUTE));
    assert_eq!(
        store.load(&rec.token_hash, None).await.unwrap(),
        Lookup::Ended(tomb)
    );

    // A counter increment leaves the pending touch pending, and visible.
    touch(&store, &next.token_hash, T0 + 10 * MINUTE).await;
    store
        .increment_counter(&rec.id, "downloads", 2, None)
        .await
        .unwrap();
    let now = store.get(&rec.id).await.unwrap().unwrap();
    assert_eq!(now.last_seen_at, Timestamp(T0 + 10 * MINUTE));
    assert_eq!(now.counters.get("downloads"), Some(&3));
    assert_eq!(pending(&store), "Some(1)");

    // An explicit extend never goes backwards (the pending touch is later)...
    let r = store
        .touch(&rec.id, Timestamp(T0 + 9 * MINUTE))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r, now);
    // ...and is written at once, pending touch included.
    let now = store
        .touch(&rec.id, Timestamp(T0 + 12 * MINUTE))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(now.last_seen_at, Timestamp(T0 + 12 * MINUTE));
    assert_eq!(pending(&store), "Some(0)");
    let copy = crash_copy(&dir);
    assert_eq!(
        row(&copy.db(), &rec.id).await,
        Some((T0 + 12 * MINUTE, T0 + 12 * MINUTE + IDLE))
    );

    store.close().await;
    let plain = SqlStore::open_sqlite(dir.db()).await.unwrap();
    assert_eq!(plain.get(&rec.id).await.unwrap(), Some(now));
    plain.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_limit_counts_sessions_kept_alive_by_a_pending_touch() {
    let dir = TempDir::new();
    let store = open(&dir).await;
    let old = record(Some("alice"), T0);
    store.create(old.clone(), None).await.unwrap();
    let touched = touch(&store, &old.token_hash, T0 + 20 * MINUTE).await;
    let at = T0 + 40 * MINUTE;
    let limit = |mode| {
        Some(SessionLimit {
            max: 1,
            mode,
            now: Timestamp(at),
            evict: ending(EndReason::EvictedByLimit, at),
        })
    };
    assert_eq!(
        store
            .create(record(Some("alice"), at), limit(LimitMode::RejectNew))
            .await
            .unwrap(),
        Create::LimitReached { active: 1 }
    );
    assert_eq!(
        store
            .create(record(Some("alice"), at), limit(LimitMode::EvictOldest))
            .await
            .unwrap(),
        Create::Created {
            evicted: vec![touched]
        }
    );
    assert_eq!(store.flush_touches().await.unwrap(), 0);
    store.close().await;
    assert_eq!(row(&dir.db(), &old.id).await, None);
}

/// Without the cache the file may be shared: a touch is in it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_cache_touches_are_written_at_once() {
    let (store, dir) = file_store().await;
    let rec = record(None, T0);
    store.create(rec.clone(), None).await.unwrap();
    touch(&store, &rec.token_hash, T0 + 5 * MINUTE).await;
    assert_eq!(pending(&store), "None");
    assert_eq!(store.flush_touches().await.unwrap(), 0);
    // Another connection reads the file while the store is open.
    assert_eq!(
        row(&dir.db(), &rec.id).await,
        Some((T0 + 5 * MINUTE, T0 + 5 * MINUTE + IDLE))
    );
    store.close().await;
}

/// Many touches, updates, sweeps and flushes at once: afterwards the store's
/// answers, the file and the reference rules agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_touches_writes_and_flushes_agree_with_the_file() {
    let dir = TempDir::new();
    let options = SqliteOptions::new()
        .with_exclusive_cache(true)
        .with_touch_flush_interval(Duration::from_millis(1));
    let store = SqlStore::open_sqlite_with(dir.db(), options).await.unwrap();
    let mut recs = Vec::new();
    for _ in 0..20 {
        let mut r = record(Some("alice"), T0);
        r.touch_interval_ms = 0;
        store.create(r.clone(), None).await.unwrap();
        recs.push(r);
    }
    let mut tasks = Vec::new();
    for (k, r) in recs.iter().enumerate() {
        let s = store.clone();
        let (id, hash) = (r.id, r.token_hash);
        tasks.push(tokio::spawn(async move {
            for i in 0..40i64 {
                let at = T0 + i * MINUTE / 2;
                match (i + k as i64) % 5 {
                    0 => {
                        let cur = s.get(&id).await.unwrap().unwrap();
                        let mut next = (*cur).clone();
                        next.data = sealed(&i.to_be_bytes());
                        let _ = s.update(next, cur.version).await.unwrap();
                    }
                    1 => {
                        s.flush_touches().await.unwrap();
                    }
                    2 => {
                        let spec = SweepSpec {
                            now: Timestamp(at),
                            reason_ttl_ms: MINUTE,
                            restore_ttl_ms: 0,
                        };
                        let ended = s.sweep(spec, 100).await.unwrap();
                        assert!(ended.is_empty(), "swept a live session: {ended:?}");
                    }
                    _ => {
                        let now = Timestamp(at);
                        let r = match s.load(&hash, Some(Touch { now })).await.unwrap() {
                            Lookup::Found(r) => r,
                            other => panic!("lost: {other:?}"),
                        };
                        assert!(r.last_seen_at >= now);
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut answers = Vec::new();
    for r in &recs {
        let cur = store.get(&r.id).await.unwrap().unwrap();
        assert!(cur.last_seen_at.0 >= T0 + 36 * MINUTE / 2, "{cur:?}");
        answers.push(cur);
    }
    store.close().await;
    let plain = SqlStore::open_sqlite(dir.db()).await.unwrap();
    for cur in answers {
        assert_eq!(plain.get(&cur.id).await.unwrap(), Some(cur));
    }
    plain.close().await;
}
