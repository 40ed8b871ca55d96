//! Conformance cases for the audit log. Each takes a fresh, empty store.

use std::net::IpAddr;
use std::sync::Arc;

use sessionary_core::audit::{AuditEntry, AuditQuery};
use sessionary_core::{SessionId, SessionStore, Timestamp, UserId};

type Store = Arc<dyn SessionStore>;

const T0: Timestamp = Timestamp(1_767_225_600_000);

fn entry(at: Timestamp, kind: &str, sid: Option<SessionId>, user: Option<&str>) -> AuditEntry {
    AuditEntry {
        at,
        kind: kind.to_owned(),
        session_id: sid,
        user: user.map(|u| UserId::new(u).unwrap()),
        ip: Some(IpAddr::from([203, 0, 113, 7])),
        detail: format!("{kind} detail"),
    }
}

fn query(limit: usize) -> AuditQuery {
    AuditQuery::newest(limit)
}

/// Entries come back exactly as written, newest first, with increasing
/// sequence numbers; an IPv6 address and absent fields survive.
pub async fn audit_append_and_query_newest_first(store: Store) {
    let sid = SessionId::generate().unwrap();
    let mut anonymous = entry(T0.add_millis(2), "verify_failed", None, None);
    anonymous.ip = Some("2001:db8::1".parse().unwrap());
    let written = vec![
        entry(T0, "created", Some(sid), Some("alice")),
        entry(T0.add_millis(1), "ended", Some(sid), Some("alice")),
        anonymous,
    ];
    store.append_audit(written.clone()).await.unwrap();
    store.append_audit(Vec::new()).await.unwrap();
    let got = store.audit(&query(10)).await.unwrap();
    assert_eq!(got.len(), 3);
    let entries: Vec<_> = got.iter().map(|r| r.entry.clone()).collect();
    assert_eq!(entries, written.into_iter().rev().collect::<Vec<_>>());
    assert!(got.windows(2).all(|w| w[0].seq > w[1].seq), "{got:?}");
}

/// Filters by user, by session and by kind, alone and together.
pub async fn audit_query_filters(store: Store) {
    let a = SessionId::generate().unwrap();
    let b = SessionId::generate().unwrap();
    store
        .append_audit(vec![
            entry(T0, "created", Some(a), Some("alice")),
            entry(T0, "created", Some(b), Some("bob")),
            entry(T0, "ended", Some(a), Some("alice")),
            entry(T0, "verify_failed", None, None),
        ])
        .await
        .unwrap();
    let alice = store
        .audit(&query(10).with_user(UserId::new("alice").unwrap()))
        .await
        .unwrap();
    assert_eq!(alice.len(), 2);
    assert!(
        alice
            .iter()
            .all(|r| r.entry.user.as_ref().unwrap().as_str() == "alice")
    );
    assert_eq!(alice[0].entry.kind, "ended");

    let by_session = store
        .audit(&AuditQuery {
            session_id: Some(b),
            ..query(10)
        })
        .await
        .unwrap();
    assert_eq!(by_session.len(), 1);
    assert_eq!(by_session[0].entry.session_id, Some(b));

    let by_kind = store
        .audit(&AuditQuery {
            kind: Some("created".into()),
            ..query(10)
        })
        .await
        .unwrap();
    assert_eq!(by_kind.len(), 2);

    let both = store
        .audit(&AuditQuery {
            kind: Some("created".into()),
            user: Some(UserId::new("alice").unwrap()),
            ..query(10)
        })
        .await
        .unwrap();
    assert_eq!(both.len(), 1);
    assert_eq!(both[0].entry.session_id, Some(a));

    let none = store
        .audit(&query(10).with_user(UserId::new("carol").unwrap()))
        .await
        .unwrap();
    assert!(none.is_empty());
}

/// `limit` caps a page and `before` (the last `seq` seen) pages on, with no
/// entry seen twice or skipped.
pub async fn audit_cursor_paging_and_limit(store: Store) {
    let entries: Vec<_> = (0..25)
        .map(|i| entry(T0.add_millis(i), "created", None, Some("alice")))
        .collect();
    store.append_audit(entries[..10].to_vec()).await.unwrap();
    store.append_audit(entries[10..].to_vec()).await.unwrap();
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .audit(&AuditQuery {
                before,
                ..query(10)
            })
            .await
            .unwrap();
        assert!(page.len() <= 10);
        let Some(last) = page.last() else { break };
        before = Some(last.seq);
        seen.extend(page.iter().map(|r| r.entry.at.0 - T0.0));
    }
    assert_eq!(seen, (0..25).rev().collect::<Vec<_>>());
    assert!(store.audit(&query(0)).await.unwrap().is_empty());
}

/// The retention sweep forgets entries older than the cutoff, at most `max`
/// at a time, and never reuses a sequence number.
pub async fn audit_sweep_forgets_old_entries(store: Store) {
    let entries: Vec<_> = (0..10)
        .map(|i| entry(T0.add_millis(i * 1000), "created", None, Some("alice")))
        .collect();
    store.append_audit(entries).await.unwrap();
    let newest = store.audit(&query(1)).await.unwrap()[0].seq;
    // Older than T0 + 6 s: six entries, at most four at once.
    assert_eq!(store.sweep_audit(T0.add_millis(6000), 4).await.unwrap(), 4);
    assert_eq!(store.sweep_audit(T0.add_millis(6000), 4).await.unwrap(), 2);
    assert_eq!(store.sweep_audit(T0.add_millis(6000), 4).await.unwrap(), 0);
    let left = store.audit(&query(100)).await.unwrap();
    assert_eq!(left.len(), 4);
    assert!(left.iter().all(|r| r.entry.at >= T0.add_millis(6000)));
    // Everything gone, then a new entry: its number is still higher.
    assert_eq!(
        store.sweep_audit(T0.add_millis(60_000), 100).await.unwrap(),
        4
    );
    store
        .append_audit(vec![entry(T0, "ended", None, Some("alice"))])
        .await
        .unwrap();
    let after = store.audit(&query(10)).await.unwrap();
    assert_eq!(after.len(), 1);
    assert!(after[0].seq > newest, "{} <= {newest}", after[0].seq);
}
