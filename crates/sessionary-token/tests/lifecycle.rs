//! Issuing, lifetimes, key rotation, JWKS, persistence and revocation.

mod common;

use std::sync::Arc;
use std::time::Duration;

use sessionary_core::{
    Clock, EndReason, Event, EventKind, MockClock, NewSession, Privilege, SessionId, Timestamp,
    UserId,
};
use sessionary_token::{
    AccessTokenError, AccessTokens, KeyRing, REVOCATION_TTL, Revocations, SigningAlg, SigningKey,
};
use tokio::sync::broadcast;

use common::*;

#[tokio::test]
async fn anonymous_and_dead_sessions_get_no_token() {
    let f = fixture(SigningAlg::EdDsa);
    let anon = f
        .manager
        .create(NewSession::anonymous())
        .await
        .expect("anon");
    assert!(matches!(
        f.tokens.issue(&anon.session),
        Err(AccessTokenError::Anonymous)
    ));
    let s = session(&f.manager, &[]).await;
    f.clock.advance(Duration::from_secs(13 * 3600));
    assert!(matches!(
        f.tokens.issue(&s),
        Err(AccessTokenError::SessionNotLive)
    ));
}

#[tokio::test]
async fn lifetime_per_role_strictest_wins_within_5_to_15_minutes() {
    let f = fixture_with(SigningAlg::EdDsa, |b| {
        b.with_default_ttl(Duration::from_secs(12 * 60))
            .with_role_ttl("admin", Duration::from_secs(5 * 60))
            .with_role_ttl("support", Duration::from_secs(8 * 60))
            .with_role_ttl("short", Duration::from_secs(10))
            .with_role_ttl("long", Duration::from_secs(3600))
    });
    let lifetime = |roles: &[&str]| {
        let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
        f.tokens.ttl_for(&roles).as_secs()
    };
    assert_eq!(lifetime(&[]), 12 * 60);
    assert_eq!(lifetime(&["user"]), 12 * 60);
    assert_eq!(lifetime(&["support"]), 8 * 60);
    assert_eq!(lifetime(&["support", "admin"]), 5 * 60);
    assert_eq!(lifetime(&["short"]), 5 * 60, "raised to 5 min");
    assert_eq!(lifetime(&["long"]), 15 * 60, "lowered to 15 min");
    let s = session(&f.manager, &["user", "support"]).await;
    let c = f
        .tokens
        .verify(&f.tokens.issue(&s).expect("issue").token)
        .expect("verify");
    assert_eq!(c.exp - c.iat, 8 * 60);
    assert_eq!(
        f.tokens.retired_key_window(),
        Duration::from_secs(15 * 60 + 30)
    );
}

#[tokio::test]
async fn a_token_never_outlives_its_session() {
    let f = fixture(SigningAlg::EdDsa);
    let s = session(&f.manager, &[]).await;
    // Two minutes before the absolute expiry, a 10-minute token is cut to 2 minutes.
    f.clock.set(s.absolute_expires_at.add_millis(-120_000));
    let mut s2 = s.clone();
    s2.last_seen_at = f.clock.now();
    let at = f.tokens.issue(&s2).expect("issue");
    assert_eq!(at.expires_at, s.absolute_expires_at);
}

