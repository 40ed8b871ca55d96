//! Refresh tokens through `SessionManager`, with an injected clock.

// Test helpers: a panic is how a test fails.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use sessionary_core::{
    EndReason, Error, Event, EventKind, MockClock, NewSession, Policy, RefreshRefusal,
    SessionManager, UserId,
};
use sessionary_testkit::ProbeStore;
use tokio::sync::broadcast;

fn builder(policy: Policy) -> (Arc<ProbeStore>, MockClock, sessionary_core::ManagerBuilder) {
    let store = Arc::new(ProbeStore::new());
    let clock = MockClock::default();
    let b = SessionManager::builder(store.clone())
        .with_clock(Arc::new(clock.clone()))
        .with_policy(policy);
    (store, clock, b)
}

fn setup() -> (Arc<ProbeStore>, MockClock, SessionManager) {
    let (store, clock, b) = builder(Policy::default());
    (store, clock, b.build().unwrap())
}

fn alice() -> UserId {
    UserId::new("alice").unwrap()
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

async fn signed_in(m: &SessionManager) -> (String, sessionary_core::SessionId) {
    let s = m
        .create(NewSession::user(alice()).with_roles(["user"]))
        .await
        .unwrap();
    (s.token.encode(), s.session.id)
}

fn refusal(r: Result<sessionary_core::Refreshed, Error>) -> RefreshRefusal {
    match r {
        Err(Error::RefreshRefused(why)) => why,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn drain(rx: &mut broadcast::Receiver<Arc<Event>>) -> Vec<EventKind> {
    let mut v = Vec::new();
    while let Ok(e) = rx.try_recv() {
        v.push(e.kind.clone());
    }
    v
}

#[tokio::test]
async fn rotation_issues_a_new_token_and_spends_the_old() {
    let (_, clock, m) = setup();
    let (_, sid) = signed_in(&m).await;
    let issued = m.issue_refresh(&sid).await.unwrap();
    assert_eq!(issued.token.encode().len(), 43);
    let t0 = issued.token.encode();
    clock.advance(secs(60));
    let r1 = m.refresh(&t0).await.unwrap();
    assert!(!r1.retried);
    assert_ne!(r1.token.encode(), t0);
    assert_eq!(r1.family_id, issued.family_id);
    assert_eq!(r1.expires_at, issued.expires_at);
    assert_eq!(r1.session.id, sid);
    clock.advance(secs(60));
    let r2 = m.refresh(&r1.token.encode()).await.unwrap();
    assert!(!r2.retried);
    assert_ne!(r2.token.encode(), r1.token.encode());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refreshes_with_one_token_get_the_same_successor() {
    let (_, clock, m) = setup();
    let (_, sid) = signed_in(&m).await;
    let t0 = m.issue_refresh(&sid).await.unwrap().token.encode();
    clock.advance(secs(30));
    // Two tabs at once.
    let (a, b) = tokio::join!(m.refresh(&t0), m.refresh(&t0));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.token.encode(), b.token.encode());
    assert_eq!(u8::from(a.retried) + u8::from(b.retried), 1, "one rotation");
    let t1 = a.token.encode();
    // Twenty at once, on several threads.
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let m = m.clone();
            let t1 = t1.clone();
            tokio::spawn(async move { m.refresh(&t1).await.unwrap() })
        })
        .collect();
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.unwrap());
    }
    assert_eq!(got.iter().filter(|r| !r.retried).count(), 1, "one rotation");
    let t2 = got[0].token.encode();
    assert!(got.iter().all(|r| r.token.encode() == t2));
    // Exactly one family survives, and it keeps working.
    clock.advance(secs(30));
    let next = m.refresh(&t2).await.unwrap();
    assert!(!next.retried);
    assert_eq!(next.session.id, sid);
}

