//! Conformance cases for refresh token families. Each takes a fresh, empty store.

use std::sync::Arc;
use std::time::Duration;

use sessionary_core::refresh::{
    CreateFamily, FamilyEnd, FamilyId, RefreshFamily, RefreshOutcome, RefreshRequest,
};
use sessionary_core::store::{Ending, Lookup};
use sessionary_core::{
    EndReason, Error, EventKind, NewSession, RefreshToken, Sealed, SessionRecord, SessionStore,
    SessionToken, Timestamp, TokenHash, UserId,
};

use crate::{manager, record, start};

type Store = Arc<dyn SessionStore>;

const T0: Timestamp = Timestamp(1_767_225_600_000);
const GRACE: i64 = 10_000;
const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

fn hash() -> TokenHash {
    RefreshToken::generate().unwrap().hash()
}

fn reuse_ending(at: Timestamp) -> Ending {
    Ending {
        reason: EndReason::RefreshReused,
        at,
        reason_until: at.add_millis(HOUR),
        restore_until: None,
    }
}

/// A request to use `presented` at `now`; its successor's hash and a stand-in
/// sealed blob (stores treat it as opaque bytes).
fn request(presented: TokenHash, now: Timestamp) -> RefreshRequest {
    let next = hash();
    RefreshRequest {
        presented,
        next_hash: next,
        next_sealed: Sealed::from_bytes(next.as_bytes().to_vec()),
        now,
        grace_ms: GRACE,
        reuse: reuse_ending(now),
    }
}

fn family(rec: &SessionRecord, current: TokenHash, now: Timestamp, life_ms: i64) -> RefreshFamily {
    RefreshFamily {
        id: FamilyId::generate().unwrap(),
        session_id: rec.id,
        user: rec.user.clone().unwrap(),
        created_at: now,
        absolute_expires_at: now.add_millis(life_ms),
        generation: 0,
        current_hash: current,
        rotated_at: now,
        previous_hash: None,
        successor: None,
        revoked: None,
    }
}

/// A session of `user` created at T0 (30 min idle, 12 h absolute) with one
/// family (lifetime `life_ms`); returns the session token, record, first hash
/// and family.
async fn with_family(
    store: &Store,
    user: &str,
    life_ms: i64,
) -> (SessionToken, SessionRecord, TokenHash, RefreshFamily) {
    let (t, r) = record(Some(user), T0);
    store.create(r.clone(), None).await.unwrap();
    let h0 = hash();
    let f = family(&r, h0, T0, life_ms);
    assert_eq!(
        store.create_refresh_family(f.clone()).await.unwrap(),
        CreateFamily::Created
    );
    (t, r, h0, f)
}

fn rotated(out: RefreshOutcome) -> (RefreshFamily, Arc<SessionRecord>) {
    match out {
        RefreshOutcome::Rotated { family, session } => (family, session),
        other => panic!("expected a rotation, got {other:?}"),
    }
}

fn retried(out: RefreshOutcome) -> (RefreshFamily, Arc<SessionRecord>) {
    match out {
        RefreshOutcome::Retry { family, session } => (family, session),
        other => panic!("expected a retry, got {other:?}"),
    }
}

/// The current token rotates: the next hash becomes current, the presented one
/// previous, with the sealed successor kept; the session is touched. Creating
/// a family never overwrites and needs a live session.
pub async fn refresh_rotates_and_touches(store: Store) {
    let (_, r, h0, f) = with_family(&store, "alice", 30 * 24 * HOUR).await;
    let t1 = T0.add_millis(60_000);
    let req = request(h0, t1);
    let (next, sealed) = (req.next_hash, req.next_sealed.clone());
    let (fam, session) = rotated(store.refresh(req).await.unwrap());
    assert_eq!(fam.id, f.id);
    assert_eq!(fam.generation, 1);
    assert_eq!(fam.current_hash, next);
    assert_eq!(fam.previous_hash, Some(h0));
    assert_eq!(fam.rotated_at, t1);
    assert_eq!(fam.successor, Some(sealed));
    assert_eq!(fam.revoked, None);
    assert_eq!(fam.absolute_expires_at, f.absolute_expires_at);
    // Refreshing is activity, recorded at once (even within the touch interval).
    assert_eq!(session.last_seen_at, t1);
    assert_eq!(store.get(&r.id).await.unwrap().unwrap().last_seen_at, t1);
    assert_eq!(
        session.version, r.version,
        "a touch does not bump the version"
    );
    let t2 = t1.add_millis(60_000);
    let req = request(next, t2);
    let next2 = req.next_hash;
    let (fam, _) = rotated(store.refresh(req).await.unwrap());
    assert_eq!(fam.generation, 2);
    assert_eq!(fam.current_hash, next2);
    assert_eq!(fam.previous_hash, Some(next));

    // Insert-only, and only for a live session of the same user.
    let mut dup = family(&r, hash(), T0, HOUR);
    dup.id = f.id;
    assert_eq!(
        store.create_refresh_family(dup).await.unwrap(),
        CreateFamily::Duplicate
    );
    let same_hash = family(&r, next2, T0, HOUR);
    assert_eq!(
        store.create_refresh_family(same_hash).await.unwrap(),
        CreateFamily::Duplicate
    );
    let (_, gone) = record(Some("bob"), T0);
    assert_eq!(
        store
            .create_refresh_family(family(&gone, hash(), T0, HOUR))
            .await
            .unwrap(),
        CreateFamily::SessionGone
    );
    let late = family(&r, hash(), T0.add_millis(13 * HOUR), HOUR);
    assert_eq!(
        store.create_refresh_family(late).await.unwrap(),
        CreateFamily::SessionGone,
        "the session is past its absolute expiry"
    );
    let mut foreign = family(&r, hash(), T0, HOUR);
    foreign.user = UserId::new("mallory").unwrap();
    assert_eq!(
        store.create_refresh_family(foreign).await.unwrap(),
        CreateFamily::SessionGone
    );
}