#[tokio::test]
async fn rotation_keeps_old_tokens_inside_the_window_only() {
    let f = fixture(SigningAlg::EdDsa);
    let s = session(&f.manager, &[]).await;
    let old = f.tokens.issue(&s).expect("issue");
    let new_key = SigningKey::generate(SigningAlg::Es256).expect("key");
    f.tokens.rotate(new_key.clone()).expect("rotate");
    let rotated_at = f.clock.now();

    // New tokens are signed by the new key.
    let new = f.tokens.issue(&s).expect("issue");
    let h = jsonwebtoken::decode_header(&new.token).expect("header");
    assert_eq!(h.kid.as_deref(), Some(new_key.kid()));
    assert_eq!(h.alg, jsonwebtoken::Algorithm::ES256);
    // Both keys are published.
    assert_eq!(f.tokens.jwks()["keys"].as_array().map(Vec::len), Some(2));
    assert_eq!(f.tokens.jwks()["keys"][0]["kid"], new_key.kid());

    // The old key's token verifies until it expires...
    f.clock.advance(Duration::from_secs(9 * 60));
    assert_eq!(reason(f.tokens.verify(&old.token)), "accepted");
    // ... and a token signed by the old key, still in its window, too (e.g. by
    // another instance that had not rotated yet).
    let late = forge(&f.key, &good_header(&f.key), &good_claims(&f.clock, &s));
    assert_eq!(reason(f.tokens.verify(&late)), "accepted");
    // After the window (longest lifetime + leeway) the old key verifies nothing.
    f.clock.set(rotated_at.plus(f.tokens.retired_key_window()));
    let late = forge(&f.key, &good_header(&f.key), &good_claims(&f.clock, &s));
    assert_eq!(reason(f.tokens.verify(&late)), "key_retired");
    assert_eq!(f.tokens.jwks()["keys"].as_array().map(Vec::len), Some(1));
    // Pruned, it is unknown.
    assert_eq!(f.tokens.prune(), 1);
    assert_eq!(reason(f.tokens.verify(&late)), "unknown_key");
    assert_eq!(f.tokens.key_ring().len(), 1);
    // The new key keeps working.
    let fresh = f.tokens.issue(&s).expect("issue");
    assert_eq!(reason(f.tokens.verify(&fresh.token)), "accepted");
}

#[test]
fn rotating_to_a_kid_already_in_the_ring_is_refused() {
    let key = SigningKey::generate(SigningAlg::EdDsa).expect("key");
    let mut ring = KeyRing::new(key.clone());
    assert!(ring.rotate(key, Timestamp(0)).is_err());
}

#[test]
fn jwks_publishes_public_keys_only() {
    let ed = SigningKey::generate(SigningAlg::EdDsa).expect("key");
    let ec = SigningKey::generate(SigningAlg::Es256).expect("key");
    let hs = SigningKey::generate(SigningAlg::Hs256).expect("key");
    let mut ring = KeyRing::new(ed.clone());
    ring.rotate(ec.clone(), Timestamp(1)).expect("rotate");
    ring.rotate(hs.clone(), Timestamp(2)).expect("rotate");
    let jwks = ring.jwks();
    let keys = jwks["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 2, "the HS256 secret is not published");
    let text = jwks.to_string();
    assert!(!text.contains(hs.kid()));
    assert!(!text.contains("\"d\""), "no private parts");
    assert_eq!(keys[0]["kid"], ec.kid());
    assert_eq!(keys[0]["kty"], "EC");
    assert_eq!(keys[0]["crv"], "P-256");
    assert_eq!(keys[0]["alg"], "ES256");
    assert_eq!(keys[0]["use"], "sig");
    assert_eq!(keys[0]["x"].as_str().map(str::len), Some(43));
    assert_eq!(keys[0]["y"].as_str().map(str::len), Some(43));
    assert_eq!(keys[1]["kid"], ed.kid());
    assert_eq!(keys[1]["kty"], "OKP");
    assert_eq!(keys[1]["crv"], "Ed25519");
    assert_eq!(keys[1]["alg"], "EdDSA");
    assert_eq!(keys[1]["use"], "sig");
    assert_eq!(keys[1]["x"].as_str().map(str::len), Some(43));
    // A resource server can verify our tokens from the JWKS alone (jsonwebtoken's own path).
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks.clone()).expect("jwk set");
    for jwk in &set.keys {
        jsonwebtoken::DecodingKey::from_jwk(jwk).expect("decoding key");
    }
}

#[tokio::test]
async fn a_resource_server_verifies_with_the_jwks() {
    for alg in [SigningAlg::EdDsa, SigningAlg::Es256] {
        let f = fixture(alg);
        let s = session(&f.manager, &[]).await;
        let at = f.tokens.issue(&s).expect("issue");
        let set: jsonwebtoken::jwk::JwkSet =
            serde_json::from_value(f.tokens.jwks()).expect("jwk set");
        let jwk = set.find(f.key.kid()).expect("kid");
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk).expect("key");
        let mut v = jsonwebtoken::Validation::new(jwt_alg(alg));
        v.set_audience(&[AUD]);
        v.set_issuer(&[ISS]);
        v.validate_exp = false; // The mock clock is in 2026-01.
        v.required_spec_claims.clear();
        jsonwebtoken::decode::<serde_json::Value>(&at.token, &key, &v).expect("decodes");
    }
}

