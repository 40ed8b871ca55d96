//! Lifecycle rules of `SessionManager`, with an injected clock.

// Test helpers: a panic is how a test fails.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sessionary_core::{
    Data, Device, EndReason, Error, EventKind, KeyRing, LimitMode, MemoryStore, MergeHook,
    MergeInto, MockClock, NewSession, Policy, Privilege, RolePolicy, SessionManager, SessionStore,
    SessionToken, UserId,
};
use sessionary_testkit::ProbeStore;

fn setup(policy: Policy) -> (Arc<ProbeStore>, MockClock, SessionManager) {
    let store = Arc::new(ProbeStore::new());
    let clock = MockClock::default();
    let m = SessionManager::builder(store.clone())
        .with_clock(Arc::new(clock.clone()))
        .with_policy(policy)
        .build()
        .unwrap();
    (store, clock, m)
}

fn alice() -> UserId {
    UserId::new("alice").unwrap()
}

fn mins(n: u64) -> Duration {
    Duration::from_secs(n * 60)
}

#[tokio::test]
async fn malformed_tokens_are_refused_before_any_store_access() {
    let (store, _, m) = setup(Policy::default());
    let good = SessionToken::generate().unwrap().encode();
    let mut bad_alphabet = good.clone();
    bad_alphabet.replace_range(0..1, "*");
    for bad in [
        String::new(),
        good[..42].to_string(),
        format!("{good}A"),
        bad_alphabet,
        "A".repeat(10 * 1024),
        "é".repeat(22),
    ] {
        for r in [
            m.verify(&bad).await,
            m.status(&bad).await,
            m.extend(&bad).await,
        ] {
            assert!(matches!(r, Err(Error::MalformedToken(_))), "{bad:?}: {r:?}");
        }
        assert!(matches!(
            m.logout(&bad).await,
            Err(Error::MalformedToken(_))
        ));
    }
    assert_eq!(
        store.calls(),
        0,
        "the store was asked about malformed input"
    );
}

#[tokio::test]
async fn unknown_tokens_never_create_anything() {
    let (store, _, m) = setup(Policy::default());
    let unknown = SessionToken::generate().unwrap().encode();
    let err = m.verify(&unknown).await.unwrap_err();
    assert!(matches!(err, Error::UnknownSession));
    assert_eq!(err.reason(), Some("unknown"));
    assert_eq!(store.writes(), 0);
    assert!(store.inner.is_empty());
    assert_eq!(m.logout(&unknown).await.unwrap(), None);
    assert!(store.inner.is_empty());
}

#[tokio::test]
async fn only_the_token_hash_reaches_the_store_and_data_is_sealed() {
    let (store, _, m) = setup(Policy::default());
    let mut data = Data::new();
    data.insert("secret_note".into(), json!("launch codes"));
    let issued = m
        .create(NewSession::user(alice()).with_data(data))
        .await
        .unwrap();
    let stored = store.inner.get(&issued.session.id).await.unwrap().unwrap();
    assert_eq!(stored.token_hash, issued.token.hash());
    let dump = serde_json::to_string(&*stored).unwrap();
    assert!(!dump.contains(&issued.token.encode()), "token stored");
    assert!(!dump.contains("launch codes"), "data stored in the clear");
    assert!(
        !stored
            .data
            .as_bytes()
            .windows(12)
            .any(|w| w == b"launch codes")
    );
    assert_eq!(
        m.data(&stored).unwrap().get("secret_note"),
        Some(&json!("launch codes"))
    );
}

#[tokio::test]
async fn idle_timeout_is_enforced_server_side() {
    let (_, clock, m) = setup(Policy::default());
    let t = m
        .create(NewSession::user(alice()))
        .await
        .unwrap()
        .token
        .encode();
    clock.advance(mins(29));
    m.verify(&t).await.unwrap();
    // Activity slides the idle deadline.
    clock.advance(mins(29));
    m.verify(&t).await.unwrap();
    clock.advance(mins(30));
    assert_eq!(
        m.verify(&t).await.unwrap_err().reason(),
        Some("expired_idle")
    );
    // And it stays dead, with its reason.
    assert_eq!(
        m.verify(&t).await.unwrap_err().reason(),
        Some("expired_idle")
    );
}