/// A retry of the previous token within the grace window (bounds included)
/// gets the same successor; nothing rotates and the retry's own candidate is
/// never stored.
pub async fn refresh_retry_within_grace(store: Store) {
    let (_, _, h0, _) = with_family(&store, "alice", 30 * 24 * HOUR).await;
    let t1 = T0.add_millis(1_000);
    let req = request(h0, t1);
    let (next, sealed) = (req.next_hash, req.next_sealed.clone());
    rotated(store.refresh(req).await.unwrap());
    let retry = request(h0, t1.add_millis(GRACE));
    let candidate = retry.next_hash;
    let (fam, session) = retried(store.refresh(retry).await.unwrap());
    assert_eq!(fam.current_hash, next);
    assert_eq!(fam.successor, Some(sealed));
    assert_eq!(fam.generation, 1);
    assert_eq!(session.last_seen_at, t1.add_millis(GRACE));
    assert_eq!(
        store
            .refresh(request(candidate, t1.add_millis(GRACE)))
            .await
            .unwrap(),
        RefreshOutcome::Missing
    );
    // The successor still rotates normally afterwards.
    let (fam, _) = rotated(
        store
            .refresh(request(next, t1.add_millis(GRACE)))
            .await
            .unwrap(),
    );
    assert_eq!(fam.generation, 2);
}

/// The previous token after the grace window is reuse: the family is revoked
/// and the session ended with the given ending, atomically.
pub async fn refresh_reuse_after_grace_revokes(store: Store) {
    let (t, r, h0, _) = with_family(&store, "alice", 30 * 24 * HOUR).await;
    let t1 = T0.add_millis(1_000);
    let req = request(h0, t1);
    let next = req.next_hash;
    rotated(store.refresh(req).await.unwrap());
    let late = t1.add_millis(GRACE + 1);
    match store.refresh(request(h0, late)).await.unwrap() {
        RefreshOutcome::Reused { family, ended } => {
            assert_eq!(family.revoked, Some(FamilyEnd::Reused));
            assert_eq!(ended.unwrap().id, r.id);
        }
        other => panic!("expected reuse, got {other:?}"),
    }
    assert!(store.get(&r.id).await.unwrap().is_none());
    match store.load(&t.hash(), None).await.unwrap() {
        Lookup::Ended(tomb) => assert_eq!(tomb.reason, EndReason::RefreshReused),
        other => panic!("expected a tombstone, got {other:?}"),
    }
    // Nothing of the family works any more, not even its current token.
    match store.refresh(request(next, late)).await.unwrap() {
        RefreshOutcome::Revoked(f) => assert_eq!(f.revoked, Some(FamilyEnd::Reused)),
        other => panic!("expected a revoked family, got {other:?}"),
    }
}

/// A token older than the previous one is reuse even inside the grace window
/// of the last rotation.
pub async fn refresh_older_token_is_reuse(store: Store) {
    let (_, r, h0, _) = with_family(&store, "alice", 30 * 24 * HOUR).await;
    let req = request(h0, T0.add_millis(1));
    let h1 = req.next_hash;
    rotated(store.refresh(req).await.unwrap());
    rotated(store.refresh(request(h1, T0.add_millis(2))).await.unwrap());
    assert!(matches!(
        store.refresh(request(h0, T0.add_millis(3))).await.unwrap(),
        RefreshOutcome::Reused { ended: Some(_), .. }
    ));
    assert!(store.get(&r.id).await.unwrap().is_none());
}