#[test]
fn hmac_secrets_must_be_256_bits_and_random() {
    assert!(SigningKey::from_secret("k", SigningAlg::Hs256, &[7u8; 31]).is_err());
    assert!(SigningKey::from_secret("k", SigningAlg::Hs256, &[7u8; 64]).is_err());
    let mut good = [0u8; 32];
    sessionary_core::token::fill_random(&mut good).expect("random");
    assert!(SigningKey::from_secret("k", SigningAlg::Hs256, &good).is_ok());
    let generated = SigningKey::generate(SigningAlg::Hs256).expect("key");
    assert_eq!(generated.secret_bytes().len(), 32);
    assert!(generated.public_jwk().is_none());
}

#[test]
fn keys_must_match_their_algorithm_and_kid_rules() {
    let ed = SigningKey::generate(SigningAlg::EdDsa).expect("key");
    let ec = SigningKey::generate(SigningAlg::Es256).expect("key");
    assert!(SigningKey::from_secret("k", SigningAlg::Es256, ed.secret_bytes()).is_err());
    assert!(SigningKey::from_secret("k", SigningAlg::EdDsa, ec.secret_bytes()).is_err());
    assert!(SigningKey::from_secret("k", SigningAlg::EdDsa, b"not a key").is_err());
    for kid in ["", "a:b", "a/b", "a b", &"k".repeat(65)] {
        assert!(SigningKey::from_secret(kid, SigningAlg::EdDsa, ed.secret_bytes()).is_err());
    }
    // Debug never shows the secret.
    let hs = SigningKey::generate(SigningAlg::Hs256).expect("key");
    let dbg = format!("{hs:?}");
    assert!(dbg.contains("REDACTED"));
    assert!(!dbg.contains(&common::b64(hs.secret_bytes())));
}

#[tokio::test]
async fn key_ring_text_round_trips_and_keeps_verifying() {
    let f = fixture(SigningAlg::EdDsa);
    let s = session(&f.manager, &[]).await;
    let old = f.tokens.issue(&s).expect("issue");
    f.tokens
        .rotate(SigningKey::generate(SigningAlg::Hs256).expect("key"))
        .expect("rotate");
    let text = f.tokens.key_ring().to_text();
    assert_eq!(text.lines().count(), 2);
    assert!(
        text.lines()
            .nth(1)
            .is_some_and(|l| l.split(':').count() == 4)
    );
    let ring: KeyRing = format!("# keys\n\n{text}").parse().expect("parse");
    let again = AccessTokens::builder(ISS, AUD, ring)
        .with_clock(Arc::new(f.clock.clone()))
        .build()
        .expect("tokens");
    assert_eq!(reason(again.verify(&old.token)), "accepted");
    let new = f.tokens.issue(&s).expect("issue");
    assert_eq!(reason(again.verify(&new.token)), "accepted");
    // Broken files are refused with a reason.
    for bad in [
        "",
        "kid:EdDSA",
        "kid:RS256:AAAA",
        "kid:EdDSA:!!!",
        "kid:EdDSA:AAAA",
        "kid:EdDSA:AAAA:xyz",
    ] {
        assert!(bad.parse::<KeyRing>().is_err(), "{bad}");
    }
    let current = text.lines().next().expect("line");
    assert!(
        format!("{current}\n{current}").parse::<KeyRing>().is_err(),
        "two current keys"
    );
    assert!(
        format!("{current}\n{current}:5")
            .parse::<KeyRing>()
            .is_err(),
        "a kid twice"
    );
}