#[tokio::test]
async fn absolute_timeout_ends_even_an_active_session() {
    let (_, clock, m) = setup(Policy::default());
    let t = m
        .create(NewSession::user(alice()))
        .await
        .unwrap()
        .token
        .encode();
    for _ in 0..(12 * 60 / 20) - 1 {
        clock.advance(mins(20));
        m.verify(&t).await.unwrap();
    }
    clock.advance(mins(20));
    assert_eq!(
        m.verify(&t).await.unwrap_err().reason(),
        Some("expired_absolute")
    );
}

#[tokio::test]
async fn role_timeouts_admin_shorter_than_user() {
    let (_, clock, m) = setup(Policy::default());
    let user = m
        .create(NewSession::user(alice()).with_roles(["user"]))
        .await
        .unwrap()
        .token
        .encode();
    let admin = m
        .create(NewSession::user(UserId::new("root").unwrap()).with_roles(["user", "admin"]))
        .await
        .unwrap()
        .token
        .encode();
    clock.advance(mins(10));
    assert_eq!(
        m.verify(&admin).await.unwrap_err().reason(),
        Some("expired_idle")
    );
    m.verify(&user).await.unwrap();
}

#[tokio::test]
async fn remember_me_uses_its_own_longer_timeouts() {
    let (_, clock, m) = setup(Policy::default());
    let remembered = m
        .create(NewSession::user(alice()).with_remember(true))
        .await
        .unwrap();
    assert!(remembered.session.remember);
    let plain = m
        .create(NewSession::user(alice()))
        .await
        .unwrap()
        .token
        .encode();
    let remembered = remembered.token.encode();
    clock.advance(Duration::from_secs(6 * 86_400));
    m.verify(&remembered).await.unwrap();
    assert_eq!(
        m.verify(&plain).await.unwrap_err().reason(),
        Some("expired_idle")
    );
    // Idle 7 days passes without a request.
    clock.advance(Duration::from_secs(7 * 86_400));
    assert_eq!(
        m.verify(&remembered).await.unwrap_err().reason(),
        Some("expired_idle")
    );
    // Admins may not use remember-me: the flag is dropped.
    let admin = m
        .create(
            NewSession::user(alice())
                .with_roles(["admin"])
                .with_remember(true),
        )
        .await
        .unwrap();
    assert!(!admin.session.remember);
    assert_eq!(admin.session.idle_timeout_ms, 10 * 60_000);
}

#[tokio::test]
async fn remember_me_still_has_an_absolute_end() {
    let (_, clock, m) = setup(Policy::default());
    let t = m
        .create(NewSession::user(alice()).with_remember(true))
        .await
        .unwrap()
        .token
        .encode();
    for _ in 0..29 {
        clock.advance(Duration::from_secs(86_400));
        m.verify(&t).await.unwrap();
    }
    clock.advance(Duration::from_secs(86_400));
    assert_eq!(
        m.verify(&t).await.unwrap_err().reason(),
        Some("expired_absolute")
    );
}

#[tokio::test]
async fn sliding_touch_is_written_at_most_once_per_interval() {
    let (store, clock, m) = setup(Policy::default());
    let issued = m.create(NewSession::user(alice())).await.unwrap();
    let t = issued.token.encode();
    assert_eq!(issued.session.touch_interval_ms, 90_000, "1/20 of 30 min");
    let writes_before = store.writes();
    // 200 requests, one per second: 200 s, so a touch at 90 s and at 180 s only.
    let mut touches = 0;
    let mut last_seen = issued.session.last_seen_at;
    for _ in 0..200 {
        clock.advance(Duration::from_secs(1));
        let rec = m.verify(&t).await.unwrap();
        if rec.last_seen_at != last_seen {
            touches += 1;
            last_seen = rec.last_seen_at;
        }
    }
    assert_eq!(touches, 2);
    assert_eq!(store.writes(), writes_before, "verify used a write call");
    let rec = m.status(&t).await.unwrap();
    assert_eq!(
        rec.version, issued.session.version,
        "a touch bumped the version"
    );
    assert_eq!(rec.data, issued.session.data, "a touch rewrote data");
}

#[tokio::test]
async fn status_never_extends_the_session() {
    let (_, clock, m) = setup(Policy::default());
    let t = m
        .create(NewSession::user(alice()))
        .await
        .unwrap()
        .token
        .encode();
    for _ in 0..29 {
        clock.advance(mins(1));
        let s = m.status(&t).await.unwrap();
        assert_eq!(s.last_seen_at, s.created_at);
    }
    clock.advance(mins(1));
    assert_eq!(
        m.status(&t).await.unwrap_err().reason(),
        Some("expired_idle")
    );
}