#[tokio::test]
async fn a_retry_within_the_grace_window_gets_the_same_successor() {
    let (_, clock, m) = setup();
    let (_, sid) = signed_in(&m).await;
    let t0 = m.issue_refresh(&sid).await.unwrap().token.encode();
    let first = m.refresh(&t0).await.unwrap();
    // The response was lost; the client retries 10 s later (the default window, inclusive).
    clock.advance(secs(10));
    let again = m.refresh(&t0).await.unwrap();
    assert!(again.retried);
    assert_eq!(again.token.encode(), first.token.encode());
    // The successor was never spent by the retries.
    let next = m.refresh(&first.token.encode()).await.unwrap();
    assert!(!next.retried);
}

#[tokio::test]
async fn reuse_after_the_grace_window_revokes_the_family_and_ends_the_session() {
    let (_, clock, m) = setup();
    let mut events = m.subscribe();
    let (session_token, sid) = signed_in(&m).await;
    let issued = m.issue_refresh(&sid).await.unwrap();
    let t0 = issued.token.encode();
    let t1 = m.refresh(&t0).await.unwrap().token.encode();
    clock.advance(Duration::from_millis(10_001));
    // A thief (or the client) replays the spent token.
    assert_eq!(refusal(m.refresh(&t0).await), RefreshRefusal::Reused);
    // The session is gone, and says why.
    let err = m.verify(&session_token).await.unwrap_err();
    assert!(matches!(err, Error::Ended(EndReason::RefreshReused)));
    assert_eq!(err.reason(), Some("refresh_reused"));
    // The whole family is dead: the legitimate holder of the successor too.
    let err = m.refresh(&t1).await.unwrap_err();
    assert_eq!(err.reason(), Some("refresh_reused"));
    assert_eq!(err.problem_type(), "refresh-refused");
    let kinds = drain(&mut events);
    assert!(kinds.contains(&EventKind::RefreshReused {
        family: issued.family_id
    }));
    assert!(kinds.contains(&EventKind::Ended {
        reason: EndReason::RefreshReused
    }));
}

#[tokio::test]
async fn an_older_spent_token_is_reuse_even_inside_the_grace_window() {
    let (_, _, m) = setup();
    let (session_token, sid) = signed_in(&m).await;
    let t0 = m.issue_refresh(&sid).await.unwrap().token.encode();
    let t1 = m.refresh(&t0).await.unwrap().token.encode();
    m.refresh(&t1).await.unwrap();
    assert_eq!(refusal(m.refresh(&t0).await), RefreshRefusal::Reused);
    assert!(m.verify(&session_token).await.is_err());
}

#[tokio::test]
async fn the_grace_window_is_configurable() {
    let (_, clock, b) = builder(Policy::default());
    let m = b.with_refresh_grace(Duration::ZERO).build().unwrap();
    let clock_of = |_: &SessionManager| clock.clone();
    let (clock, sid) = (clock_of(&m), signed_in(&m).await.1);
    let t0 = m.issue_refresh(&sid).await.unwrap().token.encode();
    m.refresh(&t0).await.unwrap();
    clock.advance(Duration::from_millis(1));
    // No window: a second use one millisecond later is reuse.
    assert_eq!(refusal(m.refresh(&t0).await), RefreshRefusal::Reused);
    let (_, _, b) = builder(Policy::default());
    assert!(matches!(
        b.with_refresh_grace(secs(61)).build(),
        Err(Error::Config(_))
    ));
}

#[tokio::test]
async fn a_family_has_an_absolute_lifetime() {
    let mut policy = Policy::default();
    policy.default.refresh_absolute_timeout = Duration::from_secs(2 * 3600);
    let (_, clock, b) = builder(policy);
    let m = b.build().unwrap();
    let (session_token, sid) = signed_in(&m).await;
    let issued = m.issue_refresh(&sid).await.unwrap();
    assert_eq!(
        issued.expires_at,
        m.now().plus(Duration::from_secs(2 * 3600))
    );
    let mut token = issued.token.encode();
    // Rotating every 20 minutes never extends the family.
    for _ in 0..5 {
        clock.advance(secs(20 * 60));
        token = m.refresh(&token).await.unwrap().token.encode();
    }
    clock.advance(secs(20 * 60));
    assert_eq!(refusal(m.refresh(&token).await), RefreshRefusal::Expired);
    assert_eq!(
        m.refresh(&token).await.unwrap_err().reason(),
        Some("refresh_expired")
    );
    // Not reuse: the session lives on, and a new family can be issued.
    m.verify(&session_token).await.unwrap();
    m.issue_refresh(&sid).await.unwrap();
}