#[tokio::test]
async fn a_revoked_session_is_refused_right_after_the_event() {
    let f = fixture(SigningAlg::EdDsa);
    let issued = f
        .manager
        .create(NewSession::user(UserId::new("alice").expect("user")))
        .await
        .expect("create");
    let other = session(&f.manager, &[]).await;
    let at = f.tokens.issue(&issued.session).expect("issue");
    let other_at = f.tokens.issue(&other).expect("issue");
    assert_eq!(reason(f.tokens.verify(&at.token)), "accepted");
    f.manager
        .logout(&issued.token.encode())
        .await
        .expect("logout");
    // No await in between: the sink ran inside `logout`.
    assert_eq!(reason(f.tokens.verify(&at.token)), "revoked");
    assert_eq!(reason(f.tokens.verify(&other_at.token)), "accepted");
    // And it gets no new token either.
    assert!(matches!(
        f.tokens.issue(&issued.session),
        Err(AccessTokenError::Revoked)
    ));
    // Ended by an administrator: same.
    f.manager
        .end_session(&other.id, EndReason::RevokedByAdmin)
        .await
        .expect("end");
    assert_eq!(reason(f.tokens.verify(&other_at.token)), "revoked");
}

#[tokio::test]
async fn regeneration_does_not_revoke_but_sign_in_ends_the_old_id() {
    let f = fixture(SigningAlg::EdDsa);
    let issued = f
        .manager
        .create(NewSession::user(UserId::new("alice").expect("user")))
        .await
        .expect("create");
    let at = f.tokens.issue(&issued.session).expect("issue");
    // A privilege change keeps the id: its tokens stay valid.
    let re = f
        .manager
        .regenerate(
            &issued.session.id,
            Privilege {
                aal: Some(2),
                ..Privilege::default()
            },
        )
        .await
        .expect("regenerate");
    assert_eq!(re.session.id, issued.session.id);
    assert_eq!(reason(f.tokens.verify(&at.token)), "accepted");
    // Signing in again from this session: the old id ends (`regenerated`).
    let login = f
        .manager
        .login(
            Some(&re.token.encode()),
            NewSession::user(UserId::new("alice").expect("user")),
        )
        .await
        .expect("login");
    assert_ne!(login.session.id, issued.session.id);
    assert_eq!(reason(f.tokens.verify(&at.token)), "revoked");
    let fresh = f.tokens.issue(&login.session).expect("issue");
    assert_eq!(reason(f.tokens.verify(&fresh.token)), "accepted");
}

