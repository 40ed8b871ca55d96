//! The audit log: each security event leaves one entry in the store, with UTC
//! time, session id, user and IP, and never a token.

// Test helpers: a panic is how a test fails.
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use sessionary_core::audit::{AuditLog, AuditQuery, AuditRecord};
use sessionary_core::{
    BindingAction, BindingChange, Device, EndReason, Error, MemoryStore, Mismatch, MockClock,
    NewSession, Privilege, SessionManager, SessionStore, Timestamp, UserId,
};

/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000;

struct Setup {
    store: Arc<dyn SessionStore>,
    clock: MockClock,
    audit: Arc<AuditLog>,
    manager: SessionManager,
}

fn setup() -> Setup {
    let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    let clock = MockClock::new(T0);
    let audit = AuditLog::spawn(Arc::clone(&store), Arc::new(clock.clone()));
    let manager = SessionManager::builder(Arc::clone(&store))
        .with_clock(Arc::new(clock.clone()))
        .with_event_sink(audit.clone())
        .build()
        .unwrap();
    Setup {
        store,
        clock,
        audit,
        manager,
    }
}

fn alice() -> UserId {
    UserId::new("alice").unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn device() -> Device {
    Device::new(Some(ip("203.0.113.7")), Some("Mozilla/5.0 Firefox/128.0"))
}

fn sign_in() -> NewSession {
    NewSession::user(alice())
        .with_roles(["user"])
        .with_device(device())
}

impl Setup {
    /// Everything emitted so far, newest first.
    async fn entries(&self) -> Vec<AuditRecord> {
        self.audit.flush().await;
        self.store.audit(&AuditQuery::newest(1000)).await.unwrap()
    }

    async fn kinds(&self) -> Vec<(String, String)> {
        self.entries()
            .await
            .into_iter()
            .rev()
            .map(|r| (r.entry.kind, r.entry.detail))
            .collect()
    }
}

fn pair(kind: &str, detail: &str) -> (String, String) {
    (kind.to_owned(), detail.to_owned())
}

#[tokio::test]
async fn audit_create_has_utc_time_session_user_and_ip() {
    let s = setup();
    let issued = s.manager.create(sign_in()).await.unwrap();
    let e = s.entries().await;
    assert_eq!(e.len(), 1);
    let e = &e[0].entry;
    assert_eq!(e.kind, "created");
    assert_eq!(e.detail, "authenticated");
    assert_eq!(e.at, Timestamp(T0));
    assert_eq!(e.at.to_rfc3339(), "2026-01-01T00:00:00.000Z");
    assert_eq!(e.session_id, Some(issued.session.id));
    assert_eq!(e.user, Some(alice()));
    assert_eq!(e.ip, Some(ip("203.0.113.7")));
}

#[tokio::test]
async fn audit_login_from_anonymous_session_is_created_and_regenerated() {
    let s = setup();
    let anon = s
        .manager
        .create(NewSession::anonymous().with_device(device()))
        .await
        .unwrap();
    let token = anon.token.encode();
    let issued = s.manager.login(Some(&token), sign_in()).await.unwrap();
    let e = s.entries().await;
    let kinds: Vec<_> = e.iter().rev().map(|r| r.entry.kind.as_str()).collect();
    assert!(kinds.starts_with(&["created", "created"]), "{kinds:?}");
    assert!(kinds.contains(&"regenerated"), "{kinds:?}");
    let regen = e.iter().find(|r| r.entry.kind == "regenerated").unwrap();
    assert_eq!(regen.entry.session_id, Some(issued.session.id));
    assert_eq!(regen.entry.user, Some(alice()));
    assert_eq!(regen.entry.detail, anon.session.id.to_string());
}

#[tokio::test]
async fn audit_step_up_is_stepped_up_then_regenerated() {
    let s = setup();
    let issued = s.manager.create(sign_in()).await.unwrap();
    s.manager
        .regenerate(
            &issued.session.id,
            Privilege {
                aal: Some(2),
                reauthenticated: true,
                ..Privilege::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        s.kinds().await,
        [
            pair("created", "authenticated"),
            pair("stepped_up", "aal 2"),
            pair("regenerated", ""),
        ]
    );
}

#[tokio::test]
async fn audit_binding_mismatch_records_the_new_ip() {
    let s = setup();
    let issued = s.manager.create(sign_in()).await.unwrap();
    let seen = Device::new(Some(ip("198.51.100.9")), Some("Mozilla/5.0 Firefox/128.0"));
    let mismatch = Mismatch {
        change: BindingChange::Ip,
        action: BindingAction::StepUp,
    };
    s.manager
        .on_binding_mismatch(&issued.session, mismatch, seen)
        .await
        .unwrap();
    let e = s.entries().await;
    let m = &e[0].entry;
    assert_eq!(m.kind, "binding_mismatch");
    assert_eq!(m.detail, "ip/step_up");
    assert_eq!(m.ip, Some(ip("198.51.100.9")));
    assert_eq!(m.session_id, Some(issued.session.id));
    assert_eq!(m.user, Some(alice()));
}

#[tokio::test]
async fn audit_logout_and_admin_revoke_are_ended_with_reason() {
    let s = setup();
    let a = s.manager.create(sign_in()).await.unwrap();
    let b = s.manager.create(sign_in()).await.unwrap();
    s.clock.advance(Duration::from_secs(5));
    s.manager.logout(&a.token.encode()).await.unwrap();
    s.manager
        .end_session(&b.session.id, EndReason::RevokedByAdmin)
        .await
        .unwrap();
    let e = s.entries().await;
    assert_eq!(e[1].entry.kind, "ended");
    assert_eq!(e[1].entry.detail, "logged_out");
    assert_eq!(e[1].entry.session_id, Some(a.session.id));
    assert_eq!(e[1].entry.at, Timestamp(T0 + 5000));
    assert_eq!(e[0].entry.kind, "ended");
    assert_eq!(e[0].entry.detail, "revoked_by_admin");
    assert_eq!(e[0].entry.session_id, Some(b.session.id));
}

#[tokio::test]
async fn audit_idle_expiry_found_by_verify() {
    let s = setup();
    let a = s.manager.create(sign_in()).await.unwrap();
    s.clock.advance(Duration::from_secs(31 * 60));
    let err = s.manager.verify(&a.token.encode()).await.unwrap_err();
    assert_eq!(err.reason(), Some("expired_idle"));
    let e = s.entries().await;
    assert_eq!(e[0].entry.kind, "ended");
    assert_eq!(e[0].entry.detail, "expired_idle");
    assert_eq!(e[0].entry.session_id, Some(a.session.id));
    assert_eq!(e[0].entry.user, Some(alice()));
}

#[tokio::test]
async fn audit_refresh_reuse_revokes_and_ends() {
    let s = setup();
    let a = s.manager.create(sign_in()).await.unwrap();
    let first = s.manager.issue_refresh(&a.session.id).await.unwrap();
    let spent = first.token.encode();
    s.manager.refresh(&spent).await.unwrap();
    // Past the grace window: the spent token is reuse.
    s.clock.advance(Duration::from_secs(11));
    assert!(s.manager.refresh(&spent).await.is_err());
    let family = first.family_id.to_string();
    assert_eq!(
        s.kinds().await,
        [
            pair("created", "authenticated"),
            pair("refresh_issued", &family),
            pair("refresh_reused", &family),
            pair("ended", "refresh_reused"),
        ],
        "rotation (`refreshed`) is not audited"
    );
}

#[tokio::test]
async fn audit_failed_verification_has_client_ip() {
    let s = setup();
    let err = s.manager.verify("not-a-token").await.unwrap_err();
    s.manager.report_failure(Some(ip("192.0.2.1")), &err);
    s.manager
        .report_failure(Some(ip("192.0.2.1")), &Error::UnknownSession);
    let e = s.entries().await;
    assert_eq!(e.len(), 2);
    assert_eq!(e[1].entry.kind, "verify_failed");
    assert_eq!(e[1].entry.detail, "malformed");
    assert_eq!(e[0].entry.detail, "unknown_session");
    assert_eq!(e[0].entry.ip, Some(ip("192.0.2.1")));
    assert_eq!(e[0].entry.session_id, None);
}

#[tokio::test]
async fn audit_failed_verifications_are_rate_limited_per_ip() {
    let s = setup();
    let attacker = Some(ip("192.0.2.66"));
    for _ in 0..50 {
        s.manager.report_failure(attacker, &Error::UnknownSession);
    }
    s.manager
        .report_failure(Some(ip("192.0.2.7")), &Error::UnknownSession);
    let failed = |e: &[AuditRecord], who: Option<IpAddr>| {
        e.iter()
            .filter(|r| r.entry.kind == "verify_failed" && r.entry.ip == who)
            .count()
    };
    let e = s.entries().await;
    assert_eq!(failed(&e, attacker), AuditLog::PER_IP_PER_MINUTE as usize);
    assert_eq!(
        failed(&e, Some(ip("192.0.2.7"))),
        1,
        "another IP is recorded"
    );

    // A minute later: a summary of what was left out, and the IP counts again.
    s.clock.advance(Duration::from_secs(60));
    s.manager.report_failure(attacker, &Error::UnknownSession);
    let e = s.entries().await;
    assert_eq!(
        failed(&e, attacker),
        AuditLog::PER_IP_PER_MINUTE as usize + 1
    );
    let summary = e
        .iter()
        .find(|r| r.entry.kind == "verify_failed_suppressed")
        .unwrap();
    assert_eq!(summary.entry.detail, "45");
    assert!(s.audit.dropped() == 0);
}

#[tokio::test]
async fn audit_failed_verifications_have_a_global_cap() {
    let s = setup();
    for i in 0..=255u8 {
        s.manager
            .report_failure(Some(IpAddr::from([10, 0, 0, i])), &Error::UnknownSession);
    }
    let e = s.entries().await;
    assert_eq!(e.len(), AuditLog::GLOBAL_PER_MINUTE as usize);
}

#[tokio::test]
async fn audit_not_audited_kinds_leave_no_entry() {
    let s = setup();
    let a = s.manager.create(sign_in()).await.unwrap();
    s.manager.extend(&a.token.encode()).await.unwrap();
    s.manager
        .update_data(&a.session.id, None, |d| {
            d.insert("cart".into(), "[]".into());
        })
        .await
        .unwrap();
    assert_eq!(s.kinds().await, [pair("created", "authenticated")]);
}

#[tokio::test]
async fn audit_entries_never_contain_a_token() {
    let s = setup();
    let anon = s.manager.create(NewSession::anonymous()).await.unwrap();
    let a = s
        .manager
        .login(Some(&anon.token.encode()), sign_in())
        .await
        .unwrap();
    let refresh = s.manager.issue_refresh(&a.session.id).await.unwrap();
    let next = s.manager.refresh(&refresh.token.encode()).await.unwrap();
    let b = s
        .manager
        .regenerate(
            &a.session.id,
            Privilege {
                aal: Some(2),
                reauthenticated: true,
                ..Privilege::default()
            },
        )
        .await
        .unwrap();
    let old = a.token.encode();
    let err = s.manager.verify(&old).await.unwrap_err();
    s.manager.report_failure(Some(ip("192.0.2.1")), &err);
    s.manager.logout(&b.token.encode()).await.unwrap();
    let e = s.entries().await;
    assert!(e.len() >= 7, "{e:?}");
    let json = serde_json::to_string(&e).unwrap();
    for secret in [
        anon.token.encode(),
        old,
        b.token.encode(),
        refresh.token.encode(),
        next.token.encode(),
        a.token.hash().encode(),
        refresh.token.hash().encode(),
    ] {
        assert!(!json.contains(&secret), "{secret} in {json}");
    }
}