/// 20 concurrent uses of one token: exactly one rotates, the 19 others are
/// retries that see that very successor; the family lives on.
pub async fn race_concurrent_refreshes_one_rotation(store: Store) {
    let (_, r, h0, _) = with_family(&store, "alice", 30 * 24 * HOUR).await;
    let now = T0.add_millis(5_000);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let req = request(h0, now);
            let mine = (req.next_hash, req.next_sealed.clone());
            (mine, store.refresh(req).await.unwrap())
        }));
    }
    let mut winners = Vec::new();
    let mut seen = Vec::new();
    for task in tasks {
        let (mine, out) = task.await.unwrap();
        match out {
            RefreshOutcome::Rotated { family, .. } => {
                assert_eq!(family.current_hash, mine.0);
                winners.push(mine);
                seen.push((family.current_hash, family.successor));
            }
            RefreshOutcome::Retry { family, .. } => {
                seen.push((family.current_hash, family.successor));
            }
            other => panic!("expected a rotation or a retry, got {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one rotation");
    let (next, sealed) = winners.pop().unwrap();
    assert!(
        seen.iter()
            .all(|(h, s)| *h == next && s.as_ref() == Some(&sealed)),
        "every caller got the same successor"
    );
    let (fam, _) = rotated(
        store
            .refresh(request(next, now.add_millis(1)))
            .await
            .unwrap(),
    );
    assert_eq!(fam.generation, 2, "one rotation happened in the race");
    assert!(store.get(&r.id).await.unwrap().is_some());
}

/// No token of a family is accepted at or after its absolute expiry, however
/// recently it rotated, and that is not reuse.
pub async fn refresh_family_absolute_lifetime(store: Store) {
    // Shorter than the session's idle timeout, so only the family's lifetime counts.
    let (_, r, h0, f) = with_family(&store, "alice", 20 * MINUTE).await;
    let end = f.absolute_expires_at;
    let req = request(h0, end.add_millis(-1));
    let next = req.next_hash;
    rotated(store.refresh(req).await.unwrap());
    assert!(matches!(
        store.refresh(request(next, end)).await.unwrap(),
        RefreshOutcome::Expired(_)
    ));
    assert!(matches!(
        store.refresh(request(h0, end)).await.unwrap(),
        RefreshOutcome::Expired(_)
    ));
    assert!(store.get(&r.id).await.unwrap().is_some());
}

/// A refresh needs its session live: an ended or expired session makes it fail
/// at once and revokes the family; nothing rotates.
pub async fn refresh_needs_live_session(store: Store) {
    let (_, r, h0, _) = with_family(&store, "alice", 30 * 24 * HOUR).await;
    store
        .end(
            &r.id,
            Ending {
                reason: EndReason::LoggedOut,
                at: T0,
                reason_until: T0.add_millis(HOUR),
                restore_until: None,
            },
        )
        .await
        .unwrap()
        .unwrap();
    match store.refresh(request(h0, T0.add_millis(1))).await.unwrap() {
        RefreshOutcome::SessionEnded { family, session } => {
            assert_eq!(family.revoked, Some(FamilyEnd::SessionEnded));
            assert_eq!(family.generation, 0);
            assert!(session.is_none());
        }
        other => panic!("expected the session to be gone, got {other:?}"),
    }
    assert!(matches!(
        store.refresh(request(h0, T0.add_millis(2))).await.unwrap(),
        RefreshOutcome::Revoked(_)
    ));
    // Expired (idle) but not yet ended: the store hands it back for the caller to end.
    let (_, idle, h, _) = with_family(&store, "bob", 30 * 24 * HOUR).await;
    let later = T0.add_millis(31 * 60_000);
    match store.refresh(request(h, later)).await.unwrap() {
        RefreshOutcome::SessionEnded { session, .. } => {
            let s = session.unwrap();
            assert_eq!(s.id, idle.id);
            assert!(!s.is_live(later));
        }
        other => panic!("expected the session to be expired, got {other:?}"),
    }
}

/// Revoking by any token of a family, or all of a session's families; the
/// session lives on. A revoked family keeps its first reason.
pub async fn refresh_revoke(store: Store) {
    let (_, r, h0, f) = with_family(&store, "alice", 30 * 24 * HOUR).await;
    let req = request(h0, T0.add_millis(1));
    let h1 = req.next_hash;
    rotated(store.refresh(req).await.unwrap());
    // The spent token names the family too.
    let got = store
        .revoke_refresh(&h0, FamilyEnd::RevokedByUser)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.id, f.id);
    assert_eq!(got.revoked, Some(FamilyEnd::RevokedByUser));
    let again = store
        .revoke_refresh(&h1, FamilyEnd::SessionEnded)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.revoked, Some(FamilyEnd::RevokedByUser));
    assert!(matches!(
        store.refresh(request(h1, T0.add_millis(2))).await.unwrap(),
        RefreshOutcome::Revoked(_)
    ));
    assert!(store.get(&r.id).await.unwrap().is_some());
    assert_eq!(
        store
            .revoke_refresh(&hash(), FamilyEnd::RevokedByUser)
            .await
            .unwrap(),
        None
    );
    // Two more families on the session: revoked together.
    let (a, b) = (hash(), hash());
    for h in [a, b] {
        assert_eq!(
            store
                .create_refresh_family(family(&r, h, T0, HOUR))
                .await
                .unwrap(),
            CreateFamily::Created
        );
    }
    let revoked = store
        .revoke_refresh_families(&r.id, FamilyEnd::RevokedByUser)
        .await
        .unwrap();
    assert_eq!(revoked.len(), 2);
    assert!(
        revoked
            .iter()
            .all(|f| f.revoked == Some(FamilyEnd::RevokedByUser))
    );
    for h in [a, b] {
        assert!(matches!(
            store.refresh(request(h, T0.add_millis(3))).await.unwrap(),
            RefreshOutcome::Revoked(_)
        ));
    }
    assert!(
        store
            .revoke_refresh_families(&r.id, FamilyEnd::RevokedByUser)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A sweep forgets families past their absolute lifetime, with every token
/// hash they had; others are untouched.
pub async fn refresh_sweep_forgets_expired_families(store: Store) {
    let (_, r, h0, f) = with_family(&store, "alice", 10 * MINUTE).await;
    let req = request(h0, T0.add_millis(1));
    let h1 = req.next_hash;
    rotated(store.refresh(req).await.unwrap());
    let keep = hash();
    store
        .create_refresh_family(family(&r, keep, T0, 20 * MINUTE))
        .await
        .unwrap();
    let end = f.absolute_expires_at;
    assert_eq!(
        store.sweep_refresh(end.add_millis(-1), 100).await.unwrap(),
        0
    );
    assert_eq!(store.sweep_refresh(end, 100).await.unwrap(), 1);
    for h in [h0, h1] {
        assert_eq!(
            store.refresh(request(h, end)).await.unwrap(),
            RefreshOutcome::Missing
        );
    }
    rotated(store.refresh(request(keep, end)).await.unwrap());
    assert_eq!(store.sweep_refresh(end, 100).await.unwrap(), 0);
}

/// Through the manager: issue, rotate, retry (the same token), reuse ends the
/// session with `refresh_reused`, and a logout makes refresh fail at once.
pub async fn manager_refresh_walk(store: Store) {
    let clock = start();
    let m = manager(Arc::clone(&store), &clock);
    let mut events = m.subscribe();
    let alice = UserId::new("alice").unwrap();
    let s = m
        .create(NewSession::user(alice.clone()).with_roles(["user"]))
        .await
        .unwrap();
    let issued = m.issue_refresh(&s.session.id).await.unwrap();
    let first = issued.token.encode();
    clock.advance(Duration::from_secs(5));
    let a = m.refresh(&first).await.unwrap();
    assert!(!a.retried);
    assert_eq!(a.family_id, issued.family_id);
    assert_eq!(a.session.id, s.session.id);
    let b = m.refresh(&first).await.unwrap();
    assert!(b.retried);
    assert_eq!(
        b.token.encode(),
        a.token.encode(),
        "a retry gets the same successor"
    );
    clock.advance(Duration::from_secs(11));
    let err = m.refresh(&first).await.unwrap_err();
    assert_eq!(err.reason(), Some("refresh_reused"));
    assert_eq!(
        m.verify(&s.token.encode()).await.unwrap_err().reason(),
        Some("refresh_reused")
    );
    assert!(matches!(
        m.refresh(&a.token.encode()).await,
        Err(Error::RefreshRefused(_))
    ));
    let mut kinds = Vec::new();
    while let Ok(e) = events.try_recv() {
        kinds.push(e.kind.clone());
    }
    assert!(kinds.contains(&EventKind::RefreshReused {
        family: issued.family_id
    }));
    assert!(kinds.contains(&EventKind::Ended {
        reason: EndReason::RefreshReused
    }));

    let s2 = m
        .create(NewSession::user(alice).with_roles(["user"]))
        .await
        .unwrap();
    let issued = m.issue_refresh(&s2.session.id).await.unwrap();
    m.logout(&s2.token.encode()).await.unwrap();
    assert_eq!(
        m.refresh(&issued.token.encode())
            .await
            .unwrap_err()
            .reason(),
        Some("session_ended")
    );
}