#[tokio::test]
async fn a_family_never_outlives_its_session_and_admins_get_shorter_ones() {
    let (_, _, m) = setup();
    // A user session without remember-me lives 12 h: so does its family (not 30 days).
    let (_, sid) = signed_in(&m).await;
    let issued = m.issue_refresh(&sid).await.unwrap();
    assert_eq!(
        issued.expires_at,
        m.now().plus(Duration::from_secs(12 * 3600))
    );
    // Remember-me: 30 days.
    let s = m
        .create(NewSession::user(alice()).with_remember(true))
        .await
        .unwrap();
    let issued = m.issue_refresh(&s.session.id).await.unwrap();
    assert_eq!(
        issued.expires_at,
        m.now().plus(Duration::from_secs(30 * 86_400))
    );
    // Admins: the role's 8 h.
    let mut policy = Policy::default();
    policy.roles.get_mut("admin").unwrap().absolute_timeout = Duration::from_secs(24 * 3600);
    let (_, _, b) = builder(policy);
    let m = b.build().unwrap();
    let s = m
        .create(NewSession::user(alice()).with_roles(["admin"]))
        .await
        .unwrap();
    let issued = m.issue_refresh(&s.session.id).await.unwrap();
    assert_eq!(
        issued.expires_at,
        m.now().plus(Duration::from_secs(8 * 3600))
    );
}

#[tokio::test]
async fn ending_the_session_makes_its_refresh_tokens_fail_at_once() {
    let (_, clock, m) = setup();
    // Logout.
    let (token, sid) = signed_in(&m).await;
    let t = m.issue_refresh(&sid).await.unwrap().token.encode();
    m.logout(&token).await.unwrap();
    assert_eq!(
        refusal(m.refresh(&t).await),
        RefreshRefusal::SessionEnded(None)
    );
    // And it stays refused (the family was revoked), without counting as reuse.
    clock.advance(secs(60));
    assert_eq!(
        m.refresh(&t).await.unwrap_err().reason(),
        Some("session_ended")
    );
    // Revoked by an administrator, or all of the user's sessions.
    let (_, sid) = signed_in(&m).await;
    let t = m.issue_refresh(&sid).await.unwrap().token.encode();
    m.end_session(&sid, EndReason::RevokedByAdmin)
        .await
        .unwrap();
    assert!(matches!(m.refresh(&t).await, Err(Error::RefreshRefused(_))));
    let (_, sid) = signed_in(&m).await;
    let t = m.issue_refresh(&sid).await.unwrap().token.encode();
    m.end_user_sessions(&alice(), None, EndReason::LoggedOut)
        .await
        .unwrap();
    assert!(matches!(m.refresh(&t).await, Err(Error::RefreshRefused(_))));
    // Expired, not yet swept: refused with the reason, and the session ends.
    let (token, sid) = signed_in(&m).await;
    let t = m.issue_refresh(&sid).await.unwrap().token.encode();
    clock.advance(secs(31 * 60));
    assert_eq!(
        refusal(m.refresh(&t).await),
        RefreshRefusal::SessionEnded(Some(EndReason::ExpiredIdle))
    );
    assert!(m.store().get(&sid).await.unwrap().is_none());
    assert_eq!(
        m.verify(&token).await.unwrap_err().reason(),
        Some("expired_idle")
    );
    // No family for a session that is gone.
    assert!(m.issue_refresh(&sid).await.is_err());
}

#[tokio::test]
async fn refreshing_counts_as_activity() {
    let (_, clock, m) = setup();
    let (token, sid) = signed_in(&m).await;
    let mut t = m.issue_refresh(&sid).await.unwrap().token.encode();
    // A client on access tokens never calls verify; it refreshes every 20
    // minutes for 2 hours, past the 30-minute idle timeout.
    for _ in 0..6 {
        clock.advance(secs(20 * 60));
        let r = m.refresh(&t).await.unwrap();
        assert_eq!(r.session.last_seen_at, m.now());
        t = r.token.encode();
    }
    m.status(&token).await.unwrap();
}

