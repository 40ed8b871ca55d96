//! Two managers (two "nodes") on one store, joined by a `LocalFanout`: what
//! one node does reaches the other's subscribers, never its sinks, and a node
//! does not hear its own events twice.

// Test helpers outside #[test] fns: a panic is how they report a failure.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use sessionary_core::fanout::{Fanout, RemoteEvent};
use sessionary_core::{
    EndReason, Event, EventKind, EventSink, LocalFanout, MemoryStore, NewSession, SessionManager,
    UserId,
};
use tokio::sync::broadcast;
use tokio::time::timeout;

/// Upper bound for an event to arrive; a bound, not a sleep.
const WITHIN: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<String>>);

impl EventSink for Recorder {
    fn emit(&self, event: &Event) {
        self.0.lock().push(event.kind.name().to_owned());
    }
}

struct Nodes {
    a: SessionManager,
    b: SessionManager,
    a_sink: Arc<Recorder>,
    b_sink: Arc<Recorder>,
}

fn nodes(hub: &LocalFanout) -> Nodes {
    let store = Arc::new(MemoryStore::new());
    let a_sink = Arc::new(Recorder::default());
    let b_sink = Arc::new(Recorder::default());
    let a = SessionManager::builder(store.clone())
        .with_event_sink(a_sink.clone())
        .with_fanout(Arc::new(hub.clone()))
        .build()
        .unwrap();
    let b = SessionManager::builder(store)
        .with_event_sink(b_sink.clone())
        .with_fanout(Arc::new(hub.clone()))
        .build()
        .unwrap();
    Nodes {
        a,
        b,
        a_sink,
        b_sink,
    }
}

async fn next_ended(rx: &mut broadcast::Receiver<Arc<Event>>) -> Arc<Event> {
    loop {
        let e = timeout(WITHIN, rx.recv()).await.unwrap().unwrap();
        if matches!(e.kind, EventKind::Ended { .. }) {
            return e;
        }
    }
}

#[tokio::test]
async fn a_revocation_on_one_node_reaches_the_other_nodes_subscribers() {
    let hub = LocalFanout::new();
    let n = nodes(&hub);
    let mut on_a = n.a.subscribe();
    let issued =
        n.a.create(NewSession::user(UserId::new("alice").unwrap()))
            .await
            .unwrap();
    let token = issued.token.encode();
    n.b.verify(&token).await.unwrap();

    n.b.end_session(&issued.session.id, EndReason::RevokedByAdmin)
        .await
        .unwrap();
    let e = next_ended(&mut on_a).await;
    assert_eq!(e.session_id, Some(issued.session.id));
    assert_eq!(
        e.kind,
        EventKind::Ended {
            reason: EndReason::RevokedByAdmin
        }
    );
    // And node A refuses the token, with the reason.
    assert_eq!(
        n.a.verify(&token).await.unwrap_err().reason(),
        Some("revoked_by_admin")
    );
    // Each node's sinks saw only its own events.
    assert!(n.a_sink.0.lock().iter().all(|k| k != "ended"));
    assert!(n.b_sink.0.lock().iter().any(|k| k == "ended"));
    assert!(n.b_sink.0.lock().iter().all(|k| k != "created"));
}

#[tokio::test]
async fn a_node_hears_its_own_events_once() {
    let hub = LocalFanout::new();
    let n = nodes(&hub);
    let mut on_a = n.a.subscribe();
    let issued =
        n.a.create(NewSession::user(UserId::new("alice").unwrap()))
            .await
            .unwrap();
    n.a.logout(&issued.token.encode()).await.unwrap();
    next_ended(&mut on_a).await;
    // A marker from B: everything A published before it has come back by then.
    let marker =
        n.b.create(NewSession::user(UserId::new("bob").unwrap()))
            .await
            .unwrap();
    n.b.end_session(&marker.session.id, EndReason::RevokedByAdmin)
        .await
        .unwrap();
    let e = next_ended(&mut on_a).await;
    assert_eq!(
        e.session_id,
        Some(marker.session.id),
        "no second copy of A's own end"
    );
}

#[tokio::test]
async fn data_changes_cross_and_other_kinds_stay_home() {
    let hub = LocalFanout::new();
    let n = nodes(&hub);
    let mut on_b = n.b.subscribe();
    let alice = UserId::new("alice").unwrap();
    let issued = n.a.create(NewSession::user(alice.clone())).await.unwrap();
    n.a.update_user_data(&alice, None, |d| {
        d.insert("theme".into(), "dark".into());
    })
    .await
    .unwrap();
    let e = timeout(WITHIN, on_b.recv()).await.unwrap().unwrap();
    assert_eq!(e.kind, EventKind::UserDataChanged, "`created` is not sent");
    assert_eq!(e.user.as_ref(), Some(&alice));
    assert_eq!(e.ip, None, "no client address crosses");
    n.a.update_data(&issued.session.id, None, |d| {
        d.insert("cart".into(), 1.into());
    })
    .await
    .unwrap();
    let e = timeout(WITHIN, on_b.recv()).await.unwrap().unwrap();
    assert_eq!(e.kind, EventKind::DataChanged);
    assert_eq!(e.session_id, Some(issued.session.id));
}

#[tokio::test]
async fn lost_messages_reach_subscribers_as_events_missed() {
    let hub = LocalFanout::new();
    let n = nodes(&hub);
    let mut on_a = n.a.subscribe();
    // A transport that lost messages says so.
    hub.publish(RemoteEvent::missed(n.a.now()));
    let e = timeout(WITHIN, on_a.recv()).await.unwrap().unwrap();
    assert_eq!(e.kind, EventKind::EventsMissed);
    drop(n.b);
}

#[test]
fn a_fanout_needs_a_runtime() {
    let err = SessionManager::builder(Arc::new(MemoryStore::new()))
        .with_fanout(Arc::new(LocalFanout::new()))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("Tokio runtime"), "{err}");
}