#[tokio::test]
async fn extend_records_activity_at_once() {
    let (_, clock, m) = setup(Policy::default());
    let t = m
        .create(NewSession::user(alice()))
        .await
        .unwrap()
        .token
        .encode();
    clock.advance(mins(29));
    let s = m.extend(&t).await.unwrap();
    assert_eq!(s.last_seen_at, m.now());
    clock.advance(mins(29));
    m.status(&t).await.unwrap();
}

#[tokio::test]
async fn login_regenerates_and_keeps_the_anonymous_cart() {
    let (_, _, m) = setup(Policy::default());
    let anon = m.create(NewSession::anonymous()).await.unwrap();
    m.update_data(&anon.session.id, None, |d| {
        d.insert("cart".into(), json!([{"sku": "tea", "qty": 2}]));
    })
    .await
    .unwrap();
    let mut events = m.subscribe();
    let old = anon.token.encode();
    let signed = m
        .login(Some(&old), NewSession::user(alice()))
        .await
        .unwrap();
    assert_ne!(
        signed.session.id, anon.session.id,
        "a pre-login session is not promoted as is"
    );
    assert_eq!(
        m.verify(&old).await.unwrap_err().reason(),
        Some("regenerated")
    );
    let rec = m.verify(&signed.token.encode()).await.unwrap();
    assert_eq!(rec.user, Some(alice()));
    assert_eq!(
        m.data(&rec).unwrap()["cart"],
        json!([{"sku": "tea", "qty": 2}])
    );
    let mut kinds = Vec::new();
    while let Ok(e) = events.try_recv() {
        kinds.push(e.kind.clone());
    }
    assert!(kinds.contains(&EventKind::Created {
        authenticated: true
    }));
    assert!(kinds.contains(&EventKind::Ended {
        reason: EndReason::Regenerated
    }));
    assert!(kinds.contains(&EventKind::Regenerated {
        previous: Some(anon.session.id)
    }));
}

#[derive(Debug)]
struct CartMerge;

impl MergeHook for CartMerge {
    fn merge(&self, anonymous: Data, into: MergeInto<'_>) {
        let Some(serde_json::Value::Object(items)) = anonymous.get("cart") else {
            return;
        };
        let cart = into
            .user
            .entry("cart")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .unwrap();
        for (sku, qty) in items {
            let have = cart.get(sku).and_then(|v| v.as_u64()).unwrap_or(0);
            cart.insert(sku.clone(), json!(have + qty.as_u64().unwrap_or(0)));
        }
    }
}

#[tokio::test]
async fn merge_hook_merges_anonymous_cart_into_the_users_cart() {
    let store = Arc::new(MemoryStore::new());
    let m = SessionManager::builder(store)
        .with_merge_hook(Arc::new(CartMerge))
        .build()
        .unwrap();
    m.update_user_data(&alice(), None, |d| {
        d.insert("cart".into(), json!({"tea": 1, "mug": 1}));
    })
    .await
    .unwrap();
    let anon = m.create(NewSession::anonymous()).await.unwrap();
    m.update_data(&anon.session.id, None, |d| {
        d.insert("cart".into(), json!({"tea": 2, "cake": 1}));
    })
    .await
    .unwrap();
    m.login(Some(&anon.token.encode()), NewSession::user(alice()))
        .await
        .unwrap();
    let (_, data) = m.user_data(&alice()).await.unwrap();
    assert_eq!(data["cart"], json!({"tea": 3, "mug": 1, "cake": 1}));
}

#[tokio::test]
async fn another_users_session_data_is_not_carried() {
    let (_, _, m) = setup(Policy::default());
    let bob = m
        .create(NewSession::user(UserId::new("bob").unwrap()))
        .await
        .unwrap();
    m.update_data(&bob.session.id, None, |d| {
        d.insert("bobs".into(), json!(true));
    })
    .await
    .unwrap();
    let signed = m
        .login(Some(&bob.token.encode()), NewSession::user(alice()))
        .await
        .unwrap();
    assert!(m.data(&signed.session).unwrap().get("bobs").is_none());
    assert_eq!(
        m.verify(&bob.token.encode()).await.unwrap_err().reason(),
        Some("logged_out")
    );
}