#[tokio::test]
async fn users_can_revoke_refresh_tokens_without_ending_the_session() {
    let (_, _, m) = setup();
    let mut events = m.subscribe();
    let (token, sid) = signed_in(&m).await;
    let issued = m.issue_refresh(&sid).await.unwrap();
    let t = issued.token.encode();
    assert_eq!(m.revoke_refresh(&t).await.unwrap(), Some(issued.family_id));
    assert_eq!(refusal(m.refresh(&t).await), RefreshRefusal::RevokedByUser);
    m.verify(&token).await.unwrap();
    assert!(drain(&mut events).contains(&EventKind::RefreshRevoked {
        family: issued.family_id
    }));
    // Unknown tokens are not an error.
    let unknown = sessionary_core::RefreshToken::generate().unwrap().encode();
    assert_eq!(m.revoke_refresh(&unknown).await.unwrap(), None);
    // All of a session's families at once.
    let a = m.issue_refresh(&sid).await.unwrap();
    let b = m.issue_refresh(&sid).await.unwrap();
    let mut revoked = m.revoke_session_refresh(&sid).await.unwrap();
    revoked.sort();
    let mut want = vec![a.family_id, b.family_id];
    want.sort();
    assert_eq!(revoked, want);
    for x in [a, b] {
        assert!(m.refresh(&x.token.encode()).await.is_err());
    }
    m.verify(&token).await.unwrap();
}

#[tokio::test]
async fn malformed_refresh_tokens_never_reach_the_store_and_unknown_ones_are_refused() {
    let (store, _, m) = setup();
    let before = store.calls();
    for bad in ["", "short", &"A".repeat(44), &"*".repeat(43)] {
        assert!(matches!(
            m.refresh(bad).await,
            Err(Error::MalformedToken(_))
        ));
        assert!(matches!(
            m.revoke_refresh(bad).await,
            Err(Error::MalformedToken(_))
        ));
    }
    assert_eq!(store.calls(), before);
    let unknown = sessionary_core::RefreshToken::generate().unwrap().encode();
    assert_eq!(refusal(m.refresh(&unknown).await), RefreshRefusal::Unknown);
    // A session token is not a refresh token.
    let (session_token, _) = signed_in(&m).await;
    assert_eq!(
        refusal(m.refresh(&session_token).await),
        RefreshRefusal::Unknown
    );
}

#[tokio::test]
async fn only_signed_in_sessions_get_refresh_tokens_and_tokens_are_never_printed() {
    let (_, _, m) = setup();
    let anon = m.create(NewSession::anonymous()).await.unwrap();
    assert!(matches!(
        m.issue_refresh(&anon.session.id).await,
        Err(Error::InvalidInput(_))
    ));
    let (_, sid) = signed_in(&m).await;
    let issued = m.issue_refresh(&sid).await.unwrap();
    let text = issued.token.encode();
    assert!(!format!("{issued:?}").contains(&text));
    let r = m.refresh(&text).await.unwrap();
    assert!(!format!("{r:?}").contains(&r.token.encode()));
}

#[tokio::test]
async fn a_sweep_forgets_expired_families() {
    let mut policy = Policy::default();
    policy.default.remember_idle_timeout = Duration::from_secs(30 * 86_400);
    policy.default.refresh_absolute_timeout = Duration::from_secs(3600);
    let (_, clock, b) = builder(policy);
    let m = b.build().unwrap();
    let s = m
        .create(NewSession::user(alice()).with_remember(true))
        .await
        .unwrap();
    let t = m.issue_refresh(&s.session.id).await.unwrap().token.encode();
    clock.advance(secs(3600));
    assert_eq!(refusal(m.refresh(&t).await), RefreshRefusal::Expired);
    m.sweep(100).await.unwrap();
    assert_eq!(refusal(m.refresh(&t).await), RefreshRefusal::Unknown);
}
