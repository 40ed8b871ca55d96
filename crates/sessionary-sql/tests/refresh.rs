//! Refresh token families on a database file: durability across close and
//! reopen, and the interplay with touches written behind.

// Test code: a panic is how a check reports a failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use sessionary_core::refresh::{
    CreateFamily, FamilyEnd, FamilyId, RefreshFamily, RefreshOutcome, RefreshRequest,
};
use sessionary_core::store::{Ending, Lookup, Touch};
use sessionary_core::{
    EndReason, RefreshToken, Sealed, SessionRecord, SessionStore, Timestamp, TokenHash,
};
use sessionary_sql::{SqlStore, SqliteOptions};

use common::{MINUTE, T0, TempDir, record};

const GRACE: i64 = 10_000;

fn hash() -> TokenHash {
    RefreshToken::generate().unwrap().hash()
}

fn request(presented: TokenHash, now: i64) -> RefreshRequest {
    let next = hash();
    RefreshRequest {
        presented,
        next_hash: next,
        next_sealed: Sealed::from_bytes(next.as_bytes().to_vec()),
        now: Timestamp(now),
        grace_ms: GRACE,
        reuse: Ending {
            reason: EndReason::RefreshReused,
            at: Timestamp(now),
            reason_until: Timestamp(now + 60 * MINUTE),
            restore_until: None,
        },
    }
}

fn family(rec: &SessionRecord, current: TokenHash) -> RefreshFamily {
    RefreshFamily {
        id: FamilyId::generate().unwrap(),
        session_id: rec.id,
        user: rec.user.clone().unwrap(),
        created_at: Timestamp(T0),
        absolute_expires_at: Timestamp(T0 + 24 * 60 * MINUTE),
        generation: 0,
        current_hash: current,
        rotated_at: Timestamp(T0),
        previous_hash: None,
        successor: None,
        revoked: None,
    }
}

async fn cached(dir: &TempDir, flush_every: Duration) -> SqlStore {
    let options = SqliteOptions::new()
        .with_exclusive_cache(true)
        .with_touch_flush_interval(flush_every);
    SqlStore::open_sqlite_with(dir.db(), options).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn families_survive_close_and_reopen() {
    let dir = TempDir::new();
    let rec = record(Some("alice"), T0);
    let h0 = hash();
    let (h1, sealed) = {
        let store = SqlStore::open_sqlite(dir.db()).await.unwrap();
        store.create(rec.clone(), None).await.unwrap();
        assert_eq!(
            store.create_refresh_family(family(&rec, h0)).await.unwrap(),
            CreateFamily::Created
        );
        let req = request(h0, T0 + 1_000);
        let out = (req.next_hash, req.next_sealed.clone());
        assert!(matches!(
            store.refresh(req).await.unwrap(),
            RefreshOutcome::Rotated { .. }
        ));
        store.close().await;
        out
    };
    // Reopened with the cache: the retry still gets the same successor...
    let store = cached(&dir, Duration::from_secs(1)).await;
    match store
        .refresh(request(h0, T0 + 1_000 + GRACE))
        .await
        .unwrap()
    {
        RefreshOutcome::Retry { family, .. } => {
            assert_eq!(family.current_hash, h1);
            assert_eq!(family.successor, Some(sealed));
            assert_eq!(family.generation, 1);
        }
        other => panic!("expected a retry, got {other:?}"),
    }
    // ...and reuse after the window ends the session for good.
    assert!(matches!(
        store
            .refresh(request(h0, T0 + 2_000 + GRACE))
            .await
            .unwrap(),
        RefreshOutcome::Reused { ended: Some(_), .. }
    ));
    store.close().await;
    let store = SqlStore::open_sqlite(dir.db()).await.unwrap();
    assert!(store.get(&rec.id).await.unwrap().is_none());
    match store.load(&rec.token_hash, None).await.unwrap() {
        Lookup::Ended(t) => assert_eq!(t.reason, EndReason::RefreshReused),
        other => panic!("expected a tombstone, got {other:?}"),
    }
    match store.refresh(request(h1, T0 + 3_000)).await.unwrap() {
        RefreshOutcome::Revoked(f) => assert_eq!(f.revoked, Some(FamilyEnd::Reused)),
        other => panic!("expected a revoked family, got {other:?}"),
    }
    store.close().await;
}

/// With touches written behind, a session kept alive only by a pending touch
/// is live for a refresh, and the refresh's own touch is written at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_sees_and_writes_touches_pending_behind() {
    let dir = TempDir::new();
    let rec = record(Some("alice"), T0);
    let h0 = hash();
    // Flushes never come during the test.
    let store = cached(&dir, Duration::from_secs(3600)).await;
    store.create(rec.clone(), None).await.unwrap();
    store.create_refresh_family(family(&rec, h0)).await.unwrap();
    // A request at T0+25m: recorded in memory only.
    let touched = store
        .load(
            &rec.token_hash,
            Some(Touch {
                now: Timestamp(T0 + 25 * MINUTE),
            }),
        )
        .await
        .unwrap();
    assert!(matches!(touched, Lookup::Found(r) if r.last_seen_at == Timestamp(T0 + 25 * MINUTE)));
    // At T0+40m the row alone says "idle since T0+30m"; the pending touch says live.
    let now = T0 + 40 * MINUTE;
    match store.refresh(request(h0, now)).await.unwrap() {
        RefreshOutcome::Rotated { session, .. } => {
            assert_eq!(session.last_seen_at, Timestamp(now));
        }
        other => panic!("expected a rotation, got {other:?}"),
    }
    assert_eq!(
        store.get(&rec.id).await.unwrap().unwrap().last_seen_at,
        Timestamp(now)
    );
    // Closing writes the pending touch (T0+25m, older): the row holds the
    // refresh's touch only if the refresh wrote it.
    store.close().await;
    let plain = SqlStore::open_sqlite(dir.db()).await.unwrap();
    assert_eq!(
        plain.get(&rec.id).await.unwrap().unwrap().last_seen_at,
        Timestamp(now)
    );
    plain.close().await;
}