#[tokio::test]
async fn refused_login_leaves_the_anonymous_session_intact() {
    let mut policy = Policy::default();
    policy.default.max_sessions = Some(1);
    policy.default.on_limit = LimitMode::RejectNew;
    let (_, _, m) = setup(policy);
    m.create(NewSession::user(alice())).await.unwrap();
    let anon = m.create(NewSession::anonymous()).await.unwrap();
    let err = m
        .login(Some(&anon.token.encode()), NewSession::user(alice()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::LimitReached { max: 1 }));
    assert_eq!(err.problem_type(), "session-limit");
    m.verify(&anon.token.encode()).await.unwrap();
}

#[tokio::test]
async fn privilege_change_regenerates_the_token() {
    let (_, clock, m) = setup(Policy::default());
    let issued = m.create(NewSession::user(alice())).await.unwrap();
    clock.advance(mins(1));
    let up = m
        .regenerate(
            &issued.session.id,
            Privilege {
                aal: Some(2),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(up.session.id, issued.session.id);
    assert_eq!(up.session.aal, 2);
    assert_eq!(up.session.auth_time, Some(m.now()));
    assert_eq!(
        m.verify(&issued.token.encode()).await.unwrap_err().reason(),
        Some("regenerated")
    );
    m.verify(&up.token.encode()).await.unwrap();
    // Anonymous sessions cannot be given privileges.
    let anon = m.create(NewSession::anonymous()).await.unwrap();
    let err = m
        .regenerate(
            &anon.session.id,
            Privilege {
                aal: Some(2),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)));
}

#[tokio::test]
async fn logout_everywhere_and_other_devices() {
    let (_, _, m) = setup(Policy::default());
    let a = m.create(NewSession::user(alice())).await.unwrap();
    let b = m.create(NewSession::user(alice())).await.unwrap();
    let c = m.create(NewSession::user(alice())).await.unwrap();
    let ended = m
        .end_user_sessions(&alice(), Some(&a.session.id), EndReason::RevokedByUser)
        .await
        .unwrap();
    assert_eq!(ended.len(), 2);
    for t in [&b.token, &c.token] {
        assert_eq!(
            m.verify(&t.encode()).await.unwrap_err().reason(),
            Some("revoked_by_user")
        );
    }
    m.verify(&a.token.encode()).await.unwrap();
    m.end_user_sessions(&alice(), None, EndReason::UserDisabled)
        .await
        .unwrap();
    assert_eq!(
        m.verify(&a.token.encode()).await.unwrap_err().reason(),
        Some("user_disabled")
    );
}

#[tokio::test]
async fn users_can_only_end_their_own_sessions() {
    let (_, _, m) = setup(Policy::default());
    let bob = m
        .create(NewSession::user(UserId::new("bob").unwrap()))
        .await
        .unwrap();
    let err = m
        .end_own_session(&alice(), &bob.session.id, EndReason::RevokedByUser)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound));
    m.verify(&bob.token.encode()).await.unwrap();
}

#[tokio::test]
async fn list_shows_devices_and_times() {
    let (_, clock, m) = setup(Policy::default());
    let dev = Device::new(
        Some("203.0.113.9".parse().unwrap()),
        Some("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605 Safari/605"),
    );
    m.create(NewSession::user(alice()).with_device(dev))
        .await
        .unwrap();
    clock.advance(mins(1));
    m.create(NewSession::user(alice())).await.unwrap();
    let list = m.list(&alice()).await.unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].device.label.as_deref(), Some("Safari on macOS"));
    assert_eq!(list[0].device.ip, Some("203.0.113.9".parse().unwrap()));
    assert!(list[0].created_at < list[1].created_at);
}

#[tokio::test]
async fn restore_is_offered_within_the_grace_period_only() {
    let policy = Policy {
        restore_ttl: mins(60),
        ..Policy::default()
    };
    let (_, clock, m) = setup(policy);
    let first = m.create(NewSession::user(alice())).await.unwrap();
    m.update_data(&first.session.id, None, |d| {
        d.insert("draft".into(), json!("hello"));
    })
    .await
    .unwrap();
    clock.advance(mins(31));
    assert_eq!(m.sweep(100).await.unwrap(), 1);
    let back = m.create(NewSession::user(alice())).await.unwrap();
    assert_eq!(back.restored_from, Some(first.session.id));
    assert_eq!(m.data(&back.session).unwrap()["draft"], json!("hello"));
    // Too late: nothing offered.
    let carol = UserId::new("carol").unwrap();
    let again = m.create(NewSession::user(carol.clone())).await.unwrap();
    m.update_data(&again.session.id, None, |d| {
        d.insert("x".into(), json!(1));
    })
    .await
    .unwrap();
    clock.advance(mins(31));
    // Carol's session and alice's second one both expired.
    assert_eq!(m.sweep(100).await.unwrap(), 2);
    clock.advance(mins(60));
    let late = m.create(NewSession::user(carol)).await.unwrap();
    assert_eq!(late.restored_from, None);
    assert!(m.data(&late.session).unwrap().is_empty());
}

