//! `PgFanout`: two nodes (two managers, each with its own `SqlStore` on the
//! same PostgreSQL schema and its own `PgFanout`) share revocations and data
//! changes through `LISTEN/NOTIFY`. Needs PostgreSQL (see `postgres.rs` for
//! the URL and the skip/fail rule).

// Test code: a panic is how a check reports a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use sessionary_core::{EndReason, EventKind, NewSession, SessionManager, UserId};
use sessionary_sql::PgFanout;
use tokio::time::timeout;

const WITHIN: Duration = Duration::from_secs(2);

fn url() -> String {
    std::env::var("SESSIONARY_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A channel of its own per test run, so parallel runs do not hear each other.
fn channel() -> String {
    let id = sessionary_core::SessionId::generate().unwrap();
    let hex: String = id.0.iter().map(|b| format!("{b:02x}")).collect();
    format!("sessionary_test_{hex}")
}

/// Both fanouts, or `None` (with the reason printed) when PostgreSQL is not
/// there outside CI.
async fn fanouts(channel: &str) -> Option<(PgFanout, PgFanout)> {
    match PgFanout::connect(&url(), channel).await {
        Ok(a) => Some((a, PgFanout::connect(&url(), channel).await.unwrap())),
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("PostgreSQL is required in CI ({}): {e}", url())
        }
        Err(e) => {
            eprintln!("SKIPPED: PostgreSQL not reachable at {}: {e}", url());
            None
        }
    }
}

#[tokio::test]
async fn revocations_and_data_changes_reach_the_other_node() {
    let channel = channel();
    let Some((fa, fb)) = fanouts(&channel).await else {
        return;
    };
    // One shared store is enough here: what is tested is the fanout.
    let store = Arc::new(sessionary_core::MemoryStore::new());
    let a = SessionManager::builder(store.clone())
        .with_fanout(Arc::new(fa))
        .build()
        .unwrap();
    let b = SessionManager::builder(store)
        .with_fanout(Arc::new(fb))
        .build()
        .unwrap();
    let mut on_a = a.subscribe();
    let alice = UserId::new("alice").unwrap();
    let issued = a.create(NewSession::user(alice.clone())).await.unwrap();

    // Propagation delay of 200 revocations, B to A.
    let mut delays = Vec::new();
    for _ in 0..200 {
        let s = b.create(NewSession::user(alice.clone())).await.unwrap();
        let sent = Instant::now();
        b.end_session(&s.session.id, EndReason::RevokedByAdmin)
            .await
            .unwrap();
        loop {
            let e = timeout(WITHIN, on_a.recv()).await.unwrap().unwrap();
            if e.session_id == Some(s.session.id) && matches!(e.kind, EventKind::Ended { .. }) {
                delays.push(sent.elapsed());
                break;
            }
        }
    }
    delays.sort();
    println!(
        "PgFanout revocation B -> A: p50 {:?}, p99 {:?}, max {:?} (200 events)",
        delays[100], delays[197], delays[199]
    );

    b.update_user_data(&alice, None, |d| {
        d.insert("theme".into(), "dark".into());
    })
    .await
    .unwrap();
    loop {
        let e = timeout(WITHIN, on_a.recv()).await.unwrap().unwrap();
        if e.kind == EventKind::UserDataChanged {
            assert_eq!(e.user.as_ref(), Some(&alice));
            break;
        }
    }
    drop(issued);
}

#[tokio::test]
async fn invalid_channel_names_are_refused() {
    for bad in ["", "has space", "semi;colon", &"x".repeat(64)] {
        assert!(PgFanout::connect(&url(), bad).await.is_err(), "{bad:?}");
    }
}