#[tokio::test]
async fn following_the_broadcast_stream_revokes() {
    let f = fixture(SigningAlg::EdDsa);
    // A second verifier fed only by `subscribe()`.
    let clock: Arc<dyn Clock> = Arc::new(f.clock.clone());
    let revocations = Revocations::new(Arc::clone(&clock));
    let task = revocations.follow(f.manager.subscribe());
    let follower = AccessTokens::builder(ISS, AUD, f.tokens.key_ring())
        .with_clock(clock)
        .with_revocations(Arc::clone(&revocations))
        .build()
        .expect("tokens");
    let issued = f
        .manager
        .create(NewSession::user(UserId::new("alice").expect("user")))
        .await
        .expect("create");
    let at = f.tokens.issue(&issued.session).expect("issue");
    assert_eq!(reason(follower.verify(&at.token)), "accepted");
    f.manager
        .logout(&issued.token.encode())
        .await
        .expect("logout");
    for _ in 0..100 {
        if revocations.is_revoked(&issued.session.id) {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(reason(follower.verify(&at.token)), "revoked");
    task.abort();
}

fn ended(sid: SessionId, at: Timestamp) -> Arc<Event> {
    Arc::new(Event {
        at,
        session_id: Some(sid),
        user: None,
        ip: None,
        kind: EventKind::Ended {
            reason: EndReason::LoggedOut,
        },
    })
}

#[tokio::test]
async fn a_lagging_stream_fails_safe() {
    let f = fixture(SigningAlg::EdDsa);
    let clock: Arc<dyn Clock> = Arc::new(f.clock.clone());
    let revocations = Revocations::new(Arc::clone(&clock));
    let follower = AccessTokens::builder(ISS, AUD, f.tokens.key_ring())
        .with_clock(clock)
        .with_revocations(Arc::clone(&revocations))
        .build()
        .expect("tokens");
    let s = session(&f.manager, &[]).await;
    let before = f.tokens.issue(&s).expect("issue");

    // A stream of capacity 1 that overflows before the follower reads it: the
    // events that ended some sessions are lost.
    let (tx, rx) = broadcast::channel(1);
    for _ in 0..3 {
        let lost = SessionId::generate().expect("id");
        tx.send(ended(lost, f.clock.now())).expect("send");
    }
    let task = revocations.follow(rx);
    for _ in 0..100 {
        if revocations.lagged_at().is_some() {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(revocations.lagged_at(), Some(f.clock.now()));
    // Tokens issued before the lag (same second included) are refused...
    assert_eq!(reason(follower.verify(&before.token)), "revocation_unknown");
    let same_second = f.tokens.issue(&s).expect("issue");
    assert_eq!(
        reason(follower.verify(&same_second.token)),
        "revocation_unknown"
    );
    // ... tokens issued after it are fine ...
    f.clock.advance(Duration::from_secs(1));
    let after = f.tokens.issue(&s).expect("issue");
    assert_eq!(reason(follower.verify(&after.token)), "accepted");
    // ... and events keep being applied.
    tx.send(ended(s.id, f.clock.now())).expect("send");
    for _ in 0..100 {
        if revocations.is_revoked(&s.id) {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(reason(follower.verify(&after.token)), "revoked");
    drop(tx);
    task.await.expect("the task ends when the stream closes");
}

#[test]
fn revocations_are_forgotten_after_the_longest_lifetime() {
    let clock = MockClock::default();
    let r = Revocations::new(Arc::new(clock.clone()));
    let a = SessionId::generate().expect("id");
    let b = SessionId::generate().expect("id");
    r.revoke(a);
    assert!(r.is_revoked(&a));
    // Regenerated is not an end.
    r.observe(&Event {
        at: clock.now(),
        session_id: Some(b),
        user: None,
        ip: None,
        kind: EventKind::Regenerated { previous: None },
    });
    assert!(!r.is_revoked(&b));
    clock.advance(REVOCATION_TTL + Duration::from_secs(61));
    r.revoke(b);
    assert!(!r.is_revoked(&a), "swept");
    assert_eq!(r.len(), 1);
    assert!(REVOCATION_TTL >= sessionary_token::MAX_TTL + sessionary_token::MAX_LEEWAY);
}

#[tokio::test]
async fn revoked_tokens_would_be_expired_when_forgotten() {
    // The entry is kept until no token of the session can pass the time checks.
    let f = fixture_with(SigningAlg::EdDsa, |b| {
        b.with_default_ttl(Duration::from_secs(15 * 60))
            .with_leeway(Duration::from_secs(60))
    });
    let s = session(&f.manager, &[]).await;
    let at = f.tokens.issue(&s).expect("issue");
    f.tokens.revocations().revoke(s.id);
    f.clock.advance(REVOCATION_TTL - Duration::from_millis(1));
    assert_eq!(reason(f.tokens.verify(&at.token)), "revoked");
    f.clock.advance(Duration::from_millis(1));
    assert_eq!(reason(f.tokens.verify(&at.token)), "expired");
    // Sweeping now loses nothing.
    f.clock.advance(Duration::from_secs(61));
    f.tokens
        .revocations()
        .revoke(SessionId::generate().expect("id"));
    assert!(!f.tokens.revocations().is_revoked(&s.id));
    assert_eq!(reason(f.tokens.verify(&at.token)), "expired");
}

#[test]
fn errors_have_problem_types_and_reasons() {
    let e = AccessTokenError::Revoked;
    assert_eq!(e.problem_type(), "session-expired");
    assert_eq!(e.reason(), Some("revoked"));
    assert_eq!(AccessTokenError::Expired.problem_type(), "token-expired");
    assert_eq!(
        AccessTokenError::BadSignature.problem_type(),
        "invalid-token"
    );
    assert_eq!(AccessTokenError::Random.reason(), None);
}

#[test]
fn key_file_is_created_owner_only_and_loaded_again() {
    let dir = std::env::temp_dir().join(format!(
        "sessionary-token-test-{}",
        SessionId::generate().expect("id")
    ));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("access-token-keys");
    let created = KeyRing::load_or_generate(&path, SigningAlg::EdDsa).expect("create");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let loaded = KeyRing::load_or_generate(&path, SigningAlg::EdDsa).expect("load");
    assert_eq!(loaded.current().kid(), created.current().kid());
    // Rotate and save over it: atomically replaced, still 0600, nothing left beside it.
    let mut ring = loaded;
    ring.rotate(
        SigningKey::generate(SigningAlg::Es256).expect("key"),
        Timestamp(5),
    )
    .expect("rotate");
    ring.save(&path).expect("save");
    let again = KeyRing::load_or_generate(&path, SigningAlg::EdDsa).expect("load");
    assert_eq!(again.len(), 2);
    assert_eq!(again.to_text(), ring.to_text());
    assert_eq!(std::fs::read_dir(&dir).expect("dir").count(), 1);
    std::fs::write(&path, "garbage").expect("write");
    assert!(KeyRing::load_or_generate(&path, SigningAlg::EdDsa).is_err());
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[tokio::test]
async fn shared_across_threads_and_debug_is_redacted() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<AccessTokens>();
    assert_send_sync::<Revocations>();
    assert_send_sync::<KeyRing>();

    let f = fixture(SigningAlg::Hs256);
    let s = session(&f.manager, &[]).await;
    let tokens = Arc::new(f.tokens);
    let at = tokens.issue(&s).expect("issue");
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let tokens = Arc::clone(&tokens);
            let token = at.token.clone();
            std::thread::spawn(move || {
                for _ in 0..200 {
                    assert!(tokens.verify(&token).is_ok());
                }
                if i == 0 {
                    tokens
                        .rotate(SigningKey::generate(SigningAlg::EdDsa).expect("key"))
                        .expect("rotate");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
    assert_eq!(reason(tokens.verify(&at.token)), "accepted");
    let dbg = format!("{tokens:?}");
    assert!(!dbg.contains(&common::b64(f.key.secret_bytes())));
    assert!(!dbg.contains(&format!("{:?}", f.key.secret_bytes())));
}

#[tokio::test]
async fn signing_out_everywhere_revokes_every_session() {
    let f = fixture(SigningAlg::EdDsa);
    let a = session(&f.manager, &[]).await;
    let b = session(&f.manager, &[]).await;
    let (ta, tb) = (
        f.tokens.issue(&a).expect("issue"),
        f.tokens.issue(&b).expect("issue"),
    );
    f.manager
        .end_user_sessions(
            &UserId::new("alice").expect("user"),
            None,
            EndReason::LoggedOut,
        )
        .await
        .expect("end");
    assert_eq!(reason(f.tokens.verify(&ta.token)), "revoked");
    assert_eq!(reason(f.tokens.verify(&tb.token)), "revoked");
}

/// Two nodes on one store joined by a fanout: node A's verifier follows A's
/// subscription, and a session revoked on node B is refused on A at once.
#[tokio::test]
async fn a_revocation_on_another_node_reaches_this_nodes_verifier() {
    let clock = MockClock::default();
    let dyn_clock: Arc<dyn Clock> = Arc::new(clock.clone());
    let store = Arc::new(sessionary_core::MemoryStore::new());
    let hub = sessionary_core::LocalFanout::new();
    let node = |sink: Option<Arc<Revocations>>| {
        let mut b = sessionary_core::SessionManager::builder(store.clone())
            .with_clock(Arc::clone(&dyn_clock))
            .with_fanout(Arc::new(hub.clone()));
        if let Some(s) = sink {
            b = b.with_event_sink(s);
        }
        b.build().expect("manager")
    };
    let revocations_a = Revocations::new(Arc::clone(&dyn_clock));
    let a = node(Some(revocations_a.clone()));
    let b = node(None);
    let task = revocations_a.follow(a.subscribe());
    let key = SigningKey::generate(SigningAlg::EdDsa).expect("key");
    let tokens_a = AccessTokens::builder(ISS, AUD, KeyRing::new(key))
        .with_clock(Arc::clone(&dyn_clock))
        .with_revocations(Arc::clone(&revocations_a))
        .build()
        .expect("tokens");
    let issued = a
        .create(NewSession::user(UserId::new("alice").expect("user")))
        .await
        .expect("create");
    let at = tokens_a.issue(&issued.session).expect("issue");
    assert_eq!(reason(tokens_a.verify(&at.token)), "accepted");
    b.end_session(&issued.session.id, EndReason::RevokedByAdmin)
        .await
        .expect("revoke on B");
    // Bounded: the forwarding and following tasks run on this runtime.
    for _ in 0..1000 {
        if revocations_a.is_revoked(&issued.session.id) {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(reason(tokens_a.verify(&at.token)), "revoked");
    task.abort();
}