#[tokio::test]
async fn version_precondition_is_enforced() {
    let (_, _, m) = setup(Policy::default());
    let s = m.create(NewSession::anonymous()).await.unwrap().session;
    let patch = json!({"a": 1}).as_object().unwrap().clone();
    let after = m.patch_data(&s.id, Some(s.version), &patch).await.unwrap();
    assert_eq!(after.version, s.version + 1);
    let err = m
        .patch_data(&s.id, Some(s.version), &patch)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::VersionConflict { current } if current == s.version + 1));
    assert_eq!(err.problem_type(), "session-conflict");
}

#[tokio::test]
async fn oversized_data_is_refused_and_changes_nothing() {
    let store = Arc::new(MemoryStore::new());
    let m = SessionManager::builder(store)
        .with_max_data_bytes(1024)
        .build()
        .unwrap();
    let s = m.create(NewSession::anonymous()).await.unwrap().session;
    let err = m
        .update_data(&s.id, None, |d| {
            d.insert("big".into(), json!("x".repeat(2000)));
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidData(_)));
    let now = m.session(&s.id).await.unwrap();
    assert_eq!(now.version, s.version);
}

#[tokio::test]
async fn key_rotation_keeps_old_data_readable() {
    let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    let k1 = KeyRing::generate(1).unwrap();
    let m1 = SessionManager::builder(store.clone())
        .with_keys(k1.clone())
        .build()
        .unwrap();
    let mut data = Data::new();
    data.insert("v".into(), json!(1));
    let s = m1
        .create(NewSession::anonymous().with_data(data))
        .await
        .unwrap()
        .session;
    assert_eq!(s.data.key_id(), Some(1));
    let k2 = KeyRing::generate(2)
        .unwrap()
        .with_key(1, k1.export_key(1).unwrap())
        .unwrap();
    let m2 = SessionManager::builder(store)
        .with_keys(k2)
        .build()
        .unwrap();
    assert_eq!(m2.data(&s).unwrap()["v"], json!(1));
    let after = m2
        .update_data(&s.id, None, |d| {
            d.insert("v".into(), json!(2));
        })
        .await
        .unwrap();
    assert_eq!(
        after.data.key_id(),
        Some(2),
        "re-sealed with the current key"
    );
}

#[tokio::test]
async fn invalid_input_is_refused() {
    let (_, _, m) = setup(Policy::default());
    assert!(matches!(
        m.create(NewSession::anonymous().with_roles(["admin"]))
            .await,
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        m.create(NewSession::user(alice()).with_aal(4)).await,
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        m.create(NewSession::user(alice()).with_roles(["x".repeat(65)]))
            .await,
        Err(Error::InvalidInput(_))
    ));
    let bad = Policy {
        default: RolePolicy {
            idle_timeout: mins(60),
            absolute_timeout: mins(30),
            ..RolePolicy::default()
        },
        ..Policy::default()
    };
    let err = SessionManager::builder(Arc::new(MemoryStore::new()))
        .with_policy(bad)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("policy.default"));
}

#[tokio::test]
async fn events_carry_ids_never_tokens() {
    let (_, clock, m) = setup(Policy::default());
    let mut rx = m.subscribe();
    let issued = m.create(NewSession::user(alice())).await.unwrap();
    clock.advance(mins(31));
    let _ = m.verify(&issued.token.encode()).await;
    let mut seen = Vec::new();
    while let Ok(e) = rx.try_recv() {
        let text = serde_json::to_string(&*e).unwrap();
        assert!(!text.contains(&issued.token.encode()));
        seen.push(e.kind.clone());
    }
    assert_eq!(
        seen,
        vec![
            EventKind::Created {
                authenticated: true
            },
            EventKind::Ended {
                reason: EndReason::ExpiredIdle
            }
        ]
    );
}
